//! The log channel's sending end (feature `std`): a bounded queue and one sender thread that
//! connects to the parent's log port (`vsock://3:8003` by default), writes each record as a
//! line, and reconnects with backoff when the parent goes away.
//!
//! [`Emitter::emit`] never blocks on I/O: it takes a short lock, appends the record and
//! returns. When the queue is full the oldest record is dropped, and the next line sent says
//! how many were (`dropped`). While the parent is unreachable records accumulate (and the
//! oldest drop); a line whose write fails is written again, whole, on the next connection. Lines
//! the kernel had already accepted when a connection broke are lost; the parent sees the gap in
//! `seq`.

use super::Record;
use crate::net::{Endpoint, Stream, Timeouts, TransportError};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use std::io::{self, Write};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Records held while the parent is slow or away: 1024 (at about 300 bytes a record, 300 KiB
/// at most).
pub const DEFAULT_CAPACITY: usize = 1024;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one write may block before the connection is given up (a parent that stopped
/// reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first wait after a failed connection; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the records go and how many are held.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The parent's log port.
    pub endpoint: Endpoint,
    /// Records held at most ([`DEFAULT_CAPACITY`]); at least 1.
    pub capacity: usize,
}

impl Config {
    /// Records to `endpoint`, [`DEFAULT_CAPACITY`] held.
    #[must_use]
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// Holds at most `capacity` records (at least 1).
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }
}

/// Counters of an emitter, for heartbeats and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Records accepted by [`Emitter::emit`].
    pub emitted: u64,
    /// Lines written to the parent (a line written again after a reconnection counts again).
    pub sent: u64,
    /// Records dropped because the queue was full.
    pub dropped: u64,
    /// Records waiting now.
    pub queued: usize,
    /// Whether a connection to the parent is open now.
    pub connected: bool,
    /// Connections opened so far.
    pub connections: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(u64, Record)>,
    /// Dropped since the last line was taken for sending.
    dropped_pending: u64,
    /// The line the sender holds (taken from the queue, not yet written).
    in_flight: bool,
    stop: bool,
    stats: Stats,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    state: Mutex<State>,
    /// Signalled when a record arrives or the emitter stops.
    wake: Condvar,
    /// Signalled when the queue empties and nothing is in flight.
    idle: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the sender thread when the last handle goes.
#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.wake.notify_all();
    }
}

/// The sending end of the log channel. Cheap to clone; the sender thread stops when the last
/// clone is dropped (records still queued then are not sent: call [`Emitter::flush`] first).
#[derive(Clone)]
pub struct Emitter {
    owner: Arc<Owner>,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("endpoint", &self.owner.0.config.endpoint)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Emitter {
    /// Starts the sender thread (`ccc-log-sender`). It connects when the first record arrives.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(config: Config) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            idle: Condvar::new(),
        });
        let sender = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ccc-log-sender".into())
            .spawn(move || send_loop(&sender))?;
        Ok(Self {
            owner: Arc::new(Owner(shared)),
        })
    }

    /// Where the records go.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.owner.0.config.endpoint
    }

    /// Queues `record`; never waits for the network. When the queue is full the oldest record
    /// is dropped and counted (the next line sent carries the count).
    pub fn emit(&self, record: Record) {
        let shared = &self.owner.0;
        let mut state = shared.lock();
        state.stats.emitted += 1;
        let seq = state.stats.emitted;
        if state.queue.len() >= shared.config.capacity.max(1) {
            state.queue.pop_front();
            state.dropped_pending += 1;
            state.stats.dropped += 1;
        }
        state.queue.push_back((seq, record));
        drop(state);
        shared.wake.notify_one();
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let state = self.owner.0.lock();
        Stats {
            queued: state.queue.len() + usize::from(state.in_flight),
            ..state.stats
        }
    }

    /// Waits until every record queued so far is written (or dropped), at most `timeout`:
    /// what an enclave does before it exits, so its last words reach the parent. Returns
    /// whether the queue drained.
    #[must_use]
    pub fn flush(&self, timeout: Duration) -> bool {
        let shared = &self.owner.0;
        let until = Instant::now() + timeout;
        let mut state = shared.lock();
        while !state.queue.is_empty() || state.in_flight {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            state = shared
                .idle
                .wait_timeout(state, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// Takes the next line to send, waiting for one; `None` when stopped.
fn next_line(shared: &Shared) -> Option<String> {
    let mut state = shared.lock();
    loop {
        if state.stop {
            return None;
        }
        if let Some((seq, record)) = state.queue.pop_front() {
            let dropped = core::mem::take(&mut state.dropped_pending);
            state.in_flight = true;
            drop(state);
            return Some(record.encode(seq, dropped));
        }
        shared.idle.notify_all();
        state = shared
            .wake
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Waits `delay` unless the emitter stops first; whether it stopped.
fn pause(shared: &Shared, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    let mut state = shared.lock();
    while !state.stop {
        let now = Instant::now();
        if now >= until {
            return false;
        }
        state = shared
            .wake
            .wait_timeout(state, until - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}

fn connect(endpoint: &Endpoint) -> Result<Stream, TransportError> {
    Stream::connect(
        endpoint,
        &Timeouts {
            connect: CONNECT_TIMEOUT,
            io: WRITE_TIMEOUT,
        },
    )
}

fn send_loop(shared: &Shared) {
    let mut connection: Option<Stream> = None;
    let mut backoff = FIRST_BACKOFF;
    while let Some(line) = next_line(shared) {
        loop {
            if connection.is_none() {
                match connect(&shared.config.endpoint) {
                    Ok(stream) => {
                        backoff = FIRST_BACKOFF;
                        let mut state = shared.lock();
                        state.stats.connected = true;
                        state.stats.connections += 1;
                        connection = Some(stream);
                    }
                    Err(_) => {
                        if pause(shared, backoff) {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let written = connection
                .as_mut()
                .map(|stream| stream.write_all(line.as_bytes()));
            match written {
                Some(Ok(())) => {
                    let mut state = shared.lock();
                    state.stats.sent += 1;
                    state.in_flight = false;
                    if state.queue.is_empty() {
                        shared.idle.notify_all();
                    }
                    break;
                }
                _ => {
                    connection = None;
                    shared.lock().stats.connected = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Level, decode};
    use crate::time::UnixMillis;
    use alloc::format;
    use alloc::vec::Vec;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn record(n: u64) -> Record {
        Record::new(UnixMillis(0), Level::Info, "test.n", format!("record {n}")).field("n", n)
    }

    fn endpoint(listener: &TcpListener) -> Endpoint {
        Endpoint::tcp("127.0.0.1", listener.local_addr().unwrap().port())
    }

    /// With nobody listening, emit returns at once, the queue keeps the newest `capacity`
    /// records, and the first line sent once the parent listens reports the drops.
    #[test]
    fn a_full_queue_drops_the_oldest_and_the_next_line_says_so() {
        // A port that refuses: bind, note it, close.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = endpoint(&closed);
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let emitter = Emitter::start(Config::new(target).with_capacity(4)).unwrap();
        for n in 1..=10 {
            emitter.emit(record(n));
        }
        let stats = emitter.stats();
        assert_eq!(stats.emitted, 10);
        assert!(stats.dropped >= 5, "{stats:?}");
        assert!(stats.queued <= 5, "{stats:?}");
        assert!(!emitter.flush(Duration::from_millis(1)), "nobody listens");

        // The parent comes up on the same port.
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut lines = BufReader::new(stream).lines();
        let mut received = Vec::new();
        while received
            .last()
            .is_none_or(|r: &crate::log::Received| r.seq < 10)
        {
            let line = lines.next().unwrap().unwrap();
            received.push(decode(line.as_bytes()).unwrap());
        }
        // The newest records arrive in order; the dropped ones are counted on the first line
        // taken after they were dropped, and seq numbers account for every one of them.
        let seqs: Vec<u64> = received.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let dropped: u64 = received.iter().map(|r| r.dropped).sum();
        assert_eq!(dropped, emitter.stats().dropped);
        assert_eq!(
            dropped + received.len() as u64,
            10,
            "every record either arrived or was counted as dropped: {seqs:?}"
        );
        assert_eq!(received.last().unwrap().message, "record 10");
        assert!(emitter.flush(Duration::from_secs(60)));
    }

    /// A parent that goes away and comes back gets the records emitted meanwhile.
    #[test]
    fn the_sender_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let emitter = Emitter::start(Config::new(endpoint(&listener))).unwrap();
        emitter.emit(record(1));
        let (first, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(first);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(decode(line.as_bytes()).unwrap().seq, 1);
        assert!(emitter.flush(Duration::from_secs(60)));
        // The parent restarts: its end closes. The next writes fail and the sender reconnects.
        drop(reader);
        for n in 2..=50 {
            emitter.emit(record(n));
        }
        let (second, _) = listener.accept().unwrap();
        let mut last = 0;
        for line in BufReader::new(second).lines() {
            let received = decode(line.unwrap().as_bytes()).unwrap();
            last = received.seq;
            if last == 50 {
                break;
            }
        }
        assert_eq!(last, 50);
        assert!(emitter.stats().connections >= 2);
    }
}
