//! The names a CCC key policy speaks: KMS condition keys, the actions that release secrets or
//! change who may, and the enclave template's reserved sealing context.
//!
//! Sources: AWS KMS developer guide, "Condition keys for AWS Nitro Enclaves"
//! (`kms:RecipientAttestation:ImageSha384` is PCR0 of the attestation document; `PCR<n>` for
//! PCR0..4, 8 and custom PCRs; values are lowercase hex, compared with `StringEqualsIgnoreCase`
//! in AWS's examples), "AWS KMS condition keys" (`kms:EncryptionContext:<key>`,
//! `kms:EncryptionContextKeys`, `kms:CallerAccount`), and the IAM user guide's global keys
//! (`aws:PrincipalArn`).

/// The prefix of every attestation condition key.
pub const RECIPIENT_ATTESTATION_PREFIX: &str = "kms:RecipientAttestation:";

/// The condition key for PCR0 under the name AWS's examples use.
pub const IMAGE_SHA384: &str = "kms:RecipientAttestation:ImageSha384";

/// The condition key for PCR0 by number (the same value as [`IMAGE_SHA384`]).
pub const PCR0: &str = "kms:RecipientAttestation:PCR0";

/// The condition key for PCR1 (kernel and bootstrap).
pub const PCR1: &str = "kms:RecipientAttestation:PCR1";

/// The condition key for PCR2 (the application).
pub const PCR2: &str = "kms:RecipientAttestation:PCR2";

/// The condition key for PCR8 (the EIF signing certificate).
pub const PCR8: &str = "kms:RecipientAttestation:PCR8";

/// The prefix of the per-pair encryption-context condition keys.
pub const ENCRYPTION_CONTEXT_PREFIX: &str = "kms:EncryptionContext:";

/// The multivalued key listing the request's encryption-context keys.
pub const ENCRYPTION_CONTEXT_KEYS: &str = "kms:EncryptionContextKeys";

/// The caller's account id.
pub const CALLER_ACCOUNT: &str = "kms:CallerAccount";

/// The caller's principal ARN (IAM global key).
pub const PRINCIPAL_ARN: &str = "aws:PrincipalArn";

/// The encryption-context key the enclave template reserves (`ccc:purpose`); callers of the
/// template's API may not send `ccc:` keys. Must equal the template's
/// `protocol::PURPOSE_KEY` (checked by the template's tests).
pub const PURPOSE_KEY: &str = "ccc:purpose";

/// The purpose under which the template seals (`ccc:purpose=seal`): the data key of every
/// sealed blob is bound to it. Nobody outside the enclave may `Encrypt` with it, or they could
/// choose a data key and mint a blob the enclave would open.
pub const SEALING_PURPOSE: &str = "seal";

/// `kms:EncryptionContext:ccc:purpose`.
#[must_use]
pub fn purpose_condition_key() -> String {
    format!("{ENCRYPTION_CONTEXT_PREFIX}{PURPOSE_KEY}")
}

/// Whether `key` is an attestation condition key (compared case-insensitively, as AWS does).
#[must_use]
pub fn is_attestation_key(key: &str) -> bool {
    key.get(..RECIPIENT_ATTESTATION_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RECIPIENT_ATTESTATION_PREFIX))
}

/// The PCR an attestation condition key pins (`ImageSha384` is PCR0), if it names one.
#[must_use]
pub fn pcr_of(key: &str) -> Option<u8> {
    if !is_attestation_key(key) {
        return None;
    }
    let name = key.get(RECIPIENT_ATTESTATION_PREFIX.len()..)?;
    if name.eq_ignore_ascii_case("ImageSha384") {
        return Some(0);
    }
    name.get(..3).filter(|p| p.eq_ignore_ascii_case("PCR"))?;
    name.get(3..)?.parse().ok()
}

/// The actions whose answer carries a secret of the key (with a `Recipient`, only as
/// `CiphertextForRecipient`): an Allow of one of them must be pinned to the enclave's image.
pub const SECRET_ACTIONS: [&str; 4] = [
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:DeriveSharedSecret",
];

/// The key actions that reveal plaintext or hand it to another key without any possible
/// attestation: `ReEncryptFrom` decrypts under this key to re-encrypt under one the caller may
/// own; `CreateGrant` can allow `Decrypt` to anyone without conditions. No Allow may reach them.
pub const BYPASS_ACTIONS: [&str; 2] = ["kms:ReEncryptFrom", "kms:CreateGrant"];

/// What the enclave template's key policy denies to everyone without this image's attestation:
/// every operation that could release or move a secret of the key.
pub const DENIED_WITHOUT_ATTESTATION: [&str; 4] = [
    "kms:Decrypt",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
    "kms:DeriveSharedSecret",
];

/// Key-policy and grant changes, and replication (a replica gets a key policy of its own):
/// what the enclave's principal may never do.
pub const POLICY_CHANGE_ACTIONS: [&str; 5] = [
    "kms:PutKeyPolicy",
    "kms:CreateGrant",
    "kms:RevokeGrant",
    "kms:RetireGrant",
    "kms:ReplicateKey",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_names() {
        assert_eq!(pcr_of(IMAGE_SHA384), Some(0));
        assert_eq!(pcr_of("KMS:recipientattestation:pcr1"), Some(1));
        assert_eq!(pcr_of(PCR8), Some(8));
        assert_eq!(pcr_of("kms:RecipientAttestation:PCRx"), None);
        assert_eq!(pcr_of("kms:EncryptionContext:PCR1"), None);
        assert!(is_attestation_key(PCR2));
        assert!(!is_attestation_key("kms:Recipient"));
        assert_eq!(purpose_condition_key(), "kms:EncryptionContext:ccc:purpose");
    }
}
