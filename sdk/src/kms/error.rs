//! KMS error responses: the code and message pulled from an AWS JSON 1.1 error (or from the
//! XML auth-error bodies of STS-style front ends such as moto), mapped to a typed
//! [`ServiceError`] whose `Display` names the likely fix, plus the retry classification a
//! client needs.
//!
//! Code resolution follows smithy-rs's awsJson rule (`rust-runtime/inlineable/src/json_errors.rs`,
//! cited in the research notes §1.5): the `X-Amzn-ErrorType` header wins, then the body's
//! `code`, then `__type`; `aws.ns#Name:http://...` is cut to `Name`. The message is `message`,
//! `Message` or `errorMessage`.

use super::Operation;
use alloc::string::String;
use core::fmt;

/// Longest error message kept (characters). KMS messages are a sentence or two; anything
/// longer is cut so a hostile endpoint cannot flood logs.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1024;

/// Longest error code kept (characters); KMS codes are under 40.
pub const MAX_ERROR_CODE_CHARS: usize = 128;

/// What kind of failure KMS reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `AccessDeniedException`: a key policy or IAM policy denied the call.
    AccessDenied,
    /// `UnrecognizedClientException` / `InvalidClientTokenId`: unknown access key or token.
    UnrecognizedClient,
    /// `InvalidSignatureException` / `SignatureDoesNotMatch` / `IncompleteSignature`.
    InvalidSignature,
    /// The request time is more than 5 minutes from KMS's ("Signature expired" / "Signature not
    /// yet current", `RequestExpired`, `RequestTimeTooSkewed`).
    ClockSkew,
    /// `ExpiredTokenException`: the temporary credentials expired.
    ExpiredToken,
    /// `ThrottlingException` and friends: request rate exceeded.
    Throttling,
    /// `InvalidCiphertextException`.
    InvalidCiphertext,
    /// `NotFoundException`.
    NotFound,
    /// `DisabledException`.
    Disabled,
    /// `KeyUnavailableException`.
    KeyUnavailable,
    /// `IncorrectKeyException`.
    IncorrectKey,
    /// `InvalidKeyUsageException`.
    InvalidKeyUsage,
    /// `InvalidGrantTokenException`.
    InvalidGrantToken,
    /// `KMSInvalidStateException`.
    InvalidState,
    /// `DependencyTimeoutException`.
    DependencyTimeout,
    /// `KMSInternalException` or an HTTP 5xx without a code.
    Internal,
    /// `ValidationException` / `SerializationException`: malformed request.
    Validation,
    /// `UnsupportedOperationException`.
    UnsupportedOperation,
    /// `DryRunOperationException`: the dry run would have succeeded.
    DryRunOperation,
    /// `LimitExceededException`: an account quota.
    LimitExceeded,
    /// `CustomKeyStoreNotFoundException` / `CustomKeyStoreInvalidStateException`.
    CustomKeyStore,
    /// Anything else.
    Other,
}

/// What a client should do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryAdvice {
    /// Retrying the same request will fail the same way.
    DoNotRetry,
    /// Transient (throttling, KMS internal errors, timeouts): retry with exponential backoff.
    Backoff,
    /// The local clock is off: correct it (e.g. from the response's `Date` header) and retry
    /// once with a new signature.
    CorrectClock,
    /// The credentials are expired or not recognized: get fresh ones from the parent and retry
    /// once.
    RefreshCredentials,
}

/// An error KMS (or something in front of it) returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// The operation that failed.
    pub operation: Operation,
    /// The classification.
    pub kind: ErrorKind,
    /// The error code as sent, sanitized (`ns#Name:url` cut to `Name`; at most
    /// [`MAX_ERROR_CODE_CHARS`]). Empty if the response had none.
    pub code: String,
    /// The message as sent (control characters replaced, at most
    /// [`MAX_ERROR_MESSAGE_CHARS`]).
    pub message: Option<String>,
    /// The HTTP status.
    pub status: u16,
    /// `x-amzn-RequestId`, for AWS support.
    pub request_id: Option<String>,
    /// Whether the request carried an attestation `Recipient` (changes what AccessDenied means).
    pub recipient_in_request: bool,
}

impl ServiceError {
    /// What a client should do next.
    #[must_use]
    pub fn retry_advice(&self) -> RetryAdvice {
        match self.kind {
            ErrorKind::Throttling
            | ErrorKind::Internal
            | ErrorKind::DependencyTimeout
            | ErrorKind::KeyUnavailable => RetryAdvice::Backoff,
            ErrorKind::ClockSkew => RetryAdvice::CorrectClock,
            ErrorKind::ExpiredToken | ErrorKind::UnrecognizedClient => {
                RetryAdvice::RefreshCredentials
            }
            _ => RetryAdvice::DoNotRetry,
        }
    }

    /// True for transient errors worth retrying with backoff.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.retry_advice() == RetryAdvice::Backoff
    }

    /// True when the signing time was more than 5 minutes off KMS's clock.
    #[must_use]
    pub fn is_clock_skew(&self) -> bool {
        self.kind == ErrorKind::ClockSkew
    }

    /// The likely fix, in one sentence.
    #[must_use]
    pub fn hint(&self) -> &'static str {
        match self.kind {
            ErrorKind::AccessDenied if self.recipient_in_request => {
                "check the key policy's kms:RecipientAttestation:* conditions (ImageSha384, \
                 PCR0, PCR1, PCR2, PCR3, PCR4, PCR8) against this enclave's PCRs (a debug-mode \
                 enclave has all-zero PCRs), and that the parent's role may call this operation"
            }
            ErrorKind::AccessDenied => {
                "the IAM policy or the key policy does not allow this call on this key (an \
                 explicit Deny wins); if the key policy requires attestation, send a Recipient"
            }
            ErrorKind::UnrecognizedClient => {
                "the access key id or session token is not valid here: use the parent role's \
                 credentials (IMDS iam/security-credentials/<role>), not the instance identity \
                 credentials, and send the session token that came with temporary keys"
            }
            ErrorKind::InvalidSignature => {
                "wrong secret access key, or the request changed after signing (body, host or a \
                 signed header)"
            }
            ErrorKind::ClockSkew => {
                "the enclave clock is more than 5 minutes off: sync it (kvm-clock / ptp_kvm) or \
                 retry with the offset from the response's Date header"
            }
            ErrorKind::ExpiredToken => {
                "the temporary credentials expired: get fresh ones from the parent and retry"
            }
            ErrorKind::Throttling => "KMS request rate exceeded: retry with exponential backoff",
            ErrorKind::InvalidCiphertext => {
                "the ciphertext is corrupted or not from KMS, or the EncryptionContext differs \
                 from the one used to encrypt"
            }
            ErrorKind::NotFound => {
                "the key id, alias or ARN does not exist in this account and region"
            }
            ErrorKind::Disabled => "the KMS key is disabled: enable it",
            ErrorKind::KeyUnavailable => "the KMS key is temporarily unavailable: retry later",
            ErrorKind::IncorrectKey => {
                "the ciphertext was encrypted under another KMS key than KeyId names"
            }
            ErrorKind::InvalidKeyUsage => {
                "the key's KeyUsage or KeySpec does not allow this operation or algorithm"
            }
            ErrorKind::InvalidGrantToken => "a grant token is invalid or expired",
            ErrorKind::InvalidState => {
                "the key is pending deletion, pending import or otherwise unusable"
            }
            ErrorKind::DependencyTimeout => "KMS timed out on a dependency: retry with backoff",
            ErrorKind::Internal => "KMS failed internally: retry with exponential backoff",
            ErrorKind::Validation if self.recipient_in_request => {
                "a parameter is malformed (the message names it); with a Recipient, also check \
                 that the attestation document comes from /dev/nsm and its public_key is the \
                 DER SPKI of an RSA-2048 key"
            }
            ErrorKind::Validation => "a parameter is malformed (the message names it)",
            ErrorKind::UnsupportedOperation => {
                "this key or key store does not support the operation"
            }
            ErrorKind::DryRunOperation => {
                "the DryRun request would have succeeded (no work was done)"
            }
            ErrorKind::LimitExceeded => "an account quota was exceeded",
            ErrorKind::CustomKeyStore => "the custom key store is missing or not connected",
            ErrorKind::Other => "see the message",
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = if self.code.is_empty() {
            "an error without a code"
        } else {
            &self.code
        };
        write!(
            f,
            "KMS {} failed with {code} (HTTP {})",
            self.operation.name(),
            self.status
        )?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        write!(f, ". Likely fix: {}", self.hint())?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// The classification of a sanitized error code (and message, which tells clock skew apart
/// from other signature errors).
#[must_use]
pub fn classify(code: &str, message: Option<&str>, status: u16) -> ErrorKind {
    let skewed = message.is_some_and(|m| {
        m.contains("Signature expired") || m.contains("Signature not yet current")
    });
    match code {
        "AccessDeniedException" | "AccessDenied" => ErrorKind::AccessDenied,
        "UnrecognizedClientException"
        | "UnrecognizedClient"
        | "InvalidClientTokenId"
        | "InvalidAccessKeyId" => ErrorKind::UnrecognizedClient,
        "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "IncompleteSignatureException"
        | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException"
            if skewed =>
        {
            ErrorKind::ClockSkew
        }
        "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "IncompleteSignatureException"
        | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException" => ErrorKind::InvalidSignature,
        "RequestExpired" | "RequestTimeTooSkewed" | "RequestInTheFuture" => ErrorKind::ClockSkew,
        "ExpiredTokenException" | "ExpiredToken" => ErrorKind::ExpiredToken,
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "SlowDown" => ErrorKind::Throttling,
        "InvalidCiphertextException" => ErrorKind::InvalidCiphertext,
        "NotFoundException" => ErrorKind::NotFound,
        "DisabledException" => ErrorKind::Disabled,
        "KeyUnavailableException" => ErrorKind::KeyUnavailable,
        "IncorrectKeyException" => ErrorKind::IncorrectKey,
        "InvalidKeyUsageException" => ErrorKind::InvalidKeyUsage,
        "InvalidGrantTokenException" => ErrorKind::InvalidGrantToken,
        "KMSInvalidStateException" => ErrorKind::InvalidState,
        "DependencyTimeoutException" => ErrorKind::DependencyTimeout,
        "KMSInternalException"
        | "InternalFailure"
        | "InternalError"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException" => ErrorKind::Internal,
        "ValidationException" | "ValidationError" | "SerializationException" => {
            ErrorKind::Validation
        }
        "UnsupportedOperationException" => ErrorKind::UnsupportedOperation,
        "DryRunOperationException" => ErrorKind::DryRunOperation,
        "LimitExceededException" => ErrorKind::LimitExceeded,
        "CustomKeyStoreNotFoundException" | "CustomKeyStoreInvalidStateException" => {
            ErrorKind::CustomKeyStore
        }
        "" if status == 429 => ErrorKind::Throttling,
        "" if status >= 500 => ErrorKind::Internal,
        _ => ErrorKind::Other,
    }
}

/// `aws.protocoltests#FooError:http://internal.amazon.com/` → `FooError`.
#[must_use]
pub fn sanitize_code(raw: &str) -> String {
    let before_colon = raw.split(':').next().unwrap_or_default();
    let name = before_colon.rsplit('#').next().unwrap_or_default().trim();
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .take(MAX_ERROR_CODE_CHARS)
        .collect()
}

/// Replaces control characters (terminal escapes, newlines) and cuts to
/// [`MAX_ERROR_MESSAGE_CHARS`].
fn sanitize_message(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .take(MAX_ERROR_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if raw.chars().nth(MAX_ERROR_MESSAGE_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

fn header<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// The text between the first `<tag>` and the following `</tag>`, XML entities decoded.
fn xml_element(body: &str, tag: &str) -> Option<String> {
    let open = alloc::format!("<{tag}>");
    let close = alloc::format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let rest = body.get(start..)?;
    let end = rest.find(&close)?;
    let text = rest.get(..end)?;
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Builds the [`ServiceError`] for a non-2xx response: JSON 1.1 bodies, the
/// `X-Amzn-ErrorType` header, and XML `<ErrorResponse><Error><Code>..</Code><Message>..`
/// bodies (what moto answers to a bad signature or credential).
#[must_use]
pub fn parse_error(
    operation: Operation,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    recipient_in_request: bool,
) -> ServiceError {
    let text = core::str::from_utf8(body).unwrap_or_default();
    let mut code: Option<String> = None;
    let mut message: Option<String> = None;
    let mut request_id = header(headers, "x-amzn-requestid")
        .or_else(|| header(headers, "x-amz-request-id"))
        .map(sanitize_message);

    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(body) {
        let text_of = |key: &str| object.get(key).and_then(|v| v.as_str());
        code = text_of("code")
            .or_else(|| text_of("__type"))
            .map(String::from);
        message = text_of("message")
            .or_else(|| text_of("Message"))
            .or_else(|| text_of("errorMessage"))
            .map(String::from);
    } else if text.trim_start().starts_with('<') {
        code = xml_element(text, "Code");
        message = xml_element(text, "Message");
        if request_id.is_none() {
            request_id = xml_element(text, "RequestId")
                .or_else(|| xml_element(text, "RequestID"))
                .as_deref()
                .map(sanitize_message);
        }
    }
    if let Some(from_header) = header(headers, "x-amzn-errortype") {
        code = Some(from_header.into());
    }
    let code = code.as_deref().map(sanitize_code).unwrap_or_default();
    let message = message.as_deref().map(sanitize_message);
    ServiceError {
        operation,
        kind: classify(&code, message.as_deref(), status),
        code,
        message,
        status,
        request_id,
        recipient_in_request,
    }
}

/// An AWS JSON 1.1 error body, `{"__type":"<code>","message":"<message>"}` (for the KMS
/// emulator).
#[must_use]
pub fn error_body(code: &str, message: &str) -> alloc::vec::Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "__type": code, "message": message }))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn parse(headers: &[(&str, &str)], body: &str, recipient: bool) -> ServiceError {
        parse_error(Operation::Decrypt, 400, headers, body.as_bytes(), recipient)
    }

    #[test]
    fn header_wins_and_codes_are_sanitized() {
        let e = parse(
            &[(
                "X-Amzn-ErrorType",
                "aws.kms#ThrottlingException:http://internal.amazon.com/",
            )],
            r#"{"__type":"NotFoundException","message":"m"}"#,
            false,
        );
        assert_eq!(e.code, "ThrottlingException");
        assert_eq!(e.kind, ErrorKind::Throttling);
        assert!(e.is_retryable());
        let e = parse(&[], r#"{"code":"A","__type":"com.amazon.coral#B"}"#, false);
        assert_eq!(e.code, "A");
        assert_eq!(
            sanitize_code("com.amazonaws.kms#NotFoundException"),
            "NotFoundException"
        );
        assert_eq!(sanitize_code("Name:http://x#y"), "Name");
    }

    #[test]
    fn access_denied_hint_depends_on_recipient() {
        let body = r#"{"__type":"AccessDeniedException","Message":"User: arn:aws:sts::1:assumed-role/r/i is not authorized to perform: kms:Decrypt"}"#;
        let attested = parse(&[], body, true);
        assert_eq!(attested.kind, ErrorKind::AccessDenied);
        assert!(
            attested
                .message
                .as_deref()
                .unwrap()
                .starts_with("User: arn:aws:sts")
        );
        let shown = attested.to_string();
        assert!(shown.contains("kms:RecipientAttestation"), "{shown}");
        assert!(shown.contains("PCRs"), "{shown}");
        assert!(
            !parse(&[], body, false)
                .to_string()
                .contains("RecipientAttestation")
        );
        assert_eq!(attested.retry_advice(), RetryAdvice::DoNotRetry);
    }

    #[test]
    fn clock_skew_is_told_apart_from_a_bad_signature() {
        let expired = parse(
            &[],
            r#"{"__type":"InvalidSignatureException","message":"Signature expired: 20181105T215603Z is now earlier than 20181105T221104Z (20181105T221604Z - 5 min.)"}"#,
            false,
        );
        assert!(expired.is_clock_skew());
        assert_eq!(expired.retry_advice(), RetryAdvice::CorrectClock);
        let future = parse(
            &[],
            r#"{"__type":"InvalidSignatureException","message":"Signature not yet current: 20190101T000000Z is still later than 20181231T235500Z (20181231T235000Z + 5 min.)"}"#,
            false,
        );
        assert!(future.is_clock_skew());
        let mismatch = parse(
            &[],
            r#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match the signature you provided."}"#,
            false,
        );
        assert_eq!(mismatch.kind, ErrorKind::InvalidSignature);
        assert_eq!(mismatch.retry_advice(), RetryAdvice::DoNotRetry);
        assert!(mismatch.to_string().contains("wrong secret access key"));
    }

    #[test]
    fn credential_errors_ask_for_fresh_credentials() {
        for body in [
            r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid"}"#,
            r#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#,
        ] {
            let e = parse(&[], body, true);
            assert_eq!(e.retry_advice(), RetryAdvice::RefreshCredentials, "{body}");
        }
        let e = parse(&[], r#"{"__type":"UnrecognizedClientException"}"#, false);
        assert!(e.to_string().contains("instance identity"));
    }

    #[test]
    fn moto_xml_auth_errors_are_understood() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse>\n  <Errors>\n    \
                    <Error>\n      <Code>SignatureDoesNotMatch</Code>\n      <Message>The request \
                    signature we calculated does not match the signature you provided. Check your \
                    AWS Secret Access Key &amp; signing method.</Message>\n    </Error>\n  \
                    </Errors>\n  <RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId>\n\
                    </ErrorResponse>";
        let e = parse_error(Operation::GenerateRandom, 403, &[], body.as_bytes(), false);
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert_eq!(e.kind, ErrorKind::InvalidSignature);
        assert!(
            e.message
                .as_deref()
                .unwrap()
                .ends_with("Key & signing method.")
        );
        assert_eq!(
            e.request_id.as_deref(),
            Some("7a62c49f-347e-4fc4-9331-6e8eEXAMPLE")
        );
        let e = parse_error(
            Operation::Decrypt,
            403,
            &[],
            b"<ErrorResponse><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>",
            false,
        );
        assert_eq!(e.kind, ErrorKind::UnrecognizedClient);
    }

    #[test]
    fn bodies_without_a_code_fall_back_to_the_status() {
        let e = parse_error(Operation::Decrypt, 503, &[], b"<html>oops</html>", false);
        assert_eq!((e.code.as_str(), e.kind), ("", ErrorKind::Internal));
        assert!(e.is_retryable());
        let e = parse_error(Operation::Decrypt, 429, &[], b"", false);
        assert_eq!(e.kind, ErrorKind::Throttling);
        let e = parse_error(Operation::Decrypt, 400, &[], b"not json", false);
        assert_eq!(e.kind, ErrorKind::Other);
        assert!(e.to_string().contains("an error without a code"));
    }

    #[test]
    fn hostile_messages_are_defused() {
        let long = "x".repeat(5000);
        let body = alloc::format!(
            r#"{{"__type":"Bad\u001b[31mCode","message":"line1\nline2\u001b[2J{long}"}}"#
        );
        let e = parse(&[("x-amzn-RequestId", "id\r\nInjected: 1")], &body, false);
        assert_eq!(e.code, "Bad31mCode");
        let message = e.message.unwrap();
        assert!(!message.chars().any(char::is_control));
        assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS + 3);
        assert!(!e.request_id.unwrap().contains('\n'));
    }

    #[test]
    fn error_body_round_trips() {
        let body = error_body("NotFoundException", "Key 'x' does not exist");
        let e = parse_error(Operation::Decrypt, 400, &[], &body, false);
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message.as_deref(), Some("Key 'x' does not exist"));
    }
}
