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
use ccc_sdk::log::Received;
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
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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

/// An NSM that answers like QEMU's `nitro-enclave` machine: the simulator's PCRs and fields in
/// QEMU's exact unsigned shape (protected header `{1: -1}`, and 64 zero bytes for the
/// signature, the certificate and the one cabundle entry; QEMU `hw/virtio/virtio-nsm.c`), so
/// the KMS emulator in its explicit insecure QEMU mode accepts it as it accepts a QEMU guest's.
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
        let doc = attestation::parse(&document).unwrap().document;
        let zero = [0u8; 64];
        let mut payload = minicbor::Encoder::new(Vec::new());
        payload.map(9).unwrap();
        payload
            .str("module_id")
            .unwrap()
            .str(doc.module_id)
            .unwrap();
        payload.str("digest").unwrap().str(doc.digest).unwrap();
        payload
            .str("timestamp")
            .unwrap()
            .u64(doc.timestamp.0)
            .unwrap();
        payload
            .str("pcrs")
            .unwrap()
            .map(doc.pcrs.len() as u64)
            .unwrap();
        for (index, value) in doc.pcrs.iter() {
            payload.u8(index).unwrap().bytes(value).unwrap();
        }
        payload.str("certificate").unwrap().bytes(&zero).unwrap();
        payload
            .str("cabundle")
            .unwrap()
            .array(1)
            .unwrap()
            .bytes(&zero)
            .unwrap();
        for (key, value) in [
            ("public_key", doc.public_key),
            ("user_data", doc.user_data),
            ("nonce", doc.nonce),
        ] {
            payload.str(key).unwrap();
            match value {
                Some(bytes) => payload.bytes(bytes).unwrap(),
                None => payload.null().unwrap(),
            };
        }
        let mut cose = minicbor::Encoder::new(Vec::new());
        cose.array(4).unwrap();
        cose.bytes(&[0xa1, 0x01, 0x20]).unwrap();
        cose.map(0).unwrap();
        cose.bytes(&payload.into_writer()).unwrap();
        cose.bytes(&zero).unwrap();
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

/// How long a test waits for a record to arrive: only a bound against a hang.
const WAIT: Duration = Duration::from_secs(60);

/// The parent's end of the log channel: a real listener on loopback TCP keeping every line
/// received, whole and as bytes.
#[derive(Default)]
struct LogChannel {
    lines: Mutex<Vec<Vec<u8>>>,
    changed: Condvar,
}

impl LogChannel {
    /// Listens on 127.0.0.1 (one thread per connection); the port to give the enclave.
    fn listen() -> (Arc<Self>, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let channel = Arc::new(Self::default());
        let kept = Arc::clone(&channel);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).split(b'\n') {
                        let Ok(line) = line else { break };
                        kept.lines.lock().unwrap().push(line);
                        kept.changed.notify_all();
                    }
                });
            }
        });
        (channel, port)
    }

    /// Every line so far, as bytes.
    fn raw(&self) -> Vec<Vec<u8>> {
        self.lines.lock().unwrap().clone()
    }

    /// Every record so far (each line must decode).
    fn records(&self) -> Vec<Received> {
        decode_all(&self.raw())
    }

    /// Waits (on each arrival, up to [`WAIT`]) until `done` holds for the records received,
    /// and returns them.
    fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        let mut lines = self.lines.lock().unwrap();
        loop {
            let records = decode_all(&lines);
            if done(&records) {
                return records;
            }
            let now = Instant::now();
            assert!(now < deadline, "{what}: not among {records:#?}");
            lines = self.changed.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Waits until a record's message contains each of `needles`.
    fn wait_for_messages(&self, needles: &[&str]) -> Vec<Received> {
        self.wait_for(&format!("{needles:?}"), |records| {
            needles
                .iter()
                .all(|n| records.iter().any(|r| r.message.contains(n)))
        })
    }
}

fn decode_all(lines: &[Vec<u8>]) -> Vec<Received> {
    lines
        .iter()
        .map(|line| {
            ccc_sdk::log::decode(line)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
        })
        .collect()
}

/// Everything one test needs, started.
struct World {
    running: Running,
    enclave: enclave::Started,
    root_pem: String,
    console: Arc<Mutex<Vec<String>>>,
    log: Arc<LogChannel>,
    /// The credentials the parent hands out.
    handed: Credential,
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
    /// The parent's credentials service is down (nothing listens on its port).
    no_credentials: bool,
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
            no_credentials: false,
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

        // The parent's credentials service (or, down, a port nothing listens on).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let credentials_port = listener.local_addr().unwrap().port();
        let listener = (!setup.no_credentials).then_some(listener);
        let handed = setup
            .parent_hands
            .clone()
            .unwrap_or_else(|| running.credentials().clone());
        let parent_side: Arc<dyn CredentialsProvider> =
            Arc::new(StaticCredentials::new(handed.sigv4().unwrap()));
        let (log, log_port) = LogChannel::listen();
        if let Some(listener) = listener {
            std::thread::spawn(move || {
                parent::serve(&listener, parent_side, ServeOptions::default())
            });
        }

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
            (
                "CCC_APP_LOG_ENDPOINT",
                format!("tcp://127.0.0.1:{log_port}"),
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
            log,
            handed,
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

    // The log channel carries every step, and never the data (tested in full by
    // `no_secret_reaches_a_log_line_an_error_frame_or_the_console`).
    let records = world.log.wait_for_messages(&[
        "attestation: PCR2 a2a2",
        "credentials: ",
        "serving API v1 on tcp://127.0.0.1:",
        "kms GenerateDataKey: NSM attestation document",
        "kms GenerateDataKey: CiphertextForRecipient decrypted inside the enclave (32 secret bytes)",
        "seal: ok",
        "unseal: ok",
    ]);
    assert!(
        !records
            .iter()
            .any(|r| r.message.contains("the enclave's state"))
    );
    // Each answered request is one api.request record with its outcome and latency, and each
    // KMS call one kms.call record.
    let requests = world.log.wait_for("11 api.request records", |records| {
        records.iter().filter(|r| r.event == "api.request").count() >= 11
    });
    let outcome = |op: &str, outcome: &str| {
        requests
            .iter()
            .filter(|r| r.event == "api.request" && r.text("op") == Some(op))
            .filter(|r| r.text("outcome") == Some(outcome))
            .count()
    };
    assert_eq!(outcome("hmac", "ok"), 2);
    assert_eq!(outcome("hmac", "kms"), 1);
    assert_eq!(outcome("random", "bad_request"), 1);
    assert!(
        requests
            .iter()
            .filter(|r| r.event == "api.request")
            .all(|r| r.fields["latency_seconds"].as_f64().is_some())
    );
    let calls = world.log.records();
    assert!(calls.iter().any(|r| r.event == "kms.call"
        && r.text("operation") == Some("Decrypt")
        && r.text("outcome") == Some("invalid_ciphertext")));
    assert!(
        calls
            .iter()
            .any(|r| r.event == "attestation.document" && r.text("purpose") == Some("attest"))
    );
    // The enclave's NSM signs its documents and PCR0 is not zero: a production console, one line.
    assert_eq!(world.lines().len(), 1, "{:#?}", world.lines());
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
    world.log.wait_for_messages(&["trusted key: NONE"]);
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

    // The log channel alone is enough to diagnose it (the production console says nothing).
    let records = world.log.wait_for_messages(&[
        "hmac: FAILED at kms Decrypt with Recipient (kms_access_denied)",
        "kms Decrypt: HTTP 400",
        "kms Decrypt: access_denied after 1 attempt(s)",
        // The GenerateDataKey refusal came later: wait for its record too, not only the
        // first ones (records arrive while this test reads them).
        "kms GenerateDataKey: access_denied after",
    ]);
    let denied = records
        .iter()
        .find(|r| r.event == "api.request" && r.text("op") == Some("hmac"))
        .unwrap();
    assert!(denied.message.contains(&expected), "{denied:?}");
    assert_eq!(denied.text("outcome"), Some("kms_access_denied"));
    assert_eq!(denied.text("step"), Some("kms Decrypt with Recipient"));
    assert!(records.iter().any(|r| r.event == "kms.call"
        && r.text("operation") == Some("GenerateDataKey")
        && r.text("outcome") == Some("access_denied")));
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

/// A signed NSM document with PCR0 set is a production enclave: its console says one line
/// (where the records go) and nothing else, whatever happens; the log channel carries
/// everything. Under QEMU the console is full unless `ccc_app.console=production` asks
/// otherwise, and then it behaves as production's.
#[test]
fn a_production_console_says_one_line_and_the_log_channel_everything() {
    for (name, setup, production) in [
        ("console-signed", Setup::default(), true),
        (
            "console-qemu",
            Setup {
                cmdline: "console=ttyS0 ccc.emulation=1",
                nsm: NsmKind::QemuUnsigned,
                ..Setup::default()
            },
            false,
        ),
        (
            "console-qemu-production",
            Setup {
                cmdline: "console=ttyS0 ccc.emulation=1 ccc_app.console=production",
                nsm: NsmKind::QemuUnsigned,
                ..Setup::default()
            },
            true,
        ),
    ] {
        let world = World::try_start(name, setup).unwrap();
        world.call(&Request::Random { n: 4 }).unwrap();
        world.call(&Request::Random { n: 4096 }).unwrap_err();
        let records = world
            .log
            .wait_for_messages(&["random: ok", "random: FAILED"]);
        assert!(records.iter().any(|r| r.event == "start.serving"));
        let lines = world.lines();
        if production {
            assert_eq!(lines.len(), 1, "{name}: {lines:#?}");
            assert!(
                lines[0].starts_with(
                    "ccc-enclave: production console: this enclave reports to its parent over \
                     the log channel tcp://127.0.0.1:"
                ),
                "{name}: {lines:#?}"
            );
        } else {
            // Every record's message, in order, from the first setting on.
            let messages: Vec<String> = records
                .iter()
                .map(|r| format!("ccc-enclave: {}", r.message))
                .collect();
            assert_eq!(lines.get(..messages.len()), Some(&messages[..]), "{name}");
        }
    }
}

/// Reads the KMS emulator's default key from its state file and opens one of its ciphertext
/// blobs, following the blob format the emulator documents (`emulator/src/keys.rs`): what a
/// data key inside a `CiphertextBlob` is, known only to KMS and the enclave.
fn data_key_of(world: &World, blob: &[u8], context: &BTreeMap<String, String>) -> Vec<u8> {
    use base64::Engine as _;
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.running.state_path()).unwrap()).unwrap();
    let key = state["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == world.running.default_key_id())
        .unwrap();
    let material = base64::engine::general_purpose::STANDARD
        .decode(key["material"].as_str().unwrap())
        .unwrap();
    let id_len = usize::from(blob[5]);
    let header = &blob[..6 + id_len];
    let nonce = &blob[6 + id_len..18 + id_len];
    let mut aad = header.to_vec();
    aad.extend_from_slice(b"ccc-kms-emulator encryption context v1\0");
    aad.extend_from_slice(&(context.len() as u32).to_be_bytes());
    for (k, v) in context {
        aad.extend_from_slice(&(k.len() as u32).to_be_bytes());
        aad.extend_from_slice(k.as_bytes());
        aad.extend_from_slice(&(v.len() as u32).to_be_bytes());
        aad.extend_from_slice(v.as_bytes());
    }
    let key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &material).unwrap(),
    );
    let mut data = blob[18 + id_len..].to_vec();
    let plain = key
        .open_in_place(
            aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).unwrap(),
            aws_lc_rs::aead::Aad::from(&aad),
            &mut data,
        )
        .unwrap();
    plain.to_vec()
}

/// The private parts of a PKCS#8 RSA key: the private exponent, the primes, the CRT exponents
/// and coefficient (the modulus and public exponent are public: attestation documents carry
/// them).
fn rsa_private_parts(pkcs8: &[u8]) -> Vec<Vec<u8>> {
    /// One DER element at `at`: (tag, content start, content end).
    fn element(der: &[u8], at: usize) -> (u8, usize, usize) {
        let tag = der[at];
        let first = der[at + 1];
        let (len, start) = if first < 0x80 {
            (usize::from(first), at + 2)
        } else {
            let n = usize::from(first & 0x7f);
            let len = der[at + 2..at + 2 + n]
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, at + 2 + n)
        };
        (tag, start, start + len)
    }
    // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING, ... }
    let (_, info, _) = element(pkcs8, 0);
    let (_, _, version_end) = element(pkcs8, info);
    let (_, _, algorithm_end) = element(pkcs8, version_end);
    let (tag, key, _) = element(pkcs8, algorithm_end);
    assert_eq!(tag, 0x04, "privateKey OCTET STRING");
    // RSAPrivateKey ::= SEQUENCE { version, n, e, d, p, q, dp, dq, qinv }
    let (_, mut at, end) = element(pkcs8, key);
    let mut integers = Vec::new();
    while at < end {
        let (tag, start, stop) = element(pkcs8, at);
        assert_eq!(tag, 0x02, "INTEGER");
        integers.push(pkcs8[start..stop].to_vec());
        at = stop;
    }
    assert_eq!(integers.len(), 9);
    integers.drain(3..).collect()
}

/// Every form a secret could take in a line: the raw bytes, lower- and upper-case hex, and
/// standard and URL-safe base64 at each of the three byte alignments (only the whole 4-character
/// groups, which appear whatever surrounds the bytes). Secrets longer than 48 bytes are searched
/// by 24-byte pieces too, so a partial leak is found.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut pieces = vec![secret.to_vec()];
    if secret.len() > 48 {
        pieces.extend(
            secret
                .chunks(24)
                .filter(|c| c.len() == 24)
                .map(<[u8]>::to_vec),
        );
    }
    let mut out = Vec::new();
    for piece in pieces {
        out.push(piece.clone());
        out.push(hex(&piece).into_bytes());
        out.push(hex(&piece).to_uppercase().into_bytes());
        for skip in 0..3 {
            let tail = &piece[skip..];
            let whole = tail.len() / 3 * 4;
            for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
                let text = engine.encode(tail);
                out.push(text.as_bytes()[..whole].to_vec());
            }
        }
    }
    out
}

/// Which of `secrets` (name, bytes) appear, in any of their [`forms`], in `haystack`.
fn leaks(secrets: &[(String, Vec<u8>)], haystack: &[Vec<u8>]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, secret) in secrets {
        for form in forms(secret) {
            if let Some(line) = haystack
                .iter()
                .find(|line| line.windows(form.len()).any(|w| w == form.as_slice()))
            {
                found.push(format!("{name} in: {}", String::from_utf8_lossy(line)));
                break;
            }
        }
    }
    found
}

/// Random bytes.
fn random(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    AwsLc.fill_random(&mut bytes).unwrap();
    bytes
}

/// Never a secret (issue 12): the template's whole API — every operation and every failure
/// path, including KMS refusing the image, the parent without credentials and an image without
/// a trusted key — runs against the signed NSM simulator or QEMU's unsigned one and the KMS
/// emulator, and every line of the log channel, every console line (full, under QEMU) and
/// every error frame is searched for the plaintexts sealed, the secrets MACed, the data keys
/// (read back from the emulator's state), the credentials' secret key and session token, and
/// the private parts of the enclave's RSA key, in raw, hex and base64 forms. Zero hits; and a
/// planted copy of each secret is found, so the search itself can fail.
#[test]
fn no_secret_reaches_a_log_line_an_error_frame_or_the_console() {
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut haystack: Vec<Vec<u8>> = Vec::new();
    let mut record = |failure: &Failure| {
        frames.push(format!("{} {} {}", failure.code, failure.step, failure.message).into_bytes());
    };

    // 1. The honest image under QEMU's NSM (a full console), every operation and failure.
    let world = World::try_start(
        "no-secret",
        Setup {
            cmdline: "console=ttyS0 ccc.emulation=1",
            nsm: NsmKind::QemuUnsigned,
            ..Setup::default()
        },
    )
    .unwrap();
    // The enclave's RSA key, known to the test (an SDK hook; the template never calls it).
    let rsa =
        aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa)
        .unwrap()
        .as_ref()
        .to_vec();
    world
        .enclave
        .app()
        .kms()
        .use_key(ccc_sdk::crypto::AwsLcRsaKey::from_pkcs8(&pkcs8).unwrap());
    for (i, part) in rsa_private_parts(&pkcs8).into_iter().enumerate() {
        secrets.push((format!("RSA private integer {i}"), part));
    }
    let mut requests = 0usize;
    let mut call = |world: &World, request: Request| {
        requests += 1;
        world.call(&request)
    };

    let nonce = random(32);
    call(
        &world,
        Request::Attest {
            nonce: Some(nonce),
            user_data: Some(b"u".to_vec()),
        },
    )
    .unwrap();
    record(
        &call(
            &world,
            Request::Attest {
                nonce: Some(random(2000)),
                user_data: None,
            },
        )
        .unwrap_err(),
    );
    let context = BTreeMap::from([("tenant".to_owned(), "t1".to_owned())]);
    let Response::GenerateDataKey {
        ciphertext_blob, ..
    } = call(
        &world,
        Request::GenerateDataKey {
            context: context.clone(),
        },
    )
    .unwrap()
    else {
        panic!("not a data key")
    };
    secrets.push((
        "data key (generate_data_key)".into(),
        data_key_of(&world, &ciphertext_blob, &context),
    ));
    record(
        &call(
            &world,
            Request::GenerateDataKey {
                context: purpose("mine"),
            },
        )
        .unwrap_err(),
    );
    // hmac under that data key, and under a secret the operator encrypted.
    call(
        &world,
        Request::Hmac {
            ciphertext_blob: ciphertext_blob.clone(),
            message: b"m".to_vec(),
            context: context.clone(),
        },
    )
    .unwrap();
    let hmac_secret = random(32);
    secrets.push(("hmac secret".into(), hmac_secret.clone()));
    let blob = world.encrypt(&hmac_secret, BTreeMap::new());
    call(
        &world,
        Request::Hmac {
            ciphertext_blob: blob.clone(),
            message: b"m".to_vec(),
            context: BTreeMap::new(),
        },
    )
    .unwrap();
    for (blob, context) in [
        (blob.clone(), context.clone()),
        (
            world.encrypt(&hmac_secret, purpose("other")),
            BTreeMap::new(),
        ),
        (b"not a ciphertext".to_vec(), BTreeMap::new()),
    ] {
        record(
            &call(
                &world,
                Request::Hmac {
                    ciphertext_blob: blob,
                    message: b"m".to_vec(),
                    context,
                },
            )
            .unwrap_err(),
        );
    }
    // seal / unseal, and each way an unseal fails.
    let plaintext = [b"sealed plaintext ".as_slice(), &random(40)].concat();
    secrets.push(("sealed plaintext".into(), plaintext.clone()));
    let Response::Seal { sealed } = call(
        &world,
        Request::Seal {
            data: SecretBytes::copy_from(&plaintext),
            context: context.clone(),
        },
    )
    .unwrap() else {
        panic!("not sealed")
    };
    let parsed = seal::parse(&sealed).unwrap();
    let mut seal_context = context.clone();
    seal_context.insert(PURPOSE_KEY.into(), "seal".into());
    secrets.push((
        "data key (seal)".into(),
        data_key_of(&world, parsed.wrapped_key, &seal_context),
    ));
    call(
        &world,
        Request::Unseal {
            sealed: sealed.clone(),
            context: context.clone(),
        },
    )
    .unwrap();
    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    for (blob, context) in [
        (tampered, context.clone()),
        (sealed.clone(), BTreeMap::new()),
        (b"CCCS\x02 short".to_vec(), BTreeMap::new()),
    ] {
        record(
            &call(
                &world,
                Request::Unseal {
                    sealed: blob,
                    context,
                },
            )
            .unwrap_err(),
        );
    }
    record(
        &call(
            &world,
            Request::Seal {
                data: SecretBytes::copy_from(&plaintext),
                context: purpose("x"),
            },
        )
        .unwrap_err(),
    );
    call(&world, Request::Random { n: 32 }).unwrap();
    record(&call(&world, Request::Random { n: 0 }).unwrap_err());
    // Frames that are not requests.
    let mut client = world.client();
    for payload in [
        &br#"{"version":2,"op":"random","n":1}"#[..],
        br#"{"version":1,"op":"shell"}"#,
        b"\xff not json",
    ] {
        requests += 1;
        match client.call_raw(payload).unwrap() {
            Response::Error(failure) => record(&failure),
            other => panic!("{other:?}"),
        }
    }
    drop(client);
    secrets.push((
        "secret access key".into(),
        world.handed.secret_access_key().as_bytes().to_vec(),
    ));
    if let Some(token) = world.handed.session_token() {
        secrets.push(("session token".into(), token.as_bytes().to_vec()));
    }
    let counted = requests;
    world.log.wait_for("every api.request record", |records| {
        records.iter().filter(|r| r.event == "api.request").count() >= counted
    });
    haystack.extend(world.log.raw());
    haystack.extend(world.lines().into_iter().map(String::into_bytes));
    assert!(
        world.lines().len() > 40,
        "a full console: {:#?}",
        world.lines()
    );

    // 2. KMS refuses the image (another PCR2 pinned): the denial paths.
    let denied = World::start("no-secret-denied", [PCRS[0], PCRS[1], [0xee; 48]], true);
    let denied_secret = random(32);
    secrets.push(("hmac secret (denied)".into(), denied_secret.clone()));
    let mut made = 0;
    for request in [
        Request::Hmac {
            ciphertext_blob: denied.encrypt(&denied_secret, BTreeMap::new()),
            message: b"m".to_vec(),
            context: BTreeMap::new(),
        },
        Request::Seal {
            data: SecretBytes::copy_from(&plaintext),
            context: BTreeMap::new(),
        },
        Request::GenerateDataKey {
            context: BTreeMap::new(),
        },
        Request::Random { n: 8 },
    ] {
        made += 1;
        record(&denied.call(&request).unwrap_err());
    }
    denied.log.wait_for("the denials", |records| {
        records.iter().filter(|r| r.event == "api.request").count() >= made
    });
    haystack.extend(denied.log.raw());

    // 3. The parent has no credentials service; 4. the image has no trusted key.
    for (name, setup) in [
        (
            "no-secret-no-credentials",
            Setup {
                no_credentials: true,
                ..Setup::default()
            },
        ),
        (
            "no-secret-no-key",
            Setup {
                trusted_key: false,
                ..Setup::default()
            },
        ),
    ] {
        let world = World::try_start(name, setup).unwrap();
        let blob = world.encrypt(&denied_secret, BTreeMap::new());
        for request in [
            Request::Hmac {
                ciphertext_blob: blob,
                message: b"m".to_vec(),
                context: BTreeMap::new(),
            },
            Request::Seal {
                data: SecretBytes::copy_from(&plaintext),
                context: BTreeMap::new(),
            },
        ] {
            record(&world.call(&request).unwrap_err());
        }
        world.log.wait_for(name, |records| {
            records.iter().filter(|r| r.event == "api.request").count() >= 2
        });
        haystack.extend(world.log.raw());
        secrets.push((
            format!("secret access key ({name})"),
            world.handed.secret_access_key().as_bytes().to_vec(),
        ));
    }
    haystack.extend(frames.iter().cloned());

    // The runs really produced what is searched: records of every kind of failure.
    let all = decode_all(
        &haystack
            .iter()
            .filter(|l| l.starts_with(b"{"))
            .cloned()
            .collect::<Vec<_>>(),
    );
    for outcome in [
        "kms_access_denied",
        "credentials",
        "not_configured",
        "foreign_blob",
        "unseal",
        "kms",
        "bad_request",
        "unknown_op",
        "unsupported_version",
    ] {
        assert!(
            all.iter()
                .any(|r| r.event == "api.request" && r.text("outcome") == Some(outcome)),
            "no request ended with {outcome}"
        );
    }
    assert!(frames.len() >= 20, "{}", frames.len());

    let found = leaks(&secrets, &haystack);
    assert!(found.is_empty(), "secrets in the logs: {found:#?}");

    // Control: the search finds a planted copy of each secret, in each form.
    for (name, secret) in &secrets {
        use base64::Engine as _;
        for planted in [
            [b"x".as_slice(), secret].concat(),
            format!("key={}", hex(secret)).into_bytes(),
            base64::engine::general_purpose::STANDARD
                .encode([b"ab".as_slice(), secret].concat())
                .into_bytes(),
        ] {
            let found = leaks(
                &[(name.clone(), secret.clone())],
                std::slice::from_ref(&planted),
            );
            assert_eq!(
                found.len(),
                1,
                "{name} planted as {} not found",
                String::from_utf8_lossy(&planted)
            );
        }
    }
}
