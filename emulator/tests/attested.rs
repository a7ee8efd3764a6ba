//! The `Recipient` path end to end: attestation documents from the SDK's NSM simulator (signed
//! by its development root) and QEMU-shaped unsigned documents, sent over TLS to the emulator;
//! the secret comes back only as `CiphertextForRecipient`, which only the enclave's RSA key
//! opens (`ccc_sdk::cms::decrypt`); key policies pin PCRs and denials name the PCR; tampered,
//! untrusted and unsigned documents are refused with the verifier's own error.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::AsDer;
use ccc_emulator::{Running, TrustMode};
use ccc_sdk::attestation::{self, RootOfTrust, VerifyOptions};
use ccc_sdk::crypto::{AwsLc, AwsLcRsaKey, RsaDecryptionKey};
use ccc_sdk::kms::{
    self, DataKeyPairSpec, DecryptRequest, DeriveSharedSecretRequest, GenerateDataKeyPairRequest,
    GenerateDataKeyRequest, GenerateRandomRequest, KeyAgreementAlgorithm, Recipient,
};
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::time::UnixMillis;
use common::{Client, b64, start, unb64};
use serde_json::{Value, json};
use std::sync::Arc;

fn pcr(byte: u8) -> [u8; 48] {
    [byte; 48]
}

struct Enclave {
    simulator: Arc<Simulator>,
    nsm: Nsm,
    key: AwsLcRsaKey,
}

impl Enclave {
    fn new(pcrs: [[u8; 48]; 3]) -> Self {
        let mut config = SimulatorConfig::default();
        for (i, value) in pcrs.into_iter().enumerate() {
            config = config.with_pcr(i as u16, value);
        }
        let simulator = Arc::new(Simulator::new(config).unwrap());
        let nsm = Nsm::with_transport(Box::new(simulator.clone()));
        Self {
            simulator,
            nsm,
            key: AwsLcRsaKey::generate().unwrap(),
        }
    }

    /// A fresh document binding the enclave's RSA key, as the C SDK sends per call.
    fn document(&self) -> Vec<u8> {
        self.nsm
            .attestation(None, None, Some(self.key.public_key_spki()))
            .unwrap()
    }

    fn recipient(&self) -> Recipient {
        Recipient::new(self.document())
    }

    fn trust(&self) -> TrustMode {
        TrustMode::development_root_pem(self.simulator.root_pem()).unwrap()
    }
}

/// Admin rights for the account, and the secret-releasing operations only for an enclave
/// whose PCR0/1/2 match.
fn enclave_policy(pcrs: [[u8; 48]; 3]) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Encrypt", "kms:Describe*", "kms:CreateKey", "kms:PutKeyPolicy",
                        "kms:GetKeyPolicy", "kms:GetPublicKey"],
             "Resource": "*"},
            {"Sid": "EnclaveOnly", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:role/ccc-emulator-parent"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair",
                        "kms:GenerateRandom", "kms:DeriveSharedSecret"],
             "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {
                 "kms:RecipientAttestation:ImageSha384": hex::encode(pcrs[0]),
                 "kms:RecipientAttestation:PCR1": hex::encode(pcrs[1]),
                 "kms:RecipientAttestation:PCR2": hex::encode(pcrs[2]).to_uppercase()}}}
        ]
    })
    .to_string()
}

const PCRS: [[u8; 48]; 3] = [[0xa0; 48], [0xa1; 48], [0xa2; 48]];

fn encrypt(client: &Client, running: &Running, plaintext: &[u8]) -> Vec<u8> {
    let response = client
        .call(
            "Encrypt",
            &json!({"KeyId": running.default_key_id(), "Plaintext": b64(plaintext)}),
        )
        .ok();
    unb64(response["CiphertextBlob"].as_str().unwrap())
}

/// Decrypt with a Recipient, raw: returns the JSON body.
fn decrypt_raw(client: &Client, blob: &[u8], document: &[u8]) -> common::Response {
    client.call(
        "Decrypt",
        &json!({"CiphertextBlob": b64(blob),
                "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                              "AttestationDocument": b64(document)}}),
    )
}

#[test]
fn attested_operations_answer_only_through_ciphertext_for_recipient() {
    let enclave = Enclave::new([pcr(0xa0), pcr(0xa1), pcr(0xa2)]);
    let running = start("attested", |c| {
        c.with_log(false)
            .with_trust(enclave.trust())
            .with_policy(enclave_policy(PCRS))
    });
    let client = Client::new(&running);
    let blob = encrypt(&client, &running, b"only the enclave reads this");

    // Decrypt: the raw answer has CiphertextForRecipient and no Plaintext at all.
    let body = decrypt_raw(&client, &blob, &enclave.document()).ok();
    assert!(body.get("Plaintext").is_none(), "{body}");
    assert_eq!(body["KeyId"], running.default_key_arn());
    let envelope = unb64(body["CiphertextForRecipient"].as_str().unwrap());
    // KMS's layout: BER ContentInfo (indefinite), envelopedData, chunked content.
    assert_eq!(
        &envelope[..13],
        &[
            0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03
        ]
    );
    let opened = ccc_sdk::cms::decrypt(&envelope, &AwsLc, &enclave.key).unwrap();
    assert_eq!(opened.expose(), b"only the enclave reads this");
    // Another RSA key cannot open it.
    let stranger = AwsLcRsaKey::generate().unwrap();
    assert!(ccc_sdk::cms::decrypt(&envelope, &AwsLc, &stranger).is_err());

    // The same through the SDK's codec and open_recipient_response.
    let request = DecryptRequest {
        ciphertext_blob: blob.clone(),
        recipient: Some(enclave.recipient()),
        ..DecryptRequest::default()
    };
    let response = client.decode(&request).unwrap();
    let opened = kms::open_recipient_response(&response, &AwsLc, &enclave.key).unwrap();
    assert_eq!(opened.expose(), b"only the enclave reads this");

    // GenerateDataKey: the envelope holds the data key, the wrapped copy decrypts to it.
    let response = client
        .decode(&GenerateDataKeyRequest {
            key_id: running.default_key_id().into(),
            number_of_bytes: Some(32),
            recipient: Some(enclave.recipient()),
            ..GenerateDataKeyRequest::default()
        })
        .unwrap();
    assert!(response.plaintext.is_none());
    let data_key = kms::open_recipient_response(&response, &AwsLc, &enclave.key).unwrap();
    assert_eq!(data_key.len(), 32);
    let again = client
        .decode(&DecryptRequest {
            ciphertext_blob: response.ciphertext_blob.unwrap(),
            recipient: Some(enclave.recipient()),
            ..DecryptRequest::default()
        })
        .unwrap();
    assert_eq!(
        kms::open_recipient_response(&again, &AwsLc, &enclave.key)
            .unwrap()
            .expose(),
        data_key.expose()
    );

    // GenerateRandom (authorized by the account policy, which Config::policy also set).
    let random = client
        .decode(&GenerateRandomRequest {
            number_of_bytes: Some(48),
            recipient: Some(enclave.recipient()),
            ..GenerateRandomRequest::default()
        })
        .unwrap();
    assert_eq!(
        kms::open_recipient_response(&random, &AwsLc, &enclave.key)
            .unwrap()
            .len(),
        48
    );

    // GenerateDataKeyPair: the envelope holds the PKCS#8 private key of PublicKey.
    let pair = client
        .decode(&GenerateDataKeyPairRequest {
            encryption_context: Default::default(),
            key_id: running.default_key_id().into(),
            key_pair_spec: DataKeyPairSpec::EccNistP256,
            grant_tokens: Vec::new(),
            recipient: Some(enclave.recipient()),
            dry_run: None,
        })
        .unwrap();
    assert!(pair.private_key_plaintext.is_none());
    let pkcs8 = kms::open_recipient_response(&pair, &AwsLc, &enclave.key).unwrap();
    let private =
        agreement::PrivateKey::from_private_key_der(&agreement::ECDH_P256, pkcs8.expose()).unwrap();
    assert_eq!(
        private
            .compute_public_key()
            .unwrap()
            .as_der()
            .unwrap()
            .as_ref(),
        pair.public_key.unwrap()
    );

    // DeriveSharedSecret on a KEY_AGREEMENT key with the same policy.
    let created = client
        .call(
            "CreateKey",
            &json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT",
                    "Policy": enclave_policy(PCRS)}),
        )
        .ok();
    let agreement_key = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let kms_public = unb64(
        client
            .call("GetPublicKey", &json!({"KeyId": agreement_key}))
            .ok()["PublicKey"]
            .as_str()
            .unwrap(),
    );
    let ours = agreement::PrivateKey::generate(&agreement::ECDH_P256).unwrap();
    let shared = client
        .decode(&DeriveSharedSecretRequest {
            key_id: agreement_key,
            key_agreement_algorithm: KeyAgreementAlgorithm::Ecdh,
            public_key: ours
                .compute_public_key()
                .unwrap()
                .as_der()
                .unwrap()
                .as_ref()
                .to_vec(),
            grant_tokens: Vec::new(),
            dry_run: None,
            recipient: Some(enclave.recipient()),
        })
        .unwrap();
    let expected = agreement::agree(
        &ours,
        agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &kms_public),
        (),
        |s| Ok(s.to_vec()),
    )
    .unwrap();
    assert_eq!(
        kms::open_recipient_response(&shared, &AwsLc, &enclave.key)
            .unwrap()
            .expose(),
        expected
    );

    // Without a Recipient the enclave statement does not apply, and the denial says why.
    let message = client
        .call("Decrypt", &json!({"CiphertextBlob": b64(&blob)}))
        .expect_error("AccessDeniedException");
    assert!(
        message.contains("has no kms:RecipientAttestation:ImageSha384"),
        "{message}"
    );
}

#[test]
fn a_policy_pinning_other_pcrs_is_denied_naming_the_pcr() {
    let enclave = Enclave::new([pcr(0xa0), pcr(0xb1), pcr(0xa2)]);
    let running = start("pcr-mismatch", |c| {
        c.with_log(false)
            .with_trust(enclave.trust())
            .with_policy(enclave_policy(PCRS))
    });
    let client = Client::new(&running);
    let blob = encrypt(&client, &running, b"x");
    let message =
        decrypt_raw(&client, &blob, &enclave.document()).expect_error("AccessDeniedException");
    assert!(
        message.contains("kms:RecipientAttestation:PCR1"),
        "{message}"
    );
    assert!(
        message.contains(&hex::encode(pcr(0xb1))),
        "the enclave's value: {message}"
    );
    assert!(
        message.contains(&hex::encode(pcr(0xa1))),
        "the policy's value: {message}"
    );
    assert!(
        !message.contains("ImageSha384") && !message.contains("PCR2"),
        "only the failed condition is named: {message}"
    );
    assert!(message.starts_with(&format!(
        "User: {} is not authorized to perform: kms:Decrypt on resource: {}",
        running.credentials().principal_arn(),
        running.default_key_arn()
    )));

    // A debug-mode enclave (all-zero PCRs) is accepted as a document, and denied by the PCRs.
    let debug = Enclave::new([[0; 48]; 3]);
    let running = start("pcr-debug", |c| {
        c.with_log(false)
            .with_trust(debug.trust())
            .with_policy(enclave_policy(PCRS))
    });
    let client = Client::new(&running);
    let blob = encrypt(&client, &running, b"x");
    let message =
        decrypt_raw(&client, &blob, &debug.document()).expect_error("AccessDeniedException");
    assert!(
        message.contains("ImageSha384") && message.contains(&"0".repeat(96)),
        "{message}"
    );
}

#[test]
fn tampered_untrusted_and_keyless_documents_are_refused_with_the_verifiers_error() {
    let enclave = Enclave::new(PCRS);
    let running = start("refused", |c| {
        c.with_log(false)
            .with_trust(enclave.trust())
            .with_policy(enclave_policy(PCRS))
    });
    let client = Client::new(&running);
    let blob = encrypt(&client, &running, b"x");
    let options = |root: RootOfTrust| {
        VerifyOptions::new(UnixMillis::now())
            .with_root(root)
            .with_policy(attestation::Policy::new().allow_debug_mode())
    };

    // A flipped byte in the COSE signature (the document's last bytes).
    let mut tampered = enclave.document();
    *tampered.last_mut().unwrap() ^= 0x01;
    let verifier = attestation::verify(
        &tampered,
        &options(RootOfTrust::custom(enclave.simulator.root_der().to_vec()).unwrap()),
        &AwsLc,
    )
    .unwrap_err()
    .to_string();
    let message = decrypt_raw(&client, &blob, &tampered).expect_error("ValidationException");
    assert!(
        message.starts_with("Recipient.AttestationDocument is not a valid attestation document"),
        "{message}"
    );
    assert!(
        message.contains(&verifier),
        "{message}\nverifier: {verifier}"
    );

    // Garbage.
    let message = decrypt_raw(&client, &blob, b"not cbor").expect_error("ValidationException");
    assert!(
        message.contains("Recipient.AttestationDocument"),
        "{message}"
    );

    // A document with no public key, and one whose key is not RSA-2048.
    let none = enclave.nsm.attestation(None, None, None).unwrap();
    let message = decrypt_raw(&client, &blob, &none).expect_error("ValidationException");
    assert!(message.contains("has no public_key"), "{message}");
    let ec = agreement::PrivateKey::generate(&agreement::ECDH_P384).unwrap();
    let ec_spki = ec.compute_public_key().unwrap().as_der().unwrap();
    let ec_doc = enclave
        .nsm
        .attestation(None, None, Some(ec_spki.as_ref()))
        .unwrap();
    let message = decrypt_raw(&client, &blob, &ec_doc).expect_error("ValidationException");
    assert!(message.contains("RSA-2048"), "{message}");

    // The wrong key encryption algorithm.
    let message = client
        .call(
            "Decrypt",
            &json!({"CiphertextBlob": b64(&blob),
                    "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_1",
                                  "AttestationDocument": b64(&enclave.document())}}),
        )
        .expect_error("ValidationException");
    assert!(message.contains("[RSAES_OAEP_SHA_256]"), "{message}");

    // An emulator trusting AWS refuses the simulator's documents: untrusted root.
    let aws = start("refused-aws", |c| {
        c.with_log(false)
            .with_trust(TrustMode::AwsNitro)
            .with_policy(enclave_policy(PCRS))
    });
    let aws_client = Client::new(&aws);
    let aws_blob = encrypt(&aws_client, &aws, b"x");
    let document = enclave.document();
    let verifier = attestation::verify(&document, &options(RootOfTrust::AwsNitro), &AwsLc)
        .unwrap_err()
        .to_string();
    let message =
        decrypt_raw(&aws_client, &aws_blob, &document).expect_error("ValidationException");
    assert!(
        message.contains(&verifier),
        "{message}\nverifier: {verifier}"
    );
    assert!(message.contains("trust mode aws"), "{message}");
}

/// A document in the exact shape QEMU's `nitro-enclave` machine emits: COSE_Sign1 with
/// protected header `{1: -1}`, 64 zero bytes for signature, certificate and the one cabundle
/// entry (QEMU `hw/virtio/virtio-nsm.c`).
fn qemu_document(pcrs: [[u8; 48]; 3], public_key: &[u8]) -> Vec<u8> {
    let mut payload = minicbor::Encoder::new(Vec::new());
    payload.map(9).unwrap();
    payload
        .str("module_id")
        .unwrap()
        .str("i-emulated-enc0000000000000001")
        .unwrap();
    payload.str("digest").unwrap().str("SHA384").unwrap();
    payload
        .str("timestamp")
        .unwrap()
        .u64(UnixMillis::now().0)
        .unwrap();
    payload.str("pcrs").unwrap().map(16).unwrap();
    for i in 0..16u64 {
        let value = pcrs.get(i as usize).copied().unwrap_or([0; 48]);
        payload.u64(i).unwrap().bytes(&value).unwrap();
    }
    payload.str("certificate").unwrap().bytes(&[0; 64]).unwrap();
    payload
        .str("cabundle")
        .unwrap()
        .array(1)
        .unwrap()
        .bytes(&[0; 64])
        .unwrap();
    payload
        .str("public_key")
        .unwrap()
        .bytes(public_key)
        .unwrap();
    payload.str("user_data").unwrap().null().unwrap();
    payload.str("nonce").unwrap().null().unwrap();
    let payload = payload.into_writer();
    let mut cose = minicbor::Encoder::new(Vec::new());
    cose.array(4).unwrap();
    cose.bytes(&[0xa1, 0x01, 0x20]).unwrap();
    cose.map(0).unwrap();
    cose.bytes(&payload).unwrap();
    cose.bytes(&[0; 64]).unwrap();
    cose.into_writer()
}

#[test]
fn unsigned_qemu_documents_pass_only_in_the_insecure_mode() {
    let key = AwsLcRsaKey::generate().unwrap();
    let document = qemu_document(PCRS, key.public_key_spki());

    let insecure = start("qemu", |c| {
        c.with_log(false)
            .with_trust(TrustMode::InsecureQemuUnsigned)
            .with_policy(enclave_policy(PCRS))
    });
    assert_eq!(insecure.trust().label(), "INSECURE-qemu-unsigned");
    let client = Client::new(&insecure);
    let blob = encrypt(&client, &insecure, b"emulated enclave");
    let body: Value = decrypt_raw(&client, &blob, &document).ok();
    let envelope = unb64(body["CiphertextForRecipient"].as_str().unwrap());
    assert_eq!(
        ccc_sdk::cms::decrypt(&envelope, &AwsLc, &key)
            .unwrap()
            .expose(),
        b"emulated enclave"
    );
    // The insecure mode still applies the PCR conditions.
    let wrong_pcrs = qemu_document([pcr(1), pcr(2), pcr(3)], key.public_key_spki());
    decrypt_raw(&client, &blob, &wrong_pcrs).expect_error("AccessDeniedException");
    // And it accepts nothing but QEMU's exact shape: a signed simulator document is refused.
    let signed = Enclave::new(PCRS).document();
    let message = decrypt_raw(&client, &blob, &signed).expect_error("ValidationException");
    assert!(message.contains("signed document"), "{message}");

    // A development-root or AWS emulator refuses the unsigned document.
    let enclave = Enclave::new(PCRS);
    for (name, trust) in [
        ("qemu-devroot", enclave.trust()),
        ("qemu-aws", TrustMode::AwsNitro),
    ] {
        let running = start(name, |c| {
            c.with_log(false)
                .with_trust(trust)
                .with_policy(enclave_policy(PCRS))
        });
        let client = Client::new(&running);
        let blob = encrypt(&client, &running, b"x");
        let message = decrypt_raw(&client, &blob, &document).expect_error("ValidationException");
        let verifier = attestation::AttestationError::UnsignedDocument.to_string();
        assert!(message.contains(&verifier), "{name}: {message}");
    }
}

/// `TrustMode::AnyOf`: documents of either root are accepted, a third root's are refused as
/// untrusted, and an expired document under a trusted root is refused as expired (not as
/// untrusted) — by the emulator and by `TrustMode::verify`, which `explain` calls.
#[test]
fn any_of_trusts_each_member_and_names_the_real_failure() {
    let first = Enclave::new(PCRS);
    let second = Enclave::new(PCRS);
    let stranger = Enclave::new(PCRS);
    let trust = TrustMode::AnyOf(vec![first.trust(), second.trust()]);
    assert_eq!(trust.label(), "development-root+development-root");
    let running = start("any-of", |c| {
        c.with_log(false)
            .with_trust(trust.clone())
            .with_policy(enclave_policy(PCRS))
    });
    let client = Client::new(&running);
    let blob = encrypt(&client, &running, b"either root");
    for enclave in [&first, &second] {
        let document = enclave.document();
        decrypt_raw(&client, &blob, &document).ok();
        trust.verify(&document, UnixMillis::now()).unwrap();
    }
    let foreign = stranger.document();
    let message = decrypt_raw(&client, &blob, &foreign).expect_error("ValidationException");
    assert!(
        message.contains("trust mode development-root+development-root"),
        "{message}"
    );
    let err = trust.verify(&foreign, UnixMillis::now()).unwrap_err();
    assert!(
        matches!(
            err,
            ccc_sdk::attestation::AttestationError::UntrustedRoot { .. }
        ),
        "{err}"
    );
    assert!(message.contains(&err.to_string()), "{message} / {err}");
    // Under the second root, a year later: the chain has expired.
    let later = UnixMillis(UnixMillis::now().0 + 365 * 86_400_000);
    let err = trust.verify(&second.document(), later).unwrap_err();
    assert!(
        matches!(err, ccc_sdk::attestation::AttestationError::Certificate(_)),
        "{err}"
    );
    assert!(TrustMode::AnyOf(Vec::new()).roots().is_err());
}
