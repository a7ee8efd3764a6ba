//! AWS's `eif_build` tool (crates.io 0.2.1, built on image-format 0.3.0) as a second,
//! independent reference: given the same inputs and `--build-time`, it writes our exact bytes
//! and prints our PCRs.
//!
//! Its one known difference is a bug: it ignores `--version` and stores the `--name` value as
//! `ImageVersion` (eif_build 0.2.1 `src/main.rs` reads "image_name" twice). The tests pin that
//! difference precisely: with `ImageVersion = name` the files are identical; with a real
//! version only the metadata JSON's `ImageVersion` differs (so the later offsets and the CRC
//! move), and the PCRs are equal.
//!
//! The tool is installed once into `<workspace>/target/tools` (`cargo install --locked
//! --version 0.2.1 eif_build`, about a minute on a fresh 2-core machine; needs crates.io).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)] // test code: a panic is a failure

mod common;

use ccc_eif::{Arch, BuildInfo, Eif, EifBuilder, EifIdentity, SourceDateEpoch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const EIF_BUILD_VERSION: &str = "0.2.1";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `eif_build` binary, installed on first use.
fn eif_build() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let root = workspace_root().join("target/tools");
        let binary = root.join("bin/eif_build");
        let marker = root.join(format!("eif_build-{EIF_BUILD_VERSION}.installed"));
        if binary.exists() && marker.exists() {
            return binary;
        }
        let status = Command::new(env!("CARGO"))
            .args([
                "install",
                "--locked",
                "--quiet",
                "--version",
                EIF_BUILD_VERSION,
                "--root",
            ])
            .arg(&root)
            .arg("eif_build")
            .current_dir(workspace_root())
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "installing eif_build failed; it needs crates.io. Run: cargo install --locked \
             --version {EIF_BUILD_VERSION} --root target/tools eif_build"
        );
        std::fs::write(&marker, b"").unwrap();
        binary
    })
}

struct Case {
    kernel_len: usize,
    ramdisk_lens: Vec<usize>,
    arch: Arch,
    custom: Option<serde_json::Value>,
}

const NAME: &str = "my-enclave";
const VERSION: &str = "3.1.4";

fn build_info() -> BuildInfo {
    BuildInfo::new(
        SourceDateEpoch::from_secs(1_712_345_678),
        "ccc-xtask",
        "0.1.0",
        "Linux",
        "6.12.117",
    )
}

/// Runs eif_build on the case; returns (file bytes, PCR map printed on stdout).
fn run_eif_build(
    dir: &Path,
    case: &Case,
    kernel: &[u8],
    ramdisks: &[Vec<u8>],
) -> (Vec<u8>, serde_json::Value) {
    let kernel_path = dir.join("bzImage");
    std::fs::write(&kernel_path, kernel).unwrap();
    let out = dir.join("eif_build.eif");
    let info = build_info();
    let mut cmd = Command::new(eif_build());
    cmd.arg("--kernel")
        .arg(&kernel_path)
        .args(["--cmdline", "reboot=k panic=30 console=ttyS0"])
        .arg("--output")
        .arg(&out)
        .args(["--name", NAME, "--version", VERSION])
        .args(["--build-time", &info.build_time])
        .args(["--build-tool", &info.build_tool])
        .args(["--build-tool-version", &info.build_tool_version])
        .args(["--img-os", &info.operating_system])
        .args(["--img-kernel", &info.kernel_version])
        .args([
            "--arch",
            if case.arch == Arch::Aarch64 {
                "aarch64"
            } else {
                "x86_64"
            },
        ]);
    for (i, r) in ramdisks.iter().enumerate() {
        let p = dir.join(format!("ramdisk{i}.cpio"));
        std::fs::write(&p, r).unwrap();
        cmd.arg("--ramdisk").arg(p);
    }
    if let Some(custom) = &case.custom {
        let p = dir.join("metadata.json");
        std::fs::write(&p, serde_json::to_vec(custom).unwrap()).unwrap();
        cmd.arg("--metadata").arg(p);
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "eif_build: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = &stdout[stdout.find('{').expect("measurements JSON on stdout")..];
    (
        std::fs::read(&out).unwrap(),
        serde_json::from_str(json).unwrap(),
    )
}

fn ours(case: &Case, kernel: &[u8], ramdisks: &[Vec<u8>], image_version: &str) -> Vec<u8> {
    let kernel = kernel.to_vec();
    let mut identity = EifIdentity::new(NAME, image_version, build_info());
    if let Some(custom) = &case.custom {
        identity.custom_metadata = custom.clone();
    }
    let mut builder =
        EifBuilder::new(&kernel, "reboot=k panic=30 console=ttyS0", identity).arch(case.arch);
    for r in ramdisks {
        builder = builder.ramdisk(r);
    }
    builder.to_vec().unwrap().0
}

#[test]
fn eif_build_writes_our_bytes_and_pcrs() {
    let cases = [
        Case {
            kernel_len: 100_000,
            ramdisk_lens: vec![0],
            arch: Arch::X86_64,
            custom: None,
        },
        Case {
            kernel_len: 1,
            ramdisk_lens: vec![124, 3],
            arch: Arch::X86_64,
            custom: None,
        },
        Case {
            kernel_len: 70_001,
            ramdisk_lens: vec![0, 1, 50_000],
            arch: Arch::Aarch64,
            custom: Some(serde_json::json!({"team": "security", "build": {"ci": true}})),
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let dir = common::scratch_dir(&format!("eif-build-{i}"));
        let kernel = common::bytes(100 + i as u64, case.kernel_len);
        let ramdisks: Vec<Vec<u8>> = case
            .ramdisk_lens
            .iter()
            .enumerate()
            .map(|(j, len)| common::bytes(200 + 10 * i as u64 + j as u64, *len))
            .collect();
        let (theirs, printed) = run_eif_build(&dir, case, &kernel, &ramdisks);

        // PCRs: eif_build's printout, our reader over its file, our builder.
        let read = Eif::from_bytes(&theirs).unwrap();
        for (key, pcr) in [
            ("PCR0", read.measurements.pcr0),
            ("PCR1", read.measurements.pcr1),
            ("PCR2", read.measurements.pcr2),
        ] {
            assert_eq!(printed[key], pcr.hex(), "case {i} {key}");
        }
        assert!(printed.get("PCR8").is_none());

        // Bytes: identical once we reproduce its ImageVersion bug.
        assert!(
            ours(case, &kernel, &ramdisks, NAME) == theirs,
            "case {i}: bytes differ"
        );

        // With the real version, only ImageVersion differs.
        let honest = ours(case, &kernel, &ramdisks, VERSION);
        let ours_read = Eif::from_bytes(&honest).unwrap();
        assert_eq!(ours_read.measurements, read.measurements);
        let (a, b) = (
            read.identity.clone().unwrap(),
            ours_read.identity.clone().unwrap(),
        );
        assert_eq!(
            (a.image_name.as_str(), a.image_version.as_str()),
            (NAME, NAME)
        );
        assert_eq!(b.image_version, VERSION);
        assert_eq!(
            EifIdentity {
                image_version: VERSION.into(),
                ..a
            },
            b
        );
        assert_eq!(honest.len(), theirs.len() + VERSION.len() - NAME.len());
    }
}
