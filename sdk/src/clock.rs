//! The wall clock and the sleeper the network code uses, as traits, so tests run retries,
//! backoff, clock-skew correction and credential expiry without waiting (feature `std`).

use alloc::vec::Vec;

use crate::time::UnixMillis;
use core::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> UnixMillis;
}

/// The system clock ([`UnixMillis::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        UnixMillis::now()
    }
}

/// Sets the system's wall clock to `at` (`clock_settime(CLOCK_REALTIME)`): for an enclave
/// application whose clock started wrong and takes its NSM document's time instead.
///
/// # Errors
/// The OS error (`EPERM` without `CAP_SYS_TIME`).
#[cfg(target_os = "linux")]
pub fn set_system_clock(at: UnixMillis) -> std::io::Result<()> {
    ccc_sys::clock::set_realtime(Duration::from_millis(at.0))
}

/// A clock that only moves when told to (tests, reproducible runs).
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    /// A clock showing `at`.
    #[must_use]
    pub fn new(at: UnixMillis) -> Self {
        Self {
            millis: AtomicU64::new(at.0),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, at: UnixMillis) {
        self.millis.store(at.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.millis.load(Ordering::SeqCst))
    }
}

/// How the retry loop waits between attempts.
pub trait Sleeper: Send + Sync + fmt::Debug {
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration);
}

/// [`std::thread::sleep`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadSleeper;

impl Sleeper for ThreadSleeper {
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A sleeper that returns at once and remembers what it was asked to wait (tests).
#[derive(Debug, Default)]
pub struct RecordingSleeper {
    waits: Mutex<Vec<Duration>>,
}

impl RecordingSleeper {
    /// The waits asked for so far, in order.
    #[must_use]
    pub fn waits(&self) -> Vec<Duration> {
        self.waits.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, duration: Duration) {
        if let Ok(mut waits) = self.waits.lock() {
            waits.push(duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(UnixMillis(1_000));
        assert_eq!(clock.now(), UnixMillis(1_000));
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), UnixMillis(3_000));
        clock.set(UnixMillis(5));
        assert_eq!(clock.now(), UnixMillis(5));
        let sleeper = RecordingSleeper::default();
        sleeper.sleep(Duration::from_millis(7));
        sleeper.sleep(Duration::from_millis(9));
        assert_eq!(
            sleeper.waits(),
            [Duration::from_millis(7), Duration::from_millis(9)]
        );
    }
}
