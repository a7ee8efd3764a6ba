//! Fuzz target: the parent proxy's allowlist parser (vsock-proxy YAML) and its admission
//! check.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ccc_template_parent::fuzz_allowlist(data));
