//! What the reference prints: its line prefix and the guest uptime, read from `/proc/uptime`
//! (the kernel's `CLOCK_BOOTTIME`, in hundredths of a second), exactly as the enclave template
//! reads it, so both sides of the benchmark use one clock at one resolution.

/// The prefix of every console line.
pub(crate) const PREFIX: &str = "ccc-boot-reference";

/// Where the kernel publishes the uptime.
const UPTIME_FILE: &str = "/proc/uptime";

/// `uptime <seconds> s`, or `uptime unknown` when `/proc/uptime` cannot be read or parsed.
pub(crate) fn uptime_text() -> String {
    let seconds = std::fs::read_to_string(UPTIME_FILE)
        .ok()
        .and_then(|text| uptime_seconds(&text).map(str::to_owned));
    match seconds {
        Some(s) => format!("uptime {s} s"),
        None => "uptime unknown".to_owned(),
    }
}

/// The first field of `/proc/uptime` (`"12.34 45.67\n"` → `"12.34"`), if it is a decimal
/// number of seconds (digits, one dot, digits).
pub(crate) fn uptime_seconds(text: &str) -> Option<&str> {
    let field = text.split_whitespace().next()?;
    let (whole, fraction) = field.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(fraction)).then_some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_the_first_field() {
        assert_eq!(uptime_seconds("0.93 1.62\n"), Some("0.93"));
        assert_eq!(uptime_seconds("13986.57 26781.01\n"), Some("13986.57"));
    }

    #[test]
    fn malformed_uptime_is_refused() {
        for text in [
            "",
            "\n",
            "abc 1.0",
            "12 3.4",
            ".5 1.0",
            "1. 2.0",
            "1.2.3 4.5",
            "-1.0 2",
        ] {
            assert_eq!(uptime_seconds(text), None, "{text:?}");
        }
    }

    /// On the build host the file exists too: the text is what the benchmark parses.
    #[test]
    fn host_uptime_reads() {
        let text = uptime_text();
        let seconds = text
            .strip_prefix("uptime ")
            .and_then(|t| t.strip_suffix(" s"));
        assert!(seconds.is_some(), "{text}");
        assert!(seconds.unwrap().parse::<f64>().unwrap() > 0.0, "{text}");
    }
}
