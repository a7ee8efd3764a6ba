//! A BER reader for CMS: a cursor over untrusted bytes that accepts what X.690 allows and KMS
//! sends (indefinite lengths on constructed elements, non-minimal definite lengths) and checks
//! that every indefinite element is terminated. It never panics and never indexes; every error
//! carries the byte offset.

use core::fmt;

/// Deepest nesting accepted. KMS's deepest element is at depth 11 (the NULL inside the hash
/// AlgorithmIdentifier of MGF1, see the KMS layout in the CMS vectors README); 16 leaves room
/// for BER-chunked content (constructed OCTET STRINGs inside `[0]`) and bounds recursion.
pub const MAX_DEPTH: usize = 16;

/// What is structurally wrong with the BER input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BerProblem {
    /// The input ends inside a tag, a length or a value.
    Truncated,
    /// A multi-byte (high-number) tag; CMS uses none.
    HighTagNumber,
    /// A definite length with more than four length octets, or the reserved `0xff`.
    LengthTooLong,
    /// An indefinite length on a primitive element (X.690 8.1.3.2 forbids it).
    IndefinitePrimitive,
    /// An indefinite-length element is missing its end-of-contents `00 00`.
    Unterminated,
    /// An end-of-contents marker where an element is required, or a malformed one.
    UnexpectedEndOfContents,
    /// Elements nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Bytes follow the last element of a structure (or of the whole input).
    TrailingData,
}

impl fmt::Display for BerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "the input ends inside an element (truncated)",
            Self::HighTagNumber => "multi-byte tag (CMS uses none)",
            Self::LengthTooLong => "length field longer than 4 octets",
            Self::IndefinitePrimitive => "indefinite length on a primitive element",
            Self::Unterminated => "indefinite-length element without its end-of-contents 00 00",
            Self::UnexpectedEndOfContents => "end-of-contents where an element is required",
            Self::TooDeep => "elements nested deeper than MAX_DEPTH (16)",
            Self::TrailingData => "unexpected bytes after the last element",
        })
    }
}

/// A structural error and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BerError {
    /// Offset in the whole input.
    pub offset: usize,
    /// What is wrong.
    pub problem: BerProblem,
}

fn error(offset: usize, problem: BerProblem) -> BerError {
    BerError { offset, problem }
}

/// One element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    /// The content octets; for an indefinite length, everything before the end-of-contents.
    pub(crate) content: &'a [u8],
    /// Offset of the tag byte in the whole input.
    pub(crate) offset: usize,
    /// Offset of the first content byte in the whole input.
    content_offset: usize,
    /// Nesting depth (the outermost element is 1).
    depth: usize,
}

impl<'a> Tlv<'a> {
    /// A reader over the element's children.
    pub(crate) fn children(&self) -> Ber<'a> {
        Ber {
            input: self.content,
            base: self.content_offset,
            depth: self.depth + 1,
        }
    }
}

/// A cursor over BER elements.
#[derive(Clone, Debug)]
pub(crate) struct Ber<'a> {
    input: &'a [u8],
    /// Offset of `input[0]` in the whole input.
    base: usize,
    /// Depth of the elements this reader returns.
    depth: usize,
}

impl<'a> Ber<'a> {
    /// A reader over a whole input.
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            base: 0,
            depth: 1,
        }
    }

    /// Offset of the next unread byte.
    pub(crate) fn offset(&self) -> usize {
        self.base
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }

    /// Requires that nothing is left.
    pub(crate) fn finish(&self) -> Result<(), BerError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(error(self.base, BerProblem::TrailingData))
        }
    }

    /// Reads the next element (for an indefinite length, up to and including its
    /// end-of-contents, which is checked).
    pub(crate) fn read_any(&mut self) -> Result<Tlv<'a>, BerError> {
        let start = self.base;
        if self.depth > MAX_DEPTH {
            return Err(error(start, BerProblem::TooDeep));
        }
        let (&tag, rest) = self
            .input
            .split_first()
            .ok_or(error(start, BerProblem::Truncated))?;
        if tag & 0x1f == 0x1f {
            return Err(error(start, BerProblem::HighTagNumber));
        }
        if tag == 0x00 {
            return Err(error(start, BerProblem::UnexpectedEndOfContents));
        }
        let (&first, mut rest) = rest
            .split_first()
            .ok_or(error(start + 1, BerProblem::Truncated))?;
        let definite = match first {
            0x00..=0x7f => Some(usize::from(first)),
            0x80 => None,
            0xff => return Err(error(start + 1, BerProblem::LengthTooLong)),
            _ => {
                let count = usize::from(first & 0x7f);
                if count > 4 {
                    return Err(error(start + 1, BerProblem::LengthTooLong));
                }
                let (octets, after) = rest
                    .split_at_checked(count)
                    .ok_or(error(start + 2, BerProblem::Truncated))?;
                rest = after;
                Some(
                    octets
                        .iter()
                        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
                )
            }
        };
        let header_len = self.input.len() - rest.len();
        let content_offset = start + header_len;
        let (content, consumed) = match definite {
            Some(length) => {
                let content = rest
                    .get(..length)
                    .ok_or(error(content_offset, BerProblem::Truncated))?;
                (content, header_len + length)
            }
            None => {
                if tag & 0x20 == 0 {
                    return Err(error(start + 1, BerProblem::IndefinitePrimitive));
                }
                let length = self.scan_indefinite(rest, content_offset)?;
                let content = rest
                    .get(..length)
                    .ok_or(error(content_offset, BerProblem::Truncated))?;
                // The content is followed by its two end-of-contents octets.
                (content, header_len + length + 2)
            }
        };
        self.input = self
            .input
            .get(consumed..)
            .ok_or(error(start, BerProblem::Truncated))?;
        self.base = start + consumed;
        Ok(Tlv {
            tag,
            content,
            offset: start,
            content_offset,
            depth: self.depth,
        })
    }

    /// Length of the content of an indefinite element whose content starts at `rest`: the
    /// children are skipped (recursively for indefinite ones) until `00 00`.
    fn scan_indefinite(&self, rest: &'a [u8], offset: usize) -> Result<usize, BerError> {
        let mut children = Ber {
            input: rest,
            base: offset,
            depth: self.depth + 1,
        };
        loop {
            match children.input {
                [0x00, 0x00, ..] => return Ok(children.base - offset),
                // Input ends before the end-of-contents (or halfway through it).
                [] | [0x00] => {
                    return Err(error(children.base, BerProblem::Unterminated));
                }
                _ => {
                    children.read_any()?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_indefinite_and_definite_nesting() {
        // SEQUENCE(indef) { INTEGER 2, [0](indef) { OCTET STRING 'ab' } EOC } EOC, then nothing.
        let bytes = [
            0x30, 0x80, 0x02, 0x01, 0x02, 0xa0, 0x80, 0x04, 0x02, b'a', b'b', 0, 0, 0, 0,
        ];
        let mut top = Ber::new(&bytes);
        let seq = top.read_any().unwrap();
        top.finish().unwrap();
        assert_eq!(seq.content.len(), 11);
        let mut inner = seq.children();
        assert_eq!(inner.read_any().unwrap().content, [2]);
        let wrapped = inner.read_any().unwrap();
        inner.finish().unwrap();
        let mut chunks = wrapped.children();
        let chunk = chunks.read_any().unwrap();
        assert_eq!((chunk.content, chunk.offset), (&b"ab"[..], 7));
        chunks.finish().unwrap();
    }

    #[test]
    fn structural_errors_are_named_with_offsets() {
        let problem = |bytes: &[u8]| Ber::new(bytes).read_any().unwrap_err();
        assert_eq!(
            problem(&[0x30, 0x80, 0x02, 0x01, 0x02]),
            BerError {
                offset: 5,
                problem: BerProblem::Unterminated
            }
        );
        assert_eq!(
            problem(&[0x04, 0x80, 0x00, 0x00]).problem,
            BerProblem::IndefinitePrimitive
        );
        assert_eq!(
            problem(&[0x04, 0x85, 1, 1, 1, 1, 1]).problem,
            BerProblem::LengthTooLong
        );
        assert_eq!(
            problem(&[0x00, 0x00]).problem,
            BerProblem::UnexpectedEndOfContents
        );
        assert_eq!(
            problem(&[0x30, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00]).problem,
            BerProblem::UnexpectedEndOfContents
        );
        assert_eq!(
            problem(&[0x3f, 0x01, 0x00]).problem,
            BerProblem::HighTagNumber
        );
        assert_eq!(problem(&[0x04, 0x82, 0x01]).problem, BerProblem::Truncated);
        // Non-minimal definite lengths are valid BER.
        assert_eq!(
            Ber::new(&[0x04, 0x82, 0x00, 0x01, 0xaa])
                .read_any()
                .unwrap()
                .content,
            [0xaa]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = alloc::vec::Vec::new();
        for _ in 0..=MAX_DEPTH {
            deep.extend([0x30, 0x80]);
        }
        for _ in 0..=MAX_DEPTH {
            deep.extend([0x00, 0x00]);
        }
        assert_eq!(
            Ber::new(&deep).read_any().unwrap_err().problem,
            BerProblem::TooDeep
        );
        // One level less is fine.
        assert!(Ber::new(&deep[2..deep.len() - 2]).read_any().is_ok());
    }

    #[test]
    fn every_prefix_of_an_indefinite_element_is_an_error() {
        let bytes = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x01, 0xaa, 0x00, 0x00, 0x00, 0x00,
        ];
        assert!(Ber::new(&bytes).read_any().is_ok());
        for end in 0..bytes.len() {
            assert!(Ber::new(&bytes[..end]).read_any().is_err(), "prefix {end}");
        }
    }
}
