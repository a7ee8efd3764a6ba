//! The emulation's parent instance: the project's own parent binary (`[workspace.metadata.ccc]
//! parent`, the template's `ccc-template-parent` or a copy of it), started on
//! vhost-device-vsock's Unix sockets as a real parent runs
//! on vsock — the KMS proxy on port 8000 (one route, to the KMS emulator, and an allowlist
//! admitting only that address) and the credentials service on port 8002 (the emulator's fixed
//! credentials from a cleared environment: never the caller's real ones), the log channel on
//! port 8003 (the enclave's records, which the parent writes to its stdout as JSON lines: the
//! harness shows them as `log` lines and reads its checks from them, never from the console)
//! and the metrics endpoint on a loopback port it scrapes at the end — and its `client`
//! command for the enclave API calls, so the harness drives the enclave exactly as an operator
//! would.

use ccc_build::boot::orphan_proof;
use ccc_build::progress::elapsed;
use ccc_build::project::{AppSpec, Project};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, ensure};
use crate::kms::Kms;
use crate::transcript::Transcript;

/// The port the enclave's KMS traffic arrives on (`ccc_sdk::net::KMS_PROXY_PORT`).
const KMS_PROXY_PORT: u32 = ccc_sdk::net::KMS_PROXY_PORT;

/// The enclave API's vsock port (docs/enclave-api.md).
pub(crate) const API_PORT: u32 = 5000;

/// How long the parent may take to print `ready` (it binds three Unix sockets).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often waits look at the cancel flag and the deadline.
const POLL: Duration = Duration::from_millis(20);

/// The project's parent binary.
///
/// # Errors
/// The project names none.
pub(crate) fn spec(project: &Project) -> Result<&AppSpec> {
    project.parent.as_ref().ok_or_else(|| {
        Error::parent(format!(
            "{} names no parent binary: emulation runs the parent's `run` (proxy and \
             credentials) and `client` (the enclave's API); add `parent = {{ package = \
             \"NAME\" }}` to [workspace.metadata.ccc]",
            project.root.join("Cargo.toml").display()
        ))
    })
}

/// Builds the parent binary for the host (`cargo build -p PARENT`, the project's target
/// directory; quick when it is up to date) and returns its path.
///
/// # Errors
/// The project names no parent, the build fails or cargo names no executable.
pub(crate) fn build(project: &Project, transcript: &Transcript) -> Result<PathBuf> {
    let spec = spec(project)?;
    let (package, kind, name) = (&spec.package, spec.kind(), spec.name());
    let t = Instant::now();
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--locked", "--quiet", "--message-format=json"])
        .args(["-p", package, &format!("--{kind}"), name])
        .current_dir(&project.root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::parent(format!("cannot run cargo to build the parent: {e}")))?;
    ensure!(
        output.status.success(),
        Error::parent(format!(
            "cargo build -p {package} --{kind} {name} failed ({})",
            output.status
        ))
    );
    let mut found = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == *name
            && let Some(path) = message["executable"].as_str()
        {
            found = Some(PathBuf::from(path));
        }
    }
    let path = found
        .ok_or_else(|| Error::parent(format!("cargo named no executable for {package} {name}")))?;
    transcript.line(
        "parent",
        format!("{} ready in {}", path.display(), elapsed(t.elapsed())),
    );
    Ok(path)
}

/// The enclave's CID under QEMU (`ccc_build::boot::Boot`'s guest CID), which the parent tags
/// records with: on vhost-device-vsock's Unix sockets it cannot read it from the connection.
const GUEST_CID: &str = "16";

/// How long a metrics scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `ccc-template-parent run`. Dropping it kills it.
#[derive(Debug)]
pub(crate) struct Parent {
    child: Child,
    records: Receiver<serde_json::Value>,
    metrics: Arc<Mutex<Option<SocketAddr>>>,
}

impl Parent {
    /// Starts the parent on the Unix sockets `<uds>_<port>` and waits until it prints
    /// `ready` (all listeners bound). `dir` receives the allowlist file.
    ///
    /// # Errors
    /// The parent cannot start, exits, or is not ready within [`READY_TIMEOUT`].
    pub(crate) fn start(
        binary: &Path,
        uds: &Path,
        dir: &Path,
        kms: &Kms,
        transcript: &Transcript,
    ) -> Result<Self> {
        let running = kms.running()?;
        let upstream = running.addr();
        let allowlist = dir.join("allowlist.yaml");
        std::fs::write(
            &allowlist,
            format!(
                "# The emulation's parent may reach the KMS emulator and nothing else.\n\
                 allowlist:\n- {{address: {}, port: {}}}\n",
                upstream.ip(),
                upstream.port()
            ),
        )
        .map_err(|e| Error::setup(format!("cannot write {}: {e}", allowlist.display())))?;
        let credentials = running.credentials();
        let listen = format!("uds:{}", uds.display());
        let route = format!("{KMS_PROXY_PORT}={}:{}", upstream.ip(), upstream.port());
        let mut command = orphan_proof(binary);
        command
            .args(["run", "--listen", &listen, "--route", &route, "--allowlist"])
            .arg(&allowlist)
            .args(["--credentials", "environment", "--drain-timeout", "2"])
            .args([
                "--enclave-cid",
                GUEST_CID,
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            // Only the emulator's credentials: nothing of the caller's environment (its AWS_*
            // variables above all) reaches the parent.
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = credentials.session_token() {
            command.env("AWS_SESSION_TOKEN", token);
        }
        transcript.line(
            "parent",
            format!(
                "starting: {} run --listen {listen} --route {route} --allowlist {} \
                 --credentials environment --enclave-cid {GUEST_CID} --metrics-listen \
                 127.0.0.1:0 (the KMS emulator's credentials for {}, in a cleared environment)",
                binary.display(),
                allowlist.display(),
                credentials.principal_arn()
            ),
        );
        let mut child = command
            .spawn()
            .map_err(|e| Error::parent(format!("cannot start {}: {e}", binary.display())))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| Error::parent("the parent's stderr is not piped"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::parent("the parent's stdout is not piped"))?;
        let (ready_tx, ready) = channel();
        let lines = transcript.clone();
        let metrics = Arc::new(Mutex::new(None));
        let found = Arc::clone(&metrics);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = metrics_address(&line) {
                    *found.lock().unwrap_or_else(PoisonError::into_inner) = Some(address);
                }
                if line.ends_with(": ready") || line == "ready" {
                    let _ = ready_tx.send(());
                }
                lines.line("parent", line);
            }
        });
        // The parent's stdout: the enclave's records, one JSON object per line.
        let (records_tx, records) = channel();
        let lines = transcript.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(record) => {
                        lines.line("log", summary(&record));
                        let _ = records_tx.send(record);
                    }
                    Err(_) => lines.line("log", format!("(not JSON) {line}")),
                }
            }
        });
        let mut parent = Self {
            child,
            records,
            metrics,
        };
        parent.wait_ready(&ready)?;
        Ok(parent)
    }

    fn wait_ready(&mut self, ready: &Receiver<()>) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match ready.recv_timeout(POLL) {
                Ok(()) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::parent(
                        "the parent closed its stderr before it was ready",
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| Error::parent(format!("cannot wait for the parent: {e}")))?
            {
                return Err(Error::parent(format!(
                    "the parent exited before it was ready ({status})"
                )));
            }
            ensure!(
                Instant::now() < deadline,
                Error::parent(format!("the parent was not ready within {READY_TIMEOUT:?}"))
            );
        }
    }

    /// The parent's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The enclave's records as the parent wrote them to stdout, in arrival order.
    pub(crate) fn records(&self) -> &Receiver<serde_json::Value> {
        &self.records
    }

    /// `GET /metrics` on the parent's metrics endpoint: the Prometheus text.
    ///
    /// # Errors
    /// The parent named no endpoint, or the scrape failed or did not answer 200.
    pub(crate) fn scrape(&self) -> Result<String> {
        let address = self
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or_else(|| Error::parent("the parent printed no `metrics on http://...` line"))?;
        let failed = |e: std::io::Error| Error::parent(format!("scraping {address}: {e}"));
        let mut stream = TcpStream::connect_timeout(&address, SCRAPE_TIMEOUT).map_err(failed)?;
        stream
            .set_read_timeout(Some(SCRAPE_TIMEOUT))
            .map_err(failed)?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .map_err(failed)?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(failed)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| Error::parent(format!("scraping {address}: no HTTP response")))?;
        ensure!(
            head.starts_with("HTTP/1.1 200"),
            Error::parent(format!(
                "scraping {address}: {}",
                head.lines().next().unwrap_or_default()
            ))
        );
        Ok(body.to_owned())
    }
}

/// The address in the parent's `metrics on http://ADDRESS/metrics ...` line.
fn metrics_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("metrics on http://")?;
    rest.split('/').next()?.parse().ok()
}

/// One record as the transcript shows it: `cid=16 info start.serving: serving API v1 ...`.
fn summary(record: &serde_json::Value) -> String {
    let text = |name: &str| record[name].as_str().unwrap_or("?").to_owned();
    let cid = record["cid"]
        .as_u64()
        .map_or_else(|| "?".to_owned(), |c| c.to_string());
    let dropped = record["dropped"]
        .as_u64()
        .filter(|n| *n > 0)
        .map_or_else(String::new, |n| {
            format!(" ({n} earlier record(s) dropped by the enclave)")
        });
    format!(
        "cid={cid} {} {}: {}{dropped}",
        text("level"),
        text("event"),
        text("message")
    )
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `client` call returned.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Exit status 0: the answer object.
    Answer(serde_json::Value),
    /// Exit status 2: the enclave's error frame.
    Refused(serde_json::Value),
}

/// Runs `ccc-template-parent client --enclave vhost-uds://<uds>:5000 <args>`, killing it when
/// `cancel` is set or `deadline` passes. Its stderr goes to the transcript.
///
/// # Errors
/// The client cannot run, fails (exit status 1: no connection, malformed answer), prints no
/// JSON, or is stopped.
pub(crate) fn client(
    binary: &Path,
    uds: &Path,
    args: &[String],
    deadline: Instant,
    cancel: &Arc<AtomicBool>,
    transcript: &Transcript,
) -> Result<Answer> {
    let target = format!("vhost-uds://{}:{API_PORT}", uds.display());
    let remaining = deadline.saturating_duration_since(Instant::now());
    ensure!(
        !remaining.is_zero(),
        Error::parent("no time left for the enclave API call")
    );
    let timeout = format!("{:.1}", remaining.as_secs_f64());
    let mut child = orphan_proof(binary)
        .args(["client", "--enclave", &target, "--timeout", &timeout])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::parent(format!("cannot start {} client: {e}", binary.display())))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::parent("the client's stdout is not piped"))?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| Error::parent("the client's stderr is not piped"))?;
    let lines = transcript.clone();
    let err = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            lines.line("client", line);
        }
    });
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::parent(format!("cannot wait for the client: {e}")))?
        {
            break status;
        }
        if cancel.load(Ordering::SeqCst) || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = err.join();
            return Err(Error::parent(format!(
                "the client call was stopped ({})",
                if cancel.load(Ordering::SeqCst) {
                    "interrupted"
                } else {
                    "the emulation's timeout passed"
                }
            )));
        }
        std::thread::sleep(POLL);
    };
    let text = out.join().unwrap_or_default();
    let _ = err.join();
    let value = || -> Result<serde_json::Value> {
        serde_json::from_str(text.trim()).map_err(|_| {
            Error::parent(format!(
                "the client printed no JSON answer: {}",
                text.trim()
            ))
        })
    };
    match status.code() {
        Some(0) => Ok(Answer::Answer(value()?)),
        Some(2) => Ok(Answer::Refused(value()?)),
        _ => Err(Error::parent(format!("the client failed ({status})"))),
    }
}
