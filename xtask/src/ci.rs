//! `cargo xtask ci`: every check CI runs, in order, each counted once. A failed step does not
//! stop the run (so one run reports everything); the last line is `ci: N passed, M failed`
//! and the exit status is non-zero if any step failed.

use anyhow::{Result, bail};
use std::time::Instant;
use xshell::{Shell, cmd};

/// Options for `cargo xtask ci`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Run only the steps whose names contain one of these words (repeatable).
    #[arg(long = "only", value_name = "STEP")]
    only: Vec<String>,
    /// Skip the steps whose names contain one of these words (repeatable).
    #[arg(long = "skip", value_name = "STEP")]
    skip: Vec<String>,
    /// List the steps and exit.
    #[arg(long)]
    list: bool,
}

/// One CI step: a name and the function that runs it.
struct Step {
    name: &'static str,
    run: fn(&Shell) -> Result<()>,
}

fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "setup",
            run: |_| crate::setup::ensure_base(),
        },
        Step {
            name: "fmt",
            run: |sh| Ok(cmd!(sh, "cargo fmt --all -- --check").run()?),
        },
        Step {
            name: "clippy",
            run: |sh| {
                Ok(cmd!(
                    sh,
                    "cargo clippy --workspace --all-targets --locked -- -D warnings"
                )
                .run()?)
            },
        },
        Step {
            name: "test",
            run: |sh| Ok(cmd!(sh, "cargo test --workspace --locked").run()?),
        },
        Step {
            // The SDK's simulator tests (NSM semantics, simulator → verifier round trip),
            // selected explicitly rather than only through workspace feature unification.
            name: "test-simulator",
            run: |sh| {
                Ok(cmd!(
                    sh,
                    "cargo test -p ccc-sdk --features simulator --locked --lib --test simulator_roundtrip --test kms_attested"
                )
                .run()?)
            },
        },
        Step {
            name: "init-static",
            run: |_| {
                let path = crate::init::build()?;
                eprintln!(
                    "ccc-init: static, {} bytes",
                    std::fs::metadata(&path)?.len()
                );
                Ok(())
            },
        },
        Step {
            // A whole release into a scratch directory (never release/): both passes must be
            // byte-identical, then SHA256SUMS, the EIF's PCRs, the SDK's policy loader and the
            // key policy are checked. Builds the kernel on a fresh machine (cached after).
            name: "release-reproducible",
            run: |_| crate::release::checks::reproducible(),
        },
        Step {
            // Another application (`--app ccc-init --example nsm_probe`) through the same
            // pipeline: same PCR1 as the template, different PCR2.
            name: "release-other-app",
            run: |_| crate::release::checks::other_app(),
        },
        Step {
            // The release image under QEMU's nitro-enclave machine (TCG): PCRs as published
            // (or, loudly, as this checkout builds them), attestation, the sealed secret
            // released by the KMS emulator and proven with an HMAC. Builds QEMU,
            // vhost-device-vsock and the image on a fresh machine (cached after).
            name: "emulate-default",
            run: |sh| emulate(sh, "default"),
        },
        Step {
            // One byte of the application changed: other PCR2, KMS refuses with AccessDenied
            // naming the PCR, and the enclave reports it.
            name: "emulate-tampered",
            run: |sh| emulate(sh, "tampered"),
        },
        Step {
            name: "no-std",
            run: |sh| Ok(cmd!(sh, "cargo check -p ccc-sdk --no-default-features --locked").run()?),
        },
        Step {
            name: "fuzz",
            run: crate::fuzz::smoke,
        },
    ]
}

/// `cargo xtask emulate --scenario NAME`, as its own process (it owns the signal handlers
/// and tears its processes down on its own).
fn emulate(sh: &Shell, scenario: &str) -> Result<()> {
    let xtask = std::env::current_exe()?;
    Ok(cmd!(sh, "{xtask} emulate --scenario {scenario}").run()?)
}

fn selected(name: &str, args: &Args) -> bool {
    (args.only.is_empty() || args.only.iter().any(|w| name.contains(w.as_str())))
        && !args.skip.iter().any(|w| name.contains(w.as_str()))
}

/// Runs the selected steps and prints the summary line.
///
/// # Errors
/// If any step failed (after all steps ran).
pub(crate) fn run(args: &Args) -> Result<()> {
    let all = steps();
    if args.list {
        for step in &all {
            println!("{}", step.name);
        }
        return Ok(());
    }
    let sh = Shell::new()?;
    sh.change_dir(crate::workspace_root());
    let started = Instant::now();
    let (mut passed, mut failed) = (0usize, Vec::new());
    for step in all.iter().filter(|s| selected(s.name, args)) {
        eprintln!("\n== ci: {} ==", step.name);
        let t = Instant::now();
        match (step.run)(&sh) {
            Ok(()) => {
                passed += 1;
                eprintln!("== ci: {} passed in {:.1?}", step.name, t.elapsed());
            }
            Err(e) => {
                failed.push(step.name);
                eprintln!("== ci: {} FAILED in {:.1?}: {e:#}", step.name, t.elapsed());
            }
        }
    }
    eprintln!("\nci: total {:.1?}", started.elapsed());
    if !failed.is_empty() {
        eprintln!("ci: failed steps: {}", failed.join(", "));
    }
    println!("ci: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{} CI step(s) failed", failed.len())
    }
}
