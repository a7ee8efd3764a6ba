//! A small KMS stand-in for the client tests (the real emulator is `ccc-emulator`): it
//! verifies SigV4 with the server-side verifier and a clock-skew check, answers the six
//! operations, and with a `Recipient` parses the attestation document and returns the secret
//! as a CMS envelope to the document's `public_key` (or, when told to behave like moto, in
//! plaintext). Canned answers can be queued ahead of the real ones.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers shared by several test binaries: each uses part of them, and test code panics on failure"
)]

use super::{TestRequest, TestResponse, TestServer};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ccc_sdk::cms::build::{ContentLayout, build};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::sigv4::{Authorization, Credentials, SigV4, SigV4Error};
use ccc_sdk::time::UnixMillis;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub type Hook = Box<dyn Fn(&TestRequest) + Send + Sync>;

#[derive(Default)]
pub struct FakeState {
    /// Credentials the server accepts, by access key id.
    pub accepted: Mutex<Vec<Credentials>>,
    /// Session tokens answered with ExpiredTokenException.
    pub expired_tokens: Mutex<Vec<String>>,
    /// Answers returned before any real processing, in order.
    pub script: Mutex<VecDeque<TestResponse>>,
    /// Answer in plaintext even with a Recipient, as moto does.
    pub ignore_recipient: AtomicBool,
    /// Every attestation document received.
    pub documents: Mutex<Vec<Vec<u8>>>,
    /// Called on each request before it is answered.
    pub hook: Mutex<Option<Hook>>,
    /// The server's clock offset from the system clock, in ms (to fake a skewed client).
    pub skew_millis: Mutex<i64>,
    /// The `KeyId` answers carry instead of the request's key (`Some(None)`: no `KeyId` at
    /// all), to play a KMS (or a parent) answering for another key.
    pub answer_key_id: Mutex<Option<Option<String>>>,
}

/// The key ARN answers carry when the request named no key ARN.
pub const DEFAULT_KEY_ARN: &str =
    "arn:aws:kms:us-east-1:111122223333:key/0000fa4e-0000-4000-8000-000000000001";

pub struct FakeKms {
    pub server: TestServer,
    pub state: Arc<FakeState>,
}

impl FakeKms {
    pub fn start(accepted: Credentials) -> Self {
        Self::launch(accepted, None)
    }

    pub fn start_tls(accepted: Credentials, config: Arc<rustls::ServerConfig>) -> Self {
        Self::launch(accepted, Some(config))
    }

    fn launch(accepted: Credentials, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let state = Arc::new(FakeState::default());
        state.accepted.lock().unwrap().push(accepted);
        let handler_state = Arc::clone(&state);
        let handler = move |request: &TestRequest| handle(&handler_state, request);
        let server = match tls {
            Some(config) => TestServer::start_tls(config, handler),
            None => TestServer::start(handler),
        };
        Self { server, state }
    }

    pub fn queue(&self, response: TestResponse) {
        self.state.script.lock().unwrap().push_back(response);
    }
}

/// IMF-fixdate (`Thu, 01 Jan 1970 00:00:00 GMT`), written here independently of the SDK.
pub fn http_date(at: UnixMillis) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let d = at.to_datetime();
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(at.0 / 86_400_000 % 7) as usize],
        d.day,
        MONTHS[d.month as usize - 1],
        d.year,
        d.hour,
        d.minute,
        d.second
    )
}

fn server_now(state: &FakeState) -> UnixMillis {
    UnixMillis(
        UnixMillis::now()
            .0
            .saturating_add_signed(*state.skew_millis.lock().unwrap()),
    )
}

fn error(status: u16, code: &str, message: &str, state: &FakeState) -> TestResponse {
    TestResponse::json(
        status,
        json!({"__type": code, "message": message}).to_string(),
    )
    .header("x-amzn-RequestId", "fake-request-id")
    .header("Date", &http_date(server_now(state)))
}

fn handle(state: &FakeState, request: &TestRequest) -> TestResponse {
    if let Some(hook) = state.hook.lock().unwrap().as_ref() {
        hook(request);
    }
    if let Some(canned) = state.script.lock().unwrap().pop_front() {
        return canned;
    }
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let Some(authorization) = request.header("authorization") else {
        return error(
            400,
            "MissingAuthenticationTokenException",
            "no Authorization",
            state,
        );
    };
    let key_id = match Authorization::parse(authorization) {
        Ok(a) => a.access_key_id.to_owned(),
        Err(e) => return error(400, "IncompleteSignatureException", &e.to_string(), state),
    };
    let Some(credentials) = state
        .accepted
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.access_key_id() == key_id)
        .cloned()
    else {
        return error(
            400,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            state,
        );
    };
    if let Some(token) = request.header("x-amz-security-token")
        && state
            .expired_tokens
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == token)
    {
        return error(
            400,
            "ExpiredTokenException",
            "The security token included in the request is expired",
            state,
        );
    }
    let signed = ccc_sdk::sigv4::Request {
        method: &request.method,
        path: &request.path,
        query: "",
        headers: &headers,
        body: &request.body,
    };
    match SigV4::new().verify(&AwsLc, &credentials, &signed, Some(server_now(state)), true) {
        Ok(()) => {}
        Err(
            e @ (SigV4Error::SignatureExpired { .. } | SigV4Error::SignatureNotYetCurrent { .. }),
        ) => {
            return error(400, "InvalidSignatureException", &e.to_string(), state);
        }
        Err(e) => return error(400, "InvalidSignatureException", &e.to_string(), state),
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let target = request.header("x-amz-target").unwrap_or_default();
    let recipient_key = body["Recipient"]["AttestationDocument"]
        .as_str()
        .map(|doc| {
            let document = B64.decode(doc).unwrap();
            state.documents.lock().unwrap().push(document.clone());
            let parsed = ccc_sdk::attestation::parse(&document).unwrap();
            parsed.document.public_key.unwrap().to_vec()
        });
    // The secret member, either in plaintext or as CiphertextForRecipient.
    let secret = |name: &str, value: &[u8], out: &mut serde_json::Map<String, Value>| match (
        &recipient_key,
        state.ignore_recipient.load(Ordering::SeqCst),
    ) {
        (Some(spki), false) => {
            let envelope = build(spki, value, ContentLayout::Chunked).unwrap();
            out.insert("CiphertextForRecipient".into(), B64.encode(envelope).into());
        }
        _ => {
            out.insert(name.into(), B64.encode(value).into());
        }
    };
    let mut out = serde_json::Map::new();
    // Like KMS, answer with the ARN of the key used: here the key the request named.
    let requested = body["KeyId"]
        .as_str()
        .filter(|k| k.starts_with("arn:"))
        .unwrap_or(DEFAULT_KEY_ARN)
        .to_owned();
    let key_arn: Option<String> = state
        .answer_key_id
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(Some(requested));
    match target {
        "TrentService.Decrypt" => {
            let blob = B64
                .decode(body["CiphertextBlob"].as_str().unwrap())
                .unwrap();
            let plain = [b"plain:".as_slice(), &blob].concat();
            secret("Plaintext", &plain, &mut out);
            if let Some(arn) = &key_arn {
                out.insert("KeyId".into(), arn.clone().into());
            }
        }
        "TrentService.Encrypt" => {
            let plain = B64.decode(body["Plaintext"].as_str().unwrap()).unwrap();
            out.insert(
                "CiphertextBlob".into(),
                B64.encode([b"ct:".as_slice(), &plain].concat()).into(),
            );
            if let Some(arn) = &key_arn {
                out.insert("KeyId".into(), arn.clone().into());
            }
        }
        "TrentService.GenerateDataKey" => {
            let n = body["NumberOfBytes"].as_u64().unwrap_or(32) as usize;
            let key = vec![0x5a; n];
            secret("Plaintext", &key, &mut out);
            out.insert(
                "CiphertextBlob".into(),
                B64.encode([b"wrapped:".as_slice(), &key].concat()).into(),
            );
            if let Some(arn) = &key_arn {
                out.insert("KeyId".into(), arn.clone().into());
            }
        }
        "TrentService.GenerateRandom" => {
            let n = body["NumberOfBytes"].as_u64().unwrap() as usize;
            secret("Plaintext", &vec![0xab; n], &mut out);
        }
        "TrentService.GenerateDataKeyPair" => {
            secret("PrivateKeyPlaintext", b"pkcs8-private-key", &mut out);
            out.insert("PublicKey".into(), B64.encode(b"spki-public-key").into());
            out.insert(
                "PrivateKeyCiphertextBlob".into(),
                B64.encode(b"wrapped-private").into(),
            );
            out.insert("KeyPairSpec".into(), body["KeyPairSpec"].clone());
            if let Some(arn) = &key_arn {
                out.insert("KeyId".into(), arn.clone().into());
            }
        }
        "TrentService.DeriveSharedSecret" => {
            let peer = B64.decode(body["PublicKey"].as_str().unwrap()).unwrap();
            secret(
                "SharedSecret",
                &[b"shared-with:".as_slice(), &peer].concat(),
                &mut out,
            );
            out.insert("KeyAgreementAlgorithm".into(), "ECDH".into());
            if let Some(arn) = &key_arn {
                out.insert("KeyId".into(), arn.clone().into());
            }
        }
        other => return error(400, "UnknownOperationException", other, state),
    }
    TestResponse::json(200, Value::Object(out).to_string())
        .header("x-amzn-RequestId", "fake-request-id")
        .header("Date", &http_date(server_now(state)))
}
