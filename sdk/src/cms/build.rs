//! The encoder side (feature `aws-lc`): builds a `CiphertextForRecipient` in KMS's exact BER
//! layout, for the KMS emulator and for tests. It calls aws-lc-rs directly because RSA-OAEP
//! encryption and AES-CBC encryption are not in the [`Crypto`](crate::crypto::Crypto) seam: an
//! enclave only ever decrypts.
//!
//! The layout, byte for byte what KMS sends (RSA-2048 lengths shown; see the KMS layout in the
//! CMS vectors README and the research notes §2.3):
//!
//! ```text
//! 30 80  06 09 <envelopedData>  a0 80  30 80  02 01 02
//!   31 82 016b  30 82 0167  02 01 02  80 20 <SHA-256(SPKI)>
//!     30 3c  06 09 <rsaesOaep>  30 2f  a0 0f 30 0d 06 09 <sha256> 05 00
//!                                      a1 1c 30 1a 06 09 <mgf1> 30 0d 06 09 <sha256> 05 00
//!     04 82 0100 <RSA-OAEP-SHA-256(CEK)>
//!   30 80  06 09 <id-data>  30 1d 06 09 <aes256-CBC> 04 10 <IV>
//!          a0 80 04 LL <ciphertext> 00 00        (ContentLayout::Chunked)
//!       or 80 LL <ciphertext>                    (ContentLayout::Primitive)
//!   00 00  00 00  00 00  00 00
//! ```

use crate::der::{oid, tag};
use alloc::vec::Vec;
use aws_lc_rs::{cipher, digest, rand, rsa};
use core::fmt;

/// Largest plaintext accepted: the botocore KMS model (API 2014-11-01) bounds `PlaintextType`
/// (Decrypt's `Plaintext`, GenerateDataKeyPair's `PrivateKeyPlaintext`, ...) to 4096 bytes.
pub const MAX_PLAINTEXT_LEN: usize = 4096;

/// How the ciphertext is wrapped. Both occur in real KMS responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentLayout {
    /// `a0 80 04 LL <ciphertext> 00 00`: a constructed indefinite `[0]` with one OCTET STRING
    /// (the C SDK's vector 1, enclaver's vector).
    Chunked,
    /// `80 LL <ciphertext>`: a primitive `[0]` (the C SDK's vector 2).
    Primitive,
}

/// Why an envelope could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The recipient key is not a DER SubjectPublicKeyInfo of an RSA key AWS-LC accepts.
    RecipientKey,
    /// The plaintext is longer than [`MAX_PLAINTEXT_LEN`].
    PlaintextTooLarge {
        /// Plaintext length.
        len: usize,
    },
    /// The random number generator failed.
    Random,
    /// RSA-OAEP or AES-CBC encryption failed inside AWS-LC.
    Encrypt,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RecipientKey => f.write_str(
                "the recipient public key is not a DER SubjectPublicKeyInfo of an RSA key (the \
                 attestation document's public_key must be one)",
            ),
            Self::PlaintextTooLarge { len } => write!(
                f,
                "plaintext is {len} bytes; KMS returns at most {MAX_PLAINTEXT_LEN}"
            ),
            Self::Random => f.write_str("the random number generator failed"),
            Self::Encrypt => f.write_str("RSA-OAEP or AES-CBC encryption failed in AWS-LC"),
        }
    }
}

impl core::error::Error for BuildError {}

/// Builds a `CiphertextForRecipient` for `recipient_spki` with a fresh random content key and
/// IV (AWS-LC's generator).
///
/// # Errors
/// [`BuildError`].
pub fn build(
    recipient_spki: &[u8],
    plaintext: &[u8],
    layout: ContentLayout,
) -> Result<Vec<u8>, BuildError> {
    let mut cek = zeroize::Zeroizing::new([0u8; 32]);
    let mut iv = [0u8; 16];
    rand::fill(&mut cek[..]).map_err(|_| BuildError::Random)?;
    rand::fill(&mut iv).map_err(|_| BuildError::Random)?;
    build_with(recipient_spki, plaintext, &cek, &iv, layout)
}

/// Builds a `CiphertextForRecipient` with the given content key and IV (the OAEP seed still
/// comes from AWS-LC's generator). Deterministic layouts make byte-level tests possible.
///
/// # Errors
/// [`BuildError`].
pub fn build_with(
    recipient_spki: &[u8],
    plaintext: &[u8],
    cek: &[u8; 32],
    iv: &[u8; 16],
    layout: ContentLayout,
) -> Result<Vec<u8>, BuildError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(BuildError::PlaintextTooLarge {
            len: plaintext.len(),
        });
    }
    let public =
        rsa::PublicEncryptingKey::from_der(recipient_spki).map_err(|_| BuildError::RecipientKey)?;
    let public = rsa::OaepPublicEncryptingKey::new(public).map_err(|_| BuildError::RecipientKey)?;
    let mut wrapped = alloc::vec![0u8; public.ciphertext_size()];
    let wrapped_len = public
        .encrypt(&rsa::OAEP_SHA256_MGF1SHA256, cek, &mut wrapped, None)
        .map_err(|_| BuildError::Encrypt)?
        .len();
    wrapped.truncate(wrapped_len);

    let key =
        cipher::UnboundCipherKey::new(&cipher::AES_256, cek).map_err(|_| BuildError::Encrypt)?;
    let key = cipher::PaddedBlockEncryptingKey::cbc_pkcs7(key).map_err(|_| BuildError::Encrypt)?;
    let mut ciphertext = plaintext.to_vec();
    key.less_safe_encrypt(
        &mut ciphertext,
        cipher::EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(*iv)),
    )
    .map_err(|_| BuildError::Encrypt)?;

    let ski = digest::digest(&digest::SHA256, recipient_spki);
    Ok(encode(ski.as_ref(), &wrapped, iv, &ciphertext, layout))
}

/// AlgorithmIdentifier { rsaesOaep, { [0] { sha256, NULL }, [1] { mgf1, { sha256, NULL } } } },
/// exactly as KMS writes it.
fn key_encryption_algorithm(out: &mut Vec<u8>) {
    let mut sha256 = Vec::new();
    tlv(&mut sha256, tag::OID, oid::SHA256);
    tlv(&mut sha256, tag::NULL, &[]);
    let mut sha256_alg = Vec::new();
    tlv(&mut sha256_alg, tag::SEQUENCE, &sha256);

    let mut mgf = Vec::new();
    tlv(&mut mgf, tag::OID, oid::MGF1);
    mgf.extend_from_slice(&sha256_alg);
    let mut mgf_alg = Vec::new();
    tlv(&mut mgf_alg, tag::SEQUENCE, &mgf);

    let mut params = Vec::new();
    tlv(&mut params, tag::context_constructed(0), &sha256_alg);
    tlv(&mut params, tag::context_constructed(1), &mgf_alg);

    let mut alg = Vec::new();
    tlv(&mut alg, tag::OID, oid::RSAES_OAEP);
    tlv(&mut alg, tag::SEQUENCE, &params);
    tlv(out, tag::SEQUENCE, &alg);
}

fn encode(
    ski: &[u8],
    wrapped_key: &[u8],
    iv: &[u8; 16],
    ciphertext: &[u8],
    layout: ContentLayout,
) -> Vec<u8> {
    const INDEFINITE: u8 = 0x80;
    const END_OF_CONTENTS: [u8; 2] = [0x00, 0x00];

    let mut ktri = Vec::new();
    tlv(&mut ktri, tag::INTEGER, &[2]);
    tlv(&mut ktri, tag::context_primitive(0), ski);
    key_encryption_algorithm(&mut ktri);
    tlv(&mut ktri, tag::OCTET_STRING, wrapped_key);
    let mut recipient = Vec::new();
    tlv(&mut recipient, tag::SEQUENCE, &ktri);

    let mut aes = Vec::new();
    tlv(&mut aes, tag::OID, oid::AES256_CBC);
    tlv(&mut aes, tag::OCTET_STRING, iv);

    let mut out = Vec::with_capacity(ciphertext.len() + wrapped_key.len() + 160);
    out.extend([tag::SEQUENCE, INDEFINITE]);
    tlv(&mut out, tag::OID, oid::ENVELOPED_DATA);
    out.extend([tag::context_constructed(0), INDEFINITE]);
    out.extend([tag::SEQUENCE, INDEFINITE]);
    tlv(&mut out, tag::INTEGER, &[2]);
    tlv(&mut out, tag::SET, &recipient);
    out.extend([tag::SEQUENCE, INDEFINITE]);
    tlv(&mut out, tag::OID, oid::DATA);
    tlv(&mut out, tag::SEQUENCE, &aes);
    match layout {
        ContentLayout::Chunked => {
            out.extend([tag::context_constructed(0), INDEFINITE]);
            tlv(&mut out, tag::OCTET_STRING, ciphertext);
            out.extend(END_OF_CONTENTS);
        }
        ContentLayout::Primitive => tlv(&mut out, tag::context_primitive(0), ciphertext),
    }
    // Close EncryptedContentInfo, EnvelopedData, [0] and ContentInfo.
    for _ in 0..4 {
        out.extend(END_OF_CONTENTS);
    }
    out
}

/// Appends a definite-length element with a minimal (DER) length.
fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cms;
    use crate::crypto::{AwsLc, AwsLcRsaKey, RsaDecryptionKey};

    #[test]
    fn round_trips_through_our_parser_for_every_size_and_layout() {
        let key = AwsLcRsaKey::generate().unwrap();
        for len in [0usize, 1, 15, 16, 17, 32, 100, 1000, MAX_PLAINTEXT_LEN] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            for layout in [ContentLayout::Chunked, ContentLayout::Primitive] {
                let envelope = build(key.public_key_spki(), &plaintext, layout).unwrap();
                assert!(envelope.len() <= cms::MAX_INPUT_LEN, "{len} {layout:?}");
                let opened = cms::decrypt(&envelope, &AwsLc, &key).unwrap();
                assert_eq!(opened.expose(), plaintext, "{len} {layout:?}");
            }
        }
    }

    #[test]
    fn fixed_key_and_iv_are_used_and_checked() {
        let key = AwsLcRsaKey::generate().unwrap();
        let cek = [0x11; 32];
        let iv = [0x22; 16];
        let envelope = build_with(
            key.public_key_spki(),
            b"data",
            &cek,
            &iv,
            ContentLayout::Primitive,
        )
        .unwrap();
        let parsed = cms::parse(&envelope).unwrap();
        assert_eq!(parsed.iv, iv);
        assert_eq!(
            key.decrypt_oaep_sha256(parsed.encrypted_key)
                .unwrap()
                .expose(),
            cek
        );
        assert_eq!(
            build(&[0x30, 0x00], b"", ContentLayout::Chunked),
            Err(BuildError::RecipientKey)
        );
        assert_eq!(
            build(
                key.public_key_spki(),
                &[0; MAX_PLAINTEXT_LEN + 1],
                ContentLayout::Chunked
            ),
            Err(BuildError::PlaintextTooLarge {
                len: MAX_PLAINTEXT_LEN + 1
            })
        );
    }

    #[test]
    fn lengths_are_minimal() {
        for (len, header) in [
            (0usize, &[0x04u8, 0x00][..]),
            (127, &[0x04, 0x7f]),
            (128, &[0x04, 0x81, 0x80]),
            (256, &[0x04, 0x82, 0x01, 0x00]),
            (70_000, &[0x04, 0x83, 0x01, 0x11, 0x70]),
        ] {
            let mut out = Vec::new();
            tlv(&mut out, tag::OCTET_STRING, &alloc::vec![0; len]);
            assert_eq!(&out[..header.len()], header, "{len}");
            assert_eq!(out.len(), header.len() + len);
        }
    }
}
