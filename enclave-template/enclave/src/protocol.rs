//! The enclave API's wire protocol, version 1: frames, requests, answers, error frames and
//! their limits. The enclave serves it ([`crate::server`]); the parent's `client` command and
//! the tests speak it through [`Client`]. `docs/enclave-api.md` describes it for other
//! implementations.
//!
//! # Frames
//! Each message is a 4-byte big-endian length `N` with `1 <= N <= `[`MAX_FRAME_LEN`], then `N`
//! bytes of UTF-8 JSON, one object. One request at a time per connection, each answered by one
//! frame, in order; either side may close after any answer.
//!
//! # Messages
//! - Request: `{"version":1,"op":"<op>", ...}` with the members of [`Request`]'s variant.
//! - Answer: `{"version":1,"type":"<op>", ...}` with the members of [`Response`]'s variant, or
//!   `{"version":1,"type":"error","code":"<code>","step":"<step>","message":"..."}`: `code` is
//!   an [`ErrorCode`], `step` names what failed (`"kms Decrypt with Recipient"`), `message` says
//!   why and what to do.
//! - Binary members are standard base64 with padding (RFC 4648 §4). Unknown members are
//!   ignored, so later versions can add some; a missing `version` or another version is
//!   refused with `unsupported_version`.
//!
//! # Why it lives in the template and not in the SDK
//! It is the application's own API: a team that forks the template adds and removes
//! operations here and in `app.rs`, and its parent links this same module, so both ends
//! always agree. The SDK carries what every enclave shares (NSM, attestation, KMS,
//! credentials), not one application's requests.

use ccc_sdk::nsm::codec::{NONCE_MAX, USER_DATA_MAX};
use ccc_sdk::secret::SecretBytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// The protocol version this code speaks.
pub const VERSION: u32 = 1;

/// The vsock port the enclave serves the API on unless configured otherwise. Chosen clear of
/// the parent-side conventions: 8000 (KMS proxy), 8002 (credentials), 9000 (heartbeat).
pub const DEFAULT_PORT: u32 = 5000;

/// Largest frame payload: 1 MiB. Bounds what one peer can make the other allocate; it holds a
/// [`MAX_DATA_LEN`] payload in base64 (4/3 of it) with room for the JSON around it.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Largest `data` to seal and `message` to MAC: 512 KiB. Larger data belongs in a file sealed
/// with a data key from `generate_data_key`, not in one request.
pub const MAX_DATA_LEN: usize = 512 * 1024;

/// Largest sealed blob accepted by `unseal`: [`MAX_DATA_LEN`] plus the format's overhead with
/// the largest KMS ciphertext (see [`crate::seal`]).
pub const MAX_SEALED_LEN: usize = MAX_DATA_LEN + crate::seal::MAX_OVERHEAD;

/// Most random bytes one `random` request returns: KMS `GenerateRandom` takes
/// `NumberOfBytes` 1..=1024 (KMS API reference).
pub const MAX_RANDOM: u32 = 1024;

/// Longest KMS `CiphertextBlob`: 6144 bytes (KMS API reference, `Decrypt`).
pub const MAX_CIPHERTEXT_BLOB_LEN: usize = 6144;

/// The encryption-context key the template reserves for domain separation: `seal` and
/// `unseal` add `ccc:purpose=seal`, so a sealed blob's data key is refused by KMS for `hmac`
/// (which, like `generate_data_key`, uses the caller's context as given). Callers may not set
/// keys starting with `ccc:`.
pub const PURPOSE_KEY: &str = "ccc:purpose";

/// One request. Each variant is one operation; see `app.rs` for what each does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// An NSM attestation document binding `nonce` and `user_data` (each at most 1024 bytes),
    /// whose `public_key` is the enclave's current RSA key (DER SPKI).
    Attest {
        /// Caller's freshness challenge.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "ccc_sdk::blob::option"
        )]
        nonce: Option<Vec<u8>>,
        /// Caller's data to bind.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "ccc_sdk::blob::option"
        )]
        user_data: Option<Vec<u8>>,
    },
    /// A fresh AES-256 data key under the enclave's trusted key: the KMS ciphertext comes
    /// back, the plaintext never does.
    GenerateDataKey {
        /// Encryption context (as given; `hmac` needs the same).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        context: BTreeMap<String, String>,
    },
    /// Encrypts `data` under a fresh data key wrapped by the enclave's trusted key (format in
    /// [`crate::seal`]).
    Seal {
        /// The plaintext.
        #[serde(with = "ccc_sdk::blob::secret")]
        data: SecretBytes,
        /// Encryption context (the enclave adds `ccc:purpose=seal`); `unseal` needs the same.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        context: BTreeMap<String, String>,
    },
    /// Decrypts a blob from `seal`.
    Unseal {
        /// The sealed blob.
        #[serde(with = "ccc_sdk::blob::bytes")]
        sealed: Vec<u8>,
        /// The encryption context given to `seal`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        context: BTreeMap<String, String>,
    },
    /// `n` random bytes (1..=1024) from KMS `GenerateRandom` with a `Recipient`.
    Random {
        /// How many.
        n: u32,
    },
    /// HMAC-SHA256 of `message` under the secret inside `ciphertext_blob`, which the enclave
    /// obtains with `Decrypt` + `Recipient` and never returns: proof that the enclave, and
    /// only it, holds the secret.
    Hmac {
        /// A KMS ciphertext (from `generate_data_key`, or KMS `Encrypt` of a secret).
        #[serde(with = "ccc_sdk::blob::bytes")]
        ciphertext_blob: Vec<u8>,
        /// The message to authenticate.
        #[serde(with = "ccc_sdk::blob::bytes")]
        message: Vec<u8>,
        /// Encryption context of the ciphertext.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        context: BTreeMap<String, String>,
    },
}

/// Every operation name, for messages.
pub const OPERATIONS: &str = "attest, generate_data_key, seal, unseal, random, hmac";

impl Request {
    /// The operation's wire name.
    #[must_use]
    pub fn op(&self) -> &'static str {
        match self {
            Self::Attest { .. } => "attest",
            Self::GenerateDataKey { .. } => "generate_data_key",
            Self::Seal { .. } => "seal",
            Self::Unseal { .. } => "unseal",
            Self::Random { .. } => "random",
            Self::Hmac { .. } => "hmac",
        }
    }

    /// Checks every size limit and the reserved context keys.
    ///
    /// # Errors
    /// A [`Failure`] with [`ErrorCode::BadRequest`] naming the member, its size and the limit.
    pub fn check(&self) -> Result<(), Failure> {
        let step = "check the request";
        let over = |member: &str, found: usize, limit: usize| {
            Failure::new(
                ErrorCode::BadRequest,
                step,
                format!("`{member}` is {found} bytes; the limit is {limit}"),
            )
        };
        let context = |context: &BTreeMap<String, String>| match context
            .keys()
            .find(|k| k.starts_with("ccc:"))
        {
            Some(k) => Err(Failure::new(
                ErrorCode::BadRequest,
                step,
                format!(
                    "context key `{k}`: keys starting with `ccc:` are reserved for the \
                     enclave (it adds {PURPOSE_KEY} itself)"
                ),
            )),
            None => Ok(()),
        };
        match self {
            Self::Attest { nonce, user_data } => {
                if let Some(n) = nonce.as_ref().filter(|n| n.len() > NONCE_MAX) {
                    return Err(over("nonce", n.len(), NONCE_MAX));
                }
                if let Some(u) = user_data.as_ref().filter(|u| u.len() > USER_DATA_MAX) {
                    return Err(over("user_data", u.len(), USER_DATA_MAX));
                }
                Ok(())
            }
            Self::GenerateDataKey { context: c } => context(c),
            Self::Seal { data, context: c } => {
                if data.len() > MAX_DATA_LEN {
                    return Err(over("data", data.len(), MAX_DATA_LEN));
                }
                context(c)
            }
            Self::Unseal { sealed, context: c } => {
                if sealed.len() > MAX_SEALED_LEN {
                    return Err(over("sealed", sealed.len(), MAX_SEALED_LEN));
                }
                context(c)
            }
            Self::Random { n } if *n == 0 || *n > MAX_RANDOM => Err(Failure::new(
                ErrorCode::BadRequest,
                step,
                format!("`n` is {n}; KMS GenerateRandom returns 1 to {MAX_RANDOM} bytes"),
            )),
            Self::Random { .. } => Ok(()),
            Self::Hmac {
                ciphertext_blob,
                message,
                context: c,
            } => {
                if ciphertext_blob.is_empty() || ciphertext_blob.len() > MAX_CIPHERTEXT_BLOB_LEN {
                    return Err(Failure::new(
                        ErrorCode::BadRequest,
                        step,
                        format!(
                            "`ciphertext_blob` is {} bytes; KMS ciphertexts are 1 to \
                             {MAX_CIPHERTEXT_BLOB_LEN}",
                            ciphertext_blob.len()
                        ),
                    ));
                }
                if message.len() > MAX_DATA_LEN {
                    return Err(over("message", message.len(), MAX_DATA_LEN));
                }
                context(c)
            }
        }
    }
}

/// One successful answer; the variant names the operation it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// The attestation document (COSE_Sign1, as the NSM returned it).
    Attest {
        /// The document.
        #[serde(with = "ccc_sdk::blob::bytes")]
        document: Vec<u8>,
        /// SHA-256 of the `public_key` inside (hex), to match against later documents.
        public_key_sha256: String,
    },
    /// The data key's KMS ciphertext. Store it; `hmac` (or your own operation) uses it.
    GenerateDataKey {
        /// `CiphertextBlob`.
        #[serde(with = "ccc_sdk::blob::bytes")]
        ciphertext_blob: Vec<u8>,
        /// The KMS key's ARN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
    /// The sealed blob.
    Seal {
        /// Format in [`crate::seal`].
        #[serde(with = "ccc_sdk::blob::bytes")]
        sealed: Vec<u8>,
    },
    /// The unsealed plaintext.
    Unseal {
        /// The plaintext.
        #[serde(with = "ccc_sdk::blob::secret")]
        data: SecretBytes,
    },
    /// Random bytes.
    Random {
        /// `n` bytes.
        #[serde(with = "ccc_sdk::blob::bytes")]
        bytes: Vec<u8>,
    },
    /// The MAC.
    Hmac {
        /// HMAC-SHA256, 32 bytes.
        #[serde(with = "ccc_sdk::blob::bytes")]
        mac: Vec<u8>,
    },
    /// The request failed.
    Error(Failure),
}

/// What kind of failure an error frame reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame or JSON is malformed, a member is missing or over its limit.
    BadRequest,
    /// The frame is longer than [`MAX_FRAME_LEN`] (the connection is closed after it).
    TooLarge,
    /// The request's `version` is missing or not [`VERSION`].
    UnsupportedVersion,
    /// The `op` is not one this enclave serves.
    UnknownOp,
    /// KMS refused: the key policy (PCR conditions) or IAM denied the call.
    KmsAccessDenied,
    /// KMS answered with another error (invalid ciphertext, unknown key, throttling...).
    Kms,
    /// KMS (the parent's proxy) could not be reached.
    KmsUnreachable,
    /// No credentials from the parent.
    Credentials,
    /// The NSM failed.
    Nsm,
    /// A sealed blob is malformed or was modified.
    Unseal,
    /// A sealed blob this enclave did not seal: wrapped by another KMS key than the trusted
    /// one, or its wrapped key does not open under the trusted key with the given context.
    ForeignBlob,
    /// The operation needs a setting this image does not have (the trusted key).
    NotConfigured,
    /// Anything else inside the enclave.
    Internal,
    /// A code this version does not know (sent by a newer enclave).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnknownOp => "unknown_op",
            Self::KmsAccessDenied => "kms_access_denied",
            Self::Kms => "kms",
            Self::KmsUnreachable => "kms_unreachable",
            Self::Credentials => "credentials",
            Self::Nsm => "nsm",
            Self::Unseal => "unseal",
            Self::ForeignBlob => "foreign_blob",
            Self::NotConfigured => "not_configured",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error frame's contents: what kind, which step, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Failure {
    /// The kind.
    pub code: ErrorCode,
    /// The step that failed (`"kms Decrypt with Recipient"`, `"unseal: AES-256-GCM open"`).
    pub step: String,
    /// Why, and what to do. Never holds a secret.
    pub message: String,
}

impl Failure {
    /// A failure of `step`.
    #[must_use]
    pub fn new(code: ErrorCode, step: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            step: step.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.step, self.code, self.message)
    }
}

impl core::error::Error for Failure {}

/// A message with its `version` member.
#[derive(Serialize)]
struct Versioned<'a, T: Serialize> {
    version: u32,
    #[serde(flatten)]
    body: &'a T,
}

fn encode<T: Serialize>(body: &T) -> Zeroizing<Vec<u8>> {
    // Serializing these types cannot fail: every map key is a string and every value is
    // representable in JSON. Should it ever fail, an error frame goes out instead. Written
    // into one zeroizing buffer of exactly the payload's length (`secret::json::to_vec`): a
    // growing `Vec` would free copies of a `seal` plaintext's base64 unwiped.
    ccc_sdk::secret::json::to_vec(&Versioned {
        version: VERSION,
        body,
    })
    .unwrap_or_else(|_| {
        Zeroizing::new(
            br#"{"version":1,"type":"error","code":"internal","step":"encode the answer","message":"the answer could not be encoded as JSON"}"#.to_vec(),
        )
    })
}

/// A `seal` request read straight from the payload: the plaintext's base64 is taken as raw
/// JSON text (no serde_json scratch copy, no buffering by the internally tagged [`Request`])
/// and decoded by [`secret_base64`].
fn decode_seal(payload: &[u8], step: &str) -> Result<Request, Failure> {
    #[derive(Deserialize)]
    struct Seal<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
        #[serde(default)]
        context: BTreeMap<String, String>,
    }
    let seal: Seal<'_> = serde_json::from_slice(payload).map_err(|e| {
        Failure::new(
            ErrorCode::BadRequest,
            step,
            format!("`seal`: {}", json_problem(&e)),
        )
    })?;
    let data = secret_base64(seal.data).map_err(|problem| {
        Failure::new(ErrorCode::BadRequest, step, format!("`seal`: {problem}"))
    })?;
    Ok(Request::Seal {
        data,
        context: seal.context,
    })
}

/// A base64 JSON string member holding a secret: unescaped into a zeroizing buffer
/// ([`ccc_sdk::secret::json::string`]), then decoded into a buffer the decoder sizes once
/// (it never grows). The message never quotes the text.
fn secret_base64(raw: &serde_json::value::RawValue) -> Result<SecretBytes, String> {
    use base64::Engine as _;
    let text = ccc_sdk::secret::json::string(raw).map_err(|e| format!("`data`: {e}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map(SecretBytes::new)
        .map_err(|_| "`data` is not standard (padded) base64 (RFC 4648)".to_owned())
}

/// Encodes a request (zeroized when dropped: `seal` carries plaintext).
#[must_use]
pub fn encode_request(request: &Request) -> Zeroizing<Vec<u8>> {
    encode(request)
}

/// Encodes an answer (zeroized when dropped: `unseal` carries plaintext).
#[must_use]
pub fn encode_response(response: &Response) -> Zeroizing<Vec<u8>> {
    encode(response)
}

/// What a JSON error may say without echoing the input: serde's messages quote offending
/// values (`invalid type: string "..."`), which could be a secret, so only messages without
/// quotes (`missing field `data``) are passed on, with the position.
fn json_problem(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if text.contains('"') {
        format!(
            "a member has the wrong type or value (JSON error at line {} column {})",
            error.line(),
            error.column()
        )
    } else {
        text
    }
}

/// Decodes a request: checks the version and the operation first, then the members.
///
/// # Errors
/// A [`Failure`]: [`ErrorCode::BadRequest`] (not JSON, missing or malformed member),
/// [`ErrorCode::UnsupportedVersion`], [`ErrorCode::UnknownOp`].
pub fn decode_request(payload: &[u8]) -> Result<Request, Failure> {
    #[derive(Deserialize)]
    struct Head<'a> {
        version: Option<serde_json::Value>,
        #[serde(borrow)]
        op: Option<Cow<'a, str>>,
        /// Present in requests of API clients from release 0.1.0, which let a request pick
        /// its KMS key; refused rather than ignored, so such a client learns it.
        #[serde(default, deserialize_with = "present")]
        key_id: bool,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| true)
    }
    let step = "decode the request";
    let head: Head<'_> = serde_json::from_slice(payload).map_err(|e| {
        Failure::new(
            ErrorCode::BadRequest,
            step,
            format!("not a JSON object: {}", json_problem(&e)),
        )
    })?;
    match head.version.as_ref().and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        found => {
            return Err(Failure::new(
                ErrorCode::UnsupportedVersion,
                step,
                format!(
                    "request version {}; this enclave speaks version {VERSION}",
                    found.map_or_else(|| "missing".to_owned(), |v| v.to_string())
                ),
            ));
        }
    }
    if head.key_id {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            step,
            "`key_id` is not accepted: the enclave uses only its trusted key, measured into the \
             image (KEY_ARN in app.rs or CCC_APP_KEY_ARN in /env), so nothing a request says \
             can make it use another; drop the member",
        ));
    }
    let Some(op) = head.op else {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            step,
            format!("no `op` member; operations: {OPERATIONS}"),
        ));
    };
    if !OPERATIONS.split(", ").any(|known| known == op) {
        return Err(Failure::new(
            ErrorCode::UnknownOp,
            step,
            format!(
                "unknown op `{}`; operations: {OPERATIONS}",
                op.chars().take(64).collect::<String>()
            ),
        ));
    }
    if op == "seal" {
        return decode_seal(payload, step);
    }
    serde_json::from_slice(payload).map_err(|e| {
        Failure::new(
            ErrorCode::BadRequest,
            step,
            format!("`{op}`: {}", json_problem(&e)),
        )
    })
}

/// Decodes an answer.
///
/// # Errors
/// [`ProtocolError::Malformed`] if it is not a version-1 answer.
pub fn decode_response(payload: &[u8]) -> Result<Response, ProtocolError> {
    #[derive(Deserialize)]
    struct Head {
        version: Option<u32>,
    }
    let head: Head = serde_json::from_slice(payload).map_err(|e| {
        ProtocolError::Malformed(format!("not a JSON object: {}", json_problem(&e)))
    })?;
    if head.version != Some(VERSION) {
        return Err(ProtocolError::Malformed(format!(
            "answer version {:?}; this client speaks version {VERSION}",
            head.version
        )));
    }
    serde_json::from_slice(payload).map_err(|e| ProtocolError::Malformed(json_problem(&e)))
}

/// Why a frame could not be read or a call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The stream failed (or timed out).
    Io(io::Error),
    /// A frame announced a length of 0 or more than [`MAX_FRAME_LEN`].
    FrameLength(u32),
    /// The peer closed the connection before answering.
    Closed,
    /// The answer is not a valid version-1 answer.
    Malformed(String),
    /// The enclave answered with an error frame.
    Refused(Failure),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "the connection to the enclave failed: {e}"),
            Self::FrameLength(n) => write!(
                f,
                "a frame announced {n} bytes; frames carry 1 to {MAX_FRAME_LEN} (is the peer \
                 speaking this protocol?)"
            ),
            Self::Closed => {
                f.write_str("the enclave closed the connection without answering (see its console)")
            }
            Self::Malformed(detail) => write!(f, "malformed answer from the enclave: {detail}"),
            Self::Refused(failure) => write!(f, "the enclave refused: {failure}"),
        }
    }
}

impl core::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Refused(failure) => Some(failure),
            _ => None,
        }
    }
}

/// Writes one frame.
///
/// # Errors
/// The stream's error; `InvalidInput` for an empty payload or one over [`MAX_FRAME_LEN`].
pub fn write_frame<W: Write + ?Sized>(stream: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n > 0 && payload.len() <= MAX_FRAME_LEN)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a frame carries 1 to {MAX_FRAME_LEN} bytes, not {}",
                    payload.len()
                ),
            )
        })?;
    let mut frame = Zeroizing::new(Vec::with_capacity(4 + payload.len()));
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    stream.flush()
}

/// Reads one frame; `Ok(None)` when the peer closed the connection cleanly before a frame.
///
/// # Errors
/// [`ProtocolError::Io`] (including a close in the middle of a frame),
/// [`ProtocolError::FrameLength`] (the payload is not read).
pub fn read_frame<R: Read + ?Sized>(
    stream: &mut R,
) -> Result<Option<Zeroizing<Vec<u8>>>, ProtocolError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        let rest = header.get_mut(got..).unwrap_or_default();
        match stream.read(rest) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(ProtocolError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection inside a frame header",
                )));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtocolError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(header);
    let size = usize::try_from(len)
        .ok()
        .filter(|&n| n > 0 && n <= MAX_FRAME_LEN)
        .ok_or(ProtocolError::FrameLength(len))?;
    let mut payload = Zeroizing::new(vec![0u8; size]);
    stream.read_exact(&mut payload).map_err(ProtocolError::Io)?;
    Ok(Some(payload))
}

/// The client side: one connection, any number of calls.
#[derive(Debug)]
pub struct Client<S> {
    stream: S,
}

impl<S: Read + Write> Client<S> {
    /// Speaks the protocol over `stream` (already connected, timeouts set).
    pub fn new(stream: S) -> Self {
        Self { stream }
    }

    /// Sends `request` and returns the answer, or the enclave's error frame as
    /// [`ProtocolError::Refused`].
    ///
    /// # Errors
    /// [`ProtocolError`].
    pub fn call(&mut self, request: &Request) -> Result<Response, ProtocolError> {
        write_frame(&mut self.stream, &encode_request(request)).map_err(ProtocolError::Io)?;
        let payload = read_frame(&mut self.stream)?.ok_or(ProtocolError::Closed)?;
        match decode_response(&payload)? {
            Response::Error(failure) => Err(ProtocolError::Refused(failure)),
            response => Ok(response),
        }
    }

    /// Sends raw bytes as one frame and returns the raw answer (tests of malformed requests).
    ///
    /// # Errors
    /// [`ProtocolError`].
    pub fn call_raw(&mut self, payload: &[u8]) -> Result<Response, ProtocolError> {
        write_frame(&mut self.stream, payload).map_err(ProtocolError::Io)?;
        let answer = read_frame(&mut self.stream)?.ok_or(ProtocolError::Closed)?;
        decode_response(&answer)
    }

    /// The stream.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}

#[cfg(test)]
#[expect(clippy::panic, reason = "test code: a panic is the test failure")]
mod tests {
    use super::*;

    fn roundtrip(request: Request) {
        let bytes = encode_request(&request);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(r#"{"version":1,"op":""#), "{text}");
        assert_eq!(decode_request(&bytes).unwrap(), request);
    }

    #[test]
    fn requests_roundtrip_with_version_and_op() {
        roundtrip(Request::Attest {
            nonce: Some(vec![0, 0xff]),
            user_data: None,
        });
        roundtrip(Request::GenerateDataKey {
            context: BTreeMap::from([("tenant".into(), "a".into())]),
        });
        roundtrip(Request::Seal {
            data: SecretBytes::copy_from(b"secret"),
            context: BTreeMap::new(),
        });
        roundtrip(Request::Unseal {
            sealed: vec![1, 2, 3],
            context: BTreeMap::new(),
        });
        roundtrip(Request::Random { n: 32 });
        roundtrip(Request::Hmac {
            ciphertext_blob: vec![9; 10],
            message: b"hello".to_vec(),
            context: BTreeMap::new(),
        });
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        let bytes = encode_request(&Request::Hmac {
            ciphertext_blob: vec![1, 2, 3],
            message: b"hi".to_vec(),
            context: BTreeMap::new(),
        });
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"version":1,"op":"hmac","ciphertext_blob":"AQID","message":"aGk="}"#
        );
        let answer = encode_response(&Response::Error(Failure::new(
            ErrorCode::KmsAccessDenied,
            "kms Decrypt with Recipient",
            "denied",
        )));
        assert_eq!(
            std::str::from_utf8(&answer).unwrap(),
            r#"{"version":1,"type":"error","code":"kms_access_denied","step":"kms Decrypt with Recipient","message":"denied"}"#
        );
        // Unknown members and unknown error codes from newer peers are tolerated.
        let newer =
            br#"{"version":1,"type":"error","code":"quota","step":"s","message":"m","extra":1}"#;
        match decode_response(newer).unwrap() {
            Response::Error(f) => assert_eq!(f.code, ErrorCode::Unknown),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_requests_name_the_problem_without_echoing_values() {
        let cases: [(&[u8], ErrorCode, &str); 11] = [
            (
                br#"{"version":1,"op":"seal","data":"eA==","key_id":"alias/topsecret"}"#,
                ErrorCode::BadRequest,
                "`key_id` is not accepted",
            ),
            (
                br#"{"version":1,"op":"generate_data_key","key_id":null}"#,
                ErrorCode::BadRequest,
                "trusted key",
            ),
            (b"not json", ErrorCode::BadRequest, "not a JSON object"),
            (
                br#"{"op":"random","n":1}"#,
                ErrorCode::UnsupportedVersion,
                "version missing",
            ),
            (
                br#"{"version":2,"op":"random","n":1}"#,
                ErrorCode::UnsupportedVersion,
                "version 2",
            ),
            (br#"{"version":1,"n":1}"#, ErrorCode::BadRequest, "no `op`"),
            (
                br#"{"version":1,"op":"format_disk"}"#,
                ErrorCode::UnknownOp,
                "unknown op `format_disk`",
            ),
            (
                br#"{"version":1,"op":"random"}"#,
                ErrorCode::BadRequest,
                "missing field `n`",
            ),
            (
                br#"{"version":1,"op":"seal","data":"not base64!"}"#,
                ErrorCode::BadRequest,
                "not standard (padded) base64",
            ),
            (
                br#"{"version":1,"op":"random","n":"topsecret"}"#,
                ErrorCode::BadRequest,
                "wrong type",
            ),
            (
                br#"{"version":1,"op":"seal","data":"topsecret"}"#,
                ErrorCode::BadRequest,
                "base64",
            ),
        ];
        for (payload, code, needle) in cases {
            let failure = decode_request(payload).unwrap_err();
            assert_eq!(failure.code, code, "{failure}");
            assert!(failure.message.contains(needle), "{failure}");
            assert!(!failure.message.contains("topsecret"), "{failure}");
        }
    }

    #[test]
    fn limits_are_checked() {
        let cases = [
            Request::Attest {
                nonce: Some(vec![0; NONCE_MAX + 1]),
                user_data: None,
            },
            Request::Random { n: 0 },
            Request::Random { n: MAX_RANDOM + 1 },
            Request::Seal {
                data: SecretBytes::new(vec![0; MAX_DATA_LEN + 1]),
                context: BTreeMap::new(),
            },
            Request::GenerateDataKey {
                context: BTreeMap::from([(PURPOSE_KEY.into(), "seal".into())]),
            },
            Request::Hmac {
                ciphertext_blob: Vec::new(),
                message: Vec::new(),
                context: BTreeMap::new(),
            },
        ];
        for request in cases {
            let failure = request.check().unwrap_err();
            assert_eq!(failure.code, ErrorCode::BadRequest, "{failure}");
        }
        Request::Random { n: MAX_RANDOM }.check().unwrap();
    }

    #[test]
    fn frames_are_bounded() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"{}").unwrap();
        assert_eq!(wire, b"\0\0\0\x02{}");
        let mut reader = &wire[..];
        assert_eq!(read_frame(&mut reader).unwrap().unwrap().as_slice(), b"{}");
        assert!(read_frame(&mut reader).unwrap().is_none(), "clean close");

        let too_long = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        match read_frame(&mut &too_long[..]) {
            Err(ProtocolError::FrameLength(n)) => assert_eq!(n as usize, MAX_FRAME_LEN + 1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0][..]),
            Err(ProtocolError::FrameLength(0))
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 5, b'{'][..]),
            Err(ProtocolError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0][..]),
            Err(ProtocolError::Io(_))
        ));
        assert!(write_frame(&mut Vec::new(), b"").is_err());
        assert!(write_frame(&mut Vec::new(), &vec![b' '; MAX_FRAME_LEN + 1]).is_err());
    }
}
