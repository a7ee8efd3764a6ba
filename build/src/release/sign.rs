//! Signing a release's EIF (`release --sign-key KEY.pem --sign-cert CERT.pem`) and checking a
//! signed release (`verify-release`, `emulate`).
//!
//! Both passes build the **unsigned** image and are compared byte for byte; only then is the
//! first pass's image signed ([`ccc_eif::sign_image`]: the signature section is appended, the
//! header's section table and CRC rewritten, every other byte kept). ECDSA signatures here are
//! randomised (AWS-LC), so two signings of one image differ; what is reproducible is the
//! unsigned image (recorded in the manifest's `signing.unsigned_eif`), PCR0/1/2 and PCR8.
//!
//! The certificate is checked when signing: it holds the key's public key (P-384), and it is
//! valid now (a certificate that has expired, or is not valid yet, is refused: Nitro refuses
//! to start an enclave whose signing certificate has expired). Reading a signed image checks
//! the signature, that it covers this image's PCR0, and the validity at the time given.

use std::path::{Path, PathBuf};

use ccc_eif::{Eif, LocalSigner, Measurements, Pcr, SignatureCheck};
use ccc_sdk::time::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result, ensure};
use crate::release::publish::FileDigest;

/// Options of `release` that sign the image.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct SignArgs {
    /// Sign the EIF with this ECDSA P-384 private key (PEM: PKCS#8 `PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`), as `nitro-cli build-enclave --private-key` does; PCR8 is then
    /// published and pinned by the policies. Needs --sign-cert. Keep the key outside the
    /// repository (docs/releasing.md).
    #[arg(long, value_name = "KEY.pem", requires = "sign_cert")]
    pub sign_key: Option<PathBuf>,
    /// The signing certificate (PEM) of --sign-key's public key; PCR8 is its measurement.
    #[arg(long, value_name = "CERT.pem", requires = "sign_key")]
    pub sign_cert: Option<PathBuf>,
}

/// The manifest's record of a signed release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningRecord {
    /// How it was signed.
    pub method: String,
    /// PCR8, the signing certificate's measurement.
    pub pcr8: String,
    /// SHA-256 of the signing certificate's DER.
    pub certificate_sha256: String,
    /// The certificate's validity window (RFC 3339).
    pub certificate_not_before: String,
    /// See `certificate_not_before`.
    pub certificate_not_after: String,
    /// The unsigned image both passes produced (byte-identical), before signing.
    pub unsigned_eif: FileDigest,
    /// What is and is not reproducible.
    pub note: String,
}

/// How long a throwaway signer's certificate is valid ([`Signer::throwaway`]): from a minute
/// before it is made (the certificate must be valid when the image is checked right after
/// signing, whatever the clock's resolution) to a day after, which covers any one run of
/// `emulate` (its default boot timeout is minutes; rebuilds take tens of minutes on a loaded
/// machine) and no more.
pub const THROWAWAY_VALIDITY_SECS: u64 = 24 * 3600;

/// The throwaway certificate's start, this many seconds before it is made.
const THROWAWAY_BACKDATE_SECS: u64 = 60;

/// A loaded signer and what the manifest records about it.
pub struct Signer {
    signer: LocalSigner,
    /// Where the key came from (a file, or generated in memory for one run).
    origin: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &"[redacted]")
            .field("origin", &self.origin)
            .finish()
    }
}

impl Signer {
    /// Loads the key and certificate and checks them: P-384, the certificate holds the key's
    /// public key, and it is valid at `at`.
    ///
    /// # Errors
    /// A file cannot be read, or a check fails (the message names it and the fix).
    pub fn load(key: &Path, cert: &Path, at: UnixMillis) -> Result<Self> {
        let key_pem = zeroize::Zeroizing::new(std::fs::read(key).io("read", key)?);
        let cert_pem = std::fs::read(cert).io("read", cert)?;
        let signer = LocalSigner::from_pem(&key_pem, &cert_pem)
            .map_err(|e| Error::invalid("--sign-key and --sign-cert", e.to_string()))?;
        let certificate =
            ccc_eif::x509::SigningCertificate::parse(ccc_eif::PcrSigner::certificate_der(&signer))
                .map_err(|e| Error::invalid("--sign-cert", e.to_string()))?;
        ensure!(
            certificate.not_before <= at && at <= certificate.not_after,
            Error::invalid(
                "--sign-cert",
                format!(
                    "{} is valid from {} to {}, not now ({at}): Nitro refuses to run an image \
                     signed with an expired certificate; issue a current one \
                     (docs/releasing.md, \"Signing\")",
                    cert.display(),
                    certificate.not_before,
                    certificate.not_after
                )
            )
        );
        Ok(Self {
            signer,
            origin: format!("key file {}", key.display()),
        })
    }

    /// A throwaway signer for one emulation of a signed release whose key this machine does
    /// not hold: a P-384 key generated here, in memory only (never written to a file; its DER
    /// and PEM are zeroized when dropped, the key itself lives in AWS-LC, which clears it when
    /// freed), and a self-signed certificate for it valid from shortly before `at` for
    /// [`THROWAWAY_VALIDITY_SECS`]. Its PCR8 is not any release's: a policy pinning a
    /// published PCR8 never matches an image it signs.
    ///
    /// # Errors
    /// Key generation or the certificate fails (AWS-LC or rcgen), or `at` is out of range.
    pub fn throwaway(at: UnixMillis) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| {
            Error::assemble("a throwaway signing key and certificate", e)
        };
        let time = |secs: u64| {
            i64::try_from(secs)
                .ok()
                .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
                .ok_or_else(|| fail(&format!("time {secs} s is out of range")))
        };
        let key = zeroize::Zeroizing::new(
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(|e| fail(&e))?,
        );
        let mut params = rcgen::CertificateParams::new(vec![
            "throwaway-emulation-signer.ccc.invalid".to_owned(),
        ])
        .map_err(|e| fail(&e))?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "CCC throwaway emulation signer (one run only, not a release key)",
        );
        let now = at.as_secs();
        params.not_before = time(now.saturating_sub(THROWAWAY_BACKDATE_SECS))?;
        params.not_after = time(now.saturating_add(THROWAWAY_VALIDITY_SECS))?;
        let certificate = params.self_signed(&*key).map_err(|e| fail(&e))?;
        let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
        let signer = LocalSigner::from_pem(key_pem.as_bytes(), certificate.pem().as_bytes())
            .map_err(|e| fail(&e))?;
        Ok(Self {
            signer,
            origin: "throwaway key generated in memory for this run".to_owned(),
        })
    }

    /// PCR8 of the images this signer signs: the measurement of its certificate.
    #[must_use]
    pub fn pcr8(&self) -> Pcr {
        Pcr::of_content(ccc_eif::PcrSigner::certificate_der(&self.signer))
    }

    /// Signs the unsigned EIF at `eif` in place, verifies the result (signature, payload,
    /// validity at `at`) and returns its measurements and the manifest record.
    ///
    /// # Errors
    /// The file cannot be read or written, or signing or the check fails.
    pub fn sign_file(&self, eif: &Path, at: UnixMillis) -> Result<(Measurements, SigningRecord)> {
        let unsigned = std::fs::read(eif).io("read", eif)?;
        let unsigned_eif = FileDigest::of_bytes(&unsigned);
        let (signed, measurements) = ccc_eif::sign_image(&unsigned, &self.signer)
            .map_err(|e| Error::assemble("the signed EIF", e))?;
        let read = Eif::from_bytes(&signed).map_err(|source| Error::Eif {
            path: eif.to_path_buf(),
            source,
        })?;
        let check = read
            .require_signed(Some(at))
            .map_err(|source| Error::Signature {
                path: eif.to_path_buf(),
                source,
            })?;
        ensure!(
            read.measurements == measurements,
            Error::assemble(
                "the signed EIF",
                "its measurements differ from the signer's; this is a bug in ccc-eif"
            )
        );
        std::fs::write(eif, &signed).io("write", eif)?;
        let record = SigningRecord {
            method: "ECDSA P-384 (COSE ES384) with a local key, as nitro-cli build-enclave \
                     --private-key/--signing-certificate"
                .to_owned(),
            pcr8: check.pcr8.hex(),
            certificate_sha256: crate::hash::sha256(&read_certificate_der(&read)),
            certificate_not_before: check.certificate.not_before.to_string(),
            certificate_not_after: check.certificate.not_after.to_string(),
            unsigned_eif,
            note: "both passes built the unsigned image (byte-identical, unsigned_eif); the \
                   signature section is then appended. ECDSA signatures are randomised, so \
                   re-signing gives other bytes; the signed image's bytes after its 548-byte \
                   header up to the signature section are the unsigned image's, and PCR0/1/2 \
                   and PCR8 are reproducible"
                .to_owned(),
        };
        Ok((measurements, record))
    }
}

fn read_certificate_der(eif: &Eif) -> Vec<u8> {
    eif.signature
        .as_ref()
        .map(|s| s.certificate_der.clone())
        .unwrap_or_default()
}

/// Checks a published EIF against a release that publishes `pcr8`: a signed release's image
/// must carry a signature that verifies at `at`, covers its PCR0 and gives the published PCR8;
/// an unsigned release's image must not be signed. Returns the signature check (signed
/// releases).
///
/// # Errors
/// [`Error::Signature`] naming the failed check, or [`Error::Published`] when PCR8 differs.
pub fn check_published(
    path: &Path,
    eif: &Eif,
    pcr8: Option<&str>,
    at: UnixMillis,
) -> Result<Option<SignatureCheck>> {
    let signature_error = |source| Error::Signature {
        path: path.to_path_buf(),
        source,
    };
    let Some(want) = pcr8 else {
        ensure!(
            eif.signature.is_none(),
            Error::published(
                path,
                "is signed, but its release publishes no PCR8; the published files do not \
                 belong together"
            )
        );
        return Ok(None);
    };
    let check = eif.require_signed(Some(at)).map_err(signature_error)?;
    ensure!(
        check.pcr8.hex().eq_ignore_ascii_case(want),
        Error::published(
            path,
            format!(
                "its signing certificate gives PCR8 {}, the release publishes {want}: it was \
                 signed with another certificate",
                check.pcr8.hex()
            )
        )
    );
    Ok(Some(check))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_nitro_enclaves_image_format::utils::PcrSignatureChecker;
    use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
    use ccc_eif::{BuildInfo, EifBuilder, EifIdentity, SourceDateEpoch};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ccc-build-sign-{name}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A throwaway P-384 key and certificate valid from `from` to `to` (years), as files.
    fn key_and_cert(dir: &Path, from: i32, to: i32) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["release.example".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let (key_path, cert_path) = (
            dir.join(format!("key-{from}.pem")),
            dir.join(format!("cert-{from}.pem")),
        );
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        (key_path, cert_path)
    }

    fn unsigned_eif(dir: &Path) -> PathBuf {
        let identity = EifIdentity::new(
            "scratch",
            "0.0.1",
            BuildInfo::new(
                SourceDateEpoch::from_secs(1_700_000_000),
                "ccc",
                "0.2.0",
                "Linux",
                "6.12",
            ),
        );
        let (kernel, ramdisk0, ramdisk1) = (vec![3u8; 4096], vec![4u8; 512], vec![5u8; 700]);
        let path = dir.join("scratch.eif");
        EifBuilder::new(&kernel, "console=ttyS0", identity)
            .ramdisk(&ramdisk0)
            .ramdisk(&ramdisk1)
            .write_file(&path)
            .unwrap();
        path
    }

    /// The release's signing step on a scratch image with a key made here: AWS's reader
    /// verifies the signature and computes the PCR8 the release publishes, the policies pin it,
    /// and the published-image check accepts it and refuses everything else by name.
    #[test]
    fn a_scratch_release_signed_with_a_throwaway_key_verifies_with_aws() {
        let dir = scratch("release");
        let (key, cert) = key_and_cert(&dir, 2025, 2040);
        let now = UnixMillis::parse("2030-01-01T00:00:00Z").unwrap();
        let signer = Signer::load(&key, &cert, now).unwrap();
        assert!(!format!("{signer:?}").contains("PRIVATE"));
        let eif = unsigned_eif(&dir);
        let unsigned = std::fs::read(&eif).unwrap();
        let (measurements, record) = signer.sign_file(&eif, now).unwrap();
        assert_eq!(record.unsigned_eif.sha256, crate::hash::sha256(&unsigned));
        let pcr8 = measurements.pcr8.unwrap().hex();
        assert_eq!(record.pcr8, pcr8);

        let path = eif.to_str().unwrap();
        PcrSignatureChecker::from_eif(path)
            .unwrap()
            .verify()
            .unwrap();
        let mut reader = EifReader::from_eif(path.to_owned()).unwrap();
        let theirs = reader.get_measurements().unwrap();
        assert_eq!(theirs["PCR8"], pcr8);
        assert_eq!(theirs["PCR0"], measurements.pcr0.hex());
        reader.get_certificate_info(theirs).unwrap();
        assert_eq!(reader.sign_check, Some(true));

        // What the release publishes for it.
        let values = crate::release::publish::PcrValues::of(&measurements, true);
        assert_eq!(values.pcr8.as_deref(), Some(pcr8.as_str()));
        let conditions = crate::release::publish::policy_conditions(&measurements).unwrap();
        assert_eq!(conditions["kms:RecipientAttestation:PCR8"], pcr8);
        let policy = crate::release::publish::key_policy(
            &measurements,
            &ccc_policy::template::Principals::placeholders(),
        )
        .unwrap();
        assert!(policy.contains("DenySecretsUnlessPCR8Matches"));

        let read = Eif::open(&eif).unwrap();
        assert!(
            check_published(&eif, &read, Some(&pcr8), now)
                .unwrap()
                .is_some()
        );
        let other = "ab".repeat(48);
        let err = check_published(&eif, &read, Some(&other), now).unwrap_err();
        assert!(
            err.to_string().contains("signed with another certificate"),
            "{err}"
        );
        let err = check_published(&eif, &read, None, now).unwrap_err();
        assert!(err.to_string().contains("publishes no PCR8"), "{err}");
        let late = UnixMillis::parse("2041-01-01T00:00:00Z").unwrap();
        let err = check_published(&eif, &read, Some(&pcr8), late).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        // The signature section removed (the unsigned image): refused, never "unsigned".
        let stripped = Eif::from_bytes(&unsigned).unwrap();
        let err = check_published(&eif, &stripped, Some(&pcr8), now).unwrap_err();
        assert!(err.to_string().contains("no signature section"), "{err}");
    }

    /// The throwaway signer (emulating a signed release whose key is elsewhere): AWS's reader
    /// verifies what it signs, its certificate is valid for the run only, its key is never
    /// printed, and each one has its own PCR8.
    #[test]
    fn a_throwaway_signer_signs_verifiably_for_one_run() {
        let dir = scratch("throwaway");
        let now = UnixMillis::now();
        let signer = Signer::throwaway(now).unwrap();
        let debug = format!("{signer:?}");
        assert!(
            debug.contains("[redacted]") && !debug.contains("PRIVATE"),
            "{debug}"
        );
        let eif = unsigned_eif(&dir);
        let (measurements, record) = signer.sign_file(&eif, now).unwrap();
        assert_eq!(measurements.pcr8, Some(signer.pcr8()));
        assert_eq!(record.pcr8, signer.pcr8().hex());
        PcrSignatureChecker::from_eif(eif.to_str().unwrap())
            .unwrap()
            .verify()
            .unwrap();
        let read = Eif::open(&eif).unwrap();
        let check = read.require_signed(Some(now)).unwrap();
        assert_eq!(check.pcr8, signer.pcr8());
        assert!(check.certificate.not_after.as_secs() <= now.as_secs() + THROWAWAY_VALIDITY_SECS);
        let after = UnixMillis(now.0 + (THROWAWAY_VALIDITY_SECS + 1) * 1000);
        let err = read.require_signed(Some(after)).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        assert_ne!(Signer::throwaway(now).unwrap().pcr8(), signer.pcr8());
    }

    #[test]
    fn signing_refuses_a_certificate_not_valid_now() {
        let dir = scratch("expired");
        let (key, cert) = key_and_cert(&dir, 2020, 2021);
        let now = UnixMillis::parse("2030-01-01T00:00:00Z").unwrap();
        let err = Signer::load(&key, &cert, now).unwrap_err().to_string();
        assert!(err.contains("not now"), "{err}");
        assert!(err.contains("docs/releasing.md"), "{err}");
    }
}
