//! NSM attestation documents: parse (COSE_Sign1 + payload), verify (ES384 signature, chain to
//! the pinned AWS Nitro root, validity at the caller's time), then apply a [`Policy`].
//!
//! No I/O and no clock: the verification time is a parameter ([`VerifyOptions::at`]).
//!
//! ```no_run
//! # #[cfg(feature = "aws-lc")] {
//! use ccc_sdk::attestation::{self, Policy, VerifyOptions};
//! use ccc_sdk::{crypto::AwsLc, time::UnixMillis};
//! # let document: &[u8] = &[];
//! let policy = Policy::new().expect_pcr_hex(0, "3aa0e6e6...")?.expect_nonce(b"challenge");
//! let options = VerifyOptions::new(UnixMillis::now()).with_policy(policy);
//! let verified = attestation::verify(document, &options, &AwsLc)?;
//! println!("{} {:?}", verified.module_id, verified.pcrs.get(&0));
//! # }
//! # Ok::<(), ccc_sdk::attestation::AttestationError>(())
//! ```
//!
//! # Trust modes ([`RootOfTrust`])
//! - [`RootOfTrust::AwsNitro`] (default): `cabundle[0]` must be AWS Nitro Enclaves Root G1
//!   (SHA-256 of its DER = [`AWS_NITRO_ROOT_G1_SHA256`]).
//! - [`RootOfTrust::Custom`]: `cabundle[0]` must be byte-for-byte the caller's root (for the
//!   NSM simulator's development root). The chain always starts at `cabundle[0]`, as the NSM
//!   lays it out; a custom root that is not `cabundle[0]` is rejected, not searched for.
//! - [`RootOfTrust::InsecureQemuUnsigned`]: accepts only the unsigned documents of QEMU's
//!   `nitro-enclave` machine, which prove nothing. Never a default; the result says so.
//!
//! In the signed modes the root's self-signature is not checked (trust comes from the pin);
//! every other certificate's signature, names, basicConstraints (pathLen), keyUsage and
//! validity are, and so is the COSE signature.

mod cbor;
mod cose;
mod document;
mod error;
mod policy;
mod verify;
mod x509;

pub use cose::{Algorithm, CoseSign1};
pub use document::{Document, MAX_PCR_INDEX, Pcrs};
pub use error::{
    AttestationError, CertificateError, CertificateErrorKind, ChainPosition, DecodeError,
    DecodeErrorKind, PolicyError,
};
pub use policy::Policy;
pub use verify::AWS_NITRO_ROOT_G1_SHA256;

use crate::crypto::Crypto;
use crate::time::UnixMillis;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Size limits applied while parsing. Each is checked before anything is copied.
pub mod limits {
    /// Whole document. The NSM driver's response buffer is 12 KiB (0x3000; NSM API
    /// `src/driver/mod.rs`, QEMU `virtio-nsm.c`), so no NSM document exceeds it; 16 KiB is
    /// the COSE payload bound of the AWS attestation spec (`payload: bstr .size (1..16384)`)
    /// and leaves room for the envelope. Real documents are 4.4-4.8 KB.
    pub const MAX_DOCUMENT_LEN: usize = 16 * 1024;
    /// `public_key`: the AWS spec says 1..1024 (its CDDL `user_data` type); genuine
    /// documents with an empty one exist (hf/nitrite vector), so 0 is accepted.
    pub const MAX_PUBLIC_KEY_LEN: usize = 1024;
    /// `user_data`: 0..1024 (AWS spec CDDL; hf/nitrite follows the user guide's 1024 over
    /// the 512 of its validation section).
    pub const MAX_USER_DATA_LEN: usize = 1024;
    /// `nonce`: 0..1024, as `user_data` (same sources).
    pub const MAX_NONCE_LEN: usize = 1024;
    /// One DER certificate (`certificate` or a `cabundle` entry). The spec's CDDL says
    /// 1..1024; the real ones are 533..796 bytes (six shared vectors, 2021-2025; the zonal
    /// certificate grows with the CRL URL's region name). 2048 never rejects a genuine one
    /// while bounding the parsing work.
    pub const MAX_CERTIFICATE_LEN: usize = 2048;
    /// `cabundle` entries. Real bundles hold 4 (root, regional, zonal, instance); 8 leaves
    /// room for a deeper AWS hierarchy.
    pub const MAX_CABUNDLE_LEN: usize = 8;
    /// PCR entries: the NSM has 32 PCRs (`DescribeNSM.max_pcrs`, indices 0..=31).
    pub const MAX_PCRS: usize = 32;
}

/// Which certificate (if any) the document's chain must start at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootOfTrust {
    /// AWS Nitro Enclaves Root G1, pinned by the SHA-256 of its DER. The default.
    #[default]
    AwsNitro,
    /// A root the caller supplies (e.g. the NSM simulator's development root).
    Custom(CustomRoot),
    /// INSECURE: accept QEMU `nitro-enclave` documents, which are not signed at all
    /// (protected header `{1: -1}`, 64 zero bytes for signature, certificate and the single
    /// cabundle entry). Such a document proves nothing about where it came from. Only for
    /// local emulation (`cargo xtask emulate`, the KMS emulator); never implied.
    InsecureQemuUnsigned,
}

/// A caller-supplied root certificate, checked to be a parseable X.509 v3 P-384 certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomRoot {
    der: Vec<u8>,
}

impl CustomRoot {
    /// The root's DER.
    #[must_use]
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

impl RootOfTrust {
    /// A custom root from its DER.
    ///
    /// # Errors
    /// [`AttestationError::Certificate`] if it is not an X.509 v3 certificate with a P-384 key.
    pub fn custom(der: Vec<u8>) -> Result<Self, AttestationError> {
        let position = ChainPosition { index: 0, len: 1 };
        x509::Certificate::parse(&der).map_err(|f| CertificateError {
            position,
            subject: f.subject_cn.to_string(),
            kind: f.kind,
        })?;
        Ok(Self::Custom(CustomRoot { der }))
    }

    /// A custom root from a PEM `CERTIFICATE` block.
    ///
    /// # Errors
    /// [`AttestationError::InvalidInput`] if there is no PEM certificate block, or any error of
    /// [`RootOfTrust::custom`].
    pub fn custom_pem(pem: &str) -> Result<Self, AttestationError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::{self, PemObject as _};
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            AttestationError::InvalidInput(match e {
                pem::Error::NoItemsFound => {
                    "root is not a PEM certificate (no BEGIN/END CERTIFICATE lines)".into()
                }
                other => alloc::format!("root PEM: {other}"),
            })
        })?;
        Self::custom(der.to_vec())
    }
}

/// How to verify: at what time, under which root, with which policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The time every certificate must be valid at (inclusive notBefore..=notAfter).
    pub at: UnixMillis,
    /// The root of trust (default: AWS Nitro Enclaves Root G1).
    pub root: RootOfTrust,
    /// Checks applied after authenticity (default: reject debug mode, nothing else).
    pub policy: Policy,
}

impl VerifyOptions {
    /// Verification at `at`, under the AWS root, with the default policy.
    #[must_use]
    pub fn new(at: UnixMillis) -> Self {
        Self {
            at,
            root: RootOfTrust::AwsNitro,
            policy: Policy::new(),
        }
    }

    /// Replaces the root of trust.
    #[must_use]
    pub fn with_root(mut self, root: RootOfTrust) -> Self {
        self.root = root;
        self
    }

    /// Replaces the policy.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
}

/// What the document's authenticity rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trust {
    /// Chain to the pinned AWS Nitro Enclaves Root G1.
    AwsNitroRoot,
    /// Chain to the caller's custom root.
    CustomRoot,
    /// Nothing: an unsigned QEMU document accepted in the insecure mode.
    InsecureQemuUnsigned,
}

/// One certificate of a verified chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    /// Subject CN.
    pub subject_cn: String,
    /// notBefore.
    pub not_before: UnixMillis,
    /// notAfter.
    pub not_after: UnixMillis,
}

/// An attestation document that passed verification and policy, as owned values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAttestation {
    /// NSM module id.
    pub module_id: String,
    /// When the NSM produced the document.
    pub timestamp: UnixMillis,
    /// PCR digest (`"SHA384"`).
    pub digest: String,
    /// PCR index -> value.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// `public_key`, if present (possibly empty).
    pub public_key: Option<Vec<u8>>,
    /// `user_data`, if present.
    pub user_data: Option<Vec<u8>>,
    /// `nonce`, if present.
    pub nonce: Option<Vec<u8>>,
    /// The chain, root first, leaf last; empty for an unsigned emulator document.
    pub chain: Vec<CertificateSummary>,
    /// What authenticity rests on.
    pub trust: Trust,
    /// The time the chain was checked at.
    pub verified_at: UnixMillis,
}

impl VerifiedAttestation {
    /// True when the document was an UNSIGNED emulator document (insecure QEMU mode).
    #[must_use]
    pub fn is_unsigned_emulated(&self) -> bool {
        self.trust == Trust::InsecureQemuUnsigned
    }

    /// True when PCR0, PCR1 and PCR2 are all zero (debug-mode enclave).
    #[must_use]
    pub fn is_debug_mode(&self) -> bool {
        (0u8..=2).all(|i| self.pcrs.get(&i).is_some_and(|v| v.iter().all(|&b| b == 0)))
    }
}

/// A parsed, NOT verified, attestation document, borrowing the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The COSE_Sign1 envelope.
    pub cose: CoseSign1<'a>,
    /// The payload fields.
    pub document: Document<'a>,
}

/// A document as files and tools hold it: raw CBOR (first byte `0x84`, an array of four, or
/// `0xd2`, tag 18), else hex, else standard base64 (whitespace ignored in both).
///
/// # Errors
/// [`AttestationError::InvalidInput`] for anything else, or more than
/// [`limits::MAX_DOCUMENT_LEN`] decoded bytes.
pub fn decode_any(bytes: &[u8]) -> Result<Vec<u8>, AttestationError> {
    use base64::Engine as _;
    let too_large = |actual: usize| AttestationError::TooLarge {
        limit: "MAX_DOCUMENT_LEN",
        max: limits::MAX_DOCUMENT_LEN,
        actual,
    };
    if matches!(bytes.first(), Some(0x84 | 0xd2)) {
        if bytes.len() > limits::MAX_DOCUMENT_LEN {
            return Err(too_large(bytes.len()));
        }
        return Ok(bytes.to_vec());
    }
    // Text is at most twice (hex) or 4/3 (base64) the document, plus whitespace.
    if bytes.len() > 4 * limits::MAX_DOCUMENT_LEN {
        return Err(too_large(bytes.len()));
    }
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return Err(AttestationError::InvalidInput(
            "the document is empty".to_string(),
        ));
    }
    let decoded = if text.iter().all(u8::is_ascii_hexdigit) && text.len().is_multiple_of(2) {
        hex::decode(&text)
            .map_err(|e| AttestationError::InvalidInput(alloc::format!("hex: {e}")))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|_| {
                AttestationError::InvalidInput(
                    "not raw CBOR (first byte 0x84 or 0xd2), hex or standard base64".to_string(),
                )
            })?
    };
    if decoded.len() > limits::MAX_DOCUMENT_LEN {
        return Err(too_large(decoded.len()));
    }
    Ok(decoded)
}

/// Parses a document (raw CBOR bytes) without verifying anything.
///
/// # Errors
/// [`AttestationError::Malformed`] (with the byte offset) or [`AttestationError::TooLarge`].
pub fn parse(document: &[u8]) -> Result<Parsed<'_>, AttestationError> {
    let cose = cose::parse(document)?;
    let payload = document::parse(cose.payload, cose.payload_offset)?;
    Ok(Parsed {
        cose,
        document: payload,
    })
}

impl Parsed<'_> {
    /// Verifies this document and applies the policy of `options`.
    ///
    /// # Errors
    /// The first failed check: [`AttestationError::UnsignedDocument`],
    /// [`AttestationError::UntrustedRoot`], [`AttestationError::Certificate`],
    /// [`AttestationError::DocumentSignature`], [`AttestationError::NotQemuUnsigned`] or
    /// [`AttestationError::Policy`].
    pub fn verify(
        &self,
        options: &VerifyOptions,
        crypto: &dyn Crypto,
    ) -> Result<VerifiedAttestation, AttestationError> {
        let doc = &self.document;
        let (chain, trust) = match (&options.root, self.cose.algorithm) {
            (RootOfTrust::InsecureQemuUnsigned, _) => {
                verify::check_qemu_shape(&self.cose, doc)?;
                (Vec::new(), Trust::InsecureQemuUnsigned)
            }
            (_, Algorithm::QemuUnsigned) => return Err(AttestationError::UnsignedDocument),
            (root, Algorithm::Es384) => {
                let chain = verify::verify_signed(&self.cose, doc, root, options.at, crypto)?;
                let trust = if matches!(root, RootOfTrust::Custom(_)) {
                    Trust::CustomRoot
                } else {
                    Trust::AwsNitroRoot
                };
                (chain, trust)
            }
        };
        options.policy.check(doc)?;
        Ok(VerifiedAttestation {
            module_id: doc.module_id.to_string(),
            timestamp: doc.timestamp,
            digest: doc.digest.to_string(),
            pcrs: doc.pcrs.iter().map(|(i, v)| (i, v.to_vec())).collect(),
            public_key: doc.public_key.map(<[u8]>::to_vec),
            user_data: doc.user_data.map(<[u8]>::to_vec),
            nonce: doc.nonce.map(<[u8]>::to_vec),
            chain,
            trust,
            verified_at: options.at,
        })
    }
}

/// Parses and verifies a document (raw CBOR bytes), then applies the policy.
///
/// # Errors
/// Any error of [`parse`] or [`Parsed::verify`].
pub fn verify(
    document: &[u8],
    options: &VerifyOptions,
    crypto: &dyn Crypto,
) -> Result<VerifiedAttestation, AttestationError> {
    parse(document)?.verify(options, crypto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn documents_are_decoded_from_cbor_hex_or_base64() {
        let raw = vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22];
        assert_eq!(decode_any(&raw).unwrap(), raw);
        assert_eq!(decode_any(b"8444a1013822\n").unwrap(), raw);
        assert_eq!(decode_any(b"hESh\nATgi").unwrap(), raw);
        for bad in [&b""[..], b"  \n", b"not a document!"] {
            assert!(
                matches!(decode_any(bad), Err(AttestationError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        let big = vec![0x84; limits::MAX_DOCUMENT_LEN + 1];
        assert!(matches!(
            decode_any(&big),
            Err(AttestationError::TooLarge { .. })
        ));
    }
}
