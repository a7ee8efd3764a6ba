//! Fuzz target: the HTTP/1.1 response reader the KMS client and the IMDS provider run on bytes
//! from the network (head, Content-Length, chunked and close-delimited bodies, limits), and
//! the IMF-fixdate `Date` parser. The first byte picks the method and the body limit.
#![no_main]

use ccc_sdk::http as ccc_http;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, raw)) = data.split_first() else {
        return;
    };
    let method = if selector & 1 == 0 {
        http::Method::POST
    } else {
        http::Method::HEAD
    };
    let limit = usize::from(selector >> 1) * 64;
    let mut stream = std::io::Cursor::new(raw);
    if let Ok(received) = ccc_http::read_response(&mut stream, &method, limit) {
        assert!(received.response.body().len() <= limit);
    }
    if let Ok(text) = core::str::from_utf8(raw) {
        let _ = ccc_http::parse_http_date(text);
    }
});
