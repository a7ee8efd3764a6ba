//! CCC's release lifecycle as commands: a team lives with several versions and several
//! environments at once, and a key policy that must change in step.
//!
//! - [`policy`]: `policy check|render|diff|apply` — an environment's key policy and IAM policy
//!   written from `deploy/environments.toml` and `release/pcr-expectations.json`, compared
//!   with the live one (`GetKeyPolicy`) and applied (`PutKeyPolicy`) through the SDK's own
//!   SigV4 client, with the operator's credentials chain ([`kms`]).
//! - [`explain`]: what KMS would decide for a request, statement by statement, before KMS
//!   decides it (the emulator's document check and the evaluator's trace).
//! - [`table`]: the cross-environment table, each environment's policy enforced by a KMS
//!   emulator against five documents, with `explain`'s prediction for each.
//!
//! The logic lives in `ccc-policy` (pure: environments, releases, rendering, diff, explain)
//! and `ccc-emulator` (document verification); this crate does the I/O and holds the
//! commands' arguments, so `cargo xtask` and `cargo ccc` share one definition.
//!
//! Features: none. The NSM simulator is compiled in for the table's documents; it is only ever
//! used by [`table`], which says so.

mod error;
pub mod explain;
pub mod files;
pub mod kms;
pub mod policy;
pub mod table;

pub use error::Error;

use std::path::PathBuf;

/// What every command runs with: the repository root (default file locations) and whose
/// credentials sign KMS calls.
#[derive(Debug, Clone)]
pub struct Context {
    /// The repository root.
    pub root: PathBuf,
    /// Who signs.
    pub signer: kms::Signer,
}

impl Context {
    /// Commands run from `root` with the operator's credentials chain.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            signer: kms::Signer::OperatorChain,
        }
    }
}
