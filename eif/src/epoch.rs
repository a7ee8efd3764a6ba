//! `SOURCE_DATE_EPOCH`: the one timestamp a reproducible build may embed, passed in by the
//! caller (this crate never reads a clock or the environment).

use ccc_sdk::time::UnixMillis;
use std::fmt;

/// A build timestamp in whole seconds since the Unix epoch, taken from `SOURCE_DATE_EPOCH`
/// (<https://reproducible-builds.org/specs/source-date-epoch/>).
///
/// It becomes every cpio entry's mtime and the EIF metadata's `BuildTime`. It is a `u32`
/// because the cpio "newc" mtime field holds 8 hex digits (so the latest representable
/// instant is 2106-02-07T06:28:15Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceDateEpoch(u32);

impl SourceDateEpoch {
    /// The Unix epoch itself (1970-01-01T00:00:00Z), a common choice for fully fixed builds.
    pub const UNIX_EPOCH: Self = Self(0);

    /// A timestamp of `secs` seconds since 1970-01-01T00:00:00Z.
    #[must_use]
    pub const fn from_secs(secs: u32) -> Self {
        Self(secs)
    }

    /// Parses the value of a `SOURCE_DATE_EPOCH` variable: ASCII decimal digits only (no sign,
    /// no spaces), at most `u32::MAX`.
    ///
    /// # Errors
    /// [`EpochError`] when the text is empty, has a non-digit, or exceeds `u32::MAX`.
    pub fn parse(text: &str) -> Result<Self, EpochError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EpochError {
                text: text.to_owned(),
            });
        }
        text.parse::<u32>().map(Self).map_err(|_| EpochError {
            text: text.to_owned(),
        })
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub const fn secs(self) -> u32 {
        self.0
    }

    /// The instant as RFC 3339 text in the exact shape chrono's `DateTime<Utc>::to_rfc3339()`
    /// prints for whole seconds (what nitro-cli and `eif_build` write as `BuildTime`), e.g.
    /// `2024-01-01T00:00:00+00:00`.
    #[must_use]
    pub fn rfc3339(self) -> String {
        // The calendar is ccc_sdk::time's (the one civil-date conversion of the workspace).
        let t = UnixMillis(u64::from(self.0) * 1000).to_datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )
    }
}

/// A `SOURCE_DATE_EPOCH` value that is not a decimal number of seconds in `0..=u32::MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EpochError {
    /// The rejected text.
    pub text: String,
}

impl fmt::Display for EpochError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SOURCE_DATE_EPOCH must be decimal seconds since 1970-01-01 between 0 and {} \
             (the cpio newc mtime field is 32 bits), found {:?}; set it to e.g. the last \
             commit time: `git log -1 --format=%ct`",
            u32::MAX,
            self.text
        )
    }
}

impl core::error::Error for EpochError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(
            SourceDateEpoch::UNIX_EPOCH.rfc3339(),
            "1970-01-01T00:00:00+00:00"
        );
        assert_eq!(
            SourceDateEpoch::from_secs(1_704_067_200).rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        // A leap day, and the last representable second.
        assert_eq!(
            SourceDateEpoch::from_secs(951_827_696).rfc3339(),
            "2000-02-29T12:34:56+00:00"
        );
        assert_eq!(
            SourceDateEpoch::from_secs(u32::MAX).rfc3339(),
            "2106-02-07T06:28:15+00:00"
        );
    }

    #[test]
    fn agrees_with_gnu_date() {
        // GNU date(1) as the reference, over instants spread across the whole range.
        let mut secs: u64 = 0;
        while secs <= u64::from(u32::MAX) {
            let epoch = SourceDateEpoch::from_secs(u32::try_from(secs).unwrap());
            let out = std::process::Command::new("date")
                .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S+00:00"])
                .output()
                .expect("date(1) runs");
            assert_eq!(
                String::from_utf8(out.stdout).unwrap().trim_end(),
                epoch.rfc3339()
            );
            secs += 86_400 * 367 + 3_601 * 7 + 13;
        }
    }

    #[test]
    fn parse_accepts_only_decimal_u32() {
        assert_eq!(
            SourceDateEpoch::parse("1700000000"),
            Ok(SourceDateEpoch::from_secs(1_700_000_000))
        );
        for bad in ["", "-1", "+5", " 5", "5 ", "1e9", "4294967296", "0x10"] {
            let err = SourceDateEpoch::parse(bad).unwrap_err();
            assert_eq!(err.text, bad);
            assert!(err.to_string().contains("SOURCE_DATE_EPOCH"));
        }
    }
}
