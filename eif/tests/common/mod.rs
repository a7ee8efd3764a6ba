//! Helpers shared by the integration tests: scratch directories and deterministic bytes.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "helpers shared by several test binaries: each uses part of them, and test code panics on failure"
)] // test helpers: a panic is a test failure

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty directory under cargo's per-target scratch space.
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("ccc-eif")
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `len` pseudo-random bytes from `seed` (xorshift64*; deterministic, not cryptographic).
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Fails with the install command when a required host tool is missing (the ci `setup` step
/// installs it; `cargo xtask setup` does too).
pub(crate) fn require_tool(tool: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is missing: run `cargo xtask setup` (or `apt-get install {package}`) first"
    );
}
