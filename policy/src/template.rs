//! The key-policy and IAM-policy templates a CCC release publishes for its image, following
//! AWS's guidance for Nitro Enclaves key policies (Nitro Enclaves user guide, "Cryptographic
//! attestation" and the KMS developer guide's "Condition keys for AWS Nitro Enclaves"): nobody
//! may use the key without this image's attestation, and nobody the parent controls may
//! change that.
//!
//! The key policy, statement by statement:
//! - `KeyAdministration`: the key-administrator role ([`ADMIN_ROLE_PLACEHOLDER`]) may manage
//!   the key and its policy ([`ADMIN_ACTIONS`]), and holds no action that reveals plaintext or
//!   routes around attestation (no `Decrypt`, `ReEncrypt*`, `GenerateDataKey*`,
//!   `DeriveSharedSecret`, `CreateGrant`). Not the account root: `arn:aws:iam::ACCOUNT:root`
//!   hands the decision to IAM, so every role of the account with broad IAM rights — the parent
//!   instance's included — could rewrite the policy. KMS refuses a policy that nobody could
//!   change again; this one keeps the administrator role able to.
//! - `OperatorsEncryptButNeverSeal`: principals of the account (as IAM allows them) may
//!   `Encrypt` secrets for the enclave, unless the encryption context carries the template's
//!   reserved sealing purpose (`ccc:purpose=seal`).
//! - `EnclaveUseOnlyWithThisImage`: the parent instance's role ([`ROLE_PLACEHOLDER`]), which
//!   signs the enclave's requests, may `Decrypt` and `GenerateDataKey` with an attestation
//!   document whose PCR0, PCR1 and PCR2 are this image's (`StringEqualsIgnoreCase`).
//! - `DenySecretsUnless{ImageSha384,PCR1,PCR2}Matches`: an explicit Deny for every principal
//!   of every operation that could release or move a secret of the key
//!   ([`DENIED_WITHOUT_ATTESTATION`]) unless that PCR is this image's. A negated operator holds
//!   when the key is absent (IAM user guide, "Condition operators": "If the policy condition
//!   requires that the key is not matched ... and the right key is not present, the condition is
//!   true"), so a request without attestation is denied too. One statement per PCR: the
//!   conditions of one statement must all hold for it to apply, so three PCRs in one Deny would
//!   deny only a request where all three differ.
//!   A signed image's policies pin PCR8 (the signing certificate) the same way
//!   ([`ImagePins::with_pcr8`]): one more Allow condition and `DenySecretsUnlessPCR8Matches`.
//! - `DenyMintingSealedBlobs`: nobody may `Encrypt` with `ccc:purpose=seal`; otherwise an
//!   operator could pick a data key, wrap it under the enclave's key and build a sealed blob the
//!   enclave would accept as its own.
//! - `DenyPolicyAndGrantChangesToTheEnclaveRole`: the parent's role may never change the policy,
//!   create or revoke grants, or replicate the key ([`POLICY_CHANGE_ACTIONS`]), whatever its IAM
//!   policies say.
//!
//! `kms:GenerateRandom` uses no key, so KMS authorises it by IAM policy only (KMS API
//! reference, GenerateRandom); [`iam_policy`] is the statement to attach to the parent's role.

use crate::keys::{
    DENIED_WITHOUT_ATTESTATION, IMAGE_SHA384, PCR1, PCR2, PCR8, POLICY_CHANGE_ACTIONS,
    SEALING_PURPOSE, purpose_condition_key,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Placeholder for the AWS account id in the templates.
pub const ACCOUNT_PLACEHOLDER: &str = "ACCOUNT";
/// Placeholder for the parent instance's IAM role name (the enclave's principal).
pub const ROLE_PLACEHOLDER: &str = "ROLE";
/// Placeholder for the key-administrator role name.
pub const ADMIN_ROLE_PLACEHOLDER: &str = "KEY_ADMIN_ROLE";

/// Longest IAM role name (IAM API reference, `CreateRole`: `RoleName` is 1 to 64 characters).
pub const MAX_ROLE_NAME: usize = 64;

/// What the key-administrator role may do: manage the key, its aliases, tags, rotation,
/// deletion and policy. Deliberately absent: everything that reveals plaintext or would route
/// around the attestation conditions — `kms:Decrypt`, `kms:GenerateDataKey*`,
/// `kms:ReEncrypt*` (`ReEncryptFrom` decrypts under this key to re-encrypt under one the caller
/// controls), `kms:DeriveSharedSecret`, `kms:CreateGrant` (a grant can allow `Decrypt` without
/// conditions), and wildcards such as `kms:*`, `kms:Create*` or `kms:Re*` that would pull
/// those in.
pub const ADMIN_ACTIONS: &[&str] = &[
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
];

/// What the enclave (through its parent's role) may do with the key, only with an attestation
/// document of this image.
pub const ENCLAVE_ACTIONS: &[&str] = &["kms:Decrypt", "kms:GenerateDataKey"];

/// Why a template cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// The account id is not 12 digits.
    Account(String),
    /// A role name is not an IAM role name.
    RoleName {
        /// Which role (`parent role`, `key-administrator role`).
        which: &'static str,
        /// What was given.
        name: String,
    },
    /// A PCR is not 48 bytes of hex.
    Pcr {
        /// Which PCR.
        index: u8,
        /// What was given.
        found: String,
    },
    /// A PCR is all zeros: what debug-mode enclaves report.
    DebugPcr {
        /// Which PCR.
        index: u8,
    },
    /// A template to fill in is not JSON.
    NotJson(String),
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(account) => write!(
                f,
                "account id `{account}`: an AWS account id is exactly 12 digits"
            ),
            Self::RoleName { which, name } => write!(
                f,
                "{which} `{name}`: an IAM role name is 1 to {MAX_ROLE_NAME} characters of \
                 letters, digits and +=,.@_- (give the name, not the ARN)"
            ),
            Self::Pcr { index, found } => write!(
                f,
                "PCR{index} `{found}` is not 96 hexadecimal digits (a SHA-384 measurement as \
                 `nitro-cli describe-eif` prints it)"
            ),
            Self::NotJson(why) => write!(
                f,
                "the key-policy template is not JSON ({why}); restore it from the release"
            ),
            Self::DebugPcr { index } => write!(
                f,
                "PCR{index} is all zeros, the value debug-mode enclaves report: refusing to write \
                 a policy that would release keys to any debug enclave"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// The principals a key policy names: the account, the parent instance's role (which signs
/// the enclave's requests) and the key-administrator role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principals {
    account: String,
    role: String,
    admin_role: String,
}

fn check_role(which: &'static str, name: &str) -> Result<(), TemplateError> {
    if !name.is_empty()
        && name.len() <= MAX_ROLE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        Ok(())
    } else {
        Err(TemplateError::RoleName {
            which,
            name: name.to_owned(),
        })
    }
}

impl Principals {
    /// The placeholders `ACCOUNT`, `ROLE` and `KEY_ADMIN_ROLE`, for the user to fill in.
    #[must_use]
    pub fn placeholders() -> Self {
        Self {
            account: ACCOUNT_PLACEHOLDER.to_owned(),
            role: ROLE_PLACEHOLDER.to_owned(),
            admin_role: ADMIN_ROLE_PLACEHOLDER.to_owned(),
        }
    }

    /// A real account id, parent role name and key-administrator role name.
    ///
    /// # Errors
    /// [`TemplateError::Account`] unless the account id is 12 digits;
    /// [`TemplateError::RoleName`] unless each role name is 1..=64 characters of IAM's
    /// role-name set (letters, digits and `+=,.@_-`), or if both roles are the same (the
    /// administrator must not be the role the parent holds).
    pub fn new(account: &str, role: &str, admin_role: &str) -> Result<Self, TemplateError> {
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TemplateError::Account(account.to_owned()));
        }
        check_role("parent role", role)?;
        check_role("key-administrator role", admin_role)?;
        if role == admin_role {
            return Err(TemplateError::RoleName {
                which: "key-administrator role (it must differ from the parent's role, which the \
                        parent controls)",
                name: admin_role.to_owned(),
            });
        }
        Ok(Self {
            account: account.to_owned(),
            role: role.to_owned(),
            admin_role: admin_role.to_owned(),
        })
    }

    /// True while the placeholders are in place.
    #[must_use]
    pub fn is_placeholder(&self) -> bool {
        self.account == ACCOUNT_PLACEHOLDER
    }

    /// The account id (or `ACCOUNT`).
    #[must_use]
    pub fn account(&self) -> &str {
        &self.account
    }

    /// `arn:aws:iam::<account>:role/<role>`: the parent instance's role.
    #[must_use]
    pub fn role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/{}", self.account, self.role)
    }

    /// `arn:aws:iam::<account>:role/<admin role>`: the key administrator.
    #[must_use]
    pub fn admin_role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/{}", self.account, self.admin_role)
    }

    /// `arn:aws:iam::<account>:root`: the account, as IAM allows its principals.
    #[must_use]
    pub fn account_root_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.account)
    }
}

/// The three measurements a policy pins: PCR0 (as `ImageSha384`), PCR1 and PCR2, lowercase
/// hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePins {
    pcr0: String,
    pcr1: String,
    pcr2: String,
    /// PCR8 (the signing certificate) of a signed image.
    pcr8: Option<String>,
}

impl ImagePins {
    /// Pins from hex (either case; written lowercase).
    ///
    /// # Errors
    /// [`TemplateError::Pcr`] for a value that is not 96 hex digits, [`TemplateError::DebugPcr`]
    /// for an all-zero one.
    pub fn new(pcr0: &str, pcr1: &str, pcr2: &str) -> Result<Self, TemplateError> {
        let check = |index: u8, value: &str| {
            if value.len() != 96 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(TemplateError::Pcr {
                    index,
                    found: value.to_owned(),
                });
            }
            if value.bytes().all(|b| b == b'0') {
                return Err(TemplateError::DebugPcr { index });
            }
            Ok(value.to_ascii_lowercase())
        };
        Ok(Self {
            pcr0: check(0, pcr0)?,
            pcr1: check(1, pcr1)?,
            pcr2: check(2, pcr2)?,
            pcr8: None,
        })
    }

    /// Adds PCR8, the signing certificate's measurement, for a signed image: the policies then
    /// also pin the signer (an Allow condition and a `DenySecretsUnlessPCR8Matches`).
    ///
    /// # Errors
    /// As [`ImagePins::new`], for index 8.
    pub fn with_pcr8(mut self, pcr8: &str) -> Result<Self, TemplateError> {
        if pcr8.len() != 96 || !pcr8.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TemplateError::Pcr {
                index: 8,
                found: pcr8.to_owned(),
            });
        }
        if pcr8.bytes().all(|b| b == b'0') {
            return Err(TemplateError::DebugPcr { index: 8 });
        }
        self.pcr8 = Some(pcr8.to_ascii_lowercase());
        Ok(self)
    }

    /// The attestation conditions, key → lowercase hex, sorted: ImageSha384, PCR1, PCR2 and,
    /// for a signed image, PCR8.
    #[must_use]
    pub fn conditions(&self) -> BTreeMap<String, String> {
        let mut conditions = BTreeMap::from([
            (IMAGE_SHA384.to_owned(), self.pcr0.clone()),
            (PCR1.to_owned(), self.pcr1.clone()),
            (PCR2.to_owned(), self.pcr2.clone()),
        ]);
        if let Some(pcr8) = &self.pcr8 {
            conditions.insert(PCR8.to_owned(), pcr8.clone());
        }
        conditions
    }
}

#[derive(Serialize)]
struct PolicyDocument {
    #[serde(rename = "Version")]
    version: &'static str,
    #[serde(rename = "Statement")]
    statement: Vec<Statement>,
}

#[derive(Serialize)]
struct Statement {
    #[serde(rename = "Sid")]
    sid: String,
    #[serde(rename = "Effect")]
    effect: &'static str,
    #[serde(rename = "Principal", skip_serializing_if = "Option::is_none")]
    principal: Option<BTreeMap<&'static str, String>>,
    #[serde(rename = "Action")]
    action: Vec<&'static str>,
    #[serde(rename = "Resource")]
    resource: &'static str,
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    condition: Option<BTreeMap<&'static str, BTreeMap<String, String>>>,
}

fn aws(arn: String) -> Option<BTreeMap<&'static str, String>> {
    Some(BTreeMap::from([("AWS", arn)]))
}

fn pretty(document: &PolicyDocument) -> String {
    // Serialising these plain structs of strings cannot fail.
    serde_json::to_string_pretty(document).unwrap_or_default() + "\n"
}

/// The KMS key policy for an image (pretty JSON, trailing newline); see the module docs for
/// each statement and why it is there.
#[must_use]
pub fn key_policy(pins: &ImagePins, principals: &Principals) -> String {
    let conditions = pins.conditions();
    let purpose = BTreeMap::from([(purpose_condition_key(), SEALING_PURPOSE.to_owned())]);
    let mut statement = vec![
        Statement {
            sid: "KeyAdministration".into(),
            effect: "Allow",
            principal: aws(principals.admin_role_arn()),
            action: ADMIN_ACTIONS.to_vec(),
            resource: "*",
            condition: None,
        },
        Statement {
            sid: "OperatorsEncryptButNeverSeal".into(),
            effect: "Allow",
            principal: aws(principals.account_root_arn()),
            action: vec!["kms:Encrypt"],
            resource: "*",
            condition: Some(BTreeMap::from([(
                "StringNotEqualsIgnoreCase",
                purpose.clone(),
            )])),
        },
        Statement {
            sid: "EnclaveUseOnlyWithThisImage".into(),
            effect: "Allow",
            principal: aws(principals.role_arn()),
            action: ENCLAVE_ACTIONS.to_vec(),
            resource: "*",
            condition: Some(BTreeMap::from([(
                "StringEqualsIgnoreCase",
                conditions.clone(),
            )])),
        },
    ];
    for (key, value) in &conditions {
        let name = key.rsplit(':').next().unwrap_or(key);
        statement.push(Statement {
            sid: format!("DenySecretsUnless{name}Matches"),
            effect: "Deny",
            principal: aws("*".to_owned()),
            action: DENIED_WITHOUT_ATTESTATION.to_vec(),
            resource: "*",
            condition: Some(BTreeMap::from([(
                "StringNotEqualsIgnoreCase",
                BTreeMap::from([(key.clone(), value.clone())]),
            )])),
        });
    }
    statement.push(Statement {
        sid: "DenyMintingSealedBlobs".into(),
        effect: "Deny",
        principal: aws("*".to_owned()),
        action: vec!["kms:Encrypt"],
        resource: "*",
        condition: Some(BTreeMap::from([("StringEqualsIgnoreCase", purpose)])),
    });
    statement.push(Statement {
        sid: "DenyPolicyAndGrantChangesToTheEnclaveRole".into(),
        effect: "Deny",
        principal: aws(principals.role_arn()),
        action: POLICY_CHANGE_ACTIONS.to_vec(),
        resource: "*",
        condition: None,
    });
    pretty(&PolicyDocument {
        version: "2012-10-17",
        statement,
    })
}

/// The IAM policy to attach to the parent's role: `kms:GenerateRandom` for the enclave under
/// the same three conditions (they apply to GenerateRandom in IAM policies: KMS developer
/// guide, "Condition keys for AWS Nitro Enclaves"). It grants nothing else: the key policy
/// names the role directly, and its Denies cover the key; Denies here, on `Resource "*"`, would
/// reach every other key the role may legitimately use.
#[must_use]
pub fn iam_policy(pins: &ImagePins) -> String {
    pretty(&PolicyDocument {
        version: "2012-10-17",
        statement: vec![Statement {
            sid: "EnclaveRandomOnlyWithThisImage".into(),
            effect: "Allow",
            principal: None,
            action: vec!["kms:GenerateRandom"],
            resource: "*",
            condition: Some(BTreeMap::from([(
                "StringEqualsIgnoreCase",
                pins.conditions(),
            )])),
        }],
    })
}

/// A template with its placeholder principals (`arn:aws:iam::ACCOUNT:root`,
/// `...:role/ROLE`, `...:role/KEY_ADMIN_ROLE`) replaced by `principals`' (pretty JSON).
///
/// # Errors
/// [`TemplateError::NotJson`].
pub fn fill_placeholders(template: &str, principals: &Principals) -> Result<String, TemplateError> {
    let value: serde_json::Value =
        serde_json::from_str(template).map_err(|e| TemplateError::NotJson(e.to_string()))?;
    let placeholders = Principals::placeholders();
    let replacements = [
        (
            placeholders.account_root_arn(),
            principals.account_root_arn(),
        ),
        (placeholders.role_arn(), principals.role_arn()),
        (placeholders.admin_role_arn(), principals.admin_role_arn()),
    ];
    let filled = replace_strings(&value, &replacements);
    Ok(serde_json::to_string_pretty(&filled).unwrap_or_default() + "\n")
}

/// Replaces whole string values (never keys) equal to a placeholder.
fn replace_strings(value: &serde_json::Value, map: &[(String, String)]) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => match map.iter().find(|(from, _)| from == s) {
            Some((_, to)) => Value::String(to.clone()),
            None => value.clone(),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| replace_strings(v, map)).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), replace_strings(v, map)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decision, Policy, RequestContext};

    fn hex_of(byte: u8) -> String {
        hex_string(&[byte; 48])
    }

    fn hex_string(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn pins(seed: u8) -> ImagePins {
        ImagePins::new(
            &hex_of(seed),
            &hex_of(seed.wrapping_add(1)),
            &hex_of(seed.wrapping_add(2)),
        )
        .unwrap()
    }

    #[test]
    fn principals_are_validated() {
        let p = Principals::new("111122223333", "Enclave-Parent_1", "KeyAdmin").unwrap();
        assert_eq!(
            p.role_arn(),
            "arn:aws:iam::111122223333:role/Enclave-Parent_1"
        );
        assert_eq!(
            p.admin_role_arn(),
            "arn:aws:iam::111122223333:role/KeyAdmin"
        );
        assert_eq!(p.account_root_arn(), "arn:aws:iam::111122223333:root");
        assert!(!p.is_placeholder());
        assert!(Principals::placeholders().is_placeholder());
        for (account, role, admin) in [
            ("11112222333", "r", "a"),
            ("1111222233334", "r", "a"),
            ("11112222333x", "r", "a"),
            ("111122223333", "", "a"),
            ("111122223333", "arn:aws:iam::111122223333:role/r", "a"),
            ("111122223333", "a/b", "a"),
            ("111122223333", "has space", "a"),
            ("111122223333", &"r".repeat(65), "a"),
            ("111122223333", "r", ""),
            ("111122223333", "same", "same"),
        ] {
            assert!(
                Principals::new(account, role, admin).is_err(),
                "{account} {role} {admin}"
            );
        }
        assert!(Principals::new("111122223333", &"r".repeat(64), "a").is_ok());
    }

    #[test]
    fn pins_refuse_debug_and_malformed_pcrs() {
        for index in 0..3u8 {
            let mut values = [hex_of(1), hex_of(2), hex_of(3)];
            values[usize::from(index)] = "0".repeat(96);
            let err = ImagePins::new(&values[0], &values[1], &values[2]).unwrap_err();
            assert_eq!(err, TemplateError::DebugPcr { index });
            assert!(
                err.to_string()
                    .contains(&format!("PCR{index} is all zeros"))
            );
        }
        assert!(matches!(
            ImagePins::new("abc", &hex_of(1), &hex_of(2)),
            Err(TemplateError::Pcr { index: 0, .. })
        ));
        let upper = ImagePins::new(&hex_of(0xab).to_uppercase(), &hex_of(1), &hex_of(2)).unwrap();
        assert_eq!(upper.conditions()[IMAGE_SHA384], hex_of(0xab));
    }

    #[test]
    fn key_policy_shape() {
        let text = key_policy(&pins(0xab), &Principals::placeholders());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Version"], "2012-10-17");
        let statements = v["Statement"].as_array().unwrap();
        let sids: Vec<&str> = statements
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert_eq!(
            sids,
            [
                "KeyAdministration",
                "OperatorsEncryptButNeverSeal",
                "EnclaveUseOnlyWithThisImage",
                "DenySecretsUnlessImageSha384Matches",
                "DenySecretsUnlessPCR1Matches",
                "DenySecretsUnlessPCR2Matches",
                "DenyMintingSealedBlobs",
                "DenyPolicyAndGrantChangesToTheEnclaveRole",
            ]
        );
        assert_eq!(
            statements[0]["Principal"]["AWS"],
            "arn:aws:iam::ACCOUNT:role/KEY_ADMIN_ROLE"
        );
        assert_eq!(
            statements[2]["Principal"]["AWS"],
            "arn:aws:iam::ACCOUNT:role/ROLE"
        );
        let conditions = &statements[2]["Condition"]["StringEqualsIgnoreCase"];
        assert_eq!(conditions[IMAGE_SHA384], hex_of(0xab));
        assert_eq!(conditions[PCR1], hex_of(0xac));
        assert_eq!(conditions[PCR2], hex_of(0xad));
        assert_eq!(
            statements[5]["Condition"]["StringNotEqualsIgnoreCase"][PCR2],
            hex_of(0xad)
        );
        // The administrator holds nothing that reveals plaintext.
        for action in statements[0]["Action"].as_array().unwrap() {
            let action = action.as_str().unwrap();
            assert!(!action.contains('*'), "{action}");
            for secret in [
                "Decrypt",
                "GenerateDataKey",
                "ReEncrypt",
                "CreateGrant",
                "DeriveSharedSecret",
            ] {
                assert!(!action.contains(secret), "{action}");
            }
        }
        assert!(!text.contains("GenerateRandom"));
        let iam: serde_json::Value = serde_json::from_str(&iam_policy(&pins(0xab))).unwrap();
        assert_eq!(
            iam["Statement"][0]["Action"],
            serde_json::json!(["kms:GenerateRandom"])
        );
        assert!(iam["Statement"][0].get("Principal").is_none());
    }

    #[test]
    fn signed_pins_add_pcr8_to_the_allow_and_a_deny_of_their_own() {
        let signed = pins(0x10).with_pcr8(&hex_of(0x88)).unwrap();
        assert_eq!(signed.conditions()[PCR8], hex_of(0x88));
        let text = key_policy(&signed, &Principals::placeholders());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let statements = v["Statement"].as_array().unwrap();
        let allow = statements
            .iter()
            .find(|s| s["Sid"] == "EnclaveUseOnlyWithThisImage")
            .unwrap();
        assert_eq!(
            allow["Condition"]["StringEqualsIgnoreCase"][PCR8],
            hex_of(0x88)
        );
        let deny = statements
            .iter()
            .find(|s| s["Sid"] == "DenySecretsUnlessPCR8Matches")
            .unwrap();
        assert_eq!(
            deny["Condition"]["StringNotEqualsIgnoreCase"][PCR8],
            hex_of(0x88)
        );
        let iam: serde_json::Value = serde_json::from_str(&iam_policy(&signed)).unwrap();
        assert_eq!(
            iam["Statement"][0]["Condition"]["StringEqualsIgnoreCase"][PCR8],
            hex_of(0x88)
        );
        let policy = Policy::parse_any(&text).unwrap();
        assert!(crate::check::check(&policy).is_empty());
        // Unsigned pins never mention PCR8; a debug or malformed PCR8 is refused.
        assert!(!key_policy(&pins(0x10), &Principals::placeholders()).contains(PCR8));
        assert_eq!(
            pins(1).with_pcr8(&"0".repeat(96)).unwrap_err(),
            TemplateError::DebugPcr { index: 8 }
        );
        assert!(matches!(
            pins(1).with_pcr8("abc").unwrap_err(),
            TemplateError::Pcr { index: 8, .. }
        ));
    }

    #[test]
    fn placeholders_are_filled_in_principals_only() {
        let principals = Principals::new("111122223333", "EnclaveParent", "KeyAdmin").unwrap();
        let template = key_policy(&pins(1), &Principals::placeholders());
        let filled = fill_placeholders(&template, &principals).unwrap();
        let value = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        assert_eq!(value(&filled), value(&key_policy(&pins(1), &principals)));
        assert!(!filled.contains("ACCOUNT"));
        assert!(fill_placeholders("not json", &principals).is_err());
    }

    /// The evaluator (AWS's evaluation order) on the rendered template: only this image, through
    /// the named role, gets secrets; administration stays with the administrator role; the
    /// routes around attestation are closed, explicitly.
    #[test]
    fn the_evaluator_enforces_the_template() {
        let principals = Principals::new("111122223333", "EnclaveParent", "KeyAdmin").unwrap();
        let policy = Policy::parse(&key_policy(&pins(0x3c), &principals)).unwrap();
        let role = "arn:aws:sts::111122223333:assumed-role/EnclaveParent/i-0123";
        let admin = "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice";
        let operator = "arn:aws:iam::111122223333:user/operator";
        let request = |principal: &str, action: &str, pcrs: Option<[String; 3]>| {
            let mut ctx = RequestContext::new(
                principal,
                action,
                "arn:aws:kms:eu-west-1:111122223333:key/k",
            );
            if let Some([p0, p1, p2]) = pcrs {
                ctx.set(IMAGE_SHA384, p0);
                ctx.set(PCR1, p1);
                ctx.set(PCR2, p2);
            }
            policy.evaluate(&ctx)
        };
        let good = || Some([hex_of(0x3c), hex_of(0x3d), hex_of(0x3e)]);
        for action in ["kms:Decrypt", "kms:GenerateDataKey"] {
            assert!(request(role, action, good()).is_allowed(), "{action}");
            let upper = Some([
                hex_of(0x3c).to_uppercase(),
                hex_of(0x3d),
                hex_of(0x3e).to_uppercase(),
            ]);
            assert!(request(role, action, upper).is_allowed());
            // Any one PCR off, all-zero PCRs, or no attestation: an EXPLICIT deny, for everyone.
            for wrong in 0..3 {
                let mut pcrs = good().unwrap();
                pcrs[wrong] = hex_of(0x99);
                let evaluation = request(role, action, Some(pcrs));
                assert!(evaluation.is_explicitly_denied(), "PCR {wrong}");
            }
            let zeros = Some([hex_of(0), hex_of(0), hex_of(0)]);
            assert!(request(role, action, zeros).is_explicitly_denied());
            for who in [role, admin, operator] {
                let evaluation = request(who, action, None);
                assert_eq!(
                    evaluation.decision,
                    Decision::ExplicitDeny {
                        by: vec![
                            "statement \"DenySecretsUnlessImageSha384Matches\"".into(),
                            "statement \"DenySecretsUnlessPCR1Matches\"".into(),
                            "statement \"DenySecretsUnlessPCR2Matches\"".into(),
                        ]
                    },
                    "{who}"
                );
            }
            // Another role with the right PCRs: not allowed (implicitly).
            let other = "arn:aws:sts::111122223333:assumed-role/Other/s";
            assert!(!request(other, action, good()).is_allowed());
            let foreign = "arn:aws:sts::444455556666:assumed-role/EnclaveParent/s";
            assert!(!request(foreign, action, good()).is_allowed());
        }
        for action in [
            "kms:ReEncryptFrom",
            "kms:ReEncryptTo",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:GenerateDataKeyPair",
            "kms:DeriveSharedSecret",
        ] {
            for who in [role, admin, operator] {
                assert!(
                    request(who, action, None).is_explicitly_denied(),
                    "{action}"
                );
            }
        }
        // Administration: the administrator role, never the parent's role.
        for action in ["kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"] {
            assert!(request(admin, action, None).is_allowed(), "{action}");
            assert!(!request(operator, action, None).is_allowed(), "{action}");
        }
        for action in POLICY_CHANGE_ACTIONS {
            assert!(
                request(role, action, good()).is_explicitly_denied(),
                "{action}"
            );
        }
        assert!(!request(admin, "kms:CreateGrant", None).is_allowed());
        // Encrypt: any principal of the account, never with the sealing purpose.
        let encrypt = |who: &str, purpose: Option<&str>| {
            let mut ctx = RequestContext::new(
                who,
                "kms:Encrypt",
                "arn:aws:kms:eu-west-1:111122223333:key/k",
            );
            if let Some(purpose) = purpose {
                ctx.set(&purpose_condition_key(), purpose);
                ctx.set_many(
                    crate::keys::ENCRYPTION_CONTEXT_KEYS,
                    vec![crate::keys::PURPOSE_KEY.to_owned()],
                );
            }
            policy.evaluate(&ctx)
        };
        assert!(encrypt(operator, None).is_allowed());
        assert!(encrypt(role, Some("hmac")).is_allowed());
        for purpose in ["seal", "SEAL"] {
            for who in [operator, role, admin] {
                assert!(
                    encrypt(who, Some(purpose)).is_explicitly_denied(),
                    "{who} {purpose}"
                );
            }
        }
        assert!(!encrypt("arn:aws:iam::444455556666:user/x", None).is_allowed());
    }
}
