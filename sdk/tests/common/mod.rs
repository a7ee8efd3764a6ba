//! Shared helpers of the SDK's integration tests (the vectors themselves are read through
//! `ccc_test_vectors`).
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::panic)]

/// Decodes the body of a PEM file (`-----BEGIN <label>-----`), checking the label.
pub fn pem_to_der(pem: &str, label: &str) -> Vec<u8> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).expect("PEM begin line") + begin.len();
    let stop = pem.find(&end).expect("PEM end line");
    let body: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM base64")
}
