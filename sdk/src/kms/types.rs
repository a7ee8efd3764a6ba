//! The KMS request and response shapes (botocore KMS model, API 2014-11-01) for the operations
//! an enclave uses, as serde types in the AWS JSON 1.1 wire form: PascalCase members, blobs as
//! standard base64 strings, absent members omitted. Secret response members (`Plaintext`,
//! `PrivateKeyPlaintext`, `SharedSecret`) and Encrypt's `Plaintext` are [`SecretBytes`].

use super::{KmsRequest, Operation};
use crate::secret::SecretBytes;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this SDK does not know (KMS added it later), kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The name on the wire.
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Unknown(other) => other,
                }
            }

            /// The value for a wire name (unknown names are kept in [`Self::Unknown`]).
            #[must_use]
            pub fn from_wire(name: &str) -> Self {
                match name {
                    $( $text => Self::$variant, )+
                    other => Self::Unknown(other.into()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                Ok(Self::from_wire(&name))
            }
        }
    };
}

string_enum! {
    /// `KeyEncryptionAlgorithmSpec`: how KMS wraps the secret for a [`Recipient`].
    KeyEncryptionAlgorithm {
        /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (the only value).
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
    }
}

string_enum! {
    /// `EncryptionAlgorithmSpec`.
    EncryptionAlgorithm {
        /// AES-256-GCM under a symmetric KMS key.
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        /// RSAES-OAEP-SHA-1 under an asymmetric key.
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        /// RSAES-OAEP-SHA-256 under an asymmetric key.
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        /// SM2 public-key encryption (China regions).
        Sm2Pke = "SM2PKE",
    }
}

string_enum! {
    /// `DataKeySpec`.
    DataKeySpec {
        /// A 32-byte key.
        Aes256 = "AES_256",
        /// A 16-byte key.
        Aes128 = "AES_128",
    }
}

string_enum! {
    /// `DataKeyPairSpec`.
    DataKeyPairSpec {
        /// RSA 2048.
        Rsa2048 = "RSA_2048",
        /// RSA 3072.
        Rsa3072 = "RSA_3072",
        /// RSA 4096.
        Rsa4096 = "RSA_4096",
        /// NIST P-256.
        EccNistP256 = "ECC_NIST_P256",
        /// NIST P-384.
        EccNistP384 = "ECC_NIST_P384",
        /// NIST P-521.
        EccNistP521 = "ECC_NIST_P521",
        /// secp256k1.
        EccSecgP256k1 = "ECC_SECG_P256K1",
        /// SM2 (China regions).
        Sm2 = "SM2",
        /// Ed25519.
        EccNistEdwards25519 = "ECC_NIST_EDWARDS25519",
    }
}

string_enum! {
    /// `KeyAgreementAlgorithmSpec`.
    KeyAgreementAlgorithm {
        /// Elliptic-curve Diffie-Hellman.
        Ecdh = "ECDH",
    }
}

string_enum! {
    /// `OriginType`: where the key material came from.
    KeyOrigin {
        /// Created by KMS.
        AwsKms = "AWS_KMS",
        /// Imported.
        External = "EXTERNAL",
        /// In a CloudHSM key store.
        AwsCloudHsm = "AWS_CLOUDHSM",
        /// In an external key store.
        ExternalKeyStore = "EXTERNAL_KEY_STORE",
    }
}

string_enum! {
    /// `SigningAlgorithmSpec` (the ECDSA ones CCC signs with; others are kept verbatim).
    SigningAlgorithm {
        /// ECDSA on P-256 with SHA-256.
        EcdsaSha256 = "ECDSA_SHA_256",
        /// ECDSA on P-384 with SHA-384 (COSE ES384: what an EIF signature uses).
        EcdsaSha384 = "ECDSA_SHA_384",
        /// ECDSA on P-521 with SHA-512.
        EcdsaSha512 = "ECDSA_SHA_512",
    }
}

string_enum! {
    /// `MessageType`: whether `Message` is the message or its digest.
    MessageType {
        /// KMS hashes the message with the algorithm's hash (at most 4096 bytes).
        Raw = "RAW",
        /// The message is already the digest (48 bytes for `ECDSA_SHA_384`).
        Digest = "DIGEST",
    }
}

string_enum! {
    /// `KeySpec` of a KMS key (the ones CCC names; others are kept verbatim).
    KeySpec {
        /// AES-256-GCM.
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        /// NIST P-256.
        EccNistP256 = "ECC_NIST_P256",
        /// NIST P-384.
        EccNistP384 = "ECC_NIST_P384",
        /// NIST P-521.
        EccNistP521 = "ECC_NIST_P521",
    }
}

string_enum! {
    /// `KeyUsageType`.
    KeyUsage {
        /// Encrypt and decrypt.
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        /// Sign and verify.
        SignVerify = "SIGN_VERIFY",
        /// ECDH.
        KeyAgreement = "KEY_AGREEMENT",
        /// HMAC.
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
    }
}

/// `RecipientInfo`: asks KMS to return the secret encrypted to the RSA key in an attestation
/// document, in `CiphertextForRecipient`, instead of in plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Recipient {
    /// Always [`KeyEncryptionAlgorithm::RsaesOaepSha256`].
    pub key_encryption_algorithm: KeyEncryptionAlgorithm,
    /// The NSM attestation document (COSE_Sign1) whose `public_key` is the enclave's RSA-2048
    /// DER SubjectPublicKeyInfo. KMS accepts 1..=262144 bytes.
    #[serde(with = "crate::blob::bytes")]
    pub attestation_document: Vec<u8>,
}

impl Recipient {
    /// A recipient for `attestation_document` with RSAES-OAEP-SHA-256.
    #[must_use]
    pub fn new(attestation_document: Vec<u8>) -> Self {
        Self {
            key_encryption_algorithm: KeyEncryptionAlgorithm::RsaesOaepSha256,
            attestation_document,
        }
    }
}

/// Implements [`KmsRequest`] for a request type.
macro_rules! kms_request {
    ($request:ident, $response:ident, $operation:ident, recipient) => {
        impl KmsRequest for $request {
            const OPERATION: Operation = Operation::$operation;
            type Response = $response;
            fn recipient(&self) -> Option<&Recipient> {
                self.recipient.as_ref()
            }
        }
    };
    ($request:ident, $response:ident, $operation:ident) => {
        impl KmsRequest for $request {
            const OPERATION: Operation = Operation::$operation;
            type Response = $response;
            fn recipient(&self) -> Option<&Recipient> {
                None
            }
        }
    };
}

/// `Decrypt` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptRequest {
    /// The KMS ciphertext (1..=6144 bytes).
    #[serde(with = "crate::blob::bytes")]
    pub ciphertext_blob: Vec<u8>,
    /// The encryption context used when encrypting.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encryption_context: BTreeMap<String, String>,
    /// Grant tokens (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_tokens: Vec<String>,
    /// The key (required for asymmetric keys; a check for symmetric ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The algorithm (asymmetric keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_algorithm: Option<EncryptionAlgorithm>,
    /// Attestation: return the plaintext in `CiphertextForRecipient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// Check permissions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Dry-run modifiers (`IGNORE_CIPHERTEXT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run_modifiers: Vec<String>,
}

/// `Decrypt` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptResponse {
    /// The key ARN used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The plaintext; absent when the request had a `Recipient`.
    #[serde(
        default,
        with = "crate::blob::secret_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub plaintext: Option<SecretBytes>,
    /// The algorithm used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_algorithm: Option<EncryptionAlgorithm>,
    /// The plaintext as CMS EnvelopedData for the recipient key (with `Recipient`).
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ciphertext_for_recipient: Option<Vec<u8>>,
    /// The key material version used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_material_id: Option<String>,
}

kms_request!(DecryptRequest, DecryptResponse, Decrypt, recipient);

/// `Encrypt` request (no `Recipient`: the plaintext comes from the caller).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptRequest {
    /// The key id, ARN, alias name or alias ARN.
    pub key_id: String,
    /// The data to encrypt (1..=4096 bytes).
    #[serde(with = "crate::blob::secret")]
    pub plaintext: SecretBytes,
    /// The encryption context.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encryption_context: BTreeMap<String, String>,
    /// Grant tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_tokens: Vec<String>,
    /// The algorithm (asymmetric keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_algorithm: Option<EncryptionAlgorithm>,
    /// Check permissions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// `Encrypt` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptResponse {
    /// The ciphertext.
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ciphertext_blob: Option<Vec<u8>>,
    /// The key ARN used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The algorithm used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_algorithm: Option<EncryptionAlgorithm>,
}

kms_request!(EncryptRequest, EncryptResponse, Encrypt);

/// `GenerateDataKey` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyRequest {
    /// The symmetric key that encrypts the data key.
    pub key_id: String,
    /// The encryption context.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encryption_context: BTreeMap<String, String>,
    /// Data key length in bytes (1..=1024); use this or `key_spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_bytes: Option<u32>,
    /// Data key spec; use this or `number_of_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_spec: Option<DataKeySpec>,
    /// Grant tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_tokens: Vec<String>,
    /// Attestation: return the plaintext key in `CiphertextForRecipient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// Check permissions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// `GenerateDataKey` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyResponse {
    /// The data key encrypted under the KMS key (always present).
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ciphertext_blob: Option<Vec<u8>>,
    /// The plaintext data key; absent with `Recipient`.
    #[serde(
        default,
        with = "crate::blob::secret_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub plaintext: Option<SecretBytes>,
    /// The key ARN used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The plaintext data key for the recipient (with `Recipient`).
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ciphertext_for_recipient: Option<Vec<u8>>,
    /// The key material version used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_material_id: Option<String>,
}

kms_request!(
    GenerateDataKeyRequest,
    GenerateDataKeyResponse,
    GenerateDataKey,
    recipient
);

/// `GenerateRandom` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateRandomRequest {
    /// Number of bytes (1..=1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_bytes: Option<u32>,
    /// Generate in a CloudHSM key store's cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_key_store_id: Option<String>,
    /// Attestation: return the bytes in `CiphertextForRecipient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
}

/// `GenerateRandom` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateRandomResponse {
    /// The random bytes; absent with `Recipient`.
    #[serde(
        default,
        with = "crate::blob::secret_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub plaintext: Option<SecretBytes>,
    /// The random bytes for the recipient (with `Recipient`).
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ciphertext_for_recipient: Option<Vec<u8>>,
}

kms_request!(
    GenerateRandomRequest,
    GenerateRandomResponse,
    GenerateRandom,
    recipient
);

/// `GenerateDataKeyPair` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyPairRequest {
    /// The encryption context.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encryption_context: BTreeMap<String, String>,
    /// The symmetric key that encrypts the private key.
    pub key_id: String,
    /// The key pair type.
    pub key_pair_spec: DataKeyPairSpec,
    /// Grant tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_tokens: Vec<String>,
    /// Attestation: return the private key in `CiphertextForRecipient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// Check permissions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// `GenerateDataKeyPair` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyPairResponse {
    /// The private key encrypted under the KMS key.
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub private_key_ciphertext_blob: Option<Vec<u8>>,
    /// The PKCS#8 private key; absent with `Recipient`.
    #[serde(
        default,
        with = "crate::blob::secret_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub private_key_plaintext: Option<SecretBytes>,
    /// The DER SubjectPublicKeyInfo.
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_key: Option<Vec<u8>>,
    /// The key ARN used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key pair type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pair_spec: Option<DataKeyPairSpec>,
    /// The private key for the recipient (with `Recipient`).
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ciphertext_for_recipient: Option<Vec<u8>>,
    /// The key material version used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_material_id: Option<String>,
}

kms_request!(
    GenerateDataKeyPairRequest,
    GenerateDataKeyPairResponse,
    GenerateDataKeyPair,
    recipient
);

/// `DeriveSharedSecret` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeriveSharedSecretRequest {
    /// The asymmetric KEY_AGREEMENT key.
    pub key_id: String,
    /// Always [`KeyAgreementAlgorithm::Ecdh`].
    pub key_agreement_algorithm: KeyAgreementAlgorithm,
    /// The peer's public key, DER SubjectPublicKeyInfo.
    #[serde(with = "crate::blob::bytes")]
    pub public_key: Vec<u8>,
    /// Grant tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_tokens: Vec<String>,
    /// Check permissions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Attestation: return the shared secret in `CiphertextForRecipient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
}

/// `DeriveSharedSecret` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeriveSharedSecretResponse {
    /// The key ARN used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The raw shared secret; absent with `Recipient`.
    #[serde(
        default,
        with = "crate::blob::secret_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub shared_secret: Option<SecretBytes>,
    /// The shared secret for the recipient (with `Recipient`).
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ciphertext_for_recipient: Option<Vec<u8>>,
    /// The algorithm used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_agreement_algorithm: Option<KeyAgreementAlgorithm>,
    /// Where the key material came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_origin: Option<KeyOrigin>,
}

kms_request!(
    DeriveSharedSecretRequest,
    DeriveSharedSecretResponse,
    DeriveSharedSecret,
    recipient
);

/// `GetKeyPolicy` request: the key's policy, for an operator's tools (`policy diff`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyPolicyRequest {
    /// The key id or key ARN.
    pub key_id: String,
    /// Always `default` when given (a KMS key has one policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
}

/// `GetKeyPolicy` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyPolicyResponse {
    /// The key policy (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
}

kms_request!(GetKeyPolicyRequest, GetKeyPolicyResponse, GetKeyPolicy);

/// `PutKeyPolicy` request: replaces the key's policy (`policy apply`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutKeyPolicyRequest {
    /// The key id or key ARN.
    pub key_id: String,
    /// The new key policy (JSON text, at most 32 KiB).
    pub policy: String,
    /// Always `default` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    /// Skip KMS's check that the caller may still change the policy afterwards. Never set by
    /// CCC's tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass_policy_lockout_safety_check: Option<bool>,
}

/// `PutKeyPolicy` response: KMS answers with an empty body (botocore KMS model: no output
/// shape), which this type reads as well as `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutKeyPolicyResponse {}

impl KmsRequest for PutKeyPolicyRequest {
    const OPERATION: Operation = Operation::PutKeyPolicy;
    const EMPTY_RESPONSE: bool = true;
    type Response = PutKeyPolicyResponse;
    fn recipient(&self) -> Option<&Recipient> {
        None
    }
}

/// `Sign` request: an asymmetric `SIGN_VERIFY` key signs `Message` (`--sign-kms-key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignRequest {
    /// The key id or key ARN.
    pub key_id: String,
    /// The message or, with [`MessageType::Digest`], its digest.
    #[serde(with = "crate::blob::bytes")]
    pub message: Vec<u8>,
    /// `RAW` (the default) or `DIGEST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<MessageType>,
    /// The signing algorithm.
    pub signing_algorithm: SigningAlgorithm,
}

/// `Sign` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignResponse {
    /// The key ARN that signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The signature: for ECDSA, DER `Ecdsa-Sig-Value` (SEQUENCE of r, s).
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub signature: Option<Vec<u8>>,
    /// The algorithm used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_algorithm: Option<SigningAlgorithm>,
}

kms_request!(SignRequest, SignResponse, Sign);

/// `GetPublicKey` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPublicKeyRequest {
    /// The key id or key ARN.
    pub key_id: String,
}

/// `GetPublicKey` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPublicKeyResponse {
    /// The key ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The public key, DER SubjectPublicKeyInfo.
    #[serde(
        default,
        with = "crate::blob::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_key: Option<Vec<u8>>,
    /// The key spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_spec: Option<KeySpec>,
    /// The key usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<KeyUsage>,
    /// For a `SIGN_VERIFY` key, the algorithms it signs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_algorithms: Option<Vec<SigningAlgorithm>>,
}

kms_request!(GetPublicKeyRequest, GetPublicKeyResponse, GetPublicKey);
