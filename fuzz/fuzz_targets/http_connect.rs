//! Fuzz target: the parent's CONNECT parsers: the HTTP CONNECT request head the proxy reads
//! from the enclave, and vhost-device-vsock's `OK <port>` reply line.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ccc_template_parent::fuzz_connect(data));
