//! The API server: accepts connections on the configured endpoint (vsock in an enclave, TCP
//! or a Unix socket on a laptop), reads request frames, lets [`App`] answer, writes the
//! answer frames, and logs one `api.received` record per request and one `api.request` record
//! per outcome (operation, outcome = `ok` or the error code, latency). In emulation
//! ([`ExitAfter`], `ccc_app.exit_after=N`) it stops after N answered requests.

use crate::app::App;
use crate::log::{Log, record};
use crate::protocol::{self, ErrorCode, Failure, ProtocolError, Response};
use ccc_sdk::log::Level;
use ccc_sdk::net::{Endpoint, Listener, Stream, VsockListener, accept_loop};
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How long a connection may sit between requests (and a write may block) before it is
/// closed. Long enough for a parent that keeps one connection for a batch of calls.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Binds the API's listener.
///
/// # Errors
/// The `bind`/`listen` failure (`EADDRINUSE`, no vsock in this kernel, ...). A stale Unix
/// socket file at the path is replaced.
pub fn bind(endpoint: &Endpoint) -> io::Result<Box<dyn Listener>> {
    match endpoint {
        Endpoint::Vsock(address) => Ok(Box::new(VsockListener::bind(*address)?)),
        Endpoint::Tcp { host, port } => Ok(Box::new(TcpListener::bind((host.as_str(), *port))?)),
        Endpoint::Unix(path) => {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(path)?;
            }
            Ok(Box::new(UnixListener::bind(path)?))
        }
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot listen on {other}"),
        )),
    }
}

/// Why serving stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stop {
    /// Emulation only: the [`ExitAfter`] budget of this many requests was answered and the
    /// caller closed the connection of the last one.
    Served(u64),
    /// `accept` failed for good (or the server thread ended abnormally).
    Failed(io::Error),
}

/// Emulation's request budget (`ccc_app.exit_after=N`, accepted only with
/// `ccc.emulation=1`): after the Nth answered request (an error frame counts), the server
/// waits until the caller closes that connection — so the answer has certainly left the
/// enclave — and then reports [`Stop::Served`], on which the binary exits with status 0 and
/// the init powers the guest off. Without it the enclave serves until it is stopped.
#[derive(Debug)]
pub struct ExitAfter {
    limit: u64,
    answered: AtomicU64,
    stop: Sender<Stop>,
}

impl ExitAfter {
    /// A budget of `limit` requests; [`Stop::Served`] is sent on `stop` when it is spent.
    #[must_use]
    pub fn new(limit: u64, stop: Sender<Stop>) -> Self {
        Self {
            limit,
            answered: AtomicU64::new(0),
            stop,
        }
    }

    /// Counts one answered request; true for the one that spends the budget.
    fn count(&self) -> bool {
        self.answered
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1)
            == self.limit
    }

    /// Waits for the caller to close `stream` (anything it still sends is ignored), then
    /// reports the budget as spent.
    fn spend(&self, mut stream: Stream, peer: &str, log: &Log) {
        log.emit(
            record(
                Level::Warn,
                "api.budget_spent",
                format!(
                    "EMULATION: answered {} request(s) (ccc_app.exit_after); exiting once {peer} \
                     closes the connection",
                    self.limit
                ),
            )
            .field("requests", self.limit),
        );
        let mut sink = [0u8; 512];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        drop(stream);
        let _ = self.stop.send(Stop::Served(self.limit));
    }
}

/// Numbers requests for the log.
static REQUESTS: AtomicU64 = AtomicU64::new(1);

/// Requests answered so far by this process (an error frame counts), for the heartbeat.
static ANSWERED: AtomicU64 = AtomicU64::new(0);

/// Requests answered so far by this process.
#[must_use]
pub fn requests_answered() -> u64 {
    ANSWERED.load(Ordering::Relaxed)
}

/// Serves until `accept` fails for good; returns that error. One thread per connection, at
/// most `max_connections` at once (more are closed at once, with a console line). With
/// `exit_after` (emulation), its budget's end is reported through its channel.
pub fn serve(
    listener: &dyn Listener,
    app: Arc<App>,
    log: Log,
    max_connections: usize,
    exit_after: Option<Arc<ExitAfter>>,
) -> io::Error {
    let turned_away = log.clone();
    accept_loop(
        listener,
        max_connections,
        "ccc-enclave-api",
        &|peer| {
            turned_away.emit(
                record(
                    Level::Warn,
                    "api.turned_away",
                    format!(
                        "turned {peer} away: {max_connections} connections are open \
                         (CCC_APP_MAX_CONNECTIONS)"
                    ),
                )
                .field("peer", peer)
                .field("max_connections", max_connections),
            );
        },
        move |stream, peer| connection(stream, peer, &app, &log, exit_after.as_deref()),
    )
}

/// A connection-level problem (not a request's outcome).
fn connection_record(peer: &str, problem: String) -> ccc_sdk::log::Record {
    record(
        Level::Warn,
        "api.connection",
        format!("connection from {peer}: {problem}"),
    )
    .field("peer", peer)
}

/// The record of one answered request.
fn outcome_record(
    id: u64,
    op: &'static str,
    peer: &str,
    started: Instant,
    response: &Response,
) -> ccc_sdk::log::Record {
    let latency = started.elapsed().as_secs_f64();
    let (level, outcome, message) = match response {
        Response::Error(failure) => (
            Level::Warn,
            failure.code.as_str(),
            format!("#{id} {op}: FAILED at {failure}"),
        ),
        _ => (Level::Info, "ok", format!("#{id} {op}: ok")),
    };
    let mut record = record(level, "api.request", message)
        .field("id", id)
        .field("op", op)
        .field("outcome", outcome)
        .field("latency_seconds", latency)
        .field("peer", peer);
    if let Response::Error(failure) = response {
        record = record.field("step", failure.step.as_str());
    }
    record
}

fn send(stream: &mut Stream, response: &Response) -> io::Result<()> {
    protocol::write_frame(stream, &protocol::encode_response(response))
}

/// Answers requests on one connection until the peer closes it or breaks the framing (or,
/// in emulation, the [`ExitAfter`] budget is spent).
fn connection(
    mut stream: Stream,
    peer: &str,
    app: &App,
    log: &Log,
    exit_after: Option<&ExitAfter>,
) {
    if let Err(e) = stream.set_timeouts(IDLE_TIMEOUT) {
        log.emit(connection_record(peer, format!("cannot set timeouts: {e}")));
        return;
    }
    loop {
        let payload = match protocol::read_frame(&mut stream) {
            Ok(Some(payload)) => payload,
            Ok(None) => return,
            Err(ProtocolError::FrameLength(n)) => {
                let failure = Failure::new(
                    ErrorCode::TooLarge,
                    "read the request frame",
                    format!(
                        "the frame announces {n} bytes; frames carry 1 to {} (closing the \
                         connection)",
                        protocol::MAX_FRAME_LEN
                    ),
                );
                log.emit(connection_record(peer, failure.to_string()));
                let _ = send(&mut stream, &Response::Error(failure));
                return;
            }
            Err(ProtocolError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                log.emit(connection_record(
                    peer,
                    format!("idle for {IDLE_TIMEOUT:?}, closed"),
                ));
                return;
            }
            Err(e) => {
                log.emit(connection_record(peer, e.to_string()));
                return;
            }
        };
        let id = REQUESTS.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let (op, response) = match protocol::decode_request(&payload) {
            Ok(request) => {
                let op = request.op();
                log.emit(
                    record(
                        Level::Debug,
                        "api.received",
                        format!("#{id} {op} from {peer}"),
                    )
                    .field("id", id)
                    .field("op", op)
                    .field("peer", peer),
                );
                let response = app.handle(request).unwrap_or_else(Response::Error);
                (op, response)
            }
            Err(failure) => {
                log.emit(
                    record(
                        Level::Warn,
                        "api.refused",
                        format!("#{id} from {peer}: refused: {failure}"),
                    )
                    .field("id", id)
                    .field("peer", peer)
                    .field("code", failure.code.as_str()),
                );
                ("invalid", Response::Error(failure))
            }
        };
        drop(payload);
        if let Response::Attest { document, .. } = &response {
            log.emit(
                record(
                    Level::Debug,
                    "attestation.document",
                    format!(
                        "#{id} attest: attestation document of {} bytes",
                        document.len()
                    ),
                )
                .field("purpose", "attest")
                .field("bytes", document.len()),
            );
        }
        log.emit(outcome_record(id, op, peer, started, &response));
        ANSWERED.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = send(&mut stream, &response) {
            log.emit(connection_record(
                peer,
                format!("#{id}: cannot send the answer: {e}"),
            ));
            return;
        }
        if let Some(budget) = exit_after.filter(|b| b.count()) {
            budget.spend(stream, peer, log);
            return;
        }
    }
}
