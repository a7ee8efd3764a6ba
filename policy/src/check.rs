//! `check`: a linter for key policies (and IAM identity policies) that guard an enclave's key.
//!
//! Each [`Rule`] is a mistake that lets someone other than the measured enclave reach a secret
//! of the key, or lets the parent change who may. Rules about conditions and principals read
//! the statements; the rules about what the policy *does* ([`Rule::NoExplicitDeny`],
//! [`Rule::EnclaveCanChangePolicy`], [`Rule::EncryptCanMintSealedBlobs`],
//! [`Rule::NoPolicyAdministrator`]) ask the evaluator — the same one the KMS emulator enforces —
//! about probe requests, so a policy written differently from CCC's template is judged by
//! what it means.
//!
//! A finding prints as one line: `finding: <rule-id>: <where>: <what, and the fix>`.

use crate::document::{
    Condition, Effect, Kind, Matcher, Operator, Policy, PrincipalPattern, Statement, account_of,
    account_wide, action_matches,
};
use crate::evaluate::RequestContext;
use crate::keys::{
    BYPASS_ACTIONS, ENCRYPTION_CONTEXT_KEYS, POLICY_CHANGE_ACTIONS, PURPOSE_KEY, SEALING_PURPOSE,
    SECRET_ACTIONS, is_attestation_key, pcr_of, purpose_condition_key,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// An Allow names everyone (`"*"`, `{"AWS": "*"}`) or uses `NotPrincipal`.
    WildcardPrincipal,
    /// An Allow of a secret-releasing action (`Decrypt`, `GenerateDataKey`,
    /// `GenerateDataKeyPair`, `DeriveSharedSecret`) without a positive attestation condition.
    AllowWithoutAttestation,
    /// An Allow of `ReEncryptFrom` or `CreateGrant`, which route around attestation.
    AttestationBypass,
    /// `kms:*` (or `*`) allowed to the enclave's principal.
    KmsStarToEnclave,
    /// A case-sensitive operator (`StringEquals`, `StringLike`, ...) on a PCR condition.
    CaseSensitivePcr,
    /// A PCR value with upper-case hex.
    UppercasePcr,
    /// An all-zero PCR value (debug-mode enclaves report zeros).
    ZeroPcr,
    /// A PCR value that is not 96 hex digits.
    MalformedPcr,
    /// An Allow pinned by PCR2 without PCR0/ImageSha384, PCR1 or PCR8: the kernel command line
    /// is not pinned.
    Pcr2Only,
    /// An Allow whose attestation conditions pin no image measurement (PCR0/1/2 or PCR8).
    NoImagePin,
    /// Key administration (`PutKeyPolicy`, grants) allowed to an account root, i.e. to IAM.
    AdminViaAccountRoot,
    /// A secret-releasing request without attestation, or with another PCR, is only implicitly
    /// denied.
    NoExplicitDeny,
    /// The enclave's principal is not explicitly denied key-policy and grant changes.
    EnclaveCanChangePolicy,
    /// Someone may `Encrypt` with the enclave's reserved sealing context.
    EncryptCanMintSealedBlobs,
    /// Nobody may change the policy any more.
    NoPolicyAdministrator,
    /// A debug-mode document (PCR0, PCR1, PCR2 and PCR8 all zero) gets a secret, and the
    /// environment does not accept debug mode ([`Options::accept_debug_mode`]).
    AcceptsDebugMode,
}

impl Rule {
    /// The rule's id, as printed.
    #[must_use]
    pub fn id(self) -> &'static str {
        match self {
            Self::WildcardPrincipal => "wildcard-principal",
            Self::AllowWithoutAttestation => "allow-without-attestation",
            Self::AttestationBypass => "attestation-bypass",
            Self::KmsStarToEnclave => "kms-star-to-enclave",
            Self::CaseSensitivePcr => "case-sensitive-pcr",
            Self::UppercasePcr => "uppercase-pcr",
            Self::ZeroPcr => "zero-pcr",
            Self::MalformedPcr => "malformed-pcr",
            Self::Pcr2Only => "pcr2-only",
            Self::NoImagePin => "no-image-pin",
            Self::AdminViaAccountRoot => "admin-via-account-root",
            Self::NoExplicitDeny => "no-explicit-deny",
            Self::EnclaveCanChangePolicy => "enclave-can-change-policy",
            Self::EncryptCanMintSealedBlobs => "encrypt-can-mint-sealed-blobs",
            Self::NoPolicyAdministrator => "no-policy-administrator",
            Self::AcceptsDebugMode => "accepts-debug-mode",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// Which rule.
    pub rule: Rule,
    /// Where: `Statement[2] "Sid"`, a condition inside it, or `(policy)`.
    pub location: String,
    /// What is wrong, and the fix.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "finding: {}: {}: {}",
            self.rule, self.location, self.message
        )
    }
}

fn location(statement: &Statement) -> String {
    match &statement.sid {
        Some(sid) => format!("Statement[{}] {sid:?}", statement.index),
        None => format!("Statement[{}]", statement.index),
    }
}

const POLICY: &str = "(policy)";

/// The principal probes use for an account-wide pattern, and for everyone.
const PROBE_ROLE: &str = "ccc-policy-check-probe";
/// The account probes use for `"*"`: one no real policy names.
const PROBE_FOREIGN_ACCOUNT: &str = "999999999999";
/// The resource probes name.
const PROBE_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/ccc-policy-check-probe";
/// A PCR value no image has (probes of a wrong measurement).
const PROBE_WRONG_PCR: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// What the policy's environment accepts, which changes what is a mistake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The environment accepts debug-mode documents (a development environment that says so
    /// in `deploy/environments.toml`): all-zero PCR values are then intended, and
    /// [`Rule::ZeroPcr`] and [`Rule::AcceptsDebugMode`] do not apply.
    pub accept_debug_mode: bool,
}

/// Lints a policy for an environment that accepts nothing beyond its images (production's
/// rules); the findings in statement order, then the policy-wide ones.
#[must_use]
pub fn check(policy: &Policy) -> Vec<Finding> {
    check_with(policy, Options::default())
}

/// Lints a policy with an environment's [`Options`].
#[must_use]
pub fn check_with(policy: &Policy, options: Options) -> Vec<Finding> {
    let mut findings = Vec::new();
    let enclave = enclave_principals(policy);
    for statement in &policy.statements {
        check_statement(statement, &enclave, options, &mut findings);
    }
    if policy.kind == Kind::Key {
        check_behaviour(policy, &enclave, options, &mut findings);
    }
    findings
}

/// Whether a statement's `Action` reaches `action`.
fn covers(statement: &Statement, action: &str) -> bool {
    match &statement.action {
        Matcher::Any => true,
        Matcher::Only(list) => list.iter().any(|p| action_matches(p, action)),
        Matcher::Not(list) => !list.iter().any(|p| action_matches(p, action)),
    }
}

/// A positive, unconditional-on-presence attestation condition: one that fails when the
/// request carries no attestation.
fn pins_attestation(condition: &Condition) -> bool {
    is_attestation_key(&condition.key)
        && !condition.operator.negated()
        && !condition.if_exists
        && condition.operator != Operator::Null
        && condition.qualifier != crate::document::SetQualifier::ForAllValues
}

/// The principals of Allow statements pinned by attestation: the enclave's (its parent's role).
fn enclave_principals(policy: &Policy) -> BTreeSet<String> {
    policy
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow && s.conditions.iter().any(pins_attestation))
        .flat_map(|s| match &s.principal {
            Matcher::Only(list) => list
                .iter()
                .filter_map(|p| match p {
                    PrincipalPattern::Aws(arn) if !account_wide(arn) => Some(arn.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn add(out: &mut Vec<Finding>, rule: Rule, location: &str, message: String) {
    out.push(Finding {
        rule,
        location: location.to_owned(),
        message,
    });
}

fn check_statement(
    statement: &Statement,
    enclave: &BTreeSet<String>,
    options: Options,
    out: &mut Vec<Finding>,
) {
    let here = location(statement);
    let push = |out: &mut Vec<Finding>, rule, message: String| add(out, rule, &here, message);
    if statement.effect == Effect::Allow {
        match &statement.principal {
            Matcher::Only(list) if list.contains(&PrincipalPattern::Everyone) => push(
                out,
                Rule::WildcardPrincipal,
                "allows everyone (Principal \"*\"): name the roles, e.g. {\"AWS\": \
                 \"arn:aws:iam::111122223333:role/Name\"}"
                    .into(),
            ),
            Matcher::Not(_) => push(
                out,
                Rule::WildcardPrincipal,
                "allows everyone but the NotPrincipal list: name the roles in Principal instead"
                    .into(),
            ),
            _ => {}
        }
        let pinned = statement.conditions.iter().any(pins_attestation);
        let secret: Vec<&str> = SECRET_ACTIONS
            .iter()
            .copied()
            .filter(|a| covers(statement, a))
            .collect();
        if !secret.is_empty() && !pinned {
            push(
                out,
                Rule::AllowWithoutAttestation,
                format!(
                    "allows {} without a kms:RecipientAttestation condition: whoever holds \
                     these credentials (the parent supplies them) gets the plaintext; add \
                     StringEqualsIgnoreCase on kms:RecipientAttestation:ImageSha384, PCR1 and \
                     PCR2 with the image's values",
                    secret.join(", ")
                ),
            );
        }
        let bypass: Vec<&str> = BYPASS_ACTIONS
            .iter()
            .copied()
            .filter(|a| covers(statement, a))
            .collect();
        if !bypass.is_empty() {
            push(
                out,
                Rule::AttestationBypass,
                format!(
                    "allows {}: kms:ReEncryptFrom decrypts under this key without attestation \
                     (re-encrypting under a key the caller may own) and kms:CreateGrant can \
                     grant Decrypt without conditions; remove them",
                    bypass.join(", ")
                ),
            );
        }
        let star = matches!(&statement.action, Matcher::Only(list)
            if list.iter().any(|a| a == "*" || a.eq_ignore_ascii_case("kms:*")));
        let to_enclave: Vec<&String> = match &statement.principal {
            Matcher::Only(list) => list
                .iter()
                .filter_map(|p| match p {
                    PrincipalPattern::Aws(arn) if enclave.contains(arn) => Some(arn),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if star && !to_enclave.is_empty() {
            push(
                out,
                Rule::KmsStarToEnclave,
                format!(
                    "allows kms:* to the enclave's principal {}: it could change the policy, \
                     create grants or re-encrypt; allow kms:Decrypt and kms:GenerateDataKey \
                     only",
                    to_enclave
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let admin: Vec<&str> = ["kms:PutKeyPolicy", "kms:CreateGrant"]
            .into_iter()
            .filter(|a| covers(statement, a))
            .collect();
        let roots: Vec<&String> = match &statement.principal {
            Matcher::Only(list) => list
                .iter()
                .filter_map(|p| match p {
                    PrincipalPattern::Aws(arn) if account_wide(arn) => Some(arn),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if !admin.is_empty() && !roots.is_empty() && statement.conditions.is_empty() {
            push(
                out,
                Rule::AdminViaAccountRoot,
                format!(
                    "allows {} to {}, which hands the decision to IAM: any role of the account \
                     with broad IAM rights, the parent instance's included, could rewrite this \
                     policy; name a key-administrator role instead \
                     (arn:aws:iam::ACCOUNT:role/KEY_ADMIN_ROLE)",
                    admin.join(", "),
                    roots
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    let mut keys = BTreeSet::new();
    for condition in &statement.conditions {
        if !is_attestation_key(&condition.key) {
            continue;
        }
        let at = format!("{here} {} {}", condition.operator_text, condition.key);
        let push_at = |out: &mut Vec<Finding>, rule, message: String| add(out, rule, &at, message);
        if statement.effect == Effect::Allow
            && pins_attestation(condition)
            && let Some(pcr) = pcr_of(&condition.key)
        {
            keys.insert(pcr);
        }
        if !condition.operator.ignores_case() && condition.operator != Operator::Null {
            let fix = if condition.operator.negated() {
                "StringNotEqualsIgnoreCase"
            } else {
                "StringEqualsIgnoreCase"
            };
            push_at(
                out,
                Rule::CaseSensitivePcr,
                format!(
                    "compares the PCR case-sensitively: the same measurement written in another \
                     case would not match; use {fix}, as AWS's examples do"
                ),
            );
        }
        if condition.operator == Operator::Null {
            continue;
        }
        for value in &condition.values {
            if value.len() != 96 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                push_at(
                    out,
                    Rule::MalformedPcr,
                    format!(
                        "`{value}` is not 96 hex digits (a SHA-384 measurement as `nitro-cli \
                         describe-eif` prints it)"
                    ),
                );
            } else if value.bytes().all(|b| b == b'0') {
                if options.accept_debug_mode {
                    continue;
                }
                push_at(
                    out,
                    Rule::ZeroPcr,
                    "pins all zeros, what every debug-mode enclave reports (its memory is \
                     readable by the parent): pin the image's real measurement"
                        .into(),
                );
            } else if value.bytes().any(|b| b.is_ascii_uppercase()) {
                push_at(
                    out,
                    Rule::UppercasePcr,
                    "has upper-case hex; KMS supplies lower-case values: write the value in \
                     lower case as `nitro-cli describe-eif` prints it"
                        .into(),
                );
            }
        }
    }
    if !keys.is_empty() {
        let has = |n: u8| keys.contains(&n);
        if has(2) && !has(0) && !has(1) && !has(8) {
            push(
                out,
                Rule::Pcr2Only,
                "pins PCR2 (the application) but neither PCR0/ImageSha384 nor PCR1 (kernel and \
                 command line): a parent can boot the same application with its own kernel \
                 command line; pin kms:RecipientAttestation:ImageSha384 and PCR1 as well"
                    .into(),
            );
        } else if !has(0) && !has(1) && !has(2) && !has(8) {
            push(
                out,
                Rule::NoImagePin,
                "pins no measurement of the image (PCR0/ImageSha384, PCR1, PCR2 or PCR8): any \
                 enclave on the right instance or role satisfies it; pin ImageSha384, PCR1 and \
                 PCR2"
                    .into(),
            );
        }
    }
}

/// The principal ARN a probe request uses for a principal pattern.
fn probe_caller(pattern: &PrincipalPattern) -> Option<String> {
    match pattern {
        PrincipalPattern::Everyone => Some(format!(
            "arn:aws:iam::{PROBE_FOREIGN_ACCOUNT}:role/{PROBE_ROLE}"
        )),
        PrincipalPattern::Aws(p) if account_wide(p) => {
            let account = if p.starts_with("arn:") {
                account_of(p)?
            } else {
                p.as_str()
            };
            Some(format!("arn:aws:iam::{account}:role/{PROBE_ROLE}"))
        }
        PrincipalPattern::Aws(p) => Some(p.clone()),
        PrincipalPattern::Service(_) => None,
    }
}

/// A principal as the policy names it, and the caller a probe request uses for it.
struct Named {
    written: String,
    caller: String,
}

/// Every principal an Allow names (first occurrence order).
fn named_callers(policy: &Policy, filter: impl Fn(&Statement) -> bool) -> Vec<Named> {
    let mut out: Vec<Named> = Vec::new();
    for statement in policy
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow && filter(s))
    {
        if let Matcher::Only(list) = &statement.principal {
            for pattern in list {
                let Some(caller) = probe_caller(pattern) else {
                    continue;
                };
                let written = match pattern {
                    PrincipalPattern::Aws(arn) => arn.clone(),
                    _ => "*".to_owned(),
                };
                if !out.iter().any(|n| n.caller == caller) {
                    out.push(Named { written, caller });
                }
            }
        }
    }
    out
}

/// The values each attestation-pinned Allow statement requires, by condition key (one map per
/// statement, in policy order).
pub(crate) fn pinned_sets(policy: &Policy) -> Vec<BTreeMap<String, String>> {
    policy
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
        .map(|statement| {
            statement
                .conditions
                .iter()
                .filter(|c| pins_attestation(c))
                .filter_map(|c| Some((c.key.clone(), c.values.first()?.clone())))
                .collect::<BTreeMap<String, String>>()
        })
        .filter(|set| !set.is_empty())
        .collect()
}

fn check_behaviour(
    policy: &Policy,
    enclave: &BTreeSet<String>,
    options: Options,
    out: &mut Vec<Finding>,
) {
    let mut push = |rule, message: String| {
        out.push(Finding {
            rule,
            location: POLICY.to_owned(),
            message,
        });
    };
    // Secret-releasing actions someone is allowed: without attestation, or with one PCR of an
    // Allow's set off, the answer must be an explicit deny.
    let sets = pinned_sets(policy);
    let allowed_secret: Vec<&str> = SECRET_ACTIONS
        .iter()
        .copied()
        .filter(|a| {
            policy
                .statements
                .iter()
                .any(|s| s.effect == Effect::Allow && covers(s, a))
        })
        .collect();
    let secret_callers = named_callers(policy, |s| SECRET_ACTIONS.iter().any(|a| covers(s, a)));
    // One probe group per description: without attestation, then each pinned key changed in
    // each set that pins it.
    let mut probes: Vec<(String, Vec<BTreeMap<String, String>>)> =
        vec![("without attestation".to_owned(), vec![BTreeMap::new()])];
    let keys: BTreeSet<&String> = sets.iter().flat_map(|s| s.keys()).collect();
    for key in keys {
        let variants = sets
            .iter()
            .filter(|set| set.contains_key(key))
            .map(|set| {
                let mut values = set.clone();
                values.insert(key.clone(), PROBE_WRONG_PCR.to_owned());
                values
            })
            .collect();
        probes.push((format!("with another {key}"), variants));
    }
    let request = |caller: &str, action: &str, values: &BTreeMap<String, String>| {
        let mut ctx = RequestContext::new(caller, action, PROBE_KEY);
        for (key, value) in values {
            ctx.set(key, value.clone());
        }
        policy.evaluate(&ctx)
    };
    for (what, variants) in &probes {
        let mut implicit: Vec<String> = Vec::new();
        for action in &allowed_secret {
            for named in &secret_callers {
                let open = variants
                    .iter()
                    .any(|values| !request(&named.caller, action, values).is_explicitly_denied());
                let entry = format!("{action} by {}", named.written);
                if open && !implicit.contains(&entry) {
                    implicit.push(entry);
                }
            }
        }
        if !implicit.is_empty() {
            push(
                Rule::NoExplicitDeny,
                format!(
                    "a request {what} is not explicitly denied ({}): only the absence of an \
                     Allow stops it, which any added statement, grant or IAM policy could \
                     change; add Deny statements for Principal \"*\" on kms:Decrypt, \
                     kms:GenerateDataKey*, kms:ReEncrypt* and kms:DeriveSharedSecret with \
                     StringNotEqualsIgnoreCase on each pinned kms:RecipientAttestation key, one \
                     statement per key",
                    implicit.join(", ")
                ),
            );
        }
    }
    // A debug-mode document: PCR0, PCR1, PCR2 and PCR8 zero, the parent's PCR3/PCR4 as each set
    // pins them (debug mode does not clear those).
    if !options.accept_debug_mode {
        let zero = crate::hex::zero_pcr();
        let mut debug_probes: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        debug_probes.extend(sets.iter().map(|set| {
            set.iter()
                .filter(|(key, _)| matches!(pcr_of(key), Some(3 | 4)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }));
        let mut allowed: Vec<String> = Vec::new();
        for parent in &mut debug_probes {
            for index in [0u8, 1, 2, 8] {
                parent.insert(crate::template::pcr_key(index), zero.clone());
            }
            for action in &allowed_secret {
                for named in &secret_callers {
                    let entry = format!("{action} by {}", named.written);
                    if request(&named.caller, action, parent).is_allowed()
                        && !allowed.contains(&entry)
                    {
                        allowed.push(entry);
                    }
                }
            }
        }
        if !allowed.is_empty() {
            push(
                Rule::AcceptsDebugMode,
                format!(
                    "a debug-mode document (PCR0, PCR1, PCR2 and PCR8 all zero) is allowed ({}): \
                     the parent can read a debug enclave's memory through its console, so the \
                     secret would reach the parent; remove the Allow that admits all-zero PCRs \
                     (only a development environment with accept_debug_mode = true may have \
                     one)",
                    allowed.join(", ")
                ),
            );
        }
    }
    // The enclave's principal must be denied key-policy and grant changes explicitly.
    for principal in enclave {
        let open: Vec<&str> = POLICY_CHANGE_ACTIONS
            .iter()
            .copied()
            .filter(|action| {
                !policy
                    .evaluate(&RequestContext::new(principal, *action, PROBE_KEY))
                    .is_explicitly_denied()
            })
            .collect();
        if !open.is_empty() {
            push(
                Rule::EnclaveCanChangePolicy,
                format!(
                    "the enclave's principal {principal} is not explicitly denied {}: the \
                     parent holds that role's credentials, and its IAM policies (or an account \
                     root statement) could let it rewrite the policy or grant itself Decrypt; \
                     add a Deny of these actions for it",
                    open.join(", ")
                ),
            );
        }
    }
    // Nobody may Encrypt with the reserved sealing context.
    let encrypt_callers = named_callers(policy, |s| covers(s, "kms:Encrypt"));
    let minting: Vec<&str> = encrypt_callers
        .iter()
        .filter(|named| {
            let mut ctx = RequestContext::new(&named.caller, "kms:Encrypt", PROBE_KEY);
            ctx.set(&purpose_condition_key(), SEALING_PURPOSE);
            ctx.set_many(ENCRYPTION_CONTEXT_KEYS, vec![PURPOSE_KEY.to_owned()]);
            policy.evaluate(&ctx).is_allowed()
        })
        .map(|named| named.written.as_str())
        .collect();
    if !minting.is_empty() {
        push(
            Rule::EncryptCanMintSealedBlobs,
            format!(
                "{} may kms:Encrypt with the enclave's reserved context \
                 {PURPOSE_KEY}={SEALING_PURPOSE}: they could choose a data key, wrap it under \
                 this key and build a sealed blob the enclave would open as its own; add a Deny \
                 of kms:Encrypt for Principal \"*\" with StringEqualsIgnoreCase \
                 {{\"{}\": \"{SEALING_PURPOSE}\"}}",
                minting.join(", "),
                purpose_condition_key()
            ),
        );
    }
    // Somebody must still be able to change the policy.
    let administrators = named_callers(policy, |s| covers(s, "kms:PutKeyPolicy"));
    let can_administer = administrators.iter().any(|named| {
        policy
            .evaluate(&RequestContext::new(
                &named.caller,
                "kms:PutKeyPolicy",
                PROBE_KEY,
            ))
            .is_allowed()
    });
    if !can_administer {
        push(
            Rule::NoPolicyAdministrator,
            "no principal may kms:PutKeyPolicy: nobody could ever change or recover the key, \
             and KMS refuses such a policy (without BypassPolicyLockoutSafetyCheck); allow it to \
             a key-administrator role"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{ImagePins, Principals, iam_policy, key_policy};

    fn hex_of(byte: u8) -> String {
        std::iter::repeat_n(format!("{byte:02x}"), 48).collect()
    }

    fn rules(json: &str) -> Vec<Rule> {
        check(&Policy::parse_any(json).unwrap())
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn the_template_has_no_findings() {
        let pins = ImagePins::new(&hex_of(1), &hex_of(2), &hex_of(3)).unwrap();
        for principals in [
            Principals::placeholders(),
            Principals::new("111122223333", "Parent", "KeyAdmin").unwrap(),
        ] {
            let findings = check(&Policy::parse(&key_policy(&pins, &principals)).unwrap());
            assert!(findings.is_empty(), "{findings:#?}");
        }
        let findings = check(&Policy::parse_any(&iam_policy(&pins)).unwrap());
        assert!(findings.is_empty(), "{findings:#?}");
    }

    /// Each rule on a policy that breaks it, alongside the otherwise sound template.
    #[test]
    fn each_rule_fires_on_its_mistake() {
        let pins = ImagePins::new(&hex_of(1), &hex_of(2), &hex_of(3)).unwrap();
        let base: serde_json::Value =
            serde_json::from_str(&key_policy(&pins, &Principals::placeholders())).unwrap();
        let with = |extra: serde_json::Value| {
            let mut policy = base.clone();
            policy["Statement"].as_array_mut().unwrap().push(extra);
            policy.to_string()
        };
        let enclave_condition = |op: &str, pcr2: &str| {
            serde_json::json!({op: {
                "kms:RecipientAttestation:ImageSha384": hex_of(1),
                "kms:RecipientAttestation:PCR1": hex_of(2),
                "kms:RecipientAttestation:PCR2": pcr2}})
        };
        let cases: Vec<(serde_json::Value, Rule)> = vec![
            (
                serde_json::json!({"Effect": "Allow", "Principal": "*", "Action": "kms:DescribeKey", "Resource": "*"}),
                Rule::WildcardPrincipal,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/Reader"}, "Action": "kms:Decrypt", "Resource": "*"}),
                Rule::AllowWithoutAttestation,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/Reader"}, "Action": "kms:Decrypt", "Resource": "*",
                    "Condition": {"StringEqualsIgnoreCaseIfExists": {"kms:RecipientAttestation:PCR2": hex_of(3)}}}),
                Rule::AllowWithoutAttestation,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/KEY_ADMIN_ROLE"}, "Action": "kms:Re*", "Resource": "*"}),
                Rule::AttestationBypass,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/ROLE"}, "Action": "kms:*", "Resource": "*",
                    "Condition": enclave_condition("StringEqualsIgnoreCase", &hex_of(3))}),
                Rule::KmsStarToEnclave,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/ROLE"}, "Action": "kms:Decrypt", "Resource": "*",
                    "Condition": enclave_condition("StringEquals", &hex_of(3))}),
                Rule::CaseSensitivePcr,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/ROLE"}, "Action": "kms:Decrypt", "Resource": "*",
                    "Condition": enclave_condition("StringEqualsIgnoreCase", &hex_of(0xab).to_uppercase())}),
                Rule::UppercasePcr,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/ROLE"}, "Action": "kms:Decrypt", "Resource": "*",
                    "Condition": enclave_condition("StringEqualsIgnoreCase", &"0".repeat(96))}),
                Rule::ZeroPcr,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/ROLE"}, "Action": "kms:Decrypt", "Resource": "*",
                    "Condition": enclave_condition("StringEqualsIgnoreCase", "abc")}),
                Rule::MalformedPcr,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/ROLE"}, "Action": "kms:Decrypt", "Resource": "*",
                    "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR2": hex_of(3)}}}),
                Rule::Pcr2Only,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:role/ROLE"}, "Action": "kms:Decrypt", "Resource": "*",
                    "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR3": hex_of(4)}}}),
                Rule::NoImagePin,
            ),
            (
                serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::ACCOUNT:root"}, "Action": "kms:PutKeyPolicy", "Resource": "*"}),
                Rule::AdminViaAccountRoot,
            ),
        ];
        for (extra, rule) in cases {
            let found = rules(&with(extra.clone()));
            assert!(found.contains(&rule), "{rule}: {found:?} for {extra}");
        }
        // The behavioural rules: remove the statement that provides each property.
        let without = |sid: &str| {
            let mut policy = base.clone();
            policy["Statement"]
                .as_array_mut()
                .unwrap()
                .retain(|s| s["Sid"] != sid);
            rules(&policy.to_string())
        };
        assert_eq!(
            without("DenySecretsUnlessPCR1Matches"),
            [Rule::NoExplicitDeny]
        );
        assert_eq!(
            without("DenyPolicyAndGrantChangesToTheEnclaveRole"),
            [Rule::EnclaveCanChangePolicy]
        );
        // The operators' Allow excludes the sealing purpose itself; without it and the Deny,
        // anyone of the account could mint sealed blobs.
        let mut open = base.clone();
        let statements = open["Statement"].as_array_mut().unwrap();
        statements.retain(|s| s["Sid"] != "DenyMintingSealedBlobs");
        for s in statements.iter_mut() {
            if s["Sid"] == "OperatorsEncryptButNeverSeal" {
                s.as_object_mut().unwrap().remove("Condition");
            }
        }
        assert_eq!(rules(&open.to_string()), [Rule::EncryptCanMintSealedBlobs]);
        assert_eq!(without("KeyAdministration"), [Rule::NoPolicyAdministrator]);
    }

    #[test]
    fn findings_print_on_one_line_with_rule_and_place() {
        let json = r#"{"Statement": [{"Sid": "Open", "Effect": "Allow", "Principal": "*",
            "Action": "kms:Decrypt", "Resource": "*"}]}"#;
        let findings = check(&Policy::parse(json).unwrap());
        let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert!(
            lines[0]
                .starts_with("finding: wildcard-principal: Statement[0] \"Open\": allows everyone"),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with(
                "finding: allow-without-attestation: Statement[0] \"Open\": allows kms:Decrypt"
            )),
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }
}
