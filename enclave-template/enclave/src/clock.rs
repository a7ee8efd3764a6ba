//! The enclave's wall clock against its own NSM attestation document's time.
//!
//! TLS to KMS (certificate validity) and SigV4 (AWS refuses requests more than 5 minutes off)
//! both need the right time, and an enclave whose clock starts wrong fails with errors that
//! point elsewhere (an "expired" certificate, `InvalidSignatureException`). The NSM's document
//! carries the hypervisor's time (`timestamp`, Unix milliseconds; QEMU's NSM uses the host's
//! clock). At start the template compares its clock with that time; beyond [`MAX_SKEW`] it
//! sets its clock to the document's time and says so loudly, or stops with
//! [`crate::StartError::Clock`] when the clock cannot be set.
//!
//! Why the application and not ccc-init (PID 1): the application already fetches and parses
//! its document at start, runs as root inside the enclave (so it has `CAP_SYS_TIME`), and is
//! what needs the time; ccc-init stays a small program that parses no CBOR. A team whose own
//! application does not start from the template calls [`check`] the same way.

use ccc_sdk::time::UnixMillis;
use std::io;
use std::time::Duration;

/// The largest difference between the enclave's clock and its NSM document's time that is
/// left alone. Well inside SigV4's 5-minute limit (so a clock within it never breaks KMS),
/// and far above what separates the two readings at start (the document's time is taken
/// milliseconds before it is read, and QEMU's NSM rounds it down to whole seconds).
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// What [`check`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The clock was within [`MAX_SKEW`] of the document's time and was left alone.
    InStep {
        /// Clock minus document time, in milliseconds (negative: the clock is behind).
        skew_millis: i128,
    },
    /// The clock was off by more than [`MAX_SKEW`] and now shows the document's time.
    Set {
        /// What the clock showed.
        was: UnixMillis,
        /// What it was set to (the document's time).
        now: UnixMillis,
    },
}

/// Why the clock could not be trusted or fixed.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClockError {
    /// What the clock showed.
    pub clock: UnixMillis,
    /// The NSM document's time.
    pub document: UnixMillis,
    /// Why setting it failed.
    pub error: io::Error,
}

impl std::fmt::Display for ClockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the enclave's clock shows {} but its NSM attestation document was made at {} (more \
             than {} s apart), and setting the clock failed: {}. TLS to KMS and SigV4 would fail \
             with misleading errors; run the application as root (CAP_SYS_TIME) so it can take \
             the document's time",
            self.clock,
            self.document,
            MAX_SKEW.as_secs(),
            self.error
        )
    }
}

impl std::error::Error for ClockError {}

/// Compares `clock` with the document's time `document`; beyond [`MAX_SKEW`] calls `set` with
/// the document's time (the template passes [`ccc_sdk::clock::set_system_clock`]).
///
/// # Errors
/// [`ClockError`] when the clock is off and `set` fails.
pub fn check(
    clock: UnixMillis,
    document: UnixMillis,
    set: impl FnOnce(UnixMillis) -> io::Result<()>,
) -> Result<Outcome, ClockError> {
    let skew_millis = i128::from(clock.0) - i128::from(document.0);
    if skew_millis.unsigned_abs() <= MAX_SKEW.as_millis() {
        return Ok(Outcome::InStep { skew_millis });
    }
    match set(document) {
        Ok(()) => Ok(Outcome::Set {
            was: clock,
            now: document,
        }),
        Err(error) => Err(ClockError {
            clock,
            document,
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_sdk::attestation;
    use ccc_sdk::nsm::Nsm;
    use ccc_sdk::nsm::simulator::{Simulator, SimulatorConfig};
    use std::cell::Cell;

    /// 2026-12-01T00:00:00Z.
    const NSM_TIME: UnixMillis = UnixMillis(1_796_083_200_000);

    /// The time in a document of the signed NSM simulator whose clock is fixed at `at`.
    fn simulator_document_time(at: UnixMillis) -> UnixMillis {
        let config = SimulatorConfig::default().with_fixed_time(at);
        let nsm = Nsm::simulator(Simulator::new(config).unwrap());
        let document = nsm.attestation(None, None, None).unwrap();
        attestation::parse(&document).unwrap().document.timestamp
    }

    #[test]
    fn a_clock_in_step_is_left_alone() {
        let document = simulator_document_time(NSM_TIME);
        let set = Cell::new(None);
        for clock in [
            document,
            UnixMillis(document.0 + 59_000),
            UnixMillis(document.0 - 60_000),
        ] {
            let outcome = check(clock, document, |at| {
                set.set(Some(at));
                Ok(())
            })
            .unwrap();
            assert!(matches!(outcome, Outcome::InStep { .. }), "{outcome:?}");
        }
        assert_eq!(set.get(), None, "a clock in step must not be moved");
    }

    /// The QEMU case: a guest without an RTC starts near 1970 (and `-rtc base=2001-01-01`
    /// would be another wrong start); the clock is set to the document's time.
    #[test]
    fn a_wrong_clock_takes_the_documents_time() {
        let document = simulator_document_time(NSM_TIME);
        assert_eq!(document, NSM_TIME);
        for wrong in [
            UnixMillis(3_000),                         // 1970, seconds after boot
            UnixMillis(978_307_200_000),               // 2001-01-01
            UnixMillis(NSM_TIME.0 + 61_000),           // a minute fast
            UnixMillis(NSM_TIME.0 + 86_400_000 * 400), // next year
        ] {
            let set = Cell::new(None);
            let outcome = check(wrong, document, |at| {
                set.set(Some(at));
                Ok(())
            })
            .unwrap();
            assert_eq!(
                outcome,
                Outcome::Set {
                    was: wrong,
                    now: NSM_TIME
                }
            );
            assert_eq!(set.get(), Some(NSM_TIME));
        }
    }

    #[test]
    fn a_clock_that_cannot_be_set_stops_the_start_with_a_named_error() {
        let document = simulator_document_time(NSM_TIME);
        let err = check(UnixMillis(3_000), document, |_| {
            Err(io::Error::from_raw_os_error(1))
        })
        .unwrap_err();
        let text = crate::StartError::Clock(err).to_string();
        assert!(text.contains("1970-01-01T00:00:03"), "{text}");
        assert!(text.contains("2026-12-01T00:00:00"), "{text}");
        assert!(text.contains("CAP_SYS_TIME"), "{text}");
    }
}
