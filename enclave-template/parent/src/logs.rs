//! The parent's end of the log channel (docs/log-protocol.md): the enclave connects to the
//! log port (vsock 8003 by default; `<uds-path>_8003` under QEMU; TCP in development) and
//! writes one JSON record per line. Each record is checked (`ccc_sdk::log::decode`), counted in
//! the metrics (which also makes it a heartbeat), and written to stdout as one JSON line tagged
//! with the enclave's CID and the time it arrived — journald-friendly: systemd stores each line
//! as one journal entry.
//!
//! The enclave's bytes are untrusted: a line longer than `ccc_sdk::log::MAX_LINE_LEN` is
//! skipped up to its end, a line that does not decode is dropped; both are counted
//! (`ccc_parent_log_lines_malformed_total`) and the first few of each connection are named on
//! stderr. Nothing the enclave wrote reaches stdout except the members the reader checked,
//! re-encoded. Writing to stdout may block (a slow journal); then this connection stops
//! reading, and the enclave's queue drops its oldest records instead of blocking it.

use crate::metrics::Metrics;
use crate::service::{CONNECTION_STACK, Closer, Log, Services};
use ccc_sdk::log::{self, MAX_LINE_LEN};
use ccc_sdk::net::Stream;
use ccc_sdk::time::UnixMillis;
use serde_json::Value as Json;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Log connections at once (an enclave keeps one; a few more ride out a reconnection).
pub const MAX_CONNECTIONS: usize = 8;

/// How long a log connection may stay silent before it is closed (the enclave's heartbeat
/// comes every 10 s; it reconnects when it has something to say).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Malformed lines named on stderr per connection (the rest are only counted).
const NAMED_MALFORMED: u32 = 5;

/// Where received records go: one JSON object per line.
pub struct Journal {
    out: Mutex<Box<dyn Write + Send>>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Journal")
    }
}

impl Journal {
    /// Lines to stdout.
    #[must_use]
    pub fn stdout() -> Self {
        Self::with_writer(Box::new(io::stdout()))
    }

    /// Lines to `out` (tests).
    #[must_use]
    pub fn with_writer(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    /// Writes one line (a `\n` is added) and flushes it.
    ///
    /// # Errors
    /// The write failed.
    pub fn write(&self, line: &str) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// The enclave's CID for a connection: the vsock peer's, else the configured one.
fn cid_of(stream: &Stream, configured: Option<u32>) -> Option<u32> {
    match stream {
        Stream::Vsock(s) => Some(s.peer_addr().cid),
        _ => configured,
    }
}

/// Serves the log channel on `listener`. `enclave_cid` tags records that arrive where the
/// CID cannot be read (vhost-device-vsock's Unix sockets, TCP).
///
/// # Errors
/// The accept thread could not be started.
pub fn serve(
    services: &mut Services,
    listener: crate::net::Bound,
    journal: Arc<Journal>,
    enclave_cid: Option<u32>,
) -> io::Result<()> {
    let log = services.log().clone();
    let metrics = Arc::clone(services.metrics());
    let tracker = Arc::clone(services.tracker());
    services.listen(listener, move |stream: Stream| {
        let peer = stream.describe_peer();
        let closer: Closer = match &stream {
            Stream::Tcp(s) => match s.try_clone() {
                Ok(s) => Box::new(move || {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }),
                Err(_) => Box::new(|| {}),
            },
            Stream::Unix(s) => match s.try_clone() {
                Ok(s) => Box::new(move || {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }),
                Err(_) => Box::new(|| {}),
            },
            Stream::Vsock(s) => match s.as_fd().try_clone_to_owned() {
                Ok(fd) => Box::new(move || {
                    let _ = ccc_sys::socket::shutdown(fd.as_fd(), std::net::Shutdown::Both);
                }),
                Err(_) => Box::new(|| {}),
            },
            _ => Box::new(|| {}),
        };
        let Some(tracked) = tracker.admit(MAX_CONNECTIONS, closer) else {
            log.line(format_args!(
                "log channel: turned {peer} away ({MAX_CONNECTIONS} connections open)"
            ));
            return;
        };
        let cid = cid_of(&stream, enclave_cid);
        let (thread_log, metrics, journal) =
            (log.clone(), Arc::clone(&metrics), Arc::clone(&journal));
        let spawned = std::thread::Builder::new()
            .name("ccc-parent-logs".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let log = thread_log;
                let _tracked = tracked;
                if log.connections {
                    log.line(format_args!("log channel: {peer} connected"));
                }
                let counts = receive(stream, cid, &peer, &journal, &metrics, &log);
                if log.connections || counts.malformed > 0 {
                    log.line(format_args!(
                        "log channel: {peer} closed after {} record(s), {} malformed line(s)",
                        counts.records, counts.malformed
                    ));
                }
            });
        if let Err(e) = spawned {
            log.line(format_args!(
                "log channel: cannot start a connection thread: {e}"
            ));
        }
    })
}

/// What one connection carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Records received.
    pub records: u64,
    /// Lines refused.
    pub malformed: u64,
}

/// Reads records from `stream` until it ends (or idles out), handling each line.
pub fn receive(
    stream: Stream,
    cid: Option<u32>,
    peer: &str,
    journal: &Journal,
    metrics: &Metrics,
    log: &Log,
) -> Counts {
    let mut counts = Counts::default();
    if let Err(e) = stream.set_timeouts(IDLE_TIMEOUT) {
        log.line(format_args!("log channel: {peer}: {e}"));
        return counts;
    }
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    let refuse = |counts: &mut Counts, why: &dyn fmt::Display| {
        counts.malformed += 1;
        metrics.malformed_line();
        if counts.malformed <= u64::from(NAMED_MALFORMED) {
            log.line(format_args!(
                "log channel: {peer}: line dropped: {why}{}",
                if counts.malformed == u64::from(NAMED_MALFORMED) {
                    " (further malformed lines on this connection are only counted)"
                } else {
                    ""
                }
            ));
        }
    };
    loop {
        let buffer = match reader.fill_buf() {
            Ok([]) => break,
            Ok(buffer) => buffer,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let (chunk, ends_line) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (buffer.get(..at).unwrap_or_default(), true),
            None => (buffer, false),
        };
        let used = chunk.len() + usize::from(ends_line);
        if !skipping {
            if line.len() + chunk.len() >= MAX_LINE_LEN {
                skipping = true;
                refuse(
                    &mut counts,
                    &log::LineError::TooLong {
                        len: line.len() + chunk.len(),
                    },
                );
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if !ends_line {
            continue;
        }
        if skipping {
            skipping = false;
            continue;
        }
        match log::decode(&line) {
            Ok(record) => {
                counts.records += 1;
                metrics.record(&record);
                let tagged = record.to_json_with(&[
                    ("source", Json::String("enclave".into())),
                    ("cid", cid.map_or(Json::Null, |c| Json::Number(c.into()))),
                    ("received", Json::String(UnixMillis::now().to_string())),
                ]);
                if let Err(e) = journal.write(&tagged) {
                    log.line(format_args!(
                        "log channel: cannot write a record to stdout: {e}"
                    ));
                }
            }
            Err(e) => refuse(&mut counts, &e),
        }
        line.clear();
    }
    if !line.is_empty() && !skipping {
        refuse(&mut counts, &"the connection ended inside a line");
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_sdk::log::{Level, Record};
    use std::os::unix::net::UnixStream;

    /// A journal whose lines the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn record(n: u64) -> String {
        Record::new(
            UnixMillis(1_795_914_386_000),
            Level::Info,
            "api.request",
            format!("#{n} hmac: ok"),
        )
        .field("op", "hmac")
        .field("outcome", "ok")
        .encode(n, 0)
    }

    /// Whole records are tagged and written; garbage, over-long lines and a cut-off last line
    /// are dropped and counted; what follows a bad line is still read.
    #[test]
    fn records_are_tagged_and_bad_lines_counted_and_dropped() {
        let (mut enclave, parent) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(record(1).as_bytes());
            bytes.extend_from_slice(b"{\"not\":\"a record\"}\n");
            bytes.extend_from_slice(&vec![b'x'; MAX_LINE_LEN * 2]);
            bytes.extend_from_slice(b"\n\xff\xfe\n");
            bytes.extend_from_slice(record(2).as_bytes());
            bytes.extend_from_slice(record(3).trim_end().as_bytes());
            enclave.write_all(&bytes).unwrap();
        });
        let out = Shared::default();
        let journal = Journal::with_writer(Box::new(out.clone()));
        let metrics = Metrics::new();
        let (log, lines) = Log::capture(false);
        let counts = receive(
            Stream::Unix(parent),
            Some(16),
            "unix peer",
            &journal,
            &metrics,
            &log,
        );
        writer.join().unwrap();
        assert_eq!(
            counts,
            Counts {
                records: 2,
                malformed: 4
            }
        );
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let written: Vec<&str> = written.lines().collect();
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(
            written[0].starts_with(r#"{"source":"enclave","cid":16,"received":""#),
            "{}",
            written[0]
        );
        assert!(written[1].contains(r##""message":"#2 hmac: ok""##));
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("ccc_parent_log_lines_malformed_total 4"),
            "{text}"
        );
        assert!(
            text.contains(r#"ccc_enclave_api_requests_total{operation="hmac",outcome="ok"} 2"#),
            "{text}"
        );
        let lines = lines.lock().unwrap();
        assert!(
            lines.iter().any(|l| l.contains("a log line of")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("the connection ended inside a line")),
            "{lines:?}"
        );
        // The peer's bytes are not quoted.
        assert!(!lines.iter().any(|l| l.contains("xxxx")), "{lines:?}");
    }
}
