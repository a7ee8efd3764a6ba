//! A minimal X.509 v3 certificate reader (RFC 5280) for the Nitro chain, on top of
//! [`crate::der`]: exactly the fields chain verification needs, borrowed, parsed once.

use super::error::CertificateErrorKind;
use crate::der::{DerError, DerErrorKind, Reader, oid, tag};
use crate::time::{UnixMillis, parse_asn1_time};
use alloc::string::String;
use core::fmt::Write as _;

/// id-at-commonName (2.5.4.3)
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// sha256WithRSAEncryption (1.2.840.113549.1.1.11), named in errors only.
const OID_SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// Uncompressed SEC1 P-384 point: `04 || X || Y`.
const P384_POINT_LEN: usize = 97;

/// keyUsage bits (RFC 5280 §4.2.1.3), numbered from the most significant bit of the first
/// content byte.
pub(crate) mod key_usage {
    /// digitalSignature (bit 0)
    pub(crate) const DIGITAL_SIGNATURE: u16 = 1 << 15;
    /// keyCertSign (bit 5)
    pub(crate) const KEY_CERT_SIGN: u16 = 1 << 10;
}

/// The parts of a certificate the verifier uses, borrowed from its DER.
#[derive(Clone, Debug)]
pub(crate) struct Certificate<'a> {
    /// The DER TBSCertificate, what the issuer signed.
    pub(crate) tbs: &'a [u8],
    /// The signature algorithm OID (content octets); equal in TBS and outer structure.
    pub(crate) signature_algorithm: &'a [u8],
    /// The DER ECDSA-Sig-Value (or whatever the algorithm's signature is).
    pub(crate) signature: &'a [u8],
    /// DER issuer Name.
    pub(crate) issuer: &'a [u8],
    /// DER subject Name.
    pub(crate) subject: &'a [u8],
    /// The subject's CN (empty if none).
    pub(crate) subject_cn: &'a str,
    pub(crate) not_before: UnixMillis,
    pub(crate) not_after: UnixMillis,
    /// Uncompressed P-384 point.
    pub(crate) public_key: &'a [u8],
    /// basicConstraints: (cA, pathLenConstraint); `None` if the extension is absent.
    pub(crate) basic_constraints: Option<(bool, Option<u64>)>,
    /// keyUsage bits; `None` if the extension is absent.
    pub(crate) key_usage: Option<u16>,
}

/// A parse failure and the subject CN, if parsing got that far.
#[derive(Debug)]
pub(crate) struct ParseFailure<'a> {
    pub(crate) kind: CertificateErrorKind,
    pub(crate) subject_cn: &'a str,
}

impl From<DerError> for ParseFailure<'_> {
    fn from(e: DerError) -> Self {
        Self {
            kind: CertificateErrorKind::Der(e),
            subject_cn: "",
        }
    }
}

fn structure(what: &'static str) -> ParseFailure<'static> {
    ParseFailure {
        kind: CertificateErrorKind::Structure(what),
        subject_cn: "",
    }
}

/// Dotted form of DER OID content octets, or its name when it is one people will recognise.
pub(crate) fn oid_name(content: &[u8]) -> String {
    match content {
        oid::ECDSA_WITH_SHA384 => return "ecdsa-with-SHA384".into(),
        oid::ECDSA_WITH_SHA256 => return "ecdsa-with-SHA256 (1.2.840.10045.4.3.2)".into(),
        OID_SHA256_WITH_RSA => {
            return "sha256WithRSAEncryption (1.2.840.113549.1.1.11)".into();
        }
        _ => {}
    }
    let mut out = String::new();
    let mut value: u64 = 0;
    let mut first = true;
    for &b in content {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if first {
                let (a, rest) = match value {
                    0..=39 => (0, value),
                    40..=79 => (1, value - 40),
                    _ => (2, value - 80),
                };
                let _ = write!(out, "{a}.{rest}");
                first = false;
            } else {
                let _ = write!(out, ".{value}");
            }
            value = 0;
        }
    }
    if out.is_empty() {
        out.push_str("(empty OID)");
    }
    out
}

/// Reads `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }` and
/// returns the OID content and the raw element.
fn algorithm_identifier<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], &'a [u8]), DerError> {
    let seq = r.read(tag::SEQUENCE)?;
    let mut inner = seq.reader();
    let oid = inner.read(tag::OID)?;
    // ECDSA identifiers have no parameters; anything else is rejected by the OID check later.
    let _params = inner.read_optional(tag::NULL)?;
    inner.finish()?;
    Ok((oid.content, seq.raw))
}

fn time<'a>(r: &mut Reader<'a>) -> Result<UnixMillis, ParseFailure<'a>> {
    let element = r.read_any()?;
    let generalized = match element.tag {
        tag::UTC_TIME => false,
        tag::GENERALIZED_TIME => true,
        found => {
            return Err(DerError {
                offset: element.offset,
                kind: DerErrorKind::UnexpectedTag {
                    expected: tag::UTC_TIME,
                    found,
                },
            }
            .into());
        }
    };
    parse_asn1_time(element.content, generalized)
        .map_err(|_| structure("validity time is not in RFC 5280 form"))
}

/// The first CN attribute of a Name, if any (strings that are not UTF-8 are shown as `?`).
fn common_name(name_content: Reader<'_>) -> Result<&str, DerError> {
    let mut rdns = name_content;
    while !rdns.is_empty() {
        let set = rdns.read(tag::SET)?;
        let mut atvs = set.reader();
        while !atvs.is_empty() {
            let atv = atvs.read(tag::SEQUENCE)?;
            let mut fields = atv.reader();
            let oid = fields.read(tag::OID)?;
            let value = fields.read_any()?;
            fields.finish()?;
            if oid.content == OID_COMMON_NAME {
                return Ok(core::str::from_utf8(value.content).unwrap_or("?"));
            }
        }
    }
    Ok("")
}

struct Extensions {
    basic_constraints: Option<(bool, Option<u64>)>,
    key_usage: Option<u16>,
}

fn extensions<'a>(content: Reader<'a>) -> Result<Extensions, ParseFailure<'a>> {
    let mut out = Extensions {
        basic_constraints: None,
        key_usage: None,
    };
    let mut list = content;
    let seq = list.read(tag::SEQUENCE)?;
    list.finish()?;
    let mut items = seq.reader();
    while !items.is_empty() {
        let ext = items.read(tag::SEQUENCE)?;
        let mut fields = ext.reader();
        let id = fields.read(tag::OID)?;
        let critical = if fields.peek_tag() == Some(tag::BOOLEAN) {
            fields.read_bool()?
        } else {
            false
        };
        let value = fields.read(tag::OCTET_STRING)?;
        fields.finish()?;
        let mut v = value.reader();
        match id.content {
            oid::BASIC_CONSTRAINTS => {
                if out.basic_constraints.is_some() {
                    return Err(structure("basicConstraints appears twice"));
                }
                let bc = v.read(tag::SEQUENCE)?;
                v.finish()?;
                let mut bcr = bc.reader();
                let ca = if bcr.peek_tag() == Some(tag::BOOLEAN) {
                    bcr.read_bool()?
                } else {
                    false
                };
                let path_len = if bcr.peek_tag() == Some(tag::INTEGER) {
                    Some(bcr.read_small_uint()?)
                } else {
                    None
                };
                bcr.finish()?;
                out.basic_constraints = Some((ca, path_len));
            }
            oid::KEY_USAGE => {
                if out.key_usage.is_some() {
                    return Err(structure("keyUsage appears twice"));
                }
                let bits = v.read(tag::BIT_STRING)?;
                v.finish()?;
                let (unused, bytes) = bits
                    .content
                    .split_first()
                    .ok_or(structure("empty keyUsage BIT STRING"))?;
                if *unused > 7 || bytes.len() > 2 {
                    return Err(structure("keyUsage BIT STRING is malformed"));
                }
                let mut value = 0u16;
                for (i, b) in bytes.iter().enumerate() {
                    value |= u16::from(*b) << (8 * (1 - i));
                }
                out.key_usage = Some(value);
            }
            other if critical => {
                return Err(ParseFailure {
                    kind: CertificateErrorKind::UnknownCriticalExtension(oid_name(other)),
                    subject_cn: "",
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

impl<'a> Certificate<'a> {
    /// Parses a DER certificate. Only v3 certificates with a P-384 key are accepted; the
    /// signature algorithm is returned as found and checked by the verifier.
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self, ParseFailure<'a>> {
        let mut outer = Reader::new(der);
        let cert = outer.read(tag::SEQUENCE)?;
        outer.finish()?;
        let mut parts = cert.reader();
        let tbs = parts.read(tag::SEQUENCE)?;
        let (signature_algorithm, outer_alg_raw) = algorithm_identifier(&mut parts)?;
        let signature = parts.read_bit_string_bytes()?;
        parts.finish()?;

        let mut t = tbs.reader();
        let version = t.read(tag::context_constructed(0))?;
        let mut vr = version.reader();
        if vr.read_small_uint()? != 2 {
            return Err(structure("not an X.509 v3 certificate"));
        }
        vr.finish()?;
        let _serial = t.read(tag::INTEGER)?;
        let (_, tbs_alg_raw) = algorithm_identifier(&mut t)?;
        if tbs_alg_raw != outer_alg_raw {
            return Err(structure(
                "signature algorithm differs between TBSCertificate and Certificate",
            ));
        }
        let issuer = t.read(tag::SEQUENCE)?;
        let validity = t.read(tag::SEQUENCE)?;
        let subject = t.read(tag::SEQUENCE)?;
        let subject_cn = common_name(subject.reader())?;
        let with_cn = |mut f: ParseFailure<'a>| {
            f.subject_cn = subject_cn;
            f
        };
        let mut vr = validity.reader();
        let not_before = time(&mut vr).map_err(with_cn)?;
        let not_after = time(&mut vr).map_err(with_cn)?;
        vr.finish().map_err(|e| with_cn(e.into()))?;

        let spki = t.read(tag::SEQUENCE).map_err(|e| with_cn(e.into()))?;
        let public_key = p384_key(spki.reader()).map_err(with_cn)?;

        let _issuer_uid = t
            .read_optional(tag::context_primitive(1))
            .map_err(|e| with_cn(e.into()))?;
        let _subject_uid = t
            .read_optional(tag::context_primitive(2))
            .map_err(|e| with_cn(e.into()))?;
        let ext = match t
            .read_optional(tag::context_constructed(3))
            .map_err(|e| with_cn(e.into()))?
        {
            Some(e) => extensions(e.reader()).map_err(with_cn)?,
            None => Extensions {
                basic_constraints: None,
                key_usage: None,
            },
        };
        t.finish().map_err(|e| with_cn(e.into()))?;

        Ok(Self {
            tbs: tbs.raw,
            signature_algorithm,
            signature,
            issuer: issuer.raw,
            subject: subject.raw,
            subject_cn,
            not_before,
            not_after,
            public_key,
            basic_constraints: ext.basic_constraints,
            key_usage: ext.key_usage,
        })
    }
}

fn p384_key(spki: Reader<'_>) -> Result<&[u8], ParseFailure<'_>> {
    let mut r = spki;
    let alg = r.read(tag::SEQUENCE)?;
    let key = r.read_bit_string_bytes()?;
    r.finish()?;
    let mut ar = alg.reader();
    let kind = ar.read(tag::OID)?;
    if kind.content != oid::EC_PUBLIC_KEY {
        return Err(ParseFailure {
            kind: CertificateErrorKind::UnsupportedKey("not an elliptic-curve key"),
            subject_cn: "",
        });
    }
    let curve = ar.read(tag::OID)?;
    ar.finish()?;
    if curve.content != oid::SECP384R1 {
        return Err(ParseFailure {
            kind: CertificateErrorKind::UnsupportedKey("curve is not P-384 (secp384r1)"),
            subject_cn: "",
        });
    }
    if key.len() != P384_POINT_LEN || key.first() != Some(&0x04) {
        return Err(ParseFailure {
            kind: CertificateErrorKind::UnsupportedKey("not an uncompressed P-384 point"),
            subject_cn: "",
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_names() {
        assert_eq!(oid_name(oid::SECP384R1), "1.3.132.0.34");
        assert_eq!(oid_name(oid::KEY_USAGE), "2.5.29.15");
        assert_eq!(oid_name(oid::ECDSA_WITH_SHA384), "ecdsa-with-SHA384");
        assert_eq!(oid_name(&[]), "(empty OID)");
    }
}
