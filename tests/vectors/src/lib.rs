//! The known-answer test vectors committed next to this file, and the one place that knows
//! where they are: every test, benchmark and xtask step reads them through [`path`], [`read`],
//! [`read_text`] or [`read_decoded`], so a clone of the repository needs nothing beside it.
//!
//! The sets (where each came from, its date and licence are in `PROVENANCE.md`):
//! - `nitro-attestation-vectors/`: six real NSM attestation documents and the AWS Nitro
//!   Enclaves root certificate;
//! - `kms-cms-vectors/`: KMS `CiphertextForRecipient` envelopes, real and generated, indexed
//!   by `manifest.json`;
//! - `sigv4-test-suite/`: AWS's SigV4 suite (`v4/`) and the KMS-shaped botocore cases
//!   (`kms-extra/`).
//!
//! Paths are relative to this folder and use `/`. A missing file is a broken checkout, never
//! a reason to skip: every accessor panics with the path it looked for.

use base64::Engine as _;
use std::path::{Path, PathBuf};

/// This folder: the vectors are compiled-in as a location, never copied.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The folder that holds every vector set.
#[must_use]
pub fn root() -> &'static Path {
    Path::new(ROOT)
}

/// The path of a vector file or folder, `relative` to [`root`].
///
/// # Panics
/// If nothing exists there: the message names the path and `PROVENANCE.md`.
#[must_use]
#[allow(
    clippy::panic,
    reason = "a missing vector is a broken checkout; tests must stop"
)]
pub fn path(relative: impl AsRef<Path>) -> PathBuf {
    let path = root().join(relative.as_ref());
    if !path.exists() {
        panic!("{}", missing(&path, "does not exist"));
    }
    path
}

/// The bytes of a vector file, `relative` to [`root`].
///
/// # Panics
/// If the file cannot be read: the message names the path, the cause and `PROVENANCE.md`.
#[must_use]
#[allow(
    clippy::panic,
    reason = "a missing vector is a broken checkout; tests must stop"
)]
pub fn read(relative: impl AsRef<Path>) -> Vec<u8> {
    let path = root().join(relative.as_ref());
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}", missing(&path, &e.to_string())))
}

/// A vector file as UTF-8 text, unchanged (no trimming: several files have no final newline
/// and are compared byte for byte).
///
/// # Panics
/// As [`read`], or if the file is not UTF-8.
#[must_use]
#[allow(
    clippy::panic,
    reason = "a corrupted vector is a broken checkout; tests must stop"
)]
pub fn read_text(relative: impl AsRef<Path>) -> String {
    let relative = relative.as_ref();
    String::from_utf8(read(relative)).unwrap_or_else(|e| {
        panic!(
            "{}",
            missing(&root().join(relative), &format!("not UTF-8: {e}"))
        )
    })
}

/// The bytes a vector file encodes, by its extension: `.hex` is hex text, `.b64` standard
/// base64 (both may end in whitespace); anything else is returned as read. The attestation
/// documents come in all three forms.
///
/// # Panics
/// As [`read`], or if a `.hex`/`.b64` file does not decode.
#[must_use]
#[allow(
    clippy::panic,
    reason = "a corrupted vector is a broken checkout; tests must stop"
)]
pub fn read_decoded(relative: impl AsRef<Path>) -> Vec<u8> {
    let relative = relative.as_ref();
    let raw = read(relative);
    let decoded = match relative.extension().and_then(|e| e.to_str()) {
        Some("hex") => hex::decode(raw.trim_ascii()).map_err(|e| e.to_string()),
        Some("b64") => base64::engine::general_purpose::STANDARD
            .decode(raw.trim_ascii())
            .map_err(|e| e.to_string()),
        _ => return raw,
    };
    decoded.unwrap_or_else(|e| {
        panic!(
            "{}",
            missing(&root().join(relative), &format!("does not decode: {e}"))
        )
    })
}

/// The message for a vector that is missing or unreadable.
fn missing(path: &Path, cause: &str) -> String {
    format!(
        "test vector {} {cause}: the vectors are part of the repository (see {}); restore \
         the checkout (`git status`, `git checkout -- tests/vectors`)",
        path.display(),
        root().join("PROVENANCE.md").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_of_an_attestation_document_decodes_to_cose_sign1() {
        for file in [
            "nitro-attestation-vectors/evervault-beta-debug-2022-10-12/attestation.bin",
            "nitro-attestation-vectors/evervault-ga-debug-2023-09-18/attestation.b64",
            "nitro-attestation-vectors/nitrite-debug-2021-10-28/attestation.hex",
        ] {
            let bytes = read_decoded(file);
            // An untagged COSE_Sign1 (array of four), as the set's README says of all six.
            assert_eq!(bytes.first(), Some(&0x84), "{file}");
            assert!(bytes.len() > 4000, "{file}: {} bytes", bytes.len());
        }
        // Text files are returned unchanged, final newline or not.
        assert!(read_text("PROVENANCE.md").ends_with('\n'));
        assert!(path("sigv4-test-suite/v4").is_dir());
    }

    #[test]
    fn a_missing_vector_names_its_path_and_the_provenance_file() {
        for attempt in [
            std::panic::catch_unwind(|| read("no-such-set/file.bin")).map(drop),
            std::panic::catch_unwind(|| path("no-such-set/file.bin")).map(drop),
        ] {
            let payload = attempt.expect_err("a missing vector must panic");
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or_default();
            assert!(
                message.contains("no-such-set/file.bin") && message.contains("PROVENANCE.md"),
                "{message}"
            );
        }
    }
}
