//! Ctrl-C, SIGTERM and SIGHUP during an emulation: the first one sets a flag that every wait
//! of the orchestration polls, so the run unwinds and every process, socket and temporary file
//! is removed by its owner's `Drop`; a second one exits at once (exit status 130).

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Exit status when a second signal arrives before the teardown finished (128 + SIGINT).
const FORCED_EXIT: i32 = 130;

/// The signals that stop an emulation.
const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Whether (and by which signal) the emulation was asked to stop.
#[derive(Debug, Clone)]
pub(crate) struct Interrupt {
    flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers (for the rest of the process: there is one emulation per run).
    ///
    /// # Errors
    /// The handlers cannot be installed.
    pub(crate) fn install() -> Result<Self> {
        let interrupt = Self {
            flag: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
        };
        for signal in SIGNALS {
            // Registered first, so it sees the flag as it was before this signal: only a
            // second signal exits immediately.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                FORCED_EXIT,
                Arc::clone(&interrupt.flag),
            )
            .map_err(|e| Error::setup(format!("cannot install the signal handlers: {e}")))?;
            let Ok(number) = usize::try_from(signal) else {
                continue;
            };
            signal_hook::flag::register_usize(signal, Arc::clone(&interrupt.signal), number)
                .map_err(|e| Error::setup(format!("cannot install the signal handlers: {e}")))?;
            signal_hook::flag::register(signal, Arc::clone(&interrupt.flag))
                .map_err(|e| Error::setup(format!("cannot install the signal handlers: {e}")))?;
        }
        Ok(interrupt)
    }

    /// The flag the handlers set (for [`ccc_build::boot::Boot::cancel_on`]).
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    /// True once a signal arrived.
    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The name of the signal that arrived, if any.
    pub(crate) fn signal_name(&self) -> Option<&'static str> {
        match i32::try_from(self.signal.load(Ordering::SeqCst)).ok()? {
            SIGINT => Some("SIGINT"),
            SIGTERM => Some("SIGTERM"),
            SIGHUP => Some("SIGHUP"),
            _ => None,
        }
    }

    /// An error when a signal arrived (call between steps).
    ///
    /// # Errors
    /// A signal arrived.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_set() {
            return Err(Error::Interrupted {
                message: self.message(),
            });
        }
        Ok(())
    }

    /// What the transcript says when the run stops for a signal.
    pub(crate) fn message(&self) -> String {
        format!(
            "interrupted by {}: stopping every process and removing the run directory",
            self.signal_name().unwrap_or("a signal")
        )
    }
}
