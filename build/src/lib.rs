//! CCC's build library: everything between a project's application crate and a published,
//! reproducible enclave image, shared by CCC's own `cargo xtask` and the `cargo ccc` plugin.
//!
//! - [`project`] — what a workspace builds (`[workspace.metadata.ccc]`), and the CCC sources
//!   it builds with (the init, the kernel configuration and its pin come from there).
//! - [`kernel`] — CCC's enclave kernel, reproducible, in the per-user [`cache`].
//! - [`init`] — `ccc-init` and the static-ELF check of every enclave binary.
//! - [`image`] — ramdisks, the measured command line, EIF assembly.
//! - [`release`] — the two-pass reproducible release, its published formats
//!   ([`release::publish`]), `verify-release`, and the checks CI runs on a release.
//! - [`describe`], [`attestation`], [`policy`] — `describe-eif`, `attestation verify` and
//!   `policy check` (the key-policy linter the release also gates on).
//! - [`tools`], [`boot`] — QEMU with the nitro-enclave machine and vhost-device-vsock (in the
//!   cache), and one boot of an EIF under them.
//! - [`host`] — Debian packages and the musl target.
//!
//! A command is one module: its clap arguments (`Args`) and a `run` function, so `cargo xtask`
//! and `cargo ccc` reach the same definitions. Every public function returns [`Error`], whose
//! message names the fix.
//!
//! No features.

pub mod attestation;
pub mod boot;
pub mod cache;
pub mod describe;
mod error;
pub mod git;
pub mod hash;
pub mod host;
pub mod image;
pub mod init;
pub mod kernel;
pub mod policy;
pub mod progress;
pub mod project;
pub mod release;
pub mod tools;

pub use error::{Error, Result};

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    /// The root of CCC's workspace (this crate's parent directory).
    pub(crate) fn ccc_root() -> PathBuf {
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        manifest_dir
            .parent()
            .map_or_else(|| manifest_dir.clone(), std::path::Path::to_path_buf)
    }
}
