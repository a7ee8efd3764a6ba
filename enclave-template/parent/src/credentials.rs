//! The credentials service: hands the parent instance role's AWS credentials to the enclave
//! over the SDK's credentials protocol (`docs/credentials-protocol.md`, vsock port 8002),
//! from IMDSv2, the environment or a file, cached and refreshed 5 minutes before they expire
//! (`ccc_sdk::credentials::Refreshing`).
//!
//! The credentials are not what protects the keys: the key policy's attestation conditions
//! are. They only let the enclave's KMS requests be signed as the parent's role.

use crate::ArgumentError;
use crate::metrics::Metrics;
use crate::service::{CONNECTION_STACK, Closer, Services};
use ccc_sdk::credentials::parent::{
    self, AllowedPeers, Environment, Imds, ServeEvent, ServeOptions,
};
use ccc_sdk::credentials::{
    Credentials, CredentialsError, CredentialsProvider, CredentialsSource, Refreshing,
};
use ccc_sdk::net::Stream;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Connections served at once (one enclave asks one at a time; the SDK's default).
pub const MAX_CONNECTIONS: usize = 16;

/// Largest credentials file read (IMDS's JSON is about 1.5 KiB).
pub const MAX_FILE_LEN: u64 = 64 * 1024;

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The environment when `AWS_ACCESS_KEY_ID` is set, else IMDS (the SDK's
    /// `default_source`). Written `auto`.
    Auto,
    /// IMDSv2 at `169.254.169.254`, or at the given `http://host[:port]` (a fake IMDS).
    /// Written `imds` or `imds:http://...`.
    Imds(Option<String>),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_CREDENTIAL_EXPIRATION`. Written `environment`.
    Environment,
    /// A JSON file in IMDS's format (`AccessKeyId`, `SecretAccessKey`, `Token`,
    /// `Expiration`), read again at every refresh. Written `file:PATH`.
    File(PathBuf),
}

impl FromStr for Source {
    type Err = ArgumentError;

    fn from_str(text: &str) -> Result<Self, ArgumentError> {
        match text.split_once(':') {
            None if text == "auto" => Ok(Self::Auto),
            None if text == "imds" => Ok(Self::Imds(None)),
            None if text == "environment" => Ok(Self::Environment),
            Some(("imds", url)) => Ok(Self::Imds(Some(url.to_owned()))),
            Some(("file", path)) if !path.is_empty() => Ok(Self::File(PathBuf::from(path))),
            _ => Err(ArgumentError::new(
                text,
                "auto, imds, imds:http://HOST:PORT, environment or file:PATH",
            )),
        }
    }
}

impl Source {
    /// The source, ready to fetch.
    ///
    /// # Errors
    /// An unusable IMDS endpoint.
    pub fn open(&self) -> Result<Box<dyn CredentialsSource>, CredentialsError> {
        Ok(match self {
            Self::Auto => parent::default_source()?,
            Self::Imds(None) => Box::new(Imds::new()?),
            Self::Imds(Some(url)) => Box::new(Imds::with_endpoint(url)?),
            Self::Environment => Box::new(Environment::process()),
            Self::File(path) => Box::new(FileSource(path.clone())),
        })
    }
}

/// Credentials from a JSON file in IMDS's layout, read at every fetch (so a process that
/// rewrites it, e.g. `aws sts assume-role` output turned into this shape, refreshes them).
#[derive(Debug, Clone)]
pub struct FileSource(pub PathBuf);

impl CredentialsSource for FileSource {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let malformed = |detail: String| CredentialsError::Malformed {
            from: self.describe(),
            detail,
        };
        let file = std::fs::File::open(&self.0).map_err(|e| malformed(e.to_string()))?;
        let mut text = Zeroizing::new(Vec::new());
        io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE_LEN + 1), &mut text)
            .map_err(|e| malformed(e.to_string()))?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(malformed(format!("more than {MAX_FILE_LEN} bytes")));
        }
        parent::from_imds_json(&text, &self.describe())
    }

    fn describe(&self) -> String {
        format!("the file {}", self.0.display())
    }
}

/// The provider the service hands out from: `source`, cached and refreshed ahead of expiry.
#[must_use]
pub fn provider(source: Box<dyn CredentialsSource>) -> Arc<dyn CredentialsProvider> {
    Arc::new(Refreshing::new(source))
}

/// As [`provider`], each fetch counted in `metrics` (refreshes, failures, the expiry of what
/// is served).
#[must_use]
pub fn counted_provider(
    source: Box<dyn CredentialsSource>,
    metrics: Arc<Metrics>,
) -> Arc<dyn CredentialsProvider> {
    provider(Box::new(Counted { source, metrics }))
}

/// A source whose fetches are counted.
struct Counted {
    source: Box<dyn CredentialsSource>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Counted").field(&self.source).finish()
    }
}

impl CredentialsSource for Counted {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let fetched = self.source.fetch();
        match &fetched {
            Ok(credentials) => self.metrics.credentials_refreshed(credentials.expiration()),
            Err(_) => self.metrics.credentials_failed(),
        }
        fetched
    }

    fn describe(&self) -> String {
        self.source.describe()
    }
}

/// A provider's description for the log.
struct Described(String);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serves the credentials protocol on `listener`, one tracked thread per connection, to the
/// vsock peers `allowed` admits (others are logged and closed unanswered; see
/// [`AllowedPeers`] for what can be checked on each transport).
///
/// # Errors
/// The accept thread could not be started.
pub fn serve(
    services: &mut Services,
    listener: crate::net::Bound,
    provider: Arc<dyn CredentialsProvider>,
    allowed: AllowedPeers,
) -> io::Result<()> {
    let log = services.log().clone();
    let tracker = Arc::clone(services.tracker());
    let options = ServeOptions {
        log: Some(Arc::new(move |event: &ServeEvent<'_>| {
            log.line(format_args!("{event}"));
        })),
        allowed_peers: allowed,
        ..ServeOptions::default()
    };
    let log = services.log().clone();
    let where_ = Described(listener.describe());
    services.listen(listener, move |stream: Stream| {
        let peer = stream.describe_peer();
        let closer: Closer = match &stream {
            Stream::Tcp(s) => match s.try_clone() {
                Ok(s) => Box::new(move || {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }),
                Err(_) => Box::new(|| {}),
            },
            Stream::Unix(s) => match s.try_clone() {
                Ok(s) => Box::new(move || {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }),
                Err(_) => Box::new(|| {}),
            },
            // A credentials exchange is one short frame each way with a 5 s timeout; at the
            // drain deadline it ends by itself.
            _ => Box::new(|| {}),
        };
        let Some(tracked) = tracker.admit(MAX_CONNECTIONS, closer) else {
            log.line(format_args!(
                "credentials on {where_}: turned {peer} away ({MAX_CONNECTIONS} connections \
                 open)"
            ));
            return;
        };
        let provider = Arc::clone(&provider);
        let options = options.clone();
        let thread_log = log.clone();
        let spawned = std::thread::Builder::new()
            .name("ccc-parent-credentials".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _tracked = tracked;
                if let Err(e) = parent::serve_connection(stream, provider.as_ref(), &options) {
                    thread_log.line(format_args!("credentials: connection from {peer}: {e}"));
                }
            });
        if let Err(e) = spawned {
            log.line(format_args!(
                "credentials: cannot start a connection thread: {e}"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!("auto".parse::<Source>().unwrap(), Source::Auto);
        assert_eq!("imds".parse::<Source>().unwrap(), Source::Imds(None));
        assert_eq!(
            "imds:http://127.0.0.1:1338".parse::<Source>().unwrap(),
            Source::Imds(Some("http://127.0.0.1:1338".into()))
        );
        assert_eq!(
            "file:/run/creds.json".parse::<Source>().unwrap(),
            Source::File("/run/creds.json".into())
        );
        assert!("static".parse::<Source>().is_err());
        assert!("file:".parse::<Source>().is_err());
    }

    #[test]
    fn the_file_source_reads_imds_json_and_never_quotes_it() {
        let dir = std::env::temp_dir().join(format!("ccc-parent-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("creds.json");
        std::fs::write(
            &path,
            r#"{"Code":"Success","AccessKeyId":"ASIAFILE","SecretAccessKey":"s3cr3t","Token":"tok","Expiration":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let credentials = FileSource(path.clone()).fetch().unwrap();
        assert_eq!(credentials.access_key_id(), "ASIAFILE");
        assert!(credentials.expiration().is_some());
        std::fs::write(&path, r#"{"AccessKeyId":"A","SecretAccessKey":12345678}"#).unwrap();
        let error = FileSource(path.clone()).fetch().unwrap_err().to_string();
        assert!(
            error.contains("SecretAccessKey: not a JSON string"),
            "{error}"
        );
        assert!(!error.contains("12345678"), "{error}");
        std::fs::write(&path, r#"{"AccessKeyId":"A","SecretAccessKey":"12345678""#).unwrap();
        let error = FileSource(path).fetch().unwrap_err().to_string();
        assert!(error.contains("line 1 column"), "{error}");
        assert!(!error.contains("12345678"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
