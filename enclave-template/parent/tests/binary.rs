//! The `ccc-template-parent` binary as a team runs it: `run` with one set of flags starts
//! the proxy, the credentials service and the heartbeat on vhost-device-vsock's socket paths
//! (`uds:` — QEMU emulation), and stops cleanly on SIGTERM; misconfigurations stop the start
//! with a message naming the problem.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use ccc_sdk::credentials::CredentialsSource;
use ccc_sdk::credentials::enclave::FromParent;
use ccc_sdk::net::Endpoint;
use common::{Parent, WAIT, echo_server, round_trip, run, scratch};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn unix(path: &std::path::Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

#[test]
fn run_serves_proxy_credentials_and_heartbeat_and_drains_on_sigterm() {
    let dir = scratch("run");
    let echo = echo_server();
    let allowlist = dir.join("allowlist.yaml");
    std::fs::write(
        &allowlist,
        format!(
            "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
            echo.port()
        ),
    )
    .unwrap();
    let uds = dir.join("vm.vsock");
    let mut parent = Parent::start(
        &[
            "run",
            "--listen",
            &format!("uds:{}", uds.display()),
            "--route",
            &format!("8000=127.0.0.1:{}", echo.port()),
            "--allowlist",
            allowlist.to_str().unwrap(),
            "--credentials",
            "environment",
            "--heartbeat",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDRUNTEST0000001"),
            ("AWS_SECRET_ACCESS_KEY", "run-secret-never-logged"),
            ("AWS_SESSION_TOKEN", "run-token"),
        ],
    );
    let socket = |port: u32| dir.join(format!("vm.vsock_{port}"));

    // The heartbeat: 0xB7 echoed.
    let mut heartbeat = unix(&socket(9000));
    heartbeat.write_all(&[0xB7]).unwrap();
    let mut byte = [0u8; 1];
    heartbeat.read_exact(&mut byte).unwrap();
    assert_eq!(byte, [0xB7]);
    parent.wait_for("heartbeat: the enclave is up");

    // The proxy: a guest connection to port 8000 reaches the echo server.
    let mut in_flight = unix(&socket(8000));
    assert_eq!(round_trip(&mut in_flight, b"to KMS"), b"to KMS");

    // Credentials: what the enclave's FromParent gets.
    let credentials = FromParent::new(Endpoint::Unix(socket(8002)))
        .fetch()
        .unwrap();
    assert_eq!(credentials.access_key_id(), "AKIDRUNTEST0000001");
    parent.wait_for("credentials: gave AKIDRUNTEST0000001");

    // SIGTERM: listeners go (their socket files too), the open connection keeps working.
    parent.terminate();
    parent.wait_for("waiting up to");
    for port in [8000, 8002, 9000] {
        assert!(!socket(port).exists(), "{port}");
    }
    assert_eq!(round_trip(&mut in_flight, b"still"), b"still");
    drop(in_flight);
    let (status, lines) = parent.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stopped (0 connection(s) cut off")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains("run-secret-never-logged")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn misconfigurations_stop_the_start_and_say_why() {
    let dir = scratch("misconfig");
    let echo = echo_server();
    let allowlist = dir.join("allowlist.yaml");
    std::fs::write(
        &allowlist,
        format!(
            "allowlist:\n- {{address: 127.0.0.1, port: {}}}\n",
            echo.port()
        ),
    )
    .unwrap();
    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, "allowlist:\n- {address: 127.0.0.1, prot: 443}\n").unwrap();
    let file = allowlist.to_str().unwrap();
    let echo_route = format!("0=kms.test:{}", echo.port());
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "proxy",
                "--listen",
                "tcp:127.0.0.1",
                "--route",
                "0=10.9.9.9:443",
                "--allowlist",
                file,
            ],
            "route 0 → 10.9.9.9:443 is refused".into(),
        ),
        (
            vec![
                "proxy",
                "--listen",
                "tcp:127.0.0.1",
                "--route",
                &echo_route,
                "--resolve",
                "kms.test=10.9.9.9",
                "--allowlist",
                file,
            ],
            "10.9.9.9 matches no allowlist entry".into(),
        ),
        (
            vec![
                "proxy",
                "--listen",
                "tcp:127.0.0.1",
                "--region",
                "eu-west-1",
                "--resolve",
                "kms.eu-west-1.amazonaws.com=52.1.1.1",
                "--allowlist",
                file,
            ],
            "route 8000 → kms.eu-west-1.amazonaws.com:443 is refused".into(),
        ),
        (
            vec![
                "proxy",
                "--listen",
                "tcp:127.0.0.1",
                "--route",
                "0=127.0.0.1:1",
                "--allowlist",
                broken.to_str().unwrap(),
            ],
            "line 2: unknown key `prot`".into(),
        ),
        (
            vec![
                "proxy",
                "--listen",
                "tcp:127.0.0.1",
                "--route",
                "0=127.0.0.1:1",
                "--allowlist",
                "/nonexistent/vsock-proxy.yaml",
            ],
            "/nonexistent/vsock-proxy.yaml".into(),
        ),
        (
            vec!["proxy", "--listen", "tcp:127.0.0.1", "--allowlist", file],
            "the proxy has nothing to serve".into(),
        ),
        (
            vec![
                "run",
                "--listen",
                "udp:127.0.0.1",
                "--route",
                "0=127.0.0.1:1",
            ],
            "expected `vsock`".into(),
        ),
        (
            vec![
                "credentials",
                "--listen",
                "tcp:127.0.0.1",
                "--credentials",
                "imds:ftp://x",
            ],
            "http://".into(),
        ),
    ];
    for (args, needle) in cases {
        let (status, _, stderr) = run(&args);
        assert!(!status.success(), "{args:?} started");
        assert!(stderr.contains(&needle), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
