//! The emulator's KMS operations over real TLS on loopback, driven through the SDK's KMS codec
//! and SigV4 signer: symmetric round trips with and without encryption context, data keys,
//! random bytes, data key pairs, ECDH, key management, persistence across restarts, many
//! concurrent clients, and the transport (HTTPS trust, explicit plain HTTP, stop).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::AsDer;
use ccc_emulator::{Config, Emulator, Transport};
use ccc_sdk::kms::{
    DataKeyPairSpec, DataKeySpec, DecryptRequest, DeriveSharedSecretRequest, EncryptRequest,
    GenerateDataKeyPairRequest, GenerateDataKeyRequest, GenerateRandomRequest, GetPublicKeyRequest,
    KeyAgreementAlgorithm, KeySpec, KeyUsage, KmsError, MessageType, SignRequest, SigningAlgorithm,
};
use ccc_sdk::secret::SecretBytes;
use common::{Client, b64, start, unb64};
use serde_json::json;
use std::collections::BTreeMap;

fn context() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("purpose".to_owned(), "emulator test".to_owned()),
        ("city".to_owned(), "Zürich".to_owned()),
    ])
}

fn encrypt(
    client: &Client,
    key_id: &str,
    plaintext: &[u8],
    ctx: BTreeMap<String, String>,
) -> Vec<u8> {
    let response = client
        .decode(&EncryptRequest {
            key_id: key_id.into(),
            plaintext: SecretBytes::copy_from(plaintext),
            encryption_context: ctx,
            ..EncryptRequest::default()
        })
        .unwrap();
    response.ciphertext_blob.unwrap()
}

fn decrypt(
    client: &Client,
    key_id: Option<&str>,
    blob: &[u8],
    ctx: BTreeMap<String, String>,
) -> Result<Vec<u8>, KmsError> {
    client
        .decode(&DecryptRequest {
            ciphertext_blob: blob.to_vec(),
            encryption_context: ctx,
            key_id: key_id.map(str::to_owned),
            ..DecryptRequest::default()
        })
        .map(|r| r.plaintext.unwrap().expose().to_vec())
}

fn service_code(error: &KmsError) -> &str {
    match error {
        KmsError::Service(e) => &e.code,
        other => panic!("not a service error: {other}"),
    }
}

#[test]
fn encrypt_and_decrypt_round_trip_with_and_without_context() {
    let running = start("roundtrip", |c| c.with_log(false));
    let client = Client::new(&running);
    let key = running.default_key_id();

    for ctx in [BTreeMap::new(), context()] {
        let blob = encrypt(&client, key, b"hello, enclave", ctx.clone());
        // Decrypt works with and without KeyId (the blob names its key).
        assert_eq!(
            decrypt(&client, None, &blob, ctx.clone()).unwrap(),
            b"hello, enclave"
        );
        assert_eq!(
            decrypt(&client, Some(running.default_key_arn()), &blob, ctx.clone()).unwrap(),
            b"hello, enclave"
        );
    }

    let blob = encrypt(&client, key, b"bound", context());
    // Another context, or none, does not open it.
    let mut other = context();
    other.insert("purpose".into(), "something else".into());
    for wrong in [BTreeMap::new(), other] {
        let err = decrypt(&client, None, &blob, wrong).unwrap_err();
        assert_eq!(service_code(&err), "InvalidCiphertextException", "{err}");
    }
    // A changed ciphertext does not open either.
    let mut tampered = blob.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let err = decrypt(&client, None, &tampered, context()).unwrap_err();
    assert_eq!(service_code(&err), "InvalidCiphertextException");

    // Naming another key is IncorrectKeyException, as in KMS.
    let created = client
        .call("CreateKey", &json!({"Description": "second"}))
        .ok();
    let second = created["KeyMetadata"]["KeyId"].as_str().unwrap();
    let err = decrypt(&client, Some(second), &blob, context()).unwrap_err();
    assert_eq!(service_code(&err), "IncorrectKeyException", "{err}");
    // An unknown key is NotFoundException with KMS's wording.
    let message = client
        .call(
            "Encrypt",
            &json!({"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "Plaintext": b64(b"x")}),
        )
        .expect_error("NotFoundException");
    assert_eq!(
        message,
        format!(
            "Key 'arn:aws:kms:us-east-1:{}:key/1234abcd-12ab-34cd-56ef-1234567890ab' does not exist",
            running.account_id()
        )
    );

    // Aliases resolve by name and by ARN.
    client
        .call(
            "CreateAlias",
            &json!({"AliasName": "alias/app", "TargetKeyId": key}),
        )
        .ok();
    let via_alias = encrypt(&client, "alias/app", b"aliased", BTreeMap::new());
    let alias_arn = format!("arn:aws:kms:us-east-1:{}:alias/app", running.account_id());
    assert_eq!(
        decrypt(&client, Some(&alias_arn), &via_alias, BTreeMap::new()).unwrap(),
        b"aliased"
    );
    let message = client
        .call(
            "Encrypt",
            &json!({"KeyId": "alias/none", "Plaintext": b64(b"x")}),
        )
        .expect_error("NotFoundException");
    assert!(message.ends_with(":alias/none is not found."), "{message}");

    // Validation uses KMS's wording.
    let message = client
        .call("Encrypt", &json!({"Plaintext": b64(b"x")}))
        .expect_error("ValidationException");
    assert_eq!(
        message,
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: \
         Member must not be null"
    );
    client
        .call(
            "Encrypt",
            &json!({"KeyId": key, "Plaintext": b64(&[0; 4097])}),
        )
        .expect_error("ValidationException");
    client
        .call(
            "Encrypt",
            &json!({"KeyId": key, "Plaintext": "not base64!"}),
        )
        .expect_error("SerializationException");
    client
        .call(
            "Encrypt",
            &json!({"KeyId": key, "Plaintext": b64(b"x"), "DryRun": true}),
        )
        .expect_error("DryRunOperationException");
    client
        .call("ScheduleKeyDeletion", &json!({"KeyId": key}))
        .expect_error("UnknownOperationException");
}

#[test]
fn data_keys_and_random_bytes() {
    let running = start("datakeys", |c| c.with_log(false));
    let client = Client::new(&running);
    let key = running.default_key_arn();

    for (spec, bytes, len) in [
        (Some(DataKeySpec::Aes256), None, 32),
        (Some(DataKeySpec::Aes128), None, 16),
        (None, Some(7), 7),
    ] {
        let response = client
            .decode(&GenerateDataKeyRequest {
                key_id: key.into(),
                key_spec: spec,
                number_of_bytes: bytes,
                encryption_context: context(),
                ..GenerateDataKeyRequest::default()
            })
            .unwrap();
        let plaintext = response.plaintext.unwrap();
        assert_eq!(plaintext.len(), len);
        assert_eq!(response.key_id.as_deref(), Some(key));
        assert!(response.ciphertext_for_recipient.is_none());
        // The wrapped copy decrypts to the same data key.
        let blob = response.ciphertext_blob.unwrap();
        assert_eq!(
            decrypt(&client, None, &blob, context()).unwrap(),
            plaintext.expose()
        );
    }
    let message = client
        .call("GenerateDataKey", &json!({"KeyId": key}))
        .expect_error("ValidationException");
    assert_eq!(
        message,
        "Please specify either number of bytes or key spec."
    );
    let message = client
        .call(
            "GenerateDataKey",
            &json!({"KeyId": key, "NumberOfBytes": 1025}),
        )
        .expect_error("ValidationException");
    assert!(message.contains("less than or equal to 1024"), "{message}");
    let without = client
        .call(
            "GenerateDataKeyWithoutPlaintext",
            &json!({"KeyId": key, "KeySpec": "AES_256"}),
        )
        .ok();
    assert!(without.get("Plaintext").is_none(), "{without}");
    let blob = unb64(without["CiphertextBlob"].as_str().unwrap());
    assert_eq!(
        decrypt(&client, None, &blob, BTreeMap::new())
            .unwrap()
            .len(),
        32
    );

    let mut seen = Vec::new();
    for n in [1u32, 32, 1024] {
        let random = client
            .decode(&GenerateRandomRequest {
                number_of_bytes: Some(n),
                ..GenerateRandomRequest::default()
            })
            .unwrap()
            .plaintext
            .unwrap();
        assert_eq!(random.len(), n as usize);
        seen.push(random.expose().to_vec());
    }
    assert_ne!(seen[1], vec![0u8; 32], "random bytes are not zeros");
    for bad in [0, 1025] {
        client
            .call("GenerateRandom", &json!({"NumberOfBytes": bad}))
            .expect_error("ValidationException");
    }
}

#[test]
fn data_key_pairs_match_their_public_keys() {
    let running = start("pairs", |c| c.with_log(false));
    let client = Client::new(&running);
    for spec in [
        DataKeyPairSpec::Rsa2048,
        DataKeyPairSpec::EccNistP256,
        DataKeyPairSpec::EccNistP384,
    ] {
        let response = client
            .decode(&GenerateDataKeyPairRequest {
                encryption_context: context(),
                key_id: running.default_key_id().into(),
                key_pair_spec: spec.clone(),
                grant_tokens: Vec::new(),
                recipient: None,
                dry_run: None,
            })
            .unwrap();
        assert_eq!(response.key_pair_spec.as_ref(), Some(&spec));
        let private = response.private_key_plaintext.unwrap();
        let public = response.public_key.unwrap();
        // The PKCS#8 private key's own public key is the PublicKey returned.
        let derived = match spec {
            DataKeyPairSpec::Rsa2048 => {
                let key =
                    aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(private.expose()).unwrap();
                assert_eq!(key.key_size_bits(), 2048);
                key.public_key().as_der().unwrap().as_ref().to_vec()
            }
            DataKeyPairSpec::EccNistP256 | DataKeyPairSpec::EccNistP384 => {
                let alg = if spec == DataKeyPairSpec::EccNistP256 {
                    &agreement::ECDH_P256
                } else {
                    &agreement::ECDH_P384
                };
                let key =
                    agreement::PrivateKey::from_private_key_der(alg, private.expose()).unwrap();
                key.compute_public_key()
                    .unwrap()
                    .as_der()
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }
            _ => unreachable!(),
        };
        assert_eq!(derived, public, "{spec}");
        // The wrapped private key decrypts (under the same context) to the same bytes.
        let blob = response.private_key_ciphertext_blob.unwrap();
        assert_eq!(
            decrypt(&client, None, &blob, context()).unwrap(),
            private.expose()
        );
    }
    client
        .call(
            "GenerateDataKeyPair",
            &json!({"KeyId": running.default_key_id(), "KeyPairSpec": "SM2"}),
        )
        .expect_error("UnsupportedOperationException");
}

#[test]
fn derive_shared_secret_agrees_with_a_local_ecdh() {
    let running = start("ecdh", |c| c.with_log(false));
    let client = Client::new(&running);
    let created = client
        .call(
            "CreateKey",
            &json!({"KeySpec": "ECC_NIST_P384", "KeyUsage": "KEY_AGREEMENT"}),
        )
        .ok();
    let metadata = &created["KeyMetadata"];
    assert_eq!(metadata["KeyUsage"], "KEY_AGREEMENT");
    assert_eq!(metadata["KeyAgreementAlgorithms"], json!(["ECDH"]));
    let key_id = metadata["KeyId"].as_str().unwrap().to_owned();
    let kms_public = unb64(
        client.call("GetPublicKey", &json!({"KeyId": key_id})).ok()["PublicKey"]
            .as_str()
            .unwrap(),
    );

    let ours = agreement::PrivateKey::generate(&agreement::ECDH_P384).unwrap();
    let our_spki = ours.compute_public_key().unwrap().as_der().unwrap();
    let response = client
        .decode(&DeriveSharedSecretRequest {
            key_id: key_id.clone(),
            key_agreement_algorithm: KeyAgreementAlgorithm::Ecdh,
            public_key: our_spki.as_ref().to_vec(),
            grant_tokens: Vec::new(),
            dry_run: None,
            recipient: None,
        })
        .unwrap();
    let expected = agreement::agree(
        &ours,
        agreement::UnparsedPublicKey::new(&agreement::ECDH_P384, &kms_public),
        (),
        |s| Ok(s.to_vec()),
    )
    .unwrap();
    assert_eq!(response.shared_secret.unwrap().expose(), expected);
    assert_eq!(
        response.key_agreement_algorithm,
        Some(KeyAgreementAlgorithm::Ecdh)
    );

    // A P-256 public key against a P-384 KMS key is refused; so is a symmetric key.
    let p256 = agreement::PrivateKey::generate(&agreement::ECDH_P256).unwrap();
    let p256_spki = p256.compute_public_key().unwrap().as_der().unwrap();
    client
        .call(
            "DeriveSharedSecret",
            &json!({"KeyId": key_id, "KeyAgreementAlgorithm": "ECDH",
                    "PublicKey": b64(p256_spki.as_ref())}),
        )
        .expect_error("ValidationException");
    client
        .call(
            "DeriveSharedSecret",
            &json!({"KeyId": running.default_key_id(), "KeyAgreementAlgorithm": "ECDH",
                    "PublicKey": b64(our_spki.as_ref())}),
        )
        .expect_error("InvalidKeyUsageException");
    client
        .call("Encrypt", &json!({"KeyId": key_id, "Plaintext": b64(b"x")}))
        .expect_error("InvalidKeyUsageException");
}

#[test]
fn p384_signing_keys_sign_digests_that_verify_and_the_key_policy_decides() {
    use aws_lc_rs::digest::{SHA384, digest};
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
    let state = common::scratch("sign").join("state.json");
    let running = Emulator::start(Config::new(&state).with_log(false)).unwrap();
    let client = Client::new(&running);
    let principal = running.credentials().principal_arn().to_owned();
    let created = client
        .call(
            "CreateKey",
            &json!({"KeySpec": "ECC_NIST_P384", "KeyUsage": "SIGN_VERIFY"}),
        )
        .ok();
    let metadata = &created["KeyMetadata"];
    assert_eq!(metadata["KeyUsage"], "SIGN_VERIFY");
    assert_eq!(metadata["SigningAlgorithms"], json!(["ECDSA_SHA_384"]));
    let key_arn = metadata["Arn"].as_str().unwrap().to_owned();

    let public = client
        .decode(&GetPublicKeyRequest {
            key_id: key_arn.clone(),
        })
        .unwrap();
    assert_eq!(public.key_id.as_deref(), Some(key_arn.as_str()));
    assert_eq!(public.key_spec, Some(KeySpec::EccNistP384));
    assert_eq!(public.key_usage, Some(KeyUsage::SignVerify));
    assert_eq!(
        public.signing_algorithms,
        Some(vec![SigningAlgorithm::EcdsaSha384])
    );
    let spki = public.public_key.unwrap();
    // The SPKI's last 97 bytes are the uncompressed point aws-lc-rs verifies with.
    let point = &spki[spki.len() - 97..];

    let message = b"the Sig_structure of a PCR0 payload";
    let sign = |message_type: Option<MessageType>, bytes: Vec<u8>| {
        client.decode(&SignRequest {
            key_id: key_arn.clone(),
            message: bytes,
            message_type,
            signing_algorithm: SigningAlgorithm::EcdsaSha384,
        })
    };
    let by_digest = sign(
        Some(MessageType::Digest),
        digest(&SHA384, message).as_ref().to_vec(),
    )
    .unwrap();
    assert_eq!(by_digest.key_id.as_deref(), Some(key_arn.as_str()));
    assert_eq!(
        by_digest.signing_algorithm,
        Some(SigningAlgorithm::EcdsaSha384)
    );
    let by_raw = sign(None, message.to_vec()).unwrap();
    let verifier = UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, point);
    verifier
        .verify(message, &by_digest.signature.unwrap())
        .unwrap();
    verifier
        .verify(message, &by_raw.signature.unwrap())
        .unwrap();
    assert!(
        verifier
            .verify(
                b"another message",
                &sign(None, message.to_vec()).unwrap().signature.unwrap()
            )
            .is_err()
    );

    // A digest of the wrong length, another algorithm, a symmetric key, and Encrypt with the
    // signing key are refused with KMS's codes.
    client
        .call(
            "Sign",
            &json!({"KeyId": key_arn, "Message": b64(&[0; 32]), "MessageType": "DIGEST",
                    "SigningAlgorithm": "ECDSA_SHA_384"}),
        )
        .expect_error("ValidationException");
    client
        .call(
            "Sign",
            &json!({"KeyId": key_arn, "Message": b64(message),
                    "SigningAlgorithm": "ECDSA_SHA_256"}),
        )
        .expect_error("InvalidKeyUsageException");
    let err = client
        .decode(&SignRequest {
            key_id: running.default_key_arn().into(),
            message: message.to_vec(),
            message_type: None,
            signing_algorithm: SigningAlgorithm::EcdsaSha384,
        })
        .unwrap_err();
    assert_eq!(service_code(&err), "InvalidKeyUsageException");
    client
        .call(
            "Encrypt",
            &json!({"KeyId": key_arn, "Plaintext": b64(b"x")}),
        )
        .expect_error("InvalidKeyUsageException");

    // A key policy that denies kms:Sign: Sign is denied, GetPublicKey still answers.
    let deny_sign = json!({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": principal}, "Action": "kms:Sign", "Resource": "*"}
    ]})
    .to_string();
    client
        .call(
            "PutKeyPolicy",
            &json!({"KeyId": key_arn, "Policy": deny_sign}),
        )
        .ok();
    let err = sign(None, message.to_vec()).unwrap_err();
    assert_eq!(service_code(&err), "AccessDeniedException");
    assert!(err.to_string().contains("kms:Sign"), "{err}");
    client
        .decode(&GetPublicKeyRequest {
            key_id: key_arn.clone(),
        })
        .unwrap();

    // The key survives a restart of the emulator on the same state.
    drop(client);
    running.stop();
    let again = Emulator::start(Config::new(&state).with_log(false)).unwrap();
    let client = Client::new(&again);
    let reread = client
        .decode(&GetPublicKeyRequest { key_id: key_arn })
        .unwrap();
    assert_eq!(reread.public_key.unwrap(), spki);
}

#[test]
fn key_management_and_policies() {
    let running = start("admin", |c| c.with_log(false));
    let client = Client::new(&running);
    let principal = running.credentials().principal_arn().to_owned();

    let described = client
        .call("DescribeKey", &json!({"KeyId": running.default_key_arn()}))
        .ok();
    let m = &described["KeyMetadata"];
    assert_eq!(m["Arn"], running.default_key_arn());
    assert_eq!(m["KeySpec"], "SYMMETRIC_DEFAULT");
    assert_eq!(m["KeyState"], "Enabled");
    assert_eq!(m["AWSAccountId"], running.account_id());

    let created = client.call("CreateKey", &json!({})).ok();
    let new_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let listed = client.call("ListKeys", &json!({})).ok();
    let ids: Vec<&str> = listed["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["KeyId"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&new_id.as_str()) && ids.contains(&running.default_key_id()));
    let first = client.call("ListKeys", &json!({"Limit": 1})).ok();
    assert_eq!(first["Truncated"], true);
    let rest = client
        .call(
            "ListKeys",
            &json!({"Limit": 1, "Marker": first["NextMarker"]}),
        )
        .ok();
    assert_eq!(rest["Truncated"], false);
    assert_eq!(rest["Keys"].as_array().unwrap().len(), 1);

    // A policy that would lock the caller out is refused unless bypassed.
    let read_only = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": principal},
        "Action": ["kms:Encrypt", "kms:GetKeyPolicy"], "Resource": "*"}]})
    .to_string();
    let message = client
        .call(
            "PutKeyPolicy",
            &json!({"KeyId": new_id, "Policy": read_only}),
        )
        .expect_error("MalformedPolicyDocumentException");
    assert!(
        message.starts_with("The new key policy will not allow you"),
        "{message}"
    );
    client
        .call(
            "PutKeyPolicy",
            &json!({"KeyId": new_id, "Policy": "{\"Statement\": []}"}),
        )
        .expect_error("MalformedPolicyDocumentException");
    client
        .call(
            "PutKeyPolicy",
            &json!({"KeyId": new_id, "Policy": read_only, "BypassPolicyLockoutSafetyCheck": true}),
        )
        .ok();
    let got = client.call("GetKeyPolicy", &json!({"KeyId": new_id})).ok();
    assert_eq!(got["Policy"], read_only.as_str());
    // Now Decrypt and DescribeKey are denied, with the reason.
    let blob = encrypt(&client, &new_id, b"x", BTreeMap::new());
    let err = decrypt(&client, None, &blob, BTreeMap::new()).unwrap_err();
    assert_eq!(service_code(&err), "AccessDeniedException");
    let message = client
        .call("DescribeKey", &json!({"KeyId": new_id}))
        .expect_error("AccessDeniedException");
    assert!(
        message.contains(&format!(
            "User: {principal} is not authorized to perform: kms:DescribeKey"
        )),
        "{message}"
    );

    // Disabled keys refuse cryptographic use.
    client
        .call("DisableKey", &json!({"KeyId": running.default_key_id()}))
        .ok();
    client
        .call(
            "Encrypt",
            &json!({"KeyId": running.default_key_id(), "Plaintext": b64(b"x")}),
        )
        .expect_error("DisabledException");
    client
        .call("EnableKey", &json!({"KeyId": running.default_key_id()}))
        .ok();

    // Aliases.
    client
        .call(
            "CreateAlias",
            &json!({"AliasName": "alias/one", "TargetKeyId": running.default_key_id()}),
        )
        .ok();
    client
        .call(
            "CreateAlias",
            &json!({"AliasName": "alias/one", "TargetKeyId": running.default_key_id()}),
        )
        .expect_error("AlreadyExistsException");
    client
        .call(
            "CreateAlias",
            &json!({"AliasName": "no-prefix", "TargetKeyId": running.default_key_id()}),
        )
        .expect_error("ValidationException");
    let aliases = client
        .call("ListAliases", &json!({"KeyId": running.default_key_id()}))
        .ok();
    assert_eq!(aliases["Aliases"][0]["AliasName"], "alias/one");
    assert_eq!(
        aliases["Aliases"][0]["TargetKeyId"],
        running.default_key_id()
    );
    client
        .call("DeleteAlias", &json!({"AliasName": "alias/one"}))
        .ok();
    client
        .call("DeleteAlias", &json!({"AliasName": "alias/one"}))
        .expect_error("NotFoundException");
    client
        .call(
            "CreateKey",
            &json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
        )
        .expect_error("UnsupportedOperationException");
}

#[test]
fn a_restart_on_the_same_state_loses_nothing() {
    let dir = common::scratch("persistence");
    let state = dir.join("state.json");
    let first = Emulator::start(Config::new(&state).with_log(false)).unwrap();
    let client = Client::new(&first);
    let blob = encrypt(&client, first.default_key_id(), b"survives", context());
    client
        .call(
            "CreateAlias",
            &json!({"AliasName": "alias/kept", "TargetKeyId": first.default_key_id()}),
        )
        .ok();
    // One emulator per state file.
    let busy = Emulator::start(Config::new(&state).with_log(false)).unwrap_err();
    assert!(
        busy.to_string()
            .contains("another KMS emulator is running on it"),
        "{busy}"
    );
    let (key, ca, akid, port) = (
        first.default_key_arn().to_owned(),
        first.ca_pem().to_owned(),
        first.credentials().access_key_id().to_owned(),
        first.addr().port(),
    );
    first.stop();
    // Stopped means closed.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the state file holds secrets");
    assert_eq!(
        std::fs::read_to_string(dir.join("state.json.ca.pem")).unwrap(),
        ca
    );

    let second = Emulator::start(Config::new(&state).with_log(false)).unwrap();
    assert_eq!(second.default_key_arn(), key);
    assert_eq!(second.ca_pem(), ca, "clients keep trusting the same CA");
    assert_eq!(second.credentials().access_key_id(), akid);
    let client = Client::new(&second);
    assert_eq!(
        decrypt(&client, Some("alias/kept"), &blob, context()).unwrap(),
        b"survives"
    );
}

#[test]
fn many_concurrent_clients_all_succeed() {
    const THREADS: usize = 16;
    const REQUESTS: usize = 8;
    let running = start("concurrency", |c| c.with_log(false));
    let client = Client::new(&running);
    let key = running.default_key_id().to_owned();
    let results: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (client, key) = (client.clone(), key.clone());
                scope.spawn(move || {
                    let mut ok = 0;
                    // Half the threads reuse one keep-alive connection, half connect per call.
                    let mut stream = (t % 2 == 0).then(|| client.connect());
                    for i in 0..REQUESTS {
                        let plaintext = format!("thread {t} request {i}");
                        let body = json!({"KeyId": key, "Plaintext": b64(plaintext.as_bytes())});
                        let encrypted = match &mut stream {
                            Some(s) => {
                                client.call_on(s, "Encrypt", body.to_string().as_bytes(), true)
                            }
                            None => client.call("Encrypt", &body),
                        }
                        .ok();
                        let decrypted = client
                            .call(
                                "Decrypt",
                                &json!({"CiphertextBlob": encrypted["CiphertextBlob"]}),
                            )
                            .ok();
                        if unb64(decrypted["Plaintext"].as_str().unwrap()) == plaintext.as_bytes() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results, vec![REQUESTS; THREADS]);
}

#[test]
fn https_by_default_and_plain_http_only_when_asked() {
    let running = start("transport", |c| c.with_log(false));
    assert!(running.is_https());
    assert!(running.endpoint().starts_with("https://127.0.0.1:"));
    // A client that does not trust the emulator's CA (here: trusts another CA) fails the
    // handshake.
    let other = start("transport-other", |c| c.with_log(false));
    let config = common::tls_config(other.ca_der());
    let name = rustls::pki_types::ServerName::try_from(running.host_name().to_owned()).unwrap();
    let mut tls = rustls::StreamOwned::new(
        rustls::ClientConnection::new(config, name).unwrap(),
        std::net::TcpStream::connect(running.addr()).unwrap(),
    );
    let err = std::io::Write::write_all(&mut tls, b"POST / HTTP/1.1\r\n\r\n")
        .and_then(|()| std::io::Write::flush(&mut tls))
        .and_then(|()| std::io::Read::read(&mut tls, &mut [0u8; 16]).map(|_| ()))
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // The certificate also names localhost.
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::StreamOwned::new(
        rustls::ClientConnection::new(common::tls_config(running.ca_der()), name).unwrap(),
        std::net::TcpStream::connect(running.addr()).unwrap(),
    );
    std::io::Write::write_all(&mut tls, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let response = common::read_response(&mut tls);
    assert_eq!(response.status, 400);
    assert!(response.header("x-amzn-RequestId").is_some());

    let plain = start("transport-http", |c| {
        c.with_log(false).with_transport(Transport::InsecureHttp)
    });
    assert!(plain.endpoint().starts_with("http://127.0.0.1:"));
    let client = Client::new(&plain);
    let random = client
        .call("GenerateRandom", &json!({"NumberOfBytes": 8}))
        .ok();
    assert_eq!(unb64(random["Plaintext"].as_str().unwrap()).len(), 8);
    // Missing authentication gets KMS's answer.
    let mut stream = std::net::TcpStream::connect(plain.addr()).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.GenerateRandom\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    let response = common::read_response(&mut stream);
    assert_eq!(
        response.expect_error("MissingAuthenticationTokenException"),
        "Missing Authentication Token"
    );
}
