//! Fuzz target: the enclave template's API request decoder (frames, requests, and the
//! parent's answer decoder).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave::fuzz_request(data));
