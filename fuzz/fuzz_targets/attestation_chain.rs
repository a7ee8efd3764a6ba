//! Fuzz target: everything after parsing (X.509, chain rules, policy) with a crypto backend
//! that accepts every signature, so mutated certificates reach the deepest checks. The root
//! is the input's own cabundle[0]; the QEMU mode runs too.
#![no_main]

use ccc_sdk::attestation::{self, Policy, RootOfTrust, VerifyOptions};
use ccc_sdk::crypto::{Crypto, CryptoError, EcdsaSignature};
use ccc_sdk::time::UnixMillis;

/// Accepts every signature; hashes are zero. Never use outside this fuzz target.
struct AcceptAll;

impl Crypto for AcceptAll {
    fn sha256(&self, _: &[&[u8]]) -> [u8; 32] {
        [0; 32]
    }
    fn sha384(&self, _: &[&[u8]]) -> [u8; 48] {
        [0; 48]
    }
    fn hmac_sha256(&self, _: &[u8], _: &[&[u8]]) -> [u8; 32] {
        [0; 32]
    }
    fn verify_p384_sha384(
        &self,
        _: &[u8],
        _: &[u8],
        _: EcdsaSignature<'_>,
    ) -> Result<(), CryptoError> {
        Ok(())
    }
    fn aes256_cbc_decrypt(&self, _: &[u8; 32], _: &[u8; 16], _: &mut [u8]) -> Result<(), CryptoError> {
        Err(CryptoError::Decrypt)
    }
    fn fill_random(&self, _: &mut [u8]) -> Result<(), CryptoError> {
        Err(CryptoError::Random)
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = attestation::parse(data) else {
        return;
    };
    let at = parsed.document.timestamp;
    let policy = Policy::new().expect_nonce(b"nonce");
    let _ = parsed.verify(
        &VerifyOptions::new(at)
            .with_root(RootOfTrust::InsecureQemuUnsigned)
            .with_policy(policy),
        &AcceptAll,
    );
    let _ = parsed.verify(&VerifyOptions::new(at), &AcceptAll);
    if let Some(root) = parsed.document.cabundle.first()
        && let Ok(root) = RootOfTrust::custom(root.to_vec())
    {
        let _ = parsed.verify(&VerifyOptions::new(at).with_root(root.clone()), &AcceptAll);
        let late = VerifyOptions::new(UnixMillis(u64::MAX)).with_root(root);
        let _ = parsed.verify(&late, &AcceptAll);
    }
});
