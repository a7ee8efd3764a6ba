//! Shared helpers of the SDK's integration tests (the vectors themselves are read through
//! `ccc_test_vectors`).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers shared by several test binaries: each uses part of them, and test code panics on failure"
)]

/// The DER of a PKCS#8 `PRIVATE KEY` PEM, read with rustls-pki-types' PEM parser.
pub fn pkcs8_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject as _;
    PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .expect("a PKCS#8 PRIVATE KEY PEM")
        .secret_pkcs8_der()
        .to_vec()
}
