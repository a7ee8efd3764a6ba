//! The attested KMS client (features `std` + `aws-lc`): every call that returns a secret
//! carries a `Recipient` with a fresh NSM attestation document whose `public_key` is the
//! enclave's RSA-2048 key, and the secret comes back only as `CiphertextForRecipient`, which
//! is opened inside the enclave. An answer with the secret in plaintext is refused.
//!
//! # The trusted key
//! The client is built with the [`KeyArn`] of the key the enclave trusts (measured into the
//! image; see [`super::arn`] for why only a full ARN will do). Every key operation names a
//! trusted key: a request that names none gets the first trusted key, a request that names
//! another is refused before anything is sent ([`KmsError::UntrustedKey`]). `Decrypt` always
//! carries `KeyId`, so KMS refuses a ciphertext made under any other key
//! (`IncorrectKeyException`). And the `KeyId` of every answer must be exactly the key the
//! request named, else [`KmsError::ResponseKeyMismatch`] and the secret is not opened. Nothing
//! the parent sends (credentials for another account, a ciphertext under its own key, a forged
//! answer) can make the enclave use a key it was not built to trust.
//!
//! # The enclave's RSA key
//! Generated inside the enclave with AWS-LC ([`AwsLcRsaKey::generate`]); the private half
//! never leaves AWS-LC and is cleansed when freed (AWS-LC releases key material with
//! `OPENSSL_free`, which zeroes it; see [`AwsLcRsaKey`]), which happens when the last call
//! using it ends.
//!
//! It is replaced on a schedule ([`KeyRotation`], default: after 1 hour or 10 000 opened
//! answers, whichever comes first). Why: whoever obtains the private key (a memory disclosure
//! in the enclave, a core dump in debug mode) can open every `CiphertextForRecipient` ever
//! sent to it, if they also recorded the traffic (which TLS to KMS protects, so this is
//! defence in depth). Rotation bounds that window to an hour of answers. The cost is one
//! RSA-2048 key generation per rotation, about 100 ms with AWS-LC on a 2-core development
//! machine, paid by the call that finds the key due: at most once an hour, or once per
//! 10 000 calls (0.01 ms per call amortized). The
//! AWS C SDK keeps one key for the client's lifetime; attestation documents are fetched per
//! call there as here, so a new key needs nothing else.
//!
//! Rotation never races with calls in flight: each call takes a reference to the current key
//! when it starts and uses that same key for its attestation document and for opening the
//! answer; a rotation only changes which key later calls take.

use super::client::{ClientError, Event, KmsClient};
use super::{
    DataKeyPairSpec, DecryptRequest, DeriveSharedSecretRequest, EncryptRequest, EncryptResponse,
    GenerateDataKeyPairRequest, GenerateDataKeyRequest, GenerateRandomRequest, KeyArn, KmsError,
    KmsRequest, Operation, Recipient, RecipientResponse, check_response_key,
};
use crate::crypto::{AwsLc, AwsLcRsaKey, Crypto, RsaDecryptionKey};
use crate::nsm::Nsm;
use crate::secret::SecretBytes;
use crate::time::UnixMillis;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// When the enclave's RSA key is replaced (see the module docs for the reasoning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRotation {
    /// Replace a key this old. Default 1 hour.
    pub max_age: Duration,
    /// Replace a key after it opened this many answers. Default 10 000.
    pub max_uses: u64,
}

impl Default for KeyRotation {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(3600),
            max_uses: 10_000,
        }
    }
}

/// One generation of the enclave's key.
struct RecipientKey {
    key: AwsLcRsaKey,
    spki_sha256: [u8; 32],
    created: UnixMillis,
    uses: AtomicU64,
}

impl RecipientKey {
    fn generate(now: UnixMillis) -> Result<Self, ClientError> {
        let key = AwsLcRsaKey::generate().map_err(ClientError::Key)?;
        Ok(Self::wrap(key, now))
    }

    fn wrap(key: AwsLcRsaKey, now: UnixMillis) -> Self {
        let spki_sha256 = AwsLc.sha256(&[key.public_key_spki()]);
        Self {
            key,
            spki_sha256,
            created: now,
            uses: AtomicU64::new(0),
        }
    }

    fn due(&self, rotation: &KeyRotation, now: UnixMillis) -> Option<&'static str> {
        let age = Duration::from_millis(now.0.saturating_sub(self.created.0));
        if age >= rotation.max_age {
            Some("the key reached its maximum age")
        } else if self.uses.load(Ordering::SeqCst) >= rotation.max_uses {
            Some("the key reached its maximum number of uses")
        } else {
            None
        }
    }
}

/// A data key from `GenerateDataKey`.
#[derive(Debug)]
#[non_exhaustive]
pub struct DataKey {
    /// The data key, opened from `CiphertextForRecipient`.
    pub plaintext: SecretBytes,
    /// The same key encrypted under the KMS key (store it; `Decrypt` returns the plaintext).
    pub ciphertext_blob: Vec<u8>,
    /// The KMS key's ARN (always the trusted key the request named).
    pub key_id: Option<String>,
}

/// A data key pair from `GenerateDataKeyPair`.
#[derive(Debug)]
#[non_exhaustive]
pub struct DataKeyPair {
    /// The private key (PKCS#8 DER), opened from `CiphertextForRecipient`.
    pub private_key: SecretBytes,
    /// The public key (DER SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
    /// The private key encrypted under the KMS key.
    pub private_key_ciphertext_blob: Vec<u8>,
    /// The KMS key's ARN.
    pub key_id: Option<String>,
    /// The pair's spec.
    pub key_pair_spec: Option<DataKeyPairSpec>,
}

/// The attested client: a [`KmsClient`], the NSM, the enclave's RSA key and the keys it trusts.
pub struct AttestedKmsClient {
    kms: KmsClient,
    nsm: Nsm,
    trusted: Vec<KeyArn>,
    rotation: KeyRotation,
    key: RwLock<Arc<RecipientKey>>,
    rotating: Mutex<()>,
}

impl fmt::Debug for AttestedKmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestedKmsClient")
            .field("kms", &self.kms)
            .field("nsm", &self.nsm)
            .field("trusted", &self.trusted)
            .field("rotation", &self.rotation)
            .field(
                "public_key_sha256",
                &hex::encode(self.current().spki_sha256),
            )
            .finish_non_exhaustive()
    }
}

impl AttestedKmsClient {
    /// Generates the enclave's RSA-2048 key and wraps `kms`. `nsm` is the caller's explicit
    /// choice: [`Nsm::open`] (the device) or a simulator. `trusted_key` is the key every key
    /// operation uses (more with [`AttestedKmsClient::trust_also`]); `None` leaves only the
    /// key-less operations (`GenerateRandom`), and every key operation fails with
    /// [`KmsError::NoTrustedKey`].
    ///
    /// # Errors
    /// [`ClientError::Key`] if key generation fails; [`KmsError::TrustedKeyRegion`] if the key
    /// is in another region than `kms`'s.
    pub fn new(kms: KmsClient, nsm: Nsm, trusted_key: Option<KeyArn>) -> Result<Self, ClientError> {
        if let Some(key) = &trusted_key {
            check_region(&kms, key)?;
        }
        let key = RecipientKey::generate(kms.local_now())?;
        let client = Self {
            nsm,
            trusted: trusted_key.into_iter().collect(),
            rotation: KeyRotation::default(),
            key: RwLock::new(Arc::new(key)),
            rotating: Mutex::new(()),
            kms,
        };
        client.kms.emit(&Event::KeyRotated {
            reason: "first key",
            public_key_sha256: client.current().spki_sha256,
        });
        Ok(client)
    }

    /// Trusts one more key (e.g. a `KEY_AGREEMENT` key for `DeriveSharedSecret`); requests must
    /// name it explicitly.
    ///
    /// # Errors
    /// [`KmsError::TrustedKeyRegion`] if the key is in another region than the client's.
    pub fn trust_also(mut self, key: KeyArn) -> Result<Self, ClientError> {
        check_region(&self.kms, &key)?;
        if !self.trusted.contains(&key) {
            self.trusted.push(key);
        }
        Ok(self)
    }

    /// The trusted keys; the first is the one requests without a key use.
    #[must_use]
    pub fn trusted_keys(&self) -> &[KeyArn] {
        &self.trusted
    }

    /// The trusted key a request names (`None` or empty: the first trusted key).
    fn trusted_key(
        &self,
        operation: Operation,
        requested: Option<&str>,
    ) -> Result<KeyArn, ClientError> {
        let found = match requested.filter(|r| !r.is_empty()) {
            None => self
                .trusted
                .first()
                .ok_or(KmsError::NoTrustedKey { operation }),
            Some(requested) => self
                .trusted
                .iter()
                .find(|k| k.as_str() == requested)
                .ok_or_else(|| KmsError::UntrustedKey {
                    operation,
                    requested: requested.into(),
                    trusted: self.trusted.iter().map(|k| k.as_str().into()).collect(),
                }),
        };
        Ok(found?.clone())
    }

    /// Uses another rotation schedule.
    #[must_use]
    pub fn with_rotation(mut self, rotation: KeyRotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// The underlying client (for requests without a `Recipient`).
    #[must_use]
    pub fn kms(&self) -> &KmsClient {
        &self.kms
    }

    /// The NSM.
    #[must_use]
    pub fn nsm(&self) -> &Nsm {
        &self.nsm
    }

    /// The current key's DER SubjectPublicKeyInfo (what attestation documents carry).
    #[must_use]
    pub fn public_key_spki(&self) -> Vec<u8> {
        self.current().key.public_key_spki().to_vec()
    }

    fn current(&self) -> Arc<RecipientKey> {
        Arc::clone(&self.key.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the key now.
    ///
    /// # Errors
    /// [`ClientError::Key`] if key generation fails (the old key stays).
    pub fn rotate_key(&self) -> Result<(), ClientError> {
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        self.replace("rotation asked for")
    }

    /// Makes `key` the enclave's RSA key from now on, as a rotation would (it is rotated
    /// away on the usual schedule). For tests that must know the private key, to search every
    /// log line and error for it; an application has no reason to call this, since a key made
    /// anywhere but here is not the enclave's alone.
    pub fn use_key(&self, key: AwsLcRsaKey) {
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        let key = Arc::new(RecipientKey::wrap(key, self.kms.local_now()));
        let sha = key.spki_sha256;
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = key;
        self.kms.emit(&Event::KeyRotated {
            reason: "a key given by the application (use_key)",
            public_key_sha256: sha,
        });
    }

    fn replace(&self, reason: &'static str) -> Result<(), ClientError> {
        let fresh = Arc::new(RecipientKey::generate(self.kms.local_now())?);
        let sha = fresh.spki_sha256;
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        self.kms.emit(&Event::KeyRotated {
            reason,
            public_key_sha256: sha,
        });
        Ok(())
    }

    /// The key for a new call, rotated first if it is due.
    fn key_for_call(&self) -> Result<Arc<RecipientKey>, ClientError> {
        let key = self.current();
        if key.due(&self.rotation, self.kms.local_now()).is_none() {
            return Ok(key);
        }
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        // Another call may have rotated while this one waited.
        let key = self.current();
        if let Some(reason) = key.due(&self.rotation, self.kms.local_now()) {
            self.replace(reason)?;
            return Ok(self.current());
        }
        Ok(key)
    }

    /// A fresh attestation document for `key`.
    fn recipient(
        &self,
        key: &RecipientKey,
        operation: Operation,
    ) -> Result<Recipient, ClientError> {
        let document = self
            .nsm
            .attestation(None, None, Some(key.key.public_key_spki()))
            .map_err(ClientError::Nsm)?;
        self.kms.emit(&Event::Attested {
            operation,
            document: &document,
            public_key_sha256: key.spki_sha256,
        });
        Ok(Recipient::new(document))
    }

    fn open<R: RecipientResponse>(
        &self,
        response: &R,
        key: &RecipientKey,
    ) -> Result<SecretBytes, ClientError> {
        let secret = super::open_recipient_response(response, &AwsLc, &key.key)?;
        key.uses.fetch_add(1, Ordering::SeqCst);
        self.kms.emit(&Event::RecipientOpened {
            operation: R::OPERATION,
            plaintext_len: secret.len(),
        });
        Ok(secret)
    }

    /// Runs one call and reports [`Event::Finished`] with its final outcome (after the answer
    /// was checked and opened) once it reached the network.
    fn call<T>(
        &self,
        operation: Operation,
        body: impl FnOnce(&mut u32) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let started = self.kms.local_now();
        let mut attempts = 0;
        let result = body(&mut attempts);
        self.kms
            .finished(operation, started, attempts, result.as_ref().err());
        result
    }

    /// Sends `request`, noting the attempts made.
    fn send<R: KmsRequest>(
        &self,
        request: &R,
        attempts: &mut u32,
    ) -> Result<R::Response, ClientError> {
        let (result, made) = self.kms.send_counted(request);
        *attempts = made;
        result
    }

    /// `Decrypt` with a `Recipient` (any `recipient` in `request` is replaced) and `KeyId` (the
    /// request's, which must be trusted, else the first trusted key): the plaintext.
    ///
    /// # Errors
    /// [`ClientError`]; [`KmsError::UntrustedKey`] / [`KmsError::NoTrustedKey`] before sending;
    /// [`KmsError::ResponseKeyMismatch`] if the answer is for another key;
    /// [`KmsError::PlaintextDespiteRecipient`] if the endpoint ignored the attestation.
    pub fn decrypt(&self, mut request: DecryptRequest) -> Result<SecretBytes, ClientError> {
        self.call(Operation::Decrypt, |attempts| {
            let trusted = self.trusted_key(Operation::Decrypt, request.key_id.as_deref())?;
            request.key_id = Some(trusted.as_str().into());
            let key = self.key_for_call()?;
            request.recipient = Some(self.recipient(&key, Operation::Decrypt)?);
            let response = self.send(&request, attempts)?;
            check_response_key(Operation::Decrypt, &trusted, response.key_id.as_deref())?;
            self.open(&response, &key)
        })
    }

    /// `GenerateDataKey` with a `Recipient`, under the request's `key_id` (which must be
    /// trusted; empty: the first trusted key).
    ///
    /// # Errors
    /// As [`AttestedKmsClient::decrypt`]; [`KmsError::MalformedResponse`] without
    /// `CiphertextBlob`.
    pub fn generate_data_key(
        &self,
        mut request: GenerateDataKeyRequest,
    ) -> Result<DataKey, ClientError> {
        self.call(Operation::GenerateDataKey, |attempts| {
            let trusted = self.trusted_key(Operation::GenerateDataKey, Some(&request.key_id))?;
            request.key_id = trusted.as_str().into();
            let key = self.key_for_call()?;
            request.recipient = Some(self.recipient(&key, Operation::GenerateDataKey)?);
            let response = self.send(&request, attempts)?;
            check_response_key(
                Operation::GenerateDataKey,
                &trusted,
                response.key_id.as_deref(),
            )?;
            let plaintext = self.open(&response, &key)?;
            let ciphertext_blob = response
                .ciphertext_blob
                .ok_or_else(|| missing(Operation::GenerateDataKey, "CiphertextBlob"))?;
            Ok(DataKey {
                plaintext,
                ciphertext_blob,
                key_id: response.key_id,
            })
        })
    }

    /// `GenerateDataKeyPair` with a `Recipient`, under the request's `key_id` (which must be
    /// trusted; empty: the first trusted key).
    ///
    /// # Errors
    /// As [`AttestedKmsClient::decrypt`]; [`KmsError::MalformedResponse`] without
    /// `PublicKey` or `PrivateKeyCiphertextBlob`.
    pub fn generate_data_key_pair(
        &self,
        mut request: GenerateDataKeyPairRequest,
    ) -> Result<DataKeyPair, ClientError> {
        self.call(Operation::GenerateDataKeyPair, |attempts| {
            let trusted =
                self.trusted_key(Operation::GenerateDataKeyPair, Some(&request.key_id))?;
            request.key_id = trusted.as_str().into();
            let key = self.key_for_call()?;
            request.recipient = Some(self.recipient(&key, Operation::GenerateDataKeyPair)?);
            let response = self.send(&request, attempts)?;
            check_response_key(
                Operation::GenerateDataKeyPair,
                &trusted,
                response.key_id.as_deref(),
            )?;
            let private_key = self.open(&response, &key)?;
            Ok(DataKeyPair {
                private_key,
                public_key: response
                    .public_key
                    .ok_or_else(|| missing(Operation::GenerateDataKeyPair, "PublicKey"))?,
                private_key_ciphertext_blob: response.private_key_ciphertext_blob.ok_or_else(
                    || missing(Operation::GenerateDataKeyPair, "PrivateKeyCiphertextBlob"),
                )?,
                key_id: response.key_id,
                key_pair_spec: response.key_pair_spec,
            })
        })
    }

    /// `GenerateRandom` with a `Recipient`: `number_of_bytes` random bytes (KMS allows
    /// 1..=1024).
    ///
    /// # Errors
    /// As [`AttestedKmsClient::decrypt`].
    pub fn generate_random(&self, number_of_bytes: u32) -> Result<SecretBytes, ClientError> {
        self.call(Operation::GenerateRandom, |attempts| {
            let key = self.key_for_call()?;
            let request = GenerateRandomRequest {
                number_of_bytes: Some(number_of_bytes),
                recipient: Some(self.recipient(&key, Operation::GenerateRandom)?),
                ..GenerateRandomRequest::default()
            };
            let response = self.send(&request, attempts)?;
            self.open(&response, &key)
        })
    }

    /// `DeriveSharedSecret` with a `Recipient`, with the request's `key_id` (which must be
    /// trusted, see [`AttestedKmsClient::trust_also`]; empty: the first trusted key): the
    /// shared secret.
    ///
    /// # Errors
    /// As [`AttestedKmsClient::decrypt`].
    pub fn derive_shared_secret(
        &self,
        mut request: DeriveSharedSecretRequest,
    ) -> Result<SecretBytes, ClientError> {
        self.call(Operation::DeriveSharedSecret, |attempts| {
            let trusted = self.trusted_key(Operation::DeriveSharedSecret, Some(&request.key_id))?;
            request.key_id = trusted.as_str().into();
            let key = self.key_for_call()?;
            request.recipient = Some(self.recipient(&key, Operation::DeriveSharedSecret)?);
            let response = self.send(&request, attempts)?;
            check_response_key(
                Operation::DeriveSharedSecret,
                &trusted,
                response.key_id.as_deref(),
            )?;
            self.open(&response, &key)
        })
    }

    /// `Encrypt` (no `Recipient`: it returns no secret) under the request's `key_id` (which
    /// must be trusted; empty: the first trusted key).
    ///
    /// # Errors
    /// [`ClientError`]; as [`AttestedKmsClient::decrypt`] for the key.
    pub fn encrypt(&self, request: &EncryptRequest) -> Result<EncryptResponse, ClientError> {
        self.call(Operation::Encrypt, |attempts| {
            let trusted = self.trusted_key(Operation::Encrypt, Some(&request.key_id))?;
            let mut request = request.clone();
            request.key_id = trusted.as_str().into();
            let response = self.send(&request, attempts)?;
            check_response_key(Operation::Encrypt, &trusted, response.key_id.as_deref())?;
            Ok(response)
        })
    }
}

/// A trusted key must be in the client's region: KMS keys are regional.
fn check_region(kms: &KmsClient, key: &KeyArn) -> Result<(), ClientError> {
    let region = &kms.config().region;
    if key.region() == region {
        Ok(())
    } else {
        Err(ClientError::Kms(KmsError::TrustedKeyRegion {
            key: key.as_str().into(),
            region: region.clone(),
        }))
    }
}

fn missing(operation: Operation, member: &str) -> ClientError {
    ClientError::Kms(KmsError::MalformedResponse {
        operation,
        status: 200,
        detail: format!("no {member}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_due_by_age_or_uses() {
        let rotation = KeyRotation {
            max_age: Duration::from_secs(60),
            max_uses: 2,
        };
        let key = RecipientKey::generate(UnixMillis(1_000_000)).unwrap();
        assert_eq!(key.due(&rotation, UnixMillis(1_000_000)), None);
        assert_eq!(
            key.due(&rotation, UnixMillis(1_060_000)),
            Some("the key reached its maximum age")
        );
        key.uses.store(2, Ordering::SeqCst);
        assert_eq!(
            key.due(&rotation, UnixMillis(1_000_000)),
            Some("the key reached its maximum number of uses")
        );
        assert_eq!(key.spki_sha256, AwsLc.sha256(&[key.key.public_key_spki()]));
    }
}
