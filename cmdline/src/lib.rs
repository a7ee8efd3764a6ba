//! The kernel command line (`/proc/cmdline`) split into words and `key=value` parameters, the
//! one splitter the init (`ccc.*` switches) and the template enclave (`ccc_app.*` settings)
//! share, so that both always read the same words from the same line.
//!
//! No dependencies and `no_std` + `alloc`: ccc-init is PID 1, a small static binary.
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Longest command line accepted. The x86 boot protocol's limit is Linux's
/// `COMMAND_LINE_SIZE` (2048 bytes on x86-64); this leaves room for kernels built with a
/// larger one while still bounding what a reader allocates.
pub const MAX_LEN: usize = 64 * 1024;

/// A command line that cannot be read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmdlineError {
    /// Longer than [`MAX_LEN`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not UTF-8.
    NotUtf8,
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len } => write!(
                f,
                "the kernel command line has {len} bytes, more than the {MAX_LEN} read; \
                 shorten the EIF's command line (or QEMU's -append)"
            ),
            Self::NotUtf8 => f.write_str(
                "the kernel command line is not UTF-8; fix the EIF's command line (or QEMU's \
                 -append)",
            ),
        }
    }
}

impl core::error::Error for CmdlineError {}

/// The contents of `/proc/cmdline` as text, checked against [`MAX_LEN`].
///
/// # Errors
/// [`CmdlineError::TooLong`] or [`CmdlineError::NotUtf8`].
pub fn text(raw: &[u8]) -> Result<&str, CmdlineError> {
    if raw.len() > MAX_LEN {
        return Err(CmdlineError::TooLong { len: raw.len() });
    }
    core::str::from_utf8(raw).map_err(|_| CmdlineError::NotUtf8)
}

/// Splits a command line into words as the kernel splits its parameters: on whitespace,
/// except inside double quotes, which are removed (`a="b c"` is the one word `a=b c`, and
/// `"a=b c"` too). Unlike the kernel, a quote in the middle of a value is removed as well
/// (the kernel keeps it); no CCC switch takes such a value.
#[must_use]
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(core::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(current);
    }
    out
}

/// A parameter's key and value: split at the first `=`; a word without one is a key with an
/// empty value (`quiet` → `("quiet", "")`).
#[must_use]
pub fn parameter(word: &str) -> (&str, &str) {
    word.split_once('=').unwrap_or((word, ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn whitespace_separates_and_quotes_group() {
        assert_eq!(
            words("a \"b c\" d=\"e f\"  g\n"),
            vec!["a", "b c", "d=e f", "g"]
        );
        assert_eq!(words(r#"a  b="c d" "e" f"#), vec!["a", "b=c d", "e", "f"]);
        // A quoted empty value is still a word; blank lines are none.
        assert_eq!(words("x=\"\" \t\n "), vec!["x="]);
        assert!(words("").is_empty());
        // An unterminated quote runs to the end of the line.
        assert_eq!(words("a=\"b c"), vec!["a=b c"]);
    }

    #[test]
    fn nitro_clis_default_line_splits_into_its_parameters() {
        // nitro-cli's x86_64 blobs/cmdline, as /proc/cmdline shows it (newline included).
        let line = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux \
                    i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on\n";
        let words = words(line);
        assert_eq!(words.len(), 10);
        assert_eq!(parameter(&words[0]), ("reboot", "k"));
        assert_eq!(parameter(&words[3]), ("nomodules", ""));
        assert_eq!(parameter(&words[9]), ("random.trust_cpu", "on"));
    }

    #[test]
    fn parameters_split_at_the_first_equals_sign() {
        assert_eq!(parameter("a=b=c"), ("a", "b=c"));
        assert_eq!(parameter("a="), ("a", ""));
        assert_eq!(parameter("=b"), ("", "b"));
    }

    #[test]
    fn text_checks_length_and_encoding() {
        assert_eq!(text(b"quiet\n"), Ok("quiet\n"));
        let long = vec![b' '; MAX_LEN + 1];
        assert_eq!(text(&long), Err(CmdlineError::TooLong { len: MAX_LEN + 1 }));
        assert_eq!(text(&long[..MAX_LEN]).map(str::len), Ok(MAX_LEN));
        assert_eq!(text(b"a=\xff"), Err(CmdlineError::NotUtf8));
    }
}
