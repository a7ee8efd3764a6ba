//! The CI step `policy-check`: every template published from 0.2.0 on (0.1.0's is
//! superseded; its findings are pinned by a test here), and the templates the release tool
//! writes today, through the linter; and every environment of `deploy/environments.toml`
//! rendered, its policies equal to the committed `deploy/policies/<env>/` and
//! `release/pcr-expectations.json` recording the environments that allow each release.
//!
//! The `cargo xtask policy ...` commands themselves are `ccc_lifecycle::policy`'s.

use anyhow::{Context, Result, ensure};
use ccc_lifecycle::policy::{check_file as lint_file, check_text as lint_text};
use ccc_policy::Finding;
use ccc_policy::check::Options;
use ccc_policy::template::{self, ImagePins, Principals};
use std::path::Path;

use crate::release::{self, publish};

/// The oldest release whose published templates must pass the linter (0.1.0's predates it).
pub(crate) const FIRST_CHECKED_RELEASE: &str = "0.2.0";

/// The findings for a policy document's text (production's options).
///
/// # Errors
/// The text is not a policy (the parser's error names the field and the fix).
pub(crate) fn check_text(text: &str) -> Result<Vec<Finding>> {
    Ok(lint_text(text, "the policy", Options::default())?)
}

/// The findings for a policy file (production's options).
///
/// # Errors
/// The file cannot be read or is not a policy.
pub(crate) fn check_file(path: &Path) -> Result<Vec<Finding>> {
    Ok(lint_file(path, Options::default())?)
}

/// The published versions (directories of `release/`), oldest first.
fn published_versions(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("release");
    let mut versions = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            versions.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    versions.sort_by_key(|v| publish::version_key(v));
    Ok(versions)
}

fn ensure_clean(what: &str, findings: &[Finding]) -> Result<()> {
    ensure!(
        findings.is_empty(),
        "{what} has findings:\n{}",
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// The CI step: every published template from [`FIRST_CHECKED_RELEASE`] on, and the templates
/// the release tool writes today (for the newest release's PCRs, with placeholders and with
/// real principals), must have no findings.
///
/// # Errors
/// A template with findings, or a release directory that cannot be read.
pub(crate) fn ci_step() -> Result<()> {
    let root = crate::workspace_root();
    let versions = published_versions(&root)?;
    let first = publish::version_key(FIRST_CHECKED_RELEASE);
    let mut checked = 0usize;
    for version in &versions {
        if publish::version_key(version) < first {
            eprintln!(
                "policy-check: release {version} predates the linter and is superseded (its \
                 findings are pinned by the xtask test `release_0_1_0_has_its_known_findings`)"
            );
            continue;
        }
        let dir = root.join("release").join(version);
        for file in [
            release::key_policy_file_name(version),
            release::iam_policy_file_name(version),
        ] {
            let path = dir.join(&file);
            ensure_clean(&path.display().to_string(), &check_file(&path)?)?;
            eprintln!("policy-check: {}: no findings", path.display());
            checked += 1;
        }
    }
    let newest = versions
        .last()
        .context("release/ holds no published version")?;
    let measurements = publish::MeasurementsFile::load(
        &root
            .join("release")
            .join(newest)
            .join(release::measurements_file_name(newest)),
    )?
    .measurements;
    let pins = ImagePins::new(&measurements.pcr0, &measurements.pcr1, &measurements.pcr2)?;
    for principals in [
        Principals::placeholders(),
        Principals::new("111122223333", "EnclaveParent", "KeyAdmin")?,
    ] {
        ensure_clean(
            "the key policy the release tool writes",
            &check_text(&template::key_policy(&pins, &principals))?,
        )?;
    }
    ensure_clean(
        "the IAM policy the release tool writes",
        &check_text(&template::iam_policy(&pins))?,
    )?;
    eprintln!(
        "policy-check: {checked} published template(s) and the release tool's templates (for \
         release {newest}'s PCRs): no findings"
    );
    let paths = ccc_lifecycle::files::Files::default().resolve(&root);
    let stale = ccc_lifecycle::policy::stale_renderings(&paths)?;
    ensure!(stale.is_empty(), "{}", stale.join("\n"));
    eprintln!(
        "policy-check: every environment of {} is rendered in deploy/policies/ and recorded in \
         {}",
        paths.environments.display(),
        paths.expectations.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_policy::Rule;

    /// Release 0.1.0's key policy is the one issue 10 §2 reviewed: key administration through
    /// the account root, secrets only implicitly denied, an enclave role that may rewrite the
    /// policy, and operators able to mint sealed blobs. The linter names each of them; the
    /// release is superseded (release/pcr-expectations.json says so), not rewritten.
    #[test]
    fn release_0_1_0_has_its_known_findings() {
        let root = crate::workspace_root();
        let path = root.join("release/0.1.0/kms-policy-template-0.1.0.json");
        let findings = check_file(&path).unwrap();
        let rules: Vec<Rule> = findings.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            [
                Rule::AdminViaAccountRoot,
                Rule::NoExplicitDeny,
                Rule::NoExplicitDeny,
                Rule::NoExplicitDeny,
                Rule::NoExplicitDeny,
                Rule::EnclaveCanChangePolicy,
                Rule::EncryptCanMintSealedBlobs,
            ],
            "{findings:#?}"
        );
        let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert!(lines[0].starts_with(
            "finding: admin-via-account-root: Statement[0] \"KeyAdministrationByTheAccount\": \
             allows kms:PutKeyPolicy to arn:aws:iam::ACCOUNT:root"
        ));
        for (line, what) in lines[1..5].iter().zip([
            "without attestation",
            "with another kms:RecipientAttestation:ImageSha384",
            "with another kms:RecipientAttestation:PCR1",
            "with another kms:RecipientAttestation:PCR2",
        ]) {
            assert!(
                line.starts_with(&format!(
                    "finding: no-explicit-deny: (policy): a request {what} is not explicitly \
                     denied"
                )),
                "{line}"
            );
        }
        assert!(
            lines[5].contains("arn:aws:iam::ACCOUNT:role/ROLE is not explicitly denied"),
            "{}",
            lines[5]
        );
        // Its IAM template only grants GenerateRandom under the pins: nothing to report.
        let iam = check_file(&root.join("release/0.1.0/iam-policy-template-0.1.0.json")).unwrap();
        assert!(iam.is_empty(), "{iam:#?}");
    }
}
