//! The one error of the crate's boundary. Every message says what failed and what to do.

use ccc_policy::PolicyError;
use ccc_policy::environment::EnvironmentsError;
use ccc_policy::expectations::ExpectationsError;
use ccc_sdk::credentials::CredentialsError;
use ccc_sdk::kms::client::ClientError;
use std::fmt;
use std::path::PathBuf;

/// Why a command could not do its job (a denial `explain` predicts is not an error).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `release/pcr-expectations.json` is unusable or a change to it was refused.
    Expectations {
        /// The file.
        path: PathBuf,
        /// Why.
        error: ExpectationsError,
    },
    /// `deploy/environments.toml` is invalid, names no such environment, or its policy may not
    /// be written or applied.
    Environments {
        /// The file.
        path: PathBuf,
        /// Why.
        error: Box<EnvironmentsError>,
    },
    /// A document that should be a key policy is not one.
    Policy {
        /// Where it came from (a file, or `GetKeyPolicy of <key>`).
        what: String,
        /// The parser's error (names the field).
        error: PolicyError,
    },
    /// A KMS call failed.
    Kms {
        /// What was being done (`GetKeyPolicy of arn:...`).
        what: String,
        /// The client's error (names the likely fix).
        error: Box<ClientError>,
    },
    /// KMS answered something a command cannot use.
    Answer {
        /// The call.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// No usable AWS credentials.
    Credentials(CredentialsError),
    /// A command-line value is unusable.
    Input {
        /// The option.
        option: &'static str,
        /// What is wrong and what to write.
        problem: String,
    },
    /// The attestation document could not be read or obtained.
    Document {
        /// Where it came from.
        what: String,
        /// What went wrong, and what to do.
        problem: String,
    },
    /// The emulation behind the cross-environment table failed to run (not a disagreement:
    /// those are rows of the table).
    Emulation(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(
                f,
                "cannot read {}: {source}; check the path (commands run from the repository \
                 root, or pass the file's path)",
                path.display()
            ),
            Self::Write { path, source } => write!(
                f,
                "cannot write {}: {source}; check the directory exists and is writable",
                path.display()
            ),
            Self::Expectations { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Environments { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Policy { what, error } => write!(
                f,
                "{what} is not a key policy: {error} (policies are AWS JSON policy documents; \
                 `cargo xtask policy check FILE` lints one)"
            ),
            Self::Kms { what, error } => write!(f, "{what} failed: {error}"),
            Self::Answer { what, problem } => write!(f, "{what}: {problem}"),
            Self::Credentials(error) => write!(f, "{error}"),
            Self::Input { option, problem } => write!(f, "{option}: {problem}"),
            Self::Document { what, problem } => {
                write!(f, "cannot use the attestation document {what}: {problem}")
            }
            Self::Emulation(what) => write!(
                f,
                "the emulation could not run: {what} (this is a fault of the harness or the \
                 machine, not a policy decision; rerun, and report it if it persists)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } | Self::Write { source, .. } => Some(source),
            Self::Expectations { error, .. } => Some(error),
            Self::Environments { error, .. } => Some(error.as_ref()),
            Self::Policy { error, .. } => Some(error),
            Self::Kms { error, .. } => Some(error.as_ref()),
            Self::Credentials(error) => Some(error),
            _ => None,
        }
    }
}
