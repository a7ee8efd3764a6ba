//! Fuzz target: the parent ↔ enclave credentials protocol, both sides: frame reading, the
//! parent's request decoder and the enclave's answer decoder (whose errors must never quote
//! the input, which may hold a secret).
#![no_main]

use ccc_sdk::credentials::protocol;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut stream = std::io::Cursor::new(data);
    while let Ok(Some(frame)) = protocol::read_frame(&mut stream) {
        assert!(!frame.is_empty() && frame.len() <= protocol::MAX_FRAME_LEN);
        let _ = protocol::decode_request(&frame);
        let _ = protocol::decode_answer(&frame, "fuzz");
    }
    let _ = protocol::decode_request(data);
    if let Err(error) = protocol::decode_answer(data, "fuzz") {
        let _ = error.to_string();
    }
});
