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
//! logged); connecting upstream gives up after `connect_timeout`; a connection on which
//! nothing moves either way for `idle_timeout` is closed (a peer that does not drain what is
//! written to it counts as nothing moving). A slow or dead upstream holds only its own
//! connection's thread. Bytes are relayed as they come ([`crate::relay`]: `splice` through a
//! pipe per direction, so they never enter user space), without looking at them (the
//! enclave's TLS runs end to end).

use crate::ArgumentError;
use crate::allowlist::{Allowlist, AllowlistError, Refusal, Resolver};
use crate::net::Conn;
use crate::relay::relay;
use crate::service::{CONNECTION_STACK, Closer, Log, Services, Tracker};
use ccc_sdk::net::Stream;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

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
    /// Connecting upstream (default 5 s).
    pub connect_timeout: Duration,
    /// Closing a connection on which nothing moved (default 5 minutes).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
        }
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
struct Active(Arc<Stats>);

impl Active {
    fn new(stats: &Arc<Stats>) -> Self {
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
    /// Swapped whole by [`Proxy::reload`] (SIGHUP); each connection reads it once.
    allowlist: RwLock<Arc<Allowlist>>,
    resolver: Arc<dyn Resolver>,
    limits: Limits,
    log: Log,
    tracker: Arc<Tracker>,
    stats: Arc<Stats>,
}

/// What a connection is to be proxied to.
#[derive(Debug, Clone)]
enum Destination {
    Route(Arc<Route>),
    Connect,
}

impl Proxy {
    /// A proxy enforcing `allowlist`; connections are counted in `services`' tracker.
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
            allowlist: RwLock::new(Arc::new(allowlist)),
            resolver,
            limits,
            log: services.log().clone(),
            tracker: Arc::clone(services.tracker()),
            stats,
        })
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The allowlist in force.
    #[must_use]
    pub fn allowlist(&self) -> Arc<Allowlist> {
        Arc::clone(
            &self
                .allowlist
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
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
        self.allowlist()
            .admit(&route.host, route.remote_port, self.resolver.as_ref())
    }

    /// Serves `route` on `listener`.
    ///
    /// # Errors
    /// The accept thread could not be started.
    pub fn serve_route(
        self: &Arc<Self>,
        services: &mut Services,
        listener: crate::net::Bound,
        route: Route,
    ) -> io::Result<()> {
        let proxy = Arc::clone(self);
        let route = Arc::new(route);
        services.listen(listener, move |stream| {
            proxy.accepted(stream, Destination::Route(Arc::clone(&route)));
        })
    }

    /// Serves HTTP CONNECT on `listener`.
    ///
    /// # Errors
    /// The accept thread could not be started.
    pub fn serve_connect(
        self: &Arc<Self>,
        services: &mut Services,
        listener: crate::net::Bound,
    ) -> io::Result<()> {
        let proxy = Arc::clone(self);
        services.listen(listener, move |stream| {
            proxy.accepted(stream, Destination::Connect);
        })
    }

    /// Admits a connection (or closes it over the limit) and starts its thread.
    fn accepted(self: &Arc<Self>, stream: Stream, destination: Destination) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let peer = stream.describe_peer();
        // The read timeout is the idle tick; writes may stall at most the idle timeout.
        let conn = match Conn::from_stream(stream, self.limits.idle_timeout) {
            Ok(conn) => conn,
            Err(e) => {
                self.log.line(format_args!(
                    "proxy: {peer}: cannot set up the connection: {e}"
                ));
                return;
            }
        };
        let closer = match conn.try_clone() {
            Ok(handle) => Box::new(move || handle.shutdown(false)) as Closer,
            Err(e) => {
                self.log.line(format_args!("proxy: {peer}: {e}"));
                return;
            }
        };
        let Some(tracked) = self.tracker.admit(self.limits.max_connections, closer) else {
            self.stats.over_limit.fetch_add(1, Ordering::Relaxed);
            self.log.line(format_args!(
                "proxy: {peer}: REFUSED: {} connections are open (--max-connections)",
                self.limits.max_connections
            ));
            return;
        };
        let proxy = Arc::clone(self);
        let active = Active::new(&self.stats);
        let spawned = std::thread::Builder::new()
            .name("ccc-parent-proxy".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _tracked = tracked;
                let _active = active;
                proxy.connection(conn, &peer, &destination);
            });
        if let Err(e) = spawned {
            self.log
                .line(format_args!("proxy: cannot start a connection thread: {e}"));
        }
    }

    fn connection(&self, mut client: Conn, peer: &str, destination: &Destination) {
        let (label, host, port) = match destination {
            Destination::Route(route) => {
                (format!("{route}"), route.host.clone(), route.remote_port)
            }
            Destination::Connect => match read_connect(&mut client) {
                Ok((host, port)) => (format!("CONNECT {host}:{port}"), host, port),
                Err(reason) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    self.log
                        .line(format_args!("proxy CONNECT: {peer}: REFUSED: {reason}"));
                    let _ = respond(&mut client, 400, "Bad Request", &reason);
                    return;
                }
            },
        };
        let addresses = match self.allowlist().admit(&host, port, self.resolver.as_ref()) {
            Ok(addresses) => addresses,
            Err(refusal) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.log
                    .line(format_args!("proxy {label}: {peer}: REFUSED: {refusal}"));
                if let Destination::Connect = destination {
                    let _ = respond(&mut client, 403, "Forbidden", &refusal.to_string());
                }
                return;
            }
        };
        let upstream = match self.connect(&addresses) {
            Ok(upstream) => upstream,
            Err(e) => {
                self.stats.upstream_failed.fetch_add(1, Ordering::Relaxed);
                self.log.line(format_args!(
                    "proxy {label}: {peer}: cannot connect upstream: {e}"
                ));
                if let Destination::Connect = destination {
                    let _ = respond(&mut client, 502, "Bad Gateway", &e.to_string());
                }
                return;
            }
        };
        let upstream_address = upstream
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        if let Destination::Connect = destination
            && client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .is_err()
        {
            return;
        }
        if self.log.connections {
            self.log.line(format_args!(
                "proxy {label}: {peer} connected via {upstream_address}"
            ));
        }
        let started = Instant::now();
        let upstream = Conn::Tcp(upstream);
        let relayed = relay(&client, &upstream, self.limits.idle_timeout);
        let (up, down) = (relayed.up, relayed.down);
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.stats.bytes_down.fetch_add(down, Ordering::Relaxed);
        if self.log.connections {
            self.log.line(format_args!(
                "proxy {label}: {peer} closed after {:.1?}: {up} bytes up, {down} bytes down",
                started.elapsed()
            ));
        }
    }

    /// Connects to the first admitted address that answers within the connect timeout.
    fn connect(&self, addresses: &[SocketAddr]) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no admitted address");
        for address in addresses {
            match TcpStream::connect_timeout(address, self.limits.connect_timeout) {
                Ok(stream) => {
                    let idle = Some(self.limits.idle_timeout);
                    stream.set_read_timeout(idle)?;
                    stream.set_write_timeout(idle)?;
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => {
                    last = io::Error::new(
                        e.kind(),
                        if e.kind() == io::ErrorKind::TimedOut {
                            format!(
                                "{address}: no answer within {:?} (--connect-timeout)",
                                self.limits.connect_timeout
                            )
                        } else {
                            format!("{address}: {e}")
                        },
                    );
                }
            }
        }
        Err(last)
    }
}

/// Reads a CONNECT request head and returns its destination.
fn read_connect(client: &mut Conn) -> Result<(String, u16), String> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    // Byte by byte: what follows the blank line belongs to the tunnel.
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_CONNECT_HEAD {
            return Err(format!("request head over {MAX_CONNECT_HEAD} bytes"));
        }
        match client.read(&mut byte) {
            Ok(0) => return Err("closed before the request head ended".into()),
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the request: {e}")),
        }
    }
    parse_connect_head(&head)
}

/// The destination of a complete CONNECT request head (`CONNECT host:port HTTP/1.1`, headers,
/// blank line), as the enclave sent it.
///
/// # Errors
/// What is wrong with the head (not HTTP/1.1, another method, a target that is not
/// `host:port`), for the refusal line in the log.
pub(crate) fn parse_connect_head(head: &[u8]) -> Result<(String, u16), String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_CONNECT_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("not an HTTP/1.1 request".into()),
    }
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
    Ok((host.to_owned(), port))
}

fn respond(client: &mut Conn, status: u16, reason: &str, body: &str) -> io::Result<()> {
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    client.write_all(answer.as_bytes())
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
}
