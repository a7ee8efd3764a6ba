//! The reader on malformed images: every truncation, every single-byte corruption, bad
//! magic/version/flags/counts/tables, wrong sizes, unknown or misplaced sections, bad
//! metadata and signatures, trailing bytes. Each is rejected with the right byte offset and
//! reason, and nothing panics (property tests over random mutations).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)] // test code: a panic is a failure

mod common;

use ccc_eif::format::{HEADER_LEN, SECTION_HEADER_LEN};
use ccc_eif::{
    BuildInfo, Eif, EifBuilder, EifError, EifIdentity, LocalSigner, Place, SourceDateEpoch,
};
use proptest::prelude::*;

fn identity() -> EifIdentity {
    EifIdentity::new(
        "bad",
        "1",
        BuildInfo::new(
            SourceDateEpoch::from_secs(1_700_000_000),
            "t",
            "0",
            "Linux",
            "6",
        ),
    )
}

/// A valid signed image with every section kind: kernel, cmdline, metadata, 2 ramdisks,
/// signature.
fn signed() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["s".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let signer =
        LocalSigner::from_pem(key.serialize_pem().as_bytes(), cert.pem().as_bytes()).unwrap();
    let (kernel, r0, r1) = (
        common::bytes(1, 301),
        common::bytes(2, 124),
        common::bytes(3, 57),
    );
    EifBuilder::new(&kernel, "console=ttyS0", identity())
        .ramdisk(&r0)
        .ramdisk(&r1)
        .signer(&signer)
        .to_vec()
        .unwrap()
        .0
}

/// Section header offsets of a valid image.
fn section_offsets(bytes: &[u8]) -> Vec<u64> {
    Eif::from_bytes(bytes)
        .unwrap()
        .sections
        .iter()
        .map(|s| s.offset)
        .collect()
}

/// An image from raw (type, data) sections with a consistent table and CRC: an
/// independent implementation of the layout, used to craft rule violations the builder
/// cannot produce.
fn craft(version: u16, sections: &[(u16, &[u8])]) -> Vec<u8> {
    let mut header = vec![0u8; HEADER_LEN as usize];
    header[..4].copy_from_slice(b".eif");
    header[4..6].copy_from_slice(&version.to_be_bytes());
    header[8..16].copy_from_slice(&(1u64 << 30).to_be_bytes());
    header[16..24].copy_from_slice(&2u64.to_be_bytes());
    header[0x1a..0x1c].copy_from_slice(&(sections.len() as u16).to_be_bytes());
    let mut body = Vec::new();
    for (i, (kind, data)) in sections.iter().enumerate() {
        let offset = HEADER_LEN + body.len() as u64;
        header[0x1c + 8 * i..0x24 + 8 * i].copy_from_slice(&offset.to_be_bytes());
        header[0x11c + 8 * i..0x124 + 8 * i].copy_from_slice(&(data.len() as u64).to_be_bytes());
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&(data.len() as u64).to_be_bytes());
        body.extend_from_slice(data);
    }
    let mut file = header;
    file.extend_from_slice(&body);
    fix_crc(&mut file);
    file
}

fn fix_crc(file: &mut [u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&file[..0x220]);
    crc.update(&file[0x224..]);
    let crc = crc.finalize();
    file[0x220..0x224].copy_from_slice(&crc.to_be_bytes());
}

fn metadata() -> Vec<u8> {
    identity().to_json().unwrap()
}

/// The rejection, asserting its offset and that its message names `words`.
fn rejected(bytes: &[u8], offset: u64, words: &str) -> EifError {
    let err = Eif::from_bytes(bytes).expect_err("must be rejected");
    assert_eq!(err.offset(), offset, "offset of: {err}");
    let message = err.to_string();
    assert!(
        message.contains(words),
        "{message:?} should mention {words:?}"
    );
    assert!(
        message.contains(&format!("byte {offset}")),
        "{message:?} should give the offset"
    );
    // The streaming reader agrees with the in-memory one.
    let streamed = Eif::read(bytes).expect_err("streaming reader rejects too");
    assert_eq!(streamed.offset(), offset);
    err
}

#[test]
fn crafted_images_are_valid_to_start_with() {
    let m = metadata();
    let ok = craft(4, &[(1, b"k"), (2, b"c"), (5, &m), (3, b"r0"), (3, b"r1")]);
    Eif::from_bytes(&ok).unwrap();
    // Other orders are allowed by the format, and v2/v3 need no metadata.
    Eif::from_bytes(&craft(4, &[(5, &m), (2, b"c"), (1, b"k"), (3, b"r")])).unwrap();
    Eif::from_bytes(&craft(2, &[(1, b"k"), (2, b"c")])).unwrap();
    Eif::from_bytes(&craft(3, &[(1, b"k"), (2, b"c"), (3, b"r")])).unwrap();
}

#[test]
fn every_truncation_is_reported_where_the_file_ends() {
    let bytes = signed();
    for len in 0..bytes.len() {
        let err = Eif::from_bytes(&bytes[..len]).expect_err("truncated");
        assert!(
            matches!(err, EifError::Truncated { .. }),
            "len {len}: {err}"
        );
        assert_eq!(err.offset(), len as u64, "len {len}: {err}");
        assert!(err.to_string().contains("truncated"));
    }
}

#[test]
fn every_single_byte_corruption_is_rejected() {
    let bytes = signed();
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[at] ^= flip;
            assert!(
                Eif::from_bytes(&bad).is_err(),
                "flip {flip:#x} at {at} accepted"
            );
        }
    }
}

#[test]
fn header_fields() {
    let good = signed();
    let with = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        fix_crc(&mut b);
        b
    };
    rejected(&with(0, b"EIF."), 0, "magic");
    rejected(&with(3, b"g"), 0, "magic");
    rejected(&b".ei"[..], 3, "truncated");
    rejected(&b"MZ"[..], 0, "magic");
    rejected(&with(4, &1u16.to_be_bytes()), 4, "version");
    rejected(&with(4, &5u16.to_be_bytes()), 4, "version");
    rejected(&with(6, &2u16.to_be_bytes()), 6, "flags");
    rejected(&with(0x18, &1u16.to_be_bytes()), 0x18, "reserved");
    rejected(&with(0x1a, &1u16.to_be_bytes()), 0x1a, "num_sections");
    rejected(&with(0x1a, &33u16.to_be_bytes()), 0x1a, "num_sections");
    // An entry past num_sections (6) in each table.
    rejected(
        &with(0x1c + 8 * 6, &[0, 0, 0, 0, 0, 0, 0, 1]),
        0x1c + 8 * 6,
        "section_offsets[6]",
    );
    rejected(
        &with(0x11c + 8 * 31, &[0, 0, 0, 0, 0, 0, 0, 1]),
        0x11c + 8 * 31,
        "section_sizes[31]",
    );
    rejected(&with(0x21c, &[0, 0, 0, 1]), 0x21c, "unused");
    // A wrong offset in the table.
    rejected(
        &with(0x1c + 8 * 2, &[0, 0, 0, 0, 0, 0, 0, 9]),
        0x1c + 8 * 2,
        "section_offsets[2]",
    );
}

#[test]
fn invalid_fields_are_named_by_fixed_words_and_their_place() {
    let good = signed();
    let with = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        fix_crc(&mut b);
        b
    };
    let invalid = |bytes: &[u8]| match Eif::from_bytes(bytes).unwrap_err() {
        EifError::Invalid { field, place, .. } => (field, place),
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(
        invalid(&with(4, &1u16.to_be_bytes())),
        ("version", Place::Header)
    );
    assert_eq!(
        invalid(&with(0x1c + 8 * 6, &[0, 0, 0, 0, 0, 0, 0, 1])),
        ("section_offsets", Place::Entry(6))
    );
    let first = section_offsets(&good)[1] as usize;
    let (field, place) = invalid(&with(first + 2, &[0, 1]));
    assert_eq!(field, "flags");
    assert!(
        matches!(
            place,
            Place::Section {
                index: 1,
                kind: Some(_)
            }
        ),
        "{place:?}"
    );
    let (field, place) = invalid(&with(first, &0u16.to_be_bytes()));
    assert_eq!(
        (field, place),
        (
            "section_type",
            Place::Section {
                index: 1,
                kind: None
            }
        )
    );
}

#[test]
fn crc() {
    let mut bad = signed();
    bad[0x221] ^= 0xff;
    let err = rejected(&bad, 0x220, "eif_crc32");
    assert!(matches!(err, EifError::CrcMismatch { .. }));
    // A flipped data byte in the application ramdisk is a CRC error too.
    let mut bad = signed();
    let ramdisk1 = Eif::from_bytes(&bad).unwrap().sections[4];
    bad[ramdisk1.data_offset() as usize + 5] ^= 1;
    rejected(&bad, 0x220, "modified or corrupted");
}

#[test]
fn section_headers() {
    let good = signed();
    let offsets = section_offsets(&good);
    let with = |at: u64, value: &[u8]| {
        let mut b = good.clone();
        b[at as usize..at as usize + value.len()].copy_from_slice(value);
        fix_crc(&mut b);
        b
    };
    for kind in [0u16, 6, 0xffff] {
        rejected(
            &with(offsets[3], &kind.to_be_bytes()),
            offsets[3],
            "section_type",
        );
    }
    rejected(&with(offsets[1] + 2, &[0, 1]), offsets[1] + 2, "flags");
    // Section size disagrees with the table.
    rejected(
        &with(offsets[0] + 4, &302u64.to_be_bytes()),
        offsets[0] + 4,
        "section_size",
    );
    // Table and section agree but claim more data than the file has: the last section is
    // truncated at the end of the file.
    let last = offsets.len() - 1;
    let sig_size = u64::from_be_bytes(
        good[offsets[last] as usize + 4..offsets[last] as usize + 12]
            .try_into()
            .unwrap(),
    );
    let mut longer = with(offsets[last] + 4, &(sig_size + 1).to_be_bytes());
    longer[0x11c + 8 * last..0x124 + 8 * last].copy_from_slice(&(sig_size + 1).to_be_bytes());
    fix_crc(&mut longer);
    rejected(&longer, good.len() as u64, "truncated");
    // ... or less: the next table offset no longer matches.
    let mut shorter = with(offsets[0] + 4, &300u64.to_be_bytes());
    shorter[0x11c..0x124].copy_from_slice(&300u64.to_be_bytes());
    fix_crc(&mut shorter);
    rejected(&shorter, 0x1c + 8, "section_offsets[1]");
    // A size that overflows the offset space.
    let mut huge = with(offsets[0] + 4, &u64::MAX.to_be_bytes());
    huge[0x11c..0x124].copy_from_slice(&u64::MAX.to_be_bytes());
    fix_crc(&mut huge);
    rejected(&huge, offsets[0] + 4, "section_size");
}

#[test]
fn section_rules() {
    let m = metadata();
    let pos = |i: usize, sections: &[(u16, &[u8])]| {
        HEADER_LEN
            + sections[..i]
                .iter()
                .map(|(_, d)| SECTION_HEADER_LEN + d.len() as u64)
                .sum::<u64>()
    };
    // (version, sections, index of the offending section, words in the message)
    type Case<'a> = (u16, Vec<(u16, &'a [u8])>, usize, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            4,
            vec![(1, b"k"), (1, b"k"), (2, b"c"), (5, &m)],
            1,
            "at most one kernel",
        ),
        (
            4,
            vec![(1, b"k"), (2, b"c"), (2, b"c"), (5, &m)],
            2,
            "at most one cmdline",
        ),
        (
            4,
            vec![(1, b"k"), (2, b"c"), (5, &m), (5, &m)],
            3,
            "at most one metadata",
        ),
        (
            4,
            vec![(3, b"r"), (1, b"k"), (2, b"c"), (5, &m)],
            0,
            "ramdisks after the kernel",
        ),
        (
            3,
            vec![(1, b"k"), (2, b"c"), (5, &m)],
            2,
            "introduced in version 4",
        ),
        (
            2,
            vec![(1, b"k"), (2, b"c"), (4, b"\x80")],
            2,
            "introduced in version 3",
        ),
    ];
    for (version, sections, index, words) in &cases {
        let file = craft(*version, sections);
        rejected(&file, pos(*index, sections), words);
    }
    // Missing mandatory sections are reported against num_sections.
    rejected(&craft(4, &[(1, b"k"), (2, b"c")]), 0x1a, "metadata");
    rejected(&craft(4, &[(1, b"k"), (5, &m)]), 0x1a, "cmdline");
    rejected(&craft(4, &[(2, b"c"), (5, &m)]), 0x1a, "kernel");
    // Size limits of the sections kept in memory.
    let long_cmdline = vec![b'a'; 64 * 1024 + 1];
    rejected(
        &craft(4, &[(1, b"k"), (2, &long_cmdline), (5, &m)]),
        pos(1, &[(1, b"k")]) + 4,
        "at most 65536",
    );
    let big_signature = vec![0u8; 32 * 1024 + 1];
    let s = [(1, &b"k"[..]), (2, b"c"), (5, &m), (4, &big_signature)];
    rejected(&craft(4, &s), pos(3, &s) + 4, "at most 32768");
}

#[test]
fn metadata_and_signature_contents() {
    let s = [(1u16, &b"k"[..]), (2, b"c"), (5, b"{\"ImageName\": 1}")];
    let data_at = HEADER_LEN + 2 * SECTION_HEADER_LEN + 2 + SECTION_HEADER_LEN;
    // serde_json reports the error at the value (column 15 of the JSON).
    rejected(&craft(4, &s), data_at + 14, "metadata");
    // "not json": serde_json stops at the second byte (`o` cannot follow `n`).
    let s = [(1u16, &b"k"[..]), (2, b"c"), (5, b"not json")];
    rejected(&craft(4, &s), data_at + 1, "metadata");
    let m = metadata();
    let s = [(1u16, &b"k"[..]), (2, b"c"), (5, &m), (4, b"\x81\xa0")];
    let sig_at = data_at + m.len() as u64 + SECTION_HEADER_LEN;
    // The element (an empty map) starts at byte 1 of the section.
    rejected(&craft(4, &s), sig_at + 1, "lacks signing_certificate");
    // A well-formed signature element whose certificate is not PEM.
    let mut cbor = vec![0x81, 0xa2, 0x73];
    cbor.extend_from_slice(b"signing_certificate");
    cbor.extend_from_slice(&[0x82, 0x01, 0x02, 0x69]);
    cbor.extend_from_slice(b"signature");
    cbor.push(0x80);
    let s = [(1u16, &b"k"[..]), (2, b"c"), (5, &m), (4, &cbor)];
    rejected(&craft(4, &s), sig_at + 3 + 19, "BEGIN CERTIFICATE");
}

#[test]
fn trailing_bytes() {
    let mut bytes = signed();
    let len = bytes.len() as u64;
    bytes.push(0);
    rejected(&bytes, len, "end of file");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_mutations_never_panic_and_are_rejected(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        mode in 0u8..4,
    ) {
        let good = signed_cached();
        let mut bad = good.to_vec();
        match mode {
            0 => for (at, value) in &edits { let i = at.index(bad.len()); bad[i] = *value; },
            1 => bad.truncate(cut.index(bad.len())),
            2 => { let i = cut.index(bad.len()); bad.insert(i, edits[0].1); }
            _ => { let i = cut.index(bad.len()); bad.remove(i); }
        }
        ccc_eif::fuzz_read(&bad);
        let result = Eif::from_bytes(&bad);
        if bad != good {
            // A single changed byte is always caught (CRC-32 detects every burst of up to
            // 32 bits); larger edits could only pass by a 2^-32 CRC collision.
            prop_assert!(result.is_err(), "mutation accepted");
        }
        if let Err(e) = result {
            prop_assert!(e.offset() <= bad.len() as u64, "offset {} past the end", e.offset());
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_plausible_header_never_panic(
        version in 0u16..6,
        count in 0u16..40,
        table in prop::collection::vec(any::<u64>(), 0..8),
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut file = vec![0u8; HEADER_LEN as usize];
        file[..4].copy_from_slice(b".eif");
        file[4..6].copy_from_slice(&version.to_be_bytes());
        file[0x1a..0x1c].copy_from_slice(&count.to_be_bytes());
        for (i, v) in table.iter().enumerate() {
            // Small values so that some offsets and sizes line up.
            let v = if i % 2 == 0 { 548 + v % 64 } else { v % 64 };
            let at = if i % 2 == 0 { 0x1c + 4 * i } else { 0x11c + 4 * (i - 1) };
            file[at..at + 8].copy_from_slice(&v.to_be_bytes());
        }
        file.extend_from_slice(&tail);
        fix_crc(&mut file);
        ccc_eif::fuzz_read(&file);
        let _ = Eif::read(&file[..]);
    }
}

fn signed_cached() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(signed)
}
