//! The emulation's KMS: the KMS emulator on loopback, told explicitly to trust QEMU's unsigned
//! attestation documents and given the release's key policy, and the operator's step before the
//! enclave boots — sealing a random secret under the emulated key with `Encrypt`, as a parent
//! or operator would with real KMS.

use ccc_emulator::{Config, Emulator, Running, TrustMode};
use ccc_policy::template::Principals;
use ccc_sdk::credentials::StaticCredentials;
use ccc_sdk::crypto::{AwsLc, Crypto};
use ccc_sdk::kms::EncryptRequest;
use ccc_sdk::kms::client::{ClientConfig, KmsClient, Transport};
use ccc_sdk::net::Endpoint;
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::tls::TrustAnchors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result, ensure};
use crate::transcript::Transcript;

/// The account of every ARN the emulator makes (its default state).
pub(crate) const EMULATOR_ACCOUNT: &str = "111122223333";

/// The role of the emulator's default credentials
/// (`arn:aws:sts::111122223333:assumed-role/ccc-emulator-parent/emulator`): the parent
/// instance's role, which the key policy names.
pub(crate) const EMULATOR_ROLE: &str = "ccc-emulator-parent";

/// The key-administrator role the key policy names (the emulator has no credentials for it:
/// nothing in an emulation changes the policy).
pub(crate) const EMULATOR_ADMIN_ROLE: &str = "ccc-emulator-key-admin";

/// Length of the secret sealed for the enclave (an AES-256 or HMAC-SHA256 key).
pub(crate) const SECRET_LEN: usize = 32;

/// The principals the published template is filled in for.
///
/// # Errors
/// Never for these constants (they are a valid account id and role names).
pub(crate) fn principal() -> Result<Principals> {
    Principals::new(EMULATOR_ACCOUNT, EMULATOR_ROLE, EMULATOR_ADMIN_ROLE)
        .map_err(|e| Error::kms(format!("the emulator's principals: {e}")))
}

/// A running KMS emulator whose state lives in a directory removed on drop (it holds keys and
/// credentials in plaintext).
pub(crate) struct Kms {
    running: Option<Running>,
    dir: PathBuf,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("running", &self.running)
            .field("dir", &self.dir)
            .finish()
    }
}

/// A secret sealed under the emulated key.
#[derive(Debug)]
pub(crate) struct Sealed {
    /// The plaintext the harness keeps to check the enclave's proof.
    pub(crate) secret: SecretBytes,
    /// KMS's `CiphertextBlob`.
    pub(crate) ciphertext_blob: Vec<u8>,
    /// The encryption context it was sealed under.
    pub(crate) context: BTreeMap<String, String>,
}

impl Kms {
    /// Starts the emulator in `dir` with `policy` as the default key's policy.
    ///
    /// # Errors
    /// The emulator does not start, or its account or principal are not the ones the policy
    /// was filled in for.
    pub(crate) fn start(dir: &Path, policy: &str, transcript: &Transcript) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::setup(format!("cannot create {}: {e}", dir.display())))?;
        transcript.line(
            "kms",
            "starting the KMS emulator with trust mode INSECURE-qemu-unsigned: QEMU's NSM \
             signs nothing (COSE alg -1, zero signature, zero certificate), so the emulator is \
             told EXPLICITLY to accept unsigned documents; the PCR conditions of the key \
             policy are still enforced",
        );
        let config = Config::new(dir.join("state.json"))
            .with_trust(TrustMode::InsecureQemuUnsigned)
            .with_policy(policy)
            .with_log(true);
        let running = Emulator::start(config)
            .map_err(|e| Error::kms(format!("the KMS emulator did not start: {e}")))?;
        ensure!(
            running.account_id() == EMULATOR_ACCOUNT,
            Error::kms(format!(
                "the KMS emulator's account is {}, the key policy was filled in for \
                 {EMULATOR_ACCOUNT}",
                running.account_id()
            ))
        );
        let role_session = format!(":assumed-role/{EMULATOR_ROLE}/");
        ensure!(
            running
                .credentials()
                .principal_arn()
                .contains(&role_session),
            Error::kms(format!(
                "the KMS emulator's principal is {}, the key policy names role {EMULATOR_ROLE}",
                running.credentials().principal_arn()
            ))
        );
        transcript.line(
            "kms",
            format!(
                "KMS emulator at {} (TLS name {}, its own CA), region {}, key {}, caller {}",
                running.endpoint(),
                running.host_name(),
                running.region(),
                running.default_key_arn(),
                running.credentials().principal_arn()
            ),
        );
        Ok(Self {
            running: Some(running),
            dir: dir.to_path_buf(),
        })
    }

    /// The running emulator.
    ///
    /// # Errors
    /// Never after [`Kms::start`] (the emulator runs until drop).
    pub(crate) fn running(&self) -> Result<&Running> {
        self.running
            .as_ref()
            .ok_or_else(|| Error::kms("the KMS emulator is stopped"))
    }

    /// A KMS client as the operator's (the parent's credentials, TLS trusting only the
    /// emulator's CA).
    ///
    /// # Errors
    /// The client cannot be made.
    fn operator_client(&self) -> Result<KmsClient> {
        let running = self.running()?;
        let config = ClientConfig::new(
            running.region(),
            Endpoint::tcp("127.0.0.1", running.addr().port()),
            Transport::Tls(TrustAnchors::CustomCaPem(running.ca_pem().to_owned())),
        )
        .with_host(running.host_name());
        let credentials = StaticCredentials::new(
            running
                .credentials()
                .sigv4()
                .map_err(|e| Error::kms(format!("the emulator's credentials: {e}")))?,
        );
        KmsClient::new(config, Arc::new(credentials))
            .map_err(|e| Error::kms(format!("cannot make the operator's KMS client: {e}")))
    }

    /// Seals a fresh random secret for the enclave: `Encrypt` under the default key with
    /// `context`, as the operator (no attestation: the policy lets the account encrypt).
    ///
    /// # Errors
    /// No randomness, or KMS refuses.
    pub(crate) fn seal_secret(
        &self,
        context: BTreeMap<String, String>,
        transcript: &Transcript,
    ) -> Result<Sealed> {
        let mut secret = SecretBytes::new(vec![0; SECRET_LEN]);
        AwsLc
            .fill_random(secret.expose_mut())
            .map_err(|e| Error::kms(format!("no randomness for the secret: {e}")))?;
        let running = self.running()?;
        let response = self
            .operator_client()?
            .send(&EncryptRequest {
                key_id: running.default_key_arn().to_owned(),
                plaintext: SecretBytes::copy_from(secret.expose()),
                encryption_context: context.clone(),
                ..EncryptRequest::default()
            })
            .map_err(|e| Error::kms(format!("the operator's Encrypt of the secret failed: {e}")))?;
        let ciphertext_blob = response
            .ciphertext_blob
            .ok_or_else(|| Error::kms("KMS answered Encrypt without a CiphertextBlob"))?;
        transcript.line(
            "kms",
            format!(
                "operator: Encrypt of a random {SECRET_LEN}-byte secret under {} with context \
                 {context:?}: CiphertextBlob of {} bytes (the secret itself stays with the \
                 harness, to check the enclave's proof)",
                running.default_key_id(),
                ciphertext_blob.len()
            ),
        );
        Ok(Sealed {
            secret,
            ciphertext_blob,
            context,
        })
    }
}

impl Drop for Kms {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
