//! The vsock → TCP proxy: what nitro-cli's vsock-proxy does, with every connection checked
//! against the allowlist.
//!
//! # Two ways to name the destination
//! - **Routes** (`--route 8000=kms.eu-west-1.amazonaws.com:443`, vsock-proxy's model): every
//!   connection to vsock port 8000 goes to that host and port. Each route is checked against
//!   the allowlist when the proxy starts (a route the allowlist refuses stops the start), and
//!   again for every connection: the name is resolved afresh and only admitted addresses are
//!   connected to (see [`crate::allowlist`] for the rule).
//! - **CONNECT** (`--connect-port 8001`, optional): an HTTP CONNECT proxy (RFC 9110 §9.3.6).
//!   The enclave writes `CONNECT host:port HTTP/1.1` and a blank line; an admitted destination
//!   gets `HTTP/1.1 200 Connection established`, anything else `403 Forbidden` with the
//!   reason, and the connection is closed. One port then serves every allowed destination,
//!   and HTTP clients with proxy support work unchanged.
//!
//! # Bounds
//! At most `max_connections` proxied connections at once (more are closed at once and
//! logged); connecting upstream gives up after `connect_timeout` per admitted address; a
//! connection on which nothing moves either way for `idle_timeout` is closed (a peer that
//! does not drain what is written to it counts as nothing moving). Connections live on a few
//! event-loop threads ([`crate::event_loop`]: `epoll`, non-blocking sockets, one deadline heap
//! per loop), so a slow or dead upstream holds only its own connection's sockets, never a
//! thread. Bytes are relayed as they come ([`crate::relay`]: `splice` through a pipe per
//! direction once bulk data flows, so they never enter user space), without looking at them
//! (the enclave's TLS runs end to end).

use crate::ArgumentError;
use crate::allowlist::{Allowlist, AllowlistError, Refusal, Resolver};
use crate::event_loop::{Adopted, Context, Handle};
use crate::net::Conn;
use crate::service::{Closer, Services, Shutdown, Tracker};
use ccc_sdk::net::Stream;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

/// Largest CONNECT request head read (RFC 9110 sets no limit; a CONNECT carries a host
/// name and a few headers).
pub const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// Headers parsed in a CONNECT request.
const MAX_CONNECT_HEADERS: usize = 32;

/// One route: connections to `port` go to `host:remote_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The listening port (vsock port, or the `_<port>` suffix, or a TCP port).
    pub port: u32,
    /// The destination host (name or IP).
    pub host: String,
    /// The destination port.
    pub remote_port: u16,
}

impl FromStr for Route {
    type Err = ArgumentError;

    /// `PORT=HOST:PORT` (IPv6 in brackets).
    fn from_str(text: &str) -> Result<Self, ArgumentError> {
        let malformed = || ArgumentError::new(text, "a route LOCAL_PORT=HOST:PORT");
        let (port, destination) = text.split_once('=').ok_or_else(malformed)?;
        let (host, remote_port) = destination.rsplit_once(':').ok_or_else(malformed)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(malformed());
        }
        Ok(Self {
            port: port.parse().map_err(|_| malformed())?,
            host: host.to_owned(),
            remote_port: remote_port.parse().map_err(|_| malformed())?,
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{} → [{}]:{}", self.port, self.host, self.remote_port)
        } else {
            write!(f, "{} → {}:{}", self.port, self.host, self.remote_port)
        }
    }
}

/// Limits and timeouts of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Proxied connections at once (default 1024).
    pub max_connections: usize,
    /// Connecting upstream, per admitted address (default 5 s).
    pub connect_timeout: Duration,
    /// Closing a connection on which nothing moved (default 5 minutes).
    pub idle_timeout: Duration,
    /// Event-loop threads that hold the connections (0, the default: one per core).
    pub relay_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            relay_threads: 0,
        }
    }
}

impl Limits {
    /// The event loops to start: `relay_threads`, or one per core when 0.
    #[must_use]
    pub fn loops(&self) -> usize {
        if self.relay_threads > 0 {
            return self.relay_threads;
        }
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    }
}

/// Counters, for the metrics endpoint (`crate::metrics`), logs and tests. The proxy updates
/// them at fixed points: accept, refusal, upstream failure, admission and end of a
/// connection, bytes relayed.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Refused: over the limit.
    pub over_limit: AtomicU64,
    /// Refused: the allowlist (or a bad CONNECT request).
    pub refused: AtomicU64,
    /// Upstream could not be connected.
    pub upstream_failed: AtomicU64,
    /// Connections that were proxied and ended.
    pub completed: AtomicU64,
    /// Connections admitted and not yet ended.
    pub active: AtomicU64,
    /// Bytes relayed from the enclave to the destination (counted when a connection ends).
    pub bytes_up: AtomicU64,
    /// Bytes relayed from the destination to the enclave (counted when a connection ends).
    pub bytes_down: AtomicU64,
}

/// One admitted connection in [`Stats::active`]; the count drops when it is dropped.
#[derive(Debug)]
pub(crate) struct Active(Arc<Stats>);

impl Active {
    pub(crate) fn new(stats: &Arc<Stats>) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(stats))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The proxy's shared state.
#[derive(Debug)]
pub struct Proxy {
    context: Arc<Context>,
    tracker: Arc<Tracker>,
    shutdown: Shutdown,
    /// The event loops, started with the first listener.
    loops: OnceLock<Vec<Arc<Handle>>>,
    starting: Mutex<()>,
}

/// What a connection is to be proxied to.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    /// The route's host and port.
    Route(Arc<Route>),
    /// What the client's CONNECT request names.
    Connect,
}

impl Proxy {
    /// A proxy enforcing `allowlist`; connections are counted in `services`' tracker, and its
    /// event loops end after `services`' stop signal once their connections have.
    #[must_use]
    pub fn new(
        allowlist: Allowlist,
        resolver: Arc<dyn Resolver>,
        limits: Limits,
        services: &Services,
    ) -> Arc<Self> {
        let stats = Arc::new(Stats::default());
        services.metrics().watch_proxy(Arc::clone(&stats));
        Arc::new(Self {
            context: Arc::new(Context {
                allowlist: RwLock::new(Arc::new(allowlist)),
                resolver,
                limits,
                log: services.log().clone(),
                stats,
            }),
            tracker: Arc::clone(services.tracker()),
            shutdown: services.shutdown().clone(),
            loops: OnceLock::new(),
            starting: Mutex::new(()),
        })
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> &Arc<Stats> {
        &self.context.stats
    }

    /// The allowlist in force.
    #[must_use]
    pub fn allowlist(&self) -> Arc<Allowlist> {
        self.context.allowlist()
    }

    /// Reads the allowlist at `path` again and, if it is usable, makes it the one every new
    /// connection is checked against (connections already relaying keep going). A file that
    /// cannot be read or parsed changes nothing: the previous allowlist stays in force.
    /// Returns the entry counts before and after.
    ///
    /// # Errors
    /// The [`AllowlistError`] of the new file; the old allowlist is kept.
    pub fn reload(&self, path: &Path) -> Result<(usize, usize), AllowlistError> {
        let fresh = Allowlist::load(path)?;
        let after = fresh.entries().len();
        let mut current = self
            .context
            .allowlist
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = current.entries().len();
        *current = Arc::new(fresh);
        Ok((before, after))
    }

    /// Checks `route` against the allowlist now (at start).
    ///
    /// # Errors
    /// The refusal.
    pub fn check_route(&self, route: &Route) -> Result<Vec<SocketAddr>, Refusal> {
        self.context.allowlist().admit(
            &route.host,
            route.remote_port,
            self.context.resolver.as_ref(),
        )
    }

    /// The event loops, started on first use.
    fn loops(&self) -> io::Result<&[Arc<Handle>]> {
        if let Some(loops) = self.loops.get() {
            return Ok(loops);
        }
        let _starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(loops) = self.loops.get() {
            return Ok(loops);
        }
        let started =
            crate::event_loop::start(self.context.limits.loops(), &self.context, &self.shutdown)?;
        Ok(self.loops.get_or_init(|| started))
    }

    /// Serves `route` on `listener`.
    ///
    /// # Errors
    /// The event loops or the accept thread could not be started.
    pub fn serve_route(
        self: &Arc<Self>,
        services: &mut Services,
        listener: crate::net::Bound,
        route: Route,
    ) -> io::Result<()> {
        self.loops()?;
        let proxy = Arc::clone(self);
        let route = Arc::new(route);
        services.listen(listener, move |stream| {
            proxy.accepted(stream, Destination::Route(Arc::clone(&route)));
        })
    }

    /// Serves HTTP CONNECT on `listener`.
    ///
    /// # Errors
    /// The event loops or the accept thread could not be started.
    pub fn serve_connect(
        self: &Arc<Self>,
        services: &mut Services,
        listener: crate::net::Bound,
    ) -> io::Result<()> {
        self.loops()?;
        let proxy = Arc::clone(self);
        services.listen(listener, move |stream| {
            proxy.accepted(stream, Destination::Connect);
        })
    }

    /// Admits a connection (or closes it over the limit) and hands it to the event loop with
    /// the fewest connections. Runs on the accept thread; never blocks for long.
    fn accepted(&self, stream: Stream, destination: Destination) {
        let log = &self.context.log;
        self.context.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let peer = stream.describe_peer();
        let client = match Conn::nonblocking(stream) {
            Ok(client) => client,
            Err(e) => {
                log.line(format_args!(
                    "proxy: {peer}: cannot set up the connection: {e}"
                ));
                return;
            }
        };
        let Some(handle) = self
            .loops
            .get()
            .and_then(|loops| loops.iter().min_by_key(|handle| handle.load()))
        else {
            log.line(format_args!("proxy: {peer}: no event loop is running"));
            return;
        };
        let id = handle.next_id();
        let closer: Closer = {
            let handle = Arc::clone(handle);
            Box::new(move || handle.cut(id))
        };
        let max = self.context.limits.max_connections;
        let Some(tracked) = self.tracker.admit(max, closer) else {
            self.context
                .stats
                .over_limit
                .fetch_add(1, Ordering::Relaxed);
            log.line(format_args!(
                "proxy: {peer}: REFUSED: {max} connections are open (--max-connections)"
            ));
            return;
        };
        handle.adopt(Adopted {
            id,
            client,
            peer,
            destination,
            tracked,
            active: Active::new(&self.context.stats),
        });
    }
}

/// Parses a CONNECT request head at the start of `head`: its destination and the head's
/// length (what follows belongs to the tunnel), or `Ok(None)` while the head is incomplete.
///
/// # Errors
/// Why the request is refused (not HTTP/1.1, not CONNECT, a target that is not host:port).
pub(crate) fn parse_connect_head(head: &[u8]) -> Result<Option<(String, u16, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_CONNECT_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(head) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("not an HTTP/1.1 request".into()),
    };
    if request.method != Some("CONNECT") {
        return Err(format!(
            "method {} (only CONNECT host:port)",
            request.method.unwrap_or("?")
        ));
    }
    let target = request.path.unwrap_or_default();
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("target `{target}` is not host:port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("target `{target}`: bad port"))?;
    Ok(Some((host.to_owned(), port, length)))
}

/// An HTTP answer that ends the connection (the CONNECT refusals and failures).
pub(crate) fn response(status: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}\n",
        body.len() + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(
            "8000=kms.eu-west-1.amazonaws.com:443"
                .parse::<Route>()
                .unwrap(),
            Route {
                port: 8000,
                host: "kms.eu-west-1.amazonaws.com".into(),
                remote_port: 443
            }
        );
        let v6: Route = "8001=[::1]:8443".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "8001 → [::1]:8443");
        for bad in [
            "8000",
            "8000=host",
            "x=host:1",
            "8000=:443",
            "8000=host:99999",
        ] {
            assert!(bad.parse::<Route>().is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_heads_parse_as_they_arrive() {
        let request = b"CONNECT kms.test:443 HTTP/1.1\r\nHost: kms.test:443\r\n\r\ntunnel";
        let head_length = request.len() - b"tunnel".len();
        // Every prefix short of the blank line is incomplete, not wrong.
        for end in 0..head_length {
            assert_eq!(parse_connect_head(&request[..end]), Ok(None), "{end}");
        }
        // What follows the head is not part of it.
        assert_eq!(
            parse_connect_head(request),
            Ok(Some(("kms.test".to_owned(), 443, head_length)))
        );
        assert_eq!(
            parse_connect_head(b"CONNECT [::1]:8443 HTTP/1.1\n\n"),
            Ok(Some(("::1".to_owned(), 8443, 29)))
        );
        for (head, reason) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "method GET"),
            (b"CONNECT kms.test HTTP/1.1\r\n\r\n", "is not host:port"),
            (b"CONNECT kms.test:99999 HTTP/1.1\r\n\r\n", "bad port"),
            (b"\x00\x01 binary", "not an HTTP/1.1 request"),
        ] {
            let error = parse_connect_head(head).unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
    }

    #[test]
    fn answers_say_how_long_their_body_is() {
        assert_eq!(
            response(403, "Forbidden", "no"),
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
             Connection: close\r\n\r\nno\n"
        );
    }
}
