//! What changes between two key policies, in the terms an operator reviews: which attestation
//! sets (releases, the signer, debug mode) gain or lose access, and which statements are added,
//! removed or changed (and in which element). Statements are matched by `Sid` (or position
//! without one); elements are compared as sets, so reordering a list is no change.

use crate::check::pinned_sets;
use crate::document::{Condition, Matcher, Policy, PrincipalPattern, Statement, statement_name};
use crate::expectations::Expectations;
use crate::hex::is_zero;
use crate::keys::{IMAGE_SHA384, PCR1, PCR2, PCR8, pcr_of};
use std::collections::BTreeMap;
use std::fmt;

/// A set of attestation values an Allow admits, named.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttestedSet {
    /// `release 0.2.0`, `debug mode (all-zero PCRs)`, `signer (PCR8 ...)`, or `an unpublished
    /// image (PCR0 ...)`.
    pub label: String,
    /// Condition key → value.
    pub values: BTreeMap<String, String>,
}

/// How one statement changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatementChange {
    /// Only in the wanted policy.
    Added(String),
    /// Only in the live policy.
    Removed(String),
    /// In both, with these elements different (`Effect`, `Principal`, `Action`, `Resource`,
    /// `Condition`).
    Changed(String, Vec<&'static str>),
}

/// The difference between a live policy and the wanted one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyDiff {
    /// Sets the wanted policy admits and the live one does not.
    pub added: Vec<AttestedSet>,
    /// Sets the live policy admits and the wanted one does not.
    pub removed: Vec<AttestedSet>,
    /// Statement changes, in the wanted policy's order, then removals.
    pub statements: Vec<StatementChange>,
}

impl PolicyDiff {
    /// No set and no statement differs.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.statements.is_empty()
    }
}

/// Names a set by what it is: a published release (PCR0/1/2 equal, and PCR8 when the release
/// is signed), debug mode, a signer, or an unpublished image.
fn label(values: &BTreeMap<String, String>, expectations: &Expectations) -> String {
    let get = |key: &str| {
        values
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    let image = [get(IMAGE_SHA384), get(PCR1), get(PCR2)];
    if image.iter().all(|v| v.is_some_and(is_zero)) {
        return "debug mode (all-zero PCRs)".to_owned();
    }
    if let [Some(p0), Some(p1), Some(p2)] = image {
        let versions: Vec<&str> = expectations
            .iter()
            .filter(|(_, r)| {
                r.pcr0.eq_ignore_ascii_case(p0)
                    && r.pcr1.eq_ignore_ascii_case(p1)
                    && r.pcr2.eq_ignore_ascii_case(p2)
                    && r.pcr8.as_deref().is_none_or(|want| {
                        get(PCR8).is_none_or(|have| have.eq_ignore_ascii_case(want))
                    })
            })
            .map(|(v, _)| v)
            .collect();
        if !versions.is_empty() {
            return format!("release {}", versions.join(" = release "));
        }
        return format!("an unpublished image (PCR0 {p0})");
    }
    if let Some(pcr8) = get(PCR8) {
        return format!("images signed by the certificate with PCR8 {pcr8}");
    }
    let pins: Vec<String> = values
        .iter()
        .map(|(k, v)| {
            let short = pcr_of(k).map_or_else(|| k.clone(), |n| format!("PCR{n}"));
            format!("{short} {v}")
        })
        .collect();
    format!("documents with {}", pins.join(", "))
}

fn sets(policy: &Policy, expectations: &Expectations) -> Vec<AttestedSet> {
    let mut out: Vec<AttestedSet> = Vec::new();
    for values in pinned_sets(policy) {
        let values: BTreeMap<String, String> = values
            .into_iter()
            .map(|(k, v)| (k, v.to_ascii_lowercase()))
            .collect();
        if !out.iter().any(|s| same_values(&s.values, &values)) {
            out.push(AttestedSet {
                label: label(&values, expectations),
                values,
            });
        }
    }
    out
}

/// Equal keys (case-insensitively, `ImageSha384` and `PCR0` being one) and equal values.
fn same_values(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    let norm = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, v)| {
                let key = pcr_of(k).map_or_else(|| k.to_ascii_lowercase(), |n| format!("pcr{n}"));
                (key, v.to_ascii_lowercase())
            })
            .collect()
    };
    norm(a) == norm(b)
}

/// A matcher with its list sorted (and principals as text), so order does not matter.
fn sorted<T: Clone>(matcher: &Matcher<T>, key: impl Fn(&T) -> String) -> (u8, Vec<String>) {
    let sort = |list: &Vec<T>| {
        let mut v: Vec<String> = list.iter().map(&key).collect();
        v.sort();
        v.dedup();
        v
    };
    match matcher {
        Matcher::Any => (0, Vec::new()),
        Matcher::Only(list) => (1, sort(list)),
        Matcher::Not(list) => (2, sort(list)),
    }
}

fn principal_text(p: &PrincipalPattern) -> String {
    match p {
        PrincipalPattern::Everyone => "*".to_owned(),
        PrincipalPattern::Aws(arn) => arn.clone(),
        PrincipalPattern::Service(s) => format!("service:{s}"),
    }
}

fn conditions(list: &[Condition]) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = list
        .iter()
        .map(|c| {
            let mut values: Vec<String> = c.values.iter().map(|v| v.to_ascii_lowercase()).collect();
            values.sort();
            (c.operator_text.clone(), c.key.to_ascii_lowercase(), values)
        })
        .collect();
    out.sort();
    out
}

fn changed_elements(a: &Statement, b: &Statement) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.effect != b.effect {
        out.push("Effect");
    }
    if sorted(&a.principal, principal_text) != sorted(&b.principal, principal_text) {
        out.push("Principal");
    }
    if sorted(&a.action, |s| s.to_ascii_lowercase())
        != sorted(&b.action, |s| s.to_ascii_lowercase())
    {
        out.push("Action");
    }
    if sorted(&a.resource, Clone::clone) != sorted(&b.resource, Clone::clone) {
        out.push("Resource");
    }
    if conditions(&a.conditions) != conditions(&b.conditions) {
        out.push("Condition");
    }
    out
}

fn name(statement: &Statement) -> String {
    statement_name(statement.sid.as_deref(), statement.index)
}

/// Compares the live policy with the wanted one; `expectations` names the releases.
#[must_use]
pub fn diff(live: &Policy, wanted: &Policy, expectations: &Expectations) -> PolicyDiff {
    let live_sets = sets(live, expectations);
    let wanted_sets = sets(wanted, expectations);
    let added = wanted_sets
        .iter()
        .filter(|w| !live_sets.iter().any(|l| same_values(&l.values, &w.values)))
        .cloned()
        .collect();
    let removed = live_sets
        .iter()
        .filter(|l| {
            !wanted_sets
                .iter()
                .any(|w| same_values(&l.values, &w.values))
        })
        .cloned()
        .collect();
    let key = |s: &Statement| s.sid.clone().unwrap_or_else(|| format!("#{}", s.index));
    let mut statements = Vec::new();
    for w in &wanted.statements {
        match live.statements.iter().find(|l| key(l) == key(w)) {
            None => statements.push(StatementChange::Added(name(w))),
            Some(l) => {
                let elements = changed_elements(l, w);
                if !elements.is_empty() {
                    statements.push(StatementChange::Changed(name(w), elements));
                }
            }
        }
    }
    for l in &live.statements {
        if !wanted.statements.iter().any(|w| key(w) == key(l)) {
            statements.push(StatementChange::Removed(name(l)));
        }
    }
    PolicyDiff {
        added,
        removed,
        statements,
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no difference");
        }
        let pins = |set: &AttestedSet| {
            set.values
                .iter()
                .map(|(k, v)| {
                    let short = pcr_of(k).map_or_else(|| k.clone(), |n| format!("PCR{n}"));
                    format!("{short} {v}")
                })
                .collect::<Vec<_>>()
                .join("\n      ")
        };
        let mut lines = Vec::new();
        if !self.added.is_empty() || !self.removed.is_empty() {
            lines.push("who gets secrets:".to_owned());
            for set in &self.added {
                lines.push(format!("  + {}\n      {}", set.label, pins(set)));
            }
            for set in &self.removed {
                lines.push(format!("  - {}\n      {}", set.label, pins(set)));
            }
        }
        if !self.statements.is_empty() {
            lines.push("statements:".to_owned());
            for change in &self.statements {
                lines.push(match change {
                    StatementChange::Added(n) => format!("  + {n}"),
                    StatementChange::Removed(n) => format!("  - {n}"),
                    StatementChange::Changed(n, elements) => {
                        format!("  ~ {n}: {}", elements.join(", "))
                    }
                });
            }
        }
        f.write_str(&lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expectations::Release;
    use crate::template::{Admitted, Lead, PolicySpec, Principals, SetName, render_key_policy};

    fn hex_of(byte: u8) -> String {
        format!("{byte:02x}").repeat(48)
    }

    fn expectations() -> Expectations {
        let mut e = Expectations::default();
        for (version, seed) in [("0.1.0", 1u8), ("0.2.0", 5), ("0.3.0", 9)] {
            e.record(
                version,
                Release::new(
                    [&hex_of(seed), &hex_of(seed + 1), &hex_of(seed + 2)],
                    None,
                    "2026-12-01T10:00:00Z",
                    &"cd".repeat(20),
                )
                .unwrap(),
            )
            .unwrap();
        }
        e
    }

    fn policy(versions: &[&str], debug: bool) -> Policy {
        let e = expectations();
        let mut admitted: Vec<Admitted> = versions
            .iter()
            .map(|v| {
                let r = e.get(v).unwrap();
                Admitted::new(
                    SetName::Release((*v).to_owned()),
                    &[(0, &r.pcr0), (1, &r.pcr1), (2, &r.pcr2)],
                )
                .unwrap()
            })
            .collect();
        if debug {
            admitted.push(Admitted::debug_mode(false, &[]));
        }
        let spec = PolicySpec {
            principals: Principals::new("111122223333", "Parent", "KeyAdmin").unwrap(),
            admitted,
            lead: Lead::ImageSha384,
        };
        Policy::parse(&render_key_policy(&spec).unwrap()).unwrap()
    }

    #[test]
    fn a_rollout_step_is_one_release_in_and_one_out() {
        let e = expectations();
        let live = policy(&["0.1.0", "0.2.0"], false);
        let wanted = policy(&["0.2.0", "0.3.0"], false);
        let d = diff(&live, &wanted, &e);
        let labels =
            |sets: &[AttestedSet]| sets.iter().map(|s| s.label.clone()).collect::<Vec<_>>();
        assert_eq!(labels(&d.added), ["release 0.3.0"]);
        assert_eq!(labels(&d.removed), ["release 0.1.0"]);
        assert!(d.statements.contains(&StatementChange::Added(
            "statement \"EnclaveUseWithRelease 0.3.0\"".into()
        )));
        assert!(d.statements.contains(&StatementChange::Removed(
            "statement \"EnclaveUseWithRelease 0.1.0\"".into()
        )));
        assert!(d.statements.contains(&StatementChange::Changed(
            "statement \"DenySecretsUnlessImageSha384Matches\"".into(),
            vec!["Condition"]
        )));
        let text = d.to_string();
        assert!(text.contains("  + release 0.3.0\n      PCR0 "), "{text}");
        assert!(text.contains("  - release 0.1.0"), "{text}");
        // Unchanged statements are not listed.
        assert!(!text.contains("KeyAdministration"), "{text}");
        assert!(diff(&wanted, &wanted, &e).is_empty());
        assert_eq!(diff(&wanted, &wanted, &e).to_string(), "no difference");
    }

    #[test]
    fn debug_mode_and_unpublished_images_are_named() {
        let e = expectations();
        let d = diff(&policy(&["0.2.0"], false), &policy(&["0.2.0"], true), &e);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].label, "debug mode (all-zero PCRs)");
        let mut other = Expectations::default();
        other
            .record(
                "9.9.9",
                Release::new(
                    [&hex_of(0x40), &hex_of(0x41), &hex_of(0x42)],
                    None,
                    "2026-12-01T10:00:00Z",
                    &"cd".repeat(20),
                )
                .unwrap(),
            )
            .unwrap();
        let d = diff(
            &policy(&["0.1.0"], false),
            &policy(&["0.2.0"], false),
            &other,
        );
        assert_eq!(
            d.removed[0].label,
            format!("an unpublished image (PCR0 {})", hex_of(1))
        );
    }

    #[test]
    fn reordering_is_no_change() {
        let e = expectations();
        let a = Policy::parse(
            r#"{"Statement": [{"Sid": "S", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:role/a", "arn:aws:iam::1:role/b"]},
                "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
                "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR1": "AA"}}}]}"#,
        )
        .unwrap();
        let b = Policy::parse(
            r#"{"Statement": [{"Sid": "S", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:role/b", "arn:aws:iam::1:role/a"]},
                "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*",
                "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR1": "aa"}}}]}"#,
        )
        .unwrap();
        assert!(diff(&a, &b, &e).is_empty(), "{}", diff(&a, &b, &e));
        let c = Policy::parse(
            r#"{"Statement": [{"Sid": "S", "Effect": "Deny", "Principal": "*",
                "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*"}]}"#,
        )
        .unwrap();
        assert_eq!(
            diff(&a, &c, &e).statements,
            [StatementChange::Changed(
                "statement \"S\"".into(),
                vec!["Effect", "Principal", "Condition"]
            )]
        );
    }
}
