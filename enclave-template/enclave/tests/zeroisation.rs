//! `seal` plaintexts cross the API without leaving copies in freed memory: the enclave's
//! request decoder and its answer encoder, and the client's request encoder. The test
//! binary's allocator ([`ccc_sys::residue::Residue`]) inspects every block as it is freed and
//! counts those that still hold the plaintext or its base64; each case requires none.
//!
//! The base64 is written with JSON escapes (`\/`), which serde_json unescapes through a
//! scratch buffer it frees unwiped; encoding into a growing `Vec` frees each smaller copy.

use ccc_sdk::secret::SecretBytes;
use ccc_sys::residue::{Report, Residue};
use enclave::protocol::{self, Request, Response};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[global_allocator]
static RESIDUE: Residue = Residue::new();

/// One case at a time: the allocator watches every thread.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const PLAINTEXT: &[u8] = b"seal-zeroisation-marker?????????";
/// `PLAINTEXT` in standard base64.
const BASE64: &[u8] = b"c2VhbC16ZXJvaXNhdGlvbi1tYXJrZXI/Pz8/Pz8/Pz8=";
/// The same base64 as a JSON writer may escape it.
const BASE64_ESCAPED: &str = r"c2VhbC16ZXJvaXNhdGlvbi1tYXJrZXI\/Pz8\/Pz8\/Pz8=";

fn watched(marker: &'static [u8], case: impl FnOnce()) -> Report {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    RESIDUE.watch(marker);
    case();
    RESIDUE.stop()
}

#[test]
fn the_enclave_decodes_a_seal_request_without_freeing_a_copy() {
    let payload = format!(
        r#"{{"version":1,"op":"seal","data":"{BASE64_ESCAPED}","context":{{"tenant":"t1"}}}}"#
    )
    .into_bytes();
    for marker in [PLAINTEXT, BASE64] {
        let report = watched(marker, || {
            let request = protocol::decode_request(&payload).unwrap();
            assert_eq!(
                request,
                Request::Seal {
                    data: SecretBytes::copy_from(PLAINTEXT),
                    context: BTreeMap::from([("tenant".to_owned(), "t1".to_owned())]),
                }
            );
            drop(request);
        });
        assert!(report.freed > 0, "the decoder allocates: {report:?}");
        assert_eq!(
            report.unwiped,
            0,
            "{}: {report:?}",
            String::from_utf8_lossy(marker)
        );
    }
}

#[test]
fn plaintexts_are_encoded_into_one_exact_buffer() {
    let request = Request::Seal {
        data: SecretBytes::copy_from(PLAINTEXT),
        context: BTreeMap::new(),
    };
    let response = Response::Unseal {
        data: SecretBytes::copy_from(PLAINTEXT),
    };
    let report = watched(BASE64, || {
        let payload = protocol::encode_request(&request);
        assert_eq!(payload.capacity(), payload.len());
        drop(payload);
        let payload = protocol::encode_response(&response);
        assert_eq!(payload.capacity(), payload.len());
        drop(payload);
    });
    assert!(report.freed > 0, "{report:?}");
    assert_eq!(report.unwiped, 0, "{report:?}");
}
