//! The proxy's byte relay: one thread per connection moves bytes both ways between the
//! enclave-side socket and the upstream socket. Each direction has a pipe, and `splice(2)`
//! moves bytes socket → pipe → socket without copying them through user space; `poll(2)`
//! waits for whichever side can make progress. A direction starts with `read`/`write`
//! through a small buffer (a KMS request and its answer are a few KiB: no pipe is worth
//! creating) and switches to a pipe when a read fills the buffer, i.e. when bulk data flows;
//! a descriptor that cannot be spliced (`EINVAL`) stays with the buffer.
//!
//! Semantics (the same for both directions):
//! - end of file on a side is passed on as a half-close (`shutdown(SHUT_WR)`) of the other
//!   side once every byte read before it has been written; the relay ends when both
//!   directions have ended;
//! - a read or write error (reset, a write to a closed peer) ends both sides at once;
//! - no byte moving in either direction for `idle` ends both sides.
//!
//! A slow or dead peer stalls only its own connection: nothing here blocks (every socket is
//! `O_NONBLOCK`, the pipes are used with `SPLICE_F_NONBLOCK`), and the only wait is `poll`.

use crate::net::Conn;
use ccc_sys::pipe::{pipe, splice};
use ccc_sys::poll::{ERROR, Events, HANG_UP, PollFd, READABLE, WRITABLE, poll};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Pipe capacity asked for per direction: large enough that one `splice` pair moves what a
/// loopback socket hands over at once. The kernel may give less (the 64 KiB default, or less
/// once an unprivileged user's pipes pass `/proc/sys/fs/pipe-user-pages-soft`): the relay
/// works with any size.
pub const PIPE_CAPACITY: usize = 256 * 1024;

/// Buffer per direction until bulk data flows (and for descriptors that cannot be spliced).
pub const BUFFER: usize = 16 * 1024;

/// Fill/flush rounds one direction may make per wake-up before the other gets its turn.
const ROUNDS_PER_WAKE: usize = 8;

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

    /// Reads from `from` into the (empty) spool; 0 means end of file. Returns whether the
    /// spool was full, i.e. more is probably waiting.
    fn fill(&mut self, from: &Conn) -> io::Result<(usize, bool)> {
        match self {
            Self::Pipe {
                write,
                capacity,
                pending,
                ..
            } => {
                let n = splice(from.as_fd(), write.as_fd(), *capacity)?;
                *pending += n;
                Ok((n, n == *capacity))
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

/// One direction: bytes from `from` to `to`.
struct Direction<'a> {
    from: &'a Conn,
    to: &'a Conn,
    spool: Spool,
    /// Whether to move to a pipe once bulk data flows (until splicing fails).
    splice: bool,
    /// A read has filled the spool: bulk data flows.
    bulk: bool,
    /// `from` has not reached end of file.
    open: bool,
    /// End of file has been passed on to `to`.
    ended: bool,
    /// Bytes written to `to`.
    moved: u64,
}

/// What one attempt at progress did.
enum Step {
    /// Nothing could move.
    Idle,
    /// Bytes moved or end of file was seen.
    Progress,
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl<'a> Direction<'a> {
    fn new(from: &'a Conn, to: &'a Conn) -> Self {
        Self {
            from,
            to,
            spool: Spool::buffer(),
            splice: true,
            bulk: false,
            open: true,
            ended: false,
            moved: 0,
        }
    }

    /// `POLLIN` wanted on `from`: open, and room in the spool (it is filled only when empty).
    fn wants_read(&self) -> bool {
        self.open && self.spool.pending() == 0
    }

    /// `POLLOUT` wanted on `to`: bytes are waiting.
    fn wants_write(&self) -> bool {
        self.spool.pending() > 0
    }

    /// Moves what can move now without blocking: write what is pending, read more when the
    /// spool is empty, and pass on end of file once everything before it is written.
    ///
    /// # Errors
    /// A read or write failure other than "would block": the connection is broken.
    fn advance(&mut self) -> io::Result<Step> {
        let mut step = Step::Idle;
        for _ in 0..ROUNDS_PER_WAKE {
            if self.spool.pending() > 0 {
                match self.spool.flush(self.to) {
                    Ok(n) => {
                        self.moved += n as u64;
                        step = Step::Progress;
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(e),
                }
                if self.spool.pending() > 0 {
                    // The peer's receive buffer is full: wait for POLLOUT.
                    break;
                }
            }
            if !self.open {
                break;
            }
            if self.bulk && self.splice && matches!(self.spool, Spool::Buffer { .. }) {
                // The spool is empty here.
                self.spool.upgrade();
                self.splice = self.spool.is_pipe();
            }
            match self.spool.fill(self.from) {
                Ok((0, _)) => {
                    self.open = false;
                    step = Step::Progress;
                    break;
                }
                Ok((_, full)) => {
                    step = Step::Progress;
                    self.bulk |= full;
                }
                Err(e) if would_block(&e) => break,
                Err(e)
                    if e.raw_os_error() == Some(ccc_sys::libc::EINVAL) && self.spool.is_pipe() =>
                {
                    // This descriptor cannot be spliced: back to the buffer, for good.
                    self.splice = false;
                    self.spool = Spool::buffer();
                }
                Err(e) => return Err(e),
            }
        }
        if !self.open && self.spool.pending() == 0 && !self.ended {
            self.to.shutdown(true);
            self.ended = true;
        }
        Ok(step)
    }
}

/// What a relay moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// Bytes written to upstream (client → upstream).
    pub up: u64,
    /// Bytes written to the client (upstream → client).
    pub down: u64,
    /// Whether bulk data made the directions switch to `splice` (up, down).
    pub spliced: (bool, bool),
}

impl Relayed {
    fn of(up: &Direction<'_>, down: &Direction<'_>) -> Self {
        Self {
            up: up.moved,
            down: down.moved,
            spliced: (up.spool.is_pipe(), down.spool.is_pipe()),
        }
    }
}

/// Relays between `client` and `upstream` until both directions have ended, a side breaks,
/// or nothing moves for `idle`. Returns what moved. Both sockets are switched to non-blocking
/// mode.
pub fn relay(client: &Conn, upstream: &Conn, idle: Duration) -> Relayed {
    if ccc_sys::fd::set_nonblocking(client.as_fd(), true).is_err()
        || ccc_sys::fd::set_nonblocking(upstream.as_fd(), true).is_err()
    {
        client.shutdown(false);
        upstream.shutdown(false);
        return Relayed {
            up: 0,
            down: 0,
            spliced: (false, false),
        };
    }
    let mut up = Direction::new(client, upstream);
    let mut down = Direction::new(upstream, client);
    let mut last_progress = Instant::now();
    let broken = loop {
        if up.ended && down.ended {
            break false;
        }
        // Past the idle deadline there is still one look without waiting: a thread that was
        // not scheduled for a while must not call a peer silent whose bytes are waiting.
        let left = idle.saturating_sub(last_progress.elapsed());
        let mut client_events = 0;
        let mut upstream_events = 0;
        if up.wants_read() {
            client_events |= READABLE;
        }
        if up.wants_write() {
            upstream_events |= WRITABLE;
        }
        if down.wants_read() {
            upstream_events |= READABLE;
        }
        if down.wants_write() {
            client_events |= WRITABLE;
        }
        let mut fds = [
            PollFd::new(client.as_fd(), client_events),
            PollFd::new(upstream.as_fd(), upstream_events),
        ];
        let wait = if left.is_zero() {
            Duration::ZERO
        } else {
            left.max(Duration::from_millis(1))
        };
        match poll(&mut fds, Some(wait)) {
            Ok(0) if left.is_zero() => break true,
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => break true,
        }
        let [client_events, upstream_events] = fds.map(|fd| fd.revents);
        let hangup = HANG_UP | ERROR;
        let readable = |events: Events| events & (READABLE | hangup) != 0;
        let writable = |events: Events| events & (WRITABLE | hangup) != 0;
        let up_ready = (up.wants_read() && readable(client_events))
            || (up.wants_write() && writable(upstream_events));
        let down_ready = (down.wants_read() && readable(upstream_events))
            || (down.wants_write() && writable(client_events));
        let mut progress = false;
        let mut failed = false;
        for (direction, ready) in [(&mut up, up_ready), (&mut down, down_ready)] {
            if !ready || direction.ended {
                continue;
            }
            match direction.advance() {
                Ok(Step::Progress) => progress = true,
                Ok(Step::Idle) => {}
                Err(_) => failed = true,
            }
        }
        if failed {
            break true;
        }
        if progress {
            last_progress = Instant::now();
        } else if left.is_zero() {
            break true;
        }
    };
    if broken {
        return finish(client, upstream, &up, &down);
    }
    Relayed::of(&up, &down)
}

/// Ends both sides at once (an error or the idle timeout) and returns the byte counts.
fn finish(client: &Conn, upstream: &Conn, up: &Direction<'_>, down: &Direction<'_>) -> Relayed {
    client.shutdown(false);
    upstream.shutdown(false);
    Relayed::of(up, down)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;

    /// A relay between a Unix socket pair's far end and a TCP connection's far end, on its
    /// own thread; returns the near ends and the thread.
    fn start(idle: Duration) -> (UnixStream, TcpStream, std::thread::JoinHandle<Relayed>) {
        let (client_near, client_far) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (upstream_far, _) = listener.accept().unwrap();
        let handle = std::thread::spawn(move || {
            relay(&Conn::Unix(client_far), &Conn::Tcp(upstream_far), idle)
        });
        (client_near, upstream_near, handle)
    }

    #[test]
    fn bytes_and_half_closes_pass_both_ways() {
        let (mut client, mut upstream, relay) = start(Duration::from_secs(30));
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
        let relayed = relay.join().unwrap();
        assert_eq!((relayed.up, relayed.down), (3_000_000, 26));
        // Bulk upward switched to splice; 26 bytes downward did not need a pipe.
        assert_eq!(relayed.spliced, (true, false));
    }

    #[test]
    fn more_than_every_buffer_holds_arrives_whole() {
        let (mut client, mut upstream, relay) = start(Duration::from_secs(30));
        // Upstream sends more than the socket buffers and the pipe hold together, so the
        // relay must wait for POLLOUT on the client side instead of dropping or spinning.
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
        let relayed = relay.join().unwrap();
        assert_eq!((relayed.up, relayed.down), (0, 16 << 20));
        assert_eq!(relayed.spliced, (false, true));
    }

    #[test]
    fn silence_past_the_idle_timeout_ends_both_sides() {
        let (mut client, mut upstream, relay) = start(Duration::from_millis(300));
        client.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        upstream.read_exact(&mut byte).unwrap();
        // Then nothing: the relay closes both sides.
        let relayed = relay.join().unwrap();
        assert_eq!((relayed.up, relayed.down), (1, 0));
        assert_eq!(client.read(&mut byte).unwrap(), 0);
        assert_eq!(upstream.read(&mut byte).unwrap(), 0);
    }

    #[test]
    fn bytes_waiting_past_the_idle_deadline_are_still_relayed() {
        // As if the relay's thread had not run for longer than `idle`: the deadline (zero) has
        // passed before its first look, yet a byte is waiting, which is not silence.
        let (mut client, client_far) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut upstream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (upstream_far, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let relayed = relay(
            &Conn::Unix(client_far),
            &Conn::Tcp(upstream_far),
            Duration::ZERO,
        );
        assert_eq!((relayed.up, relayed.down), (1, 0));
        let mut byte = [0u8; 1];
        upstream.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        // Then nothing moved: both sides were ended.
        assert_eq!(upstream.read(&mut byte).unwrap(), 0);
        assert_eq!(client.read(&mut byte).unwrap(), 0);
    }

    #[test]
    fn a_reset_upstream_ends_the_client_side_too() {
        let (mut client, upstream, relay) = start(Duration::from_secs(30));
        // SO_LINGER 0 makes close send a reset.
        socket2::SockRef::from(&upstream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(upstream);
        relay.join().unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).unwrap(), 0);
    }
}
