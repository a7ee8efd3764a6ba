//! The `fuzz` CI step: build the cargo-fuzz targets in `fuzz/` on the pinned stable toolchain
//! (`--sanitizer none`, so no nightly is needed) and run each for a fixed time on a
//! throw-away corpus made of the committed seeds plus the real vectors of `tests/vectors`.

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::{Shell, cmd};

/// The cargo-fuzz release we install (crates.io), pinned for reproducible CI.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Which real vectors (`tests/vectors`) join a target's run-time corpus.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RealVectors {
    None,
    Attestation,
    Cms,
}

/// Targets, the seed directory each starts from, and the real vectors added at run time.
const TARGETS: &[(&str, &str, RealVectors)] = &[
    ("attestation_parse", "attestation", RealVectors::Attestation),
    ("attestation_chain", "attestation", RealVectors::Attestation),
    ("cms_parse", "cms", RealVectors::Cms),
    ("kms_response", "kms_response", RealVectors::None),
    (
        "sigv4_authorization",
        "sigv4_authorization",
        RealVectors::None,
    ),
    ("eif_read", "eif", RealVectors::None),
    ("nsm_codec", "nsm_codec", RealVectors::None),
    ("http_response", "http_response", RealVectors::None),
    ("credentials_frame", "credentials_frame", RealVectors::None),
];
/// Long enough for libFuzzer to get past the seeds into mutations; short enough that the
/// nine targets add about three minutes to CI.
const SECONDS_PER_TARGET: u64 = 20;

/// `target/tools/bin/cargo-fuzz`, installed on first use.
fn cargo_fuzz(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let tools = root.join("target/tools");
    let bin = tools.join("bin/cargo-fuzz");
    let installed = std::process::Command::new(&bin)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION));
    if !installed {
        cmd!(
            sh,
            "cargo install --locked --version {CARGO_FUZZ_VERSION} --root {tools} cargo-fuzz"
        )
        .run()
        .context("installing cargo-fuzz")?;
    }
    Ok(bin)
}

/// Every file under a vector folder whose name passes `keep`, as (path relative to
/// `tests/vectors`, decoded bytes), sorted by path.
///
/// # Errors
/// If a folder cannot be listed.
fn vector_files(set: &str, keep: impl Fn(&Path) -> bool) -> Result<Vec<(String, Vec<u8>)>> {
    let root = ccc_test_vectors::root();
    let mut relatives = Vec::new();
    let mut stack = vec![ccc_test_vectors::path(set)];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if keep(&path) {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                relatives.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    relatives.sort();
    Ok(relatives
        .into_iter()
        .map(|relative| {
            let bytes = ccc_test_vectors::read_decoded(&relative);
            (relative, bytes)
        })
        .collect())
}

/// The CMS vectors (`*.ber`, `*.der`), as extra run-time seeds.
fn cms_vectors() -> Result<Vec<(String, Vec<u8>)>> {
    let found = vector_files("kms-cms-vectors", |path| {
        path.extension().is_some_and(|e| e == "ber" || e == "der")
    })?;
    // 39 envelopes in the manifest, plus the DER key files under generated/keys.
    ensure!(
        found.len() >= 39,
        "tests/vectors/kms-cms-vectors holds {} BER/DER files, expected at least 39: restore \
         the checkout (`git status tests/vectors`)",
        found.len()
    );
    Ok(found)
}

/// The six real attestation documents (decoded), as extra run-time seeds.
fn attestation_vectors() -> Result<Vec<(String, Vec<u8>)>> {
    let found = vector_files("nitro-attestation-vectors", |path| {
        path.file_stem().is_some_and(|s| s == "attestation")
    })?;
    ensure!(
        found.len() == 6,
        "tests/vectors/nitro-attestation-vectors holds {} attestation documents, expected 6: \
         restore the checkout (`git status tests/vectors`)",
        found.len()
    );
    Ok(found)
}

/// Runs every fuzz target for [`SECONDS_PER_TARGET`] seconds.
///
/// # Errors
/// If installing or building fails, or a target finds a crash (libFuzzer exits non-zero and
/// leaves the input under `fuzz/artifacts/`).
pub(crate) fn smoke(sh: &Shell) -> Result<()> {
    let root = crate::workspace_root();
    let bin = cargo_fuzz(sh, &root)?;
    let fuzz_dir = root.join("fuzz");
    let attestation = attestation_vectors()?;
    let cms = cms_vectors()?;
    for (target, seeds, real) in TARGETS {
        let real = match real {
            RealVectors::None => &[][..],
            RealVectors::Attestation => &attestation[..],
            RealVectors::Cms => &cms[..],
        };
        let corpus = root.join("target/fuzz-corpus").join(target);
        if corpus.exists() {
            std::fs::remove_dir_all(&corpus)?;
        }
        std::fs::create_dir_all(&corpus)?;
        let seed_dir = fuzz_dir.join("seeds").join(seeds);
        let mut count = 0;
        for entry in std::fs::read_dir(&seed_dir)
            .with_context(|| format!("reading {}", seed_dir.display()))?
        {
            let entry = entry?;
            std::fs::copy(entry.path(), corpus.join(entry.file_name()))?;
            count += 1;
        }
        for (relative, bytes) in real {
            let name = format!("vector-{}", relative.replace('/', "-"));
            std::fs::write(corpus.join(name), bytes)?;
        }
        if count == 0 {
            bail!("no committed seeds in {}", seed_dir.display());
        }
        let _dir = sh.push_dir(&fuzz_dir);
        cmd!(sh, "{bin} fuzz build --sanitizer none {target}").run()?;
        let max_time = format!("-max_total_time={SECONDS_PER_TARGET}");
        let started = Instant::now();
        cmd!(
            sh,
            "{bin} fuzz run --sanitizer none {target} {corpus} -- {max_time} -rss_limit_mb=2048 -print_final_stats=1"
        )
        .run()
        .with_context(|| format!("fuzz target {target} failed (see fuzz/artifacts/{target}/)"))?;
        eprintln!(
            "fuzz: {target}: no crash in {:.1?} ({count} committed seeds, {} real vectors)",
            started.elapsed(),
            real.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{attestation_vectors, cms_vectors};

    #[test]
    fn the_real_vectors_join_the_corpus_decoded() {
        let documents = attestation_vectors().unwrap();
        for (name, bytes) in &documents {
            // Untagged COSE_Sign1: the .hex and .b64 files were decoded, not copied as text.
            assert_eq!(bytes.first(), Some(&0x84), "{name}");
        }
        let envelopes = cms_vectors().unwrap();
        assert!(
            envelopes
                .iter()
                .any(|(name, _)| name
                    .ends_with("sdk-c-vector1-chunked/ciphertext-for-recipient.ber")),
            "{:?}",
            envelopes.iter().map(|(name, _)| name).collect::<Vec<_>>()
        );
    }
}
