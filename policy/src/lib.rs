//! KMS key policies for CCC, in one place: AWS's JSON policy language parsed and evaluated the
//! way AWS documents it, the key-policy and IAM-policy templates a release publishes, and a
//! linter for any key policy that guards an enclave's key.
//!
//! - [`Policy`] parses a key policy ([`Policy::parse`]) or an IAM identity policy
//!   ([`Policy::parse_any`]); [`Policy::evaluate`] decides one request ([`RequestContext`])
//!   and returns an [`Evaluation`]: the [`Decision`] and, per statement, whether principal,
//!   action and resource matched and how each condition came out (operator, key, policy values,
//!   request values). The KMS emulator enforces policies with it and renders its
//!   `AccessDeniedException` from it ([`Evaluation::message`]).
//! - [`keys`]: the condition keys (`kms:RecipientAttestation:*`, `kms:EncryptionContext:*`),
//!   the action sets the rules are about, and the template's reserved sealing context.
//! - [`template`]: the release's key policy and IAM policy for an image's PCRs.
//! - [`check`]: the linter behind `cargo xtask policy check FILE`.
//! - [`expectations`]: `release/pcr-expectations.json`, every published version's
//!   measurements, never rewritten.
//! - [`environment`]: `deploy/environments.toml`, validated, and each environment's policies.
//! - [`diff`]: what changes between a live key policy and the one an environment wants, in
//!   terms of releases and statements.
//! - [`explain`]: a decision explained statement by statement, from the evaluator's trace.
//!
//! Pure logic: no I/O, no clock.

pub mod check;
pub mod diff;
mod document;
pub mod environment;
mod evaluate;
pub mod expectations;
pub mod explain;
pub mod hex;
pub mod keys;
pub mod template;

pub use check::{Finding, Rule};
pub use document::{Effect, Kind, Policy, PolicyError};
pub use evaluate::{ConditionTrace, Decision, Evaluation, RequestContext, StatementTrace};
