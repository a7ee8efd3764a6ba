//! `cargo xtask ci`: every check CI runs, in order, each counted once. A failed step does not
//! stop the run (so one run reports everything); the last line is `ci: N passed, M failed`
//! and the exit status is non-zero if any step failed.

use anyhow::{Context, Result};
use ccc_build::project::AppSpec;
use std::path::PathBuf;
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

/// An integration test `cargo test --workspace` leaves out (`test = false` in its manifest,
/// so the plain command runs offline and quickly): it runs in the step named here.
#[derive(Debug, Clone, Copy)]
struct OptInTest {
    /// The test target (`tests/<name>.rs` of one of the workspace's packages).
    name: &'static str,
    /// The CI step that runs it.
    step: &'static str,
}

/// Every opt-in test (the tidy test checks this list against the manifests).
const OPT_IN_TESTS: &[OptInTest] = &[
    // Peers installed from a package registry on a first run (under target/tools or a venv):
    // ccc-tests, ccc-sdk, ccc-emulator, ccc-eif.
    OptInTest {
        name: "moto_interop",
        step: "test-peers",
    },
    OptInTest {
        name: "moto_policy",
        step: "test-peers",
    },
    OptInTest {
        name: "kms_botocore",
        step: "test-peers",
    },
    OptInTest {
        name: "botocore_peer",
        step: "test-peers",
    },
    OptInTest {
        name: "peer_eif_build",
        step: "test-peers",
    },
    // A project made by `cargo ccc new` outside the workspace, built offline under its own
    // names (a whole second build of the template; cargo-ccc).
    OptInTest {
        name: "scaffold",
        step: "test-scaffold",
    },
    // QEMU boots of the release image (QEMU and the kernel are built on a cold machine;
    // xtask).
    OptInTest {
        name: "emulate_teardown",
        step: "emulate-teardown",
    },
];

/// Runs the opt-in tests of `step` in one `cargo test --workspace` (so the features, and the
/// build, are the `test` step's).
fn opt_in_tests(sh: &Shell, step: &str) -> Result<()> {
    let targets = OPT_IN_TESTS
        .iter()
        .filter(|t| t.step == step)
        .flat_map(|t| ["--test", t.name]);
    Ok(cmd!(sh, "cargo test --workspace --locked {targets...}").run()?)
}

fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "setup",
            run: |_| crate::setup(),
        },
        Step {
            name: "fmt",
            run: |sh| Ok(cmd!(sh, "cargo fmt --all -- --check").run()?),
        },
        Step {
            // `--all-targets` leaves out `test = false` targets: they are named.
            name: "clippy",
            run: |sh| {
                let opt_in = OPT_IN_TESTS.iter().flat_map(|t| ["--test", t.name]);
                Ok(cmd!(
                    sh,
                    "cargo clippy --workspace --all-targets {opt_in...} --locked -- -D warnings"
                )
                .run()?)
            },
        },
        Step {
            // Offline and quick: what a contributor runs (`cargo test --workspace`).
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
            // Our KMS client, codec and emulator against moto and botocore, our EIF writer
            // against AWS's eif_build: each installed from its registry on a first run.
            name: "test-peers",
            run: |sh| opt_in_tests(sh, "test-peers"),
        },
        Step {
            // `cargo ccc new`'s project builds offline outside the workspace and its enclave
            // binary refuses to start without /dev/nsm (the README's plugin story, without the
            // kernel and QEMU the `plugin` step needs).
            name: "test-scaffold",
            run: |sh| opt_in_tests(sh, "test-scaffold"),
        },
        Step {
            // Every published key-policy and IAM-policy template from 0.2.0 on, and the ones
            // the release tool writes today, through `cargo xtask policy check`'s linter.
            name: "policy-check",
            run: |_| crate::policy::ci_step(),
        },
        Step {
            // deploy/alarms.yaml through AWS's CloudFormation linter (installed from PyPI into
            // target/tools on a first run).
            name: "cfn-lint",
            run: |_| crate::cfn_lint::ci_step(),
        },
        Step {
            name: "init-static",
            run: |_| {
                let path = ccc_build::init::build(&crate::workspace_root())?;
                eprintln!(
                    "ccc-init: static, {} bytes",
                    std::fs::metadata(&path)?.len()
                );
                Ok(())
            },
        },
        Step {
            // The kernel patches (kernel-config/patches/) apply exactly to the pinned Debian
            // source and remove what they say (`absent_after`), without building the kernel.
            name: "kernel-patches",
            run: |_| {
                Ok(ccc_build::kernel::check_patches(
                    &crate::workspace_root(),
                    &ccc_build::cache::Cache::from_env()?,
                )?)
            },
        },
        Step {
            // A whole release into a scratch directory (never release/): both passes must be
            // byte-identical, then SHA256SUMS, the EIF's PCRs, the SDK's policy loader and the
            // key policy are checked. Builds the kernel on a fresh machine (cached after).
            name: "release-reproducible",
            run: |_| Ok(ccc_build::release::checks::reproducible(&crate::project()?)?),
        },
        Step {
            // Another application (`--app ccc-init --example nsm_probe`) through the same
            // pipeline: same PCR1 as the template, different PCR2.
            name: "release-other-app",
            run: |_| {
                let nsm_probe = AppSpec::example("ccc-init", "nsm_probe");
                Ok(ccc_build::release::checks::other_app(
                    &crate::project()?,
                    &nsm_probe,
                )?)
            },
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
            // `cargo xtask emulate` stopped by SIGTERM, SIGINT and SIGKILL leaves no process
            // and no run directory behind (QEMU boots; after the emulate steps, which build
            // what they need).
            name: "emulate-teardown",
            run: |sh| opt_in_tests(sh, "emulate-teardown"),
        },
        Step {
            // CCC from a cargo project outside this workspace: the README's "Build your own
            // enclave" block as written (install cargo-ccc, `cargo ccc new`, an app change,
            // release, emulate, the project's tests), then the same commit released from a
            // second path with another cache location (identical files) and emulated tampered.
            name: "plugin",
            run: |_| crate::plugin::run(),
        },
        Step {
            // The SDK's core (and ccc-cmdline) for a target that has no std at all (`cargo
            // check` on the host would let a dependency that needs std through).
            name: "no-std",
            run: |sh| {
                let target = ccc_build::host::NO_STD_TARGET;
                Ok(cmd!(
                    sh,
                    "cargo build -p ccc-sdk -p ccc-cmdline --no-default-features --target {target} --locked"
                )
                .run()?)
            },
        },
        Step {
            name: "fuzz",
            run: crate::fuzz::smoke,
        },
    ]
}

/// A copy of this xtask binary, made when `ci` starts: the `test` step rebuilds
/// target/debug/xtask (the integration tests need it, with the dev-dependencies' features), so
/// by the emulate steps the running binary's path names a deleted file.
static OWN_BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Copies the running binary to a temporary path for the later steps; removed by [`run`].
fn keep_own_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running xtask binary")?;
    let copy = std::env::temp_dir().join(format!("ccc-ci-xtask-{}", std::process::id()));
    std::fs::copy(&exe, &copy)
        .with_context(|| format!("cannot copy {} to {}", exe.display(), copy.display()))?;
    Ok(copy)
}

/// `cargo xtask emulate --scenario NAME`, as its own process (it owns the signal handlers
/// and tears its processes down on its own), run from the copy [`run`] made.
fn emulate(sh: &Shell, scenario: &str) -> Result<()> {
    let xtask = match OWN_BINARY.get() {
        Some(copy) => copy.clone(),
        None => std::env::current_exe()?,
    };
    Ok(cmd!(sh, "{xtask} emulate --scenario {scenario}").run()?)
}

fn selected(name: &str, args: &Args) -> bool {
    (args.only.is_empty() || args.only.iter().any(|w| name.contains(w.as_str())))
        && !args.skip.iter().any(|w| name.contains(w.as_str()))
}

/// Runs the selected steps and prints the summary line, the last line of the output (hence
/// an exit code rather than an error: nothing is printed after it).
///
/// # Errors
/// Only before the first step (no shell, the binary cannot be copied).
pub(crate) fn run(args: &Args) -> Result<std::process::ExitCode> {
    let all = steps();
    if args.list {
        for step in &all {
            println!("{}", step.name);
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let sh = Shell::new()?;
    sh.change_dir(crate::workspace_root());
    if all
        .iter()
        .any(|s| s.name.starts_with("emulate") && selected(s.name, args))
    {
        let _ = OWN_BINARY.set(keep_own_binary()?);
    }
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
    if let Some(copy) = OWN_BINARY.get() {
        let _ = std::fs::remove_file(copy);
    }
    println!("ci: {passed} passed, {} failed", failed.len());
    Ok(if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
