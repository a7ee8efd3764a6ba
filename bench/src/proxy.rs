//! `cargo xtask bench proxy`: the parent's proxy (`ccc-template-parent`, in process) against a
//! direct connection to the same upstream, on loopback: bulk throughput (MB/s) and connection
//! rate (connections/s) with 1 and 64 streams. Target: the proxy at least 0.8x direct.
//!
//! The enclave side of the proxy is a Unix socket here (the path vhost-device-vsock uses in
//! emulation): this host has no vsock loopback (`bind` to CID 1 fails, see the QEMU notes
//! §1.5), and the proxy's code after `accept` is the same for every transport. Upstream is TCP
//! on 127.0.0.1, as KMS is TCP from the parent. Direct = the client's own TCP connection to
//! the upstream.

use anyhow::{Context, Result};
use ccc_template_parent::allowlist::{Allowlist, SystemResolver};
use ccc_template_parent::net::Family;
use ccc_template_parent::proxy::{Limits, Proxy, Route};
use ccc_template_parent::service::{Log, Services};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes each bulk stream receives.
const BULK_BYTES: usize = 256 << 20;
/// Bytes per stream when 64 run at once (the same total).
const BULK_BYTES_64: usize = BULK_BYTES / 64 * 4;
/// Connections per connection-rate run (each: connect, 1 byte each way, close).
const CONNECTIONS: usize = 4000;
/// Runs per contender; the best counts (the machine is shared).
const RUNS: usize = 5;

/// The upstream's two services: bulk (writes `n` bytes, then closes) and ping (echoes one
/// byte, then closes).
fn upstream(kind: &'static str, bulk: usize) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        let chunk = vec![0x5a_u8; 64 * 1024];
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                if kind == "bulk" {
                    let mut left = bulk;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if stream.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                } else {
                    let mut byte = [0u8; 1];
                    if stream.read_exact(&mut byte).is_ok() {
                        let _ = stream.write_all(&byte);
                    }
                }
            });
        }
    });
    Ok(address)
}

/// Where a client connects.
#[derive(Clone)]
enum Via {
    Direct(SocketAddr),
    Proxy(PathBuf),
}

enum Client {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Via {
    fn connect(&self) -> Result<Client> {
        Ok(match self {
            Self::Direct(address) => {
                let stream = TcpStream::connect(address)?;
                stream.set_nodelay(true)?;
                Client::Tcp(stream)
            }
            Self::Proxy(path) => Client::Unix(UnixStream::connect(path)?),
        })
    }
}

impl Client {
    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Self::Tcp(s) => s,
            Self::Unix(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Reads one bulk stream to its end; returns the bytes.
fn drain(via: &Via) -> Result<usize> {
    let mut client = via.connect()?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match client.stream().read(&mut buffer)? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

/// One ping connection.
fn ping(via: &Via) -> Result<()> {
    let mut client = via.connect()?;
    client.stream().write_all(b"p")?;
    let mut byte = [0u8; 1];
    client.stream().read_exact(&mut byte)?;
    Ok(())
}

/// Runs `work` on `streams` threads at once; returns the wall time of the whole batch.
fn parallel(streams: usize, work: impl Fn() -> Result<()> + Send + Sync) -> Result<Duration> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..streams).map(|_| scope.spawn(&work)).collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(started.elapsed())
}

/// MB/s of `streams` bulk streams of `per_stream` bytes; the best of [`RUNS`].
fn throughput(via: &Via, streams: usize, per_stream: usize) -> Result<f64> {
    let mut best = 0.0f64;
    for _ in 0..RUNS {
        let elapsed = parallel(streams, || {
            let got = drain(via)?;
            anyhow::ensure!(got == per_stream, "a stream ended after {got} bytes");
            Ok(())
        })?;
        best = best.max((streams * per_stream) as f64 / 1e6 / elapsed.as_secs_f64());
    }
    Ok(best)
}

/// Connections per second over `streams` threads; the best of [`RUNS`].
fn connection_rate(via: &Via, streams: usize) -> Result<f64> {
    let per_thread = CONNECTIONS / streams;
    let mut best = 0.0f64;
    for _ in 0..RUNS {
        let elapsed = parallel(streams, || {
            for _ in 0..per_thread {
                ping(via)?;
            }
            Ok(())
        })?;
        best = best.max((per_thread * streams) as f64 / elapsed.as_secs_f64());
    }
    Ok(best)
}

fn row(label: &str, unit: &str, direct: f64, proxied: f64) {
    let ratio = proxied / direct;
    let verdict = if ratio >= 0.8 { "ok" } else { "BELOW 0.8x" };
    println!(
        "{label:<34} direct {direct:>10.0} {unit:<7} proxy {proxied:>10.0} {unit:<7} {ratio:>5.2}x  {verdict}"
    );
}

pub(crate) fn run() -> Result<()> {
    let (_, limit) = ccc_sys::process::raise_open_files_limit()?;
    let dir = std::env::temp_dir().join(format!("ccc-bench-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bulk_1 = upstream("bulk", BULK_BYTES)?;
    let bulk_64 = upstream("bulk", BULK_BYTES_64)?;
    let pinger = upstream("ping", 0)?;

    let allowlist = Allowlist::parse(&format!(
        "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n- {{address: 127.0.0.1, port: {}}}\n- \
         {{address: 127.0.0.1, port: {}}}\n",
        bulk_1.port(),
        bulk_64.port(),
        pinger.port()
    ))
    .map_err(anyhow::Error::msg)?;
    let mut services = Services::new(Log::stderr(false))?;
    let proxy = Proxy::new(
        allowlist,
        Arc::new(SystemResolver),
        Limits::default(),
        &services,
    );
    let family = Family::Uds(dir.join("vm.vsock"));
    let mut routes = Vec::new();
    for (port, upstream) in [(1u32, bulk_1), (2, bulk_64), (3, pinger)] {
        let route = Route {
            port,
            host: "127.0.0.1".into(),
            remote_port: upstream.port(),
        };
        proxy
            .check_route(&route)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        proxy.serve_route(&mut services, family.bind(port)?, route)?;
        routes.push(Via::Proxy(dir.join(format!("vm.vsock_{port}"))));
    }
    let shutdown = services.shutdown().clone();
    let stopped = std::thread::spawn(move || services.run_until_stopped(Duration::from_secs(5)));

    println!(
        "proxy: ccc-template-parent in process, enclave side on a Unix socket, upstream TCP \
         127.0.0.1 (open-file limit {limit}); best of {RUNS} runs"
    );
    let cases: [(&str, usize, usize, SocketAddr, &Via); 2] = [
        ("throughput, 1 stream", 1, BULK_BYTES, bulk_1, &routes[0]),
        (
            "throughput, 64 streams",
            64,
            BULK_BYTES_64,
            bulk_64,
            &routes[1],
        ),
    ];
    for (label, streams, per_stream, upstream, proxied) in cases {
        let direct = throughput(&Via::Direct(upstream), streams, per_stream)
            .with_context(|| format!("{label}, direct"))?;
        let through =
            throughput(proxied, streams, per_stream).with_context(|| format!("{label}, proxy"))?;
        row(label, "MB/s", direct, through);
    }
    for (label, streams) in [
        ("connections, 1 stream", 1),
        ("connections, 64 streams", 64),
    ] {
        let direct = connection_rate(&Via::Direct(pinger), streams)
            .with_context(|| format!("{label}, direct"))?;
        let through =
            connection_rate(&routes[2], streams).with_context(|| format!("{label}, proxy"))?;
        row(label, "conn/s", direct, through);
    }
    shutdown.trigger();
    let _ = stopped.join();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
