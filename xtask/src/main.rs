//! `cargo xtask`: CCC's repository commands. The product commands (release, verify-release,
//! emulate, describe-eif, attestation, policy, kernel, qemu) are the same modules `cargo ccc` runs,
//! from `ccc-build` and `ccc-emulate`, applied to this repository as a project (its
//! `[workspace.metadata.ccc]`: the enclave template); the repository-only ones (ci, fuzz,
//! bench, setup, the NSM/CMS/SigV4 developer tools, the KMS emulator) live here, one module
//! each. Commands run through `xshell` or `std::process::Command` (arguments are never
//! interpolated into a shell string).

mod bench_boot;
mod cfn_lint;
mod ci;
mod cms;
mod fuzz;
mod kms_emulator;
mod nsm;
mod plugin;
mod policy;
mod sigv4;

use anyhow::Result;
use ccc_build::cache::Cache;
use ccc_build::project::{Project, Tool};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "CCC's build, release, emulation and CI tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every check CI runs (formatting, clippy, tests, no_std, fuzz smoke, ...) and print
    /// `ci: N passed, M failed`. Installs what it needs as root, or names the command to run.
    Ci(ci::Args),
    /// Build the enclave template (or --app CRATE) into a reproducible EIF, twice in different
    /// directories, and publish release/<V>/ (EIF, PCRs, KMS policy template, manifest,
    /// SHA256SUMS, REPRODUCE.md) only if every byte matches.
    Release(ccc_build::release::Args),
    /// Rebuild a published release from this checkout and compare its PCRs (exit status 1 on
    /// any mismatch).
    VerifyRelease(ccc_build::release::VerifyArgs),
    /// NSM developer tools: `nsm simulate-attestation --out FILE` writes a document signed by
    /// the simulator's development chain (not AWS) and that chain's root.
    Nsm(nsm::Args),
    /// Inspect and verify NSM attestation documents.
    #[command(subcommand)]
    Attestation(ccc_build::attestation::Command),
    /// Validate an enclave image (EIF) and print its PCRs and metadata as the
    /// `nitro-cli describe-eif` JSON. Malformed files fail with the byte offset and reason.
    DescribeEif(ccc_build::describe::Args),
    /// Debug KMS CiphertextForRecipient envelopes (decrypt with the enclave key).
    Cms(cms::Args),
    /// Debug SigV4: sign a request file and print the intermediate strings.
    Sigv4(sigv4::Args),
    /// Install or check the host prerequisites (apt packages, the musl target, ...).
    Setup {
        /// Also build/install the emulation tools: QEMU with the nitro-enclave machine and
        /// vhost-device-vsock (as `cargo xtask qemu`).
        #[arg(long)]
        emulation: bool,
    },
    /// Build the enclave kernel (bzImage) reproducibly from the pinned Debian source and
    /// kernel-config/, cached per user (~/.cache/ccc/kernel/); prints its path and SHA-256.
    Kernel(ccc_build::kernel::Args),
    /// Build/install QEMU with the nitro-enclave machine and vhost-device-vsock (cached per
    /// user, ~/.cache/ccc/tools/), or boot an EIF with them.
    Qemu(ccc_build::boot::Args),
    /// Boot the released EIF under QEMU's nitro-enclave machine (TCG) with the parent side
    /// and the KMS emulator, compare the guest's PCRs with the published ones and run the
    /// attested key release (`--scenario tampered`: one byte of the app changed, KMS must
    /// refuse). Prints a transcript and the verdict; tears everything down, also on Ctrl-C.
    Emulate(ccc_emulate::Args),
    /// KMS key policies: `policy check FILE` lints one; `policy render|diff|apply --env NAME`
    /// writes an environment's policies, compares them with the live key policy and applies
    /// them (exit 1 on findings, differences or refusal, 2 on bad input).
    Policy(ccc_lifecycle::policy::Args),
    /// What KMS would decide for a request and why, statement by statement: `explain
    /// --document FILE --policy FILE --principal ARN --operation OP [--context K=V]... [--at
    /// TIME]` (`--enclave vsock://CID:PORT` and `--env NAME` replace the first two). Exit 0
    /// allowed, 1 denied, 2 bad input.
    Explain(Box<ccc_lifecycle::explain::Args>),
    /// Run the KMS emulator (HTTPS on 127.0.0.1, SigV4, Recipient, key policies) in the
    /// foreground; prints the endpoint, the CA to trust, credentials and the default key.
    KmsEmulator(kms_emulator::Args),
    /// Run every cargo-fuzz target (or `--target NAME`) for `--minutes N` each, one after the
    /// other, and print executions, exec/s and crashes per target as a Markdown table (the
    /// README's long-run record). CI runs the short smoke instead (`ci --only fuzz`).
    Fuzz(fuzz::Args),
    /// Run a side-by-side benchmark against its peers and print ratios. `boot` (boot → first
    /// attestation under QEMU, template vs a one-line-init reference) runs here in the xtask;
    /// the others run in `ccc-bench`.
    Bench {
        /// Which benchmark (`boot`, or see `ccc-bench` for the list).
        name: String,
        /// Options of the benchmark (`cargo xtask bench boot --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `ci` decides its exit code itself: its summary line must stay the last line printed;
    // `policy` and `explain` tell a refusal (1) from bad input (2).
    let context = ccc_lifecycle::Context::new(workspace_root());
    let result =
        match &cli.command {
            Command::Ci(args) => ci::run(args),
            Command::Policy(args) => Ok(std::process::ExitCode::from(ccc_lifecycle::policy::run(
                &context,
                args,
                &mut std::io::stdout(),
            ))),
            Command::Explain(args) => Ok(std::process::ExitCode::from(
                ccc_lifecycle::explain::run(&context, args, &mut std::io::stdout()),
            )),
            _ => run(cli).map(|()| std::process::ExitCode::SUCCESS),
        };
    match result {
        Ok(code) => code,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = workspace_root();
    match cli.command {
        // `main` calls `ci::run` itself, for its exit code.
        Command::Ci(args) => ci::run(&args).map(drop)?,
        // `main` runs these itself, for their exit codes.
        Command::Policy(_) | Command::Explain(_) => {}
        Command::Release(args) => ccc_build::release::run(&project()?, &args).map(drop)?,
        Command::VerifyRelease(args) => ccc_build::release::verify(&project()?, &args)?,
        Command::Nsm(args) => nsm::run(&args)?,
        Command::Attestation(command) => ccc_build::attestation::run(&command)?,
        Command::DescribeEif(args) => ccc_build::describe::run(&args)?,
        Command::Cms(args) => cms::run(&args)?,
        Command::Sigv4(args) => sigv4::run(&args)?,
        Command::Setup { emulation } => {
            setup()?;
            if emulation {
                ccc_build::boot::run(&Cache::from_env()?, &root, &ccc_build::boot::Args::tools())?;
            }
        }
        Command::Kernel(args) => ccc_build::kernel::run(&root, &Cache::from_env()?, &args)?,
        Command::Qemu(args) => ccc_build::boot::run(&Cache::from_env()?, &root, &args)?,
        Command::KmsEmulator(args) => kms_emulator::run(&args)?,
        Command::Emulate(args) => ccc_emulate::run(&project()?, &args)?,
        Command::Fuzz(args) => fuzz::run(&args)?,
        Command::Bench { name, options } if name == "boot" => {
            bench_boot::run(&project()?, &options)?;
        }
        Command::Bench { name, options } => {
            if name == "proxy" {
                // The proxy is timed side by side with socat (installed as root, or the
                // command to run is named).
                ccc_build::host::ensure_packages(&["socat"], None)?;
            }
            let sh = xshell::Shell::new()?;
            sh.change_dir(&root);
            xshell::cmd!(
                sh,
                "cargo run --quiet --locked --profile bench -p ccc-bench -- {name} {options...}"
            )
            .run()?;
        }
    }
    Ok(())
}

/// The workspace root (the directory holding the top-level Cargo.toml).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), std::path::Path::to_path_buf)
}

/// Everything the workspace build and the default tests need, and the no_std check's target.
///
/// # Errors
/// A prerequisite is missing and cannot be installed (the error names the command).
pub(crate) fn setup() -> Result<()> {
    let root = workspace_root();
    ccc_build::host::ensure_base(&root)?;
    Ok(ccc_build::host::ensure_target(
        &root,
        ccc_build::host::NO_STD_TARGET,
    )?)
}

/// This repository as a project: the enclave template, built by `cargo xtask` (the EIF
/// metadata's `BuildTool`), with the per-user cache.
///
/// # Errors
/// The cache cannot be located, or `cargo metadata` fails.
pub(crate) fn project() -> Result<Project> {
    let tool = Tool {
        name: "ccc-xtask".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        command: "cargo xtask".to_owned(),
    };
    Ok(Project::load(&workspace_root(), tool, Cache::from_env()?)?)
}
