//! Signing a release's EIF (`release --sign-key KEY.pem --sign-cert CERT.pem`, or
//! `--sign-kms-key ARN --sign-cert CERT.pem` with a KMS key, [`KmsSigner`]) and checking a
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

use ccc_eif::signature::SignerError;
use ccc_eif::{DigestSigning, Eif, LocalSigner, Measurements, Pcr, PcrSigner, SignatureCheck};
use ccc_lifecycle::kms::KmsOptions;
use ccc_sdk::kms::client::KmsClient;
use ccc_sdk::kms::{
    GetPublicKeyRequest, KeyArn, KeySpec, KeyUsage, MessageType, SignRequest, SigningAlgorithm,
};
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
    /// Sign the EIF with this KMS key (its key ARN; ECC_NIST_P384, SIGN_VERIFY) through
    /// `kms:Sign`, with the operator's credentials (environment, shared credentials file,
    /// IMDSv2) in the ARN's region, as nitro-cli 1.4 can. Needs --sign-cert holding the key's
    /// public key (checked with `kms:GetPublicKey` before building).
    #[arg(
        long,
        value_name = "ARN",
        requires = "sign_cert",
        conflicts_with = "sign_key"
    )]
    pub sign_kms_key: Option<String>,
    /// The signing certificate (PEM) of --sign-key's or --sign-kms-key's public key; PCR8 is
    /// its measurement.
    #[arg(long, value_name = "CERT.pem")]
    pub sign_cert: Option<PathBuf>,
    /// Where KMS is for --sign-kms-key (the KMS emulator in rehearsals and tests).
    #[command(flatten)]
    pub kms: KmsOptions,
}

impl SignArgs {
    /// The signer these options name, checked (certificate and key match, validity at `at`),
    /// or `None` for an unsigned release.
    ///
    /// # Errors
    /// `--sign-cert` without a key, or what [`Signer::load`] / [`Signer::kms`] refuse.
    pub fn signer(&self, at: UnixMillis) -> Result<Option<Signer>> {
        match (&self.sign_key, &self.sign_kms_key, &self.sign_cert) {
            (Some(key), None, Some(cert)) => Signer::load(key, cert, at).map(Some),
            (None, Some(arn), Some(cert)) => {
                let credentials = ccc_lifecycle::kms::Signer::OperatorChain;
                Signer::kms(arn, cert, &self.kms, &credentials, at).map(Some)
            }
            (None, None, None) => Ok(None),
            (_, _, None) => Err(Error::invalid(
                "--sign-key/--sign-kms-key",
                "needs --sign-cert CERT.pem, the certificate of the key's public key",
            )),
            (None, None, Some(_)) => Err(Error::invalid(
                "--sign-cert",
                "needs --sign-key KEY.pem or --sign-kms-key ARN",
            )),
            (Some(_), Some(_), _) => Err(Error::invalid(
                "--sign-key and --sign-kms-key",
                "are exclusive; sign with a local key or with a KMS key, not both",
            )),
        }
    }
}

/// Signs with a KMS key: the SHA-384 of the COSE Sig_structure goes to `kms:Sign`
/// (`MessageType=DIGEST`, `ECDSA_SHA_384`), the DER answer becomes COSE's r‖s
/// ([`DigestSigning`]). The key never leaves KMS; the certificate was checked against
/// `GetPublicKey` when the signer was made.
pub struct KmsSigner {
    client: KmsClient,
    key: KeyArn,
    signing: DigestSigning,
}

impl std::fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSigner")
            .field("key", &self.key.as_str())
            .field("signing", &self.signing)
            .finish()
    }
}

impl KmsSigner {
    /// Asks KMS for the key's public key (`GetPublicKey` with `client`) and checks it is an
    /// ECC_NIST_P384 SIGN_VERIFY key whose public key `certificate_pem` holds.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `--sign-kms-key` (KMS refused, wrong key type) or
    /// `--sign-cert` (another key's certificate).
    pub fn new(client: KmsClient, key: KeyArn, certificate_pem: &[u8]) -> Result<Self> {
        let answer = client
            .send(&GetPublicKeyRequest {
                key_id: key.as_str().to_owned(),
            })
            .map_err(|e| Error::invalid("--sign-kms-key", format!("GetPublicKey of {key}: {e}")))?;
        ensure!(
            answer.key_spec == Some(KeySpec::EccNistP384)
                && answer.key_usage == Some(KeyUsage::SignVerify),
            Error::invalid(
                "--sign-kms-key",
                format!(
                    "{key} is a {} key for {}; EIF signatures need an ECC_NIST_P384 key with \
                     KeyUsage SIGN_VERIFY (aws kms create-key --key-spec ECC_NIST_P384 \
                     --key-usage SIGN_VERIFY)",
                    answer
                        .key_spec
                        .as_ref()
                        .map_or("(no KeySpec)", KeySpec::as_str),
                    answer
                        .key_usage
                        .as_ref()
                        .map_or("(no KeyUsage)", KeyUsage::as_str),
                )
            )
        );
        let public_key = answer.public_key.ok_or_else(|| {
            Error::invalid(
                "--sign-kms-key",
                format!("GetPublicKey of {key} answered no PublicKey; is the endpoint KMS?"),
            )
        })?;
        let signing = DigestSigning::new(certificate_pem, &public_key).map_err(|e| match e {
            SignerError::KeyMismatch => Error::invalid(
                "--sign-cert",
                format!(
                    "the certificate's public key is not the public key of KMS key {key}; \
                     issue the certificate for the key's public key (aws kms get-public-key)"
                ),
            ),
            other => Error::invalid("--sign-cert", other.to_string()),
        })?;
        Ok(Self {
            client,
            key,
            signing,
        })
    }

    /// The key's ARN.
    #[must_use]
    pub fn key(&self) -> &KeyArn {
        &self.key
    }
}

impl PcrSigner for KmsSigner {
    fn certificate_der(&self) -> &[u8] {
        self.signing.certificate_der()
    }

    fn signature_section(&self, pcr0: &Pcr) -> std::result::Result<Vec<u8>, SignerError> {
        self.signing.signature_section(pcr0, |digest| {
            let answer = self
                .client
                .send(&SignRequest {
                    key_id: self.key.as_str().to_owned(),
                    message: digest.to_vec(),
                    message_type: Some(MessageType::Digest),
                    signing_algorithm: SigningAlgorithm::EcdsaSha384,
                })
                .map_err(|e| SignerError::Remote(format!("kms:Sign with {}: {e}", self.key)))?;
            if answer.key_id.as_deref() != Some(self.key.as_str()) {
                return Err(SignerError::Remote(format!(
                    "kms:Sign answered for key {:?}, not {}; is the endpoint KMS?",
                    answer.key_id, self.key
                )));
            }
            answer.signature.ok_or_else(|| {
                SignerError::Remote(format!(
                    "kms:Sign with {} answered no Signature; is the endpoint KMS?",
                    self.key
                ))
            })
        })
    }
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

/// The manifest's `signing.method` for a local key.
const LOCAL_METHOD: &str = "ECDSA P-384 (COSE ES384) with a local key, as nitro-cli \
                            build-enclave --private-key/--signing-certificate";

/// The manifest's `signing.method` for a KMS key.
const KMS_METHOD: &str = "ECDSA P-384 (COSE ES384) with a KMS key (kms:Sign, ECDSA_SHA_384 \
                          over the SHA-384 digest of the Sig_structure), as nitro-cli 1.4 \
                          build-enclave --signing-certificate with a KMS key";

/// Checks that the certificate (DER) is valid at `at`: Nitro refuses an expired one.
fn check_validity(certificate_der: &[u8], cert: &Path, at: UnixMillis) -> Result<()> {
    let certificate = ccc_eif::x509::SigningCertificate::parse(certificate_der)
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
    Ok(())
}

/// A loaded signer and what the manifest records about it.
pub struct Signer {
    signer: Box<dyn PcrSigner + Send + Sync>,
    /// Where the key came from (a file, a KMS key, or generated in memory for one run).
    origin: String,
    /// The manifest's `signing.method`.
    method: &'static str,
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
        check_validity(ccc_eif::PcrSigner::certificate_der(&signer), cert, at)?;
        Ok(Self {
            signer: Box::new(signer),
            origin: format!("key file {}", key.display()),
            method: LOCAL_METHOD,
        })
    }

    /// A signer with the KMS key `key_arn` (a key ARN; its region is the client's) and the
    /// certificate at `cert`, checked before anything is built: `GetPublicKey` answers an
    /// ECC_NIST_P384 SIGN_VERIFY key whose public key the certificate holds, and the
    /// certificate is valid at `at`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the option at fault: an ARN that is not a key ARN, KMS
    /// unreachable or refusing, another key's certificate, an expired certificate.
    pub fn kms(
        key_arn: &str,
        cert: &Path,
        options: &KmsOptions,
        credentials: &ccc_lifecycle::kms::Signer,
        at: UnixMillis,
    ) -> Result<Self> {
        let key =
            KeyArn::parse(key_arn).map_err(|e| Error::invalid("--sign-kms-key", e.to_string()))?;
        let cert_pem = std::fs::read(cert).io("read", cert)?;
        let client = ccc_lifecycle::kms::client(options, key.region(), credentials)
            .map_err(|e| Error::invalid("--sign-kms-key", e.to_string()))?;
        let signer = KmsSigner::new(client, key, &cert_pem)?;
        check_validity(signer.certificate_der(), cert, at)?;
        Ok(Self {
            origin: format!("KMS key {}", signer.key()),
            signer: Box::new(signer),
            method: KMS_METHOD,
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
            signer: Box::new(signer),
            origin: "throwaway key generated in memory for this run".to_owned(),
            method: LOCAL_METHOD,
        })
    }

    /// PCR8 of the images this signer signs: the measurement of its certificate.
    #[must_use]
    pub fn pcr8(&self) -> Pcr {
        Pcr::of_content(self.signer.certificate_der())
    }

    /// Signs the unsigned EIF at `eif` in place, verifies the result (signature, payload,
    /// validity at `at`) and returns its measurements and the manifest record.
    ///
    /// # Errors
    /// The file cannot be read or written, or signing or the check fails.
    pub fn sign_file(&self, eif: &Path, at: UnixMillis) -> Result<(Measurements, SigningRecord)> {
        let unsigned = std::fs::read(eif).io("read", eif)?;
        let unsigned_eif = FileDigest::of_bytes(&unsigned);
        let (signed, measurements) = ccc_eif::sign_image(&unsigned, self.signer.as_ref())
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
            method: self.method.to_owned(),
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

    /// `CreateKey` for the test (the SDK types only what CCC's tools send).
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct CreateKey {
        key_spec: String,
        key_usage: String,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Created {
        key_metadata: serde_json::Value,
    }

    impl ccc_sdk::kms::KmsRequest for CreateKey {
        const OPERATION: ccc_sdk::kms::Operation = ccc_sdk::kms::Operation::CreateKey;
        type Response = Created;
        fn recipient(&self) -> Option<&ccc_sdk::kms::Recipient> {
            None
        }
    }

    /// The options as clap reads them: --sign-key and --sign-kms-key exclude each other and
    /// both need --sign-cert; --ca-file needs --endpoint-url.
    #[test]
    fn kms_signing_options_parse_and_exclude_a_local_key() {
        use clap::{CommandFactory as _, Parser as _};
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            sign: SignArgs,
        }
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from([&["release"], args].concat());
        let ok = parse(&[
            "--sign-kms-key",
            "arn:aws:kms:us-east-1:111122223333:key/k",
            "--sign-cert",
            "c.pem",
            "--endpoint-url",
            "https://127.0.0.1:4443",
            "--ca-file",
            "ca.pem",
        ])
        .unwrap();
        assert_eq!(
            ok.sign.kms.endpoint_url.as_deref(),
            Some("https://127.0.0.1:4443")
        );
        assert!(ok.sign.sign_key.is_none());
        for bad in [
            &[
                "--sign-key",
                "k.pem",
                "--sign-kms-key",
                "a",
                "--sign-cert",
                "c.pem",
            ][..],
            &["--sign-kms-key", "a"][..],
            &["--sign-key", "k.pem"][..],
            &["--ca-file", "ca.pem"][..],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    /// A P-384 public key whose private key is elsewhere (its uncompressed point).
    struct PublicPoint(Vec<u8>);

    impl rcgen::PublicKeyData for PublicPoint {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &rcgen::PKCS_ECDSA_P384_SHA384
        }
    }

    /// A certificate for the P-384 point `point` (a public key whose private key is
    /// elsewhere) issued by a throwaway CA whose key is held here.
    fn certificate_for(point: &[u8], dir: &Path, name: &str) -> PathBuf {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "throwaway release CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut params = rcgen::CertificateParams::new(vec!["release.example".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let subject = PublicPoint(point.to_vec());
        let cert = params.signed_by(&subject, &issuer).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, cert.pem()).unwrap();
        path
    }

    /// `--sign-kms-key` against the KMS emulator on loopback: GetPublicKey checks the
    /// certificate before anything is signed, Sign signs the Sig_structure's digest, and AWS's
    /// reader and ours verify the image and agree on PCR8. A policy denying kms:Sign and a
    /// certificate of another key are refused by name.
    #[test]
    fn a_scratch_release_signed_with_a_kms_key_verifies_with_aws() {
        use ccc_sdk::credentials::StaticCredentials;
        let dir = scratch("kms");
        let running = ccc_emulator::Emulator::start(
            ccc_emulator::Config::new(dir.join("kms/state.json")).with_log(false),
        )
        .unwrap();
        let credentials = ccc_lifecycle::kms::Signer::Given(std::sync::Arc::new(
            StaticCredentials::new(running.credentials().sigv4().unwrap()),
        ));
        let options = KmsOptions {
            endpoint_url: Some(format!("https://127.0.0.1:{}", running.addr().port())),
            ca_file: Some(running.ca_path().to_owned()),
        };
        let region = KeyArn::parse(running.default_key_arn())
            .unwrap()
            .region()
            .to_owned();
        let admin = ccc_lifecycle::kms::client(&options, &region, &credentials).unwrap();
        let created = admin
            .send(&CreateKey {
                key_spec: "ECC_NIST_P384".into(),
                key_usage: "SIGN_VERIFY".into(),
            })
            .unwrap();
        let arn = created.key_metadata["Arn"].as_str().unwrap().to_owned();
        let spki = admin
            .send(&GetPublicKeyRequest {
                key_id: arn.clone(),
            })
            .unwrap()
            .public_key
            .unwrap();
        // A P-384 SubjectPublicKeyInfo is 23 bytes of algorithm and BIT STRING header, then
        // the 97-byte uncompressed point.
        assert_eq!(spki.len(), 120);
        let cert = certificate_for(&spki[23..], &dir, "kms-cert.pem");
        let now = UnixMillis::parse("2030-01-01T00:00:00Z").unwrap();

        let signer = Signer::kms(&arn, &cert, &options, &credentials, now).unwrap();
        let eif = unsigned_eif(&dir);
        let (measurements, record) = signer.sign_file(&eif, now).unwrap();
        assert!(record.method.contains("KMS key"), "{}", record.method);
        let pcr8 = measurements.pcr8.unwrap().hex();
        assert_eq!(pcr8, Pcr::of_content(&pem_to_der(&cert)).hex());
        let path = eif.to_str().unwrap();
        PcrSignatureChecker::from_eif(path)
            .unwrap()
            .verify()
            .unwrap();
        let mut reader = EifReader::from_eif(path.to_owned()).unwrap();
        let theirs = reader.get_measurements().unwrap();
        assert_eq!(theirs["PCR8"], pcr8);
        assert_eq!(theirs["PCR0"], measurements.pcr0.hex());
        let read = Eif::open(&eif).unwrap();
        let check = read.require_signed(Some(now)).unwrap();
        assert_eq!(check.pcr8.hex(), pcr8);

        // Another key's certificate: refused before anything is built, naming --sign-cert.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let wrong = certificate_for(other.public_key_raw(), &dir, "other-cert.pem");
        let err = Signer::kms(&arn, &wrong, &options, &credentials, now).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--sign-cert") && text.contains("is not the public key of KMS key"),
            "{text}"
        );
        // A symmetric key is not a signing key (KMS refuses GetPublicKey for it).
        let err = Signer::kms(
            running.default_key_arn(),
            &cert,
            &options,
            &credentials,
            now,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--sign-kms-key") && text.contains("UnsupportedOperationException"),
            "{text}"
        );

        // A key policy that denies kms:Sign: GetPublicKey still passes, signing is refused
        // with KMS's AccessDenied naming the action, and the image is left unsigned.
        let principal = running.credentials().principal_arn().to_owned();
        let deny_sign = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": principal}, "Action": "kms:Sign", "Resource": "*"}
        ]})
        .to_string();
        admin
            .send(&ccc_sdk::kms::PutKeyPolicyRequest {
                key_id: arn.clone(),
                policy: deny_sign,
                policy_name: None,
                bypass_policy_lockout_safety_check: None,
            })
            .unwrap();
        let denied = Signer::kms(&arn, &cert, &options, &credentials, now).unwrap();
        let fresh = unsigned_eif(&dir);
        let before = std::fs::read(&fresh).unwrap();
        let err = denied.sign_file(&fresh, now).unwrap_err().to_string();
        assert!(
            err.contains("AccessDenied") && err.contains("kms:Sign"),
            "{err}"
        );
        assert_eq!(std::fs::read(&fresh).unwrap(), before);
        running.stop();
    }

    /// The DER of a one-certificate PEM file, read independently of ccc-eif's PEM reader.
    fn pem_to_der(path: &Path) -> Vec<u8> {
        use base64::Engine as _;
        let text = std::fs::read_to_string(path).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}
