//! The sealed-blob format: data encrypted inside the enclave with AES-256-GCM under a fresh
//! data key, stored next to that key's KMS ciphertext. Only an enclave that KMS releases the
//! data key to (the key policy's attestation conditions) can open it.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "CCCS"
//! 4       1     format version, 1
//! 5       2     L, length of the wrapped key, big-endian (1..=6144)
//! 7       L     wrapped key: KMS CiphertextBlob of GenerateDataKey (AES_256)
//! 7+L     12    GCM nonce (random)
//! 19+L    n+16  AES-256-GCM ciphertext of the n data bytes, then the 16-byte tag
//! ```
//! The additional authenticated data is every byte before the ciphertext (magic, version,
//! length, wrapped key, nonce), so no header byte can change without the tag failing. The
//! encryption context is not stored: KMS binds it to the wrapped key, and `unseal` must be
//! given the same one (as with KMS's own ciphertexts). Each blob has its own data key, so a
//! random nonce never repeats under one key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ccc_sdk::secret::SecretBytes;
use std::fmt;

/// The first four bytes of every sealed blob.
pub const MAGIC: [u8; 4] = *b"CCCS";

/// The format version written.
pub const FORMAT_VERSION: u8 = 1;

/// Longest wrapped key: a KMS `CiphertextBlob` is at most 6144 bytes (KMS API reference).
pub const MAX_WRAPPED_KEY_LEN: usize = 6144;

/// The GCM tag's length.
pub const TAG_LEN: usize = 16;

/// Bytes before the wrapped key: magic, version, length.
const PREFIX_LEN: usize = 7;

/// The most a sealed blob adds to its data (with the largest wrapped key).
pub const MAX_OVERHEAD: usize = PREFIX_LEN + MAX_WRAPPED_KEY_LEN + NONCE_LEN + TAG_LEN;

/// Length of the data key: AES-256.
pub const DATA_KEY_LEN: usize = 32;

/// A parsed sealed blob, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The KMS ciphertext of the data key.
    pub wrapped_key: &'a [u8],
    /// The GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext and tag.
    pub ciphertext: &'a [u8],
    /// The authenticated header (everything before `ciphertext`).
    header: &'a [u8],
}

/// Why a blob could not be sealed or unsealed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The blob is not in this format (the check that failed, and where).
    Malformed {
        /// What is wrong.
        problem: &'static str,
        /// Byte offset.
        offset: usize,
    },
    /// The format version is not one this code reads.
    Version(u8),
    /// The data key has the wrong length.
    DataKeyLength(usize),
    /// The tag did not verify: the blob was modified, or the data key is not the one it was
    /// sealed with.
    Authentication,
    /// The random nonce could not be drawn.
    Random,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { problem, offset } => write!(
                f,
                "not a sealed blob: {problem} at byte {offset} (blobs come from the `seal` \
                 operation and start with \"CCCS\")"
            ),
            Self::Version(v) => write!(
                f,
                "sealed blob format version {v}; this enclave reads version {FORMAT_VERSION}"
            ),
            Self::DataKeyLength(n) => write!(
                f,
                "the data key is {n} bytes; AES-256 needs {DATA_KEY_LEN} (was the wrapped key \
                 made by GenerateDataKey with KeySpec AES_256?)"
            ),
            Self::Authentication => f.write_str(
                "AES-256-GCM authentication failed: the sealed blob was modified after sealing",
            ),
            Self::Random => f.write_str("the random nonce could not be drawn from AWS-LC"),
        }
    }
}

impl std::error::Error for SealError {}

/// Parses a sealed blob without decrypting anything.
///
/// # Errors
/// [`SealError::Malformed`] or [`SealError::Version`].
pub fn parse(blob: &[u8]) -> Result<Sealed<'_>, SealError> {
    let malformed = |problem, offset| SealError::Malformed { problem, offset };
    let magic = blob
        .get(..MAGIC.len())
        .ok_or(malformed("shorter than the magic", 0))?;
    if magic != MAGIC {
        return Err(malformed("wrong magic", 0));
    }
    let version = *blob.get(4).ok_or(malformed("no version byte", 4))?;
    if version != FORMAT_VERSION {
        return Err(SealError::Version(version));
    }
    let length = blob
        .get(5..PREFIX_LEN)
        .ok_or(malformed("no wrapped-key length", 5))?;
    let wrapped_len = usize::from(u16::from_be_bytes([
        *length.first().unwrap_or(&0),
        *length.get(1).unwrap_or(&0),
    ]));
    if wrapped_len == 0 || wrapped_len > MAX_WRAPPED_KEY_LEN {
        return Err(malformed(
            "wrapped-key length outside 1..=6144 (KMS ciphertext sizes)",
            5,
        ));
    }
    let key_end = PREFIX_LEN + wrapped_len;
    let wrapped_key = blob
        .get(PREFIX_LEN..key_end)
        .ok_or(malformed("the wrapped key is cut short", PREFIX_LEN))?;
    let nonce_end = key_end + NONCE_LEN;
    let nonce: [u8; NONCE_LEN] = blob
        .get(key_end..nonce_end)
        .and_then(|n| n.try_into().ok())
        .ok_or(malformed("the nonce is cut short", key_end))?;
    let ciphertext = blob.get(nonce_end..).unwrap_or_default();
    if ciphertext.len() < TAG_LEN {
        return Err(malformed("shorter than the GCM tag", nonce_end));
    }
    Ok(Sealed {
        wrapped_key,
        nonce,
        ciphertext,
        header: blob.get(..nonce_end).unwrap_or_default(),
    })
}

fn key(data_key: &SecretBytes) -> Result<LessSafeKey, SealError> {
    let unbound = UnboundKey::new(&AES_256_GCM, data_key.expose())
        .map_err(|_| SealError::DataKeyLength(data_key.len()))?;
    Ok(LessSafeKey::new(unbound))
}

/// Seals `data` under `data_key` (32 bytes), storing `wrapped_key` (its KMS ciphertext).
///
/// # Errors
/// [`SealError::DataKeyLength`], [`SealError::Malformed`] for an empty or oversized wrapped
/// key, [`SealError::Random`].
pub fn seal(
    data: &SecretBytes,
    data_key: &SecretBytes,
    wrapped_key: &[u8],
) -> Result<Vec<u8>, SealError> {
    if data_key.len() != DATA_KEY_LEN {
        return Err(SealError::DataKeyLength(data_key.len()));
    }
    let wrapped_len = u16::try_from(wrapped_key.len())
        .ok()
        .filter(|&n| n > 0 && usize::from(n) <= MAX_WRAPPED_KEY_LEN)
        .ok_or(SealError::Malformed {
            problem: "wrapped-key length outside 1..=6144 (KMS ciphertext sizes)",
            offset: 5,
        })?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let key = key(data_key)?;
    let mut blob =
        Vec::with_capacity(PREFIX_LEN + wrapped_key.len() + NONCE_LEN + data.len() + TAG_LEN);
    blob.extend_from_slice(&MAGIC);
    blob.push(FORMAT_VERSION);
    blob.extend_from_slice(&wrapped_len.to_be_bytes());
    blob.extend_from_slice(wrapped_key);
    blob.extend_from_slice(&nonce);
    let header_len = blob.len();
    blob.extend_from_slice(data.expose());
    let (header, body) = blob.split_at_mut(header_len);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&*header),
            body,
        )
        .map_err(|_| SealError::Authentication)?;
    blob.extend_from_slice(tag.as_ref());
    Ok(blob)
}

/// Opens a parsed blob with its data key (which the caller got from KMS for
/// `sealed.wrapped_key`).
///
/// # Errors
/// [`SealError::DataKeyLength`], [`SealError::Authentication`].
pub fn open(sealed: &Sealed<'_>, data_key: &SecretBytes) -> Result<SecretBytes, SealError> {
    let key = key(data_key)?;
    let mut buffer = SecretBytes::copy_from(sealed.ciphertext);
    let plain_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(sealed.header),
            buffer.expose_mut(),
        )
        .map_err(|_| SealError::Authentication)?
        .len();
    buffer.expose_mut().truncate(plain_len);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn sample() -> Vec<u8> {
        seal(
            &SecretBytes::copy_from(b"attack at dawn"),
            &SecretBytes::copy_from(&KEY),
            b"wrapped-by-kms",
        )
        .unwrap()
    }

    #[test]
    fn seal_then_open() {
        let blob = sample();
        assert_eq!(&blob[..5], b"CCCS\x01");
        assert_eq!(&blob[5..7], &14u16.to_be_bytes());
        let sealed = parse(&blob).unwrap();
        assert_eq!(sealed.wrapped_key, b"wrapped-by-kms");
        assert_eq!(sealed.ciphertext.len(), 14 + TAG_LEN);
        let data = open(&sealed, &SecretBytes::copy_from(&KEY)).unwrap();
        assert_eq!(data.expose(), b"attack at dawn");
        // Two seals of the same data differ (fresh nonce).
        assert_ne!(sample(), blob);
    }

    #[test]
    fn every_modified_byte_is_refused() {
        let blob = sample();
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            let result = parse(&tampered).and_then(|s| open(&s, &SecretBytes::copy_from(&KEY)));
            assert!(result.is_err(), "byte {i} flipped and still opened");
        }
        let wrong_key = open(&parse(&blob).unwrap(), &SecretBytes::copy_from(&[8; 32]));
        assert_eq!(wrong_key.unwrap_err(), SealError::Authentication);
    }

    #[test]
    fn malformed_blobs_name_the_check() {
        let blob = sample();
        let cases: [(&[u8], &str); 6] = [
            (b"", "shorter than the magic"),
            (b"XXXX\x01", "wrong magic"),
            (b"CCCS", "no version byte"),
            (b"CCCS\x01\x00\x00", "wrapped-key length"),
            (b"CCCS\x01\x00\x05ab", "wrapped key is cut short"),
            (&blob[..blob.len() - TAG_LEN], "shorter than the GCM tag"),
        ];
        for (input, needle) in cases {
            let error = parse(input).unwrap_err();
            assert!(error.to_string().contains(needle), "{error}");
        }
        assert_eq!(parse(b"CCCS\x02").unwrap_err(), SealError::Version(2));
        assert_eq!(
            seal(
                &SecretBytes::default(),
                &SecretBytes::copy_from(&[0; 16]),
                b"w"
            )
            .unwrap_err(),
            SealError::DataKeyLength(16)
        );
    }
}
