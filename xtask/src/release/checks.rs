//! The CI steps of the release pipeline: a whole release (both passes and their byte
//! comparison) into a scratch directory, never `release/`, then an independent look at what it
//! wrote; and the same for another application, which must share PCR1 with the template.

use anyhow::{Context, Result, ensure};
use ccc_eif::{Eif, Measurements};
use std::path::{Path, PathBuf};

use super::publish::{self, Manifest, MeasurementsFile};
use super::{AppSpec, AppTarget, Args, MANIFEST_FILE, SUMS_FILE};

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ccc-ci-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(dir)
}

fn release_into(out: &Path, app: Option<&AppSpec>) -> Result<()> {
    let (package, bin, example) = match app.map(|a| (&a.package, &a.target)) {
        None => (None, None, None),
        Some((package, AppTarget::Bin(name))) => (Some(package.clone()), Some(name.clone()), None),
        Some((package, AppTarget::Example(name))) => {
            (Some(package.clone()), None, Some(name.clone()))
        }
    };
    super::run(&Args {
        version: None,
        app: package,
        bin,
        example,
        kernel: None,
        account: None,
        role: None,
        admin_role: None,
        out: Some(out.to_path_buf()),
        full: false,
    })
}

/// Checks a release directory from the outside: `sha256sum -c` over every file, the EIF's own
/// PCRs against the published ones, the SDK's policy loader, the key policy's conditions and
/// the manifest's output digests. Returns the EIF's measurements.
///
/// # Errors
/// The first check that fails.
pub(crate) fn check_published(dir: &Path, version: &str, image_name: &str) -> Result<Measurements> {
    let sums = std::fs::read_to_string(dir.join(SUMS_FILE))?;
    let mut listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, name)| name))
        .collect();
    listed.sort_unstable();
    let mut present: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    present.retain(|n| n != SUMS_FILE);
    present.sort();
    ensure!(
        listed == present,
        "SHA256SUMS lists {listed:?}, the directory holds {present:?}"
    );
    let status = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", SUMS_FILE])
        .current_dir(dir)
        .status()
        .context("cannot run sha256sum")?;
    ensure!(
        status.success(),
        "`sha256sum -c SHA256SUMS` fails in {}",
        dir.display()
    );

    let eif_path = dir.join(super::eif_file_name(image_name, version));
    let eif = Eif::open(&eif_path).with_context(|| format!("{} is invalid", eif_path.display()))?;
    let measurements_path = dir.join(super::measurements_file_name(version));
    let published = MeasurementsFile::load(&measurements_path)?;
    let built = publish::PcrValues::of(&eif.measurements, true);
    ensure!(
        published.measurements == built,
        "{} does not hold the EIF's PCRs:\n{}",
        measurements_path.display(),
        publish::pcr_table(&published.measurements, &built)
    );
    let text = std::fs::read_to_string(&measurements_path)?;
    let policy = ccc_sdk::attestation::Policy::from_measurements_json(&text)
        .context("the SDK's Policy::from_measurements_json refuses the measurements file")?;
    let expected = policy.expected_pcrs();
    ensure!(
        expected.get(&0).map(Vec::as_slice) == Some(&eif.measurements.pcr0.0[..])
            && expected.get(&1).map(Vec::as_slice) == Some(&eif.measurements.pcr1.0[..])
            && expected.get(&2).map(Vec::as_slice) == Some(&eif.measurements.pcr2.0[..])
            && expected.len() == 3,
        "the SDK reads other PCRs from {}",
        measurements_path.display()
    );

    let key_policy: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.join(super::key_policy_file_name(version)),
    )?)?;
    let conditions = key_policy["Statement"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find_map(|st| st["Condition"].get("StringEqualsIgnoreCase"))
        })
        .context("the key policy has no StringEqualsIgnoreCase conditions")?;
    for (key, pcr) in [
        (ccc_policy::keys::IMAGE_SHA384, eif.measurements.pcr0),
        (ccc_policy::keys::PCR1, eif.measurements.pcr1),
        (ccc_policy::keys::PCR2, eif.measurements.pcr2),
    ] {
        ensure!(
            conditions[key] == pcr.hex(),
            "the key policy's {key} is {}, the EIF's is {}",
            conditions[key],
            pcr.hex()
        );
    }

    for file in [
        super::key_policy_file_name(version),
        super::iam_policy_file_name(version),
    ] {
        let findings = crate::policy::check_file(&dir.join(&file))?;
        ensure!(
            findings.is_empty(),
            "{file} has findings:\n{}",
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    let manifest = Manifest::load(&dir.join(MANIFEST_FILE))?;
    for (name, digest) in &manifest.outputs {
        ensure!(
            crate::hash::sha256_file(&dir.join(name))? == digest.sha256,
            "build-manifest.json lists another SHA-256 for {name}"
        );
    }
    ensure!(
        manifest.measurements == built,
        "build-manifest.json holds other PCRs"
    );
    Ok(eif.measurements)
}

/// When this checkout's inputs are exactly those the committed `release/<V>/` was built from,
/// the rebuilt EIF must be the published one, byte for byte (its SHA-256 in the published
/// SHA256SUMS). Otherwise there is nothing to compare, and the step says so.
///
/// # Errors
/// The inputs match but the EIF differs.
fn compare_with_published(out: &Path, version: &str) -> Result<()> {
    let root = crate::workspace_root();
    let published = root.join("release").join(version);
    let Ok(manifest) = Manifest::load(&published.join(MANIFEST_FILE)) else {
        eprintln!("release-reproducible: no release/{version}/ to compare with");
        return Ok(());
    };
    let git = super::build::git_state(&root)?;
    if manifest.git.commit != git.commit || git.dirty || manifest.git.dirty {
        eprintln!(
            "release-reproducible: release/{version}/ was built from commit {}, this checkout's \
             inputs are at {}{}: the published EIF is not expected to match, not compared",
            manifest.git.commit,
            git.commit,
            if git.dirty { " (dirty)" } else { "" }
        );
        return Ok(());
    }
    let eif = super::eif_file_name(&manifest.image_name, version);
    let sums = std::fs::read_to_string(published.join(SUMS_FILE))?;
    let want = sums
        .lines()
        .find_map(|l| l.strip_suffix(&format!("  {eif}")))
        .with_context(|| format!("release/{version}/SHA256SUMS does not list {eif}"))?;
    let got = crate::hash::sha256_file(&out.join(&eif))?;
    ensure!(
        got == want,
        "the committed release {version} no longer rebuilds bit for bit from its own commit: \
         {eif} has SHA-256 {got}, release/{version}/SHA256SUMS says {want}"
    );
    eprintln!("release-reproducible: {eif} is byte-identical to the published release {version}");
    Ok(())
}

/// CI step `release-reproducible`.
///
/// # Errors
/// The release fails (including a difference between its two passes) or its output is wrong.
pub(crate) fn reproducible() -> Result<()> {
    let out = scratch("release")?;
    release_into(&out, None)?;
    let version = env!("CARGO_PKG_VERSION");
    check_published(&out, version, super::image::TEMPLATE_IMAGE_NAME)?;
    eprintln!("release-reproducible: {} checked", out.display());
    compare_with_published(&out, version)?;
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

/// CI step `release-other-app`: `--app ccc-init --example nsm_probe` (a real enclave test app)
/// goes through the same pipeline; its image shares PCR1 (kernel, command line, init) with
/// the template's and differs in PCR2.
///
/// # Errors
/// The release or a check fails.
pub(crate) fn other_app() -> Result<()> {
    let app = AppSpec {
        package: "ccc-init".to_owned(),
        target: AppTarget::Example("nsm_probe".to_owned()),
    };
    let out = scratch("release-app")?;
    release_into(&out, Some(&app))?;
    let version = env!("CARGO_PKG_VERSION");
    let probe = check_published(&out, version, "nsm_probe")?;
    let template_dir = scratch("template-image")?;
    let template = super::build_image(&AppSpec::template(), None, &template_dir, |_| {})?;
    ensure!(
        probe.pcr1 == template.measurements.pcr1,
        "PCR1 (kernel, command line, init) differs between the nsm_probe image ({}) and the \
         template's ({}): the bootstrap must not depend on the application",
        probe.pcr1,
        template.measurements.pcr1
    );
    ensure!(
        probe.pcr2 != template.measurements.pcr2 && probe.pcr0 != template.measurements.pcr0,
        "PCR0/PCR2 of the nsm_probe image equal the template's: the application is not measured"
    );
    let eif = Eif::open(&out.join(super::eif_file_name("nsm_probe", version)))?;
    ensure!(
        eif.identity.as_ref().map(|i| i.image_name.as_str()) == Some("nsm_probe"),
        "the image's ImageName is not nsm_probe"
    );
    eprintln!(
        "release-other-app: nsm_probe image shares PCR1 with the template, PCR2 {} vs {}",
        probe.pcr2, template.measurements.pcr2
    );
    std::fs::remove_dir_all(&out)?;
    std::fs::remove_dir_all(&template_dir)?;
    Ok(())
}
