//! Fuzz target: the EIF reader and validator (header, section table, CRC, metadata, signature).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ccc_eif::fuzz_read(data));
