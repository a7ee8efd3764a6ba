//! `cargo xtask bench proxy`: three ways to reach the same upstream, timed in one run: a
//! direct connection, the parent's proxy (`ccc-template-parent`, in process), and socat
//! (Debian's `socat`, what operators use to forward vsock by hand). Bulk throughput (MB/s)
//! with 1 and 64 streams, and connection rate (connections/s) with 1 and 64 clients. Goals:
//! the proxy at least 2x socat on every row, and at least 0.8x direct with 64 streams.
//!
//! Fairness: the proxy and socat get the same front and the same upstream. The enclave side
//! is a Unix socket for both (the path vhost-device-vsock uses in emulation): this host has
//! no vsock loopback (`bind` to CID 1 fails, see the QEMU notes §1.5), and neither program's
//! code after `accept` depends on the transport. socat runs as operators run it,
//! `socat UNIX-LISTEN:<path>,fork TCP:127.0.0.1:<port>` (a process per connection, its
//! default 8 KiB buffer), with `-d -d` so that it announces when it listens (its per
//! connection notices are read and dropped). Upstream is TCP on 127.0.0.1, as KMS is TCP from
//! the parent. Direct = the client's own TCP connection to the upstream, no hop at all.
//! Contenders take turns run by run, so a burst of load from the other engineers on this
//! shared machine hits all three alike; the best of [`RUNS`] counts, and the load average
//! is printed before and after.

use anyhow::{Context, Result, bail};
use ccc_template_parent::allowlist::{Allowlist, SystemResolver};
use ccc_template_parent::net::Family;
use ccc_template_parent::proxy::{Limits, Proxy, Route};
use ccc_template_parent::service::{Log, Services};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes each bulk stream receives.
const BULK_BYTES: usize = 256 << 20;
/// Bytes per stream when 64 run at once (4x the single stream's total).
const BULK_BYTES_64: usize = BULK_BYTES / 64 * 4;
/// Connections per connection-rate run (each: connect, 1 byte each way, close).
const CONNECTIONS: usize = 4000;
/// Runs per contender; the best counts (the machine is shared).
const RUNS: usize = 5;
/// What to run when socat is missing.
const INSTALL_SOCAT: &str = "apt-get install -y socat";

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
    Unix(PathBuf),
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
            Self::Unix(path) => Client::Unix(UnixStream::connect(path)?),
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

/// MB/s of one run of `streams` bulk streams of `per_stream` bytes.
fn throughput(via: &Via, streams: usize, per_stream: usize) -> Result<f64> {
    let elapsed = parallel(streams, || {
        let got = drain(via)?;
        anyhow::ensure!(got == per_stream, "a stream ended after {got} bytes");
        Ok(())
    })?;
    Ok((streams * per_stream) as f64 / 1e6 / elapsed.as_secs_f64())
}

/// Connections per second of one run over `streams` threads.
fn connection_rate(via: &Via, streams: usize) -> Result<f64> {
    let per_thread = CONNECTIONS / streams;
    let elapsed = parallel(streams, || {
        for _ in 0..per_thread {
            ping(via)?;
        }
        Ok(())
    })?;
    Ok((per_thread * streams) as f64 / elapsed.as_secs_f64())
}

/// The best of [`RUNS`] runs of `measure` for each contender, the contenders taking turns.
fn best_of(contenders: &[(&str, &Via)], measure: impl Fn(&Via) -> Result<f64>) -> Result<Vec<f64>> {
    let mut best = vec![0.0f64; contenders.len()];
    for _ in 0..RUNS {
        for ((name, via), best) in contenders.iter().zip(best.iter_mut()) {
            let value = measure(via).with_context(|| format!("through {name}"))?;
            *best = best.max(value);
        }
    }
    Ok(best)
}

/// The load average (1, 5, 15 minutes) as `/proc/loadavg` says.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// One socat forwarding a Unix socket to a TCP port, a process per connection; killed when
/// dropped.
struct Socat {
    child: Child,
}

impl Socat {
    /// Starts it and waits for its "listening on" notice.
    fn start(path: &Path, upstream: SocketAddr) -> Result<Self> {
        let mut child = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("UNIX-LISTEN:{},fork", path.display()))
            .arg(format!("TCP:{upstream}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run socat; as root: {INSTALL_SOCAT}"))?;
        let stderr = child.stderr.take().context("socat's stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening on") => break,
                Some(Ok(line)) => seen.push(line),
                Some(Err(_)) | None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("socat exited before listening: {}", seen.join("\n"));
                }
            }
        }
        // Its per-connection notices keep coming: read and drop them, so it never blocks.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child })
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// socat's version line, or the command that installs it.
fn socat_version() -> Result<String> {
    let output = Command::new("socat").arg("-V").output();
    match output {
        Ok(output) if output.status.success() => Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| line.contains("socat version"))
            .unwrap_or("socat")
            .trim()
            .to_owned()),
        _ => bail!(
            "the proxy benchmark compares with socat, which is not installed. Run as root:\n    \
             {INSTALL_SOCAT}\n(`cargo xtask bench proxy` installs it when run as root)"
        ),
    }
}

fn row(label: &str, unit: &str, values: &[f64], direct_goal: Option<f64>) {
    let [direct, proxy, socat] = [values[0], values[1], values[2]];
    let versus_direct = proxy / direct;
    let versus_socat = proxy / socat;
    let mut verdicts = Vec::new();
    if versus_socat < 2.0 {
        verdicts.push("BELOW 2x socat");
    }
    if let Some(goal) = direct_goal
        && versus_direct < goal
    {
        verdicts.push("BELOW 0.8x direct");
    }
    let verdict = if verdicts.is_empty() {
        "goals met".to_owned()
    } else {
        verdicts.join(", ")
    };
    println!(
        "{label:<24} {direct:>9.0} {proxy:>9.0} {socat:>9.0} {unit:<7} {versus_direct:>5.2}x \
         {versus_socat:>6.2}x  {verdict}"
    );
}

pub(crate) fn run() -> Result<()> {
    let socat_version = socat_version()?;
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
    let limits = Limits::default();
    let proxy = Proxy::new(allowlist, Arc::new(SystemResolver), limits, &services);
    let family = Family::Uds(dir.join("vm.vsock"));
    // (direct, proxy, socat) per upstream.
    let mut contenders = Vec::new();
    let mut socats = Vec::new();
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
        let socat_path = dir.join(format!("socat_{port}"));
        socats.push(Socat::start(&socat_path, upstream)?);
        contenders.push([
            Via::Direct(upstream),
            Via::Unix(dir.join(format!("vm.vsock_{port}"))),
            Via::Unix(socat_path),
        ]);
    }
    let shutdown = services.shutdown().clone();
    let stopped = std::thread::spawn(move || services.run_until_stopped(Duration::from_secs(5)));

    println!(
        "proxy: direct TCP vs ccc-template-parent (in process, {} event loop(s)) vs {socat_version} \
         (UNIX-LISTEN,fork → TCP); proxy and socat behind the same Unix socket front, upstream \
         TCP 127.0.0.1; open-file limit {limit}; best of {RUNS} runs, taking turns",
        limits.loops()
    );
    println!("load average before: {}", load());
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:<7} {:>6} {:>7}",
        "", "direct", "proxy", "socat", "", "/direct", "/socat"
    );
    let names = ["direct", "the proxy", "socat"];
    let cases: [(&str, usize, usize, usize, Option<f64>); 2] = [
        ("throughput, 1 stream", 1, BULK_BYTES, 0, None),
        ("throughput, 64 streams", 64, BULK_BYTES_64, 1, Some(0.8)),
    ];
    for (label, streams, per_stream, upstream, direct_goal) in cases {
        let [direct, proxied, socat] = &contenders[upstream];
        let values = best_of(
            &[(names[0], direct), (names[1], proxied), (names[2], socat)],
            |via| throughput(via, streams, per_stream),
        )
        .with_context(|| label.to_owned())?;
        row(label, "MB/s", &values, direct_goal);
    }
    for (label, streams) in [
        ("connections, 1 client", 1),
        ("connections, 64 clients", 64),
    ] {
        let [direct, proxied, socat] = &contenders[2];
        let values = best_of(
            &[(names[0], direct), (names[1], proxied), (names[2], socat)],
            |via| connection_rate(via, streams),
        )
        .with_context(|| label.to_owned())?;
        row(label, "conn/s", &values, None);
    }
    println!("load average after: {}", load());
    drop(socats);
    shutdown.trigger();
    let _ = stopped.join();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
