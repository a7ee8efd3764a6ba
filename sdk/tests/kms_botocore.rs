//! The KMS codec against botocore, AWS's Python SDK core, as a peer: for every operation the
//! same request serialized by botocore's JSON serializer (with its parameter validation against
//! the KMS service model) equals ours, with the same `X-Amz-Target` and `Content-Type`; every
//! response we encode is parsed by botocore's JSON parser to the expected values; error bodies
//! give the same code and message as botocore's error parser.
//!
//! Needs `python3` with botocore (`python3 -m pip install botocore`), or `CCC_PYTHON` pointing
//! at an interpreter that has it.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use ccc_sdk::kms::{
    self, DataKeyPairSpec, DataKeySpec, DecryptRequest, DecryptResponse, DeriveSharedSecretRequest,
    DeriveSharedSecretResponse, EncryptRequest, EncryptResponse, EncryptionAlgorithm,
    GenerateDataKeyPairRequest, GenerateDataKeyPairResponse, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateRandomRequest, GenerateRandomResponse, GetKeyPolicyRequest,
    GetKeyPolicyResponse, KeyAgreementAlgorithm, KeyOrigin, KmsRequest, Operation,
    PutKeyPolicyRequest, PutKeyPolicyResponse, Recipient,
};
use ccc_sdk::kms::{GetPublicKeyRequest, MessageType, SignRequest, SigningAlgorithm};
use ccc_sdk::secret::SecretBytes;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

const PEER: &str = r#"
import base64, json, sys
import botocore, botocore.session
from botocore import serialize, parsers

model = botocore.session.get_session().get_service_model('kms')

def blobs_in(shape, value):
    t = shape.type_name
    if t == 'blob':
        return base64.b64decode(value)
    if t == 'structure':
        return {k: blobs_in(shape.members[k], v) for k, v in value.items()}
    if t == 'list':
        return [blobs_in(shape.member, v) for v in value]
    if t == 'map':
        return {k: blobs_in(shape.value, v) for k, v in value.items()}
    return value

def out(o):
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode()
    if isinstance(o, dict):
        return {k: out(v) for k, v in o.items() if k != 'ResponseMetadata'}
    if isinstance(o, list):
        return [out(v) for v in o]
    return o

inp = json.load(sys.stdin)
ser = serialize.create_serializer('json', include_validation=True)
parser = parsers.create_parser('json')
res = {'botocore': botocore.__version__, 'requests': [], 'responses': [], 'errors': []}
for r in inp['requests']:
    op = model.operation_model(r['op'])
    req = ser.serialize_to_request(blobs_in(op.input_shape, r['params']), op)
    body = req['body']
    res['requests'].append({
        'method': req['method'], 'url_path': req['url_path'],
        'headers': dict(req['headers']),
        'body': body.decode('utf-8') if isinstance(body, bytes) else body,
    })
for r in inp['responses']:
    op = model.operation_model(r['op'])
    parsed = parser.parse({'status_code': 200, 'headers': {}, 'body': r['body'].encode()},
                          op.output_shape)
    res['responses'].append(out(parsed))
for e in inp['errors']:
    parsed = parser.parse({'status_code': e['status'], 'headers': e['headers'],
                           'body': e['body'].encode()}, None)
    res['errors'].append(parsed['Error'])
json.dump(res, sys.stdout)
"#;

fn run_peer(input: &Value) -> Value {
    let python = std::env::var("CCC_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", PEER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); set CCC_PYTHON"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "botocore peer failed (needs `python3 -m pip install botocore`, or CCC_PYTHON):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn context() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("purpose".to_string(), "test".to_string()),
        ("city".to_string(), "Zürich ☃".to_string()),
    ])
}

fn recipient() -> Recipient {
    Recipient::new(b"COSE_Sign1 attestation document bytes \x00\xff".to_vec())
}

/// Encodes with our codec; returns (target, body as JSON).
fn ours<R: KmsRequest>(request: &R) -> (&'static str, Value) {
    let body = kms::encode_request(request).unwrap();
    (
        R::OPERATION.target(),
        serde_json::from_slice(body.expose()).unwrap(),
    )
}

#[test]
fn every_operation_serializes_like_botocore() {
    let b64 =
        |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let rec = json!({
        "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
        "AttestationDocument": b64(&recipient().attestation_document),
    });
    let ctx = json!({"purpose": "test", "city": "Zürich ☃"});
    let ciphertext: Vec<u8> = (0u8..=200).collect();
    let spki: Vec<u8> = (0u8..91).rev().collect();

    // (our encoding, the same request written independently as botocore parameters)
    let cases: Vec<((&str, Value), &str, Value)> = vec![
        (
            ours(&DecryptRequest {
                ciphertext_blob: ciphertext.clone(),
                encryption_context: context(),
                grant_tokens: vec!["grant-1".into(), "grant-2".into()],
                key_id: Some("arn:aws:kms:us-east-1:111122223333:key/1234abcd".into()),
                encryption_algorithm: Some(EncryptionAlgorithm::SymmetricDefault),
                recipient: Some(recipient()),
                dry_run: Some(false),
                dry_run_modifiers: vec!["IGNORE_CIPHERTEXT".into()],
            }),
            "Decrypt",
            json!({
                "CiphertextBlob": b64(&ciphertext), "EncryptionContext": ctx,
                "GrantTokens": ["grant-1", "grant-2"],
                "KeyId": "arn:aws:kms:us-east-1:111122223333:key/1234abcd",
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "Recipient": rec,
                "DryRun": false, "DryRunModifiers": ["IGNORE_CIPHERTEXT"],
            }),
        ),
        (
            ours(&DecryptRequest {
                ciphertext_blob: ciphertext.clone(),
                recipient: Some(recipient()),
                ..DecryptRequest::default()
            }),
            "Decrypt",
            json!({"CiphertextBlob": b64(&ciphertext), "Recipient": rec}),
        ),
        (
            ours(&EncryptRequest {
                key_id: "alias/app".into(),
                plaintext: SecretBytes::copy_from(b"top secret \x00\x01"),
                encryption_context: context(),
                grant_tokens: vec!["g".into()],
                encryption_algorithm: Some(EncryptionAlgorithm::RsaesOaepSha256),
                dry_run: Some(true),
            }),
            "Encrypt",
            json!({
                "KeyId": "alias/app", "Plaintext": b64(b"top secret \x00\x01"),
                "EncryptionContext": ctx, "GrantTokens": ["g"],
                "EncryptionAlgorithm": "RSAES_OAEP_SHA_256", "DryRun": true,
            }),
        ),
        (
            ours(&GenerateDataKeyRequest {
                key_id: "alias/app".into(),
                encryption_context: context(),
                number_of_bytes: Some(64),
                key_spec: Some(DataKeySpec::Aes256),
                grant_tokens: vec!["g".into()],
                recipient: Some(recipient()),
                dry_run: Some(false),
            }),
            "GenerateDataKey",
            json!({
                "KeyId": "alias/app", "EncryptionContext": ctx, "NumberOfBytes": 64,
                "KeySpec": "AES_256", "GrantTokens": ["g"], "Recipient": rec, "DryRun": false,
            }),
        ),
        (
            ours(&GenerateRandomRequest {
                number_of_bytes: Some(32),
                custom_key_store_id: Some("cks-1234567890abcdef0".into()),
                recipient: Some(recipient()),
            }),
            "GenerateRandom",
            json!({"NumberOfBytes": 32, "CustomKeyStoreId": "cks-1234567890abcdef0", "Recipient": rec}),
        ),
        (
            ours(&GenerateRandomRequest::default()),
            "GenerateRandom",
            json!({}),
        ),
        (
            ours(&GenerateDataKeyPairRequest {
                encryption_context: context(),
                key_id: "alias/app".into(),
                key_pair_spec: DataKeyPairSpec::EccNistP384,
                grant_tokens: vec!["g".into()],
                recipient: Some(recipient()),
                dry_run: Some(false),
            }),
            "GenerateDataKeyPair",
            json!({
                "EncryptionContext": ctx, "KeyId": "alias/app", "KeyPairSpec": "ECC_NIST_P384",
                "GrantTokens": ["g"], "Recipient": rec, "DryRun": false,
            }),
        ),
        (
            ours(&DeriveSharedSecretRequest {
                key_id: "alias/ecdh".into(),
                key_agreement_algorithm: KeyAgreementAlgorithm::Ecdh,
                public_key: spki.clone(),
                grant_tokens: vec!["g".into()],
                dry_run: Some(false),
                recipient: Some(recipient()),
            }),
            "DeriveSharedSecret",
            json!({
                "KeyId": "alias/ecdh", "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(&spki),
                "GrantTokens": ["g"], "DryRun": false, "Recipient": rec,
            }),
        ),
        (
            ours(&GetKeyPolicyRequest {
                key_id: "arn:aws:kms:us-east-1:111122223333:key/1234abcd".into(),
                policy_name: Some("default".into()),
            }),
            "GetKeyPolicy",
            json!({"KeyId": "arn:aws:kms:us-east-1:111122223333:key/1234abcd", "PolicyName": "default"}),
        ),
        (
            ours(&PutKeyPolicyRequest {
                key_id: "1234abcd".into(),
                policy: r#"{"Version": "2012-10-17", "Statement": []}"#.into(),
                policy_name: None,
                bypass_policy_lockout_safety_check: Some(false),
            }),
            "PutKeyPolicy",
            json!({"KeyId": "1234abcd", "Policy": r#"{"Version": "2012-10-17", "Statement": []}"#,
                   "BypassPolicyLockoutSafetyCheck": false}),
        ),
        (
            ours(&SignRequest {
                key_id: "arn:aws:kms:us-east-1:111122223333:key/1234abcd".into(),
                message: vec![7; 48],
                message_type: Some(MessageType::Digest),
                signing_algorithm: SigningAlgorithm::EcdsaSha384,
            }),
            "Sign",
            json!({"KeyId": "arn:aws:kms:us-east-1:111122223333:key/1234abcd",
                   "Message": b64(&[7; 48]), "MessageType": "DIGEST",
                   "SigningAlgorithm": "ECDSA_SHA_384"}),
        ),
        (
            ours(&GetPublicKeyRequest {
                key_id: "arn:aws:kms:us-east-1:111122223333:key/1234abcd".into(),
            }),
            "GetPublicKey",
            json!({"KeyId": "arn:aws:kms:us-east-1:111122223333:key/1234abcd"}),
        ),
    ];
    let covered: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.1).collect();
    assert_eq!(
        covered,
        Operation::TYPED.iter().map(|op| op.name()).collect(),
        "every typed operation is compared"
    );
    let input = json!({
        "requests": cases.iter().map(|(_, op, params)| json!({"op": op, "params": params})).collect::<Vec<_>>(),
        "responses": [],
        "errors": [],
    });
    let peer = run_peer(&input);
    eprintln!("compared with botocore {}", peer["botocore"]);
    let requests = peer["requests"].as_array().unwrap();
    assert_eq!(requests.len(), cases.len());
    for (((target, our_body), op, _), theirs) in cases.iter().zip(requests) {
        let their_body: Value = serde_json::from_str(theirs["body"].as_str().unwrap()).unwrap();
        assert_eq!(*our_body, their_body, "{op}: body");
        assert_eq!(theirs["method"], "POST");
        assert_eq!(theirs["url_path"], "/");
        let operation = Operation::from_target(target).unwrap();
        for (name, value) in kms::request_headers(operation) {
            assert_eq!(theirs["headers"][name], value, "{op}: header {name}");
        }
    }
}

/// Our encoding of a response, as a JSON string (what the KMS emulator will send).
fn encode<T: serde::Serialize>(response: &T) -> String {
    serde_json::to_string(response).unwrap()
}

#[test]
fn responses_we_encode_parse_in_botocore_and_round_trip() {
    let b64 =
        |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let blob = |n: u8| -> Vec<u8> { (0..n).map(|i| i.wrapping_mul(37)).collect() };
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd";
    let material = "a".repeat(64);

    let decrypt = DecryptResponse {
        key_id: Some(arn.into()),
        plaintext: Some(SecretBytes::new(blob(32))),
        encryption_algorithm: Some(EncryptionAlgorithm::SymmetricDefault),
        ciphertext_for_recipient: Some(blob(200)),
        key_material_id: Some(material.clone()),
    };
    let encrypt = EncryptResponse {
        ciphertext_blob: Some(blob(150)),
        key_id: Some(arn.into()),
        encryption_algorithm: Some(EncryptionAlgorithm::SymmetricDefault),
    };
    let data_key = GenerateDataKeyResponse {
        ciphertext_blob: Some(blob(150)),
        plaintext: None,
        key_id: Some(arn.into()),
        ciphertext_for_recipient: Some(blob(250)),
        key_material_id: Some(material.clone()),
    };
    let random = GenerateRandomResponse {
        plaintext: Some(SecretBytes::new(blob(16))),
        ciphertext_for_recipient: None,
    };
    let pair = GenerateDataKeyPairResponse {
        private_key_ciphertext_blob: Some(blob(180)),
        private_key_plaintext: None,
        public_key: Some(blob(120)),
        key_id: Some(arn.into()),
        key_pair_spec: Some(DataKeyPairSpec::Rsa2048),
        ciphertext_for_recipient: Some(blob(250)),
        key_material_id: Some(material.clone()),
    };
    let shared = DeriveSharedSecretResponse {
        key_id: Some(arn.into()),
        shared_secret: Some(SecretBytes::new(blob(48))),
        ciphertext_for_recipient: None,
        key_agreement_algorithm: Some(KeyAgreementAlgorithm::Ecdh),
        key_origin: Some(KeyOrigin::AwsKms),
    };
    let policy = GetKeyPolicyResponse {
        policy: Some("{\"Statement\": []}".into()),
        policy_name: Some("default".into()),
    };
    let cases: Vec<(&str, String, Value)> = vec![
        (
            "Decrypt",
            encode(&decrypt),
            json!({"KeyId": arn, "Plaintext": b64(&blob(32)), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                   "CiphertextForRecipient": b64(&blob(200)), "KeyMaterialId": material}),
        ),
        (
            "Encrypt",
            encode(&encrypt),
            json!({"CiphertextBlob": b64(&blob(150)), "KeyId": arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        ),
        (
            "GenerateDataKey",
            encode(&data_key),
            json!({"CiphertextBlob": b64(&blob(150)), "KeyId": arn,
                   "CiphertextForRecipient": b64(&blob(250)), "KeyMaterialId": material}),
        ),
        (
            "GenerateRandom",
            encode(&random),
            json!({"Plaintext": b64(&blob(16))}),
        ),
        (
            "GenerateDataKeyPair",
            encode(&pair),
            json!({"PrivateKeyCiphertextBlob": b64(&blob(180)), "PublicKey": b64(&blob(120)), "KeyId": arn,
                   "KeyPairSpec": "RSA_2048", "CiphertextForRecipient": b64(&blob(250)), "KeyMaterialId": material}),
        ),
        (
            "DeriveSharedSecret",
            encode(&shared),
            json!({"KeyId": arn, "SharedSecret": b64(&blob(48)), "KeyAgreementAlgorithm": "ECDH", "KeyOrigin": "AWS_KMS"}),
        ),
        (
            "GetKeyPolicy",
            encode(&policy),
            json!({"Policy": "{\"Statement\": []}", "PolicyName": "default"}),
        ),
        // KMS's PutKeyPolicy answer is an empty body; botocore reads it as no members.
        ("PutKeyPolicy", String::new(), json!({})),
    ];
    let input = json!({
        "requests": [],
        "responses": cases.iter().map(|(op, body, _)| json!({"op": op, "body": body})).collect::<Vec<_>>(),
        "errors": [],
    });
    let peer = run_peer(&input);
    for ((op, _, expected), parsed) in cases.iter().zip(peer["responses"].as_array().unwrap()) {
        assert_eq!(parsed, expected, "{op}");
    }
    // And our decoder reads back exactly what we encoded.
    let back: DecryptResponse = serde_json::from_str(&encode(&decrypt)).unwrap();
    assert_eq!(back, decrypt);
    let back: GenerateDataKeyPairResponse = serde_json::from_str(&encode(&pair)).unwrap();
    assert_eq!(back, pair);
    let back: DeriveSharedSecretResponse = serde_json::from_str(&encode(&shared)).unwrap();
    assert_eq!(back, shared);
    let back: GetKeyPolicyResponse = serde_json::from_str(&encode(&policy)).unwrap();
    assert_eq!(back, policy);
    assert_eq!(encode(&PutKeyPolicyResponse {}), "{}");
}

#[test]
fn error_code_and_message_agree_with_botocore() {
    // Bodies without X-Amzn-ErrorType: botocore reads `__type` only (our header rule, from
    // smithy-rs, is tested in the unit tests).
    let bodies = [
        r#"{"__type":"AccessDeniedException","Message":"User: arn:aws:sts::111122223333:assumed-role/r/i-0 is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/k with an explicit deny in a resource-based policy"}"#,
        r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid"}"#,
        r#"{"__type":"InvalidSignatureException","message":"Signature expired: 20181105T215603Z is now earlier than 20181105T221104Z (20181105T221604Z - 5 min.)"}"#,
        r#"{"__type":"com.amazonaws.kms#NotFoundException","message":"Alias arn:aws:kms:us-east-1:111122223333:alias/x is not found."}"#,
        r#"{"__type":"aws.protocoltests#ThrottlingException:http://internal.amazon.com/coral/","message":"Rate exceeded"}"#,
        r#"{"__type":"InvalidCiphertextException"}"#,
        r#"{"__type":"ValidationException","message":"1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"}"#,
    ];
    let input = json!({
        "requests": [],
        "responses": [],
        "errors": bodies.iter().map(|b| json!({"status": 400, "headers": {}, "body": b})).collect::<Vec<_>>(),
    });
    let peer = run_peer(&input);
    for (body, theirs) in bodies.iter().zip(peer["errors"].as_array().unwrap()) {
        let ours = kms::parse_error(Operation::Decrypt, 400, &[], body.as_bytes(), false);
        assert_eq!(ours.code, theirs["Code"].as_str().unwrap(), "{body}");
        assert_eq!(
            ours.message.as_deref().unwrap_or(""),
            theirs["Message"].as_str().unwrap(),
            "{body}"
        );
    }
}
