//! Helpers shared by the parent's integration tests: scratch directories, a TCP echo server,
//! and the parent binary run as a child process whose log lines are read as they come.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers shared by several test binaries: each uses part of them, and test code panics on failure"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Waits for the binary's lines: generous, only a bound against a hang.
pub const WAIT: Duration = Duration::from_secs(60);

/// A fresh directory under the target dir (short enough for Unix socket paths).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ccc-pt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP echo server on 127.0.0.1 (one thread per connection; echoes until end of file,
/// then closes).
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut reader, &mut stream);
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                })
                .unwrap();
        }
    });
    address
}

/// Writes `data` and reads the same number of bytes back.
pub fn round_trip<S: Read + Write>(stream: &mut S, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    back
}

/// A TCP connection with generous timeouts.
pub fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// The parent binary, running; killed when dropped.
pub struct Parent {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Parent {
    /// Starts `ccc-template-parent ARGS` and waits for its `ready` line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut parent = Self::spawn(args, env);
        parent.wait_for("ccc-parent: ready");
        parent
    }

    /// Starts it without waiting.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ccc-template-parent"));
        command
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("parent| {line}");
                kept.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen }
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line with {needle:?}: {:#?}", self.seen.lock().unwrap())
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the parent exited ({:?}) before {needle:?}: {:#?}",
                    self.child.try_wait(),
                    self.seen.lock().unwrap()
                ),
            }
        }
    }

    /// Sends SIGTERM (through kill(1)).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGHUP (through kill(1)): what `systemctl reload` does.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit (bounded by the caller's timeouts on what it waits for first).
    pub fn wait_exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.child.wait().unwrap();
        // Drain what is left of stderr.
        while self.lines.recv_timeout(WAIT).is_ok() {}
        let seen = self.seen.lock().unwrap().clone();
        (status, seen)
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion: (status, stdout, stderr).
pub fn run(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ccc-template-parent"))
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
