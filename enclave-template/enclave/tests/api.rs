//! Every operation of the enclave API, end to end on loopback with real peers: the enclave
//! (`enclave::start`, configured through the same `CCC_APP_*` settings as in an image) with
//! the signed NSM simulator, the parent's credentials server (the SDK's), and the KMS
//! emulator (HTTPS with its own CA, SigV4, `Recipient` verified against the simulator's root,
//! the release's key-policy template pinned to the enclave's PCRs). The test talks to the
//! enclave over TCP with the same `protocol::Client` the parent's `client` command uses.
//!
//! The attacks of the trust model (docs/threat-model.md) are performed here for real, each
//! asserting its named error: a sealed blob built by the parent under a key it owns, one built
//! with a plain `Encrypt` of a chosen data key, credentials for the parent's own account, a
//! request naming a key, and emulation switches under a signed NSM document.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use ccc_emulator::{Config, Credential, Emulator, Running, TrustMode};
use ccc_policy::template::{self, ImagePins, Principals};
use ccc_sdk::attestation::{self, Policy, RootOfTrust, VerifyOptions};
use ccc_sdk::credentials::parent::{self, ServeOptions};
use ccc_sdk::credentials::{CredentialsProvider, StaticCredentials};
use ccc_sdk::crypto::{AwsLc, Crypto};
use ccc_sdk::kms::client::{ClientConfig, ClientError, KmsClient, Transport};
use ccc_sdk::kms::{
    DecryptRequest, EncryptRequest, EncryptResponse, ErrorKind, GenerateDataKeyRequest, KeyArn,
    KmsError,
};
use ccc_sdk::net::{Endpoint, Stream, Timeouts};
use ccc_sdk::nsm::{Nsm, NsmError, Simulator, SimulatorConfig};
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::time::UnixMillis;
use ccc_sdk::tls::TrustAnchors;
use enclave::config::Settings;
use enclave::console::Console;
use enclave::protocol::{
    Client, ErrorCode, Failure, MAX_FRAME_LEN, PURPOSE_KEY, ProtocolError, Request, Response,
};
use enclave::seal;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const PCRS: [[u8; 48]; 3] = [[0xa0; 48], [0xa1; 48], [0xa2; 48]];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The release's key-policy template (`ccc-policy`), pinning `pinned`, for the emulator's
/// account and its credentials' role (`ccc-emulator-parent`: the parent's role, which signs the
/// enclave's requests).
fn policy(pinned: [[u8; 48]; 3]) -> String {
    template::key_policy(&pins(pinned), &principals())
}

fn pins(pinned: [[u8; 48]; 3]) -> ImagePins {
    ImagePins::new(&hex(&pinned[0]), &hex(&pinned[1]), &hex(&pinned[2])).unwrap()
}

fn principals() -> Principals {
    Principals::new(
        "111122223333",
        "ccc-emulator-parent",
        "ccc-emulator-key-admin",
    )
    .unwrap()
}

/// The parent's own AWS account (where it holds every right), and credentials for it.
const PARENT_ACCOUNT: &str = "444455556666";

fn parent_account_credential() -> Credential {
    Credential::new(
        "AKIAPARENTOWNACCT001",
        "parent/own/secret/key/0123456789abcdefghij",
        None,
        format!("arn:aws:iam::{PARENT_ACCOUNT}:user/parent"),
    )
    .unwrap()
}

/// Which NSM the enclave gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NsmKind {
    /// The signed simulator (ES384 documents, like Nitro's).
    Signed,
    /// QEMU's nitro-enclave machine: unsigned COSE documents (alg -1, zero signature).
    QemuUnsigned,
}

/// An NSM that answers like QEMU's `nitro-enclave` machine: the simulator's PCRs and fields,
/// its attestation documents re-wrapped in QEMU's unsigned COSE_Sign1 (protected header
/// `{1: -1}`, 64 zero bytes of signature; QEMU `hw/virtio/virtio-nsm.c`). Only the envelope
/// matters here: the enclave reads its own document's algorithm at start.
struct QemuUnsignedNsm(Arc<Simulator>);

impl ccc_sdk::nsm::Transport for QemuUnsignedNsm {
    fn name(&self) -> &'static str {
        "QEMU-unsigned NSM (test: the simulator's documents, unsigned)"
    }

    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, NsmError> {
        use ccc_sdk::nsm::codec::Response as NsmResponse;
        let answer = self.0.exchange(request)?;
        let Ok(NsmResponse::Attestation { document }) = NsmResponse::decode(&answer) else {
            return Ok(answer);
        };
        let parsed = attestation::parse(&document).unwrap();
        let mut cose = minicbor::Encoder::new(Vec::new());
        cose.array(4).unwrap();
        cose.bytes(&[0xa1, 0x01, 0x20]).unwrap();
        cose.map(0).unwrap();
        cose.bytes(parsed.cose.payload).unwrap();
        cose.bytes(&[0; 64]).unwrap();
        Ok(NsmResponse::Attestation {
            document: cose.into_writer(),
        }
        .encode()
        .unwrap())
    }
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

/// How a world is set up; [`Setup::default`] is the honest one.
struct Setup {
    /// The PCRs the key policy pins.
    pinned: [[u8; 48]; 3],
    /// Whether the image trusts the emulator's default key (`CCC_APP_KEY_ARN`).
    trusted_key: bool,
    /// The kernel command line.
    cmdline: &'static str,
    nsm: NsmKind,
    /// The credentials the parent hands the enclave: its role's (the honest parent), or
    /// `Some`: credentials for another principal (the parent's own account).
    parent_hands: Option<Credential>,
    /// A key policy of the team's own instead of the release's template.
    key_policy: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            pinned: PCRS,
            trusted_key: true,
            cmdline: "console=ttyS0",
            nsm: NsmKind::Signed,
            parent_hands: None,
            key_policy: None,
        }
    }
}

impl World {
    /// KMS pins `pinned`; the enclave measures [`PCRS`]. `default_key`: whether the enclave
    /// trusts the emulator's default key.
    fn start(name: &str, pinned: [[u8; 48]; 3], default_key: bool) -> Self {
        Self::try_start(
            name,
            Setup {
                pinned,
                trusted_key: default_key,
                ..Setup::default()
            },
        )
        .unwrap()
    }

    /// As [`World::start`], with every knob; the enclave's start-up error if it refuses.
    fn try_start(name: &str, setup: Setup) -> Result<Self, enclave::StartError> {
        let mut config = SimulatorConfig::default();
        for (index, value) in (0u16..).zip(PCRS) {
            config = config.with_pcr(index, value);
        }
        let simulator = Arc::new(Simulator::new(config).unwrap());
        let root_pem = simulator.root_pem().to_owned();
        let trust = match setup.nsm {
            NsmKind::Signed => TrustMode::development_root_pem(&root_pem).unwrap(),
            NsmKind::QemuUnsigned => TrustMode::InsecureQemuUnsigned,
        };
        let running = Emulator::start(
            Config::new(scratch(name).join("state.json"))
                .with_log(false)
                .with_trust(trust)
                .with_policy(setup.key_policy.unwrap_or_else(|| policy(setup.pinned)))
                .with_account_policy(template::iam_policy(&pins(setup.pinned)))
                .with_credential(parent_account_credential()),
        )
        .unwrap();

        // The parent's credentials service.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let credentials_port = listener.local_addr().unwrap().port();
        let handed = setup
            .parent_hands
            .clone()
            .unwrap_or_else(|| running.credentials().clone());
        let parent_side: Arc<dyn CredentialsProvider> =
            Arc::new(StaticCredentials::new(handed.sigv4().unwrap()));
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
        if setup.trusted_key {
            env.insert("CCC_APP_KEY_ARN", running.default_key_arn().to_owned());
        }
        let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let settings = Settings::from_sources(&env, setup.cmdline).unwrap();
        let (console, lines) = Console::capture();
        let nsm = match setup.nsm {
            NsmKind::Signed => Nsm::with_transport(Box::new(simulator)),
            NsmKind::QemuUnsigned => Nsm::with_transport(Box::new(QemuUnsignedNsm(simulator))),
        };
        let enclave = enclave::start(&settings, nsm, console)?;
        Ok(Self {
            running,
            enclave,
            root_pem,
            console: lines,
        })
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

    /// A KMS client outside the enclave, signing as `credential`.
    fn kms_as(&self, credential: &Credential) -> KmsClient {
        let config = ClientConfig::new(
            self.running.region(),
            Endpoint::tcp("127.0.0.1", self.running.addr().port()),
            Transport::Tls(TrustAnchors::CustomCaPem(self.running.ca_pem().to_owned())),
        )
        .with_host(self.running.host_name());
        KmsClient::new(
            config,
            Arc::new(StaticCredentials::new(credential.sigv4().unwrap())),
        )
        .unwrap()
    }

    /// KMS `Encrypt` of `secret` by an operator outside the enclave (the parent's role, which
    /// the template lets encrypt outside the sealing purpose).
    fn try_encrypt(
        &self,
        secret: &[u8],
        context: BTreeMap<String, String>,
    ) -> Result<EncryptResponse, ClientError> {
        self.kms_as(self.running.credentials())
            .send(&EncryptRequest {
                key_id: self.running.default_key_arn().to_owned(),
                plaintext: SecretBytes::copy_from(secret),
                encryption_context: context,
                ..EncryptRequest::default()
            })
    }

    /// As [`World::try_encrypt`], which must succeed: the `CiphertextBlob`.
    fn encrypt(&self, secret: &[u8], context: BTreeMap<String, String>) -> Vec<u8> {
        self.try_encrypt(secret, context)
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
/// server waits for the caller to close, then reports `Stop::Served(N)`. An emulation switch,
/// so the enclave's NSM is QEMU's (unsigned documents).
#[test]
fn exit_after_stops_serving_once_the_budget_is_answered_and_closed() {
    let world = World::try_start(
        "exit-after",
        Setup {
            cmdline: "console=ttyS0 ccc.emulation=1 ccc_app.exit_after=2",
            nsm: NsmKind::QemuUnsigned,
            ..Setup::default()
        },
    )
    .unwrap();
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
            context: context.clone(),
        })
        .unwrap()
    else {
        panic!("not a seal answer")
    };
    assert!(sealed.starts_with(b"CCCS\x02"));
    assert_eq!(
        seal::parse(&sealed).unwrap().key_arn,
        world.running.default_key_arn()
    );
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
    let world = World::start("hmac", PCRS, true);
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

    // Domain separation: a ciphertext made for another purpose is refused by KMS for hmac
    // (which uses the caller's context as given).
    let other = world.encrypt(&secret, purpose("other"));
    let failure = world
        .call(&Request::Hmac {
            ciphertext_blob: other,
            message,
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::Kms, "{failure}");
    assert!(failure.message.contains("InvalidCiphertext"), "{failure}");
}

/// An image without a trusted key serves attest and random; every key operation is refused,
/// naming the setting.
#[test]
fn without_a_trusted_key_key_operations_name_the_setting() {
    let world = World::start("no-key", PCRS, false);
    for request in [
        Request::GenerateDataKey {
            context: BTreeMap::new(),
        },
        Request::Seal {
            data: SecretBytes::copy_from(b"x"),
            context: BTreeMap::new(),
        },
        Request::Hmac {
            ciphertext_blob: world.encrypt(&[1; 32], BTreeMap::new()),
            message: b"m".to_vec(),
            context: BTreeMap::new(),
        },
    ] {
        let failure = world.call(&request).unwrap_err();
        assert_eq!(failure.code, ErrorCode::NotConfigured, "{failure}");
        assert!(failure.message.contains("CCC_APP_KEY_ARN"), "{failure}");
    }
    assert!(matches!(
        world.call(&Request::Random { n: 8 }),
        Ok(Response::Random { .. })
    ));
    assert!(
        world
            .lines()
            .iter()
            .any(|l| l.contains("trusted key: NONE")),
        "{:#?}",
        world.lines()
    );
}

#[test]
fn tampered_sealed_blobs_are_refused() {
    let world = World::start("tamper", PCRS, true);
    let Response::Seal { sealed } = world
        .call(&Request::Seal {
            data: SecretBytes::copy_from(b"ledger"),
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
    assert_eq!(failure.step, "unseal: open the sealed blob");
    assert!(failure.message.contains("modified"), "{failure}");
    // The nonce (authenticated data): the tag fails too.
    let arn_len = usize::from(u16::from_be_bytes([sealed[5], sealed[6]]));
    let key_start = 9 + arn_len;
    let wrapped_len = usize::from(u16::from_be_bytes([
        sealed[key_start - 2],
        sealed[key_start - 1],
    ]));
    let mut flipped = sealed.clone();
    flipped[key_start + wrapped_len] ^= 1;
    assert_eq!(
        unseal(flipped).unwrap_err().step,
        "unseal: open the sealed blob"
    );
    // The wrapped key: KMS refuses to decrypt it under the trusted key: not this enclave's.
    let mut flipped = sealed.clone();
    flipped[key_start + wrapped_len / 2] ^= 1;
    let failure = unseal(flipped).unwrap_err();
    assert_eq!(failure.code, ErrorCode::ForeignBlob, "{failure}");
    assert_eq!(failure.step, "kms Decrypt with Recipient");
    assert!(failure.message.contains("InvalidCiphertext"), "{failure}");
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
            ciphertext_blob: sealed[key_start..key_start + wrapped_len].to_vec(),
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

/// The trusted-key constant the policy template reserves is the protocol's.
#[test]
fn the_templates_reserved_purpose_is_the_protocols() {
    assert_eq!(ccc_policy::keys::PURPOSE_KEY, PURPOSE_KEY);
    assert_eq!(
        ccc_policy::keys::SEALING_PURPOSE,
        enclave::app::SEALING_PURPOSE
    );
}

/// Attack (issue 10 §1a): the parent builds a sealed blob under a KMS key it owns (in its own
/// account, a policy letting everyone use it), with a data key it chose. The enclave refuses
/// it as `foreign_blob`: by the key ARN in the (authenticated) header, and, when the parent
/// writes the trusted key's ARN there, because `Decrypt` names the trusted key and KMS answers
/// `IncorrectKeyException`.
///
/// Before the fix: a version-1 blob named no key and `unseal` sent `Decrypt` without `KeyId`,
/// so KMS decrypted the wrapped key under the parent's key (shown below with the enclave's own
/// credentials) and `unseal` returned the parent's data as the enclave's.
#[test]
fn a_blob_sealed_under_the_parents_own_key_is_foreign() {
    let world = World::start("forged-own-key", PCRS, true);
    let parent = world.kms_as(&parent_account_credential());
    let parents_key = create_parent_key(&world);
    // A data key of the parent's choosing... GenerateDataKey without Recipient: the parent
    // holds the plaintext.
    let generated = parent
        .send(&GenerateDataKeyRequest {
            key_id: parents_key.to_string(),
            number_of_bytes: Some(32),
            encryption_context: with_purpose(BTreeMap::new(), "seal"),
            ..GenerateDataKeyRequest::default()
        })
        .unwrap();
    let data_key = generated.plaintext.unwrap();
    let wrapped = generated.ciphertext_blob.unwrap();
    let unseal = |blob: Vec<u8>| {
        world.call(&Request::Unseal {
            sealed: blob,
            context: BTreeMap::new(),
        })
    };
    let chosen = SecretBytes::copy_from(b"the parent's chosen state");

    // 1. Honest header: the parent's key ARN. Refused before KMS is asked.
    let honest = seal::seal(&chosen, &data_key, &parents_key, &wrapped).unwrap();
    let failure = unseal(honest).unwrap_err();
    assert_eq!(failure.code, ErrorCode::ForeignBlob, "{failure}");
    assert_eq!(failure.step, "unseal: check the sealing key");
    assert!(failure.message.contains(PARENT_ACCOUNT), "{failure}");

    // 2. Lying header: the trusted key's ARN over a key wrapped by the parent's. KMS refuses
    // the Decrypt that names the trusted key.
    let trusted = KeyArn::parse(world.running.default_key_arn()).unwrap();
    let lying = seal::seal(&chosen, &data_key, &trusted, &wrapped).unwrap();
    let failure = unseal(lying).unwrap_err();
    assert_eq!(failure.code, ErrorCode::ForeignBlob, "{failure}");
    assert_eq!(failure.step, "kms Decrypt with Recipient");
    assert!(failure.message.contains("IncorrectKey"), "{failure}");

    // The old path, for the record: a Decrypt without KeyId by the enclave's principal hands
    // over the parent's data key (its key policy allows everyone).
    let old = world
        .kms_as(world.running.credentials())
        .send(&DecryptRequest {
            ciphertext_blob: wrapped,
            encryption_context: with_purpose(BTreeMap::new(), "seal"),
            ..DecryptRequest::default()
        })
        .unwrap();
    assert_eq!(old.key_id.as_deref(), Some(parents_key.as_str()));
    assert_eq!(old.plaintext.unwrap(), data_key);
}

/// Attack (issue 10 §1a, operator path): someone allowed `kms:Encrypt` on the trusted key picks
/// a data key and wraps it. With the sealing purpose the template's explicit Deny refuses the
/// `Encrypt`; without it the wrapped key does not open under the sealing context, and `unseal`
/// says `foreign_blob`. Before the fix (the 0.1.0 policy let the account Encrypt anything) the
/// first `Encrypt` succeeded and the blob opened.
#[test]
fn a_blob_wrapped_by_a_plain_encrypt_is_refused() {
    let world = World::start("forged-encrypt", PCRS, true);
    let data_key = [0x42; 32];
    let error = world
        .try_encrypt(&data_key, with_purpose(BTreeMap::new(), "seal"))
        .unwrap_err();
    let service = error.service_error().unwrap();
    assert_eq!(service.kind, ErrorKind::AccessDenied, "{error}");
    assert!(
        error.to_string().contains("DenyMintingSealedBlobs"),
        "{error}"
    );
    // Without the purpose the Encrypt is allowed, and the blob is worthless.
    let wrapped = world.encrypt(&data_key, BTreeMap::new());
    let trusted = KeyArn::parse(world.running.default_key_arn()).unwrap();
    let forged = seal::seal(
        &SecretBytes::copy_from(b"operator's state"),
        &SecretBytes::copy_from(&data_key),
        &trusted,
        &wrapped,
    )
    .unwrap();
    let failure = world
        .call(&Request::Unseal {
            sealed: forged,
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::ForeignBlob, "{failure}");
    assert!(failure.message.contains("InvalidCiphertext"), "{failure}");

    // And nobody gets the trusted key's secrets without attestation: the explicit Deny.
    let error = world
        .kms_as(world.running.credentials())
        .send(&DecryptRequest {
            ciphertext_blob: wrapped,
            key_id: Some(trusted.to_string()),
            ..DecryptRequest::default()
        })
        .unwrap_err();
    assert!(
        error.to_string().contains("with an explicit deny"),
        "{error}"
    );
}

/// Attack (issue 10 §4, padding oracle): whoever can wrap data keys for sealing (here a fork
/// whose key policy lacks `DenyMintingSealedBlobs`; in general anyone able to alter what the
/// enclave decrypts) probes `unseal` with blobs whose wrapped key decrypts to a data key of
/// another length, to another 32-byte key, or whose ciphertext was changed. Before, each came
/// back with its own step and message ("the data key is 16 bytes", "AES-256-GCM
/// authentication failed"), telling what the secret looked like; now all give one failure.
#[test]
fn every_way_a_sealed_blob_fails_to_open_is_one_failure() {
    let permissive = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ForkWithoutTheSealingDeny", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:role/ccc-emulator-parent"},
            "Action": "kms:*", "Resource": "*"}]
    });
    let world = World::try_start(
        "one-open-failure",
        Setup {
            key_policy: Some(permissive.to_string()),
            ..Setup::default()
        },
    )
    .unwrap();
    let trusted = KeyArn::parse(world.running.default_key_arn()).unwrap();
    let sealing = || with_purpose(BTreeMap::new(), "seal");
    let data_key = [0x42u8; 32];
    let forge = |wrapped_plaintext: &[u8]| {
        let wrapped = world.encrypt(wrapped_plaintext, sealing());
        seal::seal(
            &SecretBytes::copy_from(b"probe"),
            &SecretBytes::copy_from(&data_key),
            &trusted,
            &wrapped,
        )
        .unwrap()
    };
    let unseal = |sealed: Vec<u8>| {
        world.call(&Request::Unseal {
            sealed,
            context: BTreeMap::new(),
        })
    };
    // The honest blob opens: the forgery machinery is sound.
    assert!(matches!(
        unseal(forge(&data_key)),
        Ok(Response::Unseal { data }) if data.expose() == b"probe"
    ));
    let mut tampered = forge(&data_key);
    *tampered.last_mut().unwrap() ^= 1;
    let failures: Vec<Failure> = [
        forge(&[0x42; 16]),
        forge(&[0x42; 48]),
        forge(&[0x43; 32]),
        tampered,
    ]
    .into_iter()
    .map(|blob| unseal(blob).unwrap_err())
    .collect();
    for failure in &failures {
        assert_eq!(failure, &failures[0], "{failures:#?}");
    }
    assert_eq!(failures[0].code, ErrorCode::Unseal);
    assert_eq!(failures[0].step, "unseal: open the sealed blob");
    assert!(!failures[0].message.contains("16"), "{}", failures[0]);
}

/// Attack (issue 10 §1b): the parent hands the enclave credentials for its own account, where
/// it may do anything (and could hold an alias of the same name as the enclave's). The enclave
/// names its key by ARN, so the request goes to the enclave's key in the enclave's account,
/// whose policy does not know the parent's principal: `seal` gets no data key at all. (With an
/// alias the request would have resolved in the parent's account: the emulator test
/// `aliases_and_bare_ids_resolve_in_the_callers_account` shows it, and an alias is refused at
/// start: `config::tests::the_trusted_key_must_be_a_full_arn`.)
#[test]
fn credentials_for_the_parents_own_account_get_no_data_key() {
    let world = World::try_start(
        "substituted-credentials",
        Setup {
            parent_hands: Some(parent_account_credential()),
            ..Setup::default()
        },
    )
    .unwrap();
    let failure = world
        .call(&Request::Seal {
            data: SecretBytes::copy_from(b"enclave state"),
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::KmsAccessDenied, "{failure}");
    assert!(
        failure
            .message
            .contains(&format!("arn:aws:iam::{PARENT_ACCOUNT}:user/parent")),
        "{failure}"
    );
    assert!(
        failure.message.contains(world.running.default_key_arn()),
        "{failure}"
    );
}

/// A request cannot choose the key: `key_id` is refused (0.1.0 let `seal` and
/// `generate_data_key` name any key, so a parent could have the enclave wrap data keys under a
/// key it can decrypt); and a ciphertext under another key gets no MAC (`Decrypt` names the
/// trusted key).
#[test]
fn requests_cannot_choose_the_key() {
    let world = World::start("no-key-choice", PCRS, true);
    let parents_key = create_parent_key(&world);
    let mut client = world.client();
    let payload = serde_json::json!({
        "version": 1, "op": "seal", "data": "eA==", "key_id": parents_key.as_str()
    });
    match client.call_raw(payload.to_string().as_bytes()).unwrap() {
        Response::Error(failure) => {
            assert_eq!(failure.code, ErrorCode::BadRequest, "{failure}");
            assert!(
                failure.message.contains("`key_id` is not accepted"),
                "{failure}"
            );
        }
        other => panic!("{other:?}"),
    }
    let blob = world
        .kms_as(&parent_account_credential())
        .send(&EncryptRequest {
            key_id: parents_key.to_string(),
            plaintext: SecretBytes::copy_from(&[3; 32]),
            ..EncryptRequest::default()
        })
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let failure = world
        .call(&Request::Hmac {
            ciphertext_blob: blob,
            message: b"m".to_vec(),
            context: BTreeMap::new(),
        })
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::Kms, "{failure}");
    assert!(failure.message.contains("IncorrectKey"), "{failure}");
}

/// Attack (issue 10 §3): a parent rebuilds the image with its own CA (or region, key) on the
/// kernel command line, which PCR2 does not cover. Under a signed NSM document (Nitro; here the
/// signed simulator) the emulation words stop the start, named; only QEMU's unsigned NSM
/// honours them. Before the fix, `ccc.emulation=1` alone was enough for the enclave to trust the
/// custom CA.
#[test]
fn emulation_switches_under_a_signed_document_stop_the_start() {
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"parent CA");
    let cmdline: &'static str =
        Box::leak(format!("console=ttyS0 ccc.emulation=1 ccc_app.kms_ca={ca}").into_boxed_str());
    let error = World::try_start(
        "emulation-signed",
        Setup {
            cmdline,
            ..Setup::default()
        },
    )
    .err()
    .unwrap();
    match &error {
        enclave::StartError::EmulationSwitchesOnSignedDocument { switches } => {
            assert_eq!(switches, &["ccc.emulation=1", "ccc_app.kms_ca"]);
        }
        other => panic!("{other}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("signs its attestation documents (ES384)"),
        "{text}"
    );
    assert!(text.contains("ccc_app.kms_ca"), "{text}");
    // The check itself, for both kinds of document.
    use ccc_sdk::attestation::Algorithm;
    let words = vec!["ccc_app.region".to_owned()];
    assert!(enclave::check_emulation_switches(&words, Algorithm::Es384).is_err());
    enclave::check_emulation_switches(&words, Algorithm::QemuUnsigned).unwrap();
    enclave::check_emulation_switches(&[], Algorithm::Es384).unwrap();
}

/// A key-management request the SDK has no typed request for, as JSON.
macro_rules! raw_request {
    ($name:ident) => {
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        struct $name(serde_json::Value);

        impl ccc_sdk::kms::KmsRequest for $name {
            const OPERATION: ccc_sdk::kms::Operation = ccc_sdk::kms::Operation::$name;
            type Response = serde_json::Value;
            fn recipient(&self) -> Option<&ccc_sdk::kms::Recipient> {
                None
            }
        }
    };
}

raw_request!(CreateKey);
raw_request!(PutKeyPolicy);

/// The parent's own key, in its own account, with a policy that lets everyone use it.
fn create_parent_key(world: &World) -> KeyArn {
    let parent = world.kms_as(&parent_account_credential());
    let created = parent.send(&CreateKey(serde_json::json!({}))).unwrap();
    let arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    assert!(arn.contains(PARENT_ACCOUNT), "{arn}");
    let put = parent.send(&PutKeyPolicy(serde_json::json!({
        "KeyId": arn, "PolicyName": "default",
        "Policy": serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": "*",
            "Action": "kms:*", "Resource": "*"}]}).to_string()})));
    // KMS answers PutKeyPolicy with HTTP 200 and an empty body, which no JSON type decodes.
    match put {
        Ok(_) | Err(ClientError::Kms(KmsError::MalformedResponse { status: 200, .. })) => {}
        Err(other) => panic!("PutKeyPolicy: {other}"),
    }
    KeyArn::parse(&arn).unwrap()
}

fn with_purpose(mut context: BTreeMap<String, String>, value: &str) -> BTreeMap<String, String> {
    context.insert(PURPOSE_KEY.to_owned(), value.to_owned());
    context
}
