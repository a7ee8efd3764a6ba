//! Key policies in AWS's JSON policy language, and their evaluation for one request.
//!
//! The subset KMS key policies use: `Statement` (one or a list) with `Sid`, `Effect`,
//! `Principal` / `NotPrincipal`, `Action` / `NotAction`, `Resource` / `NotResource` and
//! `Condition`. Evaluation follows AWS's order: an explicit `Deny` that matches wins; otherwise
//! a matching `Allow` allows; otherwise the request is implicitly denied. Condition operators:
//! `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`, `StringNotEqualsIgnoreCase`,
//! `StringLike`, `StringNotLike`, `ArnEquals`/`ArnLike`, `ArnNotEquals`/`ArnNotLike`, `Bool`
//! and `Null`, each optionally with `ForAnyValue:` /
//! `ForAllValues:` and the `...IfExists` suffix. Anything else is rejected when the policy is
//! loaded, so a policy never silently means something other than what it says.
//!
//! A denial carries the reason a user needs: which statement came closest and which condition
//! failed, with the value the request had (for example the enclave's PCR1) and the values the
//! policy wanted.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Why a policy document was refused at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Where in the document (e.g. `Statement[1].Condition`).
    pub path: String,
    /// What is wrong, and what to write instead.
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid key policy at {}: {}", self.path, self.reason)
    }
}

impl std::error::Error for PolicyError {}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The statement grants access.
    Allow,
    /// The statement refuses access, overriding any Allow.
    Deny,
}

/// A parsed key policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    sid: Option<String>,
    index: usize,
    effect: Effect,
    principal: Matcher<PrincipalPattern>,
    action: Matcher<String>,
    resource: Matcher<String>,
    conditions: Vec<Condition>,
}

/// `X` or `NotX`, or absent (matches everything).
#[derive(Debug, Clone, PartialEq)]
enum Matcher<T> {
    Any,
    Only(Vec<T>),
    Not(Vec<T>),
}

#[derive(Debug, Clone, PartialEq)]
enum PrincipalPattern {
    Everyone,
    Aws(String),
    Service(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    /// `ArnEquals` and `ArnLike` (the same in AWS): each colon-separated ARN component matched
    /// with wildcards on its own.
    ArnLike,
    /// `ArnNotEquals` and `ArnNotLike`.
    ArnNotLike,
    Bool,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    operator: Operator,
    operator_text: String,
    qualifier: SetQualifier,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

/// What the evaluator knows about one request.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The caller's principal ARN (`arn:aws:iam::111122223333:role/Enclave`,
    /// `arn:aws:sts::111122223333:assumed-role/Enclave/session`, ...).
    pub principal_arn: String,
    /// The action, e.g. `kms:Decrypt`.
    pub action: String,
    /// The key ARN the request is for (`*`-only policies ignore it).
    pub resource: String,
    /// Condition keys present in the request, e.g. `kms:RecipientAttestation:PCR1` → hex.
    /// Keys are compared case-insensitively, as AWS does.
    pub keys: BTreeMap<String, Vec<String>>,
}

impl RequestContext {
    /// Adds (or replaces) a single-valued condition key.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.keys
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
    }

    fn values(&self, key: &str) -> Option<&[String]> {
        self.keys.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

/// The outcome of evaluating a policy for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A statement allowed it and no statement denied it.
    Allow {
        /// The statement that allowed (its Sid, or `Statement[i]`).
        by: String,
    },
    /// An explicit Deny statement matched.
    ExplicitDeny {
        /// The statement that denied.
        by: String,
    },
    /// No Allow statement matched.
    ImplicitDeny {
        /// For the Allow statements that matched principal, action and resource but not all
        /// conditions: the statement and the first condition that failed, explained.
        near_misses: Vec<String>,
    },
}

impl Decision {
    /// True for [`Decision::Allow`].
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }

    /// A sentence for the AccessDeniedException message.
    #[must_use]
    pub fn explain(&self, ctx: &RequestContext) -> String {
        match self {
            Self::Allow { by } => format!("allowed by {by}"),
            Self::ExplicitDeny { by } => format!(
                "User: {} is not authorized to perform: {} on resource: {} with an explicit deny \
                 in a resource-based policy ({by})",
                ctx.principal_arn, ctx.action, ctx.resource
            ),
            Self::ImplicitDeny { near_misses } if near_misses.is_empty() => format!(
                "User: {} is not authorized to perform: {} on resource: {} because no \
                 resource-based policy allows the {} action",
                ctx.principal_arn, ctx.action, ctx.resource, ctx.action
            ),
            Self::ImplicitDeny { near_misses } => format!(
                "User: {} is not authorized to perform: {} on resource: {}: {}",
                ctx.principal_arn,
                ctx.action,
                ctx.resource,
                near_misses.join("; ")
            ),
        }
    }
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// A JSON string or list of strings, as policy fields allow.
fn strings(value: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(err(format!("{path}[{i}]"), "expected a string")),
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        _ => Err(err(path, "expected a string or a list of strings")),
    }
}

fn parse_principal(value: &Value, path: &str) -> Result<Vec<PrincipalPattern>, PolicyError> {
    match value {
        Value::String(s) if s == "*" => Ok(vec![PrincipalPattern::Everyone]),
        Value::Object(map) => {
            let mut out = Vec::new();
            for (kind, v) in map {
                for s in strings(v, &format!("{path}.{kind}"))? {
                    out.push(match kind.as_str() {
                        "AWS" if s == "*" => PrincipalPattern::Everyone,
                        "AWS" => PrincipalPattern::Aws(s),
                        "Service" => PrincipalPattern::Service(s),
                        other => {
                            return Err(err(
                                format!("{path}.{other}"),
                                "principal type must be AWS or Service",
                            ));
                        }
                    });
                }
            }
            Ok(out)
        }
        _ => Err(err(
            path,
            "Principal must be \"*\" or an object like {\"AWS\": \"arn:aws:iam::111122223333:role/Name\"}",
        )),
    }
}

fn parse_operator(text: &str, path: &str) -> Result<(Operator, SetQualifier, bool), PolicyError> {
    let (qualifier, rest) = if let Some(rest) = text.strip_prefix("ForAnyValue:") {
        (SetQualifier::ForAnyValue, rest)
    } else if let Some(rest) = text.strip_prefix("ForAllValues:") {
        (SetQualifier::ForAllValues, rest)
    } else {
        (SetQualifier::Single, text)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let operator = match base {
        "StringEquals" => Operator::StringEquals,
        "StringNotEquals" => Operator::StringNotEquals,
        "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
        "StringNotEqualsIgnoreCase" => Operator::StringNotEqualsIgnoreCase,
        "StringLike" => Operator::StringLike,
        "StringNotLike" => Operator::StringNotLike,
        "ArnEquals" | "ArnLike" => Operator::ArnLike,
        "ArnNotEquals" | "ArnNotLike" => Operator::ArnNotLike,
        "Bool" => Operator::Bool,
        "Null" if !if_exists => Operator::Null,
        _ => {
            return Err(err(
                path,
                format!(
                    "condition operator {text:?} is not supported by the emulator (supported: \
                     StringEquals, StringNotEquals, StringEqualsIgnoreCase, \
                     StringNotEqualsIgnoreCase, StringLike, StringNotLike, ArnEquals, ArnLike, \
                     ArnNotEquals, ArnNotLike, Bool, Null, with \
                     optional ForAnyValue:/ForAllValues: and IfExists)"
                ),
            ));
        }
    };
    Ok((operator, qualifier, if_exists))
}

fn parse_conditions(value: &Value, path: &str) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = value else {
        return Err(err(path, "Condition must be an object of operators"));
    };
    let mut out = Vec::new();
    for (op_text, keys) in ops {
        let op_path = format!("{path}.{op_text}");
        let (operator, qualifier, if_exists) = parse_operator(op_text, &op_path)?;
        let Value::Object(keys) = keys else {
            return Err(err(op_path, "expected an object of condition keys"));
        };
        for (key, values) in keys {
            let values = strings(values, &format!("{op_path}.{key}"))?;
            if values.is_empty() {
                return Err(err(format!("{op_path}.{key}"), "needs at least one value"));
            }
            out.push(Condition {
                operator,
                operator_text: op_text.clone(),
                qualifier,
                if_exists,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

fn parse_matcher(
    statement: &serde_json::Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Matcher<String>, PolicyError> {
    let not = format!("Not{name}");
    match (statement.get(name), statement.get(&not)) {
        (Some(_), Some(_)) => Err(err(path, format!("has both {name} and {not}"))),
        (Some(v), None) => Ok(Matcher::Only(strings(v, &format!("{path}.{name}"))?)),
        (None, Some(v)) => Ok(Matcher::Not(strings(v, &format!("{path}.{not}"))?)),
        (None, None) => Ok(Matcher::Any),
    }
}

impl Policy {
    /// Parses and validates a key policy document.
    ///
    /// # Errors
    /// [`PolicyError`] naming the field and what to write instead.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return Err(err("(document)", "a policy is a JSON object"));
        };
        if let Some(version) = doc.get("Version")
            && version != "2012-10-17"
            && version != "2008-10-17"
        {
            return Err(err("Version", "use \"2012-10-17\""));
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(single @ Value::Object(_)) => vec![single.clone()],
            _ => return Err(err("Statement", "needs a Statement object or list")),
        };
        if statements.is_empty() {
            return Err(err("Statement", "is empty: nothing would be allowed"));
        }
        let mut parsed = Vec::with_capacity(statements.len());
        for (index, statement) in statements.iter().enumerate() {
            let path = format!("Statement[{index}]");
            let Value::Object(s) = statement else {
                return Err(err(path, "a statement is a JSON object"));
            };
            let effect = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => {
                    return Err(err(
                        format!("{path}.Effect"),
                        "must be \"Allow\" or \"Deny\"",
                    ));
                }
            };
            let principal = match (s.get("Principal"), s.get("NotPrincipal")) {
                (Some(p), None) => Matcher::Only(parse_principal(p, &format!("{path}.Principal"))?),
                (None, Some(p)) => {
                    Matcher::Not(parse_principal(p, &format!("{path}.NotPrincipal"))?)
                }
                (None, None) => {
                    return Err(err(
                        path,
                        "a key policy statement needs a Principal (use \"*\" for everyone)",
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(err(path, "has both Principal and NotPrincipal"));
                }
            };
            let action = parse_matcher(s, "Action", &path)?;
            if action == Matcher::Any {
                return Err(err(path, "needs an Action (for example \"kms:Decrypt\")"));
            }
            let resource = parse_matcher(s, "Resource", &path)?;
            let conditions = match s.get("Condition") {
                Some(c) => parse_conditions(c, &format!("{path}.Condition"))?,
                None => Vec::new(),
            };
            for key in s.keys() {
                let known = [
                    "Sid",
                    "Effect",
                    "Principal",
                    "NotPrincipal",
                    "Action",
                    "NotAction",
                    "Resource",
                    "NotResource",
                    "Condition",
                ];
                if !known.contains(&key.as_str()) {
                    return Err(err(format!("{path}.{key}"), "unknown statement field"));
                }
            }
            parsed.push(Statement {
                sid: s.get("Sid").and_then(Value::as_str).map(str::to_owned),
                index,
                effect,
                principal,
                action,
                resource,
                conditions,
            });
        }
        Ok(Self { statements: parsed })
    }

    /// Evaluates the policy for one request.
    #[must_use]
    pub fn evaluate(&self, ctx: &RequestContext) -> Decision {
        let mut allowed_by = None;
        let mut near_misses = Vec::new();
        for statement in &self.statements {
            if !statement.applies_to(ctx) {
                continue;
            }
            let failed: Vec<&Condition> = statement
                .conditions
                .iter()
                .filter(|c| !c.holds(ctx))
                .collect();
            match (statement.effect, failed.is_empty()) {
                (Effect::Deny, true) => {
                    return Decision::ExplicitDeny {
                        by: statement.name(),
                    };
                }
                (Effect::Allow, true) => {
                    allowed_by.get_or_insert_with(|| statement.name());
                }
                (Effect::Allow, false) => {
                    // Name every failed condition: an enclave rebuilt with a changed app fails
                    // PCR0 (ImageSha384) and PCR2 together, and the user needs to see both.
                    let reasons: Vec<String> =
                        failed.iter().map(|c| c.explain_failure(ctx)).collect();
                    near_misses.push(format!(
                        "{} did not apply because {}",
                        statement.name(),
                        reasons.join(", and ")
                    ));
                }
                (Effect::Deny, false) => {}
            }
        }
        match allowed_by {
            Some(by) => Decision::Allow { by },
            None => Decision::ImplicitDeny { near_misses },
        }
    }
}

impl Statement {
    fn name(&self) -> String {
        match &self.sid {
            Some(sid) => format!("statement {sid:?}"),
            None => format!("Statement[{}]", self.index),
        }
    }

    fn applies_to(&self, ctx: &RequestContext) -> bool {
        let principal = |p: &PrincipalPattern| principal_matches(p, &ctx.principal_arn);
        let action =
            |a: &String| wildcard_match(&a.to_ascii_lowercase(), &ctx.action.to_ascii_lowercase());
        let resource = |r: &String| wildcard_match(r, &ctx.resource);
        matcher_holds(&self.principal, principal)
            && matcher_holds(&self.action, action)
            && matcher_holds(&self.resource, resource)
    }
}

fn matcher_holds<T>(matcher: &Matcher<T>, matches: impl Fn(&T) -> bool) -> bool {
    match matcher {
        Matcher::Any => true,
        Matcher::Only(list) => list.iter().any(matches),
        Matcher::Not(list) => !list.iter().any(matches),
    }
}

/// The account id of an IAM or STS ARN (`arn:aws:iam::111122223333:...`).
fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The role ARN an assumed-role session ARN stands for:
/// `arn:aws:sts::A:assumed-role/R/session` → `arn:aws:iam::A:role/R`.
fn role_of_session(arn: &str) -> Option<String> {
    let account = account_of(arn)?;
    let rest = arn.split(':').nth(5)?;
    let role = rest.strip_prefix("assumed-role/")?.split('/').next()?;
    let partition = arn.split(':').nth(1)?;
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

fn principal_matches(pattern: &PrincipalPattern, caller: &str) -> bool {
    match pattern {
        PrincipalPattern::Everyone => true,
        PrincipalPattern::Service(_) => false,
        PrincipalPattern::Aws(p) => {
            // A bare account id or `arn:aws:iam::A:root` means "any principal of account A".
            let account_wide = p.chars().all(|c| c.is_ascii_digit())
                || (p.ends_with(":root") && p.starts_with("arn:"));
            if account_wide {
                let wanted = if p.starts_with("arn:") {
                    account_of(p)
                } else {
                    Some(p.as_str())
                };
                return wanted.is_some() && wanted == account_of(caller);
            }
            p == caller || role_of_session(caller).is_some_and(|role| &role == p)
        }
    }
}

/// AWS `StringLike` / action / resource matching: `*` matches any run (also empty), `?` any one
/// character; everything else literally.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// AWS `ArnLike`: both are ARNs with six `:`-separated components (the last one keeps any
/// further colons), and each component matches its pattern on its own, so a `*` never spans a
/// colon.
fn arn_match(pattern: &str, arn: &str) -> bool {
    let (mut p, mut a) = (pattern.splitn(6, ':'), arn.splitn(6, ':'));
    for _ in 0..6 {
        match (p.next(), a.next()) {
            (Some(pp), Some(ap)) if wildcard_match(pp, ap) => {}
            _ => return false,
        }
    }
    true
}

impl Condition {
    /// Whether one request value satisfies one policy value under the (positive) operator.
    fn value_matches(&self, have: &str, want: &str) -> bool {
        match self.operator {
            Operator::StringEquals | Operator::StringNotEquals => have == want,
            Operator::StringEqualsIgnoreCase | Operator::StringNotEqualsIgnoreCase => {
                have.eq_ignore_ascii_case(want)
            }
            Operator::StringLike | Operator::StringNotLike => wildcard_match(want, have),
            Operator::ArnLike | Operator::ArnNotLike => arn_match(want, have),
            Operator::Bool => have.eq_ignore_ascii_case(want),
            Operator::Null => false,
        }
    }

    fn negated(&self) -> bool {
        matches!(
            self.operator,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::ArnNotLike
        )
    }

    fn holds(&self, ctx: &RequestContext) -> bool {
        let present = ctx.values(&self.key);
        if self.operator == Operator::Null {
            // "Null": "true" means the key must be absent; "false" means present.
            let absent = present.is_none_or(<[String]>::is_empty);
            return self
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&absent.to_string()));
        }
        let Some(have) = present.filter(|h| !h.is_empty()) else {
            // Missing key: ...IfExists and ForAllValues hold vacuously; negated operators hold
            // (nothing equals); every positive operator fails.
            return self.if_exists
                || self.qualifier == SetQualifier::ForAllValues
                || self.negated();
        };
        let one = |h: &String| self.values.iter().any(|w| self.value_matches(h, w));
        let positive = match self.qualifier {
            SetQualifier::Single | SetQualifier::ForAnyValue => have.iter().any(one),
            SetQualifier::ForAllValues => have.iter().all(one),
        };
        positive != self.negated()
    }

    fn explain_failure(&self, ctx: &RequestContext) -> String {
        let wanted = self.values.join(" or ");
        match ctx.values(&self.key).filter(|h| !h.is_empty()) {
            None => format!(
                "condition {} {} requires {wanted}, but the request has no {} (a Recipient with \
                 a valid attestation document supplies kms:RecipientAttestation:* keys)",
                self.operator_text, self.key, self.key
            ),
            Some(have) => format!(
                "condition {} {}: request has {}, policy requires {wanted}",
                self.operator_text,
                self.key,
                have.join(", ")
            ),
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
        RequestContext {
            principal_arn: principal.into(),
            action: action.into(),
            resource: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            keys: BTreeMap::new(),
        }
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
        assert_eq!(
            policy.evaluate(&c),
            Decision::Allow {
                by: "statement \"EnclaveDecrypt\"".into()
            }
        );

        c.set("kms:RecipientAttestation:PCR1", "ab".repeat(48));
        let decision = policy.evaluate(&c);
        let text = decision.explain(&c);
        assert!(!decision.is_allowed());
        assert!(text.contains("kms:RecipientAttestation:PCR1"), "{text}");
        assert!(text.contains(&"ab".repeat(48)), "{text}");
        assert!(text.contains(PCR1), "{text}");
        assert!(
            !text.contains("ImageSha384"),
            "only the failed condition is named: {text}"
        );

        c.set("kms:RecipientAttestation:ImageSha384", "cd".repeat(48));
        let text = policy.evaluate(&c).explain(&c);
        assert!(
            text.contains("ImageSha384: request has") && text.contains("PCR1: request has"),
            "{text}"
        );
    }

    #[test]
    fn missing_recipient_keys_deny_and_say_why() {
        let policy = enclave_policy();
        let c = ctx("arn:aws:iam::111122223333:role/Enclave", "kms:Decrypt");
        let decision = policy.evaluate(&c);
        assert!(!decision.is_allowed());
        assert!(
            decision
                .explain(&c)
                .contains("has no kms:RecipientAttestation:")
        );
    }

    #[test]
    fn explicit_deny_wins_and_account_root_covers_the_account() {
        let policy = Policy::parse(
            r#"{"Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:*", "Resource": "*"},
                {"Sid": "NoDecryptWithoutEnclave", "Effect": "Deny", "Principal": "*",
                 "Action": "kms:Decrypt", "Resource": "*",
                 "Condition": {"Null": {"kms:RecipientAttestation:PCR0": "true"}}}
            ]}"#,
        )
        .unwrap();
        let mut c = ctx("arn:aws:iam::111122223333:user/alice", "kms:Encrypt");
        assert!(policy.evaluate(&c).is_allowed());
        c.action = "kms:Decrypt".into();
        assert_eq!(
            policy.evaluate(&c),
            Decision::ExplicitDeny {
                by: "statement \"NoDecryptWithoutEnclave\"".into()
            }
        );
        c.set("kms:RecipientAttestation:PCR0", "00");
        assert!(policy.evaluate(&c).is_allowed());
        let other = ctx("arn:aws:iam::999999999999:user/mallory", "kms:Encrypt");
        assert!(!policy.evaluate(&other).is_allowed());
    }

    #[test]
    fn operators_and_wildcards() {
        assert!(wildcard_match(
            "kms:GenerateDataKey*",
            "kms:GenerateDataKeyPair"
        ));
        assert!(wildcard_match(
            "kms:GenerateDataKey*",
            "kms:GenerateDataKey"
        ));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("kms:Decrypt", "kms:DecryptX"));
        let policy = Policy::parse(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "NotAction": "kms:Decrypt",
                "Resource": "*", "Condition": {"StringNotEqualsIfExists": {"k": "v"},
                "ForAllValues:StringLike": {"list": ["a*", "b*"]}}}}"#,
        )
        .unwrap();
        let mut c = ctx("arn:aws:iam::1:user/u", "kms:Encrypt");
        assert!(policy.evaluate(&c).is_allowed());
        c.keys
            .insert("list".into(), vec!["apple".into(), "cherry".into()]);
        assert!(!policy.evaluate(&c).is_allowed());
        c.keys
            .insert("list".into(), vec!["apple".into(), "banana".into()]);
        c.set("k", "v");
        assert!(!policy.evaluate(&c).is_allowed());
        c.action = "kms:Decrypt".into();
        c.set("k", "w");
        assert!(!policy.evaluate(&c).is_allowed());
    }

    #[test]
    fn arn_operators_match_component_by_component() {
        assert!(arn_match(
            "arn:aws:iam::*:role/Enclave*",
            "arn:aws:iam::111122223333:role/EnclaveParent"
        ));
        assert!(!arn_match(
            "arn:aws:iam::*:role/Enclave*",
            "arn:aws:sts::111122223333:assumed-role/EnclaveParent/i-0abc"
        ));
        // A `*` does not span a colon, unlike StringLike.
        assert!(!arn_match("arn:aws:*", "arn:aws:iam::1:role/r"));
        assert!(wildcard_match("arn:aws:*", "arn:aws:iam::1:role/r"));
        assert!(!arn_match("arn:aws:iam::1:role/r", "not an arn"));
        let policy = Policy::parse(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt",
                "Resource": "*", "Condition": {
                  "ArnLike": {"aws:PrincipalArn": "arn:aws:sts::111122223333:assumed-role/Enclave/*"},
                  "ArnNotEquals": {"aws:PrincipalArn": "arn:aws:sts::111122223333:assumed-role/Enclave/blocked"}}}}"#,
        )
        .unwrap();
        let mut c = ctx(
            "arn:aws:sts::111122223333:assumed-role/Enclave/i-1",
            "kms:Decrypt",
        );
        c.set("aws:PrincipalArn", c.principal_arn.clone());
        assert!(policy.evaluate(&c).is_allowed());
        c.set(
            "aws:PrincipalArn",
            "arn:aws:sts::111122223333:assumed-role/Enclave/blocked",
        );
        assert!(!policy.evaluate(&c).is_allowed());
        c.set(
            "aws:PrincipalArn",
            "arn:aws:sts::111122223333:assumed-role/Other/i-1",
        );
        assert!(!policy.evaluate(&c).is_allowed());
    }

    #[test]
    fn malformed_policies_are_refused_with_the_path() {
        for (json, path) in [
            ("[]", "(document)"),
            (r#"{"Statement": []}"#, "Statement"),
            (
                r#"{"Statement": [{"Effect": "Permit", "Principal": "*", "Action": "kms:*"}]}"#,
                "Statement[0].Effect",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "kms:*"}]}"#,
                "Statement[0]",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*"}]}"#,
                "Statement[0]",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Condition": {"NumericLessThan": {"a": "1"}}}]}"#,
                "Statement[0].Condition.NumericLessThan",
            ),
            (r#"{"Version": "2020-01-01", "Statement": []}"#, "Version"),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Extra": 1}]}"#,
                "Statement[0].Extra",
            ),
        ] {
            let e = Policy::parse(json).unwrap_err();
            assert_eq!(e.path, path, "{json}: {e}");
        }
    }
}
