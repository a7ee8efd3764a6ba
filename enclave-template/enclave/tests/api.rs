//! Every operation of the enclave API, end to end on loopback with real peers: the enclave
//! (`enclave::start`, configured through the same `CCC_APP_*` settings as in an image) with
//! the signed NSM simulator, the parent's credentials server (the SDK's), and the KMS
//! emulator (HTTPS with its own CA, SigV4, `Recipient` verified against the simulator's root,
//! a key policy pinned to the enclave's PCRs). The test talks to the enclave over TCP with
//! the same `protocol::Client` the parent's `client` command uses.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use ccc_emulator::{Config, Emulator, Running, TrustMode};
use ccc_sdk::attestation::{self, Policy, RootOfTrust, VerifyOptions};
use ccc_sdk::credentials::parent::{self, ServeOptions};
use ccc_sdk::credentials::{CredentialsProvider, StaticCredentials};
use ccc_sdk::crypto::{AwsLc, Crypto};
use ccc_sdk::kms::EncryptRequest;
use ccc_sdk::kms::client::{ClientConfig, KmsClient, Transport};
use ccc_sdk::net::{Endpoint, Stream, Timeouts};
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::time::UnixMillis;
use ccc_sdk::tls::TrustAnchors;
use enclave::config::Settings;
use enclave::console::Console;
use enclave::protocol::{
    Client, ErrorCode, Failure, MAX_FRAME_LEN, PURPOSE_KEY, ProtocolError, Request, Response,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const PCRS: [[u8; 48]; 3] = [[0xa0; 48], [0xa1; 48], [0xa2; 48]];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encrypt for the account; the secret-releasing operations only for an enclave whose
/// PCR0/1/2 are `pinned`.
fn policy(pinned: [[u8; 48]; 3]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Encrypt", "kms:Describe*"],
             "Resource": "*"},
            {"Sid": "EnclaveOnly", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:role/ccc-emulator-parent"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom"],
             "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {
                 "kms:RecipientAttestation:PCR0": hex(&pinned[0]),
                 "kms:RecipientAttestation:PCR1": hex(&pinned[1]),
                 "kms:RecipientAttestation:PCR2": hex(&pinned[2])}}}
        ]
    })
    .to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("enclave-api")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Everything one test needs, started.
struct World {
    running: Running,
    enclave: enclave::Started,
    root_pem: String,
    console: Arc<Mutex<Vec<String>>>,
}

impl World {
    /// KMS pins `pinned`; the enclave measures [`PCRS`]. `default_key`: whether the enclave
    /// gets `CCC_APP_KEY_ID`.
    fn start(name: &str, pinned: [[u8; 48]; 3], default_key: bool) -> Self {
        Self::start_with(name, pinned, default_key, "console=ttyS0")
    }

    /// As [`World::start`], with `cmdline` as the kernel command line.
    fn start_with(name: &str, pinned: [[u8; 48]; 3], default_key: bool, cmdline: &str) -> Self {
        let mut config = SimulatorConfig::default();
        for (index, value) in (0u16..).zip(PCRS) {
            config = config.with_pcr(index, value);
        }
        let simulator = Simulator::new(config).unwrap();
        let root_pem = simulator.root_pem().to_owned();
        let running = Emulator::start(
            Config::new(scratch(name).join("state.json"))
                .with_log(false)
                .with_trust(TrustMode::development_root_pem(&root_pem).unwrap())
                .with_policy(policy(pinned)),
        )
        .unwrap();

        // The parent's credentials service, serving the parent role's credentials.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let credentials_port = listener.local_addr().unwrap().port();
        let parent_side: Arc<dyn CredentialsProvider> = Arc::new(StaticCredentials::new(
            running.credentials().sigv4().unwrap(),
        ));
        std::thread::spawn(move || parent::serve(&listener, parent_side, ServeOptions::default()));

        let mut env = BTreeMap::from([
            ("CCC_APP_REGION", running.region().to_owned()),
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
        ]);
        if default_key {
            env.insert("CCC_APP_KEY_ID", running.default_key_id().to_owned());
        }
        let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let settings = Settings::from_sources(&env, cmdline).unwrap();
        let (console, lines) = Console::capture();
        let enclave = enclave::start(&settings, Nsm::simulator(simulator), console).unwrap();
        Self {
            running,
            enclave,
            root_pem,
            console: lines,
        }
    }

    fn client(&self) -> Client<Stream> {
        let endpoint: Endpoint = self.enclave.address().parse().unwrap();
        Client::new(Stream::connect(&endpoint, &Timeouts::default()).unwrap())
    }

    fn call(&self, request: &Request) -> Result<Response, Failure> {
        match self.client().call(request) {
            Ok(response) => Ok(response),
            Err(ProtocolError::Refused(failure)) => Err(failure),
            Err(other) => panic!("{other}"),
        }
    }

    /// KMS `Encrypt` of `secret` from outside the enclave (the account may encrypt).
    fn encrypt(&self, secret: &[u8], context: BTreeMap<String, String>) -> Vec<u8> {
        let config = ClientConfig::new(
            self.running.region(),
            Endpoint::tcp("127.0.0.1", self.running.addr().port()),
            Transport::Tls(TrustAnchors::CustomCaPem(self.running.ca_pem().to_owned())),
        )
        .with_host(self.running.host_name());
        let kms = KmsClient::new(
            config,
            Arc::new(StaticCredentials::new(
                self.running.credentials().sigv4().unwrap(),
            )),
        )
        .unwrap();
        kms.send(&EncryptRequest {
            key_id: self.running.default_key_id().to_owned(),
            plaintext: SecretBytes::copy_from(secret),
            encryption_context: context,
            ..EncryptRequest::default()
        })
        .unwrap()
        .ciphertext_blob
        .unwrap()
    }

    fn lines(&self) -> Vec<String> {
        self.console.lock().unwrap().clone()
    }
}

fn purpose(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(PURPOSE_KEY.to_owned(), value.to_owned())])
}

/// Emulation's `ccc_app.exit_after=N`: after the Nth answer (an error frame counts) the
/// server waits for the caller to close, then reports `Stop::Served(N)`.
#[test]
fn exit_after_stops_serving_once_the_budget_is_answered_and_closed() {
    let world = World::start_with(
        "exit-after",
        PCRS,
        true,
        "console=ttyS0 ccc.emulation=1 ccc_app.exit_after=2",
    );
    let mut client = world.client();
    let attest = Request::Attest {
        nonce: Some(b"n".to_vec()),
        user_data: None,
    };
    assert!(matches!(client.call(&attest), Ok(Response::Attest { .. })));
    // The second request is refused (no such blob); it still spends the budget.
    let refused = client.call(&Request::Unseal {
        sealed: b"not a sealed blob".to_vec(),
        context: BTreeMap::new(),
    });
    assert!(
        matches!(&refused, Err(ProtocolError::Refused(f)) if f.code == ErrorCode::Unseal),
        "{refused:?}"
    );
    drop(client);
    let World {
        enclave, console, ..
    } = world;
    match enclave.wait() {
        enclave::Stop::Served(n) => assert_eq!(n, 2),
        other => panic!("{other:?}"),
    }
    let lines = console.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ccc_app.exit_after=2") && l.contains("EXITS")),
        "{lines:?}"
    );
}

#[test]
fn every_operation_round_trips() {
    let world = World::start("roundtrip", PCRS, true);

    // attest: a document the simulator's root verifies, binding nonce and user data, whose
    // public key is the enclave's RSA key.
    let Response::Attest {
        document,
        public_key_sha256,
    } = world
        .call(&Request::Attest {
            nonce: Some(b"fresh nonce".to_vec()),
            user_data: Some(b"who asks".to_vec()),
        })
        .unwrap()
    else {
        panic!("not an attest answer")
    };
    let root = RootOfTrust::custom_pem(&world.root_pem).unwrap();
    let policy = Policy::new()
        .expect_nonce(b"fresh nonce")
        .require_user_data(b"who asks")
        .expect_pcr_hex(2, &hex(&PCRS[2]))
        .unwrap()
        .allow_debug_mode();
    let verified = attestation::verify(
        &document,
        &VerifyOptions::new(UnixMillis::now())
            .with_root(root)
            .with_policy(policy),
        &AwsLc,
    )
    .unwrap();
    let public_key = verified.public_key.unwrap();
    assert_eq!(public_key, world.enclave.app().kms().public_key_spki());
    assert_eq!(public_key_sha256, hex(&AwsLc.sha256(&[&public_key])));

    // generate_data_key: only the ciphertext comes out; hmac under it is stable.
    let Response::GenerateDataKey {
        ciphertext_blob,
        key_id,
    } = world
        .call(&Request::GenerateDataKey {
            key_id: None,
            context: BTreeMap::from([("tenant".into(), "t1".into())]),
        })
        .unwrap()
    else {
        panic!("not a generate_data_key answer")
    };
    assert_eq!(key_id.as_deref(), Some(world.running.default_key_arn()));
    let hmac = |blob: &[u8], context: &[(&str, &str)]| {
        world.call(&Request::Hmac {
            ciphertext_blob: blob.to_vec(),
            message: b"message".to_vec(),
            context: context
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    };
    let first = hmac(&ciphertext_blob, &[("tenant", "t1")]).unwrap();
    let second = hmac(&ciphertext_blob, &[("tenant", "t1")]).unwrap();
    match (&first, &second) {
        (Response::Hmac { mac: a }, Response::Hmac { mac: b }) => {
            assert_eq!(a.len(), 32);
            assert_eq!(a, b);
        }
        other => panic!("{other:?}"),
    }
    // The context is bound: another one is refused by KMS.
    let failure = hmac(&ciphertext_blob, &[("tenant", "t2")]).unwrap_err();
    assert_eq!(failure.code, ErrorCode::Kms, "{failure}");
    assert_eq!(failure.step, "kms Decrypt with Recipient");
    assert!(failure.message.contains("InvalidCiphertext"), "{failure}");

    // seal / unseal.
    let data = b"the enclave's state".repeat(100);
    let context = BTreeMap::from([("file".to_owned(), "state.bin".to_owned())]);
    let Response::Seal { sealed } = world
        .call(&Request::Seal {
            data: SecretBytes::copy_from(&data),
            key_id: None,
            context: context.clone(),
        })
        .unwrap()
    else {
        panic!("not a seal answer")
    };
    assert!(sealed.starts_with(b"CCCS\x01"));
    assert!(!sealed.windows(19).any(|w| w == b"the enclave's state"));
    let Response::Unseal { data: opened } = world
        .call(&Request::Unseal {
            sealed: sealed.clone(),
            context: context.clone(),
        })
        .unwrap()
    else {
        panic!("not an unseal answer")
    };
    assert_eq!(opened.expose(), &data[..]);

    // random.
    for n in [1, 32, 1024] {
        match world.call(&Request::Random { n }).unwrap() {
            Response::Random { bytes } => assert_eq!(bytes.len(), n as usize),
            other => panic!("{other:?}"),
        }
    }
    let failure = world.call(&Request::Random { n: 1025 }).unwrap_err();
    assert_eq!(failure.code, ErrorCode::BadRequest);
    assert!(failure.message.contains("1 to 1024"), "{failure}");

    // The console shows every step, and never the data.
    let lines = world.lines();
    for needle in [
        "attestation: PCR2 a2a2",
        "credentials: ",
        "serving API v1 on tcp://127.0.0.1:",
        "kms GenerateDataKey: NSM attestation document",
        "kms GenerateDataKey: CiphertextForRecipient decrypted inside the enclave (32 secret bytes)",
        "seal: ok",
        "unseal: ok",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "{needle}: {lines:#?}"
        );
    }
    assert!(lines.iter().all(|l| l.starts_with("ccc-enclave: ")));
    assert!(!lines.iter().any(|l| l.contains("the enclave's state")));
}

#[test]
fn hmac_is_keyed_by_the_secret_only_the_enclave_can_open() {
    let world = World::start("hmac", PCRS, false);
    let secret = [0x5a; 32];
    let blob = world.encrypt(&secret, BTreeMap::new());
    let message = b"prove you hold the secret".to_vec();
    let Response::Hmac { mac } = world
        .call(&Request::Hmac {
            ciphertext_blob: blob,
            message: message.clone(),
            context: BTreeMap::new(),
        })
        .unwrap()
    else {
        panic!("not an hmac answer")
    };
    let expected = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
        &message,
    );
    assert_eq!(mac, expected.as_ref());

    // Domain separation: a ciphertext made for sealing (`ccc:purpose=seal`) is refused by KMS
    // for hmac.
    let other = world.encrypt(&secret, purpose("seal"));
    let failure = world
        .call(&Request::Hmac {
            ciphertext_blob: other,
            message,
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::Kms, "{failure}");

    // No default key: a request that names none is refused with the fix.
    let failure = world
        .call(&Request::GenerateDataKey {
            key_id: None,
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::BadRequest);
    assert!(failure.message.contains("CCC_APP_KEY_ID"), "{failure}");
}

#[test]
fn tampered_sealed_blobs_are_refused() {
    let world = World::start("tamper", PCRS, true);
    let Response::Seal { sealed } = world
        .call(&Request::Seal {
            data: SecretBytes::copy_from(b"ledger"),
            key_id: None,
            context: BTreeMap::new(),
        })
        .unwrap()
    else {
        panic!("not a seal answer")
    };
    let unseal = |blob: Vec<u8>| {
        world.call(&Request::Unseal {
            sealed: blob,
            context: BTreeMap::new(),
        })
    };
    // The ciphertext: the GCM tag fails.
    let mut flipped = sealed.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let failure = unseal(flipped).unwrap_err();
    assert_eq!(failure.code, ErrorCode::Unseal, "{failure}");
    assert_eq!(failure.step, "unseal: AES-256-GCM open");
    assert!(failure.message.contains("modified"), "{failure}");
    // The nonce (authenticated data): the tag fails too.
    let wrapped_len = usize::from(u16::from_be_bytes([sealed[5], sealed[6]]));
    let mut flipped = sealed.clone();
    flipped[7 + wrapped_len] ^= 1;
    assert_eq!(
        unseal(flipped).unwrap_err().step,
        "unseal: AES-256-GCM open"
    );
    // The wrapped key: KMS refuses to decrypt it.
    let mut flipped = sealed.clone();
    flipped[7 + wrapped_len / 2] ^= 1;
    let failure = unseal(flipped).unwrap_err();
    assert_eq!(failure.code, ErrorCode::Kms, "{failure}");
    assert_eq!(failure.step, "kms Decrypt with Recipient");
    // The header.
    let mut flipped = sealed.clone();
    flipped[0] = b'X';
    let failure = unseal(flipped).unwrap_err();
    assert_eq!(failure.step, "unseal: read the sealed blob");
    assert!(
        failure.message.contains("wrong magic at byte 0"),
        "{failure}"
    );
    // Truncated.
    let failure = unseal(sealed[..sealed.len() - 17].to_vec()).unwrap_err();
    assert_eq!(failure.code, ErrorCode::Unseal, "{failure}");
    // A sealed blob's key is not an hmac key (ccc:purpose differs).
    let failure = world
        .call(&Request::Hmac {
            ciphertext_blob: sealed[7..7 + wrapped_len].to_vec(),
            message: b"m".to_vec(),
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::Kms, "{failure}");
    // And the untouched blob still opens.
    assert!(matches!(unseal(sealed), Ok(Response::Unseal { .. })));
}

#[test]
fn a_policy_pinning_another_image_is_reported_with_the_pcr() {
    let other = [PCRS[0], PCRS[1], [0xee; 48]];
    let world = World::start("denied", other, true);
    let blob = world.encrypt(&[1; 32], BTreeMap::new());
    let failure = world
        .call(&Request::Hmac {
            ciphertext_blob: blob,
            message: b"m".to_vec(),
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::KmsAccessDenied, "{failure}");
    assert_eq!(failure.step, "kms Decrypt with Recipient");
    let expected = format!(
        "kms:RecipientAttestation:PCR2: request has {}, policy requires {}",
        hex(&PCRS[2]),
        hex(&[0xee; 48])
    );
    assert!(failure.message.contains(&expected), "{failure}");
    assert!(
        failure.message.contains("AccessDeniedException"),
        "{failure}"
    );

    // The same through seal: GenerateDataKey is refused the same way.
    let failure = world
        .call(&Request::Seal {
            data: SecretBytes::copy_from(b"x"),
            key_id: None,
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::KmsAccessDenied, "{failure}");
    assert_eq!(failure.step, "kms GenerateDataKey with Recipient");

    // The console alone is enough to diagnose it.
    let lines = world.lines();
    let denied = lines
        .iter()
        .find(|l| l.contains("hmac: FAILED at kms Decrypt with Recipient (kms_access_denied)"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(denied.contains(&expected), "{denied}");
    assert!(
        lines.iter().any(|l| l.contains("kms Decrypt: HTTP 400")),
        "{lines:#?}"
    );
}

#[test]
fn protocol_errors_are_answered_and_the_connection_stays_usable() {
    let world = World::start("protocol", PCRS, true);
    let mut client = world.client();
    let cases: [(&[u8], ErrorCode); 4] = [
        (
            br#"{"version":2,"op":"random","n":1}"#,
            ErrorCode::UnsupportedVersion,
        ),
        (
            br#"{"version":1,"op":"shell","cmd":"ls"}"#,
            ErrorCode::UnknownOp,
        ),
        (br#"{"version":1,"op":"random"}"#, ErrorCode::BadRequest),
        (b"[1,2,3]", ErrorCode::BadRequest),
    ];
    for (payload, code) in cases {
        match client.call_raw(payload).unwrap() {
            Response::Error(failure) => assert_eq!(failure.code, code, "{failure}"),
            other => panic!("{other:?}"),
        }
    }
    match client.call(&Request::Random { n: 4 }).unwrap() {
        Response::Random { bytes } => assert_eq!(bytes.len(), 4),
        other => panic!("{other:?}"),
    }

    // A frame over the limit: one error frame, then the connection closes.
    let stream = client.stream_mut();
    stream
        .write_all(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes())
        .unwrap();
    let answer = enclave::protocol::read_frame(stream).unwrap().unwrap();
    match enclave::protocol::decode_response(&answer).unwrap() {
        Response::Error(failure) => assert_eq!(failure.code, ErrorCode::TooLarge),
        other => panic!("{other:?}"),
    }
    assert!(enclave::protocol::read_frame(stream).unwrap().is_none());
}
