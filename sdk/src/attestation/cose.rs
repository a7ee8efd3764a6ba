//! COSE_Sign1 (RFC 9052 §4.2) as the NSM emits it: the envelope, the protected header and the
//! `Sig_structure` the signature covers.

use super::cbor::{Cbor, invalid};
use super::error::{AttestationError, DecodeErrorKind};
use super::limits;
use alloc::vec::Vec;
use minicbor::data::Type;

/// CBOR tag of a tagged COSE_Sign1 (RFC 9052 §4.2).
const COSE_SIGN1_TAG: u64 = 18;
/// COSE algorithm ES384 (RFC 9053 §2.1), the one the NSM uses.
const ALG_ES384: i64 = -35;
/// The "algorithm" QEMU's emulated NSM writes: "we don't actually sign the data, so we use -1"
/// (QEMU `hw/virtio/virtio-nsm.c`).
const ALG_QEMU_UNSIGNED: i64 = -1;
/// Raw `r || s` of a P-384 signature (RFC 9053 §2.1).
pub(crate) const ES384_SIGNATURE_LEN: usize = 96;

/// The signature algorithm named by the protected header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// ES384: ECDSA P-384 with SHA-384 (COSE -35), what every real NSM document uses.
    Es384,
    /// COSE -1: QEMU's emulated NSM, which does not sign at all.
    QemuUnsigned,
}

/// A COSE_Sign1 envelope, borrowing from the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoseSign1<'a> {
    /// Whether the envelope carried CBOR tag 18 (real NSM documents are untagged).
    pub tagged: bool,
    /// The protected header's serialized bytes (the content of the bstr).
    pub protected: &'a [u8],
    /// The algorithm named in the protected header.
    pub algorithm: Algorithm,
    /// The payload bytes (the serialized attestation document map).
    pub payload: &'a [u8],
    /// Offset of the payload's first byte in the whole document.
    pub payload_offset: usize,
    /// The signature bytes (raw `r || s` for ES384).
    pub signature: &'a [u8],
}

/// Parses the COSE_Sign1 envelope of a whole document.
pub(crate) fn parse(document: &[u8]) -> Result<CoseSign1<'_>, AttestationError> {
    if document.len() > limits::MAX_DOCUMENT_LEN {
        return Err(AttestationError::TooLarge {
            limit: "MAX_DOCUMENT_LEN",
            max: limits::MAX_DOCUMENT_LEN,
            actual: document.len(),
        });
    }
    let mut c = Cbor::new(document, 0);
    let mut tagged = false;
    if c.datatype("COSE_Sign1")? == Type::Tag {
        let at = c.offset();
        let tag = c.tag("COSE_Sign1 tag")?;
        if tag != COSE_SIGN1_TAG {
            return Err(invalid(
                at,
                "COSE tag",
                alloc::format!("tag {tag}, COSE_Sign1 is tag 18"),
            ));
        }
        tagged = true;
    }
    let at = c.offset();
    if c.array("COSE_Sign1")? != Some(4) {
        return Err(c
            .error(
                at,
                DecodeErrorKind::UnexpectedType {
                    field: "COSE_Sign1",
                    expected: "a definite array of 4 items",
                },
            )
            .into());
    }
    let (protected, protected_offset) = c.bytes("COSE protected header")?;
    let algorithm = parse_protected(protected, protected_offset)?;

    let at = c.offset();
    let mut unprotected = c.map("COSE unprotected header")?;
    if c.has_next(&mut unprotected, "COSE unprotected header")? {
        // Unsigned headers carry nothing the NSM uses; refusing them keeps the parser small.
        return Err(invalid(
            at,
            "COSE unprotected header",
            "must be empty, as the NSM emits it",
        ));
    }

    let (payload, payload_offset) = c.bytes("COSE payload")?;
    let sig_at = c.offset();
    let (signature, _) = c.bytes("COSE signature")?;
    let bad_len = match algorithm {
        Algorithm::Es384 => signature.len() != ES384_SIGNATURE_LEN,
        Algorithm::QemuUnsigned => signature.len() > ES384_SIGNATURE_LEN,
    };
    if bad_len {
        return Err(invalid(
            sig_at,
            "COSE signature",
            alloc::format!(
                "{} bytes, an ES384 signature is {ES384_SIGNATURE_LEN} (raw r||s)",
                signature.len()
            ),
        ));
    }
    c.finish("the COSE_Sign1 array")?;
    Ok(CoseSign1 {
        tagged,
        protected,
        algorithm,
        payload,
        payload_offset,
        signature,
    })
}

/// The protected header must be exactly the map `{1: alg}`.
fn parse_protected(bytes: &[u8], base: usize) -> Result<Algorithm, AttestationError> {
    let mut c = Cbor::new(bytes, base);
    let at = c.offset();
    if c.map("COSE protected header")? != Some(1) {
        return Err(invalid(
            at,
            "COSE protected header",
            "must be the one-entry map {1: -35} (alg: ES384)",
        ));
    }
    let at = c.offset();
    let label = c.i64("COSE header label")?;
    if label != 1 {
        return Err(invalid(
            at,
            "COSE protected header",
            alloc::format!("label {label}, only 1 (alg) is allowed"),
        ));
    }
    let at = c.offset();
    let alg = c.i64("COSE alg")?;
    c.finish("the COSE protected header")?;
    match alg {
        ALG_ES384 => Ok(Algorithm::Es384),
        ALG_QEMU_UNSIGNED => Ok(Algorithm::QemuUnsigned),
        other => Err(c
            .error(at, DecodeErrorKind::UnsupportedAlgorithm(other))
            .into()),
    }
}

/// Appends the CBOR head of major type `major` with argument `n` (shortest form).
fn push_head(out: &mut Vec<u8>, major: u8, n: usize) {
    let m = major << 5;
    // Each arm's cast is guarded by its range, so none truncates.
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

/// `Sig_structure = ["Signature1", protected, external_aad = h'', payload]` (RFC 9052 §4.4),
/// serialized deterministically, in one allocation.
pub(crate) fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    const CONTEXT: &[u8] = b"Signature1";
    let mut out = Vec::with_capacity(1 + 11 + 5 + protected.len() + 1 + 5 + payload.len());
    out.push(0x84);
    push_head(&mut out, 3, CONTEXT.len());
    out.extend_from_slice(CONTEXT);
    push_head(&mut out, 2, protected.len());
    out.extend_from_slice(protected);
    out.push(0x40);
    push_head(&mut out, 2, payload.len());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sig_structure_heads_are_shortest_form() {
        let s = sig_structure(&[0xa1, 0x01, 0x38, 0x22], &[7u8; 300]);
        assert_eq!(
            &s[..20],
            &[
                0x84, 0x6a, b'S', b'i', b'g', b'n', b'a', b't', b'u', b'r', b'e', b'1', 0x44, 0xa1,
                0x01, 0x38, 0x22, 0x40, 0x59, 0x01
            ]
        );
        assert_eq!(s[20], 0x2c);
        assert_eq!(s.len(), 21 + 300);
        let mut v = Vec::new();
        push_head(&mut v, 2, 0x1_0000);
        assert_eq!(v, [0x5a, 0, 1, 0, 0]);
    }
}
