//! botocore, AWS's own Python SDK core, as a client of the emulator over HTTPS trusting only
//! the emulator's CA: its KMS client signs with its own SigV4 and serializes with the KMS
//! service model, so every call that succeeds here proves the emulator speaks real KMS JSON
//! 1.1 and SigV4 as AWS's client sends them; its error parser reads our error bodies.
//!
//! Uses `CCC_PYTHON` if set, else `python3`; if that has no botocore, the test makes a venv
//! under `target/tmp/botocore-venv` and installs botocore from PyPI into it.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use common::start;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const PEER: &str = r#"
import base64, json, sys
import botocore, botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

args = json.load(sys.stdin)
session = botocore.session.get_session()
def client(secret=None):
    return session.create_client(
        'kms', region_name=args['region'], endpoint_url=args['endpoint'],
        verify=args['ca_path'],
        aws_access_key_id=args['akid'],
        aws_secret_access_key=secret or args['secret'],
        aws_session_token=args['token'],
        config=Config(retries={'max_attempts': 1}))
kms = client()
out = {'botocore': botocore.__version__}
ctx = {'purpose': 'botocore peer', 'city': 'Zürich'}
enc = kms.encrypt(KeyId=args['key'], Plaintext=b'hello from botocore', EncryptionContext=ctx)
out['encrypt_key'] = enc['KeyId']
dec = kms.decrypt(CiphertextBlob=enc['CiphertextBlob'], EncryptionContext=ctx)
out['decrypt_plaintext'] = dec['Plaintext'].decode()
out['decrypt_key'] = dec['KeyId']
try:
    kms.decrypt(CiphertextBlob=enc['CiphertextBlob'])
    out['wrong_context'] = 'accepted'
except ClientError as e:
    out['wrong_context'] = e.response['Error']['Code']
gdk = kms.generate_data_key(KeyId=args['key'], KeySpec='AES_256')
out['data_key_len'] = len(gdk['Plaintext'])
again = kms.decrypt(CiphertextBlob=gdk['CiphertextBlob'])
out['data_key_round_trip'] = again['Plaintext'] == gdk['Plaintext']
rnd = kms.generate_random(NumberOfBytes=64)
out['random_len'] = len(rnd['Plaintext'])
out['request_id'] = rnd['ResponseMetadata']['RequestId']
desc = kms.describe_key(KeyId=args['key'])
out['describe_arn'] = desc['KeyMetadata']['Arn']
out['describe_created_type'] = type(desc['KeyMetadata']['CreationDate']).__name__
pair = kms.generate_data_key_pair(KeyId=args['key'], KeyPairSpec='ECC_NIST_P256')
out['pair_public_len'] = len(pair['PublicKey'])
# Operations with no output members (an empty body), then reads of what they changed.
kms.create_alias(AliasName='alias/botocore', TargetKeyId=args['key'])
out['aliases'] = [a['AliasName'] for a in kms.list_aliases(KeyId='alias/botocore')['Aliases']]
policy = kms.get_key_policy(KeyId='alias/botocore', PolicyName='default')['Policy']
kms.put_key_policy(KeyId=args['key'], PolicyName='default', Policy=policy)
out['policy_sid'] = json.loads(policy)['Statement'][0]['Sid']
try:
    kms.describe_key(KeyId='alias/missing')
    out['missing_alias'] = 'found'
except ClientError as e:
    out['missing_alias'] = [e.response['Error']['Code'], e.response['Error']['Message']]
try:
    client(secret='wrong').generate_random(NumberOfBytes=8)
    out['bad_signature'] = 'accepted'
except ClientError as e:
    out['bad_signature'] = [e.response['Error']['Code'], e.response['Error']['Message']]
json.dump(out, sys.stdout)
"#;

fn python_with_botocore() -> String {
    let has_botocore = |python: &str| {
        Command::new(python)
            .args(["-c", "import botocore"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let configured = std::env::var("CCC_PYTHON").unwrap_or_else(|_| "python3".into());
    if has_botocore(&configured) {
        return configured;
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("botocore-venv");
    let python = venv.join("bin/python");
    let python_text = python.to_string_lossy().into_owned();
    if !has_botocore(&python_text) {
        let made = Command::new(&configured)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {configured} ({e}); set CCC_PYTHON"));
        assert!(
            made.success(),
            "`{configured} -m venv` failed (apt-get install python3-venv)"
        );
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "botocore"])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install botocore failed");
    }
    python_text
}

#[test]
fn botocore_uses_the_emulator_over_https() {
    let running = start("botocore", |c| c.with_log(false));
    let credentials = running.credentials();
    let input = serde_json::json!({
        "endpoint": running.endpoint(),
        "ca_path": running.ca_path(),
        "region": running.region(),
        "akid": credentials.access_key_id(),
        "secret": credentials.secret_access_key(),
        "token": credentials.session_token(),
        "key": running.default_key_id(),
    });
    let python = python_with_botocore();
    let mut child = Command::new(&python)
        .args(["-c", PEER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        input.to_string().as_bytes(),
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "botocore peer failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    let arn = running.default_key_arn();
    assert_eq!(out["encrypt_key"], arn, "{out}");
    assert_eq!(out["decrypt_plaintext"], "hello from botocore");
    assert_eq!(out["decrypt_key"], arn);
    assert_eq!(out["wrong_context"], "InvalidCiphertextException");
    assert_eq!(out["data_key_len"], 32);
    assert_eq!(out["data_key_round_trip"], true);
    assert_eq!(out["random_len"], 64);
    assert_eq!(out["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(out["describe_arn"], arn);
    assert_eq!(out["describe_created_type"], "datetime");
    assert!(out["pair_public_len"].as_u64().unwrap() > 64);
    assert_eq!(out["aliases"], serde_json::json!(["alias/botocore"]));
    assert_eq!(out["policy_sid"], "Enable IAM User Permissions");
    assert_eq!(out["missing_alias"][0], "NotFoundException");
    assert_eq!(
        out["missing_alias"][1],
        format!(
            "Alias arn:aws:kms:{}:{}:alias/missing is not found.",
            running.region(),
            running.account_id()
        )
    );
    assert_eq!(out["bad_signature"][0], "InvalidSignatureException");
    assert!(
        out["bad_signature"][1]
            .as_str()
            .unwrap()
            .starts_with("The request signature we calculated does not match"),
        "{out}"
    );
}
