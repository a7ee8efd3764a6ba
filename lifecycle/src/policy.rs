//! `policy check|render|diff|apply`: a key policy linted, an environment's policies written,
//! compared with the live one (`GetKeyPolicy`) and applied (`PutKeyPolicy`).
//!
//! Exit status: `check` 0 without findings, 1 with; `render` 0; `diff` 0 when the live policy
//! is the wanted one, 1 when they differ; `apply` 0 when applied (or nothing to apply, or
//! without `--yes`: the diff only), 1 when the policy is refused (it fails `policy check`,
//! would lock out administration, or lets staging/production accept debug mode). Every
//! command exits 2 on bad input, naming what to fix.

use crate::files::{self, Files};
use crate::kms::{self, KmsOptions};
use crate::{Context, Error};
use ccc_policy::environment::{Environment, EnvironmentsError};
use ccc_policy::expectations::Expectations;
use ccc_policy::{Policy, check, diff};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `policy ...` with the files it reads.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Where the environments and releases are.
    #[command(flatten)]
    pub files: Files,
}

/// The policy commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Lint a KMS key policy or IAM policy: an Allow of Decrypt/GenerateDataKey/... without
    /// attestation conditions, case-sensitive operators or upper-case, all-zero or malformed
    /// PCR values, wildcard principals, kms:* to the enclave's role, PCR2-only pinning, key
    /// administration through the account root, secret requests only implicitly denied, an
    /// enclave role not denied policy and grant changes, Encrypt with the enclave's sealing
    /// context, nobody left to change the policy, debug-mode documents allowed. Exit 1 with
    /// one line per finding, 2 if FILE is unreadable or not a policy.
    Check {
        /// The policy document (JSON), e.g. deploy/policies/production/key-policy.json.
        file: PathBuf,
        /// Judge it with this environment's options (a development environment with
        /// accept_debug_mode admits all-zero PCRs).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
    /// Write an environment's key policy and IAM policy (one attested Allow per allowed
    /// release, or a PCR8 signer pin; the explicit Denies admit exactly those) to
    /// deploy/policies/<NAME>/, and record in release/pcr-expectations.json which
    /// environments allow each release.
    Render {
        /// The environment (a table of deploy/environments.toml).
        #[arg(long, value_name = "NAME")]
        env: String,
        /// Write into this directory instead of deploy/policies/<NAME>/ (next to the
        /// environments file).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Compare the key's live policy (GetKeyPolicy, signed with the usual credentials chain)
    /// with the one the environment wants: releases and PCRs added or removed, statements
    /// changed. Exit 1 when they differ.
    Diff {
        /// The environment.
        #[arg(long, value_name = "NAME")]
        env: String,
        /// Where KMS is.
        #[command(flatten)]
        kms: KmsOptions,
    },
    /// Show the diff, then (with --yes) PutKeyPolicy the environment's key policy. Refuses a
    /// policy that fails `policy check`, would lock out the key administrator, or lets
    /// staging or production accept debug mode.
    Apply {
        /// The environment.
        #[arg(long, value_name = "NAME")]
        env: String,
        /// Apply; without it, only the diff is shown.
        #[arg(long)]
        yes: bool,
        /// Apply this reviewed document instead of the rendered policy (it passes the same
        /// checks).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Where KMS is.
        #[command(flatten)]
        kms: KmsOptions,
    },
}

/// Runs the command; errors are printed on stderr (exit 2).
#[must_use]
pub fn run(context: &Context, args: &Args, out: &mut dyn Write) -> u8 {
    match execute(context, args, out) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            2
        }
    }
}

/// Runs the command and returns its exit status.
///
/// # Errors
/// Bad input (exit 2): unreadable or invalid files, an unknown environment, a failed KMS call.
pub fn execute(context: &Context, args: &Args, out: &mut dyn Write) -> Result<u8, Error> {
    let paths = args.files.resolve(&context.root);
    match &args.command {
        Command::Check { file, env } => {
            let options = match env {
                Some(name) => paths.environment(name)?.1.check_options(),
                None => check::Options::default(),
            };
            let findings = check_file(file, options)?;
            for finding in &findings {
                line(out, &finding.to_string())?;
            }
            eprintln!(
                "policy check: {}: {}",
                file.display(),
                if findings.is_empty() {
                    "no findings".to_owned()
                } else {
                    format!("{} finding(s)", findings.len())
                }
            );
            Ok(u8::from(!findings.is_empty()))
        }
        Command::Render { env, out: dir } => {
            let (mut expectations, environment) = paths.environment(env)?;
            let rendered = environment
                .render(&expectations)
                .map_err(|e| paths.environments_error(e))?;
            let dir = match dir {
                Some(dir) => dir.clone(),
                None => policies_dir(&paths.environments, env),
            };
            let key = dir.join(KEY_POLICY_FILE);
            let iam = dir.join(IAM_POLICY_FILE);
            files::write(&key, &rendered.key_policy)?;
            files::write(&iam, &rendered.iam_policy)?;
            line(
                out,
                &format!(
                    "policy render: environment {env}: wrote {} and {}",
                    key.display(),
                    iam.display()
                ),
            )?;
            let environments = paths.environments(&expectations)?;
            let before = expectations.to_json();
            expectations
                .set_environments(&environments.allowed())
                .map_err(|error| Error::Expectations {
                    path: paths.expectations.clone(),
                    error,
                })?;
            let after = expectations.to_json();
            if after != before {
                files::write(&paths.expectations, &after)?;
                line(
                    out,
                    &format!(
                        "policy render: {} records the environments allowing each release",
                        paths.expectations.display()
                    ),
                )?;
            }
            Ok(0)
        }
        Command::Diff { env, kms: options } => {
            let (expectations, environment) = paths.environment(env)?;
            let wanted = rendered_key_policy(&paths, &environment, &expectations)?;
            let client = kms::client(options, &environment.region, &context.signer)?;
            let live = kms::key_policy(&client, &environment.key_arn)?;
            let difference = compare(&environment, &expectations, &live, &wanted)?;
            line(
                out,
                &format!(
                    "policy diff: environment {env}, key {} (- live, + wanted):\n{difference}",
                    environment.key_arn
                ),
            )?;
            Ok(u8::from(!difference.is_empty()))
        }
        Command::Apply {
            env,
            yes,
            policy,
            kms: options,
        } => {
            let (expectations, environment) = paths.environment(env)?;
            let wanted = match policy {
                Some(file) => files::read(file)?,
                None => rendered_key_policy(&paths, &environment, &expectations)?,
            };
            if let Err(error) = environment.gate(&wanted) {
                line(out, &error.to_string())?;
                if let EnvironmentsError::Refused { .. } = error {
                    line(
                        out,
                        "policy apply: nothing was applied; fix the policy (or the \
                         environment), then run `cargo xtask policy apply` again",
                    )?;
                    return Ok(1);
                }
                return Err(paths.environments_error(error));
            }
            let client = kms::client(options, &environment.region, &context.signer)?;
            let live = kms::key_policy(&client, &environment.key_arn)?;
            let difference = compare(&environment, &expectations, &live, &wanted)?;
            line(
                out,
                &format!(
                    "policy apply: environment {env}, key {} (- live, + wanted):\n{difference}",
                    environment.key_arn
                ),
            )?;
            if difference.is_empty() {
                line(
                    out,
                    "policy apply: the live policy is already this one; nothing to do",
                )?;
                return Ok(0);
            }
            if !yes {
                line(
                    out,
                    "policy apply: dry run, nothing applied; run again with --yes to \
                     PutKeyPolicy",
                )?;
                return Ok(0);
            }
            kms::put_key_policy(&client, &environment.key_arn, &wanted)?;
            let now = kms::key_policy(&client, &environment.key_arn)?;
            let left = compare(&environment, &expectations, &now, &wanted)?;
            if !left.is_empty() {
                return Err(Error::Answer {
                    what: format!("PutKeyPolicy of {}", environment.key_arn),
                    problem: format!(
                        "KMS accepted the policy but GetKeyPolicy returns another:\n{left}"
                    ),
                });
            }
            line(
                out,
                &format!(
                    "policy apply: applied to {}; GetKeyPolicy returns it. Attach \
                     iam-policy.json to the enclave role {} with `aws iam put-role-policy` if \
                     it changed",
                    environment.key_arn, environment.enclave_role_arn
                ),
            )?;
            Ok(0)
        }
    }
}

/// The key policy's file name in a rendered directory.
pub const KEY_POLICY_FILE: &str = "key-policy.json";
/// The IAM policy's file name in a rendered directory.
pub const IAM_POLICY_FILE: &str = "iam-policy.json";

/// `deploy/policies/<env>/`: next to the environments file.
#[must_use]
pub fn policies_dir(environments_file: &Path, env: &str) -> PathBuf {
    environments_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("policies")
        .join(env)
}

fn line(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    writeln!(out, "{text}").map_err(|source| Error::Write {
        path: PathBuf::from("(standard output)"),
        source,
    })
}

fn rendered_key_policy(
    paths: &files::Paths,
    environment: &Environment,
    expectations: &Expectations,
) -> Result<String, Error> {
    Ok(environment
        .render(expectations)
        .map_err(|e| paths.environments_error(e))?
        .key_policy)
}

fn compare(
    environment: &Environment,
    expectations: &Expectations,
    live: &str,
    wanted: &str,
) -> Result<diff::PolicyDiff, Error> {
    let live = Policy::parse(live).map_err(|error| Error::Policy {
        what: format!("the live policy of {}", environment.key_arn),
        error,
    })?;
    let wanted = Policy::parse(wanted).map_err(|error| Error::Policy {
        what: "the policy to apply".to_owned(),
        error,
    })?;
    Ok(diff::diff(&live, &wanted, expectations))
}

/// The findings for a policy file, under `options`.
///
/// # Errors
/// [`Error::Read`], or [`Error::Policy`] when it is not a policy.
pub fn check_file(path: &Path, options: check::Options) -> Result<Vec<ccc_policy::Finding>, Error> {
    check_text(&files::read(path)?, &path.display().to_string(), options)
}

/// The findings for a policy's text.
///
/// # Errors
/// [`Error::Policy`] when it is not a policy.
pub fn check_text(
    text: &str,
    what: &str,
    options: check::Options,
) -> Result<Vec<ccc_policy::Finding>, Error> {
    let policy = Policy::parse_any(text).map_err(|error| Error::Policy {
        what: what.to_owned(),
        error,
    })?;
    Ok(check::check_with(&policy, options))
}

/// Checks that the committed rendering is current: each environment's
/// `deploy/policies/<env>/` holds exactly what `policy render` writes, and
/// `release/pcr-expectations.json` records the environments allowing each release. Returns one
/// line per difference, each naming the command that fixes it (empty: all current).
///
/// # Errors
/// Unreadable or invalid files.
pub fn stale_renderings(paths: &files::Paths) -> Result<Vec<String>, Error> {
    let expectations = paths.expectations()?;
    let environments = paths.environments(&expectations)?;
    let mut stale = Vec::new();
    for environment in environments.iter() {
        let rendered = environment
            .render(&expectations)
            .map_err(|e| paths.environments_error(e))?;
        let dir = policies_dir(&paths.environments, &environment.name);
        for (file, text) in [
            (KEY_POLICY_FILE, &rendered.key_policy),
            (IAM_POLICY_FILE, &rendered.iam_policy),
        ] {
            let path = dir.join(file);
            if std::fs::read_to_string(&path).ok().as_ref() != Some(text) {
                stale.push(format!(
                    "{} is not what environment {} renders to: run `cargo xtask policy render \
                     --env {}` and commit it",
                    path.display(),
                    environment.name,
                    environment.name
                ));
            }
        }
    }
    let mut derived = expectations.clone();
    derived
        .set_environments(&environments.allowed())
        .map_err(|error| Error::Expectations {
            path: paths.expectations.clone(),
            error,
        })?;
    if derived != expectations {
        stale.push(format!(
            "{} does not record which environments allow each release as {} says: run `cargo \
             xtask policy render --env <any>` and commit it",
            paths.expectations.display(),
            paths.environments.display()
        ));
    }
    Ok(stale)
}
