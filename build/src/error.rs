//! The one error of ccc-build's public boundary. Each variant says which kind of thing failed
//! (a file, a program, the host, the project, a pinned input, the published files, ...); its
//! message carries what was expected and found, and what to do next.

use std::fmt;
use std::path::{Path, PathBuf};

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a build, release, verification or boot failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read, written, created, copied or removed.
    Io {
        /// What was being done (`read`, `write`, `create`, `copy ... to`, ...).
        action: String,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A program could not start, or failed.
    Program {
        /// The program (or the step it ran, e.g. `kernel build`).
        program: String,
        /// What happened and what to do (exit status, the log to read, the fix).
        problem: String,
    },
    /// The host lacks something (a Debian package, the musl target, root rights).
    Prerequisite {
        /// What is missing and the exact command that installs it.
        problem: String,
    },
    /// The project cannot be built as it is configured: its Cargo metadata, the application
    /// or parent it names, a path dependency outside it, where CCC comes from.
    Project {
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A pinned input is not what its pin says, or cannot be fetched (the kernel's Debian
    /// package, QEMU's source, the kernel config on this host).
    Input {
        /// What differs, both values, and how to move the pin.
        problem: String,
    },
    /// A value given on the command line (or by a caller) is not valid.
    Invalid {
        /// Which value (e.g. `--account`).
        what: String,
        /// Why, and what a valid one looks like.
        problem: String,
    },
    /// The two builds of a release differ, so nothing was published.
    NotReproducible {
        /// One entry per differing artefact: its name, where they first differ, both paths.
        differences: Vec<String>,
    },
    /// PCRs are not the ones expected (a published version's, or a rebuild's).
    Pcrs {
        /// Which PCRs, both values, and what to do.
        problem: String,
    },
    /// A published release file is missing, malformed or contradicts another.
    Published {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An enclave image failed to read or validate.
    Eif {
        /// The file.
        path: PathBuf,
        /// The reader's error (with the byte offset).
        source: ccc_eif::EifError,
    },
    /// An enclave image or ramdisk could not be assembled.
    Assemble {
        /// What was being assembled.
        what: String,
        /// Why.
        problem: String,
    },
    /// A boot under QEMU could not run or did not finish.
    Boot {
        /// What happened.
        problem: String,
    },
    /// An attestation document did not verify.
    Attestation {
        /// The check that failed.
        problem: String,
    },
    /// A step failed; `source` says why.
    Context {
        /// The step.
        context: String,
        /// The failure inside it.
        source: Box<Error>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Self::Program { program, problem } => write!(f, "{program}: {problem}"),
            Self::Prerequisite { problem } => write!(f, "missing prerequisite: {problem}"),
            Self::Project { problem }
            | Self::Input { problem }
            | Self::Pcrs { problem }
            | Self::Boot { problem } => f.write_str(problem),
            Self::Invalid { what, problem } => write!(f, "{what}: {problem}"),
            Self::NotReproducible { differences } => write!(
                f,
                "the two builds differ, so this release is not reproducible and is NOT \
                 published:\n  {}\nBoth copies are kept for inspection (e.g. `diffoscope A B`); \
                 the first differing artifact is usually the cause of the others",
                differences.join("\n  ")
            ),
            Self::Published { path, problem } => write!(f, "{}: {problem}", path.display()),
            Self::Eif { path, source } => {
                write!(f, "{} is not a valid EIF: {source}", path.display())
            }
            Self::Assemble { what, problem } => write!(f, "cannot assemble {what}: {problem}"),
            Self::Attestation { problem } => {
                write!(f, "the attestation document does not verify: {problem}")
            }
            Self::Context { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Eif { source, .. } => Some(source),
            Self::Context { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl Error {
    /// [`Error::Project`].
    pub(crate) fn project(problem: impl Into<String>) -> Self {
        Self::Project {
            problem: problem.into(),
        }
    }

    /// [`Error::Program`].
    pub(crate) fn program(program: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Program {
            program: program.into(),
            problem: problem.into(),
        }
    }

    /// [`Error::Input`].
    pub(crate) fn input(problem: impl Into<String>) -> Self {
        Self::Input {
            problem: problem.into(),
        }
    }

    /// [`Error::Invalid`].
    pub(crate) fn invalid(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            problem: problem.into(),
        }
    }

    /// [`Error::Published`].
    pub(crate) fn published(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Published {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// [`Error::Pcrs`].
    pub(crate) fn pcrs(problem: impl Into<String>) -> Self {
        Self::Pcrs {
            problem: problem.into(),
        }
    }

    /// [`Error::Boot`].
    pub(crate) fn boot(problem: impl Into<String>) -> Self {
        Self::Boot {
            problem: problem.into(),
        }
    }

    /// [`Error::Assemble`].
    pub(crate) fn assemble(what: impl Into<String>, problem: impl fmt::Display) -> Self {
        Self::Assemble {
            what: what.into(),
            problem: problem.to_string(),
        }
    }

    /// [`Error::Io`].
    pub(crate) fn io(action: impl Into<String>, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            path: path.to_path_buf(),
            source,
        }
    }

    /// `self` inside the step `context`.
    #[must_use]
    pub fn context(self, context: impl Into<String>) -> Self {
        Self::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error (under every [`Error::Context`]).
    pub fn root(&self) -> &Self {
        match self {
            Self::Context { source, .. } => source.root(),
            other => other,
        }
    }
}

/// Attaches the path and the action to an I/O error.
pub(crate) trait IoContext<T> {
    /// `Error::Io { action, path, .. }` on failure.
    fn io(self, action: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, action: &str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::io(action, path, source))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_chains_read_as_one_line_and_keep_the_root() {
        let inner = Error::io(
            "read",
            Path::new("/x/y"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        let outer = inner.context("loading the project");
        let text = outer.to_string();
        assert!(
            text.starts_with("loading the project: cannot read /x/y: "),
            "{text}"
        );
        assert!(matches!(outer.root(), Error::Io { .. }));
        assert!(std::error::Error::source(&outer).is_some());
        let err = Error::NotReproducible {
            differences: vec!["EIF: first difference at byte offset 3".to_owned()],
        };
        assert!(err.to_string().contains("NOT published"), "{err}");
        assert!(err.to_string().contains("EIF: first difference"), "{err}");
    }
}
