//! The proxy's byte relay: the state of one proxied connection's two directions (enclave →
//! upstream, upstream → enclave), advanced by the event loop ([`crate::event_loop`]) whenever
//! one of its two sockets becomes ready. Nothing here blocks or waits: every socket is
//! `O_NONBLOCK`, pipes are used with `SPLICE_F_NONBLOCK`, and an operation that would block
//! only clears the socket's readiness until the loop reports it again.
//!
//! Each direction starts with `read`/`write` through a small buffer (a KMS request and its
//! answer are a few KiB: no pipe is worth creating) and switches to a pipe when a read fills
//! the buffer, i.e. when bulk data flows; `splice(2)` then moves bytes socket → pipe → socket
//! without copying them through user space. A descriptor that cannot be spliced (`EINVAL`)
//! stays with the buffer.
//!
//! Semantics (the same for both directions):
//! - end of file on a side is passed on as a half-close (`shutdown(SHUT_WR)`) of the other
//!   side once every byte read before it has been written; the relay is done when both
//!   directions have ended;
//! - a read or write error (reset, a write to a closed peer) breaks the relay: the loop ends
//!   both sides at once;
//! - the idle deadline is the loop's: [`Step::progress`] tells it that something moved.
//!
//! Readiness is edge-triggered ([`Ready`]): a socket reported readable stays "readable" here
//! until a read says it would block, so no event is lost between turns. A direction makes at
//! most [`ROUNDS_PER_TURN`] fill/flush rounds per turn; if it could still move, the turn
//! says so ([`Step::more`]) and the loop comes back to it after the other connections.

use crate::net::Conn;
use ccc_sys::epoll::{ERROR, HANG_UP, Interest, READ_HANG_UP, READABLE, WRITABLE};
use ccc_sys::pipe::{pipe, splice};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Pipe capacity asked for per direction: large enough that one `splice` pair moves what a
/// loopback socket hands over at once. The kernel may give less (the 64 KiB default, or less
/// once an unprivileged user's pipes pass `/proc/sys/fs/pipe-user-pages-soft`): the relay
/// works with any size.
pub const PIPE_CAPACITY: usize = 256 * 1024;

/// Buffer per direction until bulk data flows (and for descriptors that cannot be spliced).
/// It also holds what the proxy itself sends first (the CONNECT answer) and what a client
/// sent after its CONNECT head, so it must hold [`crate::proxy::MAX_CONNECT_HEAD`].
pub const BUFFER: usize = 16 * 1024;

/// Fill/flush rounds one direction may make per turn before other connections get theirs.
pub const ROUNDS_PER_TURN: usize = 8;

/// What the event loop last reported for one socket, kept until an operation would block.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// A read may make progress (data, end of file, or an error to collect).
    pub readable: bool,
    /// A write may make progress (room, or an error to collect).
    pub writable: bool,
}

impl Ready {
    /// Adds what an `epoll` event says. A hang-up or an error makes both true: the next read
    /// or write collects it.
    pub fn note(&mut self, events: Interest) {
        let failed = events & (HANG_UP | ERROR) != 0;
        self.readable |= failed || events & (READABLE | READ_HANG_UP) != 0;
        self.writable |= failed || events & WRITABLE != 0;
    }
}

/// Where a direction's bytes wait between reading and writing.
enum Spool {
    /// Bytes in a pipe (`pending` of them), moved with `splice`.
    Pipe {
        read: OwnedFd,
        write: OwnedFd,
        capacity: usize,
        pending: usize,
    },
    /// Bytes in `data[start..end]`, moved with `read`/`write`.
    Buffer {
        data: Box<[u8]>,
        start: usize,
        end: usize,
    },
}

impl Spool {
    fn buffer() -> Self {
        Self::Buffer {
            data: vec![0u8; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// A pipe instead of the (empty) buffer, if the system gives one.
    fn upgrade(&mut self) {
        if let Ok((read, write, capacity)) = pipe(PIPE_CAPACITY)
            && capacity > 0
        {
            *self = Self::Pipe {
                read,
                write,
                capacity,
                pending: 0,
            };
        }
    }

    fn is_pipe(&self) -> bool {
        matches!(self, Self::Pipe { .. })
    }

    fn pending(&self) -> usize {
        match self {
            Self::Pipe { pending, .. } => *pending,
            Self::Buffer { start, end, .. } => end - start,
        }
    }

    /// Bytes a fill may add now: a pipe takes more while it still holds some; the buffer is
    /// filled only when empty (no compaction: it is small and refilled from the start).
    fn room(&self) -> usize {
        match self {
            Self::Pipe {
                capacity, pending, ..
            } => capacity.saturating_sub(*pending),
            Self::Buffer { data, start, end } if start == end => data.len(),
            Self::Buffer { .. } => 0,
        }
    }

    /// Puts `bytes` in the (empty) buffer, to be written first; false if they do not fit.
    fn preload(&mut self, bytes: &[u8]) -> bool {
        match self {
            Self::Buffer { data, start, end } if start == end => {
                let Some(slot) = data.get_mut(..bytes.len()) else {
                    return false;
                };
                slot.copy_from_slice(bytes);
                *start = 0;
                *end = bytes.len();
                true
            }
            _ => false,
        }
    }

    /// Reads from `from` into the spool's room; 0 means end of file. Returns whether the
    /// read filled the room, i.e. more is probably waiting.
    fn fill(&mut self, from: &Conn) -> io::Result<(usize, bool)> {
        let room = self.room();
        match self {
            Self::Pipe { write, pending, .. } => {
                let n = splice(from.as_fd(), write.as_fd(), room)?;
                *pending += n;
                Ok((n, n == room))
            }
            Self::Buffer { data, start, end } => {
                let n = { from }.read(data)?;
                *start = 0;
                *end = n;
                Ok((n, n == data.len()))
            }
        }
    }

    /// Writes pending bytes to `to`; returns how many went.
    fn flush(&mut self, to: &Conn) -> io::Result<usize> {
        match self {
            Self::Pipe { read, pending, .. } => {
                let n = splice(read.as_fd(), to.as_fd(), *pending)?;
                *pending -= n.min(*pending);
                Ok(n)
            }
            Self::Buffer { data, start, end } => {
                let chunk = data.get(*start..*end).unwrap_or_default();
                let n = { to }.write(chunk)?;
                *start += n.min(*end - *start);
                Ok(n)
            }
        }
    }
}

/// One direction: bytes from one socket to the other.
struct Direction {
    spool: Spool,
    /// Whether to move to a pipe once bulk data flows (until splicing fails).
    splice: bool,
    /// A read has filled the spool: bulk data flows.
    bulk: bool,
    /// The source has not reached end of file.
    open: bool,
    /// End of file has been passed on to the destination.
    ended: bool,
    /// Bytes written to the destination.
    moved: u64,
}

/// What one direction's turn did.
#[derive(Debug, Default, Clone, Copy)]
struct Moved {
    /// Bytes moved, end of file seen or passed on.
    progress: bool,
    /// The turn ended with work still possible (the round budget ran out).
    more: bool,
}

/// What [`Relay::turn`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Something moved (or an end of file was seen or passed on): the idle clock restarts.
    pub progress: bool,
    /// A direction stopped with work still possible: come back after the others.
    pub more: bool,
    /// Both directions have ended: the connection is finished.
    pub done: bool,
}

/// Whether an error only means "not now".
fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Direction {
    fn new(splice: bool) -> Self {
        Self {
            spool: Spool::buffer(),
            splice,
            bulk: false,
            open: true,
            ended: false,
            moved: 0,
        }
    }

    /// Moves what can move now from `from` (readable as `readable` says) to `to` (writable as
    /// `writable` says): writes what is pending, reads more into the spool's room, and passes
    /// on end of file once everything before it is written. Clears a readiness flag when its
    /// operation would block.
    ///
    /// # Errors
    /// A read or write failure other than "would block": the connection is broken.
    fn turn(
        &mut self,
        from: &Conn,
        readable: &mut bool,
        to: &Conn,
        writable: &mut bool,
    ) -> io::Result<Moved> {
        let mut moved = Moved::default();
        for round in 0..=ROUNDS_PER_TURN {
            let can_write = *writable && self.spool.pending() > 0;
            let can_read = *readable && self.open && self.spool.room() > 0;
            if !can_write && !can_read {
                break;
            }
            if round == ROUNDS_PER_TURN {
                moved.more = true;
                break;
            }
            if can_write {
                match self.spool.flush(to) {
                    Ok(n) => {
                        self.moved += n as u64;
                        moved.progress = true;
                    }
                    Err(e) if would_block(&e) => *writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if !(*readable && self.open && self.spool.room() > 0) {
                continue;
            }
            if self.bulk && self.splice && !self.spool.is_pipe() && self.spool.pending() == 0 {
                self.spool.upgrade();
                self.splice = self.spool.is_pipe();
            }
            match self.spool.fill(from) {
                Ok((0, _)) => {
                    self.open = false;
                    moved.progress = true;
                }
                Ok((_, full)) => {
                    moved.progress = true;
                    self.bulk |= full;
                }
                Err(e) if would_block(&e) => *readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.raw_os_error() == Some(ccc_sys::libc::EINVAL) && self.spool.is_pipe() =>
                {
                    // This descriptor cannot be spliced: back to the buffer, for good. Bytes
                    // already in the pipe are flushed first.
                    self.splice = false;
                    if self.spool.pending() == 0 {
                        self.spool = Spool::buffer();
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !self.open && self.spool.pending() == 0 && !self.ended {
            to.shutdown(true);
            self.ended = true;
            moved.progress = true;
        }
        Ok(moved)
    }
}

/// Both directions of one proxied connection.
pub struct Relay {
    /// Client (enclave side) → upstream.
    up: Direction,
    /// Upstream → client.
    down: Direction,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("moved", &self.moved())
            .field("spliced", &self.spliced())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay with empty spools; `splice` allows the switch to pipes once bulk data flows.
    #[must_use]
    pub fn new(splice: bool) -> Self {
        Self {
            up: Direction::new(splice),
            down: Direction::new(splice),
        }
    }

    /// Queues `bytes` to be written upstream before anything read from the client (what the
    /// client sent after its CONNECT head); false if they do not fit in [`BUFFER`].
    #[must_use]
    pub fn preload_up(&mut self, bytes: &[u8]) -> bool {
        self.up.spool.preload(bytes)
    }

    /// Queues `bytes` to be written to the client first (the CONNECT answer); false if they
    /// do not fit in [`BUFFER`].
    #[must_use]
    pub fn preload_down(&mut self, bytes: &[u8]) -> bool {
        self.down.spool.preload(bytes)
    }

    /// One turn: moves what can move now in both directions.
    ///
    /// # Errors
    /// A read or write failure other than "would block" on either socket: the connection is
    /// broken and both sides should be ended.
    pub fn turn(
        &mut self,
        client: &Conn,
        client_ready: &mut Ready,
        upstream: &Conn,
        upstream_ready: &mut Ready,
    ) -> io::Result<Step> {
        let up = if self.up.ended {
            Moved::default()
        } else {
            self.up.turn(
                client,
                &mut client_ready.readable,
                upstream,
                &mut upstream_ready.writable,
            )?
        };
        let down = if self.down.ended {
            Moved::default()
        } else {
            self.down.turn(
                upstream,
                &mut upstream_ready.readable,
                client,
                &mut client_ready.writable,
            )?
        };
        Ok(Step {
            progress: up.progress || down.progress,
            more: up.more || down.more,
            done: self.up.ended && self.down.ended,
        })
    }

    /// Bytes written (upstream, to the client).
    #[must_use]
    pub fn moved(&self) -> (u64, u64) {
        (self.up.moved, self.down.moved)
    }

    /// Whether bulk data made a direction switch to `splice` (up, down).
    #[must_use]
    pub fn spliced(&self) -> (bool, bool) {
        (self.up.spool.is_pipe(), self.down.spool.is_pipe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_sys::poll::{PollFd, poll};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    /// Turns `relay` until it is done or breaks, waiting in `poll` (level-triggered: every
    /// wait reports the sockets' current state, a stricter driver than the loop's edges).
    fn drive(relay: &mut Relay, client: &Conn, upstream: &Conn) -> io::Result<()> {
        ccc_sys::fd::set_nonblocking(client.as_fd(), true)?;
        ccc_sys::fd::set_nonblocking(upstream.as_fd(), true)?;
        let mut client_ready = Ready::default();
        let mut upstream_ready = Ready::default();
        loop {
            let step = relay.turn(client, &mut client_ready, upstream, &mut upstream_ready)?;
            if step.done {
                return Ok(());
            }
            if step.more {
                continue;
            }
            let want = |ready: &Ready| {
                let mut events = 0;
                if !ready.readable {
                    events |= ccc_sys::poll::READABLE;
                }
                if !ready.writable {
                    events |= ccc_sys::poll::WRITABLE;
                }
                events
            };
            let mut fds = [
                PollFd::new(client.as_fd(), want(&client_ready)),
                PollFd::new(upstream.as_fd(), want(&upstream_ready)),
            ];
            poll(&mut fds, Some(Duration::from_secs(60)))?;
            let [c, u] = fds.map(|fd| fd.revents);
            for (ready, revents) in [(&mut client_ready, c), (&mut upstream_ready, u)] {
                let mut events = 0;
                if revents & ccc_sys::poll::READABLE != 0 {
                    events |= READABLE;
                }
                if revents & ccc_sys::poll::WRITABLE != 0 {
                    events |= WRITABLE;
                }
                if revents & (ccc_sys::poll::HANG_UP | ccc_sys::poll::ERROR) != 0 {
                    events |= HANG_UP;
                }
                ready.note(events);
            }
        }
    }

    /// A relay between a Unix socket pair's far end and a TCP connection's far end, on its
    /// own thread; returns the near ends and the thread.
    fn start(
        splice: bool,
    ) -> (
        UnixStream,
        TcpStream,
        std::thread::JoinHandle<(io::Result<()>, Relay)>,
    ) {
        let (client_near, client_far) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (upstream_far, _) = listener.accept().unwrap();
        let handle = std::thread::spawn(move || {
            let mut relay = Relay::new(splice);
            let client = Conn::Unix(client_far);
            let upstream = Conn::Tcp(upstream_far);
            let outcome = drive(&mut relay, &client, &upstream);
            (outcome, relay)
        });
        (client_near, upstream_near, handle)
    }

    #[test]
    fn readiness_follows_the_events_and_failures_make_both_ready() {
        let mut ready = Ready::default();
        ready.note(READABLE);
        assert_eq!(
            ready,
            Ready {
                readable: true,
                writable: false
            }
        );
        let mut ready = Ready::default();
        ready.note(WRITABLE);
        assert!(!ready.readable && ready.writable);
        for failure in [HANG_UP, ERROR] {
            let mut ready = Ready::default();
            ready.note(failure);
            assert!(ready.readable && ready.writable, "{failure:#x}");
        }
    }

    #[test]
    fn bytes_and_half_closes_pass_both_ways() {
        let (mut client, mut upstream, relay) = start(true);
        // More than a pipe holds, so the relay must flush and refill many times.
        let request: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = request.clone();
        let writer = std::thread::spawn(move || {
            client.write_all(&sent).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).unwrap();
            reply
        });
        let mut received = Vec::new();
        upstream.read_to_end(&mut received).unwrap();
        assert!(received == request, "the request arrived changed");
        upstream.write_all(b"reply after the half-close").unwrap();
        upstream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(writer.join().unwrap(), b"reply after the half-close");
        let (outcome, relay) = relay.join().unwrap();
        outcome.unwrap();
        assert_eq!(relay.moved(), (3_000_000, 26));
        // Bulk upward switched to splice; 26 bytes downward did not need a pipe.
        assert_eq!(relay.spliced(), (true, false));
    }

    #[test]
    fn without_splice_the_buffer_carries_everything() {
        let (mut client, mut upstream, relay) = start(false);
        let sender = std::thread::spawn(move || {
            upstream.write_all(&vec![9u8; 4 << 20]).unwrap();
            upstream.shutdown(std::net::Shutdown::Write).unwrap();
            upstream
        });
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), 4 << 20);
        drop(sender.join().unwrap());
        let (outcome, relay) = relay.join().unwrap();
        outcome.unwrap();
        assert_eq!(relay.moved(), (0, 4 << 20));
        assert_eq!(relay.spliced(), (false, false));
    }

    #[test]
    fn more_than_every_buffer_holds_arrives_whole() {
        let (mut client, mut upstream, relay) = start(true);
        // Upstream sends more than the socket buffers and the pipe hold together, so the
        // relay must wait for the client side to drain instead of dropping or spinning.
        let sender = std::thread::spawn(move || {
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..16 {
                upstream.write_all(&chunk).unwrap();
            }
            upstream.shutdown(std::net::Shutdown::Write).unwrap();
            upstream
        });
        let mut received = Vec::new();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        client.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), 16 << 20);
        assert!(received.iter().all(|&b| b == 7));
        drop(sender.join().unwrap());
        let (outcome, relay) = relay.join().unwrap();
        outcome.unwrap();
        assert_eq!(relay.moved(), (0, 16 << 20));
        assert_eq!(relay.spliced(), (false, true));
    }

    #[test]
    fn preloaded_bytes_go_first() {
        let (mut client, mut upstream, relay) = {
            let (client_near, client_far) = UnixStream::pair().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let upstream_near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (upstream_far, _) = listener.accept().unwrap();
            let handle = std::thread::spawn(move || {
                let mut relay = Relay::new(true);
                assert!(relay.preload_up(b"early "));
                assert!(relay.preload_down(b"HTTP/1.1 200 Connection established\r\n\r\n"));
                assert!(!relay.preload_down(b"twice"), "the buffer is not empty");
                let outcome = drive(
                    &mut relay,
                    &Conn::Unix(client_far),
                    &Conn::Tcp(upstream_far),
                );
                (outcome, relay)
            });
            (client_near, upstream_near, handle)
        };
        client.write_all(b"late").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut up = Vec::new();
        upstream.read_to_end(&mut up).unwrap();
        assert_eq!(up, b"early late");
        upstream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut down = Vec::new();
        client.read_to_end(&mut down).unwrap();
        assert_eq!(down, b"HTTP/1.1 200 Connection established\r\n\r\n");
        relay.join().unwrap().0.unwrap();
        assert!(!Relay::new(true).preload_up(&vec![0u8; BUFFER + 1]));
    }

    #[test]
    fn a_reset_upstream_breaks_the_relay() {
        let (client, upstream, relay) = start(true);
        // SO_LINGER 0 makes close send a reset.
        socket2::SockRef::from(&upstream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(upstream);
        let (outcome, _) = relay.join().unwrap();
        assert!(outcome.is_err(), "a reset is an error, not an end of file");
        drop(client);
    }
}
