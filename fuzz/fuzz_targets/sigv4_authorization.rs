//! Fuzz target: the SigV4 `Authorization` header parser the KMS emulator runs on every request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data)
        && let Ok(parsed) = ccc_sdk::sigv4::Authorization::parse(text)
    {
        assert_eq!(parsed.signature.len(), 64);
        assert!(parsed.signed_headers.len() <= ccc_sdk::sigv4::MAX_SIGNED_HEADERS);
    }
});
