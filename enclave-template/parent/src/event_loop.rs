//! The proxy's event loops: a few threads (one per core by default) that each own many
//! connections, wait for all of their sockets in one `epoll` instance, and move every
//! connection through its states without blocking:
//!
//! ```text
//! accepted ─► [Head: CONNECT only, read the request head]
//!          ─► Admitting (allowlist; names resolved on a resolver thread)
//!          ─► Connecting (non-blocking connect per admitted address, each with a deadline)
//!          ─► Relaying (crate::relay, both ways, half-closes, idle deadline) ─► closed
//!   refusals and CONNECT errors ─► Responding (the 4xx/5xx answer is written) ─► closed
//! ```
//!
//! # Threads
//! - The accept threads ([`crate::service`]) accept, apply the connection limit and hand each
//!   connection to the loop with the fewest ([`Handle::adopt`]).
//! - Each loop thread waits in `epoll_wait`, handles its connections' events, then its
//!   deadlines. Nothing on it blocks: sockets are non-blocking, upstream connects are started
//!   and finished on writability, and name resolution is not done here.
//! - Resolver threads run [`Allowlist::admit`] when it must resolve a name (`getaddrinfo`
//!   blocks, for as long as DNS takes). They are started on demand (at most
//!   [`MAX_RESOLVERS`]), leave after [`RESOLVER_IDLE`] without work, and post the verdict back
//!   to the connection's loop. A decision that needs no name (an IP destination admitted by
//!   an IP entry) is taken on the loop itself, without a hand-off.
//!
//! # Readiness: edge-triggered
//! Every socket is registered once, for reading and writing, edge-triggered: a connection
//! costs one `epoll_ctl` per socket for its whole life, instead of one each time a spool
//! fills or empties (level-triggered interest must follow the state, or a full socket wakes
//! the loop again and again). The price is that readiness must be remembered until an
//! operation would block ([`Ready`]), and a connection that stops before that (its turn's
//! round budget ran out) is queued to go on after the others.
//!
//! # Deadlines
//! One heap of (deadline, connection) per loop, no thread or timer per connection. Progress
//! does not touch the heap: an entry that comes due is checked against the connection's
//! current deadline and pushed back if that moved. Events are handled before deadlines, so
//! a connection whose bytes are waiting when the loop wakes late is not called idle.
//!
//! # Stop and drain
//! The loops watch the stop signal. After it they keep relaying what is open; the drain's
//! deadline ([`crate::service::Tracker::drain`]) cuts the rest through each connection's
//! closer, a message to its loop. A loop ends once it is stopping and holds no connection.

use crate::allowlist::{Allowlist, Refusal, Resolver};
use crate::net::Conn;
use crate::proxy::{Active, Destination, Limits, Stats, parse_connect_head, response};
use crate::relay::{Ready, Relay};
use crate::service::{Log, Shutdown, Tracked};
use ccc_sys::epoll::{EDGE, Epoll, Events, READABLE, WRITABLE};
use ccc_sys::tcp::connect_started;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Most resolver threads at once. Each blocks in `getaddrinfo` for one connection; past this
/// many, new look-ups wait for one to finish (the enclave opens a few connections to KMS, not
/// hundreds at once to different names).
pub const MAX_RESOLVERS: usize = 16;

/// How long an idle resolver thread waits for work before it leaves.
pub const RESOLVER_IDLE: Duration = Duration::from_secs(30);

/// Stack of a resolver thread: `getaddrinfo` is the deepest thing it does.
const RESOLVER_STACK: usize = 256 * 1024;

/// The token of a loop's wake-up socket.
const WAKE: u64 = u64::MAX;
/// The token of the stop signal.
const STOP: u64 = u64::MAX - 1;

/// A connection's socket token: its id and which side.
fn token(id: u64, side: Side) -> u64 {
    (id << 1) | u64::from(side == Side::Upstream)
}

/// Which socket of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

/// What the proxy's loops share: the rules and where to report.
#[derive(Debug)]
pub(crate) struct Context {
    /// Swapped whole by [`crate::proxy::Proxy::reload`] (SIGHUP); each connection reads it
    /// once, at admission.
    pub(crate) allowlist: RwLock<Arc<Allowlist>>,
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) limits: Limits,
    pub(crate) log: Log,
    pub(crate) stats: Arc<Stats>,
}

impl Context {
    /// The allowlist in force now.
    pub(crate) fn allowlist(&self) -> Arc<Allowlist> {
        Arc::clone(
            &self
                .allowlist
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// What reaches a loop from other threads.
enum Message {
    /// A connection to take over (accept thread).
    Adopt(Box<Adopted>),
    /// The allowlist's verdict for a connection (resolver thread).
    Admitted {
        id: u64,
        verdict: Result<Vec<SocketAddr>, Refusal>,
    },
    /// End this connection now (the drain deadline).
    Cut { id: u64 },
}

/// A connection handed to a loop.
pub(crate) struct Adopted {
    pub(crate) id: u64,
    pub(crate) client: Conn,
    pub(crate) peer: String,
    pub(crate) destination: Destination,
    pub(crate) tracked: Tracked,
    /// Counted in [`Stats::active`] until the connection ends.
    pub(crate) active: Active,
}

/// How other threads reach one loop.
pub(crate) struct Handle {
    inbox: Sender<Message>,
    /// Written (one byte) to wake the loop when `woken` was false.
    wake: UnixStream,
    woken: AtomicBool,
    /// Connections the loop holds (or that are on their way to it).
    active: AtomicUsize,
    next_id: AtomicU64,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Handle {
    fn send(&self, message: Message) {
        // A loop that has ended (after the stop) drops what it is sent: the connection's
        // sockets close and its tracking ends.
        if self.inbox.send(message).is_ok() && !self.woken.swap(true, Ordering::AcqRel) {
            // Full means a wake-up is already pending; anything else means the loop is gone.
            let _ = (&self.wake).write(&[1]);
        }
    }

    /// Connections on this loop.
    pub(crate) fn load(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A fresh connection id on this loop.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands a connection (already admitted by the tracker) to the loop.
    pub(crate) fn adopt(&self, adopted: Adopted) {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.send(Message::Adopt(Box::new(adopted)));
    }

    /// Asks the loop to end connection `id` now.
    pub(crate) fn cut(&self, id: u64) {
        self.send(Message::Cut { id });
    }
}

/// Starts `count` loops for `context`, ending after `shutdown` once empty.
///
/// # Errors
/// An `epoll` instance, a wake-up socket or a thread could not be made.
pub(crate) fn start(
    count: usize,
    context: &Arc<Context>,
    shutdown: &Shutdown,
) -> io::Result<Vec<Arc<Handle>>> {
    let resolvers = Arc::new(Resolvers::default());
    let mut handles = Vec::with_capacity(count);
    for index in 0..count.max(1) {
        let (inbox, messages) = channel();
        let (wake, woken_by) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken_by.set_nonblocking(true)?;
        let handle = Arc::new(Handle {
            inbox,
            wake,
            woken: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
        });
        let epoll = Epoll::new()?;
        epoll.add(woken_by.as_fd(), READABLE | EDGE, WAKE)?;
        epoll.add(shutdown.wake_fd(), READABLE | EDGE, STOP)?;
        let event_loop = Loop {
            epoll,
            woken_by,
            messages,
            handle: Arc::clone(&handle),
            context: Arc::clone(context),
            resolvers: Arc::clone(&resolvers),
            stopping: shutdown.is_triggered(),
            shutdown: shutdown.clone(),
            connections: HashMap::new(),
            deadlines: BinaryHeap::new(),
            again: VecDeque::new(),
        };
        std::thread::Builder::new()
            .name(format!("ccc-parent-loop {index}"))
            .spawn(move || event_loop.run())?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Where a connection is.
enum State {
    /// CONNECT: reading the request head (at most `MAX_CONNECT_HEAD` bytes).
    Head { head: Vec<u8> },
    /// Waiting for a resolver thread's verdict; `early` is what followed the CONNECT head.
    Admitting { early: Vec<u8> },
    /// Connecting upstream to `addresses[next - 1]` through `socket`.
    Connecting {
        addresses: Vec<SocketAddr>,
        next: usize,
        socket: TcpStream,
        ready: Ready,
        deadline: Instant,
        early: Vec<u8>,
    },
    /// Moving bytes.
    Relaying {
        upstream: Conn,
        ready: Ready,
        relay: Box<Relay>,
        started: Instant,
    },
    /// Writing an error answer to the client, then closing.
    Responding { answer: Vec<u8>, written: usize },
    /// Over (a placeholder while a state is being replaced).
    Closed,
}

/// One connection on a loop.
struct Connection {
    peer: String,
    destination: Destination,
    /// What the logs call it: the route, or `CONNECT host:port` once known.
    label: String,
    client: Conn,
    client_ready: Ready,
    state: State,
    /// When something last moved (the idle deadline counts from here).
    active_at: Instant,
    /// The heap entry that stands for this connection, if any.
    armed: Option<Instant>,
    /// Queued in `again`.
    queued: bool,
    /// Counted in [`Stats::active`] until dropped.
    _active: Active,
    /// Ends the tracking when dropped (last: after the counters and the log line).
    _tracked: Tracked,
}

/// What to do with a connection after handling something.
enum Next {
    /// Keep it.
    Keep,
    /// Close it (its sockets, its tracking).
    Close,
}

/// One event loop and its connections.
struct Loop {
    epoll: Epoll,
    woken_by: UnixStream,
    messages: Receiver<Message>,
    handle: Arc<Handle>,
    context: Arc<Context>,
    resolvers: Arc<Resolvers>,
    shutdown: Shutdown,
    stopping: bool,
    connections: HashMap<u64, Connection>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Connections whose turn ended with work left, in order.
    again: VecDeque<u64>,
}

impl Loop {
    fn run(mut self) {
        let mut events = Events::default();
        loop {
            self.receive(Instant::now());
            if self.stopping && self.connections.is_empty() {
                return;
            }
            let timeout = if self.again.is_empty() {
                self.deadlines
                    .peek()
                    .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.epoll.wait(&mut events, timeout) {
                self.context.log.line(format_args!(
                    "proxy: epoll_wait failed: {e}; this loop's connections are closed"
                ));
                return;
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token {
                    WAKE => self.drain_wake_socket(),
                    STOP => self.stopping = self.shutdown.is_triggered(),
                    token => {
                        let side = if token & 1 == 1 {
                            Side::Upstream
                        } else {
                            Side::Client
                        };
                        self.on_event(token >> 1, side, event.events, now);
                    }
                }
            }
            for _ in 0..self.again.len() {
                let Some(id) = self.again.pop_front() else {
                    break;
                };
                if let Some(connection) = self.connections.get_mut(&id) {
                    connection.queued = false;
                    self.drive(id, now);
                }
            }
            self.expire(Instant::now());
        }
    }

    fn drain_wake_socket(&mut self) {
        // The socket is emptied first and the flag cleared after, and the messages are taken
        // after both (`receive`, at the top of the loop). A sender that finds the flag clear
        // writes a byte that stays in the socket and wakes the next `epoll_wait`. Clearing the
        // flag before reading lost wake-ups: a byte written between the two was read here,
        // left the flag set with nothing in the socket, and every later sender then skipped
        // its write, so a loop with no deadline armed slept on adopted connections for good
        // (found by `cargo xtask bench proxy`, 64 clients). The swap acquires what a sender
        // that set the flag pushed before setting it.
        let mut sink = [0u8; 64];
        while matches!((&self.woken_by).read(&mut sink), Ok(n) if n > 0) {}
        self.handle.woken.swap(false, Ordering::AcqRel);
    }

    /// Takes every waiting message.
    fn receive(&mut self, now: Instant) {
        loop {
            match self.messages.try_recv() {
                Ok(Message::Adopt(adopted)) => self.adopt(*adopted, now),
                Ok(Message::Admitted { id, verdict }) => self.admitted(id, verdict, now),
                Ok(Message::Cut { id }) => {
                    if let Some(connection) = self.connections.remove(&id) {
                        self.close(connection, true);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn adopt(&mut self, adopted: Adopted, now: Instant) {
        let Adopted {
            id,
            client,
            peer,
            destination,
            tracked,
            active,
        } = adopted;
        if let Err(e) = self.epoll.add(
            client.as_fd(),
            READABLE | WRITABLE | EDGE,
            token(id, Side::Client),
        ) {
            self.context.log.line(format_args!(
                "proxy: {peer}: cannot watch the connection: {e}"
            ));
            self.handle.active.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let (label, state) = match &destination {
            Destination::Route(route) => {
                (route.to_string(), State::Admitting { early: Vec::new() })
            }
            Destination::Connect => (
                "CONNECT".to_owned(),
                State::Head {
                    head: Vec::with_capacity(512),
                },
            ),
        };
        let connection = Connection {
            peer,
            destination,
            label,
            client,
            client_ready: Ready::default(),
            state,
            active_at: now,
            armed: None,
            queued: false,
            _active: active,
            _tracked: tracked,
        };
        let route = match &connection.destination {
            Destination::Route(route) => Some((route.host.clone(), route.remote_port)),
            Destination::Connect => None,
        };
        self.connections.insert(id, connection);
        if let Some((host, port)) = route {
            self.admit(id, &host, port, Vec::new(), now);
        } else {
            self.arm(id, now);
        }
    }

    /// Decides on the loop when no name must be resolved; otherwise asks a resolver thread.
    fn admit(&mut self, id: u64, host: &str, port: u16, early: Vec<u8>, now: Instant) {
        let offline = Offline::default();
        let verdict = self.context.allowlist().admit(host, port, &offline);
        if offline.asked.load(Ordering::Relaxed) {
            if let Some(connection) = self.connections.get_mut(&id) {
                connection.state = State::Admitting { early };
            }
            self.resolvers.submit(
                &self.context,
                Job {
                    loop_handle: Arc::clone(&self.handle),
                    id,
                    host: host.to_owned(),
                    port,
                },
            );
        } else {
            if let Some(connection) = self.connections.get_mut(&id) {
                connection.state = State::Admitting { early };
            }
            self.admitted(id, verdict, now);
        }
    }

    fn admitted(&mut self, id: u64, verdict: Result<Vec<SocketAddr>, Refusal>, now: Instant) {
        let Some(connection) = self.connections.get_mut(&id) else {
            // Cut while its name was being resolved.
            return;
        };
        let State::Admitting { early } = std::mem::replace(&mut connection.state, State::Closed)
        else {
            return;
        };
        match verdict {
            Ok(addresses) => self.connect(id, addresses, 0, early, String::new(), now),
            Err(refusal) => {
                let context = &self.context;
                context.stats.refused.fetch_add(1, Ordering::Relaxed);
                context.log.line(format_args!(
                    "proxy {}: {}: REFUSED: {refusal}",
                    connection.label, connection.peer
                ));
                let connect = matches!(connection.destination, Destination::Connect);
                if connect {
                    self.respond(id, 403, "Forbidden", &refusal.to_string(), now);
                } else {
                    self.remove(id);
                }
            }
        }
    }

    /// Starts connecting to `addresses[next]`, or the next that can be started; gives up when
    /// none is left.
    fn connect(
        &mut self,
        id: u64,
        addresses: Vec<SocketAddr>,
        mut next: usize,
        early: Vec<u8>,
        mut last_error: String,
        now: Instant,
    ) {
        while let Some(&address) = addresses.get(next) {
            next += 1;
            let started = connect_started(address).and_then(|(socket, _)| {
                self.epoll.add(
                    socket.as_fd(),
                    READABLE | WRITABLE | EDGE,
                    token(id, Side::Upstream),
                )?;
                Ok(socket)
            });
            match started {
                Ok(socket) => {
                    let deadline = now + self.context.limits.connect_timeout;
                    if let Some(connection) = self.connections.get_mut(&id) {
                        connection.state = State::Connecting {
                            addresses,
                            next,
                            socket,
                            ready: Ready::default(),
                            deadline,
                            early,
                        };
                    }
                    self.arm(id, now);
                    return;
                }
                Err(e) => last_error = format!("{address}: {e}"),
            }
        }
        if last_error.is_empty() {
            last_error = "no admitted address".to_owned();
        }
        self.upstream_failed(id, &last_error, now);
    }

    fn upstream_failed(&mut self, id: u64, error: &str, now: Instant) {
        let Some(connection) = self.connections.get(&id) else {
            return;
        };
        self.context
            .stats
            .upstream_failed
            .fetch_add(1, Ordering::Relaxed);
        self.context.log.line(format_args!(
            "proxy {}: {}: cannot connect upstream: {error}",
            connection.label, connection.peer
        ));
        let connect = matches!(connection.destination, Destination::Connect);
        if connect {
            self.respond(id, 502, "Bad Gateway", error, now);
        } else {
            self.remove(id);
        }
    }

    /// Sends an HTTP error answer, then closes.
    fn respond(&mut self, id: u64, status: u16, reason: &str, body: &str, now: Instant) {
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.state = State::Responding {
                answer: response(status, reason, body).into_bytes(),
                written: 0,
            };
            connection.active_at = now;
            self.drive(id, now);
        }
    }

    fn on_event(&mut self, id: u64, side: Side, events: u32, now: Instant) {
        let Some(connection) = self.connections.get_mut(&id) else {
            // An event for a connection closed earlier in this batch.
            return;
        };
        match (side, &mut connection.state) {
            (Side::Client, _) => connection.client_ready.note(events),
            (Side::Upstream, State::Connecting { ready, .. } | State::Relaying { ready, .. }) => {
                ready.note(events);
            }
            (Side::Upstream, _) => return,
        }
        self.drive(id, now);
    }

    /// Moves a connection on as far as it can go now.
    fn drive(&mut self, id: u64, now: Instant) {
        let Some(connection) = self.connections.get(&id) else {
            return;
        };
        let step: fn(&mut Self, u64, Instant) -> Next = match &connection.state {
            State::Head { .. } => Self::read_head,
            State::Admitting { .. } | State::Closed => return,
            State::Connecting { .. } => Self::finish_connect,
            State::Relaying { .. } => Self::relay,
            State::Responding { .. } => Self::write_answer,
        };
        let next = step(self, id, now);
        if let Next::Close = next {
            self.remove(id);
        }
    }

    fn read_head(&mut self, id: u64, now: Instant) -> Next {
        let Some(connection) = self.connections.get_mut(&id) else {
            return Next::Keep;
        };
        let State::Head { head } = &mut connection.state else {
            return Next::Keep;
        };
        let mut chunk = [0u8; 1024];
        let verdict = loop {
            if !connection.client_ready.readable {
                return Next::Keep;
            }
            match parse_connect_head(head) {
                Ok(Some(found)) => break Ok(found),
                Ok(None) => {}
                Err(reason) => break Err(reason),
            }
            let room = crate::proxy::MAX_CONNECT_HEAD.saturating_sub(head.len());
            if room == 0 {
                break Err(format!(
                    "request head over {} bytes",
                    crate::proxy::MAX_CONNECT_HEAD
                ));
            }
            let want = room.min(chunk.len());
            let Some(buffer) = chunk.get_mut(..want) else {
                return Next::Close;
            };
            match (&connection.client).read(buffer) {
                Ok(0) => break Err("closed before the request head ended".to_owned()),
                Ok(n) => {
                    head.extend_from_slice(buffer.get(..n).unwrap_or_default());
                    connection.active_at = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    connection.client_ready.readable = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(format!("reading the request: {e}")),
            }
        };
        match verdict {
            Ok((host, port, length)) => {
                let early = head.get(length..).unwrap_or_default().to_vec();
                connection.label = format!("CONNECT {host}:{port}");
                self.admit(id, &host, port, early, now);
                Next::Keep
            }
            Err(reason) => {
                self.context.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.context.log.line(format_args!(
                    "proxy CONNECT: {}: REFUSED: {reason}",
                    connection.peer
                ));
                self.respond(id, 400, "Bad Request", &reason, now);
                Next::Keep
            }
        }
    }

    fn finish_connect(&mut self, id: u64, now: Instant) -> Next {
        let Some(connection) = self.connections.get_mut(&id) else {
            return Next::Keep;
        };
        let State::Connecting { socket, ready, .. } = &mut connection.state else {
            return Next::Keep;
        };
        if !ready.writable {
            return Next::Keep;
        }
        let outcome = match ccc_sys::socket::take_error(socket.as_fd()) {
            Ok(Some(error)) | Err(error) => Err(error),
            // No error and a peer: connected. No error and no peer: not yet (an event of an
            // earlier attempt's socket, reported in the same batch).
            Ok(None) => match socket.peer_addr() {
                Ok(_) => Ok(()),
                Err(_) => {
                    ready.writable = false;
                    return Next::Keep;
                }
            },
        };
        let State::Connecting {
            addresses,
            next,
            socket,
            ready,
            early,
            ..
        } = std::mem::replace(&mut connection.state, State::Closed)
        else {
            return Next::Keep;
        };
        let address = addresses
            .get(next.saturating_sub(1))
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        match outcome {
            Err(error) => {
                drop(socket);
                self.connect(
                    id,
                    addresses,
                    next,
                    early,
                    format!("{address}: {error}"),
                    now,
                );
                Next::Keep
            }
            Ok(()) => {
                let _ = socket.set_nodelay(true);
                let mut relay = Box::new(Relay::new(true));
                let connect = matches!(connection.destination, Destination::Connect);
                let answered =
                    !connect || relay.preload_down(b"HTTP/1.1 200 Connection established\r\n\r\n");
                if !answered || !relay.preload_up(&early) {
                    return Next::Close;
                }
                if self.context.log.connections {
                    self.context.log.line(format_args!(
                        "proxy {}: {} connected via {address}",
                        connection.label, connection.peer
                    ));
                }
                connection.state = State::Relaying {
                    upstream: Conn::Tcp(socket),
                    ready,
                    relay,
                    started: now,
                };
                connection.active_at = now;
                self.relay(id, now)
            }
        }
    }

    fn relay(&mut self, id: u64, now: Instant) -> Next {
        let Some(connection) = self.connections.get_mut(&id) else {
            return Next::Keep;
        };
        let State::Relaying {
            upstream,
            ready,
            relay,
            ..
        } = &mut connection.state
        else {
            return Next::Keep;
        };
        match relay.turn(
            &connection.client,
            &mut connection.client_ready,
            upstream,
            ready,
        ) {
            Ok(step) => {
                if step.progress {
                    connection.active_at = now;
                }
                if step.done {
                    return Next::Close;
                }
                if step.more && !connection.queued {
                    connection.queued = true;
                    self.again.push_back(id);
                }
                self.arm(id, now);
                Next::Keep
            }
            Err(_) => {
                // Broken: both sides end at once.
                connection.client.shutdown(false);
                upstream.shutdown(false);
                Next::Close
            }
        }
    }

    fn write_answer(&mut self, id: u64, now: Instant) -> Next {
        let Some(connection) = self.connections.get_mut(&id) else {
            return Next::Keep;
        };
        let State::Responding { answer, written } = &mut connection.state else {
            return Next::Keep;
        };
        while connection.client_ready.writable {
            let rest = answer.get(*written..).unwrap_or_default();
            if rest.is_empty() {
                return Next::Close;
            }
            match (&connection.client).write(rest) {
                Ok(n) => {
                    *written += n;
                    connection.active_at = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    connection.client_ready.writable = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        if *written >= answer.len() {
            return Next::Close;
        }
        self.arm(id, now);
        Next::Keep
    }

    /// When `connection` is due: the connect deadline while connecting, the idle deadline
    /// otherwise; none while a resolver decides.
    fn deadline(&self, connection: &Connection) -> Option<Instant> {
        match &connection.state {
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Admitting { .. } | State::Closed => None,
            State::Head { .. } | State::Relaying { .. } | State::Responding { .. } => {
                Some(connection.active_at + self.context.limits.idle_timeout)
            }
        }
    }

    /// Makes sure a heap entry comes due no later than the connection's deadline.
    fn arm(&mut self, id: u64, _now: Instant) {
        let Some(connection) = self.connections.get(&id) else {
            return;
        };
        let Some(due) = self.deadline(connection) else {
            return;
        };
        if connection.armed.is_some_and(|armed| armed <= due) {
            return;
        }
        self.deadlines.push(Reverse((due, id)));
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.armed = Some(due);
        }
    }

    /// Handles every heap entry due by `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                return;
            }
            self.deadlines.pop();
            let Some(connection) = self.connections.get_mut(&id) else {
                continue;
            };
            if connection.armed != Some(at) {
                // Superseded by an earlier entry.
                continue;
            }
            connection.armed = None;
            let due = self.connections.get(&id).and_then(|c| self.deadline(c));
            match due {
                None => {}
                Some(due) if due > now => self.arm(id, now),
                Some(_) => self.timed_out(id, now),
            }
        }
    }

    fn timed_out(&mut self, id: u64, now: Instant) {
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        match std::mem::replace(&mut connection.state, State::Closed) {
            State::Connecting {
                addresses,
                next,
                socket,
                early,
                ..
            } => {
                drop(socket);
                let address = addresses
                    .get(next.saturating_sub(1))
                    .map_or_else(|| "?".to_owned(), ToString::to_string);
                let error = format!(
                    "{address}: no answer within {:?} (--connect-timeout)",
                    self.context.limits.connect_timeout
                );
                self.connect(id, addresses, next, early, error, now);
            }
            State::Head { .. } => {
                self.context.stats.refused.fetch_add(1, Ordering::Relaxed);
                let reason = format!(
                    "no complete request head within {:?} (--idle-timeout)",
                    self.context.limits.idle_timeout
                );
                self.context.log.line(format_args!(
                    "proxy CONNECT: {}: REFUSED: {reason}",
                    connection.peer
                ));
                self.respond(id, 400, "Bad Request", &reason, now);
            }
            state @ State::Relaying { .. } => {
                // Idle: both sides end at once.
                connection.state = state;
                if let Some(connection) = self.connections.remove(&id) {
                    self.close(connection, true);
                }
            }
            State::Responding { .. } | State::Admitting { .. } | State::Closed => {
                self.remove(id);
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(connection) = self.connections.remove(&id) {
            self.close(connection, false);
        }
    }

    /// Ends a connection: `cut` shuts both sides down at once (idle, drain deadline); the
    /// counters and the close line come before the tracking ends.
    fn close(&mut self, connection: Connection, cut: bool) {
        if cut {
            connection.client.shutdown(false);
        }
        if let State::Relaying {
            upstream,
            relay,
            started,
            ..
        } = &connection.state
        {
            if cut {
                upstream.shutdown(false);
            }
            let (up, down) = relay.moved();
            let stats = &self.context.stats;
            stats.completed.fetch_add(1, Ordering::Relaxed);
            stats.bytes_up.fetch_add(up, Ordering::Relaxed);
            stats.bytes_down.fetch_add(down, Ordering::Relaxed);
            if self.context.log.connections {
                self.context.log.line(format_args!(
                    "proxy {}: {} closed after {:.1?}: {up} bytes up, {down} bytes down",
                    connection.label,
                    connection.peer,
                    started.elapsed()
                ));
            }
        }
        self.handle.active.fetch_sub(1, Ordering::Relaxed);
        drop(connection);
    }
}

/// A resolver that refuses to resolve and remembers being asked: an admission decided
/// without it needed no name.
#[derive(Debug, Default)]
struct Offline {
    asked: AtomicBool,
}

impl Resolver for Offline {
    fn resolve(&self, _host: &str) -> io::Result<Vec<IpAddr>> {
        self.asked.store(true, Ordering::Relaxed);
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "not resolved on the event loop",
        ))
    }
}

/// An admission that needs a name resolved.
struct Job {
    loop_handle: Arc<Handle>,
    id: u64,
    host: String,
    port: u16,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

/// The resolver threads: started on demand, at most [`MAX_RESOLVERS`].
#[derive(Default)]
struct Resolvers {
    queue: Mutex<Queue>,
    work: Condvar,
}

impl Resolvers {
    fn submit(self: &Arc<Self>, context: &Arc<Context>, job: Job) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.jobs.push_back(job);
        if queue.idle == 0 && queue.threads < MAX_RESOLVERS {
            let resolvers = Arc::clone(self);
            let context = Arc::clone(context);
            let spawned = std::thread::Builder::new()
                .name("ccc-parent-resolve".into())
                .stack_size(RESOLVER_STACK)
                .spawn(move || resolvers.work(&context));
            match spawned {
                Ok(_) => queue.threads += 1,
                Err(e) if queue.threads == 0 => {
                    // Nobody will take the job: refuse it rather than let it wait forever.
                    if let Some(job) = queue.jobs.pop_back() {
                        let verdict = Err(Refusal::Resolve {
                            host: job.host,
                            error: format!("cannot start a resolver thread: {e}"),
                        });
                        job.loop_handle.send(Message::Admitted {
                            id: job.id,
                            verdict,
                        });
                    }
                }
                Err(_) => {}
            }
        }
        self.work.notify_one();
    }

    fn work(&self, context: &Context) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                drop(queue);
                let verdict =
                    context
                        .allowlist()
                        .admit(&job.host, job.port, context.resolver.as_ref());
                job.loop_handle.send(Message::Admitted {
                    id: job.id,
                    verdict,
                });
                queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            queue.idle += 1;
            let (woken, wait) = self
                .work
                .wait_timeout(queue, RESOLVER_IDLE)
                .unwrap_or_else(PoisonError::into_inner);
            queue = woken;
            queue.idle -= 1;
            if wait.timed_out() && queue.jobs.is_empty() {
                queue.threads -= 1;
                return;
            }
        }
    }
}
