//! Checks of a release from the outside, and the CI steps built on them: a whole release (both
//! passes and their byte comparison) into a scratch directory, never `release/`, then an
//! independent look at what it wrote; and the same for another application, which must share
//! PCR1 with the project's.

use ccc_eif::{Eif, Measurements};
use std::path::{Path, PathBuf};

use super::publish::{self, Manifest, MeasurementsFile};
use super::{Args, MANIFEST_FILE, SUMS_FILE};
use crate::error::{Error, IoContext, Result, ensure};
use crate::project::{AppSpec, AppTarget, Project};

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ccc-ci-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).io("remove", &dir)?;
    }
    Ok(dir)
}

fn release_into(project: &Project, out: &Path, app: Option<&AppSpec>) -> Result<()> {
    let (package, bin, example) = match app.map(|a| (&a.package, &a.target)) {
        None => (None, None, None),
        Some((package, AppTarget::Bin(name))) => (Some(package.clone()), Some(name.clone()), None),
        Some((package, AppTarget::Example(name))) => {
            (Some(package.clone()), None, Some(name.clone()))
        }
    };
    super::run(
        project,
        &Args {
            app: package,
            bin,
            example,
            out: Some(out.to_path_buf()),
            // The memory search recognises the template's attestation line on the console;
            // another application prints its own, so its scratch release skips the search.
            skip_memory_measurement: app.is_some(),
            ..Args::default()
        },
    )
    .map(drop)
}

/// A published file is not what it should be.
fn wrong(dir: &Path, problem: impl Into<String>) -> Error {
    Error::published(dir, problem)
}

/// Checks a release directory from the outside: `sha256sum -c` over every file, the EIF's own
/// PCRs against the published ones, the SDK's policy loader, the key policy's conditions, the
/// policy linter on both templates and the manifest's output digests. Returns the EIF's measurements.
///
/// # Errors
/// The first check that fails.
pub fn check_published(dir: &Path, version: &str, image_name: &str) -> Result<Measurements> {
    let sums_path = dir.join(SUMS_FILE);
    let sums = std::fs::read_to_string(&sums_path).io("read", &sums_path)?;
    let mut listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, name)| name))
        .collect();
    listed.sort_unstable();
    let mut present = Vec::new();
    for entry in std::fs::read_dir(dir).io("list", dir)? {
        present.push(
            entry
                .io("list", dir)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    present.retain(|n| n != SUMS_FILE);
    present.sort();
    ensure!(
        listed == present,
        wrong(
            dir,
            format!("SHA256SUMS lists {listed:?}, the directory holds {present:?}")
        )
    );
    let status = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", SUMS_FILE])
        .current_dir(dir)
        .status()
        .map_err(|e| Error::program("sha256sum", format!("cannot start: {e}")))?;
    ensure!(
        status.success(),
        wrong(dir, "`sha256sum -c SHA256SUMS` fails")
    );

    let eif_path = dir.join(super::eif_file_name(image_name, version));
    let eif = Eif::open(&eif_path).map_err(|source| Error::Eif {
        path: eif_path.clone(),
        source,
    })?;
    let measurements_path = dir.join(super::measurements_file_name(version));
    let published = MeasurementsFile::load(&measurements_path)?;
    let built = publish::PcrValues::of(&eif.measurements, true);
    ensure!(
        published.measurements == built,
        wrong(
            &measurements_path,
            format!(
                "does not hold the EIF's PCRs:\n{}",
                publish::pcr_table(&published.measurements, &built)
            )
        )
    );
    let text = std::fs::read_to_string(&measurements_path).io("read", &measurements_path)?;
    let policy = ccc_sdk::attestation::Policy::from_measurements_json(&text).map_err(|e| {
        wrong(
            &measurements_path,
            format!("the SDK's Policy::from_measurements_json refuses it: {e}"),
        )
    })?;
    let expected = policy.expected_pcrs();
    ensure!(
        expected.get(&0).map(Vec::as_slice) == Some(&eif.measurements.pcr0.0[..])
            && expected.get(&1).map(Vec::as_slice) == Some(&eif.measurements.pcr1.0[..])
            && expected.get(&2).map(Vec::as_slice) == Some(&eif.measurements.pcr2.0[..])
            && expected.len() == 3,
        wrong(&measurements_path, "the SDK reads other PCRs from it")
    );

    let key_policy_path = dir.join(super::key_policy_file_name(version));
    let key_policy_text = std::fs::read_to_string(&key_policy_path).io("read", &key_policy_path)?;
    let key_policy: serde_json::Value = serde_json::from_str(&key_policy_text)
        .map_err(|e| wrong(&key_policy_path, format!("not JSON: {e}")))?;
    let conditions = key_policy["Statement"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find_map(|st| st["Condition"].get("StringEqualsIgnoreCase"))
        })
        .ok_or_else(|| wrong(&key_policy_path, "no StringEqualsIgnoreCase conditions"))?;
    for (key, pcr) in [
        (ccc_policy::keys::IMAGE_SHA384, eif.measurements.pcr0),
        (ccc_policy::keys::PCR1, eif.measurements.pcr1),
        (ccc_policy::keys::PCR2, eif.measurements.pcr2),
    ] {
        ensure!(
            conditions[key] == pcr.hex(),
            wrong(
                &key_policy_path,
                format!(
                    "its {key} is {}, the EIF's is {}",
                    conditions[key],
                    pcr.hex()
                )
            )
        );
    }

    for file in [
        super::key_policy_file_name(version),
        super::iam_policy_file_name(version),
    ] {
        let path = dir.join(&file);
        let findings = crate::policy::check_file(&path)?;
        ensure!(
            findings.is_empty(),
            wrong(
                &path,
                format!(
                    "has findings:\n{}",
                    findings
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            )
        );
    }

    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = Manifest::load(&manifest_path)?;
    for (name, digest) in &manifest.outputs {
        ensure!(
            crate::hash::sha256_file(&dir.join(name))? == digest.sha256,
            wrong(&manifest_path, format!("lists another SHA-256 for {name}"))
        );
    }
    ensure!(
        manifest.measurements == built,
        wrong(&manifest_path, "holds other PCRs than the EIF")
    );
    Ok(eif.measurements)
}

/// When this checkout's inputs are exactly those the committed `release/<V>/` was built from,
/// the rebuilt EIF must be the published one, byte for byte (its SHA-256 in the published
/// SHA256SUMS). Otherwise there is nothing to compare, and the step says so.
///
/// # Errors
/// The inputs match but the EIF differs.
fn compare_with_published(project: &Project, out: &Path, version: &str) -> Result<()> {
    let published = project.release_dir().join(version);
    let Ok(manifest) = Manifest::load(&published.join(MANIFEST_FILE)) else {
        eprintln!("release-reproducible: no release/{version}/ to compare with");
        return Ok(());
    };
    let git = crate::git::state(&project.root)?;
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
    let sums_path = published.join(SUMS_FILE);
    let sums = std::fs::read_to_string(&sums_path).io("read", &sums_path)?;
    let want = sums
        .lines()
        .find_map(|l| l.strip_suffix(&format!("  {eif}")))
        .ok_or_else(|| wrong(&sums_path, format!("does not list {eif}")))?;
    let got = crate::hash::sha256_file(&out.join(&eif))?;
    ensure!(
        got == want,
        Error::NotReproducible {
            differences: vec![format!(
                "the committed release {version} no longer rebuilds bit for bit from its own \
                 commit: {eif} has SHA-256 {got}, release/{version}/SHA256SUMS says {want}"
            )]
        }
    );
    eprintln!("release-reproducible: {eif} is byte-identical to the published release {version}");
    Ok(())
}

/// CI step `release-reproducible`: a release of the project's application into a scratch
/// directory, checked from the outside, and compared with the committed release of the same
/// inputs.
///
/// # Errors
/// The release fails (including a difference between its two passes) or its output is wrong.
pub fn reproducible(project: &Project) -> Result<()> {
    let out = scratch("release")?;
    release_into(project, &out, None)?;
    check_published(&out, &project.version, &project.image_name)?;
    eprintln!("release-reproducible: {} checked", out.display());
    compare_with_published(project, &out, &project.version)?;
    std::fs::remove_dir_all(&out).io("remove", &out)?;
    Ok(())
}

/// CI step `release-other-app`: `app` (in CCC's repository `--app ccc-init --example
/// nsm_probe`, a real enclave test app) goes through the same pipeline; its image shares PCR1
/// (kernel, command line, init) with the project application's and differs in PCR2.
///
/// # Errors
/// The release or a check fails.
pub fn other_app(project: &Project, app: &AppSpec) -> Result<()> {
    let out = scratch("release-app")?;
    release_into(project, &out, Some(app))?;
    let name = project.image_name_for(app);
    let other = check_published(&out, &project.version, &name)?;
    let template_dir = scratch("template-image")?;
    let template = super::build_image(project, &project.app, None, &template_dir, |_| {})?;
    ensure!(
        other.pcr1 == template.measurements.pcr1,
        Error::pcrs(format!(
            "PCR1 (kernel, command line, init) differs between the {name} image ({}) and the \
             project application's ({}): the bootstrap must not depend on the application",
            other.pcr1, template.measurements.pcr1
        ))
    );
    ensure!(
        other.pcr2 != template.measurements.pcr2 && other.pcr0 != template.measurements.pcr0,
        Error::pcrs(format!(
            "PCR0/PCR2 of the {name} image equal the project application's: the application \
             is not measured"
        ))
    );
    let eif_path = out.join(super::eif_file_name(&name, &project.version));
    let eif = Eif::open(&eif_path).map_err(|source| Error::Eif {
        path: eif_path.clone(),
        source,
    })?;
    ensure!(
        eif.identity.as_ref().map(|i| i.image_name.as_str()) == Some(name.as_str()),
        wrong(&eif_path, format!("the image's ImageName is not {name}"))
    );
    eprintln!(
        "release-other-app: {name} image shares PCR1 with the project's, PCR2 {} vs {}",
        other.pcr2, template.measurements.pcr2
    );
    std::fs::remove_dir_all(&out).io("remove", &out)?;
    std::fs::remove_dir_all(&template_dir).io("remove", &template_dir)?;
    Ok(())
}
