//! The crypto seam: the few primitives the core needs, as a narrow trait, and the aws-lc-rs
//! backend ([`AwsLc`], feature `aws-lc`) that CCC ships.
//!
//! Core code (attestation, CMS, SigV4) takes `&dyn Crypto`, so a `no_std` user can plug in
//! another backend. Private RSA keys are behind their own trait, [`RsaDecryptionKey`], because
//! key material never leaves the backend.

use crate::secret::SecretBytes;
use core::fmt;

/// A failure inside a crypto primitive. Deliberately coarse: callers map it to the check that
/// failed (which signature, which certificate), and decryption failures must not say why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A signature did not verify (or the key or signature was malformed).
    BadSignature,
    /// A public or private key could not be parsed or has an unsupported size/curve.
    BadKey,
    /// Decryption failed. OAEP decoding and padding failures are reported identically.
    Decrypt,
    /// Encryption failed (bad key, plaintext too long for the key).
    Encrypt,
    /// The random number generator failed.
    Random,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadSignature => "signature verification failed",
            Self::BadKey => "malformed or unsupported key",
            Self::Decrypt => "decryption failed",
            Self::Encrypt => "encryption failed",
            Self::Random => "random number generator failed",
        })
    }
}

impl core::error::Error for CryptoError {}

/// How an ECDSA signature is encoded.
#[derive(Clone, Copy, Debug)]
pub enum EcdsaSignature<'a> {
    /// Raw `r || s`, each a fixed-width big-endian integer (COSE).
    Fixed(&'a [u8]),
    /// DER `SEQUENCE { INTEGER r, INTEGER s }` (X.509).
    Asn1(&'a [u8]),
}

/// The primitives the core needs. All methods are pure functions of their inputs except
/// [`Crypto::fill_random`].
pub trait Crypto: Send + Sync {
    /// SHA-256 of the concatenation of `parts`.
    fn sha256(&self, parts: &[&[u8]]) -> [u8; 32];

    /// SHA-384 of the concatenation of `parts`.
    fn sha384(&self, parts: &[&[u8]]) -> [u8; 48];

    /// HMAC-SHA-256 of the concatenation of `parts` under `key`.
    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32];

    /// Verifies an ECDSA P-384 / SHA-384 signature over `message`.
    ///
    /// `public_key` is an uncompressed SEC1 point (`04 || X || Y`, 97 bytes).
    ///
    /// # Errors
    /// [`CryptoError::BadSignature`] if it does not verify or anything is malformed.
    fn verify_p384_sha384(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: EcdsaSignature<'_>,
    ) -> Result<(), CryptoError>;

    /// AES-256-CBC decryption in place, without touching the padding: the caller removes it
    /// (the CMS code does, in constant time, so that no backend can turn padding checks into
    /// an oracle). The time taken must not depend on the key or the data.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for a buffer that is not a whole, non-zero number of 16-byte
    /// blocks (a public property of the ciphertext).
    fn aes256_cbc_decrypt(
        &self,
        key: &[u8; 32],
        iv: &[u8; 16],
        in_out: &mut [u8],
    ) -> Result<(), CryptoError>;

    /// Fills `out` with cryptographically secure random bytes.
    ///
    /// # Errors
    /// [`CryptoError::Random`] if the generator fails.
    fn fill_random(&self, out: &mut [u8]) -> Result<(), CryptoError>;
}

/// A private RSA key that can unwrap what KMS sends to the enclave. The private half never
/// leaves the implementation.
pub trait RsaDecryptionKey: Send + Sync {
    /// The DER SubjectPublicKeyInfo (what goes into the attestation document's `public_key`).
    fn public_key_spki(&self) -> &[u8];

    /// RSAES-OAEP decryption with SHA-256, MGF1-SHA-256 and an empty label.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`], with no detail: OAEP failures must be indistinguishable.
    fn decrypt_oaep_sha256(&self, ciphertext: &[u8]) -> Result<SecretBytes, CryptoError>;
}

#[cfg(feature = "aws-lc")]
pub use aws_lc::{AwsLc, AwsLcRsaKey, RsaKeyError};

#[cfg(feature = "aws-lc")]
mod aws_lc {
    use super::{Crypto, CryptoError, EcdsaSignature, RsaDecryptionKey};
    use crate::secret::SecretBytes;
    use alloc::vec::Vec;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::{cipher, digest, hmac, rand, rsa, signature};
    use core::fmt;

    /// The aws-lc-rs backend: RSA-OAEP (AWS-LC's decoding is constant time), AES-CBC (AES in
    /// constant time: AES-NI, or AWS-LC's vector-permute or bit-sliced fallbacks; no padding
    /// check here, see [`Crypto::aes256_cbc_decrypt`]), P-384 and SHA-2 from AWS-LC.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct AwsLc;

    fn digest_parts<const N: usize>(
        algorithm: &'static digest::Algorithm,
        parts: &[&[u8]],
    ) -> [u8; N] {
        let mut ctx = digest::Context::new(algorithm);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; N];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    impl Crypto for AwsLc {
        fn sha256(&self, parts: &[&[u8]]) -> [u8; 32] {
            digest_parts(&digest::SHA256, parts)
        }

        fn sha384(&self, parts: &[&[u8]]) -> [u8; 48] {
            digest_parts(&digest::SHA384, parts)
        }

        fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
            let key = hmac::Key::new(hmac::HMAC_SHA256, key);
            let mut ctx = hmac::Context::with_key(&key);
            for part in parts {
                ctx.update(part);
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(ctx.sign().as_ref());
            out
        }

        fn verify_p384_sha384(
            &self,
            public_key: &[u8],
            message: &[u8],
            signature: EcdsaSignature<'_>,
        ) -> Result<(), CryptoError> {
            let (algorithm, sig) = match signature {
                EcdsaSignature::Fixed(sig) => (&signature::ECDSA_P384_SHA384_FIXED, sig),
                EcdsaSignature::Asn1(sig) => (&signature::ECDSA_P384_SHA384_ASN1, sig),
            };
            signature::UnparsedPublicKey::new(algorithm, public_key)
                .verify(message, sig)
                .map_err(|_| CryptoError::BadSignature)
        }

        fn aes256_cbc_decrypt(
            &self,
            key: &[u8; 32],
            iv: &[u8; 16],
            in_out: &mut [u8],
        ) -> Result<(), CryptoError> {
            if in_out.is_empty() || !in_out.len().is_multiple_of(16) {
                return Err(CryptoError::Decrypt);
            }
            let key = cipher::UnboundCipherKey::new(&cipher::AES_256, key)
                .map_err(|_| CryptoError::Decrypt)?;
            // Unpadded CBC: aws-lc-rs's `PaddedBlockDecryptingKey` checks PKCS#7 padding with
            // an early exit, so the padding is left to `cms::padding` instead.
            let key = cipher::DecryptingKey::cbc(key).map_err(|_| CryptoError::Decrypt)?;
            key.decrypt(
                in_out,
                cipher::DecryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(*iv)),
            )
            .map_err(|_| CryptoError::Decrypt)?;
            Ok(())
        }

        fn fill_random(&self, out: &mut [u8]) -> Result<(), CryptoError> {
            rand::fill(out).map_err(|_| CryptoError::Random)
        }
    }

    /// Why an RSA key could not be generated or loaded.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum RsaKeyError {
        /// Key generation failed inside AWS-LC.
        Generate,
        /// The PKCS#8 bytes are not an RSA private key AWS-LC accepts.
        Parse,
        /// The key is not 2048 bits, the size KMS's Recipient flow uses.
        WrongSize(usize),
    }

    impl fmt::Display for RsaKeyError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Generate => f.write_str("RSA-2048 key generation failed in AWS-LC"),
                Self::Parse => f.write_str(
                    "not a PKCS#8 RSA private key (convert with: openssl pkcs8 -topk8 -nocrypt)",
                ),
                Self::WrongSize(bits) => write!(
                    f,
                    "RSA key is {bits} bits; KMS Recipient keys here are 2048 bits"
                ),
            }
        }
    }

    impl core::error::Error for RsaKeyError {}

    /// An RSA-2048 private key held by AWS-LC. AWS-LC frees it with `OPENSSL_free`, which
    /// cleanses the memory, so the private key is zeroized on drop.
    pub struct AwsLcRsaKey {
        key: rsa::OaepPrivateDecryptingKey,
        spki: Vec<u8>,
    }

    impl fmt::Debug for AwsLcRsaKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("AwsLcRsaKey")
                .field("private", &"[redacted]")
                .field("spki_len", &self.spki.len())
                .finish()
        }
    }

    impl AwsLcRsaKey {
        /// Generates a fresh RSA-2048 key inside this process.
        ///
        /// # Errors
        /// [`RsaKeyError::Generate`] if AWS-LC fails.
        pub fn generate() -> Result<Self, RsaKeyError> {
            let key = rsa::PrivateDecryptingKey::generate(rsa::KeySize::Rsa2048)
                .map_err(|_| RsaKeyError::Generate)?;
            Self::wrap(key)
        }

        /// Loads a PKCS#8 DER RSA-2048 private key (tests and debugging tools).
        ///
        /// # Errors
        /// [`RsaKeyError::Parse`] or [`RsaKeyError::WrongSize`].
        pub fn from_pkcs8(der: &[u8]) -> Result<Self, RsaKeyError> {
            let key = rsa::PrivateDecryptingKey::from_pkcs8(der).map_err(|_| RsaKeyError::Parse)?;
            if key.key_size_bits() != 2048 {
                return Err(RsaKeyError::WrongSize(key.key_size_bits()));
            }
            Self::wrap(key)
        }

        fn wrap(key: rsa::PrivateDecryptingKey) -> Result<Self, RsaKeyError> {
            let spki = key
                .public_key()
                .as_der()
                .map_err(|_| RsaKeyError::Generate)?
                .as_ref()
                .to_vec();
            let key = rsa::OaepPrivateDecryptingKey::new(key).map_err(|_| RsaKeyError::Parse)?;
            Ok(Self { key, spki })
        }
    }

    impl RsaDecryptionKey for AwsLcRsaKey {
        fn public_key_spki(&self) -> &[u8] {
            &self.spki
        }

        fn decrypt_oaep_sha256(&self, ciphertext: &[u8]) -> Result<SecretBytes, CryptoError> {
            let mut out = SecretBytes::new(alloc::vec![0u8; self.key.min_output_size()]);
            let len = self
                .key
                .decrypt(
                    &rsa::OAEP_SHA256_MGF1SHA256,
                    ciphertext,
                    out.expose_mut(),
                    None,
                )
                .map_err(|_| CryptoError::Decrypt)?
                .len();
            out.expose_mut().truncate(len);
            Ok(out)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sha_and_hmac_known_answers() {
            // FIPS 180-2 "abc" vectors and RFC 4231 test case 2.
            assert_eq!(
                hex::encode(AwsLc.sha256(&[b"a", b"bc"])),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            );
            assert_eq!(
                hex::encode(AwsLc.sha384(&[b"abc"])),
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7"
            );
            assert_eq!(
                hex::encode(AwsLc.hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
            );
        }

        /// NIST SP 800-38A F.2.6 (CBC-AES256.Decrypt), first two blocks: no padding is
        /// removed or checked, and partial blocks are refused.
        #[test]
        fn aes_cbc_decrypts_whole_blocks_only() {
            let key: [u8; 32] =
                hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
                    .unwrap()
                    .try_into()
                    .unwrap();
            let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
                .unwrap()
                .try_into()
                .unwrap();
            let mut data =
                hex::decode("f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d")
                    .unwrap();
            AwsLc.aes256_cbc_decrypt(&key, &iv, &mut data).unwrap();
            assert_eq!(
                hex::encode(&data),
                "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
            );
            for len in [0, 15, 17] {
                assert_eq!(
                    AwsLc.aes256_cbc_decrypt(&key, &iv, &mut alloc::vec![0u8; len]),
                    Err(CryptoError::Decrypt)
                );
            }
        }

        #[test]
        fn rsa_key_round_trip_and_redacted_debug() {
            let key = AwsLcRsaKey::generate().unwrap();
            assert!(alloc::format!("{key:?}").contains("[redacted]"));
            let public = rsa::PublicEncryptingKey::from_der(key.public_key_spki()).unwrap();
            let public = rsa::OaepPublicEncryptingKey::new(public).unwrap();
            let mut ct = alloc::vec![0u8; public.ciphertext_size()];
            let ct = public
                .encrypt(&rsa::OAEP_SHA256_MGF1SHA256, b"data key", &mut ct, None)
                .unwrap();
            assert_eq!(key.decrypt_oaep_sha256(ct).unwrap().expose(), b"data key");
            let mut tampered = ct.to_vec();
            tampered[10] ^= 1;
            assert_eq!(
                key.decrypt_oaep_sha256(&tampered),
                Err(CryptoError::Decrypt)
            );
        }
    }
}
