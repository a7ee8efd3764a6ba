//! `ccc-template-parent client` against a running enclave (the template's own `enclave::start`
//! with the signed NSM simulator, the KMS emulator and a credentials server, all on
//! loopback): every operation prints its JSON, an error frame exits 2 with its JSON, and the
//! vhost-device-vsock path (`vhost-uds://`) performs the `CONNECT <port>` / `OK <port>`
//! handshake before speaking the protocol.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccc_emulator::{Config, Emulator, Running, TrustMode};
use ccc_sdk::credentials::parent::{self, ServeOptions};
use ccc_sdk::credentials::{CredentialsProvider, StaticCredentials};
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use common::{run, scratch};
use enclave::config::Settings;
use enclave::console::Console;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PCRS: [[u8; 48]; 3] = [[0xb0; 48], [0xb1; 48], [0xb2; 48]];

fn policy(pcr2: [u8; 48]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "EnclaveOnly", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:role/ccc-emulator-parent"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom"],
            "Resource": "*",
            "Condition": {"StringEqualsIgnoreCase": {
                "kms:RecipientAttestation:PCR2": hex::encode(pcr2)}}}]
    })
    .to_string()
}

/// An enclave on loopback whose key policy pins `pcr2`; returns it and the root PEM's path.
struct World {
    _running: Running,
    address: SocketAddr,
    root_pem: PathBuf,
    dir: PathBuf,
}

impl World {
    fn start(name: &str, pcr2: [u8; 48]) -> Self {
        let dir = scratch(name);
        let mut config = SimulatorConfig::default();
        for (index, value) in (0u16..).zip(PCRS) {
            config = config.with_pcr(index, value);
        }
        let simulator = Simulator::new(config).unwrap();
        let root_pem = dir.join("root.pem");
        std::fs::write(&root_pem, simulator.root_pem()).unwrap();
        let running = Emulator::start(
            Config::new(dir.join("state.json"))
                .with_log(false)
                .with_trust(TrustMode::development_root_pem(simulator.root_pem()).unwrap())
                .with_policy(policy(pcr2)),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let credentials_port = listener.local_addr().unwrap().port();
        let provider: Arc<dyn CredentialsProvider> = Arc::new(StaticCredentials::new(
            running.credentials().sigv4().unwrap(),
        ));
        std::thread::spawn(move || parent::serve(&listener, provider, ServeOptions::default()));
        let env: BTreeMap<String, String> = [
            ("CCC_APP_LISTEN", "tcp://127.0.0.1:0".to_owned()),
            (
                "CCC_APP_KMS_ENDPOINT",
                format!("tcp://127.0.0.1:{}", running.addr().port()),
            ),
            ("CCC_APP_KMS_HOST", running.host_name().to_owned()),
            (
                "CCC_APP_KMS_CA_FILE",
                running.ca_path().display().to_string(),
            ),
            (
                "CCC_APP_CREDENTIALS_ENDPOINT",
                format!("tcp://127.0.0.1:{credentials_port}"),
            ),
            ("CCC_APP_KEY_ARN", running.default_key_arn().to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let settings = Settings::from_sources(&env, "").unwrap();
        let started =
            enclave::start(&settings, Nsm::simulator(simulator), Console::stderr()).unwrap();
        let address = started
            .address()
            .strip_prefix("tcp://")
            .unwrap()
            .parse()
            .unwrap();
        // The serving thread runs for the rest of the test process.
        std::mem::forget(started);
        Self {
            _running: running,
            address,
            root_pem,
            dir,
        }
    }

    /// `client --enclave tcp://... ARGS`: (exit code, JSON on stdout, stderr).
    fn client(&self, args: &[&str]) -> (i32, Value, String) {
        client(&format!("tcp://{}", self.address), args)
    }
}

fn client(target: &str, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["client", "--enclave", target];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = run(&all);
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    (status.code().unwrap_or(-1), json, stderr)
}

fn b64(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().unwrap()).unwrap()
}

#[test]
fn every_operation_through_the_client_command() {
    let world = World::start("client-ok", PCRS[2]);

    let (code, json, stderr) = world.client(&["random", "16"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["type"], "random");
    assert_eq!(b64(&json["bytes"]).len(), 16);

    // attest, verified against the simulator's root with the nonce and PCR2 pinned.
    let pcr2 = format!("2={}", hex::encode(PCRS[2]));
    let root = world.root_pem.to_str().unwrap();
    let (code, json, stderr) = world.client(&[
        "attest",
        "--nonce",
        "00ff",
        "--user-data",
        "0102",
        "--root",
        root,
        "--expect-pcr",
        &pcr2,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["summary"]["pcrs"]["2"], hex::encode(PCRS[2]));
    assert_eq!(json["summary"]["signature"], "ES384");
    assert!(json["summary"]["verified"]["chain"].is_array(), "{json}");
    assert_eq!(json["public_key_sha256"].as_str().unwrap().len(), 64);
    // The same document does not pass for another PCR2.
    let wrong = format!("2={}", hex::encode([0u8; 48]));
    let (code, _, stderr) = world.client(&["attest", "--root", root, "--expect-pcr", &wrong]);
    assert_eq!(code, 1);
    assert!(stderr.contains("did not verify"), "{stderr}");

    // generate-data-key, then hmac under it (twice: the same MAC).
    let (code, json, stderr) = world.client(&["generate-data-key", "--context", "tenant=t1"]);
    assert_eq!(code, 0, "{stderr}");
    let blob = json["ciphertext_blob"].as_str().unwrap().to_owned();
    let hmac = |context: &str| {
        world.client(&[
            "hmac",
            "--blob",
            &blob,
            "--message",
            "hello",
            "--context",
            context,
        ])
    };
    let (code, first, stderr) = hmac("tenant=t1");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["mac_hex"].as_str().unwrap().len(), 64);
    assert_eq!(hmac("tenant=t1").1["mac"], first["mac"]);

    // seal / unseal, printed and to a file.
    let (code, json, stderr) =
        world.client(&["seal", "--data", "sealed text", "--context", "file=a"]);
    assert_eq!(code, 0, "{stderr}");
    let sealed = json["sealed"].as_str().unwrap().to_owned();
    let (code, json, stderr) =
        world.client(&["unseal", "--sealed", &sealed, "--context", "file=a"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(b64(&json["data"]), b"sealed text");
    let sealed_file = world.dir.join("blob.bin");
    std::fs::write(&sealed_file, STANDARD.decode(&sealed).unwrap()).unwrap();
    let out = world.dir.join("plain.txt");
    let (code, json, stderr) = world.client(&[
        "unseal",
        "--sealed-file",
        sealed_file.to_str().unwrap(),
        "--context",
        "file=a",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["bytes"], 11);
    assert_eq!(std::fs::read(&out).unwrap(), b"sealed text");

    // An error frame: JSON on stdout, exit 2.
    let (code, json, _) = world.client(&["unseal", "--sealed", &sealed, "--context", "file=b"]);
    assert_eq!(code, 2);
    assert_eq!(json["type"], "error");
    assert_eq!(json["step"], "kms Decrypt with Recipient");
    assert_eq!(json["code"], "foreign_blob", "{json}");
    // A request the client can already tell is invalid never leaves.
    let (code, _, stderr) = world.client(&["random", "0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("1 to 1024"), "{stderr}");
}

/// `attest --root` alone verified the signature and printed a `verified` block for whatever
/// image answered: a parent (or anyone on the path) running another image under the same
/// root would pass. Now a verification needs at least one PCR, from `--expect-pcr` or from a
/// published release's `pcr-measurements-V.json`, and without one the client stops before
/// calling the enclave, naming both options.
#[test]
fn attest_is_never_verified_without_a_pcr() {
    let world = World::start("client-attest-pcrs", PCRS[2]);
    let root = world.root_pem.to_str().unwrap();

    let (code, json, stderr) = world.client(&["attest", "--nonce", "00ff", "--root", root]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json, Value::Null, "nothing printed on stdout");
    assert!(
        stderr.contains("--expect-pcr N=HEX") && stderr.contains("--release V"),
        "{stderr}"
    );

    // --release V reads the published measurements (PCR0, PCR1, PCR2).
    let releases = world.dir.join("release");
    let write_release = |version: &str, pcrs: [[u8; 48]; 3]| {
        let dir = releases.join(version);
        std::fs::create_dir_all(&dir).unwrap();
        let measurements = serde_json::json!({
            "version": version,
            "measurements": {
                "HashAlgorithm": "Sha384 { ... }",
                "PCR0": hex::encode(pcrs[0]),
                "PCR1": hex::encode(pcrs[1]),
                "PCR2": hex::encode(pcrs[2]),
            },
        });
        std::fs::write(
            dir.join(format!("pcr-measurements-{version}.json")),
            measurements.to_string(),
        )
        .unwrap();
    };
    write_release("9.9.9", PCRS);
    let release_dir = releases.to_str().unwrap();
    let (code, json, stderr) = world.client(&[
        "attest",
        "--root",
        root,
        "--release",
        "9.9.9",
        "--release-dir",
        release_dir,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        json["summary"]["verified"]["pcrs_checked"],
        serde_json::json!(["0", "1", "2"]),
        "{json}"
    );
    // Another image's release does not verify.
    write_release("9.9.8", [PCRS[0], [0xaa; 48], PCRS[2]]);
    let (code, json, stderr) = world.client(&[
        "attest",
        "--root",
        root,
        "--release",
        "9.9.8",
        "--release-dir",
        release_dir,
    ]);
    assert_eq!((code, json), (1, Value::Null));
    assert!(
        stderr.contains("did not verify") && stderr.contains("PCR1"),
        "{stderr}"
    );
    // A release that is not there, and a pin contradicting the release, are named.
    let (code, _, stderr) = world.client(&[
        "attest",
        "--root",
        root,
        "--release",
        "0.0.0",
        "--release-dir",
        release_dir,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("pcr-measurements-0.0.0.json"), "{stderr}");
    let other_pcr0 = format!("0={}", hex::encode([0xcc; 48]));
    let (code, _, stderr) = world.client(&[
        "attest",
        "--root",
        root,
        "--release",
        "9.9.9",
        "--release-dir",
        release_dir,
        "--expect-pcr",
        &other_pcr0,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("PCR0 is cccc"), "{stderr}");
    // Without --root the document is printed, explicitly unverified.
    let (code, json, stderr) = world.client(&["attest"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["summary"]["verified"], Value::Null);
}

#[test]
fn access_denied_is_reported_with_the_pcr() {
    let world = World::start("client-denied", [0xee; 48]);
    let (code, json, _) = world.client(&["seal", "--data", "x"]);
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["code"], "kms_access_denied");
    assert_eq!(json["step"], "kms GenerateDataKey with Recipient");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "kms:RecipientAttestation:PCR2: request has {}, policy requires {}",
            hex::encode(PCRS[2]),
            hex::encode([0xee; 48])
        )),
        "{message}"
    );
}

/// vhost-device-vsock's host side, for one guest port: reads `CONNECT <port>\n`; for
/// `port` answers `OK <n>\n` and splices to `enclave`; for any other port closes (as the
/// backend does when the guest refuses).
fn fake_vhost(path: &Path, port: u32, enclave: SocketAddr) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line != format!("CONNECT {port}\n") {
                continue;
            }
            let upstream = TcpStream::connect(enclave).unwrap();
            let mut writer = stream.try_clone().unwrap();
            writer.write_all(b"OK 1073741824\n").unwrap();
            let mut up_writer = upstream.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut reader, &mut up_writer);
            });
            let mut up_reader = upstream;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_reader, &mut writer);
            });
        }
    });
}

#[test]
fn the_client_reaches_a_guest_through_the_vhost_uds_handshake() {
    let world = World::start("client-vhost", PCRS[2]);
    let uds = world.dir.join("vm.vsock");
    fake_vhost(&uds, 5000, world.address);
    let (code, json, stderr) = client(
        &format!("vhost-uds://{}:5000", uds.display()),
        &["random", "8"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(b64(&json["bytes"]).len(), 8);
    let (code, _, stderr) = client(
        &format!("vhost-uds://{}:5001", uds.display()),
        &["random", "8"],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("nothing listens on guest port 5001"),
        "{stderr}"
    );
}
