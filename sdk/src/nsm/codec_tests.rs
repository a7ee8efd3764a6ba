//! Wire-compatibility and robustness tests of the NSM codec against AWS's
//! `aws-nitro-enclaves-nsm-api` 0.5.2 (serde_cbor), the Linux driver's hard-coded bytes and
//! QEMU's field order.
#![expect(clippy::panic, reason = "test code: a panic is the test failure")]

use super::codec::*;
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use aws_nitro_enclaves_nsm_api::api as aws;
use serde_bytes::ByteBuf;

/// SplitMix64: a small deterministic generator, so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Edge values (0, 23, 24, 255, 256, 65535) half the time, else uniform.
    fn u16(&mut self) -> u16 {
        const EDGES: [u16; 8] = [0, 1, 23, 24, 255, 256, 31, u16::MAX];
        if self.below(2) == 0 {
            EDGES[self.below(EDGES.len() as u64) as usize]
        } else {
            self.next() as u16
        }
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        // Lengths around the CBOR header boundaries matter most.
        const LENGTHS: [usize; 8] = [0, 1, 23, 24, 255, 256, 1000, 1024];
        let len = if self.below(2) == 0 {
            LENGTHS[self.below(LENGTHS.len() as u64) as usize].min(max)
        } else {
            self.below(max as u64 + 1) as usize
        };
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn optional(&mut self, max: usize) -> Option<Vec<u8>> {
        (self.below(3) != 0).then(|| self.bytes(max))
    }

    fn text(&mut self) -> String {
        let len = self.below(60) as usize;
        (0..len)
            .map(|_| match self.below(4) {
                0 => 'é',
                1 => '-',
                _ => char::from(b'a' + self.below(26) as u8),
            })
            .collect()
    }
}

const CASES: u64 = 300;

fn random_request(rng: &mut Rng, variant: u64) -> Request {
    match variant {
        0 => Request::DescribePcr { index: rng.u16() },
        1 => Request::ExtendPcr {
            index: rng.u16(),
            data: rng.bytes(2048),
        },
        2 => Request::LockPcr { index: rng.u16() },
        3 => Request::LockPcrs { range: rng.u16() },
        4 => Request::DescribeNsm,
        5 => Request::Attestation {
            user_data: rng.optional(USER_DATA_MAX),
            nonce: rng.optional(NONCE_MAX),
            public_key: rng.optional(PUBLIC_KEY_MAX),
        },
        _ => Request::GetRandom,
    }
}

fn random_response(rng: &mut Rng, variant: u64) -> Response {
    match variant {
        0 => Response::DescribePcr {
            lock: rng.below(2) == 0,
            data: rng.bytes(64),
        },
        1 => Response::ExtendPcr {
            data: rng.bytes(64),
        },
        2 => Response::LockPcr,
        3 => Response::LockPcrs,
        4 => Response::DescribeNsm(Description {
            version_major: rng.u16(),
            version_minor: rng.u16(),
            version_patch: rng.u16(),
            module_id: rng.text(),
            max_pcrs: rng.u16(),
            locked_pcrs: (0..rng.below(40)).map(|_| rng.u16()).collect(),
            digest: [Digest::Sha256, Digest::Sha384, Digest::Sha512][rng.below(3) as usize],
        }),
        5 => Response::Attestation {
            document: rng.bytes(RESPONSE_MAX - 64),
        },
        6 => Response::GetRandom {
            random: rng.bytes(256),
        },
        _ => Response::Error(ErrorCode::ALL[rng.below(ErrorCode::ALL.len() as u64) as usize]),
    }
}

fn buf(bytes: &Option<Vec<u8>>) -> Option<ByteBuf> {
    bytes.clone().map(ByteBuf::from)
}

fn to_aws_request(request: &Request) -> aws::Request {
    match request.clone() {
        Request::DescribePcr { index } => aws::Request::DescribePCR { index },
        Request::ExtendPcr { index, data } => aws::Request::ExtendPCR { index, data },
        Request::LockPcr { index } => aws::Request::LockPCR { index },
        Request::LockPcrs { range } => aws::Request::LockPCRs { range },
        Request::DescribeNsm => aws::Request::DescribeNSM,
        Request::Attestation {
            user_data,
            nonce,
            public_key,
        } => aws::Request::Attestation {
            user_data: buf(&user_data),
            nonce: buf(&nonce),
            public_key: buf(&public_key),
        },
        Request::GetRandom => aws::Request::GetRandom,
    }
}

fn from_aws_request(request: aws::Request) -> Request {
    let vec = |b: Option<ByteBuf>| b.map(ByteBuf::into_vec);
    match request {
        aws::Request::DescribePCR { index } => Request::DescribePcr { index },
        aws::Request::ExtendPCR { index, data } => Request::ExtendPcr { index, data },
        aws::Request::LockPCR { index } => Request::LockPcr { index },
        aws::Request::LockPCRs { range } => Request::LockPcrs { range },
        aws::Request::DescribeNSM => Request::DescribeNsm,
        aws::Request::Attestation {
            user_data,
            nonce,
            public_key,
        } => Request::Attestation {
            user_data: vec(user_data),
            nonce: vec(nonce),
            public_key: vec(public_key),
        },
        aws::Request::GetRandom => Request::GetRandom,
        other => panic!("request variant unknown to this test: {other:?}"),
    }
}

fn to_aws_digest(digest: Digest) -> aws::Digest {
    match digest {
        Digest::Sha256 => aws::Digest::SHA256,
        Digest::Sha384 => aws::Digest::SHA384,
        Digest::Sha512 => aws::Digest::SHA512,
    }
}

fn to_aws_code(code: ErrorCode) -> aws::ErrorCode {
    match code {
        ErrorCode::Success => aws::ErrorCode::Success,
        ErrorCode::InvalidArgument => aws::ErrorCode::InvalidArgument,
        ErrorCode::InvalidIndex => aws::ErrorCode::InvalidIndex,
        ErrorCode::InvalidResponse => aws::ErrorCode::InvalidResponse,
        ErrorCode::ReadOnlyIndex => aws::ErrorCode::ReadOnlyIndex,
        ErrorCode::InvalidOperation => aws::ErrorCode::InvalidOperation,
        ErrorCode::BufferTooSmall => aws::ErrorCode::BufferTooSmall,
        ErrorCode::InputTooLarge => aws::ErrorCode::InputTooLarge,
        ErrorCode::InternalError => aws::ErrorCode::InternalError,
    }
}

fn from_aws_code(code: aws::ErrorCode) -> ErrorCode {
    match code {
        aws::ErrorCode::Success => ErrorCode::Success,
        aws::ErrorCode::InvalidArgument => ErrorCode::InvalidArgument,
        aws::ErrorCode::InvalidIndex => ErrorCode::InvalidIndex,
        aws::ErrorCode::InvalidResponse => ErrorCode::InvalidResponse,
        aws::ErrorCode::ReadOnlyIndex => ErrorCode::ReadOnlyIndex,
        aws::ErrorCode::InvalidOperation => ErrorCode::InvalidOperation,
        aws::ErrorCode::BufferTooSmall => ErrorCode::BufferTooSmall,
        aws::ErrorCode::InputTooLarge => ErrorCode::InputTooLarge,
        aws::ErrorCode::InternalError => ErrorCode::InternalError,
    }
}

fn to_aws_response(response: &Response) -> aws::Response {
    match response.clone() {
        Response::DescribePcr { lock, data } => aws::Response::DescribePCR { lock, data },
        Response::ExtendPcr { data } => aws::Response::ExtendPCR { data },
        Response::LockPcr => aws::Response::LockPCR,
        Response::LockPcrs => aws::Response::LockPCRs,
        Response::DescribeNsm(d) => aws::Response::DescribeNSM {
            version_major: d.version_major,
            version_minor: d.version_minor,
            version_patch: d.version_patch,
            module_id: d.module_id,
            max_pcrs: d.max_pcrs,
            locked_pcrs: d.locked_pcrs,
            digest: to_aws_digest(d.digest),
        },
        Response::Attestation { document } => aws::Response::Attestation { document },
        Response::GetRandom { random } => aws::Response::GetRandom { random },
        Response::Error(code) => aws::Response::Error(to_aws_code(code)),
    }
}

fn from_aws_response(response: aws::Response) -> Response {
    match response {
        aws::Response::DescribePCR { lock, data } => Response::DescribePcr { lock, data },
        aws::Response::ExtendPCR { data } => Response::ExtendPcr { data },
        aws::Response::LockPCR => Response::LockPcr,
        aws::Response::LockPCRs => Response::LockPcrs,
        aws::Response::DescribeNSM {
            version_major,
            version_minor,
            version_patch,
            module_id,
            max_pcrs,
            locked_pcrs,
            digest,
        } => Response::DescribeNsm(Description {
            version_major,
            version_minor,
            version_patch,
            module_id,
            max_pcrs,
            locked_pcrs,
            digest: match digest {
                aws::Digest::SHA256 => Digest::Sha256,
                aws::Digest::SHA384 => Digest::Sha384,
                aws::Digest::SHA512 => Digest::Sha512,
            },
        }),
        aws::Response::Attestation { document } => Response::Attestation { document },
        aws::Response::GetRandom { random } => Response::GetRandom { random },
        aws::Response::Error(code) => Response::Error(from_aws_code(code)),
        other => panic!("response variant unknown to this test: {other:?}"),
    }
}

#[test]
fn every_request_variant_is_wire_identical_to_aws_nsm_api_both_ways() {
    for variant in 0..7 {
        let mut rng = Rng(0x5eed_0000 + variant);
        for case in 0..CASES {
            let request = random_request(&mut rng, variant);
            let ours = request.encode().unwrap();
            let theirs = serde_cbor::to_vec(&to_aws_request(&request)).unwrap();
            assert_eq!(ours, theirs, "variant {variant} case {case}: {request:?}");
            // Their decoder reads our bytes, our decoder reads theirs.
            let decoded: aws::Request = serde_cbor::from_slice(&ours).unwrap();
            assert_eq!(
                from_aws_request(decoded),
                request,
                "variant {variant} case {case}"
            );
            assert_eq!(
                Request::decode(&theirs).unwrap(),
                request,
                "variant {variant} case {case}"
            );
        }
    }
}

#[test]
fn every_response_variant_is_wire_identical_to_aws_nsm_api_both_ways() {
    for variant in 0..8 {
        let mut rng = Rng(0xfeed_0000 + variant);
        for case in 0..CASES {
            let response = random_response(&mut rng, variant);
            let ours = response.encode().unwrap();
            let theirs = serde_cbor::to_vec(&to_aws_response(&response)).unwrap();
            assert_eq!(ours, theirs, "variant {variant} case {case}");
            let decoded: aws::Response = serde_cbor::from_slice(&ours).unwrap();
            assert_eq!(
                from_aws_response(decoded),
                response,
                "variant {variant} case {case}"
            );
            assert_eq!(
                Response::decode(&theirs).unwrap(),
                response,
                "variant {variant} case {case}"
            );
        }
    }
}

#[test]
fn every_error_code_has_the_aws_wire_name() {
    for code in ErrorCode::ALL {
        let theirs = serde_cbor::to_vec(&aws::Response::Error(to_aws_code(code))).unwrap();
        assert_eq!(Response::Error(code).encode().unwrap(), theirs);
        assert_eq!(ErrorCode::from_wire_name(code.wire_name()), Some(code));
    }
    assert_eq!(
        hex::encode(Response::Error(ErrorCode::ReadOnlyIndex).encode().unwrap()),
        // {"Error": "ReadOnlyIndex"}
        "a1654572726f726d526561644f6e6c79496e646578"
    );
}

#[test]
fn get_random_matches_the_bytes_hard_coded_in_the_linux_driver() {
    // drivers/misc/nsm.c fill_req_get_random: 0x69 "GetRandom".
    assert_eq!(Request::GetRandom.encode().unwrap(), b"\x69GetRandom");
    // parse_resp_get_random expects A1 69 "GetRandom" A1 66 "random", then the byte string.
    let response = Response::GetRandom {
        random: vec![7; 256],
    }
    .encode()
    .unwrap();
    assert!(response.starts_with(b"\xa1\x69GetRandom\xa1\x66random\x59\x01\x00"));
    assert_eq!(response.len(), 22 + 256);
}

/// CBOR built by hand for the decoder tests.
fn cbor(build: impl FnOnce(&mut minicbor::Encoder<Vec<u8>>)) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    build(&mut e);
    e.into_writer()
}

#[test]
fn describe_nsm_in_qemu_field_order_with_unknown_fields_decodes() {
    // QEMU's virtio-nsm writes digest, max_pcrs, module_id, locked_pcrs, version_* (not the
    // serde order); a future NSM may add fields.
    let bytes = cbor(|e| {
        e.map(1)
            .unwrap()
            .str("DescribeNSM")
            .unwrap()
            .map(8)
            .unwrap();
        e.str("digest").unwrap().str("SHA384").unwrap();
        e.str("max_pcrs").unwrap().u8(32).unwrap();
        e.str("module_id").unwrap().str("i-1234-enc5678").unwrap();
        e.str("future_field")
            .unwrap()
            .array(2)
            .unwrap()
            .u8(1)
            .unwrap()
            .map(0)
            .unwrap();
        e.str("locked_pcrs").unwrap().array(3).unwrap();
        e.u8(0).unwrap().u8(1).unwrap().u8(2).unwrap();
        e.str("version_major").unwrap().u8(1).unwrap();
        e.str("version_minor").unwrap().u8(0).unwrap();
        e.str("version_patch").unwrap().u8(0).unwrap();
    });
    let expected = Response::DescribeNsm(Description {
        version_major: 1,
        version_minor: 0,
        version_patch: 0,
        module_id: "i-1234-enc5678".into(),
        max_pcrs: 32,
        locked_pcrs: BTreeSet::from([0, 1, 2]),
        digest: Digest::Sha384,
    });
    assert_eq!(Response::decode(&bytes).unwrap(), expected);
}

#[test]
fn indefinite_lengths_decode_like_definite_ones() {
    let bytes = cbor(|e| {
        e.begin_map().unwrap().str("Attestation").unwrap();
        e.begin_map().unwrap();
        e.begin_str()
            .unwrap()
            .str("doc")
            .unwrap()
            .str("ument")
            .unwrap()
            .end()
            .unwrap();
        e.begin_bytes()
            .unwrap()
            .bytes(&[1, 2])
            .unwrap()
            .bytes(&[3])
            .unwrap()
            .end()
            .unwrap();
        e.end().unwrap();
        e.end().unwrap();
    });
    assert_eq!(
        Response::decode(&bytes).unwrap(),
        Response::Attestation {
            document: vec![1, 2, 3]
        }
    );
    let bytes = cbor(|e| {
        e.map(1)
            .unwrap()
            .str("Attestation")
            .unwrap()
            .begin_map()
            .unwrap();
        e.str("nonce").unwrap().bytes(b"n").unwrap();
        e.str("user_data").unwrap().null().unwrap();
        e.end().unwrap();
    });
    assert_eq!(
        Request::decode(&bytes).unwrap(),
        Request::Attestation {
            user_data: None,
            nonce: Some(b"n".to_vec()),
            public_key: None
        }
    );
}

fn kind_of(result: Result<Response, CodecError>) -> CodecErrorKind {
    result.unwrap_err().kind
}

#[test]
fn malformed_messages_are_rejected_with_the_failed_check() {
    let duplicate = cbor(|e| {
        e.map(1).unwrap().str("ExtendPCR").unwrap().map(2).unwrap();
        e.str("data").unwrap().bytes(b"a").unwrap();
        e.str("data").unwrap().bytes(b"b").unwrap();
    });
    assert_eq!(
        kind_of(Response::decode(&duplicate)),
        CodecErrorKind::DuplicateField {
            operation: "ExtendPCR",
            field: "data"
        }
    );
    let missing = cbor(|e| {
        e.map(1)
            .unwrap()
            .str("DescribePCR")
            .unwrap()
            .map(1)
            .unwrap();
        e.str("lock").unwrap().bool(true).unwrap();
    });
    let error = Response::decode(&missing).unwrap_err();
    assert_eq!(
        error.kind,
        CodecErrorKind::MissingField {
            operation: "DescribePCR",
            field: "data"
        }
    );
    assert!(alloc::format!("{error}").contains("DescribePCR lacks its required field \"data\""));

    let wrong_type = cbor(|e| {
        e.map(1).unwrap().str("GetRandom").unwrap().map(1).unwrap();
        e.str("random").unwrap().str("not bytes").unwrap();
    });
    assert_eq!(
        kind_of(Response::decode(&wrong_type)),
        CodecErrorKind::Malformed("a byte string")
    );
    let overflow = cbor(|e| {
        e.map(1)
            .unwrap()
            .str("DescribePCR")
            .unwrap()
            .map(1)
            .unwrap();
        e.str("index").unwrap().u32(65_536).unwrap();
    });
    assert!(matches!(
        Request::decode(&overflow).unwrap_err().kind,
        CodecErrorKind::Malformed(_)
    ));
    let two_entries = cbor(|e| {
        e.map(2).unwrap().str("LockPCR").unwrap().null().unwrap();
        e.str("LockPCRs").unwrap().null().unwrap();
    });
    assert_eq!(
        kind_of(Response::decode(&two_entries)),
        CodecErrorKind::NotOneEntry
    );
    let unit_as_map = cbor(|e| {
        e.map(1).unwrap().str("LockPCR").unwrap().null().unwrap();
    });
    assert!(matches!(
        kind_of(Response::decode(&unit_as_map)),
        CodecErrorKind::WrongShape { .. }
    ));
    assert_eq!(
        kind_of(Response::decode(b"\x67Unknown")),
        CodecErrorKind::UnknownOperation("Unknown".into())
    );
    let unknown_code = cbor(|e| {
        e.map(1)
            .unwrap()
            .str("Error")
            .unwrap()
            .str("Teapot")
            .unwrap();
    });
    assert_eq!(
        kind_of(Response::decode(&unknown_code)),
        CodecErrorKind::UnknownErrorCode("Teapot".into())
    );
    let mut trailing = Response::LockPcr.encode().unwrap();
    trailing.push(0);
    assert_eq!(
        kind_of(Response::decode(&trailing)),
        CodecErrorKind::TrailingBytes
    );
    assert_eq!(
        kind_of(Response::decode(&vec![0x40; RESPONSE_MAX + 1])),
        CodecErrorKind::TooLarge {
            limit: RESPONSE_MAX,
            found: RESPONSE_MAX + 1
        }
    );
    assert_eq!(
        Request::decode(&[0x40; REQUEST_MAX + 1]).unwrap_err().kind,
        CodecErrorKind::TooLarge {
            limit: REQUEST_MAX,
            found: REQUEST_MAX + 1
        }
    );
    assert_eq!(kind_of(Response::decode(b"")), CodecErrorKind::Truncated);
    assert_eq!(
        kind_of(Response::decode(b"\x62\xff\xfe")),
        CodecErrorKind::InvalidUtf8
    );
}

#[test]
fn requests_over_the_driver_limit_do_not_encode() {
    let request = Request::ExtendPcr {
        index: 16,
        data: vec![0; REQUEST_MAX],
    };
    assert!(matches!(
        request.encode().unwrap_err().kind,
        CodecErrorKind::TooLarge { limit: REQUEST_MAX, found } if found > REQUEST_MAX
    ));
    // The largest attestation request AWS's nsm-check sends (1024 bytes each) fits.
    let request = Request::Attestation {
        user_data: Some(vec![128; 1024]),
        nonce: Some(vec![128; 1024]),
        public_key: Some(vec![128; 1024]),
    };
    assert!(request.encode().unwrap().len() <= REQUEST_MAX);
}

#[test]
fn every_truncation_and_random_corruption_is_an_error_not_a_panic() {
    let mut rng = Rng(0xc0de);
    let mut messages = Vec::new();
    for variant in 0..8 {
        messages.push(random_response(&mut rng, variant).encode().unwrap());
    }
    for variant in 0..7 {
        messages.push(random_request(&mut rng, variant).encode().unwrap());
    }
    for message in &messages {
        for len in 0..message.len() {
            // A strict prefix of a valid message is never a valid message.
            assert!(Response::decode(&message[..len]).is_err());
            assert!(Request::decode(&message[..len]).is_err());
        }
    }
    let mut decoded_ok = 0u32;
    for _ in 0..20_000 {
        let mut message = messages[rng.below(messages.len() as u64) as usize].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(message.len() as u64) as usize;
            message[at] = rng.next() as u8;
        }
        // Whatever the outcome, decoding returns; a success must re-encode to a value that
        // decodes to itself.
        if let Ok(response) = Response::decode(&message) {
            decoded_ok += 1;
            if let Ok(bytes) = response.encode() {
                assert_eq!(Response::decode(&bytes).unwrap(), response);
            }
        }
        if let Ok(request) = Request::decode(&message)
            && let Ok(bytes) = request.encode()
        {
            assert_eq!(Request::decode(&bytes).unwrap(), request);
        }
    }
    // Single-byte corruptions of payload bytes leave many messages valid; if none decoded,
    // the loop above tested nothing.
    assert!(
        decoded_ok > 100,
        "only {decoded_ok} corrupted messages decoded"
    );
}
