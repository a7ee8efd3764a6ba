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
use ccc_sdk::kms::{DataKeySpec, DecryptRequest, GenerateDataKeyRequest, KeyArn};
use ccc_sdk::secret::SecretBytes;
use std::collections::BTreeMap;

/// The AWS region of your KMS key. `CCC_APP_REGION` in the image's `/env` overrides it. The
/// KMS emulator's region is us-east-1 too, so emulation works unchanged.
pub const REGION: &str = "us-east-1";

/// The KMS key this enclave trusts, as its full key ARN
/// (`arn:aws:kms:<region>:<account>:key/<key id>`): `seal`, `unseal`, `generate_data_key` and
/// `hmac` use it and no other, whatever a request says. `CCC_APP_KEY_ARN` in the image's `/env`
/// overrides it (both are measured into PCR2). Not an alias or a bare key id: those resolve in
/// the account whose credentials sign the request, and the parent supplies the credentials.
/// `None`: only `attest` and `random` work.
pub const KEY_ARN: Option<&str> = None;

/// The enclave's application state: the attested KMS client (which holds the NSM, the
/// enclave's RSA key and the trusted key). Shared by every connection's thread, so anything
/// added here must be `Sync` (wrap mutable state in a `Mutex`).
#[derive(Debug)]
pub struct App {
    kms: AttestedKmsClient,
}

impl App {
    /// The application over `kms`, whose first trusted key (if any) is the one every key
    /// operation uses.
    #[must_use]
    pub fn new(kms: AttestedKmsClient) -> Self {
        Self { kms }
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
            Request::GenerateDataKey { context } => self.generate_data_key(context),
            Request::Seal { data, context } => self.seal(&data, context),
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
    /// --release V`, or `--expect-pcr 0=...`).
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

    /// A fresh AES-256 data key under the trusted key. KMS returns the plaintext only as
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
    fn generate_data_key(&self, context: BTreeMap<String, String>) -> Result<Response, Failure> {
        let key = self.key("generate_data_key")?;
        let data_key = self
            .kms
            .generate_data_key(GenerateDataKeyRequest {
                key_id: key.as_str().to_owned(),
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

    /// Seals `data` (format in `seal.rs`): a new data key from `GenerateDataKey` under the
    /// trusted key (opened inside), AES-256-GCM here, and the wrapped key and the key's ARN
    /// stored in the blob.
    fn seal(
        &self,
        data: &SecretBytes,
        context: BTreeMap<String, String>,
    ) -> Result<Response, Failure> {
        let key = self.key("seal")?;
        let data_key = self
            .kms
            .generate_data_key(GenerateDataKeyRequest {
                key_id: key.as_str().to_owned(),
                key_spec: Some(DataKeySpec::Aes256),
                encryption_context: with_purpose(context, SEALING_PURPOSE),
                ..GenerateDataKeyRequest::default()
            })
            .map_err(|e| failure::kms("kms GenerateDataKey with Recipient", &e))?;
        let sealed = seal::seal(data, &data_key.plaintext, key, &data_key.ciphertext_blob)
            .map_err(|e| Failure::new(ErrorCode::Internal, "seal: AES-256-GCM", e.to_string()))?;
        Ok(Response::Seal { sealed })
    }

    /// Opens a sealed blob: checks that the trusted key wrapped it, `Decrypt` of the wrapped
    /// key with a `Recipient` and `KeyId` = the trusted key, then AES-256-GCM (whose associated
    /// data covers the format version and the key ARN).
    ///
    /// A blob wrapped by any other key — one the parent owns, say — is `foreign_blob`, as is a
    /// wrapped key that does not open under the trusted key with this context (built by someone
    /// who could `Encrypt` a data key of their choosing, which the key policy denies with the
    /// sealing purpose, or given the wrong context).
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
        let key = self.key("unseal")?;
        if sealed.key_arn != key.as_str() {
            return Err(Failure::new(
                ErrorCode::ForeignBlob,
                "unseal: check the sealing key",
                format!(
                    "the blob's data key is wrapped by {}, and this enclave trusts only {key}: \
                     it was not sealed by this enclave (a blob built under another key proves \
                     nothing)",
                    sealed.key_arn.chars().take(200).collect::<String>()
                ),
            ));
        }
        // From KMS's answer on, every failure is the one `failure::unseal_open()`, after the
        // same work: when the `CiphertextForRecipient` does not decrypt, the GCM open still
        // runs (under a data key of zeros) before the answer goes out.
        let (data_key, opened_by_kms) = match self.kms.decrypt(DecryptRequest {
            ciphertext_blob: sealed.wrapped_key.to_vec(),
            encryption_context: with_purpose(context, SEALING_PURPOSE),
            ..DecryptRequest::default()
        }) {
            Ok(data_key) => (data_key, true),
            Err(e) if failure::is_opening_failure(&e) => {
                (SecretBytes::new(vec![0; seal::DATA_KEY_LEN]), false)
            }
            Err(e) => return Err(failure::unseal_kms("kms Decrypt with Recipient", &e)),
        };
        match seal::open(&sealed, &data_key) {
            Ok(data) if opened_by_kms => Ok(Response::Unseal { data }),
            _ => Err(failure::unseal_open()),
        }
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
    /// attestation satisfies the key policy (`Decrypt` names the trusted key, so a ciphertext
    /// under any other key is refused by KMS). Whoever knows the secret can check the MAC; the
    /// secret itself never leaves.
    fn hmac(
        &self,
        ciphertext_blob: Vec<u8>,
        message: &[u8],
        context: BTreeMap<String, String>,
    ) -> Result<Response, Failure> {
        let key = self.key("hmac")?;
        let secret = self
            .kms
            .decrypt(DecryptRequest {
                ciphertext_blob,
                encryption_context: context,
                key_id: Some(key.as_str().to_owned()),
                ..DecryptRequest::default()
            })
            .map_err(|e| failure::kms("kms Decrypt with Recipient", &e))?;
        let mac = AwsLc.hmac_sha256(secret.expose(), &[message]);
        Ok(Response::Hmac { mac: mac.to_vec() })
    }

    /// The trusted key (measured into the image), the only one key operations use.
    fn key(&self, op: &str) -> Result<&KeyArn, Failure> {
        self.kms.trusted_keys().first().ok_or_else(|| {
            Failure::new(
                ErrorCode::NotConfigured,
                "the trusted key",
                format!(
                    "`{op}` needs the KMS key this enclave trusts, and the image has none: set \
                     KEY_ARN in app.rs or CCC_APP_KEY_ARN in the image's /env to the key's full \
                     ARN (both are measured into PCR2)"
                ),
            )
        })
    }
}

/// The purpose the data keys of sealed blobs are bound to (`ccc:purpose=seal`). The key policy
/// template denies `kms:Encrypt` with it to everyone, so nobody outside the enclave can wrap a
/// data key of their choosing for it.
pub const SEALING_PURPOSE: &str = "seal";

/// The caller's encryption context plus `ccc:purpose=<purpose>` (see
/// [`crate::protocol::PURPOSE_KEY`]): a data key made for sealing cannot be fed to `hmac` (or
/// any operation you add without this purpose), because KMS refuses a `Decrypt` whose context
/// differs, and callers cannot send `ccc:` keys themselves.
fn with_purpose(mut context: BTreeMap<String, String>, purpose: &str) -> BTreeMap<String, String> {
    context.insert(PURPOSE_KEY.to_owned(), purpose.to_owned());
    context
}
