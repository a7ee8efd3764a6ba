//! SigV4 against published vectors: every header-mode case of the AWS SigV4 test suite
//! (aws-c-auth's `v4/`) and the project's KMS cases (`kms-extra/`), with intermediate strings
//! compared byte for byte. The verifier is checked on the same signed requests.
#![cfg(feature = "aws-lc")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use ccc_sdk::crypto::AwsLc;
use ccc_sdk::sigv4::{
    Credentials, Request, SessionTokenMode, Settings, SigV4, SigV4Error, SigningParams,
};
use ccc_sdk::time::UnixMillis;
use ccc_test_vectors as vectors;
use serde_json::Value;

/// Cases of `v4/` this signer does not run, with the reason. Presigned-URL (`query-*`) files
/// are out of scope for every case (KMS signs headers); no header-mode case is skipped.
const SKIPPED_CASES: &[(&str, &str)] = &[];

/// A request of the suite's `request.txt` format (see the suite README): request line, headers
/// `Name:value` (a line starting with whitespace continues the previous value: an obs-fold,
/// replaced by one SP as RFC 9112 §5.2 allows), empty line, body.
struct SuiteRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_request(text: &str) -> SuiteRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().expect("request line");
    let (method, rest) = request_line.split_once(' ').expect("method");
    let target = rest.strip_suffix(" HTTP/1.1").expect("HTTP/1.1");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("continuation without a header");
            last.1.push(' ');
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').expect("header colon");
            headers.push((name.into(), value.into()));
        }
    }
    SuiteRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn suite_time(context: &Value) -> UnixMillis {
    UnixMillis::parse(context["timestamp"].as_str().unwrap()).unwrap()
}

#[test]
fn aws_sigv4_test_suite_header_mode() {
    let dir = vectors::path("sigv4-test-suite/v4");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 38, "the suite copy has 38 cases");

    let mut passed = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        if let Some((_, reason)) = SKIPPED_CASES.iter().find(|(c, _)| c == case) {
            eprintln!("skipped {case}: {reason}");
            continue;
        }
        let file = |name: &str| vectors::read_text(format!("sigv4-test-suite/v4/{case}/{name}"));
        let context: Value = serde_json::from_str(&file("context.json")).unwrap();
        let request = parse_request(&file("request.txt"));
        let creds = &context["credentials"];
        let credentials = Credentials::new(
            creds["access_key_id"].as_str().unwrap(),
            creds["secret_access_key"].as_str().unwrap(),
            creds["token"].as_str().map(String::from),
        )
        .unwrap();
        let settings = Settings {
            content_sha256_header: context["sign_body"].as_bool().unwrap(),
            normalize_path: context["normalize"].as_bool().unwrap(),
            session_token: if context["omit_session_token"].as_bool() == Some(true) {
                SessionTokenMode::AddedAfterSigning
            } else {
                SessionTokenMode::Signed
            },
        };
        let params = SigningParams {
            credentials: &credentials,
            region: context["region"].as_str().unwrap(),
            service: context["service"].as_str().unwrap(),
            time: suite_time(&context),
            settings,
        };
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let signable = Request {
            method: &request.method,
            path: &request.path,
            query: &request.query,
            headers: &headers,
            body: &request.body,
        };
        let signed = match SigV4::new().sign(&AwsLc, &params, &signable) {
            Ok(signed) => signed,
            Err(e) => {
                failures.push(format!("{case}: signing failed: {e}"));
                continue;
            }
        };
        let mut problems = Vec::new();
        if signed.canonical_request().as_str() != file("header-canonical-request.txt") {
            problems.push(format!(
                "canonical request:\n{}\n--- expected ---\n{}",
                signed.canonical_request().as_str(),
                file("header-canonical-request.txt")
            ));
        }
        if signed.string_to_sign() != file("header-string-to-sign.txt") {
            problems.push("string to sign differs".to_string());
        }
        if signed.signature() != file("header-signature.txt") {
            problems.push("signature differs".to_string());
        }
        // Every header we add is in the expected signed request with the same value, and the
        // expected signed request adds nothing else.
        let expected = parse_request(&file("header-signed-request.txt"));
        for (name, value) in signed.headers() {
            if header_value(&expected.headers, name) != [value] {
                problems.push(format!("added header {name}: {value}"));
            }
        }
        let added = expected.headers.len() - request.headers.len();
        if signed.headers().count() != added {
            problems.push(format!(
                "we add {} headers, the suite adds {added}",
                signed.headers().count()
            ));
        }
        // The verifier accepts the suite's own signed request (unless the token is unsigned,
        // which a KMS-style verifier must refuse).
        let expected_headers: Vec<(&str, &str)> = expected
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let verified = SigV4::new().verify(
            &AwsLc,
            &credentials,
            &Request {
                headers: &expected_headers,
                ..signable
            },
            Some(suite_time(&context)),
            settings.normalize_path,
        );
        let want = match settings.session_token {
            SessionTokenMode::Signed => Ok(()),
            _ => Err(SigV4Error::SessionTokenMismatch),
        };
        if verified != want {
            problems.push(format!("verify: {verified:?}, expected {want:?}"));
        }
        if problems.is_empty() {
            passed.push(case.clone());
        } else {
            failures.push(format!("{case}:\n  {}", problems.join("\n  ")));
        }
    }
    eprintln!(
        "sigv4 suite: {} passed, {} skipped: {:?}",
        passed.len(),
        SKIPPED_CASES.len(),
        SKIPPED_CASES
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(passed.len() + SKIPPED_CASES.len(), cases.len());
    assert_eq!(SKIPPED_CASES, &[] as &[(&str, &str)], "aim: skip none");
}

#[test]
fn kms_extra_cases_match_botocore_exactly() {
    use base64::Engine as _;
    let dir = vectors::path("sigv4-test-suite/kms-extra");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 5);
    for case in &cases {
        let file =
            |name: &str| vectors::read_text(format!("sigv4-test-suite/kms-extra/{case}/{name}"));
        let input: Value = serde_json::from_str(&file("request.json")).unwrap();
        let body = base64::engine::general_purpose::STANDARD
            .decode(input["body_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(body, input["body"].as_str().unwrap().as_bytes());
        let creds = &input["credentials"];
        let credentials = Credentials::new(
            creds["access_key_id"].as_str().unwrap(),
            creds["secret_access_key"].as_str().unwrap(),
            creds["session_token"].as_str().map(String::from),
        )
        .unwrap();
        let date = input["date"].as_str().unwrap();
        let time = UnixMillis::parse(&format!(
            "{}-{}-{}T{}:{}:{}Z",
            &date[0..4],
            &date[4..6],
            &date[6..8],
            &date[9..11],
            &date[11..13],
            &date[13..15]
        ))
        .unwrap();
        let headers: Vec<(&str, &str)> = input["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap(), h[1].as_str().unwrap()))
            .collect();
        let request = Request {
            method: input["method"].as_str().unwrap(),
            path: input["path"].as_str().unwrap(),
            query: input["query"].as_str().unwrap(),
            headers: &headers,
            body: &body,
        };
        let params = SigningParams {
            credentials: &credentials,
            region: input["region"].as_str().unwrap(),
            service: input["service"].as_str().unwrap(),
            time,
            settings: Settings {
                content_sha256_header: input["add_x_amz_content_sha256_header"].as_bool().unwrap(),
                ..Settings::default()
            },
        };
        let signed = SigV4::new().sign(&AwsLc, &params, &request).unwrap();
        assert_eq!(
            signed.canonical_request().as_str(),
            file("canonical-request.txt"),
            "{case}"
        );
        assert_eq!(
            signed.string_to_sign(),
            file("string-to-sign.txt"),
            "{case}"
        );
        assert_eq!(signed.authorization(), file("authorization.txt"), "{case}");
        let added: Vec<(&str, &str)> = signed.headers().collect();
        assert_eq!(added[0], ("X-Amz-Date", date), "{case}");
        let token = creds["session_token"].as_str();
        assert_eq!(
            added
                .iter()
                .find(|(n, _)| *n == "X-Amz-Security-Token")
                .map(|h| h.1),
            token,
            "{case}"
        );
        assert_eq!(
            added
                .iter()
                .find(|(n, _)| *n == "X-Amz-Content-SHA256")
                .map(|h| h.1),
            params
                .settings
                .content_sha256_header
                .then(|| input["body_sha256"].as_str().unwrap()),
            "{case}"
        );
        assert_eq!(
            added.last().unwrap(),
            &("Authorization", signed.authorization())
        );

        // The verifier accepts the signed request and rejects a one-byte body change.
        let mut full = headers.clone();
        full.extend(added.iter().copied());
        let mut verifier = SigV4::new();
        let signed_request = Request {
            headers: &full,
            ..request
        };
        assert_eq!(
            verifier.verify(&AwsLc, &credentials, &signed_request, Some(time), true),
            Ok(()),
            "{case}"
        );
        let mut tampered = body.clone();
        tampered[1] ^= 0x20;
        let result = verifier.verify(
            &AwsLc,
            &credentials,
            &Request {
                body: &tampered,
                ..signed_request
            },
            None,
            true,
        );
        assert!(
            matches!(
                result,
                Err(SigV4Error::SignatureMismatch | SigV4Error::PayloadHashMismatch)
            ),
            "{case}: {result:?}"
        );
    }
}
