//! `cargo ccc`: CCC as a cargo plugin, for any cargo project. `cargo ccc new NAME` writes a
//! standalone project (the enclave template, its parent, their tests) that depends on this
//! CCC; in a project, `release`, `verify-release`, `emulate`, `describe-eif`, `attestation`,
//! `policy` and `explain` are the same commands CCC's own `cargo xtask` runs, from `ccc-build`,
//! `ccc-emulate` and `ccc-lifecycle`.
//!
//! Installed with `cargo install --locked --path cargo-ccc` from a CCC checkout, or
//! `cargo install --locked --git <CCC's repository> cargo-ccc`; cargo then runs it for
//! `cargo ccc ...`.

mod new;
mod origin;

use anyhow::{Context as _, Result};
use ccc_build::cache::Cache;
use ccc_build::project::{Project, Tool};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// `cargo ccc` (cargo passes `ccc` as the first argument).
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo")]
enum Cargo {
    /// Build, release and emulate AWS Nitro Enclave images with CCC.
    #[command(name = "ccc", version, about)]
    Ccc(Cli),
}

#[derive(Debug, clap::Args)]
struct Cli {
    /// The project's Cargo.toml (default: the workspace around the current directory).
    #[arg(long, global = true, value_name = "PATH")]
    manifest_path: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new standalone project in ./NAME: the enclave application and the parent from
    /// CCC's template, their tests (NSM simulator, KMS emulator), a README, and dependencies
    /// on this CCC (by git revision, or by path to a CCC checkout).
    New(new::Args),
    /// Build the project's enclave application into a reproducible EIF, twice in different
    /// directories, and publish release/<V>/ (EIF, PCRs, KMS policy template, manifest,
    /// SHA256SUMS, REPRODUCE.md) only if every byte matches.
    Release(ccc_build::release::Args),
    /// Rebuild a published release from this checkout and compare its PCRs (exit status 1 on
    /// any mismatch).
    VerifyRelease(ccc_build::release::VerifyArgs),
    /// Boot the released EIF under QEMU's nitro-enclave machine (TCG) with the project's
    /// parent and the KMS emulator, compare the guest's PCRs with the published ones and run
    /// the attested key release (`--scenario tampered`: one byte of the app changed, KMS must
    /// refuse). Prints a transcript and the verdict.
    Emulate(ccc_emulate::Args),
    /// Validate an enclave image (EIF) and print its PCRs and metadata as the
    /// `nitro-cli describe-eif` JSON.
    DescribeEif(ccc_build::describe::Args),
    /// Inspect and verify NSM attestation documents.
    #[command(subcommand)]
    Attestation(ccc_build::attestation::Command),
    /// KMS key policies: `policy check FILE` lints one; `policy render|diff|apply --env NAME`
    /// writes an environment's policies (deploy/environments.toml), compares them with the
    /// live key policy and applies them (exit 1 on findings, differences or refusal, 2 on bad
    /// input).
    Policy(ccc_lifecycle::policy::Args),
    /// What KMS would decide for a request and why, statement by statement: `explain
    /// --document FILE --policy FILE --principal ARN --operation OP [--context K=V]... [--at
    /// TIME]` (`--enclave vsock://CID:PORT` and `--env NAME` replace the first two). Exit 0
    /// allowed, 1 denied, 2 bad input.
    Explain(Box<ccc_lifecycle::explain::Args>),
}

fn main() -> std::process::ExitCode {
    let Cargo::Ccc(cli) = Cargo::parse();
    // `policy` and `explain` tell a refusal (1) from bad input (2).
    match &cli.command {
        Command::Policy(args) => {
            let context = ccc_lifecycle::Context::new(lifecycle_root(&cli));
            let code = ccc_lifecycle::policy::run(&context, args, &mut std::io::stdout());
            return std::process::ExitCode::from(code);
        }
        Command::Explain(args) => {
            let context = ccc_lifecycle::Context::new(lifecycle_root(&cli));
            let code = ccc_lifecycle::explain::run(&context, args, &mut std::io::stdout());
            return std::process::ExitCode::from(code);
        }
        _ => {}
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::New(args) => new::run(args)?,
        Command::Release(args) => ccc_build::release::run(&project(&cli)?, args).map(drop)?,
        Command::VerifyRelease(args) => ccc_build::release::verify(&project(&cli)?, args)?,
        Command::Emulate(args) => ccc_emulate::run(&project(&cli)?, args)?,
        Command::DescribeEif(args) => ccc_build::describe::run(args)?,
        Command::Attestation(command) => ccc_build::attestation::run(command)?,
        // `main` runs these itself, for their exit codes.
        Command::Policy(_) | Command::Explain(_) => {}
    }
    Ok(())
}

/// The program as EIF metadata and rebuild instructions name it.
fn tool() -> Tool {
    Tool {
        name: "cargo-ccc".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        command: "cargo ccc".to_owned(),
    }
}

/// Where `policy` and `explain` find `deploy/environments.toml` and
/// `release/pcr-expectations.json` by default: the project's root, or, outside a project
/// (`policy check FILE` needs neither file), the directory of `--manifest-path` or the current
/// one; `--environments` and `--expectations` name them explicitly.
fn lifecycle_root(cli: &Cli) -> PathBuf {
    let dir = manifest_dir(cli).unwrap_or_else(|_| PathBuf::from("."));
    match Cache::from_env().and_then(|cache| Project::load(&dir, tool(), cache)) {
        Ok(project) => project.root,
        Err(_) => dir,
    }
}

/// The directory of `--manifest-path`, or the current one.
fn manifest_dir(cli: &Cli) -> Result<PathBuf> {
    Ok(match &cli.manifest_path {
        Some(path) => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        },
        None => std::env::current_dir().context("cannot read the current directory")?,
    })
}

/// The project around the current directory (or `--manifest-path`), after checking that this
/// `cargo-ccc` is the CCC the project depends on.
fn project(cli: &Cli) -> Result<Project> {
    let dir = manifest_dir(cli)?;
    let project = Project::load(&dir, tool(), Cache::from_env()?)?;
    origin::check_matches(&project)?;
    Ok(project)
}
