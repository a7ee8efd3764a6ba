//! [`KeyArn`]: the one form in which an enclave may name the KMS key it trusts.
//!
//! KMS accepts four ways to name a key: key id, key ARN, alias name and alias ARN (KMS API
//! reference, `KeyId`). Only the key ARN names one key independently of who asks: a bare key id
//! or an alias name resolves in the account whose credentials sign the request, and an alias
//! (even as an ARN) can be re-pointed at another key at any time. In an enclave the parent
//! supplies the credentials, so a parent holding its own account with an alias of the same name
//! would receive every `GenerateDataKey`: data keys it can decrypt without any attestation.
//!
//! Format (AWS General Reference, "Amazon Resource Names", and the KMS developer guide's
//! "Key identifiers"): `arn:<partition>:kms:<region>:<account>:key/<key id>`, with the key id a
//! lowercase UUID (`1234abcd-12ab-34cd-56ef-1234567890ab`) or, for a multi-Region key, `mrk-`
//! and 32 lowercase hex digits.

use alloc::string::{String, ToString};
use core::fmt;
use core::str::FromStr;

/// Longest ARN accepted: KMS `KeyId` members are at most 2048 characters (KMS API reference).
pub const MAX_KEY_ARN_LEN: usize = 2048;

/// A KMS key ARN, validated: partition, region, 12-digit account, `key/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyArn {
    text: String,
}

/// Why a text is not a key ARN; each `Display` says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyArnError {
    /// An alias name (`alias/...`) or alias ARN (`arn:...:alias/...`).
    Alias(String),
    /// A bare key id (UUID or `mrk-...`) without partition, region and account.
    BareKeyId(String),
    /// Something else that is not `arn:<partition>:kms:<region>:<account>:key/<id>`; `part`
    /// names the component that is wrong.
    Malformed {
        /// What was given (cut to 200 characters).
        given: String,
        /// Which component is wrong and what it must be.
        part: &'static str,
    },
}

/// The shape every message ends with.
const WRITE: &str = "write the key's full ARN, arn:aws:kms:<region>:<12-digit account>:key/<key \
                     id> (`aws kms describe-key --key-id <alias or id> --query KeyMetadata.Arn` \
                     prints it)";

impl fmt::Display for KeyArnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alias(given) => write!(
                f,
                "`{given}` is an alias: an alias resolves in the account whose credentials sign \
                 the request, and the parent supplies those, so it could point the enclave at a \
                 key of its own; {WRITE}"
            ),
            Self::BareKeyId(given) => write!(
                f,
                "`{given}` is a bare key id: it resolves in the account whose credentials sign \
                 the request, and the parent supplies those; {WRITE}"
            ),
            Self::Malformed { given, part } => {
                write!(f, "`{given}` is not a KMS key ARN ({part}); {WRITE}")
            }
        }
    }
}

impl core::error::Error for KeyArnError {}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A lowercase UUID, 8-4-4-4-12.
fn is_uuid(id: &str) -> bool {
    let mut parts = id.split('-');
    [8usize, 4, 4, 4, 12].iter().all(|&len| {
        parts
            .next()
            .is_some_and(|p| p.len() == len && is_lower_hex(p))
    }) && parts.next().is_none()
}

/// A key id: a lowercase UUID, or `mrk-` and 32 lowercase hex digits.
fn is_key_id(id: &str) -> bool {
    match id.strip_prefix("mrk-") {
        Some(hex) => hex.len() == 32 && is_lower_hex(hex),
        None => is_uuid(id),
    }
}

/// `aws`, or `aws-` and lowercase letters and hyphens (`aws-cn`, `aws-us-gov`, `aws-iso-b`).
fn is_partition(partition: &str) -> bool {
    partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && !rest.ends_with('-')
                && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        })
}

/// A region name: lowercase words joined by hyphens, ending in a number (`us-east-1`,
/// `us-gov-west-1`, `eu-isoe-west-1`).
fn is_region(region: &str) -> bool {
    let parts: alloc::vec::Vec<&str> = region.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

impl KeyArn {
    /// Parses and validates a key ARN.
    ///
    /// # Errors
    /// [`KeyArnError::Alias`] for `alias/...` and alias ARNs, [`KeyArnError::BareKeyId`] for a
    /// key id alone, [`KeyArnError::Malformed`] naming the wrong component otherwise.
    pub fn parse(text: &str) -> Result<Self, KeyArnError> {
        let given = || text.chars().take(200).collect::<String>();
        let malformed = |part| KeyArnError::Malformed {
            given: given(),
            part,
        };
        if text.len() > MAX_KEY_ARN_LEN {
            return Err(malformed("longer than KMS's 2048 characters"));
        }
        if text.starts_with("alias/") {
            return Err(KeyArnError::Alias(given()));
        }
        if is_key_id(text) || is_key_id(&text.to_ascii_lowercase()) {
            return Err(KeyArnError::BareKeyId(given()));
        }
        let mut parts = text.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed(
                "it does not have the six parts arn:partition:kms:region:account:key/id",
            ));
        };
        if rest.starts_with("alias/") {
            return Err(KeyArnError::Alias(given()));
        }
        if !is_partition(partition) {
            return Err(malformed(
                "the partition must be aws, aws-cn, aws-us-gov, ...",
            ));
        }
        if service != "kms" {
            return Err(malformed("the service must be kms"));
        }
        if !is_region(region) {
            return Err(malformed(
                "the region must be a region name such as eu-west-1",
            ));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("the account must be 12 digits"));
        }
        let Some(id) = rest.strip_prefix("key/") else {
            return Err(malformed("the resource must be key/<key id>"));
        };
        if !is_key_id(id) {
            return Err(malformed(
                "the key id must be a lowercase UUID, or mrk- and 32 lowercase hex digits for a \
                 multi-Region key",
            ));
        }
        Ok(Self {
            text: text.to_string(),
        })
    }

    /// The ARN as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn part(&self, index: usize) -> &str {
        self.text.split(':').nth(index).unwrap_or_default()
    }

    /// The partition (`aws`, `aws-cn`, ...).
    #[must_use]
    pub fn partition(&self) -> &str {
        self.part(1)
    }

    /// The region (`eu-west-1`).
    #[must_use]
    pub fn region(&self) -> &str {
        self.part(3)
    }

    /// The account id (12 digits).
    #[must_use]
    pub fn account(&self) -> &str {
        self.part(4)
    }

    /// The key id (UUID or `mrk-...`).
    #[must_use]
    pub fn key_id(&self) -> &str {
        self.part(5).strip_prefix("key/").unwrap_or_default()
    }

    /// A multi-Region key (`mrk-` id).
    #[must_use]
    pub fn is_multi_region(&self) -> bool {
        self.key_id().starts_with("mrk-")
    }
}

impl FromStr for KeyArn {
    type Err = KeyArnError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn key_arns_parse_into_their_parts() {
        let arn = KeyArn::parse(ARN).unwrap();
        assert_eq!(arn.as_str(), ARN);
        assert_eq!(arn.partition(), "aws");
        assert_eq!(arn.region(), "us-east-1");
        assert_eq!(arn.account(), "111122223333");
        assert_eq!(arn.key_id(), "1234abcd-12ab-34cd-56ef-1234567890ab");
        assert!(!arn.is_multi_region());
        let mrk = KeyArn::parse(
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        )
        .unwrap();
        assert!(mrk.is_multi_region());
        assert_eq!(mrk.partition(), "aws-us-gov");
        assert!(
            KeyArn::parse(
                "arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            )
            .is_ok()
        );
        assert_eq!(format!("{arn}"), ARN);
        assert_eq!(ARN.parse::<KeyArn>().unwrap(), arn);
    }

    #[test]
    fn aliases_and_bare_ids_are_refused_with_what_to_write() {
        for alias in [
            "alias/ccc-enclave",
            "arn:aws:kms:us-east-1:111122223333:alias/ccc-enclave",
        ] {
            let error = KeyArn::parse(alias).unwrap_err();
            assert!(matches!(error, KeyArnError::Alias(_)), "{alias}");
            let text = error.to_string();
            assert!(text.contains("parent supplies"), "{text}");
            assert!(
                text.contains("arn:aws:kms:<region>:<12-digit account>:key/"),
                "{text}"
            );
            assert!(text.contains("describe-key"), "{text}");
        }
        for id in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "1234ABCD-12AB-34CD-56EF-1234567890AB",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            assert!(
                matches!(KeyArn::parse(id), Err(KeyArnError::BareKeyId(_))),
                "{id}"
            );
        }
    }

    #[test]
    fn each_wrong_part_is_named() {
        for (text, needle) in [
            ("", "six parts"),
            ("arn:aws:kms:us-east-1:111122223333", "six parts"),
            (
                "arn:gcp:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "partition",
            ),
            (
                "arn:aws-:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "partition",
            ),
            (
                "arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "service",
            ),
            (
                "arn:aws:kms::111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "region",
            ),
            (
                "arn:aws:kms:US-EAST-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "region",
            ),
            (
                "arn:aws:kms:useast1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "region",
            ),
            (
                "arn:aws:kms:us-east-1:11112222333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "12 digits",
            ),
            (
                "arn:aws:kms:us-east-1:ACCOUNT00000:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "12 digits",
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:1234abcd-12ab-34cd-56ef-1234567890ab",
                "key/<key id>",
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:key/1234ABCD-12ab-34cd-56ef-1234567890ab",
                "lowercase UUID",
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890a",
                "lowercase UUID",
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:key/mrk-1234",
                "lowercase UUID",
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab:x",
                "lowercase UUID",
            ),
        ] {
            let error = KeyArn::parse(text).unwrap_err();
            assert!(
                matches!(&error, KeyArnError::Malformed { part, .. } if part.contains(needle)),
                "{text}: {error}"
            );
        }
        let long = format!(
            "arn:aws:kms:us-east-1:111122223333:key/{}",
            "a".repeat(3000)
        );
        assert!(KeyArn::parse(&long).unwrap_err().to_string().len() < 700);
    }
}
