//! The sealed-blob format: data encrypted inside the enclave with AES-256-GCM under a fresh
//! data key, stored next to that key's KMS ciphertext and the ARN of the KMS key that wraps it.
//! Only an enclave that KMS releases the data key to (the key policy's attestation conditions)
//! can open it, and an enclave opens only blobs wrapped by the key it trusts.
//!
//! ```text
//! offset    size  field
//! 0         4     magic "CCCS"
//! 4         1     format version, 2
//! 5         2     A, length of the key ARN, big-endian (1..=2048)
//! 7         A     the KMS key ARN that wraps the data key (ASCII)
//! 7+A       2     L, length of the wrapped key, big-endian (1..=6144)
//! 9+A       L     wrapped key: KMS CiphertextBlob of GenerateDataKey (AES_256)
//! 9+A+L     12    GCM nonce (random)
//! 21+A+L    n+16  AES-256-GCM ciphertext of the n data bytes, then the 16-byte tag
//! ```
//! The additional authenticated data is every byte before the ciphertext (magic, version, key
//! ARN, wrapped key, nonce), so neither the format version nor the key ARN can change without
//! the tag failing. The encryption context is not stored: KMS binds it to the wrapped key, and
//! `unseal` must be given the same one (as with KMS's own ciphertexts). Each blob has its own
//! data key, so a random nonce never repeats under one key.
//!
//! Version 1 (release 0.1.0) stored no key ARN: an enclave could not tell a blob wrapped by a
//! key the parent owns from its own, and it is refused.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ccc_sdk::kms::KeyArn;
use ccc_sdk::secret::SecretBytes;
use std::fmt;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// The first four bytes of every sealed blob.
pub const MAGIC: [u8; 4] = *b"CCCS";

/// The format version written and read.
pub const FORMAT_VERSION: u8 = 2;

/// Longest key ARN: KMS `KeyId` members are at most 2048 characters (KMS API reference).
pub const MAX_KEY_ARN_LEN: usize = ccc_sdk::kms::MAX_KEY_ARN_LEN;

/// Longest wrapped key: a KMS `CiphertextBlob` is at most 6144 bytes (KMS API reference).
pub const MAX_WRAPPED_KEY_LEN: usize = 6144;

/// The GCM tag's length.
pub const TAG_LEN: usize = 16;

/// Bytes of fixed header: magic, version, the two lengths.
const FIXED_LEN: usize = 4 + 1 + 2 + 2;

/// The most a sealed blob adds to its data (with the longest key ARN and wrapped key).
pub const MAX_OVERHEAD: usize =
    FIXED_LEN + MAX_KEY_ARN_LEN + MAX_WRAPPED_KEY_LEN + NONCE_LEN + TAG_LEN;

/// Length of the data key: AES-256.
pub const DATA_KEY_LEN: usize = 32;

/// A parsed sealed blob, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The ARN of the KMS key that wraps the data key (as written; compare it with the trusted
    /// key before asking KMS).
    pub key_arn: &'a str,
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
    /// The blob did not open: its tag did not verify (it was modified, or the data key is not
    /// the one it was sealed with), or the data key is not 32 bytes. One error for both, on
    /// purpose (see [`open`]).
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
            Self::Version(1) => write!(
                f,
                "sealed blob format version 1 (release 0.1.0), which does not record the KMS key \
                 that wraps it, so this enclave cannot tell it from a blob the parent built under \
                 a key of its own; unseal it with the enclave that sealed it and seal the data \
                 again with this one (format version {FORMAT_VERSION})"
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
                "AES-256-GCM authentication failed: the sealed blob was modified after sealing, \
                 or its data key is not the one it was sealed with",
            ),
            Self::Random => f.write_str("the random nonce could not be drawn from AWS-LC"),
        }
    }
}

impl std::error::Error for SealError {}

/// Reads a big-endian 16-bit length at `offset`.
fn length(blob: &[u8], offset: usize, what: &'static str) -> Result<usize, SealError> {
    let bytes = blob.get(offset..offset + 2).ok_or(SealError::Malformed {
        problem: what,
        offset,
    })?;
    Ok(usize::from(u16::from_be_bytes([
        *bytes.first().unwrap_or(&0),
        *bytes.get(1).unwrap_or(&0),
    ])))
}

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
    let arn_len = length(blob, 5, "no key-ARN length")?;
    if arn_len == 0 || arn_len > MAX_KEY_ARN_LEN {
        return Err(malformed(
            "key-ARN length outside 1..=2048 (KMS KeyId sizes)",
            5,
        ));
    }
    let arn_end = 7 + arn_len;
    let key_arn = blob
        .get(7..arn_end)
        .ok_or(malformed("the key ARN is cut short", 7))?;
    let key_arn = std::str::from_utf8(key_arn)
        .ok()
        .filter(|a| a.is_ascii())
        .ok_or(malformed("the key ARN is not ASCII", 7))?;
    let wrapped_len = length(blob, arn_end, "no wrapped-key length")?;
    if wrapped_len == 0 || wrapped_len > MAX_WRAPPED_KEY_LEN {
        return Err(malformed(
            "wrapped-key length outside 1..=6144 (KMS ciphertext sizes)",
            arn_end,
        ));
    }
    let key_start = arn_end + 2;
    let key_end = key_start + wrapped_len;
    let wrapped_key = blob
        .get(key_start..key_end)
        .ok_or(malformed("the wrapped key is cut short", key_start))?;
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
        key_arn,
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

/// Seals `data` under `data_key` (32 bytes), storing `wrapped_key` (its KMS ciphertext) and
/// `key_arn` (the KMS key that wrapped it).
///
/// # Errors
/// [`SealError::DataKeyLength`], [`SealError::Malformed`] for an empty or oversized key ARN or
/// wrapped key, [`SealError::Random`].
pub fn seal(
    data: &SecretBytes,
    data_key: &SecretBytes,
    key_arn: &KeyArn,
    wrapped_key: &[u8],
) -> Result<Vec<u8>, SealError> {
    if data_key.len() != DATA_KEY_LEN {
        return Err(SealError::DataKeyLength(data_key.len()));
    }
    let arn = key_arn.as_str().as_bytes();
    let arn_len = u16::try_from(arn.len())
        .ok()
        .filter(|&n| n > 0 && usize::from(n) <= MAX_KEY_ARN_LEN)
        .ok_or(SealError::Malformed {
            problem: "key-ARN length outside 1..=2048 (KMS KeyId sizes)",
            offset: 5,
        })?;
    let wrapped_len = u16::try_from(wrapped_key.len())
        .ok()
        .filter(|&n| n > 0 && usize::from(n) <= MAX_WRAPPED_KEY_LEN)
        .ok_or(SealError::Malformed {
            problem: "wrapped-key length outside 1..=6144 (KMS ciphertext sizes)",
            offset: 7 + arn.len(),
        })?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let key = key(data_key)?;
    let mut blob = Vec::with_capacity(
        FIXED_LEN + arn.len() + wrapped_key.len() + NONCE_LEN + data.len() + TAG_LEN,
    );
    blob.extend_from_slice(&MAGIC);
    blob.push(FORMAT_VERSION);
    blob.extend_from_slice(&arn_len.to_be_bytes());
    blob.extend_from_slice(arn);
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
/// A data key of the wrong length is not told apart from a tag that does not verify: its
/// length is the length of a decrypted secret, which an attacker probing with crafted blobs
/// must not learn. The GCM open runs either way (under an all-zero key when the length is
/// wrong), so the time taken does not tell the two apart either.
///
/// # Errors
/// [`SealError::Authentication`].
pub fn open(sealed: &Sealed<'_>, data_key: &SecretBytes) -> Result<SecretBytes, SealError> {
    let length_ok = data_key.len().ct_eq(&DATA_KEY_LEN);
    let mut key_bytes = Zeroizing::new([0u8; DATA_KEY_LEN]);
    for (slot, byte) in key_bytes
        .iter_mut()
        .zip(data_key.expose().iter().chain(std::iter::repeat(&0u8)))
    {
        *slot = u8::conditional_select(&0, byte, length_ok);
    }
    let key = UnboundKey::new(&AES_256_GCM, key_bytes.as_slice())
        .map(LessSafeKey::new)
        .map_err(|_| SealError::Authentication)?;
    let mut buffer = SecretBytes::copy_from(sealed.ciphertext);
    let opened = key
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(sealed.header),
            buffer.expose_mut(),
        )
        .map(|plain| plain.len());
    match opened {
        Ok(plain_len) if bool::from(length_ok) => {
            buffer.expose_mut().truncate(plain_len);
            Ok(buffer)
        }
        _ => Err(SealError::Authentication),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn arn() -> KeyArn {
        KeyArn::parse(ARN).unwrap()
    }

    fn sample() -> Vec<u8> {
        seal(
            &SecretBytes::copy_from(b"attack at dawn"),
            &SecretBytes::copy_from(&KEY),
            &arn(),
            b"wrapped-by-kms",
        )
        .unwrap()
    }

    #[test]
    fn seal_then_open() {
        let blob = sample();
        assert_eq!(&blob[..5], b"CCCS\x02");
        assert_eq!(&blob[5..7], &(ARN.len() as u16).to_be_bytes());
        assert_eq!(&blob[7..7 + ARN.len()], ARN.as_bytes());
        let sealed = parse(&blob).unwrap();
        assert_eq!(sealed.key_arn, ARN);
        assert_eq!(sealed.wrapped_key, b"wrapped-by-kms");
        assert_eq!(sealed.ciphertext.len(), 14 + TAG_LEN);
        let data = open(&sealed, &SecretBytes::copy_from(&KEY)).unwrap();
        assert_eq!(data.expose(), b"attack at dawn");
        // Two seals of the same data differ (fresh nonce).
        assert_ne!(sample(), blob);
    }

    /// Every byte is authenticated, the version and the key ARN included: a blob whose header
    /// names another key (or another format version) does not open.
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
        // A data key of another length is the same error (its length is a secret's).
        for len in [0, 16, 31, 33, 64] {
            let short = open(
                &parse(&blob).unwrap(),
                &SecretBytes::copy_from(&KEY.repeat(2)[..len]),
            );
            assert_eq!(short.unwrap_err(), SealError::Authentication, "{len}");
        }
        // Another ARN of the same length in the header: parses, but the tag fails.
        let other = ARN.replace("111122223333", "444455556666");
        let mut swapped = blob.clone();
        swapped[7..7 + ARN.len()].copy_from_slice(other.as_bytes());
        let sealed = parse(&swapped).unwrap();
        assert_eq!(sealed.key_arn, other);
        assert_eq!(
            open(&sealed, &SecretBytes::copy_from(&KEY)).unwrap_err(),
            SealError::Authentication
        );
    }

    #[test]
    fn malformed_blobs_name_the_check() {
        let blob = sample();
        let cases: [(&[u8], &str); 8] = [
            (b"", "shorter than the magic"),
            (b"XXXX\x02", "wrong magic"),
            (b"CCCS", "no version byte"),
            (b"CCCS\x02\x00", "no key-ARN length"),
            (b"CCCS\x02\x00\x00", "key-ARN length"),
            (b"CCCS\x02\x00\x05ab", "key ARN is cut short"),
            (b"CCCS\x02\x00\x01a\x00\x05ab", "wrapped key is cut short"),
            (&blob[..blob.len() - TAG_LEN], "shorter than the GCM tag"),
        ];
        for (input, needle) in cases {
            let error = parse(input).unwrap_err();
            assert!(error.to_string().contains(needle), "{needle}: {error}");
        }
        assert_eq!(parse(b"CCCS\x03").unwrap_err(), SealError::Version(3));
        let v1 = parse(b"CCCS\x01\x00\x05abcde").unwrap_err();
        assert_eq!(v1, SealError::Version(1));
        assert!(v1.to_string().contains("seal the data again"), "{v1}");
        assert_eq!(
            seal(
                &SecretBytes::default(),
                &SecretBytes::copy_from(&[0; 16]),
                &arn(),
                b"w"
            )
            .unwrap_err(),
            SealError::DataKeyLength(16)
        );
    }
}
