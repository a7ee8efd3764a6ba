//! The CI step `policy-check`: every key-policy and IAM-policy template published from 0.2.0 on
//! (0.1.0's is superseded; its findings are pinned by a test of `ccc_build::policy`), and the
//! templates the release tool writes today, through the linter of `policy check`
//! (`ccc_build::policy`); and every environment of `deploy/environments.toml` rendered, its
//! policies equal to the committed `deploy/policies/<env>/` and `release/pcr-expectations.json`
//! recording the environments that allow each release.
//!
//! The `cargo xtask policy ...` commands themselves are `ccc_lifecycle::policy`'s.

use anyhow::{Context, Result, ensure};
use ccc_build::policy::{check_file, check_text};
use ccc_build::release::{self, publish};
use ccc_policy::Finding;
use ccc_policy::template::{self, ImagePins, Principals};
use std::path::Path;

/// The oldest release whose published templates must pass the linter (0.1.0's predates it).
pub(crate) const FIRST_CHECKED_RELEASE: &str = "0.2.0";

/// The published versions (directories of `release/`), oldest first.
fn published_versions(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("release");
    let mut versions = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            versions.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    versions.sort_by_key(|v| publish::version_key(v));
    Ok(versions)
}

fn ensure_clean(what: &str, findings: &[Finding]) -> Result<()> {
    ensure!(
        findings.is_empty(),
        "{what} has findings:\n{}",
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// The CI step: every published template from [`FIRST_CHECKED_RELEASE`] on, and the templates
/// the release tool writes today (for the newest release's PCRs, with placeholders and with
/// real principals), must have no findings.
///
/// # Errors
/// A template with findings, or a release directory that cannot be read.
pub(crate) fn ci_step() -> Result<()> {
    let root = crate::workspace_root();
    let versions = published_versions(&root)?;
    let first = publish::version_key(FIRST_CHECKED_RELEASE);
    let mut checked = 0usize;
    for version in &versions {
        if publish::version_key(version) < first {
            eprintln!(
                "policy-check: release {version} predates the linter and is superseded (its \
                 findings are pinned by the ccc-build test `release_0_1_0_has_its_known_findings`)"
            );
            continue;
        }
        let dir = root.join("release").join(version);
        for file in [
            release::key_policy_file_name(version),
            release::iam_policy_file_name(version),
        ] {
            let path = dir.join(&file);
            ensure_clean(&path.display().to_string(), &check_file(&path)?)?;
            eprintln!("policy-check: {}: no findings", path.display());
            checked += 1;
        }
    }
    let newest = versions
        .last()
        .context("release/ holds no published version")?;
    let measurements = publish::MeasurementsFile::load(
        &root
            .join("release")
            .join(newest)
            .join(release::measurements_file_name(newest)),
    )?
    .measurements;
    let pins = ImagePins::new(&measurements.pcr0, &measurements.pcr1, &measurements.pcr2)?;
    for principals in [
        Principals::placeholders(),
        Principals::new("111122223333", "EnclaveParent", "KeyAdmin")?,
    ] {
        ensure_clean(
            "the key policy the release tool writes",
            &check_text(&template::key_policy(&pins, &principals))?,
        )?;
    }
    ensure_clean(
        "the IAM policy the release tool writes",
        &check_text(&template::iam_policy(&pins))?,
    )?;
    eprintln!(
        "policy-check: {checked} published template(s) and the release tool's templates (for \
         release {newest}'s PCRs): no findings"
    );
    let paths = ccc_lifecycle::files::Files::default().resolve(&root);
    let stale = ccc_lifecycle::policy::stale_renderings(&paths)?;
    ensure!(stale.is_empty(), "{}", stale.join("\n"));
    eprintln!(
        "policy-check: every environment of {} is rendered in deploy/policies/ and recorded in \
         {}",
        paths.environments.display(),
        paths.expectations.display()
    );
    Ok(())
}
