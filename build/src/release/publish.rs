//! The published files of a release and their formats: the PCR measurements
//! (`pcr-measurements-V.json`), the KMS key-policy and IAM-policy templates, the build
//! manifest, `SHA256SUMS`, `REPRODUCE.md`, and the cross-release `release/pcr-expectations.json`.
//!
//! Every writer here is deterministic (fixed key order, no clock, no host paths), so rebuilding a
//! release from the same commit on the same kind of machine rewrites the same bytes.

use ccc_eif::Measurements;
use ccc_policy::expectations::{Expectations, Release as ExpectedRelease};
use ccc_policy::template::{self, ImagePins, Principals};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, IoContext, Result, ensure};

/// The image pins of `measurements` (PCR0 as `ImageSha384`, PCR1, PCR2, and PCR8 when the
/// image is signed).
///
/// # Errors
/// A PCR is all zeros, the value debug-mode enclaves report (AWS Nitro Enclaves user guide,
/// `nitro-cli run-enclave --debug-mode`): a policy pinning it would release keys to any
/// enclave whose memory the parent can read.
pub fn pins(measurements: &Measurements) -> Result<ImagePins> {
    let pins = ImagePins::new(
        &measurements.pcr0.hex(),
        &measurements.pcr1.hex(),
        &measurements.pcr2.hex(),
    );
    match measurements.pcr8 {
        Some(pcr8) => pins.and_then(|p| p.with_pcr8(&pcr8.hex())),
        None => pins,
    }
    .map_err(|e| Error::pcrs(e.to_string()))
}

/// Refuses all-zero PCRs (see [`pins`]).
///
/// # Errors
/// PCR0, PCR1 or PCR2 is all zeros.
pub fn refuse_debug_pcrs(measurements: &Measurements) -> Result<()> {
    pins(measurements).map(drop)
}

/// The attestation conditions, key → lowercase hex (sorted: ImageSha384, PCR1, PCR2, and PCR8
/// when signed).
///
/// # Errors
/// As [`refuse_debug_pcrs`].
pub fn policy_conditions(measurements: &Measurements) -> Result<BTreeMap<String, String>> {
    Ok(pins(measurements)?.conditions())
}

/// Refuses a policy `policy check` has findings for: a release never publishes one.
fn refuse_findings(name: &str, text: &str) -> Result<()> {
    let findings = crate::policy::check_text(text).map_err(|e| {
        e.context(format!(
            "the release tool wrote a {name} that does not parse"
        ))
    })?;
    ensure!(
        findings.is_empty(),
        Error::assemble(
            format!("the {name}"),
            format!(
                "it has findings; refusing to publish it:\n{}",
                findings
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        )
    );
    Ok(())
}

/// Pretty JSON with a trailing newline.
///
/// # Errors
/// Serialisation fails (it does not for this module's types: string keys, no floats).
pub fn json_text(value: &impl Serialize) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|e| Error::assemble("a JSON document", e))
}

/// The KMS key policy for this image (`ccc_policy::template::key_policy`), checked by the
/// linter before it is returned.
///
/// # Errors
/// As [`refuse_debug_pcrs`]; the policy has findings.
pub fn key_policy(measurements: &Measurements, principals: &Principals) -> Result<String> {
    let text = template::key_policy(&pins(measurements)?, principals);
    refuse_findings("key policy", &text)?;
    Ok(text)
}

/// The IAM policy for the parent's role (`ccc_policy::template::iam_policy`), checked by the
/// linter before it is returned.
///
/// # Errors
/// As [`refuse_debug_pcrs`]; the policy has findings.
pub fn iam_policy(measurements: &Measurements) -> Result<String> {
    let text = template::iam_policy(&pins(measurements)?);
    refuse_findings("IAM policy", &text)?;
    Ok(text)
}

/// PCR0/1/2 (and PCR8 for a signed image) as published (nitro-cli's `Measurements` object:
/// `HashAlgorithm` first, then the PCRs, lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrValues {
    #[serde(
        rename = "HashAlgorithm",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub hash_algorithm: Option<String>,
    #[serde(rename = "PCR0")]
    pub pcr0: String,
    #[serde(rename = "PCR1")]
    pub pcr1: String,
    #[serde(rename = "PCR2")]
    pub pcr2: String,
    /// The signing certificate's measurement; absent for an unsigned release.
    #[serde(rename = "PCR8", skip_serializing_if = "Option::is_none", default)]
    pub pcr8: Option<String>,
}

impl PcrValues {
    /// The published form of `measurements`, with or without `HashAlgorithm`.
    pub fn of(measurements: &Measurements, with_algorithm: bool) -> Self {
        Self {
            hash_algorithm: with_algorithm.then(|| Measurements::HASH_ALGORITHM.to_owned()),
            pcr0: measurements.pcr0.hex(),
            pcr1: measurements.pcr1.hex(),
            pcr2: measurements.pcr2.hex(),
            pcr8: measurements.pcr8.map(|p| p.hex()),
        }
    }

    /// `(name, value)` of PCR0, PCR1, PCR2 (PCR8 is compared apart: a rebuild is unsigned).
    pub fn pcrs(&self) -> [(&'static str, &str); 3] {
        [
            ("PCR0", &self.pcr0),
            ("PCR1", &self.pcr1),
            ("PCR2", &self.pcr2),
        ]
    }

    /// PCR0, PCR1, PCR2 and PCR8 (or its absence) are equal (hex compared
    /// case-insensitively).
    pub fn same_pcrs(&self, other: &Self) -> bool {
        let same_pcr8 = match (&self.pcr8, &other.pcr8) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        same_pcr8
            && self
                .pcrs()
                .iter()
                .zip(other.pcrs())
                .all(|((_, a), (_, b))| a.eq_ignore_ascii_case(b))
    }
}

/// Where the kernel came from, and its identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelRecord {
    /// `ccc` (built from kernel-config/) or `custom` (`--kernel PATH`).
    pub origin: String,
    /// Debian source package (CCC's kernel only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub package: Option<String>,
    /// Its exact version.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub package_version: Option<String>,
    /// SHA-256 of the `.deb`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deb_sha256: Option<String>,
    /// SHA-256 of the kernel configuration, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub config_sha256: Option<String>,
    /// The bzImage's file name (custom kernels) or `kernel-config/<config>` (CCC's).
    pub source: String,
    /// The bzImage's version string.
    pub version: String,
    /// SHA-256 of the bzImage.
    pub bzimage_sha256: String,
    /// The patches applied to the Debian source, in order (`kernel-config/patches/<file>`
    /// and its SHA-256; CCC's kernel only, absent before 0.2.0).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub patches: Vec<PatchRecord>,
}

/// One kernel patch in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    /// `kernel-config/patches/<file>`.
    pub file: String,
    /// SHA-256 of the patch file.
    pub sha256: String,
}

/// `verification` in the measurements file: enough to rebuild and to know what to expect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub commit: String,
    pub dirty: bool,
    pub toolchain: String,
    pub target: String,
    pub app: String,
    pub kernel: KernelRecord,
    pub tools: BTreeMap<String, String>,
    pub rebuild: Vec<String>,
}

/// `pcr-measurements-V.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasurementsFile {
    pub version: String,
    /// RFC 3339 of the release's `SOURCE_DATE_EPOCH`.
    pub build_timestamp: String,
    pub measurements: PcrValues,
    pub kms_policy_conditions: BTreeMap<String, String>,
    pub verification: Verification,
    /// Memory and vCPU figures (`super::resources`; absent before 0.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<super::resources::Resources>,
}

impl MeasurementsFile {
    /// Reads a published file.
    ///
    /// # Errors
    /// Missing or malformed.
    pub fn load(path: &Path) -> Result<Self> {
        load_json(path)
    }

    /// Pretty JSON with a trailing newline.
    ///
    /// # Errors
    /// Serialisation fails (it does not for these types).
    pub fn to_json(&self) -> Result<String> {
        json_text(self)
    }
}

/// Reads a published JSON file.
fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).io("read", path)?;
    serde_json::from_str(&text).map_err(|e| Error::published(path, format!("malformed: {e}")))
}

/// SHA-256 and length of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub sha256: String,
    pub bytes: u64,
}

impl FileDigest {
    /// Hashes a file.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn of(path: &Path) -> Result<Self> {
        Ok(Self {
            sha256: crate::hash::sha256_file(path)?,
            bytes: std::fs::metadata(path).io("stat", path)?.len(),
        })
    }

    /// Hashes bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self {
            sha256: crate::hash::sha256(bytes),
            bytes: bytes.len() as u64,
        }
    }
}

/// `build-manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file.
    pub format: u32,
    pub version: String,
    pub image_name: String,
    pub app: AppRecord,
    /// The CCC sources the image was built with (format 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ccc: Option<CccRecord>,
    /// The program that built it (format 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolRecord>,
    pub git: GitRecord,
    pub toolchain: ToolchainRecord,
    /// Host tool versions that are inputs (`host_tools::HOST_TOOLS`); the kernel build's
    /// packages from 0.2.0 on, absent entries are "not recorded".
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
    pub cargo_lock_sha256: String,
    pub kernel: KernelRecord,
    pub cmdline: String,
    /// What went into the EIF: kernel, cmdline, init, app, both ramdisks.
    pub inputs: BTreeMap<String, FileDigest>,
    /// The published files (all but this manifest, REPRODUCE.md and SHA256SUMS).
    pub outputs: BTreeMap<String, FileDigest>,
    pub measurements: PcrValues,
    /// A signed release's signing record (absent: unsigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<super::sign::SigningRecord>,
    pub reproducibility: ReproducibilityRecord,
    /// Memory and vCPU figures (`super::resources`; absent before 0.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<super::resources::Resources>,
}

/// Which application the image runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub package: String,
    /// `bin` or `example`.
    pub kind: String,
    pub name: String,
}

/// The CCC a project was built with: its version and where its sources came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CccRecord {
    pub version: String,
    /// `workspace` (the project is CCC), `git` or `path`.
    pub origin: String,
    /// The repository (git only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The commit of CCC's sources, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// CCC's sources differed from that commit (a path dependency on a dirty checkout).
    pub dirty: bool,
}

/// The program that built an image (`BuildTool` and `BuildToolVersion` in its metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRecord {
    pub name: String,
    pub version: String,
    pub command: String,
}

/// The checkout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitRecord {
    pub commit: String,
    pub dirty: bool,
    /// `git status --porcelain` lines of a dirty tree.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub changes: Vec<String>,
    pub source_date_epoch: u32,
    pub source_date: String,
    pub epoch_rule: String,
}

/// The Rust side of the build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolchainRecord {
    /// `rustc -vV`, one line per entry.
    pub rustc: Vec<String>,
    pub target: String,
    pub cargo_build: String,
    pub profile: String,
    pub path_remapping: Vec<String>,
    pub environment: String,
}

/// What was built twice and how it was compared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReproducibilityRecord {
    pub rebuilt_twice: Vec<String>,
    pub comparison: String,
    pub first_pass: String,
    pub second_pass: String,
    pub kernel: String,
}

impl Manifest {
    /// Reads a published manifest.
    ///
    /// # Errors
    /// Missing or malformed.
    pub fn load(path: &Path) -> Result<Self> {
        load_json(path)
    }

    /// Pretty JSON with a trailing newline.
    ///
    /// # Errors
    /// Serialisation fails (it does not for these types).
    pub fn to_json(&self) -> Result<String> {
        json_text(self)
    }
}

/// `SHA256SUMS` for the named files of `dir`, in `sha256sum`'s text format (`<hex>  <name>`),
/// sorted by name.
///
/// # Errors
/// A file cannot be hashed.
pub fn sha256sums(dir: &Path, names: &[String]) -> Result<String> {
    let mut names = names.to_vec();
    names.sort();
    let mut out = String::new();
    for name in names {
        ensure!(
            !name.contains(['/', '\n', '\\']),
            Error::invalid(
                format!("`{name}`"),
                "cannot be listed in SHA256SUMS (no /, \\ or newline)"
            )
        );
        let digest = crate::hash::sha256_file(&dir.join(&name))?;
        out.push_str(&format!("{digest}  {name}\n"));
    }
    Ok(out)
}

/// `release/pcr-expectations.json` (`ccc_policy::expectations`): a missing file is an empty
/// history.
///
/// # Errors
/// The file exists but cannot be read or is malformed.
pub fn load_expectations(path: &Path) -> Result<Expectations> {
    if !path.exists() {
        return Ok(Expectations::default());
    }
    let text = std::fs::read_to_string(path).io("read", path)?;
    Expectations::parse(&text).map_err(|e| Error::published(path, format!("malformed: {e}")))
}

/// The entry of a release in `release/pcr-expectations.json`: its PCRs, the build date (the
/// release's `SOURCE_DATE_EPOCH`) and commit.
///
/// # Errors
/// A malformed value (never for what the pipeline computes).
pub fn expectation(pcrs: &PcrValues, date: &str, commit: &str) -> Result<ExpectedRelease> {
    ExpectedRelease::new(
        [&pcrs.pcr0, &pcrs.pcr1, &pcrs.pcr2],
        pcrs.pcr8.as_deref(),
        date,
        commit,
    )
    .map_err(|e| Error::pcrs(e.to_string()))
}

/// Sort key for versions: dot/dash/plus-separated parts, numbers before words and compared as
/// numbers (`0.2.0` < `0.10.0`). The one version order of CCC (release records, the linter's
/// first checked release, emulation's "newest release"): `ccc_policy::expectations::version_key`.
#[must_use]
pub fn version_key(version: &str) -> Vec<(u8, u64, String)> {
    ccc_policy::expectations::version_key(version)
}

/// `PCRn  recorded  built` lines for an error message.
pub fn pcr_table(recorded: &PcrValues, built: &PcrValues) -> String {
    let none = "(unsigned)";
    let pcr8 = [(
        "PCR8",
        recorded.pcr8.as_deref().unwrap_or(none),
        built.pcr8.as_deref().unwrap_or(none),
    )];
    recorded
        .pcrs()
        .iter()
        .zip(built.pcrs())
        .map(|((name, a), (_, b))| (*name, *a, b))
        .chain(
            pcr8.into_iter()
                .filter(|(_, a, b)| (*a, *b) != (none, none)),
        )
        .map(|(name, a, b)| {
            let verdict = if a.eq_ignore_ascii_case(b) {
                "match"
            } else {
                "MISMATCH"
            };
            format!("  {name} {verdict}\n    published {a}\n    built     {b}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks a version string is usable in file names and JSON keys
/// (`ccc_policy::expectations::check_version`).
///
/// # Errors
/// Empty, too long, or holding characters other than letters, digits and `.+-`.
pub fn check_version(version: &str) -> Result<()> {
    ccc_policy::expectations::check_version(version)
        .map_err(|e| Error::invalid("the release version", e.to_string()))
}

/// Checks an image name is usable as the EIF's `ImageName` and in its file name.
///
/// # Errors
/// Empty, longer than 64, or holding characters other than letters, digits and `._-`, or
/// starting with a dot.
pub fn check_name(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        Error::invalid(
            format!("image name `{name}`"),
            "use 1 to 64 letters, digits and ._-, not starting with a dot"
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_eif::Pcr;

    fn measurements(seed: u8) -> Measurements {
        Measurements {
            pcr0: Pcr([seed; 48]),
            pcr1: Pcr([seed.wrapping_add(1); 48]),
            pcr2: Pcr([seed.wrapping_add(2); 48]),
            pcr8: None,
        }
    }

    fn hex_of(byte: u8) -> String {
        hex::encode([byte; 48])
    }

    #[test]
    fn debug_pcrs_are_refused_and_templates_pass_the_linter() {
        for index in 0..3 {
            let mut m = measurements(7);
            match index {
                0 => m.pcr0 = Pcr::ZERO,
                1 => m.pcr1 = Pcr::ZERO,
                _ => m.pcr2 = Pcr::ZERO,
            }
            let err = key_policy(&m, &Principals::placeholders()).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("PCR{index} is all zeros")),
                "{err}"
            );
            assert!(iam_policy(&m).is_err());
        }
        let m = measurements(0xab);
        let text = key_policy(&m, &Principals::placeholders()).unwrap();
        assert!(text.contains(&hex_of(0xad)));
        iam_policy(&m).unwrap();
        assert_eq!(
            policy_conditions(&m).unwrap()[ccc_policy::keys::PCR1],
            hex_of(0xac)
        );
        // The gate itself: a policy with findings is refused, naming them.
        let err = refuse_findings(
            "key policy",
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("refusing to publish"), "{err}");
        assert!(err.contains("finding: wildcard-principal"), "{err}");
    }

    #[test]
    fn measurements_file_is_read_by_the_sdk_policy() {
        let m = measurements(0x10);
        let file = MeasurementsFile {
            version: "0.1.0".into(),
            build_timestamp: "2026-01-01T00:00:00+00:00".into(),
            measurements: PcrValues::of(&m, true),
            kms_policy_conditions: policy_conditions(&m).unwrap(),
            verification: Verification {
                commit: "0".repeat(40),
                dirty: false,
                toolchain: "rustc 1.95.0".into(),
                target: "x86_64-unknown-linux-musl".into(),
                app: "ccc-template-enclave".into(),
                kernel: KernelRecord {
                    origin: "ccc".into(),
                    package: Some("linux-source-6.12".into()),
                    package_version: Some("6.12.117-1~deb12u1".into()),
                    deb_sha256: Some("e8".repeat(32)),
                    config_sha256: Some("c0".repeat(32)),
                    source: "kernel-config/config-6.12-x86_64".into(),
                    version: "6.12.117".into(),
                    bzimage_sha256: "b1".repeat(32),
                    patches: vec![PatchRecord {
                        file: "kernel-config/patches/0001-x.patch".into(),
                        sha256: "c2".repeat(32),
                    }],
                },
                tools: BTreeMap::new(),
                rebuild: vec!["cargo xtask verify-release 0.1.0".into()],
            },
            resources: None,
        };
        let text = file.to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["measurements"]["HashAlgorithm"], "Sha384 { ... }");
        assert_eq!(value["measurements"]["PCR0"], hex_of(0x10));
        let keys: Vec<&String> = value["measurements"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["HashAlgorithm", "PCR0", "PCR1", "PCR2"]);
        let policy = ccc_sdk::attestation::Policy::from_measurements_json(&text).unwrap();
        let expected: BTreeMap<u8, Vec<u8>> = [
            (0, vec![0x10; 48]),
            (1, vec![0x11; 48]),
            (2, vec![0x12; 48]),
        ]
        .into_iter()
        .collect();
        assert_eq!(policy.expected_pcrs(), &expected);
        // The file round-trips through its own reader.
        let dir = std::env::temp_dir().join(format!("ccc-measure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.json");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            MeasurementsFile::load(&path).unwrap().measurements,
            file.measurements
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_without_resources_still_parse_and_new_ones_keep_old_fields() {
        // Release 0.1.0's files, published before `resources` existed.
        let old = include_str!("../../../release/0.1.0/pcr-measurements-0.1.0.json");
        let file: MeasurementsFile = serde_json::from_str(old).unwrap();
        assert_eq!(file.version, "0.1.0");
        assert!(file.resources.is_none());
        let manifest: Manifest =
            serde_json::from_str(include_str!("../../../release/0.1.0/build-manifest.json"))
                .unwrap();
        assert!(manifest.resources.is_none());
        // Without the field nothing is written: an old file re-serialises without it.
        assert!(!file.to_json().unwrap().contains("resources"));
        // With it, the PCRs and conditions are where they were and the SDK still reads them.
        let mut file = file;
        file.resources = Some(super::super::resources::figures(
            4_514_792,
            Some(40),
            "measured".into(),
        ));
        let text = file.to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["resources"]["nitro_cli_minimum_memory_mib"], 18);
        assert_eq!(value["resources"]["least_memory_mib"], 40);
        assert_eq!(value["resources"]["recommended_memory_mib"], 104);
        assert_eq!(value["resources"]["recommended_cpu_count"], 2);
        let before: serde_json::Value = serde_json::from_str(old).unwrap();
        for key in ["measurements", "kms_policy_conditions", "verification"] {
            assert_eq!(value[key], before[key], "{key}");
        }
        ccc_sdk::attestation::Policy::from_measurements_json(&text).unwrap();
        let back: MeasurementsFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.resources, file.resources);
    }

    #[test]
    fn sha256sums_format_is_what_sha256sum_checks() {
        let dir = std::env::temp_dir().join(format!("ccc-sums-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.json"), "{}\n").unwrap();
        std::fs::write(dir.join("a.eif"), b"abc").unwrap();
        let sums = sha256sums(&dir, &["b.json".into(), "a.eif".into()]).unwrap();
        assert_eq!(
            sums.lines().next().unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a.eif"
        );
        std::fs::write(dir.join("SHA256SUMS"), &sums).unwrap();
        let status = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(dir.join("a.eif"), b"abd").unwrap();
        let status = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(&dir)
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn versions() {
        for ok in ["0.1.0", "1.0.0-rc.1", "2.0.0+build.5"] {
            check_version(ok).unwrap();
        }
        for bad in ["", "../x", ".1", "1 0", "a/b", &"9".repeat(65)] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        assert!(version_key("0.2.0") < version_key("0.10.0"));
        assert!(version_key("0.9.9") < version_key("1.0.0"));
    }
}
