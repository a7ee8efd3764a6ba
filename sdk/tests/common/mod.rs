//! Shared helpers of the SDK's integration tests: where the shared test vectors live, and
//! small readers for them.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers shared by several test binaries: each uses part of them, and test code panics on failure"
)]

use std::path::{Path, PathBuf};

/// The shared vectors folder: `$CCC_SHARED_DIR`, else `../shared` next to the workspace root.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CCC_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    // CARGO_MANIFEST_DIR is <workspace>/sdk; the vectors are in <workspace>/../shared.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// Reads a file under the shared folder, naming it if it is missing.
pub fn read_shared(relative: impl AsRef<Path>) -> Vec<u8> {
    let path = shared_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read test vector {} ({e}); set CCC_SHARED_DIR to the shared vectors folder",
            path.display()
        )
    })
}

/// Reads a UTF-8 text file under the shared folder.
pub fn read_shared_text(relative: impl AsRef<Path>) -> String {
    String::from_utf8(read_shared(relative)).expect("test vector is not UTF-8")
}

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
