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
//! - `DenyMintingSealedBlobs`: nobody may `Encrypt` with `ccc:purpose=seal`; otherwise an
//!   operator could pick a data key, wrap it under the enclave's key and build a sealed blob the
//!   enclave would accept as its own.
//! - `DenyPolicyAndGrantChangesToTheEnclaveRole`: the parent's role may never change the policy,
//!   create or revoke grants, or replicate the key ([`POLICY_CHANGE_ACTIONS`]), whatever its IAM
//!   policies say.
//!
//! `kms:GenerateRandom` uses no key, so KMS authorises it by IAM policy only (KMS API
//! reference, GenerateRandom); [`iam_policy`] is the statement to attach to the parent's role.
//!
//! # Several images: [`Admitted`] sets and a lead key
//! An environment's policy ([`render_key_policy`], [`render_iam_policy`]) admits several sets
//! of attestation values at once: one per allowed release (its PCR0, PCR1 and PCR2 together),
//! a signer (PCR8, with PCR3 and PCR4 when pinned) and, in development only, debug mode (all
//! zeros). Each set gets one Allow with all its values, so a release's PCRs never mix with
//! another's. The explicit Denies must admit *exactly* those sets, and the per-PCR Denies above
//! cannot: with several values, `StringNotEqualsIgnoreCase` denies a value that is none of them
//! (the IAM user guide documents the values of a negated operator as a NOR), so per-PCR
//! statements admit every combination — PCR0 of one release with PCR2 of another. The Denies
//! are therefore built around a **lead key** (ImageSha384 for releases, PCR8 for a signer) that
//! tells the sets apart:
//! - `DenySecretsUnless<Lead>Matches`: the lead key must be one of the sets' lead values (absent
//!   counts as different: negated operators hold on absent keys);
//! - for every other key that all sets pin to one value, `DenySecretsUnless<Key>Matches` with
//!   that value, as for one image;
//! - for every other key whose value differs between sets, one Deny per set:
//!   `DenySecretsUnless<Key>Matches<Set>` applies when the lead key *equals* the set's lead value
//!   (`StringEqualsIgnoreCase`) and the key differs from the set's (`StringNotEqualsIgnoreCase`).
//!
//! A request passes every Deny exactly when its lead value is some set's and every other key the
//! set pins has the set's value: the admitted sets and nothing else. Two sets with the same lead
//! value and different other values would be ambiguous and are refused
//! ([`TemplateError::AmbiguousLead`]); for releases that cannot happen with real images, since
//! PCR0 measures everything PCR1 and PCR2 do. With one set this is exactly the per-PCR layout
//! above. With none, one unconditional `DenySecretsToEveryone` replaces them all.

use crate::hex::{is_pcr_hex, is_zero};
use crate::keys::{
    DENIED_WITHOUT_ATTESTATION, IMAGE_SHA384, PCR1, PCR2, POLICY_CHANGE_ACTIONS,
    RECIPIENT_ATTESTATION_PREFIX, SEALING_PURPOSE, pcr_of, purpose_condition_key,
};
use serde::Serialize;
use serde_json::Value;
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
    /// A role ARN is not `arn:<partition>:iam::<account>:role/<path/>name`.
    RoleArn {
        /// Which role.
        which: &'static str,
        /// What was given.
        arn: String,
    },
    /// Two admitted sets share their lead value but differ elsewhere: the Denies could not
    /// tell them apart.
    AmbiguousLead {
        /// The lead condition key.
        key: String,
        /// The shared value.
        value: String,
        /// The two sets.
        sets: [String; 2],
    },
    /// An admitted set lacks the lead key.
    MissingLead {
        /// The set.
        set: String,
        /// The lead key.
        key: String,
    },
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
            Self::RoleArn { which, arn } => write!(
                f,
                "{which} `{arn}` is not an IAM role ARN: write \
                 arn:aws:iam::<12-digit account>:role/<name> (`aws iam get-role --role-name \
                 <name> --query Role.Arn` prints it)"
            ),
            Self::AmbiguousLead { key, value, sets } => write!(
                f,
                "{} and {} both have {key} = {value} but differ in other PCRs, so no key policy \
                 can tell them apart; one of them is not what it claims to be (for releases: \
                 PCR0 measures the whole image, so two releases with one PCR0 are one image) — \
                 remove one",
                sets[0], sets[1]
            ),
            Self::MissingLead { set, key } => write!(
                f,
                "{set} does not pin {key}, the key that tells the allowed images apart; pin it"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// The principals a key policy names: the account, the parent instance's role (which signs
/// the enclave's requests) and the key-administrator role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principals {
    partition: String,
    account: String,
    role_arn: String,
    admin_role_arn: String,
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

fn check_account(account: &str) -> Result<(), TemplateError> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(TemplateError::Account(account.to_owned()))
    }
}

/// The partitions an IAM ARN may name (AWS General Reference, "Amazon Resource Names").
const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// Longest IAM path (IAM API reference, `CreateRole`: `Path` is 1 to 512 characters).
const MAX_ROLE_PATH: usize = 512;

/// The `(partition, account, name)` of an IAM role ARN
/// `arn:<partition>:iam::<account>:role/<path/>name`.
///
/// # Errors
/// [`TemplateError::RoleArn`] for anything else; [`TemplateError::RoleName`] for a bad name.
pub fn parse_role_arn<'a>(
    which: &'static str,
    arn: &'a str,
) -> Result<(&'a str, &'a str, &'a str), TemplateError> {
    let bad = || TemplateError::RoleArn {
        which,
        arn: arn.to_owned(),
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    if !PARTITIONS.contains(&partition) || check_account(account).is_err() {
        return Err(bad());
    }
    let path_and_name = resource.strip_prefix("role/").ok_or_else(bad)?;
    let (path, name) = match path_and_name.rsplit_once('/') {
        Some((path, name)) => (path, name),
        None => ("", path_and_name),
    };
    if path.len() > MAX_ROLE_PATH
        || !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
    {
        return Err(bad());
    }
    check_role(which, name)?;
    Ok((partition, account, name))
}

impl Principals {
    /// The placeholders `ACCOUNT`, `ROLE` and `KEY_ADMIN_ROLE`, for the user to fill in.
    #[must_use]
    pub fn placeholders() -> Self {
        Self {
            partition: "aws".to_owned(),
            account: ACCOUNT_PLACEHOLDER.to_owned(),
            role_arn: format!("arn:aws:iam::{ACCOUNT_PLACEHOLDER}:role/{ROLE_PLACEHOLDER}"),
            admin_role_arn: format!(
                "arn:aws:iam::{ACCOUNT_PLACEHOLDER}:role/{ADMIN_ROLE_PLACEHOLDER}"
            ),
        }
    }

    /// A real account id, parent role name and key-administrator role name (partition `aws`).
    ///
    /// # Errors
    /// [`TemplateError::Account`] unless the account id is 12 digits;
    /// [`TemplateError::RoleName`] unless each role name is 1..=64 characters of IAM's
    /// role-name set (letters, digits and `+=,.@_-`), or if both roles are the same (the
    /// administrator must not be the role the parent holds).
    pub fn new(account: &str, role: &str, admin_role: &str) -> Result<Self, TemplateError> {
        check_account(account)?;
        check_role("parent role", role)?;
        check_role("key-administrator role", admin_role)?;
        Self::from_arns(
            account,
            &format!("arn:aws:iam::{account}:role/{role}"),
            &format!("arn:aws:iam::{account}:role/{admin_role}"),
        )
    }

    /// The account and the two roles by ARN (any partition, roles with a path). The account
    /// is the key's: its root is the principal of `OperatorsEncryptButNeverSeal`.
    ///
    /// # Errors
    /// [`TemplateError::Account`], [`TemplateError::RoleArn`] or [`TemplateError::RoleName`]
    /// for a malformed value; [`TemplateError::RoleName`] if both roles are the same.
    pub fn from_arns(
        account: &str,
        role_arn: &str,
        admin_role_arn: &str,
    ) -> Result<Self, TemplateError> {
        check_account(account)?;
        let (partition, _, _) = parse_role_arn("parent role", role_arn)?;
        let (admin_partition, _, _) = parse_role_arn("key-administrator role", admin_role_arn)?;
        if role_arn == admin_role_arn {
            return Err(TemplateError::RoleName {
                which: "key-administrator role (it must differ from the parent's role, which the \
                        parent controls)",
                name: admin_role_arn.to_owned(),
            });
        }
        if partition != admin_partition {
            return Err(TemplateError::RoleArn {
                which: "key-administrator role (same partition as the parent's role)",
                arn: admin_role_arn.to_owned(),
            });
        }
        Ok(Self {
            partition: partition.to_owned(),
            account: account.to_owned(),
            role_arn: role_arn.to_owned(),
            admin_role_arn: admin_role_arn.to_owned(),
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

    /// The parent instance's role, e.g. `arn:aws:iam::<account>:role/<role>`.
    #[must_use]
    pub fn role_arn(&self) -> String {
        self.role_arn.clone()
    }

    /// The key administrator's role.
    #[must_use]
    pub fn admin_role_arn(&self) -> String {
        self.admin_role_arn.clone()
    }

    /// `arn:<partition>:iam::<account>:root`: the account, as IAM allows its principals.
    #[must_use]
    pub fn account_root_arn(&self) -> String {
        format!("arn:{}:iam::{}:root", self.partition, self.account)
    }
}

/// The three measurements a policy pins: PCR0 (as `ImageSha384`), PCR1 and PCR2, lowercase
/// hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePins {
    pcr0: String,
    pcr1: String,
    pcr2: String,
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
        })
    }

    /// The attestation conditions, key → lowercase hex, sorted: ImageSha384, PCR1, PCR2.
    #[must_use]
    pub fn conditions(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (IMAGE_SHA384.to_owned(), self.pcr0.clone()),
            (PCR1.to_owned(), self.pcr1.clone()),
            (PCR2.to_owned(), self.pcr2.clone()),
        ])
    }
}

/// What one admitted set stands for; it names the set's statements.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetName {
    /// The one image of a release template (`EnclaveUseOnlyWithThisImage`).
    ThisImage,
    /// A published release, by version (`EnclaveUseWithRelease <version>`).
    Release(String),
    /// Any image signed by the environment's certificate (`EnclaveUseWithSigner`).
    Signer,
    /// Any image signed by one of the environment's certificates during a rotation, named by
    /// the start of its PCR8 (`EnclaveUseWithSigner <12 hex digits>`).
    SignerOf(String),
    /// Debug-mode enclaves: every image PCR zero (`EnclaveUseInDebugMode`, development only).
    DebugMode,
}

impl SetName {
    /// The suffix of the set's statement ids: `ThisImage`, `Release 0.2.0`, `Signer`,
    /// `DebugMode`.
    #[must_use]
    pub fn suffix(&self) -> String {
        match self {
            Self::ThisImage => "ThisImage".to_owned(),
            Self::Release(version) => format!("Release {version}"),
            Self::Signer => "Signer".to_owned(),
            Self::SignerOf(pcr8) => format!("Signer {}", short_pcr(pcr8)),
            Self::DebugMode => "DebugMode".to_owned(),
        }
    }

    /// The Sid of the set's Allow statement in the key policy.
    #[must_use]
    pub fn allow_sid(&self) -> String {
        match self {
            Self::ThisImage => "EnclaveUseOnlyWithThisImage".to_owned(),
            Self::Release(version) => format!("EnclaveUseWithRelease {version}"),
            Self::Signer => "EnclaveUseWithSigner".to_owned(),
            Self::SignerOf(pcr8) => format!("EnclaveUseWithSigner {}", short_pcr(pcr8)),
            Self::DebugMode => "EnclaveUseInDebugMode".to_owned(),
        }
    }
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ThisImage => f.write_str("this image"),
            Self::Release(version) => write!(f, "release {version}"),
            Self::Signer => f.write_str("the signer"),
            Self::SignerOf(pcr8) => write!(f, "the signer with PCR8 {}...", short_pcr(pcr8)),
            Self::DebugMode => f.write_str("debug mode"),
        }
    }
}

/// The first 12 hex digits of a measurement, to name a set by it.
fn short_pcr(pcr: &str) -> &str {
    pcr.get(..12).unwrap_or(pcr)
}

/// One set of attestation values a key releases secrets to: condition key → lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// What it stands for.
    pub name: SetName,
    /// `kms:RecipientAttestation:*` key → value.
    pub values: BTreeMap<String, String>,
}

impl Admitted {
    /// A set from `(PCR index, hex)` pairs (PCR0 is written as `ImageSha384`).
    ///
    /// # Errors
    /// [`TemplateError::Pcr`] for a value that is not 96 hex digits; [`TemplateError::DebugPcr`]
    /// for an all-zero value outside [`SetName::DebugMode`].
    pub fn new(name: SetName, pcrs: &[(u8, &str)]) -> Result<Self, TemplateError> {
        let mut values = BTreeMap::new();
        for (index, value) in pcrs {
            if !is_pcr_hex(value) {
                return Err(TemplateError::Pcr {
                    index: *index,
                    found: (*value).to_owned(),
                });
            }
            // PCR3 and PCR4 describe the parent, not the image: debug mode leaves them set.
            if is_zero(value) && name != SetName::DebugMode {
                return Err(TemplateError::DebugPcr { index: *index });
            }
            values.insert(pcr_key(*index), value.to_ascii_lowercase());
        }
        Ok(Self { name, values })
    }

    /// The debug-mode set: PCR0, PCR1 and PCR2 (and PCR8 with a signer lead) all zero, plus
    /// `parent` (PCR3/PCR4 values, which debug mode does not clear).
    #[must_use]
    pub fn debug_mode(with_pcr8: bool, parent: &[(u8, &str)]) -> Self {
        let zero = crate::hex::zero_pcr();
        let mut values: BTreeMap<String, String> = [0u8, 1, 2]
            .into_iter()
            .chain(with_pcr8.then_some(8))
            .map(|index| (pcr_key(index), zero.clone()))
            .collect();
        for (index, value) in parent {
            values.insert(pcr_key(*index), value.to_ascii_lowercase());
        }
        Self {
            name: SetName::DebugMode,
            values,
        }
    }
}

/// The condition key for PCR `index` (`ImageSha384` for PCR0, as AWS's examples write it).
#[must_use]
pub fn pcr_key(index: u8) -> String {
    if index == 0 {
        IMAGE_SHA384.to_owned()
    } else {
        format!("{RECIPIENT_ATTESTATION_PREFIX}PCR{index}")
    }
}

/// The short name of a condition key for statement ids (`ImageSha384`, `PCR1`).
fn short(key: &str) -> &str {
    key.rsplit(':').next().unwrap_or(key)
}

/// Which key tells the admitted sets apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lead {
    /// PCR0 (`ImageSha384`): releases pinned by their measurements.
    ImageSha384,
    /// PCR8: images signed by one certificate.
    Pcr8,
}

impl Lead {
    /// The condition key.
    #[must_use]
    pub fn key(self) -> String {
        match self {
            Self::ImageSha384 => IMAGE_SHA384.to_owned(),
            Self::Pcr8 => pcr_key(8),
        }
    }
}

/// What an environment's policies say: who, and which attestation sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// The account and roles.
    pub principals: Principals,
    /// The sets, in statement order.
    pub admitted: Vec<Admitted>,
    /// The key that tells them apart.
    pub lead: Lead,
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
    condition: Option<BTreeMap<&'static str, BTreeMap<String, Value>>>,
}

fn aws(arn: String) -> Option<BTreeMap<&'static str, String>> {
    Some(BTreeMap::from([("AWS", arn)]))
}

fn pretty(document: &PolicyDocument) -> String {
    // Serialising these plain structs of strings cannot fail.
    serde_json::to_string_pretty(document).unwrap_or_default() + "\n"
}

/// `{key: value}` as a condition block's content.
fn one(key: &str, value: &str) -> BTreeMap<String, Value> {
    BTreeMap::from([(key.to_owned(), Value::String(value.to_owned()))])
}

/// The values of an admitted set as a condition block's content.
fn all(values: &BTreeMap<String, String>) -> BTreeMap<String, Value> {
    values
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

fn deny(sid: String, condition: BTreeMap<&'static str, BTreeMap<String, Value>>) -> Statement {
    Statement {
        sid,
        effect: "Deny",
        principal: aws("*".to_owned()),
        action: DENIED_WITHOUT_ATTESTATION.to_vec(),
        resource: "*",
        condition: Some(condition),
    }
}

/// Checks the sets against the lead key: each pins it, and no two share its value while
/// differing elsewhere. Returns the sets with duplicates (same values) removed.
fn distinct_sets(spec: &PolicySpec) -> Result<Vec<&Admitted>, TemplateError> {
    let lead = spec.lead.key();
    let mut out: Vec<&Admitted> = Vec::new();
    for set in &spec.admitted {
        let Some(value) = set.values.get(&lead) else {
            return Err(TemplateError::MissingLead {
                set: set.name.to_string(),
                key: lead,
            });
        };
        match out.iter().find(|s| s.values.get(&lead) == Some(value)) {
            Some(other) if other.values == set.values => {}
            Some(other) => {
                return Err(TemplateError::AmbiguousLead {
                    key: lead,
                    value: value.clone(),
                    sets: [other.name.to_string(), set.name.to_string()],
                });
            }
            None => out.push(set),
        }
    }
    Ok(out)
}

/// The explicit Denies that admit exactly `sets` (see the module docs).
fn attestation_denies(sets: &[&Admitted], lead: &str) -> Vec<Statement> {
    if sets.is_empty() {
        return vec![Statement {
            condition: None,
            ..deny("DenySecretsToEveryone".to_owned(), BTreeMap::new())
        }];
    }
    let mut lead_values: Vec<Value> = Vec::new();
    for set in sets {
        if let Some(value) = set.values.get(lead) {
            let value = Value::String(value.clone());
            if !lead_values.contains(&value) {
                lead_values.push(value);
            }
        }
    }
    let lead_values = match <[Value; 1]>::try_from(lead_values) {
        Ok([single]) => single,
        Err(many) => Value::Array(many),
    };
    let mut out = vec![deny(
        format!("DenySecretsUnless{}Matches", short(lead)),
        BTreeMap::from([(
            "StringNotEqualsIgnoreCase",
            BTreeMap::from([(lead.to_owned(), lead_values)]),
        )]),
    )];
    let mut keys: Vec<&String> = sets
        .iter()
        .flat_map(|s| s.values.keys())
        .filter(|k| k.as_str() != lead)
        .collect();
    keys.sort_by_key(|k| (pcr_of(k), (*k).clone()));
    keys.dedup();
    let mut bindings = Vec::new();
    for key in keys {
        let values: Vec<Option<&String>> = sets.iter().map(|s| s.values.get(key)).collect();
        let first = values.first().copied().flatten();
        if first.is_some() && values.iter().all(|v| *v == first) {
            if let Some(value) = first {
                out.push(deny(
                    format!("DenySecretsUnless{}Matches", short(key)),
                    BTreeMap::from([("StringNotEqualsIgnoreCase", one(key, value))]),
                ));
            }
            continue;
        }
        for set in sets {
            let (Some(lead_value), Some(value)) = (set.values.get(lead), set.values.get(key))
            else {
                continue;
            };
            bindings.push((
                set.name.suffix(),
                deny(
                    format!(
                        "DenySecretsUnless{}Matches{}",
                        short(key),
                        set.name.suffix()
                    ),
                    BTreeMap::from([
                        ("StringEqualsIgnoreCase", one(lead, lead_value)),
                        ("StringNotEqualsIgnoreCase", one(key, value)),
                    ]),
                ),
            ));
        }
    }
    // The bindings of one set together, in the sets' order.
    for set in sets {
        let suffix = set.name.suffix();
        let (mine, rest): (Vec<_>, Vec<_>) = bindings.into_iter().partition(|(s, _)| *s == suffix);
        out.extend(mine.into_iter().map(|(_, statement)| statement));
        bindings = rest;
    }
    out
}

/// The KMS key policy for `spec` (pretty JSON, trailing newline); see the module docs for each
/// statement and why it is there.
///
/// # Errors
/// [`TemplateError::MissingLead`] or [`TemplateError::AmbiguousLead`] when the sets cannot be
/// told apart by the lead key.
pub fn render_key_policy(spec: &PolicySpec) -> Result<String, TemplateError> {
    let sets = distinct_sets(spec)?;
    let principals = &spec.principals;
    let purpose = one(&purpose_condition_key(), SEALING_PURPOSE);
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
    ];
    for set in &sets {
        statement.push(Statement {
            sid: set.name.allow_sid(),
            effect: "Allow",
            principal: aws(principals.role_arn()),
            action: ENCLAVE_ACTIONS.to_vec(),
            resource: "*",
            condition: Some(BTreeMap::from([(
                "StringEqualsIgnoreCase",
                all(&set.values),
            )])),
        });
    }
    statement.extend(attestation_denies(&sets, &spec.lead.key()));
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
    Ok(pretty(&PolicyDocument {
        version: "2012-10-17",
        statement,
    }))
}

/// The IAM policy for the parent's role: `kms:GenerateRandom` for the enclave, one Allow per
/// admitted set with all its values (they apply to GenerateRandom in IAM policies: KMS
/// developer guide, "Condition keys for AWS Nitro Enclaves"). It grants nothing else: the key
/// policy names the role directly, and its Denies cover the key; Denies here, on `Resource
/// "*"`, would reach every other key the role may legitimately use. Without any set, the one
/// statement denies `kms:GenerateRandom` (a policy needs a statement).
///
/// IAM statement ids are letters and digits only (IAM user guide, "Sid"), so a release's is
/// `EnclaveRandomWithAllowedImage<n>` in the sets' order; its conditions say which it is.
///
/// # Errors
/// As [`render_key_policy`].
pub fn render_iam_policy(spec: &PolicySpec) -> Result<String, TemplateError> {
    let sets = distinct_sets(spec)?;
    let mut statement = Vec::new();
    let mut n = 0usize;
    for set in &sets {
        let sid = match &set.name {
            SetName::ThisImage => "EnclaveRandomOnlyWithThisImage".to_owned(),
            SetName::Release(_) => {
                n += 1;
                format!("EnclaveRandomWithAllowedImage{n}")
            }
            SetName::Signer => "EnclaveRandomWithSigner".to_owned(),
            SetName::SignerOf(_) => {
                n += 1;
                format!("EnclaveRandomWithSigner{n}")
            }
            SetName::DebugMode => "EnclaveRandomInDebugMode".to_owned(),
        };
        statement.push(Statement {
            sid,
            effect: "Allow",
            principal: None,
            action: vec!["kms:GenerateRandom"],
            resource: "*",
            condition: Some(BTreeMap::from([(
                "StringEqualsIgnoreCase",
                all(&set.values),
            )])),
        });
    }
    if statement.is_empty() {
        statement.push(Statement {
            sid: "NoEnclaveImageIsAllowed".into(),
            effect: "Deny",
            principal: None,
            action: vec!["kms:GenerateRandom"],
            resource: "*",
            condition: None,
        });
    }
    Ok(pretty(&PolicyDocument {
        version: "2012-10-17",
        statement,
    }))
}

fn image_spec(pins: &ImagePins, principals: &Principals) -> PolicySpec {
    PolicySpec {
        principals: principals.clone(),
        admitted: vec![Admitted {
            name: SetName::ThisImage,
            values: pins.conditions(),
        }],
        lead: Lead::ImageSha384,
    }
}

/// The KMS key policy for one image (pretty JSON, trailing newline): [`render_key_policy`]
/// with the image as the only set.
#[must_use]
pub fn key_policy(pins: &ImagePins, principals: &Principals) -> String {
    // One set always has its lead key and cannot be ambiguous.
    render_key_policy(&image_spec(pins, principals)).unwrap_or_default()
}

/// The IAM policy for one image: [`render_iam_policy`] with the image as the only set.
#[must_use]
pub fn iam_policy(pins: &ImagePins) -> String {
    render_iam_policy(&image_spec(pins, &Principals::placeholders())).unwrap_or_default()
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

    /// The Denies admit exactly the admitted sets: every combination of the sets' values (and
    /// zeros, another value, or the key absent) for every key is tried, and a request passes
    /// every Deny iff it is one of the sets — and then, for the enclave's role, it is allowed.
    #[test]
    fn several_sets_are_admitted_exactly() {
        let principals = Principals::new("111122223333", "EnclaveParent", "KeyAdmin").unwrap();
        let role = "arn:aws:sts::111122223333:assumed-role/EnclaveParent/i-0123";
        let a = Admitted::new(
            SetName::Release("0.1.0".into()),
            &[(0, &hex_of(0x10)), (1, &hex_of(0x11)), (2, &hex_of(0x12))],
        )
        .unwrap();
        // Same kernel (PCR1) as 0.1.0: its PCR1 Deny collapses only if every set shares it.
        let b = Admitted::new(
            SetName::Release("0.2.0".into()),
            &[(0, &hex_of(0x20)), (1, &hex_of(0x11)), (2, &hex_of(0x22))],
        )
        .unwrap();
        let debug = Admitted::debug_mode(false, &[]);
        for sets in [
            vec![a.clone()],
            vec![a.clone(), b.clone()],
            vec![a.clone(), b.clone(), debug],
        ] {
            let spec = PolicySpec {
                principals: principals.clone(),
                admitted: sets.clone(),
                lead: Lead::ImageSha384,
            };
            let policy = Policy::parse(&render_key_policy(&spec).unwrap()).unwrap();
            let candidates = |key: &str| -> Vec<Option<String>> {
                let mut values: Vec<Option<String>> =
                    vec![None, Some(hex_of(0x99)), Some(hex_of(0))];
                for set in [&a, &b] {
                    values.push(set.values.get(key).cloned());
                }
                values.dedup();
                values
            };
            let keys = [IMAGE_SHA384, PCR1, PCR2];
            let mut tried = 0;
            for v0 in candidates(keys[0]) {
                for v1 in candidates(keys[1]) {
                    for v2 in candidates(keys[2]) {
                        let request: BTreeMap<String, Option<String>> = keys
                            .iter()
                            .map(|k| (*k).to_owned())
                            .zip([v0.clone(), v1.clone(), v2.clone()])
                            .collect();
                        let mut ctx = RequestContext::new(
                            role,
                            "kms:Decrypt",
                            "arn:aws:kms:eu-west-1:111122223333:key/k",
                        );
                        for (k, v) in &request {
                            if let Some(v) = v {
                                ctx.set(k, v.to_uppercase());
                            }
                        }
                        let admitted = sets.iter().any(|set| {
                            set.values
                                .iter()
                                .all(|(k, v)| request.get(k).and_then(Option::as_ref) == Some(v))
                        });
                        let evaluation = policy.evaluate(&ctx);
                        assert_eq!(
                            evaluation.is_allowed(),
                            admitted,
                            "{request:?} with {} sets",
                            sets.len()
                        );
                        assert_eq!(
                            evaluation.is_explicitly_denied(),
                            !admitted,
                            "{request:?} with {} sets",
                            sets.len()
                        );
                        tried += 1;
                    }
                }
            }
            assert!(tried >= 64, "{tried}");
            assert!(
                crate::check::check_with(
                    &policy,
                    crate::check::Options {
                        accept_debug_mode: sets.len() == 3
                    }
                )
                .is_empty()
            );
        }
    }

    #[test]
    fn sets_that_cannot_be_told_apart_are_refused_and_no_set_denies_everything() {
        let principals = Principals::placeholders();
        let a = Admitted::new(
            SetName::Release("0.1.0".into()),
            &[(0, &hex_of(0x10)), (1, &hex_of(0x11)), (2, &hex_of(0x12))],
        )
        .unwrap();
        let mut b = a.clone();
        b.name = SetName::Release("0.2.0".into());
        b.values.insert(PCR2.to_owned(), hex_of(0x22));
        let spec = |admitted: Vec<Admitted>| PolicySpec {
            principals: principals.clone(),
            admitted,
            lead: Lead::ImageSha384,
        };
        let err = render_key_policy(&spec(vec![a.clone(), b])).unwrap_err();
        assert!(matches!(err, TemplateError::AmbiguousLead { .. }), "{err}");
        assert!(
            err.to_string().contains("release 0.1.0 and release 0.2.0"),
            "{err}"
        );
        // The same set twice is one set.
        let text = render_key_policy(&spec(vec![a.clone(), a.clone()])).unwrap();
        assert_eq!(text.matches("EnclaveUseWithRelease 0.1.0").count(), 1);
        let signer = Admitted::new(SetName::Signer, &[(8, &hex_of(0x88))]).unwrap();
        let err = render_key_policy(&spec(vec![signer])).unwrap_err();
        assert!(matches!(err, TemplateError::MissingLead { .. }), "{err}");
        let none = Policy::parse(&render_key_policy(&spec(Vec::new())).unwrap()).unwrap();
        let ctx = RequestContext::new("arn:aws:iam::1:role/r", "kms:Decrypt", "*");
        assert_eq!(
            none.evaluate(&ctx).decision,
            Decision::ExplicitDeny {
                by: vec!["statement \"DenySecretsToEveryone\"".into()]
            }
        );
        let iam = render_iam_policy(&spec(Vec::new())).unwrap();
        assert!(iam.contains("NoEnclaveImageIsAllowed"), "{iam}");
        assert!(Admitted::new(SetName::Signer, &[(8, &"0".repeat(96))]).is_err());
    }

    #[test]
    fn role_arns_with_paths_and_partitions() {
        let p = Principals::from_arns(
            "111122223333",
            "arn:aws-us-gov:iam::111122223333:role/enclaves/Parent",
            "arn:aws-us-gov:iam::111122223333:role/KeyAdmin",
        )
        .unwrap();
        assert_eq!(
            p.account_root_arn(),
            "arn:aws-us-gov:iam::111122223333:root"
        );
        for (role, admin) in [
            (
                "arn:aws:iam::111122223333:user/Parent",
                "arn:aws:iam::111122223333:role/A",
            ),
            (
                "arn:aws:iam::1111:role/Parent",
                "arn:aws:iam::111122223333:role/A",
            ),
            (
                "arn:aws:sts::111122223333:role/Parent",
                "arn:aws:iam::111122223333:role/A",
            ),
            (
                "arn:aws:iam::111122223333:role/P",
                "arn:aws-cn:iam::111122223333:role/A",
            ),
            (
                "arn:aws:iam::111122223333:role/P",
                "arn:aws:iam::111122223333:role/P",
            ),
            (
                "arn:aws:iam::111122223333:role/a b",
                "arn:aws:iam::111122223333:role/A",
            ),
        ] {
            assert!(
                Principals::from_arns("111122223333", role, admin).is_err(),
                "{role} {admin}"
            );
        }
    }
}
