//! Property test: our SigV4 and AWS's `aws-sigv4` 1.6.4 produce the same `Authorization`
//! header (and the same added headers) for random KMS requests: bodies (JSON with UTF-8 and
//! arbitrary bytes), extra headers (repeated, mixed case, padded with spaces, unsigned ones),
//! session tokens, dates, regions and the `X-Amz-Content-SHA256` option.
#![cfg(feature = "aws-lc")]
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::sigv4::{Credentials, Request, Settings, SigV4, SigningParams};
use ccc_sdk::time::UnixMillis;
use proptest::prelude::*;
use std::time::{Duration, SystemTime};

const OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateRandom",
    "DeriveSharedSecret",
];

/// Header names the signer adds itself; a generated request never carries them.
const RESERVED: &[&str] = &[
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

#[derive(Debug, Clone)]
struct Case {
    access_key_id: String,
    secret: String,
    token: Option<String>,
    region: String,
    operation: &'static str,
    millis: u64,
    body: Vec<u8>,
    extra_headers: Vec<(String, String)>,
    content_sha256: bool,
}

fn region() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "us-east-1",
            "eu-central-1",
            "ap-southeast-2",
            "cn-north-1",
            "us-gov-west-1",
            "il-central-1",
        ])
        .prop_map(String::from),
        "[a-z]{2}-[a-z]{4,9}-[1-9]",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // A KMS-shaped JSON body with arbitrary Unicode in the encryption context.
        (any::<String>(), any::<String>(), "[A-Za-z0-9+/]{0,300}={0,2}").prop_map(|(k, v, b)| {
            serde_json::json!({
                "CiphertextBlob": b,
                "EncryptionContext": { k: v },
                "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": b},
            })
            .to_string()
            .into_bytes()
        }),
        any::<String>().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..2048),
    ]
}

fn extra_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        "[A-Za-z][A-Za-z0-9-]{0,20}",
        Just("User-Agent".to_string()),
        Just("Content-Length".to_string()),
        Just("X-Amzn-Trace-Id".to_string()),
        Just("x-amz-target".to_string()),
    ]
    .prop_filter("reserved for the signer", |n| {
        !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(n))
    });
    // Visible ASCII with spaces anywhere (leading, trailing, runs).
    let value = "[ -~]{0,40}";
    prop::collection::vec((name, value), 0..5)
}

fn case() -> impl Strategy<Value = Case> {
    (
        "[A-Z0-9]{16,20}",
        "[!-~]{1,60}",
        prop::option::of("[A-Za-z0-9+/]{1,400}={0,2}"),
        region(),
        prop::sample::select(OPERATIONS),
        // 2000-01-01 .. 2100-01-01
        946_684_800_000u64..4_102_444_800_000u64,
        body(),
        extra_headers(),
        any::<bool>(),
    )
        .prop_map(
            |(
                access_key_id,
                secret,
                token,
                region,
                operation,
                millis,
                body,
                extra_headers,
                content_sha256,
            )| Case {
                access_key_id,
                secret,
                token,
                region,
                operation,
                millis,
                body,
                extra_headers,
                content_sha256,
            },
        )
}

fn headers(case: &Case, host: &str, target: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Host".to_string(), host.to_string()),
        (
            "Content-Type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        ("X-Amz-Target".to_string(), target.to_string()),
    ];
    headers.extend(case.extra_headers.iter().cloned());
    headers
}

fn ours(case: &Case, signer: &mut SigV4) -> Vec<(String, String)> {
    let host = format!("kms.{}.amazonaws.com", case.region);
    let target = format!("TrentService.{}", case.operation);
    let owned = headers(case, &host, &target);
    let headers: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let credentials = Credentials::new(
        case.access_key_id.as_str(),
        case.secret.as_str(),
        case.token.clone(),
    )
    .unwrap();
    let params = SigningParams {
        credentials: &credentials,
        region: &case.region,
        service: "kms",
        time: UnixMillis(case.millis),
        settings: Settings {
            content_sha256_header: case.content_sha256,
            ..Settings::default()
        },
    };
    let request = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: &case.body,
    };
    let signed = signer.sign(&AwsLc, &params, &request).unwrap();
    let mut added: Vec<(String, String)> = signed
        .headers()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    added.sort();
    added
}

fn theirs(case: &Case) -> Vec<(String, String)> {
    let host = format!("kms.{}.amazonaws.com", case.region);
    let target = format!("TrentService.{}", case.operation);
    let owned = headers(case, &host, &target);
    let identity = aws_credential_types::Credentials::new(
        case.access_key_id.clone(),
        case.secret.clone(),
        case.token.clone(),
        None,
        "proptest",
    )
    .into();
    let mut settings = SigningSettings::default();
    if case.content_sha256 {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&case.region)
        .name("kms")
        .time(SystemTime::UNIX_EPOCH + Duration::from_millis(case.millis))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        "POST",
        format!("https://{host}/"),
        owned.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(&case.body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut added: Vec<(String, String)> = instructions
        .headers()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    added.sort();
    added
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn authorization_equals_aws_sigv4(case in case()) {
        let expected = theirs(&case);
        prop_assert!(expected.iter().any(|(n, _)| n == "authorization"));
        prop_assert_eq!(ours(&case, &mut SigV4::new()), expected);
    }

    /// The same with one long-lived signer, so the cached signing key is exercised across
    /// changing secrets, dates and regions.
    #[test]
    fn cached_signer_equals_aws_sigv4(cases in prop::collection::vec(case(), 1..6)) {
        let mut signer = SigV4::new();
        for case in &cases {
            prop_assert_eq!(ours(case, &mut signer), theirs(case));
        }
    }
}
