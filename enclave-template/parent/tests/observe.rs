//! What an operator on call sees from the `ccc-template-parent` binary: the enclave's records
//! arrive on the log channel and come out on stdout as JSON lines tagged with its CID; the
//! metrics endpoint counts them (and the proxy's connections); `/healthz` turns ready only
//! once the enclave has spoken and its last KMS call succeeded; SIGHUP reloads the allowlist,
//! and a broken file keeps the previous one.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use ccc_sdk::log::{Level, Record};
use ccc_sdk::time::UnixMillis;
use common::{Parent, WAIT, echo_server, round_trip, scratch};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::channel;

fn unix(path: &std::path::Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// `GET path` on the metrics endpoint: (status, body).
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The value of the sample line starting with `series ` in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn record(event: &'static str, message: &str, fields: &[(&'static str, &str)]) -> Record {
    let mut record = Record::new(UnixMillis::now(), Level::Info, event, message.to_owned());
    for (name, value) in fields {
        record = record.field(name, *value);
    }
    record.field("latency_seconds", 0.04)
}

#[test]
fn records_reach_stdout_and_metrics_health_follows_and_sighup_reloads() {
    let dir = scratch("observe");
    let echo = echo_server();
    let allowlist = dir.join("allowlist.yaml");
    let admit = |port: u16| {
        std::fs::write(
            &allowlist,
            format!("allowlist:\n- {{address: 127.0.0.1, port: {port}}}\n"),
        )
        .unwrap();
    };
    admit(echo.port());
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
            "--no-credentials",
            "--enclave-cid",
            "16",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    // Printed before `ready`, which Parent::start waited for.
    let line = parent
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("metrics on http://"))
        .cloned()
        .unwrap();
    let address: SocketAddr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let socket = |port: u32| dir.join(format!("vm.vsock_{port}"));
    let (tx, stdout) = channel();
    let out = parent.child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    assert_eq!(get(address, "/livez"), (200, "live\n".to_owned()));
    let (status, why) = get(address, "/healthz");
    assert_eq!(status, 503, "{why}");
    assert!(why.starts_with("no record from the enclave yet"), "{why}");
    assert_eq!(get(address, "/nothing").0, 404);

    // The enclave's records, with one line that is not a record among them.
    let mut channel = unix(&socket(8003));
    let mut bytes = Vec::new();
    bytes.extend_from_slice(record("heartbeat", "up", &[]).encode(1, 0).as_bytes());
    bytes.extend_from_slice(b"not a record\n");
    bytes.extend_from_slice(
        record(
            "kms.call",
            "kms Decrypt: ok",
            &[("operation", "Decrypt"), ("outcome", "ok")],
        )
        .encode(2, 0)
        .as_bytes(),
    );
    bytes.extend_from_slice(
        record(
            "api.request",
            "#1 hmac: ok",
            &[("op", "hmac"), ("outcome", "ok")],
        )
        .encode(3, 3)
        .as_bytes(),
    );
    channel.write_all(&bytes).unwrap();
    let written: Vec<serde_json::Value> = (0..3)
        .map(|_| serde_json::from_str(&stdout.recv_timeout(WAIT).unwrap()).unwrap())
        .collect();
    for (line, event) in written.iter().zip(["heartbeat", "kms.call", "api.request"]) {
        assert_eq!(line["source"], "enclave", "{line}");
        assert_eq!(line["cid"], 16, "{line}");
        assert_eq!(line["event"], event, "{line}");
    }
    assert_eq!(written[2]["message"], "#1 hmac: ok");
    parent.wait_for("line dropped");

    // A proxied connection in flight.
    let mut proxied = unix(&socket(8000));
    assert_eq!(round_trip(&mut proxied, b"to KMS"), b"to KMS");

    let (status, text) = get(address, "/metrics");
    assert_eq!(status, 200);
    let expect = [
        (
            r#"ccc_enclave_api_requests_total{operation="hmac",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"ccc_enclave_api_request_duration_seconds_count{operation="hmac",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"ccc_enclave_kms_calls_total{operation="Decrypt",outcome="ok"}"#,
            1.0,
        ),
        (r#"ccc_enclave_log_records_total{level="info"}"#, 3.0),
        ("ccc_enclave_log_records_dropped_total", 3.0),
        ("ccc_parent_log_lines_malformed_total", 1.0),
        ("ccc_parent_proxy_connections_total", 1.0),
        ("ccc_parent_proxy_connections_active", 1.0),
        (
            r#"ccc_parent_proxy_connections_refused_total{reason="allowlist"}"#,
            0.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series}\n{text}");
    }
    let age = sample(&text, "ccc_enclave_heartbeat_age_seconds").unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    let (status, why) = get(address, "/healthz");
    assert_eq!(status, 200, "{why}");

    // A failed KMS call makes the enclave not ready, and says which.
    channel
        .write_all(
            record(
                "kms.call",
                "kms Decrypt: access denied",
                &[("operation", "Decrypt"), ("outcome", "access_denied")],
            )
            .encode(4, 0)
            .as_bytes(),
        )
        .unwrap();
    stdout.recv_timeout(WAIT).unwrap();
    let (status, why) = get(address, "/healthz");
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("ended with access_denied"), "{why}");

    // SIGHUP with a file that does not load: the old allowlist stays.
    std::fs::write(&allowlist, "allowlist: [oops\n").unwrap();
    parent.hangup();
    parent.wait_for("NOT reloaded, keeping the previous 1 entries");
    let mut second = unix(&socket(8000));
    assert_eq!(
        round_trip(&mut second, b"still admitted"),
        b"still admitted"
    );

    // SIGHUP with a file that no longer admits the route: new connections are refused.
    admit(echo.port().wrapping_add(1));
    parent.hangup();
    parent.wait_for("allowlist reloaded from");
    let mut refused = unix(&socket(8000));
    let mut byte = [0u8; 1];
    assert_eq!(refused.read(&mut byte).unwrap_or(0), 0);
    let (_, text) = get(address, "/metrics");
    assert_eq!(
        sample(
            &text,
            r#"ccc_parent_proxy_connections_refused_total{reason="allowlist"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // The connection admitted before the reload keeps going.
    assert_eq!(round_trip(&mut proxied, b"still"), b"still");

    drop((proxied, second, channel));
    parent.terminate();
    let (status, _) = parent.wait_exit();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
