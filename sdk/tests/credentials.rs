//! Credentials end to end over real sockets: the enclave-side provider against the parent's
//! real server (`parent::serve`) on loopback TCP and Unix sockets, expiry-driven refresh
//! through both caches, error frames, protocol abuse; the IMDSv2 provider against a fake IMDS
//! that is a real HTTP server on 127.0.0.1 and insists on the session token.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod net_support;

use ccc_sdk::clock::{Clock, ManualClock};
use ccc_sdk::credentials::enclave::FromParent;
use ccc_sdk::credentials::parent::{self, Environment, Imds, ServeEvent, ServeOptions};
use ccc_sdk::credentials::protocol::{self, MAX_FRAME_LEN};
use ccc_sdk::credentials::{
    Credentials, CredentialsError, CredentialsProvider, CredentialsSource, Refreshing,
    StaticCredentials,
};
use ccc_sdk::net::{Endpoint, Timeouts};
use ccc_sdk::time::UnixMillis;
use net_support::{TestRequest, TestResponse, TestServer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLETOKEN";
/// 2026-01-01T00:00:00Z
const T0: u64 = 1_767_225_600_000;

/// Starts `parent::serve` on a loopback TCP port and returns its endpoint and its events (as
/// a channel: the server logs a failed connection after closing it, so tests wait for the
/// event itself rather than for the socket).
fn parent_on_tcp(provider: Arc<dyn CredentialsProvider>) -> (Endpoint, Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::tcp("127.0.0.1", listener.local_addr().unwrap().port());
    let (sender, events) = channel();
    let sender = Mutex::new(sender);
    let options = ServeOptions {
        log: Some(Arc::new(move |event: &ServeEvent<'_>| {
            let _ = sender.lock().unwrap().send(event.to_string());
        })),
        ..ServeOptions::default()
    };
    std::thread::spawn(move || parent::serve(&listener, provider, options));
    (endpoint, events)
}

/// The next event, waiting for it (bounded, so a missing event fails instead of hanging).
fn next_event(events: &Receiver<String>) -> String {
    events
        .recv_timeout(Duration::from_secs(30))
        .expect("an event from the server")
}

/// A parent-side provider whose credentials rotate on every fetch, each valid one hour from
/// the clock's time.
#[derive(Debug)]
struct Rotating {
    clock: Arc<ManualClock>,
    fetches: AtomicUsize,
    down: AtomicBool,
}

impl CredentialsSource for Rotating {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(CredentialsError::Environment {
                variable: "AWS_ACCESS_KEY_ID",
                problem: "is not set",
            });
        }
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(
            Credentials::new(format!("ASIAROTATING{n}"), SECRET, Some(TOKEN.into()))
                .unwrap()
                .with_expiration(UnixMillis(self.clock.now().0 + 3_600_000)),
        )
    }

    fn describe(&self) -> String {
        "the rotating test source".into()
    }
}

#[test]
fn the_enclave_gets_the_parents_credentials_over_tcp_and_unix_sockets() {
    let credentials = Credentials::new("ASIAEXAMPLE", SECRET, Some(TOKEN.into()))
        .unwrap()
        .with_expiration(UnixMillis(T0));
    let provider: Arc<dyn CredentialsProvider> = Arc::new(StaticCredentials::new(credentials));
    let (endpoint, events) = parent_on_tcp(Arc::clone(&provider));
    let got = FromParent::new(endpoint).fetch().unwrap();
    assert_eq!(got.access_key_id(), "ASIAEXAMPLE");
    assert_eq!(got.secret_access_key(), SECRET);
    assert_eq!(got.session_token(), Some(TOKEN));
    assert_eq!(got.expiration(), Some(UnixMillis(T0)));
    let event = next_event(&events);
    assert!(
        event.starts_with("credentials: gave ASIAEXAMPLE to tcp://127.0.0.1:"),
        "{event}"
    );
    assert!(
        event.ends_with("(expires 2026-01-01T00:00:00.000Z)"),
        "{event}"
    );
    assert!(!event.contains(SECRET) && !event.contains(TOKEN));

    // The same server code on a Unix socket (what a vhost-device-vsock host exposes).
    let dir = std::env::temp_dir().join(format!("ccc-credentials-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("parent.sock_8002");
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || parent::serve(&listener, provider, ServeOptions::default()));
    let got = FromParent::new(Endpoint::Unix(path)).fetch().unwrap();
    assert_eq!(got.access_key_id(), "ASIAEXAMPLE");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn expiry_drives_refresh_through_both_caches() {
    let clock = Arc::new(ManualClock::new(UnixMillis(T0)));
    let source = Arc::new(Rotating {
        clock: Arc::clone(&clock),
        fetches: AtomicUsize::new(0),
        down: AtomicBool::new(false),
    });
    let parent_cache = Arc::new(Refreshing::new(Arc::clone(&source)).with_clock(clock.clone()));
    let (endpoint, _) = parent_on_tcp(parent_cache);
    let enclave = Refreshing::new(FromParent::new(endpoint)).with_clock(clock.clone());

    assert_eq!(
        enclave.credentials().unwrap().access_key_id(),
        "ASIAROTATING1"
    );
    clock.advance(Duration::from_secs(30 * 60));
    assert_eq!(
        enclave.credentials().unwrap().access_key_id(),
        "ASIAROTATING1"
    );
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    // Inside the 5-minute window both caches renew.
    clock.advance(Duration::from_secs(26 * 60));
    assert_eq!(
        enclave.credentials().unwrap().access_key_id(),
        "ASIAROTATING2"
    );
    // KMS said ExpiredToken: the enclave asks again at once; the parent's cache still holds
    // valid ones and hands them out (it was not told anything).
    assert!(enclave.invalidate());
    assert_eq!(
        enclave.credentials().unwrap().access_key_id(),
        "ASIAROTATING2"
    );
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);

    // The parent's source goes down: the enclave keeps its valid credentials until expiry...
    source.down.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(57 * 60));
    assert_eq!(
        enclave.credentials().unwrap().access_key_id(),
        "ASIAROTATING2"
    );
    // ...and then gets the parent's error, verbatim, as a refusal.
    clock.advance(Duration::from_secs(4 * 60));
    match enclave.credentials().unwrap_err() {
        CredentialsError::Refused { code, message, .. } => {
            assert_eq!(code, "unavailable");
            assert!(
                message.contains("AWS_ACCESS_KEY_ID is not set"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_absent_parent_is_named_with_the_fix() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = FromParent::new(Endpoint::tcp("127.0.0.1", port))
        .fetch()
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::Unreachable { .. }),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!(
            "cannot get credentials from the parent's credentials service at tcp://127.0.0.1:{port}"
        )),
        "{shown}"
    );
    assert_eq!(
        FromParent::vsock_parent().endpoint().to_string(),
        "vsock://3:8002"
    );
}

#[test]
fn the_server_answers_protocol_abuse_and_closes() {
    let provider: Arc<dyn CredentialsProvider> = Arc::new(StaticCredentials::new(
        Credentials::new("AKIAEXAMPLE", SECRET, None).unwrap(),
    ));
    let (endpoint, events) = parent_on_tcp(provider);
    let Endpoint::Tcp { port, .. } = endpoint else {
        unreachable!()
    };
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };

    // Two requests on one connection are both answered.
    let mut stream = connect();
    for _ in 0..2 {
        protocol::write_frame(&mut stream, &protocol::encode_request()).unwrap();
        let answer = protocol::read_frame(&mut stream).unwrap().unwrap();
        assert_eq!(
            protocol::decode_answer(&answer, "test")
                .unwrap()
                .access_key_id(),
            "AKIAEXAMPLE"
        );
        assert!(next_event(&events).contains("gave AKIAEXAMPLE"));
    }

    // A future version gets an error frame naming the version, then the connection closes.
    let mut stream = connect();
    protocol::write_frame(&mut stream, br#"{"version":2,"type":"get_credentials"}"#).unwrap();
    let answer = protocol::read_frame(&mut stream).unwrap().unwrap();
    match protocol::decode_answer(&answer, "test").unwrap_err() {
        CredentialsError::Refused { code, message, .. } => {
            assert_eq!(code, "unsupported_version");
            assert!(message.contains("speaks version 1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(protocol::read_frame(&mut stream).unwrap().is_none());
    let event = next_event(&events);
    assert!(
        event.contains("refused") && event.contains("unsupported_version"),
        "{event}"
    );

    // A length over the limit: no answer, closed.
    let mut stream = connect();
    stream
        .write_all(&u32::try_from(MAX_FRAME_LEN + 1).unwrap().to_be_bytes())
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let event = next_event(&events);
    assert!(
        event.contains("failed") && event.contains("frame length"),
        "{event}"
    );
}

/// Fake IMDS: a real HTTP server implementing IMDSv2's token dance and role credentials.
struct FakeImds {
    server: TestServer,
    token_puts: Arc<AtomicUsize>,
    /// Tokens the server currently accepts (clearing it simulates an IMDS restart).
    valid_tokens: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ImdsMode {
    Normal,
    NoRole,
    MalformedJson,
    NotSuccess,
}

fn fake_imds(mode: ImdsMode) -> FakeImds {
    let token_puts = Arc::new(AtomicUsize::new(0));
    let valid_tokens = Arc::new(Mutex::new(Vec::<String>::new()));
    let (puts, tokens) = (Arc::clone(&token_puts), Arc::clone(&valid_tokens));
    let server = TestServer::start(move |request: &TestRequest| {
        if request.method == "PUT" && request.path == "/latest/api/token" {
            if request.header("x-aws-ec2-metadata-token-ttl-seconds") != Some("21600") {
                return TestResponse::new(400, "missing or wrong TTL header");
            }
            let n = puts.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("AQAEAtoken{n}==");
            tokens.lock().unwrap().push(token.clone());
            return TestResponse::new(200, token);
        }
        // Every GET needs a live IMDSv2 token: 401 otherwise, as IMDS does in v2-only mode.
        let authorized = request
            .header("x-aws-ec2-metadata-token")
            .is_some_and(|t| tokens.lock().unwrap().iter().any(|v| v == t));
        if request.method != "GET" || !authorized {
            return TestResponse::new(401, "");
        }
        match (request.path.as_str(), mode) {
            ("/latest/meta-data/iam/security-credentials/", ImdsMode::NoRole) => {
                TestResponse::new(404, "")
            }
            ("/latest/meta-data/iam/security-credentials/", _) => {
                TestResponse::new(200, "ccc-parent-role\n")
            }
            (
                "/latest/meta-data/iam/security-credentials/ccc-parent-role",
                ImdsMode::MalformedJson,
            ) => TestResponse::new(
                200,
                format!(
                    r#"{{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"{SECRET}","#
                ),
            ),
            ("/latest/meta-data/iam/security-credentials/ccc-parent-role", m) => {
                let code = if m == ImdsMode::NotSuccess {
                    "Failure"
                } else {
                    "Success"
                };
                TestResponse::new(
                    200,
                    format!(
                        r#"{{"Code":"{code}","LastUpdated":"2025-12-31T23:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDSEXAMPLE","SecretAccessKey":"{SECRET}","Token":"{TOKEN}","Expiration":"2026-01-01T06:00:00Z"}}"#
                    ),
                )
            }
            _ => TestResponse::new(404, ""),
        }
    });
    FakeImds {
        server,
        token_puts,
        valid_tokens,
    }
}

/// An IMDS whose token answer never arrives (what a hop limit of 1 does to a parent in a
/// container: the connection is accepted, the answer is dropped on its way) is named as such,
/// with the command that fixes it.
#[test]
fn an_unanswered_imds_token_request_names_the_hop_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, finished) = channel::<()>();
    let holder = std::thread::spawn(move || {
        // Accept, read the request, answer nothing until the client has given up.
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).unwrap();
        finished.recv().unwrap();
    });
    let imds = Imds::with_endpoint(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            io: Duration::from_millis(300),
        });
    let error = imds.fetch().unwrap_err();
    done.send(()).unwrap();
    holder.join().unwrap();
    assert!(
        matches!(error, CredentialsError::ImdsTokenUnanswered { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("--http-put-response-hop-limit 2"),
        "{message}"
    );
    assert!(message.contains("PUT /latest/api/token"), "{message}");
}

#[test]
fn imdsv2_token_role_and_credentials() {
    let fake = fake_imds(ImdsMode::Normal);
    let imds = Imds::with_endpoint(&fake.server.url()).unwrap();
    let credentials = imds.fetch().unwrap();
    assert_eq!(credentials.access_key_id(), "ASIAIMDSEXAMPLE");
    assert_eq!(credentials.secret_access_key(), SECRET);
    assert_eq!(credentials.session_token(), Some(TOKEN));
    assert_eq!(
        credentials.expiration(),
        Some(UnixMillis(T0 + 6 * 3_600_000))
    );
    // The session token is reused for the next fetch.
    imds.fetch().unwrap();
    assert_eq!(fake.token_puts.load(Ordering::SeqCst), 1);
    let requests = fake.server.requests();
    assert_eq!(
        requests
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect::<Vec<_>>(),
        [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            (
                "GET",
                "/latest/meta-data/iam/security-credentials/ccc-parent-role"
            ),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            (
                "GET",
                "/latest/meta-data/iam/security-credentials/ccc-parent-role"
            ),
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("host") == Some(&fake.server.url()[7..]))
    );

    // IMDS restarted and forgot the token: 401, one new token, success.
    fake.valid_tokens.lock().unwrap().clear();
    assert_eq!(imds.fetch().unwrap().access_key_id(), "ASIAIMDSEXAMPLE");
    assert_eq!(fake.token_puts.load(Ordering::SeqCst), 2);

    let shown = format!("{imds:?} {credentials:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains(TOKEN) && !shown.contains("AQAE"),
        "{shown}"
    );
}

#[test]
fn imds_token_expiry_follows_the_clock() {
    let fake = fake_imds(ImdsMode::Normal);
    let clock = Arc::new(ManualClock::new(UnixMillis(T0)));
    let imds = Imds::with_endpoint(&fake.server.url())
        .unwrap()
        .with_clock(clock.clone());
    imds.role_name().unwrap();
    clock.advance(Duration::from_secs(5 * 3600));
    imds.role_name().unwrap();
    assert_eq!(fake.token_puts.load(Ordering::SeqCst), 1);
    // Within a minute of the 6-hour TTL a new token is asked for.
    clock.advance(Duration::from_secs(3600 - 30));
    imds.role_name().unwrap();
    assert_eq!(fake.token_puts.load(Ordering::SeqCst), 2);
}

#[test]
fn imds_failures_say_what_to_do() {
    // IMDS down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = Imds::with_endpoint(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .fetch()
        .unwrap_err();
    assert!(matches!(error, CredentialsError::Unreachable { .. }));
    assert!(
        error.to_string().starts_with(&format!(
            "cannot get credentials from IMDS at http://127.0.0.1:{port}"
        )),
        "{error}"
    );

    // No role attached.
    let fake = fake_imds(ImdsMode::NoRole);
    let error = Imds::with_endpoint(&fake.server.url())
        .unwrap()
        .fetch()
        .unwrap_err();
    assert!(matches!(
        error,
        CredentialsError::ImdsStatus { status: 404, .. }
    ));
    assert!(
        error.to_string().contains("no IAM role is attached"),
        "{error}"
    );

    // Broken JSON: named, and the secret it contained is not repeated.
    let fake = fake_imds(ImdsMode::MalformedJson);
    let error = Imds::with_endpoint(&fake.server.url())
        .unwrap()
        .fetch()
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::Malformed { .. }),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(shown.contains("not IMDS role credentials JSON"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");

    let fake = fake_imds(ImdsMode::NotSuccess);
    let error = Imds::with_endpoint(&fake.server.url())
        .unwrap()
        .fetch()
        .unwrap_err();
    assert!(error.to_string().contains("Code \"Failure\""), "{error}");

    // A server that wants IMDSv2 and a client that never sends a token: what a v1-only client
    // would see. Our client always sends one, so provoke it by hand on the same fake.
    let fake = fake_imds(ImdsMode::Normal);
    let mut stream = TcpStream::connect(("127.0.0.1", fake.server.port)).unwrap();
    stream
        .write_all(b"GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let error = CredentialsError::ImdsStatus {
        endpoint: fake.server.url(),
        path: "/latest/meta-data/iam/security-credentials/".into(),
        status: 401,
    };
    assert!(
        error.to_string().contains("IMDSv2 session token"),
        "{error}"
    );

    for bad in [
        "https://169.254.169.254",
        "http://",
        "http://host:notaport",
        "169.254.169.254",
    ] {
        assert!(Imds::with_endpoint(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Imds::with_endpoint("http://[fd00:ec2::254]").unwrap().url(),
        "http://[fd00:ec2::254]"
    );
    assert_eq!(
        Imds::with_endpoint("http://169.254.169.254/")
            .unwrap()
            .url(),
        "http://169.254.169.254"
    );
}

#[test]
fn environment_credentials() {
    let env = Environment::from_vars([
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
        ("AWS_CREDENTIAL_EXPIRATION", "2026-01-01T00:00:00Z"),
    ]);
    assert!(env.is_configured());
    let credentials = env.fetch().unwrap();
    assert_eq!(credentials.access_key_id(), "AKIAENV");
    assert_eq!(credentials.session_token(), Some(TOKEN));
    assert_eq!(credentials.expiration(), Some(UnixMillis(T0)));

    let long_term = Environment::from_vars([
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", ""),
    ])
    .fetch()
    .unwrap();
    assert_eq!(long_term.session_token(), None);

    let missing = Environment::from_vars([("AWS_ACCESS_KEY_ID", "AKIAENV")])
        .fetch()
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("environment credentials: AWS_SECRET_ACCESS_KEY is not set")
    );
    assert!(!Environment::from_vars([]).is_configured());
    let bad_time = Environment::from_vars([
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_CREDENTIAL_EXPIRATION", "tomorrow"),
    ])
    .fetch()
    .unwrap_err();
    assert!(bad_time.to_string().contains("AWS_CREDENTIAL_EXPIRATION"));
}

#[test]
fn nothing_secret_in_debug_output() {
    let credentials = Credentials::new("ASIAEXAMPLE", SECRET, Some(TOKEN.into()))
        .unwrap()
        .with_expiration(UnixMillis(T0));
    let provider = Refreshing::new(FromParent::new(Endpoint::tcp("127.0.0.1", 1)))
        .with_refresh_ahead(Duration::from_secs(1));
    let env = Environment::from_vars([("AWS_SECRET_ACCESS_KEY", SECRET)]);
    let shown = format!(
        "{credentials:?} {provider:?} {env:?} {:?} {:?}",
        StaticCredentials::new(credentials.clone()),
        Timeouts::default()
    );
    assert!(
        shown.contains("ASIAEXAMPLE") && shown.contains("2026-01-01T00:00:00.000Z"),
        "{shown}"
    );
    assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
}
