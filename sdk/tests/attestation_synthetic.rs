//! Synthetic documents: QEMU's unsigned shape and the explicit insecure mode, structural
//! negatives with exact errors and offsets, and signed documents under a custom rcgen chain
//! (the round trip the NSM simulator will make) with broken chains.
// Test helpers outside #[test] functions unwrap and panic like the tests do.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod attestation_support;

use attestation_support::{
    CertSpec, ES384_PROTECTED, Fields, QEMU_PROTECTED, cose, make_chain, nitro_like_specs,
    qemu_document, sign, synthetic_now,
};
use ccc_sdk::attestation::{
    self, Algorithm, AttestationError, CertificateErrorKind, DecodeError, DecodeErrorKind, Policy,
    RootOfTrust, Trust, VerifyOptions, limits,
};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::time::UnixMillis;
use rcgen::{IsCa, KeyUsagePurpose};

fn insecure() -> VerifyOptions {
    VerifyOptions::new(UnixMillis(0)).with_root(RootOfTrust::InsecureQemuUnsigned)
}

fn decode_error(doc: &[u8]) -> DecodeError {
    match attestation::parse(doc) {
        Err(AttestationError::Malformed(e)) => e,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn qemu_documents_verify_only_in_the_insecure_mode() {
    let doc = qemu_document(&Fields::qemu());
    let v = attestation::verify(&doc, &insecure(), &AwsLc).unwrap();
    assert!(v.is_unsigned_emulated());
    assert_eq!(v.trust, Trust::InsecureQemuUnsigned);
    assert!(v.chain.is_empty());
    assert_eq!(v.user_data.as_deref(), Some(&b"user"[..]));
    assert_eq!(v.public_key, None);
    assert_eq!(v.pcrs.len(), 16);

    // The policy still applies in the insecure mode.
    let err = attestation::verify(
        &doc,
        &insecure().with_policy(Policy::new().expect_nonce(b"other")),
        &AwsLc,
    )
    .unwrap_err();
    assert!(matches!(err, AttestationError::Policy(_)), "{err}");

    // Default (AWS) and custom roots reject it and say what it is.
    let custom = RootOfTrust::custom(make_chain(&nitro_like_specs()).ders[0].clone()).unwrap();
    for options in [
        VerifyOptions::new(synthetic_now()),
        VerifyOptions::new(synthetic_now()).with_root(custom),
    ] {
        let err = attestation::verify(&doc, &options, &AwsLc).unwrap_err();
        assert_eq!(err, AttestationError::UnsignedDocument);
        assert!(
            err.to_string()
                .starts_with("unsigned document from an emulator; "),
            "{err}"
        );
        assert!(err.to_string().contains("InsecureQemuUnsigned"), "{err}");
    }
    assert_eq!(
        attestation::parse(&doc).unwrap().cose.algorithm,
        Algorithm::QemuUnsigned
    );
}

#[test]
fn the_insecure_mode_accepts_nothing_but_the_exact_qemu_shape() {
    let fields = Fields::qemu();
    let payload = fields.encode();
    let mut nonzero_sig = [0u8; 64];
    nonzero_sig[63] = 1;
    let mut cert65 = fields.clone();
    cert65.certificate = Some(vec![0; 65]);
    let mut two_entries = fields.clone();
    two_entries.cabundle = Some(vec![vec![0; 64], vec![0; 64]]);
    let mut nonzero_bundle = fields.clone();
    nonzero_bundle.cabundle = Some(vec![vec![1; 64]]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            cose(QEMU_PROTECTED, &payload, &nonzero_sig, false),
            "signature",
        ),
        (cose(QEMU_PROTECTED, &payload, &[0; 63], false), "signature"),
        (qemu_document(&cert65), "certificate"),
        (qemu_document(&two_entries), "cabundle"),
        (qemu_document(&nonzero_bundle), "cabundle"),
        (
            cose(ES384_PROTECTED, &payload, &[0; 96], false),
            "signed document",
        ),
    ];
    for (doc, needle) in cases {
        let err = attestation::verify(&doc, &insecure(), &AwsLc).unwrap_err();
        assert!(
            matches!(&err, AttestationError::NotQemuUnsigned(w) if w.contains(needle)),
            "{needle}: {err}"
        );
    }
}

#[test]
fn tagged_indefinite_absent_and_null_forms_parse() {
    let mut f = Fields::qemu();
    f.indefinite_map = true;
    f.public_key = None; // key absent
    f.user_data = Some(Some(Vec::new())); // empty
    f.nonce = Some(None); // null
    let payload = f.encode();
    for tagged in [false, true] {
        let doc = cose(QEMU_PROTECTED, &payload, &[0; 64], tagged);
        let p = attestation::parse(&doc).unwrap();
        assert_eq!(p.cose.tagged, tagged);
        assert_eq!(p.document.public_key, None);
        assert_eq!(p.document.user_data, Some(&[][..]));
        assert_eq!(p.document.nonce, None);
        attestation::verify(&doc, &insecure(), &AwsLc).unwrap();
    }
    // Tag 17 (COSE_Mac0) is not a COSE_Sign1.
    let mut wrong = vec![0xd1];
    wrong.extend_from_slice(&qemu_document(&Fields::qemu()));
    let e = decode_error(&wrong);
    assert_eq!(e.offset, 0);
    assert!(e.to_string().contains("tag 17"), "{e}");
}

#[test]
fn wrong_algorithms_are_named_at_their_offset() {
    let payload = Fields::qemu().encode();
    // {1: -7} (ES256): the alg value sits at document byte 4 (84 44 a1 01 |26|).
    let doc = cose(&[0xa1, 0x01, 0x26], &payload, &[0; 96], false);
    let e = decode_error(&doc);
    assert_eq!(e.kind, DecodeErrorKind::UnsupportedAlgorithm(-7));
    assert_eq!(e.offset, 4);
    assert!(e.to_string().contains("alg -7 is not ES384 (-35)"), "{e}");
    // Two protected headers, a non-alg label, a non-map.
    for protected in [
        &[0xa2, 0x01, 0x38, 0x22, 0x03, 0x00][..],
        &[0xa1, 0x04, 0x38, 0x22],
        &[0x80],
        &[],
    ] {
        let doc = cose(protected, &payload, &[0; 96], false);
        let e = decode_error(&doc);
        assert!(e.to_string().contains("protected header"), "{e}");
    }
    // ES384 with a 95-byte signature.
    let doc = cose(ES384_PROTECTED, &payload, &[0; 95], false);
    assert!(decode_error(&doc).to_string().contains("95 bytes"));
}

#[test]
fn bad_cbor_is_reported_at_its_byte_offset() {
    let fields = Fields::qemu();
    let payload = fields.encode();
    let doc = qemu_document(&fields);
    let payload_at = doc.len() - 1 - 64 - payload.len(); // ... payload | 58 40 | sig
    let payload_at = payload_at - 1;
    assert_eq!(&doc[payload_at..payload_at + payload.len()], &payload[..]);

    // module_id's value as an integer instead of text: the first key is "module_id"
    // (a9 69 "module_id" then the value at payload offset 11).
    let mut bad = fields.clone();
    bad.module_id = None;
    bad.extra = vec![("module_id".into(), vec![0x05])];
    let d = qemu_document(&bad);
    let e = decode_error(&d);
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnexpectedType {
            field: "module_id",
            expected: "a definite-length UTF-8 text string"
        }
    );
    let pa = d.len() - 2 - 64 - bad.encode().len();
    // The extra entry is last: find its value byte.
    let value_at = pa + bad.encode().len() - 1;
    assert_eq!(d[value_at], 0x05);
    assert_eq!(e.offset, value_at);
    assert_eq!(
        e.to_string(),
        format!("at byte {value_at}: module_id must be a definite-length UTF-8 text string")
    );

    // Invalid UTF-8 in a key, a non-text key, trailing garbage, a non-array envelope.
    let mut bad = fields.clone();
    bad.extra = vec![("zz".into(), vec![0x00])];
    let mut raw = qemu_document(&bad);
    let z = raw.windows(2).position(|w| w == b"zz").unwrap();
    raw[z] = 0xff;
    let e = decode_error(&raw);
    assert_eq!(e.offset, z - 1);
    let mut trailing = doc.clone();
    trailing.extend_from_slice(&[0x00, 0x01]);
    let e = decode_error(&trailing);
    assert_eq!(
        (e.offset, e.kind),
        (
            doc.len(),
            DecodeErrorKind::TrailingBytes {
                after: "the COSE_Sign1 array"
            }
        )
    );
    assert_eq!(decode_error(&[0xa0]).offset, 0);
    assert!(matches!(
        decode_error(&[]).kind,
        DecodeErrorKind::Truncated { .. }
    ));
}

#[test]
fn keys_are_checked_unknown_duplicate_missing() {
    let mut f = Fields::qemu();
    f.extra = vec![("surprise".into(), vec![0xf6])];
    assert_eq!(
        decode_error(&qemu_document(&f)).kind,
        DecodeErrorKind::UnknownField("surprise".into())
    );
    let mut f = Fields::qemu();
    f.extra = vec![("nonce".into(), vec![0xf6])];
    assert_eq!(
        decode_error(&qemu_document(&f)).kind,
        DecodeErrorKind::DuplicateField("nonce")
    );
    for missing in [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
    ] {
        let mut f = Fields::qemu();
        match missing {
            "module_id" => f.module_id = None,
            "digest" => f.digest = None,
            "timestamp" => f.timestamp = None,
            "pcrs" => f.pcrs = None,
            "certificate" => f.certificate = None,
            _ => f.cabundle = None,
        }
        assert_eq!(
            decode_error(&qemu_document(&f)).kind,
            DecodeErrorKind::MissingField(missing)
        );
    }
    let mut f = Fields::qemu();
    f.digest = Some("SHA256".into());
    assert!(
        decode_error(&qemu_document(&f))
            .to_string()
            .contains("\"SHA256\"")
    );
    let mut f = Fields::qemu();
    f.timestamp = Some(0);
    assert!(
        decode_error(&qemu_document(&f))
            .to_string()
            .contains("timestamp")
    );
    let mut f = Fields::qemu();
    f.module_id = Some(String::new());
    assert!(
        decode_error(&qemu_document(&f))
            .to_string()
            .contains("module_id")
    );
}

#[test]
fn pcr_maps_are_checked() {
    let pcrs = |entries: Vec<(u64, usize)>| {
        let mut f = Fields::qemu();
        f.pcrs = Some(entries.into_iter().map(|(i, n)| (i, vec![1; n])).collect());
        qemu_document(&f)
    };
    // 32 PCRs of each allowed size parse; index 31 is the last.
    for size in [32, 48, 64] {
        let doc = pcrs((0..32).map(|i| (i, size)).collect());
        assert_eq!(attestation::parse(&doc).unwrap().document.pcrs.len(), 32);
    }
    // 33 entries: too many (the 33rd would need a duplicate index anyway).
    let doc = pcrs((0..33).map(|i| (i % 32, 48)).collect());
    assert_eq!(
        attestation::parse(&doc).unwrap_err(),
        AttestationError::TooLarge {
            limit: "MAX_PCRS",
            max: 32,
            actual: 33
        }
    );
    let cases: Vec<(Vec<(u64, usize)>, &str)> = vec![
        (vec![(0, 47)], "PCR0 is 47 bytes"),
        (vec![(3, 0)], "PCR3 is 0 bytes"),
        (vec![(32, 48)], "PCR index 32"),
        (vec![(u64::MAX, 48)], "PCR index 18446744073709551615"),
        (vec![(1, 48), (1, 48)], "PCR1 appears twice"),
        (vec![], "no PCRs"),
    ];
    for (entries, needle) in cases {
        let e = decode_error(&pcrs(entries));
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}

#[test]
fn size_limits_are_named_with_limit_and_actual() {
    let over = |set: &dyn Fn(&mut Fields)| {
        let mut f = Fields::qemu();
        set(&mut f);
        attestation::parse(&qemu_document(&f)).unwrap_err()
    };
    let too_large = |limit, max, actual| AttestationError::TooLarge { limit, max, actual };
    assert_eq!(
        over(&|f| f.user_data = Some(Some(vec![1; 1025]))),
        too_large("MAX_USER_DATA_LEN", 1024, 1025)
    );
    assert_eq!(
        over(&|f| f.nonce = Some(Some(vec![1; 1025]))),
        too_large("MAX_NONCE_LEN", 1024, 1025)
    );
    assert_eq!(
        over(&|f| f.public_key = Some(Some(vec![1; 1025]))),
        too_large("MAX_PUBLIC_KEY_LEN", 1024, 1025)
    );
    assert_eq!(
        over(&|f| f.certificate = Some(vec![1; limits::MAX_CERTIFICATE_LEN + 1])),
        too_large("MAX_CERTIFICATE_LEN", 2048, 2049)
    );
    assert_eq!(
        over(&|f| f.cabundle = Some(vec![vec![1; 10]; 9])),
        too_large("MAX_CABUNDLE_LEN", 8, 9)
    );
    // At the limits everything parses.
    let mut f = Fields::qemu();
    f.user_data = Some(Some(vec![1; 1024]));
    f.nonce = Some(Some(vec![1; 1024]));
    f.public_key = Some(Some(vec![1; 1024]));
    f.cabundle = Some(vec![vec![1; 10]; 8]);
    attestation::parse(&qemu_document(&f)).unwrap();
    // Empty certificate / cabundle.
    assert!(
        over(&|f| f.cabundle = Some(vec![]))
            .to_string()
            .contains("cabundle")
    );
    assert!(
        over(&|f| f.certificate = Some(vec![]))
            .to_string()
            .contains("empty certificate")
    );
    // A whole document over 16 KiB is refused before parsing.
    let big = vec![0x84; limits::MAX_DOCUMENT_LEN + 1];
    let err = attestation::parse(&big).unwrap_err();
    assert_eq!(err, too_large("MAX_DOCUMENT_LEN", 16384, 16385));
    assert!(
        err.to_string().contains("MAX_DOCUMENT_LEN (16385 > 16384)"),
        "{err}"
    );
}

#[test]
fn truncations_and_junk_never_panic() {
    let chain = make_chain(&nitro_like_specs());
    let docs = [
        qemu_document(&Fields::qemu()),
        sign(&chain, &Fields::signed(&chain).encode(), true),
    ];
    for doc in &docs {
        for end in 0..doc.len() {
            assert!(attestation::parse(&doc[..end]).is_err(), "prefix {end}");
        }
        // Every single-byte value at a few structural positions: errors or parses, never panics.
        for i in 0..doc.len().min(64) {
            let mut t = doc.clone();
            for b in 0..=255u8 {
                t[i] = b;
                let _ = attestation::parse(&t);
            }
        }
    }
}

fn signed_options(chain: &attestation_support::Chain) -> VerifyOptions {
    VerifyOptions::new(synthetic_now())
        .with_root(RootOfTrust::custom(chain.ders[0].clone()).unwrap())
}

#[test]
fn a_signed_synthetic_document_round_trips_under_its_custom_root() {
    let chain = make_chain(&nitro_like_specs());
    let payload = Fields::signed(&chain).encode();
    for tagged in [false, true] {
        let doc = sign(&chain, &payload, tagged);
        let v = attestation::verify(&doc, &signed_options(&chain), &AwsLc).unwrap();
        assert_eq!(v.trust, Trust::CustomRoot);
        assert_eq!(v.chain.len(), 5);
        assert_eq!(v.chain[0].subject_cn, "synthetic-root.nitro-enclaves");
        assert_eq!(v.verified_at, synthetic_now());
        // Not under the AWS pin.
        let err =
            attestation::verify(&doc, &VerifyOptions::new(synthetic_now()), &AwsLc).unwrap_err();
        assert!(
            matches!(err, AttestationError::UntrustedRoot { aws_pin: true, .. }),
            "{err}"
        );
        // Not under another synthetic root.
        let other = make_chain(&nitro_like_specs());
        let err = attestation::verify(&doc, &signed_options(&other), &AwsLc).unwrap_err();
        assert!(
            matches!(err, AttestationError::UntrustedRoot { .. }),
            "{err}"
        );
    }
    // Signed by a key that is not the leaf's.
    let other = make_chain(&nitro_like_specs());
    let forged = attestation_support::Chain {
        ders: chain.ders.clone(),
        leaf_pkcs8: other.leaf_pkcs8.clone(),
    };
    let err = attestation::verify(
        &sign(&forged, &payload, false),
        &signed_options(&chain),
        &AwsLc,
    )
    .unwrap_err();
    assert!(
        matches!(err, AttestationError::DocumentSignature { .. }),
        "{err}"
    );
}

/// Builds a chain from `specs`, a document signed by its leaf, and the verification error.
fn chain_error(specs: &[CertSpec]) -> (usize, CertificateErrorKind, String) {
    let chain = make_chain(specs);
    let doc = sign(&chain, &Fields::signed(&chain).encode(), false);
    match attestation::verify(&doc, &signed_options(&chain), &AwsLc) {
        Err(AttestationError::Certificate(e)) => {
            let text = AttestationError::Certificate(e.clone()).to_string();
            (e.position.index, e.kind, text)
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[test]
fn broken_chains_name_the_certificate_and_the_check() {
    let specs = nitro_like_specs();

    let mut s = specs.clone();
    s[4].is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let (i, kind, text) = chain_error(&s);
    assert_eq!((i, kind), (4, CertificateErrorKind::LeafIsCa));
    assert!(text.contains("leaf certificate"), "{text}");

    let mut s = specs.clone();
    s[2].is_ca = IsCa::ExplicitNoCa;
    let (i, kind, _) = chain_error(&s);
    assert_eq!((i, kind), (2, CertificateErrorKind::NotCa));

    // The instance CA allows 0 CAs below it; insert one more CA under it.
    let mut s = specs.clone();
    s[1] = CertSpec::ca("regional.synthetic", None);
    s[2] = CertSpec::ca("zonal.synthetic", None);
    s.insert(4, CertSpec::ca("extra.synthetic", None));
    let (i, kind, text) = chain_error(&s);
    assert_eq!(
        (i, kind),
        (
            3,
            CertificateErrorKind::PathLenExceeded {
                path_len: 0,
                below: 1
            }
        )
    );
    assert!(
        text.contains("cabundle[3]") && text.contains("instance.synthetic"),
        "{text}"
    );

    let mut s = specs.clone();
    s[1].key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let (i, kind, _) = chain_error(&s);
    assert_eq!(i, 1);
    assert!(matches!(kind, CertificateErrorKind::KeyUsage(w) if w.contains("keyCertSign")));

    let mut s = specs.clone();
    s[4].key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let (i, kind, _) = chain_error(&s);
    assert_eq!(i, 4);
    assert!(matches!(kind, CertificateErrorKind::KeyUsage(w) if w.contains("digitalSignature")));

    let mut s = specs.clone();
    s[4].key_usages = vec![];
    let (_, kind, _) = chain_error(&s);
    assert!(matches!(kind, CertificateErrorKind::KeyUsage(w) if w.contains("no keyUsage")));

    // An intermediate that expired before the verification time.
    let mut s = specs.clone();
    s[2].not_after = (2025, 6, 1);
    let (i, kind, text) = chain_error(&s);
    assert_eq!(i, 2);
    assert!(matches!(kind, CertificateErrorKind::Expired { .. }));
    assert!(text.contains("2025-06-01T00:00:00.000Z"), "{text}");

    // Root validity is checked too.
    let mut s = specs;
    s[0].not_before = (2030, 1, 1);
    let (i, _, text) = chain_error(&s);
    assert_eq!(i, 0);
    assert!(text.contains("not yet valid"), "{text}");
}

#[test]
fn swapped_intermediates_fail_name_chaining() {
    // Unconstrained CAs, so that only the names are wrong.
    let mut specs = nitro_like_specs();
    for spec in &mut specs[1..4] {
        spec.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let chain = make_chain(&specs);
    let mut fields = Fields::signed(&chain);
    let mut bundle = chain.ders[..4].to_vec();
    bundle.swap(1, 2);
    fields.cabundle = Some(bundle);
    let doc = sign(&chain, &fields.encode(), false);
    let err = attestation::verify(&doc, &signed_options(&chain), &AwsLc).unwrap_err();
    let AttestationError::Certificate(e) = &err else {
        panic!("{err}")
    };
    assert_eq!(e.position.index, 1);
    assert!(
        matches!(e.kind, CertificateErrorKind::IssuerMismatch { .. }),
        "{err}"
    );
}

#[test]
fn a_custom_root_must_be_a_certificate() {
    assert!(matches!(
        RootOfTrust::custom(vec![0x30, 0x00]),
        Err(AttestationError::Certificate(_))
    ));
    assert!(matches!(
        RootOfTrust::custom_pem("not pem"),
        Err(AttestationError::InvalidInput(_))
    ));
}

/// The committed fuzz seeds (`fuzz/seeds/attestation/`) are synthetic documents made here.
/// Regenerate with `CCC_WRITE_FUZZ_SEEDS=1 cargo test -p ccc-sdk --test attestation_synthetic
/// fuzz_seeds`. The QEMU-shaped seeds are deterministic and compared byte for byte; the signed
/// ones (fresh keys each time) must verify under their own cabundle[0].
#[test]
fn fuzz_seeds_are_our_synthetic_documents() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/attestation");
    let mut qemu_tagged = Fields::qemu();
    qemu_tagged.indefinite_map = true;
    qemu_tagged.public_key = None;
    qemu_tagged.nonce = Some(None);
    let mut qemu_max = Fields::qemu();
    qemu_max.pcrs = Some((0..32).map(|i| (i, vec![i as u8; 64])).collect());
    qemu_max.user_data = Some(Some(vec![0x55; 1024]));
    qemu_max.nonce = Some(Some(vec![0xaa; 1024]));
    qemu_max.public_key = Some(Some(Vec::new()));
    let deterministic = [
        (
            "qemu-untagged-definite.cbor",
            qemu_document(&Fields::qemu()),
        ),
        (
            "qemu-tagged-indefinite-optionals.cbor",
            cose(QEMU_PROTECTED, &qemu_tagged.encode(), &[0; 64], true),
        ),
        ("qemu-32-pcrs-max-fields.cbor", qemu_document(&qemu_max)),
    ];
    let write = std::env::var_os("CCC_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, doc) in &deterministic {
            std::fs::write(dir.join(name), doc).unwrap();
        }
        let chain = make_chain(&nitro_like_specs());
        let mut indefinite = Fields::signed(&chain);
        indefinite.indefinite_map = true;
        let short = make_chain(&[
            CertSpec::ca("short-root.synthetic", Some(0)),
            CertSpec::leaf("short-leaf.synthetic"),
        ]);
        for (name, doc) in [
            (
                "signed-5-cert-chain-untagged.cbor",
                sign(&chain, &Fields::signed(&chain).encode(), false),
            ),
            (
                "signed-5-cert-chain-tagged-indefinite.cbor",
                sign(&chain, &indefinite.encode(), true),
            ),
            (
                "signed-2-cert-chain.cbor",
                sign(&short, &Fields::signed(&short).encode(), false),
            ),
        ] {
            std::fs::write(dir.join(name), doc).unwrap();
        }
    }
    for (name, doc) in &deterministic {
        assert_eq!(
            &std::fs::read(dir.join(name)).unwrap(),
            doc,
            "{name} is stale"
        );
    }
    let mut signed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let doc = std::fs::read(&path).unwrap();
        let parsed = attestation::parse(&doc).unwrap();
        if parsed.cose.algorithm == Algorithm::Es384 {
            let root = RootOfTrust::custom(parsed.document.cabundle[0].to_vec()).unwrap();
            parsed
                .verify(&VerifyOptions::new(synthetic_now()).with_root(root), &AwsLc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            signed += 1;
        } else {
            parsed.verify(&insecure(), &AwsLc).unwrap();
        }
    }
    assert_eq!(signed, 3);
}
