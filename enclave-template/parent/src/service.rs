//! Running the parent's services together: one accept loop per listener (the handler runs a
//! connection on its own thread, or hands it to the proxy's event loops), a count of
//! connections in flight, and a clean stop. On SIGINT/SIGTERM (or
//! [`Shutdown::trigger`]) every listener stops accepting at once (and its Unix socket file
//! is removed), connections in flight may finish until the drain deadline, and those still
//! open then are shut down. A second signal exits at once. SIGHUP runs the reload hooks
//! ([`Shutdown::on_reload`]: the proxy reads its allowlist again) and stops nothing.

use crate::metrics::Metrics;
use crate::net::Bound;
use ccc_sdk::net::Stream;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The prefix of every log line.
pub const PREFIX: &str = "ccc-parent";

/// Stack of a connection thread: the copy buffer lives on the heap; name resolution
/// (getaddrinfo) is the deepest thing such a thread does.
pub const CONNECTION_STACK: usize = 256 * 1024;

/// Where log lines go.
#[derive(Clone)]
pub struct Log {
    sink: Arc<dyn Fn(&str) + Send + Sync>,
    /// Also log each connection's open and close (refusals and errors are always logged).
    pub connections: bool,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Lines to stderr.
    #[must_use]
    pub fn stderr(connections: bool) -> Self {
        Self {
            sink: Arc::new(|line: &str| eprintln!("{line}")),
            connections,
        }
    }

    /// Lines to `sink` (tests hand in a channel).
    #[must_use]
    pub fn with_sink(sink: Arc<dyn Fn(&str) + Send + Sync>, connections: bool) -> Self {
        Self { sink, connections }
    }

    /// Lines kept in the returned list (tests).
    #[must_use]
    pub fn capture(connections: bool) -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        let log = Self {
            sink: Arc::new(move |line: &str| {
                kept.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line.to_owned());
            }),
            connections,
        };
        (log, lines)
    }

    /// Writes `ccc-parent: <text>`.
    pub fn line(&self, text: fmt::Arguments<'_>) {
        (self.sink)(&format!("{PREFIX}: {text}"));
    }
}

/// Something SIGHUP runs.
pub type ReloadHook = Box<dyn Fn() + Send + Sync>;

struct ShutdownInner {
    stopping: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    reload: Mutex<Vec<ReloadHook>>,
}

impl fmt::Debug for ShutdownInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownInner")
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

/// The stop signal every accept loop also waits on.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<ShutdownInner>);

impl Shutdown {
    /// A signal not yet given.
    ///
    /// # Errors
    /// The socket pair for waking the loops could not be made.
    pub fn new() -> io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        Ok(Self(Arc::new(ShutdownInner {
            stopping: AtomicBool::new(false),
            wake_tx,
            wake_rx,
            reload: Mutex::new(Vec::new()),
        })))
    }

    /// Runs `hook` on every SIGHUP (and [`Shutdown::reload`]), after the hooks added before.
    pub fn on_reload(&self, hook: ReloadHook) {
        self.0
            .reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Runs the reload hooks now (what SIGHUP does).
    pub fn reload(&self) {
        for hook in self
            .0
            .reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            hook();
        }
    }

    /// Gives the signal: every accept loop returns.
    pub fn trigger(&self) {
        if !self.0.stopping.swap(true, Ordering::SeqCst) {
            // The byte is never read, so the socket stays readable for every loop.
            let _ = (&self.0.wake_tx).write_all(&[1]);
        }
    }

    /// Whether the signal was given.
    #[must_use]
    pub fn is_triggered(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }

    /// Triggers on the first SIGINT or SIGTERM; exits the process (status 130) on a second.
    /// Runs the reload hooks on SIGHUP (`systemctl reload`).
    ///
    /// # Errors
    /// The signal handlers could not be installed.
    pub fn on_signals(&self, log: &Log) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let shutdown = self.clone();
        let log = log.clone();
        std::thread::Builder::new()
            .name("ccc-parent-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        log.line(format_args!("signal {signal} (SIGHUP): reloading"));
                        shutdown.reload();
                        continue;
                    }
                    if shutdown.is_triggered() {
                        log.line(format_args!("signal {signal} again: exiting now"));
                        std::process::exit(130);
                    }
                    log.line(format_args!(
                        "signal {signal}: no new connections; letting the open ones finish \
                         (another signal exits at once)"
                    ));
                    shutdown.trigger();
                }
            })?;
        Ok(())
    }

    /// A descriptor that becomes readable when the signal is given (and stays so), for an
    /// event loop to watch.
    #[must_use]
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.0.wake_rx.as_fd()
    }

    /// Waits until the signal is given.
    pub fn wait(&self) {
        while !self.is_triggered() {
            let _ = readable(self.0.wake_rx.as_fd(), self.0.wake_rx.as_fd());
        }
    }
}

/// Something that ends a connection early (shuts its sockets down).
pub type Closer = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct TrackerState {
    next: u64,
    open: HashMap<u64, Closer>,
}

/// The connections in flight across all services.
#[derive(Default)]
pub struct Tracker {
    state: Mutex<TrackerState>,
    /// Notified on every admission and every end.
    changed: Condvar,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("open", &self.open())
            .finish()
    }
}

/// A tracked connection; dropping it ends the tracking.
pub struct Tracked {
    tracker: Arc<Tracker>,
    id: u64,
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tracked({})", self.id)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut state = self
            .tracker
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.open.remove(&self.id);
        // Every change is announced (see `Tracker::wait_until`), not only the last end.
        self.tracker.changed.notify_all();
    }
}

impl Tracker {
    /// Connections open now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .len()
    }

    /// Tracks a connection if fewer than `limit` are open; `closer` ends it at the drain
    /// deadline.
    #[must_use]
    pub fn admit(self: &Arc<Self>, limit: usize, closer: Closer) -> Option<Tracked> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.open.len() >= limit {
            return None;
        }
        let id = state.next;
        state.next += 1;
        state.open.insert(id, closer);
        self.changed.notify_all();
        Some(Tracked {
            tracker: Arc::clone(self),
            id,
        })
    }

    /// Waits up to `deadline` until `done(connections open)` holds (woken by every admission
    /// and every end, never by polling) and returns how many are open then, whether or not
    /// `done` held.
    pub fn wait_until(&self, deadline: Duration, done: impl Fn(usize) -> bool) -> usize {
        self.wait_locked(deadline, done).open.len()
    }

    /// Waits up to `deadline` for every connection to end; then shuts the rest down and
    /// returns how many that was.
    pub fn drain(&self, deadline: Duration) -> usize {
        let state = self.wait_locked(deadline, |open| open == 0);
        let left = state.open.len();
        for closer in state.open.values() {
            closer();
        }
        left
    }

    /// The state, once `done(connections open)` holds or `deadline` has passed.
    fn wait_locked(
        &self,
        deadline: Duration,
        done: impl Fn(usize) -> bool,
    ) -> MutexGuard<'_, TrackerState> {
        let until = Instant::now() + deadline;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !done(state.open.len()) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state
    }
}

/// Waits until `first` or `second` is readable (or reports an error or hang-up): which of
/// them are.
///
/// # Errors
/// The `poll` failure.
fn readable(first: BorrowedFd<'_>, second: BorrowedFd<'_>) -> io::Result<(bool, bool)> {
    use ccc_sys::poll::{PollFd, READABLE, poll};
    let mut fds = [PollFd::new(first, READABLE), PollFd::new(second, READABLE)];
    poll(&mut fds, None)?;
    let [first, second] = fds.map(|fd| fd.revents != 0);
    Ok((first, second))
}

/// Accepts on `listener` until `shutdown` is triggered, handing each connection to
/// `handle` (which must not block for long: it spawns the connection's thread). The listener
/// is dropped (a Unix socket file removed) when the loop ends.
fn accept_loop(
    listener: Bound,
    shutdown: &Shutdown,
    log: &Log,
    handle: &(dyn Fn(Stream) + Send + Sync),
) {
    loop {
        match readable(listener.as_fd(), shutdown.0.wake_rx.as_fd()) {
            Ok((_, true)) => return,
            Ok(_) if shutdown.is_triggered() => return,
            Ok(_) => {}
            Err(e) => {
                log.line(format_args!(
                    "{}: poll failed: {e}; no longer accepting there",
                    listener.describe()
                ));
                return;
            }
        }
        match listener.accept() {
            Ok(stream) => handle(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e)
                if e.raw_os_error() == Some(ccc_sys::libc::EMFILE)
                    || e.raw_os_error() == Some(ccc_sys::libc::ENFILE) =>
            {
                // Out of descriptors: wait for connections to end instead of spinning.
                log.line(format_args!(
                    "{}: accept: {e}; waiting 100 ms for connections to close",
                    listener.describe()
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                log.line(format_args!(
                    "{}: accept failed: {e}; no longer accepting there",
                    listener.describe()
                ));
                return;
            }
        }
    }
}

/// The parent's running services.
#[derive(Debug)]
pub struct Services {
    shutdown: Shutdown,
    tracker: Arc<Tracker>,
    log: Log,
    metrics: Arc<Metrics>,
    loops: Vec<JoinHandle<()>>,
}

impl Services {
    /// No services yet.
    ///
    /// # Errors
    /// As [`Shutdown::new`].
    pub fn new(log: Log) -> io::Result<Self> {
        Ok(Self {
            shutdown: Shutdown::new()?,
            tracker: Arc::new(Tracker::default()),
            log,
            metrics: Arc::new(Metrics::new()),
            loops: Vec::new(),
        })
    }

    /// The metrics every service updates (served by [`crate::metrics::serve`]).
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The stop signal.
    #[must_use]
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The connections in flight.
    #[must_use]
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// The log.
    #[must_use]
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Starts accepting on `listener`; `handle` gets each connection.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn listen(
        &mut self,
        listener: Bound,
        handle: impl Fn(Stream) + Send + Sync + 'static,
    ) -> io::Result<()> {
        let shutdown = self.shutdown.clone();
        let log = self.log.clone();
        let name = format!("ccc-parent-accept {}", listener.describe());
        self.loops.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || accept_loop(listener, &shutdown, &log, &handle))?,
        );
        Ok(())
    }

    /// Waits for the stop signal, stops every accept loop, lets connections finish for up to
    /// `drain`, then shuts the rest down. Returns how many were cut off.
    #[must_use]
    pub fn run_until_stopped(self, drain: Duration) -> usize {
        self.shutdown.wait();
        for handle in self.loops {
            let _ = handle.join();
        }
        let open = self.tracker.open();
        if open > 0 {
            self.log.line(format_args!(
                "waiting up to {drain:?} for {open} open connection(s)"
            ));
        }
        let cut = self.tracker.drain(drain);
        self.log.line(format_args!(
            "stopped ({cut} connection(s) cut off at the deadline)"
        ));
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_tracker_bounds_and_drains() {
        let tracker = Arc::new(Tracker::default());
        let closed = Arc::new(AtomicUsize::new(0));
        let closer = || -> Closer {
            let closed = Arc::clone(&closed);
            Box::new(move || {
                closed.fetch_add(1, Ordering::SeqCst);
            })
        };
        let a = tracker.admit(2, closer()).unwrap();
        let b = tracker.admit(2, closer()).unwrap();
        assert!(tracker.admit(2, closer()).is_none(), "over the limit");
        drop(a);
        assert_eq!(tracker.open(), 1);
        // `b` is still open at the deadline: it is closed.
        assert_eq!(tracker.drain(Duration::from_millis(10)), 1);
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        drop(b);
        assert_eq!(tracker.drain(Duration::from_secs(5)), 0);
    }

    #[test]
    fn a_waiter_sees_admissions_and_ends_from_other_threads() {
        let tracker = Arc::new(Tracker::default());
        let noop = || -> Closer { Box::new(|| {}) };
        let mut held: Vec<Tracked> = (0..3).map(|_| tracker.admit(9, noop()).unwrap()).collect();
        let kept = held.pop();
        let ender = std::thread::spawn(move || drop(held));
        // Two of three end on another thread; the third is still open when the wait returns.
        assert_eq!(
            tracker.wait_until(Duration::from_secs(60), |open| open <= 1),
            1
        );
        ender.join().unwrap();
        let other = Arc::clone(&tracker);
        let admitter = std::thread::spawn(move || {
            (0..2)
                .map(|_| other.admit(9, noop()).unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(
            tracker.wait_until(Duration::from_secs(60), |open| open >= 3),
            3
        );
        drop(admitter.join().unwrap());
        drop(kept);
        // A condition that never holds returns at the deadline with the count as it is.
        assert_eq!(
            tracker.wait_until(Duration::from_millis(1), |open| open == 5),
            0
        );
    }

    #[test]
    fn a_triggered_shutdown_stops_accept_loops_and_removes_sockets() {
        let dir = std::env::temp_dir().join(format!("ccc-parent-svc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let family = crate::net::Family::Uds(dir.join("vm.vsock"));
        let (log, lines) = Log::capture(true);
        let mut services = Services::new(log).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        services
            .listen(family.bind(9000).unwrap(), move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        let path = dir.join("vm.vsock_9000");
        drop(UnixStream::connect(&path).unwrap());
        services.shutdown().trigger();
        assert_eq!(services.run_until_stopped(Duration::from_secs(1)), 0);
        assert!(!path.exists());
        assert!(lines.lock().unwrap().iter().any(|l| l.contains("stopped")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
