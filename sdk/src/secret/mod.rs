//! Types for secret bytes: they zeroize on drop and never print their contents; and the
//! buffer handling that keeps copies of secrets from being left behind: growing a buffer
//! without freeing an unwiped copy ([`reserve_wiping`]), and with `std`, JSON that is encoded
//! into an exactly sized zeroizing buffer and secret strings decoded without serde temporaries
//! ([`json`]).

use alloc::vec::Vec;
use core::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

#[cfg(feature = "std")]
pub mod json;

/// Makes room for `additional` more bytes in `buffer` without leaving a copy of its contents
/// in freed memory: when the capacity does not suffice, the bytes move to a new allocation (of
/// at least twice the old capacity, so appending stays amortised O(1)) and the old one is
/// zeroized, over its whole capacity, before it is freed. `Vec`'s own growth frees the old
/// allocation as it is.
pub fn reserve_wiping(buffer: &mut Vec<u8>, additional: usize) {
    let needed = buffer.len().saturating_add(additional);
    if needed <= buffer.capacity() {
        return;
    }
    let mut grown = Vec::with_capacity(needed.max(buffer.capacity().saturating_mul(2)));
    grown.extend_from_slice(buffer);
    let mut old = core::mem::replace(buffer, grown);
    old.zeroize();
}

/// Secret bytes (plaintexts, data keys, private key material). Zeroized on drop; `Debug`
/// prints `[redacted]` and the length only; `==` compares in constant time.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

/// Constant time in the contents: every byte is compared whatever the earlier ones were, so
/// the time taken does not tell where two secrets first differ. Lengths are compared first
/// and are not secret (as in `subtle`).
impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for SecretBytes {}

impl SecretBytes {
    /// Takes ownership of `bytes`; the caller's buffer is moved, not copied.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Copies `bytes` into a new secret (the caller should zeroize its own copy).
    #[must_use]
    pub fn copy_from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// The secret bytes. Keep the borrow short and never log it.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Mutable access for in-place decryption.
    pub fn expose_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Number of secret bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn equality_compares_contents_and_lengths() {
        let secret = SecretBytes::copy_from(b"0123456789abcdef");
        assert_eq!(secret, SecretBytes::copy_from(b"0123456789abcdef"));
        for other in [
            &b"x123456789abcdef"[..],
            b"0123456789abcdex",
            b"0123456789abcde",
            b"0123456789abcdef0",
            b"",
        ] {
            assert_ne!(secret, SecretBytes::copy_from(other), "{other:?}");
        }
        assert_eq!(SecretBytes::default(), SecretBytes::new(Vec::new()));
    }

    #[test]
    fn growing_keeps_the_bytes_and_the_capacity_promise() {
        let mut buffer = Vec::with_capacity(4);
        buffer.extend_from_slice(b"abcd");
        reserve_wiping(&mut buffer, 0);
        assert_eq!(buffer.capacity(), 4, "no move when nothing is added");
        reserve_wiping(&mut buffer, 1);
        assert_eq!(buffer, b"abcd");
        assert!(buffer.capacity() >= 8, "{}", buffer.capacity());
        let before = buffer.as_ptr();
        buffer.push(b'e');
        assert_eq!(buffer.as_ptr(), before, "the push fits");
        reserve_wiping(&mut buffer, 100);
        assert!(buffer.capacity() >= 105);
        assert_eq!(buffer, b"abcde");
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let secret = SecretBytes::copy_from(b"hunter2");
        let shown = format!("{secret:?}");
        assert_eq!(shown, "SecretBytes([redacted; 7 bytes])");
        assert!(!shown.contains("hunter2"));
    }
}
