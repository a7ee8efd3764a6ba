//! `cargo xtask policy diff` and `policy apply` against moto, an independent KMS that verifies
//! SigV4 (IAM authentication on): the rendered key policy goes in with PutKeyPolicy (moto
//! answers with an empty body, as KMS does), comes back byte for byte with GetKeyPolicy, and a
//! rollout step (a release leaving the environment) shows as one release removed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use ccc_lifecycle::Context;
use ccc_lifecycle::kms::{KmsOptions, Signer};
use ccc_policy::expectations::{Expectations, Release};
use ccc_sdk::credentials::StaticCredentials;
use ccc_tests::moto::{Moto, REGION};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("tools")
}

fn hex_of(byte: u8) -> String {
    format!("{byte:02x}").repeat(48)
}

/// Two synthetic releases and a production environment on moto's key.
fn scratch(account: &str, key_arn: &str, allowed: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("moto-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("release")).unwrap();
    std::fs::create_dir_all(root.join("deploy")).unwrap();
    let mut e = Expectations::default();
    for (version, seed) in [("0.2.0", 0x20u8), ("0.3.0", 0x30)] {
        e.record(
            version,
            Release::new(
                [&hex_of(seed), &hex_of(seed + 1), &hex_of(seed + 2)],
                None,
                "2026-12-01T10:00:00Z",
                &"ab".repeat(20),
            )
            .unwrap(),
        )
        .unwrap();
    }
    std::fs::write(root.join("release/pcr-expectations.json"), e.to_json()).unwrap();
    write_environments(&root, account, key_arn, allowed);
    root
}

fn write_environments(root: &Path, account: &str, key_arn: &str, allowed: &str) {
    std::fs::write(
        root.join("deploy/environments.toml"),
        format!(
            r#"format = 1
[environments.production]
kind = "production"
account = "{account}"
region = "{REGION}"
key_arn = "{key_arn}"
enclave_role_arn = "arn:aws:iam::{account}:role/ccc-parent"
key_admin_role_arn = "arn:aws:iam::{account}:role/ccc-key-admin"
pin = "pcrs"
allowed_versions = [{allowed}]
"#
        ),
    )
    .unwrap();
}

fn policy(context: &Context, args: &[&str]) -> (u8, String) {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ccc_lifecycle::policy::Args,
    }
    let cli = <Cli as clap::Parser>::try_parse_from(
        std::iter::once("policy").chain(args.iter().copied()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let code = ccc_lifecycle::policy::execute(context, &cli.args, &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn diff_and_apply_round_trip_against_moto() {
    let moto = Moto::start(&tools_dir()).unwrap_or_else(|e| panic!("{e}"));
    let account = moto.set_up_account().unwrap_or_else(|e| panic!("{e}"));
    let account_id = account.key_arn.split(':').nth(4).unwrap().to_owned();
    let root = scratch(&account_id, &account.key_arn, "\"0.2.0\", \"0.3.0\"");
    let signer = Signer::Given(Arc::new(StaticCredentials::new(
        account.credentials.clone(),
    )));
    let context = Context {
        root: root.clone(),
        signer: signer.clone(),
    };
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| (*a).to_owned())
            .chain(["--endpoint-url".to_owned(), endpoint.clone()])
            .collect()
    };
    let run = |args: &[&str]| {
        let args = with(args);
        policy(
            &context,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let live = || {
        let client = ccc_lifecycle::kms::client(
            &KmsOptions {
                endpoint_url: Some(endpoint.clone()),
                ca_file: None,
            },
            REGION,
            &signer,
        )
        .unwrap();
        ccc_lifecycle::kms::key_policy(&client, &account.key_arn).unwrap()
    };

    // moto's default policy for the key: both releases are new.
    let (code, out) = run(&["diff", "--env", "production"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  + release 0.2.0") && out.contains("  + release 0.3.0"),
        "{out}"
    );
    let (code, out) = run(&["apply", "--env", "production", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(policy(&context, &["render", "--env", "production"]).0, 0);
    let rendered =
        std::fs::read_to_string(root.join("deploy/policies/production/key-policy.json")).unwrap();
    assert_eq!(live(), rendered);
    let (code, out) = run(&["diff", "--env", "production"]);
    assert_eq!(code, 0, "{out}");

    // The rollout's last step: 0.2.0 leaves production.
    write_environments(&root, &account_id, &account.key_arn, "\"0.3.0\"");
    let (code, out) = run(&["diff", "--env", "production"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  - release 0.2.0") && !out.contains("  + release"),
        "{out}"
    );
    let (code, out) = run(&["apply", "--env", "production", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(!live().contains("0.2.0"));
    assert!(live().contains("EnclaveUseWithRelease 0.3.0"));
    std::fs::remove_dir_all(&root).unwrap();
}
