//! The cargo-fuzz targets in `fuzz/`, built on the pinned stable toolchain (`--sanitizer
//! none`, so no nightly is needed), each run on a throw-away corpus made of the committed seeds
//! plus the real vectors of `tests/vectors`: the `fuzz` CI step ([`smoke`], 20 s per target)
//! and `cargo xtask fuzz --minutes N` ([`run`], the long campaign before a release, which
//! prints executions, executions per second and crashes per target as a Markdown table).

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use xshell::{Shell, cmd};

/// `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Minutes per target (every target runs this long, one after the other, one job each).
    #[arg(long)]
    minutes: u64,
    /// Only these targets (default: all; see `fuzz/fuzz_targets/`).
    #[arg(long = "target")]
    targets: Vec<String>,
}

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
    ("template_request", "template_request", RealVectors::None),
    ("sealed_blob", "sealed_blob", RealVectors::None),
    ("allowlist_parse", "allowlist_parse", RealVectors::None),
    ("http_connect", "http_connect", RealVectors::None),
];
/// Long enough for libFuzzer to get past the seeds into mutations; short enough that the
/// thirteen targets add about five minutes to CI.
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

/// What libFuzzer reported for one target (its `-print_final_stats=1` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stats {
    /// `stat::number_of_executed_units`.
    executions: u64,
    /// `stat::average_exec_per_sec`.
    per_second: u64,
    /// 1 when libFuzzer stopped on a crash (it stops at the first), else 0.
    crashes: u32,
    /// Wall-clock seconds the run took.
    seconds: u64,
}

/// The final statistics in libFuzzer's output (`stat::NAME: VALUE` lines).
fn final_stat(output: &str, name: &str) -> Option<u64> {
    output.lines().rev().find_map(|line| {
        line.strip_prefix("stat::")
            .and_then(|rest| rest.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
    })
}

/// Builds the corpus of `target` (seeds plus real vectors) and runs it for `seconds`; libFuzzer's
/// output goes to `target/fuzz-logs/<target>.log`.
///
/// # Errors
/// If the corpus cannot be made, the build or the run cannot start, or libFuzzer prints no
/// final statistics. A crash is not an error here: it is counted in [`Stats::crashes`].
fn run_target(
    sh: &Shell,
    bin: &Path,
    (target, seeds, real): (&str, &str, &[(String, Vec<u8>)]),
    seconds: u64,
) -> Result<Stats> {
    let root = crate::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let corpus = root.join("target/fuzz-corpus").join(target);
    if corpus.exists() {
        std::fs::remove_dir_all(&corpus)?;
    }
    std::fs::create_dir_all(&corpus)?;
    let seed_dir = fuzz_dir.join("seeds").join(seeds);
    let mut count = 0;
    for entry in
        std::fs::read_dir(&seed_dir).with_context(|| format!("reading {}", seed_dir.display()))?
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
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let status = Command::new(bin)
        .current_dir(&fuzz_dir)
        .args(["fuzz", "run", "--sanitizer", "none", target])
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .with_context(|| format!("running fuzz target {target}"))?;
    let elapsed = started.elapsed().as_secs();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let executions = final_stat(&output, "number_of_executed_units").with_context(|| {
        format!(
            "fuzz target {target} printed no final statistics (exit {status}); see {}",
            log_path.display()
        )
    })?;
    let stats = Stats {
        executions,
        per_second: final_stat(&output, "average_exec_per_sec").unwrap_or(0),
        crashes: u32::from(!status.success()),
        seconds: elapsed,
    };
    eprintln!(
        "fuzz: {target}: {} executions in {elapsed} s ({} exec/s), {} ({count} committed seeds, \
         {} real vectors; log {})",
        stats.executions,
        stats.per_second,
        if stats.crashes == 0 {
            "no crash".to_owned()
        } else {
            format!("CRASH: input under fuzz/artifacts/{target}/")
        },
        real.len(),
        log_path.display()
    );
    Ok(stats)
}

/// Runs the `selected` targets (all when empty) `seconds` each; returns each one's stats.
///
/// # Errors
/// An unknown target name, or any [`run_target`] error.
fn run_all(sh: &Shell, selected: &[String], seconds: u64) -> Result<Vec<(&'static str, Stats)>> {
    for name in selected {
        ensure!(
            TARGETS.iter().any(|(target, _, _)| target == name),
            "unknown fuzz target `{name}`; targets: {}",
            TARGETS
                .iter()
                .map(|(target, _, _)| *target)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let root = crate::workspace_root();
    let bin = cargo_fuzz(sh, &root)?;
    let attestation = attestation_vectors()?;
    let cms = cms_vectors()?;
    let mut results = Vec::new();
    for &(target, seeds, real) in TARGETS {
        if !selected.is_empty() && !selected.iter().any(|name| name == target) {
            continue;
        }
        let real = match real {
            RealVectors::None => &[][..],
            RealVectors::Attestation => &attestation[..],
            RealVectors::Cms => &cms[..],
        };
        results.push((
            target,
            run_target(sh, &bin, (target, seeds, real), seconds)?,
        ));
    }
    Ok(results)
}

/// The results as a Markdown table (the README's form).
fn table(results: &[(&str, Stats)]) -> String {
    let mut out = String::from(
        "| target | executions | exec/s | crashes | seconds |\n|---|---:|---:|---:|---:|\n",
    );
    for (target, stats) in results {
        out.push_str(&format!(
            "| `{target}` | {} | {} | {} | {} |\n",
            stats.executions, stats.per_second, stats.crashes, stats.seconds
        ));
    }
    out
}

/// Runs every fuzz target for [`SECONDS_PER_TARGET`] seconds.
///
/// # Errors
/// If installing or building fails, or a target finds a crash (libFuzzer exits non-zero and
/// leaves the input under `fuzz/artifacts/`).
pub(crate) fn smoke(sh: &Shell) -> Result<()> {
    let results = run_all(sh, &[], SECONDS_PER_TARGET)?;
    let crashed: Vec<&str> = results
        .iter()
        .filter(|(_, stats)| stats.crashes > 0)
        .map(|(target, _)| *target)
        .collect();
    ensure!(
        crashed.is_empty(),
        "fuzz targets crashed: {} (inputs under fuzz/artifacts/<target>/)",
        crashed.join(", ")
    );
    Ok(())
}

/// `cargo xtask fuzz --minutes N`: every target (or `--target`s) N minutes each, one after the
/// other; prints the table of executions, exec/s and crashes on stdout.
///
/// # Errors
/// As [`smoke`]; the table is printed before a crash is reported.
pub(crate) fn run(args: &Args) -> Result<()> {
    ensure!(args.minutes > 0, "--minutes must be at least 1");
    let sh = Shell::new()?;
    let results = run_all(&sh, &args.targets, args.minutes.saturating_mul(60))?;
    print!("{}", table(&results));
    let crashed: Vec<&str> = results
        .iter()
        .filter(|(_, stats)| stats.crashes > 0)
        .map(|(target, _)| *target)
        .collect();
    ensure!(
        crashed.is_empty(),
        "fuzz targets crashed: {} (inputs under fuzz/artifacts/<target>/; commit each as a \
         regression seed once fixed)",
        crashed.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Stats, TARGETS, attestation_vectors, cms_vectors, final_stat, table};

    #[test]
    fn final_statistics_are_read_from_libfuzzers_output() {
        let output = "#2097152 pulse  cov: 812 ft: 2931 corp: 310/21Kb exec/s: 69905\n\
                      Done 2236000 runs in 31 second(s)\n\
                      stat::number_of_executed_units: 2236000\n\
                      stat::average_exec_per_sec:     72129\n\
                      stat::new_units_added:          312\n";
        assert_eq!(
            final_stat(output, "number_of_executed_units"),
            Some(2_236_000)
        );
        assert_eq!(final_stat(output, "average_exec_per_sec"), Some(72_129));
        assert_eq!(final_stat(output, "slowest_unit_time_sec"), None);
        assert_eq!(
            final_stat("no stats here", "number_of_executed_units"),
            None
        );
        let shown = table(&[(
            "sealed_blob",
            Stats {
                executions: 2_236_000,
                per_second: 72_129,
                crashes: 0,
                seconds: 31,
            },
        )]);
        assert!(
            shown.contains("| `sealed_blob` | 2236000 | 72129 | 0 | 31 |"),
            "{shown}"
        );
    }

    #[test]
    fn every_target_has_committed_seeds_and_a_source() {
        let fuzz = crate::workspace_root().join("fuzz");
        for (target, seeds, _) in TARGETS {
            assert!(
                fuzz.join("fuzz_targets")
                    .join(format!("{target}.rs"))
                    .is_file(),
                "{target}"
            );
            let count = std::fs::read_dir(fuzz.join("seeds").join(seeds))
                .map(Iterator::count)
                .unwrap_or(0);
            assert!(count > 0, "{target}: no seeds in fuzz/seeds/{seeds}");
        }
        let sources = std::fs::read_dir(fuzz.join("fuzz_targets"))
            .unwrap()
            .count();
        assert_eq!(
            sources,
            TARGETS.len(),
            "a target in fuzz/fuzz_targets is not in TARGETS"
        );
    }

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
