//! Fuzz target: the attestation document parser (COSE_Sign1 envelope and payload).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ccc_sdk::attestation::parse(data);
});
