//! The CCC enclave template: an enclave application that proves what it is to KMS, receives
//! keys only it can open, and serves a small request/response API over vsock.
//!
//! # Where things are
//! - [`app`]: **the application** — defaults and one handler per operation. Fork the
//!   template and change this file.
//! - [`protocol`]: the API's wire format (frames, requests, answers, error frames), shared
//!   with the parent's `client` command.
//! - [`config`]: settings from `app.rs`, `/env` and (emulation only) the kernel command line.
//! - [`seal`]: the sealed-blob format.
//! - [`server`]: the listener and per-connection loop.
//! - [`log`], [`console`]: the enclave's records, sent to the parent over the log channel
//!   (docs/log-protocol.md) and, in debug mode and emulation only, printed on the console.
//! - [`failure`]: the error frames that name their step.
//! - [`start`] (here): the start-up sequence the binary runs.
//!
//! # Start-up
//! 1. Start the log channel to the parent (`vsock://<parent>:8003`). Report the settings and
//!    the attestation summary from the enclave's own NSM document (module id, PCRs, signed or
//!    QEMU-unsigned, debug mode), and decide what the console shows from that document
//!    ([`log::ConsoleMode`]: everything in debug mode and emulation, one line in production).
//!    The enclave does not verify its
//!    own document: KMS does, against the key policy. But it reads its signature algorithm:
//!    the emulation-only words of the kernel command line (`ccc.emulation=1`, `ccc_app.*`)
//!    are honoured only when the document is QEMU's unsigned one; with a signed document
//!    (Nitro, or the signed simulator) their presence stops the start
//!    ([`StartError::EmulationSwitchesOnSignedDocument`]), because the command line is not
//!    covered by PCR2 and a parent could rebuild the image with its own CA there.
//!    Then compare the enclave's clock with the document's time ([`clock`]): beyond
//!    [`clock::MAX_SKEW`] the clock is set to the document's time (printed loudly), or the start
//!    stops with [`StartError::Clock`] when it cannot be set.
//! 2. Ask the parent for credentials (a failure is printed; every KMS call asks again).
//! 3. Build the attested KMS client: TLS to `kms.<region>.amazonaws.com` through the parent's
//!    proxy, the enclave's RSA-2048 key generated inside.
//! 4. Listen on the API port and serve; send a `heartbeat` record every
//!    [`HEARTBEAT_INTERVAL`] so the parent can tell a live enclave from a silent one.
// Bytes from peers (the enclave, the parent, KMS clients, the kernel command line) are read
// with get()/split_first()/cursors: indexing that could panic is an error outside tests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod app;
pub mod clock;
pub mod config;
pub mod console;
pub mod failure;
pub mod log;
pub mod protocol;
pub mod seal;
pub mod server;

use ccc_sdk::attestation::{self, Algorithm};
use ccc_sdk::credentials::enclave::FromParent;
use ccc_sdk::credentials::{CredentialsProvider, Refreshing};
use ccc_sdk::kms::attested::AttestedKmsClient;
use ccc_sdk::kms::client::{ClientConfig, ClientError, KmsClient, Transport};
use ccc_sdk::log::Level;
use ccc_sdk::nsm::{Nsm, NsmError};
use ccc_sdk::time::UnixMillis;
use ccc_sdk::tls::TrustAnchors;
use config::Settings;
use console::Console;
use log::{ConsoleMode, Log, record};
pub use server::Stop;
use std::fmt;
use std::io;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the enclave tells the parent it is alive (a `heartbeat` record): the parent's
/// `ccc_enclave_heartbeat_age_seconds` stays below this while the enclave runs.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// The PCRs printed at start: the image (0), kernel and bootstrap (1), application (2),
/// parent's IAM role (3), parent instance (4), signing certificate (8).
pub const SUMMARY_PCRS: [u8; 6] = [0, 1, 2, 3, 4, 8];

/// Why the enclave could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The NSM did not give an attestation document.
    Nsm(NsmError),
    /// The NSM's document does not parse.
    Attestation(attestation::AttestationError),
    /// The KMS client could not be built (unusable CA, RSA key generation).
    Kms(ClientError),
    /// Emulation-only words are on the kernel command line, but the NSM signs its documents:
    /// this is not a QEMU emulation, and the words would let whoever built the image choose
    /// the KMS CA, key or region.
    EmulationSwitchesOnSignedDocument {
        /// The words found (up to their `=`).
        switches: Vec<String>,
    },
    /// The clock is far from the NSM document's time and could not be set.
    Clock(clock::ClockError),
    /// The API's listener could not be bound.
    Listen {
        /// Where.
        endpoint: String,
        /// The OS error.
        error: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nsm(e) => write!(f, "nsm Attestation failed: {e}"),
            Self::Attestation(e) => {
                write!(f, "the NSM's attestation document does not parse: {e}")
            }
            Self::Kms(e) => write!(f, "the KMS client cannot be built: {e}"),
            Self::EmulationSwitchesOnSignedDocument { switches } => write!(
                f,
                "the kernel command line holds emulation-only words ({}), but this enclave's NSM \
                 signs its attestation documents (ES384): they are honoured only under QEMU's \
                 unsigned NSM. An image for Nitro must not carry them: remove them from the \
                 EIF's command line and configure the image through app.rs or /env \
                 (CCC_APP_*), which PCR2 measures",
                switches.join(", ")
            ),
            Self::Clock(e) => write!(f, "{e}"),
            Self::Listen { endpoint, error } => write!(
                f,
                "cannot listen on {endpoint}: {error} (CCC_APP_PORT / CCC_APP_LISTEN)"
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// A started enclave: its listener's address, its log and how serving ends. Dropping it stops
/// the heartbeats (the API keeps serving on its own thread).
#[derive(Debug)]
pub struct Started {
    address: String,
    app: Arc<app::App>,
    log: Log,
    stop: Receiver<Stop>,
    heartbeat: Heartbeat,
}

impl Started {
    /// Where the API listens (`tcp://127.0.0.1:41234`, `vsock://4294967295:5000`).
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The application.
    #[must_use]
    pub fn app(&self) -> &Arc<app::App> {
        &self.app
    }

    /// The enclave's log (the channel to the parent and the console).
    #[must_use]
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Waits until serving stops — when `accept` fails for good, or (emulation,
    /// `ccc_app.exit_after`) when the request budget is spent — and returns why.
    #[must_use]
    pub fn wait(self) -> Stop {
        let stop = self
            .stop
            .recv()
            .unwrap_or_else(|_| Stop::Failed(io::Error::other("the server thread panicked")));
        self.heartbeat.stop();
        stop
    }
}

/// The heartbeat thread's stop signal.
#[derive(Debug, Default)]
struct Beat {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// Sends a `heartbeat` record every [`HEARTBEAT_INTERVAL`] until stopped (or dropped).
#[derive(Debug)]
struct Heartbeat(Arc<Beat>);

impl Heartbeat {
    fn start(log: Log, started: Instant) -> io::Result<Self> {
        let beat = Arc::new(Beat::default());
        let own = Arc::clone(&beat);
        std::thread::Builder::new()
            .name("ccc-enclave-heartbeat".into())
            .spawn(move || {
                let mut stopped = own.stopped.lock().unwrap_or_else(PoisonError::into_inner);
                while !*stopped {
                    let stats = log.stats();
                    let requests = server::requests_answered();
                    log.emit(
                        record(
                            Level::Debug,
                            "heartbeat",
                            format!(
                                "heartbeat: up {} s, {requests} request(s) answered, {} log \
                                 record(s) dropped",
                                started.elapsed().as_secs(),
                                stats.dropped
                            ),
                        )
                        .field("uptime_seconds", started.elapsed().as_secs())
                        .field("requests", requests)
                        .field("log_dropped", stats.dropped)
                        .field("log_queued", stats.queued),
                    );
                    stopped = own
                        .wake
                        .wait_timeout(stopped, HEARTBEAT_INTERVAL)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            })?;
        Ok(Self(beat))
    }

    fn stop(&self) {
        *self
            .0
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.0.wake.notify_all();
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Refuses emulation-only command-line words unless the enclave's own document is QEMU's
/// unsigned one (`algorithm` from [`print_attestation_summary`]).
///
/// # Errors
/// [`StartError::EmulationSwitchesOnSignedDocument`] when `switches` is not empty and the
/// document is signed (or of an algorithm this template does not know).
pub fn check_emulation_switches(
    switches: &[String],
    algorithm: Algorithm,
) -> Result<(), StartError> {
    if switches.is_empty() || algorithm == Algorithm::QemuUnsigned {
        Ok(())
    } else {
        Err(StartError::EmulationSwitchesOnSignedDocument {
            switches: switches.to_vec(),
        })
    }
}

/// What the start-up read from the enclave's own attestation document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Its signature algorithm (ES384 on Nitro and the signed simulator; QEMU's unsigned one).
    pub algorithm: Algorithm,
    /// PCR0 is all zeros: a debug-mode enclave (or a simulator without PCRs).
    pub debug_mode: bool,
}

/// Reports the attestation summary of the enclave's own NSM document, checks the clock against
/// the document's time ([`clock::check`], setting the clock when it is off), and returns what
/// the rest of the start-up needs from it.
///
/// # Errors
/// [`StartError::Nsm`], [`StartError::Attestation`], [`StartError::Clock`].
pub fn print_attestation_summary(nsm: &Nsm, log: &Log) -> Result<Summary, StartError> {
    let document = nsm.attestation(None, None, None).map_err(StartError::Nsm)?;
    // The guest clock when the document arrived (`cargo xtask bench boot` reads it).
    let uptime = console::uptime();
    let parsed = attestation::parse(&document).map_err(StartError::Attestation)?;
    let doc = &parsed.document;
    let (signature, label) = match parsed.cose.algorithm {
        Algorithm::Es384 => (
            "ES384 (signed by the NSM; KMS checks it against the AWS Nitro root)",
            "es384",
        ),
        Algorithm::QemuUnsigned => (
            "NONE: QEMU nitro-enclave emulation, the document is unsigned and proves nothing",
            "qemu_unsigned",
        ),
        _ => ("of an algorithm this template does not know", "unknown"),
    };
    log.emit(
        record(
            Level::Info,
            "start.attestation",
            format!(
                "attestation: {}, module {}, document {} bytes at {}, {uptime}, signature \
                 {signature}",
                nsm.backend_name(),
                doc.module_id,
                document.len(),
                doc.timestamp
            ),
        )
        .field("nsm", nsm.backend_name())
        .field("module_id", doc.module_id)
        .field("document_time", doc.timestamp.to_string())
        .field("signature", label),
    );
    log.emit(
        record(
            Level::Debug,
            "attestation.document",
            format!(
                "attestation: document of {} bytes for the start-up summary",
                document.len()
            ),
        )
        .field("purpose", "start-up")
        .field("bytes", document.len()),
    );
    for index in SUMMARY_PCRS {
        if let Some(value) = doc.pcrs.get(index) {
            let value = hex::encode(value);
            log.emit(
                record(
                    Level::Info,
                    "start.pcr",
                    format!("attestation: PCR{index} {value}"),
                )
                .field("index", index)
                .field("value", value),
            );
        }
    }
    let debug_mode = doc
        .pcrs
        .get(0)
        .is_some_and(|pcr0| pcr0.iter().all(|&b| b == 0));
    log.emit(
        record(
            if debug_mode { Level::Warn } else { Level::Info },
            "start.debug_mode",
            format!(
                "attestation: debug mode: {}",
                if debug_mode {
                    "YES (PCR0 is all zeros: a debug-mode enclave, or a simulator without \
                     PCRs; no key policy pinning a real image releases keys to it)"
                } else {
                    "no"
                }
            ),
        )
        .field("debug_mode", debug_mode),
    );
    let now = UnixMillis::now();
    match clock::check(now, doc.timestamp, ccc_sdk::clock::set_system_clock)
        .map_err(StartError::Clock)?
    {
        clock::Outcome::InStep { skew_millis } => log.emit(
            record(
                Level::Info,
                "start.clock",
                format!("clock: {now} (in step with the NSM document's time: {skew_millis} ms)"),
            )
            .field("now", now.to_string())
            .field(
                "skew_millis",
                i64::try_from(skew_millis).unwrap_or(i64::MAX),
            ),
        ),
        clock::Outcome::Set { was, now } => log.emit(
            record(
                Level::Warn,
                "start.clock",
                format!(
                    "clock: SET from {was} to {now}, the NSM document's time (it was more than \
                     {} s off; TLS to KMS and SigV4 need the right time)",
                    clock::MAX_SKEW.as_secs()
                ),
            )
            .field("was", was.to_string())
            .field("now", now.to_string()),
        ),
    }
    Ok(Summary {
        algorithm: parsed.cose.algorithm,
        debug_mode,
    })
}

/// What the console shows for this enclave (see [`log`]): everything in debug mode and under
/// QEMU emulation, unless emulation asked for a production console; otherwise one line.
#[must_use]
pub fn console_mode(summary: Summary, settings: &Settings) -> ConsoleMode {
    let emulation = summary.algorithm == Algorithm::QemuUnsigned;
    if summary.debug_mode || (emulation && !settings.console_production) {
        ConsoleMode::Full
    } else {
        ConsoleMode::Production
    }
}

/// Runs the start-up sequence (see the crate docs) and serves on a thread of its own. Records
/// go to the parent's log channel (`settings.log_endpoint`) and, per [`console_mode`], to
/// `console`. A start-up failure is reported there as `enclave.fatal` before it is returned.
///
/// # Errors
/// [`StartError`]; a missing credentials service is not one (it is reported, and every KMS
/// call asks again).
pub fn start(settings: &Settings, nsm: Nsm, console: Console) -> Result<Started, StartError> {
    let log = Log::start(&settings.log_endpoint, console);
    start_with(settings, nsm, &log).inspect_err(|e| log.fatal(&e.to_string()))
}

fn start_with(settings: &Settings, nsm: Nsm, log: &Log) -> Result<Started, StartError> {
    let started = Instant::now();
    for (name, value, origin) in &settings.report {
        log.emit(
            record(
                Level::Info,
                "start.setting",
                format!("setting {name}={value} ({origin})"),
            )
            .field("name", name)
            .field("value", value)
            .field("origin", origin.to_string()),
        );
    }
    let summary = print_attestation_summary(&nsm, log)?;
    let mode = console_mode(summary, settings);
    log.decide(
        mode,
        format_args!(
            "production console: this enclave reports to its parent over the log channel {} \
             (docs/log-protocol.md); the console shows nothing more unless the enclave fails",
            log.channel()
        ),
    );
    log.emit(
        record(
            Level::Info,
            "start.console",
            format!(
                "console: {} (log channel {})",
                match mode {
                    ConsoleMode::Full =>
                        "every record (debug mode or emulation: this console can be read)",
                    _ => "PRODUCTION (one start line; records go to the log channel only)",
                },
                log.channel()
            ),
        )
        .field("full", mode == ConsoleMode::Full)
        .field("channel", log.channel()),
    );
    check_emulation_switches(&settings.emulation_switches, summary.algorithm)?;
    if settings.emulation {
        log.emit(record(
            Level::Warn,
            "start.emulation",
            "EMULATION (ccc.emulation=1, QEMU-unsigned NSM): ccc_app.* switches from the kernel \
             command line are honoured; never set this in a release image",
        ));
    }
    if let TrustAnchors::CustomCaPem(_) = settings.kms_trust {
        log.emit(record(
            Level::Warn,
            "start.custom_ca",
            "KMS TLS trusts a CUSTOM CA instead of the Amazon roots (emulator or development)",
        ));
    }

    let credentials = Arc::new(Refreshing::new(FromParent::new(
        settings.credentials_endpoint.clone(),
    )));
    match credentials.credentials() {
        Ok(c) => log.emit(
            record(
                Level::Info,
                "start.credentials",
                format!(
                    "credentials: {} from the parent at {}{}",
                    c.access_key_id(),
                    settings.credentials_endpoint,
                    c.expiration()
                        .map_or_else(String::new, |at| format!(", expire {at}"))
                ),
            )
            .field("access_key_id", c.access_key_id())
            .field_opt("expiration", c.expiration().map(|at| at.to_string())),
        ),
        Err(e) => log.emit(record(
            Level::Warn,
            "start.credentials",
            format!("credentials: none yet ({e}); every KMS call asks the parent again"),
        )),
    }

    let config = ClientConfig::new(
        settings.region.clone(),
        settings.kms_endpoint.clone(),
        Transport::Tls(settings.kms_trust.clone()),
    )
    .with_host(settings.kms_host());
    log.emit(
        record(
            Level::Info,
            "start.kms",
            format!(
                "kms: {} via {}, TLS as {}",
                settings.region,
                settings.kms_endpoint,
                settings.kms_host()
            ),
        )
        .field("region", settings.region.as_str())
        .field("endpoint", settings.kms_endpoint.to_string())
        .field("host", settings.kms_host()),
    );
    let kms = KmsClient::new(config, credentials)
        .map_err(StartError::Kms)?
        .with_observer(log.kms_observer());
    let kms =
        AttestedKmsClient::new(kms, nsm, settings.key_arn.clone()).map_err(StartError::Kms)?;
    match &settings.key_arn {
        Some(key) => log.emit(
            record(
                Level::Info,
                "start.trusted_key",
                format!(
                    "trusted key: {key} (every seal, unseal, data key and hmac uses it and no \
                     other)"
                ),
            )
            .field("key_arn", key.as_str()),
        ),
        None => log.emit(record(
            Level::Warn,
            "start.trusted_key",
            "trusted key: NONE (KEY_ARN in app.rs / CCC_APP_KEY_ARN unset): only attest and \
             random work",
        )),
    }
    let app = Arc::new(app::App::new(kms));

    let listener = server::bind(&settings.listen).map_err(|error| StartError::Listen {
        endpoint: settings.listen.to_string(),
        error,
    })?;
    let address = listener.describe();
    log.emit(
        record(
            Level::Info,
            "start.serving",
            format!(
                "serving API v{} on {address} (operations: {})",
                protocol::VERSION,
                protocol::OPERATIONS
            ),
        )
        .field("address", address.as_str())
        .field("version", protocol::VERSION),
    );
    let (stop, stopped) = channel();
    let exit_after = settings.exit_after.map(|limit| {
        log.emit(
            record(
                Level::Warn,
                "start.exit_after",
                format!(
                    "EMULATION (ccc_app.exit_after={limit}): this enclave EXITS after answering \
                     {limit} request(s)"
                ),
            )
            .field("requests", limit),
        );
        Arc::new(server::ExitAfter::new(limit, stop.clone()))
    });
    let serving = Arc::clone(&app);
    let max = settings.max_connections;
    let server_log = log.clone();
    std::thread::Builder::new()
        .name("ccc-enclave-accept".into())
        .spawn(move || {
            let error = server::serve(listener.as_ref(), serving, server_log, max, exit_after);
            let _ = stop.send(Stop::Failed(error));
        })
        .map_err(|error| StartError::Listen {
            endpoint: address.clone(),
            error,
        })?;
    let heartbeat = Heartbeat::start(log.clone(), started).map_err(|error| StartError::Listen {
        endpoint: address.clone(),
        error,
    })?;
    Ok(Started {
        address,
        app,
        log: log.clone(),
        stop: stopped,
        heartbeat,
    })
}

/// The fuzzing entry point for the API request decoder: reads `data` as a stream of frames
/// and decodes each as a request (what the enclave does with every frame a client sends), and
/// `data` itself as a request and as an answer (the parent's side). Must never panic,
/// whatever `data` is; `fuzz/fuzz_targets/template_request.rs` calls it.
#[doc(hidden)]
pub fn fuzz_request(data: &[u8]) {
    let mut stream = std::io::Cursor::new(data);
    while let Ok(frame) = protocol::read_frame(&mut stream) {
        let Some(frame) = frame else { break };
        if let Ok(request) = protocol::decode_request(&frame) {
            let _ = request.check();
        }
    }
    if let Ok(request) = protocol::decode_request(data) {
        let _ = request.check();
        let _ = protocol::encode_request(&request);
    }
    let _ = protocol::decode_response(data);
}

/// The fuzzing entry point for the sealed-blob parser: parses `data` as a sealed blob and,
/// when it parses, opens it under an all-zero data key (the authentication fails, through the
/// same path as a forged blob). Must never panic, whatever `data` is;
/// `fuzz/fuzz_targets/sealed_blob.rs` calls it.
#[doc(hidden)]
pub fn fuzz_sealed(data: &[u8]) {
    if let Ok(sealed) = seal::parse(data) {
        let _ = seal::open(&sealed, &ccc_sdk::secret::SecretBytes::new(vec![0; 32]));
    }
}
