//! Evaluation of a policy for one request, with a trace of every statement and condition.
//!
//! Order, as AWS documents it (IAM user guide, "Policy evaluation logic"): an explicit `Deny`
//! whose principal, action, resource and conditions all match wins; otherwise a matching
//! `Allow` allows; otherwise the request is implicitly denied.
//!
//! Conditions, as the IAM user guide documents them ("IAM JSON policy elements: Condition
//! operators" and "Single-valued vs. multivalued context keys"):
//! - every operator of a statement, and every key under one operator, must hold (AND); the
//!   values listed for one key are alternatives (OR), and for a negated operator
//!   (`StringNotEquals`, `StringNotEqualsIgnoreCase`, `StringNotLike`, `ArnNotLike`) none of
//!   them may match (NOR);
//! - a key absent from the request: a positive operator does not hold, a negated one does
//!   ("If the policy condition requires that the key is not matched, such as StringNotLike or
//!   ArnNotLike, and the right key is not present, the condition is true"); so a `Deny` with
//!   `StringNotEqualsIgnoreCase` on `kms:RecipientAttestation:PCR2` also denies a request that
//!   carries no attestation at all. `...IfExists` holds when the key is absent; `Null` tests
//!   presence itself;
//! - `ForAllValues:` holds when every request value satisfies the operator, and when the key
//!   is absent or empty; `ForAnyValue:` holds when at least one does, and never when the key is
//!   absent or empty.
//!
//! The result is an [`Evaluation`]: the [`Decision`] and a [`StatementTrace`] per statement
//! (did principal, action and resource match; each condition's operator, key, policy values,
//! request values and outcome). The emulator's `AccessDeniedException` message is rendered from
//! it ([`Evaluation::message`]), and so can any other explanation of a decision.

use crate::document::{
    Condition, Effect, Matcher, Operator, Policy, PrincipalPattern, SetQualifier, Statement,
    action_matches, matcher_holds, principal_matches, statement_name, wildcard_match,
};
use crate::keys::{self, RECIPIENT_ATTESTATION_PREFIX};
use std::collections::BTreeMap;

/// What the evaluator knows about one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The caller's principal ARN (`arn:aws:iam::111122223333:role/Enclave`,
    /// `arn:aws:sts::111122223333:assumed-role/Enclave/session`, ...).
    pub principal_arn: String,
    /// The action, e.g. `kms:Decrypt`.
    pub action: String,
    /// The key ARN the request is for (`*` for operations without a key).
    pub resource: String,
    /// Condition keys present in the request, lower-cased, e.g.
    /// `kms:recipientattestation:pcr1` → hex. Keys are compared case-insensitively, as AWS
    /// does; use [`RequestContext::set`] to add one.
    pub keys: BTreeMap<String, Vec<String>>,
}

impl RequestContext {
    /// A context for `principal_arn` doing `action` on `resource`, without condition keys.
    #[must_use]
    pub fn new(
        principal_arn: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            principal_arn: principal_arn.into(),
            action: action.into(),
            resource: resource.into(),
            keys: BTreeMap::new(),
        }
    }

    /// The context KMS builds for a request (what the KMS emulator evaluates, and what
    /// `explain` shows): `aws:PrincipalArn`, `kms:CallerAccount`, each pair of the encryption
    /// context as `kms:EncryptionContext:<key>` with `kms:EncryptionContextKeys`, and, for an
    /// attested request (a verified `Recipient`), `kms:RecipientAttestation:PCR<n>` for every
    /// PCR of the document and `kms:RecipientAttestation:ImageSha384` (PCR0), lowercase hex.
    /// `action` is the operation's name (`Decrypt`) or the action (`kms:Decrypt`).
    #[must_use]
    pub fn for_kms(
        principal_arn: &str,
        action: &str,
        resource: &str,
        encryption_context: &BTreeMap<String, String>,
        attestation: Option<&BTreeMap<u8, Vec<u8>>>,
    ) -> Self {
        let action = if action.contains(':') {
            action.to_owned()
        } else {
            format!("kms:{action}")
        };
        let mut ctx = Self::new(principal_arn, action, resource);
        ctx.set(keys::PRINCIPAL_ARN, principal_arn);
        if let Some(account) = crate::document::account_of(principal_arn) {
            ctx.set(keys::CALLER_ACCOUNT, account);
        }
        for (k, v) in encryption_context {
            ctx.set(
                &format!("{}{k}", keys::ENCRYPTION_CONTEXT_PREFIX),
                v.clone(),
            );
        }
        if !encryption_context.is_empty() {
            ctx.set_many(
                keys::ENCRYPTION_CONTEXT_KEYS,
                encryption_context.keys().cloned().collect(),
            );
        }
        if let Some(pcrs) = attestation {
            for (index, value) in pcrs {
                ctx.set(
                    &format!("{}PCR{index}", keys::RECIPIENT_ATTESTATION_PREFIX),
                    crate::hex::encode(value),
                );
            }
            if let Some(pcr0) = pcrs.get(&0) {
                ctx.set(keys::IMAGE_SHA384, crate::hex::encode(pcr0));
            }
        }
        ctx
    }

    /// Adds (or replaces) a single-valued condition key.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.keys
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
    }

    /// Adds (or replaces) a multivalued condition key (e.g. `kms:EncryptionContextKeys`).
    pub fn set_many(&mut self, key: &str, values: Vec<String>) {
        self.keys.insert(key.to_ascii_lowercase(), values);
    }

    /// The values of a condition key, if the request has it.
    #[must_use]
    pub fn values(&self, key: &str) -> Option<&[String]> {
        self.keys.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

/// The outcome of evaluating a policy for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// A statement allowed it and no statement denied it.
    Allow {
        /// The first statement that allowed (`statement "Sid"` or `Statement[i]`).
        by: String,
    },
    /// One or more explicit Deny statements applied.
    ExplicitDeny {
        /// Every statement that denied.
        by: Vec<String>,
    },
    /// No Allow statement applied.
    ImplicitDeny,
}

/// How one condition came out for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConditionTrace {
    /// The operator as written, e.g. `StringNotEqualsIgnoreCase`.
    pub operator: String,
    /// Whether the operator is a negated one (`StringNotEquals...`, `StringNotLike`,
    /// `ArnNotLike`): then it holds when no policy value matches.
    pub negated: bool,
    /// The condition key, as written in the policy.
    pub key: String,
    /// The policy's values for the key.
    pub policy_values: Vec<String>,
    /// The request's values for the key; `None` when the request does not have the key.
    pub request_values: Option<Vec<String>>,
    /// Whether the condition holds.
    pub holds: bool,
}

impl ConditionTrace {
    /// One sentence for a condition of an Allow that did not hold:
    /// `condition OP KEY: request has V, policy requires W` (or "request has no KEY, ..."),
    /// W being what the condition needs.
    #[must_use]
    pub fn describe(&self) -> String {
        self.sentence(false)
    }

    /// One sentence for a condition that made a Deny apply, in the same shape, W being what
    /// the request would need for the Deny not to apply (for `StringNotEqualsIgnoreCase` on
    /// a PCR: the pinned value).
    #[must_use]
    pub fn describe_denial(&self) -> String {
        self.sentence(true)
    }

    fn sentence(&self, invert: bool) -> String {
        let wanted = if self.operator.starts_with("Null") {
            let absent = self
                .policy_values
                .first()
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if absent != invert {
                "the key to be absent".to_owned()
            } else {
                "the key to be present".to_owned()
            }
        } else if self.negated != invert {
            format!("a value other than {}", self.policy_values.join(" and "))
        } else {
            self.policy_values.join(" or ")
        };
        match self.request_values.as_deref().filter(|v| !v.is_empty()) {
            None => {
                let hint = if self
                    .key
                    .to_ascii_lowercase()
                    .starts_with(&RECIPIENT_ATTESTATION_PREFIX.to_ascii_lowercase())
                {
                    " (a Recipient with a valid attestation document supplies \
                     kms:RecipientAttestation:* keys)"
                } else {
                    ""
                };
                format!(
                    "condition {} {}: request has no {}, policy requires {wanted}{hint}",
                    self.operator, self.key, self.key
                )
            }
            Some(have) => format!(
                "condition {} {}: request has {}, policy requires {wanted}",
                self.operator,
                self.key,
                have.join(", ")
            ),
        }
    }
}

/// How one statement came out for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatementTrace {
    /// Its position in `Statement` (from 0).
    pub index: usize,
    /// Its `Sid`, if it has one.
    pub sid: Option<String>,
    /// Allow or Deny.
    pub effect: Effect,
    /// Whether `Principal` / `NotPrincipal` matched the caller (always true in identity
    /// policies).
    pub principal: bool,
    /// Whether `Action` / `NotAction` matched.
    pub action: bool,
    /// Whether `Resource` / `NotResource` matched.
    pub resource: bool,
    /// Every condition, evaluated (also when principal, action or resource did not match).
    pub conditions: Vec<ConditionTrace>,
    /// `Principal` as written (`NotPrincipal` as `all but ...`; identity policies: `(the
    /// identity)`).
    pub principal_written: String,
    /// `Action` as written (`NotAction` as `all but ...`).
    pub action_written: String,
    /// `Resource` as written (`NotResource` as `all but ...`; absent: `*`).
    pub resource_written: String,
}

impl StatementTrace {
    /// `statement "Sid"`, or `Statement[i]` without a Sid.
    #[must_use]
    pub fn name(&self) -> String {
        statement_name(self.sid.as_deref(), self.index)
    }

    /// Principal, action and resource all matched.
    #[must_use]
    pub fn targets_request(&self) -> bool {
        self.principal && self.action && self.resource
    }

    /// The statement applies: it targets the request and every condition holds.
    #[must_use]
    pub fn applies(&self) -> bool {
        self.targets_request() && self.conditions.iter().all(|c| c.holds)
    }
}

/// The decision and how every statement came out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Evaluation {
    /// Allow, explicit deny or implicit deny.
    pub decision: Decision,
    /// One trace per statement, in policy order.
    pub statements: Vec<StatementTrace>,
}

impl Evaluation {
    /// True for [`Decision::Allow`].
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self.decision, Decision::Allow { .. })
    }

    /// True for [`Decision::ExplicitDeny`].
    #[must_use]
    pub fn is_explicitly_denied(&self) -> bool {
        matches!(self.decision, Decision::ExplicitDeny { .. })
    }

    /// The sentence KMS's `AccessDeniedException` carries, extended with the reason: for an
    /// explicit deny, each denying statement with the conditions that made it apply; for an
    /// implicit deny, each Allow statement that targeted the request with the conditions that
    /// failed (an enclave rebuilt with a changed app fails PCR0 and PCR2 together, and the user
    /// needs to see both), each with the request's value and the policy's.
    #[must_use]
    pub fn message(&self, ctx: &RequestContext) -> String {
        let who = format!(
            "User: {} is not authorized to perform: {} on resource: {}",
            ctx.principal_arn, ctx.action, ctx.resource
        );
        match &self.decision {
            Decision::Allow { by } => format!("allowed by {by}"),
            Decision::ExplicitDeny { .. } => {
                let reasons: Vec<String> = self
                    .statements
                    .iter()
                    .filter(|s| s.effect == Effect::Deny && s.applies())
                    .map(|s| {
                        if s.conditions.is_empty() {
                            format!("{} denies it unconditionally", s.name())
                        } else {
                            let why: Vec<String> = s
                                .conditions
                                .iter()
                                .map(ConditionTrace::describe_denial)
                                .collect();
                            format!("{} applied because {}", s.name(), why.join(", and "))
                        }
                    })
                    .collect();
                format!(
                    "{who} with an explicit deny in a resource-based policy: {}",
                    reasons.join("; ")
                )
            }
            Decision::ImplicitDeny => {
                let near_misses: Vec<String> = self
                    .statements
                    .iter()
                    .filter(|s| s.effect == Effect::Allow && s.targets_request())
                    .map(|s| {
                        let failed: Vec<String> = s
                            .conditions
                            .iter()
                            .filter(|c| !c.holds)
                            .map(ConditionTrace::describe)
                            .collect();
                        format!(
                            "{} did not apply because {}",
                            s.name(),
                            failed.join(", and ")
                        )
                    })
                    .collect();
                if near_misses.is_empty() {
                    format!(
                        "{who} because no resource-based policy allows the {} action",
                        ctx.action
                    )
                } else {
                    format!("{who}: {}", near_misses.join("; "))
                }
            }
        }
    }
}

impl Policy {
    /// Evaluates the policy for one request.
    #[must_use]
    pub fn evaluate(&self, ctx: &RequestContext) -> Evaluation {
        let statements: Vec<StatementTrace> =
            self.statements.iter().map(|s| s.trace(ctx)).collect();
        let denied: Vec<String> = statements
            .iter()
            .filter(|s| s.effect == Effect::Deny && s.applies())
            .map(StatementTrace::name)
            .collect();
        let decision = if !denied.is_empty() {
            Decision::ExplicitDeny { by: denied }
        } else if let Some(allow) = statements
            .iter()
            .find(|s| s.effect == Effect::Allow && s.applies())
        {
            Decision::Allow { by: allow.name() }
        } else {
            Decision::ImplicitDeny
        };
        Evaluation {
            decision,
            statements,
        }
    }
}

impl Statement {
    fn trace(&self, ctx: &RequestContext) -> StatementTrace {
        let principal = |p: &PrincipalPattern| principal_matches(p, &ctx.principal_arn);
        let action = |a: &String| action_matches(a, &ctx.action);
        let resource = |r: &String| wildcard_match(r, &ctx.resource);
        StatementTrace {
            principal_written: written(&self.principal, "(the identity)", |p| match p {
                PrincipalPattern::Everyone => "*".to_owned(),
                PrincipalPattern::Aws(arn) => arn.clone(),
                PrincipalPattern::Service(service) => format!("service {service}"),
            }),
            action_written: written(&self.action, "*", Clone::clone),
            resource_written: written(&self.resource, "*", Clone::clone),
            index: self.index,
            sid: self.sid.clone(),
            effect: self.effect,
            principal: matches!(self.principal, Matcher::Any)
                || matcher_holds(&self.principal, principal),
            action: matcher_holds(&self.action, action),
            resource: matcher_holds(&self.resource, resource),
            conditions: self.conditions.iter().map(|c| c.trace(ctx)).collect(),
        }
    }
}

/// A matcher as written: the list, `all but` the list, or `any`.
fn written<T>(matcher: &Matcher<T>, any: &str, show: impl Fn(&T) -> String) -> String {
    match matcher {
        Matcher::Any => any.to_owned(),
        Matcher::Only(list) => list.iter().map(show).collect::<Vec<_>>().join(", "),
        Matcher::Not(list) => format!(
            "all but {}",
            list.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl Condition {
    fn trace(&self, ctx: &RequestContext) -> ConditionTrace {
        let present = ctx.values(&self.key).filter(|v| !v.is_empty());
        ConditionTrace {
            operator: self.operator_text.clone(),
            negated: self.operator.negated(),
            key: self.key.clone(),
            policy_values: self.values.clone(),
            request_values: present.map(<[String]>::to_vec),
            holds: self.holds(present),
        }
    }

    fn holds(&self, present: Option<&[String]>) -> bool {
        if self.operator == Operator::Null {
            // "Null": "true" means the key must be absent; "false" means present.
            let absent = present.is_none();
            return self
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&absent.to_string()));
        }
        let Some(have) = present else {
            return self.if_exists
                || match self.qualifier {
                    SetQualifier::ForAllValues => true,
                    SetQualifier::ForAnyValue => false,
                    SetQualifier::Single => self.operator.negated(),
                };
        };
        // One request value against the operator: any policy value matches (OR), or, for a
        // negated operator, none does (NOR).
        let one = |h: &String| {
            let matched = self.values.iter().any(|w| self.value_matches(h, w));
            matched != self.operator.negated()
        };
        match self.qualifier {
            SetQualifier::Single | SetQualifier::ForAnyValue => have.iter().any(one),
            SetQualifier::ForAllValues => have.iter().all(one),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCR1: &str = "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f";

    fn enclave_policy() -> Policy {
        Policy::parse(&format!(
            r#"{{
              "Version": "2012-10-17",
              "Statement": [
                {{"Sid": "Admin", "Effect": "Allow",
                  "Principal": {{"AWS": "arn:aws:iam::111122223333:root"}},
                  "Action": ["kms:Create*", "kms:Describe*", "kms:Encrypt"], "Resource": "*"}},
                {{"Sid": "EnclaveDecrypt", "Effect": "Allow",
                  "Principal": {{"AWS": "arn:aws:iam::111122223333:role/Enclave"}},
                  "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                  "Condition": {{"StringEqualsIgnoreCase": {{
                     "kms:RecipientAttestation:ImageSha384": "{zeros}1",
                     "kms:RecipientAttestation:PCR1": "{PCR1}"}}}}}}
              ]}}"#,
            zeros = "0".repeat(95)
        ))
        .unwrap()
    }

    fn ctx(principal: &str, action: &str) -> RequestContext {
        RequestContext::new(
            principal,
            action,
            "arn:aws:kms:us-east-1:111122223333:key/k",
        )
    }

    #[test]
    fn attestation_conditions_allow_only_matching_pcrs() {
        let policy = enclave_policy();
        let mut c = ctx(
            "arn:aws:sts::111122223333:assumed-role/Enclave/i-0abc",
            "kms:Decrypt",
        );
        c.set(
            "kms:RecipientAttestation:ImageSha384",
            format!("{}1", "0".repeat(95)),
        );
        c.set("kms:RecipientAttestation:PCR1", PCR1.to_ascii_uppercase());
        let evaluation = policy.evaluate(&c);
        assert_eq!(
            evaluation.decision,
            Decision::Allow {
                by: "statement \"EnclaveDecrypt\"".into()
            }
        );
        // The trace: the admin statement matched the principal (the account) but not the
        // action; the enclave's applied.
        assert!(evaluation.statements[0].principal && !evaluation.statements[0].action);
        let enclave = &evaluation.statements[1];
        assert!(enclave.applies());
        assert_eq!(enclave.conditions.len(), 2);
        assert!(enclave.conditions.iter().all(|c| c.holds));

        c.set("kms:RecipientAttestation:PCR1", "ab".repeat(48));
        let evaluation = policy.evaluate(&c);
        let text = evaluation.message(&c);
        assert_eq!(evaluation.decision, Decision::ImplicitDeny);
        assert!(text.contains("kms:RecipientAttestation:PCR1"), "{text}");
        assert!(text.contains(&"ab".repeat(48)), "{text}");
        assert!(text.contains(PCR1), "{text}");
        assert!(
            !text.contains("ImageSha384"),
            "only the failed condition is named: {text}"
        );
        let failed = &evaluation.statements[1].conditions[1];
        assert_eq!(failed.key, "kms:RecipientAttestation:PCR1");
        assert_eq!(failed.request_values, Some(vec!["ab".repeat(48)]));
        assert_eq!(failed.policy_values, vec![PCR1.to_owned()]);
        assert!(!failed.holds);

        c.set("kms:RecipientAttestation:ImageSha384", "cd".repeat(48));
        let text = policy.evaluate(&c).message(&c);
        assert!(
            text.contains("ImageSha384: request has") && text.contains("PCR1: request has"),
            "{text}"
        );
    }

    #[test]
    fn missing_recipient_keys_deny_and_say_why() {
        let policy = enclave_policy();
        let c = ctx("arn:aws:iam::111122223333:role/Enclave", "kms:Decrypt");
        let evaluation = policy.evaluate(&c);
        assert!(!evaluation.is_allowed());
        assert!(
            evaluation
                .message(&c)
                .contains("request has no kms:RecipientAttestation:"),
            "{}",
            evaluation.message(&c)
        );
        let other = ctx("arn:aws:iam::111122223333:role/Other", "kms:Sign");
        assert!(
            policy
                .evaluate(&other)
                .message(&other)
                .ends_with("because no resource-based policy allows the kms:Sign action")
        );
    }

    #[test]
    fn explicit_deny_wins_and_names_every_denying_statement() {
        let policy = Policy::parse(
            r#"{"Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:*", "Resource": "*"},
                {"Sid": "NoDecryptWithoutEnclave", "Effect": "Deny", "Principal": "*",
                 "Action": "kms:Decrypt", "Resource": "*",
                 "Condition": {"Null": {"kms:RecipientAttestation:PCR0": "true"}}},
                {"Sid": "DenyUnlessPCR2", "Effect": "Deny", "Principal": "*",
                 "Action": "kms:Decrypt", "Resource": "*",
                 "Condition": {"StringNotEqualsIgnoreCase": {"kms:RecipientAttestation:PCR2": "aa"}}}
            ]}"#,
        )
        .unwrap();
        let mut c = ctx("arn:aws:iam::111122223333:user/alice", "kms:Encrypt");
        assert!(policy.evaluate(&c).is_allowed());
        c.action = "kms:Decrypt".into();
        let evaluation = policy.evaluate(&c);
        assert_eq!(
            evaluation.decision,
            Decision::ExplicitDeny {
                by: vec![
                    "statement \"NoDecryptWithoutEnclave\"".into(),
                    "statement \"DenyUnlessPCR2\"".into()
                ]
            }
        );
        let text = evaluation.message(&c);
        assert!(text.contains("with an explicit deny"), "{text}");
        assert!(
            text.contains(
                "statement \"DenyUnlessPCR2\" applied because condition \
                 StringNotEqualsIgnoreCase kms:RecipientAttestation:PCR2: request has no \
                 kms:RecipientAttestation:PCR2, policy requires aa"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "statement \"NoDecryptWithoutEnclave\" applied because condition Null \
                 kms:RecipientAttestation:PCR0: request has no kms:RecipientAttestation:PCR0, \
                 policy requires the key to be present"
            ),
            "{text}"
        );
        c.set("kms:RecipientAttestation:PCR0", "00");
        c.set("kms:RecipientAttestation:PCR2", "bb");
        let text = policy.evaluate(&c).message(&c);
        assert!(
            text.contains("PCR2: request has bb, policy requires aa"),
            "{text}"
        );
        c.set("kms:RecipientAttestation:PCR2", "AA");
        assert!(policy.evaluate(&c).is_allowed());
        let other = ctx("arn:aws:iam::999999999999:user/mallory", "kms:Encrypt");
        assert!(!policy.evaluate(&other).is_allowed());
    }

    /// The IAM user guide's rules for absent keys and set qualifiers, one line each.
    #[test]
    fn absent_keys_and_set_qualifiers_follow_the_iam_user_guide() {
        let holds = |operator: &str, values: Option<&[&str]>| {
            let policy = Policy::parse(&format!(
                r#"{{"Statement": {{"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt",
                     "Condition": {{"{operator}": {{"k": ["a", "b"]}}}}}}}}"#
            ))
            .unwrap();
            let mut c = ctx("arn:aws:iam::1:user/u", "kms:Encrypt");
            if let Some(values) = values {
                c.set_many("k", values.iter().map(|v| (*v).to_owned()).collect());
            }
            policy.evaluate(&c).is_allowed()
        };
        // Absent key: positive operators fail, negated ones hold, IfExists holds.
        assert!(!holds("StringEquals", None));
        assert!(holds("StringNotEquals", None));
        assert!(holds("StringEqualsIfExists", None));
        assert!(holds("StringNotLike", None));
        // ForAllValues holds on an absent or empty key; ForAnyValue never does, negated or not.
        assert!(holds("ForAllValues:StringEquals", None));
        assert!(holds("ForAllValues:StringEquals", Some(&[])));
        assert!(!holds("ForAnyValue:StringEquals", None));
        assert!(!holds("ForAnyValue:StringNotEquals", None));
        // Values are OR; a negated operator's values are NOR.
        assert!(holds("StringEquals", Some(&["b"])));
        assert!(!holds("StringNotEquals", Some(&["b"])));
        assert!(holds("StringNotEquals", Some(&["c"])));
        // Set qualifiers apply the operator, negation included, to each request value.
        assert!(holds("ForAllValues:StringEquals", Some(&["a", "b"])));
        assert!(!holds("ForAllValues:StringEquals", Some(&["a", "c"])));
        assert!(!holds("ForAllValues:StringNotEquals", Some(&["a", "c"])));
        assert!(holds("ForAllValues:StringNotEquals", Some(&["c", "d"])));
        assert!(holds("ForAnyValue:StringNotEquals", Some(&["a", "c"])));
        assert!(!holds("ForAnyValue:StringNotEquals", Some(&["a", "b"])));
        // Null tests presence.
        let null = |want: &str, present: bool| {
            let policy = Policy::parse(&format!(
                r#"{{"Statement": {{"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt",
                     "Condition": {{"Null": {{"k": "{want}"}}}}}}}}"#
            ))
            .unwrap();
            let mut c = ctx("arn:aws:iam::1:user/u", "kms:Encrypt");
            if present {
                c.set("k", "v");
            }
            policy.evaluate(&c).is_allowed()
        };
        assert!(null("true", false) && !null("true", true));
        assert!(null("false", true) && !null("false", false));
    }

    /// A negated condition of an Allow that fails says what the policy excludes.
    #[test]
    fn a_failed_negated_allow_condition_names_the_excluded_value() {
        let policy = Policy::parse(
            r#"{"Statement": {"Sid": "EncryptButNeverSeal", "Effect": "Allow",
                "Principal": {"AWS": "111122223333"}, "Action": "kms:Encrypt", "Resource": "*",
                "Condition": {"StringNotEqualsIgnoreCase": {"kms:EncryptionContext:ccc:purpose": "seal"}}}}"#,
        )
        .unwrap();
        let mut c = ctx("arn:aws:iam::111122223333:user/operator", "kms:Encrypt");
        assert!(policy.evaluate(&c).is_allowed());
        c.set("kms:EncryptionContext:ccc:purpose", "SEAL");
        let evaluation = policy.evaluate(&c);
        assert_eq!(evaluation.decision, Decision::ImplicitDeny);
        assert!(
            evaluation.message(&c).ends_with(
                "statement \"EncryptButNeverSeal\" did not apply because condition \
                 StringNotEqualsIgnoreCase kms:EncryptionContext:ccc:purpose: request has SEAL, \
                 policy requires a value other than seal"
            ),
            "{}",
            evaluation.message(&c)
        );
    }

    #[test]
    fn not_action_and_arn_conditions() {
        let policy = Policy::parse(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "NotAction": "kms:Decrypt",
                "Resource": "*", "Condition": {
                  "ArnLike": {"aws:PrincipalArn": "arn:aws:sts::111122223333:assumed-role/Enclave/*"},
                  "ArnNotEquals": {"aws:PrincipalArn": "arn:aws:sts::111122223333:assumed-role/Enclave/blocked"}}}}"#,
        )
        .unwrap();
        let mut c = ctx(
            "arn:aws:sts::111122223333:assumed-role/Enclave/i-1",
            "kms:Encrypt",
        );
        c.set("aws:PrincipalArn", c.principal_arn.clone());
        assert!(policy.evaluate(&c).is_allowed());
        c.set(
            "aws:PrincipalArn",
            "arn:aws:sts::111122223333:assumed-role/Enclave/blocked",
        );
        assert!(!policy.evaluate(&c).is_allowed());
        c.set("aws:PrincipalArn", c.principal_arn.clone());
        c.action = "kms:Decrypt".into();
        let evaluation = policy.evaluate(&c);
        assert!(!evaluation.statements[0].action);
        assert!(!evaluation.is_allowed());
    }

    #[test]
    fn identity_policies_apply_to_their_identity() {
        let policy = Policy::parse_any(
            r#"{"Statement": {"Effect": "Allow", "Action": "kms:GenerateRandom", "Resource": "*",
                "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR2": "aa"}}}}"#,
        )
        .unwrap();
        let mut c = RequestContext::new("arn:aws:iam::1:role/r", "kms:GenerateRandom", "*");
        assert!(!policy.evaluate(&c).is_allowed());
        c.set("kms:RecipientAttestation:PCR2", "aa");
        let evaluation = policy.evaluate(&c);
        assert!(evaluation.is_allowed());
        assert!(evaluation.statements[0].principal);
    }
}
