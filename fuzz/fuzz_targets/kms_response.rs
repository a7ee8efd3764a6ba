//! Fuzz target: KMS response decoding (success bodies of every operation) and error parsing
//! (JSON 1.1, `X-Amzn-ErrorType`, moto's XML), with the first input byte choosing the status.
#![no_main]

use ccc_sdk::kms::{self, Operation};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = if selector & 1 == 0 { 200 } else { 400 + u16::from(selector >> 1) };
    let headers = [("X-Amzn-ErrorType", "aws.kms#NotFoundException:http://x/")];
    let headers = if selector & 2 == 0 { &headers[..0] } else { &headers[..] };
    let _ = kms::decode_response(&kms::DecryptRequest::default(), status, headers, body);
    let _ = kms::decode_response(&kms::GenerateRandomRequest::default(), status, headers, body);
    let _ = kms::decode_response(&kms::GenerateDataKeyRequest::default(), status, headers, body);
    let error = kms::parse_error(Operation::Decrypt, status, headers, body, selector & 4 != 0);
    // Sanitized fields stay printable and bounded whatever the input.
    assert!(error.code.chars().count() <= kms::MAX_ERROR_CODE_CHARS);
    assert!(!error.message.as_deref().unwrap_or_default().chars().any(char::is_control));
    let _ = error.to_string();
});
