//! The parent ↔ enclave credentials protocol, version 1: length-prefixed JSON frames (see the
//! module docs of [`crate::credentials`] and `docs/credentials-protocol.md`).
//!
//! Frames are read into buffers that are zeroized on drop (an answer carries the secret key);
//! the JSON never reaches a `Debug` impl.

use super::{Credentials, CredentialsError};
use crate::time::UnixMillis;
use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::io::{self, Read, Write};
use std::{format, vec};
use zeroize::Zeroizing;

/// The protocol version this code speaks.
pub const VERSION: u32 = 1;

/// The parent's default vsock port for the credentials service. 8000 is the KMS proxy's by
/// convention and 9000 the enclave-ready heartbeat (research notes §5); 8002 sits next to the
/// proxy without colliding with either.
pub const DEFAULT_PORT: u32 = 8002;

/// Largest frame payload, 16 KiB. The answer holds a 20-character key id, a 40-character
/// secret and an STS session token, which AWS documents as variable-sized but in practice is
/// under 2 KiB (research notes §4 shows 700–1000 characters); 16 KiB leaves room and bounds
/// what a confused peer can make us allocate.
pub const MAX_FRAME_LEN: usize = 16 * 1024;

/// Error codes of an error frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The parent has no credentials to give (IMDS down, no role, no environment variables).
    Unavailable,
    /// The request was not understood.
    BadRequest,
    /// The request's version is not one the parent speaks.
    UnsupportedVersion,
}

impl ErrorCode {
    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::BadRequest => "bad_request",
            Self::UnsupportedVersion => "unsupported_version",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a peer sent, as the wire sees it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    GetCredentials,
    Error {
        code: String,
        #[serde(default)]
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Frame {
    version: u32,
    #[serde(flatten)]
    message: Message,
}

/// A request the enclave sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `get_credentials`.
    GetCredentials,
}

/// Why a request frame was refused, with the error frame to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The code to answer with.
    pub code: ErrorCode,
    /// The message to answer with.
    pub message: String,
}

/// Writes one frame (length prefix and payload) and flushes.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for an empty payload or one over [`MAX_FRAME_LEN`]; the
/// write failure otherwise.
pub fn write_frame<W: Write + ?Sized>(stream: &mut W, payload: &[u8]) -> io::Result<()> {
    if payload.is_empty() || payload.len() > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a frame payload of {} bytes (1..={MAX_FRAME_LEN})",
                payload.len()
            ),
        ));
    }
    let mut frame = Zeroizing::new(Vec::with_capacity(4 + payload.len()));
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    stream.flush()
}

/// Reads one frame's payload. `Ok(None)` when the peer closed cleanly before a frame began.
///
/// # Errors
/// [`io::ErrorKind::InvalidData`] for a zero or over-limit length,
/// [`io::ErrorKind::UnexpectedEof`] for a frame cut short; the read failure otherwise.
pub fn read_frame<R: Read + ?Sized>(stream: &mut R) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let slot = prefix.get_mut(got..).unwrap_or_default();
        match stream.read(slot) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame length of {len} bytes (1..={MAX_FRAME_LEN})"),
        ));
    }
    let mut payload = Zeroizing::new(vec![0u8; len]);
    stream.read_exact(&mut payload)?;
    Ok(Some(payload))
}

/// The request frame payload: `{"version":1,"type":"get_credentials"}`.
#[must_use]
pub fn encode_request() -> Vec<u8> {
    serde_json::to_vec(&Frame {
        version: VERSION,
        message: Message::GetCredentials,
    })
    .unwrap_or_default()
}

/// Reads a request payload (the parent side).
///
/// # Errors
/// A [`Rejection`] to answer with: `unsupported_version` for another version, `bad_request`
/// for anything that is not a request.
pub fn decode_request(payload: &[u8]) -> Result<Request, Rejection> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let bad = |message: String| Rejection {
        code: ErrorCode::BadRequest,
        message,
    };
    let versioned: Versioned = serde_json::from_slice(payload)
        .map_err(|e| bad(format!("not a JSON object with a version: {e}")))?;
    if versioned.version != VERSION {
        return Err(Rejection {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "version {} asked; this parent speaks version {VERSION}",
                versioned.version
            ),
        });
    }
    match serde_json::from_slice::<Frame>(payload) {
        Ok(Frame {
            message: Message::GetCredentials,
            ..
        }) => Ok(Request::GetCredentials),
        Ok(_) => Err(bad("only get_credentials may be asked".into())),
        Err(e) => Err(bad(format!("unknown request: {e}"))),
    }
}

/// The answer payload carrying `credentials` (zeroized on drop: it holds the secret key), in
/// a buffer of exactly its length ([`crate::secret::json::to_vec`]: no reallocation leaves a
/// copy of the secret behind).
#[must_use]
pub fn encode_credentials(credentials: &Credentials) -> Zeroizing<Vec<u8>> {
    // Serialized from borrowed strings: no intermediate owned copy of the secret.
    #[derive(Serialize)]
    struct Borrowed<'a> {
        version: u32,
        #[serde(rename = "type")]
        kind: &'static str,
        access_key_id: &'a str,
        secret_access_key: &'a str,
        session_token: Option<&'a str>,
        expiration: Option<String>,
    }
    crate::secret::json::to_vec(&Borrowed {
        version: VERSION,
        kind: "credentials",
        access_key_id: credentials.access_key_id(),
        secret_access_key: credentials.secret_access_key(),
        session_token: credentials.session_token(),
        expiration: credentials.expiration().map(|e| e.to_string()),
    })
    .unwrap_or_default()
}

/// An error answer payload.
#[must_use]
pub fn encode_error(code: ErrorCode, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Frame {
        version: VERSION,
        message: Message::Error {
            code: code.as_str().into(),
            message: message.into(),
        },
    })
    .unwrap_or_default()
}

/// An answer as the wire has it, every member optional: one flat struct, so serde reads it
/// straight from the payload (an internally tagged enum would buffer every member in owned
/// temporaries first), and the secret members as raw JSON text, unescaped by
/// [`crate::secret::json::string`] into zeroizing buffers.
#[derive(Deserialize)]
struct Answer<'a> {
    version: u32,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    access_key_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    secret_access_key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    session_token: Option<&'a RawValue>,
    #[serde(default)]
    expiration: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Reads an answer payload (the enclave side); `from` names the parent in errors.
///
/// The secret key and the session token go from the payload into zeroizing buffers of their
/// own size and are moved, not copied, into the [`Credentials`]: no copy of them is freed
/// unwiped.
///
/// # Errors
/// [`CredentialsError::Refused`] for an error frame, [`CredentialsError::Malformed`] for
/// anything else that is not credentials, [`CredentialsError::Invalid`] for values that are
/// not AWS credentials.
pub fn decode_answer(payload: &[u8], from: &str) -> Result<Credentials, CredentialsError> {
    let malformed = |detail: String| CredentialsError::Malformed {
        from: from.into(),
        detail,
    };
    // serde_json's messages can quote a string value ("invalid type: string ..."), which
    // here may be the secret: only the position and the category are kept.
    let answer: Answer<'_> = serde_json::from_slice(payload).map_err(|e| {
        malformed(format!(
            "invalid answer JSON at line {} column {} ({:?})",
            e.line(),
            e.column(),
            e.classify()
        ))
    })?;
    if answer.version != VERSION {
        return Err(malformed(format!(
            "version {} answered to a version {VERSION} request",
            answer.version
        )));
    }
    match answer.kind.as_ref() {
        "credentials" => {
            let (Some(access_key_id), Some(secret)) =
                (answer.access_key_id, answer.secret_access_key)
            else {
                return Err(malformed(
                    "a credentials answer without access_key_id or secret_access_key".into(),
                ));
            };
            let secret_member = |member: &str, raw: &RawValue| {
                crate::secret::json::string(raw).map_err(|e| malformed(format!("{member}: {e}")))
            };
            let mut secret = secret_member("secret_access_key", secret)?;
            let mut token = answer
                .session_token
                .map(|raw| secret_member("session_token", raw))
                .transpose()?;
            // The strings move into the credentials (which wrap them in `Zeroizing` at once);
            // what is left behind in `secret` and `token` is empty.
            let credentials = Credentials::new(
                access_key_id.into_owned(),
                core::mem::take(&mut *secret),
                token.as_mut().map(|token| core::mem::take(&mut **token)),
            )
            .map_err(|error| CredentialsError::Invalid {
                from: from.into(),
                error,
            })?;
            match answer.expiration {
                None => Ok(credentials),
                Some(text) => {
                    let at = UnixMillis::parse(&text)
                        .map_err(|e| malformed(format!("expiration {text:?}: {e}")))?;
                    Ok(credentials.with_expiration(at))
                }
            }
        }
        "error" => Err(CredentialsError::Refused {
            from: from.into(),
            code: answer
                .code
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect(),
            message: answer
                .message
                .unwrap_or_default()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(1024)
                .collect(),
        }),
        "get_credentials" => Err(malformed("a request where an answer belongs".into())),
        other => Err(malformed(format!(
            "an answer of unknown type {:?}",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::string::ToString;

    #[test]
    fn frames_round_trip_and_enforce_limits() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"{}").unwrap();
        assert_eq!(wire, b"\x00\x00\x00\x02{}");
        let mut reader = Cursor::new(wire);
        assert_eq!(read_frame(&mut reader).unwrap().unwrap().as_slice(), b"{}");
        assert!(read_frame(&mut reader).unwrap().is_none());

        assert_eq!(
            write_frame(&mut Vec::new(), &[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            write_frame(&mut Vec::new(), &vec![b' '; MAX_FRAME_LEN + 1])
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        let too_long = (u32::try_from(MAX_FRAME_LEN).unwrap() + 1).to_be_bytes();
        for bad in [&[0u8, 0, 0, 0][..], &too_long[..]] {
            let error = read_frame(&mut Cursor::new(bad.to_vec())).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        }
        for cut in [&b"\x00\x00"[..], b"\x00\x00\x00\x05abc"] {
            let error = read_frame(&mut Cursor::new(cut.to_vec())).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn requests_and_rejections() {
        assert_eq!(
            encode_request(),
            br#"{"version":1,"type":"get_credentials"}"#
        );
        assert_eq!(
            decode_request(&encode_request()),
            Ok(Request::GetCredentials)
        );
        assert_eq!(
            decode_request(br#"{"type":"get_credentials","version":1,"future":true}"#),
            Ok(Request::GetCredentials)
        );
        for (payload, code) in [
            (
                &br#"{"version":2,"type":"get_credentials"}"#[..],
                ErrorCode::UnsupportedVersion,
            ),
            (br#"{"version":1,"type":"steal"}"#, ErrorCode::BadRequest),
            (
                br#"{"version":1,"type":"error","code":"x"}"#,
                ErrorCode::BadRequest,
            ),
            (b"not json", ErrorCode::BadRequest),
            (br#"{"type":"get_credentials"}"#, ErrorCode::BadRequest),
        ] {
            assert_eq!(
                decode_request(payload).unwrap_err().code,
                code,
                "{payload:?}"
            );
        }
    }

    #[test]
    fn answers_round_trip_without_leaking_the_secret_in_errors() {
        let credentials = Credentials::new("ASIAEXAMPLE", "wJalrSECRET", Some("TOKEN".into()))
            .unwrap()
            .with_expiration(UnixMillis(1_767_225_600_000));
        let payload = encode_credentials(&credentials);
        let text = std::str::from_utf8(&payload).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"type":"credentials","access_key_id":"ASIAEXAMPLE","secret_access_key":"wJalrSECRET","session_token":"TOKEN","expiration":"2026-01-01T00:00:00.000Z"}"#
        );
        let back = decode_answer(&payload, "test").unwrap();
        assert_eq!(back.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(back.secret_access_key(), "wJalrSECRET");
        assert_eq!(back.session_token(), Some("TOKEN"));
        assert_eq!(back.expiration(), Some(UnixMillis(1_767_225_600_000)));

        let long_term = decode_answer(
            br#"{"version":1,"type":"credentials","access_key_id":"AKIA1","secret_access_key":"s"}"#,
            "test",
        )
        .unwrap();
        assert_eq!(
            (long_term.session_token(), long_term.expiration()),
            (None, None)
        );

        let refused =
            decode_answer(&encode_error(ErrorCode::Unavailable, "IMDS down\n"), "p").unwrap_err();
        assert!(
            matches!(&refused, CredentialsError::Refused { code, message, .. }
                if code == "unavailable" && message == "IMDS down ")
        );
        for bad in [
            &br#"{"version":1,"type":"credentials","access_key_id":"A","secret_access_key":"wJalrSECRET","expiration":"soon"}"#[..],
            br#"{"version":2,"type":"credentials","access_key_id":"A","secret_access_key":"wJalrSECRET"}"#,
            br#"{"version":1,"type":"credentials","access_key_id":"A","secret_access_key":1}"#,
            br#"{"version":1,"type":"get_credentials"}"#,
            br#"{"version":"wJalrSECRET","type":"credentials"}"#,
        ] {
            let error = decode_answer(bad, "p").unwrap_err();
            assert!(matches!(error, CredentialsError::Malformed { .. }), "{error:?}");
            assert!(!error.to_string().contains("wJalrSECRET"), "{error}");
        }
        let invalid = decode_answer(
            br#"{"version":1,"type":"credentials","access_key_id":"bad id","secret_access_key":"wJalrSECRET"}"#,
            "p",
        )
        .unwrap_err();
        assert!(matches!(invalid, CredentialsError::Invalid { .. }));
        assert!(!invalid.to_string().contains("wJalrSECRET"));
    }
}
