//! The KMS network client against a real server on loopback (plain HTTP and TLS with a test
//! CA) that verifies SigV4 with a clock-skew check: signing, TLS trust and names, keep-alive,
//! retries with injected backoff, clock correction from `Date`, credential refresh, limits.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

mod net_support;

use ccc_sdk::clock::{ManualClock, RecordingSleeper};
use ccc_sdk::credentials::enclave::FromParent;
use ccc_sdk::credentials::{
    Credentials, CredentialsError, CredentialsProvider, CredentialsSource, Refreshing,
    StaticCredentials,
};
use ccc_sdk::kms::client::{
    ClientConfig, ClientError, Event, KmsClient, Observer, RetryPolicy, Transport,
};
use ccc_sdk::kms::{
    DecryptRequest, EncryptRequest, ErrorKind, GenerateRandomRequest, KmsError, MAX_RESPONSE_LEN,
};
use ccc_sdk::net::{Endpoint, TransportError};
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::time::UnixMillis;
use ccc_sdk::tls::TrustAnchors;
use net_support::fake_kms::FakeKms;
use net_support::{TestResponse, test_pki};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const REGION: &str = "us-east-1";
const HOST: &str = "kms.us-east-1.amazonaws.com";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn credentials(token: Option<&str>) -> Credentials {
    Credentials::new("ASIAEXAMPLE", SECRET, token.map(str::to_owned)).unwrap()
}

/// Records every event's text.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn event(&self, event: &Event<'_>) {
        self.0.lock().unwrap().push(event.to_string());
    }
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn plain_client(
    fake: &FakeKms,
    provider: Arc<dyn CredentialsProvider>,
) -> (KmsClient, Arc<RecordingSleeper>, Arc<Recorder>) {
    let sleeper = Arc::new(RecordingSleeper::default());
    let recorder = Arc::new(Recorder::default());
    let config = ClientConfig::new(
        REGION,
        Endpoint::tcp("127.0.0.1", fake.server.port),
        Transport::PlainHttpForEmulator,
    );
    let client = KmsClient::new(config, provider)
        .unwrap()
        .with_sleeper(sleeper.clone())
        .with_observer(recorder.clone());
    (client, sleeper, recorder)
}

fn random(n: u32) -> GenerateRandomRequest {
    GenerateRandomRequest {
        number_of_bytes: Some(n),
        ..GenerateRandomRequest::default()
    }
}

#[test]
fn signed_requests_verify_and_connections_are_reused() {
    let fake = FakeKms::start(credentials(Some("TOKEN")));
    let (client, sleeper, recorder) = plain_client(
        &fake,
        Arc::new(StaticCredentials::new(credentials(Some("TOKEN")))),
    );
    let answer = client.send(&random(16)).unwrap();
    assert_eq!(answer.plaintext.unwrap().expose(), &[0xab; 16]);
    let encrypted = client
        .send(&EncryptRequest {
            key_id: "alias/app".into(),
            plaintext: SecretBytes::copy_from(b"hello"),
            ..EncryptRequest::default()
        })
        .unwrap();
    assert_eq!(encrypted.ciphertext_blob.unwrap(), b"ct:hello");

    let requests = fake.server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        fake.server.connection_count(),
        1,
        "keep-alive reuses the connection"
    );
    let first = &requests[0];
    assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/"));
    assert_eq!(first.header("host"), Some(HOST));
    assert_eq!(
        first.header("x-amz-target"),
        Some("TrentService.GenerateRandom")
    );
    assert_eq!(
        first.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(first.header("x-amz-security-token"), Some("TOKEN"));
    assert!(first.header("user-agent").unwrap().starts_with("ccc-sdk/"));
    let authorization = first.header("authorization").unwrap();
    assert!(
        authorization.contains(
            "SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target,"
        ),
        "{authorization}"
    );
    assert!(authorization.contains("/us-east-1/kms/aws4_request"));
    assert!(sleeper.waits().is_empty());
    let lines = recorder.lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("connected to") && l.contains("PLAIN HTTP"))
            .count(),
        1,
        "one connection, announced as plain HTTP: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GenerateRandom: HTTP 200 (request id fake-request-id)"))
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains(SECRET) && !l.contains("TOKEN") && !l.contains("hello"))
    );
}

#[test]
fn tls_with_the_emulator_ca_and_the_kms_name() {
    let pki = test_pki(&[HOST]);
    let fake = FakeKms::start_tls(credentials(None), pki.server_config.clone());
    let provider: Arc<dyn CredentialsProvider> =
        Arc::new(StaticCredentials::new(credentials(None)));
    let endpoint = Endpoint::tcp("127.0.0.1", fake.server.port);

    let trusted = ClientConfig::new(
        REGION,
        endpoint.clone(),
        Transport::Tls(TrustAnchors::CustomCaPem(pki.ca_pem.clone())),
    );
    let client = KmsClient::new(trusted.clone(), Arc::clone(&provider)).unwrap();
    assert_eq!(client.send(&random(8)).unwrap().plaintext.unwrap().len(), 8);
    client.send(&random(8)).unwrap();
    assert_eq!(fake.server.connection_count(), 1);

    // The Amazon roots do not trust the test CA: refused during the handshake, never sent,
    // never retried.
    let sleeper = Arc::new(RecordingSleeper::default());
    let amazon = KmsClient::new(
        ClientConfig::new(
            REGION,
            endpoint.clone(),
            Transport::Tls(TrustAnchors::AmazonRoots),
        ),
        Arc::clone(&provider),
    )
    .unwrap()
    .with_sleeper(sleeper.clone());
    let error = amazon.send(&random(8)).unwrap_err();
    match &error {
        ClientError::Transport(TransportError::Tls { server_name, .. }) => {
            assert_eq!(server_name, HOST);
        }
        other => panic!("{other:?}"),
    }
    let shown = error.to_string();
    assert!(
        shown.contains("Amazon roots") && shown.contains("CustomCaPem"),
        "{shown}"
    );
    assert!(sleeper.waits().is_empty());

    // The right CA but another region's name: the certificate does not carry it.
    let misnamed =
        KmsClient::new(trusted.with_host("kms.eu-west-1.amazonaws.com"), provider).unwrap();
    let error = misnamed.send(&random(8)).unwrap_err();
    match &error {
        ClientError::Transport(TransportError::Tls { error, .. }) => assert!(
            matches!(
                error.as_ref(),
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. }
                        | rustls::CertificateError::NotValidForName
                )
            ),
            "{error:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.server.request_count(),
        2,
        "nothing reached HTTP over untrusted TLS"
    );
}

#[test]
fn transient_failures_are_retried_with_jittered_backoff() {
    let fake = FakeKms::start(credentials(None));
    let (client, sleeper, recorder) =
        plain_client(&fake, Arc::new(StaticCredentials::new(credentials(None))));
    fake.queue(TestResponse::json(503, "{}"));
    fake.queue(TestResponse::json(
        400,
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
    ));
    assert_eq!(client.send(&random(4)).unwrap().plaintext.unwrap().len(), 4);
    assert_eq!(fake.server.request_count(), 3);
    let waits = sleeper.waits();
    assert_eq!(waits.len(), 2);
    let policy = RetryPolicy::default();
    assert!(
        waits[0] <= policy.backoff_cap(2) && waits[1] <= policy.backoff_cap(3),
        "{waits:?}"
    );
    assert!(recorder.lines().iter().any(
        |l| l.starts_with("GenerateRandom: attempt 3 in") && l.contains("ThrottlingException")
    ));

    // Throttled on every attempt: gives up after max_attempts with the last KMS error.
    for _ in 0..3 {
        fake.queue(TestResponse::json(
            400,
            r#"{"__type":"ThrottlingException"}"#,
        ));
    }
    let error = client.send(&random(4)).unwrap_err();
    match &error {
        ClientError::GaveUp { attempts: 3, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(error.service_error().unwrap().kind, ErrorKind::Throttling);
    assert!(error.to_string().starts_with(
        "gave up after 3 attempts; last error: KMS GenerateRandom failed with ThrottlingException"
    ));
    assert_eq!(sleeper.waits().len(), 4);
}

#[test]
fn broken_connections_are_retried_and_stale_ones_replaced_quietly() {
    let fake = FakeKms::start(credentials(None));
    let (client, sleeper, _) =
        plain_client(&fake, Arc::new(StaticCredentials::new(credentials(None))));
    // A fresh connection that dies without an answer: an attempt, retried after a wait.
    fake.queue(TestResponse::hang_up());
    client.send(&random(4)).unwrap();
    assert_eq!(fake.server.request_count(), 2);
    assert_eq!(sleeper.waits().len(), 1);

    // A kept-alive connection the server closes: resent on a new connection at once.
    fake.queue(TestResponse::hang_up());
    client.send(&random(4)).unwrap();
    assert_eq!(
        sleeper.waits().len(),
        1,
        "no backoff for a stale kept-alive connection"
    );
    assert_eq!(fake.server.connection_count(), 3);
}

#[test]
fn clock_skew_is_corrected_once_from_the_date_header() {
    let fake = FakeKms::start(credentials(None));
    // The client's clock is 20 minutes slow.
    let clock = Arc::new(ManualClock::new(UnixMillis(
        UnixMillis::now().0 - 20 * 60_000,
    )));
    let (client, sleeper, recorder) =
        plain_client(&fake, Arc::new(StaticCredentials::new(credentials(None))));
    let client = client.with_clock(clock.clone());
    client.send(&random(4)).unwrap();
    assert_eq!(fake.server.request_count(), 2);
    assert!(sleeper.waits().is_empty());
    let offset = client.clock_offset_millis();
    assert!((19 * 60_000..21 * 60_000).contains(&offset), "{offset}");
    assert!(
        recorder
            .lines()
            .iter()
            .any(|l| l.starts_with("clock corrected by"))
    );
    // The offset is kept: the next call is accepted at once.
    client.send(&random(4)).unwrap();
    assert_eq!(fake.server.request_count(), 3);

    // A server whose clock keeps running away: one correction, then the error.
    *fake.state.skew_millis.lock().unwrap() = 3_600_000;
    let clock = Arc::new(ManualClock::new(UnixMillis::now()));
    let (client, _, _) = plain_client(&fake, Arc::new(StaticCredentials::new(credentials(None))));
    let client = client.with_clock(clock.clone());
    fake.state.hook.lock().unwrap().replace(Box::new({
        let state = Arc::clone(&fake.state);
        move |_| *state.skew_millis.lock().unwrap() += 3_600_000
    }));
    let before = fake.server.request_count();
    let error = client.send(&random(4)).unwrap_err();
    assert_eq!(fake.server.request_count() - before, 2);
    let service = error.service_error().unwrap();
    assert!(service.is_clock_skew(), "{error}");
    assert!(error.to_string().contains("Signature expired"), "{error}");
}

/// Credentials with a token that KMS will have expired, then fresh ones.
#[derive(Debug)]
struct TwoTokens(AtomicUsize);

impl CredentialsSource for TwoTokens {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Ok(credentials(Some(if n == 0 { "OLD" } else { "NEW" })))
    }

    fn describe(&self) -> String {
        "two tokens".into()
    }
}

#[test]
fn expired_tokens_get_fresh_credentials_once() {
    let fake = FakeKms::start(credentials(Some("NEW")));
    fake.state
        .accepted
        .lock()
        .unwrap()
        .push(credentials(Some("OLD")));
    fake.state.expired_tokens.lock().unwrap().push("OLD".into());
    let provider = Arc::new(Refreshing::new(TwoTokens(AtomicUsize::new(0))));
    let (client, sleeper, recorder) = plain_client(&fake, provider.clone());
    client.send(&random(4)).unwrap();
    let tokens: Vec<_> = fake
        .server
        .requests()
        .iter()
        .map(|r| r.header("x-amz-security-token").unwrap().to_owned())
        .collect();
    assert_eq!(tokens, ["OLD", "NEW"]);
    assert!(sleeper.waits().is_empty());
    assert!(
        recorder
            .lines()
            .contains(&"asked for fresh credentials".to_owned())
    );

    // Fixed credentials cannot be refreshed: the error comes back after one request.
    let (client, _, _) = plain_client(
        &fake,
        Arc::new(StaticCredentials::new(credentials(Some("OLD")))),
    );
    let error = client.send(&random(4)).unwrap_err();
    assert_eq!(error.service_error().unwrap().kind, ErrorKind::ExpiredToken);
    assert!(error.to_string().contains("get fresh ones from the parent"));
    assert_eq!(fake.server.request_count(), 3);
}

#[test]
fn permanent_errors_are_typed_and_not_retried() {
    let fake = FakeKms::start(credentials(None));
    let (client, sleeper, _) =
        plain_client(&fake, Arc::new(StaticCredentials::new(credentials(None))));
    fake.queue(TestResponse::json(
        400,
        r#"{"__type":"AccessDeniedException","Message":"User: arn:aws:sts::111122223333:assumed-role/parent/i-0 is not authorized to perform: kms:Decrypt"}"#,
    ));
    let error = client
        .send(&DecryptRequest {
            ciphertext_blob: vec![1, 2, 3],
            ..DecryptRequest::default()
        })
        .unwrap_err();
    let service = error.service_error().unwrap();
    assert_eq!(service.kind, ErrorKind::AccessDenied);
    assert!(
        error
            .to_string()
            .contains("Likely fix: the IAM policy or the key policy")
    );
    assert_eq!(fake.server.request_count(), 1);
    assert!(sleeper.waits().is_empty());

    // A wrong secret: the server's verifier refuses, the client says what it means.
    let (wrong, _, _) = plain_client(
        &fake,
        Arc::new(StaticCredentials::new(
            Credentials::new("ASIAEXAMPLE", "not-the-secret", None).unwrap(),
        )),
    );
    let error = wrong.send(&random(4)).unwrap_err();
    assert_eq!(
        error.service_error().unwrap().kind,
        ErrorKind::InvalidSignature
    );
    assert!(error.to_string().contains("wrong secret access key"));

    // An unknown access key id.
    let (unknown, _, _) = plain_client(
        &fake,
        Arc::new(StaticCredentials::new(
            Credentials::new("AKIAUNKNOWN", SECRET, None).unwrap(),
        )),
    );
    let error = unknown.send(&random(4)).unwrap_err();
    assert_eq!(
        error.service_error().unwrap().kind,
        ErrorKind::UnrecognizedClient
    );
}

#[test]
fn answers_are_bounded_and_chunked_ones_decode() {
    let fake = FakeKms::start(credentials(None));
    let (client, _, _) = plain_client(&fake, Arc::new(StaticCredentials::new(credentials(None))));
    fake.queue(TestResponse::json(200, r#"{"Plaintext":"AAEC"}"#).chunked());
    assert_eq!(
        client.send(&random(3)).unwrap().plaintext.unwrap().expose(),
        &[0, 1, 2]
    );

    fake.queue(TestResponse::json(200, vec![b' '; MAX_RESPONSE_LEN + 1]));
    let error = client.send(&random(3)).unwrap_err();
    assert!(
        matches!(error, ClientError::Transport(TransportError::Http { .. })),
        "{error:?}"
    );
    assert!(error.to_string().contains("exceeds 65536 bytes"), "{error}");

    fake.queue(TestResponse::json(200, "<html>proxy login</html>"));
    let error = client.send(&random(3)).unwrap_err();
    assert!(
        matches!(error, ClientError::Kms(KmsError::MalformedResponse { .. })),
        "{error:?}"
    );
}

#[test]
fn an_absent_endpoint_is_retried_then_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sleeper = Arc::new(RecordingSleeper::default());
    let client = KmsClient::new(
        ClientConfig::new(
            REGION,
            Endpoint::tcp("127.0.0.1", port),
            Transport::PlainHttpForEmulator,
        ),
        Arc::new(StaticCredentials::new(credentials(None))),
    )
    .unwrap()
    .with_sleeper(sleeper.clone());
    let error = client.send(&random(1)).unwrap_err();
    assert!(
        matches!(error, ClientError::GaveUp { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("cannot connect to tcp://127.0.0.1:{port}"))
    );
    assert_eq!(sleeper.waits().len(), 2);
}

#[test]
fn an_absent_credentials_service_is_retried_then_named() {
    let fake = FakeKms::start(credentials(None));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let parent = Refreshing::new(FromParent::new(Endpoint::tcp("127.0.0.1", port)));
    let (client, sleeper, _) = plain_client(&fake, Arc::new(parent));
    let error = client.send(&random(1)).unwrap_err();
    match &error {
        ClientError::GaveUp { attempts: 3, last } => assert!(
            matches!(
                **last,
                ClientError::Credentials(CredentialsError::Unreachable { .. })
            ),
            "{last:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains(&format!(
            "the parent's credentials service at tcp://127.0.0.1:{port}"
        )),
        "{error}"
    );
    assert_eq!(sleeper.waits().len(), 2);
    assert_eq!(fake.server.request_count(), 0, "nothing unsigned was sent");
}
