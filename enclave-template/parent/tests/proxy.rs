//! The proxy in process, on loopback TCP (host vsock loopback is not available here; the
//! listening transport does not change what is tested): allowlisted bytes flow both ways,
//! every other destination is refused (at start and per connection), a thousand connections
//! are held and served at once, a blackholed or stalled upstream holds only its own
//! connection, the connection limit refuses the excess, and shutdown drains. Then what the
//! event loop adds, on a single loop thread: slow peers, pending connects and half-closes in
//! either order do not hold the thread the others share, idle connections are ended, and the
//! drain deadline cuts connections in every state.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use ccc_template_parent::allowlist::{Allowlist, TableResolver};
use ccc_template_parent::net::Family;
use ccc_template_parent::proxy::{Limits, Proxy, Route};
use ccc_template_parent::service::{Log, Services, Shutdown, Tracker};
use common::{WAIT, connect, echo_server, round_trip};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A proxy running in this process.
struct Running {
    proxy: Arc<Proxy>,
    routes: Vec<SocketAddr>,
    connect: Option<SocketAddr>,
    shutdown: Shutdown,
    tracker: Arc<Tracker>,
    lines: Arc<Mutex<Vec<String>>>,
    events: Receiver<String>,
    stopped: Option<JoinHandle<usize>>,
}

impl Running {
    fn start(
        allowlist: &str,
        resolver: Arc<TableResolver>,
        limits: Limits,
        routes: &[(&str, u16)],
        connect: bool,
        drain: Duration,
    ) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, events) = channel::<String>();
        let kept = Arc::clone(&lines);
        let tx = Mutex::new(tx);
        let log = Log::with_sink(
            Arc::new(move |line: &str| {
                kept.lock().unwrap().push(line.to_owned());
                let _ = tx.lock().unwrap().send(line.to_owned());
            }),
            true,
        );
        let mut services = Services::new(log).unwrap();
        let allowlist = Allowlist::parse(allowlist).unwrap();
        let proxy = Proxy::new(allowlist, resolver, limits, &services);
        let family = Family::Tcp("127.0.0.1".into());
        let mut addresses = Vec::new();
        for (host, port) in routes {
            let route = Route {
                port: 0,
                host: (*host).to_owned(),
                remote_port: *port,
            };
            proxy.check_route(&route).unwrap();
            let listener = family.bind(0).unwrap();
            addresses.push(SocketAddr::from((
                [127, 0, 0, 1],
                listener.tcp_port().unwrap(),
            )));
            proxy.serve_route(&mut services, listener, route).unwrap();
        }
        let connect = connect.then(|| {
            let listener = family.bind(0).unwrap();
            let address = SocketAddr::from(([127, 0, 0, 1], listener.tcp_port().unwrap()));
            proxy.serve_connect(&mut services, listener).unwrap();
            address
        });
        let shutdown = services.shutdown().clone();
        let tracker = Arc::clone(services.tracker());
        let stopped = Some(std::thread::spawn(move || {
            services.run_until_stopped(drain)
        }));
        Self {
            proxy,
            routes: addresses,
            connect,
            shutdown,
            tracker,
            lines,
            events,
            stopped,
        }
    }

    fn wait_for_line(&self, needle: &str) -> String {
        loop {
            let line = self
                .events
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no {needle:?} in {:#?}", self.lines.lock().unwrap()));
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn stop(mut self) -> usize {
        self.shutdown.trigger();
        self.stopped.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// True when the peer closed without sending anything (end of file, or a reset because our
/// unread bytes were still in its buffer when it closed).
fn closed_without_data(stream: &mut TcpStream) -> bool {
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => out.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Reads until end of file.
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn allowlisted_routes_carry_bytes_both_ways() {
    let echo = echo_server();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
        echo.port()
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        Limits::default(),
        &[("127.0.0.1", echo.port())],
        false,
        WAIT,
    );
    let mut client = connect(running.routes[0]);
    // 4 MiB each way, written and read concurrently.
    let data = pseudo_random(4 << 20);
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let writing = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        // Half-close: the echo server sees end of file, echoes the rest, and closes.
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let back = read_all(&mut client);
    writing.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echoed bytes differ");
    let closed = running.wait_for_line("closed after");
    assert!(
        closed.contains(&format!(
            "{} bytes up, {} bytes down",
            data.len(),
            data.len()
        )),
        "{closed}"
    );
    let lines = running.lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("connected via 127.0.0.1:{}", echo.port()))),
        "{lines:#?}"
    );
    assert_eq!(running.stop(), 0);
}

/// Sends a CONNECT for `target`; returns the status line and what followed it.
fn connect_through(proxy: SocketAddr, target: &str) -> (String, TcpStream) {
    let mut stream = connect(proxy);
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        if stream.read(&mut byte).unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).trim().to_owned(), stream)
}

#[test]
fn every_destination_the_allowlist_does_not_admit_is_refused() {
    let echo = echo_server();
    let port = echo.port();
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let resolver = Arc::new(TableResolver::default());
    resolver.set("kms.test", vec![ip("127.0.0.1")]);
    resolver.set("evil.test", vec![ip("10.9.9.9")]);
    resolver.set("meta.test", vec![ip("169.254.169.254")]);
    resolver.set("gone.test", vec![]);
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {port}}}\n- {{address: kms.test, port: \
         {port}}}\n- address: kms.test\n  port: 443\n"
    );
    let running = Running::start(
        &allow,
        Arc::clone(&resolver),
        Limits::default(),
        &[],
        true,
        WAIT,
    );
    let proxy = running.connect.unwrap();

    // Admitted: a listed name (its loopback address has a literal entry) and the literal IP.
    for target in [format!("kms.test:{port}"), format!("127.0.0.1:{port}")] {
        let (status, mut tunnel) = connect_through(proxy, &target);
        assert_eq!(status, "HTTP/1.1 200 Connection established", "{target}");
        let mut blank = [0u8; 2];
        tunnel.read_exact(&mut blank).unwrap();
        assert_eq!(
            round_trip(&mut tunnel, b"through the tunnel"),
            b"through the tunnel"
        );
    }

    let cases = [
        (
            format!("127.0.0.1:{closed_port}"),
            "403",
            format!("no allowlist entry has port {closed_port}"),
        ),
        (
            format!("127.0.0.2:{port}"),
            "403",
            "127.0.0.2 matches no allowlist entry".to_owned(),
        ),
        (
            format!("[::1]:{port}"),
            "403",
            "::1 matches no allowlist entry".to_owned(),
        ),
        (
            format!("evil.test:{port}"),
            "403",
            "10.9.9.9 matches no allowlist entry".to_owned(),
        ),
        (
            "meta.test:443".to_owned(),
            "403",
            "169.254.169.254 matches no allowlist entry".to_owned(),
        ),
        (
            "kms.test:443".to_owned(),
            "403",
            "127.0.0.1 is loopback".to_owned(),
        ),
        (
            format!("gone.test:{port}"),
            "403",
            "gone.test does not resolve".to_owned(),
        ),
        (
            "169.254.169.254:80".to_owned(),
            "403",
            "no allowlist entry has port 80".to_owned(),
        ),
        (
            "ex$mple.test:443".to_owned(),
            "403",
            "is not a host name or IP address".to_owned(),
        ),
        ("kms.test".to_owned(), "400", "is not host:port".to_owned()),
        ("kms.test:99999".to_owned(), "400", "bad port".to_owned()),
    ];
    for (target, status, reason) in &cases {
        let (line, mut stream) = connect_through(proxy, target);
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{target}: {line}"
        );
        let rest = String::from_utf8_lossy(&read_all(&mut stream)).into_owned();
        assert!(rest.contains(reason.as_str()), "{target}: {rest}");
        let logged = running.wait_for_line("REFUSED");
        assert!(logged.contains(reason.as_str()), "{target}: {logged}");
    }
    // A request that is not CONNECT.
    let mut stream = connect(proxy);
    stream
        .write_all(b"GET http://kms.test/ HTTP/1.1\r\nHost: kms.test\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8_lossy(&read_all(&mut stream)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("method GET"), "{answer}");

    let stats = running.proxy.stats();
    assert_eq!(stats.refused.load(Ordering::SeqCst), cases.len() as u64 + 1);
    assert_eq!(stats.upstream_failed.load(Ordering::SeqCst), 0);
    running.stop();
}

#[test]
fn routes_are_checked_at_start_and_again_for_every_connection() {
    let echo = echo_server();
    let port = echo.port();
    let resolver = Arc::new(TableResolver::default());
    resolver.set("kms.test", vec![ip("127.0.0.1")]);
    let allow = format!("allowlist:\n- {{address: 127.0.0.1, port: {port}}}\n");
    let running = Running::start(
        &allow,
        Arc::clone(&resolver),
        Limits::default(),
        &[("kms.test", port)],
        false,
        WAIT,
    );
    // At start: a route the allowlist does not admit is refused, naming why.
    for (host, remote_port, reason) in [
        ("evil.test", port, "does not resolve"),
        ("127.0.0.1", 443, "no allowlist entry has port 443"),
        ("127.0.0.3", port, "127.0.0.3 matches no allowlist entry"),
    ] {
        let refusal = running
            .proxy
            .check_route(&Route {
                port: 8000,
                host: host.into(),
                remote_port,
            })
            .unwrap_err();
        assert!(refusal.to_string().contains(reason), "{host}: {refusal}");
    }

    let mut first = connect(running.routes[0]);
    assert_eq!(round_trip(&mut first, b"one"), b"one");

    // The name now resolves somewhere else: the next connection is refused and closed.
    resolver.set("kms.test", vec![ip("127.0.0.2")]);
    let mut second = connect(running.routes[0]);
    let _ = second.write_all(b"two");
    assert!(closed_without_data(&mut second));
    let refused = running.wait_for_line("REFUSED");
    assert!(
        refused.contains(&format!(
            "kms.test:{port} is not allowed: 127.0.0.2 matches no allowlist entry"
        )),
        "{refused}"
    );
    // The connection already open is not affected, and the name resolving back restores it.
    assert_eq!(round_trip(&mut first, b"still"), b"still");
    resolver.set("kms.test", vec![ip("127.0.0.1")]);
    let mut third = connect(running.routes[0]);
    assert_eq!(round_trip(&mut third, b"three"), b"three");
    assert_eq!(running.proxy.stats().refused.load(Ordering::SeqCst), 1);
    drop((first, third));
    assert_eq!(running.stop(), 0);
}

#[test]
fn a_thousand_connections_are_held_and_served_at_once() {
    const CONNECTIONS: usize = 1000;
    let (_, limit) = ccc_sys::process::raise_open_files_limit().unwrap();
    assert!(
        limit >= 5 * CONNECTIONS as u64,
        "the open-file limit is {limit}; this test needs {} (ulimit -Hn)",
        5 * CONNECTIONS
    );
    let echo = echo_server();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
        echo.port()
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        Limits {
            max_connections: 2 * CONNECTIONS,
            ..Limits::default()
        },
        &[("127.0.0.1", echo.port())],
        false,
        WAIT,
    );
    let mut clients: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|i| {
            let mut stream = connect(running.routes[0]);
            stream.write_all(format!("{i:08}").as_bytes()).unwrap();
            stream
        })
        .collect();
    for (i, stream) in clients.iter_mut().enumerate() {
        let mut back = [0u8; 8];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, format!("{i:08}").as_bytes());
    }
    // Every one is answered and still open: all are proxied at the same time.
    assert_eq!(running.tracker.open(), CONNECTIONS);
    // And they still carry bytes.
    for stream in &mut clients {
        assert_eq!(round_trip(stream, b"again"), b"again");
    }
    drop(clients);
    assert_eq!(running.tracker.drain(Duration::from_secs(120)), 0);
    let stats = running.proxy.stats();
    assert_eq!(stats.completed.load(Ordering::SeqCst), CONNECTIONS as u64);
    assert_eq!(stats.over_limit.load(Ordering::SeqCst), 0);
    assert_eq!(running.stop(), 0);
}

/// A listener whose accept queue is full: connecting to it hangs (the SYN is dropped).
fn blackhole() -> (TcpListener, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let listener: TcpListener = socket.into();
    let address = listener.local_addr().unwrap();
    // Fill the queue until a connect times out: from then on every SYN is dropped.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
            Ok(stream) => fillers.push(stream),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                return (listener, fillers);
            }
        }
    }
    panic!("the accept queue never filled")
}

#[test]
fn a_blackholed_or_stalled_upstream_holds_only_its_own_connection() {
    let echo = echo_server();
    let (hole, _fillers) = blackhole();
    let hole_port = hole.local_addr().unwrap().port();
    // An upstream that accepts and then neither reads nor writes.
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let stall_port = stall.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in stall.incoming().flatten() {
            holder.lock().unwrap().push(stream);
        }
    });
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n- {{address: 127.0.0.1, port: \
         {hole_port}}}\n- {{address: 127.0.0.1, port: {stall_port}}}\n",
        echo.port()
    );
    // Timeouts far beyond the test: the stuck connections stay stuck throughout.
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        Limits {
            connect_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(600),
            ..Limits::default()
        },
        &[
            ("127.0.0.1", echo.port()),
            ("127.0.0.1", hole_port),
            ("127.0.0.1", stall_port),
        ],
        false,
        Duration::ZERO,
    );
    let mut to_hole = connect(running.routes[1]);
    to_hole.write_all(b"anyone there?").unwrap();
    let to_stall = connect(running.routes[2]);
    let stall_writer = {
        let mut writer = to_stall.try_clone().unwrap();
        // Far more than the socket buffers hold: the proxy's write to the upstream blocks.
        std::thread::spawn(move || {
            let chunk = vec![0u8; 1 << 20];
            while writer.write_all(&chunk).is_ok() {}
        })
    };
    // Both stuck connections are in the proxy's hands before the others start.
    assert_eq!(running.tracker.wait_until(WAIT, |open| open >= 2), 2);
    // Meanwhile, other connections are served.
    for i in 0..50 {
        let mut client = connect(running.routes[0]);
        let message = format!("request {i}");
        assert_eq!(
            round_trip(&mut client, message.as_bytes()),
            message.as_bytes()
        );
    }
    // Once those 50 have ended (the tracker's count, not their log lines: a line can be
    // seen before its connection is untracked), the two stuck connections are still in
    // flight: they were stuck the whole time the others were served.
    assert_eq!(running.tracker.wait_until(WAIT, |open| open <= 2), 2);
    assert_eq!(
        running.proxy.stats().upstream_failed.load(Ordering::SeqCst),
        0
    );
    // Shutdown with no drain time cuts them; both clients see the end.
    assert_eq!(running.stop(), 2);
    assert!(closed_without_data(&mut to_hole));
    // The writer is blocked on a full window; shutting our side down releases it. The proxy
    // may already have closed it (then the kernel says "not connected", which is fine).
    if let Err(e) = to_stall.shutdown(std::net::Shutdown::Both) {
        assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
    }
    stall_writer.join().unwrap();
}

#[test]
fn a_dead_upstream_fails_fast_and_a_blackhole_at_the_connect_timeout() {
    let (hole, _fillers) = blackhole();
    let hole_port = hole.local_addr().unwrap().port();
    let dead_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {hole_port}}}\n- {{address: 127.0.0.1, port: \
         {dead_port}}}\n"
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        Limits {
            connect_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        &[("127.0.0.1", hole_port), ("127.0.0.1", dead_port)],
        false,
        WAIT,
    );
    let mut to_dead = connect(running.routes[1]);
    assert!(closed_without_data(&mut to_dead));
    let line = running.wait_for_line("cannot connect upstream");
    assert!(line.contains(&format!("127.0.0.1:{dead_port}")), "{line}");
    let mut to_hole = connect(running.routes[0]);
    assert!(closed_without_data(&mut to_hole));
    let line = running.wait_for_line("cannot connect upstream");
    assert!(
        line.contains("no answer within 500ms (--connect-timeout)"),
        "{line}"
    );
    assert_eq!(
        running.proxy.stats().upstream_failed.load(Ordering::SeqCst),
        2
    );
    assert_eq!(running.stop(), 0);
}

#[test]
fn connections_over_the_limit_are_refused() {
    let echo = echo_server();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
        echo.port()
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
        &[("127.0.0.1", echo.port())],
        false,
        WAIT,
    );
    let mut a = connect(running.routes[0]);
    let mut b = connect(running.routes[0]);
    assert_eq!(round_trip(&mut a, b"a"), b"a");
    assert_eq!(round_trip(&mut b, b"b"), b"b");
    let mut c = connect(running.routes[0]);
    assert!(closed_without_data(&mut c));
    let line = running.wait_for_line("REFUSED");
    assert!(
        line.contains("2 connections are open (--max-connections)"),
        "{line}"
    );
    assert_eq!(running.proxy.stats().over_limit.load(Ordering::SeqCst), 1);
    drop((a, b));
    assert_eq!(running.tracker.drain(WAIT), 0);
    let mut d = connect(running.routes[0]);
    assert_eq!(round_trip(&mut d, b"d"), b"d");
    drop(d);
    running.stop();
}

#[test]
fn shutdown_stops_accepting_and_lets_open_connections_finish() {
    let echo = echo_server();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
        echo.port()
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        Limits::default(),
        &[("127.0.0.1", echo.port())],
        false,
        WAIT,
    );
    let mut open = connect(running.routes[0]);
    assert_eq!(round_trip(&mut open, b"before"), b"before");
    running.shutdown.trigger();
    running.wait_for_line("waiting up to");
    // No new connections...
    let refused = TcpStream::connect(running.routes[0]).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // ...but the open one still works until it ends.
    assert_eq!(round_trip(&mut open, b"during"), b"during");
    drop(open);
    assert_eq!(running.stop(), 0);
}

#[test]
fn the_drain_deadline_cuts_what_is_still_open() {
    let echo = echo_server();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
        echo.port()
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        Limits::default(),
        &[("127.0.0.1", echo.port())],
        false,
        Duration::from_millis(200),
    );
    let mut open = connect(running.routes[0]);
    assert_eq!(round_trip(&mut open, b"hello"), b"hello");
    assert_eq!(running.stop(), 1);
    assert!(closed_without_data(&mut open));
}

// What the event loop adds: connections share a few threads, so nothing about one
// connection may hold the thread the others run on. These tests run the proxy with one loop
// thread (`relay_threads: 1`), so every connection shares it.

/// An upstream that accepts and then never reads nor writes; it keeps the sockets open.
fn stalled_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    address
}

/// An upstream that writes to every connection until the write fails.
fn firehose_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let chunk = vec![0xa5u8; 64 * 1024];
                while (&stream).write_all(&chunk).is_ok() {}
            });
        }
    });
    address
}

fn one_loop(limits: Limits) -> Limits {
    Limits {
        relay_threads: 1,
        ..limits
    }
}

#[test]
fn many_slow_peers_do_not_stall_others_on_the_same_loop_thread() {
    const SLOW: usize = 20;
    let echo = echo_server();
    let stalled = stalled_upstream();
    let firehose = firehose_upstream();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n- {{address: 127.0.0.1, port: {}}}\n- \
         {{address: 127.0.0.1, port: {}}}\n",
        echo.port(),
        stalled.port(),
        firehose.port()
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        one_loop(Limits {
            idle_timeout: Duration::from_secs(600),
            ..Limits::default()
        }),
        &[
            ("127.0.0.1", echo.port()),
            ("127.0.0.1", stalled.port()),
            ("127.0.0.1", firehose.port()),
        ],
        false,
        Duration::ZERO,
    );
    // Clients that write far more than an upstream that never reads can take...
    let mut writers = Vec::new();
    let mut held = Vec::new();
    for _ in 0..SLOW {
        let client = connect(running.routes[1]);
        let writer = client.try_clone().unwrap();
        writers.push(std::thread::spawn(move || {
            let chunk = vec![0u8; 256 * 1024];
            while (&writer).write_all(&chunk).is_ok() {}
        }));
        held.push(client);
    }
    // ...and clients that never read what an upstream sends without end (each reads one
    // byte first, so its relay is known to be running).
    for _ in 0..SLOW {
        let mut client = connect(running.routes[2]);
        let mut byte = [0u8; 1];
        client.read_exact(&mut byte).unwrap();
        held.push(client);
    }
    assert_eq!(
        running.tracker.wait_until(WAIT, |open| open >= 2 * SLOW),
        2 * SLOW
    );
    // The one loop thread still serves everyone else: bulk both ways, and many short
    // connections.
    let mut bulk = connect(running.routes[0]);
    let data = pseudo_random(1 << 20);
    let mut writer = bulk.try_clone().unwrap();
    let sent = data.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    bulk.read_exact(&mut back).unwrap();
    writing.join().unwrap();
    assert!(back == data, "the echoed bytes differ");
    drop(bulk);
    for i in 0..20 {
        let mut client = connect(running.routes[0]);
        let message = format!("short {i}");
        assert_eq!(
            round_trip(&mut client, message.as_bytes()),
            message.as_bytes()
        );
    }
    // The slow ones were held the whole time and are cut at the stop.
    assert_eq!(
        running.tracker.wait_until(WAIT, |open| open <= 2 * SLOW),
        2 * SLOW
    );
    assert_eq!(running.stop(), 2 * SLOW);
    for client in &held {
        let _ = client.shutdown(std::net::Shutdown::Both);
    }
    for writer in writers {
        writer.join().unwrap();
    }
}

#[test]
fn half_closes_pass_in_either_order() {
    // An upstream that speaks first and half-closes first, then reads what the client sends
    // after that; it reports what it read.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let banner_port = listener.local_addr().unwrap().port();
    let (tx, heard) = channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"banner").unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        tx.send(read_all(&mut stream)).unwrap();
    });
    // An upstream that reads until the client half-closes, then answers and closes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let answer_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let request = read_all(&mut stream);
        stream
            .write_all(format!("answer to {}", String::from_utf8_lossy(&request)).as_bytes())
            .unwrap();
    });
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {banner_port}}}\n- {{address: 127.0.0.1, \
         port: {answer_port}}}\n"
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        one_loop(Limits::default()),
        &[("127.0.0.1", banner_port), ("127.0.0.1", answer_port)],
        false,
        WAIT,
    );

    // Upstream half-closes first: the client reads the end, and can still send.
    let mut client = connect(running.routes[0]);
    assert_eq!(read_all(&mut client), b"banner");
    client.write_all(b"still talking").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(heard.recv_timeout(WAIT).unwrap(), b"still talking");
    let closed = running.wait_for_line("closed after");
    assert!(closed.contains("13 bytes up, 6 bytes down"), "{closed}");

    // The client half-closes first: upstream reads the end, and can still answer.
    let mut client = connect(running.routes[1]);
    client.write_all(b"the question").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut client), b"answer to the question");
    let closed = running.wait_for_line("closed after");
    assert!(closed.contains("12 bytes up, 22 bytes down"), "{closed}");
    assert_eq!(running.stop(), 0);
}

#[test]
fn connects_that_never_complete_time_out_without_holding_the_loop_thread() {
    const PENDING: usize = 50;
    let echo = echo_server();
    let (hole, _fillers) = blackhole();
    let hole_port = hole.local_addr().unwrap().port();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n- {{address: 127.0.0.1, port: \
         {hole_port}}}\n",
        echo.port()
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        one_loop(Limits {
            connect_timeout: Duration::from_secs(2),
            ..Limits::default()
        }),
        &[("127.0.0.1", echo.port()), ("127.0.0.1", hole_port)],
        false,
        WAIT,
    );
    let mut pending: Vec<TcpStream> = (0..PENDING).map(|_| connect(running.routes[1])).collect();
    assert_eq!(
        running.tracker.wait_until(WAIT, |open| open >= PENDING),
        PENDING
    );
    // Were a connect to hold the loop thread, this would wait for PENDING connect timeouts
    // in a row (100 s, past the client's 60 s read timeout).
    let mut client = connect(running.routes[0]);
    assert_eq!(round_trip(&mut client, b"served"), b"served");
    drop(client);
    // Each pending connect gives up at its own deadline, and its client is closed.
    for stream in &mut pending {
        assert!(closed_without_data(stream));
    }
    assert_eq!(running.tracker.wait_until(WAIT, |open| open == 0), 0);
    let stats = running.proxy.stats();
    assert_eq!(stats.upstream_failed.load(Ordering::SeqCst), PENDING as u64);
    let lines = running.lines.lock().unwrap().clone();
    let timed_out = lines
        .iter()
        .filter(|l| l.contains("no answer within 2s (--connect-timeout)"))
        .count();
    assert_eq!(timed_out, PENDING, "{lines:#?}");
    assert_eq!(running.stop(), 0);
}

/// A resolver whose answers wait until the test lets them through.
#[derive(Debug)]
struct GatedResolver {
    gate: Mutex<Receiver<()>>,
}

impl ccc_template_parent::allowlist::Resolver for GatedResolver {
    fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
        // Blocks until a token arrives or the sender is gone.
        let _ = self.gate.lock().unwrap().recv();
        Ok(vec![ip("127.0.0.1")])
    }
}

#[test]
fn the_drain_deadline_cuts_connections_in_every_state() {
    let echo = echo_server();
    let (hole, _fillers) = blackhole();
    let hole_port = hole.local_addr().unwrap().port();
    let (open_gate, gate) = channel::<()>();
    let resolver = Arc::new(GatedResolver {
        gate: Mutex::new(gate),
    });
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n- {{address: 127.0.0.1, port: \
         {hole_port}}}\n- {{address: slow.test, port: {}}}\n",
        echo.port(),
        echo.port()
    );
    // Built by hand: `Running::start` checks routes at start, which the gated resolver
    // would block.
    let (log, lines) = Log::capture(true);
    let mut services = Services::new(log).unwrap();
    let proxy = Proxy::new(
        Allowlist::parse(&allow).unwrap(),
        resolver,
        one_loop(Limits {
            connect_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(600),
            ..Limits::default()
        }),
        &services,
    );
    let family = Family::Tcp("127.0.0.1".into());
    let mut addresses = Vec::new();
    for (host, port) in [
        ("127.0.0.1", echo.port()),
        ("127.0.0.1", hole_port),
        ("slow.test", echo.port()),
    ] {
        let listener = family.bind(0).unwrap();
        addresses.push(SocketAddr::from((
            [127, 0, 0, 1],
            listener.tcp_port().unwrap(),
        )));
        let route = Route {
            port: 0,
            host: host.into(),
            remote_port: port,
        };
        proxy.serve_route(&mut services, listener, route).unwrap();
    }
    let listener = family.bind(0).unwrap();
    let connect_address = SocketAddr::from(([127, 0, 0, 1], listener.tcp_port().unwrap()));
    proxy.serve_connect(&mut services, listener).unwrap();
    let tracker = Arc::clone(services.tracker());
    let shutdown = services.shutdown().clone();

    // Relaying.
    let mut relaying = connect(addresses[0]);
    assert_eq!(round_trip(&mut relaying, b"relaying"), b"relaying");
    // Connecting, to an upstream that never answers.
    let mut connecting = connect(addresses[1]);
    // Admitting: its name's resolution waits at the gate.
    let mut admitting = connect(addresses[2]);
    // Reading a CONNECT head that never ends.
    let mut heading = connect(connect_address);
    heading
        .write_all(b"CONNECT kms.test:443 HTTP/1.1\r\n")
        .unwrap();
    assert_eq!(tracker.wait_until(WAIT, |open| open >= 4), 4);

    shutdown.trigger();
    // No drain time: every one of them is cut at once.
    assert_eq!(services.run_until_stopped(Duration::ZERO), 4);
    for (name, stream) in [
        ("relaying", &mut relaying),
        ("connecting", &mut connecting),
        ("admitting", &mut admitting),
        ("heading", &mut heading),
    ] {
        assert!(closed_without_data(stream), "{name}");
    }
    drop(open_gate);
    assert_eq!(tracker.wait_until(WAIT, |open| open == 0), 0);
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("closed after")),
        "the relaying connection's end is logged: {lines:#?}"
    );
}

#[test]
fn silence_past_the_idle_timeout_ends_both_sides() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let allow = format!("allowlist:\n- {{address: 127.0.0.1, port: {port}}}\n");
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        one_loop(Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        }),
        &[("127.0.0.1", port)],
        false,
        WAIT,
    );
    let mut client = connect(running.routes[0]);
    client.write_all(b"x").unwrap();
    let (mut upstream, _) = listener.accept().unwrap();
    upstream.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    upstream.read_exact(&mut byte).unwrap();
    // Then nothing: the proxy ends both sides.
    assert!(closed_without_data(&mut upstream));
    assert!(closed_without_data(&mut client));
    let closed = running.wait_for_line("closed after");
    assert!(closed.contains("1 bytes up, 0 bytes down"), "{closed}");
    assert_eq!(running.stop(), 0);
}

#[test]
fn bytes_sent_with_the_connect_head_reach_upstream_after_the_answer() {
    let echo = echo_server();
    let allow = format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
        echo.port()
    );
    let running = Running::start(
        &allow,
        Arc::new(TableResolver::default()),
        one_loop(Limits::default()),
        &[],
        true,
        WAIT,
    );
    let mut client = connect(running.connect.unwrap());
    // One write: the head and the first bytes of the tunnel.
    write!(
        client,
        "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\nearly bytes",
        echo.port()
    )
    .unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = read_all(&mut client);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "HTTP/1.1 200 Connection established\r\n\r\nearly bytes"
    );
    assert_eq!(running.stop(), 0);
}

#[test]
fn short_connections_from_many_clients_at_once_are_all_served_by_one_loop_thread() {
    // Every connection is a message to the loop and, when the loop was idle, a wake-up byte.
    // Many clients opening short connections at once race the loop draining its wake-up
    // socket; a lost wake-up leaves connections adopted but never started, and their clients
    // wait until `connect`'s read timeout fails the round trip below.
    const CLIENTS: usize = 64;
    const EACH: usize = 40;
    let echo = echo_server();
    let running = Running::start(
        &format!(
            "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
            echo.port()
        ),
        Arc::new(TableResolver::default()),
        one_loop(Limits::default()),
        &[("127.0.0.1", echo.port())],
        false,
        Duration::ZERO,
    );
    let route = running.routes[0];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let mut client = connect(route);
                    let message = format!("client {c}, connection {i}");
                    assert_eq!(
                        round_trip(&mut client, message.as_bytes()),
                        message.as_bytes()
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(
        running.tracker.wait_until(WAIT, |open| open == 0),
        0,
        "connections still open after every client closed"
    );
    assert_eq!(running.stop(), 0);
}

#[test]
fn the_metrics_counters_follow_connections_on_the_loop() {
    let echo = echo_server();
    let running = Running::start(
        &format!(
            "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
            echo.port()
        ),
        Arc::new(TableResolver::default()),
        one_loop(Limits::default()),
        &[("127.0.0.1", echo.port())],
        false,
        Duration::ZERO,
    );
    let stats = Arc::clone(running.proxy.stats());
    let mut client = connect(running.routes[0]);
    let data = pseudo_random(100_000);
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    client.read_exact(&mut back).unwrap();
    writing.join().unwrap();
    assert!(back == data, "the echoed bytes differ");
    // While it is open it counts as active.
    assert_eq!(stats.active.load(Ordering::Relaxed), 1);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_all(&mut client).is_empty());
    assert_eq!(running.tracker.wait_until(WAIT, |open| open == 0), 0);
    assert_eq!(stats.active.load(Ordering::Relaxed), 0);
    assert_eq!(stats.completed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.bytes_up.load(Ordering::Relaxed), data.len() as u64);
    assert_eq!(stats.bytes_down.load(Ordering::Relaxed), data.len() as u64);
    assert_eq!(running.stop(), 0);
}
