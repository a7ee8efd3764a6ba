//! The parent side: where the instance role's credentials come from (IMDSv2, or environment
//! variables for development) and [`serve`], which answers the enclave's credentials
//! protocol on any [`Listener`] (vsock on a Nitro parent, a vhost-device-vsock Unix socket on
//! a QEMU host, TCP in tests).
//!
//! IMDSv2 (EC2 User Guide, "Use the Instance Metadata Service to access instance metadata"):
//! `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`, then every `GET` with
//! `X-aws-ec2-metadata-token`; `GET /latest/meta-data/iam/security-credentials/` lists the
//! role, `GET .../<role>` answers `{"Code":"Success","AccessKeyId":..,"SecretAccessKey":..,
//! "Token":..,"Expiration":"<RFC 3339>",..}` (research notes §4).

use super::protocol::{self, ErrorCode, Request};
use super::{Credentials, CredentialsError, CredentialsProvider, CredentialsSource};
use crate::clock::{Clock, SystemClock};
use crate::http::{self, HttpError};
use crate::net::{Endpoint, Listener, Stream, Timeouts, TransportError};
use crate::secret::SecretBytes;
use crate::time::UnixMillis;
use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use core::fmt;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::format;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

/// IMDS's address (link-local, reachable from the instance only).
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// The variable the AWS SDKs read to point at another IMDS (`AWS_EC2_METADATA_SERVICE_ENDPOINT`).
pub const IMDS_ENDPOINT_VARIABLE: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";

/// Lifetime asked for each IMDSv2 session token: 21600 s (6 h), the maximum IMDS allows and
/// what the AWS SDKs ask for.
pub const IMDS_TOKEN_TTL_SECS: u32 = 21_600;

/// A token is renewed this long before its TTL runs out.
const IMDS_TOKEN_MARGIN_MILLIS: u64 = 60_000;

/// Largest IMDS response body read: role credentials are about 1.5 KiB of JSON.
pub const IMDS_MAX_RESPONSE: usize = 64 * 1024;

/// Longest IAM role name (IAM quotas: 64 characters).
const ROLE_NAME_MAX: usize = 64;

const TOKEN_PATH: &str = "/latest/api/token";
const ROLES_PATH: &str = "/latest/meta-data/iam/security-credentials/";

/// Development credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, and optionally
/// `AWS_SESSION_TOKEN` and `AWS_CREDENTIAL_EXPIRATION` (RFC 3339). Read on every fetch.
pub struct Environment {
    snapshot: Option<BTreeMap<String, String>>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.snapshot.is_some() {
            "Environment(snapshot)"
        } else {
            "Environment(process)"
        })
    }
}

impl Environment {
    /// The process environment.
    #[must_use]
    pub fn process() -> Self {
        Self { snapshot: None }
    }

    /// Fixed variables instead of the process environment (tests; the process environment
    /// cannot be changed safely from a multi-threaded test).
    #[must_use]
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            snapshot: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        match &self.snapshot {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
    }

    /// True when `AWS_ACCESS_KEY_ID` is set (what [`default_source`] checks).
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.var("AWS_ACCESS_KEY_ID").is_some()
    }
}

impl CredentialsSource for Environment {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let required = |variable: &'static str| {
            self.var(variable).ok_or(CredentialsError::Environment {
                variable,
                problem: "is not set",
            })
        };
        let access_key_id = required("AWS_ACCESS_KEY_ID")?;
        let secret = Zeroizing::new(required("AWS_SECRET_ACCESS_KEY")?);
        let token = self.var("AWS_SESSION_TOKEN");
        let credentials =
            Credentials::new(access_key_id, secret.as_str(), token).map_err(|error| {
                CredentialsError::Invalid {
                    from: self.describe(),
                    error,
                }
            })?;
        match self.var("AWS_CREDENTIAL_EXPIRATION") {
            None => Ok(credentials),
            Some(text) => UnixMillis::parse(&text)
                .map(|at| credentials.with_expiration(at))
                .map_err(|_| CredentialsError::Environment {
                    variable: "AWS_CREDENTIAL_EXPIRATION",
                    problem: "is not an RFC 3339 time",
                }),
        }
    }

    fn describe(&self) -> String {
        "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)".into()
    }
}

/// The instance role's credentials from IMDSv2.
pub struct Imds {
    endpoint: Endpoint,
    url: String,
    timeouts: Timeouts,
    clock: Arc<dyn Clock>,
    /// The session token and when it stops being used.
    token: Mutex<Option<(Zeroizing<String>, UnixMillis)>>,
}

impl fmt::Debug for Imds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imds")
            .field("endpoint", &self.url)
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// `X-aws-ec2-metadata-token-ttl-seconds`.
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// `X-aws-ec2-metadata-token`.
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// IMDS's role-credentials JSON (other members, `LastUpdated` and `Type`, are ignored). The
/// secret members are kept as raw JSON text and unescaped by
/// [`crate::secret::json::string`] into zeroizing buffers (serde_json would unescape them
/// through a scratch buffer it frees unwiped).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials<'a> {
    #[serde(default)]
    code: Option<String>,
    access_key_id: String,
    #[serde(borrow)]
    secret_access_key: &'a RawValue,
    #[serde(default, borrow)]
    token: Option<&'a RawValue>,
    #[serde(default)]
    expiration: Option<String>,
}

/// Credentials from IMDS's role-credentials JSON, `{"Code":"Success","AccessKeyId":..,
/// "SecretAccessKey":..,"Token":..,"Expiration":"<RFC 3339>"}`: what IMDS answers, and what
/// the template's parent reads from a credentials file. `Code`, `Token` and `Expiration` may
/// be absent; a `Code` other than `Success` is refused. `from` names the source in errors.
///
/// # Errors
/// [`CredentialsError::Malformed`] for JSON of another shape (only the position of the problem
/// is told: the parser's message could quote the secret), a `Code` other than `Success`, or an
/// `Expiration` that is not an RFC 3339 time; [`CredentialsError::Invalid`] for values that are
/// not AWS credentials.
pub fn from_imds_json(json: &[u8], from: &str) -> Result<Credentials, CredentialsError> {
    let malformed = |detail: String| CredentialsError::Malformed {
        from: from.to_owned(),
        detail,
    };
    let parsed: RoleCredentials<'_> = serde_json::from_slice(json).map_err(|e| {
        malformed(format!(
            "not IMDS role credentials JSON (AccessKeyId, SecretAccessKey, Token, Expiration): \
             {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if let Some(code) = parsed.code.filter(|code| code != "Success") {
        return Err(malformed(format!(
            "Code {:?}, not \"Success\"",
            code.chars().take(64).collect::<String>()
        )));
    }
    let secret_member = |member: &str, raw: &RawValue| {
        crate::secret::json::string(raw).map_err(|e| malformed(format!("{member}: {e}")))
    };
    let mut secret = secret_member("SecretAccessKey", parsed.secret_access_key)?;
    let mut token = parsed
        .token
        .map(|raw| secret_member("Token", raw))
        .transpose()?;
    // Moved into the credentials, not copied: what stays in `secret` and `token` is empty.
    let credentials = Credentials::new(
        parsed.access_key_id,
        core::mem::take(&mut *secret),
        token.as_mut().map(|token| core::mem::take(&mut **token)),
    )
    .map_err(|error| CredentialsError::Invalid {
        from: from.to_owned(),
        error,
    })?;
    match parsed.expiration {
        None => Ok(credentials),
        Some(text) => UnixMillis::parse(&text)
            .map(|at| credentials.with_expiration(at))
            .map_err(|e| malformed(format!("Expiration {text:?} is not an RFC 3339 time: {e}"))),
    }
}

impl Imds {
    /// IMDS at [`IMDS_ENDPOINT`], or at `$AWS_EC2_METADATA_SERVICE_ENDPOINT` when set.
    ///
    /// # Errors
    /// [`CredentialsError::Environment`] if that variable is not an `http://host[:port]` URL.
    pub fn new() -> Result<Self, CredentialsError> {
        match std::env::var(IMDS_ENDPOINT_VARIABLE) {
            Ok(url) if !url.is_empty() => {
                Self::with_endpoint(&url).map_err(|_| CredentialsError::Environment {
                    variable: IMDS_ENDPOINT_VARIABLE,
                    problem: "is not an http://host[:port] URL",
                })
            }
            _ => Self::with_endpoint(IMDS_ENDPOINT),
        }
    }

    /// IMDS at `url` (`http://host[:port]`, e.g. a fake IMDS on loopback in tests).
    ///
    /// # Errors
    /// [`CredentialsError::Malformed`] if `url` is not of that form.
    pub fn with_endpoint(url: &str) -> Result<Self, CredentialsError> {
        let invalid = || CredentialsError::Malformed {
            from: format!("the IMDS endpoint {url:?}"),
            detail: "expected http://host[:port]".into(),
        };
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .ok_or_else(invalid)?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port))
                if !host.ends_with(':') && (!host.contains(':') || host.ends_with(']')) =>
            {
                (host, port.parse::<u16>().map_err(|_| invalid())?)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            endpoint: Endpoint::tcp(host, port),
            url: format!("http://{authority}"),
            timeouts: Timeouts {
                // IMDS is on the same host: a missing one should fail fast.
                connect: Duration::from_secs(1),
                io: Duration::from_secs(5),
            },
            clock: Arc::new(SystemClock),
            token: Mutex::new(None),
        })
    }

    /// Uses another clock (token lifetime).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses other timeouts.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The endpoint URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One HTTP exchange on a fresh connection: `(status, body)`.
    fn call(
        &self,
        method: ::http::Method,
        path: &str,
        header: Option<(&str, &str)>,
    ) -> Result<(u16, SecretBytes), CredentialsError> {
        let unreachable = |error| CredentialsError::Unreachable {
            from: self.describe(),
            error,
        };
        let mut stream = Stream::connect(&self.endpoint, &self.timeouts).map_err(unreachable)?;
        let mut builder = ::http::Request::builder()
            .method(method)
            .uri(path)
            .header(::http::header::HOST, self.url.trim_start_matches("http://"));
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(&[][..])
            .map_err(|_| CredentialsError::Malformed {
                from: self.describe(),
                detail: format!("cannot build a request for {path:?}"),
            })?;
        let received = http::exchange(&mut stream, &request, IMDS_MAX_RESPONSE)
            .map_err(|e: HttpError| unreachable(e.at(&self.endpoint, self.timeouts.io)))?;
        let status = received.response.status().as_u16();
        Ok((status, received.response.into_body()))
    }

    fn status_error(&self, path: &str, status: u16) -> CredentialsError {
        CredentialsError::ImdsStatus {
            endpoint: self.url.clone(),
            path: path.into(),
            status,
        }
    }

    /// A session token, cached until shortly before its TTL runs out.
    fn session_token(&self) -> Result<Zeroizing<String>, CredentialsError> {
        let now = self.clock.now();
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, until)) = cached.as_ref()
            && now < *until
        {
            return Ok(token.clone());
        }
        let ttl = IMDS_TOKEN_TTL_SECS.to_string();
        let (status, body) = self
            .call(::http::Method::PUT, TOKEN_PATH, Some((TTL_HEADER, &ttl)))
            .map_err(|error| match error {
                // Connected, then silence: the token answer was dropped on its way (hop limit).
                CredentialsError::Unreachable {
                    from,
                    error: error @ TransportError::Timeout { .. },
                } => CredentialsError::ImdsTokenUnanswered {
                    from,
                    error: Box::new(error),
                },
                other => other,
            })?;
        if status != 200 {
            return Err(self.status_error(TOKEN_PATH, status));
        }
        let token = core::str::from_utf8(body.expose())
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .map(|t| Zeroizing::new(t.to_owned()))
            .ok_or_else(|| CredentialsError::Malformed {
                from: self.describe(),
                detail: "the session token is empty or not visible ASCII".into(),
            })?;
        let until =
            UnixMillis(now.0 + u64::from(IMDS_TOKEN_TTL_SECS) * 1000 - IMDS_TOKEN_MARGIN_MILLIS);
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    fn get(&self, path: &str) -> Result<(u16, SecretBytes), CredentialsError> {
        let token = self.session_token()?;
        let (status, body) = self.call(::http::Method::GET, path, Some((TOKEN_HEADER, &token)))?;
        if status == 401 {
            // The token expired or IMDS restarted: one new token, one more try.
            *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let token = self.session_token()?;
            return self.call(::http::Method::GET, path, Some((TOKEN_HEADER, &token)));
        }
        Ok((status, body))
    }

    /// The instance profile's role name.
    ///
    /// # Errors
    /// [`CredentialsError::ImdsStatus`] (404: no role attached),
    /// [`CredentialsError::Unreachable`], [`CredentialsError::Malformed`].
    pub fn role_name(&self) -> Result<String, CredentialsError> {
        let (status, body) = self.get(ROLES_PATH)?;
        if status != 200 {
            return Err(self.status_error(ROLES_PATH, status));
        }
        let role = core::str::from_utf8(body.expose())
            .ok()
            .and_then(|text| text.lines().map(str::trim).find(|l| !l.is_empty()))
            .filter(|role| {
                role.len() <= ROLE_NAME_MAX
                    && role
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
            })
            .ok_or_else(|| CredentialsError::Malformed {
                from: self.describe(),
                detail: format!(
                    "{ROLES_PATH} did not list an IAM role name (1..={ROLE_NAME_MAX} of \
                     [A-Za-z0-9+=,.@_-])"
                ),
            })?;
        Ok(role.to_owned())
    }
}

impl CredentialsSource for Imds {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let role = self.role_name()?;
        let path = format!("{ROLES_PATH}{role}");
        let (status, body) = self.get(&path)?;
        if status != 200 {
            return Err(self.status_error(&path, status));
        }
        from_imds_json(body.expose(), &format!("{} ({path})", self.describe()))
    }

    fn describe(&self) -> String {
        format!("IMDS at {}", self.url)
    }
}

/// The parent's source: [`Environment`] when `AWS_ACCESS_KEY_ID` is set (development), else
/// [`Imds`]. Print its [`CredentialsSource::describe`] so nobody wonders which credentials the
/// enclave got.
///
/// # Errors
/// As [`Imds::new`].
pub fn default_source() -> Result<Box<dyn CredentialsSource>, CredentialsError> {
    let environment = Environment::process();
    let source: Box<dyn CredentialsSource> = if environment.is_configured() {
        Box::new(environment)
    } else {
        Box::new(Imds::new()?)
    };
    Ok(source)
}

/// The lowest CID an enclave can have. CID 0 is the hypervisor, 1 the local loopback
/// (`VMADDR_CID_LOCAL`), 2 the host (`VMADDR_CID_HOST`) and 3 the parent instance itself, as
/// enclaves see it (`vm_sockets.h`; aws-nitro-enclaves-cli gives enclaves CIDs from 4 up).
pub const FIRST_ENCLAVE_CID: u32 = 4;

/// Which vsock peers the credentials service answers. Anything else on the parent (or the
/// hypervisor) that connects to the service's vsock port is refused, logged with its address,
/// and closed without a byte: the role's credentials are for the enclave.
///
/// Only vsock peers carry a CID. On vhost-device-vsock's Unix sockets (QEMU emulation) every
/// connection comes from the backend, which serves one guest whose CID is the backend's own
/// `guest-cid` setting, so no per-connection check is possible there; the socket file's mode
/// (`0600`, the parent's user only) is what limits who connects. TCP is for development and
/// has no CID either: bind it to loopback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowedPeers {
    /// Any enclave: a CID of at least [`FIRST_ENCLAVE_CID`] (4). The default.
    #[default]
    AnyEnclave,
    /// Only the enclave with this CID (at least 4; `nitro-cli describe-enclaves` shows it).
    Cid(u32),
}

impl fmt::Display for AllowedPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AnyEnclave => write!(f, "any enclave (vsock CID >= {FIRST_ENCLAVE_CID})"),
            Self::Cid(cid) => write!(f, "the enclave with vsock CID {cid} only"),
        }
    }
}

impl core::str::FromStr for AllowedPeers {
    type Err = PeerRefusal;

    /// `any` or a CID of at least 4.
    fn from_str(text: &str) -> Result<Self, PeerRefusal> {
        if text == "any" {
            return Ok(Self::AnyEnclave);
        }
        let cid: u32 = text.parse().map_err(|_| PeerRefusal::NotAnEnclaveCid {
            text: text.chars().take(32).collect(),
        })?;
        match kind_of(cid) {
            Some(_) => Err(PeerRefusal::NotAnEnclaveCid {
                text: cid.to_string(),
            }),
            None => Ok(Self::Cid(cid)),
        }
    }
}

/// What a CID below 4 (or `VMADDR_CID_ANY`) is, or `None` for an enclave's.
fn kind_of(cid: u32) -> Option<&'static str> {
    match cid {
        0 => Some("the hypervisor"),
        1 => Some("the local loopback (a process on the parent itself)"),
        2 => Some("the host"),
        3 => Some("the parent instance itself"),
        u32::MAX => Some("VMADDR_CID_ANY, not a peer address"),
        _ => None,
    }
}

/// Why a peer was refused, or a CID setting is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerRefusal {
    /// The peer's CID is not an enclave's (0 to 3).
    NotAnEnclave {
        /// Its CID.
        cid: u32,
        /// What that CID is.
        kind: &'static str,
    },
    /// The peer is an enclave, but not the one configured.
    OtherEnclave {
        /// Its CID.
        cid: u32,
        /// The CID configured.
        allowed: u32,
    },
    /// A CID setting that is neither `any` nor an enclave's CID.
    NotAnEnclaveCid {
        /// What was given.
        text: String,
    },
}

impl fmt::Display for PeerRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnEnclave { cid, kind } => write!(
                f,
                "CID {cid} is {kind}, not an enclave (enclaves have CID {FIRST_ENCLAVE_CID} or                  more)"
            ),
            Self::OtherEnclave { cid, allowed } => write!(
                f,
                "CID {cid} is not the enclave this service answers (CID {allowed}; change                  --enclave-cid if the enclave was restarted with another CID)"
            ),
            Self::NotAnEnclaveCid { text } => write!(
                f,
                "`{text}` is not an enclave CID: give `any` or a CID of {FIRST_ENCLAVE_CID} or                  more (`nitro-cli describe-enclaves` shows it)"
            ),
        }
    }
}

impl core::error::Error for PeerRefusal {}

impl AllowedPeers {
    /// Decides a vsock peer by its CID.
    ///
    /// # Errors
    /// [`PeerRefusal::NotAnEnclave`] for CIDs 0 to 3 (and `VMADDR_CID_ANY`),
    /// [`PeerRefusal::OtherEnclave`] for an enclave other than the configured one.
    pub fn check_cid(self, cid: u32) -> Result<(), PeerRefusal> {
        if let Some(kind) = kind_of(cid) {
            return Err(PeerRefusal::NotAnEnclave { cid, kind });
        }
        match self {
            Self::Cid(allowed) if allowed != cid => Err(PeerRefusal::OtherEnclave { cid, allowed }),
            _ => Ok(()),
        }
    }

    /// Decides an accepted stream: a vsock peer by its CID ([`AllowedPeers::check_cid`]);
    /// Unix and TCP peers carry no CID and are admitted (see the type's docs for what limits
    /// them instead).
    ///
    /// # Errors
    /// As [`AllowedPeers::check_cid`].
    pub fn check(self, stream: &Stream) -> Result<(), PeerRefusal> {
        match stream {
            Stream::Vsock(stream) => self.check_cid(stream.peer_addr().cid),
            _ => Ok(()),
        }
    }
}

/// What the credentials server did, for the parent's log. Holds no secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeEvent<'a> {
    /// Credentials were handed out.
    Served {
        /// Who asked (`vsock://16:1034`, `tcp://127.0.0.1:5000`).
        peer: &'a str,
        /// The access key id handed out (not secret).
        access_key_id: &'a str,
        /// Their expiration.
        expiration: Option<UnixMillis>,
    },
    /// A request was answered with an error frame.
    Refused {
        /// Who asked.
        peer: &'a str,
        /// The code sent.
        code: ErrorCode,
        /// The message sent.
        message: &'a str,
    },
    /// A connection failed or sent garbage and was closed.
    ConnectionFailed {
        /// Who it was.
        peer: &'a str,
        /// What happened.
        error: &'a io::Error,
    },
    /// A connection was turned away because [`ServeOptions::max_connections`] were open.
    TooManyConnections {
        /// Who it was.
        peer: &'a str,
    },
    /// A peer that [`ServeOptions::allowed_peers`] does not admit connected; it was closed
    /// without a byte.
    PeerRefused {
        /// Who it was.
        peer: &'a str,
        /// Why.
        refusal: &'a PeerRefusal,
    },
}

impl fmt::Display for ServeEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Served {
                peer,
                access_key_id,
                expiration,
            } => {
                write!(f, "credentials: gave {access_key_id} to {peer}")?;
                match expiration {
                    Some(at) => write!(f, " (expires {at})"),
                    None => f.write_str(" (no expiration)"),
                }
            }
            Self::Refused {
                peer,
                code,
                message,
            } => write!(f, "credentials: refused {peer} ({code}): {message}"),
            Self::ConnectionFailed { peer, error } => {
                write!(f, "credentials: connection from {peer} failed: {error}")
            }
            Self::TooManyConnections { peer } => {
                write!(
                    f,
                    "credentials: turned {peer} away (too many open connections)"
                )
            }
            Self::PeerRefused { peer, refusal } => {
                write!(
                    f,
                    "credentials: REFUSED {peer}: {refusal}; closed unanswered"
                )
            }
        }
    }
}

/// A log callback for [`serve`].
pub type ServeLog = Arc<dyn Fn(&ServeEvent<'_>) + Send + Sync>;

/// How [`serve`] behaves.
#[derive(Clone)]
pub struct ServeOptions {
    /// Read/write timeout per connection, so a stuck peer cannot hold a thread (default 5 s).
    pub io_timeout: Duration,
    /// Connections served at once; more are closed at once (default 16: one enclave makes
    /// one at a time).
    pub max_connections: usize,
    /// Called for each event (`None`: silent).
    pub log: Option<ServeLog>,
    /// The vsock peers answered (default: any enclave, CID >= 4).
    pub allowed_peers: AllowedPeers,
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeOptions")
            .field("io_timeout", &self.io_timeout)
            .field("max_connections", &self.max_connections)
            .field("log", &self.log.is_some())
            .field("allowed_peers", &self.allowed_peers)
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            io_timeout: Duration::from_secs(5),
            max_connections: 16,
            log: None,
            allowed_peers: AllowedPeers::AnyEnclave,
        }
    }
}

impl ServeOptions {
    fn emit(&self, event: &ServeEvent<'_>) {
        if let Some(log) = &self.log {
            log(event);
        }
    }
}

/// Answers credentials requests on one connection until the peer closes it. A peer that
/// [`ServeOptions::allowed_peers`] does not admit is logged ([`ServeEvent::PeerRefused`]) and
/// closed before anything is read or written.
///
/// # Errors
/// The I/O error that ended the connection (the peer is told nothing more).
pub fn serve_connection(
    mut stream: Stream,
    provider: &dyn CredentialsProvider,
    options: &ServeOptions,
) -> io::Result<()> {
    let peer = stream.describe_peer();
    if let Err(refusal) = options.allowed_peers.check(&stream) {
        options.emit(&ServeEvent::PeerRefused {
            peer: &peer,
            refusal: &refusal,
        });
        return Ok(());
    }
    stream.set_timeouts(options.io_timeout)?;
    loop {
        let Some(payload) = protocol::read_frame(&mut stream)? else {
            return Ok(());
        };
        let answer = match protocol::decode_request(&payload) {
            Ok(Request::GetCredentials) => match provider.credentials() {
                Ok(credentials) => {
                    options.emit(&ServeEvent::Served {
                        peer: &peer,
                        access_key_id: credentials.access_key_id(),
                        expiration: credentials.expiration(),
                    });
                    protocol::encode_credentials(&credentials)
                }
                Err(error) => {
                    let message = format!("{error}");
                    options.emit(&ServeEvent::Refused {
                        peer: &peer,
                        code: ErrorCode::Unavailable,
                        message: &message,
                    });
                    Zeroizing::new(protocol::encode_error(ErrorCode::Unavailable, &message))
                }
            },
            Err(rejection) => {
                options.emit(&ServeEvent::Refused {
                    peer: &peer,
                    code: rejection.code,
                    message: &rejection.message,
                });
                protocol::write_frame(
                    &mut stream,
                    &protocol::encode_error(rejection.code, &rejection.message),
                )?;
                // A peer that speaks something else gets one answer, then the door.
                return Ok(());
            }
        };
        protocol::write_frame(&mut stream, &answer)?;
    }
}

/// Serves the credentials protocol on `listener`, one thread per connection, until `accept`
/// fails with something other than an aborted connection or a signal; returns that error.
/// Run it on a thread of its own.
///
/// ```no_run
/// # use ccc_sdk::credentials::{Refreshing, parent};
/// # use ccc_sdk::net::{VsockAddr, VsockListener, vsock};
/// # use std::sync::Arc;
/// let source = parent::default_source().unwrap();
/// eprintln!("credentials from {}", source.describe());
/// let provider = Arc::new(Refreshing::new(source));
/// let listener = VsockListener::bind(VsockAddr::new(vsock::CID_ANY, 8002)).unwrap();
/// let options = parent::ServeOptions {
///     log: Some(Arc::new(|event: &parent::ServeEvent<'_>| eprintln!("{event}"))),
///     ..parent::ServeOptions::default()
/// };
/// let error = parent::serve(&listener, provider, options);
/// eprintln!("credentials server stopped: {error}");
/// ```
pub fn serve(
    listener: &dyn Listener,
    provider: Arc<dyn CredentialsProvider>,
    options: ServeOptions,
) -> io::Error {
    let max_connections = options.max_connections;
    let turned_away = options.clone();
    crate::net::accept_loop(
        listener,
        max_connections,
        "ccc-credentials",
        &|peer| turned_away.emit(&ServeEvent::TooManyConnections { peer }),
        move |stream, peer| {
            if let Err(error) = serve_connection(stream, provider.as_ref(), &options) {
                options.emit(&ServeEvent::ConnectionFailed {
                    peer,
                    error: &error,
                });
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn imds_json_gives_credentials_with_or_without_the_optional_members() {
        let full = format!(
            r#"{{"Code":"Success","LastUpdated":"2025-12-31T23:00:00Z","Type":"AWS-HMAC",
                "AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"{SECRET}","Token":"tok",
                "Expiration":"2026-01-01T06:00:00Z"}}"#
        );
        let credentials = from_imds_json(full.as_bytes(), "IMDS").unwrap();
        assert_eq!(credentials.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(credentials.secret_access_key(), SECRET);
        assert_eq!(credentials.session_token(), Some("tok"));
        assert_eq!(
            credentials.expiration(),
            Some(UnixMillis::parse("2026-01-01T06:00:00Z").unwrap())
        );
        // A file written by hand: no Code, no Token, no Expiration.
        let bare = format!(r#"{{"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"{SECRET}"}}"#);
        let credentials = from_imds_json(bare.as_bytes(), "a file").unwrap();
        assert_eq!(
            (credentials.session_token(), credentials.expiration()),
            (None, None)
        );
    }

    #[test]
    fn bad_imds_json_is_named_and_never_quotes_the_secret() {
        for (json, needle) in [
            (
                format!(r#"{{"AccessKeyId":"A","SecretAccessKey":{{"{SECRET}":1}}}}"#),
                "SecretAccessKey: not a JSON string",
            ),
            (
                format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}""#),
                "not IMDS role credentials JSON",
            ),
            (
                format!(r#"{{"Code":"Failure","AccessKeyId":"A","SecretAccessKey":"{SECRET}"}}"#),
                r#"Code "Failure", not "Success""#,
            ),
            (
                format!(
                    r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}","Expiration":"soon"}}"#
                ),
                r#"Expiration "soon" is not an RFC 3339 time"#,
            ),
        ] {
            let error = from_imds_json(json.as_bytes(), "the file x.json").unwrap_err();
            assert!(
                matches!(&error, CredentialsError::Malformed { from, .. } if from == "the file x.json"),
                "{error:?}"
            );
            let shown = error.to_string();
            assert!(shown.contains(needle), "{shown}");
            assert!(!shown.contains(SECRET), "{shown}");
        }
    }

    #[test]
    fn only_enclave_cids_are_answered() {
        // (CID, any enclave, only CID 16)
        let table: [(u32, Option<&str>, Option<&str>); 9] = [
            (0, Some("the hypervisor"), Some("the hypervisor")),
            (1, Some("local loopback"), Some("local loopback")),
            (2, Some("the host"), Some("the host")),
            (
                3,
                Some("the parent instance itself"),
                Some("the parent instance itself"),
            ),
            (
                4,
                None,
                Some("not the enclave this service answers (CID 16"),
            ),
            (16, None, None),
            (
                17,
                None,
                Some("not the enclave this service answers (CID 16"),
            ),
            (u32::MAX - 1, None, Some("not the enclave")),
            (u32::MAX, Some("VMADDR_CID_ANY"), Some("VMADDR_CID_ANY")),
        ];
        for (cid, any, only_16) in table {
            for (allowed, expected) in [
                (AllowedPeers::AnyEnclave, any),
                (AllowedPeers::Cid(16), only_16),
            ] {
                let verdict = allowed.check_cid(cid);
                match expected {
                    None => assert_eq!(verdict, Ok(()), "CID {cid} under {allowed}"),
                    Some(needle) => {
                        let shown = verdict.unwrap_err().to_string();
                        assert!(
                            shown.contains(needle) && shown.contains(&format!("CID {cid} ")),
                            "CID {cid} under {allowed}: {shown}"
                        );
                    }
                }
            }
        }
        assert_eq!("any".parse(), Ok(AllowedPeers::AnyEnclave));
        assert_eq!("16".parse(), Ok(AllowedPeers::Cid(16)));
        for bad in ["3", "2", "-1", "sixteen", "4294967295"] {
            let error = bad.parse::<AllowedPeers>().unwrap_err().to_string();
            assert!(error.contains("is not an enclave CID"), "{bad}: {error}");
        }
    }

    /// The service's own decision, end to end on one connection: a vsock stream whose peer
    /// (as `accept` reported it) is the host or the parent itself is closed unanswered and
    /// logged; an enclave's is answered. The host has no vsock loopback, so the stream is a
    /// Unix socket pair carrying the peer address `accept` would have reported.
    #[test]
    fn a_peer_that_is_not_an_enclave_gets_nothing() {
        use crate::credentials::StaticCredentials;
        use crate::net::{VsockAddr, VsockStream};
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        let provider =
            StaticCredentials::new(Credentials::new("ASIAPEERTEST", SECRET, None).unwrap());
        let events = Arc::new(Mutex::new(std::vec::Vec::new()));
        let kept = Arc::clone(&events);
        let options = ServeOptions {
            log: Some(Arc::new(move |event: &ServeEvent<'_>| {
                kept.lock().unwrap().push(event.to_string());
            })),
            ..ServeOptions::default()
        };
        for (cid, answered) in [(2, false), (3, false), (1, false), (16, true)] {
            let (service_end, mut enclave_end) = UnixStream::pair().unwrap();
            let stream = Stream::Vsock(VsockStream::from_accepted(
                service_end.into(),
                VsockAddr::new(cid, 1234),
            ));
            protocol::write_frame(&mut enclave_end, &protocol::encode_request()).unwrap();
            enclave_end.shutdown(std::net::Shutdown::Write).unwrap();
            serve_connection(stream, &provider, &options).unwrap();
            let mut answer = std::vec::Vec::new();
            // Closed with the request unread: the enclave end sees a reset, or end of file.
            match enclave_end.read_to_end(&mut answer) {
                Err(e) if !answered && e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => {
                    other.unwrap();
                }
            }
            let last = events.lock().unwrap().last().cloned().unwrap();
            if answered {
                let payload = protocol::read_frame(&mut answer.as_slice())
                    .unwrap()
                    .unwrap();
                let credentials = protocol::decode_answer(&payload, "test").unwrap();
                assert_eq!(credentials.access_key_id(), "ASIAPEERTEST");
                assert!(
                    last.contains("gave ASIAPEERTEST to vsock://16:1234"),
                    "{last}"
                );
            } else {
                assert!(answer.is_empty(), "CID {cid} got {} bytes", answer.len());
                assert!(
                    last.contains(&format!("REFUSED vsock://{cid}:1234: CID {cid} is")),
                    "{last}"
                );
            }
            let _ = enclave_end.flush();
        }
    }
}
