//! Policies in AWS's JSON policy language: parsing and validation, and the matching rules of
//! principals, actions, resources and condition operators that evaluation uses.
//!
//! The subset KMS key policies and IAM identity policies use: `Statement` (one or a list) with
//! `Sid`, `Effect`, `Principal` / `NotPrincipal`, `Action` / `NotAction`, `Resource` /
//! `NotResource` and `Condition`. Condition operators: `StringEquals`, `StringNotEquals`,
//! `StringEqualsIgnoreCase`, `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`,
//! `ArnEquals`/`ArnLike`, `ArnNotEquals`/`ArnNotLike`, `Bool` and `Null`, each optionally with
//! `ForAnyValue:` / `ForAllValues:` and the `...IfExists` suffix. Anything else is refused when
//! the policy is parsed, so a policy never silently means something other than what it says.

use serde_json::Value;
use std::fmt;

/// Why a policy document was refused at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// Which kind of policy a document is: who its statements apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A resource policy (a KMS key policy): every statement names its `Principal`.
    Key,
    /// An IAM identity policy: no statement names a principal; they apply to the identity the
    /// policy is attached to.
    Identity,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub(crate) kind: Kind,
    pub(crate) statements: Vec<Statement>,
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub(crate) sid: Option<String>,
    pub(crate) index: usize,
    pub(crate) effect: Effect,
    /// `Matcher::Any` in identity policies.
    pub(crate) principal: Matcher<PrincipalPattern>,
    pub(crate) action: Matcher<String>,
    pub(crate) resource: Matcher<String>,
    pub(crate) conditions: Vec<Condition>,
}

/// `X` or `NotX`, or absent (matches everything).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher<T> {
    Any,
    Only(Vec<T>),
    Not(Vec<T>),
}

/// One entry of `Principal`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PrincipalPattern {
    Everyone,
    Aws(String),
    Service(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
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

impl Operator {
    /// The negated operators: true when no policy value matches (IAM documents multiple values
    /// of a negated operator as a logical NOR).
    pub(crate) fn negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::ArnNotLike
        )
    }

    /// Whether the comparison ignores ASCII case.
    pub(crate) fn ignores_case(self) -> bool {
        matches!(
            self,
            Self::StringEqualsIgnoreCase | Self::StringNotEqualsIgnoreCase | Self::Bool
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetQualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) operator: Operator,
    /// As written, e.g. `ForAnyValue:StringEqualsIfExists`.
    pub(crate) operator_text: String,
    pub(crate) qualifier: SetQualifier,
    pub(crate) if_exists: bool,
    pub(crate) key: String,
    pub(crate) values: Vec<String>,
}

/// `statement "Sid"`, or `Statement[i]` without a Sid.
pub(crate) fn statement_name(sid: Option<&str>, index: usize) -> String {
    match sid {
        Some(sid) => format!("statement {sid:?}"),
        None => format!("Statement[{index}]"),
    }
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// A JSON string or list of strings, as policy fields allow (booleans are read as their text).
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
                    "condition operator {text:?} is not supported (supported: StringEquals, \
                     StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, \
                     StringLike, StringNotLike, ArnEquals, ArnLike, ArnNotEquals, ArnNotLike, \
                     Bool, Null, with optional ForAnyValue:/ForAllValues: and IfExists)"
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

/// The statement fields the parser knows; any other is refused (a typo must not be ignored).
const KNOWN_FIELDS: [&str; 9] = [
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

impl Policy {
    /// Parses and validates a KMS key policy: every statement names its `Principal`.
    ///
    /// # Errors
    /// [`PolicyError`] naming the field and what to write instead.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let policy = Self::parse_any(json)?;
        if policy.kind == Kind::Identity {
            return Err(err(
                "Statement[0]",
                "a key policy statement needs a Principal (use \"*\" for everyone)",
            ));
        }
        Ok(policy)
    }

    /// Parses a key policy (every statement has a `Principal`) or an IAM identity policy (no
    /// statement has one); [`Policy::kind`] says which.
    ///
    /// # Errors
    /// [`PolicyError`] naming the field and what to write instead; a document mixing
    /// statements with and without `Principal` is refused.
    pub fn parse_any(json: &str) -> Result<Self, PolicyError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return Err(err("(document)", "a policy is a JSON object"));
        };
        for key in doc.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(err(
                    key.clone(),
                    "unknown policy field (a policy has Version, Id and Statement)",
                ));
            }
        }
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
        let mut kinds = Vec::with_capacity(statements.len());
        for (index, statement) in statements.iter().enumerate() {
            let path = format!("Statement[{index}]");
            let Value::Object(s) = statement else {
                return Err(err(path, "a statement is a JSON object"));
            };
            for key in s.keys() {
                if !KNOWN_FIELDS.contains(&key.as_str()) {
                    return Err(err(format!("{path}.{key}"), "unknown statement field"));
                }
            }
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
                (None, None) => Matcher::Any,
                (Some(_), Some(_)) => {
                    return Err(err(path, "has both Principal and NotPrincipal"));
                }
            };
            kinds.push(if principal == Matcher::Any {
                Kind::Identity
            } else {
                Kind::Key
            });
            let action = parse_matcher(s, "Action", &path)?;
            if action == Matcher::Any {
                return Err(err(path, "needs an Action (for example \"kms:Decrypt\")"));
            }
            let resource = parse_matcher(s, "Resource", &path)?;
            let conditions = match s.get("Condition") {
                Some(c) => parse_conditions(c, &format!("{path}.Condition"))?,
                None => Vec::new(),
            };
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
        let kind = kinds.first().copied().unwrap_or(Kind::Key);
        if let Some(index) = kinds.iter().position(|k| *k != kind) {
            return Err(err(
                format!("Statement[{index}]"),
                "some statements name a Principal and others do not: a key policy names one in \
                 every statement, an IAM identity policy in none",
            ));
        }
        Ok(Self {
            kind,
            statements: parsed,
        })
    }

    /// Key policy or identity policy.
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// How many statements the policy has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Never true for a parsed policy (an empty `Statement` list is refused).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

pub(crate) fn matcher_holds<T>(matcher: &Matcher<T>, matches: impl Fn(&T) -> bool) -> bool {
    match matcher {
        Matcher::Any => true,
        Matcher::Only(list) => list.iter().any(matches),
        Matcher::Not(list) => !list.iter().any(matches),
    }
}

/// The account id of an IAM or STS ARN (`arn:aws:iam::111122223333:...`).
pub(crate) fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The role ARN an assumed-role session ARN stands for:
/// `arn:aws:sts::A:assumed-role/R/session` → `arn:aws:iam::A:role/R`.
pub(crate) fn role_of_session(arn: &str) -> Option<String> {
    let account = account_of(arn)?;
    let rest = arn.split(':').nth(5)?;
    let role = rest.strip_prefix("assumed-role/")?.split('/').next()?;
    let partition = arn.split(':').nth(1)?;
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

/// Whether a principal pattern stands for a whole account: a bare account id or
/// `arn:<partition>:iam::<account>:root` ("any principal of that account that IAM allows").
pub(crate) fn account_wide(pattern: &str) -> bool {
    (!pattern.is_empty() && pattern.chars().all(|c| c.is_ascii_digit()))
        || (pattern.starts_with("arn:") && pattern.ends_with(":root"))
}

pub(crate) fn principal_matches(pattern: &PrincipalPattern, caller: &str) -> bool {
    match pattern {
        PrincipalPattern::Everyone => true,
        PrincipalPattern::Service(_) => false,
        PrincipalPattern::Aws(p) => {
            if account_wide(p) {
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
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
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

/// Whether an `Action` pattern (case-insensitive, with wildcards) names `action`.
pub(crate) fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// AWS `ArnLike`: both are ARNs with six `:`-separated components (the last one keeps any
/// further colons), and each component matches its pattern on its own, so a `*` never spans a
/// colon.
pub(crate) fn arn_match(pattern: &str, arn: &str) -> bool {
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
    /// Whether one request value matches one policy value under the operator's positive
    /// comparison (negation is applied by the caller).
    pub(crate) fn value_matches(&self, have: &str, want: &str) -> bool {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(action_matches("KMS:decrypt", "kms:Decrypt"));
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
    }

    #[test]
    fn principals_cover_sessions_and_accounts() {
        let role = PrincipalPattern::Aws("arn:aws:iam::111122223333:role/Enclave".into());
        assert!(principal_matches(
            &role,
            "arn:aws:sts::111122223333:assumed-role/Enclave/i-0abc"
        ));
        assert!(!principal_matches(
            &role,
            "arn:aws:sts::111122223333:assumed-role/Other/i-0abc"
        ));
        for root in ["arn:aws:iam::111122223333:root", "111122223333"] {
            let pattern = PrincipalPattern::Aws(root.into());
            assert!(principal_matches(
                &pattern,
                "arn:aws:iam::111122223333:user/alice"
            ));
            assert!(!principal_matches(
                &pattern,
                "arn:aws:iam::444455556666:user/mallory"
            ));
        }
    }

    #[test]
    fn key_and_identity_policies_are_told_apart() {
        let key =
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt"}}"#;
        assert_eq!(Policy::parse_any(key).unwrap().kind(), Kind::Key);
        let identity = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:GenerateRandom", "Resource": "*"}]}"#;
        assert_eq!(Policy::parse_any(identity).unwrap().kind(), Kind::Identity);
        assert_eq!(Policy::parse(identity).unwrap_err().path, "Statement[0]");
        let mixed = r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt"}, {"Effect": "Allow", "Action": "kms:Encrypt"}]}"#;
        assert_eq!(Policy::parse_any(mixed).unwrap_err().path, "Statement[1]");
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
            (
                r#"{"Statment": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*"}]}"#,
                "Statment",
            ),
        ] {
            let e = Policy::parse(json).unwrap_err();
            assert_eq!(e.path, path, "{json}: {e}");
        }
    }
}
