//! The six real NSM documents: verification at their own time, expiry, wrong roots, tampering
//! of every signed byte, policy outcomes, truncation.
// Test helpers outside #[test] functions unwrap and panic like the tests do.
#![expect(
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod attestation_support;

use attestation_support::{VECTORS, aws_root_pem, load, ms, vector};
use ccc_sdk::attestation::{
    self, AWS_NITRO_ROOT_G1_SHA256, AttestationError, CertificateErrorKind, Policy, PolicyError,
    RootOfTrust, Trust, VerifyOptions,
};
use ccc_sdk::crypto::{AwsLc, Crypto};
use ccc_sdk::time::UnixMillis;

fn debug_ok(at: UnixMillis) -> VerifyOptions {
    VerifyOptions::new(at).with_policy(Policy::new().allow_debug_mode())
}

const NONDEBUG_2025: &str = "fastcrypto-nondebug-pcr16-indefmap-2025-11-10";
const NONDEBUG_2022: &str = "evervault-beta-nondebug-signed-eif-2022-10-13";

#[test]
fn all_six_verify_at_their_own_timestamp() {
    for v in VECTORS {
        let doc = load(v);
        let at = UnixMillis(v.timestamp);
        let verified = attestation::verify(&doc, &debug_ok(at), &AwsLc)
            .unwrap_or_else(|e| panic!("{}: {e}", v.dir));
        assert_eq!(verified.module_id, v.module_id, "{}", v.dir);
        assert_eq!(verified.timestamp, at);
        assert_eq!(verified.digest, "SHA384");
        assert_eq!(verified.pcrs.len(), v.pcr_count, "{}", v.dir);
        assert!(verified.pcrs.values().all(|p| p.len() == 48));
        assert_eq!(verified.trust, Trust::AwsNitroRoot);
        assert!(!verified.is_unsigned_emulated());
        assert_eq!(verified.is_debug_mode(), v.debug, "{}", v.dir);
        assert_eq!(verified.chain.len(), 5);
        assert_eq!(verified.chain[0].subject_cn, "aws.nitro-enclaves");
        assert_eq!(verified.chain[0].not_before, ms("2019-10-28T13:28:05Z"));
        assert_eq!(verified.chain[0].not_after, ms("2049-10-28T14:28:05Z"));
        let leaf = &verified.chain[4];
        assert!(
            leaf.subject_cn.starts_with(v.module_id),
            "{}",
            leaf.subject_cn
        );
        assert_eq!(leaf.not_before, ms(v.leaf_not_before));
        assert_eq!(leaf.not_after, ms(v.leaf_not_after));
        // Inclusive window: both ends verify.
        for edge in [ms(v.leaf_not_before), ms(v.leaf_not_after)] {
            attestation::verify(&doc, &debug_ok(edge), &AwsLc)
                .unwrap_or_else(|e| panic!("{} at {edge}: {e}", v.dir));
        }
    }
}

#[test]
fn field_values_match_the_readmes() {
    let (_, doc) = vector("nitrite-debug-2021-10-28");
    let p = attestation::parse(&doc).unwrap();
    assert_eq!(p.document.public_key, Some(&[][..]));
    assert_eq!(
        p.document.nonce.map(hex::encode).as_deref(),
        Some("54caa7fdd9c1de6f1206e4900d57b61eb759d628")
    );
    assert_eq!(p.document.user_data.map(<[u8]>::len), Some(64));
    assert!(!p.cose.tagged);

    let (_, doc) = vector(NONDEBUG_2025);
    let p = attestation::parse(&doc).unwrap();
    assert_eq!(p.document.user_data, Some(&[][..]));
    assert_eq!(p.document.nonce, None);
    assert_eq!(
        p.document.pcrs.get(16).map(hex::encode).as_deref(),
        Some(
            "28827566f8b004a75ccd77ffab1813059cfc384b3b23f926728263fecb03e97d\
             4928fbef613791fcb233d7b16ad74b94"
        )
    );
    let (_, doc) = vector("evervault-beta-debug-2022-10-12");
    let p = attestation::parse(&doc).unwrap();
    assert_eq!(p.document.public_key, Some(&b"my super secret key"[..]));
    assert_eq!(p.document.user_data, Some(&b"hello, world!"[..]));
}

#[test]
fn the_pin_is_the_sha256_of_the_shipped_root_pem() {
    let RootOfTrust::Custom(root) = RootOfTrust::custom_pem(&aws_root_pem()).unwrap() else {
        panic!("custom_pem returned another variant");
    };
    assert_eq!(AwsLc.sha256(&[root.der()]), AWS_NITRO_ROOT_G1_SHA256);
}

#[test]
fn each_fails_one_millisecond_outside_the_leaf_window() {
    for v in VECTORS {
        let doc = load(v);
        let after = UnixMillis(ms(v.leaf_not_after).0 + 1);
        let err = attestation::verify(&doc, &debug_ok(after), &AwsLc).unwrap_err();
        let AttestationError::Certificate(cert) = &err else {
            panic!("{}: {err}", v.dir)
        };
        assert!(cert.position.is_leaf(), "{}: {err}", v.dir);
        assert_eq!(
            cert.kind,
            CertificateErrorKind::Expired {
                not_before: ms(v.leaf_not_before),
                not_after: ms(v.leaf_not_after),
                at: after,
            }
        );
        let text = err.to_string();
        let nb = ms(v.leaf_not_before).to_string();
        let na = ms(v.leaf_not_after).to_string();
        for needle in [
            "leaf certificate",
            v.module_id,
            "expired",
            &nb,
            &na,
            &after.to_string(),
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }

        let before = UnixMillis(ms(v.leaf_not_before).0 - 1);
        let err = attestation::verify(&doc, &debug_ok(before), &AwsLc).unwrap_err();
        assert!(
            err.to_string().contains("not yet valid"),
            "{}: {err}",
            v.dir
        );
    }
}

#[test]
fn each_fails_under_a_different_root() {
    for v in VECTORS {
        let doc = load(v);
        let at = UnixMillis(v.timestamp);
        let parsed = attestation::parse(&doc).unwrap();
        // The regional CA of the same document is a real P-384 CA, but not the root.
        let other = RootOfTrust::custom(parsed.document.cabundle[1].to_vec()).unwrap();
        let err = attestation::verify(&doc, &debug_ok(at).with_root(other), &AwsLc).unwrap_err();
        match &err {
            AttestationError::UntrustedRoot {
                found_subject,
                found_sha256,
                aws_pin: false,
                ..
            } => {
                assert_eq!(found_subject, "aws.nitro-enclaves");
                assert_eq!(found_sha256, &hex::encode(AWS_NITRO_ROOT_G1_SHA256));
            }
            other => panic!("{}: {other}", v.dir),
        }
        assert!(err.to_string().contains("custom root"), "{err}");

        // The same AWS root passed explicitly verifies, and says it was a custom root.
        let aws = RootOfTrust::custom_pem(&aws_root_pem()).unwrap();
        let ok = attestation::verify(&doc, &debug_ok(at).with_root(aws), &AwsLc).unwrap();
        assert_eq!(ok.trust, Trust::CustomRoot);
    }
}

#[test]
fn a_foreign_root_in_cabundle_fails_the_aws_pin() {
    // Replace cabundle[0] by the regional certificate (same length class, parseable).
    let (v, doc) = vector(NONDEBUG_2022);
    let p = attestation::parse(&doc).unwrap();
    let root = p.document.cabundle[0];
    let regional = p.document.cabundle[1];
    // Splice: find root bytes in the document and swap them for another CA's prefix-equal
    // length region is impossible, so rebuild the bstr: header 59 02 15 (533) -> regional.
    let start = root.as_ptr() as usize - doc.as_ptr() as usize;
    let mut forged = doc[..start - 3].to_vec();
    forged.extend_from_slice(&[0x59, (regional.len() >> 8) as u8, regional.len() as u8]);
    forged.extend_from_slice(regional);
    forged.extend_from_slice(&doc[start + root.len()..]);
    // The payload length changed too: patch the payload bstr head (59 hi lo).
    let pstart = p.cose.payload_offset;
    let new_len = p.cose.payload.len() - root.len() + regional.len();
    forged[pstart - 2] = (new_len >> 8) as u8;
    forged[pstart - 1] = new_len as u8;
    let err = attestation::verify(&forged, &debug_ok(UnixMillis(v.timestamp)), &AwsLc).unwrap_err();
    assert!(
        matches!(err, AttestationError::UntrustedRoot { aws_pin: true, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("AWS Nitro Enclaves Root G1"),
        "{err}"
    );
}

#[test]
fn every_single_byte_change_in_the_signed_regions_is_rejected() {
    let (v, doc) = vector(NONDEBUG_2025);
    let options = VerifyOptions::new(UnixMillis(v.timestamp));
    attestation::verify(&doc, &options, &AwsLc).unwrap();
    let parsed = attestation::parse(&doc).unwrap();
    let offset_of = |s: &[u8]| s.as_ptr() as usize - doc.as_ptr() as usize;
    let regions = [
        (
            "protected",
            offset_of(parsed.cose.protected),
            parsed.cose.protected.len(),
        ),
        (
            "payload",
            offset_of(parsed.cose.payload),
            parsed.cose.payload.len(),
        ),
        (
            "signature",
            offset_of(parsed.cose.signature),
            parsed.cose.signature.len(),
        ),
    ];
    assert_eq!(regions[0].2, 4);
    assert_eq!(regions[2].2, 96);
    let mut tampered = doc.clone();
    let mut checked = 0;
    for (name, start, len) in regions {
        for i in start..start + len {
            for flip in [0x01u8, 0x80] {
                tampered[i] ^= flip;
                let result = attestation::verify(&tampered, &options, &AwsLc);
                assert!(result.is_err(), "{name} byte {i} ^ {flip:#x} accepted");
                tampered[i] ^= flip;
                checked += 1;
            }
        }
    }
    assert_eq!(tampered, doc);
    assert_eq!(checked, 2 * (4 + parsed.cose.payload.len() + 96));
}

#[test]
fn signature_tampering_names_the_leaf() {
    let (v, doc) = vector(NONDEBUG_2022);
    let mut t = doc.clone();
    let last = t.len() - 1;
    t[last] ^= 0x55;
    let err =
        attestation::verify(&t, &VerifyOptions::new(UnixMillis(v.timestamp)), &AwsLc).unwrap_err();
    assert_eq!(
        err,
        AttestationError::DocumentSignature {
            leaf_subject: "i-020b6af9246d90e92-enc0183d09086c24190.us-east-1.aws".into()
        }
    );
}

#[test]
fn a_non_ecdsa_sha384_certificate_signature_is_rejected_by_name() {
    // Rewrite ecdsa-with-SHA384 (…04 03 03) to ecdsa-with-SHA256 (…04 03 02) in both places
    // of the zonal certificate: same length, still valid DER.
    let (v, doc) = vector(NONDEBUG_2022);
    let p = attestation::parse(&doc).unwrap();
    let zonal = p.document.cabundle[2];
    let start = zonal.as_ptr() as usize - doc.as_ptr() as usize;
    let oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    let mut t = doc.clone();
    let mut n = 0;
    for i in start..start + zonal.len() - oid.len() {
        if t[i..i + oid.len()] == oid {
            t[i + oid.len() - 1] = 0x02;
            n += 1;
        }
    }
    assert_eq!(n, 2);
    let err =
        attestation::verify(&t, &VerifyOptions::new(UnixMillis(v.timestamp)), &AwsLc).unwrap_err();
    let AttestationError::Certificate(c) = &err else {
        panic!("{err}")
    };
    assert_eq!(c.position.index, 2);
    assert_eq!(
        c.kind,
        CertificateErrorKind::UnsupportedSignatureAlgorithm(
            "ecdsa-with-SHA256 (1.2.840.10045.4.3.2)".into()
        )
    );
    assert!(err.to_string().contains("cabundle[2]"), "{err}");
    assert!(err.to_string().contains("zonal"), "{err}");
}

#[test]
fn a_ca_without_ca_flag_is_rejected() {
    // Flip basicConstraints cA TRUE (01 01 ff) to FALSE (01 01 00) in the regional cert.
    let (v, doc) = vector(NONDEBUG_2022);
    let p = attestation::parse(&doc).unwrap();
    let regional = p.document.cabundle[1];
    let start = regional.as_ptr() as usize - doc.as_ptr() as usize;
    let bc = [0x30, 0x06, 0x01, 0x01, 0xff]; // SEQUENCE { BOOLEAN TRUE, INTEGER 2 }
    let mut t = doc.clone();
    let at = (start..start + regional.len())
        .find(|&i| t[i..i + bc.len()] == bc)
        .unwrap();
    t[at + 4] = 0x00;
    let err =
        attestation::verify(&t, &VerifyOptions::new(UnixMillis(v.timestamp)), &AwsLc).unwrap_err();
    let AttestationError::Certificate(c) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (c.position.index, &c.kind),
        (1, &CertificateErrorKind::NotCa)
    );
}

#[test]
fn debug_documents_fail_by_default_and_pass_when_allowed() {
    for v in VECTORS {
        let doc = load(v);
        let result =
            attestation::verify(&doc, &VerifyOptions::new(UnixMillis(v.timestamp)), &AwsLc);
        if v.debug {
            let err = result.unwrap_err();
            assert_eq!(err, AttestationError::Policy(PolicyError::DebugMode));
            assert!(err.to_string().contains("debug mode"), "{err}");
        } else {
            result.unwrap();
        }
    }
}

#[test]
fn pcr_policy_names_the_pcr_with_expected_and_found() {
    let (v, doc) = vector(NONDEBUG_2025);
    let found = "3aa0e6e6ed7d8301655fced7e6ddcc443a3e57bf62f070caa6becf337069e859\
                 c0f03d68136440ff1cab8adefd20634c";
    let wrong = "11".repeat(48);
    let at = UnixMillis(v.timestamp);
    let ok = Policy::new()
        .expect_pcr_hex(0, found)
        .unwrap()
        .expect_pcr(3, &[0; 48])
        .unwrap();
    attestation::verify(&doc, &VerifyOptions::new(at).with_policy(ok), &AwsLc).unwrap();

    let bad = Policy::new().expect_pcr_hex(0, &wrong).unwrap();
    let err =
        attestation::verify(&doc, &VerifyOptions::new(at).with_policy(bad), &AwsLc).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "PCR0 mismatch: expected {wrong}, found {found}; the enclave is not running the \
             image (or, for PCR3/4, the role/instance) the policy expects"
        )
    );
    // A PCR the document does not have.
    let absent = Policy::new().expect_pcr(20, &[7; 48]).unwrap();
    let err =
        attestation::verify(&doc, &VerifyOptions::new(at).with_policy(absent), &AwsLc).unwrap_err();
    assert_eq!(
        err,
        AttestationError::Policy(PolicyError::PcrMismatch {
            index: 20,
            expected: vec![7; 48],
            found: None
        })
    );
    assert!(err.to_string().contains("found (absent)"), "{err}");
}

#[test]
fn nonce_public_key_and_user_data_policies() {
    let (v, doc) = vector("nitrite-debug-2021-10-28");
    let at = UnixMillis(v.timestamp);
    let nonce = hex::decode("54caa7fdd9c1de6f1206e4900d57b61eb759d628").unwrap();
    let base = Policy::new().allow_debug_mode();
    let opts = |p: Policy| VerifyOptions::new(at).with_policy(p);
    let ok = attestation::verify(&doc, &opts(base.clone().expect_nonce(&nonce)), &AwsLc).unwrap();
    assert_eq!(ok.nonce.as_deref(), Some(&nonce[..]));

    let err =
        attestation::verify(&doc, &opts(base.clone().expect_nonce(b"fresh")), &AwsLc).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nonce mismatch: expected 6672657368, found 54caa7fdd9c1de6f1206e4900d57b61eb759d628; \
         the document is not a fresh answer to this challenge (replayed, or requested with \
         another nonce)"
    );
    // Empty public_key present: requiring it empty passes, requiring a key fails.
    attestation::verify(&doc, &opts(base.clone().require_public_key(&[])), &AwsLc).unwrap();
    let err = attestation::verify(&doc, &opts(base.clone().require_public_key(b"k")), &AwsLc)
        .unwrap_err();
    assert_eq!(
        err,
        AttestationError::Policy(PolicyError::PublicKeyMismatch {
            expected: b"k".to_vec(),
            found: Some(Vec::new())
        })
    );
    let err =
        attestation::verify(&doc, &opts(base.clone().require_user_data(b"x")), &AwsLc).unwrap_err();
    assert!(matches!(
        err,
        AttestationError::Policy(PolicyError::UserDataMismatch { .. })
    ));

    // A document whose nonce is null.
    let (v, doc) = vector(NONDEBUG_2025);
    let err = attestation::verify(
        &doc,
        &VerifyOptions::new(UnixMillis(v.timestamp)).with_policy(Policy::new().expect_nonce(b"n")),
        &AwsLc,
    )
    .unwrap_err();
    assert_eq!(
        err,
        AttestationError::Policy(PolicyError::NonceMismatch {
            expected: b"n".to_vec(),
            found: None
        })
    );
}

#[test]
fn policy_from_measurements_json_in_both_formats() {
    let (v, doc) = vector(NONDEBUG_2022);
    let at = UnixMillis(v.timestamp);
    let pcr0 = "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b";
    let pcr1 = "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f";
    let pcr2 = "d8f114da658de5481f8d9ec73907feb553560787522f705c92d7d96beed8e15e2aa611984e098c576832c292e8dc469a";
    let pcr8 = "8790eb3cce6c83d07e84b126dc61ca923333d6f66615c4a79157de48c5ab2418bdc60746ea7b7afbff03a1c6210201cb";
    let ours = format!(
        r#"{{"version": "0.1.0", "build_timestamp": "2026-01-01T00:00:00Z",
            "measurements": {{"PCR0": "{pcr0}", "PCR1": "{pcr1}", "PCR2": "{pcr2}", "PCR8": "{pcr8}"}},
            "kms_policy_conditions": {{"kms:RecipientAttestation:ImageSha384": "{pcr0}"}},
            "verification": "cargo xtask release --verify"}}"#
    );
    let nitro_cli = format!(
        r#"{{"Measurements": {{"HashAlgorithm": "Sha384 {{ ... }}", "PCR0": "{pcr0}",
            "PCR1": "{pcr1}", "PCR2": "{pcr2}"}}}}"#
    );
    for json in [&ours, &nitro_cli] {
        let policy = Policy::from_measurements_json(json).unwrap();
        assert!(policy.expected_pcrs().len() >= 3);
        attestation::verify(&doc, &VerifyOptions::new(at).with_policy(policy), &AwsLc).unwrap();
    }
    // The same file against another image fails on PCR0.
    let (v2, doc2) = vector(NONDEBUG_2025);
    let err = attestation::verify(
        &doc2,
        &VerifyOptions::new(UnixMillis(v2.timestamp))
            .with_policy(Policy::from_measurements_json(&ours).unwrap()),
        &AwsLc,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AttestationError::Policy(PolicyError::PcrMismatch { index: 0, .. })
        ),
        "{err}"
    );

    for (bad, needle) in [
        ("[]", "not an object"),
        ("{}", "no \"measurements\""),
        (r#"{"measurements": {}}"#, "lists no PCRs"),
        (r#"{"measurements": {"PCR0": "zz"}}"#, "not hex"),
        (r#"{"measurements": {"PCR0": "00"}}"#, "1 bytes"),
        (
            r#"{"measurements": {"PCR32": "00"}}"#,
            "unexpected measurement key",
        ),
        (
            r#"{"measurements": {"Foo": "00"}}"#,
            "unexpected measurement key",
        ),
        (r#"{"measurements": {"PCR0": 5}}"#, "not a string"),
        (r#"{"measurements": {}, "Measurements": {}}"#, "both"),
        ("{", "does not parse"),
    ] {
        let err = Policy::from_measurements_json(bad).unwrap_err();
        assert!(
            matches!(&err, AttestationError::InvalidInput(m) if m.contains(needle)),
            "{bad}: {err}"
        );
    }
}

#[test]
fn every_truncation_of_a_real_document_is_an_error() {
    for dir in [NONDEBUG_2025, NONDEBUG_2022] {
        let (_, doc) = vector(dir);
        for end in 0..doc.len() {
            assert!(
                attestation::parse(&doc[..end]).is_err(),
                "{dir}: prefix {end} parsed"
            );
        }
        let mut longer = doc.clone();
        longer.push(0);
        let err = attestation::parse(&longer).unwrap_err();
        assert!(
            err.to_string().contains(&format!("at byte {}", doc.len())),
            "{err}"
        );
    }
}

#[test]
fn real_documents_in_insecure_qemu_mode_are_refused() {
    let (v, doc) = vector(NONDEBUG_2022);
    let err = attestation::verify(
        &doc,
        &VerifyOptions::new(UnixMillis(v.timestamp)).with_root(RootOfTrust::InsecureQemuUnsigned),
        &AwsLc,
    )
    .unwrap_err();
    assert!(matches!(err, AttestationError::NotQemuUnsigned(_)), "{err}");
}

#[test]
fn agrees_with_the_aws_nsm_api_parser() {
    // aws-nitro-enclaves-nsm-api (AWS's own serde_cbor model) reads the same fields.
    for v in VECTORS {
        let doc = load(v);
        let ours = attestation::parse(&doc).unwrap();
        let theirs =
            aws_nitro_enclaves_nsm_api::api::AttestationDoc::from_binary(ours.cose.payload)
                .unwrap();
        assert_eq!(theirs.module_id, ours.document.module_id);
        assert_eq!(theirs.timestamp, ours.document.timestamp.0);
        assert_eq!(theirs.certificate.as_slice(), ours.document.certificate);
        assert_eq!(theirs.cabundle.len(), ours.document.cabundle.len());
        assert_eq!(theirs.pcrs.len(), ours.document.pcrs.len());
        for (i, value) in &theirs.pcrs {
            assert_eq!(Some(value.as_slice()), ours.document.pcrs.get(*i as u8));
        }
        assert_eq!(
            theirs.nonce.as_ref().map(|b| b.as_slice()),
            ours.document.nonce
        );
        assert_eq!(
            theirs.user_data.as_ref().map(|b| b.as_slice()),
            ours.document.user_data
        );
        assert_eq!(
            theirs.public_key.as_ref().map(|b| b.as_slice()),
            ours.document.public_key
        );
    }
}
