//! The attested KMS client with the NSM simulator against a real server on loopback that
//! parses (and verifies, against the simulator's root) each attestation document and answers
//! with CMS envelopes to its `public_key`: every operation, fail-closed on plaintext answers,
//! a fresh document per call, key rotation by use count and age, rotation racing a call in
//! flight, and the trusted key: every request names it, a request naming another is refused
//! unsent, an answer for another key is refused unopened.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod net_support;

use ccc_sdk::attestation::{RootOfTrust, VerifyOptions};
use ccc_sdk::clock::ManualClock;
use ccc_sdk::credentials::{Credentials, StaticCredentials};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::kms::attested::{AttestedKmsClient, KeyRotation};
use ccc_sdk::kms::client::{ClientConfig, ClientError, Event, KmsClient, Observer, Transport};
use ccc_sdk::kms::{
    DataKeyPairSpec, DecryptRequest, DeriveSharedSecretRequest, EncryptRequest,
    GenerateDataKeyPairRequest, GenerateDataKeyRequest, KeyAgreementAlgorithm, KeyArn, KmsError,
    Operation,
};
use ccc_sdk::net::Endpoint;
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::time::UnixMillis;
use ccc_sdk::tls::TrustAnchors;
use net_support::fake_kms::FakeKms;
use net_support::test_pki;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// The key the client trusts for its symmetric operations.
const APP_KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// A key-agreement key it trusts as well (named explicitly by DeriveSharedSecret).
const ECDH_KEY: &str =
    "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

fn arn(text: &str) -> KeyArn {
    KeyArn::parse(text).unwrap()
}

fn credentials() -> Credentials {
    Credentials::new("ASIAEXAMPLE", SECRET, Some("TOKEN".into())).unwrap()
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn event(&self, event: &Event<'_>) {
        self.0.lock().unwrap().push(event.to_string());
    }
}

struct Setup {
    fake: FakeKms,
    client: Arc<AttestedKmsClient>,
    simulator: Arc<Simulator>,
    recorder: Arc<Recorder>,
    clock: Arc<ManualClock>,
}

fn setup(rotation: KeyRotation) -> Setup {
    setup_trusting(rotation, Some(arn(APP_KEY)))
}

fn setup_trusting(rotation: KeyRotation, trusted: Option<KeyArn>) -> Setup {
    let pki = test_pki(&["kms.eu-west-1.amazonaws.com"]);
    let fake = FakeKms::start_tls(credentials(), pki.server_config.clone());
    // Non-zero boot PCRs: a production-mode enclave (all-zero PCRs mean debug mode).
    let config = SimulatorConfig::default()
        .with_pcr(0, [0x10; 48])
        .with_pcr(1, [0x11; 48])
        .with_pcr(2, [0x12; 48]);
    let simulator = Arc::new(Simulator::new(config).unwrap());
    let recorder = Arc::new(Recorder::default());
    let clock = Arc::new(ManualClock::new(UnixMillis::now()));
    let config = ClientConfig::new(
        "eu-west-1",
        Endpoint::tcp("127.0.0.1", fake.server.port),
        Transport::Tls(TrustAnchors::CustomCaPem(pki.ca_pem)),
    );
    let kms = KmsClient::new(config, Arc::new(StaticCredentials::new(credentials())))
        .unwrap()
        .with_observer(recorder.clone())
        .with_clock(clock.clone());
    let nsm = Nsm::with_transport(Box::new(Arc::clone(&simulator)));
    let mut client = AttestedKmsClient::new(kms, nsm, trusted)
        .unwrap()
        .with_rotation(rotation);
    if !client.trusted_keys().is_empty() {
        client = client.trust_also(arn(ECDH_KEY)).unwrap();
    }
    Setup {
        fake,
        client: Arc::new(client),
        simulator,
        recorder,
        clock,
    }
}

fn decrypt_request(blob: &[u8]) -> DecryptRequest {
    DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        ..DecryptRequest::default()
    }
}

/// The public keys in the documents the server received, in order.
fn document_keys(setup: &Setup) -> Vec<Vec<u8>> {
    setup
        .fake
        .state
        .documents
        .lock()
        .unwrap()
        .iter()
        .map(|d| {
            ccc_sdk::attestation::parse(d)
                .unwrap()
                .document
                .public_key
                .unwrap()
                .to_vec()
        })
        .collect()
}

#[test]
fn every_operation_opens_ciphertext_for_recipient() {
    let s = setup(KeyRotation::default());
    let client = &s.client;
    assert_eq!(
        client.decrypt(decrypt_request(b"blob")).unwrap().expose(),
        b"plain:blob"
    );
    let data_key = client
        .generate_data_key(GenerateDataKeyRequest {
            number_of_bytes: Some(32),
            ..GenerateDataKeyRequest::default()
        })
        .unwrap();
    assert_eq!(data_key.plaintext.expose(), &[0x5a; 32]);
    assert_eq!(data_key.key_id.as_deref(), Some(APP_KEY));
    assert_eq!(&data_key.ciphertext_blob[..8], b"wrapped:");
    assert_eq!(client.generate_random(24).unwrap().expose(), &[0xab; 24]);
    let pair = client
        .generate_data_key_pair(GenerateDataKeyPairRequest {
            encryption_context: BTreeMap::new(),
            key_id: APP_KEY.into(),
            key_pair_spec: DataKeyPairSpec::EccNistP256,
            grant_tokens: Vec::new(),
            recipient: None,
            dry_run: None,
        })
        .unwrap();
    assert_eq!(pair.private_key.expose(), b"pkcs8-private-key");
    assert_eq!(pair.public_key, b"spki-public-key");
    assert_eq!(pair.private_key_ciphertext_blob, b"wrapped-private");
    assert_eq!(pair.key_pair_spec, Some(DataKeyPairSpec::EccNistP256));
    let shared = client
        .derive_shared_secret(DeriveSharedSecretRequest {
            key_id: ECDH_KEY.into(),
            key_agreement_algorithm: KeyAgreementAlgorithm::Ecdh,
            public_key: b"peer".to_vec(),
            grant_tokens: Vec::new(),
            dry_run: None,
            recipient: None,
        })
        .unwrap();
    assert_eq!(shared.expose(), b"shared-with:peer");
    let encrypted = client
        .encrypt(&EncryptRequest {
            plaintext: SecretBytes::copy_from(b"x"),
            ..EncryptRequest::default()
        })
        .unwrap();
    assert_eq!(encrypted.ciphertext_blob.unwrap(), b"ct:x");

    // Five secret-bearing calls, five distinct documents, all for the client's key and all
    // signed by the simulator's chain.
    let documents = s.fake.state.documents.lock().unwrap().clone();
    assert_eq!(documents.len(), 5);
    assert_eq!(documents.iter().collect::<BTreeSet<_>>().len(), 5);
    let root = RootOfTrust::custom(s.simulator.root_der().to_vec()).unwrap();
    for document in &documents {
        let verified = ccc_sdk::attestation::verify(
            document,
            &VerifyOptions::new(UnixMillis::now()).with_root(root.clone()),
            &AwsLc,
        )
        .unwrap();
        assert_eq!(
            verified.public_key.as_deref(),
            Some(&client.public_key_spki()[..])
        );
        assert_eq!(verified.nonce, None);
        assert_eq!(verified.user_data, None);
    }
    // Encrypt carried no Recipient.
    let encrypt = s.fake.server.requests().into_iter().last().unwrap();
    assert!(
        !String::from_utf8(encrypt.body)
            .unwrap()
            .contains("Recipient")
    );

    let lines = s.recorder.0.lock().unwrap().clone();
    for expected in [
        "Decrypt: NSM attestation document (",
        "Decrypt: attempt 1, signed by ASIAEXAMPLE at ",
        "Decrypt: CiphertextForRecipient decrypted inside the enclave (10 secret bytes)",
        "GenerateDataKeyPair: CiphertextForRecipient decrypted inside the enclave (17 secret bytes)",
        "connected to tcp://127.0.0.1:",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}: {lines:?}"
        );
    }
    for secret in [
        "plain:blob",
        "pkcs8-private-key",
        "shared-with",
        SECRET,
        "TOKEN",
    ] {
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "{secret} leaked: {lines:?}"
        );
    }
    let shown = format!("{:?} {data_key:?} {pair:?}", s.client);
    assert!(
        !shown.contains("pkcs8") && !shown.contains(SECRET),
        "{shown}"
    );
}

#[test]
fn plaintext_answers_to_attested_requests_are_refused() {
    let s = setup(KeyRotation::default());
    s.fake.state.ignore_recipient.store(true, Ordering::SeqCst);
    let error = s.client.decrypt(decrypt_request(b"blob")).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Kms(KmsError::PlaintextDespiteRecipient {
                operation: Operation::Decrypt
            })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("refusing it"));
    let error = s.client.generate_random(8).unwrap_err();
    assert!(matches!(
        error,
        ClientError::Kms(KmsError::PlaintextDespiteRecipient { .. })
    ));
}

#[test]
fn keys_rotate_after_max_uses_and_max_age() {
    let s = setup(KeyRotation {
        max_age: Duration::from_secs(3600),
        max_uses: 2,
    });
    for _ in 0..3 {
        s.client.decrypt(decrypt_request(b"b")).unwrap();
    }
    let keys = document_keys(&s);
    assert_eq!(keys[0], keys[1]);
    assert_ne!(keys[1], keys[2], "the third call uses a new key");

    s.clock.advance(Duration::from_secs(3600));
    s.client.generate_random(1).unwrap();
    let keys = document_keys(&s);
    assert_ne!(keys[2], keys[3], "an hour later the key is new");
    let lines = s.recorder.0.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("(the key reached its maximum number of uses)"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("(the key reached its maximum age)"))
    );
}

#[test]
fn a_rotation_during_a_call_does_not_disturb_it() {
    let s = setup(KeyRotation::default());
    // The server rotates the client's key while the client waits for the answer; the answer
    // is encrypted to the key in the document, which the call must still hold.
    let client = Arc::clone(&s.client);
    *s.fake.state.hook.lock().unwrap() = Some(Box::new(move |_| {
        client.rotate_key().unwrap();
    }));
    let before = s.client.public_key_spki();
    assert_eq!(
        s.client.decrypt(decrypt_request(b"x")).unwrap().expose(),
        b"plain:x"
    );
    assert_ne!(s.client.public_key_spki(), before);
    assert_eq!(document_keys(&s)[0], before);
    s.fake.state.hook.lock().unwrap().take();
    s.client.decrypt(decrypt_request(b"y")).unwrap();
    assert_eq!(document_keys(&s)[1], s.client.public_key_spki());
}

/// Every key operation names a trusted key ARN, `Decrypt` included (it may omit `KeyId` in
/// KMS's API, and KMS then uses whatever key the ciphertext names).
#[test]
fn every_request_names_the_trusted_key() {
    let s = setup(KeyRotation::default());
    s.client.decrypt(decrypt_request(b"blob")).unwrap();
    s.client
        .generate_data_key(GenerateDataKeyRequest {
            number_of_bytes: Some(32),
            ..GenerateDataKeyRequest::default()
        })
        .unwrap();
    for request in s.fake.server.requests() {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["KeyId"], APP_KEY, "{body}");
    }
}

/// A request naming a key the client does not trust (an alias, or the ARN of the parent's own
/// key) is refused before anything is sent. Before the trusted key existed, the template
/// passed a request's `key_id` straight to KMS.
#[test]
fn a_request_naming_another_key_is_refused_unsent() {
    let s = setup(KeyRotation::default());
    let parents_key = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    for key_id in ["alias/app", parents_key] {
        let error = s
            .client
            .generate_data_key(GenerateDataKeyRequest {
                key_id: key_id.into(),
                number_of_bytes: Some(32),
                ..GenerateDataKeyRequest::default()
            })
            .unwrap_err();
        match &error {
            ClientError::Kms(KmsError::UntrustedKey {
                operation: Operation::GenerateDataKey,
                requested,
                trusted,
            }) => {
                assert_eq!(requested, key_id);
                assert_eq!(trusted, &[APP_KEY, ECDH_KEY]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            error.to_string().contains("refused before sending"),
            "{error}"
        );
        let error = s
            .client
            .decrypt(DecryptRequest {
                key_id: Some(key_id.into()),
                ..decrypt_request(b"blob")
            })
            .unwrap_err();
        assert!(
            matches!(error, ClientError::Kms(KmsError::UntrustedKey { .. })),
            "{error:?}"
        );
    }
    assert!(s.fake.server.requests().is_empty());
    assert!(s.fake.state.documents.lock().unwrap().is_empty());
}

/// The attack: a KMS (or a parent answering in its place) returns a data key made under
/// another key. The answer's `KeyId` differs from the key the request named, so the client
/// refuses it without opening `CiphertextForRecipient`; an answer without `KeyId` too. Before
/// this check the response's `KeyId` was dropped and the secret returned.
#[test]
fn an_answer_for_another_key_is_refused_unopened() {
    let s = setup(KeyRotation::default());
    let parents_key = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    for answered in [Some(parents_key.to_owned()), None] {
        *s.fake.state.answer_key_id.lock().unwrap() = Some(answered.clone());
        let error = s.client.decrypt(decrypt_request(b"blob")).unwrap_err();
        match &error {
            ClientError::Kms(KmsError::ResponseKeyMismatch {
                operation: Operation::Decrypt,
                expected,
                found,
            }) => {
                assert_eq!(expected, APP_KEY);
                assert_eq!(found, &answered);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            error
                .to_string()
                .contains("refused and its secret not opened"),
            "{error}"
        );
        let error = s
            .client
            .generate_data_key(GenerateDataKeyRequest {
                number_of_bytes: Some(32),
                ..GenerateDataKeyRequest::default()
            })
            .unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Kms(KmsError::ResponseKeyMismatch { .. })
            ),
            "{error:?}"
        );
    }
    // Nothing was opened: no RecipientOpened event, and the key was never used.
    let lines = s.recorder.0.lock().unwrap().clone();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("CiphertextForRecipient decrypted")),
        "{lines:?}"
    );
    // The same server answering for the right key: accepted.
    *s.fake.state.answer_key_id.lock().unwrap() = None;
    assert_eq!(
        s.client.decrypt(decrypt_request(b"blob")).unwrap().expose(),
        b"plain:blob"
    );
}

/// Without a trusted key only key-less operations work; a key in another region than the
/// client's is refused when the client is built.
#[test]
fn no_trusted_key_leaves_only_keyless_operations() {
    let s = setup_trusting(KeyRotation::default(), None);
    let error = s.client.decrypt(decrypt_request(b"blob")).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Kms(KmsError::NoTrustedKey {
                operation: Operation::Decrypt
            })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("CCC_APP_KEY_ARN"), "{error}");
    assert_eq!(s.client.generate_random(4).unwrap().expose(), &[0xab; 4]);

    let elsewhere =
        arn("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
    let kms = KmsClient::new(
        ClientConfig::new(
            "eu-west-1",
            Endpoint::tcp("127.0.0.1", s.fake.server.port),
            Transport::Tls(TrustAnchors::AmazonRoots),
        ),
        Arc::new(StaticCredentials::new(credentials())),
    )
    .unwrap();
    let nsm = Nsm::with_transport(Box::new(Arc::clone(&s.simulator)));
    let error = AttestedKmsClient::new(kms, nsm, Some(elsewhere)).unwrap_err();
    assert!(
        matches!(error, ClientError::Kms(KmsError::TrustedKeyRegion { .. })),
        "{error:?}"
    );
}

/// Each call that reached KMS is reported once, with its final outcome: after the answer was
/// checked and opened (an answer refused here is `answer_refused`, not `ok`), and not at all
/// for a call refused before sending.
#[test]
fn each_call_is_reported_once_with_its_final_outcome() {
    let s = setup(KeyRotation::default());
    let finished = || -> Vec<String> {
        s.recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(" after ") && l.contains(" attempt(s) in "))
            .cloned()
            .collect()
    };
    s.client.decrypt(decrypt_request(b"blob")).unwrap();
    s.client.generate_random(8).unwrap();
    let lines = finished();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("Decrypt: ok after 1 attempt(s)"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("GenerateRandom: ok after 1 attempt(s)"),
        "{lines:?}"
    );

    // KMS answered 200 for another key: the call failed, and says so.
    let other = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    *s.fake.state.answer_key_id.lock().unwrap() = Some(Some(other.to_owned()));
    s.client.decrypt(decrypt_request(b"blob")).unwrap_err();
    *s.fake.state.answer_key_id.lock().unwrap() = None;
    // Refused before sending: no KMS call, nothing reported.
    s.client
        .decrypt(DecryptRequest {
            key_id: Some(other.into()),
            ..decrypt_request(b"blob")
        })
        .unwrap_err();
    let lines = finished();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[2].starts_with("Decrypt: answer_refused after 1 attempt(s)"),
        "{lines:?}"
    );
}
