//! The `policy check FILE` command (`cargo xtask policy check`, `cargo ccc policy check`):
//! lints a KMS key policy (or an IAM identity policy) with `ccc_policy::check`, the rules in
//! that crate's docs. A thin wrapper: reading the file and choosing the exit status is all that
//! lives here; the release pipeline refuses to publish a template with findings through
//! [`check_text`].
//!
//! Exit status: 0 without findings, 1 with findings (one line each on stdout:
//! `finding: <rule-id>: <where>: <what, and the fix>`), 2 when the file cannot be read or is
//! not a policy.

use ccc_policy::{Finding, Policy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::{Error, IoContext, Result};

/// `policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
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

/// Runs the command and returns its exit status (its own: findings and unreadable input
/// differ).
#[must_use]
pub fn run(command: &Command) -> ExitCode {
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
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        },
    }
}

/// The findings for a policy document's text.
///
/// # Errors
/// The text is not a policy (the parser's error names the field and the fix).
pub fn check_text(text: &str) -> Result<Vec<Finding>> {
    let policy = Policy::parse_any(text)
        .map_err(|e| Error::invalid("the policy document", e.to_string()))?;
    Ok(ccc_policy::check::check(&policy))
}

/// The findings for a policy file.
///
/// # Errors
/// The file cannot be read or is not a policy.
pub fn check_file(path: &Path) -> Result<Vec<Finding>> {
    let text = std::fs::read_to_string(path).io("read", path)?;
    check_text(&text).map_err(|e| e.context(format!("{} is not a policy", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_policy::Rule;
    use ccc_policy::template::{self, ImagePins, Principals};

    /// Release 0.1.0's key policy is the one issue 10 §2 reviewed: key administration through
    /// the account root, secrets only implicitly denied, an enclave role that may rewrite the
    /// policy, and operators able to mint sealed blobs. The linter names each of them; the
    /// release is superseded (release/pcr-expectations.json says so), not rewritten.
    #[test]
    fn release_0_1_0_has_its_known_findings() {
        let root = crate::tests::ccc_root();
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
