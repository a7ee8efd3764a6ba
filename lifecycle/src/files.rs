//! The repository's lifecycle files: `release/pcr-expectations.json` and
//! `deploy/environments.toml`, found under the repository root or given by path.

use crate::Error;
use ccc_policy::environment::{self, Environment, Environments};
use ccc_policy::expectations::{self, Expectations};
use std::path::{Path, PathBuf};

/// Where the files are: `--environments` and `--expectations` override the repository's.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Files {
    /// The environments file (default: deploy/environments.toml of the repository).
    #[arg(long, value_name = "TOML", global = true)]
    pub environments: Option<PathBuf>,
    /// The published releases (default: release/pcr-expectations.json of the repository).
    #[arg(long, value_name = "JSON", global = true)]
    pub expectations: Option<PathBuf>,
}

/// The files of one run, resolved against the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The environments file.
    pub environments: PathBuf,
    /// The expectations file.
    pub expectations: PathBuf,
}

impl Files {
    /// The paths, relative paths taken from `root` when not given.
    #[must_use]
    pub fn resolve(&self, root: &Path) -> Paths {
        Paths {
            environments: self
                .environments
                .clone()
                .unwrap_or_else(|| root.join(environment::PATH)),
            expectations: self
                .expectations
                .clone()
                .unwrap_or_else(|| root.join(expectations::PATH)),
        }
    }
}

/// Reads a text file.
///
/// # Errors
/// [`Error::Read`].
pub fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file whole (through a temporary file and a rename, so a reader never sees half).
///
/// # Errors
/// [`Error::Write`].
pub fn write(path: &Path, text: &str) -> Result<(), Error> {
    let failed = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temporary, text).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)
}

impl Paths {
    /// The published releases.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Expectations`].
    pub fn expectations(&self) -> Result<Expectations, Error> {
        Expectations::parse(&read(&self.expectations)?).map_err(|error| Error::Expectations {
            path: self.expectations.clone(),
            error,
        })
    }

    /// The environments, validated against `expectations`.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Environments`].
    pub fn environments(&self, expectations: &Expectations) -> Result<Environments, Error> {
        Environments::parse(&read(&self.environments)?, expectations).map_err(|error| {
            Error::Environments {
                path: self.environments.clone(),
                error: Box::new(error),
            }
        })
    }

    /// The releases, the environments and the one called `name`.
    ///
    /// # Errors
    /// As [`Paths::expectations`] and [`Paths::environments`]; [`Error::Environments`] when no
    /// environment has that name.
    pub fn environment(&self, name: &str) -> Result<(Expectations, Environment), Error> {
        let expectations = self.expectations()?;
        let environments = self.environments(&expectations)?;
        let environment = environments
            .get(name)
            .map_err(|error| Error::Environments {
                path: self.environments.clone(),
                error: Box::new(error),
            })?
            .clone();
        Ok((expectations, environment))
    }

    /// An [`Error::Environments`] about this file.
    #[must_use]
    pub fn environments_error(&self, error: environment::EnvironmentsError) -> Error {
        Error::Environments {
            path: self.environments.clone(),
            error: Box::new(error),
        }
    }
}
