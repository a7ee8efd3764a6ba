//! The KMS codec (no I/O): request and response types for the operations an enclave uses, the
//! AWS JSON 1.1 envelope (`POST /`, `X-Amz-Target: TrentService.<Op>`, `Content-Type:
//! application/x-amz-json-1.1`, base64 blobs), error responses mapped to a typed error that
//! names the likely fix, and [`open_recipient_response`], which turns an attested response's
//! `CiphertextForRecipient` into the plaintext.
//!
//! With `std` and `aws-lc`, [`client::KmsClient`] does all of this over the network (signing,
//! TLS, retries) and [`attested::AttestedKmsClient`] adds the attestation and the opening.
//!
//! A client does: [`encode_request`] → sign the body with [`crate::sigv4`] (service
//! [`SIGNING_NAME`], headers from [`request_headers`] plus `Host`) → send → [`decode_response`]
//! → [`open_recipient_response`] when the request carried a [`Recipient`].

mod arn;
#[cfg(all(feature = "std", feature = "aws-lc", target_os = "linux"))]
pub mod attested;
#[cfg(all(feature = "std", feature = "aws-lc", target_os = "linux"))]
pub mod client;
mod error;
mod types;

pub use arn::{KeyArn, KeyArnError, MAX_KEY_ARN_LEN};
pub use error::{
    ErrorKind, MAX_ERROR_CODE_CHARS, MAX_ERROR_MESSAGE_CHARS, RetryAdvice, ServiceError, classify,
    error_body, parse_error, sanitize_code,
};
pub use types::{
    DataKeyPairSpec, DataKeySpec, DecryptRequest, DecryptResponse, DeriveSharedSecretRequest,
    DeriveSharedSecretResponse, EncryptRequest, EncryptResponse, EncryptionAlgorithm,
    GenerateDataKeyPairRequest, GenerateDataKeyPairResponse, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateRandomRequest, GenerateRandomResponse, GetKeyPolicyRequest,
    GetKeyPolicyResponse, GetPublicKeyRequest, GetPublicKeyResponse, KeyAgreementAlgorithm,
    KeyEncryptionAlgorithm, KeyOrigin, KeySpec, KeyUsage, MessageType, PutKeyPolicyRequest,
    PutKeyPolicyResponse, Recipient, SignRequest, SignResponse, SigningAlgorithm,
};

use crate::cms::{self, CmsError};
use crate::crypto::{Crypto, RsaDecryptionKey};
use crate::secret::SecretBytes;
use alloc::format;
use alloc::string::String;
use core::fmt;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `Content-Type` of every KMS request (AWS JSON 1.1; botocore KMS model `jsonVersion`).
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The `X-Amz-Target` prefix (botocore KMS model `targetPrefix`).
pub const TARGET_PREFIX: &str = "TrentService";

/// The SigV4 service name (botocore KMS model `endpointPrefix` / signing name).
pub const SIGNING_NAME: &str = "kms";

/// Largest response body accepted. The largest response here, GenerateDataKeyPair for
/// RSA_4096 without Recipient, is under 12 KiB of JSON (4096-byte private key plaintext,
/// 6144-byte ciphertext and 8192-byte public key bounds, base64); 64 KiB leaves margin and
/// bounds what a hostile endpoint can make us parse.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// The KMS operations this SDK knows: the six an enclave sends and the key-policy pair the
/// policy commands use (with request and response types
/// in this module) and the key-management operations the KMS emulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `Decrypt`
    Decrypt,
    /// `Encrypt`
    Encrypt,
    /// `GenerateDataKey`
    GenerateDataKey,
    /// `GenerateDataKeyPair`
    GenerateDataKeyPair,
    /// `GenerateRandom`
    GenerateRandom,
    /// `DeriveSharedSecret`
    DeriveSharedSecret,
    /// `GenerateDataKeyWithoutPlaintext`
    GenerateDataKeyWithoutPlaintext,
    /// `GetPublicKey`
    GetPublicKey,
    /// `Sign`
    Sign,
    /// `CreateKey`
    CreateKey,
    /// `DescribeKey`
    DescribeKey,
    /// `ListKeys`
    ListKeys,
    /// `EnableKey`
    EnableKey,
    /// `DisableKey`
    DisableKey,
    /// `PutKeyPolicy`
    PutKeyPolicy,
    /// `GetKeyPolicy`
    GetKeyPolicy,
    /// `CreateAlias`
    CreateAlias,
    /// `DeleteAlias`
    DeleteAlias,
    /// `ListAliases`
    ListAliases,
}

/// Defines each operation's name and `X-Amz-Target` from one list, so the two never disagree.
macro_rules! operation_names {
    ($($variant:ident),+ $(,)?) => {
        impl Operation {
            /// Every operation.
            pub const ALL: [Self; 19] = [$(Self::$variant),+];

            /// The operation name, e.g. `Decrypt` (also the IAM action `kms:Decrypt`).
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant)),+
                }
            }

            /// The `X-Amz-Target` value, e.g. `TrentService.Decrypt`.
            #[must_use]
            pub const fn target(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!("TrentService.", stringify!($variant))),+
                }
            }
        }
    };
}

operation_names!(
    Decrypt,
    Encrypt,
    GenerateDataKey,
    GenerateDataKeyPair,
    GenerateRandom,
    DeriveSharedSecret,
    GenerateDataKeyWithoutPlaintext,
    GetPublicKey,
    Sign,
    CreateKey,
    DescribeKey,
    ListKeys,
    EnableKey,
    DisableKey,
    PutKeyPolicy,
    GetKeyPolicy,
    CreateAlias,
    DeleteAlias,
    ListAliases,
);

impl Operation {
    /// The operations with request and response types in this module: the six an enclave
    /// sends, `GetKeyPolicy`/`PutKeyPolicy` for the policy commands, and `Sign`/`GetPublicKey`
    /// for a release signed with a KMS key (`--sign-kms-key`).
    pub const TYPED: [Self; 10] = [
        Self::Decrypt,
        Self::Encrypt,
        Self::GenerateDataKey,
        Self::GenerateDataKeyPair,
        Self::GenerateRandom,
        Self::DeriveSharedSecret,
        Self::GetKeyPolicy,
        Self::PutKeyPolicy,
        Self::Sign,
        Self::GetPublicKey,
    ];

    /// The operation an `X-Amz-Target` names (for the emulator), if it is one of these.
    #[must_use]
    pub fn from_target(target: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.target() == target)
    }

    /// Whether the operation accepts a `Recipient` (KMS developer guide: Decrypt,
    /// DeriveSharedSecret, GenerateDataKey, GenerateDataKeyPair, GenerateRandom).
    #[must_use]
    pub const fn accepts_recipient(self) -> bool {
        matches!(
            self,
            Self::Decrypt
                | Self::GenerateDataKey
                | Self::GenerateDataKeyPair
                | Self::GenerateRandom
                | Self::DeriveSharedSecret
        )
    }

    /// The IAM action, e.g. `kms:Decrypt`.
    #[must_use]
    pub fn action(self) -> String {
        format!("kms:{}", self.name())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request type: which operation it is, what it answers, and its `Recipient`.
pub trait KmsRequest: Serialize + DeserializeOwned {
    /// The operation.
    const OPERATION: Operation;
    /// The response type.
    type Response: Serialize + DeserializeOwned;
    /// Whether a success may come without members: KMS answers `PutKeyPolicy` with an empty
    /// body (moto with `null`); either is then read as `{}`.
    const EMPTY_RESPONSE: bool = false;
    /// The attestation recipient, if the request carries one.
    fn recipient(&self) -> Option<&Recipient>;
}

/// A response that can carry `CiphertextForRecipient`.
pub trait RecipientResponse {
    /// The operation that returns it.
    const OPERATION: Operation;
    /// The CMS envelope, if any.
    fn ciphertext_for_recipient(&self) -> Option<&[u8]>;
    /// The member that carries the secret when there is no `Recipient` (`Plaintext`,
    /// `PrivateKeyPlaintext` or `SharedSecret`).
    fn plaintext(&self) -> Option<&SecretBytes>;
}

macro_rules! recipient_response {
    ($response:ty, $operation:ident, $plaintext:ident) => {
        impl RecipientResponse for $response {
            const OPERATION: Operation = Operation::$operation;
            fn ciphertext_for_recipient(&self) -> Option<&[u8]> {
                self.ciphertext_for_recipient.as_deref()
            }
            fn plaintext(&self) -> Option<&SecretBytes> {
                self.$plaintext.as_ref()
            }
        }
    };
}

recipient_response!(DecryptResponse, Decrypt, plaintext);
recipient_response!(GenerateDataKeyResponse, GenerateDataKey, plaintext);
recipient_response!(GenerateRandomResponse, GenerateRandom, plaintext);
recipient_response!(
    GenerateDataKeyPairResponse,
    GenerateDataKeyPair,
    private_key_plaintext
);
recipient_response!(
    DeriveSharedSecretResponse,
    DeriveSharedSecret,
    shared_secret
);

/// Why a KMS call failed, at the codec boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KmsError {
    /// KMS (or a front end such as moto) answered with an error.
    Service(ServiceError),
    /// The request could not be encoded as JSON.
    Encode(String),
    /// A success response that is not what the operation returns.
    MalformedResponse {
        /// The operation.
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// What is wrong.
        detail: String,
    },
    /// The request carried a `Recipient` but the response has no `CiphertextForRecipient`.
    MissingCiphertextForRecipient {
        /// The operation.
        operation: Operation,
    },
    /// The request carried a `Recipient` but the response holds the secret in plaintext, which
    /// KMS never does: the endpoint ignored the attestation (moto does) or is not KMS.
    PlaintextDespiteRecipient {
        /// The operation.
        operation: Operation,
    },
    /// `CiphertextForRecipient` did not parse or decrypt.
    Cms(CmsError),
    /// The request names a key the client was not configured to trust (nothing the parent
    /// sends may widen what the enclave trusts).
    UntrustedKey {
        /// The operation.
        operation: Operation,
        /// The key the request named.
        requested: String,
        /// The keys the client trusts (full ARNs).
        trusted: alloc::vec::Vec<String>,
    },
    /// A trusted key in another region than the client's (KMS keys are regional).
    TrustedKeyRegion {
        /// The key ARN.
        key: String,
        /// The client's region.
        region: String,
    },
    /// A key operation on a client configured without a trusted key.
    NoTrustedKey {
        /// The operation.
        operation: Operation,
    },
    /// The response's `KeyId` is not the key the request named: the answer came from another
    /// key (or from something that is not KMS), so its secret is not used.
    ResponseKeyMismatch {
        /// The operation.
        operation: Operation,
        /// The key ARN the request named.
        expected: String,
        /// The response's `KeyId`, if it had one.
        found: Option<String>,
    },
}

impl KmsError {
    /// What a client should do next ([`RetryAdvice::DoNotRetry`] for everything but service
    /// errors that say otherwise).
    #[must_use]
    pub fn retry_advice(&self) -> RetryAdvice {
        match self {
            Self::Service(e) => e.retry_advice(),
            _ => RetryAdvice::DoNotRetry,
        }
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(e) => e.fmt(f),
            Self::Encode(detail) => write!(f, "cannot encode the KMS request as JSON: {detail}"),
            Self::MalformedResponse {
                operation,
                status,
                detail,
            } => write!(
                f,
                "KMS {operation} returned HTTP {status} with a body that is not a {operation} \
                 response: {detail}; is the endpoint really KMS?"
            ),
            Self::MissingCiphertextForRecipient { operation } => write!(
                f,
                "KMS {operation} was sent with a Recipient but the response has no \
                 CiphertextForRecipient; the endpoint does not support attestation (moto does \
                 not) or is not KMS"
            ),
            Self::PlaintextDespiteRecipient { operation } => write!(
                f,
                "KMS {operation} was sent with a Recipient but the response carries the secret \
                 in plaintext, which KMS never does; refusing it (the endpoint ignored the \
                 attestation: moto does, a real KMS does not)"
            ),
            Self::Cms(e) => write!(f, "CiphertextForRecipient: {e}"),
            Self::UntrustedKey {
                operation,
                requested,
                trusted,
            } => write!(
                f,
                "KMS {operation} for key `{requested}` refused before sending: this client \
                 trusts only {}; the trusted key is part of the measured image (app.rs or /env), \
                 never chosen by a request",
                if trusted.is_empty() {
                    alloc::string::String::from("no key")
                } else {
                    trusted.join(", ")
                }
            ),
            Self::TrustedKeyRegion { key, region } => write!(
                f,
                "the trusted key {key} is not in the client's region {region}: KMS keys are \
                 regional; use the region of the key, or a key (a multi-Region replica) in \
                 {region}"
            ),
            Self::NoTrustedKey { operation } => write!(
                f,
                "KMS {operation} needs a key, and this client was built without a trusted key \
                 ARN: configure one (for the enclave template, CCC_APP_KEY_ARN in the image's \
                 /env or KEY_ARN in app.rs)"
            ),
            Self::ResponseKeyMismatch {
                operation,
                expected,
                found,
            } => write!(
                f,
                "KMS {operation} answered for key {} instead of the trusted key {expected}; the \
                 answer is refused and its secret not opened (the ciphertext was made under \
                 another key, or the endpoint is not the KMS it claims to be)",
                found
                    .as_deref()
                    .unwrap_or("(none: the response has no KeyId)")
            ),
        }
    }
}

impl core::error::Error for KmsError {}

impl From<CmsError> for KmsError {
    fn from(e: CmsError) -> Self {
        Self::Cms(e)
    }
}

/// `kms.<region>.amazonaws.com`, or `.amazonaws.com.cn` in the China partition; the `Host`
/// header and TLS server name (the TCP connection may go elsewhere, e.g. a vsock proxy).
#[must_use]
pub fn endpoint_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("kms.{region}.amazonaws.com.cn")
    } else {
        format!("kms.{region}.amazonaws.com")
    }
}

/// The protocol headers of a request, `Content-Type` and `X-Amz-Target` (add `Host` and, if
/// the transport wants it, `Content-Length`, then sign).
#[must_use]
pub const fn request_headers(operation: Operation) -> [(&'static str, &'static str); 2] {
    [
        ("Content-Type", CONTENT_TYPE),
        ("X-Amz-Target", operation.target()),
    ]
}

/// The JSON body of a request. It is a [`SecretBytes`] because an `Encrypt` body carries the
/// plaintext.
///
/// # Errors
/// [`KmsError::Encode`] if serde_json fails (it does not for these types).
pub fn encode_request<R: KmsRequest>(request: &R) -> Result<SecretBytes, KmsError> {
    serde_json::to_vec(request)
        .map(SecretBytes::new)
        .map_err(|e| KmsError::Encode(format!("{e}")))
}

/// Decodes a response to `request`: a 2xx body as `R::Response`, anything else as a
/// [`ServiceError`]. `headers` are the response headers (names in any case). The body of a
/// success response may hold secrets in base64; zeroize it after this call.
///
/// # Errors
/// [`KmsError::Service`] for error responses, [`KmsError::MalformedResponse`] for a 2xx body
/// that does not parse or is larger than [`MAX_RESPONSE_LEN`].
pub fn decode_response<R: KmsRequest>(
    request: &R,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<R::Response, KmsError> {
    let operation = R::OPERATION;
    if !(200..300).contains(&status) {
        return Err(KmsError::Service(parse_error(
            operation,
            status,
            headers,
            body.get(..MAX_RESPONSE_LEN).unwrap_or(body),
            request.recipient().is_some(),
        )));
    }
    if body.len() > MAX_RESPONSE_LEN {
        return Err(KmsError::MalformedResponse {
            operation,
            status,
            detail: format!("{} bytes, more than MAX_RESPONSE_LEN", body.len()),
        });
    }
    // KMS sends no body at all; moto sends `null`.
    let body =
        if R::EMPTY_RESPONSE && (body.trim_ascii().is_empty() || body.trim_ascii() == b"null") {
            b"{}".as_slice()
        } else {
            body
        };
    serde_json::from_slice(body).map_err(|e| KmsError::MalformedResponse {
        operation,
        status,
        detail: format!("{e}"),
    })
}

/// Checks that a response's `KeyId` is exactly the key ARN the request named.
///
/// # Errors
/// [`KmsError::ResponseKeyMismatch`] when it differs or is absent.
pub fn check_response_key(
    operation: Operation,
    expected: &KeyArn,
    found: Option<&str>,
) -> Result<(), KmsError> {
    if found == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(KmsError::ResponseKeyMismatch {
            operation,
            expected: expected.as_str().into(),
            found: found.map(String::from),
        })
    }
}

/// Opens an attested response: checks that the secret came only as `CiphertextForRecipient`
/// and decrypts that CMS envelope with the enclave's RSA key.
///
/// Fails closed: a response with the secret in plaintext (an endpoint that ignored the
/// `Recipient`) is refused, never used.
///
/// # Errors
/// [`KmsError::PlaintextDespiteRecipient`], [`KmsError::MissingCiphertextForRecipient`] or
/// [`KmsError::Cms`].
pub fn open_recipient_response<R: RecipientResponse>(
    response: &R,
    crypto: &dyn Crypto,
    key: &dyn RsaDecryptionKey,
) -> Result<SecretBytes, KmsError> {
    let operation = R::OPERATION;
    if response.plaintext().is_some_and(|p| !p.is_empty()) {
        return Err(KmsError::PlaintextDespiteRecipient { operation });
    }
    let envelope = response
        .ciphertext_for_recipient()
        .filter(|c| !c.is_empty())
        .ok_or(KmsError::MissingCiphertextForRecipient { operation })?;
    Ok(cms::decrypt(envelope, crypto, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn targets_round_trip() {
        for op in Operation::TYPED {
            assert!(Operation::ALL.contains(&op), "{op}");
        }
        for op in Operation::ALL {
            assert_eq!(Operation::from_target(op.target()), Some(op));
            assert_eq!(op.target(), format!("{TARGET_PREFIX}.{}", op.name()));
        }
        assert_eq!(
            Operation::from_target("TrentService.ListKeys"),
            Some(Operation::ListKeys)
        );
        assert_eq!(
            Operation::from_target("TrentService.Sign"),
            Some(Operation::Sign)
        );
        assert_eq!(Operation::from_target("TrentService.Verify"), None);
        assert_eq!(Operation::from_target("Decrypt"), None);
        assert_eq!(Operation::Decrypt.action(), "kms:Decrypt");
        assert!(Operation::GenerateRandom.accepts_recipient());
        assert!(!Operation::Encrypt.accepts_recipient());
        assert!(!Operation::GenerateDataKeyWithoutPlaintext.accepts_recipient());
        assert_eq!(
            request_headers(Operation::GenerateRandom),
            [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", "TrentService.GenerateRandom")
            ]
        );
        assert_eq!(endpoint_host("eu-west-1"), "kms.eu-west-1.amazonaws.com");
        assert_eq!(
            endpoint_host("cn-north-1"),
            "kms.cn-north-1.amazonaws.com.cn"
        );
    }

    /// KMS answers PutKeyPolicy with HTTP 200 and an empty body; only that operation may.
    #[test]
    fn an_empty_success_body_is_read_only_where_kms_sends_one() {
        let put = PutKeyPolicyRequest {
            key_id: "k".into(),
            policy: "{}".into(),
            ..PutKeyPolicyRequest::default()
        };
        assert_eq!(
            decode_response(&put, 200, &[], b"").unwrap(),
            PutKeyPolicyResponse {}
        );
        assert_eq!(
            decode_response(&put, 200, &[], b"{}").unwrap(),
            PutKeyPolicyResponse {}
        );
        // moto's answer.
        assert_eq!(
            decode_response(&put, 200, &[], b"null").unwrap(),
            PutKeyPolicyResponse {}
        );
        let get = GetKeyPolicyRequest {
            key_id: "k".into(),
            policy_name: None,
        };
        assert!(matches!(
            decode_response(&get, 200, &[], b""),
            Err(KmsError::MalformedResponse { .. })
        ));
        let answer = decode_response(
            &get,
            200,
            &[],
            br#"{"Policy": "{\"Statement\": []}", "PolicyName": "default"}"#,
        )
        .unwrap();
        assert_eq!(answer.policy.as_deref(), Some(r#"{"Statement": []}"#));
        assert!(matches!(
            decode_response(&DecryptRequest::default(), 200, &[], b""),
            Err(KmsError::MalformedResponse { .. })
        ));
        let body = encode_request(&put).unwrap();
        assert_eq!(
            core::str::from_utf8(body.expose()).unwrap(),
            r#"{"KeyId":"k","Policy":"{}"}"#
        );
    }

    #[test]
    fn decrypt_with_recipient_has_the_documented_shape() {
        let request = DecryptRequest {
            ciphertext_blob: vec![1, 2, 3],
            recipient: Some(Recipient::new(b"doc".to_vec())),
            ..DecryptRequest::default()
        };
        let body = encode_request(&request).unwrap();
        assert_eq!(
            core::str::from_utf8(body.expose()).unwrap(),
            r#"{"CiphertextBlob":"AQID","Recipient":{"KeyEncryptionAlgorithm":"RSAES_OAEP_SHA_256","AttestationDocument":"ZG9j"}}"#
        );
    }

    #[test]
    fn responses_decode_with_secrets_redacted_and_unknown_fields_ignored() {
        let request = GenerateDataKeyRequest {
            key_id: "alias/x".into(),
            ..GenerateDataKeyRequest::default()
        };
        let body = br#"{"CiphertextBlob":"AQID","Plaintext":"c2VjcmV0","KeyId":"arn:k","NewField":{"a":1},"KeyMaterialId":null}"#;
        let response = decode_response(&request, 200, &[], body).unwrap();
        assert_eq!(response.plaintext.as_ref().unwrap().expose(), b"secret");
        assert_eq!(response.ciphertext_blob.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(response.key_material_id, None);
        let shown = format!("{response:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
        // Enum values KMS adds later are kept, not rejected.
        let pair: GenerateDataKeyPairResponse =
            serde_json::from_str(r#"{"KeyPairSpec":"ML_DSA_87"}"#).unwrap();
        assert_eq!(
            pair.key_pair_spec,
            Some(DataKeyPairSpec::Unknown("ML_DSA_87".into()))
        );
    }

    #[test]
    fn bad_success_bodies_and_errors_are_typed() {
        let request = GenerateRandomRequest::default();
        for body in [&b"<html>"[..], br#"{"Plaintext":"not base64!"}"#] {
            assert!(matches!(
                decode_response(&request, 200, &[], body),
                Err(KmsError::MalformedResponse { .. })
            ));
        }
        let huge = vec![b' '; MAX_RESPONSE_LEN + 1];
        assert!(matches!(
            decode_response(&request, 200, &[], &huge),
            Err(KmsError::MalformedResponse { .. })
        ));
        let error = decode_response(
            &GenerateRandomRequest {
                recipient: Some(Recipient::new(vec![1])),
                ..GenerateRandomRequest::default()
            },
            400,
            &[("x-amzn-requestid", "req-1")],
            br#"{"__type":"AccessDeniedException","message":"denied"}"#,
        )
        .unwrap_err();
        let service = match &error {
            KmsError::Service(service) => service.clone(),
            other => unreachable!("{other:?}"),
        };
        assert!(service.recipient_in_request);
        assert_eq!(service.request_id.as_deref(), Some("req-1"));
        assert_eq!(error.retry_advice(), RetryAdvice::DoNotRetry);
        assert!(error.to_string().starts_with(
            "KMS GenerateRandom failed with AccessDeniedException (HTTP 400): denied. Likely fix: \
             check the key policy's kms:RecipientAttestation:*"
        ));
    }

    #[cfg(feature = "cms-build")]
    #[test]
    fn recipient_responses_open_only_through_the_envelope() {
        use crate::crypto::{AwsLc, AwsLcRsaKey, RsaDecryptionKey};
        let key = AwsLcRsaKey::generate().unwrap();
        let envelope = cms::build::build(
            key.public_key_spki(),
            b"data key",
            cms::build::ContentLayout::Chunked,
        )
        .unwrap();
        let body = format!(
            r#"{{"KeyId":"arn:k","CiphertextBlob":"AQID","CiphertextForRecipient":"{}"}}"#,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &envelope)
        );
        let request = GenerateDataKeyRequest {
            key_id: "arn:k".into(),
            recipient: Some(Recipient::new(vec![1])),
            ..GenerateDataKeyRequest::default()
        };
        let response = decode_response(&request, 200, &[], body.as_bytes()).unwrap();
        assert_eq!(
            open_recipient_response(&response, &AwsLc, &key)
                .unwrap()
                .expose(),
            b"data key"
        );
        // moto's answer: Plaintext and no envelope.
        let moto: GenerateDataKeyResponse =
            serde_json::from_str(r#"{"Plaintext":"ZGF0YSBrZXk=","CiphertextBlob":"AQID"}"#)
                .unwrap();
        assert_eq!(
            open_recipient_response(&moto, &AwsLc, &key),
            Err(KmsError::PlaintextDespiteRecipient {
                operation: Operation::GenerateDataKey
            })
        );
        assert_eq!(
            open_recipient_response(&GenerateRandomResponse::default(), &AwsLc, &key),
            Err(KmsError::MissingCiphertextForRecipient {
                operation: Operation::GenerateRandom
            })
        );
        let other_key = AwsLcRsaKey::generate().unwrap();
        assert!(matches!(
            open_recipient_response(&response, &AwsLc, &other_key),
            Err(KmsError::Cms(CmsError::RecipientMismatch { .. }))
        ));
    }
}
