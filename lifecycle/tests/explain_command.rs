//! `explain` as a command: documents from files (raw or hex) or fresh from a running enclave
//! template, the key policy from a file or from the environment's key (`GetKeyPolicy` on the
//! KMS emulator); exit 0 when KMS would allow, 1 when it would refuse, 2 on bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is the test failure"
)]

mod common;

use ccc_emulator::{Config, Credential, Emulator};
use ccc_lifecycle::Context;
use ccc_lifecycle::kms::Signer;
use ccc_sdk::credentials::StaticCredentials;
use ccc_sdk::crypto::{AwsLcRsaKey, RsaDecryptionKey};
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::time::UnixMillis;
use common::{ACCOUNT, REGION, Scratch, hex_of};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// 2026-12-01T10:00:00Z.
const AT: &str = "2026-12-01T10:00:00Z";
const AT_MILLIS: UnixMillis = UnixMillis(1_796_119_200_000);

fn pcrs(seed: u8) -> BTreeMap<u16, [u8; 48]> {
    (0u16..=2)
        .map(|i| {
            let byte = if seed == 0 { 0 } else { seed + i as u8 };
            (i, [byte; 48])
        })
        .collect()
}

fn config(pcrs: &BTreeMap<u16, [u8; 48]>, clock: Option<UnixMillis>) -> SimulatorConfig {
    let mut config = SimulatorConfig::default();
    if let Some(at) = clock {
        config = config.with_fixed_time(at);
    }
    for (index, value) in pcrs {
        config = config.with_pcr(*index, *value);
    }
    config
}

/// A document of an enclave measuring `pcrs` under `root`'s hierarchy, at AT.
fn document(root: &Simulator, pcrs: &BTreeMap<u16, [u8; 48]>, key: &AwsLcRsaKey) -> Vec<u8> {
    Nsm::with_transport(Box::new(
        root.sibling(config(pcrs, Some(AT_MILLIS))).unwrap(),
    ))
    .attestation(None, None, Some(key.public_key_spki()))
    .unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn session(role: &str) -> String {
    format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/i-0abc")
}

struct Files {
    scratch: Scratch,
    development: String,
    staging: String,
    root: String,
    release: String,
    previous: String,
    debug: String,
}

fn files(name: &str) -> Files {
    let scratch = Scratch::new(name);
    let context = Context::new(&scratch.root);
    for env in ["development", "staging"] {
        assert_eq!(common::policy(&context, &["render", "--env", env]).0, 0);
    }
    let policies = scratch.root.join("deploy/policies");
    let root = Simulator::new(SimulatorConfig::default().with_fixed_time(AT_MILLIS)).unwrap();
    let key = AwsLcRsaKey::generate().unwrap();
    let mut release = pcrs(0x30);
    release.insert(8, [0x88; 48]);
    let dir = scratch.root.clone();
    Files {
        development: policies
            .join("development/key-policy.json")
            .display()
            .to_string(),
        staging: policies
            .join("staging/key-policy.json")
            .display()
            .to_string(),
        root: write(&dir, "root.pem", root.root_pem().as_bytes()),
        // Raw CBOR and hex: both are read.
        release: write(&dir, "release.cbor", &document(&root, &release, &key)),
        previous: write(
            &dir,
            "previous.hex",
            hex::encode(document(&root, &pcrs(0x20), &key)).as_bytes(),
        ),
        debug: write(&dir, "debug.cbor", &document(&root, &pcrs(0), &key)),
        scratch,
    }
}

/// `explain` with the usual options; `extra` adds options or replaces `--operation`/`--at`.
fn explain(files: &Files, document: &str, policy: &str, extra: &[&str]) -> (u8, String) {
    let principal = session("development-parent");
    let mut args = vec![
        "--document",
        document,
        "--policy",
        policy,
        "--principal",
        &principal,
        "--root",
        &files.root,
    ];
    for (flag, default) in [("--operation", "Decrypt"), ("--at", AT)] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend_from_slice(extra);
    common::explain(&Context::new(&files.scratch.root), &args)
}

#[test]
fn documents_from_files_are_explained_with_exit_0_or_1() {
    let f = files("explain-files");
    let (code, out) = explain(&f, &f.release, &f.development, &["--context", "app=ccc"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("published release: 0.3.0"), "{out}");
    assert!(
        out.contains("statement \"EnclaveUseWithRelease 0.3.0\" (Allow): APPLIES"),
        "{out}"
    );
    assert!(out.contains("decision: ALLOWED"), "{out}");
    assert!(
        out.contains("chain to a root trusted by emulation"),
        "{out}"
    );

    let (code, out) = explain(&f, &f.previous, &f.development, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("published release: 0.2.0"), "{out}");
    assert!(
        out.contains("statement \"DenySecretsUnlessImageSha384Matches\" (Deny): APPLIES"),
        "{out}"
    );
    assert!(out.contains(&format!("request  {}", hex_of(0x20))), "{out}");
    assert!(
        out.contains("KMS answers AccessDeniedException: User: "),
        "{out}"
    );
    assert!(out.contains("is allowed in production, staging"), "{out}");

    // Debug mode: development admits it, staging does not (and says why).
    assert_eq!(explain(&f, &f.debug, &f.development, &[]).0, 0);
    let (code, out) = explain(&f, &f.debug, &f.staging, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DEBUG MODE"), "{out}");
    assert!(out.contains("start it without --debug-mode"), "{out}");

    // Another principal: the enclave role is not it.
    let other = session("someone-else");
    let (code, out) = common::explain(
        &Context::new(&f.scratch.root),
        &[
            "--document",
            &f.release,
            "--policy",
            &f.development,
            "--principal",
            &other,
            "--operation",
            "kms:Decrypt",
            "--at",
            AT,
            "--root",
            &f.root,
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no Allow statement names"), "{out}");
}

#[test]
fn missing_expired_and_foreign_documents_are_named() {
    let f = files("explain-refused");
    let principal = session("development-parent");
    let context = Context::new(&f.scratch.root);
    let (code, out) = common::explain(
        &context,
        &[
            "--no-attestation",
            "--policy",
            &f.development,
            "--principal",
            &principal,
            "--operation",
            "Decrypt",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("attestation: NONE"), "{out}");
    assert!(out.contains("request  (absent)"), "{out}");
    // Without --root, KMS's trust: AWS's root only.
    let (code, out) = common::explain(
        &context,
        &[
            "--document",
            &f.release,
            "--policy",
            &f.development,
            "--principal",
            &principal,
            "--operation",
            "Decrypt",
            "--at",
            AT,
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REFUSED (foreign document: untrusted root)"),
        "{out}"
    );
    assert!(out.contains("published release: 0.3.0"), "{out}");
    assert!(
        out.contains("real KMS trusts only AWS Nitro Enclaves Root G1"),
        "{out}"
    );
    // A year later, the chain has expired.
    let (code, out) = explain(
        &f,
        &f.release,
        &f.development,
        &["--at", "2027-12-01T10:00:00Z"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REFUSED (expired)"), "{out}");
    assert!(
        out.contains("ask the enclave for a fresh document"),
        "{out}"
    );
}

#[test]
fn bad_input_exits_2_naming_the_fix() {
    let f = files("explain-bad");
    let garbage = write(&f.scratch.root, "garbage.txt", b"not a document!");
    for (extra, words) in [
        (
            vec!["--context", "novalue"],
            "--context: `novalue`: write KEY=VALUE",
        ),
        (
            vec!["--operation", "Frobnicate"],
            "--operation: `Frobnicate` is not a KMS operation",
        ),
        (vec!["--at", "yesterday"], "--at: `yesterday`"),
    ] {
        let (code, out) = explain(&f, &f.release, &f.development, &extra);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(words), "{words}: {out}");
    }
    let (code, out) = explain(&f, &garbage, &f.development, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not raw CBOR"), "{out}");
    let (code, out) = explain(&f, &f.release, "absent.json", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot read absent.json"), "{out}");
    let (code, out) = explain(&f, &f.release, &f.root, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not a key policy"), "{out}");
}

/// `--enclave`: the real enclave template (simulator NSM) answers `attest` with a fresh
/// document binding the nonce explain sent.
#[test]
fn a_running_template_gives_a_fresh_document() {
    let f = files("explain-enclave");
    let mut release = pcrs(0x30);
    release.insert(8, [0x88; 48]);
    let simulator = Simulator::new(config(&release, None)).unwrap();
    let root = write(
        &f.scratch.root,
        "enclave-root.pem",
        simulator.root_pem().as_bytes(),
    );
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let env: BTreeMap<String, String> = [
        ("CCC_APP_REGION", REGION.to_owned()),
        ("CCC_APP_LISTEN", "tcp://127.0.0.1:0".to_owned()),
        (
            "CCC_APP_KMS_ENDPOINT",
            format!("tcp://127.0.0.1:{dead_port}"),
        ),
        (
            "CCC_APP_CREDENTIALS_ENDPOINT",
            format!("tcp://127.0.0.1:{dead_port}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = enclave::config::Settings::from_sources(&env, "console=ttyS0").unwrap();
    let (console, _lines) = enclave::console::Console::capture();
    let started =
        enclave::start(&settings, Nsm::with_transport(Box::new(simulator)), console).unwrap();
    let principal = session("development-parent");
    let endpoint = started.address().to_owned();
    let (code, out) = common::explain(
        &Context::new(&f.scratch.root),
        &[
            "--enclave",
            &endpoint,
            "--policy",
            &f.development,
            "--principal",
            &principal,
            "--operation",
            "GenerateDataKey",
            "--root",
            &root,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("published release: 0.3.0"), "{out}");
    assert!(out.contains("kms:GenerateDataKey"), "{out}");
    let (code, out) = common::explain(
        &Context::new(&f.scratch.root),
        &[
            "--enclave",
            &format!("tcp://127.0.0.1:{dead_port}"),
            "--policy",
            &f.development,
            "--principal",
            &principal,
            "--operation",
            "Decrypt",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is the enclave running"), "{out}");
}

/// `--env`: the policy comes from the environment's key (GetKeyPolicy), the principal defaults
/// to its enclave role.
#[test]
fn env_reads_the_live_policy_of_the_environment_key() {
    let f = files("explain-env");
    let admin = Credential::new(
        "AKIADEVELOPERKEYADM1",
        "explain/env/secret/key/0123456789abcdefgh",
        None,
        session("development-key-admin"),
    )
    .unwrap();
    let running = Emulator::start(
        Config::new(f.scratch.root.join("kms/state.json"))
            .with_region(REGION)
            .with_log(false)
            .with_policy(std::fs::read_to_string(&f.development).unwrap())
            .with_credential(admin.clone()),
    )
    .unwrap();
    let path = f.scratch.root.join("deploy/environments.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        running.default_key_arn(),
    );
    std::fs::write(&path, text).unwrap();
    let context = Context {
        root: f.scratch.root.clone(),
        signer: Signer::Given(Arc::new(StaticCredentials::new(admin.sigv4().unwrap()))),
    };
    let endpoint = format!("https://127.0.0.1:{}", running.addr().port());
    let ca = running.ca_path().display().to_string();
    let (code, out) = common::explain(
        &context,
        &[
            "--env",
            "development",
            "--document",
            &f.release,
            "--operation",
            "Decrypt",
            "--at",
            AT,
            "--root",
            &f.root,
            "--endpoint-url",
            &endpoint,
            "--ca-file",
            &ca,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "request: kms:Decrypt by arn:aws:sts::{ACCOUNT}:assumed-role/development-parent/ccc-explain on {}",
            running.default_key_arn()
        )),
        "{out}"
    );
    let _: PathBuf = path;
}
