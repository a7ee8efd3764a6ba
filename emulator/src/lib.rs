//! The KMS emulator: a real HTTPS server on loopback that speaks KMS's JSON 1.1 protocol,
//! verifies SigV4, honours the attestation `Recipient` and enforces key policies.
//!
//! **Development only.** The state file holds every key, the credentials' secrets and the
//! TLS CA's private key in PLAINTEXT (file mode 0600). Never point real data at it.
//!
//! ```no_run
//! use ccc_emulator::{Config, Emulator, TrustMode};
//! let running = Emulator::start(Config::new("target/kms-emulator/state.json"))?;
//! println!("{} (trust {})", running.endpoint(), running.ca_path().display());
//! println!("key {}", running.default_key_arn());
//! running.stop();
//! # Ok::<(), ccc_emulator::EmulatorError>(())
//! ```
//!
//! # What it serves
//! `POST /` with `X-Amz-Target: TrentService.<Operation>`: `Encrypt`, `Decrypt`,
//! `GenerateDataKey`, `GenerateDataKeyWithoutPlaintext`, `GenerateDataKeyPair`,
//! `GenerateRandom`, `DeriveSharedSecret`, `GetPublicKey`, `CreateKey`, `DescribeKey`,
//! `ListKeys`, `EnableKey`, `DisableKey`, `PutKeyPolicy`, `GetKeyPolicy`, `CreateAlias`,
//! `DeleteAlias`, `ListAliases`. Key ids may be given as id, key ARN, alias name or alias ARN.
//!
//! # Authentication and authorization
//! Every request must carry a valid SigV4 signature (service `kms`, the emulator's region)
//! by credentials in the state file, within 5 minutes of the emulator's [`Clock`]. Errors
//! are KMS's: `UnrecognizedClientException`, `InvalidSignatureException` ("Signature
//! expired: ..."), `IncompleteSignatureException`, `MissingAuthenticationTokenException`.
//!
//! # Accounts
//! The state's account owns the default key. A credential whose principal is in another account
//! (`Config::with_credential`) acts in that account, as a parent's own account would: its
//! `CreateKey` and `CreateAlias` create keys and aliases there, and an alias name or a bare key
//! id resolves in the caller's account (so `alias/x` means different keys to different
//! callers); a key ARN names its account, and that key's policy decides. Key-less operations
//! of another account follow KMS's default (its root may do everything).
//!
//! Each key's policy (AWS's JSON policy language, evaluated by `ccc_policy` the way AWS
//! documents it: explicit Deny first, negated operators holding on absent keys) is the whole
//! authorization:
//! there is no IAM layer, so a statement for the account root (`arn:aws:iam::<account>:root`,
//! KMS's default) admits every principal of that account. Operations without a key
//! (`GenerateRandom`, `CreateKey`, `ListKeys`, `ListAliases`) are governed by the
//! **account policy** in the state file (in AWS, IAM policies govern them); it starts as the
//! default key's policy and [`Config::policy`] sets both. The request context has
//! `aws:PrincipalArn`, `kms:CallerAccount`, `kms:EncryptionContext:<key>`,
//! `kms:EncryptionContextKeys`, and, with a verified `Recipient`,
//! `kms:RecipientAttestation:ImageSha384` (PCR0) and `kms:RecipientAttestation:PCR<n>`
//! (lowercase hex) for every PCR in the document. A denial is an `AccessDeniedException`
//! whose message is `ccc_policy::Evaluation::message`: it names each denying statement, or each
//! failed condition, with the request's value and the policy's.
//!
//! # Recipient
//! The attestation document is verified with `ccc_sdk::attestation` at the emulator's current
//! time under the configured [`TrustMode`]: a document that does not parse, is unsigned, chains
//! to another root, has a bad signature or expired certificates, or whose `public_key` is not
//! the DER SubjectPublicKeyInfo of an RSA-2048 key is refused with `ValidationException`
//! naming the verifier's error (KMS documents no code for this; ValidationException is what
//! KMS uses for unusable parameters and what the SDK's error hints expect). Debug-mode
//! documents are accepted, as KMS does: their all-zero PCRs simply fail PCR conditions. The
//! answer carries `CiphertextForRecipient` (CMS EnvelopedData in KMS's exact BER layout, built
//! by `ccc_sdk::cms::build`) and no plaintext member.
//!
//! # State file
//! JSON, written atomically (temporary file, `fsync`, rename) with mode 0600 after every
//! change, so a restart loses nothing. See [`state`] for the format. The CA certificate is
//! also written next to it as `<state>.ca.pem` for clients to trust explicitly. One
//! emulator per state file.
// Bytes from peers (the enclave, the parent, KMS clients, the kernel command line) are read
// with get()/split_first()/cursors: indexing that could panic is an error outside tests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod state;

mod fault;
mod http;
mod keys;
mod server;
mod service;
mod tls;

use ccc_sdk::attestation::{
    self, AttestationError, RootOfTrust, VerifiedAttestation, VerifyOptions,
};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::time::UnixMillis;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

pub use ccc_policy::PolicyError;

/// The connection limit unless configured: each connection is one thread, and a handful of
/// enclaves and test clients need far fewer.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// The region of a new state file unless [`Config::region`] says otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where the emulator's time comes from: request signatures (±5 minutes), attestation
/// certificate validity and the `Date` header are all judged by it.
#[derive(Clone)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(at) => write!(f, "Clock::Manual({})", at.load(Ordering::SeqCst)),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands at `at` until [`Clock::set`] moves it. Clones share the time, so a
    /// test keeps one and moves the running emulator's clock.
    #[must_use]
    pub fn manual(at: UnixMillis) -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(at.0))),
        }
    }

    /// Moves a manual clock; returns false (and does nothing) for the system clock.
    pub fn set(&self, at: UnixMillis) -> bool {
        match &self.manual {
            Some(current) => {
                current.store(at.0, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> UnixMillis {
        match &self.manual {
            Some(at) => UnixMillis(at.load(Ordering::SeqCst)),
            None => UnixMillis::now(),
        }
    }
}

/// Which attestation documents a `Recipient` may carry. Always chosen explicitly; the default
/// is the real AWS root, which no locally made document satisfies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustMode {
    /// Documents signed by the NSM, chaining to AWS Nitro Enclaves Root G1 (what KMS accepts).
    #[default]
    AwsNitro,
    /// Documents chaining to this development root (DER), e.g. the NSM simulator's. Build it
    /// with [`TrustMode::development_root_pem`].
    DevelopmentRoot {
        /// The root certificate, DER.
        root_der: Vec<u8>,
    },
    /// INSECURE: QEMU `nitro-enclave` documents, which are not signed at all and prove
    /// nothing. Announced at startup and on every log line.
    InsecureQemuUnsigned,
    /// Documents any of these modes accepts (e.g. a development environment's emulation: a
    /// stand-in for the AWS root and the NSM simulator's development root). Each member is
    /// announced at startup.
    AnyOf(Vec<TrustMode>),
}

impl TrustMode {
    /// A development root from a PEM certificate (checked to be an X.509 v3 P-384
    /// certificate, as the NSM's roots are).
    ///
    /// # Errors
    /// [`EmulatorError::Trust`] naming what is wrong with the PEM.
    pub fn development_root_pem(pem: &str) -> Result<Self, EmulatorError> {
        match RootOfTrust::custom_pem(pem) {
            Ok(RootOfTrust::Custom(root)) => Ok(Self::DevelopmentRoot {
                root_der: root.der().to_vec(),
            }),
            Ok(_) => Err(EmulatorError::Trust(
                "the PEM did not yield a custom root".into(),
            )),
            Err(e) => Err(EmulatorError::Trust(format!(
                "the development root is not usable: {e}"
            ))),
        }
    }

    /// Parses the command-line form: `aws`, `simulator:<root.pem>` (reads the file) or
    /// `qemu-unsigned`.
    ///
    /// # Errors
    /// [`EmulatorError::Trust`] for another value, [`EmulatorError::Io`] if the PEM file
    /// cannot be read.
    pub fn from_flag(value: &str) -> Result<Self, EmulatorError> {
        match value {
            "aws" => Ok(Self::AwsNitro),
            "qemu-unsigned" => Ok(Self::InsecureQemuUnsigned),
            other => match other.strip_prefix("simulator:") {
                Some(path) if !path.is_empty() => {
                    let pem =
                        std::fs::read_to_string(path).map_err(|source| EmulatorError::Io {
                            what: format!("reading the development root {path}"),
                            source,
                        })?;
                    Self::development_root_pem(&pem)
                }
                _ => Err(EmulatorError::Trust(format!(
                    "unknown trust mode {other:?}: use aws, simulator:<root.pem> or qemu-unsigned"
                ))),
            },
        }
    }

    /// A short name for logs: `aws`, `development-root`, `INSECURE-qemu-unsigned`, or the
    /// members' joined by `+`.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::AwsNitro => "aws".to_owned(),
            Self::DevelopmentRoot { .. } => "development-root".to_owned(),
            Self::InsecureQemuUnsigned => "INSECURE-qemu-unsigned".to_owned(),
            Self::AnyOf(members) => members
                .iter()
                .map(Self::label)
                .collect::<Vec<_>>()
                .join("+"),
        }
    }

    /// True when unsigned QEMU documents are accepted (alone or among others).
    #[must_use]
    pub fn accepts_unsigned(&self) -> bool {
        match self {
            Self::InsecureQemuUnsigned => true,
            Self::AnyOf(members) => members.iter().any(Self::accepts_unsigned),
            _ => false,
        }
    }

    /// The roots of trust, in order (an `AnyOf` flattened).
    ///
    /// # Errors
    /// [`EmulatorError::Trust`] for a development root that is not a P-384 certificate.
    pub fn roots(&self) -> Result<Vec<RootOfTrust>, EmulatorError> {
        match self {
            Self::AwsNitro => Ok(vec![RootOfTrust::AwsNitro]),
            Self::DevelopmentRoot { root_der } => {
                Ok(vec![RootOfTrust::custom(root_der.clone()).map_err(
                    |e| EmulatorError::Trust(format!("the development root: {e}")),
                )?])
            }
            Self::InsecureQemuUnsigned => Ok(vec![RootOfTrust::InsecureQemuUnsigned]),
            Self::AnyOf(members) => {
                let mut out = Vec::new();
                for member in members {
                    out.extend(member.roots()?);
                }
                if out.is_empty() {
                    return Err(EmulatorError::Trust(
                        "AnyOf with no member accepts nothing; name at least one root".into(),
                    ));
                }
                Ok(out)
            }
        }
    }

    /// Verifies `document` as the emulator does for a `Recipient`, at `at`: signature and
    /// chain under one of the trusted roots (debug-mode documents accepted, as KMS does: their
    /// all-zero PCRs fail PCR conditions). `cargo xtask explain` calls this too, so it judges a
    /// document exactly as the emulator would.
    ///
    /// # Errors
    /// The verifier's error: the first that is not about the root (an expired chain under
    /// the right root says "expired", not "untrusted root"), else the first root's.
    pub fn verify(
        &self,
        document: &[u8],
        at: UnixMillis,
    ) -> Result<VerifiedAttestation, AttestationError> {
        let roots = self
            .roots()
            .map_err(|e| AttestationError::InvalidInput(e.to_string()))?;
        verify_with(&roots, document, at)
    }
}

/// See [`TrustMode::verify`].
pub(crate) fn verify_with(
    roots: &[RootOfTrust],
    document: &[u8],
    at: UnixMillis,
) -> Result<VerifiedAttestation, AttestationError> {
    let mut errors = Vec::new();
    for root in roots {
        let options = VerifyOptions::new(at)
            .with_root(root.clone())
            .with_policy(attestation::Policy::new().allow_debug_mode());
        match attestation::verify(document, &options, &AwsLc) {
            Ok(verified) => return Ok(verified),
            Err(e) => errors.push(e),
        }
    }
    let about_root = |e: &AttestationError| {
        matches!(
            e,
            AttestationError::UntrustedRoot { .. }
                | AttestationError::UnsignedDocument
                | AttestationError::NotQemuUnsigned(_)
        )
    };
    let pick = errors
        .iter()
        .position(|e| !about_root(e))
        .unwrap_or_default();
    Err(errors
        .into_iter()
        .nth(pick)
        .unwrap_or_else(|| AttestationError::InvalidInput("no root of trust configured".into())))
}

/// HTTPS (the default) or plain HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// TLS with a certificate for `kms.<region>.amazonaws.com`, `localhost` and `127.0.0.1`,
    /// issued by the emulator's CA.
    #[default]
    Https,
    /// INSECURE: plain HTTP, announced at startup. Requests and keys cross the loopback
    /// interface in clear.
    InsecureHttp,
}

/// One set of credentials the emulator accepts. The secret and the session token are zeroized
/// on drop and never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
    principal_arn: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("principal_arn", &self.principal_arn)
            .finish()
    }
}

impl Credential {
    /// Credentials for `principal_arn` (the caller identity policies see, e.g.
    /// `arn:aws:sts::111122223333:assumed-role/Parent/i-0abc`). With a session token the
    /// request must carry exactly it, signed.
    ///
    /// # Errors
    /// [`EmulatorError::State`] if the access key id, secret or token would not be accepted
    /// by SigV4 (see `ccc_sdk::sigv4::Credentials::new`) or the ARN is not an IAM/STS ARN.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        principal_arn: impl Into<String>,
    ) -> Result<Self, EmulatorError> {
        let credential = Self {
            access_key_id: access_key_id.into(),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
            session_token: session_token.map(Zeroizing::new),
            principal_arn: principal_arn.into(),
        };
        credential.sigv4().map_err(|e| EmulatorError::State {
            path: PathBuf::new(),
            problem: format!("credential {}: {e}", credential.access_key_id),
        })?;
        if state::account_of_arn(&credential.principal_arn).is_none() {
            return Err(EmulatorError::State {
                path: PathBuf::new(),
                problem: format!(
                    "credential {}: principal {:?} is not an ARN like \
                     arn:aws:iam::111122223333:role/Name",
                    credential.access_key_id, credential.principal_arn
                ),
            });
        }
        Ok(credential)
    }

    /// The access key id.
    #[must_use]
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key. Do not log it.
    #[must_use]
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The session token, for temporary credentials. Do not log it.
    #[must_use]
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref().map(String::as_str)
    }

    /// The principal ARN policies see.
    #[must_use]
    pub fn principal_arn(&self) -> &str {
        &self.principal_arn
    }

    /// The same credentials as the SDK's SigV4 type, to sign requests to the emulator.
    ///
    /// # Errors
    /// The SDK's refusal (never for credentials built by [`Credential::new`]).
    pub fn sigv4(&self) -> Result<ccc_sdk::sigv4::Credentials, ccc_sdk::sigv4::SigV4Error> {
        ccc_sdk::sigv4::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.as_str(),
            self.session_token.as_ref().map(|t| t.as_str().to_owned()),
        )
    }
}

/// How to run the emulator. Start from [`Config::new`] and adjust fields or use the `with_`
/// methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// TCP port on 127.0.0.1; 0 picks a free one ([`Running::addr`] tells which).
    pub port: u16,
    /// The state file (created if missing; its directory too).
    pub state_path: PathBuf,
    /// The region. `None`: the state file's, or [`DEFAULT_REGION`] for a new one. A state file
    /// created for another region is refused (keys and ARNs are regional).
    pub region: Option<String>,
    /// Which attestation documents a `Recipient` may carry.
    pub trust: TrustMode,
    /// A key policy (JSON) that replaces, at every start, the default key's policy and (unless
    /// [`Config::account_policy`] is set) the account policy. `None` keeps what the state has
    /// (a new state gets KMS's default policy: the account root may do everything).
    pub policy: Option<String>,
    /// The account policy for key-less operations (`GenerateRandom`, `CreateKey`, ...), which
    /// IAM policies govern in AWS: a key policy, or an IAM identity policy without principals
    /// (e.g. a release's `iam-policy-template`), which then applies to every principal of the
    /// account. Replaces the state's at every start.
    pub account_policy: Option<String>,
    /// HTTPS or plain HTTP.
    pub transport: Transport,
    /// The emulator's time.
    pub clock: Clock,
    /// Credentials to add to the state at start (replacing ones with the same access key id).
    pub credentials: Vec<Credential>,
    /// Most connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Print one line per request (and the startup warnings) on stderr.
    pub log: bool,
}

impl Config {
    /// Defaults: any free port, region from the state (else `us-east-1`), AWS trust, HTTPS,
    /// the system clock, logging on.
    #[must_use]
    pub fn new(state_path: impl Into<PathBuf>) -> Self {
        Self {
            port: 0,
            state_path: state_path.into(),
            region: None,
            trust: TrustMode::AwsNitro,
            policy: None,
            account_policy: None,
            transport: Transport::Https,
            clock: Clock::system(),
            credentials: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            log: true,
        }
    }

    /// Sets the port.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the region.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the trust mode.
    #[must_use]
    pub fn with_trust(mut self, trust: TrustMode) -> Self {
        self.trust = trust;
        self
    }

    /// Sets the default key's (and the account's) policy.
    #[must_use]
    pub fn with_policy(mut self, policy: impl Into<String>) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// Sets the account policy (see [`Config::account_policy`]).
    #[must_use]
    pub fn with_account_policy(mut self, policy: impl Into<String>) -> Self {
        self.account_policy = Some(policy.into());
        self
    }

    /// Sets the transport.
    #[must_use]
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Adds credentials.
    #[must_use]
    pub fn with_credential(mut self, credential: Credential) -> Self {
        self.credentials.push(credential);
        self
    }

    /// Turns the per-request log lines on or off.
    #[must_use]
    pub fn with_log(mut self, log: bool) -> Self {
        self.log = log;
        self
    }
}

/// Why the emulator could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmulatorError {
    /// A file or socket operation failed.
    Io {
        /// What was being done (names the path or address).
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state file is unusable.
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The configured policy does not parse.
    Policy(PolicyError),
    /// The trust mode is unusable (bad root certificate, unknown mode).
    Trust(String),
    /// The TLS CA or server certificate could not be made or loaded.
    Tls(String),
}

impl fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, source } => write!(f, "KMS emulator: {what}: {source}"),
            Self::State { path, problem } if path.as_os_str().is_empty() => {
                write!(f, "KMS emulator: {problem}")
            }
            Self::State { path, problem } => {
                write!(f, "KMS emulator state {}: {problem}", path.display())
            }
            Self::Policy(e) => write!(f, "KMS emulator: the configured {e}"),
            Self::Trust(what) => write!(f, "KMS emulator trust mode: {what}"),
            Self::Tls(what) => write!(f, "KMS emulator TLS: {what}"),
        }
    }
}

impl core::error::Error for EmulatorError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Policy(e) => Some(e),
            _ => None,
        }
    }
}

/// The emulator's entry point.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Loads (or creates) the state, binds the listener and starts serving. The listener is
    /// bound before this returns, so a client may connect immediately.
    ///
    /// # Errors
    /// [`EmulatorError`] for an unusable state file, policy, trust root, certificate or port.
    pub fn start(config: Config) -> Result<Running, EmulatorError> {
        server::start(config)
    }
}

/// A running emulator. Dropping it stops it (as [`Running::stop`] does).
pub struct Running {
    server: Option<server::Server>,
    info: Info,
}

struct Info {
    addr: SocketAddr,
    https: bool,
    host: String,
    region: String,
    account_id: String,
    ca_pem: String,
    ca_der: Vec<u8>,
    ca_path: PathBuf,
    state_path: PathBuf,
    credential: Credential,
    default_key_id: String,
    default_key_arn: String,
    trust: TrustMode,
    clock: Clock,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("endpoint", &self.endpoint())
            .field("state", &self.info.state_path)
            .field("trust", &self.info.trust.label())
            .field("default_key", &self.info.default_key_arn)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The bound address (127.0.0.1 and the port).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.info.addr
    }

    /// `https://127.0.0.1:<port>` (or `http://` with [`Transport::InsecureHttp`]): what to give
    /// a client as its endpoint URL.
    #[must_use]
    pub fn endpoint(&self) -> String {
        let scheme = if self.info.https { "https" } else { "http" };
        format!("{scheme}://{}", self.info.addr)
    }

    /// True for HTTPS.
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.info.https
    }

    /// `kms.<region>.amazonaws.com`: the TLS server name and `Host` a KMS client uses (the
    /// certificate also names `localhost` and `127.0.0.1`).
    #[must_use]
    pub fn host_name(&self) -> &str {
        &self.info.host
    }

    /// The region.
    #[must_use]
    pub fn region(&self) -> &str {
        &self.info.region
    }

    /// The account id in every ARN.
    #[must_use]
    pub fn account_id(&self) -> &str {
        &self.info.account_id
    }

    /// The emulator CA's certificate (PEM) that clients must be told to trust.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.info.ca_pem
    }

    /// The emulator CA's certificate (DER).
    #[must_use]
    pub fn ca_der(&self) -> &[u8] {
        &self.info.ca_der
    }

    /// Where the CA certificate was written (`<state>.ca.pem`).
    #[must_use]
    pub fn ca_path(&self) -> &Path {
        &self.info.ca_path
    }

    /// The state file.
    #[must_use]
    pub fn state_path(&self) -> &Path {
        &self.info.state_path
    }

    /// The state's first credentials (created with the state: temporary-style, with a session
    /// token, for `arn:aws:sts::<account>:assumed-role/ccc-emulator-parent/emulator`).
    #[must_use]
    pub fn credentials(&self) -> &Credential {
        &self.info.credential
    }

    /// The default key's id (a symmetric ENCRYPT_DECRYPT key created with the state).
    #[must_use]
    pub fn default_key_id(&self) -> &str {
        &self.info.default_key_id
    }

    /// The default key's ARN.
    #[must_use]
    pub fn default_key_arn(&self) -> &str {
        &self.info.default_key_arn
    }

    /// The trust mode.
    #[must_use]
    pub fn trust(&self) -> &TrustMode {
        &self.info.trust
    }

    /// The clock (move a [`Clock::manual`] one with [`Clock::set`]).
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.info.clock
    }

    /// Stops accepting, closes every connection and waits for their threads. The state is
    /// already on disk (it is written after every change).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// A test harness or xtask keeps `Running` in one thread and hands `Config` to another.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Running>();
    send_sync::<Config>();
    send_sync::<Credential>();
};
