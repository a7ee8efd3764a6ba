//! `policy check|render|diff|apply` end to end: against the KMS emulator on loopback (its
//! `GetKeyPolicy`/`PutKeyPolicy` authorised by the key policy itself, with KMS's lockout check),
//! through the SDK's SigV4 client; and the repository's own renderings kept current.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is the test failure"
)]

mod common;

use ccc_emulator::{Config, Credential, Emulator, Running};
use ccc_lifecycle::Context;
use ccc_lifecycle::kms::Signer;
use ccc_sdk::credentials::StaticCredentials;
use common::{ACCOUNT, REGION, Scratch};
use std::sync::Arc;

fn credential(id: &str, principal: &str) -> Credential {
    Credential::new(
        id,
        "policy/commands/secret/key/0123456789abcd",
        None,
        principal,
    )
    .unwrap()
}

fn session(role: &str) -> String {
    format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/test")
}

fn context(scratch: &Scratch, credential: &Credential) -> Context {
    Context {
        root: scratch.root.clone(),
        signer: Signer::Given(Arc::new(StaticCredentials::new(
            credential.sigv4().unwrap(),
        ))),
    }
}

/// The emulator, and the scratch environments pointed at its default key.
fn emulator(scratch: &Scratch, admin: &Credential, parent: &Credential) -> Running {
    let running = Emulator::start(
        Config::new(scratch.root.join("kms/state.json"))
            .with_region(REGION)
            .with_log(false)
            .with_credential(admin.clone())
            .with_credential(parent.clone()),
    )
    .unwrap();
    let path = scratch.root.join("deploy/environments.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        running.default_key_arn(),
    );
    std::fs::write(&path, text).unwrap();
    running
}

fn kms_args(running: &Running) -> Vec<String> {
    vec![
        "--endpoint-url".into(),
        format!("https://127.0.0.1:{}", running.addr().port()),
        "--ca-file".into(),
        running.ca_path().display().to_string(),
    ]
}

fn run(context: &Context, args: &[&str], kms: &[String]) -> (u8, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(kms.iter().map(String::as_str));
    common::policy(context, &all)
}

fn live(running: &Running, admin: &Credential) -> String {
    let client = ccc_lifecycle::kms::client(
        &ccc_lifecycle::kms::KmsOptions {
            endpoint_url: Some(format!("https://127.0.0.1:{}", running.addr().port())),
            ca_file: Some(running.ca_path().to_owned()),
        },
        REGION,
        &Signer::Given(Arc::new(StaticCredentials::new(admin.sigv4().unwrap()))),
    )
    .unwrap();
    ccc_lifecycle::kms::key_policy(&client, running.default_key_arn()).unwrap()
}

/// Render, diff, apply, roll a release out, and every refusal: a policy failing the checks, a
/// caller KMS denies, the lockout check. What the emulator holds is read back each time.
#[test]
fn diff_and_apply_round_trip_against_the_kms_emulator() {
    let scratch = Scratch::new("apply");
    let admin = credential("AKIASTAGINGKEYADMIN1", &session("staging-key-admin"));
    let parent = credential("AKIASTAGINGPARENT001", &session("staging-parent"));
    let running = emulator(&scratch, &admin, &parent);
    let kms = kms_args(&running);
    let as_admin = context(&scratch, &admin);

    // The key starts with KMS's default policy: everything differs.
    let (code, out) = run(&as_admin, &["diff", "--env", "staging"], &kms);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  + release 0.2.0") && out.contains("  + release 0.3.0"),
        "{out}"
    );
    assert!(out.contains("statements:") && out.contains("  - "), "{out}");

    // Without --yes: the diff only.
    let before = live(&running, &admin);
    let (code, out) = run(&as_admin, &["apply", "--env", "staging"], &kms);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dry run, nothing applied"), "{out}");
    assert_eq!(live(&running, &admin), before);

    // With --yes: KMS holds the rendered policy (PutKeyPolicy's empty answer decodes).
    let (code, out) = run(&as_admin, &["apply", "--env", "staging", "--yes"], &kms);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("applied to"), "{out}");
    let (code, _) = run(&as_admin, &["render", "--env", "staging"], &[]);
    assert_eq!(code, 0);
    let rendered =
        std::fs::read_to_string(scratch.root.join("deploy/policies/staging/key-policy.json"))
            .unwrap();
    assert_eq!(live(&running, &admin), rendered);
    let (code, out) = run(&as_admin, &["diff", "--env", "staging"], &kms);
    assert_eq!(
        (code, out.trim_end().ends_with("no difference")),
        (0, true),
        "{out}"
    );
    let (code, out) = run(&as_admin, &["apply", "--env", "staging", "--yes"], &kms);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");

    // The rollout's last step: 0.2.0 leaves staging.
    let path = scratch.root.join("deploy/environments.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "allowed_versions = [\"0.2.0\", \"0.3.0\"]",
        "allowed_versions = [\"0.3.0\"]",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let (code, out) = run(&as_admin, &["diff", "--env", "staging"], &kms);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  - release 0.2.0"), "{out}");
    assert!(!out.contains("  + release"), "{out}");
    let (code, out) = run(&as_admin, &["apply", "--env", "staging", "--yes"], &kms);
    assert_eq!(code, 0, "{out}");
    assert!(!live(&running, &admin).contains("EnclaveUseWithRelease 0.2.0"));

    // Refused before KMS: development's policy (debug mode admitted) for staging, and a policy
    // without the administrator.
    let (_, _) = run(&as_admin, &["render", "--env", "development"], &[]);
    let development = scratch
        .root
        .join("deploy/policies/development/key-policy.json");
    let applied = live(&running, &admin);
    let (code, out) = run(
        &as_admin,
        &[
            "apply",
            "--env",
            "staging",
            "--yes",
            "--policy",
            development.to_str().unwrap(),
        ],
        &kms,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("it lets staging accept debug mode"), "{out}");
    assert!(out.contains("nothing was applied"), "{out}");
    let mut value: serde_json::Value = serde_json::from_str(&applied).unwrap();
    value["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["Sid"] != "KeyAdministration");
    let locked = scratch.root.join("locked.json");
    std::fs::write(&locked, value.to_string()).unwrap();
    let (code, out) = run(
        &as_admin,
        &[
            "apply",
            "--env",
            "staging",
            "--yes",
            "--policy",
            locked.to_str().unwrap(),
        ],
        &kms,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("would lock out administration"), "{out}");
    assert_eq!(live(&running, &admin), applied);

    // Refused by KMS: the enclave's role may not even read the policy, and may never change it.
    let as_parent = context(&scratch, &parent);
    let (code, out) = run(&as_parent, &["diff", "--env", "staging"], &kms);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("GetKeyPolicy of") && out.contains("AccessDenied"),
        "{out}"
    );
    assert_eq!(live(&running, &admin), applied);
}

#[test]
fn check_exits_0_1_or_2_and_judges_with_the_environment() {
    let scratch = Scratch::new("check");
    let context = Context::new(&scratch.root);
    let (code, _) = common::policy(&context, &["render", "--env", "development"]);
    assert_eq!(code, 0);
    let (code, _) = common::policy(&context, &["render", "--env", "production"]);
    assert_eq!(code, 0);
    let development = scratch
        .root
        .join("deploy/policies/development/key-policy.json");
    let production = scratch
        .root
        .join("deploy/policies/production/key-policy.json");
    let file = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    assert_eq!(
        common::policy(&context, &["check", &file(&production)]).0,
        0
    );
    assert_eq!(
        common::policy(
            &context,
            &["check", &file(&development), "--env", "development"]
        )
        .0,
        0
    );
    // The same policy under production's rules: debug mode is a finding.
    let (code, out) = common::policy(&context, &["check", &file(&development)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("finding: accepts-debug-mode"), "{out}");
    assert!(out.contains("finding: zero-pcr"), "{out}");
    let bad = scratch.root.join("bad.json");
    std::fs::write(&bad, r#"{"Statement": {"Effect": "Maybe"}}"#).unwrap();
    let (code, out) = common::policy(&context, &["check", &file(&bad)]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not a key policy"), "{out}");
    let (code, out) = common::policy(&context, &["check", "absent.json"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = common::policy(&context, &["render", "--env", "qa"]);
    assert_eq!(code, 2);
    assert!(out.contains("no environment `qa`"), "{out}");
}

#[test]
fn render_records_the_environments_and_stale_renderings_are_named() {
    let scratch = Scratch::new("render");
    let context = Context::new(&scratch.root);
    let paths = scratch.paths();
    let stale = ccc_lifecycle::policy::stale_renderings(&paths).unwrap();
    // Nothing rendered yet: every file, and the expectations, are stale.
    assert_eq!(stale.len(), 9, "{stale:#?}");
    for env in ["development", "staging", "production", "canary"] {
        let (code, out) = common::policy(&context, &["render", "--env", env]);
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(
        ccc_lifecycle::policy::stale_renderings(&paths).unwrap(),
        Vec::<String>::new()
    );
    let expectations = paths.expectations().unwrap();
    let environments = |v: &str| -> Vec<String> {
        expectations
            .get(v)
            .unwrap()
            .environments
            .iter()
            .cloned()
            .collect()
    };
    assert_eq!(environments("0.1.0"), Vec::<String>::new());
    assert_eq!(environments("0.2.0"), ["production", "staging"]);
    assert_eq!(environments("0.3.0"), ["canary", "development", "staging"]);
    // Measurements untouched.
    assert!(
        expectations
            .get("0.3.0")
            .unwrap()
            .same_measurements(common::expectations().get("0.3.0").unwrap())
    );
    // A hand edit is caught.
    let key = scratch.root.join("deploy/policies/staging/key-policy.json");
    let text = std::fs::read_to_string(&key).unwrap();
    std::fs::write(&key, text.replace("kms:Decrypt", "kms:Encrypt")).unwrap();
    let stale = ccc_lifecycle::policy::stale_renderings(&paths).unwrap();
    assert_eq!(stale.len(), 1, "{stale:#?}");
    assert!(
        stale[0].contains("cargo xtask policy render --env staging"),
        "{stale:#?}"
    );
}

/// The repository's own deploy/environments.toml is valid, rendered and recorded.
#[test]
fn the_committed_environments_are_rendered_and_recorded() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let paths = ccc_lifecycle::files::Files::default().resolve(&root);
    let stale = ccc_lifecycle::policy::stale_renderings(&paths).unwrap();
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}
