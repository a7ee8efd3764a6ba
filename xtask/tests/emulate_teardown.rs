//! Teardown of `cargo xtask emulate`, with the real thing: the xtask binary boots the release
//! image under QEMU with vhost-device-vsock (and the parent side), and is stopped once its
//! processes are up — by SIGTERM, by SIGINT (Ctrl-C), and by SIGKILL, which no handler sees.
//! Afterwards no QEMU, vhost-device-vsock or parent process may be left, and (except after
//! SIGKILL, where nothing can run) no run directory with its sockets and the KMS emulator's
//! plaintext state. A run that ends normally must leave nothing behind either.
//!
//! The first run builds what the emulation needs (QEMU, vhost-device-vsock, the kernel, the
//! EIF) when the per-user cache (~/.cache/ccc) is cold; the tests wait on the transcript line that
//! names the started processes, not on a clock.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// Generous: a cold machine builds QEMU, the kernel and the image before the first boot.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60 * 60);
/// How long the teardown may take once signalled.
const TEARDOWN_DEADLINE: Duration = Duration::from_secs(60);
/// The guest's own time limit (`emulate --timeout`, in seconds), passed explicitly so that a
/// run left to end by itself is given as long as emulate gives its guest.
const GUEST_TIMEOUT_SECS: u64 = 180;
/// How long a run that nobody interrupts may take after its processes are up: the guest's
/// limit, then the teardown. A slow boot on a loaded machine is not a failure of this test.
const NORMAL_END_DEADLINE: Duration =
    Duration::from_secs(GUEST_TIMEOUT_SECS + TEARDOWN_DEADLINE.as_secs());

/// What the transcript's `running:` line names.
#[derive(Debug, Default)]
struct Started {
    pids: Vec<(String, u32)>,
    dirs: Vec<PathBuf>,
}

impl Started {
    fn parse(line: &str) -> Self {
        let mut started = Self::default();
        let words = line.split_once("running: ").map_or("", |(_, rest)| rest);
        for word in words.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            if key.ends_with("_dir") {
                started.dirs.push(PathBuf::from(value));
            } else if let Ok(pid) = value.parse() {
                started.pids.push((key.to_owned(), pid));
            }
        }
        started
    }
}

struct Run {
    child: Child,
    lines: Receiver<String>,
    transcript: Vec<String>,
}

impl Run {
    fn start(scenario: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["emulate", "--scenario", scenario])
            .args(["--timeout", &GUEST_TIMEOUT_SECS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            transcript: Vec::new(),
        }
    }

    /// Reads the transcript until the line naming the started processes.
    fn wait_until_running(&mut self) -> Started {
        loop {
            let line = self
                .lines
                .recv_timeout(STARTUP_DEADLINE)
                .unwrap_or_else(|_| {
                    panic!(
                        "no `running:` line; transcript:\n{}",
                        self.transcript.join("\n")
                    )
                });
            eprintln!("{line}");
            self.transcript.push(line.clone());
            if line.contains("| running: qemu=") {
                let started = Started::parse(&line);
                assert!(
                    ["qemu", "vhost", "parent"]
                        .iter()
                        .all(|name| started.pids.iter().any(|(k, _)| k == name))
                        && !started.dirs.is_empty(),
                    "{line}"
                );
                return started;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `deadline` for the exit, collecting the rest of the transcript.
    fn finish(mut self, deadline: Duration) -> (ExitStatus, Vec<String>) {
        let (send, done) = channel();
        let mut child = self.child;
        std::thread::spawn(move || {
            let _ = send.send(child.wait());
        });
        let status = done
            .recv_timeout(deadline)
            .unwrap_or_else(|_| panic!("the emulation did not end within {deadline:?}"))
            .unwrap();
        // The stderr reader ends when the pipe closes.
        for line in self.lines.iter() {
            eprintln!("{line}");
            self.transcript.push(line);
        }
        (status, self.transcript)
    }
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    state != Some("Z")
}

fn assert_nothing_left(started: &Started, check_dirs: bool) {
    // A child killed by the parent-death signal (or by the teardown) needs a moment to exit
    // and be reaped: wait for that, up to the teardown deadline, checking every 20 ms.
    let deadline = std::time::Instant::now() + TEARDOWN_DEADLINE;
    for (name, pid) in &started.pids {
        while alive(*pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(*pid),
            "{name} (pid {pid}) is still running {TEARDOWN_DEADLINE:?} after the run ended"
        );
    }
    for dir in &started.dirs {
        if check_dirs {
            assert!(!dir.exists(), "{} was left behind", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn interrupted(signal: &str) {
    let mut run = Run::start("default");
    let started = run.wait_until_running();
    for (name, pid) in &started.pids {
        assert!(alive(*pid), "{name} (pid {pid}) is not running yet");
    }
    run.signal(signal);
    let (status, transcript) = run.finish(TEARDOWN_DEADLINE);
    assert!(!status.success(), "an interrupted run must fail: {status}");
    if signal == "KILL" {
        // No handler runs; the parent-death signal still ends the children.
        assert_nothing_left(&started, false);
    } else {
        assert!(
            transcript.iter().any(
                |l| l.contains("VERDICT") && l.contains(&format!("interrupted by SIG{signal}"))
            ),
            "the transcript does not report the interruption"
        );
        assert_nothing_left(&started, true);
    }
}

/// One test, run in order: the runs share the image build directories.
#[test]
fn nothing_is_left_behind_after_an_interruption_or_a_normal_end() {
    interrupted("TERM");
    interrupted("INT");
    interrupted("KILL");

    let mut run = Run::start("tampered");
    let started = run.wait_until_running();
    let (status, transcript) = run.finish(NORMAL_END_DEADLINE);
    assert!(
        status.success(),
        "the tampered scenario failed:\n{}",
        transcript.join("\n")
    );
    assert!(transcript.iter().any(|l| l.contains("VERDICT| PASS")));
    assert_nothing_left(&started, true);
}
