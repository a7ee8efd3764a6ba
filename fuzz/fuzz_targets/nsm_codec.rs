//! Fuzz target: the NSM CBOR codec, both directions (the simulator decodes requests, the client
//! decodes responses); whatever decodes must re-encode and decode to the same value.
#![no_main]

use ccc_sdk::nsm::codec::{Request, Response};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::decode(data) {
        if let Ok(bytes) = request.encode() {
            assert_eq!(Request::decode(&bytes).ok(), Some(request));
        }
    }
    if let Ok(response) = Response::decode(data) {
        if let Ok(bytes) = response.encode() {
            assert_eq!(Response::decode(&bytes).ok(), Some(response));
        }
    }
});
