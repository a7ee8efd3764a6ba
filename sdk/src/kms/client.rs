//! The KMS network client (features `std` + `aws-lc`): signs each request with SigV4, sends
//! it over vsock/TCP, TLS and HTTP/1.1, decodes the answer, and retries what is worth
//! retrying. [`super::attested::AttestedKmsClient`] builds on it to add the attestation.
//!
//! # Retries
//! Every KMS operation used here is safe to repeat (a repeated `GenerateRandom` or
//! `GenerateDataKey` just returns other bytes), so a failed attempt is sent again:
//! - broken or refused connections (to KMS's proxy or to the parent's credentials service),
//!   timeouts, throttling and KMS 5xx errors: up to
//!   [`RetryPolicy::max_attempts`] attempts, waiting a random time up to
//!   `min(max_backoff, initial_backoff * 2^(attempt-1))` between them ("full jitter");
//! - "Signature expired" / "Signature not yet current": once, at once, with the clock
//!   corrected by the response's `Date` header; the offset is kept for later calls;
//! - `ExpiredTokenException` / `UnrecognizedClientException`: once, at once, after asking the
//!   credentials provider for new credentials (only if it can give different ones);
//! - a kept-alive connection the server has closed: once, on a new connection, without
//!   counting as an attempt.
//!
//! Nothing else is retried. The waits go through a [`Sleeper`] and the time through a
//! [`Clock`], so tests run all of this without waiting.

use super::{KmsError, KmsRequest, MAX_RESPONSE_LEN, Operation, RetryAdvice, ServiceError};
use crate::clock::{Clock, Sleeper, SystemClock, ThreadSleeper};
use crate::credentials::{CredentialsError, CredentialsProvider};
use crate::crypto::{AwsLc, Crypto, RsaKeyError};
use crate::http::{self, HttpError, Received};
use crate::net::{Endpoint, Stream, Timeouts, TransportError};
use crate::nsm::NsmError;
use crate::sigv4::{self, SigV4, SigV4Error, SigningParams};
use crate::time::UnixMillis;
use crate::tls::{TlsConnector, TlsStream, TrustAnchors};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `User-Agent` sent (not signed).
pub const USER_AGENT: &str = concat!("ccc-sdk/", env!("CARGO_PKG_VERSION"));

/// Idle connections kept for reuse. One enclave rarely has more than a couple of KMS calls in
/// flight; idle TLS sessions cost memory and the proxy's file descriptors.
pub const MAX_IDLE_CONNECTIONS: usize = 2;

/// How the bytes travel once the stream is connected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// TLS to the KMS host name, checked against these anchors (real KMS:
    /// [`TrustAnchors::AmazonRoots`]).
    Tls(TrustAnchors),
    /// No TLS at all: request and response, credentials' signatures and plaintexts travel in
    /// clear. Only for the KMS emulator and moto on loopback; every connection says so in
    /// [`Event::Connected`].
    PlainHttpForEmulator,
}

/// Bounds on retrying (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 = no retries). Default 3.
    pub max_attempts: u32,
    /// The cap of the first wait. Default 1 s.
    pub initial_backoff: Duration,
    /// The cap of any wait. Default 20 s.
    pub max_backoff: Duration,
}

/// The AWS SDK for Rust's "standard" retry defaults (smithy-rs `RetryConfig::standard`): 3
/// attempts, 1 s initial backoff, 20 s maximum.
impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The cap of the wait before attempt `next` (2, 3, ...).
    #[must_use]
    pub fn backoff_cap(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// Where and how the client talks to KMS.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The region, e.g. `eu-west-1` (SigV4 scope and default host name).
    pub region: String,
    /// Where the socket connects (the parent's proxy in an enclave).
    pub endpoint: Endpoint,
    /// TLS (with its trust anchors) or, for emulators only, plain HTTP.
    pub transport: Transport,
    /// The `Host` header and TLS server name; `None` = `kms.<region>.amazonaws.com`
    /// ([`super::endpoint_host`]).
    pub host: Option<String>,
    /// Connect and I/O timeouts.
    pub timeouts: Timeouts,
    /// Retry bounds.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// Real KMS from inside an enclave: `vsock://3:8000` (the parent's `vsock-proxy`), TLS to
    /// `kms.<region>.amazonaws.com` anchored on the Amazon roots.
    #[must_use]
    pub fn enclave(region: impl Into<String>) -> Self {
        Self::new(
            region,
            Endpoint::kms_proxy(),
            Transport::Tls(TrustAnchors::AmazonRoots),
        )
    }

    /// Any endpoint and transport (e.g. the emulator:
    /// `Endpoint::tcp("127.0.0.1", port)` with `Transport::Tls(TrustAnchors::CustomCaPem(ca))`).
    #[must_use]
    pub fn new(region: impl Into<String>, endpoint: Endpoint, transport: Transport) -> Self {
        Self {
            region: region.into(),
            endpoint,
            transport,
            host: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// Sets the `Host` header and TLS server name.
    #[must_use]
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Sets the timeouts.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets the retry bounds.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The host name requests carry.
    #[must_use]
    pub fn host(&self) -> String {
        self.host
            .clone()
            .unwrap_or_else(|| super::endpoint_host(&self.region))
    }
}

/// One step of a KMS call, for logs and consoles. Holds nothing secret: no credentials, no
/// plaintext, no body.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A fresh attestation document was obtained from the NSM for a call.
    Attested {
        /// The operation it is for.
        operation: Operation,
        /// The document (COSE_Sign1; not secret: KMS and CloudTrail see it).
        document: &'a [u8],
        /// SHA-256 of the RSA public key (DER SPKI) inside it, also the CMS recipient id.
        public_key_sha256: [u8; 32],
    },
    /// The enclave's RSA key was replaced.
    KeyRotated {
        /// Why.
        reason: &'static str,
        /// SHA-256 of the new public key (DER SPKI).
        public_key_sha256: [u8; 32],
    },
    /// A new connection (and TLS session) was set up.
    Connected {
        /// Where.
        endpoint: &'a Endpoint,
        /// The TLS server name, or `None` for plain HTTP
        /// ([`Transport::PlainHttpForEmulator`]: emulators only).
        tls_server_name: Option<&'a str>,
        /// TLS trusts a custom CA instead of the Amazon roots (emulators and tests only).
        custom_ca: bool,
    },
    /// A request was signed and is being sent.
    Sending {
        /// The operation.
        operation: Operation,
        /// 1 for the first attempt.
        attempt: u32,
        /// The access key id signing it (not secret).
        access_key_id: &'a str,
        /// `X-Amz-Date`.
        amz_date: &'a str,
        /// Whether the request carries a `Recipient`.
        recipient: bool,
    },
    /// An answer arrived.
    Received {
        /// The operation.
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// `x-amzn-RequestId`.
        request_id: Option<&'a str>,
    },
    /// The call will be tried again.
    Retrying {
        /// The operation.
        operation: Operation,
        /// The attempt about to be made.
        next_attempt: u32,
        /// How long the client waits first.
        delay: Duration,
        /// What failed.
        reason: &'a str,
    },
    /// The clock offset was corrected from KMS's `Date`.
    ClockCorrected {
        /// Milliseconds added to the local clock from now on.
        offset_millis: i64,
    },
    /// The credentials provider was asked for new credentials.
    CredentialsRefreshed,
    /// `CiphertextForRecipient` was decrypted with the enclave's key.
    RecipientOpened {
        /// The operation.
        operation: Operation,
        /// How many secret bytes came out (the bytes themselves are never shown).
        plaintext_len: usize,
    },
    /// A call that reached the network ended, after its retries: how. Sent once per call (an
    /// attested call reports after its answer was checked and opened).
    Finished {
        /// The operation.
        operation: Operation,
        /// How it ended.
        outcome: Outcome,
        /// Attempts made.
        attempts: u32,
        /// From the first attempt to the end (the client's clock).
        elapsed: Duration,
    },
}

/// How a KMS call ended, in the classes an operator acts on (the metrics' `outcome` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// `AccessDeniedException`: the key policy (or an IAM policy) refused, for an attested call
    /// usually the PCRs.
    AccessDenied,
    /// Throttling, through every retry.
    Throttled,
    /// The request time was more than 5 minutes from KMS's, even after the correction.
    ClockSkew,
    /// The credentials expired (`ExpiredTokenException`) and fresh ones did not help.
    ExpiredToken,
    /// KMS does not know the credentials or refused the signature.
    InvalidCredentials,
    /// `InvalidCiphertextException`: the ciphertext or its encryption context is wrong.
    InvalidCiphertext,
    /// `IncorrectKeyException`: the ciphertext belongs to another key.
    IncorrectKey,
    /// The key does not exist, is disabled, pending deletion or unavailable.
    KeyUnusable,
    /// KMS's own failure (5xx, dependency timeout), through every retry.
    KmsInternal,
    /// KMS refused the request's form (validation, unsupported, a quota).
    InvalidRequest,
    /// Another KMS error code.
    KmsError,
    /// The proxy or KMS could not be reached (connection, TLS, HTTP).
    Unreachable,
    /// No credentials from the parent.
    NoCredentials,
    /// KMS answered, and the answer was refused here: not for the key asked, plaintext despite
    /// a `Recipient`, malformed, or a `CiphertextForRecipient` that does not open.
    AnswerRefused,
    /// Failed inside the enclave before or after the exchange (signing, the NSM, the RSA key).
    Local,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Self; 16] = [
        Self::Ok,
        Self::AccessDenied,
        Self::Throttled,
        Self::ClockSkew,
        Self::ExpiredToken,
        Self::InvalidCredentials,
        Self::InvalidCiphertext,
        Self::IncorrectKey,
        Self::KeyUnusable,
        Self::KmsInternal,
        Self::InvalidRequest,
        Self::KmsError,
        Self::Unreachable,
        Self::NoCredentials,
        Self::AnswerRefused,
        Self::Local,
    ];

    /// The label: `ok`, `access_denied`, `throttled`, `clock_skew`, `expired_token`,
    /// `invalid_credentials`, `invalid_ciphertext`, `incorrect_key`, `key_unusable`,
    /// `kms_internal`, `invalid_request`, `kms_error`, `unreachable`, `no_credentials`,
    /// `answer_refused`, `local`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::AccessDenied => "access_denied",
            Self::Throttled => "throttled",
            Self::ClockSkew => "clock_skew",
            Self::ExpiredToken => "expired_token",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidCiphertext => "invalid_ciphertext",
            Self::IncorrectKey => "incorrect_key",
            Self::KeyUnusable => "key_unusable",
            Self::KmsInternal => "kms_internal",
            Self::InvalidRequest => "invalid_request",
            Self::KmsError => "kms_error",
            Self::Unreachable => "unreachable",
            Self::NoCredentials => "no_credentials",
            Self::AnswerRefused => "answer_refused",
            Self::Local => "local",
        }
    }

    /// The outcome of a label.
    #[must_use]
    pub fn parse(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == label)
    }

    /// Whether the failure comes from what the caller sent (a ciphertext of another key or
    /// context, a malformed request) rather than from the enclave's ability to use KMS: such
    /// failures say nothing about the enclave's health.
    #[must_use]
    pub const fn is_callers_fault(self) -> bool {
        matches!(
            self,
            Self::InvalidCiphertext | Self::IncorrectKey | Self::InvalidRequest
        )
    }

    /// The outcome of a call that ended with `error` (`None`: it succeeded).
    #[must_use]
    pub fn of(error: Option<&ClientError>) -> Self {
        use super::ErrorKind as K;
        let Some(error) = error else {
            return Self::Ok;
        };
        match error {
            ClientError::GaveUp { last, .. } => Self::of(Some(last)),
            ClientError::Transport(_) => Self::Unreachable,
            ClientError::Credentials(_) => Self::NoCredentials,
            ClientError::Signing(_) | ClientError::Nsm(_) | ClientError::Key(_) => Self::Local,
            ClientError::Kms(KmsError::Service(service)) => match service.kind {
                K::AccessDenied => Self::AccessDenied,
                K::Throttling => Self::Throttled,
                K::ClockSkew => Self::ClockSkew,
                K::ExpiredToken => Self::ExpiredToken,
                K::UnrecognizedClient | K::InvalidSignature => Self::InvalidCredentials,
                K::InvalidCiphertext => Self::InvalidCiphertext,
                K::IncorrectKey => Self::IncorrectKey,
                K::NotFound | K::Disabled | K::KeyUnavailable | K::InvalidState => {
                    Self::KeyUnusable
                }
                K::Internal | K::DependencyTimeout => Self::KmsInternal,
                K::Validation
                | K::UnsupportedOperation
                | K::InvalidKeyUsage
                | K::InvalidGrantToken
                | K::LimitExceeded => Self::InvalidRequest,
                _ => Self::KmsError,
            },
            ClientError::Kms(KmsError::Encode(_)) => Self::Local,
            ClientError::Kms(_) => Self::AnswerRefused,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attested {
                operation,
                document,
                public_key_sha256,
            } => write!(
                f,
                "{operation}: NSM attestation document ({} bytes) for public key sha256:{}",
                document.len(),
                hex::encode(public_key_sha256)
            ),
            Self::KeyRotated {
                reason,
                public_key_sha256,
            } => write!(
                f,
                "new enclave RSA-2048 key sha256:{} ({reason})",
                hex::encode(public_key_sha256)
            ),
            Self::Connected {
                endpoint,
                tls_server_name: Some(name),
                custom_ca: false,
            } => write!(f, "connected to {endpoint}, TLS as {name}"),
            Self::Connected {
                endpoint,
                tls_server_name: Some(name),
                custom_ca: true,
            } => write!(
                f,
                "connected to {endpoint}, TLS as {name} trusting a CUSTOM CA instead of the \
                 Amazon roots (emulator or test setup; never for real KMS)"
            ),
            Self::Connected {
                endpoint,
                tls_server_name: None,
                ..
            } => write!(
                f,
                "connected to {endpoint}, PLAIN HTTP (Transport::PlainHttpForEmulator): no \
                 TLS, requests and answers travel in clear; emulator and moto only"
            ),
            Self::Sending {
                operation,
                attempt,
                access_key_id,
                amz_date,
                recipient,
            } => write!(
                f,
                "{operation}: attempt {attempt}, signed by {access_key_id} at {amz_date}{}",
                if *recipient { ", with Recipient" } else { "" }
            ),
            Self::Received {
                operation,
                status,
                request_id,
            } => write!(
                f,
                "{operation}: HTTP {status} (request id {})",
                request_id.unwrap_or("none")
            ),
            Self::Retrying {
                operation,
                next_attempt,
                delay,
                reason,
            } => write!(
                f,
                "{operation}: attempt {next_attempt} in {delay:?} after: {reason}"
            ),
            Self::ClockCorrected { offset_millis } => write!(
                f,
                "clock corrected by {offset_millis} ms from KMS's Date header"
            ),
            Self::CredentialsRefreshed => f.write_str("asked for fresh credentials"),
            Self::RecipientOpened {
                operation,
                plaintext_len,
            } => write!(
                f,
                "{operation}: CiphertextForRecipient decrypted inside the enclave ({plaintext_len} \
                 secret bytes)"
            ),
            Self::Finished {
                operation,
                outcome,
                attempts,
                elapsed,
            } => write!(
                f,
                "{operation}: {outcome} after {attempts} attempt(s) in {:.3} s",
                elapsed.as_secs_f64()
            ),
        }
    }
}

/// Receives [`Event`]s.
pub trait Observer: Send + Sync + fmt::Debug {
    /// One step happened.
    fn event(&self, event: &Event<'_>);
}

/// Why a KMS call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection, TLS or HTTP failed.
    Transport(TransportError),
    /// KMS answered with an error, or something that is not a valid answer.
    Kms(KmsError),
    /// No credentials to sign with.
    Credentials(CredentialsError),
    /// The request could not be signed (bad region, bad host).
    Signing(SigV4Error),
    /// The NSM could not produce an attestation document.
    Nsm(NsmError),
    /// The enclave's RSA key could not be generated.
    Key(RsaKeyError),
    /// A retryable failure persisted through every attempt.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The KMS service error behind this failure, if KMS (or a front end) answered with one.
    #[must_use]
    pub fn service_error(&self) -> Option<&ServiceError> {
        match self {
            Self::Kms(KmsError::Service(e)) => Some(e),
            Self::GaveUp { last, .. } => last.service_error(),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => e.fmt(f),
            Self::Kms(e) => e.fmt(f),
            Self::Credentials(e) => e.fmt(f),
            Self::Signing(e) => write!(f, "cannot sign the KMS request: {e}"),
            Self::Nsm(e) => write!(f, "cannot get an attestation document: {e}"),
            Self::Key(e) => write!(f, "cannot create the enclave's RSA key: {e}"),
            Self::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts; last error: {last}")
            }
        }
    }
}

impl core::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Transport(e) => Some(e),
            Self::Kms(e) => Some(e),
            Self::Credentials(e) => Some(e),
            Self::Signing(e) => Some(e),
            Self::Nsm(e) => Some(e),
            Self::Key(e) => Some(e),
            Self::GaveUp { last, .. } => Some(last.as_ref()),
        }
    }
}

impl From<TransportError> for ClientError {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

impl From<KmsError> for ClientError {
    fn from(e: KmsError) -> Self {
        Self::Kms(e)
    }
}

/// A connected stream, with or without TLS.
enum Connection {
    Plain(Stream),
    Tls(Box<TlsStream>),
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// A failed attempt: the error, and KMS's `Date` when it answered.
struct Failure {
    error: ClientError,
    server_date: Option<UnixMillis>,
    received_at: UnixMillis,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Self {
            error,
            server_date: None,
            received_at: UnixMillis(0),
        }
    }
}

/// The signed, retrying KMS client. Cheap to share (`&self` methods; wrap it in an `Arc`).
pub struct KmsClient {
    config: ClientConfig,
    host: String,
    tls: Option<TlsConnector>,
    credentials: Arc<dyn CredentialsProvider>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    observer: Option<Arc<dyn Observer>>,
    signer: Mutex<SigV4>,
    idle: Mutex<Vec<Connection>>,
    clock_offset_millis: AtomicI64,
}

impl fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsClient")
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .field(
                "clock_offset_millis",
                &self.clock_offset_millis.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl KmsClient {
    /// A client for `config`, signing with what `credentials` provides. A connection over
    /// plain HTTP or to a custom CA is reported, loudly, as [`Event::Connected`] to the
    /// [`Observer`].
    ///
    /// # Errors
    /// [`ClientError::Transport`] with [`TransportError::TlsConfig`] for unusable trust
    /// anchors.
    pub fn new(
        config: ClientConfig,
        credentials: Arc<dyn CredentialsProvider>,
    ) -> Result<Self, ClientError> {
        let tls = match &config.transport {
            Transport::Tls(anchors) => Some(TlsConnector::new(anchors)?),
            Transport::PlainHttpForEmulator => None,
        };
        Ok(Self {
            host: config.host(),
            config,
            tls,
            credentials,
            clock: Arc::new(SystemClock),
            sleeper: Arc::new(ThreadSleeper),
            observer: None,
            signer: Mutex::new(SigV4::new()),
            idle: Mutex::new(Vec::new()),
            clock_offset_millis: AtomicI64::new(0),
        })
    }

    /// Reports every step to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Reads the time from `clock` (before the offset correction) instead of the system.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Waits between attempts with `sleeper` instead of `std::thread::sleep`.
    #[must_use]
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// What is added to the local clock when signing (learnt from KMS's `Date` after a
    /// clock-skew error; 0 until then).
    #[must_use]
    pub fn clock_offset_millis(&self) -> i64 {
        self.clock_offset_millis.load(Ordering::SeqCst)
    }

    /// The local clock, uncorrected (for measuring ages, which the offset must not change).
    pub(crate) fn local_now(&self) -> UnixMillis {
        self.clock.now()
    }

    /// The corrected current time.
    #[must_use]
    pub fn now(&self) -> UnixMillis {
        let local = self.clock.now().0;
        let offset = self.clock_offset_millis();
        UnixMillis(local.saturating_add_signed(offset))
    }

    pub(crate) fn emit(&self, event: &Event<'_>) {
        if let Some(observer) = &self.observer {
            observer.event(event);
        }
    }

    /// Sends `request` (signed, with retries) and decodes the answer. Does not add or open a
    /// `Recipient`: see [`super::attested::AttestedKmsClient`] for that.
    ///
    /// # Errors
    /// [`ClientError`]: the KMS error (with its likely fix), or the transport, credentials or
    /// signing failure; [`ClientError::GaveUp`] when retryable failures outlast the policy.
    pub fn send<R: KmsRequest>(&self, request: &R) -> Result<R::Response, ClientError> {
        let started = self.clock.now();
        let (result, attempts) = self.send_counted(request);
        self.finished(R::OPERATION, started, attempts, result.as_ref().err());
        result
    }

    /// Reports [`Event::Finished`] for a call that started at `started` (the local clock) and
    /// made `attempts` attempts; nothing for a call that never reached the network.
    pub(crate) fn finished(
        &self,
        operation: Operation,
        started: UnixMillis,
        attempts: u32,
        error: Option<&ClientError>,
    ) {
        if attempts == 0 {
            return;
        }
        self.emit(&Event::Finished {
            operation,
            outcome: Outcome::of(error),
            attempts,
            elapsed: Duration::from_millis(self.clock.now().0.saturating_sub(started.0)),
        });
    }

    /// As [`KmsClient::send`] without [`Event::Finished`]: the result and the attempts made
    /// (0 when the request could not even be encoded).
    pub(crate) fn send_counted<R: KmsRequest>(
        &self,
        request: &R,
    ) -> (Result<R::Response, ClientError>, u32) {
        let mut attempts = 0;
        let result = self.send_attempts(request, &mut attempts);
        (result, attempts)
    }

    fn send_attempts<R: KmsRequest>(
        &self,
        request: &R,
        attempts: &mut u32,
    ) -> Result<R::Response, ClientError> {
        let body = super::encode_request(request)?;
        let operation = R::OPERATION;
        let policy = self.config.retry;
        let mut attempt = 1u32;
        let mut clock_corrected = false;
        let mut credentials_refreshed = false;
        loop {
            *attempts = attempt;
            let failure = match self.attempt(request, body.expose(), attempt) {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            let error = failure.error;
            let advice = match &error {
                ClientError::Transport(e) if e.is_transient() => RetryAdvice::Backoff,
                // The parent's credentials service restarting is as transient as a proxy
                // restarting.
                ClientError::Credentials(CredentialsError::Unreachable { error, .. })
                    if error.is_transient() =>
                {
                    RetryAdvice::Backoff
                }
                ClientError::Kms(e) => e.retry_advice(),
                _ => RetryAdvice::DoNotRetry,
            };
            match advice {
                RetryAdvice::Backoff if attempt < policy.max_attempts => {
                    attempt += 1;
                    let delay = self.jitter(policy.backoff_cap(attempt));
                    self.emit(&Event::Retrying {
                        operation,
                        next_attempt: attempt,
                        delay,
                        reason: &error.to_string(),
                    });
                    self.sleeper.sleep(delay);
                }
                RetryAdvice::Backoff => {
                    return Err(ClientError::GaveUp {
                        attempts: attempt,
                        last: Box::new(error),
                    });
                }
                RetryAdvice::CorrectClock if !clock_corrected => {
                    let Some(server) = failure.server_date else {
                        return Err(error);
                    };
                    clock_corrected = true;
                    // Offset so that local + offset = KMS time (to the second of its Date).
                    let local = i64::try_from(failure.received_at.0).unwrap_or(i64::MAX);
                    let server = i64::try_from(server.0).unwrap_or(i64::MAX);
                    let offset = server.saturating_sub(local);
                    self.clock_offset_millis.store(offset, Ordering::SeqCst);
                    self.emit(&Event::ClockCorrected {
                        offset_millis: offset,
                    });
                    self.emit(&Event::Retrying {
                        operation,
                        next_attempt: attempt + 1,
                        delay: Duration::ZERO,
                        reason: &error.to_string(),
                    });
                    attempt += 1;
                }
                RetryAdvice::RefreshCredentials
                    if !credentials_refreshed && self.credentials.invalidate() =>
                {
                    credentials_refreshed = true;
                    self.emit(&Event::CredentialsRefreshed);
                    self.emit(&Event::Retrying {
                        operation,
                        next_attempt: attempt + 1,
                        delay: Duration::ZERO,
                        reason: &error.to_string(),
                    });
                    attempt += 1;
                }
                _ => return Err(error),
            }
        }
    }

    /// A uniformly random duration in `[0, cap]`.
    fn jitter(&self, cap: Duration) -> Duration {
        let mut bytes = [0u8; 8];
        if AwsLc.fill_random(&mut bytes).is_err() {
            return cap;
        }
        let fraction = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
        cap.mul_f64(fraction)
    }

    fn attempt<R: KmsRequest>(
        &self,
        request: &R,
        body: &[u8],
        attempt: u32,
    ) -> Result<R::Response, Failure> {
        let operation = R::OPERATION;
        let credentials = self
            .credentials
            .credentials()
            .map_err(ClientError::Credentials)?;
        let length = body.len().to_string();
        let headers = [
            ("Host", self.host.as_str()),
            ("Content-Type", super::CONTENT_TYPE),
            ("X-Amz-Target", operation.target()),
            ("Content-Length", length.as_str()),
            ("User-Agent", USER_AGENT),
        ];
        let params = SigningParams {
            credentials: &credentials,
            region: &self.config.region,
            service: super::SIGNING_NAME,
            time: self.now(),
            settings: sigv4::Settings::default(),
        };
        let unsigned = sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let signed = self
            .signer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sign(&AwsLc, &params, &unsigned)
            .map_err(ClientError::Signing)?;
        let mut builder = ::http::Request::post("/");
        for (name, value) in headers.iter().copied().chain(signed.headers()) {
            builder = builder.header(name, value);
        }
        let http_request = builder.body(body).map_err(|_| {
            ClientError::Signing(SigV4Error::InvalidHeader {
                name: "Host".into(),
                problem: "not a valid HTTP header value",
            })
        })?;
        self.emit(&Event::Sending {
            operation,
            attempt,
            access_key_id: credentials.access_key_id(),
            amz_date: signed.amz_date(),
            recipient: request.recipient().is_some(),
        });
        let received = self
            .exchange(&http_request)
            .map_err(ClientError::Transport)?;
        let received_at = self.clock.now();
        let response = received.response;
        let status = response.status().as_u16();
        let headers: Vec<(&str, &str)> = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        let header = |wanted: &str| {
            headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
                .map(|(_, value)| *value)
        };
        self.emit(&Event::Received {
            operation,
            status,
            request_id: header("x-amzn-requestid"),
        });
        super::decode_response(request, status, &headers, response.body().expose()).map_err(
            |error| Failure {
                error: ClientError::Kms(error),
                server_date: header("date").and_then(http::parse_http_date),
                received_at,
            },
        )
    }

    fn connect(&self) -> Result<Connection, TransportError> {
        let stream = Stream::connect(&self.config.endpoint, &self.config.timeouts)?;
        let connection = match &self.tls {
            Some(tls) => Connection::Tls(Box::new(tls.connect(
                stream,
                &self.config.endpoint,
                &self.host,
                self.config.timeouts.io,
            )?)),
            None => Connection::Plain(stream),
        };
        self.emit(&Event::Connected {
            endpoint: &self.config.endpoint,
            tls_server_name: self.tls.as_ref().map(|_| self.host.as_str()),
            custom_ca: matches!(
                self.config.transport,
                Transport::Tls(TrustAnchors::CustomCaPem(_))
            ),
        });
        Ok(connection)
    }

    fn keep(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(connection);
        }
    }

    /// One HTTP exchange: on an idle connection if there is one (falling back once to a new
    /// connection if the server had closed it), else on a new one.
    fn exchange(&self, request: &::http::Request<&[u8]>) -> Result<Received, TransportError> {
        let endpoint = &self.config.endpoint;
        let io_timeout = self.config.timeouts.io;
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(mut connection) = reused {
            match http::exchange(&mut connection, request, MAX_RESPONSE_LEN) {
                Ok(received) => {
                    if received.reusable {
                        self.keep(connection);
                    }
                    return Ok(received);
                }
                // The server may close an idle connection at any time; every operation here
                // is safe to send again, so a new connection gets it.
                Err(error) if error.is_transient() => {}
                Err(error) => return Err(error.at(endpoint, io_timeout)),
            }
        }
        let mut connection = self.connect()?;
        let received = http::exchange(&mut connection, request, MAX_RESPONSE_LEN)
            .map_err(|e: HttpError| e.at(endpoint, io_timeout))?;
        if received.reusable {
            self.keep(connection);
        }
        Ok(received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_caps_double_up_to_the_maximum() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff_cap(2), Duration::from_secs(1));
        assert_eq!(policy.backoff_cap(3), Duration::from_secs(2));
        assert_eq!(policy.backoff_cap(6), Duration::from_secs(16));
        assert_eq!(policy.backoff_cap(7), Duration::from_secs(20));
        assert_eq!(policy.backoff_cap(u32::MAX), Duration::from_secs(20));
    }

    #[test]
    fn enclave_config_is_vsock_tls_to_the_regional_host() {
        let config = ClientConfig::enclave("eu-west-1");
        assert_eq!(config.endpoint.to_string(), "vsock://3:8000");
        assert_eq!(config.transport, Transport::Tls(TrustAnchors::AmazonRoots));
        assert_eq!(config.host(), "kms.eu-west-1.amazonaws.com");
        assert_eq!(config.clone().with_host("localhost").host(), "localhost");
        assert_eq!(config.retry.max_attempts, 3);
    }

    #[test]
    fn events_print_without_secrets() {
        let shown = Event::Sending {
            operation: Operation::Decrypt,
            attempt: 2,
            access_key_id: "ASIAEXAMPLE",
            amz_date: "20260101T000000Z",
            recipient: true,
        }
        .to_string();
        assert_eq!(
            shown,
            "Decrypt: attempt 2, signed by ASIAEXAMPLE at 20260101T000000Z, with Recipient"
        );
        let opened = Event::RecipientOpened {
            operation: Operation::GenerateDataKey,
            plaintext_len: 32,
        };
        assert!(opened.to_string().contains("32 secret bytes"));
    }
}
