//! The one error type of the attestation boundary, [`AttestationError`], and its sub-enums.
//! Every message names the check that failed, expected vs found, and what to do next.

use crate::der::DerError;
use crate::time::UnixMillis;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Why an attestation document was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestationError {
    /// The bytes are not a well-formed NSM attestation document (CBOR, COSE_Sign1 or payload).
    Malformed(DecodeError),
    /// A field is larger (or has more entries) than the named limit allows.
    TooLarge {
        /// The name of the limit constant in [`crate::attestation::limits`].
        limit: &'static str,
        /// The largest accepted size.
        max: usize,
        /// The size found.
        actual: usize,
    },
    /// The document is an unsigned one from an emulator (QEMU `nitro-enclave`), seen by a
    /// verifier that requires a signature.
    UnsignedDocument,
    /// [`crate::attestation::RootOfTrust::InsecureQemuUnsigned`] was selected, but the document
    /// is not exactly the unsigned shape QEMU emits.
    NotQemuUnsigned(&'static str),
    /// `cabundle[0]` is not the trusted root.
    UntrustedRoot {
        /// What the root must be (AWS pin or custom root), as SHA-256 hex of its DER.
        expected_sha256: String,
        /// SHA-256 hex of `cabundle[0]`.
        found_sha256: String,
        /// Subject CN of `cabundle[0]`, if it parsed.
        found_subject: String,
        /// True when the expected root is the built-in AWS Nitro Enclaves Root G1 pin.
        aws_pin: bool,
    },
    /// A certificate in the chain failed a check.
    Certificate(CertificateError),
    /// The COSE_Sign1 signature does not verify with the leaf certificate's key.
    DocumentSignature {
        /// Subject CN of the leaf certificate.
        leaf_subject: String,
    },
    /// The document is authentic but does not satisfy the [`crate::attestation::Policy`].
    Policy(PolicyError),
    /// A verifier input (expected PCRs, measurements JSON, custom root PEM) is invalid.
    InvalidInput(String),
}

/// A structural problem, with the byte offset (from the start of the whole document) at which
/// it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the document (for payload fields: in the whole document, not the payload).
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// The kinds of structural problems.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside an item.
    Truncated {
        /// What was being read.
        reading: &'static str,
    },
    /// An item of the wrong CBOR type (or an invalid CBOR encoding) where `field` is expected.
    UnexpectedType {
        /// The field or structure being read.
        field: &'static str,
        /// The type it must have.
        expected: &'static str,
    },
    /// The protected header names an algorithm other than ES384 (-35) or QEMU's -1.
    UnsupportedAlgorithm(i64),
    /// A payload key that is not one of the nine NSM keys.
    UnknownField(String),
    /// A payload key that appears twice.
    DuplicateField(&'static str),
    /// A mandatory payload key is absent.
    MissingField(&'static str),
    /// A value of the right type but an invalid content.
    InvalidValue {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Bytes follow the COSE_Sign1 structure (or a nested CBOR item).
    TrailingBytes {
        /// In which structure.
        after: &'static str,
    },
}

/// Where a certificate sits: index 0 is `cabundle[0]` (the root), the last is the leaf
/// (`certificate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainPosition {
    /// 0-based index in `[cabundle[0], ..., cabundle[n-1], certificate]`.
    pub index: usize,
    /// Total number of certificates (`cabundle.len() + 1`).
    pub len: usize,
}

impl ChainPosition {
    /// True for the leaf (the document's `certificate`).
    #[must_use]
    pub const fn is_leaf(&self) -> bool {
        self.index + 1 == self.len
    }
}

impl fmt::Display for ChainPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_leaf() {
            f.write_str("leaf certificate (`certificate`)")
        } else if self.index == 0 {
            f.write_str("root certificate (cabundle[0])")
        } else {
            write!(f, "intermediate certificate cabundle[{}]", self.index)
        }
    }
}

/// A certificate that failed a check: which one and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateError {
    /// Its position in the chain.
    pub position: ChainPosition,
    /// Its subject CN (empty when the certificate could not be parsed that far).
    pub subject: String,
    /// What was wrong.
    pub kind: CertificateErrorKind,
}

/// The checks a certificate can fail.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateErrorKind {
    /// The DER is malformed (offset inside the certificate).
    Der(DerError),
    /// Not an X.509 v3 certificate, or a field this verifier requires is malformed or absent.
    Structure(&'static str),
    /// The signature algorithm is not ecdsa-with-SHA384 (dotted OID or name of the one found).
    UnsupportedSignatureAlgorithm(String),
    /// The subject key is not an uncompressed P-384 point.
    UnsupportedKey(&'static str),
    /// The signature by the issuer (previous certificate) does not verify.
    BadSignature {
        /// Subject CN of the issuer whose key was used.
        issuer: String,
    },
    /// The issuer name differs from the previous certificate's subject name.
    IssuerMismatch {
        /// Subject CN of the previous certificate.
        expected: String,
    },
    /// The verification time lies outside notBefore..=notAfter.
    Expired {
        /// notBefore.
        not_before: UnixMillis,
        /// notAfter.
        not_after: UnixMillis,
        /// The verification time used.
        at: UnixMillis,
    },
    /// A CA position holds a certificate without basicConstraints cA=TRUE.
    NotCa,
    /// The leaf is a CA certificate.
    LeafIsCa,
    /// More CA certificates follow than the basicConstraints pathLenConstraint allows.
    PathLenExceeded {
        /// The pathLenConstraint.
        path_len: u64,
        /// How many intermediate CA certificates follow this one.
        below: usize,
    },
    /// keyUsage is absent or lacks the bit this position needs.
    KeyUsage(&'static str),
    /// A critical extension this verifier does not understand (dotted OID).
    UnknownCriticalExtension(String),
}

/// A policy check that an authentic document failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// A PCR differs from the expected value (or is absent).
    PcrMismatch {
        /// PCR index.
        index: u8,
        /// Expected value.
        expected: Vec<u8>,
        /// Value in the document, or `None` if the document has no such PCR.
        found: Option<Vec<u8>>,
    },
    /// PCR0, PCR1 and PCR2 are all zero: the enclave runs in debug mode.
    DebugMode,
    /// The nonce differs from the expected one (or is absent).
    NonceMismatch {
        /// Expected nonce.
        expected: Vec<u8>,
        /// Nonce in the document.
        found: Option<Vec<u8>>,
    },
    /// `public_key` differs from the required one (or is absent).
    PublicKeyMismatch {
        /// Required value.
        expected: Vec<u8>,
        /// Value in the document.
        found: Option<Vec<u8>>,
    },
    /// `user_data` differs from the required one (or is absent).
    UserDataMismatch {
        /// Required value.
        expected: Vec<u8>,
        /// Value in the document.
        found: Option<Vec<u8>>,
    },
}

impl From<DecodeError> for AttestationError {
    fn from(e: DecodeError) -> Self {
        Self::Malformed(e)
    }
}

impl From<PolicyError> for AttestationError {
    fn from(e: PolicyError) -> Self {
        Self::Policy(e)
    }
}

impl From<CertificateError> for AttestationError {
    fn from(e: CertificateError) -> Self {
        Self::Certificate(e)
    }
}

/// Hex for messages; long values are shown whole (PCRs are 96 hex digits).
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(empty)");
        }
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

struct OptHex<'a>(Option<&'a [u8]>);

impl fmt::Display for OptHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => Hex(bytes).fmt(f),
            None => f.write_str("(absent)"),
        }
    }
}

impl fmt::Display for AttestationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(
                f,
                "malformed attestation document: {e}; this is not an NSM attestation document \
                 as produced by /dev/nsm (check that the whole document was transferred, and \
                 its encoding)"
            ),
            Self::TooLarge { limit, max, actual } => write!(
                f,
                "attestation document exceeds {limit} ({actual} > {max}); genuine NSM documents \
                 stay within it, so this document was not produced by an NSM"
            ),
            Self::UnsignedDocument => f.write_str(
                "unsigned document from an emulator; QEMU's nitro-enclave machine writes \
                 protected header alg -1, a zero signature and zero certificates, so it proves \
                 nothing. Only for local emulation, select RootOfTrust::InsecureQemuUnsigned \
                 (CLI: --insecure-qemu-unsigned) explicitly",
            ),
            Self::NotQemuUnsigned(what) => write!(
                f,
                "insecure QEMU mode accepts only QEMU's exact unsigned shape, and this document \
                 differs: {what}; verify signed documents with the AWS root (the default)"
            ),
            Self::UntrustedRoot {
                expected_sha256,
                found_sha256,
                found_subject,
                aws_pin,
            } => {
                let which = if *aws_pin {
                    "AWS Nitro Enclaves Root G1"
                } else {
                    "the custom root passed by the caller"
                };
                write!(
                    f,
                    "root certificate (cabundle[0], CN={found_subject}) is not {which}: \
                     expected DER SHA-256 {expected_sha256}, found {found_sha256}; the document \
                     was not issued under that root (if it comes from the NSM simulator, pass \
                     the simulator's root certificate explicitly)"
                )
            }
            Self::Certificate(e) => e.fmt(f),
            Self::DocumentSignature { leaf_subject } => write!(
                f,
                "COSE_Sign1 signature (ES384) does not verify with the leaf certificate's key \
                 (CN={leaf_subject}): the protected header, payload or signature was altered \
                 after the NSM signed it"
            ),
            Self::Policy(e) => e.fmt(f),
            Self::InvalidInput(what) => write!(f, "invalid attestation verifier input: {what}"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.offset;
        match &self.kind {
            DecodeErrorKind::Truncated { reading } => {
                write!(f, "input ends at byte {at} while reading {reading}")
            }
            DecodeErrorKind::UnexpectedType { field, expected } => {
                write!(f, "at byte {at}: {field} must be {expected}")
            }
            DecodeErrorKind::UnsupportedAlgorithm(alg) => write!(
                f,
                "at byte {at}: protected header alg {alg} is not ES384 (-35), the only \
                 algorithm the NSM uses"
            ),
            DecodeErrorKind::UnknownField(key) => {
                write!(f, "at byte {at}: unknown payload key {key:?}")
            }
            DecodeErrorKind::DuplicateField(key) => {
                write!(f, "at byte {at}: payload key {key:?} appears twice")
            }
            DecodeErrorKind::MissingField(key) => {
                write!(f, "payload (ending at byte {at}) has no {key:?}")
            }
            DecodeErrorKind::InvalidValue { field, problem } => {
                write!(f, "at byte {at}: invalid {field}: {problem}")
            }
            DecodeErrorKind::TrailingBytes { after } => {
                write!(f, "unexpected bytes at byte {at}, after the end of {after}")
            }
        }
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = self.position;
        let cn = &self.subject;
        match &self.kind {
            CertificateErrorKind::Der(e) => {
                write!(
                    f,
                    "{who} is not valid DER: {e} (offset within the certificate)"
                )
            }
            CertificateErrorKind::Structure(what) => {
                write!(
                    f,
                    "{who} (CN={cn}) is not a usable X.509 v3 certificate: {what}"
                )
            }
            CertificateErrorKind::UnsupportedSignatureAlgorithm(alg) => write!(
                f,
                "{who} (CN={cn}) is signed with {alg}; Nitro chains use ecdsa-with-SHA384 only"
            ),
            CertificateErrorKind::UnsupportedKey(what) => write!(
                f,
                "{who} (CN={cn}) has an unsupported public key ({what}); Nitro chains use \
                 ECDSA P-384"
            ),
            CertificateErrorKind::BadSignature { issuer } => write!(
                f,
                "{who} (CN={cn}): signature by its issuer (CN={issuer}) does not verify; the \
                 certificate was altered or not issued by that CA"
            ),
            CertificateErrorKind::IssuerMismatch { expected } => write!(
                f,
                "{who} (CN={cn}): issuer name is not the subject of the previous certificate \
                 (CN={expected}); cabundle must be ordered root first, then each issued \
                 certificate"
            ),
            CertificateErrorKind::Expired {
                not_before,
                not_after,
                at,
            } => {
                let state = if at < not_before {
                    "not yet valid"
                } else {
                    "expired"
                };
                write!(
                    f,
                    "{who} (CN={cn}) is {state} at {at}: valid from {not_before} to \
                     {not_after}; verify at a time inside that window (NSM leaf certificates \
                     live ~3 hours: request a fresh document, or check the clock)"
                )
            }
            CertificateErrorKind::NotCa => write!(
                f,
                "{who} (CN={cn}) is not a CA (basicConstraints cA must be TRUE) but issues \
                 the next certificate"
            ),
            CertificateErrorKind::LeafIsCa => write!(
                f,
                "{who} (CN={cn}) is a CA certificate; the signing leaf must be an end entity"
            ),
            CertificateErrorKind::PathLenExceeded { path_len, below } => write!(
                f,
                "{who} (CN={cn}) allows {path_len} CA certificate(s) below it \
                 (pathLenConstraint) but {below} follow"
            ),
            CertificateErrorKind::KeyUsage(what) => {
                write!(f, "{who} (CN={cn}) has the wrong keyUsage: {what}")
            }
            CertificateErrorKind::UnknownCriticalExtension(oid) => write!(
                f,
                "{who} (CN={cn}) has a critical extension {oid} this verifier does not \
                 understand (RFC 5280 requires rejecting it)"
            ),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PcrMismatch {
                index,
                expected,
                found,
            } => write!(
                f,
                "PCR{index} mismatch: expected {}, found {}; the enclave is not running the \
                 image (or, for PCR3/4, the role/instance) the policy expects",
                Hex(expected),
                OptHex(found.as_deref())
            ),
            Self::DebugMode => f.write_str(
                "enclave runs in debug mode (PCR0, PCR1 and PCR2 are all zero): its memory and \
                 console are observable by the parent; restart it without --debug-mode, or \
                 allow debug documents explicitly for development",
            ),
            Self::NonceMismatch { expected, found } => write!(
                f,
                "nonce mismatch: expected {}, found {}; the document is not a fresh answer to \
                 this challenge (replayed, or requested with another nonce)",
                Hex(expected),
                OptHex(found.as_deref())
            ),
            Self::PublicKeyMismatch { expected, found } => write!(
                f,
                "public_key mismatch: expected {}, found {}; the document does not bind the \
                 key you intend to use",
                Hex(expected),
                OptHex(found.as_deref())
            ),
            Self::UserDataMismatch { expected, found } => write!(
                f,
                "user_data mismatch: expected {}, found {}",
                Hex(expected),
                OptHex(found.as_deref())
            ),
        }
    }
}

impl core::error::Error for AttestationError {}
