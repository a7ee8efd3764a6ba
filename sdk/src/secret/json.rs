//! JSON that carries secrets (feature `std`), encoded and decoded without leaving copies
//! behind.
//!
//! serde_json writes into a `Vec` that grows by reallocating (each growth frees the previous
//! copy as it is), unescapes a string with escapes into a scratch buffer it frees unwiped,
//! and serde's derive buffers the members of internally tagged or flattened types in owned
//! temporaries. So:
//! - [`to_vec`] serializes twice: once to count the bytes, then into a zeroizing buffer of
//!   exactly that capacity, which never grows;
//! - [`string`] takes a secret member as serde_json's [`RawValue`] (its bytes in the input,
//!   validated but not unescaped, so no scratch copy) and unescapes it into a zeroizing
//!   buffer of the raw length, which unescaping never exceeds.
//!
//! The parent ↔ enclave credentials protocol, IMDS's credentials JSON and the template's API
//! frames go through here.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::Serialize;
use serde_json::value::RawValue;
use std::io;
use zeroize::{Zeroize, Zeroizing};

/// Counts what a serializer writes, keeping nothing.
struct Count(usize);

impl io::Write for Count {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON in a zeroizing buffer whose capacity is exactly its length: the bytes
/// are counted first, then written once, so the buffer never reallocates and no partial copy
/// is freed unwiped. (`value` must serialize to the same bytes twice, as every type with a
/// deterministic `Serialize` does.)
///
/// # Errors
/// The serializer's (a map with non-string keys, a failing `Serialize` impl).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let mut out = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *out, value)?;
    Ok(out)
}

/// Why a secret member is not a JSON string. Never quotes the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StringError {
    /// Byte offset inside the member's JSON text.
    pub offset: usize,
    /// What is wrong there.
    pub problem: &'static str,
}

impl fmt::Display for StringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {} of the member (its value is not shown: it may be a secret)",
            self.problem, self.offset
        )
    }
}

impl core::error::Error for StringError {}

/// The four hex digits of a `\u` escape, as a UTF-16 code unit.
fn hex4(digits: &[u8], offset: usize) -> Result<u16, StringError> {
    let invalid = StringError {
        offset,
        problem: "a \\u escape without four hex digits",
    };
    let digits = digits.get(..4).ok_or(invalid)?;
    digits.iter().try_fold(0u16, |value, digit| {
        let nibble = char::from(*digit).to_digit(16).ok_or(invalid)?;
        Ok((value << 4) | u16::try_from(nibble).map_err(|_| invalid)?)
    })
}

/// The text of a JSON string member, unescaped (RFC 8259 §7) into a zeroizing buffer sized
/// from the raw text: an escape is never shorter than what it stands for, so the buffer never
/// grows, and nothing else holds the text.
///
/// # Errors
/// [`StringError`] if `raw` is not a JSON string (another type, an invalid escape, a lone
/// surrogate, a control character).
pub fn string(raw: &RawValue) -> Result<Zeroizing<String>, StringError> {
    unescape(raw.get())
}

/// [`string`] on the JSON text of a member (serde_json has validated it; checked again all
/// the same).
fn unescape(text: &str) -> Result<Zeroizing<String>, StringError> {
    let text = text.as_bytes();
    let inner = text
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .ok_or(StringError {
            offset: 0,
            problem: "not a JSON string",
        })?;
    let mut out = Zeroizing::new(Vec::with_capacity(inner.len()));
    let mut rest = inner;
    while let Some((&byte, tail)) = rest.split_first() {
        let offset = text.len() - rest.len() - 1;
        rest = tail;
        if byte >= 0x20 && byte != b'\\' {
            out.push(byte);
            continue;
        }
        if byte != b'\\' {
            return Err(StringError {
                offset,
                problem: "a control character inside the string",
            });
        }
        let (&kind, tail) = rest.split_first().ok_or(StringError {
            offset,
            problem: "a backslash at the end of the string",
        })?;
        rest = tail;
        let simple = match kind {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => {
                return Err(StringError {
                    offset,
                    problem: "an unknown escape",
                });
            }
        };
        if let Some(unescaped) = simple {
            out.push(unescaped);
            continue;
        }
        let unit = hex4(rest, offset)?;
        rest = rest.get(4..).unwrap_or_default();
        let code = match unit {
            0xd800..=0xdbff => {
                let low = rest
                    .strip_prefix(b"\\u")
                    .map(|digits| hex4(digits, offset))
                    .transpose()?
                    .filter(|low| (0xdc00..=0xdfff).contains(low))
                    .ok_or(StringError {
                        offset,
                        problem: "a high surrogate without its low surrogate",
                    })?;
                rest = rest.get(6..).unwrap_or_default();
                0x10000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00)
            }
            0xdc00..=0xdfff => {
                return Err(StringError {
                    offset,
                    problem: "a low surrogate without its high surrogate",
                });
            }
            _ => u32::from(unit),
        };
        let character = char::from_u32(code).ok_or(StringError {
            offset,
            problem: "an escape that is not a character",
        })?;
        let mut encoded = [0u8; 4];
        out.extend_from_slice(character.encode_utf8(&mut encoded).as_bytes());
    }
    // The raw text is valid UTF-8 (serde_json checked it) and escapes decode to whole
    // characters, so this cannot fail; if it did, the bytes are wiped.
    match String::from_utf8(core::mem::take(&mut *out)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(error) => {
            error.into_bytes().zeroize();
            Err(StringError {
                offset: 0,
                problem: "not UTF-8",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::borrow::ToOwned;
    use alloc::boxed::Box;
    use alloc::string::ToString;
    use std::collections::BTreeMap;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn strings_unescape_as_serde_json_does() {
        for json in [
            r#""wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY""#,
            r#""a\/b\\c\"d\n\r\t\b\f""#,
            r#""\u00e9\u20ac\ud83d\ude00 plain é€😀""#,
            r#""""#,
        ] {
            let expected: String = serde_json::from_str(json).unwrap();
            let ours = string(&raw(json)).unwrap();
            assert_eq!(ours.as_str(), expected, "{json}");
            // Sized from the raw text, never grown.
            assert!(ours.capacity() <= json.len(), "{json}");
        }
    }

    #[test]
    fn malformed_strings_name_the_problem_without_the_text() {
        for (json, problem) in [
            ("42", "not a JSON string"),
            ("null", "not a JSON string"),
            (r#""\ud83d""#, "a high surrogate without its low surrogate"),
            (
                r#""\ud83d\u0041""#,
                "a high surrogate without its low surrogate",
            ),
            (r#""\ude00""#, "a low surrogate without its high surrogate"),
        ] {
            let error = string(&raw(json)).unwrap_err();
            assert_eq!(error.problem, problem, "{json}");
            assert!(!error.to_string().contains("d83d"), "{error}");
        }
        // Texts serde_json would not accept as a RawValue, checked all the same.
        for (text, problem) in [
            ("\"a\\q\"", "an unknown escape"),
            ("\"a\\u12\"", "a \\u escape without four hex digits"),
            ("\"a\\\"", "a backslash at the end of the string"),
            ("\"a\u{1}b\"", "a control character inside the string"),
            ("\"\\udfff\"", "a low surrogate without its high surrogate"),
        ] {
            assert_eq!(unescape(text).unwrap_err().problem, problem, "{text:?}");
        }
    }

    #[test]
    fn to_vec_is_exact_and_equals_serde_json() {
        let mut map = BTreeMap::new();
        map.insert("secret", "wJalr/\"quoted\"/€".to_string());
        map.insert("other", "x".repeat(1000));
        let ours = to_vec(&map).unwrap();
        assert_eq!(ours.as_slice(), serde_json::to_vec(&map).unwrap());
        assert_eq!(ours.capacity(), ours.len());
    }
}
