//! What the harness does to, and reads from, the guest beyond the key release: the wall clock
//! it starts with (`--guest-clock`, wrong by default, so every emulated boot proves the
//! enclave's clock check), and the checks on the enclave's `start.clock` record and on the
//! devices Nitro announces (the NSM device, the vsock device, the serial console).

use ccc_sdk::time::UnixMillis;
use std::fmt;

/// The guest's wall clock at boot when `--guest-clock` does not say otherwise: years before
/// any certificate the KMS emulator or AWS presents, so TLS and SigV4 fail unless the enclave
/// takes its NSM document's time.
pub(crate) const DEFAULT_GUEST_CLOCK: &str = "2001-01-01T00:00:00Z";

/// How far the clock the enclave reports it found (`was`) may be from the `--guest-clock`
/// base: the guest's clock runs from the base while it boots, and a boot lasts minutes under
/// TCG, far less than a day; a host clock is decades away.
const WAS_BOUND_MILLIS: u64 = 24 * 60 * 60 * 1000;

/// Slack on the host-time window the set clock must fall in: the enclave's `clock::MAX_SKEW`
/// (60 s), the precision the enclave promises.
const NOW_SLACK_MILLIS: u64 = 60 * 1000;

/// The guest's wall clock at boot (`--guest-clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestClock {
    /// The host's time (QEMU's default): the enclave should find its clock in step.
    Host,
    /// This time (QEMU `-rtc base=`): the enclave should set its clock from it.
    At(UnixMillis),
}

impl GuestClock {
    /// Parses `host` or an RFC 3339 time (`2001-01-01T00:00:00Z`).
    ///
    /// # Errors
    /// A message naming the accepted forms.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text == "host" {
            return Ok(Self::Host);
        }
        UnixMillis::parse(text).map(Self::At).map_err(|e| {
            format!(
                "--guest-clock {text:?}: {e}; give `host` or an RFC 3339 time such as \
                 {DEFAULT_GUEST_CLOCK}"
            )
        })
    }

    /// QEMU's `-rtc base=` value (UTC, whole seconds), or `None` for the host's time.
    pub(crate) fn rtc_base(self) -> Option<String> {
        match self {
            Self::Host => None,
            Self::At(at) => {
                let d = at.to_datetime();
                Some(format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    d.year, d.month, d.day, d.hour, d.minute, d.second
                ))
            }
        }
    }
}

impl fmt::Display for GuestClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::At(at) => at.fmt(f),
        }
    }
}

/// Checks the enclave's `start.clock` record (`event`, `message`, `fields`) against the guest
/// clock the harness gave it and the host's time window of the run (`host_from` before QEMU
/// started, `host_to` after it ended).
///
/// # Errors
/// A sentence saying what the record should have said and what it said.
pub(crate) fn check_clock(
    record: Option<&serde_json::Value>,
    guest: GuestClock,
    host_from: UnixMillis,
    host_to: UnixMillis,
) -> Result<String, String> {
    let Some(record) = record else {
        return Err("the enclave sent no start.clock record on the log channel".to_owned());
    };
    let message = record["message"].as_str().unwrap_or_default();
    let field = |name: &str| {
        record["fields"][name]
            .as_str()
            .and_then(|text| UnixMillis::parse(text).ok())
    };
    let in_window = |t: UnixMillis| {
        t.0 >= host_from.0.saturating_sub(NOW_SLACK_MILLIS)
            && t.0 <= host_to.0.saturating_add(NOW_SLACK_MILLIS)
    };
    match guest {
        GuestClock::At(base) => {
            let (Some(was), Some(now)) = (field("was"), field("now")) else {
                return Err(format!(
                    "expected the enclave to SET its clock (it started at {base}), its \
                     start.clock record says: {message}"
                ));
            };
            if !message.contains("SET from") {
                return Err(format!("start.clock is not a SET record: {message}"));
            }
            if was.0.abs_diff(base.0) > WAS_BOUND_MILLIS {
                return Err(format!(
                    "the enclave found its clock at {was}, expected within a day of the \
                     --guest-clock base {base}: QEMU did not honour -rtc base= ({message})"
                ));
            }
            if !in_window(now) {
                return Err(format!(
                    "the enclave set its clock to {now}, outside the host's time during the run \
                     ({host_from} .. {host_to}, ±{} s)",
                    NOW_SLACK_MILLIS / 1000
                ));
            }
            Ok(format!(
                "the enclave's start.clock record: SET from {was} (the --guest-clock base \
                 {base}) to {now}, within the host's time during the run"
            ))
        }
        GuestClock::Host => {
            let Some(now) = field("now") else {
                return Err(format!("start.clock has no `now` field: {message}"));
            };
            if field("was").is_some() || !message.contains("in step") {
                return Err(format!(
                    "expected the enclave's clock in step with the host's (--guest-clock host), \
                     its start.clock record says: {message}"
                ));
            }
            if !in_window(now) {
                return Err(format!(
                    "the enclave's clock shows {now}, outside the host's time during the run \
                     ({host_from} .. {host_to})"
                ));
            }
            Ok(format!(
                "the enclave's start.clock record: {now}, in step with its NSM document's time \
                 (--guest-clock host)"
            ))
        }
    }
}

/// The console line `ccc-init` prints once its heartbeat over vsock reached the parent.
const HEARTBEAT_OK: &str = "ccc-init: heartbeat to the parent ok";

/// The kernel's banner, printed on the console it was given (`console=ttyS0`).
const KERNEL_BANNER: &str = "Linux version";

/// The NSM device the template opens (`ccc_sdk::nsm::device::DEVICE_PATH`).
const NSM_DEVICE: &str = "/dev/nsm";

/// Whether the devices Nitro announces to the kernel (docs/kernel.md: the virtio-mmio vsock
/// and NSM devices on the command line, the 8250 console `ttyS0`) were found in the guest,
/// from its serial console text and the records it sent on the log channel: one
/// `(passed, what)` per device, order-free.
pub(crate) fn check_devices(console: &str, records: &[serde_json::Value]) -> Vec<(bool, String)> {
    let nsm = records
        .iter()
        .find(|r| r["event"] == "start.attestation")
        .and_then(|r| r["fields"]["nsm"].as_str());
    let serial = console.lines().any(|line| line.contains(KERNEL_BANNER))
        && console
            .lines()
            .any(|line| line.contains("ccc-init: started"));
    let heartbeat = console.lines().any(|line| line.contains(HEARTBEAT_OK));
    vec![
        (
            nsm == Some(NSM_DEVICE),
            format!(
                "device: the NSM device {NSM_DEVICE} was found and answered (the enclave's \
                 start.attestation record names {})",
                nsm.unwrap_or("no NSM: the record is missing")
            ),
        ),
        (
            heartbeat && !records.is_empty(),
            format!(
                "device: the vsock device carried init's heartbeat to the parent ({}) and the \
                 enclave's log channel ({} records)",
                if heartbeat {
                    "ok"
                } else {
                    "NOT on the console"
                },
                records.len()
            ),
        ),
        (
            serial,
            format!(
                "device: the serial console ttyS0 (QEMU -serial stdio) carried the kernel's \
                 banner and init's start line ({})",
                if serial { "both seen" } else { "NOT both seen" }
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-12-06T10:41:28Z, a host time.
    const HOST: UnixMillis = UnixMillis(1_796_553_688_000);

    fn base() -> UnixMillis {
        UnixMillis::parse(DEFAULT_GUEST_CLOCK).unwrap()
    }

    fn set_record(was: &str, now: &str) -> serde_json::Value {
        json!({
            "event": "start.clock",
            "message": format!("clock: SET from {was} to {now}, the NSM document's time (it was \
                                more than 60 s off; TLS to KMS and SigV4 need the right time)"),
            "fields": {"was": was, "now": now},
        })
    }

    fn in_step(now: &str) -> serde_json::Value {
        json!({
            "event": "start.clock",
            "message": format!("clock: {now} (in step with the NSM document's time: -506 ms)"),
            "fields": {"now": now, "skew_millis": -506},
        })
    }

    #[test]
    fn the_guest_clock_option_parses_host_and_rfc3339_and_gives_qemu_its_base() {
        assert_eq!(GuestClock::parse("host"), Ok(GuestClock::Host));
        assert_eq!(GuestClock::Host.rtc_base(), None);
        let wrong = GuestClock::parse(DEFAULT_GUEST_CLOCK).unwrap();
        assert_eq!(wrong.rtc_base().as_deref(), Some("2001-01-01T00:00:00"));
        assert_eq!(wrong.to_string(), "2001-01-01T00:00:00.000Z");
        let error = GuestClock::parse("yesterday").unwrap_err();
        assert!(
            error.contains("host") && error.contains(DEFAULT_GUEST_CLOCK),
            "{error}"
        );
    }

    #[test]
    fn a_clock_set_from_the_base_to_the_host_time_passes() {
        let record = set_record("2001-01-01T00:00:01.612Z", "2026-12-06T10:41:28.000Z");
        let ok = check_clock(
            Some(&record),
            GuestClock::At(base()),
            UnixMillis(HOST.0 - 5_000),
            UnixMillis(HOST.0 + 5_000),
        )
        .unwrap();
        assert!(ok.contains("SET from 2001-01-01T00:00:01.612Z"), "{ok}");
    }

    #[test]
    fn a_clock_left_in_step_under_a_wrong_base_fails_naming_qemu() {
        let record = in_step("2026-12-06T10:41:27.494Z");
        let error = check_clock(
            Some(&record),
            GuestClock::At(base()),
            HOST,
            UnixMillis(HOST.0 + 5_000),
        )
        .unwrap_err();
        assert!(
            error.contains("expected the enclave to SET its clock"),
            "{error}"
        );
        // SET, but from a clock that was not the base: QEMU ignored -rtc base=.
        let record = set_record("2019-05-01T00:00:00.000Z", "2026-12-06T10:41:28.000Z");
        let error = check_clock(
            Some(&record),
            GuestClock::At(base()),
            HOST,
            UnixMillis(HOST.0 + 5_000),
        )
        .unwrap_err();
        assert!(error.contains("did not honour -rtc base="), "{error}");
    }

    #[test]
    fn a_clock_set_outside_the_runs_host_time_fails() {
        let record = set_record("2001-01-01T00:00:01.612Z", "2026-12-06T12:00:00.000Z");
        let error = check_clock(
            Some(&record),
            GuestClock::At(base()),
            HOST,
            UnixMillis(HOST.0 + 5_000),
        )
        .unwrap_err();
        assert!(error.contains("outside the host's time"), "{error}");
        assert!(check_clock(None, GuestClock::At(base()), HOST, HOST).is_err());
    }

    #[test]
    fn with_the_host_clock_the_record_must_be_in_step() {
        let record = in_step("2026-12-06T10:41:27.494Z");
        assert!(check_clock(Some(&record), GuestClock::Host, HOST, HOST).is_ok());
        let record = set_record("2001-01-01T00:00:01.612Z", "2026-12-06T10:41:28.000Z");
        assert!(check_clock(Some(&record), GuestClock::Host, HOST, HOST).is_err());
    }

    const CONSOLE: &str = "Linux version 6.12.117 (ccc@ccc) #1 SMP\n\
                           Run /init as init process\n\
                           ccc-init: started at 1.45 s after boot\n\
                           ccc-init: heartbeat to the parent ok\n";

    fn attestation(nsm: &str) -> serde_json::Value {
        json!({"event": "start.attestation", "message": "attestation: ...",
               "fields": {"nsm": nsm, "signature": "qemu_unsigned"}})
    }

    #[test]
    fn the_announced_devices_are_found_from_console_and_records() {
        let records = [attestation("/dev/nsm")];
        let checks = check_devices(CONSOLE, &records);
        assert_eq!(checks.len(), 3);
        assert!(checks.iter().all(|(ok, _)| *ok), "{checks:?}");
    }

    #[test]
    fn each_missing_device_fails_its_own_check() {
        // The simulator instead of the device.
        let checks = check_devices(CONSOLE, &[attestation("NSM simulator")]);
        assert_eq!(
            checks.iter().map(|(ok, _)| *ok).collect::<Vec<_>>(),
            [false, true, true]
        );
        // No heartbeat and no records: no vsock.
        let console = CONSOLE.replace("ccc-init: heartbeat to the parent ok\n", "");
        let checks = check_devices(&console, &[]);
        assert_eq!(
            checks.iter().map(|(ok, _)| *ok).collect::<Vec<_>>(),
            [false, false, true]
        );
        // Nothing on the serial console.
        let checks = check_devices("", &[attestation("/dev/nsm")]);
        assert_eq!(
            checks.iter().map(|(ok, _)| *ok).collect::<Vec<_>>(),
            [true, false, false]
        );
    }
}
