//! The `fuzz` CI step: build the cargo-fuzz targets in `fuzz/` on the pinned stable toolchain
//! (`--sanitizer none`, so no nightly is needed) and run each for a fixed time on a
//! throw-away corpus made of the committed seeds plus, when present, the shared real vectors.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::{Shell, cmd};

/// The cargo-fuzz release we install (crates.io), pinned for reproducible CI.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Which real vectors from `../shared` join a target's run-time corpus.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shared {
    None,
    Attestation,
    Cms,
}

/// Targets, the seed directory each starts from, and the shared vectors added at run time.
const TARGETS: &[(&str, &str, Shared)] = &[
    ("attestation_parse", "attestation", Shared::Attestation),
    ("attestation_chain", "attestation", Shared::Attestation),
    ("cms_parse", "cms", Shared::Cms),
    ("kms_response", "kms_response", Shared::None),
    ("sigv4_authorization", "sigv4_authorization", Shared::None),
    ("eif_read", "eif", Shared::None),
    ("nsm_codec", "nsm_codec", Shared::None),
    ("http_response", "http_response", Shared::None),
    ("credentials_frame", "credentials_frame", Shared::None),
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

/// The shared CMS vectors (`*.ber`, `*.der`), as extra run-time seeds; never committed.
fn shared_cms_vectors(root: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = std::env::var_os("CCC_SHARED_DIR")
        .map_or_else(|| root.join("../shared"), PathBuf::from)
        .join("kms-cms-vectors");
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ber" || e == "der")
                && let Ok(bytes) = std::fs::read(&path)
            {
                out.push((entry.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
    }
    out
}

/// The real attestation vectors (decoded), as extra run-time seeds; never committed.
fn shared_vectors(root: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = std::env::var_os("CCC_SHARED_DIR")
        .map_or_else(|| root.join("../shared"), PathBuf::from)
        .join("nitro-attestation-vectors");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        for file in ["attestation.bin", "attestation.hex", "attestation.b64"] {
            let path = entry.path().join(file);
            let Ok(raw) = std::fs::read(&path) else {
                continue;
            };
            let bytes = if file.ends_with(".hex") {
                hex::decode(raw.trim_ascii()).ok()
            } else if file.ends_with(".b64") {
                base64::engine::general_purpose::STANDARD
                    .decode(raw.trim_ascii())
                    .ok()
            } else {
                Some(raw)
            };
            if let Some(bytes) = bytes {
                out.push((entry.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
    }
    out
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
    let attestation = shared_vectors(&root);
    let cms = shared_cms_vectors(&root);
    for (target, seeds, shared) in TARGETS {
        let shared = match shared {
            Shared::None => &[][..],
            Shared::Attestation => &attestation[..],
            Shared::Cms => &cms[..],
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
        for (name, bytes) in shared {
            std::fs::write(corpus.join(format!("shared-{name}")), bytes)?;
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
            "fuzz: {target}: no crash in {:.1?} ({count} committed seeds, {} shared vectors)",
            started.elapsed(),
            shared.len()
        );
    }
    Ok(())
}
