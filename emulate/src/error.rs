//! The one error of ccc-emulate's public boundary: which part of the emulation failed, and
//! what to do about it.

use std::fmt;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an emulation did not pass.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Building the image, the tools or the parent, or booting, failed.
    Build(ccc_build::Error),
    /// The release to emulate is missing, malformed, or no longer reproduces.
    Release {
        /// What is wrong and what to do.
        problem: String,
    },
    /// The KMS emulator, or the operator's KMS step, failed.
    Kms {
        /// What failed.
        problem: String,
    },
    /// The parent instance's binary could not be built, started or called.
    Parent {
        /// What failed.
        problem: String,
    },
    /// The emulation ran and checks failed: the verdict is FAIL.
    Failed {
        /// One line per failed check.
        checks: Vec<String>,
    },
    /// A signal stopped the run (everything was torn down).
    Interrupted {
        /// Which signal, and what was done.
        message: String,
    },
    /// The harness could not set itself up (signal handlers, its run directory).
    Setup {
        /// What failed.
        problem: String,
    },
    /// The cross-environment table (`--env`) could not run: its files, the environment, or an
    /// EIF that is not the release.
    Environments(ccc_lifecycle::Error),
    /// Options that cannot be honoured.
    Invalid {
        /// Which, and why.
        problem: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Build(e) => e.fmt(f),
            Self::Environments(e) => e.fmt(f),
            Self::Release { problem }
            | Self::Kms { problem }
            | Self::Parent { problem }
            | Self::Setup { problem }
            | Self::Invalid { problem } => f.write_str(problem),
            Self::Failed { checks } => write!(
                f,
                "{} check(s) failed: {} (the transcript or table above shows each step)",
                checks.len(),
                checks.join("; ")
            ),
            Self::Interrupted { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Build(e) => Some(e),
            // Its Display is this error's whole message: as a source too, a chain printer
            // (`{:#}`) would print it twice.
            Self::Environments(_) => None,
            _ => None,
        }
    }
}

impl From<ccc_build::Error> for Error {
    fn from(e: ccc_build::Error) -> Self {
        Self::Build(e)
    }
}

impl Error {
    pub(crate) fn release(problem: impl Into<String>) -> Self {
        Self::Release {
            problem: problem.into(),
        }
    }

    pub(crate) fn kms(problem: impl Into<String>) -> Self {
        Self::Kms {
            problem: problem.into(),
        }
    }

    pub(crate) fn setup(problem: impl Into<String>) -> Self {
        Self::Setup {
            problem: problem.into(),
        }
    }

    pub(crate) fn parent(problem: impl Into<String>) -> Self {
        Self::Parent {
            problem: problem.into(),
        }
    }
}

/// Returns `Err($error)` unless `$condition` holds.
macro_rules! ensure {
    ($condition:expr, $error:expr) => {
        if !$condition {
            return Err($error);
        }
    };
}
pub(crate) use ensure;
