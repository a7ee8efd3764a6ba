//! Fuzz target: the template's sealed-blob parser (format 2), and the open of a blob that
//! parses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave::fuzz_sealed(data));
