//! The emulation's transcript: one line per event on stderr, in order, each stamped with the
//! time since the run started and tagged with who speaks (`enclave` for the guest's console,
//! `kms` for the harness's KMS steps, `check` for comparisons, `VERDICT` last). The KMS
//! emulator's own request log (`kms-emulator[...]: ...`) and QEMU's stderr land in the same
//! stream. Also the reading of PCR values from what the enclave printed.

use ccc_eif::Pcr;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Writes the transcript. Cheap to clone; clones share the start time.
#[derive(Debug, Clone)]
pub(crate) struct Transcript {
    started: Arc<Instant>,
}

impl Transcript {
    /// A transcript whose clock starts now.
    pub(crate) fn start() -> Self {
        Self {
            started: Arc::new(Instant::now()),
        }
    }

    /// One line tagged `tag`.
    pub(crate) fn line(&self, tag: &str, text: impl std::fmt::Display) {
        let secs = self.started.elapsed().as_secs_f64();
        // Several lines (e.g. an error's context) keep the prefix on each.
        for part in text.to_string().lines() {
            eprintln!("[{secs:7.2}s] {tag:<7}| {part}");
        }
    }

    /// A line of the enclave's serial console (control characters removed).
    pub(crate) fn console(&self, line: &str) {
        let clean: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.line("enclave", clean);
    }

    /// A headline, framed so it stands out in a CI log.
    pub(crate) fn banner(&self, text: impl std::fmt::Display) {
        let bar = "=".repeat(78);
        self.line("emulate", &bar);
        self.line("emulate", text);
        self.line("emulate", &bar);
    }
}

/// Whether a console line is shown as it arrives: the init's and the application's lines, and
/// the kernel's alarms. Other kernel lines (a boot prints about 200) are kept and printed only
/// when the run fails.
pub(crate) fn is_app_line(line: &str) -> bool {
    const SHOWN: [&str; 8] = [
        "Linux version",
        "ccc-",
        "Kernel panic",
        "BUG:",
        "Oops",
        "WARNING:",
        "Run /init",
        "qemu exited",
    ];
    SHOWN.iter().any(|marker| line.contains(marker))
}

/// Length of a PCR in hex.
const PCR_HEX_LEN: usize = 2 * ccc_eif::pcr::PCR_LEN;

/// The PCR values the enclave printed on its console: every `PCR<n>` followed (after spaces,
/// `=` or `:`) by 96 hex digits, as the template (`ccc-template-enclave: PCR0 <hex>`) and
/// `nsm_probe` (`nsm-probe: PCR0 = <hex>`) print them.
///
/// # Errors
/// One PCR printed twice with different values (the run cannot say which one the NSM meant).
pub(crate) fn printed_pcrs(console: &str) -> Result<BTreeMap<u8, Pcr>, String> {
    let mut found: BTreeMap<u8, Pcr> = BTreeMap::new();
    for line in console.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("PCR") {
            rest = rest.get(at + 3..).unwrap_or_default();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let Ok(index) = digits.parse::<u8>() else {
                continue;
            };
            let value = rest
                .get(digits.len()..)
                .unwrap_or_default()
                .trim_start_matches([' ', '=', ':']);
            let hex: String = value.chars().take_while(char::is_ascii_hexdigit).collect();
            if hex.len() != PCR_HEX_LEN {
                continue;
            }
            let Ok(pcr) = Pcr::from_hex(&hex) else {
                continue;
            };
            if let Some(previous) = found.insert(index, pcr)
                && previous != pcr
            {
                return Err(format!(
                    "the enclave printed PCR{index} twice with different values: {} and {}",
                    previous.hex(),
                    pcr.hex()
                ));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcrs_are_read_from_both_console_formats() {
        let a = "a".repeat(96);
        let b = "B".repeat(96);
        let console = format!(
            "[    0.1] virtio-mmio: PCR-free kernel line\n\
             ccc-template-enclave: PCR0 {a}\n\
             nsm-probe: PCR1 = {b}\n\
             ccc-enclave: pcrs: PCR2: {a} (short PCR3 abc)\n"
        );
        let pcrs = printed_pcrs(&console).unwrap();
        assert_eq!(pcrs.len(), 3, "{pcrs:?}");
        assert_eq!(pcrs[&0].hex(), a);
        assert_eq!(pcrs[&1].hex(), b.to_lowercase());
        assert_eq!(pcrs[&2].hex(), a);
    }

    #[test]
    fn app_and_alarm_lines_are_shown_kernel_chatter_is_not() {
        assert!(is_app_line("ccc-init: app exited with status 0"));
        assert!(is_app_line("ccc-enclave: #2 hmac: FAILED at kms Decrypt"));
        assert!(is_app_line(
            "Kernel panic - not syncing: Attempted to kill init!"
        ));
        assert!(!is_app_line("clocksource: Switched to clocksource tsc"));
        assert!(!is_app_line(
            "virtio-mmio: Registering device virtio-mmio.0"
        ));
    }

    #[test]
    fn a_pcr_printed_with_two_values_is_an_error() {
        let console = format!("PCR2 {}\nPCR2 {}\n", "a".repeat(96), "b".repeat(96));
        let err = printed_pcrs(&console).unwrap_err();
        assert!(err.contains("PCR2 twice"), "{err}");
        let same = format!("PCR2 {0}\nPCR2 {0}\n", "a".repeat(96));
        assert_eq!(printed_pcrs(&same).unwrap().len(), 1);
    }

    #[test]
    fn too_long_or_short_values_are_not_pcrs() {
        let console = format!("PCR0 {}\nPCR1 {}\n", "a".repeat(95), "a".repeat(97));
        assert!(printed_pcrs(&console).unwrap().is_empty());
    }
}
