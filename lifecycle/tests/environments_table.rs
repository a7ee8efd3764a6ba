//! The mission's success criterion: the environments of one release, each policy rendered from
//! `deploy/environments.toml` and enforced by a KMS emulator, against the release's image, the
//! previous version, a version the environment does not allow, a debug-mode document and a
//! simulator-signed one. The table is asserted cell by cell, and `explain` must agree with the
//! emulator on every cell (same verdict, same AccessDenied message or verifier error).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is the test failure"
)]

mod common;

use ccc_lifecycle::table::{CaseKind, Fixture};
use ccc_sdk::time::UnixMillis;

/// 2026-12-01T10:00:00Z: documents, certificates and emulator clocks stand here.
const AT: UnixMillis = UnixMillis(1_796_119_200_000);

/// Several admitted sets: only the lead key's Deny names the image.
const LEAD: &str = "denied: DenySecretsUnlessImageSha384Matches (ImageSha384)";
/// One admitted set: every PCR has its own Deny, and a foreign image differs in all three.
const EACH_PCR: &str = "denied: DenySecretsUnlessImageSha384Matches (ImageSha384), \
    DenySecretsUnlessPCR1Matches (PCR1), DenySecretsUnlessPCR2Matches (PCR2)";
const SIGNER: &str = "denied: DenySecretsUnlessPCR8Matches (PCR8)";
const FOREIGN: &str = "refused: foreign document (untrusted root)";

#[test]
fn every_environment_admits_exactly_what_it_allows_and_explain_agrees() {
    let scratch = common::Scratch::new("table");
    let paths = scratch.paths();
    let expectations = paths.expectations().unwrap();
    let environments = paths.environments(&expectations).unwrap();
    let fixture = Fixture::new(AT).unwrap();
    let expected: [(&str, [&str; 5]); 4] = [
        ("development", ["allowed", LEAD, LEAD, "allowed", "allowed"]),
        ("staging", ["allowed", "allowed", LEAD, LEAD, FOREIGN]),
        (
            "production",
            [EACH_PCR, "allowed", EACH_PCR, EACH_PCR, FOREIGN],
        ),
        // The signer admits what its certificate signed (0.3.0), nothing unsigned.
        ("canary", ["allowed", SIGNER, SIGNER, SIGNER, FOREIGN]),
    ];
    let mut agreements = 0;
    for (name, cells) in expected {
        let environment = environments.get(name).unwrap();
        let table = fixture.run(environment, &expectations, "0.3.0").unwrap();
        eprintln!("{table}");
        assert!(table.skipped.is_empty(), "{table}");
        for (case, want) in CaseKind::ALL.into_iter().zip(cells) {
            let row = table.row(case).unwrap();
            assert_eq!(
                row.emulator.summary(),
                want,
                "{name}: {}\n{table}",
                case.label()
            );
            assert!(
                row.agrees,
                "{name}: {}: explain disagrees\n{table}",
                case.label()
            );
            assert_eq!(row.explain.word(), row.emulator.word());
            agreements += 1;
        }
        assert!(table.passes(), "{table}");
        let versions: Vec<Option<&str>> = table.rows.iter().map(|r| r.version.as_deref()).collect();
        assert_eq!(
            versions,
            [
                Some("0.3.0"),
                Some("0.2.0"),
                Some("0.1.0"),
                None,
                Some("0.3.0")
            ]
        );
    }
    assert_eq!(agreements, 20);
}

/// A small EIF (kernel, cmdline, a bootstrap and an application ramdisk) written to `path`;
/// its measurements.
fn write_eif(path: &std::path::Path, application: &[u8]) -> ccc_eif::pcr::Measurements {
    use ccc_eif::{BuildInfo, EifBuilder, EifIdentity, SourceDateEpoch};
    let epoch = SourceDateEpoch::from_secs(1_796_119_200);
    let identity = EifIdentity::new(
        "table",
        "0.3.0",
        BuildInfo::new(epoch, "ccc", "0.3.0", "Linux", "6.12"),
    );
    let kernel = vec![7u8; 2048];
    let bootstrap = vec![1u8; 512];
    let application = application.to_vec();
    let (bytes, built) = EifBuilder::new(&kernel, "console=ttyS0", identity)
        .ramdisk(&bootstrap)
        .ramdisk(&application)
        .to_vec()
        .unwrap();
    std::fs::write(path, bytes).unwrap();
    built.measurements
}

#[test]
fn an_eif_seeds_the_table_only_when_it_is_the_release() {
    let scratch = common::Scratch::new("table-eif");
    let eif = scratch.root.join("release.eif");
    let built = write_eif(&eif, b"application");

    // Published with the image's PCRs: accepted.
    let mut published = ccc_policy::expectations::Expectations::default();
    published
        .record(
            "0.3.0",
            ccc_policy::expectations::Release::new(
                [&built.pcr0.hex(), &built.pcr1.hex(), &built.pcr2.hex()],
                None,
                "2026-12-01T10:00:00+00:00",
                &"ab".repeat(20),
            )
            .unwrap(),
        )
        .unwrap();
    ccc_lifecycle::table::check_eif(&eif, &published, "0.3.0").unwrap();
    let absent = ccc_lifecycle::table::check_eif(&eif, &published, "0.9.0").unwrap_err();
    assert!(
        absent.to_string().contains("0.9.0 is not published"),
        "{absent}"
    );

    // The scratch history's 0.3.0 has other PCRs (and a PCR8): refused before anything runs,
    // naming the first PCR that differs with both values.
    let paths = scratch.paths();
    let mut out = Vec::new();
    let error = ccc_lifecycle::table::print(&paths, "staging", Some("0.3.0"), Some(&eif), &mut out)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "PCR0 is {} in the image and {}",
            built.pcr0.hex(),
            common::hex_of(0x30)
        )),
        "{error}"
    );
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));

    // Without --eif the committed measurements seed it, and the table is printed and passes.
    let passes =
        ccc_lifecycle::table::print(&paths, "staging", Some("0.3.0"), None, &mut out).unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(passes, "{printed}");
    assert!(
        printed.contains("release 0.3.0's measurements (release/pcr-expectations.json)"),
        "{printed}"
    );
}
