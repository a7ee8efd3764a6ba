//! The NSM attestation document payload (the COSE payload): the nine keys, their types and
//! their size limits, read without copying.

use super::cbor::{Cbor, invalid};
use super::error::{AttestationError, DecodeErrorKind};
use super::limits;
use crate::time::UnixMillis;
use alloc::string::ToString;
use alloc::vec::Vec;

/// Highest PCR index (the NSM has 32 PCRs, 0..=31; NSM API `DescribeNSM.max_pcrs`).
pub const MAX_PCR_INDEX: u8 = 31;

/// The PCRs of a document: index -> value, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pcrs<'a> {
    values: [Option<&'a [u8]>; MAX_PCR_INDEX as usize + 1],
}

impl<'a> Pcrs<'a> {
    /// The value of PCR `index`, if the document has it.
    #[must_use]
    pub fn get(&self, index: u8) -> Option<&'a [u8]> {
        self.values.get(usize::from(index)).copied().flatten()
    }

    /// `(index, value)` for every PCR present, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + '_ {
        (0..=MAX_PCR_INDEX).filter_map(|i| self.get(i).map(|v| (i, v)))
    }

    /// How many PCRs the document has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.iter().flatten().count()
    }

    /// True if the document has no PCRs (never true for a parsed document).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The attestation document fields, borrowing from the input bytes. Nothing here is verified:
/// use [`super::Parsed::verify`] before trusting any of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document<'a> {
    /// The NSM module id, `i-<instance>-enc<hex>`.
    pub module_id: &'a str,
    /// The PCR digest name; always `"SHA384"` after parsing.
    pub digest: &'a str,
    /// When the NSM produced the document.
    pub timestamp: UnixMillis,
    /// The locked PCRs.
    pub pcrs: Pcrs<'a>,
    /// The DER leaf certificate that signed the document.
    pub certificate: &'a [u8],
    /// DER certificates, root first.
    pub cabundle: Vec<&'a [u8]>,
    /// `public_key` (absent or CBOR null -> `None`; may be empty).
    pub public_key: Option<&'a [u8]>,
    /// `user_data` (absent or null -> `None`; may be empty).
    pub user_data: Option<&'a [u8]>,
    /// `nonce` (absent or null -> `None`; may be empty).
    pub nonce: Option<&'a [u8]>,
}

const KEYS: [&str; 9] = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
];

fn too_large(limit: &'static str, max: usize, actual: usize) -> AttestationError {
    AttestationError::TooLarge { limit, max, actual }
}

fn bounded<'a>(
    value: Option<&'a [u8]>,
    limit: &'static str,
    max: usize,
) -> Result<Option<&'a [u8]>, AttestationError> {
    match value {
        Some(v) if v.len() > max => Err(too_large(limit, max, v.len())),
        other => Ok(other),
    }
}

/// Parses the payload, which starts at `base` in the whole document.
pub(crate) fn parse(payload: &[u8], base: usize) -> Result<Document<'_>, AttestationError> {
    let mut c = Cbor::new(payload, base);
    let mut remaining = c.map("attestation document")?;
    let mut seen = [false; KEYS.len()];
    let mut module_id = None;
    let mut digest = None;
    let mut timestamp = None;
    let mut pcrs = None;
    let mut certificate = None;
    let mut cabundle = None;
    let (mut public_key, mut user_data, mut nonce) = (None, None, None);

    while c.has_next(&mut remaining, "attestation document")? {
        let key_at = c.offset();
        let key = c.text("attestation document key")?;
        let slot = KEYS
            .iter()
            .position(|k| *k == key)
            .ok_or_else(|| c.error(key_at, DecodeErrorKind::UnknownField(key.to_string())))?;
        let name = KEYS.get(slot).copied().unwrap_or("?");
        match seen.get_mut(slot) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(c
                    .error(key_at, DecodeErrorKind::DuplicateField(name))
                    .into());
            }
        }
        let at = c.offset();
        match slot {
            0 => {
                let id = c.text("module_id")?;
                if id.is_empty() {
                    return Err(invalid(at, name, "must not be empty"));
                }
                module_id = Some(id);
            }
            1 => {
                let d = c.text("digest")?;
                if d != "SHA384" {
                    return Err(invalid(
                        at,
                        "digest",
                        alloc::format!("{d:?}, the NSM uses \"SHA384\""),
                    ));
                }
                digest = Some(d);
            }
            2 => {
                let t = c.u64("timestamp")?;
                if t == 0 {
                    return Err(invalid(at, name, "must be positive (ms since 1970)"));
                }
                timestamp = Some(UnixMillis(t));
            }
            3 => pcrs = Some(parse_pcrs(&mut c)?),
            4 => {
                let (cert, _) = c.bytes("certificate")?;
                certificate = Some(check_certificate_len(cert, at)?);
            }
            5 => cabundle = Some(parse_cabundle(&mut c)?),
            6 => {
                public_key = bounded(
                    c.optional_bytes("public_key")?,
                    "MAX_PUBLIC_KEY_LEN",
                    limits::MAX_PUBLIC_KEY_LEN,
                )?;
            }
            7 => {
                user_data = bounded(
                    c.optional_bytes("user_data")?,
                    "MAX_USER_DATA_LEN",
                    limits::MAX_USER_DATA_LEN,
                )?;
            }
            _ => {
                nonce = bounded(
                    c.optional_bytes("nonce")?,
                    "MAX_NONCE_LEN",
                    limits::MAX_NONCE_LEN,
                )?;
            }
        }
    }
    c.finish("the attestation document map")?;
    let end = c.offset();
    let missing = |key: &'static str| c.error(end, DecodeErrorKind::MissingField(key));
    Ok(Document {
        module_id: module_id.ok_or_else(|| missing("module_id"))?,
        digest: digest.ok_or_else(|| missing("digest"))?,
        timestamp: timestamp.ok_or_else(|| missing("timestamp"))?,
        pcrs: pcrs.ok_or_else(|| missing("pcrs"))?,
        certificate: certificate.ok_or_else(|| missing("certificate"))?,
        cabundle: cabundle.ok_or_else(|| missing("cabundle"))?,
        public_key,
        user_data,
        nonce,
    })
}

fn check_certificate_len(cert: &[u8], at: usize) -> Result<&[u8], AttestationError> {
    if cert.is_empty() {
        return Err(invalid(at, "certificate", "empty certificate"));
    }
    if cert.len() > limits::MAX_CERTIFICATE_LEN {
        return Err(too_large(
            "MAX_CERTIFICATE_LEN",
            limits::MAX_CERTIFICATE_LEN,
            cert.len(),
        ));
    }
    Ok(cert)
}

fn parse_pcrs<'a>(c: &mut Cbor<'a>) -> Result<Pcrs<'a>, AttestationError> {
    let mut pcrs = Pcrs {
        values: [None; MAX_PCR_INDEX as usize + 1],
    };
    let map_at = c.offset();
    let mut remaining = c.map("pcrs")?;
    let mut count = 0usize;
    while c.has_next(&mut remaining, "pcrs")? {
        count += 1;
        if count > limits::MAX_PCRS {
            return Err(too_large("MAX_PCRS", limits::MAX_PCRS, count));
        }
        let at = c.offset();
        let index = c.u64("PCR index")?;
        let slot = u8::try_from(index)
            .ok()
            .filter(|i| *i <= MAX_PCR_INDEX)
            .and_then(|i| pcrs.values.get_mut(usize::from(i)))
            .ok_or_else(|| {
                invalid(
                    at,
                    "pcrs",
                    alloc::format!("PCR index {index}, indices are 0..=31"),
                )
            })?;
        if slot.is_some() {
            return Err(invalid(
                at,
                "pcrs",
                alloc::format!("PCR{index} appears twice"),
            ));
        }
        let value_at = c.offset();
        let (value, _) = c.bytes("PCR value")?;
        if !matches!(value.len(), 32 | 48 | 64) {
            return Err(invalid(
                value_at,
                "pcrs",
                alloc::format!(
                    "PCR{index} is {} bytes, PCRs are 32, 48 or 64 bytes",
                    value.len()
                ),
            ));
        }
        *slot = Some(value);
    }
    if count == 0 {
        return Err(invalid(
            map_at,
            "pcrs",
            "no PCRs; the NSM always reports at least PCR0..15",
        ));
    }
    Ok(pcrs)
}

fn parse_cabundle<'a>(c: &mut Cbor<'a>) -> Result<Vec<&'a [u8]>, AttestationError> {
    let at = c.offset();
    let mut remaining = c.array("cabundle")?;
    let mut bundle = Vec::with_capacity(4);
    while c.has_next(&mut remaining, "cabundle")? {
        if bundle.len() >= limits::MAX_CABUNDLE_LEN {
            return Err(too_large(
                "MAX_CABUNDLE_LEN",
                limits::MAX_CABUNDLE_LEN,
                bundle.len() + 1,
            ));
        }
        let entry_at = c.offset();
        let (cert, _) = c.bytes("cabundle entry")?;
        bundle.push(check_certificate_len(cert, entry_at)?);
    }
    if bundle.is_empty() {
        return Err(invalid(
            at,
            "cabundle",
            "empty; it must hold at least the root certificate",
        ));
    }
    Ok(bundle)
}
