//! The EIF signing certificate: the X.509 fields `describe-eif` prints and the checks a signed
//! image needs (P-384 key, validity window), read with the SDK's strict DER reader.
//!
//! nitro-cli prints the certificate through aws-nitro-enclaves-image-format 0.8.1
//! (`src/utils/eif_reader.rs`, `SignCertificateInfo`, `get_certificate_info`): `IssuerName` is a
//! map from OpenSSL's long attribute name (`commonName`, ...) to the value; `Algorithm` is the
//! long name of the certificate's signature algorithm (`ecdsa-with-SHA384`); `NotBefore` and
//! `NotAfter` are OpenSSL's `ASN1_TIME_print` form (`Jan  2 03:04:05 2026 GMT`); `Signature`
//! is the certificate's signature bytes as upper-case `XX:XX:...`. The peer test
//! `eif/tests/peer_aws.rs` compares these strings with AWS's on the same image.

use ccc_sdk::der::{DerError, Reader, oid, tag};
use ccc_sdk::time::{UnixMillis, parse_asn1_time};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Uncompressed SEC1 P-384 point: `04 || X || Y`.
const P384_POINT_LEN: usize = 97;
/// UTF8String, PrintableString, IA5String, T61String, BMPString tags (the attribute value
/// types X.509 names use).
const STRING_TAGS: [u8; 5] = [0x0c, 0x13, 0x16, 0x14, 0x1e];

/// The parts of the signing certificate CCC uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningCertificate {
    /// Issuer attributes by OpenSSL long name (dotted OID when unnamed).
    pub issuer: BTreeMap<String, String>,
    /// The certificate's signature algorithm (OpenSSL long name, or the dotted OID).
    pub algorithm: String,
    /// Start of the validity window.
    pub not_before: UnixMillis,
    /// End of the validity window (inclusive, RFC 5280 §4.1.2.5).
    pub not_after: UnixMillis,
    /// The certificate's own signature bytes (the BIT STRING content).
    pub signature: Vec<u8>,
    /// The subject's public key as an uncompressed P-384 point, `None` when the key is not an
    /// EC P-384 key.
    pub p384_key: Option<Vec<u8>>,
}

impl SigningCertificate {
    /// Parses a DER certificate.
    ///
    /// # Errors
    /// [`CertificateError`]: the reason, with the byte offset when the DER itself is
    /// malformed.
    pub fn parse(der: &[u8]) -> Result<Self, CertificateError> {
        Self::parse_inner(der).map_err(|reason| CertificateError { reason })
    }

    fn parse_inner(der: &[u8]) -> Result<Self, String> {
        let describe = |e: DerError| format!("the signing certificate's DER: {e}");
        let mut outer = Reader::new(der);
        let cert = outer.read(tag::SEQUENCE).map_err(describe)?;
        outer.finish().map_err(describe)?;
        let mut parts = cert.reader();
        let tbs = parts.read(tag::SEQUENCE).map_err(describe)?;
        let algorithm = algorithm_oid(&mut parts).map_err(describe)?;
        let signature = parts.read_bit_string_bytes().map_err(describe)?.to_vec();
        parts.finish().map_err(describe)?;

        let mut t = tbs.reader();
        let _version = t
            .read_optional(tag::context_constructed(0))
            .map_err(describe)?;
        let _serial = t.read(tag::INTEGER).map_err(describe)?;
        let _tbs_algorithm = t.read(tag::SEQUENCE).map_err(describe)?;
        let issuer_name = t.read(tag::SEQUENCE).map_err(describe)?;
        let validity = t.read(tag::SEQUENCE).map_err(describe)?;
        let _subject = t.read(tag::SEQUENCE).map_err(describe)?;
        let spki = t.read(tag::SEQUENCE).map_err(describe)?;

        let mut v = validity.reader();
        let not_before = time(&mut v)?;
        let not_after = time(&mut v)?;
        v.finish().map_err(describe)?;
        Ok(Self {
            issuer: name_map(issuer_name.reader()).map_err(describe)?,
            algorithm: oid_long_name(algorithm),
            not_before,
            not_after,
            signature,
            p384_key: p384_key(spki.reader()).map_err(describe)?,
        })
    }

    /// The `SigningCertificate` object of nitro-cli's `describe-eif`.
    #[must_use]
    pub fn describe_json(&self) -> serde_json::Value {
        let signature = self
            .signature
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        serde_json::json!({
            "IssuerName": self.issuer,
            "Algorithm": self.algorithm,
            "NotBefore": openssl_time(self.not_before),
            "NotAfter": openssl_time(self.not_after),
            "Signature": signature,
        })
    }
}

/// A signing certificate that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateError {
    /// What is wrong (with the DER offset when the encoding is at fault).
    pub reason: String,
}

impl std::fmt::Display for CertificateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot read the signing certificate: {}; pass a DER X.509 certificate in PEM \
             (`openssl x509 -in CERT.pem -noout -text` shows what it holds)",
            self.reason
        )
    }
}

impl std::error::Error for CertificateError {}

fn algorithm_oid<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DerError> {
    let alg = r.read(tag::SEQUENCE)?;
    let mut a = alg.reader();
    Ok(a.read(tag::OID)?.content)
}

fn time(r: &mut Reader<'_>) -> Result<UnixMillis, String> {
    let e = r
        .read_any()
        .map_err(|e| format!("the signing certificate's validity: {e}"))?;
    let generalized = match e.tag {
        tag::UTC_TIME => false,
        tag::GENERALIZED_TIME => true,
        other => {
            return Err(format!(
                "the signing certificate's validity holds tag 0x{other:02x}, not a time"
            ));
        }
    };
    parse_asn1_time(e.content, generalized)
        .map_err(|e| format!("the signing certificate's validity: {e}"))
}

/// `Name ::= SEQUENCE OF SET OF AttributeTypeAndValue`, as a map (a repeated attribute keeps
/// its last value, as a `BTreeMap::insert` in AWS's reader does).
fn name_map(mut r: Reader<'_>) -> Result<BTreeMap<String, String>, DerError> {
    let mut out = BTreeMap::new();
    while r.peek_tag().is_some() {
        let set = r.read(tag::SET)?;
        let mut s = set.reader();
        while s.peek_tag().is_some() {
            let pair = s.read(tag::SEQUENCE)?;
            let mut p = pair.reader();
            let oid = p.read(tag::OID)?.content;
            let value = p.read_any()?;
            let text = if STRING_TAGS.contains(&value.tag) && value.tag != 0x1e {
                String::from_utf8_lossy(value.content).into_owned()
            } else {
                hex::encode(value.content)
            };
            out.insert(oid_long_name(oid), text);
        }
    }
    Ok(out)
}

/// The SEC1 point of an id-ecPublicKey/secp384r1 key; `None` for any other key.
fn p384_key(mut r: Reader<'_>) -> Result<Option<Vec<u8>>, DerError> {
    let alg = r.read(tag::SEQUENCE)?;
    let key = r.read_bit_string_bytes()?;
    let mut a = alg.reader();
    let kind = a.read(tag::OID)?.content;
    let curve = a.read_optional(tag::OID)?.map(|e| e.content);
    Ok(
        (kind == oid::EC_PUBLIC_KEY
            && curve == Some(oid::SECP384R1)
            && key.len() == P384_POINT_LEN)
            .then(|| key.to_vec()),
    )
}

/// OpenSSL's long name for the OIDs a signing certificate carries, else the dotted form.
#[must_use]
pub fn oid_long_name(content: &[u8]) -> String {
    const NAMES: [(&[u8], &str); 14] = [
        (&[0x55, 0x04, 0x03], "commonName"),
        (&[0x55, 0x04, 0x05], "serialNumber"),
        (&[0x55, 0x04, 0x06], "countryName"),
        (&[0x55, 0x04, 0x07], "localityName"),
        (&[0x55, 0x04, 0x08], "stateOrProvinceName"),
        (&[0x55, 0x04, 0x0a], "organizationName"),
        (&[0x55, 0x04, 0x0b], "organizationalUnitName"),
        (&[0x55, 0x04, 0x2e], "dnQualifier"),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
            "emailAddress",
        ),
        (oid::ECDSA_WITH_SHA384, "ecdsa-with-SHA384"),
        (oid::ECDSA_WITH_SHA256, "ecdsa-with-SHA256"),
        (
            &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
            "ecdsa-with-SHA512",
        ),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
            "sha256WithRSAEncryption",
        ),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
            "sha384WithRSAEncryption",
        ),
    ];
    if let Some((_, name)) = NAMES.iter().find(|(o, _)| *o == content) {
        return (*name).to_owned();
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
    out
}

/// OpenSSL's `ASN1_TIME_print`: `Mon DD HH:MM:SS YYYY GMT`, the day padded with a space.
#[must_use]
pub fn openssl_time(t: UnixMillis) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let d = t.to_datetime();
    let month = MONTHS
        .get(
            usize::try_from(d.month)
                .unwrap_or_default()
                .saturating_sub(1),
        )
        .copied()
        .unwrap_or("???");
    format!(
        "{month} {:>2} {:02}:{:02}:{:02} {} GMT",
        d.day, d.hour, d.minute, d.second, d.year
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_time_pads_the_day_with_a_space() {
        // 2026-01-02T03:04:05Z
        assert_eq!(
            openssl_time(UnixMillis(1_767_323_045_000)),
            "Jan  2 03:04:05 2026 GMT"
        );
    }

    #[test]
    fn oid_names() {
        assert_eq!(oid_long_name(&[0x55, 0x04, 0x03]), "commonName");
        assert_eq!(oid_long_name(oid::SECP384R1), "1.3.132.0.34");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(SigningCertificate::parse(&[]).is_err());
        assert!(SigningCertificate::parse(&[0x30, 0x00]).is_err());
        assert!(SigningCertificate::parse(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_err());
    }
}
