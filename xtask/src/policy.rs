//! `cargo xtask policy check FILE`: lints a KMS key policy (or an IAM identity policy) with
//! `ccc_policy::check`, the rules in that crate's docs. A thin wrapper: reading the file and
//! choosing the exit status is all that lives here.
//!
//! Exit status: 0 without findings, 1 with findings (one line each on stdout:
//! `finding: <rule-id>: <where>: <what, and the fix>`), 2 when the file cannot be read or is
//! not a policy.
//!
//! Also the CI step `policy-check`: every template published from 0.2.0 on (0.1.0's is
//! superseded; its findings are pinned by a test here), and the templates the release tool
//! writes today.

use anyhow::{Context, Result, ensure};
use ccc_policy::template::{self, ImagePins, Principals};
use ccc_policy::{Finding, Policy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::release::{self, publish};

/// `cargo xtask policy ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Lint a KMS key policy or IAM policy: an Allow of Decrypt/GenerateDataKey/... without
    /// attestation conditions, case-sensitive operators or upper-case, all-zero or malformed
    /// PCR values, wildcard principals, kms:* to the enclave's role, PCR2-only pinning, key
    /// administration through the account root, secret requests only implicitly denied, an
    /// enclave role not denied policy and grant changes, Encrypt with the enclave's sealing
    /// context, nobody left to change the policy. Exit 1 with one line per finding, 2 if FILE
    /// is unreadable or not a policy.
    Check {
        /// The policy document (JSON), e.g. release/0.2.0/kms-policy-template-0.2.0.json.
        file: PathBuf,
    },
}

/// The oldest release whose published templates must pass the linter (0.1.0's predates it).
pub(crate) const FIRST_CHECKED_RELEASE: &str = "0.2.0";

/// Runs the command and returns its exit status.
#[must_use]
pub(crate) fn run(command: &Command) -> ExitCode {
    match command {
        Command::Check { file } => match check_file(file) {
            Ok(findings) if findings.is_empty() => {
                eprintln!("policy check: {}: no findings", file.display());
                ExitCode::SUCCESS
            }
            Ok(findings) => {
                for finding in &findings {
                    println!("{finding}");
                }
                eprintln!(
                    "policy check: {}: {} finding(s)",
                    file.display(),
                    findings.len()
                );
                ExitCode::from(1)
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// The findings for a policy document's text.
///
/// # Errors
/// The text is not a policy (the parser's error names the field and the fix).
pub(crate) fn check_text(text: &str) -> Result<Vec<Finding>> {
    let policy = Policy::parse_any(text)?;
    Ok(ccc_policy::check::check(&policy))
}

/// The findings for a policy file.
///
/// # Errors
/// The file cannot be read or is not a policy.
pub(crate) fn check_file(path: &Path) -> Result<Vec<Finding>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    check_text(&text).with_context(|| format!("{} is not a policy", path.display()))
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

    #[test]
    fn exit_status_is_0_1_or_2() {
        let dir = std::env::temp_dir().join(format!("ccc-policy-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let pins = ImagePins::new(&"ab".repeat(48), &"cd".repeat(48), &"ef".repeat(48)).unwrap();
        let good = write(
            "good.json",
            &template::key_policy(&pins, &Principals::placeholders()),
        );
        let bad = write(
            "bad.json",
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}}"#,
        );
        let broken = write("broken.json", r#"{"Statement": {"Effect": "Maybe"}}"#);
        let status = |file: PathBuf| run(&Command::Check { file });
        assert_eq!(status(good), ExitCode::SUCCESS);
        assert_eq!(status(bad), ExitCode::from(1));
        assert_eq!(status(broken), ExitCode::from(2));
        assert_eq!(status(dir.join("absent.json")), ExitCode::from(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
