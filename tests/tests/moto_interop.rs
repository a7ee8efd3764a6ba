//! CCC's KMS client against an implementation we did not write: moto in server mode with IAM
//! authentication on. Our SigV4-signed Encrypt, Decrypt, GenerateDataKey and GenerateRandom
//! succeed (credentials reaching the client through the parent ↔ enclave protocol); a wrong
//! secret, a body changed after signing and an unknown key are refused by moto and parsed into
//! typed errors; and the attested client refuses moto's answers, which ignore `Recipient` and
//! carry the secret in plaintext.
//!
//! moto is installed on first run into `target/tools/moto-venv-<version>` (needs python3 with
//! venv and access to PyPI).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use ccc_sdk::credentials::enclave::FromParent;
use ccc_sdk::credentials::parent::{self, ServeOptions};
use ccc_sdk::credentials::{Credentials, CredentialsProvider, Refreshing, StaticCredentials};
use ccc_sdk::kms::attested::AttestedKmsClient;
use ccc_sdk::kms::client::{ClientConfig, ClientError, Event, KmsClient, Observer, Transport};
use ccc_sdk::kms::{
    DataKeySpec, DecryptRequest, EncryptRequest, ErrorKind, GenerateDataKeyRequest,
    GenerateRandomRequest, KmsError, Operation, parse_error,
};
use ccc_sdk::net::Endpoint;
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::secret::SecretBytes;
use ccc_tests::moto::{Account, Moto, REGION};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// `target/tools` (next to cargo's `target/tmp` for integration tests).
fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("tools")
}

fn moto() -> (Moto, Account) {
    let moto = Moto::start(&tools_dir()).unwrap_or_else(|e| panic!("{e}"));
    let account = moto.set_up_account().unwrap_or_else(|e| panic!("{e}"));
    (moto, account)
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn event(&self, event: &Event<'_>) {
        self.0.lock().unwrap().push(event.to_string());
    }
}

impl Recorder {
    fn count(&self, prefix: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}

fn client(moto: &Moto, credentials: Arc<dyn CredentialsProvider>) -> (KmsClient, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let config = ClientConfig::new(REGION, moto.endpoint(), Transport::PlainHttpForEmulator);
    let client = KmsClient::new(config, credentials)
        .unwrap()
        .with_observer(recorder.clone());
    (client, recorder)
}

/// The enclave's view of the credentials: fetched from a real parent credentials server on
/// loopback that holds the IAM user's key.
fn via_parent(credentials: Credentials) -> Arc<dyn CredentialsProvider> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider: Arc<dyn CredentialsProvider> = Arc::new(StaticCredentials::new(credentials));
    std::thread::spawn(move || parent::serve(&listener, provider, ServeOptions::default()));
    Arc::new(Refreshing::new(FromParent::new(Endpoint::tcp(
        "127.0.0.1",
        port,
    ))))
}

#[test]
fn signed_kms_calls_succeed_against_moto() {
    let (moto, account) = moto();
    let (kms, recorder) = client(&moto, via_parent(account.credentials.clone()));
    let context = BTreeMap::from([("app".to_owned(), "ccc".to_owned())]);

    let encrypted = kms
        .send(&EncryptRequest {
            key_id: account.key_id.clone(),
            plaintext: SecretBytes::copy_from(b"attack at dawn"),
            encryption_context: context.clone(),
            ..EncryptRequest::default()
        })
        .unwrap();
    let blob = encrypted.ciphertext_blob.unwrap();
    assert!(!blob.windows(14).any(|w| w == b"attack at dawn"));
    let decrypted = kms
        .send(&DecryptRequest {
            ciphertext_blob: blob.clone(),
            encryption_context: context.clone(),
            ..DecryptRequest::default()
        })
        .unwrap();
    assert_eq!(decrypted.plaintext.unwrap().expose(), b"attack at dawn");
    assert!(decrypted.key_id.unwrap().ends_with(&account.key_id));

    let data_key = kms
        .send(&GenerateDataKeyRequest {
            key_id: account.key_id.clone(),
            key_spec: Some(DataKeySpec::Aes256),
            ..GenerateDataKeyRequest::default()
        })
        .unwrap();
    let plaintext = data_key.plaintext.unwrap();
    assert_eq!(plaintext.len(), 32);
    let unwrapped = kms
        .send(&DecryptRequest {
            ciphertext_blob: data_key.ciphertext_blob.unwrap(),
            ..DecryptRequest::default()
        })
        .unwrap();
    assert_eq!(unwrapped.plaintext.unwrap(), plaintext);

    let random = kms
        .send(&GenerateRandomRequest {
            number_of_bytes: Some(32),
            ..GenerateRandomRequest::default()
        })
        .unwrap();
    assert_eq!(random.plaintext.unwrap().len(), 32);

    // Five calls, five first attempts, nothing retried.
    assert_eq!(
        recorder.count("Encrypt: attempt 1, signed by AKIA")
            + recorder.count("Decrypt: attempt 1")
            + recorder.count("GenerateDataKey: attempt 1")
            + recorder.count("GenerateRandom: attempt 1"),
        5
    );
    assert_eq!(recorder.count("Decrypt: attempt 2"), 0);
}

#[test]
fn bad_signatures_are_refused_by_moto_and_typed() {
    let (moto, account) = moto();

    // The right key id with a wrong secret.
    let wrong =
        Credentials::new(account.credentials.access_key_id(), "not-the-secret", None).unwrap();
    let (kms, recorder) = client(&moto, Arc::new(StaticCredentials::new(wrong)));
    let error = kms
        .send(&GenerateRandomRequest {
            number_of_bytes: Some(8),
            ..GenerateRandomRequest::default()
        })
        .unwrap_err();
    let service = error.service_error().unwrap_or_else(|| panic!("{error:?}"));
    assert_eq!(service.kind, ErrorKind::InvalidSignature, "{error}");
    assert_eq!(service.code, "SignatureDoesNotMatch");
    assert_eq!(service.status, 403);
    assert!(
        error.to_string().contains("wrong secret access key"),
        "{error}"
    );
    assert_eq!(recorder.count("GenerateRandom: attempt"), 1, "not retried");

    // A body changed after signing (same length, one byte different).
    let signed_body = br#"{"NumberOfBytes":16}"#;
    let sent_body = br#"{"NumberOfBytes":17}"#;
    let headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Target", "TrentService.GenerateRandom"),
    ];
    let answer = moto
        .signed(
            &account.credentials,
            "kms",
            "kms.us-east-1.amazonaws.com",
            &headers,
            signed_body,
            sent_body,
        )
        .unwrap();
    let tampered = parse_error(
        Operation::GenerateRandom,
        answer.status,
        &answer.header_pairs(),
        &answer.body,
        false,
    );
    assert_eq!(
        (tampered.status, tampered.kind, tampered.code.as_str()),
        (403, ErrorKind::InvalidSignature, "SignatureDoesNotMatch")
    );
    // The same request untampered is accepted: the refusal was the tampering.
    let untampered = moto
        .signed(
            &account.credentials,
            "kms",
            "kms.us-east-1.amazonaws.com",
            &headers,
            signed_body,
            signed_body,
        )
        .unwrap();
    assert_eq!(untampered.status, 200);

    // An access key moto never issued.
    let unknown = Credentials::new("AKIAUNKNOWNUNKNOWN00", "secret", None).unwrap();
    let (kms, _) = client(&moto, Arc::new(StaticCredentials::new(unknown)));
    let error = kms
        .send(&GenerateRandomRequest {
            number_of_bytes: Some(8),
            ..GenerateRandomRequest::default()
        })
        .unwrap_err();
    assert_eq!(
        error.service_error().map(|e| e.kind),
        Some(ErrorKind::UnrecognizedClient),
        "{error}"
    );
}

#[test]
fn the_attested_client_refuses_motos_plaintext_answers() {
    let (moto, account) = moto();
    let (kms, recorder) = client(
        &moto,
        Arc::new(StaticCredentials::new(account.credentials.clone())),
    );
    let blob = kms
        .send(&EncryptRequest {
            key_id: account.key_id.clone(),
            plaintext: SecretBytes::copy_from(b"secret"),
            ..EncryptRequest::default()
        })
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let simulator = Simulator::new(
        SimulatorConfig::default()
            .with_pcr(0, [1; 48])
            .with_pcr(1, [2; 48])
            .with_pcr(2, [3; 48]),
    )
    .unwrap();
    let key = ccc_sdk::kms::KeyArn::parse(&account.key_arn).unwrap();
    let attested = AttestedKmsClient::new(kms, Nsm::simulator(simulator), Some(key)).unwrap();

    let refused = [
        attested
            .decrypt(DecryptRequest {
                ciphertext_blob: blob,
                ..DecryptRequest::default()
            })
            .map(|_| ()),
        attested
            .generate_data_key(GenerateDataKeyRequest {
                number_of_bytes: Some(32),
                ..GenerateDataKeyRequest::default()
            })
            .map(|_| ()),
        attested.generate_random(16).map(|_| ()),
    ];
    for (result, operation) in refused.into_iter().zip([
        Operation::Decrypt,
        Operation::GenerateDataKey,
        Operation::GenerateRandom,
    ]) {
        match result {
            Err(ClientError::Kms(KmsError::PlaintextDespiteRecipient { operation: op })) => {
                assert_eq!(op, operation);
            }
            other => panic!("{operation}: {other:?}"),
        }
    }
    // moto did answer 200 each time: what was refused is a successful, plaintext answer.
    assert_eq!(recorder.count("Decrypt: HTTP 200"), 1);
    assert_eq!(recorder.count("GenerateDataKey: HTTP 200"), 1);
    assert_eq!(recorder.count("GenerateRandom: HTTP 200"), 1);
    assert_eq!(recorder.count("Decrypt: NSM attestation document"), 1);
}
