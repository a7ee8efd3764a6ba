//! What the trust model's attack tests need from the emulator, over real TLS: a second account
//! (a parent's own, with its own key and an alias of the same name), aliases and bare key ids
//! resolving in the caller's account, `KeyId` on `Decrypt` (`IncorrectKeyException` for a
//! ciphertext of another key), and the release's key-policy template enforced the way KMS
//! documents it (explicit Deny, negated operators on absent keys).
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use ccc_emulator::{Credential, TrustMode};
use ccc_policy::template::{self, ImagePins, Principals};
use ccc_sdk::crypto::{AwsLc, AwsLcRsaKey, RsaDecryptionKey};
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use common::{Client, b64, start, unb64};
use serde_json::{Value, json};

/// The parent's own account, and credentials for it (an IAM user there).
const PARENT_ACCOUNT: &str = "444455556666";
const PARENT_ACCESS_KEY: &str = "AKIAPARENTOWNACCT001";

fn parent_credential() -> Credential {
    Credential::new(
        PARENT_ACCESS_KEY,
        "parent/own/secret/key/0123456789abcdefghij",
        None,
        format!("arn:aws:iam::{PARENT_ACCOUNT}:user/parent"),
    )
    .unwrap()
}

fn parent_client(client: &Client) -> Client {
    client.with(|send| send.credentials = parent_credential().sigv4().unwrap())
}

fn create_key(client: &Client) -> Value {
    client.call("CreateKey", &json!({})).ok()["KeyMetadata"].clone()
}

fn data_key_arn(client: &Client, key_id: &str) -> Result<String, (String, String)> {
    let response = client.call(
        "GenerateDataKey",
        &json!({"KeyId": key_id, "KeySpec": "AES_256"}),
    );
    if response.status == 200 {
        Ok(response.json()["KeyId"].as_str().unwrap().to_owned())
    } else {
        Err(response.error())
    }
}

/// The substituted-credentials attack's precondition, performed: the parent owns an account
/// with an alias of the same name as the enclave's. Whoever signs decides where the alias (or a
/// bare key id) points; only a key ARN names one key for every caller.
#[test]
fn aliases_and_bare_ids_resolve_in_the_callers_account() {
    let running = start("accounts", |c| {
        c.with_log(false).with_credential(parent_credential())
    });
    let client = Client::new(&running);
    let parent = parent_client(&client);

    client
        .call(
            "CreateAlias",
            &json!({"AliasName": "alias/ccc-enclave", "TargetKeyId": running.default_key_id()}),
        )
        .ok();
    let parents_key = create_key(&parent);
    assert_eq!(parents_key["AWSAccountId"], PARENT_ACCOUNT);
    let parents_arn = parents_key["Arn"].as_str().unwrap().to_owned();
    assert!(parents_arn.starts_with(&format!("arn:aws:kms:us-east-1:{PARENT_ACCOUNT}:key/")));
    parent
        .call(
            "CreateAlias",
            &json!({"AliasName": "alias/ccc-enclave", "TargetKeyId": parents_key["KeyId"]}),
        )
        .ok();

    // The same alias name: the enclave's key for the enclave's account, the parent's for the
    // parent's credentials.
    assert_eq!(
        data_key_arn(&client, "alias/ccc-enclave").unwrap(),
        running.default_key_arn()
    );
    assert_eq!(
        data_key_arn(&parent, "alias/ccc-enclave").unwrap(),
        parents_arn
    );
    // A bare key id too resolves in the caller's account only.
    let (code, message) = data_key_arn(&parent, running.default_key_id()).unwrap_err();
    assert_eq!(code, "NotFoundException");
    assert!(message.contains(PARENT_ACCOUNT), "{message}");
    // The key ARN names the enclave's key for everybody: the parent's credentials reach it, and
    // its key policy (KMS's default: the account's own principals) refuses them.
    let (code, message) = data_key_arn(&parent, running.default_key_arn()).unwrap_err();
    assert_eq!(code, "AccessDeniedException");
    assert!(message.contains(&format!("arn:aws:iam::{PARENT_ACCOUNT}:user/parent")));
    // An alias ARN names its account.
    let alias_arn = format!(
        "arn:aws:kms:us-east-1:{}:alias/ccc-enclave",
        running.account_id()
    );
    assert_eq!(
        data_key_arn(&parent, &alias_arn).unwrap_err().0,
        "AccessDeniedException"
    );
    // Listings are per account; an alias cannot name another account's key.
    let listed = parent.call("ListKeys", &json!({})).ok();
    assert_eq!(listed["Keys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["Keys"][0]["KeyArn"], parents_arn.as_str());
    let (code, _) = parent
        .call(
            "CreateAlias",
            &json!({"AliasName": "alias/stolen", "TargetKeyId": running.default_key_arn()}),
        )
        .error();
    assert_eq!(code, "AccessDeniedException");

    // The second account survives a restart with its keys and aliases.
    let state = running.state_path().to_owned();
    running.stop();
    let again =
        ccc_emulator::Emulator::start(ccc_emulator::Config::new(state).with_log(false)).unwrap();
    let parent = parent_client(&Client::new(&again));
    assert_eq!(
        data_key_arn(&parent, "alias/ccc-enclave").unwrap(),
        parents_arn
    );
}

/// `Decrypt` with `KeyId`: a ciphertext made under another key is refused with KMS's
/// `IncorrectKeyException`, also when that key is in another account and its policy would let
/// the caller decrypt. Without `KeyId` (what the enclave template sent before the trusted key),
/// the same request succeeds: KMS uses whatever key the ciphertext names.
#[test]
fn decrypt_naming_another_key_is_an_incorrect_key() {
    let running = start("incorrect-key", |c| {
        c.with_log(false).with_credential(parent_credential())
    });
    let client = Client::new(&running);
    let parent = parent_client(&client);
    let parents_key = create_key(&parent);
    let parents_arn = parents_key["Arn"].as_str().unwrap().to_owned();
    // The parent opens its key to everyone, so the enclave's principal could decrypt with it.
    parent
        .call(
            "PutKeyPolicy",
            &json!({"KeyId": parents_arn, "PolicyName": "default",
                    "Policy": json!({"Statement": [{"Effect": "Allow", "Principal": "*",
                                      "Action": "kms:*", "Resource": "*"}]}).to_string()}),
        )
        .ok();
    let encrypt = |client: &Client, key: &str| {
        unb64(
            client
                .call(
                    "Encrypt",
                    &json!({"KeyId": key, "Plaintext": b64(b"chosen")}),
                )
                .ok()["CiphertextBlob"]
                .as_str()
                .unwrap(),
        )
    };
    let parents_blob = encrypt(&parent, &parents_arn);
    let decrypt = |client: &Client, blob: &[u8], key: Option<&str>| {
        let mut body = json!({"CiphertextBlob": b64(blob)});
        if let Some(key) = key {
            body["KeyId"] = key.into();
        }
        client.call("Decrypt", &body)
    };
    // Without KeyId the enclave's principal gets the parent's chosen plaintext.
    let answer = decrypt(&client, &parents_blob, None).ok();
    assert_eq!(answer["KeyId"], parents_arn.as_str());
    // Naming the trusted key, it is an IncorrectKey: for the enclave's principal and for the
    // parent's.
    for who in [&client, &parent] {
        decrypt(who, &parents_blob, Some(running.default_key_arn()))
            .expect_error("IncorrectKeyException");
    }
    let own_blob = encrypt(&client, running.default_key_arn());
    let other = create_key(&client);
    decrypt(&client, &own_blob, other["Arn"].as_str()).expect_error("IncorrectKeyException");
    let answer = decrypt(&client, &own_blob, Some(running.default_key_arn())).ok();
    assert_eq!(answer["KeyId"], running.default_key_arn());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const PCRS: [[u8; 48]; 3] = [[0xb0; 48], [0xb1; 48], [0xb2; 48]];

/// The release's key-policy template, rendered by `ccc-policy` for the simulator's PCRs and
/// installed in the emulator, over TLS: the attestation-less requests the template exists to
/// stop are stopped by its explicit Deny statements, and the enclave still gets its secrets.
#[test]
fn the_release_template_is_enforced_end_to_end() {
    let mut config = SimulatorConfig::default();
    for (i, value) in PCRS.into_iter().enumerate() {
        config = config.with_pcr(i as u16, value);
    }
    let simulator = std::sync::Arc::new(Simulator::new(config).unwrap());
    let other_image = Simulator::new(
        SimulatorConfig::default()
            .with_pcr(0, PCRS[0])
            .with_pcr(1, PCRS[1])
            .with_pcr(2, [0xee; 48]),
    )
    .unwrap();
    let pins = ImagePins::new(&hex(&PCRS[0]), &hex(&PCRS[1]), &hex(&PCRS[2])).unwrap();
    let principals = Principals::new(
        "111122223333",
        "ccc-emulator-parent",
        "ccc-emulator-key-admin",
    )
    .unwrap();
    let policy = template::key_policy(&pins, &principals);
    let running = start("template", |c| {
        c.with_log(false)
            .with_trust(TrustMode::development_root_pem(simulator.root_pem()).unwrap())
            .with_policy(policy.clone())
    });
    // The emulator's credentials are the parent's role (the enclave's principal).
    let parent = Client::new(&running);
    let key = running.default_key_arn();

    // A data key sealed by an operator (the parent's role may Encrypt, outside the sealing
    // purpose).
    let blob = unb64(
        parent
            .call(
                "Encrypt",
                &json!({"KeyId": key, "Plaintext": b64(&[9; 32]),
                        "EncryptionContext": {"ccc:purpose": "hmac"}}),
            )
            .ok()["CiphertextBlob"]
            .as_str()
            .unwrap(),
    );

    // The attack: the parent asks for the plaintext itself, without attestation. The explicit
    // Deny statements apply (a negated operator holds when the key is absent).
    for (operation, body) in [
        (
            "Decrypt",
            json!({"CiphertextBlob": b64(&blob), "EncryptionContext": {"ccc:purpose": "hmac"}}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": key, "KeySpec": "AES_256"}),
        ),
    ] {
        let message = parent
            .call(operation, &body)
            .expect_error("AccessDeniedException");
        assert!(message.contains("with an explicit deny"), "{message}");
        for sid in [
            "DenySecretsUnlessImageSha384Matches",
            "DenySecretsUnlessPCR1Matches",
            "DenySecretsUnlessPCR2Matches",
        ] {
            assert!(message.contains(sid), "{sid}: {message}");
        }
        assert!(
            message.contains("request has no kms:RecipientAttestation:PCR2"),
            "{message}"
        );
    }
    // Minting a sealed blob: Encrypt with the sealing purpose is denied to everyone.
    let message = parent
        .call(
            "Encrypt",
            &json!({"KeyId": key, "Plaintext": b64(&[1; 32]),
                    "EncryptionContext": {"ccc:purpose": "seal"}}),
        )
        .expect_error("AccessDeniedException");
    assert!(message.contains("DenyMintingSealedBlobs"), "{message}");
    // The parent's role cannot rewrite the policy.
    let message = parent
        .call(
            "PutKeyPolicy",
            &json!({"KeyId": key, "PolicyName": "default",
                    "Policy": "{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:*\"}}"}),
        )
        .expect_error("AccessDeniedException");
    assert!(
        message.contains("DenyPolicyAndGrantChangesToTheEnclaveRole"),
        "{message}"
    );

    // The measured enclave gets the secret; another image is denied, the PCR named.
    let rsa = AwsLcRsaKey::generate().unwrap();
    let decrypt_as = |parent: &Client, blob: &[u8], key: &str, nsm: &Nsm| {
        let document = nsm
            .attestation(None, None, Some(rsa.public_key_spki()))
            .unwrap();
        parent.call(
            "Decrypt",
            &json!({"CiphertextBlob": b64(blob), "KeyId": key,
                    "EncryptionContext": {"ccc:purpose": "hmac"},
                    "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                                  "AttestationDocument": b64(&document)}}),
        )
    };
    let enclave = Nsm::with_transport(Box::new(simulator.clone()));
    let answer = decrypt_as(&parent, &blob, key, &enclave).ok();
    let envelope = unb64(answer["CiphertextForRecipient"].as_str().unwrap());
    let secret = ccc_sdk::cms::decrypt(&envelope, &AwsLc, &rsa as &dyn RsaDecryptionKey).unwrap();
    assert_eq!(secret.expose(), &[9; 32]);
    // Another image (its own simulator, so an emulator trusting that simulator's root, with the
    // same template): the Deny on PCR2 applies and names it.
    let other = start("template-other", |c| {
        c.with_log(false)
            .with_trust(TrustMode::development_root_pem(other_image.root_pem()).unwrap())
            .with_policy(policy)
    });
    let other_client = Client::new(&other);
    let other_blob = unb64(
        other_client
            .call(
                "Encrypt",
                &json!({"KeyId": other.default_key_arn(), "Plaintext": b64(&[9; 32]),
                        "EncryptionContext": {"ccc:purpose": "hmac"}}),
            )
            .ok()["CiphertextBlob"]
            .as_str()
            .unwrap(),
    );
    let message = decrypt_as(
        &other_client,
        &other_blob,
        other.default_key_arn(),
        &Nsm::simulator(other_image),
    )
    .expect_error("AccessDeniedException");
    assert!(
        message.contains(&format!(
            "kms:RecipientAttestation:PCR2: request has {}",
            hex(&[0xee; 48])
        )),
        "{message}"
    );
    assert!(!message.contains("PCR1Matches"), "{message}");
}
