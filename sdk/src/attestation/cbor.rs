//! A thin layer over minicbor's `Decoder` that turns its errors into [`DecodeError`]s carrying
//! the byte offset in the whole document and the field being read.

use super::error::{AttestationError, DecodeError, DecodeErrorKind};
use alloc::string::String;
use minicbor::Decoder;
use minicbor::data::Type;

/// A field whose value has the right type but invalid content, at `offset` in the document.
pub(crate) fn invalid(
    offset: usize,
    field: &'static str,
    problem: impl Into<String>,
) -> AttestationError {
    AttestationError::Malformed(DecodeError {
        offset,
        kind: DecodeErrorKind::InvalidValue {
            field,
            problem: problem.into(),
        },
    })
}

/// A CBOR cursor over a slice that sits at `base` in the whole document.
pub(crate) struct Cbor<'b> {
    d: Decoder<'b>,
    base: usize,
}

impl<'b> Cbor<'b> {
    pub(crate) fn new(bytes: &'b [u8], base: usize) -> Self {
        Self {
            d: Decoder::new(bytes),
            base,
        }
    }

    /// Offset of the next unread byte in the whole document.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.d.position()
    }

    pub(crate) fn error(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn map_err(
        &self,
        start: usize,
        e: &minicbor::decode::Error,
        field: &'static str,
        expected: &'static str,
    ) -> DecodeError {
        let kind = if e.is_end_of_input() {
            DecodeErrorKind::Truncated { reading: field }
        } else {
            DecodeErrorKind::UnexpectedType { field, expected }
        };
        self.error(start, kind)
    }

    /// The type of the next item.
    pub(crate) fn datatype(&self, field: &'static str) -> Result<Type, DecodeError> {
        let start = self.offset();
        self.d
            .datatype()
            .map_err(|e| self.map_err(start, &e, field, "a valid CBOR item"))
    }

    /// True when nothing is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.d.position() >= self.d.input().len()
    }

    pub(crate) fn finish(&self, after: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(self.offset(), DecodeErrorKind::TrailingBytes { after }))
        }
    }

    pub(crate) fn tag(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let start = self.offset();
        self.d
            .tag()
            .map(|t| t.as_u64())
            .map_err(|e| self.map_err(start, &e, field, "a CBOR tag"))
    }

    /// A definite-length byte string; returns it and the offset of its first content byte.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<(&'b [u8], usize), DecodeError> {
        let start = self.offset();
        match self.d.bytes() {
            Ok(b) => Ok((b, self.offset() - b.len())),
            Err(e) => Err(self.map_err(start, &e, field, "a definite-length byte string")),
        }
    }

    /// A byte string, or CBOR null (returned as `None`).
    pub(crate) fn optional_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<&'b [u8]>, DecodeError> {
        if self.datatype(field)? == Type::Null {
            let start = self.offset();
            self.d
                .null()
                .map_err(|e| self.map_err(start, &e, field, "null"))?;
            return Ok(None);
        }
        let start = self.offset();
        self.d
            .bytes()
            .map(Some)
            .map_err(|e| self.map_err(start, &e, field, "a byte string or null"))
    }

    pub(crate) fn text(&mut self, field: &'static str) -> Result<&'b str, DecodeError> {
        let start = self.offset();
        self.d
            .str()
            .map_err(|e| self.map_err(start, &e, field, "a definite-length UTF-8 text string"))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let start = self.offset();
        self.d
            .u64()
            .map_err(|e| self.map_err(start, &e, field, "an unsigned integer"))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let start = self.offset();
        self.d
            .i64()
            .map_err(|e| self.map_err(start, &e, field, "an integer"))
    }

    /// A map header: `Some(n)` for definite length, `None` for indefinite.
    pub(crate) fn map(&mut self, field: &'static str) -> Result<Option<u64>, DecodeError> {
        let start = self.offset();
        self.d
            .map()
            .map_err(|e| self.map_err(start, &e, field, "a map"))
    }

    /// An array header: `Some(n)` for definite length, `None` for indefinite.
    pub(crate) fn array(&mut self, field: &'static str) -> Result<Option<u64>, DecodeError> {
        let start = self.offset();
        self.d
            .array()
            .map_err(|e| self.map_err(start, &e, field, "an array"))
    }

    /// For a container of `remaining` entries (`None` = indefinite): true when another entry
    /// follows. Consumes the break byte of an indefinite container.
    pub(crate) fn has_next(
        &mut self,
        remaining: &mut Option<u64>,
        field: &'static str,
    ) -> Result<bool, DecodeError> {
        match remaining {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None => {
                if self.datatype(field)? == Type::Break {
                    // The break is one byte (0xff).
                    self.d.set_position(self.d.position() + 1);
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }
}
