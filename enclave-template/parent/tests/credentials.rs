//! The parent binary's credentials service against a fake IMDSv2 (a real HTTP server on
//! loopback that insists on session tokens), asked the way the enclave asks
//! (`FromParent`, over the vhost-device-vsock socket path): refresh ahead of expiry, caching,
//! a rotated IMDS token, IMDS outages with and without cached credentials, and credentials
//! that arrive already expired.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod common;

use ccc_sdk::credentials::enclave::FromParent;
use ccc_sdk::credentials::{CredentialsError, CredentialsSource};
use ccc_sdk::net::Endpoint;
use ccc_sdk::time::UnixMillis;
use common::{Parent, WAIT, scratch};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const ROLE: &str = "ccc-parent-role";

#[derive(Debug, Default)]
struct ImdsState {
    token: String,
    access_key_id: String,
    /// Milliseconds from now when the handed-out credentials expire (negative: expired).
    expires_in_ms: i64,
    down: bool,
    token_requests: Vec<String>,
    unauthorized: usize,
    credential_reads: usize,
}

/// A fake IMDSv2: PUT /latest/api/token, then GETs with the token (401 without it).
struct FakeImds {
    state: Arc<Mutex<ImdsState>>,
    port: u16,
}

impl FakeImds {
    fn start(access_key_id: &str, expires_in_ms: i64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ImdsState {
            token: "token-1".into(),
            access_key_id: access_key_id.into(),
            expires_in_ms,
            ..ImdsState::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || answer(stream, &state));
            }
        });
        Self { state, port }
    }

    fn url(&self) -> String {
        format!("imds:http://127.0.0.1:{}", self.port)
    }

    fn set(&self, access_key_id: &str, expires_in_ms: i64) {
        let mut state = self.state.lock().unwrap();
        state.access_key_id = access_key_id.into();
        state.expires_in_ms = expires_in_ms;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ImdsState> {
        self.state.lock().unwrap()
    }
}

fn answer(mut stream: TcpStream, state: &Mutex<ImdsState>) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    if request.parse(&head).is_err() {
        return;
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let (status, body) = {
        let mut state = state.lock().unwrap();
        if state.down {
            // An outage: the connection closes without an answer.
            return;
        }
        match (request.method.unwrap_or(""), request.path.unwrap_or("")) {
            ("PUT", "/latest/api/token") => {
                let ttl = header("x-aws-ec2-metadata-token-ttl-seconds").unwrap_or_default();
                state.token_requests.push(ttl);
                (200, state.token.clone())
            }
            (_, _) if header("x-aws-ec2-metadata-token").as_deref() != Some(&state.token) => {
                state.unauthorized += 1;
                (401, String::new())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") => (200, format!("{ROLE}\n")),
            ("GET", path)
                if path == format!("/latest/meta-data/iam/security-credentials/{ROLE}") =>
            {
                state.credential_reads += 1;
                let now = UnixMillis::now().0 as i64;
                let expiration = UnixMillis((now + state.expires_in_ms) as u64);
                (
                    200,
                    serde_json::json!({
                        "Code": "Success",
                        "LastUpdated": UnixMillis::now().to_string(),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": state.access_key_id,
                        "SecretAccessKey": "imds-secret-never-logged",
                        "Token": "imds-session-token",
                        "Expiration": expiration.to_string(),
                    })
                    .to_string(),
                )
            }
            _ => (404, String::new()),
        }
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The parent's credentials service on vhost-device-vsock's path for port 8002, from `imds`.
fn parent(name: &str, imds: &FakeImds) -> (Parent, FromParent, PathBuf) {
    let dir = scratch(name);
    let parent = Parent::start(
        &[
            "credentials",
            "--listen",
            &format!("uds:{}", dir.join("vm.vsock").display()),
            "--credentials",
            &imds.url(),
        ],
        &[],
    );
    let enclave_side = FromParent::new(Endpoint::Unix(dir.join("vm.vsock_8002")));
    (parent, enclave_side, dir)
}

const MINUTE: i64 = 60_000;

#[test]
fn credentials_are_refreshed_before_they_expire_and_cached_until_then() {
    // Two minutes left: inside the 5-minute refresh window, so every request refreshes.
    let imds = FakeImds::start("ASIAFIRST000000001", 2 * MINUTE);
    let (mut parent, enclave_side, dir) = parent("refresh", &imds);
    assert_eq!(
        enclave_side.fetch().unwrap().access_key_id(),
        "ASIAFIRST000000001"
    );
    assert_eq!(
        imds.state().token_requests,
        ["21600"],
        "an IMDSv2 token, 6 hours"
    );

    // IMDS rotated its token and the role's credentials: the parent's token is refused
    // (401), it gets a new one, and hands out the new credentials.
    imds.set("ASIASECOND00000002", 2 * MINUTE);
    imds.state().token = "token-2".into();
    assert_eq!(
        enclave_side.fetch().unwrap().access_key_id(),
        "ASIASECOND00000002"
    );
    assert_eq!(imds.state().token_requests.len(), 2);
    assert!(imds.state().unauthorized >= 1);

    // An hour left: cached; IMDS is not asked again while it has more than 5 minutes.
    imds.set("ASIATHIRD000000003", 60 * MINUTE);
    assert_eq!(
        enclave_side.fetch().unwrap().access_key_id(),
        "ASIATHIRD000000003"
    );
    let reads = imds.state().credential_reads;
    imds.set("ASIAFOURTH00000004", 60 * MINUTE);
    for _ in 0..3 {
        assert_eq!(
            enclave_side.fetch().unwrap().access_key_id(),
            "ASIATHIRD000000003"
        );
    }
    assert_eq!(imds.state().credential_reads, reads);
    parent.wait_for("credentials: gave ASIATHIRD000000003");
    let (_, lines) = {
        parent.terminate();
        parent.wait_exit()
    };
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("imds-secret-never-logged"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_imds_outage_keeps_unexpired_credentials_and_reports_when_there_are_none() {
    // Cached credentials that are due for refresh but not expired survive an outage.
    let imds = FakeImds::start("ASIAOUTAGE00000001", 2 * MINUTE);
    let (_parent, enclave_side, dir) = parent("outage", &imds);
    assert_eq!(
        enclave_side.fetch().unwrap().access_key_id(),
        "ASIAOUTAGE00000001"
    );
    imds.state().down = true;
    assert_eq!(
        enclave_side.fetch().unwrap().access_key_id(),
        "ASIAOUTAGE00000001"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // No credentials yet and IMDS down: the enclave gets an error frame naming IMDS.
    let down = FakeImds::start("ASIANEVER000000001", 60 * MINUTE);
    down.state().down = true;
    let (_parent, enclave_side, dir) = parent("down", &down);
    match enclave_side.fetch().unwrap_err() {
        CredentialsError::Refused { code, message, .. } => {
            assert_eq!(code, "unavailable");
            assert!(
                message.contains(&format!("IMDS at http://127.0.0.1:{}", down.port)),
                "{message}"
            );
        }
        other => panic!("{other}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn credentials_that_arrive_expired_are_not_handed_out() {
    let imds = FakeImds::start("ASIASTALE000000001", -MINUTE);
    let (_parent, enclave_side, dir) = parent("expired", &imds);
    match enclave_side.fetch().unwrap_err() {
        CredentialsError::Refused { code, message, .. } => {
            assert_eq!(code, "unavailable");
            assert!(message.contains("expired"), "{message}");
        }
        other => panic!("{other}"),
    }
    // Once IMDS has fresh ones, they are served.
    imds.set("ASIAFRESH000000002", 60 * MINUTE);
    assert_eq!(
        enclave_side.fetch().unwrap().access_key_id(),
        "ASIAFRESH000000002"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
