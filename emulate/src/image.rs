//! The images an emulation boots and what the key policy pins.
//!
//! - The release: `release/<V>/`'s EIF when it is present and is the published file (its
//!   SHA-256 in the manifest), otherwise rebuilt from the project's checkout with the release
//!   pipeline ([`ccc_build::release::build_image`]) and compared with the published PCRs.
//! - The tampered image: the same image with one byte of the application changed, in a section
//!   the program never loads (`.comment`), so it runs exactly as the original — only its
//!   measurement (PCR2, and so PCR0) differs.
//!
//! # When the checkout does not reproduce the published PCRs
//! That is a finding and the transcript says so loudly. Two cases:
//! - the checkout's inputs are the release's (its commit, clean tree): the release no longer
//!   rebuilds, which is a failure — there is nothing honest to emulate;
//! - the inputs moved on since the release (the usual state between releases): the emulation
//!   continues with the image this checkout builds and a key policy pinning *its* PCRs,
//!   written by the same function that wrote the published template
//!   ([`publish::key_policy`]). The verdict then names what was pinned, so a PASS never
//!   claims more than was checked.
//!
//! # A signed release whose EIF is absent
//! A signed release's PCR8 is the measurement of a certificate whose key is kept outside the
//! repository, so a rebuild from a clean clone cannot be signed like the release. The emulation
//! then rebuilds the unsigned image, requires its PCR0/1/2 to be the published ones (else the
//! finding above applies), signs it with a **throwaway signer** made for this run
//! ([`release::sign::Signer::throwaway`]: key in memory only, certificate valid for a day) and
//! installs a key policy pinning the published PCR0/1/2 and the throwaway certificate's PCR8
//! ([`Pinned::SubstituteSigner`]). The tampered image is signed by the same signer, so KMS
//! refuses it on the PCRs the tamper changed, not on PCR8. The transcript says so in a banner
//! and the verdict names it: this proves the published PCR0/1/2 reproduce from this checkout
//! and that PCR8 pinning and signature checks work, not the published PCR8.

use ccc_build::image::{Image, ImageSpec};
use ccc_build::project::{AppSpec, Project};
use ccc_build::release::publish::{self, Manifest, MeasurementsFile, PcrValues};
use ccc_build::release::sign::Signer;
use ccc_build::release::{self, EXPECTATIONS_FILE, MANIFEST_FILE};
use ccc_eif::elf::{Elf, SHF_ALLOC, SHT_NOBITS};
use ccc_eif::{Eif, Measurements, Pcr};
use ccc_policy::template::{self, Principals};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result, ensure};
use crate::transcript::Transcript;

/// The published files of one release.
#[derive(Debug)]
pub(crate) struct Release {
    /// The version (`release/<version>/`).
    pub(crate) version: String,
    /// `release/<version>/`.
    pub(crate) dir: PathBuf,
    /// PCR0/1/2 from `pcr-measurements-<V>.json`.
    pub(crate) measurements: Measurements,
    /// `kms-policy-template-<V>.json` as published (placeholders `ACCOUNT`, `ROLE`).
    pub(crate) key_policy_template: String,
    /// `build-manifest.json`.
    pub(crate) manifest: Manifest,
}

impl Release {
    /// The newest version recorded in the project's `release/pcr-expectations.json`.
    ///
    /// # Errors
    /// The file is missing, malformed or empty.
    pub(crate) fn latest(project: &Project) -> Result<String> {
        let path = project.root.join(EXPECTATIONS_FILE);
        let none_yet = || {
            Error::release(format!(
                "{} records no release yet: run `{} release` first",
                path.display(),
                project.tool.command
            ))
        };
        let text = std::fs::read_to_string(&path).map_err(|_| none_yet())?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::release(format!("{} is not JSON: {e}", path.display())))?;
        let versions = value
            .get("releases")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| {
                Error::release(format!("{} has no `releases` object", path.display()))
            })?;
        versions
            .keys()
            .max_by_key(|v| publish::version_key(v))
            .cloned()
            .ok_or_else(none_yet)
    }

    /// Loads the project's `release/<version>/`.
    ///
    /// # Errors
    /// A file is missing or malformed, or the files disagree about the version.
    pub(crate) fn load(project: &Project, version: &str) -> Result<Self> {
        let dir = project.release_dir().join(version);
        ensure!(
            dir.is_dir(),
            Error::release(format!(
                "no published release {version}: {} does not exist (published versions are \
                 listed in {EXPECTATIONS_FILE}; `{} release --version {version}` makes it)",
                dir.display(),
                project.tool.command
            ))
        );
        let measurements_file =
            MeasurementsFile::load(&dir.join(release::measurements_file_name(version)))?;
        let manifest = Manifest::load(&dir.join(MANIFEST_FILE))?;
        ensure!(
            measurements_file.version == version && manifest.version == version,
            Error::release(format!(
                "{} describes version {} (manifest: {}), not {version}",
                dir.display(),
                measurements_file.version,
                manifest.version
            ))
        );
        let template_path = dir.join(release::key_policy_file_name(version));
        let key_policy_template = std::fs::read_to_string(&template_path)
            .map_err(|e| Error::release(format!("cannot read {}: {e}", template_path.display())))?;
        Ok(Self {
            version: version.to_owned(),
            measurements: measurements(&measurements_file.measurements)?,
            dir,
            key_policy_template,
            manifest,
        })
    }

    /// The application the release runs, as its manifest records it.
    ///
    /// # Errors
    /// An application kind this tool does not know.
    pub(crate) fn app(&self) -> Result<AppSpec> {
        let app = &self.manifest.app;
        Ok(AppSpec::from_kind(&app.package, &app.kind, &app.name)?)
    }

    /// The published PCR8 (hex) of a signed release.
    pub(crate) fn pcr8_hex(&self) -> Option<String> {
        self.measurements.pcr8.map(|p| p.hex())
    }

    /// The EIF's file name in `release/<V>/`.
    pub(crate) fn eif_name(&self) -> String {
        release::eif_file_name(&self.manifest.image_name, &self.version)
    }

    /// `release/<V>/<eif>` when it exists and is the published file (SHA-256 as in the
    /// manifest); `Ok(None)` when it is absent (EIFs are not committed) or another file.
    ///
    /// # Errors
    /// The file cannot be read.
    pub(crate) fn published_eif(&self, transcript: &Transcript) -> Result<Option<PathBuf>> {
        let path = self.dir.join(self.eif_name());
        if !path.is_file() {
            return Ok(None);
        }
        let sha = ccc_build::hash::sha256_file(&path)?;
        match self.manifest.outputs.get(&self.eif_name()) {
            Some(digest) if digest.sha256 == sha => Ok(Some(path)),
            _ => {
                transcript.line(
                    "image",
                    format!(
                        "{} is not the published EIF (SHA-256 {sha} is not the manifest's): \
                         ignored, rebuilding",
                        path.display()
                    ),
                );
                Ok(None)
            }
        }
    }

    /// The key policy to install for the published PCRs, with the placeholders replaced by
    /// `principals`': the published template, after checking that it is exactly what the
    /// release tool writes for the published PCRs (so the file on disk pins what
    /// `pcr-measurements` says). A published template the linter has findings for was written
    /// by an older tool and is superseded: the emulation then installs what the tool writes
    /// today for the same PCRs, and the second value says so (with the findings).
    ///
    /// # Errors
    /// The template is not JSON, or differs from what the tool writes while passing the linter
    /// (the published files disagree).
    pub(crate) fn filled_key_policy(
        &self,
        principals: &Principals,
    ) -> Result<(String, Option<String>)> {
        let path = self.dir.join(release::key_policy_file_name(&self.version));
        let published: serde_json::Value = serde_json::from_str(&self.key_policy_template)
            .map_err(|e| Error::release(format!("{} is not JSON: {e}", path.display())))?;
        let placeholders = publish::key_policy(&self.measurements, &Principals::placeholders())?;
        let expected: serde_json::Value = serde_json::from_str(&placeholders)
            .map_err(|e| Error::release(format!("the tool's key policy is not JSON: {e}")))?;
        if published == expected {
            let filled = template::fill_placeholders(&self.key_policy_template, principals)
                .map_err(|e| Error::release(format!("{}: {e}", path.display())))?;
            return Ok((filled, None));
        }
        let findings = ccc_build::policy::check_text(&self.key_policy_template)
            .map_err(|e| e.context(format!("{} is not a key policy", path.display())))?;
        ensure!(
            !findings.is_empty(),
            Error::release(format!(
                "{} is not the key policy the release tool writes for the PCRs in {}: the \
                 published files disagree (re-publish the release, or restore the template \
                 from git)",
                path.display(),
                release::measurements_file_name(&self.version)
            ))
        );
        let note = format!(
            "{} was written by an older release tool and is SUPERSEDED ({} findings of `policy \
             check`: {}); installing instead what the tool writes today for the same published \
             PCRs",
            path.display(),
            findings.len(),
            findings
                .iter()
                .map(|f| f.rule.id())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok((
            publish::key_policy(&self.measurements, principals)?,
            Some(note),
        ))
    }
}

/// Published hex PCRs as measurements.
fn measurements(values: &PcrValues) -> Result<Measurements> {
    let pcr = |name: &str, hex: &str| {
        Pcr::from_hex(hex).map_err(|_| {
            Error::release(format!("the published {name} is not 96 hex digits: {hex}"))
        })
    };
    Ok(Measurements {
        pcr0: pcr("PCR0", &values.pcr0)?,
        pcr1: pcr("PCR1", &values.pcr1)?,
        pcr2: pcr("PCR2", &values.pcr2)?,
        pcr8: values
            .pcr8
            .as_deref()
            .map(|hex| pcr("PCR8", hex))
            .transpose()?,
    })
}

/// What the key policy of an emulation pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pinned {
    /// The published release's PCRs (its template, placeholders filled in).
    Published,
    /// The PCRs of the image this checkout builds, because it no longer reproduces the
    /// published ones; the reason is printed.
    Checkout {
        /// Why the published PCRs could not be used.
        reason: String,
    },
    /// The published PCR0/1/2 (the rebuilt image reproduces them) and, instead of the
    /// published PCR8, the PCR8 of the throwaway certificate that signed the rebuilt image
    /// (the release's key is not here).
    SubstituteSigner {
        /// Why the published PCR8 could not be used.
        reason: String,
        /// The throwaway certificate's PCR8, pinned instead.
        pcr8: Pcr,
    },
}

/// An EIF to boot.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    /// The file.
    pub(crate) eif: PathBuf,
    /// Its PCRs as ccc-eif computes them from the file.
    pub(crate) measurements: Measurements,
    /// Its size in bytes.
    pub(crate) len: u64,
    /// Where it came from, for the transcript.
    pub(crate) origin: String,
}

impl Subject {
    /// Reads the EIF; a signed one must verify (signature, PCR0, certificate valid now), and
    /// when `release_pcr8` is given (the published EIF of a signed release) it must be signed
    /// with that certificate. Fails closed: a bad signature is never booted as "unsigned".
    fn open(eif: &Path, origin: String, release_pcr8: Option<Option<&str>>) -> Result<Self> {
        let read = Eif::open(eif).map_err(|source| ccc_build::Error::Eif {
            path: eif.to_path_buf(),
            source,
        })?;
        let now = ccc_sdk::time::UnixMillis::now();
        match release_pcr8 {
            Some(pcr8) => {
                release::sign::check_published(eif, &read, pcr8, now)?;
            }
            None => {
                read.check_signature(Some(now))
                    .map_err(|source| ccc_build::Error::Signature {
                        path: eif.to_path_buf(),
                        source,
                    })?;
            }
        }
        Ok(Self {
            eif: eif.to_path_buf(),
            measurements: read.measurements,
            len: read.len,
            origin,
        })
    }
}

/// The image the default scenario boots, and what its key policy pins.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The EIF.
    pub(crate) subject: Subject,
    /// What the policy pins.
    pub(crate) pinned: Pinned,
    /// The PCRs the policy pins (the published ones, or the subject's).
    pub(crate) pinned_measurements: Measurements,
    /// The throwaway signer of this run (a signed release rebuilt here); the tampered image
    /// is signed with it too.
    pub(crate) signer: Option<Arc<Signer>>,
}

/// Where the emulation builds images: `target/ccc-emulate/<V>/<what>/` of the project.
fn build_dir(project: &Project, version: &str, what: &str) -> PathBuf {
    project
        .root
        .join("target")
        .join("ccc-emulate")
        .join(version)
        .join(what)
}

/// Builds the release's image from the project's checkout (one pass of the release pipeline,
/// metadata as the release's), optionally changed by `customize`.
fn build_release_image(
    project: &Project,
    release: &Release,
    what: &str,
    customize: impl FnOnce(&mut ImageSpec<'_>),
) -> Result<Image> {
    let app = release.app()?;
    // Concurrent emulations would clobber each other's build directories (and the release
    // pipeline's first pass): one build at a time.
    let lock_dir = project.root.join("target").join("ccc-emulate");
    let lock_path = lock_dir.join("build.lock");
    let locked = std::fs::create_dir_all(&lock_dir)
        .and_then(|()| std::fs::File::create(&lock_path))
        .and_then(|lock| lock.lock().map(|()| lock));
    let _lock =
        locked.map_err(|e| Error::setup(format!("cannot lock {}: {e}", lock_path.display())))?;
    let image_name = release.manifest.image_name.clone();
    let version = release.version.clone();
    let dir = build_dir(project, &release.version, what);
    let mut image = release::build_image(project, &app, None, &dir, |spec| {
        spec.identity.image_name = image_name;
        spec.identity.image_version = version;
        customize(spec);
    })?;
    // build_image names the file after the project's version; the transcript should show the
    // release's name (the file name is not measured).
    let named = image.eif.with_file_name(release.eif_name());
    if named != image.eif {
        std::fs::rename(&image.eif, &named).map_err(|e| {
            Error::setup(format!(
                "cannot rename {} to {}: {e}",
                image.eif.display(),
                named.display()
            ))
        })?;
        image.eif = named;
    }
    Ok(image)
}

/// Picks the image of the default scenario: `--eif`, the published EIF, or a rebuild; compares
/// its PCRs with the published ones and decides what the policy pins (module docs).
///
/// # Errors
/// The EIF is invalid, the build fails, or the checkout is the release's and still does not
/// reproduce its PCRs.
pub(crate) fn resolve(
    project: &Project,
    release: &Release,
    eif: Option<&Path>,
    transcript: &Transcript,
) -> Result<Resolved> {
    let (subject, rebuilt, signer) = match eif {
        Some(path) => (
            Subject::open(path, format!("--eif {}", path.display()), None)?,
            false,
            None,
        ),
        None => match release.published_eif(transcript)? {
            Some(path) => (
                Subject::open(
                    &path,
                    format!("the published {}", release.eif_name()),
                    Some(release.pcr8_hex().as_deref()),
                )?,
                false,
                None,
            ),
            None if release.measurements.pcr8.is_some() => {
                transcript.line(
                    "image",
                    format!(
                        "release/{}/{} is not here (EIFs are not committed) and release {} is \
                         SIGNED with a key this machine does not hold: rebuilding the unsigned \
                         image from this checkout with the release pipeline, then signing it \
                         with a THROWAWAY signer made for this run (to use the published \
                         signed image instead, put it in release/{}/ or pass --eif)",
                        release.version,
                        release.eif_name(),
                        release.version,
                        release.version
                    ),
                );
                let signer = Arc::new(Signer::throwaway(ccc_sdk::time::UnixMillis::now())?);
                let image = build_release_image(project, release, "release", |_| {})?;
                let subject = sign_rebuilt(
                    &signer,
                    &image.eif,
                    format!(
                        "rebuilt from this checkout and signed by the throwaway signer ({})",
                        image.eif.display()
                    ),
                )?;
                (subject, true, Some(signer))
            }
            None => {
                transcript.line(
                    "image",
                    format!(
                        "release/{}/{} is not here (EIFs are not committed): rebuilding it \
                         from this checkout with the release pipeline",
                        release.version,
                        release.eif_name()
                    ),
                );
                let image = build_release_image(project, release, "release", |_| {})?;
                (
                    Subject::open(
                        &image.eif,
                        format!("rebuilt from this checkout ({})", image.eif.display()),
                        None,
                    )?,
                    true,
                    None,
                )
            }
        },
    };
    transcript.line(
        "image",
        format!("booting {} ({} bytes)", subject.origin, subject.len),
    );
    let published = PcrValues::of(&release.measurements, false);
    let ours = PcrValues::of(&subject.measurements, false);
    if release.measurements.pcr8.is_some()
        && subject.measurements.pcr8.is_none()
        && published.pcrs() == ours.pcrs()
    {
        return Err(ccc_build::Error::Signature {
            path: subject.eif.clone(),
            source: ccc_eif::SignatureCheckError::Missing,
        }
        .into());
    }
    if let Some(signer) = &signer
        && published.pcrs() == ours.pcrs()
    {
        return Ok(substitute_signer(release, subject, signer, transcript));
    }
    if published.same_pcrs(&ours) {
        transcript.line(
            "check",
            format!(
                "PCR0/1/2 of the image equal release/{}/{}: ok",
                release.version,
                release::measurements_file_name(&release.version)
            ),
        );
        return Ok(Resolved {
            subject,
            pinned: Pinned::Published,
            pinned_measurements: release.measurements,
            signer: None,
        });
    }
    let table = publish::pcr_table(&published, &ours);
    let git = ccc_build::git::state(&project.root)?;
    let same_inputs = git.commit == release.manifest.git.commit && !git.dirty;
    let command = &project.tool.command;
    if rebuilt && same_inputs {
        return Err(Error::release(format!(
            "FINDING: this checkout is release {}'s commit {} (clean), yet its rebuilt image has \
             other PCRs than the published ones:\n{table}\nThe release no longer reproduces \
             (toolchain, kernel cache or host packages differ?); `{command} verify-release {}` \
             shows the same. Nothing honest to emulate.",
            release.version, git.commit, release.version
        )));
    }
    let reason = if rebuilt {
        format!(
            "this checkout's inputs (commit {}{}) are not release {}'s (commit {}), and its \
             image has other PCRs{}",
            short(&git.commit),
            if git.dirty { ", dirty" } else { "" },
            release.version,
            short(&release.manifest.git.commit),
            if signer.is_some() {
                "; the release's signing key is not here, so the image is signed by a \
                 THROWAWAY certificate made for this run (its PCR8 is pinned)"
            } else {
                ""
            }
        )
    } else {
        format!(
            "{} is not release {}'s image",
            subject.origin, release.version
        )
    };
    let bar = "!".repeat(78);
    transcript.line(
        "FINDING",
        format!(
            "{bar}\nthe image does NOT reproduce the PCRs published in release/{}/:\n{table}\n{reason}.\n\
             The emulation continues with this image and a key policy pinning ITS PCRs (what \
             `{command} release` would publish from here); the verdict says so.\n{bar}",
            release.version
        ),
    );
    let pinned_measurements = subject.measurements;
    Ok(Resolved {
        subject,
        pinned: Pinned::Checkout { reason },
        pinned_measurements,
        signer,
    })
}

/// Signs a rebuilt (unsigned) EIF in place with this run's throwaway signer and opens it,
/// requiring the signature to verify and to be that signer's (fail closed).
///
/// # Errors
/// Signing, or the check of the signed file, fails.
pub(crate) fn sign_rebuilt(signer: &Signer, eif: &Path, origin: String) -> Result<Subject> {
    signer.sign_file(eif, ccc_sdk::time::UnixMillis::now())?;
    let pcr8 = signer.pcr8().hex();
    Subject::open(eif, origin, Some(Some(&pcr8)))
}

/// What the policy pins when a signed release's image was rebuilt, reproduces the published
/// PCR0/1/2 and was signed by the throwaway signer: the published PCRs with the throwaway
/// PCR8; the transcript says so in a banner.
pub(crate) fn substitute_signer(
    release: &Release,
    subject: Subject,
    signer: &Arc<Signer>,
    transcript: &Transcript,
) -> Resolved {
    let pcr8 = signer.pcr8();
    let published_pcr8 = release.pcr8_hex().unwrap_or_default();
    transcript.line(
        "check",
        format!(
            "PCR0/1/2 of the rebuilt image equal release/{}/{}: ok",
            release.version,
            release::measurements_file_name(&release.version)
        ),
    );
    let bar = "!".repeat(78);
    transcript.line(
        "SIGNER",
        format!(
            "{bar}\nrelease {version} is SIGNED with a key this machine does not hold (published \
             PCR8 {published_pcr8}).\nThe rebuilt image is signed with a THROWAWAY certificate \
             made for this run only (key in memory, never written; certificate valid for {hours} \
             h):\n  PCR8 {pcr8} (throwaway)\nThe key policy pins the published PCR0/1/2 and \
             this THROWAWAY PCR8 instead of the published one.\nStill proven: the published \
             PCR0/1/2 reproduce from this checkout; PCR8 pinning (a DenySecretsUnlessPCR8Matches \
             policy) and the signature check before boot work.\nNOT proven: the published PCR8 \
             (the release's certificate); to check it, put the published signed EIF in \
             release/{version}/ or pass it with --eif.\n{bar}",
            version = release.version,
            hours = release::sign::THROWAWAY_VALIDITY_SECS / 3600,
        ),
    );
    let reason = format!(
        "release {}'s signing key is not here: the rebuilt image is signed with a throwaway \
         certificate for this run, PCR8 {} pinned instead of the published {}",
        release.version,
        short(&pcr8.hex()),
        short(&published_pcr8)
    );
    Resolved {
        subject,
        pinned: Pinned::SubstituteSigner { reason, pcr8 },
        pinned_measurements: Measurements {
            pcr8: Some(pcr8),
            ..release.measurements
        },
        signer: Some(Arc::clone(signer)),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The key policy an emulation installs: the published template filled in, or (when the
/// checkout's PCRs are pinned) the same tool's policy for those PCRs; and a note when the
/// published template is superseded (see [`Release::filled_key_policy`]).
///
/// # Errors
/// As [`Release::filled_key_policy`] and [`publish::key_policy`].
pub(crate) fn key_policy(
    release: &Release,
    resolved: &Resolved,
    principals: &Principals,
) -> Result<(String, Option<String>)> {
    match resolved.pinned {
        Pinned::Published => release.filled_key_policy(principals),
        Pinned::Checkout { .. } => Ok((
            publish::key_policy(&resolved.pinned_measurements, principals)?,
            None,
        )),
        // The published template must still be the tool's for the published PCRs (checked
        // by filling it); what is installed is the same tool's policy with PCR8 replaced.
        Pinned::SubstituteSigner { .. } => {
            let (_, superseded) = release.filled_key_policy(principals)?;
            Ok((
                publish::key_policy(&resolved.pinned_measurements, principals)?,
                superseded,
            ))
        }
    }
}

/// The one-byte change made to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tamper {
    /// The ELF section holding the byte.
    pub(crate) section: String,
    /// The byte's offset in the file.
    pub(crate) offset: u64,
    /// Its value before and after.
    pub(crate) before: u8,
    pub(crate) after: u8,
    /// The application's size (unchanged).
    pub(crate) len: u64,
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "one byte of the application changed: file offset {} (0x{:x}) in section {} \
             (not loaded at run time), 0x{:02x} -> 0x{:02x}; same size ({} bytes)",
            self.offset, self.offset, self.section, self.before, self.after, self.len
        )
    }
}

/// Builds the tampered image: the release's application with one byte changed
/// ([`tamper_elf`]), signed by `signer` when there is one (this run's throwaway signer, so the
/// tampered image differs from the pinned PCRs only where the tamper changed them).
///
/// # Errors
/// The build or the signing fails, or the application has no section to change.
pub(crate) fn build_tampered(
    project: &Project,
    release: &Release,
    signer: Option<&Signer>,
) -> Result<(Subject, Tamper)> {
    let dir = build_dir(project, &release.version, "tampered");
    let mut tampered: Option<Result<Tamper>> = None;
    let image = build_release_image(project, release, "tampered", |spec| {
        let copy = dir.join(format!("{}.tampered", spec.app_name));
        let result = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::read(&spec.app))
            .map_err(|e| Error::setup(format!("cannot copy the application: {e}")))
            .and_then(|mut bytes| {
                let tamper = tamper_elf(&mut bytes)?;
                std::fs::write(&copy, &bytes)
                    .map_err(|e| Error::setup(format!("cannot write {}: {e}", copy.display())))?;
                Ok(tamper)
            });
        if result.is_ok() {
            spec.app = copy;
        }
        tampered = Some(result);
    })?;
    let tamper =
        tampered.ok_or_else(|| Error::setup("the image was built without calling customize"))??;
    let origin = format!("the TAMPERED image ({})", image.eif.display());
    let subject = match signer {
        Some(signer) => sign_rebuilt(
            signer,
            &image.eif,
            format!("{origin}, signed by the same throwaway signer"),
        )?,
        None => Subject::open(&image.eif, origin, None)?,
    };
    Ok((subject, tamper))
}

/// The application cannot be tampered with as the scenario needs.
fn untamperable(why: &str) -> Error {
    Error::release(format!(
        "the tampered scenario changes one byte of the application outside its loaded \
         sections, but {why}"
    ))
}

/// Changes one byte of a little-endian ELF64 file inside a section that is not loaded at run
/// time (`.comment` when there is one, else another non-`SHF_ALLOC` section with file
/// contents other than the section-name table): the program runs exactly as before, only its
/// bytes — and so its measurement — differ. The section headers are read with `ccc_eif::elf`.
///
/// # Errors
/// Not an ELF64 little-endian file, or no such section.
pub(crate) fn tamper_elf(bytes: &mut [u8]) -> Result<Tamper> {
    let elf = Elf::parse(bytes).map_err(|e| untamperable(&format!("it is not usable: {e}")))?;
    let names = elf.section_names_index();
    let candidates: Vec<(String, u64, u64)> = elf
        .sections()
        .map_err(|e| untamperable(&format!("its section headers are not usable: {e}")))?
        .into_iter()
        .filter(|s| {
            s.index != names && s.kind != SHT_NOBITS && s.flags & SHF_ALLOC == 0 && s.size > 0
        })
        .map(|s| (s.name, s.offset, s.size))
        .collect();
    let (name, offset, size) = candidates
        .iter()
        .find(|(name, _, _)| name == ".comment")
        .or_else(|| candidates.first())
        .cloned()
        .ok_or_else(|| untamperable("it has no section that is not loaded at run time"))?;
    let at = offset.saturating_add(size / 2);
    let len = bytes.len() as u64;
    let byte = usize::try_from(at)
        .ok()
        .and_then(|i| bytes.get_mut(i))
        .ok_or_else(|| untamperable(&format!("section {name} lies outside the file")))?;
    let before = *byte;
    *byte ^= 0x01;
    Ok(Tamper {
        section: name,
        offset: at,
        before,
        after: *byte,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with sections: null, .text (ALLOC), .comment, .shstrtab.
    fn elf() -> Vec<u8> {
        let names = b"\0.text\0.comment\0.shstrtab\0";
        let text = [0x90u8; 16];
        let comment = b"rustc version 1.95.0\0";
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        let text_off = out.len();
        out.extend_from_slice(&text);
        let comment_off = out.len();
        out.extend_from_slice(comment);
        let names_off = out.len();
        out.extend_from_slice(names);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let shoff = out.len();
        let mut header = |name: u32, kind: u32, flags: u64, offset: usize, size: usize| {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            out.extend_from_slice(&h);
        };
        header(0, 0, 0, 0, 0);
        header(1, 1, SHF_ALLOC | 0x4, text_off, text.len());
        header(7, 1, 0x30, comment_off, comment.len());
        header(16, 3, 0, names_off, names.len());
        out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        out[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        out[0x3C..0x3E].copy_from_slice(&4u16.to_le_bytes());
        out[0x3E..0x40].copy_from_slice(&3u16.to_le_bytes());
        out
    }

    #[test]
    fn one_byte_of_the_comment_section_changes() {
        let original = elf();
        let mut bytes = original.clone();
        let tamper = tamper_elf(&mut bytes).unwrap();
        assert_eq!(tamper.section, ".comment");
        let differing: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i] != original[i])
            .collect();
        assert_eq!(differing, [tamper.offset as usize]);
        assert_eq!(bytes.len(), original.len());
        assert_eq!(tamper.before ^ tamper.after, 1);
        // Inside .comment (which starts at 64 + 16 and is 21 bytes long).
        assert!((80..101).contains(&tamper.offset), "{tamper}");
    }

    #[test]
    fn the_real_app_is_tamperable_and_not_elf_is_refused() {
        // This very test binary is an ELF64 with non-loaded sections.
        let mut me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let before = me.clone();
        let tamper = tamper_elf(&mut me).unwrap();
        assert_ne!(me, before);
        assert_eq!(
            me.iter().zip(&before).filter(|(a, b)| a != b).count(),
            1,
            "{tamper}"
        );
        assert!(tamper_elf(&mut b"#!/bin/sh\n".to_vec()).is_err());
        let mut truncated = elf();
        truncated.truncate(0x30);
        assert!(tamper_elf(&mut truncated).is_err());
    }

    /// A scratch unsigned EIF (kernel and ramdisks made up; `ramdisk_byte` varies the image).
    fn scratch_eif(dir: &Path, name: &str, ramdisk_byte: u8) -> PathBuf {
        use ccc_eif::{BuildInfo, EifBuilder, EifIdentity, SourceDateEpoch};
        let identity = EifIdentity::new(
            "scratch",
            "9.9.9",
            BuildInfo::new(
                SourceDateEpoch::from_secs(1_700_000_000),
                "ccc",
                "0.2.0",
                "Linux",
                "6.12",
            ),
        );
        // The first ramdisk is the bootstrap one (PCR1), the second the application's (PCR2).
        let (kernel, init, app) = (vec![3u8; 4096], vec![4u8; 512], vec![ramdisk_byte; 700]);
        let path = dir.join(name);
        EifBuilder::new(&kernel, "console=ttyS0", identity)
            .ramdisk(&init)
            .ramdisk(&app)
            .write_file(&path)
            .unwrap();
        path
    }

    /// A signed release whose key is not here: the rebuilt (here: scratch) unsigned image is
    /// signed by the throwaway signer, verifies (signature, PCR0, the signer's certificate),
    /// keeps the published PCR0/1/2 and gets a PCR8 other than the published one; the key
    /// policy is the published template with only PCR8 replaced by the throwaway's; the
    /// tampered image signed by the same signer differs from the pins in PCR0/PCR2 only.
    #[test]
    fn a_signed_release_rebuilt_here_is_signed_by_a_throwaway_signer_and_pinned() {
        let dir = std::env::temp_dir().join(format!("ccc-emulate-signer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = ccc_sdk::time::UnixMillis::now();

        // The release as published: signed with a key kept elsewhere (another signer here).
        let release_key = Signer::throwaway(now).unwrap();
        let published_eif = scratch_eif(&dir, "published.eif", 4);
        let (published, _) = release_key.sign_file(&published_eif, now).unwrap();
        let published_pcr8 = published.pcr8.unwrap();
        let project = crate::tests_support::ccc_project();
        let mut release = Release::load(&project, &Release::latest(&project).unwrap()).unwrap();
        release.measurements = published;
        release.key_policy_template =
            publish::key_policy(&published, &Principals::placeholders()).unwrap();

        // The rebuild (unsigned, same bytes as the release's unsigned image), signed here.
        let rebuilt = scratch_eif(&dir, "rebuilt.eif", 4);
        assert!(Eif::open(&rebuilt).unwrap().signature.is_none());
        let signer = Arc::new(Signer::throwaway(now).unwrap());
        let subject = sign_rebuilt(&signer, &rebuilt, "rebuilt".to_owned()).unwrap();
        let read = Eif::open(&rebuilt).unwrap();
        let check = read.require_signed(Some(now)).unwrap();
        assert_eq!(check.pcr8, signer.pcr8());
        assert_eq!(subject.measurements.pcr0, published.pcr0);
        assert_eq!(subject.measurements.pcr1, published.pcr1);
        assert_eq!(subject.measurements.pcr2, published.pcr2);
        assert_eq!(subject.measurements.pcr8, Some(signer.pcr8()));
        assert_ne!(signer.pcr8(), published_pcr8);
        // Fail closed: the rebuilt image is not accepted as the published signed one.
        let err = Subject::open(&rebuilt, "x".to_owned(), Some(Some(&published_pcr8.hex())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("signed with another certificate"), "{err}");

        let resolved = substitute_signer(&release, subject, &signer, &Transcript::start());
        assert!(matches!(
            &resolved.pinned,
            Pinned::SubstituteSigner { pcr8, reason }
                if *pcr8 == signer.pcr8() && reason.contains("throwaway")
        ));
        assert_eq!(
            resolved.pinned_measurements,
            Measurements {
                pcr8: Some(signer.pcr8()),
                ..published
            }
        );
        let principals = Principals::new(
            "111122223333",
            "ccc-emulator-parent",
            "ccc-emulator-key-admin",
        )
        .unwrap();
        let (policy, superseded) = key_policy(&release, &resolved, &principals).unwrap();
        assert!(superseded.is_none());
        let (published_filled, _) = release.filled_key_policy(&principals).unwrap();
        assert!(published_filled.contains(&published_pcr8.hex()));
        assert!(policy.contains("DenySecretsUnlessPCR8Matches"));
        let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
        let expected: serde_json::Value = serde_json::from_str(
            &published_filled.replace(&published_pcr8.hex(), &signer.pcr8().hex()),
        )
        .unwrap();
        assert_eq!(policy, expected);
        let text = policy.to_string();
        for pcr in [
            published.pcr0,
            published.pcr1,
            published.pcr2,
            signer.pcr8(),
        ] {
            assert!(text.contains(&pcr.hex()), "{pcr} not pinned: {text}");
        }
        assert!(!text.contains(&published_pcr8.hex()), "{text}");

        // The tampered image, signed by the same throwaway signer: PCR8 matches the pin, the
        // image PCRs do not.
        let tampered = scratch_eif(&dir, "tampered.eif", 5);
        let tampered = sign_rebuilt(&signer, &tampered, "tampered".to_owned()).unwrap();
        assert_eq!(
            tampered.measurements.pcr8,
            resolved.pinned_measurements.pcr8
        );
        assert_ne!(tampered.measurements.pcr0, published.pcr0);
        assert_eq!(tampered.measurements.pcr1, published.pcr1);
        assert_ne!(tampered.measurements.pcr2, published.pcr2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The committed release's template fills to the tool's policy for the emulator's
    /// principals, or (a superseded template, with findings) is replaced by it; an edited
    /// template that passes the linter but is not the tool's is refused.
    #[test]
    fn the_committed_template_fills_to_the_tools_policy() {
        let project = crate::tests_support::ccc_project();
        let version = Release::latest(&project).unwrap();
        let release = Release::load(&project, &version).unwrap();
        let principals = Principals::new(
            "111122223333",
            "ccc-emulator-parent",
            "ccc-emulator-key-admin",
        )
        .unwrap();
        let (filled, note) = release.filled_key_policy(&principals).unwrap();
        let filled: serde_json::Value = serde_json::from_str(&filled).unwrap();
        let tool: serde_json::Value =
            serde_json::from_str(&publish::key_policy(&release.measurements, &principals).unwrap())
                .unwrap();
        assert_eq!(filled, tool);
        let published_findings =
            ccc_build::policy::check_text(&release.key_policy_template).unwrap();
        assert_eq!(note.is_some(), !published_findings.is_empty(), "{note:?}");
        let mut edited = release;
        edited.key_policy_template =
            publish::key_policy(&edited.measurements, &Principals::placeholders())
                .unwrap()
                .replacen("kms:DescribeKey", "kms:GetPublicKey", 1);
        let err = edited
            .filled_key_policy(&principals)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the published files disagree"), "{err}");
    }
}
