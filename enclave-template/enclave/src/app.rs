//! YOUR APPLICATION. This is the file a team changes when it forks the template: the
//! defaults at the top, and one function per operation of the enclave's API. Everything else
//! (configuration, the NSM, credentials, the KMS client, the server, the wire format) is
//! plumbing in the other modules and rarely needs a change.
//!
//! # The pattern to keep
//! Secrets stay inside, only results leave. A secret arrives only as KMS's
//! `CiphertextForRecipient`, encrypted to this enclave's RSA key by a KMS that first checked
//! the attestation document against the key policy (PCR0/1/2...); it is used here and
//! dropped, and `SecretBytes` zeroizes it. What an operation returns is a result: a MAC, a
//! ciphertext, random bytes, an attestation document.
//!
//! # Adding an operation
//! 1. Add a variant to [`Request`] and one to [`Response`] in `protocol.rs` (and its limits
//!    to `Request::check`, its name to `OPERATIONS`).
//! 2. Add a function here and a line to [`App::handle`].
//! 3. Add the subcommand to the parent's `client` (`enclave-template/parent/src/client.rs`)
//!    and a round trip to `tests/api.rs`.

use crate::failure;
use crate::protocol::{ErrorCode, Failure, PURPOSE_KEY, Request, Response};
use crate::seal;
use ccc_sdk::crypto::{AwsLc, Crypto};
use ccc_sdk::kms::attested::AttestedKmsClient;
use ccc_sdk::kms::{DataKeySpec, DecryptRequest, GenerateDataKeyRequest};
use ccc_sdk::secret::SecretBytes;
use std::collections::BTreeMap;

/// The AWS region of your KMS key. `CCC_APP_REGION` in the image's `/env` overrides it. The
/// KMS emulator's region is us-east-1 too, so emulation works unchanged.
pub const REGION: &str = "us-east-1";

/// Your KMS key (key id, key ARN, alias name or alias ARN) for `seal` and
/// `generate_data_key` requests that name none. `CCC_APP_KEY_ID` overrides it. `None`: every
/// such request must name its key.
pub const KEY_ID: Option<&str> = None;

/// The enclave's application state: the attested KMS client (which holds the NSM and the
/// enclave's RSA key) and the default key. Shared by every connection's thread, so anything
/// added here must be `Sync` (wrap mutable state in a `Mutex`).
#[derive(Debug)]
pub struct App {
    kms: AttestedKmsClient,
    key_id: Option<String>,
}

impl App {
    /// The application over `kms`, with `key_id` for requests that name no key.
    #[must_use]
    pub fn new(kms: AttestedKmsClient, key_id: Option<String>) -> Self {
        Self { kms, key_id }
    }

    /// The attested KMS client (and through it the NSM).
    #[must_use]
    pub fn kms(&self) -> &AttestedKmsClient {
        &self.kms
    }

    /// Answers one request. Called on the connection's thread; may block on KMS.
    ///
    /// # Errors
    /// A [`Failure`] naming the step that failed; the server sends it as an error frame and
    /// prints it on the console.
    pub fn handle(&self, request: Request) -> Result<Response, Failure> {
        request.check()?;
        match request {
            Request::Attest { nonce, user_data } => self.attest(nonce, user_data),
            Request::GenerateDataKey { key_id, context } => self.generate_data_key(key_id, context),
            Request::Seal {
                data,
                key_id,
                context,
            } => self.seal(&data, key_id, context),
            Request::Unseal { sealed, context } => self.unseal(&sealed, context),
            Request::Random { n } => self.random(n),
            Request::Hmac {
                ciphertext_blob,
                message,
                context,
            } => self.hmac(ciphertext_blob, &message, context),
        }
    }

    /// An attestation document from the NSM binding the caller's `nonce` and `user_data`,
    /// with `public_key` = this enclave's current RSA key. A verifier checks it against the
    /// AWS Nitro root and the expected PCRs (`ccc-template-parent client attest --root aws
    /// --expect-pcr 0=...`).
    fn attest(
        &self,
        nonce: Option<Vec<u8>>,
        user_data: Option<Vec<u8>>,
    ) -> Result<Response, Failure> {
        let public_key = self.kms.public_key_spki();
        let document = self
            .kms
            .nsm()
            .attestation(user_data.as_deref(), nonce.as_deref(), Some(&public_key))
            .map_err(|e| failure::nsm("nsm Attestation", &e))?;
        Ok(Response::Attest {
            document,
            public_key_sha256: hex::encode(AwsLc.sha256(&[&public_key])),
        })
    }

    /// A fresh AES-256 data key under `key_id`. KMS returns the plaintext only as
    /// `CiphertextForRecipient`, which is opened here and then dropped (zeroized): the caller
    /// gets only the `CiphertextBlob` to store.
    ///
    /// Why the plaintext is not kept in memory for later: every use (`hmac`, or your own
    /// operations) decrypts the blob through KMS with a fresh attestation document, so the
    /// key policy is checked at every use (revoking this image's PCRs in the policy takes
    /// effect at once), a restarted enclave behaves exactly as a running one, and no key
    /// outlives the request that needed it. The price is one KMS round trip per use; an
    /// application that needs the speed can keep a bounded map here, keyed by the SHA-256 of
    /// the blob, with `SecretBytes` values.
    fn generate_data_key(
        &self,
        key_id: Option<String>,
        context: BTreeMap<String, String>,
    ) -> Result<Response, Failure> {
        let key_id = self.key_id(key_id, "generate_data_key")?;
        let data_key = self
            .kms
            .generate_data_key(GenerateDataKeyRequest {
                key_id,
                key_spec: Some(DataKeySpec::Aes256),
                encryption_context: context,
                ..GenerateDataKeyRequest::default()
            })
            .map_err(|e| failure::kms("kms GenerateDataKey with Recipient", &e))?;
        Ok(Response::GenerateDataKey {
            ciphertext_blob: data_key.ciphertext_blob,
            key_id: data_key.key_id,
        })
    }

    /// Seals `data` (format in `seal.rs`): a new data key from `GenerateDataKey` (opened
    /// inside), AES-256-GCM here, and the wrapped key stored in the blob.
    fn seal(
        &self,
        data: &SecretBytes,
        key_id: Option<String>,
        context: BTreeMap<String, String>,
    ) -> Result<Response, Failure> {
        let key_id = self.key_id(key_id, "seal")?;
        let data_key = self
            .kms
            .generate_data_key(GenerateDataKeyRequest {
                key_id,
                key_spec: Some(DataKeySpec::Aes256),
                encryption_context: with_purpose(context, "seal"),
                ..GenerateDataKeyRequest::default()
            })
            .map_err(|e| failure::kms("kms GenerateDataKey with Recipient", &e))?;
        let sealed = seal::seal(data, &data_key.plaintext, &data_key.ciphertext_blob)
            .map_err(|e| Failure::new(ErrorCode::Internal, "seal: AES-256-GCM", e.to_string()))?;
        Ok(Response::Seal { sealed })
    }

    /// Opens a sealed blob: `Decrypt` of the wrapped key with a `Recipient`, then AES-256-GCM.
    ///
    /// The template returns the plaintext so the round trip can be tested from the parent.
    /// In a real application `unseal` is usually internal: the enclave loads its sealed state
    /// and uses it, and only results leave.
    fn unseal(&self, blob: &[u8], context: BTreeMap<String, String>) -> Result<Response, Failure> {
        let sealed = seal::parse(blob).map_err(|e| {
            Failure::new(
                ErrorCode::Unseal,
                "unseal: read the sealed blob",
                e.to_string(),
            )
        })?;
        let data_key = self
            .kms
            .decrypt(DecryptRequest {
                ciphertext_blob: sealed.wrapped_key.to_vec(),
                encryption_context: with_purpose(context, "seal"),
                ..DecryptRequest::default()
            })
            .map_err(|e| failure::kms("kms Decrypt with Recipient", &e))?;
        let data = seal::open(&sealed, &data_key).map_err(|e| {
            Failure::new(ErrorCode::Unseal, "unseal: AES-256-GCM open", e.to_string())
        })?;
        Ok(Response::Unseal { data })
    }

    /// `n` random bytes from KMS `GenerateRandom`, received as `CiphertextForRecipient`.
    fn random(&self, n: u32) -> Result<Response, Failure> {
        let bytes = self
            .kms
            .generate_random(n)
            .map_err(|e| failure::kms("kms GenerateRandom with Recipient", &e))?;
        // Random bytes for the caller are a result, not a secret of the enclave.
        Ok(Response::Random {
            bytes: bytes.expose().to_vec(),
        })
    }

    /// Proof that the enclave holds a secret without revealing it: HMAC-SHA256 of `message`
    /// under the plaintext of `ciphertext_blob`, which KMS releases only to an enclave whose
    /// attestation satisfies the key policy. Whoever knows the secret can check the MAC; the
    /// secret itself never leaves.
    fn hmac(
        &self,
        ciphertext_blob: Vec<u8>,
        message: &[u8],
        context: BTreeMap<String, String>,
    ) -> Result<Response, Failure> {
        let secret = self
            .kms
            .decrypt(DecryptRequest {
                ciphertext_blob,
                encryption_context: context,
                ..DecryptRequest::default()
            })
            .map_err(|e| failure::kms("kms Decrypt with Recipient", &e))?;
        let mac = AwsLc.hmac_sha256(secret.expose(), &[message]);
        Ok(Response::Hmac { mac: mac.to_vec() })
    }

    /// The request's key, or the configured default.
    fn key_id(&self, requested: Option<String>, op: &str) -> Result<String, Failure> {
        requested.or_else(|| self.key_id.clone()).ok_or_else(|| {
            Failure::new(
                ErrorCode::BadRequest,
                "check the request",
                format!(
                    "`{op}` names no `key_id` and the enclave has no default key (set \
                     CCC_APP_KEY_ID in the image's /env or KEY_ID in app.rs)"
                ),
            )
        })
    }
}

/// The caller's encryption context plus `ccc:purpose=<purpose>` (see
/// [`crate::protocol::PURPOSE_KEY`]): a data key made for sealing cannot be fed to `hmac` (or
/// any operation you add without this purpose), because KMS refuses a `Decrypt` whose context
/// differs, and callers cannot send `ccc:` keys themselves.
fn with_purpose(mut context: BTreeMap<String, String>, purpose: &str) -> BTreeMap<String, String> {
    context.insert(PURPOSE_KEY.to_owned(), purpose.to_owned());
    context
}
