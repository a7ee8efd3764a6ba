//! Instants as Unix milliseconds, and their RFC 3339 and ASN.1 (UTCTime/GeneralizedTime) forms.
//!
//! The core never reads a clock: callers pass a [`UnixMillis`] in. Only the `std` feature offers
//! [`UnixMillis::now`].

use core::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z (the unit of the attestation `timestamp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub u64);

/// Why a time string was not understood.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeError {
    /// The text does not have the expected shape; the payload says which shape was expected.
    Syntax(&'static str),
    /// A field is out of range (month 13, second 61, year before 1970, ...).
    OutOfRange(&'static str),
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(expected) => write!(f, "malformed time: expected {expected}"),
            Self::OutOfRange(field) => write!(f, "time field out of range: {field}"),
        }
    }
}

impl core::error::Error for TimeError {}

/// A broken-down UTC date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Full year, 1970 or later.
    pub year: u32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    /// 0..=23
    pub hour: u32,
    /// 0..=59
    pub minute: u32,
    /// 0..=59 (a leap second 60 is clamped to 59)
    pub second: u32,
    /// 0..=999
    pub millis: u32,
}

const MILLIS_PER_DAY: u64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let y = u64::from(year) - u64::from(month <= 2);
    let era = y / 400;
    let yoe = y - era * 400;
    let m = u64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + u64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // 719468 = days from 0000-03-01 to 1970-01-01.
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    // Years fit u32 for any u64 millisecond value this crate produces (< year 584 million).
    (
        u32::try_from(year).unwrap_or(u32::MAX),
        month as u32,
        day as u32,
    )
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

impl DateTime {
    /// Checks ranges and converts to Unix milliseconds.
    ///
    /// # Errors
    /// [`TimeError::OutOfRange`] for a year before 1970 or any field out of its range.
    pub fn to_unix_millis(self) -> Result<UnixMillis, TimeError> {
        if self.year < 1970 {
            return Err(TimeError::OutOfRange("year before 1970"));
        }
        if !(1..=12).contains(&self.month) {
            return Err(TimeError::OutOfRange("month"));
        }
        if self.day < 1 || self.day > days_in_month(self.year, self.month) {
            return Err(TimeError::OutOfRange("day"));
        }
        if self.hour > 23 {
            return Err(TimeError::OutOfRange("hour"));
        }
        if self.minute > 59 {
            return Err(TimeError::OutOfRange("minute"));
        }
        if self.second > 60 {
            return Err(TimeError::OutOfRange("second"));
        }
        if self.millis > 999 {
            return Err(TimeError::OutOfRange("milliseconds"));
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = u64::from(self.hour) * 3600
            + u64::from(self.minute) * 60
            + u64::from(self.second.min(59));
        Ok(UnixMillis(
            days * MILLIS_PER_DAY + secs * 1000 + u64::from(self.millis),
        ))
    }
}

impl UnixMillis {
    /// The current wall-clock time. Only the `std` feature reads clocks.
    #[cfg(feature = "std")]
    #[must_use]
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whole seconds since the epoch.
    #[must_use]
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// Breaks the instant down into UTC fields.
    #[must_use]
    pub fn to_datetime(self) -> DateTime {
        let (year, month, day) = civil_from_days(self.0 / MILLIS_PER_DAY);
        let in_day = self.0 % MILLIS_PER_DAY;
        // Each of these is bounded by the modulus above, so the casts cannot truncate.
        DateTime {
            year,
            month,
            day,
            hour: (in_day / 3_600_000) as u32,
            minute: (in_day / 60_000 % 60) as u32,
            second: (in_day / 1000 % 60) as u32,
            millis: (in_day % 1000) as u32,
        }
    }

    /// Parses RFC 3339 (`2022-10-13T08:58:02Z`, `2022-10-13T08:58:02.136+02:00`) or a plain
    /// integer of Unix milliseconds (`1665651482136`).
    ///
    /// # Errors
    /// [`TimeError`] naming the part that is malformed or out of range.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<u64>()
                .map(Self)
                .map_err(|_| TimeError::OutOfRange("Unix milliseconds"));
        }
        parse_rfc3339(text)
    }

    /// `YYYYMMDDTHHMMSSZ`, the SigV4 `X-Amz-Date` form.
    #[must_use]
    pub fn amz_date(self) -> AmzDate {
        AmzDate(self.to_datetime())
    }
}

/// Display adapter for the SigV4 `X-Amz-Date` form, `YYYYMMDDTHHMMSSZ`.
#[derive(Clone, Copy, Debug)]
pub struct AmzDate(DateTime);

impl fmt::Display for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            d.year, d.month, d.day, d.hour, d.minute, d.second
        )
    }
}

/// RFC 3339 with millisecond precision and a `Z` suffix: `2022-10-13T08:58:02.136Z`.
impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.to_datetime();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            d.year, d.month, d.day, d.hour, d.minute, d.second, d.millis
        )
    }
}

fn digits(text: &[u8], what: &'static str) -> Result<u32, TimeError> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(TimeError::Syntax(what));
    }
    Ok(text.iter().fold(0u32, |acc, b| {
        acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    }))
}

fn field<'a>(text: &'a [u8], at: usize, len: usize, what: &'static str) -> Result<u32, TimeError> {
    let part: &'a [u8] = text.get(at..at + len).ok_or(TimeError::Syntax(what))?;
    digits(part, what)
}

fn expect_byte(text: &[u8], at: usize, want: &[u8], what: &'static str) -> Result<(), TimeError> {
    match text.get(at) {
        Some(b) if want.contains(b) => Ok(()),
        _ => Err(TimeError::Syntax(what)),
    }
}

const RFC3339: &str = "RFC 3339 like 2024-01-31T12:00:00Z, or Unix milliseconds";

fn parse_rfc3339(text: &str) -> Result<UnixMillis, TimeError> {
    let b = text.as_bytes();
    let year = field(b, 0, 4, RFC3339)?;
    expect_byte(b, 4, b"-", RFC3339)?;
    let month = field(b, 5, 2, RFC3339)?;
    expect_byte(b, 7, b"-", RFC3339)?;
    let day = field(b, 8, 2, RFC3339)?;
    expect_byte(b, 10, b"Tt ", RFC3339)?;
    let hour = field(b, 11, 2, RFC3339)?;
    expect_byte(b, 13, b":", RFC3339)?;
    let minute = field(b, 14, 2, RFC3339)?;
    expect_byte(b, 16, b":", RFC3339)?;
    let second = field(b, 17, 2, RFC3339)?;
    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let frac = b.get(start..end).ok_or(TimeError::Syntax(RFC3339))?;
        if frac.is_empty() {
            return Err(TimeError::Syntax(RFC3339));
        }
        // Keep millisecond precision; finer digits are truncated.
        let ms = frac
            .get(..frac.len().min(3))
            .ok_or(TimeError::Syntax(RFC3339))?;
        millis = digits(ms, RFC3339)? * 10u32.pow(3 - ms.len() as u32);
        at = end;
    }
    let base = DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        millis,
    }
    .to_unix_millis()?;
    match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => Ok(base),
        Some(sign @ (b'+' | b'-')) if at + 6 == b.len() => {
            let oh = field(b, at + 1, 2, RFC3339)?;
            expect_byte(b, at + 3, b":", RFC3339)?;
            let om = field(b, at + 4, 2, RFC3339)?;
            if oh > 23 || om > 59 {
                return Err(TimeError::OutOfRange("UTC offset"));
            }
            let offset = u64::from(oh * 60 + om) * 60_000;
            if *sign == b'+' {
                base.0
                    .checked_sub(offset)
                    .map(UnixMillis)
                    .ok_or(TimeError::OutOfRange("year before 1970"))
            } else {
                Ok(UnixMillis(base.0 + offset))
            }
        }
        _ => Err(TimeError::Syntax(RFC3339)),
    }
}

/// Parses the content octets of an ASN.1 UTCTime (`YYMMDDHHMMSSZ`, RFC 5280 4.1.2.5.1: years
/// 50..99 are 19xx) or GeneralizedTime (`YYYYMMDDHHMMSSZ`). X.509 requires the `Z` form with
/// seconds and no fraction; anything else is rejected.
///
/// # Errors
/// [`TimeError`] if the octets are not in the RFC 5280 form.
pub fn parse_asn1_time(content: &[u8], generalized: bool) -> Result<UnixMillis, TimeError> {
    const ASN1: &str = "RFC 5280 UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ";
    let (year, rest) = if generalized {
        if content.len() != 15 {
            return Err(TimeError::Syntax(ASN1));
        }
        (field(content, 0, 4, ASN1)?, 4)
    } else {
        if content.len() != 13 {
            return Err(TimeError::Syntax(ASN1));
        }
        let yy = field(content, 0, 2, ASN1)?;
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    };
    expect_byte(content, rest + 10, b"Z", ASN1)?;
    DateTime {
        year,
        month: field(content, rest, 2, ASN1)?,
        day: field(content, rest + 2, 2, ASN1)?,
        hour: field(content, rest + 4, 2, ASN1)?,
        minute: field(content, rest + 6, 2, ASN1)?,
        second: field(content, rest + 8, 2, ASN1)?,
        millis: 0,
    }
    .to_unix_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn round_trips_known_instants() {
        // 1665651482136 is the timestamp of the evervault non-debug vector.
        let t = UnixMillis(1_665_651_482_136);
        assert_eq!(t.to_string(), "2022-10-13T08:58:02.136Z");
        assert_eq!(UnixMillis::parse("2022-10-13T08:58:02.136Z"), Ok(t));
        assert_eq!(UnixMillis::parse("2022-10-13T10:58:02.136+02:00"), Ok(t));
        assert_eq!(UnixMillis::parse("1665651482136"), Ok(t));
        assert_eq!(t.amz_date().to_string(), "20221013T085802Z");
        assert_eq!(UnixMillis(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UnixMillis::parse("2024-02-29T23:59:59Z").map(|t| t.to_string()),
            Ok("2024-02-29T23:59:59.000Z".to_string())
        );
    }

    #[test]
    fn every_day_for_two_centuries_round_trips() {
        for day in 0..(365 * 200) {
            let t = UnixMillis(day * MILLIS_PER_DAY + 12_345);
            assert_eq!(t.to_datetime().to_unix_millis(), Ok(t), "day {day}");
        }
    }

    #[test]
    fn rejects_malformed_and_out_of_range() {
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "1969-12-31T23:59:59Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00+0100",
            "x024-01-01T00:00:00Z",
        ] {
            assert!(UnixMillis::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn asn1_times() {
        assert_eq!(
            parse_asn1_time(b"191028132805Z", false),
            UnixMillis::parse("2019-10-28T13:28:05Z")
        );
        assert_eq!(
            parse_asn1_time(b"20491028142805Z", true),
            UnixMillis::parse("2049-10-28T14:28:05Z")
        );
        assert_eq!(
            parse_asn1_time(b"500101000000Z", false),
            Err(TimeError::OutOfRange("year before 1970"))
        );
        assert!(parse_asn1_time(b"1910281328Z", false).is_err());
        assert!(parse_asn1_time(b"191028132805+0000", false).is_err());
    }
}
