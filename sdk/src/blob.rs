//! Binary members of JSON documents as standard, padded base64 (RFC 4648 §4), for serde's
//! `#[serde(with = "...")]`: KMS's `Blob` members, the template's API frames.
//!
//! - [`bytes`] — `Vec<u8>`;
//! - [`option`] — `Option<Vec<u8>>` (absent or `null` is `None`);
//! - [`secret`] — [`SecretBytes`];
//! - [`secret_option`] — `Option<SecretBytes>`.
//!
//! Decoding errors never quote the input (it may be a secret), and the base64 text of a secret
//! is zeroized once encoded or decoded.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Frame {
//!     #[serde(with = "ccc_sdk::blob::bytes")]
//!     data: Vec<u8>,
//! }
//! let frame: Frame = serde_json::from_str(r#"{"data":"aGk="}"#).unwrap();
//! assert_eq!(frame.data, b"hi");
//! ```

use crate::secret::SecretBytes;
use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use core::fmt;
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use zeroize::Zeroize as _;

/// The message of every decoding failure (the input is never quoted).
const NOT_BASE64: &str = "a binary member is not standard (padded) base64 (RFC 4648)";

struct Base64Visitor;

impl Visitor<'_> for Base64Visitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a standard base64 string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
        STANDARD.decode(text).map_err(|_| E::custom(NOT_BASE64))
    }

    fn visit_string<E: de::Error>(self, mut text: String) -> Result<Vec<u8>, E> {
        let decoded = self.visit_str(&text);
        text.zeroize();
        decoded
    }
}

struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<Vec<u8>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null or a standard base64 string")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Base64Visitor).map(Some)
    }
}

/// Serializes `bytes` as base64 text, zeroizing the text afterwards.
fn encode_str<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = STANDARD.encode(bytes);
    let result = serializer.serialize_str(&text);
    text.zeroize();
    result
}

/// `Vec<u8>` as base64.
pub mod bytes {
    use super::{Base64Visitor, Deserializer, Serializer, Vec, encode_str};

    /// Serializes `bytes` as standard base64.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        encode_str(bytes, s)
    }

    /// Deserializes standard base64 into bytes.
    ///
    /// # Errors
    /// Not a string, or not standard padded base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(Base64Visitor)
    }
}

/// `Option<Vec<u8>>` as base64 or `null` (pair it with `#[serde(default)]` to accept an
/// absent member, and `skip_serializing_if = "Option::is_none"` to omit one).
pub mod option {
    use super::{Deserializer, OptionVisitor, Serializer, Vec, encode_str};

    /// Serializes `Some(bytes)` as standard base64 and `None` as `null`.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => encode_str(bytes, s),
            None => s.serialize_none(),
        }
    }

    /// Deserializes `null` as `None` and standard base64 as bytes.
    ///
    /// # Errors
    /// Neither `null` nor a string, or not standard padded base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }
}

/// [`SecretBytes`] as base64.
pub mod secret {
    use super::{Base64Visitor, Deserializer, SecretBytes, Serializer, encode_str};

    /// Serializes the secret as standard base64 (the text is zeroized afterwards).
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(bytes: &SecretBytes, s: S) -> Result<S::Ok, S::Error> {
        encode_str(bytes.expose(), s)
    }

    /// Deserializes standard base64 into a secret.
    ///
    /// # Errors
    /// Not a string, or not standard padded base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretBytes, D::Error> {
        d.deserialize_str(Base64Visitor).map(SecretBytes::new)
    }
}

/// `Option<SecretBytes>` as base64 or `null`.
pub mod secret_option {
    use super::{Deserializer, OptionVisitor, SecretBytes, Serializer, encode_str};

    /// Serializes `Some(secret)` as standard base64 and `None` as `null`.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(bytes: &Option<SecretBytes>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => encode_str(bytes.expose(), s),
            None => s.serialize_none(),
        }
    }

    /// Deserializes `null` as `None` and standard base64 as a secret.
    ///
    /// # Errors
    /// Neither `null` nor a string, or not standard padded base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretBytes>, D::Error> {
        Ok(d.deserialize_option(OptionVisitor)?.map(SecretBytes::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Members {
        #[serde(with = "bytes")]
        plain: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "option")]
        maybe: Option<Vec<u8>>,
        #[serde(with = "secret")]
        key: SecretBytes,
        #[serde(default, with = "secret_option")]
        maybe_key: Option<SecretBytes>,
    }

    #[test]
    fn members_round_trip_as_standard_padded_base64() {
        let members = Members {
            plain: b"\xfb\xff".to_vec(),
            maybe: None,
            key: SecretBytes::new(b"k".to_vec()),
            maybe_key: Some(SecretBytes::new(b"kk".to_vec())),
        };
        let json = serde_json::to_string(&members).unwrap();
        // The standard alphabet (+ and /) with padding, not the URL-safe one.
        assert_eq!(json, r#"{"plain":"+/8=","key":"aw==","maybe_key":"a2s="}"#);
        assert_eq!(serde_json::from_str::<Members>(&json).unwrap(), members);
        let with_null: Members =
            serde_json::from_str(r#"{"plain":"","maybe":null,"key":"","maybe_key":null}"#).unwrap();
        assert_eq!((with_null.maybe, with_null.maybe_key), (None, None));
    }

    #[test]
    fn bad_base64_is_refused_without_quoting_it() {
        for bad in [
            r#"{"plain":"c2VjcmV0","key":"c2VjcmV0"}"#.replace("c2VjcmV0\",\"key", "-_8\",\"key"),
            r#"{"plain":"","key":"c2VjcmV0c2VjcmV0c"}"#.to_string(),
        ] {
            let error = serde_json::from_str::<Members>(&bad)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(NOT_BASE64), "{error}");
            assert!(
                !error.contains("c2VjcmV0") && !error.contains("-_8"),
                "{error}"
            );
        }
        let error = serde_json::from_str::<Members>(r#"{"plain":7,"key":""}"#).unwrap_err();
        assert!(
            error.to_string().contains("a standard base64 string"),
            "{error}"
        );
    }
}
