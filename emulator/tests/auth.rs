//! SigV4 at the emulator, as KMS answers it: KMS's codes and words for a bad signature, an
//! unknown access key, a wrong or missing session token, and a clock more than 5 minutes off in
//! either direction (judged by the emulator's injectable clock, which also dates the `Date`
//! header and the attestation check); the SDK's error classifier reads them as intended.

mod common;

use ccc_emulator::{Clock, Credential, TrustMode};
use ccc_sdk::crypto::{AwsLcRsaKey, RsaDecryptionKey};
use ccc_sdk::kms::{self, ErrorKind, Operation, RetryAdvice};
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::sigv4::Credentials;
use ccc_sdk::time::UnixMillis;
use common::{Client, Response, b64, start};
use serde_json::json;
use std::sync::Arc;

/// 2026-06-01T00:00:00Z.
const NOW: UnixMillis = UnixMillis(1_780_272_000_000);
const SIX_MINUTES: u64 = 6 * 60 * 1000;

fn random(client: &Client) -> Response {
    client.call("GenerateRandom", &json!({"NumberOfBytes": 16}))
}

fn classify(response: &Response) -> kms::ServiceError {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    kms::parse_error(
        Operation::GenerateRandom,
        response.status,
        &headers,
        &response.body,
        false,
    )
}

#[test]
fn clock_skew_beyond_five_minutes_is_refused_in_kms_words() {
    let running = start("skew", |c| c.with_log(false).with_clock(Clock::manual(NOW)));
    let client = Client::new(&running).with(|s| s.time = Some(NOW));

    let ok = random(&client);
    ok.ok();
    assert_eq!(ok.header("Date"), Some("Mon, 01 Jun 2026 00:00:00 GMT"));
    assert_eq!(
        ok.header("Content-Type"),
        Some("application/x-amz-json-1.1")
    );
    let id = ok.header("x-amzn-RequestId").unwrap();
    assert_eq!(
        id.split('-').map(str::len).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{id}"
    );

    // Within 5 minutes either way is fine.
    for t in [NOW.0 - 299_000, NOW.0 + 299_000] {
        random(&client.with(|s| s.time = Some(UnixMillis(t)))).ok();
    }

    let late = random(&client.with(|s| s.time = Some(UnixMillis(NOW.0 - SIX_MINUTES))));
    assert_eq!(
        late.expect_error("InvalidSignatureException"),
        "Signature expired: 20260531T235400Z is now earlier than 20260531T235500Z \
         (20260601T000000Z - 5 min.)"
    );
    let parsed = classify(&late);
    assert_eq!(parsed.kind, ErrorKind::ClockSkew);
    assert_eq!(parsed.retry_advice(), RetryAdvice::CorrectClock);

    let early = random(&client.with(|s| s.time = Some(UnixMillis(NOW.0 + SIX_MINUTES))));
    assert_eq!(
        early.expect_error("InvalidSignatureException"),
        "Signature not yet current: 20260601T000600Z is still later than 20260601T000500Z \
         (20260601T000000Z + 5 min.)"
    );
    assert_eq!(classify(&early).kind, ErrorKind::ClockSkew);

    // Moving the emulator's clock moves the window (and the Date header).
    running.clock().set(UnixMillis(NOW.0 + SIX_MINUTES));
    let moved = random(&client);
    moved.expect_error("InvalidSignatureException");
    assert_eq!(moved.header("Date"), Some("Mon, 01 Jun 2026 00:06:00 GMT"));
    random(&client.with(|s| s.time = Some(UnixMillis(NOW.0 + SIX_MINUTES)))).ok();
}

#[test]
fn bad_signatures_unknown_keys_and_token_mismatches_get_kms_errors() {
    let long_term = Credential::new(
        "AKIAEMULATORLONGTERM",
        "long-term-secret",
        None,
        "arn:aws:iam::111122223333:user/developer",
    )
    .unwrap();
    let running = start("sigv4", |c| c.with_log(false).with_credential(long_term));
    let client = Client::new(&running);
    random(&client).ok();
    let credentials = running.credentials();
    let (akid, secret, token) = (
        credentials.access_key_id().to_owned(),
        credentials.secret_access_key().to_owned(),
        credentials.session_token().unwrap().to_owned(),
    );

    // Wrong secret.
    let wrong_secret = client.with(|s| {
        s.credentials =
            Credentials::new(akid.clone(), "not the secret", Some(token.clone())).unwrap();
    });
    let response = random(&wrong_secret);
    assert_eq!(
        response.expect_error("InvalidSignatureException"),
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details."
    );
    let parsed = classify(&response);
    assert_eq!(parsed.kind, ErrorKind::InvalidSignature);
    assert!(parsed.request_id.is_some());

    // Body changed after signing.
    let tampered = client.with(|s| s.tamper_body = Some(br#"{"NumberOfBytes":17}"#.to_vec()));
    random(&tampered).expect_error("InvalidSignatureException");

    // Unknown access key id.
    let unknown = client.with(|s| {
        s.credentials =
            Credentials::new("ASIAUNKNOWNKEY000000", secret.clone(), Some(token.clone())).unwrap();
    });
    let response = random(&unknown);
    assert_eq!(
        response.expect_error("UnrecognizedClientException"),
        "The security token included in the request is invalid"
    );
    assert_eq!(
        classify(&response).retry_advice(),
        RetryAdvice::RefreshCredentials
    );

    // The right key and secret with another (validly signed) session token, or none.
    let other_token = client.with(|s| {
        s.credentials =
            Credentials::new(akid.clone(), secret.clone(), Some("another-token".into())).unwrap();
    });
    assert_eq!(
        random(&other_token).expect_error("UnrecognizedClientException"),
        "The security token included in the request is invalid"
    );
    let no_token = client.with(|s| {
        s.credentials = Credentials::new(akid.clone(), secret.clone(), None).unwrap();
    });
    random(&no_token).expect_error("UnrecognizedClientException");
    // The token header swapped after signing.
    let swapped = client.with(|s| s.replace_token = Some("swapped".into()));
    random(&swapped).expect_error("UnrecognizedClientException");

    // Long-term credentials (no token) work, and their principal is what policies see.
    let developer = client.with(|s| {
        s.credentials = Credentials::new("AKIAEMULATORLONGTERM", "long-term-secret", None).unwrap();
    });
    random(&developer).ok();
    let with_token = client.with(|s| {
        s.credentials =
            Credentials::new("AKIAEMULATORLONGTERM", "long-term-secret", Some("t".into())).unwrap();
    });
    random(&with_token).expect_error("UnrecognizedClientException");

    // Scoped to another region or service.
    let message = random(&client.with(|s| s.region = "eu-west-1".into()))
        .expect_error("InvalidSignatureException");
    assert!(
        message.starts_with("Credential should be scoped to a valid region, not 'eu-west-1'."),
        "{message}"
    );
}

#[test]
fn attestation_is_judged_at_the_emulators_time() {
    let simulator =
        Arc::new(Simulator::new(SimulatorConfig::default().with_fixed_time(NOW)).unwrap());
    let nsm = Nsm::with_transport(Box::new(simulator.clone()));
    let key = AwsLcRsaKey::generate().unwrap();
    let document = nsm
        .attestation(None, None, Some(key.public_key_spki()))
        .unwrap();
    let running = start("attestation-time", |c| {
        c.with_log(false)
            .with_clock(Clock::manual(NOW))
            .with_trust(TrustMode::development_root_pem(simulator.root_pem()).unwrap())
    });
    let client = Client::new(&running);
    let body = json!({"NumberOfBytes": 16,
        "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                      "AttestationDocument": b64(&document)}});
    client
        .with(|s| s.time = Some(NOW))
        .call("GenerateRandom", &body)
        .ok();
    // A day later the document's 3-hour leaf certificate has expired.
    let later = UnixMillis(NOW.0 + 24 * 3600 * 1000);
    running.clock().set(later);
    let message = client
        .with(|s| s.time = Some(later))
        .call("GenerateRandom", &body)
        .expect_error("ValidationException");
    assert!(
        message.contains("Recipient.AttestationDocument"),
        "{message}"
    );
    assert!(message.contains(") is expired at "), "{message}");
}
