//! AWS Signature Version 4 over the [`Crypto`] seam: header signing for AWS JSON APIs (KMS),
//! its intermediate strings for debugging, and the server-side check the KMS emulator needs.
//! No I/O and no clock: the signing time is a parameter.
//!
//! The signer is general (path normalization, URI encoding, query canonicalisation, duplicate
//! and folded headers, whitespace trimming) and is tested against every header-mode case of the
//! AWS SigV4 test suite, the project's KMS vectors, and `aws-sigv4` on random KMS requests.
//!
//! ```text
//! canonical request = METHOD \n URI \n QUERY \n HEADERS \n \n SIGNED-HEADERS \n HEX(SHA-256(body))
//! string to sign    = AWS4-HMAC-SHA256 \n X-Amz-Date \n DATE/REGION/SERVICE/aws4_request \n HEX(SHA-256(creq))
//! signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, DATE), REGION), SERVICE), "aws4_request")
//! signature         = HEX(HMAC(signing key, string to sign))
//! ```

use crate::crypto::Crypto;
use crate::time::UnixMillis;
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;
use zeroize::Zeroizing;

/// The algorithm name that opens the string to sign and the `Authorization` value.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far a request's `X-Amz-Date` may be from the verifier's clock: KMS answers "Signature
/// expired: ... (... - 5 min.)" beyond it (aws/aws-sdk-js issue #2340, a KMS Encrypt call).
pub const MAX_CLOCK_SKEW_MILLIS: u64 = 5 * 60 * 1000;

/// Most headers a verified request may sign. A KMS request signs at most 7 (the C SDK's shape);
/// the bound keeps the verifier's header matching linear on hostile input.
pub const MAX_SIGNED_HEADERS: usize = 64;

/// Headers never signed because proxies and hops change them. The same set as `aws-sigv4`
/// 1.6.4's default `excluded_headers` (minus `authorization`, which is refused instead).
const UNSIGNED_HEADERS: [&str; 3] = ["user-agent", "x-amzn-trace-id", "transfer-encoding"];

/// Headers the signer adds itself; a request to sign must not carry them already.
const SIGNER_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// What went wrong while signing or verifying.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigV4Error {
    /// The credentials are unusable; the payload says which part and why.
    InvalidCredentials(&'static str),
    /// The region or service cannot go into a credential scope.
    InvalidScope {
        /// `region` or `service`.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A request header has an invalid name or value.
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The request already carries a header the signer adds (`Authorization`, `X-Amz-Date`,
    /// `X-Amz-Security-Token`, `X-Amz-Content-SHA256`).
    SignerHeaderPresent(String),
    /// The signing time has no four-digit year.
    TimeOutOfRange,
    /// Verification: a required header is missing or repeated.
    MissingHeader(&'static str),
    /// Verification: the `Authorization` value is not a SigV4 header; the payload says which
    /// part.
    MalformedAuthorization(&'static str),
    /// Verification: the request was signed with another access key id than the credentials'.
    AccessKeyMismatch,
    /// Verification: the credential scope's date does not match `X-Amz-Date`.
    ScopeDateMismatch,
    /// Verification: the session token is missing, unexpected, unsigned or different.
    SessionTokenMismatch,
    /// Verification: `X-Amz-Content-SHA256` is not the SHA-256 of the body.
    PayloadHashMismatch,
    /// Verification: the request is older than the allowed clock skew.
    SignatureExpired {
        /// The request's `X-Amz-Date`.
        signed_at: UnixMillis,
        /// The verifier's time.
        now: UnixMillis,
    },
    /// Verification: the request is dated further in the future than the allowed clock skew.
    SignatureNotYetCurrent {
        /// The request's `X-Amz-Date`.
        signed_at: UnixMillis,
        /// The verifier's time.
        now: UnixMillis,
    },
    /// Verification: the signature does not match the one computed from the request.
    SignatureMismatch,
}

impl fmt::Display for SigV4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCredentials(what) => write!(f, "invalid AWS credentials: {what}"),
            Self::InvalidScope { field, problem } => {
                write!(f, "invalid SigV4 {field}: {problem}")
            }
            Self::InvalidHeader { name, problem } => {
                write!(f, "cannot sign header {name:?}: {problem}")
            }
            Self::SignerHeaderPresent(name) => write!(
                f,
                "the request already has a {name:?} header; the SigV4 signer adds it, so remove \
                 it before signing"
            ),
            Self::TimeOutOfRange => f.write_str(
                "the signing time is outside years 1970..=9999 (X-Amz-Date has four year digits)",
            ),
            Self::MissingHeader(name) => {
                write!(f, "SigV4: the request needs exactly one {name} header")
            }
            Self::MalformedAuthorization(what) => {
                write!(f, "malformed SigV4 Authorization header: {what}")
            }
            Self::AccessKeyMismatch => f.write_str(
                "SigV4: the Authorization credential names another access key id than the \
                 credentials used to verify",
            ),
            Self::ScopeDateMismatch => {
                f.write_str("SigV4: the credential scope date differs from the X-Amz-Date day")
            }
            Self::SessionTokenMismatch => f.write_str(
                "SigV4: the X-Amz-Security-Token header is missing, unsigned or not the session \
                 token of these credentials",
            ),
            Self::PayloadHashMismatch => {
                f.write_str("SigV4: X-Amz-Content-SHA256 is not the SHA-256 of the body")
            }
            Self::SignatureExpired { signed_at, now } => write!(
                f,
                "Signature expired: {} is now earlier than {} ({} - 5 min.); the signer's clock \
                 is slow (or the request was replayed)",
                signed_at.amz_date(),
                UnixMillis(now.0.saturating_sub(MAX_CLOCK_SKEW_MILLIS)).amz_date(),
                now.amz_date()
            ),
            Self::SignatureNotYetCurrent { signed_at, now } => write!(
                f,
                "Signature not yet current: {} is still later than {} ({} + 5 min.); the \
                 signer's clock is fast",
                signed_at.amz_date(),
                UnixMillis(now.0.saturating_add(MAX_CLOCK_SKEW_MILLIS)).amz_date(),
                now.amz_date()
            ),
            Self::SignatureMismatch => f.write_str(
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method.",
            ),
        }
    }
}

impl core::error::Error for SigV4Error {}

/// AWS credentials. The secret access key and the session token are zeroized on drop and never
/// printed by `Debug`.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
    expiration: Option<UnixMillis>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "expiration",
                &self
                    .expiration
                    .map(|e| alloc::string::ToString::to_string(&e)),
            )
            .finish()
    }
}

impl Credentials {
    /// Long-term (`session_token = None`) or temporary credentials. The strings are moved in,
    /// not copied, when the caller passes `String`s.
    ///
    /// # Errors
    /// [`SigV4Error::InvalidCredentials`] if the access key id is empty or not `[A-Za-z0-9_]`
    /// (IAM's pattern), the secret is empty, or the token is empty or not visible ASCII (it
    /// travels in a header).
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Result<Self, SigV4Error> {
        let secret_access_key = Zeroizing::new(secret_access_key.into());
        let session_token = session_token.map(Zeroizing::new);
        let access_key_id = access_key_id.into();
        if access_key_id.is_empty()
            || !access_key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(SigV4Error::InvalidCredentials(
                "the access key id must be non-empty letters, digits or '_'",
            ));
        }
        if secret_access_key.is_empty() {
            return Err(SigV4Error::InvalidCredentials(
                "the secret access key is empty",
            ));
        }
        if let Some(token) = &session_token
            && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(SigV4Error::InvalidCredentials(
                "the session token must be non-empty visible ASCII",
            ));
        }
        Ok(Self {
            access_key_id,
            secret_access_key,
            session_token,
            expiration: None,
        })
    }

    /// The same credentials with the instant they stop working (temporary credentials from
    /// STS or IMDS carry one). Signing ignores it; credentials providers refresh ahead of it.
    #[must_use]
    pub fn with_expiration(mut self, expiration: UnixMillis) -> Self {
        self.expiration = Some(expiration);
        self
    }

    /// When the credentials expire, if known.
    #[must_use]
    pub fn expiration(&self) -> Option<UnixMillis> {
        self.expiration
    }

    /// The secret access key. Only for handing the credentials on (the parent's credentials
    /// server); never log it.
    #[must_use]
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The session token of temporary credentials. Only for handing the credentials on; never
    /// log it.
    #[must_use]
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref().map(String::as_str)
    }

    /// The access key id (not secret: it is sent in every `Authorization` header).
    #[must_use]
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// True for temporary credentials (with a session token).
    #[must_use]
    pub fn has_session_token(&self) -> bool {
        self.session_token.is_some()
    }
}

/// Where the session token goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionTokenMode {
    /// `X-Amz-Security-Token` is added and signed. KMS requires this.
    #[default]
    Signed,
    /// The header is added after signing and not signed (some services, e.g. IoT; the test
    /// suite's `post-sts-header-after`). Never use it for KMS.
    AddedAfterSigning,
}

/// Signing options; [`Settings::default`] is what KMS expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Add `X-Amz-Content-SHA256: <hex SHA-256 of the body>` and sign it (the C SDK does; KMS
    /// accepts both). Default `false`.
    pub content_sha256_header: bool,
    /// Normalize the path (drop empty and `.` segments, resolve `..`) before encoding, as every
    /// service except S3 expects. Default `true`.
    pub normalize_path: bool,
    /// Where the session token goes. Default [`SessionTokenMode::Signed`].
    pub session_token: SessionTokenMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            content_sha256_header: false,
            normalize_path: true,
            session_token: SessionTokenMode::Signed,
        }
    }
}

/// Who signs, for which region and service, and when.
#[derive(Clone, Copy, Debug)]
pub struct SigningParams<'a> {
    /// The credentials.
    pub credentials: &'a Credentials,
    /// The region, e.g. `us-east-1`.
    pub region: &'a str,
    /// The service's signing name, `kms` for KMS.
    pub service: &'a str,
    /// The signing time (becomes `X-Amz-Date`). Never read from a clock here.
    pub time: UnixMillis,
    /// Options.
    pub settings: Settings,
}

/// An HTTP request as the signer sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path as it appears on the request line (before `?`). The canonical request
    /// URI-encodes it once more (every byte but unreserved characters and `/`), which is what
    /// every service except S3 expects. KMS: `/`.
    pub path: &'a str,
    /// The query string without `?` (KMS: empty). Parameters are percent-decoded, re-encoded
    /// and sorted.
    pub query: &'a str,
    /// Headers in send order, names in any case. `Host` must be among them.
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// A signature with its intermediate strings and the headers to add to the request.
///
/// It borrows the session token from the [`Credentials`] and never copies it: the canonical
/// request is kept without the token's value and hashed in parts, so only
/// [`Signed::canonical_request`], a debugging aid, assembles the full text (in a buffer that is
/// zeroized on drop).
pub struct Signed<'a> {
    /// The canonical request minus the session token's value, which belongs at `token_at`.
    canonical_request: String,
    token_at: Option<usize>,
    string_to_sign: String,
    authorization: String,
    /// Where the 64 hex digits of the signature start in `authorization`.
    signature_at: usize,
    amz_date: [u8; 16],
    content_sha256: Option<[u8; 64]>,
    session_token: Option<&'a str>,
}

impl fmt::Debug for Signed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The canonical request contains the session token, so only the signature is shown.
        f.debug_struct("Signed")
            .field("amz_date", &self.amz_date())
            .field("signature", &self.signature())
            .finish_non_exhaustive()
    }
}

impl Signed<'_> {
    /// The canonical request. It contains the session token when there is one: do not log it.
    /// Assembled on each call (signing itself never copies the token).
    #[must_use]
    pub fn canonical_request(&self) -> Zeroizing<String> {
        let token = self.session_token.unwrap_or_default();
        let mut text = Zeroizing::new(String::with_capacity(
            self.canonical_request.len() + token.len(),
        ));
        let split = self.token_at.and_then(|at| {
            Some((
                self.canonical_request.get(..at)?,
                self.canonical_request.get(at..)?,
            ))
        });
        match split {
            Some((before, after)) => {
                text.push_str(before);
                text.push_str(token);
                text.push_str(after);
            }
            None => text.push_str(&self.canonical_request),
        }
        text
    }

    /// The string to sign (no secret in it).
    #[must_use]
    pub fn string_to_sign(&self) -> &str {
        &self.string_to_sign
    }

    /// The signature, 64 lowercase hex digits.
    #[must_use]
    pub fn signature(&self) -> &str {
        self.authorization
            .get(self.signature_at..)
            .unwrap_or_default()
    }

    /// The `Authorization` header value.
    #[must_use]
    pub fn authorization(&self) -> &str {
        &self.authorization
    }

    /// The `X-Amz-Date` header value.
    #[must_use]
    pub fn amz_date(&self) -> &str {
        ascii_str(&self.amz_date)
    }

    /// The headers to add, in this order: `X-Amz-Date`, `X-Amz-Security-Token` (temporary
    /// credentials), `X-Amz-Content-SHA256` (when enabled), `Authorization`.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            Some(("X-Amz-Date", self.amz_date())),
            self.session_token.map(|t| ("X-Amz-Security-Token", t)),
            self.content_sha256
                .as_ref()
                .map(|h| ("X-Amz-Content-SHA256", ascii_str(h))),
            Some(("Authorization", self.authorization.as_str())),
        ]
        .into_iter()
        .flatten()
    }
}

/// The parts of a SigV4 `Authorization` header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// The access key id of the credential.
    pub access_key_id: &'a str,
    /// The scope date, `YYYYMMDD`.
    pub date: &'a str,
    /// The scope region.
    pub region: &'a str,
    /// The scope service.
    pub service: &'a str,
    /// The signed header names as listed (lowercase, sorted).
    pub signed_headers: Vec<&'a str>,
    /// The signature, 64 lowercase hex digits.
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    /// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
    /// SignedHeaders=a;b, Signature=HEX` (spaces after the commas optional).
    ///
    /// # Errors
    /// [`SigV4Error::MalformedAuthorization`] naming the part that is wrong.
    pub fn parse(value: &'a str) -> Result<Self, SigV4Error> {
        let bad = SigV4Error::MalformedAuthorization;
        let rest = value
            .strip_prefix(ALGORITHM)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(bad("it does not start with \"AWS4-HMAC-SHA256 \""))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim_matches(' ');
            let (key, val) = part
                .split_once('=')
                .ok_or(bad("a component is not KEY=VALUE"))?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => {
                    return Err(bad(
                        "unknown component (expected Credential, SignedHeaders, Signature)",
                    ));
                }
            };
            if slot.replace(val).is_some() {
                return Err(bad("a component is repeated"));
            }
        }
        let credential = credential.ok_or(bad("Credential is missing"))?;
        let signed = signed.ok_or(bad("SignedHeaders is missing"))?;
        let signature = signature.ok_or(bad("Signature is missing"))?;
        let mut scope = credential.split('/');
        let mut next = || scope.next().filter(|s| !s.is_empty());
        let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request")) =
            (next(), next(), next(), next(), next())
        else {
            return Err(bad(
                "Credential is not AKID/YYYYMMDD/REGION/SERVICE/aws4_request",
            ));
        };
        if scope.next().is_some() {
            return Err(bad("Credential has more than five '/'-separated parts"));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the credential scope date is not YYYYMMDD"));
        }
        let signed_headers: Vec<&str> = signed.split(';').collect();
        if signed_headers.len() > MAX_SIGNED_HEADERS {
            return Err(bad("more SignedHeaders than MAX_SIGNED_HEADERS"));
        }
        let sorted_lowercase = signed_headers.windows(2).all(|w| match w {
            [a, b] => a < b,
            _ => true,
        }) && signed_headers.iter().all(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| is_token_byte(b) && !b.is_ascii_uppercase())
        });
        if !sorted_lowercase {
            return Err(bad(
                "SignedHeaders must be distinct lowercase names in ascending order",
            ));
        }
        if signature.len() != 64
            || !signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("Signature is not 64 lowercase hex digits"));
        }
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
            signed_headers,
            signature,
        })
    }
}

/// The signing key of the last (secret, date, region, service) used. It changes once a day,
/// so a long-lived signer derives it once instead of four HMACs per request.
struct CachedKey {
    secret: Zeroizing<String>,
    date: [u8; 8],
    region: String,
    service: String,
    key: Zeroizing<[u8; 32]>,
}

/// A SigV4 signer (and verifier) that caches the derived signing key.
///
/// ```
/// # #[cfg(feature = "aws-lc")] {
/// use ccc_sdk::sigv4::{Credentials, Request, Settings, SigV4, SigningParams};
/// use ccc_sdk::time::UnixMillis;
/// let credentials = Credentials::new("AKIDEXAMPLE", "secret", None).unwrap();
/// let headers = [
///     ("Host", "kms.us-east-1.amazonaws.com"),
///     ("Content-Type", "application/x-amz-json-1.1"),
///     ("X-Amz-Target", "TrentService.GenerateRandom"),
/// ];
/// let request = Request { method: "POST", path: "/", query: "", headers: &headers,
///                         body: br#"{"NumberOfBytes":32}"# };
/// let params = SigningParams { credentials: &credentials, region: "us-east-1", service: "kms",
///                              time: UnixMillis(1_440_938_160_000), settings: Settings::default() };
/// let signed = SigV4::new().sign(&ccc_sdk::crypto::AwsLc, &params, &request).unwrap();
/// assert!(signed.authorization().starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/"));
/// # }
/// ```
#[derive(Default)]
pub struct SigV4 {
    cache: Option<CachedKey>,
}

impl fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4")
            .field(
                "cached_scope",
                &self.cache.as_ref().map(|c| {
                    (
                        core::str::from_utf8(&c.date).unwrap_or("?"),
                        &c.region,
                        &c.service,
                    )
                }),
            )
            .finish()
    }
}

impl SigV4 {
    /// A signer with an empty key cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Signs `request`: returns the canonical request, the string to sign, the signature and
    /// the headers to add.
    ///
    /// # Errors
    /// [`SigV4Error`] for an unusable region/service, an invalid header, a header the signer
    /// adds itself already present, or a time outside years 1970..=9999.
    pub fn sign<'a>(
        &mut self,
        crypto: &dyn Crypto,
        params: &SigningParams<'a>,
        request: &Request<'_>,
    ) -> Result<Signed<'a>, SigV4Error> {
        check_scope_part("region", params.region)?;
        check_scope_part("service", params.service)?;
        let amz_date_bytes = amz_date(params.time)?;
        let amz_date = ascii_str(&amz_date_bytes);
        let date = amz_date.get(..8).ok_or(SigV4Error::TimeOutOfRange)?;

        let mut entries: Vec<(&str, &str)> = Vec::with_capacity(request.headers.len() + 3);
        for &(name, value) in request.headers {
            check_header(name, value)?;
            if SIGNER_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(SigV4Error::SignerHeaderPresent(name.into()));
            }
            if !UNSIGNED_HEADERS
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            {
                entries.push((name, value));
            }
        }
        if !entries.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            return Err(SigV4Error::InvalidHeader {
                name: "Host".into(),
                problem: "missing; SigV4 always signs the Host header",
            });
        }

        let payload_hash_bytes = hex32(&crypto.sha256(&[request.body]));
        let payload_hash = ascii_str(&payload_hash_bytes);
        let credentials = params.credentials;
        let token = credentials.session_token.as_deref().map(String::as_str);
        entries.push(("x-amz-date", amz_date));
        let signed_token = match (token, params.settings.session_token) {
            (Some(token), SessionTokenMode::Signed) => {
                // The value is left out of the text and hashed in place (see `Signed`).
                entries.push(("x-amz-security-token", ""));
                Some(token)
            }
            _ => None,
        };
        if params.settings.content_sha256_header {
            entries.push(("x-amz-content-sha256", payload_hash));
        }

        let canonical = canonical_request(
            request,
            params.settings.normalize_path,
            &mut entries,
            payload_hash,
            signed_token.is_some(),
        );
        let text = canonical.text.as_bytes();
        let creq_hash = match (canonical.token_at, signed_token) {
            (Some(at), Some(token)) => {
                let (before, after) = text.split_at_checked(at).unwrap_or((text, &[]));
                crypto.sha256(&[before, token.as_bytes(), after])
            }
            _ => crypto.sha256(&[text]),
        };
        let string_to_sign =
            string_to_sign(amz_date, date, params.region, params.service, &creq_hash);
        let key = self.signing_key(
            crypto,
            &credentials.secret_access_key,
            date,
            params.region,
            params.service,
        );
        let signature = hex32(&crypto.hmac_sha256(&key[..], &[string_to_sign.as_bytes()]));

        let mut authorization = String::with_capacity(
            96 + credentials.access_key_id.len()
                + params.region.len()
                + params.service.len()
                + canonical.signed_headers_len,
        );
        authorization.push_str(ALGORITHM);
        authorization.push_str(" Credential=");
        authorization.push_str(&credentials.access_key_id);
        authorization.push('/');
        push_scope(&mut authorization, date, params.region, params.service);
        authorization.push_str(", SignedHeaders=");
        authorization.push_str(canonical.signed_headers());
        authorization.push_str(", Signature=");
        let signature_at = authorization.len();
        authorization.push_str(ascii_str(&signature));

        Ok(Signed {
            token_at: canonical.token_at,
            canonical_request: canonical.text,
            string_to_sign,
            authorization,
            signature_at,
            amz_date: amz_date_bytes,
            content_sha256: params
                .settings
                .content_sha256_header
                .then_some(payload_hash_bytes),
            session_token: token,
        })
    }

    /// Verifies a signed request the way a SigV4 service does (for the KMS emulator): parses
    /// its `Authorization` header, rebuilds the canonical request from the headers it lists,
    /// and compares signatures in constant time. `request.headers` must include
    /// `Authorization`, `X-Amz-Date` and, for temporary credentials, `X-Amz-Security-Token`;
    /// `credentials` are the ones the server holds for the access key id in the header (see
    /// [`Authorization::parse`]). With `now`, a request dated more than
    /// [`MAX_CLOCK_SKEW_MILLIS`] away is refused, with KMS's wording.
    ///
    /// # Errors
    /// The first [`SigV4Error`] check that fails.
    pub fn verify(
        &mut self,
        crypto: &dyn Crypto,
        credentials: &Credentials,
        request: &Request<'_>,
        now: Option<UnixMillis>,
        normalize_path: bool,
    ) -> Result<(), SigV4Error> {
        for &(name, value) in request.headers {
            check_header(name, value)?;
        }
        let authorization_value = single_header(request.headers, "authorization")
            .ok_or(SigV4Error::MissingHeader("Authorization"))?;
        let authorization = Authorization::parse(authorization_value)?;
        if !constant_time_eq(
            authorization.access_key_id.as_bytes(),
            credentials.access_key_id.as_bytes(),
        ) {
            return Err(SigV4Error::AccessKeyMismatch);
        }
        check_scope_part("region", authorization.region)?;
        check_scope_part("service", authorization.service)?;
        let amz_date = single_header(request.headers, "x-amz-date")
            .ok_or(SigV4Error::MissingHeader("X-Amz-Date"))?;
        let signed_at = parse_amz_date(amz_date)?;
        if amz_date.get(..8) != Some(authorization.date) {
            return Err(SigV4Error::ScopeDateMismatch);
        }
        for required in ["host", "x-amz-date"] {
            if !authorization.signed_headers.contains(&required) {
                return Err(SigV4Error::MalformedAuthorization(
                    "SignedHeaders must include host and x-amz-date",
                ));
            }
        }
        let token_header = single_header(request.headers, "x-amz-security-token");
        match (&credentials.session_token, token_header) {
            (None, None) => {}
            (Some(expected), Some(found))
                if constant_time_eq(expected.as_bytes(), found.as_bytes())
                    && authorization
                        .signed_headers
                        .contains(&"x-amz-security-token") => {}
            _ => return Err(SigV4Error::SessionTokenMismatch),
        }
        let payload_hash_bytes = hex32(&crypto.sha256(&[request.body]));
        let payload_hash = ascii_str(&payload_hash_bytes);
        if let Some(claimed) = single_header(request.headers, "x-amz-content-sha256")
            && claimed != payload_hash
        {
            return Err(SigV4Error::PayloadHashMismatch);
        }

        let mut entries: Vec<(&str, &str)> = Vec::with_capacity(request.headers.len());
        for name in &authorization.signed_headers {
            let before = entries.len();
            entries.extend(
                request
                    .headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .copied(),
            );
            if entries.len() == before {
                return Err(SigV4Error::MalformedAuthorization(
                    "a header listed in SignedHeaders is not in the request",
                ));
            }
        }
        let canonical =
            canonical_request(request, normalize_path, &mut entries, payload_hash, false);
        let string_to_sign = string_to_sign(
            amz_date,
            authorization.date,
            authorization.region,
            authorization.service,
            &crypto.sha256(&[canonical.text.as_bytes()]),
        );
        let key = self.signing_key(
            crypto,
            &credentials.secret_access_key,
            authorization.date,
            authorization.region,
            authorization.service,
        );
        let expected = hex32(&crypto.hmac_sha256(&key[..], &[string_to_sign.as_bytes()]));
        if !constant_time_eq(&expected, authorization.signature.as_bytes()) {
            return Err(SigV4Error::SignatureMismatch);
        }
        if let Some(now) = now {
            if signed_at.0.saturating_add(MAX_CLOCK_SKEW_MILLIS) < now.0 {
                return Err(SigV4Error::SignatureExpired { signed_at, now });
            }
            if signed_at.0 > now.0.saturating_add(MAX_CLOCK_SKEW_MILLIS) {
                return Err(SigV4Error::SignatureNotYetCurrent { signed_at, now });
            }
        }
        Ok(())
    }

    fn signing_key(
        &mut self,
        crypto: &dyn Crypto,
        secret: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> Zeroizing<[u8; 32]> {
        if let Some(cached) = &self.cache
            && cached.date.as_slice() == date.as_bytes()
            && cached.region == region
            && cached.service == service
            && constant_time_eq(cached.secret.as_bytes(), secret.as_bytes())
        {
            return cached.key.clone();
        }
        let key = derive_signing_key(crypto, secret, date, region, service);
        let mut date_bytes = [0u8; 8];
        if date.len() == 8 {
            date_bytes.copy_from_slice(date.as_bytes());
            let mut secret_copy = Zeroizing::new(String::with_capacity(secret.len()));
            secret_copy.push_str(secret);
            self.cache = Some(CachedKey {
                secret: secret_copy,
                date: date_bytes,
                region: region.into(),
                service: service.into(),
                key: key.clone(),
            });
        }
        key
    }
}

/// Derives the SigV4 signing key (four chained HMACs). Exposed for debugging tools and for
/// comparing with other implementations; [`SigV4`] caches it.
#[must_use]
pub fn derive_signing_key(
    crypto: &dyn Crypto,
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> Zeroizing<[u8; 32]> {
    let mut k_secret = Zeroizing::new(String::with_capacity(4 + secret.len()));
    k_secret.push_str("AWS4");
    k_secret.push_str(secret);
    let k_date = Zeroizing::new(crypto.hmac_sha256(k_secret.as_bytes(), &[date.as_bytes()]));
    let k_region = Zeroizing::new(crypto.hmac_sha256(&k_date[..], &[region.as_bytes()]));
    let k_service = Zeroizing::new(crypto.hmac_sha256(&k_region[..], &[service.as_bytes()]));
    Zeroizing::new(crypto.hmac_sha256(&k_service[..], &[b"aws4_request"]))
}

/// `YYYYMMDDTHHMMSSZ` as ASCII bytes, written directly (this runs on every request).
fn amz_date(time: UnixMillis) -> Result<[u8; 16], SigV4Error> {
    let d = time.to_datetime();
    if d.year > 9999 {
        return Err(SigV4Error::TimeOutOfRange);
    }
    let mut text = *b"00000000T000000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            if let Some(digit) = text.get_mut(i) {
                *digit = b'0' + (value % 10) as u8;
            }
            value /= 10;
        }
    };
    put(0, 4, d.year);
    put(4, 2, d.month);
    put(6, 2, d.day);
    put(9, 2, d.hour);
    put(11, 2, d.minute);
    put(13, 2, d.second);
    Ok(text)
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(text: &str) -> Result<UnixMillis, SigV4Error> {
    let bad = SigV4Error::MalformedAuthorization("X-Amz-Date is not YYYYMMDDTHHMMSSZ");
    let b = text.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return Err(bad);
    }
    let num = |from: usize, len: usize| -> Result<u32, SigV4Error> {
        let part = b.get(from..from + len).ok_or(bad.clone())?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad.clone());
        }
        Ok(part
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    crate::time::DateTime {
        year: num(0, 4)?,
        month: num(4, 2)?,
        day: num(6, 2)?,
        hour: num(9, 2)?,
        minute: num(11, 2)?,
        second: num(13, 2)?,
        millis: 0,
    }
    .to_unix_millis()
    .map_err(|_| bad.clone())
}

fn check_scope_part(field: &'static str, value: &str) -> Result<(), SigV4Error> {
    if value.is_empty() {
        return Err(SigV4Error::InvalidScope {
            field,
            problem: "empty",
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(SigV4Error::InvalidScope {
            field,
            problem: "only letters, digits, '-', '_' and '.' can appear in a credential scope",
        });
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_header(name: &str, value: &str) -> Result<(), SigV4Error> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(SigV4Error::InvalidHeader {
            name: name.into(),
            problem: "a header name must be a non-empty RFC 9110 token",
        });
    }
    // A fold without early exit, so the compiler can vectorize it over long tokens.
    let control = value.bytes().fold(false, |seen, b| {
        seen | ((b < 0x20 && b != b'\t') | (b == 0x7f))
    });
    if control {
        return Err(SigV4Error::InvalidHeader {
            name: name.into(),
            problem: "control characters (CR, LF, NUL, ...) cannot appear in a header value",
        });
    }
    Ok(())
}

/// The value of the only header called `name` (any case), or `None` if absent or repeated.
fn single_header<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    let mut found = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let first = found.next()?;
    found.next().is_none().then_some(first.1)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

/// The hex digit of a nibble (`n < 16`), lowercase.
fn hex_digit(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'a' + (n & 0x0f) - 10
    }
}

/// The lowercase hex of a 32-byte digest, as ASCII bytes.
fn hex32(bytes: &[u8; 32]) -> [u8; 64] {
    let mut text = [0u8; 64];
    for (pair, &b) in text.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = hex_digit(b >> 4);
            *lo = hex_digit(b & 0x0f);
        }
    }
    text
}

/// ASCII bytes this module wrote (hex digits, dates) as text.
fn ascii_str(text: &[u8]) -> &str {
    core::str::from_utf8(text).unwrap_or_default()
}

fn push_scope(out: &mut String, date: &str, region: &str, service: &str) {
    out.push_str(date);
    out.push('/');
    out.push_str(region);
    out.push('/');
    out.push_str(service);
    out.push_str("/aws4_request");
}

fn string_to_sign(
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
    canonical_request_hash: &[u8; 32],
) -> String {
    let mut out = String::with_capacity(160 + region.len() + service.len());
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(amz_date);
    out.push('\n');
    push_scope(&mut out, date, region, service);
    out.push('\n');
    out.push_str(ascii_str(&hex32(canonical_request_hash)));
    out
}

struct CanonicalRequest {
    /// The text, without the session token's value when `token_at` is set.
    text: String,
    /// Where the session token's value belongs in `text`.
    token_at: Option<usize>,
    /// Where the signed-headers line starts in `text`, and its length.
    signed_headers_at: usize,
    signed_headers_len: usize,
}

impl CanonicalRequest {
    fn signed_headers(&self) -> &str {
        self.text
            .get(self.signed_headers_at..self.signed_headers_at + self.signed_headers_len)
            .unwrap_or_default()
    }
}

fn compare_ignore_case(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

fn push_lowercase(out: &mut String, name: &str) {
    let start = out.len();
    out.push_str(name);
    if let Some(pushed) = out.get_mut(start..) {
        pushed.make_ascii_lowercase();
    }
}

/// Appends a header value with leading/trailing spaces removed and runs of spaces collapsed
/// to one (SigV4 "trimall"; only SP, like aws-sigv4). Copies whole runs, not characters.
fn push_trimmed(out: &mut String, value: &str) {
    let mut rest = value.trim_matches(' ');
    // `find(' ')` is a memchr; most values (tokens, dates, targets) have no space at all.
    let mut from = 0;
    while let Some(at) = rest.get(from..).and_then(|r| r.find(' ')).map(|i| i + from) {
        if rest.as_bytes().get(at + 1) == Some(&b' ') {
            let (run, after) = rest.split_at(at + 1);
            out.push_str(run);
            rest = after.trim_start_matches(' ');
            from = 0;
        } else {
            from = at + 1;
        }
    }
    out.push_str(rest);
}

/// `entries` are (name in any case, raw value); they are sorted here (stably, so repeated
/// headers keep their order and are joined with `,`). With `token_gap`, the value of
/// `x-amz-security-token` is not written; its position is returned instead.
fn canonical_request(
    request: &Request<'_>,
    normalize_path: bool,
    entries: &mut [(&str, &str)],
    payload_hash: &str,
    token_gap: bool,
) -> CanonicalRequest {
    entries.sort_by(|a, b| compare_ignore_case(a.0, b.0));
    // An upper bound, so the buffer never reallocates: method, three newlines, the URI and
    // query (each byte encodes to at most 3), each header twice (line and signed list) with
    // its `:`, `\n` and `;`, the blank line, and the 64-digit payload hash.
    let estimate = request.method.len()
        + 8
        + request.path.len().max(1) * 3
        + request.query.len() * 3
        + entries
            .iter()
            .map(|(n, v)| 2 * n.len() + v.len() + 3)
            .sum::<usize>()
        + payload_hash.len();
    let mut text = String::with_capacity(estimate);
    text.push_str(request.method);
    text.push('\n');
    push_canonical_path(&mut text, request.path, normalize_path);
    text.push('\n');
    push_canonical_query(&mut text, request.query);
    text.push('\n');

    let mut token_at = None;
    let mut previous: Option<&str> = None;
    for &(name, value) in entries.iter() {
        if previous.is_some_and(|p| p.eq_ignore_ascii_case(name)) {
            text.push(',');
        } else {
            if previous.is_some() {
                text.push('\n');
            }
            push_lowercase(&mut text, name);
            text.push(':');
        }
        if token_gap && name.eq_ignore_ascii_case("x-amz-security-token") {
            token_at = Some(text.len());
        } else {
            push_trimmed(&mut text, value);
        }
        previous = Some(name);
    }
    text.push_str("\n\n");
    let signed_headers_at = text.len();
    let mut previous: Option<&str> = None;
    for &(name, _) in entries.iter() {
        if previous.is_some_and(|p| p.eq_ignore_ascii_case(name)) {
            continue;
        }
        if previous.is_some() {
            text.push(';');
        }
        push_lowercase(&mut text, name);
        previous = Some(name);
    }
    let signed_headers_len = text.len() - signed_headers_at;
    text.push('\n');
    text.push_str(payload_hash);
    CanonicalRequest {
        text,
        token_at,
        signed_headers_at,
        signed_headers_len,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// RFC 3986 encoding of everything but unreserved characters (and `/` when `keep_slash`).
fn push_uri_encoded(out: &mut String, bytes: &[u8], keep_slash: bool) {
    for &b in bytes {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(hex_digit(b >> 4).to_ascii_uppercase()));
            out.push(char::from(hex_digit(b & 0x0f).to_ascii_uppercase()));
        }
    }
}

fn push_canonical_path(out: &mut String, path: &str, normalize: bool) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    if !normalize {
        push_uri_encoded(out, path.as_bytes(), true);
        return;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    out.push('/');
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        push_uri_encoded(out, segment.as_bytes(), false);
    }
    if !segments.is_empty() && path.ends_with('/') {
        out.push('/');
    }
}

fn percent_decode(text: &str) -> Vec<u8> {
    fn hex_value(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

fn push_canonical_query(out: &mut String, query: &str) {
    if query.is_empty() {
        return;
    }
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            let mut k = String::with_capacity(key.len() * 3);
            push_uri_encoded(&mut k, &percent_decode(key), false);
            let mut v = String::with_capacity(value.len() * 3);
            push_uri_encoded(&mut v, &percent_decode(value), false);
            (k, v)
        })
        .collect();
    params.sort();
    for (i, (key, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
}

#[cfg(test)]
#[cfg(feature = "aws-lc")]
mod tests {
    use super::*;
    use crate::crypto::AwsLc;
    use alloc::format;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 2015-08-30T12:36:00Z, the AWS suite's time.
    const SUITE_TIME: UnixMillis = UnixMillis(1_440_938_160_000);

    fn kms_headers() -> [(&'static str, &'static str); 3] {
        [
            ("host", "kms.us-east-1.amazonaws.com"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "TrentService.GenerateRandom"),
        ]
    }

    /// The notes' §3.1 vector, computed with both aws-sigv4 1.6.4 and botocore 1.44.8.
    #[test]
    fn notes_kms_vector_with_session_token() {
        let credentials =
            Credentials::new("AKIDEXAMPLE", SECRET, Some("SESSIONTOKEN".into())).unwrap();
        let headers = kms_headers();
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: br#"{"NumberOfBytes":32}"#,
        };
        let params = SigningParams {
            credentials: &credentials,
            region: "us-east-1",
            service: "service",
            time: SUITE_TIME,
            settings: Settings::default(),
        };
        let signed = SigV4::new().sign(&AwsLc, &params, &request).unwrap();
        assert_eq!(
            signed.canonical_request().as_str(),
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:kms.us-east-1.amazonaws.com\n\
             x-amz-date:20150830T123600Z\nx-amz-security-token:SESSIONTOKEN\n\
             x-amz-target:TrentService.GenerateRandom\n\n\
             content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n\
             b386e4217667b85b62d23d3751c5cd6ec17da520661d3785147076dbc373761c"
        );
        assert!(
            signed
                .string_to_sign()
                .ends_with("\na8f41c6aef7cba388406e99900d032c80d57f57f680e1f8342743f3da1fd31e7")
        );
        assert_eq!(
            signed.signature(),
            "cea2bfa47b967fd552e0735114da6dade6d0924487e94da41e644b79c41cfccd"
        );
        let names: Vec<&str> = signed.headers().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["X-Amz-Date", "X-Amz-Security-Token", "Authorization"]
        );
    }

    #[test]
    fn cached_key_equals_fresh_key_and_follows_scope_changes() {
        let credentials = Credentials::new("AKIDEXAMPLE", SECRET, None).unwrap();
        let other = Credentials::new("AKIDEXAMPLE", "another secret", None).unwrap();
        let headers = kms_headers();
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"{}",
        };
        let mut cached = SigV4::new();
        for (creds, region, time) in [
            (&credentials, "us-east-1", SUITE_TIME),
            (&credentials, "us-east-1", UnixMillis(SUITE_TIME.0 + 1000)),
            (&credentials, "eu-west-1", SUITE_TIME),
            (&other, "eu-west-1", SUITE_TIME),
            (
                &credentials,
                "eu-west-1",
                UnixMillis(SUITE_TIME.0 + 86_400_000),
            ),
        ] {
            let params = SigningParams {
                credentials: creds,
                region,
                service: "kms",
                time,
                settings: Settings::default(),
            };
            let a = cached.sign(&AwsLc, &params, &request).unwrap();
            let b = SigV4::new().sign(&AwsLc, &params, &request).unwrap();
            assert_eq!(a.authorization(), b.authorization(), "{region} {time:?}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let credentials =
            Credentials::new("AKIDEXAMPLE", SECRET, Some("TOKENVALUE".into())).unwrap();
        let shown = format!("{credentials:?}");
        assert!(
            !shown.contains("EXAMPLEKEY") && !shown.contains("TOKENVALUE"),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"));
        let headers = kms_headers();
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"{}",
        };
        let params = SigningParams {
            credentials: &credentials,
            region: "us-east-1",
            service: "kms",
            time: SUITE_TIME,
            settings: Settings::default(),
        };
        let mut signer = SigV4::new();
        let signed = signer.sign(&AwsLc, &params, &request).unwrap();
        for shown in [format!("{signed:?}"), format!("{signer:?}")] {
            assert!(
                !shown.contains("EXAMPLEKEY") && !shown.contains("TOKENVALUE"),
                "{shown}"
            );
        }
    }

    #[test]
    fn refuses_bad_inputs_with_the_reason() {
        assert!(matches!(
            Credentials::new("", SECRET, None),
            Err(SigV4Error::InvalidCredentials(_))
        ));
        assert!(matches!(
            Credentials::new("AKID/X", SECRET, None),
            Err(SigV4Error::InvalidCredentials(_))
        ));
        assert!(matches!(
            Credentials::new("AKID", "", None),
            Err(SigV4Error::InvalidCredentials(_))
        ));
        assert!(matches!(
            Credentials::new("AKID", SECRET, Some("a\nb".into())),
            Err(SigV4Error::InvalidCredentials(_))
        ));
        let credentials = Credentials::new("AKIDEXAMPLE", SECRET, None).unwrap();
        let sign = |headers: &[(&str, &str)], region: &str, time: UnixMillis| {
            let request = Request {
                method: "POST",
                path: "/",
                query: "",
                headers,
                body: b"",
            };
            let params = SigningParams {
                credentials: &credentials,
                region,
                service: "kms",
                time,
                settings: Settings::default(),
            };
            SigV4::new()
                .sign(&AwsLc, &params, &request)
                .map(|s| s.signature().into())
        };
        let host = ("Host", "kms.us-east-1.amazonaws.com");
        let ok: Result<String, _> = sign(&[host], "us-east-1", SUITE_TIME);
        assert!(ok.is_ok());
        assert_eq!(
            sign(&[host, ("X-Amz-Date", "x")], "us-east-1", SUITE_TIME),
            Err(SigV4Error::SignerHeaderPresent("X-Amz-Date".into()))
        );
        assert!(matches!(
            sign(&[host, ("Bad Name", "x")], "us-east-1", SUITE_TIME),
            Err(SigV4Error::InvalidHeader { .. })
        ));
        assert!(matches!(
            sign(
                &[host, ("X-Injected", "a\r\nEvil: 1")],
                "us-east-1",
                SUITE_TIME
            ),
            Err(SigV4Error::InvalidHeader { .. })
        ));
        assert!(matches!(
            sign(&[("Content-Type", "x")], "us-east-1", SUITE_TIME),
            Err(SigV4Error::InvalidHeader { .. })
        ));
        assert!(matches!(
            sign(&[host], "us-east-1/x", SUITE_TIME),
            Err(SigV4Error::InvalidScope {
                field: "region",
                ..
            })
        ));
        assert_eq!(
            sign(&[host], "us-east-1", UnixMillis(u64::MAX)),
            Err(SigV4Error::TimeOutOfRange)
        );
    }

    fn signed_kms_request(
        credentials: &Credentials,
        time: UnixMillis,
        body: &[u8],
    ) -> Vec<(String, String)> {
        let headers = kms_headers();
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let params = SigningParams {
            credentials,
            region: "us-east-1",
            service: "kms",
            time,
            settings: Settings {
                content_sha256_header: true,
                ..Settings::default()
            },
        };
        let signed = SigV4::new().sign(&AwsLc, &params, &request).unwrap();
        headers
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .chain(signed.headers().map(|(n, v)| (n.into(), v.into())))
            .collect()
    }

    #[test]
    fn verify_accepts_what_sign_produces_and_rejects_tampering() {
        let credentials = Credentials::new("AKIDEXAMPLE", SECRET, Some("TOKEN".into())).unwrap();
        let body = br#"{"NumberOfBytes":32}"#;
        let owned = signed_kms_request(&credentials, SUITE_TIME, body);
        let verify = |headers: &[(String, String)], body: &[u8], now: Option<UnixMillis>| {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let request = Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body,
            };
            SigV4::new().verify(&AwsLc, &credentials, &request, now, true)
        };
        assert_eq!(verify(&owned, body, Some(SUITE_TIME)), Ok(()));
        assert_eq!(
            verify(&owned, br#"{"NumberOfBytes":33}"#, None),
            Err(SigV4Error::PayloadHashMismatch)
        );
        let mut changed = owned.clone();
        changed[2].1 = "TrentService.Decrypt".into();
        assert_eq!(
            verify(&changed, body, None),
            Err(SigV4Error::SignatureMismatch)
        );
        let mut no_token = owned.clone();
        no_token.retain(|(n, _)| n != "X-Amz-Security-Token");
        assert_eq!(
            verify(&no_token, body, None),
            Err(SigV4Error::SessionTokenMismatch)
        );
        let late = UnixMillis(SUITE_TIME.0 + MAX_CLOCK_SKEW_MILLIS + 1000);
        let expired = verify(&owned, body, Some(late)).unwrap_err();
        assert!(matches!(expired, SigV4Error::SignatureExpired { .. }));
        assert!(format!("{expired}").starts_with(
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z \
             (20150830T124101Z - 5 min.)"
        ));
        let early = UnixMillis(SUITE_TIME.0 - MAX_CLOCK_SKEW_MILLIS - 1000);
        assert!(matches!(
            verify(&owned, body, Some(early)),
            Err(SigV4Error::SignatureNotYetCurrent { .. })
        ));
        let wrong_secret = Credentials::new("AKIDEXAMPLE", "nope", Some("TOKEN".into())).unwrap();
        let headers: Vec<(&str, &str)> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        assert_eq!(
            SigV4::new().verify(&AwsLc, &wrong_secret, &request, None, true),
            Err(SigV4Error::SignatureMismatch)
        );
    }

    #[test]
    fn authorization_parser_rejects_malformed_values() {
        let good = "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=\
                    cea2bfa47b967fd552e0735114da6dade6d0924487e94da41e644b79c41cfccd";
        let parsed = Authorization::parse(good).unwrap();
        assert_eq!(
            (
                parsed.access_key_id,
                parsed.date,
                parsed.region,
                parsed.service
            ),
            ("AKID", "20150830", "us-east-1", "kms")
        );
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        for bad in [
            "",
            "AWS4-HMAC-SHA1 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00",
            &good.replace(
                "SignedHeaders=host;x-amz-date",
                "SignedHeaders=x-amz-date;host",
            ),
            &good.replace(
                "SignedHeaders=host;x-amz-date",
                "SignedHeaders=Host;x-amz-date",
            ),
            &good.replace("aws4_request", "aws4_request/x"),
            &good.replace("20150830", "2015083"),
            &good.replace("cea2", "CEA2"),
            &good.replace(", Signature=", ", Signature=0"),
            &format!("{good}, Signature=00"),
        ] {
            assert!(
                matches!(
                    Authorization::parse(bad),
                    Err(SigV4Error::MalformedAuthorization(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_and_query_canonicalisation() {
        let path = |p: &str, normalize: bool| {
            let mut out = String::new();
            push_canonical_path(&mut out, p, normalize);
            out
        };
        assert_eq!(path("", true), "/");
        assert_eq!(path("/a/./b/../c//", true), "/a/c/");
        assert_eq!(path("/../..", true), "/");
        assert_eq!(path("/a b/%41", true), "/a%20b/%2541");
        assert_eq!(path("/a b/%41", false), "/a%20b/%2541");
        let query = |q: &str| {
            let mut out = String::new();
            push_canonical_query(&mut out, q);
            out
        };
        assert_eq!(query("b=2&a=2&a=1&c"), "a=1&a=2&b=2&c=");
        assert_eq!(query("x=%zz&y=a+b&&"), "x=%25zz&y=a%2Bb");
    }
}
