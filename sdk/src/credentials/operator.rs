//! Credentials on an operator's machine, found the way the AWS CLI and SDKs find them (AWS SDKs
//! and Tools reference guide, "Standardized credential providers"): the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`; profile
//! `AWS_PROFILE`, else `default`), then IMDSv2 (an EC2 instance's role). The tools that read
//! and change key policies (`cargo xtask policy diff|apply`, `explain --env`) use this chain;
//! the enclave never does (its parent hands it the instance role's credentials).
//!
//! Only static keys are read from the file (`aws_access_key_id`, `aws_secret_access_key`,
//! `aws_session_token`); a profile that assumes a role, uses SSO or a credential process is
//! refused with what to do instead (`aws configure export-credentials`).

use super::parent::{Environment, Imds};
use super::{CredentialsError, CredentialsSource};
use crate::sigv4::Credentials;
use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::collections::BTreeMap;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Largest shared credentials file read (a file with hundreds of profiles is a few KiB).
pub const MAX_SHARED_FILE: u64 = 256 * 1024;

/// The profile used unless `AWS_PROFILE` names another.
pub const DEFAULT_PROFILE: &str = "default";

/// Keys of a profile that mean "not static keys": role assumption, SSO, a credential process.
const UNSUPPORTED_KEYS: [&str; 5] = [
    "role_arn",
    "source_profile",
    "credential_process",
    "sso_session",
    "sso_start_url",
];

/// Static keys from a profile of the shared credentials file. The file is read on every fetch
/// (so `aws configure` takes effect without a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    path: PathBuf,
    profile: String,
}

impl SharedFile {
    /// `profile` of the file at `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, profile: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            profile: profile.into(),
        }
    }

    /// The file and profile the variables name: `AWS_SHARED_CREDENTIALS_FILE` (else
    /// `$HOME/.aws/credentials`) and `AWS_PROFILE` (else `default`). `None` without either a
    /// file variable or `HOME`.
    #[must_use]
    pub fn from_variables(var: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let path = match var("AWS_SHARED_CREDENTIALS_FILE") {
            Some(path) => PathBuf::from(path),
            None => PathBuf::from(var("HOME")?).join(".aws").join("credentials"),
        };
        let profile = var("AWS_PROFILE").unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        Some(Self::new(path, profile))
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The profile.
    #[must_use]
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The profile's `key = value` pairs, or `None` when the file or the profile is absent.
    fn section(&self) -> Result<Option<BTreeMap<String, Zeroizing<String>>>, CredentialsError> {
        let malformed = |detail: String| CredentialsError::Malformed {
            from: self.describe(),
            detail,
        };
        let size = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(malformed(format!("cannot read it: {e}"))),
        };
        if size > MAX_SHARED_FILE {
            return Err(malformed(format!(
                "{size} bytes, more than MAX_SHARED_FILE ({MAX_SHARED_FILE})"
            )));
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(&self.path)
                .map_err(|e| malformed(format!("cannot read it: {e}")))?,
        );
        Ok(parse_profile(&text, &self.profile))
    }
}

/// The `key = value` pairs of `[profile]` in INI text (comments `#`/`;`, keys lowercased,
/// values trimmed), or `None` when the profile is absent.
fn parse_profile(text: &str, profile: &str) -> Option<BTreeMap<String, Zeroizing<String>>> {
    let mut found: Option<BTreeMap<String, Zeroizing<String>>> = None;
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            if inside && found.is_none() {
                found = Some(BTreeMap::new());
            }
            continue;
        }
        if !inside {
            continue;
        }
        if let (Some((key, value)), Some(section)) = (line.split_once('='), found.as_mut()) {
            section.insert(
                key.trim().to_ascii_lowercase(),
                Zeroizing::new(value.trim().to_owned()),
            );
        }
    }
    found
}

impl CredentialsSource for SharedFile {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let section = self.section()?.ok_or_else(|| CredentialsError::Malformed {
            from: self.describe(),
            detail: format!(
                "no [{}] profile (run `aws configure --profile {}`, or set AWS_PROFILE)",
                self.profile, self.profile
            ),
        })?;
        if let Some(key) = UNSUPPORTED_KEYS.iter().find(|k| section.contains_key(**k)) {
            return Err(CredentialsError::Malformed {
                from: self.describe(),
                detail: format!(
                    "profile [{}] uses `{key}`, which CCC does not resolve; export static \
                     credentials first: eval \"$(aws configure export-credentials --profile {} \
                     --format env)\"",
                    self.profile, self.profile
                ),
            });
        }
        let get = |key: &str| {
            section
                .get(key)
                .map(|v| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key"))
        else {
            return Err(CredentialsError::Malformed {
                from: self.describe(),
                detail: format!(
                    "profile [{}] lacks aws_access_key_id or aws_secret_access_key",
                    self.profile
                ),
            });
        };
        Credentials::new(
            id.to_owned(),
            secret,
            get("aws_session_token").map(str::to_owned),
        )
        .map_err(|error| CredentialsError::Invalid {
            from: self.describe(),
            error,
        })
    }

    fn describe(&self) -> String {
        format!(
            "the shared credentials file {} (profile {})",
            self.path.display(),
            self.profile
        )
    }
}

/// Picks the first source of the chain that has credentials: the environment, the shared
/// credentials file, IMDSv2 (one fetch tells whether an instance role answers). `var` reads
/// variables (the process environment in [`operator_source`]); `imds` is the IMDS to ask.
///
/// # Errors
/// [`CredentialsError::NoneFound`] naming what each of the three said; the file's or the
/// environment's own error when it is present but unusable (a typo must not silently fall
/// through to another identity).
pub fn operator_source_with(
    var: &dyn Fn(&str) -> Option<String>,
    imds: Result<Imds, CredentialsError>,
) -> Result<Box<dyn CredentialsSource>, CredentialsError> {
    let snapshot: Vec<(String, String)> = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
    ]
    .into_iter()
    .filter_map(|name| var(name).map(|v| (name.to_owned(), v)))
    .collect();
    let environment =
        Environment::from_vars(snapshot.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if environment.is_configured() {
        environment.fetch()?;
        return Ok(Box::new(environment));
    }
    let environment_said = "AWS_ACCESS_KEY_ID is not set".to_owned();
    let file = SharedFile::from_variables(var);
    let file_said = match &file {
        None => "no AWS_SHARED_CREDENTIALS_FILE and no HOME to find ~/.aws/credentials".to_owned(),
        Some(file) => match file.section()? {
            Some(_) => {
                file.fetch()?;
                return Ok(Box::new(file.clone()));
            }
            None => format!(
                "{} has no [{}] profile (or does not exist)",
                file.path.display(),
                file.profile
            ),
        },
    };
    let imds_said = match imds {
        Ok(imds) => match imds.fetch() {
            Ok(_) => return Ok(Box::new(imds)),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    Err(CredentialsError::NoneFound {
        environment: environment_said,
        shared_file: file_said,
        imds: imds_said,
    })
}

/// [`operator_source_with`] on the process environment and the default IMDS.
///
/// # Errors
/// As [`operator_source_with`].
pub fn operator_source() -> Result<Box<dyn CredentialsSource>, CredentialsError> {
    operator_source_with(
        &|name| std::env::var(name).ok().filter(|v| !v.is_empty()),
        Imds::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
[default]
aws_access_key_id = AKIADEFAULTEXAMPLE00
aws_secret_access_key = default/secret/key/0123456789abcdefghijkl

[ops]
AWS_ACCESS_KEY_ID=ASIAOPSEXAMPLE000000
aws_secret_access_key = ops/secret/key/0123456789abcdefghijklmn
aws_session_token = token-of-ops
; comment

[assumed]
role_arn = arn:aws:iam::111122223333:role/Admin
source_profile = default
";

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ccc-operator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn vars(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = list
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    /// An IMDS nobody answers: a port we bound and closed.
    fn dead_imds() -> Result<Imds, CredentialsError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        Imds::with_endpoint(&format!("http://127.0.0.1:{port}"))
    }

    #[test]
    fn profiles_are_read_from_the_file() {
        let dir = scratch("profiles");
        let path = dir.join("credentials");
        std::fs::write(&path, FILE).unwrap();
        let default = SharedFile::new(&path, "default").fetch().unwrap();
        assert_eq!(default.access_key_id(), "AKIADEFAULTEXAMPLE00");
        let ops = SharedFile::new(&path, "ops").fetch().unwrap();
        assert_eq!(ops.access_key_id(), "ASIAOPSEXAMPLE000000");
        assert_eq!(ops.session_token(), Some("token-of-ops"));
        let err = SharedFile::new(&path, "assumed")
            .fetch()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("uses `role_arn`") && err.contains("export-credentials"),
            "{err}"
        );
        let err = SharedFile::new(&path, "nope")
            .fetch()
            .unwrap_err()
            .to_string();
        assert!(err.contains("no [nope] profile"), "{err}");
        assert!(!format!("{:?}", SharedFile::new(&path, "ops")).contains("secret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_chain_takes_the_first_source_that_has_credentials() {
        let dir = scratch("chain");
        let path = dir.join("credentials");
        std::fs::write(&path, FILE).unwrap();
        let file = path.display().to_string();
        // The environment first.
        let source = operator_source_with(
            &vars(&[
                ("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000"),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    "env/secret/key/0123456789abcdefghijklmno",
                ),
                ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ]),
            dead_imds(),
        )
        .unwrap();
        assert_eq!(
            source.fetch().unwrap().access_key_id(),
            "AKIAENVIRONMENT00000"
        );
        // Then the file, with AWS_PROFILE.
        let source = operator_source_with(
            &vars(&[
                ("AWS_SHARED_CREDENTIALS_FILE", &file),
                ("AWS_PROFILE", "ops"),
            ]),
            dead_imds(),
        )
        .unwrap();
        assert_eq!(
            source.fetch().unwrap().access_key_id(),
            "ASIAOPSEXAMPLE000000"
        );
        assert!(source.describe().contains("profile ops"));
        // HOME/.aws/credentials when no file variable.
        std::fs::create_dir_all(dir.join(".aws")).unwrap();
        std::fs::copy(&path, dir.join(".aws/credentials")).unwrap();
        let home = dir.display().to_string();
        let source = operator_source_with(&vars(&[("HOME", &home)]), dead_imds()).unwrap();
        assert_eq!(
            source.fetch().unwrap().access_key_id(),
            "AKIADEFAULTEXAMPLE00"
        );
        // A present but broken profile is an error, not a fall-through to IMDS.
        let err = operator_source_with(
            &vars(&[
                ("AWS_SHARED_CREDENTIALS_FILE", &file),
                ("AWS_PROFILE", "assumed"),
            ]),
            dead_imds(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("role_arn"), "{err}");
        // Nothing anywhere: one error naming all three.
        let err = operator_source_with(
            &vars(&[(
                "AWS_SHARED_CREDENTIALS_FILE",
                &dir.join("absent").display().to_string(),
            )]),
            dead_imds(),
        )
        .unwrap_err()
        .to_string();
        for words in [
            "AWS_ACCESS_KEY_ID is not set",
            "has no [default] profile",
            "IMDS at http://127.0.0.1:",
        ] {
            assert!(err.contains(words), "{words}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
