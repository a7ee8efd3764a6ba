//! CMS `CiphertextForRecipient` against the committed vectors (`tests/vectors/kms-cms-vectors`): every manifest entry behaves as the
//! manifest says (real KMS responses, generated KMS-layout, BER/DER variants, openssl output,
//! negatives), every truncation of a valid vector is rejected, byte flips never panic and never
//! yield the original plaintext from a tampered envelope. The builder's output is decrypted by
//! our parser and by openssl, and has the byte layout of real KMS responses.
#![cfg(feature = "aws-lc")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use ccc_sdk::cms::{self, BerProblem, CmsError, build::ContentLayout};
use ccc_sdk::crypto::{AwsLc, AwsLcRsaKey, RsaDecryptionKey};
use ccc_test_vectors as vectors;
use common::pkcs8_der;
use serde_json::Value;
use std::io::Write as _;
use std::process::{Command, Stdio};

const VECTORS: &str = "kms-cms-vectors";

fn manifest() -> Value {
    serde_json::from_str(&vectors::read_text(format!("{VECTORS}/manifest.json"))).unwrap()
}

fn vector_bytes(relative: &str) -> Vec<u8> {
    vectors::read(format!("{VECTORS}/{relative}"))
}

fn load_key(relative: &str) -> AwsLcRsaKey {
    let pem = String::from_utf8(vector_bytes(relative)).unwrap();
    AwsLcRsaKey::from_pkcs8(&pkcs8_der(&pem)).unwrap()
}

fn recipient_key() -> AwsLcRsaKey {
    load_key("generated/keys/recipient-key.pem")
}

/// What each must-reject vector must be rejected for (the error names what was found).
fn expected_rejection(file: &str) -> (fn(&CmsError) -> bool, &'static str) {
    let name = file.rsplit('/').next().unwrap();
    match name {
        "neg-pkcs1v15-key-transport.ber" | "openssl-neg-pkcs1v15.ber" => (
            |e| {
                matches!(
                    e,
                    CmsError::Unsupported {
                        element: "key transport",
                        ..
                    }
                )
            },
            "key transport is rsaEncryption (PKCS#1 v1.5); KMS uses RSAES-OAEP-SHA-256 only",
        ),
        "neg-oaep-sha1-default-params.ber" => (
            |e| {
                matches!(
                    e,
                    CmsError::Unsupported {
                        element: "OAEP hash",
                        ..
                    }
                )
            },
            "absent (the SHA-1 default)",
        ),
        "neg-issuer-serial-recipient-v0.ber" | "openssl-neg-issuer-serial-v0.ber" => (
            |e| {
                matches!(
                    e,
                    CmsError::Unsupported {
                        element: "EnvelopedData version",
                        ..
                    }
                )
            },
            "version is 0; KMS sends version 2",
        ),
        "neg-aes128-cbc.ber" | "openssl-neg-aes128-cbc.ber" => (
            |e| {
                matches!(
                    e,
                    CmsError::Unsupported {
                        element: "content encryption",
                        ..
                    }
                )
            },
            "aes128-CBC (2.16.840.1.101.3.4.1.2); KMS uses aes256-CBC only",
        ),
        "neg-wrong-key.ber" | "neg-ski-mismatch-correct-key.ber" => (
            |e| matches!(e, CmsError::RecipientMismatch { .. }),
            "KMS encrypted to another public key",
        ),
        "neg-bad-pkcs7-padding.ber" => (|e| *e == CmsError::Decrypt, "did not decrypt"),
        "neg-truncated-header-10.ber"
        | "neg-truncated-in-encrypted-key-200.ber"
        | "neg-truncated-in-content-463.ber" => (
            |e| matches!(e, CmsError::Malformed(b) if b.problem == BerProblem::Truncated),
            "truncated",
        ),
        "neg-truncated-missing-last-eoc-491.ber" | "neg-truncated-missing-all-eocs-483.ber" => (
            |e| matches!(e, CmsError::Malformed(b) if b.problem == BerProblem::Unterminated),
            "without its end-of-contents",
        ),
        "neg-trailing-garbage.ber" | "neg-trailing-eoc.ber" => (
            |e| matches!(e, CmsError::Malformed(b) if b.problem == BerProblem::TrailingData),
            "unexpected bytes after the last element",
        ),
        other => panic!("no expected rejection recorded for {other}"),
    }
}

#[test]
fn every_manifest_vector_behaves_as_the_manifest_says() {
    let manifest = manifest();
    let vectors = manifest["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 39);
    let recipient = recipient_key();
    assert_eq!(
        hex::encode(cms::recipient_key_id(&AwsLc, recipient.public_key_spki())),
        manifest["recipient_ski_sha256_spki"].as_str().unwrap()
    );
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for v in vectors {
        let file = v["file"].as_str().unwrap();
        let bytes = vector_bytes(file);
        assert_eq!(bytes.len() as u64, v["length"].as_u64().unwrap(), "{file}");
        assert_eq!(
            hex::encode(ccc_sdk::crypto::Crypto::sha256(&AwsLc, &[&bytes])),
            v["sha256"].as_str().unwrap(),
            "{file}: corrupted checkout"
        );
        let key = v["key"].as_str().map(load_key);
        let expect = v["expect"].as_str().unwrap();
        *counts.entry(expect).or_default() += 1;
        match expect {
            "decrypt" => {
                let key = key.unwrap();
                let plaintext = vector_bytes(v["plaintext"].as_str().unwrap());
                let opened =
                    cms::decrypt(&bytes, &AwsLc, &key).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(opened.expose(), plaintext, "{file}");
                // Where the manifest records the CEK and IV, the parts agree with them.
                if let (Some(cek), Some(iv)) = (v["cek_hex"].as_str(), v["iv_hex"].as_str()) {
                    let parsed = cms::parse(&bytes).unwrap();
                    assert_eq!(hex::encode(parsed.iv), iv, "{file}");
                    let unwrapped = key.decrypt_oaep_sha256(parsed.encrypted_key).unwrap();
                    assert_eq!(hex::encode(unwrapped.expose()), cek, "{file}");
                }
            }
            "parse" => {
                let parsed = cms::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
                let expected = |field: &str| vector_bytes(v[field].as_str().unwrap());
                assert_eq!(
                    parsed.encrypted_key,
                    expected("expected_encrypted_key"),
                    "{file}"
                );
                assert_eq!(parsed.iv.as_slice(), expected("expected_iv"), "{file}");
                assert_eq!(
                    parsed.encrypted_content.as_ref(),
                    expected("expected_encrypted_content"),
                    "{file}"
                );
                assert_eq!(parsed.recipient_key_id.len(), 32, "{file}");
                // Not our key: decryption refuses on the recipient id, before any RSA.
                assert!(matches!(
                    parsed.decrypt(&AwsLc, &recipient),
                    Err(CmsError::RecipientMismatch { .. })
                ));
            }
            "reject" | "reject-if-ski-checked" => {
                let key = key.unwrap_or_else(recipient_key);
                let error = cms::decrypt(&bytes, &AwsLc, &key)
                    .map(|p| p.len())
                    .expect_err(file);
                let (matches, message) = expected_rejection(file);
                assert!(matches(&error), "{file}: wrong rejection {error:?}");
                assert!(
                    error.to_string().contains(message),
                    "{file}: message {:?} lacks {message:?}",
                    error.to_string()
                );
                eprintln!("{file}: {error}");
            }
            other => panic!("{file}: unknown expectation {other}"),
        }
    }
    assert_eq!(counts["decrypt"], 20);
    assert_eq!(counts["parse"], 2);
    assert_eq!(counts["reject"] + counts["reject-if-ski-checked"], 17);
}

#[test]
fn every_truncation_of_every_valid_vector_is_rejected() {
    let recipient = recipient_key();
    let manifest = manifest();
    let mut checked = 0usize;
    for v in manifest["vectors"].as_array().unwrap() {
        if !matches!(v["expect"].as_str(), Some("decrypt" | "parse")) {
            continue;
        }
        let bytes = vector_bytes(v["file"].as_str().unwrap());
        for end in 0..bytes.len() {
            let result = cms::decrypt(&bytes[..end], &AwsLc, &recipient);
            assert!(
                matches!(result, Err(CmsError::Malformed(_))),
                "{} cut at {end}: {result:?}",
                v["file"]
            );
            checked += 1;
        }
    }
    assert!(checked > 20_000, "{checked}");
}

/// Byte range of `part` inside `whole` (a sub-slice).
fn range_of(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    assert!(start + part.len() <= whole.len());
    start..start + part.len()
}

fn iv_range(whole: &[u8], iv: &[u8; 16]) -> std::ops::Range<usize> {
    let start = whole.windows(16).position(|w| w == iv).unwrap();
    start..start + 16
}

#[test]
fn single_byte_flips_never_panic_or_return_the_plaintext() {
    let recipient = recipient_key();
    for file in [
        "generated/kms-layout/kms-chunked-0032.ber",
        "generated/kms-layout/kms-primitive-0016.ber",
    ] {
        let original = vector_bytes(file);
        let plaintext = cms::decrypt(&original, &AwsLc, &recipient).unwrap();
        let parsed = cms::parse(&original).unwrap();
        let ski = range_of(&original, parsed.recipient_key_id);
        let wrapped = range_of(&original, parsed.encrypted_key);
        let iv = iv_range(&original, &parsed.iv);
        let content = range_of(&original, &parsed.encrypted_content);
        for i in 0..original.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut tampered = original.clone();
                tampered[i] ^= mask;
                let result = cms::decrypt(&tampered, &AwsLc, &recipient);
                let at = format!("{file} byte {i} ^ {mask:#04x}: {result:?}");
                if ski.contains(&i) {
                    assert!(
                        matches!(result, Err(CmsError::RecipientMismatch { .. })),
                        "{at}"
                    );
                } else if wrapped.contains(&i) {
                    assert_eq!(result, Err(CmsError::Decrypt), "{at}");
                } else if iv.contains(&i) || content.contains(&i) {
                    // CBC is malleable: a flip may still unpad, but never to the plaintext.
                    if let Ok(p) = result {
                        assert_ne!(p.expose(), plaintext.expose(), "{at}");
                    }
                } else {
                    // Every structural byte matters.
                    assert!(result.is_err(), "{at}");
                }
            }
        }
    }
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Random edits (replace, insert, delete runs) of a valid vector never panic.
        #[test]
        fn random_edits_never_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>(), 1usize..8), 1..6)
        ) {
            let mut bytes = vector_bytes("generated/negative/base-valid-for-truncation.ber");
            for (index, kind, byte, run) in edits {
                let at = index.index(bytes.len());
                match kind {
                    0 => bytes[at] = byte,
                    1 => { for _ in 0..run { bytes.insert(at, byte); } }
                    _ => { let end = (at + run).min(bytes.len()); bytes.drain(at..end); }
                }
            }
            let _ = cms::parse(&bytes);
        }
    }
}

/// `openssl cms -decrypt` of `envelope` with the key in `pem_path`.
fn openssl_decrypt(envelope: &[u8], pem_path: &std::path::Path) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["cms", "-decrypt", "-binary", "-inform", "DER", "-inkey"])
        .arg(pem_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is needed for this test (apt-get install openssl)");
    child.stdin.take().unwrap().write_all(envelope).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl cms -decrypt failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn built_envelopes_decrypt_with_openssl_and_with_our_parser() {
    let recipient = recipient_key();
    let pem = vectors::path(format!("{VECTORS}/generated/keys/recipient-key.pem"));
    for len in [0usize, 1, 16, 33, 4096] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        for layout in [ContentLayout::Chunked, ContentLayout::Primitive] {
            let envelope =
                cms::build::build(recipient.public_key_spki(), &plaintext, layout).unwrap();
            assert_eq!(
                openssl_decrypt(&envelope, &pem),
                plaintext,
                "{len} {layout:?}"
            );
            assert_eq!(
                cms::decrypt(&envelope, &AwsLc, &recipient)
                    .unwrap()
                    .expose(),
                plaintext
            );
        }
    }
}

/// The bytes with the random fields (recipient id, wrapped key, IV, ciphertext) zeroed.
fn masked(bytes: &[u8]) -> Vec<u8> {
    let parsed = cms::parse(bytes).unwrap();
    let mut out = bytes.to_vec();
    for range in [
        range_of(bytes, parsed.recipient_key_id),
        range_of(bytes, parsed.encrypted_key),
        iv_range(bytes, &parsed.iv),
        range_of(bytes, &parsed.encrypted_content),
    ] {
        out[range].fill(0);
    }
    out
}

#[test]
fn built_layout_matches_real_kms_responses_byte_for_byte_outside_random_fields() {
    let recipient = recipient_key();
    for (real, plaintext_len, layout) in [
        (
            "real-kms/sdk-c-vector1-chunked/ciphertext-for-recipient.ber",
            32,
            ContentLayout::Chunked,
        ),
        (
            "real-kms/sdk-c-vector2-primitive/ciphertext-for-recipient.ber",
            12,
            ContentLayout::Primitive,
        ),
        (
            "real-kms/enclaver-hello-world/ciphertext-for-recipient.ber",
            12,
            ContentLayout::Chunked,
        ),
    ] {
        let real = vector_bytes(real);
        let built = cms::build::build(
            recipient.public_key_spki(),
            &vec![0x5a; plaintext_len],
            layout,
        )
        .unwrap();
        assert_eq!(built.len(), real.len());
        assert_eq!(masked(&built), masked(&real));
        // And the masks covered what they should: unmasked, the random fields differ.
        assert_ne!(built, real);
    }
}

#[test]
fn error_messages_name_what_was_found() {
    let bytes = vector_bytes("generated/negative/neg-pkcs1v15-key-transport.ber");
    let error = cms::parse(&bytes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "CMS key transport is rsaEncryption (PKCS#1 v1.5); KMS uses RSAES-OAEP-SHA-256 only \
         (byte 67)"
    );
}

/// RSA-OAEP-SHA-256 of `cek` to the recipient key (what KMS does with a 32-byte key).
fn oaep_wrap(spki: &[u8], cek: &[u8]) -> Vec<u8> {
    use aws_lc_rs::rsa;
    let public = rsa::PublicEncryptingKey::from_der(spki).unwrap();
    let public = rsa::OaepPublicEncryptingKey::new(public).unwrap();
    let mut out = vec![0u8; public.ciphertext_size()];
    public
        .encrypt(&rsa::OAEP_SHA256_MGF1SHA256, cek, &mut out, None)
        .unwrap()
        .to_vec()
}

/// The padding-oracle attack surface: once the envelope is addressed to this key, a wrapped
/// key that does not decode, a content key of another length, a last padding byte of 0 or
/// 17, or a padding byte that disagrees all give one error with one message, and no plaintext.
/// (That the same work is done for each is measured, not asserted: `cargo xtask bench ct`.)
#[test]
fn every_failure_after_the_recipient_check_is_one_error() {
    let recipient = recipient_key();
    let spki = recipient.public_key_spki().to_vec();
    let cek = [0x11u8; 32];
    let iv = [0x22u8; 16];
    // 20 bytes: two blocks, the second holding 4 data bytes and 12 bytes of padding 0x0c.
    let plaintext = b"twenty bytes of data";
    let original =
        cms::build::build_with(&spki, plaintext, &cek, &iv, ContentLayout::Primitive).unwrap();
    assert_eq!(
        cms::decrypt(&original, &AwsLc, &recipient)
            .unwrap()
            .expose(),
        plaintext
    );
    let parsed = cms::parse(&original).unwrap();
    let wrapped = range_of(&original, parsed.encrypted_key);
    let content = range_of(&original, &parsed.encrypted_content);
    // In CBC, flipping bit b of ciphertext block 1 flips bit b of plaintext block 2.
    let previous_block = content.start;
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut envelope = original.clone();
        edit(&mut envelope);
        envelope
    };
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "a wrapped key that does not decode",
            with(&|e| e[wrapped.start + 9] ^= 0x40),
        ),
        (
            "a 16-byte content key",
            with(&|e| {
                e[wrapped.clone()].copy_from_slice(&oaep_wrap(&spki, &[0x11; 16]));
            }),
        ),
        (
            "a 33-byte content key",
            with(&|e| {
                e[wrapped.clone()].copy_from_slice(&oaep_wrap(&spki, &[0x11; 33]));
            }),
        ),
        (
            "another 32-byte content key",
            with(&|e| {
                e[wrapped.clone()].copy_from_slice(&oaep_wrap(&spki, &[0x12; 32]));
            }),
        ),
        (
            "last padding byte 0",
            with(&|e| e[previous_block + 15] ^= 0x0c),
        ),
        (
            "last padding byte 17",
            with(&|e| e[previous_block + 15] ^= 0x0c ^ 0x11),
        ),
        (
            "a padding byte that disagrees",
            with(&|e| e[previous_block + 8] ^= 0x01),
        ),
    ];
    let mut messages = std::collections::BTreeSet::new();
    for (what, envelope) in &cases {
        let result = cms::decrypt(envelope, &AwsLc, &recipient);
        assert_eq!(result, Err(CmsError::Decrypt), "{what}");
        messages.insert(result.unwrap_err().to_string());
    }
    assert_eq!(messages.len(), 1, "{messages:?}");
    // The same edit that leaves a valid padding (1) opens, to 31 bytes: the check is real.
    let one = with(&|e| e[previous_block + 15] ^= 0x0c ^ 0x01);
    assert_eq!(cms::decrypt(&one, &AwsLc, &recipient).unwrap().len(), 31);
    // Before any key operation, public bytes still get their own diagnosis.
    let other_key = AwsLcRsaKey::generate().unwrap();
    assert!(matches!(
        cms::decrypt(&original, &AwsLc, &other_key),
        Err(CmsError::RecipientMismatch { .. })
    ));
}
