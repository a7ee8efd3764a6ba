//! KMS's error answers: a code, a message and an HTTP status, sent as
//! `{"__type": "<code>", "message": "<text>"}` (AWS JSON 1.1; research notes §1.5). KMS answers
//! client errors with 400, its own failures with 500.

/// One error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) status: u16,
}

impl Fault {
    /// A client error (HTTP 400).
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: 400,
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// KMS's wording for a missing required member (`keyId`, camel case as KMS writes it).
    pub(crate) fn member_null(member: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy \
             constraint: Member must not be null"
        ))
    }

    /// KMS's wording for a length constraint.
    pub(crate) fn length(member: &str, value_len: usize, min: usize, max: usize) -> Self {
        let bound = if value_len < min {
            format!("greater than or equal to {min}")
        } else {
            format!("less than or equal to {max}")
        };
        Self::validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: \
             Member must have length {bound}"
        ))
    }

    /// KMS's wording for a numeric range constraint.
    pub(crate) fn range(member: &str, value: i64, min: i64, max: i64) -> Self {
        let bound = if value < min {
            format!("greater than or equal to {min}")
        } else {
            format!("less than or equal to {max}")
        };
        Self::validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy \
             constraint: Member must have value {bound}"
        ))
    }

    /// KMS's wording for an enum constraint.
    pub(crate) fn enumeration(member: &str, value: &str, allowed: &[&str]) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy \
             constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ))
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new("NotFoundException", message)
    }

    pub(crate) fn access_denied(message: impl Into<String>) -> Self {
        Self::new("AccessDeniedException", message)
    }

    pub(crate) fn invalid_ciphertext(message: impl Into<String>) -> Self {
        Self::new("InvalidCiphertextException", message)
    }

    pub(crate) fn invalid_key_usage(message: impl Into<String>) -> Self {
        Self::new("InvalidKeyUsageException", message)
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        Self::new("UnsupportedOperationException", message)
    }

    /// The request body is not the JSON the operation takes.
    pub(crate) fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }

    /// The emulator failed (HTTP 500).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            code: "KMSInternalException",
            message: message.into(),
            status: 500,
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Vec<u8> {
        ccc_sdk::kms::error_body(self.code, &self.message)
    }
}
