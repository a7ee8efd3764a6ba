//! The whole key-release chain on one machine, every piece real except the hardware: the NSM
//! simulator signs attestation documents; the parent's credentials server hands the parent
//! role's credentials to the enclave side over the credentials protocol; the attested KMS
//! client signs with SigV4 and talks TLS (trusting only the emulator's CA, SNI
//! `kms.<region>.amazonaws.com`) to the KMS emulator, which verifies each document against the
//! simulator's root, applies a key policy pinned to the enclave's PCRs, and answers with
//! `CiphertextForRecipient` that only the enclave's key opens.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use ccc_emulator::{Clock as EmulatorClock, Config, Emulator, Running, TrustMode};
use ccc_sdk::credentials::enclave::FromParent;
use ccc_sdk::credentials::parent::{self, ServeOptions};
use ccc_sdk::credentials::{CredentialsProvider, Refreshing, StaticCredentials};
use ccc_sdk::kms::attested::AttestedKmsClient;
use ccc_sdk::kms::client::{ClientConfig, ClientError, Event, KmsClient, Observer, Transport};
use ccc_sdk::kms::{
    DataKeyPairSpec, DecryptRequest, EncryptRequest, ErrorKind, GenerateDataKeyPairRequest,
    GenerateDataKeyRequest, KeyArn, KmsError,
};
use ccc_sdk::net::{Endpoint, TransportError};
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::time::UnixMillis;
use ccc_sdk::tls::TrustAnchors;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const PCRS: [[u8; 48]; 3] = [[0xc0; 48], [0xc1; 48], [0xc2; 48]];

/// Encrypt for the account; the secret-releasing operations only for an enclave with PCRS.
fn policy() -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Encrypt", "kms:Describe*"],
             "Resource": "*"},
            {"Sid": "EnclaveOnly", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:role/ccc-emulator-parent"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair",
                        "kms:GenerateRandom"],
             "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {
                 "kms:RecipientAttestation:ImageSha384": hex(&PCRS[0]),
                 "kms:RecipientAttestation:PCR1": hex(&PCRS[1]),
                 "kms:RecipientAttestation:PCR2": hex(&PCRS[2])}}}
        ]
    })
    .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn simulator(pcrs: [[u8; 48]; 3]) -> Simulator {
    let mut config = SimulatorConfig::default();
    for (index, value) in (0u16..).zip(pcrs) {
        config = config.with_pcr(index, value);
    }
    Simulator::new(config).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("kms-end-to-end")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The emulator trusting `trusted`'s development root.
fn emulator(name: &str, trusted: &Simulator, clock: EmulatorClock) -> Running {
    let config = Config::new(scratch(name).join("state.json"))
        .with_log(false)
        .with_trust(TrustMode::development_root_pem(trusted.root_pem()).unwrap())
        .with_policy(policy())
        .with_clock(clock);
    Emulator::start(config).unwrap()
}

/// The parent's credentials server on loopback, serving the emulator's parent-role
/// credentials; returns the enclave-side provider that asks it.
fn credentials_via_parent(running: &Running) -> Arc<dyn CredentialsProvider> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let parent_side: Arc<dyn CredentialsProvider> = Arc::new(StaticCredentials::new(
        running.credentials().sigv4().unwrap(),
    ));
    std::thread::spawn(move || parent::serve(&listener, parent_side, ServeOptions::default()));
    Arc::new(Refreshing::new(FromParent::new(Endpoint::tcp(
        "127.0.0.1",
        port,
    ))))
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn event(&self, event: &Event<'_>) {
        self.0.lock().unwrap().push(event.to_string());
    }
}

fn config(running: &Running, anchors: TrustAnchors) -> ClientConfig {
    ClientConfig::new(
        running.region(),
        Endpoint::tcp("127.0.0.1", running.addr().port()),
        Transport::Tls(anchors),
    )
    .with_host(running.host_name())
}

fn attested(running: &Running, enclave: Simulator, recorder: Arc<Recorder>) -> AttestedKmsClient {
    let kms = KmsClient::new(
        config(
            running,
            TrustAnchors::CustomCaPem(running.ca_pem().to_owned()),
        ),
        credentials_via_parent(running),
    )
    .unwrap()
    .with_observer(recorder);
    let key = KeyArn::parse(running.default_key_arn()).unwrap();
    AttestedKmsClient::new(kms, Nsm::simulator(enclave), Some(key)).unwrap()
}

#[test]
fn keys_are_released_only_to_the_measured_enclave() {
    let enclave = simulator(PCRS);
    let running = emulator("release", &enclave, EmulatorClock::system());
    assert_eq!(running.host_name(), "kms.us-east-1.amazonaws.com");
    let recorder = Arc::new(Recorder::default());
    let client = attested(&running, enclave, recorder.clone());
    let context = BTreeMap::from([("purpose".to_owned(), "e2e".to_owned())]);

    let blob = client
        .encrypt(&EncryptRequest {
            key_id: running.default_key_arn().into(),
            plaintext: SecretBytes::copy_from(b"database password"),
            encryption_context: context.clone(),
            ..EncryptRequest::default()
        })
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let plaintext = client
        .decrypt(DecryptRequest {
            ciphertext_blob: blob,
            encryption_context: context,
            ..DecryptRequest::default()
        })
        .unwrap();
    assert_eq!(plaintext.expose(), b"database password");

    let data_key = client
        .generate_data_key(GenerateDataKeyRequest {
            key_id: running.default_key_arn().into(),
            number_of_bytes: Some(32),
            ..GenerateDataKeyRequest::default()
        })
        .unwrap();
    assert_eq!(data_key.plaintext.len(), 32);
    assert_eq!(data_key.key_id.as_deref(), Some(running.default_key_arn()));
    let again = client
        .decrypt(DecryptRequest {
            ciphertext_blob: data_key.ciphertext_blob.clone(),
            ..DecryptRequest::default()
        })
        .unwrap();
    assert_eq!(again, data_key.plaintext);

    assert_eq!(client.generate_random(64).unwrap().len(), 64);

    let pair = client
        .generate_data_key_pair(GenerateDataKeyPairRequest {
            encryption_context: BTreeMap::new(),
            key_id: running.default_key_arn().into(),
            key_pair_spec: DataKeyPairSpec::EccNistP256,
            grant_tokens: Vec::new(),
            recipient: None,
            dry_run: None,
        })
        .unwrap();
    assert_eq!(pair.private_key.expose().first(), Some(&0x30), "PKCS#8 DER");
    assert_eq!(pair.public_key.first(), Some(&0x30), "SPKI DER");
    assert!(!pair.private_key_ciphertext_blob.is_empty());

    let lines = recorder.0.lock().unwrap().clone();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("connected to"))
            .count(),
        1,
        "one TLS connection, kept alive: {lines:?}"
    );
    assert!(
        lines[..]
            .iter()
            .any(|l| l.contains("TLS as kms.us-east-1.amazonaws.com"))
    );
    // The emulator's CA is not an Amazon root: the observer hears it, loudly.
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("connected to"))
            .all(|l| l.contains("CUSTOM CA")),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("NSM attestation document"))
            .count(),
        5,
        "a fresh document per secret-bearing call"
    );
}

#[test]
fn other_roots_and_other_images_are_refused() {
    // A document from a simulator whose root the emulator does not trust: refused by the
    // verifier (ValidationException naming it), with the Recipient-specific hint.
    let trusted = simulator(PCRS);
    let running = emulator("untrusted-root", &trusted, EmulatorClock::system());
    let stranger = attested(&running, simulator(PCRS), Arc::new(Recorder::default()));
    let error = stranger.generate_random(8).unwrap_err();
    let service = error.service_error().unwrap_or_else(|| panic!("{error:?}"));
    assert_eq!(service.kind, ErrorKind::Validation, "{error}");
    assert!(
        error.to_string().contains("attestation document"),
        "{error}"
    );

    // A trusted chain measuring another image (PCR0): the key policy denies, naming the
    // condition, and the client's hint points at the PCR conditions. Not retried.
    let other_image = simulator([[0xee; 48], PCRS[1], PCRS[2]]);
    let running = emulator("other-image", &other_image, EmulatorClock::system());
    let recorder = Arc::new(Recorder::default());
    let client = attested(&running, other_image, recorder.clone());
    let error = client.generate_random(8).unwrap_err();
    let service = error.service_error().unwrap_or_else(|| panic!("{error:?}"));
    assert_eq!(service.kind, ErrorKind::AccessDenied, "{error}");
    let shown = error.to_string();
    assert!(shown.contains("ImageSha384"), "{shown}");
    assert!(
        shown.contains("Likely fix: check the key policy's kms:RecipientAttestation"),
        "{shown}"
    );
    let lines = recorder.0.lock().unwrap().clone();
    assert!(lines.iter().all(|l| !l.contains("attempt 2")), "{lines:?}");
}

#[test]
fn a_skewed_enclave_clock_is_corrected_from_kms_date() {
    let enclave = simulator(PCRS);
    // KMS (the emulator) is 25 minutes ahead of the enclave.
    let clock = EmulatorClock::manual(UnixMillis(UnixMillis::now().0 + 25 * 60_000));
    let running = emulator("skew", &enclave, clock);
    let recorder = Arc::new(Recorder::default());
    let kms = KmsClient::new(
        config(
            &running,
            TrustAnchors::CustomCaPem(running.ca_pem().to_owned()),
        ),
        credentials_via_parent(&running),
    )
    .unwrap()
    .with_observer(recorder.clone());
    // The simulator's documents carry its own (system) time; the emulator judges the leaf's
    // validity by its clock, which a 3-hour leaf survives.
    let client = AttestedKmsClient::new(kms, Nsm::simulator(enclave), None).unwrap();
    assert_eq!(client.generate_random(16).unwrap().len(), 16);
    let offset = client.kms().clock_offset_millis();
    assert!((24 * 60_000..26 * 60_000).contains(&offset), "{offset}");
    let lines = recorder.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("clock corrected by")),
        "{lines:?}"
    );
    // Later calls are signed with the corrected clock: accepted first time.
    client.generate_random(16).unwrap();
    assert_eq!(
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("GenerateRandom: HTTP 400"))
            .count(),
        1
    );
}

#[test]
fn the_amazon_roots_do_not_trust_the_emulator() {
    let enclave = simulator(PCRS);
    let running = emulator("roots", &enclave, EmulatorClock::system());
    let kms = KmsClient::new(
        config(&running, TrustAnchors::AmazonRoots),
        credentials_via_parent(&running),
    )
    .unwrap();
    let client = AttestedKmsClient::new(kms, Nsm::simulator(enclave), None).unwrap();
    match client.generate_random(8).unwrap_err() {
        ClientError::Transport(TransportError::Tls { server_name, .. }) => {
            assert_eq!(server_name, "kms.us-east-1.amazonaws.com");
        }
        ClientError::Kms(KmsError::Service(e)) => panic!("reached KMS without trust: {e}"),
        other => panic!("{other:?}"),
    }
}
