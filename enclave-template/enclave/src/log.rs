//! The enclave's log: every step is a record ([`ccc_sdk::log::Record`]) sent to the parent over
//! the log channel (`vsock://<parent>:8003`, docs/log-protocol.md), and — in debug mode and
//! under emulation only — the same record's message on the console as `ccc-enclave: <message>`.
//!
//! # What the console shows
//! The console is decided once the enclave has read its own attestation document
//! ([`Log::decide`]):
//! - **full** when the document says debug mode (PCR0 all zero: `nitro-cli console` works, and
//!   no key policy pinning a real image releases anything anyway) or QEMU emulation (an
//!   unsigned document): every record's message, as the channel carries it;
//! - **production** otherwise (and under emulation with `ccc_app.console=production`): one
//!   start line saying where the records go, then nothing but a `FATAL` line if the enclave
//!   fails. On Nitro nobody can read a production enclave's console; the one line is for
//!   whoever boots the image elsewhere and wonders why it is silent.
//!
//! Until the decision, console lines are held (the settings, the attestation summary) and then
//! printed or dropped with the rest. No record holds a secret: KMS steps carry lengths and
//! public-key hashes, errors carry KMS's messages (`tests/no_secret.rs` checks every line).

use crate::console::Console;
use ccc_sdk::kms::client::{Event, Observer};
use ccc_sdk::log::channel::{Config, Emitter, Stats};
use ccc_sdk::log::{Level, Record};
use ccc_sdk::net::Endpoint;
use ccc_sdk::time::UnixMillis;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a fatal error waits for the log channel to take its last records before the
/// enclave exits.
pub const FLUSH_ON_EXIT: Duration = Duration::from_secs(3);

/// Console lines held until the console is decided (the settings and the attestation summary
/// are about 25).
const MAX_HELD_LINES: usize = 256;

/// What the console shows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsoleMode {
    /// Every record's message.
    Full,
    /// One start line, then only a fatal error.
    Production,
}

#[derive(Debug)]
enum State {
    Undecided(Vec<String>),
    Decided(ConsoleMode),
}

struct Inner {
    console: Console,
    emitter: Option<Emitter>,
    state: Mutex<State>,
}

/// The enclave's log. Cheap to clone.
#[derive(Clone)]
pub struct Log(Arc<Inner>);

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("channel", &self.0.emitter.as_ref().map(Emitter::endpoint))
            .field("console", &self.mode())
            .finish()
    }
}

/// A record of `event` stamped now.
#[must_use]
pub fn record(level: Level, event: &'static str, message: impl Into<String>) -> Record {
    Record::new(UnixMillis::now(), level, event, message.into())
}

impl Log {
    /// Records to the parent at `endpoint` (its sender thread starts now) and, once decided,
    /// to `console`. A sender thread that cannot start leaves the console alone, and says so.
    #[must_use]
    pub fn start(endpoint: &Endpoint, console: Console) -> Self {
        let emitter = match Emitter::start(Config::new(endpoint.clone())) {
            Ok(emitter) => Some(emitter),
            Err(e) => {
                console.line(format_args!(
                    "log channel: cannot start its sender thread ({e}); records go to the \
                     console only"
                ));
                None
            }
        };
        Self(Arc::new(Inner {
            console,
            emitter,
            state: Mutex::new(State::Undecided(Vec::new())),
        }))
    }

    /// Records to `console` only (no channel): tools and tests that have no parent.
    #[must_use]
    pub fn console_only(console: Console) -> Self {
        Self(Arc::new(Inner {
            console,
            emitter: None,
            state: Mutex::new(State::Undecided(Vec::new())),
        }))
    }

    /// Where records go, for the start line (`vsock://3:8003`), or `none`.
    #[must_use]
    pub fn channel(&self) -> String {
        self.0
            .emitter
            .as_ref()
            .map_or_else(|| "none".to_owned(), |e| e.endpoint().to_string())
    }

    /// The console mode, once decided.
    #[must_use]
    pub fn mode(&self) -> Option<ConsoleMode> {
        match &*self.lock() {
            State::Undecided(_) => None,
            State::Decided(mode) => Some(*mode),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `record` to the parent and, per the console mode, its message to the console.
    pub fn emit(&self, record: Record) {
        let line = record.message.clone();
        if let Some(emitter) = &self.0.emitter {
            emitter.emit(record);
        }
        let mut state = self.lock();
        match &mut *state {
            State::Undecided(held) => {
                if held.len() < MAX_HELD_LINES {
                    held.push(line);
                }
            }
            State::Decided(ConsoleMode::Full) => {
                drop(state);
                self.0.console.line(format_args!("{line}"));
            }
            State::Decided(_) => {}
        }
    }

    /// Decides what the console shows from now on; in production it prints `start_line`
    /// (and nothing held), in full mode every held line. Later calls change nothing.
    pub fn decide(&self, mode: ConsoleMode, start_line: fmt::Arguments<'_>) {
        let mut state = self.lock();
        let State::Undecided(held) = &mut *state else {
            return;
        };
        let held = std::mem::take(held);
        *state = State::Decided(mode);
        drop(state);
        match mode {
            ConsoleMode::Full => {
                for line in held {
                    self.0.console.line(format_args!("{line}"));
                }
            }
            ConsoleMode::Production => self.0.console.line(start_line),
        }
    }

    /// A failure that stops the enclave: an `enclave.fatal` record, `FATAL: <message>` on the
    /// console whatever its mode, and up to [`FLUSH_ON_EXIT`] for the channel to take it.
    pub fn fatal(&self, message: &str) {
        if let Some(emitter) = &self.0.emitter {
            emitter.emit(record(
                Level::Error,
                "enclave.fatal",
                format!("FATAL: {message}"),
            ));
        }
        self.0.console.line(format_args!("FATAL: {message}"));
        self.flush(FLUSH_ON_EXIT);
    }

    /// Waits up to `timeout` for the channel to take every record so far (before an exit);
    /// whether it did.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.0.emitter.as_ref().is_none_or(|e| e.flush(timeout))
    }

    /// The channel's counters (zero without a channel).
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.0
            .emitter
            .as_ref()
            .map(Emitter::stats)
            .unwrap_or_default()
    }

    /// The KMS client's observer: each step a `kms.*` record (see `ccc_sdk::log`), its message
    /// prefixed with `kms `.
    #[must_use]
    pub fn kms_observer(&self) -> Arc<dyn Observer> {
        Arc::new(KmsSteps(self.clone()))
    }
}

/// The SDK's KMS and attestation events as records.
#[derive(Debug)]
struct KmsSteps(Log);

impl Observer for KmsSteps {
    fn event(&self, event: &Event<'_>) {
        let mut record = Record::from_kms(UnixMillis::now(), event);
        record.message = format!("kms {}", record.message);
        self.0.emit(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n: u32) -> Record {
        record(Level::Info, "test.line", format!("line {n}"))
    }

    #[test]
    fn the_console_holds_lines_until_decided_then_prints_them_in_full_mode() {
        let (console, lines) = Console::capture();
        let log = Log::console_only(console);
        log.emit(info(1));
        assert!(lines.lock().unwrap().is_empty(), "held until decided");
        log.decide(ConsoleMode::Full, format_args!("unused"));
        log.emit(info(2));
        assert_eq!(
            *lines.lock().unwrap(),
            ["ccc-enclave: line 1", "ccc-enclave: line 2"]
        );
        // A second decision changes nothing.
        log.decide(ConsoleMode::Production, format_args!("start"));
        assert_eq!(log.mode(), Some(ConsoleMode::Full));
    }

    #[test]
    fn a_production_console_shows_the_start_line_and_fatal_errors_only() {
        let (console, lines) = Console::capture();
        let log = Log::console_only(console);
        log.emit(info(1));
        log.decide(
            ConsoleMode::Production,
            format_args!("production console: records go to the parent"),
        );
        log.emit(info(2));
        log.fatal("the API server stopped");
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "ccc-enclave: production console: records go to the parent",
                "ccc-enclave: FATAL: the API server stopped"
            ]
        );
    }
}
