//! What KMS would decide for one request, and why, before KMS decides it.
//!
//! Real KMS answers a refused attested request with a bare `AccessDeniedException`. An
//! [`Explanation`] renders the same decision from the evaluator's own trace
//! ([`Policy::evaluate`], the one the KMS emulator enforces): the attestation document (absent,
//! refused before the policy is read, or verified, with its PCRs, debug mode, and which
//! published release it matches or comes closest to), the request context KMS builds
//! ([`RequestContext::for_kms`]), then every statement — principal, action, resource, and
//! each condition with what the policy expects and what the request has — and what to do.
//!
//! The document itself is judged by the caller (verification needs the SDK's verifier and a
//! trust root); this module takes the outcome as an [`Attestation`].

use crate::document::Policy;
use crate::evaluate::{ConditionTrace, Decision, Evaluation, RequestContext, StatementTrace};
use crate::expectations::{Comparison, Expectations};
use crate::hex::encode;
use crate::keys::{RECIPIENT_ATTESTATION_PREFIX, pcr_of};
use crate::{Effect, hex};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// A document KMS accepted: what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Document {
    /// PCR index → value.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The NSM module id.
    pub module_id: String,
    /// When the NSM produced it (RFC 3339).
    pub timestamp: String,
    /// What its authenticity rests on, e.g. `chain to AWS Nitro Enclaves Root G1`.
    pub trust: String,
}

impl Document {
    /// A verified document's fields.
    #[must_use]
    pub fn new(
        pcrs: BTreeMap<u8, Vec<u8>>,
        module_id: impl Into<String>,
        timestamp: impl Into<String>,
        trust: impl Into<String>,
    ) -> Self {
        Self {
            pcrs,
            module_id: module_id.into(),
            timestamp: timestamp.into(),
            trust: trust.into(),
        }
    }

    /// PCR0, PCR1 and PCR2 are all zero: a debug-mode enclave.
    #[must_use]
    pub fn is_debug_mode(&self) -> bool {
        debug_mode(&self.pcrs)
    }
}

fn debug_mode(pcrs: &BTreeMap<u8, Vec<u8>>) -> bool {
    (0u8..=2).all(|i| pcrs.get(&i).is_some_and(|v| v.iter().all(|&b| b == 0)))
}

/// Why KMS refuses a document before it reads the key policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    /// Not an NSM attestation document.
    Malformed,
    /// Unsigned (QEMU's `nitro-enclave` machine).
    Unsigned,
    /// Signed, but its chain starts at a root KMS does not trust (the NSM simulator's, or
    /// another's).
    Foreign,
    /// A certificate of its chain is expired (or not yet valid) at the time of the request.
    Expired,
    /// Its signature or a certificate does not verify.
    Forged,
    /// Anything else the verifier refused (the detail says what).
    Other,
}

/// A document KMS refuses: why, the verifier's words, and its PCRs if it parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The kind.
    pub kind: RefusalKind,
    /// The verifier's message.
    pub detail: String,
    /// The PCRs of the (unverified) document, when it parsed.
    pub pcrs: Option<BTreeMap<u8, Vec<u8>>>,
}

impl Refusal {
    /// A refusal.
    #[must_use]
    pub fn new(
        kind: RefusalKind,
        detail: impl Into<String>,
        pcrs: Option<BTreeMap<u8, Vec<u8>>>,
    ) -> Self {
        Self {
            kind,
            detail: detail.into(),
            pcrs,
        }
    }
}

/// The request's attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attestation {
    /// The request has no `Recipient`: no `kms:RecipientAttestation:*` key at all.
    Absent,
    /// A document that verified under the trust KMS applies.
    Verified(Document),
    /// A document KMS refuses outright.
    Refused(Refusal),
}

/// The request, as the caller describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The calling principal (role, assumed-role session or user ARN).
    pub principal_arn: String,
    /// The operation (`Decrypt`) or action (`kms:Decrypt`).
    pub operation: String,
    /// The key ARN (`*` when unknown).
    pub resource: String,
    /// The encryption context.
    pub encryption_context: BTreeMap<String, String>,
}

impl Request {
    /// A request.
    #[must_use]
    pub fn new(
        principal_arn: impl Into<String>,
        operation: impl Into<String>,
        resource: impl Into<String>,
        encryption_context: BTreeMap<String, String>,
    ) -> Self {
        Self {
            principal_arn: principal_arn.into(),
            operation: operation.into(),
            resource: resource.into(),
            encryption_context,
        }
    }
}

/// What KMS does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The key policy allows it.
    Allowed {
        /// The allowing statement.
        by: String,
    },
    /// The key policy denies it (`AccessDeniedException`).
    Denied(Decision),
    /// The document is refused before the policy is read.
    DocumentRefused(RefusalKind),
}

/// One request explained.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation {
    /// The request context the evaluator saw (absent for a refused document).
    pub context: RequestContext,
    /// The document.
    pub attestation: Attestation,
    /// The evaluator's trace (absent for a refused document: KMS never reads the policy).
    pub evaluation: Option<Evaluation>,
    /// How the document's PCRs compare with the published releases.
    pub comparison: Option<Comparison>,
    /// Environment → the releases it allows, to say where a matched release is allowed.
    allowed_in: BTreeMap<String, Vec<String>>,
}

impl Explanation {
    /// Evaluates `request` with `attestation` under `policy`, and compares the document with
    /// the published releases of `expectations` (when given).
    #[must_use]
    pub fn new(
        policy: &Policy,
        request: &Request,
        attestation: Attestation,
        expectations: Option<&Expectations>,
    ) -> Self {
        let pcrs = match &attestation {
            Attestation::Verified(doc) => Some(&doc.pcrs),
            Attestation::Refused(refusal) => refusal.pcrs.as_ref(),
            Attestation::Absent => None,
        };
        let comparison = match (pcrs, expectations) {
            (Some(pcrs), Some(expectations)) => {
                Some(expectations.compare(&pcrs.iter().map(|(i, v)| (*i, encode(v))).collect()))
            }
            _ => None,
        };
        let allowed_in = expectations
            .map(|e| {
                e.iter()
                    .map(|(v, r)| (v.to_owned(), r.environments.iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default();
        let verified = match &attestation {
            Attestation::Verified(doc) => Some(Some(&doc.pcrs)),
            Attestation::Absent => Some(None),
            Attestation::Refused(_) => None,
        };
        let context = RequestContext::for_kms(
            &request.principal_arn,
            &request.operation,
            &request.resource,
            &request.encryption_context,
            verified.flatten(),
        );
        let evaluation = verified.map(|_| policy.evaluate(&context));
        Self {
            context,
            attestation,
            evaluation,
            comparison,
            allowed_in,
        }
    }

    /// Allowed, denied by the policy, or the document refused.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        match (&self.evaluation, &self.attestation) {
            (_, Attestation::Refused(refusal)) => Verdict::DocumentRefused(refusal.kind),
            (Some(evaluation), _) => match &evaluation.decision {
                Decision::Allow { by } => Verdict::Allowed { by: by.clone() },
                other => Verdict::Denied(other.clone()),
            },
            (None, _) => Verdict::DocumentRefused(RefusalKind::Other),
        }
    }

    /// True when KMS would allow the request.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self.verdict(), Verdict::Allowed { .. })
    }

    /// The `AccessDeniedException` message the KMS emulator sends for this request (real KMS
    /// sends only its first sentence); `None` unless the policy denies it.
    #[must_use]
    pub fn denial_message(&self) -> Option<String> {
        match &self.evaluation {
            Some(e) if !e.is_allowed() && !matches!(self.attestation, Attestation::Refused(_)) => {
                Some(e.message(&self.context))
            }
            _ => None,
        }
    }

    /// What to do next, one sentence each.
    #[must_use]
    pub fn advice(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.attestation {
            Attestation::Refused(refusal) => out.push(refusal_advice(refusal.kind).to_owned()),
            Attestation::Absent if !self.is_allowed() => out.push(
                "the request carries no attestation document: send it from the enclave with a \
                 Recipient (the SDK's AttestedKmsClient does), never from the parent"
                    .to_owned(),
            ),
            _ => {}
        }
        if self.is_allowed() {
            return out;
        }
        let debug = match &self.attestation {
            Attestation::Verified(doc) => doc.is_debug_mode(),
            _ => false,
        };
        if debug {
            out.push(
                "the enclave runs in debug mode (all-zero PCRs): start it without --debug-mode; \
                 only a development environment with accept_debug_mode = true admits debug \
                 enclaves"
                    .to_owned(),
            );
        }
        if let (Some(Comparison::Matches(versions)), Attestation::Verified(_)) =
            (&self.comparison, &self.attestation)
        {
            for version in versions {
                let environments = self.allowed_in.get(version).cloned().unwrap_or_default();
                out.push(format!(
                    "the document is release {version}, which {}; to allow it here, add it to \
                     allowed_versions of the environment in deploy/environments.toml and run \
                     `cargo xtask policy apply --env NAME --yes`",
                    if environments.is_empty() {
                        "no environment allows".to_owned()
                    } else {
                        format!("is allowed in {}", environments.join(", "))
                    }
                ));
            }
        }
        if let Some(Comparison::Closest { version, differing }) = &self.comparison
            && !debug
        {
            out.push(format!(
                "the image is no published release (closest: {version}, which differs in {}): \
                 deploy a published release, or rebuild it reproducibly (`cargo xtask \
                 verify-release {version}` says which input changed)",
                differing
                    .iter()
                    .map(|i| format!("PCR{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(evaluation) = &self.evaluation {
            let targets_role = evaluation
                .statements
                .iter()
                .any(|s| s.effect == Effect::Allow && s.principal && s.action && s.resource);
            if !targets_role {
                out.push(format!(
                    "no Allow statement names {} for {}: call with the environment's enclave \
                     role (the parent instance's role), or add the principal to the policy",
                    self.context.principal_arn, self.context.action
                ));
            }
        }
        out
    }
}

fn refusal_advice(kind: RefusalKind) -> &'static str {
    match kind {
        RefusalKind::Malformed => {
            "the bytes are not an NSM attestation document: pass the COSE_Sign1 document the NSM \
             returned (raw CBOR, hex or base64)"
        }
        RefusalKind::Unsigned => {
            "the document is unsigned (QEMU's nitro-enclave machine): real KMS never accepts \
             one; only the KMS emulator in its explicit insecure QEMU mode does"
        }
        RefusalKind::Foreign => {
            "the document chains to a root KMS does not trust (the NSM simulator's development \
             root, or another): real KMS trusts only AWS Nitro Enclaves Root G1 — run the \
             enclave on Nitro, or use a development environment's emulator that trusts the \
             simulator"
        }
        RefusalKind::Expired => {
            "a certificate of the document's chain is not valid at the time of the request (the \
             NSM's leaf certificates last hours): ask the enclave for a fresh document (`explain \
             --enclave vsock://CID:PORT`), or check --at and the clock"
        }
        RefusalKind::Forged => {
            "the document's signature or chain does not verify: it was altered, or is not from \
             an NSM"
        }
        RefusalKind::Other => "the verifier refused the document; its message says which check",
    }
}

fn hex_values(values: &[String]) -> String {
    if values.is_empty() {
        "(none)".to_owned()
    } else {
        values.join(" | ")
    }
}

/// How one condition reads: operator and key, the policy's values, the request's, and whether
/// it holds.
fn condition_lines(out: &mut String, c: &ConditionTrace, deny: bool) {
    let have = c
        .request_values
        .as_ref()
        .map_or_else(|| "(absent)".to_owned(), |v| hex_values(v));
    let meaning = if c.operator.starts_with("Null") {
        "key absent (true) / present (false)"
    } else if c.negated {
        "holds when the request's value is none of these"
    } else {
        "holds when the request's value is one of these"
    };
    let outcome = match (c.holds, deny) {
        (true, false) => "holds",
        (false, false) => "FAILS",
        (true, true) => "holds (so this Deny applies)",
        (false, true) => "does not hold (so this Deny does not apply)",
    };
    let _ = writeln!(out, "    condition {} {} ({meaning})", c.operator, c.key);
    let _ = writeln!(out, "      policy   {}", hex_values(&c.policy_values));
    let _ = writeln!(out, "      request  {have}");
    let _ = writeln!(out, "      -> {outcome}");
}

fn statement_lines(out: &mut String, s: &StatementTrace) {
    let effect = match s.effect {
        Effect::Allow => "Allow",
        Effect::Deny => "Deny",
    };
    let verdict = if s.applies() {
        "APPLIES"
    } else {
        "does not apply"
    };
    let _ = writeln!(out, "  {} ({effect}): {verdict}", s.name());
    let mark = |ok: bool| if ok { "matches" } else { "does NOT match" };
    let _ = writeln!(
        out,
        "    principal {}: {}",
        s.principal_written,
        mark(s.principal)
    );
    let _ = writeln!(
        out,
        "    action    {}: {}",
        s.action_written,
        mark(s.action)
    );
    let _ = writeln!(
        out,
        "    resource  {}: {}",
        s.resource_written,
        mark(s.resource)
    );
    for c in &s.conditions {
        condition_lines(out, c, s.effect == Effect::Deny);
    }
}

fn pcr_lines(out: &mut String, pcrs: &BTreeMap<u8, Vec<u8>>) {
    for (index, value) in pcrs {
        if value.iter().all(|&b| b == 0) && !matches!(index, 0..=2 | 8) {
            continue;
        }
        let _ = writeln!(out, "  PCR{index:<2} {}", hex::encode(value));
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "request: {} by {} on {}",
            self.context.action, self.context.principal_arn, self.context.resource
        );
        let pcrs = match &self.attestation {
            Attestation::Absent => {
                let _ = writeln!(
                    out,
                    "attestation: NONE — the request has no Recipient, so it carries no \
                     kms:RecipientAttestation:* key (negated conditions on them hold, positive \
                     ones fail)"
                );
                None
            }
            Attestation::Verified(doc) => {
                let _ = writeln!(
                    out,
                    "attestation: verified ({}), module {}, produced {}",
                    doc.trust, doc.module_id, doc.timestamp
                );
                Some(&doc.pcrs)
            }
            Attestation::Refused(refusal) => {
                let _ = writeln!(
                    out,
                    "attestation: REFUSED ({}) — {}",
                    match refusal.kind {
                        RefusalKind::Malformed => "malformed",
                        RefusalKind::Unsigned => "unsigned",
                        RefusalKind::Foreign => "foreign document: untrusted root",
                        RefusalKind::Expired => "expired",
                        RefusalKind::Forged => "does not verify",
                        RefusalKind::Other => "refused",
                    },
                    refusal.detail
                );
                refusal.pcrs.as_ref()
            }
        };
        if let Some(pcrs) = pcrs {
            pcr_lines(&mut out, pcrs);
            if debug_mode(pcrs) {
                let _ = writeln!(
                    out,
                    "  DEBUG MODE: PCR0, PCR1 and PCR2 are all zero — the enclave was started \
                     with --debug-mode and the parent can read its memory"
                );
            }
        }
        match &self.comparison {
            Some(Comparison::Matches(versions)) => {
                let _ = writeln!(
                    out,
                    "  published release: {} (every recorded PCR equal)",
                    versions.join(", ")
                );
            }
            Some(Comparison::Closest { version, differing }) => {
                let _ = writeln!(
                    out,
                    "  published release: none matches; closest is {version}, which differs in {}",
                    differing
                        .iter()
                        .map(|i| format!("PCR{i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Some(Comparison::NoneClose) => {
                let _ = writeln!(
                    out,
                    "  published release: none shares a single PCR with this document"
                );
            }
            None => {}
        }
        match &self.evaluation {
            None => {
                let _ = writeln!(
                    out,
                    "decision: REFUSED before the key policy is read (the KMS emulator answers \
                     ValidationException; no statement is evaluated)"
                );
            }
            Some(evaluation) => {
                let attestation_keys: Vec<&String> = self
                    .context
                    .keys
                    .keys()
                    .filter(|k| {
                        k.starts_with(&RECIPIENT_ATTESTATION_PREFIX.to_ascii_lowercase())
                            && pcr_of(k).is_some()
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "context: {} condition key(s), {} from the attestation document",
                    self.context.keys.len(),
                    attestation_keys.len()
                );
                let _ = writeln!(out, "statements:");
                for s in &evaluation.statements {
                    statement_lines(&mut out, s);
                }
                let _ = match &evaluation.decision {
                    Decision::Allow { by } => writeln!(out, "decision: ALLOWED by {by}"),
                    Decision::ExplicitDeny { by } => writeln!(
                        out,
                        "decision: DENIED by an explicit Deny ({})",
                        by.join(", ")
                    ),
                    Decision::ImplicitDeny => writeln!(
                        out,
                        "decision: DENIED implicitly (no Allow statement applies)"
                    ),
                };
                if let Some(message) = self.denial_message() {
                    let _ = writeln!(out, "KMS answers AccessDeniedException: {message}");
                }
            }
        }
        for advice in self.advice() {
            let _ = writeln!(out, "what to do: {advice}");
        }
        f.write_str(out.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expectations::Release;
    use crate::template::{Admitted, Lead, PolicySpec, Principals, SetName, render_key_policy};

    const ROLE: &str = "arn:aws:sts::111122223333:assumed-role/Parent/i-0abc";

    fn bytes(seed: u8) -> Vec<u8> {
        vec![seed; 48]
    }

    fn expectations() -> Expectations {
        let mut e = Expectations::default();
        for (version, seed) in [("0.1.0", 1u8), ("0.2.0", 5)] {
            e.record(
                version,
                Release::new(
                    [
                        &encode(&bytes(seed)),
                        &encode(&bytes(seed + 1)),
                        &encode(&bytes(seed + 2)),
                    ],
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

    fn policy() -> Policy {
        let r = expectations();
        let r = r.get("0.2.0").unwrap();
        let spec = PolicySpec {
            principals: Principals::new("111122223333", "Parent", "KeyAdmin").unwrap(),
            admitted: vec![
                Admitted::new(
                    SetName::Release("0.2.0".into()),
                    &[(0, &r.pcr0), (1, &r.pcr1), (2, &r.pcr2)],
                )
                .unwrap(),
            ],
            lead: Lead::ImageSha384,
        };
        Policy::parse(&render_key_policy(&spec).unwrap()).unwrap()
    }

    fn document(seed: u8) -> Attestation {
        let pcrs = (0u8..=2)
            .map(|i| (i, if seed == 0 { bytes(0) } else { bytes(seed + i) }))
            .collect();
        Attestation::Verified(Document::new(
            pcrs,
            "i-0abc-enc0",
            "2026-12-01T10:00:00Z",
            "chain to the test root",
        ))
    }

    fn explain(attestation: Attestation) -> Explanation {
        Explanation::new(
            &policy(),
            &Request::new(ROLE, "Decrypt", "*", BTreeMap::new()),
            attestation,
            Some(&expectations()),
        )
    }

    #[test]
    fn an_allowed_release_is_named() {
        let e = explain(document(5));
        assert_eq!(
            e.verdict(),
            Verdict::Allowed {
                by: "statement \"EnclaveUseWithRelease 0.2.0\"".into()
            }
        );
        let text = e.to_string();
        assert!(text.contains("published release: 0.2.0"), "{text}");
        assert!(text.contains("decision: ALLOWED"), "{text}");
        assert!(e.advice().is_empty());
        assert_eq!(e.denial_message(), None);
    }

    #[test]
    fn another_release_is_denied_with_the_condition_and_the_fix() {
        let e = explain(document(1));
        assert!(matches!(
            e.verdict(),
            Verdict::Denied(Decision::ExplicitDeny { .. })
        ));
        let text = e.to_string();
        assert!(text.contains("published release: 0.1.0"), "{text}");
        assert!(
            text.contains("statement \"DenySecretsUnlessImageSha384Matches\" (Deny): APPLIES"),
            "{text}"
        );
        assert!(
            text.contains(&format!("policy   {}", encode(&bytes(5)))),
            "{text}"
        );
        assert!(
            text.contains(&format!("request  {}", encode(&bytes(1)))),
            "{text}"
        );
        assert!(text.contains("add it to allowed_versions"), "{text}");
        // The message is the evaluator's, as the emulator sends it.
        assert_eq!(
            e.denial_message().unwrap(),
            e.evaluation.as_ref().unwrap().message(&e.context)
        );
    }

    #[test]
    fn debug_mode_missing_attestation_and_refused_documents_are_named() {
        let text = explain(document(0)).to_string();
        assert!(text.contains("DEBUG MODE"), "{text}");
        assert!(text.contains("start it without --debug-mode"), "{text}");

        let e = explain(Attestation::Absent);
        assert!(!e.is_allowed());
        let text = e.to_string();
        assert!(text.contains("attestation: NONE"), "{text}");
        assert!(text.contains("request  (absent)"), "{text}");
        assert!(
            text.contains("send it from the enclave with a Recipient"),
            "{text}"
        );

        for (kind, words) in [
            (RefusalKind::Expired, "expired"),
            (RefusalKind::Foreign, "foreign document"),
            (RefusalKind::Unsigned, "unsigned"),
        ] {
            let e = explain(Attestation::Refused(Refusal::new(
                kind,
                "the verifier's words",
                Some((0u8..=2).map(|i| (i, bytes(5 + i))).collect()),
            )));
            assert_eq!(e.verdict(), Verdict::DocumentRefused(kind));
            assert!(e.evaluation.is_none());
            let text = e.to_string();
            assert!(text.contains(words), "{text}");
            assert!(text.contains("the verifier's words"), "{text}");
            assert!(text.contains("published release: 0.2.0"), "{text}");
            assert!(
                text.contains("REFUSED before the key policy is read"),
                "{text}"
            );
        }
    }

    #[test]
    fn an_unpublished_image_gets_the_closest_release_and_a_wrong_principal_is_named() {
        let mut pcrs: BTreeMap<u8, Vec<u8>> = (0u8..=2).map(|i| (i, bytes(5 + i))).collect();
        pcrs.insert(0, bytes(0x70));
        pcrs.insert(2, bytes(0x72));
        let e = explain(Attestation::Verified(Document::new(pcrs, "m", "t", "root")));
        let text = e.to_string();
        assert!(
            text.contains("closest is 0.2.0, which differs in PCR0, PCR2"),
            "{text}"
        );
        let other = Explanation::new(
            &policy(),
            &Request::new(
                "arn:aws:iam::111122223333:role/Other",
                "kms:Decrypt",
                "*",
                BTreeMap::new(),
            ),
            document(5),
            None,
        );
        assert!(!other.is_allowed());
        assert!(
            other.advice().iter().any(
                |a| a.contains("no Allow statement names arn:aws:iam::111122223333:role/Other")
            ),
            "{:?}",
            other.advice()
        );
    }
}
