//! Fuzz target: the `CiphertextForRecipient` BER reader and KMS-profile checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = ccc_sdk::cms::parse(data) {
        // Whatever parses satisfies the profile's size invariants.
        assert!(!parsed.encrypted_content.is_empty());
        assert_eq!(parsed.encrypted_content.len() % 16, 0);
    }
});
