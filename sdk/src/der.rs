//! A strict DER reader: a cursor over untrusted bytes that returns `Result`, never panics and
//! never indexes. It reads only single-byte tags (all that X.509 and CMS use) and definite,
//! minimally encoded lengths. BER's indefinite lengths are handled by `cms`, not here.

use core::fmt;

/// ASN.1 tags used by the X.509 and CMS code (class, constructed bit and number in one byte).
pub mod tag {
    /// BOOLEAN
    pub const BOOLEAN: u8 = 0x01;
    /// INTEGER
    pub const INTEGER: u8 = 0x02;
    /// BIT STRING
    pub const BIT_STRING: u8 = 0x03;
    /// OCTET STRING
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER
    pub const OID: u8 = 0x06;
    /// UTCTime
    pub const UTC_TIME: u8 = 0x17;
    /// GeneralizedTime
    pub const GENERALIZED_TIME: u8 = 0x18;
    /// SEQUENCE (constructed)
    pub const SEQUENCE: u8 = 0x30;
    /// SET (constructed)
    pub const SET: u8 = 0x31;

    /// `[n]` context-specific, constructed (EXPLICIT tagging).
    #[must_use]
    pub const fn context_constructed(n: u8) -> u8 {
        0xa0 | (n & 0x1f)
    }

    /// `[n]` context-specific, primitive (IMPLICIT tagging of a primitive type).
    #[must_use]
    pub const fn context_primitive(n: u8) -> u8 {
        0x80 | (n & 0x1f)
    }
}

/// What was wrong with DER input, and at which byte offset of the outermost input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DerError {
    /// Offset of the problem, counted from the start of the buffer the first reader was made on.
    pub offset: usize,
    /// What was wrong.
    pub kind: DerErrorKind,
}

/// The kinds of DER problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DerErrorKind {
    /// The input ended inside a tag, a length or a value.
    Truncated,
    /// A different tag was found than the structure requires.
    UnexpectedTag {
        /// The tag the structure requires.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// Multi-byte (high-number) tags are not used by anything this crate reads.
    HighTagNumber,
    /// Indefinite length (BER) where DER requires a definite one.
    IndefiniteLength,
    /// A length not in its shortest form, or longer than the input could ever be.
    NonMinimalLength,
    /// Bytes were left over after the last expected element.
    TrailingData,
    /// A value whose content violates its type's DER rules (e.g. a BOOLEAN not 00/ff).
    InvalidValue(&'static str),
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DerErrorKind::Truncated => write!(f, "DER input truncated at byte {}", self.offset),
            DerErrorKind::UnexpectedTag { expected, found } => write!(
                f,
                "DER tag 0x{found:02x} at byte {} where 0x{expected:02x} is required",
                self.offset
            ),
            DerErrorKind::HighTagNumber => {
                write!(f, "unsupported multi-byte DER tag at byte {}", self.offset)
            }
            DerErrorKind::IndefiniteLength => {
                write!(f, "indefinite length at byte {} is not DER", self.offset)
            }
            DerErrorKind::NonMinimalLength => write!(
                f,
                "DER length at byte {} is not minimally encoded",
                self.offset
            ),
            DerErrorKind::TrailingData => write!(f, "unexpected data at byte {}", self.offset),
            DerErrorKind::InvalidValue(what) => {
                write!(f, "invalid DER value at byte {}: {what}", self.offset)
            }
        }
    }
}

impl core::error::Error for DerError {}

/// One element: its tag, its content octets and where they start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element<'a> {
    /// The one-byte tag.
    pub tag: u8,
    /// The content octets (without tag and length).
    pub content: &'a [u8],
    /// The whole element, tag and length included (what a signature covers).
    pub raw: &'a [u8],
    /// Offset of the tag byte in the outermost input.
    pub offset: usize,
}

impl<'a> Element<'a> {
    /// A reader over this element's content, with offsets kept relative to the outermost input.
    #[must_use]
    pub fn reader(&self) -> Reader<'a> {
        Reader {
            input: self.content,
            base: self.offset + (self.raw.len() - self.content.len()),
        }
    }
}

/// A cursor over DER bytes.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    input: &'a [u8],
    /// Offset of `input[0]` in the outermost buffer, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole buffer (offsets count from its start).
    #[must_use]
    pub const fn new(input: &'a [u8]) -> Self {
        Self { input, base: 0 }
    }

    /// Offset of the next unread byte in the outermost input.
    #[must_use]
    pub const fn offset(&self) -> usize {
        self.base
    }

    /// True when every byte has been read.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// The tag of the next element, if any.
    #[must_use]
    pub fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }

    fn error(&self, kind: DerErrorKind) -> DerError {
        DerError {
            offset: self.base,
            kind,
        }
    }

    /// Reads the next element, whatever its tag.
    ///
    /// # Errors
    /// [`DerError`] on truncation, high tag numbers, indefinite or non-minimal lengths.
    pub fn read_any(&mut self) -> Result<Element<'a>, DerError> {
        let start = self.base;
        let (&tag, rest) = self
            .input
            .split_first()
            .ok_or(self.error(DerErrorKind::Truncated))?;
        if tag & 0x1f == 0x1f {
            return Err(self.error(DerErrorKind::HighTagNumber));
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError {
            offset: start + 1,
            kind: DerErrorKind::Truncated,
        })?;
        let length = match first {
            0x00..=0x7f => usize::from(first),
            0x80 => {
                return Err(DerError {
                    offset: start + 1,
                    kind: DerErrorKind::IndefiniteLength,
                });
            }
            _ => {
                let count = usize::from(first & 0x7f);
                // More than 4 length octets would describe a value larger than any input we take.
                if count > 4 {
                    return Err(DerError {
                        offset: start + 1,
                        kind: DerErrorKind::NonMinimalLength,
                    });
                }
                let (octets, after) = rest.split_at_checked(count).ok_or(DerError {
                    offset: start + 2,
                    kind: DerErrorKind::Truncated,
                })?;
                rest = after;
                let value = octets
                    .iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                let minimal = octets.first().is_some_and(|&b| b != 0) && value >= 0x80;
                if !minimal {
                    return Err(DerError {
                        offset: start + 1,
                        kind: DerErrorKind::NonMinimalLength,
                    });
                }
                value
            }
        };
        let header_len = self.input.len() - rest.len();
        let (content, remaining) = rest.split_at_checked(length).ok_or(DerError {
            offset: start + header_len,
            kind: DerErrorKind::Truncated,
        })?;
        let total = header_len + length;
        let raw = self
            .input
            .get(..total)
            .ok_or(self.error(DerErrorKind::Truncated))?;
        self.input = remaining;
        self.base = start + total;
        Ok(Element {
            tag,
            content,
            raw,
            offset: start,
        })
    }

    /// Reads the next element and requires its tag.
    ///
    /// # Errors
    /// [`DerErrorKind::UnexpectedTag`] if the tag differs, or any error of [`Reader::read_any`].
    pub fn read(&mut self, expected: u8) -> Result<Element<'a>, DerError> {
        match self.peek_tag() {
            Some(found) if found != expected => {
                Err(self.error(DerErrorKind::UnexpectedTag { expected, found }))
            }
            _ => self.read_any(),
        }
    }

    /// Reads the next element only if it has the given tag.
    ///
    /// # Errors
    /// Any error of [`Reader::read_any`] when the tag matches.
    pub fn read_optional(&mut self, tag: u8) -> Result<Option<Element<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read_any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Requires that nothing is left.
    ///
    /// # Errors
    /// [`DerErrorKind::TrailingData`] if bytes remain.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(DerErrorKind::TrailingData))
        }
    }

    /// Reads a BOOLEAN (DER: 0x00 or 0xff).
    ///
    /// # Errors
    /// On a wrong tag or a non-DER value.
    pub fn read_bool(&mut self) -> Result<bool, DerError> {
        let e = self.read(tag::BOOLEAN)?;
        match e.content {
            [0x00] => Ok(false),
            [0xff] => Ok(true),
            _ => Err(DerError {
                offset: e.offset,
                kind: DerErrorKind::InvalidValue("BOOLEAN must be 00 or ff"),
            }),
        }
    }

    /// Reads a non-negative INTEGER that fits a `u64` (versions, pathLen, small counters).
    ///
    /// # Errors
    /// On a wrong tag, a negative, non-minimal or too large value.
    pub fn read_small_uint(&mut self) -> Result<u64, DerError> {
        let e = self.read(tag::INTEGER)?;
        let invalid = |what| DerError {
            offset: e.offset,
            kind: DerErrorKind::InvalidValue(what),
        };
        let bytes = match e.content {
            [] => return Err(invalid("empty INTEGER")),
            [first, ..] if first & 0x80 != 0 => return Err(invalid("negative INTEGER")),
            [0, second, ..] if second & 0x80 == 0 => {
                return Err(invalid("INTEGER not minimally encoded"));
            }
            [0, rest @ ..] => rest,
            all => all,
        };
        if bytes.len() > 8 {
            return Err(invalid("INTEGER larger than 64 bits"));
        }
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Reads a BIT STRING with no unused bits and returns its bytes (keys and signatures).
    ///
    /// # Errors
    /// On a wrong tag, an empty value or unused bits.
    pub fn read_bit_string_bytes(&mut self) -> Result<&'a [u8], DerError> {
        let e = self.read(tag::BIT_STRING)?;
        match e.content.split_first() {
            Some((0, bytes)) => Ok(bytes),
            _ => Err(DerError {
                offset: e.offset,
                kind: DerErrorKind::InvalidValue("BIT STRING with unused bits"),
            }),
        }
    }
}

/// Object identifiers this crate compares against, as DER content octets.
pub mod oid {
    /// ecdsa-with-SHA384 (1.2.840.10045.4.3.3)
    pub const ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    /// ecdsa-with-SHA256 (1.2.840.10045.4.3.2)
    pub const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    /// id-ecPublicKey (1.2.840.10045.2.1)
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// secp384r1 (1.3.132.0.34)
    pub const SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// secp256r1 (1.2.840.10045.3.1.7)
    pub const SECP256R1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// id-ce-basicConstraints (2.5.29.19)
    pub const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    /// id-ce-keyUsage (2.5.29.15)
    pub const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
    /// rsaEncryption (1.2.840.113549.1.1.1)
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// id-RSAES-OAEP (1.2.840.113549.1.1.7)
    pub const RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
    /// id-mgf1 (1.2.840.113549.1.1.8)
    pub const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
    /// id-sha256 (2.16.840.1.101.3.4.2.1)
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// id-envelopedData (1.2.840.113549.1.7.3)
    pub const ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    /// id-data (1.2.840.113549.1.7.1)
    pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// aes256-CBC (2.16.840.1.101.3.4.1.42)
    pub const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_elements_with_offsets() {
        // SEQUENCE { INTEGER 5, OCTET STRING 'ab' }
        let bytes = [0x30, 0x07, 0x02, 0x01, 0x05, 0x04, 0x02, b'a', b'b'];
        let mut outer = Reader::new(&bytes);
        let seq = outer.read(tag::SEQUENCE).unwrap();
        outer.finish().unwrap();
        let mut inner = seq.reader();
        assert_eq!(inner.offset(), 2);
        assert_eq!(inner.read_small_uint().unwrap(), 5);
        let os = inner.read(tag::OCTET_STRING).unwrap();
        assert_eq!((os.content, os.offset), (&b"ab"[..], 5));
        inner.finish().unwrap();
        assert_eq!(seq.raw, &bytes[..]);
    }

    #[test]
    fn long_form_lengths_must_be_minimal() {
        let mut long = [0u8; 131];
        long[..3].copy_from_slice(&[0x04, 0x81, 0x80]);
        assert_eq!(Reader::new(&long).read_any().unwrap().content.len(), 128);
        for bad in [
            &[0x04, 0x81, 0x05, 0, 0, 0, 0, 0][..],
            &[0x04, 0x82, 0x00, 0x80],
        ] {
            let err = Reader::new(bad).read_any().unwrap_err();
            assert_eq!(err.kind, DerErrorKind::NonMinimalLength, "{bad:02x?}");
        }
    }

    #[test]
    fn rejects_ber_and_truncation_without_panicking() {
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0, 0])
                .read_any()
                .unwrap_err()
                .kind,
            DerErrorKind::IndefiniteLength
        );
        assert_eq!(
            Reader::new(&[0x1f, 0x01, 0x00])
                .read_any()
                .unwrap_err()
                .kind,
            DerErrorKind::HighTagNumber
        );
        // Every prefix of a valid element is an error, never a panic.
        let bytes = [0x30, 0x82, 0x01, 0x00];
        for end in 0..bytes.len() {
            assert_eq!(
                Reader::new(&bytes[..end]).read_any().unwrap_err().kind,
                DerErrorKind::Truncated
            );
        }
    }

    #[test]
    fn integers_and_bits() {
        assert_eq!(
            Reader::new(&[0x02, 0x02, 0x00, 0x80]).read_small_uint(),
            Ok(128)
        );
        for bad in [
            &[0x02, 0x00][..],
            &[0x02, 0x01, 0x80],
            &[0x02, 0x02, 0x00, 0x01],
        ] {
            assert!(Reader::new(bad).read_small_uint().is_err(), "{bad:02x?}");
        }
        assert_eq!(
            Reader::new(&[0x03, 0x02, 0x00, 0xaa]).read_bit_string_bytes(),
            Ok(&[0xaa][..])
        );
        assert!(
            Reader::new(&[0x03, 0x02, 0x01, 0xaa])
                .read_bit_string_bytes()
                .is_err()
        );
        assert_eq!(
            Reader::new(&[0x02, 0x01, 0x05])
                .read(tag::SEQUENCE)
                .unwrap_err()
                .kind,
            DerErrorKind::UnexpectedTag {
                expected: 0x30,
                found: 0x02
            }
        );
    }
}
