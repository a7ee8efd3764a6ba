//! Authenticity: the pinned root, the certificate chain (names, signatures, basicConstraints,
//! keyUsage, validity at the caller's time) and the COSE ES384 signature; and the exact shape
//! of QEMU's unsigned documents for the explicit insecure mode.

use super::cose::{self, Algorithm, CoseSign1};
use super::document::Document;
use super::error::{AttestationError, CertificateError, CertificateErrorKind, ChainPosition};
use super::x509::{Certificate, key_usage, oid_name};
use super::{CertificateSummary, RootOfTrust};
use crate::crypto::{Crypto, EcdsaSignature};
use crate::der::oid;
use crate::time::UnixMillis;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// SHA-256 of the DER of AWS Nitro Enclaves Root G1 (`CN=aws.nitro-enclaves`), the fingerprint
/// AWS publishes in "Verifying the root of trust" (Nitro Enclaves user guide) and that every
/// real document's `cabundle[0]` has (checked on the six shared vectors).
pub const AWS_NITRO_ROOT_G1_SHA256: [u8; 32] = [
    0x64, 0x1a, 0x03, 0x21, 0xa3, 0xe2, 0x44, 0xef, 0xe4, 0x56, 0x46, 0x31, 0x95, 0xd6, 0x06, 0x31,
    0x7e, 0xd7, 0xcd, 0xcc, 0x3c, 0x17, 0x56, 0xe0, 0x98, 0x93, 0xf3, 0xc6, 0x8f, 0x79, 0xbb, 0x5b,
];

/// What QEMU's `nitro-enclave` machine writes where a real NSM puts its signature, leaf and
/// cabundle entry: 64 zero bytes each (QEMU `hw/virtio/virtio-nsm.c`).
const QEMU_ZERO_BLOB: [u8; 64] = [0; 64];
/// QEMU's protected header `{1: -1}`.
const QEMU_PROTECTED: [u8; 3] = [0xa1, 0x01, 0x20];

/// Accepts exactly QEMU's unsigned shape; anything else is an error saying what differs.
pub(crate) fn check_qemu_shape(
    cose: &CoseSign1<'_>,
    doc: &Document<'_>,
) -> Result<(), AttestationError> {
    let problem = if cose.algorithm != Algorithm::QemuUnsigned {
        Some("the protected header says ES384: this is a signed document")
    } else if cose.protected != QEMU_PROTECTED {
        Some("protected header is not exactly {1: -1}")
    } else if cose.signature != QEMU_ZERO_BLOB {
        Some("signature is not 64 zero bytes")
    } else if doc.certificate != QEMU_ZERO_BLOB {
        Some("certificate is not 64 zero bytes")
    } else if doc.cabundle.as_slice() != [&QEMU_ZERO_BLOB[..]] {
        Some("cabundle is not exactly one entry of 64 zero bytes")
    } else {
        None
    };
    match problem {
        Some(what) => Err(AttestationError::NotQemuUnsigned(what)),
        None => Ok(()),
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn cert_error(
    position: ChainPosition,
    subject: &str,
    kind: CertificateErrorKind,
) -> AttestationError {
    AttestationError::Certificate(CertificateError {
        position,
        subject: subject.to_string(),
        kind,
    })
}

/// Verifies the chain `cabundle[0] (root) .. cabundle[n-1], certificate` and the COSE
/// signature. Returns the chain summary, root first.
pub(crate) fn verify_signed(
    cose: &CoseSign1<'_>,
    doc: &Document<'_>,
    root: &RootOfTrust,
    at: UnixMillis,
    crypto: &dyn Crypto,
) -> Result<Vec<CertificateSummary>, AttestationError> {
    let root_der = doc.cabundle.first().copied().unwrap_or_default();

    // 1. The root: pinned by fingerprint, or byte-equal to the caller's root. Its own
    //    self-signature is not checked: trust comes from the pin, not from the signature.
    let (trusted, expected_sha256, aws_pin) = match root {
        RootOfTrust::AwsNitro => {
            let found = crypto.sha256(&[root_der]);
            (
                found == AWS_NITRO_ROOT_G1_SHA256,
                AWS_NITRO_ROOT_G1_SHA256,
                true,
            )
        }
        RootOfTrust::Custom(custom) => (
            custom.der() == root_der,
            crypto.sha256(&[custom.der()]),
            false,
        ),
        RootOfTrust::InsecureQemuUnsigned => {
            return Err(AttestationError::NotQemuUnsigned(
                "the protected header says ES384: this is a signed document",
            ));
        }
    };
    if !trusted {
        let found_subject = Certificate::parse(root_der)
            .map(|c| c.subject_cn.to_string())
            .unwrap_or_else(|_| "(unparseable)".to_string());
        return Err(AttestationError::UntrustedRoot {
            expected_sha256: hex(&expected_sha256),
            found_sha256: hex(&crypto.sha256(&[root_der])),
            found_subject,
            aws_pin,
        });
    }

    // 2. Parse every certificate once.
    let len = doc.cabundle.len() + 1;
    let mut chain: Vec<Certificate<'_>> = Vec::with_capacity(len);
    for (index, der) in doc.cabundle.iter().enumerate() {
        let position = ChainPosition { index, len };
        let cert =
            Certificate::parse(der).map_err(|f| cert_error(position, f.subject_cn, f.kind))?;
        chain.push(cert);
    }
    let leaf_position = ChainPosition {
        index: len - 1,
        len,
    };
    let leaf = Certificate::parse(doc.certificate)
        .map_err(|f| cert_error(leaf_position, f.subject_cn, f.kind))?;
    chain.push(leaf.clone());

    // 3. The cheap checks on every certificate first, so a bad chain costs no signature work.
    let leaf_index = len - 1;
    for (index, cert) in chain.iter().enumerate() {
        let position = ChainPosition { index, len };
        let fail = |kind| cert_error(position, cert.subject_cn, kind);
        if at < cert.not_before || at > cert.not_after {
            return Err(fail(CertificateErrorKind::Expired {
                not_before: cert.not_before,
                not_after: cert.not_after,
                at,
            }));
        }
        if cert.signature_algorithm != oid::ECDSA_WITH_SHA384 {
            return Err(fail(CertificateErrorKind::UnsupportedSignatureAlgorithm(
                oid_name(cert.signature_algorithm),
            )));
        }
        let usage = cert.key_usage.ok_or(CertificateErrorKind::KeyUsage(
            "no keyUsage extension (every Nitro certificate has one)",
        ));
        if index == leaf_index {
            if matches!(cert.basic_constraints, Some((true, _))) {
                return Err(fail(CertificateErrorKind::LeafIsCa));
            }
            if usage.map_err(fail)? & key_usage::DIGITAL_SIGNATURE == 0 {
                return Err(fail(CertificateErrorKind::KeyUsage(
                    "the leaf lacks digitalSignature, needed to sign the document",
                )));
            }
        } else {
            let Some((true, path_len)) = cert.basic_constraints else {
                return Err(fail(CertificateErrorKind::NotCa));
            };
            // CA certificates that follow this one, excluding the leaf.
            let below = leaf_index - index - 1;
            if let Some(path_len) = path_len
                && u64::try_from(below).unwrap_or(u64::MAX) > path_len
            {
                return Err(fail(CertificateErrorKind::PathLenExceeded {
                    path_len,
                    below,
                }));
            }
            if usage.map_err(fail)? & key_usage::KEY_CERT_SIGN == 0 {
                return Err(fail(CertificateErrorKind::KeyUsage(
                    "a CA certificate lacks keyCertSign",
                )));
            }
        }
        if let Some(issuer) = index.checked_sub(1).and_then(|i| chain.get(i))
            && cert.issuer != issuer.subject
        {
            return Err(fail(CertificateErrorKind::IssuerMismatch {
                expected: issuer.subject_cn.to_string(),
            }));
        }
    }

    // 4. Signatures: each certificate by the previous one's key, then the document by the leaf.
    for (index, pair) in chain.windows(2).enumerate() {
        let [issuer, cert] = pair else { continue };
        crypto
            .verify_p384_sha384(
                issuer.public_key,
                cert.tbs,
                EcdsaSignature::Asn1(cert.signature),
            )
            .map_err(|_| {
                cert_error(
                    ChainPosition {
                        index: index + 1,
                        len,
                    },
                    cert.subject_cn,
                    CertificateErrorKind::BadSignature {
                        issuer: issuer.subject_cn.to_string(),
                    },
                )
            })?;
    }
    let message = cose::sig_structure(cose.protected, cose.payload);
    crypto
        .verify_p384_sha384(
            leaf.public_key,
            &message,
            EcdsaSignature::Fixed(cose.signature),
        )
        .map_err(|_| AttestationError::DocumentSignature {
            leaf_subject: leaf.subject_cn.to_string(),
        })?;

    Ok(chain
        .iter()
        .map(|c| CertificateSummary {
            subject_cn: c.subject_cn.to_string(),
            not_before: c.not_before,
            not_after: c.not_after,
        })
        .collect())
}
