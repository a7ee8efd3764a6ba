//! `cargo ccc policy …` and `cargo ccc explain …` are `ccc-lifecycle`'s commands, run by the
//! installed binary as a team runs it: in a directory of its own (here not a cargo project, so
//! the files are the directory's `deploy/environments.toml` and `release/pcr-expectations.json`),
//! with their exit statuses (0, 1 for findings or a denial, 2 for bad input).
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is the test failure"
)]

use ccc_policy::expectations::{Expectations, Release};
use std::path::{Path, PathBuf};
use std::process::Command;

const ACCOUNT: &str = "111122223333";

/// A directory with one published release and a staging environment allowing it, outside any
/// cargo workspace (under the target directory, `cargo metadata` would find CCC's own and the
/// commands would read CCC's files).
fn scratch() -> PathBuf {
    let root = std::env::temp_dir().join(format!("cargo-ccc-lifecycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("release")).unwrap();
    std::fs::create_dir_all(root.join("deploy")).unwrap();
    let mut expectations = Expectations::default();
    let hex = |byte: u8| format!("{byte:02x}").repeat(48);
    expectations
        .record(
            "0.3.0",
            Release::new(
                [&hex(0x30), &hex(0x31), &hex(0x32)],
                None,
                "2026-12-01T10:00:00+00:00",
                &"ab".repeat(20),
            )
            .unwrap(),
        )
        .unwrap();
    std::fs::write(
        root.join("release/pcr-expectations.json"),
        expectations.to_json(),
    )
    .unwrap();
    std::fs::write(
        root.join("deploy/environments.toml"),
        format!(
            r#"format = 1

[environments.staging]
kind = "staging"
account = "{ACCOUNT}"
region = "us-east-1"
key_arn = "arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
enclave_role_arn = "arn:aws:iam::{ACCOUNT}:role/staging-parent"
key_admin_role_arn = "arn:aws:iam::{ACCOUNT}:role/staging-key-admin"
allowed_versions = ["0.3.0"]
pin = "pcrs"
"#
        ),
    )
    .unwrap();
    root
}

/// `cargo ccc ARGS...` in `dir`: exit status, stdout and stderr.
fn cargo_ccc(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cargo-ccc"))
        .arg("ccc")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn policy_and_explain_run_through_cargo_ccc() {
    let root = scratch();

    // render: the environment's policies, next to its environments file.
    let (code, out, err) = cargo_ccc(&root, &["policy", "render", "--env", "staging"]);
    assert_eq!(code, 0, "{out}{err}");
    let key_policy = root.join("deploy/policies/staging/key-policy.json");
    let text = std::fs::read_to_string(&key_policy).unwrap();
    assert!(text.contains(&"30".repeat(48)), "{text}");
    let key_policy = key_policy.to_str().unwrap();

    // check: the rendering passes; a wildcard kms:* fails (1); an unreadable file is 2.
    let (code, out, err) = cargo_ccc(&root, &["policy", "check", key_policy]);
    assert_eq!(code, 0, "{out}{err}");
    let bad = root.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}}"#,
    )
    .unwrap();
    let (code, out, err) = cargo_ccc(&root, &["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("finding: "), "{out}");
    let (code, out, err) = cargo_ccc(&root, &["policy", "check", "absent.json"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("absent.json"), "{err}");

    // explain: the enclave's role without attestation is denied (1), and says why.
    let principal = format!("arn:aws:iam::{ACCOUNT}:role/staging-parent");
    let (code, out, err) = cargo_ccc(
        &root,
        &[
            "explain",
            "--no-attestation",
            "--policy",
            key_policy,
            "--principal",
            &principal,
            "--operation",
            "Decrypt",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("attestation: NONE"), "{out}");
    // An unknown environment is bad input (2), naming it.
    let (code, out, err) = cargo_ccc(
        &root,
        &[
            "explain",
            "--no-attestation",
            "--env",
            "nowhere",
            "--operation",
            "Decrypt",
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("nowhere"), "{err}");

    std::fs::remove_dir_all(&root).unwrap();
}
