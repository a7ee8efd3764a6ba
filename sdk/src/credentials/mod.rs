//! AWS credentials for SigV4 (feature `std`): the provider seam the KMS client calls, a cache
//! that refreshes ahead of expiry, the enclave side (ask the parent over vsock,
//! [`enclave::FromParent`]), the parent side (IMDSv2 or the environment, and the server
//! that answers the enclave, [`parent`]), and an operator's chain (environment, shared
//! credentials file, IMDSv2: [`operator`]) for the tools that manage key policies.
//!
//! # Why the parent hands out credentials
//! An enclave has no network and no IMDS. Its KMS calls are signed with the parent instance
//! role's temporary credentials, which only the parent can read from IMDS. What protects the
//! keys is not the credentials but the key policy's `kms:RecipientAttestation:*` conditions:
//! whoever holds the credentials still needs an attestation document signed by the Nitro
//! hypervisor for these PCRs to get a secret back, and the secret comes encrypted to the
//! enclave's own RSA key.
//!
//! # The protocol (version 1)
//! Written down for other implementations in `docs/credentials-protocol.md`; [`protocol`]
//! is the code.
//!
//! - The enclave connects to the parent: vsock CID 3 ([`crate::net::vsock::CID_PARENT`]),
//!   port [`protocol::DEFAULT_PORT`] (8002; 8000 is the KMS proxy by convention, 9000 the
//!   enclave-ready heartbeat).
//! - Each message is a frame: a 4-byte big-endian length `N` with
//!   `1 <= N <= `[`protocol::MAX_FRAME_LEN`], then `N` bytes of UTF-8 JSON, one object.
//! - Request: `{"version":1,"type":"get_credentials"}`.
//! - Answer: `{"version":1,"type":"credentials","access_key_id":"ASIA...",
//!   "secret_access_key":"...","session_token":"..."|null,"expiration":"<RFC 3339>"|null}`,
//!   or `{"version":1,"type":"error","code":"unavailable"|"bad_request"|"unsupported_version",
//!   "message":"..."}`.
//! - Requests may repeat on one connection; either side may close after any answer. Unknown
//!   members are ignored, so later versions can add some.
//!
//! # Refreshing
//! [`Refreshing`] caches what a [`CredentialsSource`] returns and fetches again
//! [`REFRESH_AHEAD`] (5 minutes) before the expiration, and at once after
//! [`CredentialsProvider::invalidate`] (the KMS client calls it on `ExpiredTokenException`
//! and `UnrecognizedClientException`). If a refresh fails while the cached credentials have
//! not expired yet, they keep being used, as the AWS SDKs do during an IMDS outage.

pub mod enclave;
pub mod operator;
pub mod parent;
pub mod protocol;

use crate::clock::{Clock, SystemClock};
use crate::net::TransportError;
use crate::sigv4::SigV4Error;
use crate::time::UnixMillis;
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::sigv4::Credentials;

/// How long before their expiration cached credentials are replaced: 5 minutes. IMDS makes new
/// role credentials available at least five minutes before the old ones expire (EC2 User
/// Guide, "Retrieve security credentials from instance metadata"), so asking earlier would
/// only fetch the same ones again; botocore refreshes earlier still (15 min advisory, 10 min
/// mandatory, `botocore/credentials.py`) because its sources allow it.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

/// Gives the KMS client credentials to sign with.
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// Credentials to sign the next request with.
    ///
    /// # Errors
    /// [`CredentialsError`] when none are available.
    fn credentials(&self) -> Result<Arc<Credentials>, CredentialsError>;

    /// KMS rejected the current credentials (expired or unknown token): forget them. Returns
    /// true if the next [`CredentialsProvider::credentials`] call may return different ones
    /// (so a retry is worth it), false for fixed credentials.
    fn invalidate(&self) -> bool {
        false
    }
}

impl<T: CredentialsProvider + ?Sized> CredentialsProvider for Arc<T> {
    fn credentials(&self) -> Result<Arc<Credentials>, CredentialsError> {
        (**self).credentials()
    }

    fn invalidate(&self) -> bool {
        (**self).invalidate()
    }
}

/// Fixed credentials (tests, development). Never refreshed.
#[derive(Clone, Debug)]
pub struct StaticCredentials(Arc<Credentials>);

impl StaticCredentials {
    /// Wraps `credentials`.
    #[must_use]
    pub fn new(credentials: Credentials) -> Self {
        Self(Arc::new(credentials))
    }
}

impl CredentialsProvider for StaticCredentials {
    fn credentials(&self) -> Result<Arc<Credentials>, CredentialsError> {
        Ok(Arc::clone(&self.0))
    }
}

/// Where fresh credentials come from (each call fetches; [`Refreshing`] caches).
pub trait CredentialsSource: Send + Sync + fmt::Debug {
    /// Fetches credentials now.
    ///
    /// # Errors
    /// [`CredentialsError`] naming the source and what to do.
    fn fetch(&self) -> Result<Credentials, CredentialsError>;

    /// The source, for messages (`"the parent at vsock://3:8002"`).
    fn describe(&self) -> String;
}

impl<T: CredentialsSource + ?Sized> CredentialsSource for Box<T> {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        (**self).fetch()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<T: CredentialsSource + ?Sized> CredentialsSource for Arc<T> {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        (**self).fetch()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

#[derive(Debug, Default)]
struct Cache {
    current: Option<Arc<Credentials>>,
    invalidated: bool,
}

/// A [`CredentialsProvider`] that caches a [`CredentialsSource`] and refreshes
/// [`REFRESH_AHEAD`] before expiry and after [`CredentialsProvider::invalidate`]. Concurrent
/// callers wait for one fetch instead of each fetching.
#[derive(Debug)]
pub struct Refreshing<S> {
    source: S,
    clock: Arc<dyn Clock>,
    refresh_ahead: Duration,
    cache: Mutex<Cache>,
}

impl<S: CredentialsSource> Refreshing<S> {
    /// Caches `source`, with the system clock and [`REFRESH_AHEAD`].
    #[must_use]
    pub fn new(source: S) -> Self {
        Self {
            source,
            clock: Arc::new(SystemClock),
            refresh_ahead: REFRESH_AHEAD,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Uses another clock (tests drive expiry with [`crate::clock::ManualClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Refreshes this long before expiry instead of [`REFRESH_AHEAD`].
    #[must_use]
    pub fn with_refresh_ahead(mut self, refresh_ahead: Duration) -> Self {
        self.refresh_ahead = refresh_ahead;
        self
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn due(&self, credentials: &Credentials, now: UnixMillis) -> bool {
        let ahead = u64::try_from(self.refresh_ahead.as_millis()).unwrap_or(u64::MAX);
        credentials
            .expiration()
            .is_some_and(|expiration| now.0.saturating_add(ahead) >= expiration.0)
    }
}

impl<S: CredentialsSource> CredentialsProvider for Refreshing<S> {
    fn credentials(&self) -> Result<Arc<Credentials>, CredentialsError> {
        // A poisoned lock only means another caller panicked mid-fetch; the cache is still
        // a consistent value.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        if let Some(current) = &cache.current
            && !cache.invalidated
            && !self.due(current, now)
        {
            return Ok(Arc::clone(current));
        }
        match self.source.fetch() {
            Ok(fresh) => {
                if let Some(expiration) = fresh.expiration()
                    && expiration <= now
                {
                    return Err(CredentialsError::Expired {
                        from: self.source.describe(),
                        expired: expiration,
                        now,
                    });
                }
                let fresh = Arc::new(fresh);
                cache.current = Some(Arc::clone(&fresh));
                cache.invalidated = false;
                Ok(fresh)
            }
            Err(error) => match &cache.current {
                Some(current)
                    if !cache.invalidated
                        && current
                            .expiration()
                            .is_none_or(|expiration| now < expiration) =>
                {
                    Ok(Arc::clone(current))
                }
                _ => Err(error),
            },
        }
    }

    fn invalidate(&self) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.invalidated = true;
        true
    }
}

/// Why no credentials could be had.
#[derive(Debug)]
#[non_exhaustive]
pub enum CredentialsError {
    /// An environment variable is missing or unusable.
    Environment {
        /// The variable.
        variable: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// The values are not valid AWS credentials.
    Invalid {
        /// The source.
        from: String,
        /// Which check failed.
        error: SigV4Error,
    },
    /// The source handed out credentials that had already expired.
    Expired {
        /// The source.
        from: String,
        /// Their expiration.
        expired: UnixMillis,
        /// The local time.
        now: UnixMillis,
    },
    /// The source could not be reached.
    Unreachable {
        /// The source.
        from: String,
        /// The transport failure.
        error: TransportError,
    },
    /// IMDS accepted the connection but never answered the IMDSv2 session-token request: the
    /// signature of a hop limit too small for where the caller runs (IMDS sends that answer
    /// with the instance's `HttpPutResponseHopLimit`, so a caller one hop further, in a
    /// container behind a bridge, never receives it).
    ImdsTokenUnanswered {
        /// The source.
        from: String,
        /// The transport failure (a read timeout), boxed: the variant is rare and keeps every
        /// `Result` carrying this error small.
        error: Box<TransportError>,
    },
    /// The source answered something that is not its protocol.
    Malformed {
        /// The source.
        from: String,
        /// What is wrong.
        detail: String,
    },
    /// The parent answered with an error frame.
    Refused {
        /// The source.
        from: String,
        /// The error code (`unavailable`, `bad_request`, `unsupported_version`).
        code: String,
        /// The parent's message.
        message: String,
    },
    /// No source of the operator's chain has credentials ([`operator::operator_source`]).
    NoneFound {
        /// What the environment said.
        environment: String,
        /// What the shared credentials file said.
        shared_file: String,
        /// What IMDS said.
        imds: String,
    },
    /// IMDS answered with an HTTP error status.
    ImdsStatus {
        /// The IMDS endpoint.
        endpoint: String,
        /// The path requested.
        path: String,
        /// The status.
        status: u16,
    },
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment { variable, problem } => write!(
                f,
                "environment credentials: {variable} {problem}; set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys), or run on \
                 EC2 with an instance profile"
            ),
            Self::Invalid { from, error } => {
                write!(f, "credentials from {from} are unusable: {error}")
            }
            Self::Expired { from, expired, now } => write!(
                f,
                "credentials from {from} expired at {expired} (local time {now}); if the source \
                 is right, the local clock is wrong"
            ),
            Self::Unreachable { from, error } => {
                write!(f, "cannot get credentials from {from}: {error}")
            }
            Self::ImdsTokenUnanswered { from, error } => write!(
                f,
                "cannot get credentials from {from}: the IMDSv2 session-token request (PUT \
                 /latest/api/token) got no answer ({error}); IMDS sends that answer with the \
                 instance's hop limit (HttpPutResponseHopLimit, 1 by default), so a parent in a \
                 container never receives it: run `aws ec2 modify-instance-metadata-options \
                 --instance-id <id> --http-put-response-hop-limit 2`, or run the parent on the \
                 host network"
            ),
            Self::Malformed { from, detail } => write!(
                f,
                "{from} answered something that is not credentials: {detail}; check that the \
                 port is the credentials service and both sides speak protocol version {}",
                protocol::VERSION
            ),
            Self::Refused {
                from,
                code,
                message,
            } => write!(f, "{from} refused to give credentials ({code}): {message}"),
            Self::NoneFound {
                environment,
                shared_file,
                imds,
            } => write!(
                f,
                "no AWS credentials found: the environment: {environment}; the shared \
                 credentials file: {shared_file}; IMDSv2: {imds}. Set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or run `aws configure` (and \
                 AWS_PROFILE), or run on EC2 with an instance profile"
            ),
            Self::ImdsStatus {
                endpoint,
                path,
                status,
            } => {
                write!(f, "IMDS at {endpoint} answered HTTP {status} to {path}; ")?;
                f.write_str(match status {
                    401 => {
                        "the IMDSv2 session token was refused or is missing (PUT \
                         /latest/api/token first; a proxy may strip the token header)"
                    }
                    403 => "IMDS access is disabled for this instance (metadata options)",
                    404 if path.ends_with('/') => {
                        "no IAM role is attached: attach an instance profile to the parent \
                         instance"
                    }
                    404 => "the IAM role disappeared from the instance profile; reattach it",
                    _ => "retry later; IMDS may be throttling",
                })
            }
        }
    }
}

impl core::error::Error for CredentialsError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Invalid { error, .. } => Some(error),
            Self::Unreachable { error, .. } => Some(error),
            Self::ImdsTokenUnanswered { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::format;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source that hands out numbered credentials valid for one hour, or fails on demand.
    #[derive(Debug)]
    struct Numbered {
        clock: Arc<ManualClock>,
        fetches: AtomicUsize,
        failing: std::sync::atomic::AtomicBool,
    }

    impl CredentialsSource for Numbered {
        fn fetch(&self) -> Result<Credentials, CredentialsError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(CredentialsError::Malformed {
                    from: self.describe(),
                    detail: "down".into(),
                });
            }
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            let expiration = UnixMillis(self.clock.now().0 + 3_600_000);
            Ok(
                Credentials::new(format!("ASIA{n}"), "secret", Some("token".into()))
                    .unwrap()
                    .with_expiration(expiration),
            )
        }

        fn describe(&self) -> String {
            "numbered".into()
        }
    }

    fn setup() -> (Arc<ManualClock>, Refreshing<Arc<Numbered>>) {
        let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_000_000)));
        let source = Arc::new(Numbered {
            clock: Arc::clone(&clock),
            fetches: AtomicUsize::new(0),
            failing: false.into(),
        });
        let provider = Refreshing::new(source).with_clock(clock.clone());
        (clock, provider)
    }

    #[test]
    fn cached_until_five_minutes_before_expiry() {
        let (clock, provider) = setup();
        assert_eq!(provider.credentials().unwrap().access_key_id(), "ASIA1");
        clock.advance(Duration::from_secs(54 * 60));
        assert_eq!(provider.credentials().unwrap().access_key_id(), "ASIA1");
        clock.advance(Duration::from_secs(60));
        assert_eq!(provider.credentials().unwrap().access_key_id(), "ASIA2");
        assert_eq!(provider.source().fetches.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn invalidate_forces_a_fetch_and_failures_keep_valid_credentials() {
        let (clock, provider) = setup();
        provider.credentials().unwrap();
        assert!(provider.invalidate());
        assert_eq!(provider.credentials().unwrap().access_key_id(), "ASIA2");

        // Inside the refresh window with the source down: the still-valid ones are kept.
        provider.source().failing.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(57 * 60));
        assert_eq!(provider.credentials().unwrap().access_key_id(), "ASIA2");
        // After expiry, or after KMS rejected them, the failure surfaces.
        assert!(provider.invalidate());
        assert!(matches!(
            provider.credentials(),
            Err(CredentialsError::Malformed { .. })
        ));
        provider.cache.lock().unwrap().invalidated = false;
        clock.advance(Duration::from_secs(4 * 60));
        assert!(provider.credentials().is_err());
    }

    #[test]
    fn static_credentials_cannot_be_refreshed() {
        let provider = StaticCredentials::new(Credentials::new("AKID", "s", None).unwrap());
        assert!(!provider.invalidate());
        assert_eq!(provider.credentials().unwrap().access_key_id(), "AKID");
        assert!(!format!("{provider:?}").contains("\"s\""));
    }
}
