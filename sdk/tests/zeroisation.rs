//! Secrets are decoded and encoded without leaving copies in freed memory: the credentials
//! protocol (parent → enclave) and IMDS's credentials JSON. The test binary's allocator ([`ccc_sys::residue::Residue`]) inspects every block
//! as it is freed and counts those that still hold the secret; each case requires none.
//!
//! The secrets are written with JSON escapes (`\/`, `\u0041`), as a parent may write them:
//! serde_json unescapes such a string through a scratch buffer that it frees unwiped, which
//! is what these tests catch; and encoding into a growing `Vec` frees each smaller copy.

use ccc_sdk::credentials::{Credentials, parent, protocol};
use ccc_sys::residue::{Report, Residue};
use std::sync::Mutex;

#[global_allocator]
static RESIDUE: Residue = Residue::new();

/// One case at a time: the allocator watches every thread.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The secret access key's text once unescaped (the marker the allocator looks for).
const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzeroisationKEY";
/// The same key as JSON writes it with escapes.
const SECRET_ESCAPED: &str = r"wJalrXUtnFEMI\/K7MDENG\/bPxRfiCYzeroisation\u004bEY";
/// The session token once unescaped.
const TOKEN: &[u8] = b"IQoJb3JpZ2luX2Vj/token/zeroisation-marker";
const TOKEN_ESCAPED: &str = r"IQoJb3JpZ2luX2Vj\/token\/zeroisation-marker";

/// Runs `case` while watching for `marker`, with the inputs made beforehand and dropped
/// after, and returns what the allocator saw.
fn watched(marker: &'static [u8], case: impl FnOnce()) -> Report {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    RESIDUE.watch(marker);
    case();
    RESIDUE.stop()
}

/// An answer payload carrying the escaped secret and token; the test keeps it, so it is not
/// freed while watching.
fn answer_payload() -> Vec<u8> {
    format!(
        r#"{{"version":1,"type":"credentials","access_key_id":"AKIDEXAMPLE","secret_access_key":"{SECRET_ESCAPED}","session_token":"{TOKEN_ESCAPED}","expiration":"2030-01-01T00:00:00Z"}}"#
    )
    .into_bytes()
}

#[test]
fn the_enclave_decodes_credentials_without_freeing_a_copy() {
    let payload = answer_payload();
    for marker in [SECRET, TOKEN] {
        let report = watched(marker, || {
            let credentials = protocol::decode_answer(&payload, "test").unwrap();
            assert_eq!(credentials.secret_access_key().as_bytes(), SECRET);
            assert_eq!(credentials.session_token().map(str::as_bytes), Some(TOKEN));
            drop(credentials);
        });
        assert!(report.freed > 0, "the decoder allocates: {report:?}");
        assert_eq!(
            report.unwiped,
            0,
            "{}: {report:?}",
            String::from_utf8_lossy(marker)
        );
    }
}

#[test]
fn the_parent_reads_imds_credentials_without_freeing_a_copy() {
    let json = format!(
        r#"{{"Code":"Success","LastUpdated":"2030-01-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"AKIDEXAMPLE","SecretAccessKey":"{SECRET_ESCAPED}","Token":"{TOKEN_ESCAPED}","Expiration":"2030-01-01T06:00:00Z"}}"#
    )
    .into_bytes();
    for marker in [SECRET, TOKEN] {
        let report = watched(marker, || {
            let credentials = parent::from_imds_json(&json, "IMDS").unwrap();
            assert_eq!(credentials.secret_access_key().as_bytes(), SECRET);
            drop(credentials);
        });
        assert_eq!(
            report.unwiped,
            0,
            "{}: {report:?}",
            String::from_utf8_lossy(marker)
        );
    }
}

#[test]
fn the_parent_encodes_credentials_into_one_exact_buffer() {
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        String::from_utf8(SECRET.to_vec()).unwrap(),
        Some(String::from_utf8(TOKEN.to_vec()).unwrap()),
    )
    .unwrap();
    let report = watched(SECRET, || {
        let payload = protocol::encode_credentials(&credentials);
        assert_eq!(payload.capacity(), payload.len());
        // The payload is zeroizing: dropping it wipes it.
        drop(payload);
    });
    assert!(report.freed > 0, "{report:?}");
    assert_eq!(report.unwiped, 0, "{report:?}");
}
