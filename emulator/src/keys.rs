//! Key material and what the emulator does with it: its symmetric ciphertext format
//! (AES-256-GCM with the key id and the encryption context bound as AAD), ECC key agreement
//! keys, data key pairs, random bytes. All crypto is aws-lc-rs.
//!
//! Ciphertext blob, version 1 (the emulator's own; real KMS blobs are opaque too):
//!
//! ```text
//! offset  size  field
//! 0       4     magic "CCKE" (CCC KMS Emulator)
//! 4       1     version = 1
//! 5       1     L = length of the key id (1..=64)
//! 6       L     key id (ASCII, the key's UUID)
//! 6+L     12    AES-GCM nonce (random)
//! 18+L    n+16  AES-256-GCM ciphertext and tag
//! AAD = bytes 0..6+L || "ccc-kms-emulator encryption context v1\0" || u32be(count)
//!       || for each pair in byte order of the key: u32be(len) key u32be(len) value
//! ```
//!
//! So a blob only opens under its own key, with exactly its encryption context, and any change
//! to the header, nonce or ciphertext fails authentication.

use crate::fault::Fault;
use aws_lc_rs::aead::{self, AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use aws_lc_rs::agreement;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand;
use aws_lc_rs::rsa;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use ccc_sdk::secret::SecretBytes;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const MAGIC: [u8; 4] = *b"CCKE";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Longest key id a blob may name (UUIDs are 36).
const MAX_KEY_ID_LEN: usize = 64;
const CONTEXT_DOMAIN: &[u8] = b"ccc-kms-emulator encryption context v1\0";

/// Why a ciphertext blob was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlobError {
    /// Not this emulator's format (magic, version or lengths).
    NotOurs(&'static str),
    /// AES-GCM authentication failed: wrong key, wrong context, or altered bytes.
    Authentication,
}

impl BlobError {
    pub(crate) fn fault(self) -> Fault {
        match self {
            Self::NotOurs(what) => Fault::invalid_ciphertext(format!(
                "the ciphertext is not a blob made by this emulator ({what})"
            )),
            Self::Authentication => Fault::invalid_ciphertext(
                "the ciphertext does not authenticate: the EncryptionContext differs from the \
                 one used to encrypt, or the ciphertext was altered",
            ),
        }
    }
}

/// The key id a blob names, without opening it.
pub(crate) fn blob_key_id(blob: &[u8]) -> Result<&str, BlobError> {
    let (key_id, _, _) = split(blob)?;
    Ok(key_id)
}

fn split(blob: &[u8]) -> Result<(&str, &[u8], &[u8]), BlobError> {
    let magic = blob.get(..4).ok_or(BlobError::NotOurs("too short"))?;
    if magic != MAGIC {
        return Err(BlobError::NotOurs("wrong magic"));
    }
    if blob.get(4) != Some(&VERSION) {
        return Err(BlobError::NotOurs("unknown version"));
    }
    let len = usize::from(*blob.get(5).ok_or(BlobError::NotOurs("too short"))?);
    if len == 0 || len > MAX_KEY_ID_LEN {
        return Err(BlobError::NotOurs("key id length out of range"));
    }
    let header_len = 6 + len;
    let key_id = blob
        .get(6..header_len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or(BlobError::NotOurs("key id truncated or not text"))?;
    let header = blob.get(..header_len).unwrap_or_default();
    let rest = blob.get(header_len..).unwrap_or_default();
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(BlobError::NotOurs("too short for nonce and tag"));
    }
    Ok((key_id, header, rest))
}

fn aad(header: &[u8], context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + CONTEXT_DOMAIN.len() + 64);
    out.extend_from_slice(header);
    out.extend_from_slice(CONTEXT_DOMAIN);
    let count = u32::try_from(context.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (key, value) in context {
        for part in [key, value] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

/// Encrypts `plaintext` under `key` (whose id is `key_id`) with `context` bound.
pub(crate) fn seal(
    key_id: &str,
    key: &[u8; 32],
    context: &BTreeMap<String, String>,
    plaintext: &[u8],
) -> Result<Vec<u8>, Fault> {
    let id_len = u8::try_from(key_id.len())
        .ok()
        .filter(|&l| l > 0 && usize::from(l) <= MAX_KEY_ID_LEN)
        .ok_or_else(|| Fault::internal("key id length out of range"))?;
    let mut blob = Vec::with_capacity(6 + key_id.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
    blob.extend_from_slice(&MAGIC);
    blob.push(VERSION);
    blob.push(id_len);
    blob.extend_from_slice(key_id.as_bytes());
    let aad = aad(&blob, context);
    let sealing = RandomizedNonceKey::new(&AES_256_GCM, key)
        .map_err(|_| Fault::internal("AES-256-GCM key setup failed"))?;
    let mut data = Zeroizing::new(plaintext.to_vec());
    let nonce = sealing
        .seal_in_place_append_tag(Aad::from(&aad), &mut *data)
        .map_err(|_| Fault::internal("AES-256-GCM encryption failed"))?;
    blob.extend_from_slice(nonce.as_ref());
    blob.extend_from_slice(&data);
    Ok(blob)
}

/// Decrypts a blob made by [`seal`].
pub(crate) fn open(
    blob: &[u8],
    key: &[u8; 32],
    context: &BTreeMap<String, String>,
) -> Result<SecretBytes, BlobError> {
    let (_, header, rest) = split(blob)?;
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| BlobError::Authentication)?;
    let opening = aead::LessSafeKey::new(
        aead::UnboundKey::new(&AES_256_GCM, key).map_err(|_| BlobError::Authentication)?,
    );
    let mut data = SecretBytes::copy_from(sealed);
    let len = opening
        .open_in_place(nonce, Aad::from(&aad(header, context)), data.expose_mut())
        .map_err(|_| BlobError::Authentication)?
        .len();
    data.expose_mut().truncate(len);
    Ok(data)
}

/// `n` random bytes.
pub(crate) fn random(n: usize) -> Result<SecretBytes, Fault> {
    let mut out = SecretBytes::new(vec![0; n]);
    rand::fill(out.expose_mut()).map_err(|_| Fault::internal("the random generator failed"))?;
    Ok(out)
}

/// A fresh 32-byte symmetric key.
pub(crate) fn symmetric_key() -> Result<Zeroizing<[u8; 32]>, Fault> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::fill(&mut key[..]).map_err(|_| Fault::internal("the random generator failed"))?;
    Ok(key)
}

/// The ECC curves the emulator's KEY_AGREEMENT keys and ECC data key pairs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn algorithm(self) -> &'static agreement::Algorithm {
        match self {
            Self::P256 => &agreement::ECDH_P256,
            Self::P384 => &agreement::ECDH_P384,
            Self::P521 => &agreement::ECDH_P521,
        }
    }

    /// The KMS spec name (`ECC_NIST_P256`, ...).
    pub(crate) fn spec(self) -> &'static str {
        match self {
            Self::P256 => "ECC_NIST_P256",
            Self::P384 => "ECC_NIST_P384",
            Self::P521 => "ECC_NIST_P521",
        }
    }

    pub(crate) fn from_spec(spec: &str) -> Option<Self> {
        match spec {
            "ECC_NIST_P256" => Some(Self::P256),
            "ECC_NIST_P384" => Some(Self::P384),
            "ECC_NIST_P521" => Some(Self::P521),
            _ => None,
        }
    }
}

/// A private key (PKCS#8 DER) and its public key (DER SubjectPublicKeyInfo).
pub(crate) struct KeyPair {
    pub(crate) pkcs8: SecretBytes,
    pub(crate) spki: Vec<u8>,
}

/// A fresh ECC key pair.
pub(crate) fn ecc_pair(curve: Curve) -> Result<KeyPair, Fault> {
    let failed = |_| Fault::internal("ECC key generation failed");
    let private = agreement::PrivateKey::generate(curve.algorithm()).map_err(failed)?;
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'_> = private.as_der().map_err(failed)?;
    let spki = private
        .compute_public_key()
        .map_err(failed)?
        .as_der()
        .map_err(failed)?;
    Ok(KeyPair {
        pkcs8: SecretBytes::copy_from(pkcs8.as_ref()),
        spki: spki.as_ref().to_vec(),
    })
}

/// Checks stored ECC material: the PKCS#8 parses on `curve` and its public key is `spki`.
pub(crate) fn check_ecc(curve: Curve, pkcs8: &[u8]) -> Result<Vec<u8>, &'static str> {
    let private = agreement::PrivateKey::from_private_key_der(curve.algorithm(), pkcs8)
        .map_err(|_| "the private key does not parse as PKCS#8 on its curve")?;
    let spki = private
        .compute_public_key()
        .and_then(|p| p.as_der())
        .map_err(|_| "the public key cannot be derived")?;
    Ok(spki.as_ref().to_vec())
}

/// A fresh P-384 signing key pair (`ECC_NIST_P384` / `SIGN_VERIFY`).
pub(crate) fn signing_pair() -> Result<KeyPair, Fault> {
    let failed = |_| Fault::internal("P-384 signing key generation failed");
    let pair =
        EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_ASN1_SIGNING).map_err(failed)?;
    let pkcs8 = pair.to_pkcs8v1().map_err(failed)?;
    let spki = pair.public_key().as_der().map_err(failed)?;
    Ok(KeyPair {
        pkcs8: SecretBytes::copy_from(pkcs8.as_ref()),
        spki: spki.as_ref().to_vec(),
    })
}

/// Checks stored P-384 signing material: the PKCS#8 parses; returns its public key (SPKI).
pub(crate) fn check_signing(pkcs8: &[u8]) -> Result<Vec<u8>, &'static str> {
    let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8)
        .map_err(|_| "the private key does not parse as a P-384 PKCS#8 signing key")?;
    let spki = pair
        .public_key()
        .as_der()
        .map_err(|_| "the public key cannot be encoded")?;
    Ok(spki.as_ref().to_vec())
}

/// ECDSA-P384-SHA384 over a SHA-384 digest (KMS `MessageType=DIGEST`): the DER signature.
pub(crate) fn sign_digest(pkcs8: &[u8], digest: &[u8]) -> Result<Vec<u8>, Fault> {
    let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8)
        .map_err(|_| Fault::internal("stored signing key does not parse"))?;
    let digest = aws_lc_rs::digest::Digest::import_less_safe(digest, &aws_lc_rs::digest::SHA384)
        .map_err(|_| Fault::validation("Digest is invalid length for algorithm ECDSA_SHA_384."))?;
    let sig = pair
        .sign_digest(&digest)
        .map_err(|_| Fault::internal("ECDSA signing failed"))?;
    Ok(sig.as_ref().to_vec())
}

/// A fresh RSA key pair of `bits` (2048, 3072 or 4096).
pub(crate) fn rsa_pair(bits: usize) -> Result<KeyPair, Fault> {
    let size = match bits {
        2048 => rsa::KeySize::Rsa2048,
        3072 => rsa::KeySize::Rsa3072,
        4096 => rsa::KeySize::Rsa4096,
        _ => return Err(Fault::internal("unsupported RSA size")),
    };
    let failed = |_| Fault::internal("RSA key generation failed");
    let private = rsa::PrivateDecryptingKey::generate(size).map_err(failed)?;
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'_> = private.as_der().map_err(failed)?;
    let spki = private.public_key().as_der().map_err(failed)?;
    Ok(KeyPair {
        pkcs8: SecretBytes::copy_from(pkcs8.as_ref()),
        spki: spki.as_ref().to_vec(),
    })
}

/// ECDH between our private key and the caller's public key (DER SubjectPublicKeyInfo, as
/// KMS requires): the raw shared secret (the x coordinate).
pub(crate) fn ecdh(curve: Curve, pkcs8: &[u8], peer_spki: &[u8]) -> Result<SecretBytes, Fault> {
    let private = agreement::PrivateKey::from_private_key_der(curve.algorithm(), pkcs8)
        .map_err(|_| Fault::internal("stored ECC key does not parse"))?;
    let peer = agreement::ParsedPublicKey::try_from(agreement::UnparsedPublicKey::new(
        curve.algorithm(),
        peer_spki,
    ))
    .ok()
    .filter(|p| p.format() == agreement::ParsedPublicKeyFormat::X509)
    .ok_or_else(|| {
        Fault::validation(format!(
            "PublicKey is not a DER-encoded X.509 SubjectPublicKeyInfo of an {} public key \
             (the key's curve)",
            curve.spec()
        ))
    })?;
    agreement::agree(
        &private,
        peer,
        Fault::validation("ECDH with the given PublicKey failed"),
        |secret| Ok(SecretBytes::copy_from(secret)),
    )
}

/// Checks that `spki` is exactly the DER SubjectPublicKeyInfo of an RSA-2048 key (what KMS
/// requires of an attestation document's `public_key`).
pub(crate) fn check_recipient_key(spki: &[u8]) -> Result<(), String> {
    let key = rsa::PublicEncryptingKey::from_der(spki)
        .map_err(|_| "it is not a DER SubjectPublicKeyInfo of an RSA public key".to_string())?;
    if key.key_size_bits() != 2048 {
        return Err(format!(
            "it is an RSA-{} key; KMS encrypts to RSA-2048 keys",
            key.key_size_bits()
        ));
    }
    let canonical = key
        .as_der()
        .map_err(|_| "it cannot be re-encoded".to_string())?;
    if canonical.as_ref() != spki {
        return Err("it has trailing bytes or a non-canonical encoding".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn blobs_open_only_with_their_key_and_context() {
        let key = symmetric_key().unwrap();
        let other = symmetric_key().unwrap();
        let ctx = context(&[("purpose", "test"), ("a", "b")]);
        let blob = seal(
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            &key,
            &ctx,
            b"secret",
        )
        .unwrap();
        assert_eq!(
            blob_key_id(&blob).unwrap(),
            "1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(open(&blob, &key, &ctx).unwrap().expose(), b"secret");
        assert_eq!(
            open(&blob, &other, &ctx).unwrap_err(),
            BlobError::Authentication
        );
        for wrong in [
            context(&[]),
            context(&[("purpose", "test")]),
            context(&[("purpose", "test"), ("a", "c")]),
            // Moving a byte between key and value must not collide.
            context(&[("purpose", "test"), ("ab", "")]),
        ] {
            assert_eq!(
                open(&blob, &key, &wrong).unwrap_err(),
                BlobError::Authentication,
                "{wrong:?}"
            );
        }
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 1;
            assert!(open(&tampered, &key, &ctx).is_err(), "byte {i}");
        }
        assert_eq!(
            blob_key_id(b"AQI").unwrap_err(),
            BlobError::NotOurs("too short")
        );
        assert_eq!(
            blob_key_id(b"AQIDBA").unwrap_err(),
            BlobError::NotOurs("wrong magic")
        );
        assert!(open(&blob[..blob.len() - 20], &key, &ctx).is_err());
    }

    #[test]
    fn ecdh_agrees_with_an_independent_party_and_refuses_other_curves() {
        let ours = ecc_pair(Curve::P256).unwrap();
        let theirs = agreement::PrivateKey::generate(&agreement::ECDH_P256).unwrap();
        let their_spki = theirs.compute_public_key().unwrap().as_der().unwrap();
        let secret = ecdh(Curve::P256, ours.pkcs8.expose(), their_spki.as_ref()).unwrap();
        let expected = agreement::agree(
            &theirs,
            agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &ours.spki),
            (),
            |s| Ok(s.to_vec()),
        )
        .unwrap();
        assert_eq!(secret.expose(), expected);
        assert_eq!(
            check_ecc(Curve::P256, ours.pkcs8.expose()).unwrap(),
            ours.spki
        );

        let p384 = ecc_pair(Curve::P384).unwrap();
        assert_eq!(
            ecdh(Curve::P256, ours.pkcs8.expose(), &p384.spki)
                .unwrap_err()
                .code,
            "ValidationException"
        );
        // A raw point is not an SPKI: KMS requires DER.
        let raw = theirs.compute_public_key().unwrap();
        assert!(ecdh(Curve::P256, ours.pkcs8.expose(), raw.as_ref()).is_err());
    }

    #[test]
    fn recipient_keys_must_be_rsa_2048_spki() {
        let rsa2048 = rsa_pair(2048).unwrap();
        assert_eq!(check_recipient_key(&rsa2048.spki), Ok(()));
        let rsa3072 = rsa_pair(3072).unwrap();
        assert!(
            check_recipient_key(&rsa3072.spki)
                .unwrap_err()
                .contains("RSA-3072")
        );
        let ecc = ecc_pair(Curve::P384).unwrap();
        assert!(check_recipient_key(&ecc.spki).is_err());
        let mut trailing = rsa2048.spki.clone();
        trailing.push(0);
        assert!(check_recipient_key(&trailing).is_err());
    }
}
