//! The enclave's console: lines `ccc-enclave: ...` on stderr (the serial console under the
//! init, what `nitro-cli console` shows in debug mode). What reaches it is decided by
//! [`crate::log`]: every record's message in debug mode and emulation, one start line in
//! production.

use std::fmt;
use std::sync::{Arc, Mutex};

/// The prefix of every line.
pub const PREFIX: &str = "ccc-enclave";

/// Where lines go.
#[derive(Clone)]
pub struct Console {
    sink: Arc<dyn Fn(&str) + Send + Sync>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    /// Lines to stderr.
    #[must_use]
    pub fn stderr() -> Self {
        Self {
            sink: Arc::new(|line: &str| eprintln!("{line}")),
        }
    }

    /// Lines to stderr and into the returned list (tests assert on what the console shows).
    #[must_use]
    pub fn capture() -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        let console = Self {
            sink: Arc::new(move |line: &str| {
                eprintln!("{line}");
                kept.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line.to_owned());
            }),
        };
        (console, lines)
    }

    /// Writes `ccc-enclave: <text>`.
    pub fn line(&self, text: fmt::Arguments<'_>) {
        (self.sink)(&format!("{PREFIX}: {text}"));
    }
}

/// The system's uptime as `/proc/uptime` gives it (`uptime 0.93 s`: the kernel's
/// `CLOCK_BOOTTIME` in hundredths of a second; inside an enclave, time since the kernel
/// started), or `uptime unknown`. The start-up attestation line carries it, so
/// `cargo xtask bench boot` can time boot → first attestation with the guest's own clock.
#[must_use]
pub fn uptime() -> String {
    let text = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    match text.split_whitespace().next() {
        Some(seconds)
            if seconds.split_once('.').is_some_and(|(whole, fraction)| {
                [whole, fraction]
                    .iter()
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            }) =>
        {
            format!("uptime {seconds} s")
        }
        _ => "uptime unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a Linux host the file exists: the text has the shape the benchmark parses.
    #[test]
    fn uptime_reads_as_seconds() {
        let text = uptime();
        let seconds = text
            .strip_prefix("uptime ")
            .and_then(|t| t.strip_suffix(" s"));
        assert!(seconds.is_some(), "{text}");
        assert!(seconds.unwrap().parse::<f64>().unwrap() > 0.0, "{text}");
    }
}
