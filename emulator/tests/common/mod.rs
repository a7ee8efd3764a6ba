//! A tiny KMS client for the emulator's tests: requests encoded by the SDK's KMS codec (or raw
//! JSON), signed by the SDK's SigV4 signer, sent over a real TLS connection (rustls trusting
//! only the emulator's CA) or plain TCP, responses read with httparse.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers shared by several test binaries: each uses part of them, and test code panics on failure"
)]

use ccc_emulator::{Config, Running};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::kms::{self, KmsRequest};
use ccc_sdk::sigv4::{Credentials, Request, Settings, SigV4, SigningParams};
use ccc_sdk::time::UnixMillis;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

/// A fresh directory under the target's test scratch space.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("kms-emulator")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An emulator on a fresh state file.
pub fn start(name: &str, configure: impl FnOnce(Config) -> Config) -> Running {
    let config = configure(Config::new(scratch(name).join("state.json")));
    ccc_emulator::Emulator::start(config).unwrap()
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Object(Default::default());
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// `(__type, message)` of an error response.
    pub fn error(&self) -> (String, String) {
        let v = self.json();
        (
            v["__type"].as_str().unwrap_or_default().to_owned(),
            v["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Asserts success and returns the body.
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "expected success, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    /// Asserts an error with this code and returns its message.
    pub fn expect_error(&self, code: &str) -> String {
        let (found, message) = self.error();
        assert_eq!(
            (self.status, found.as_str()),
            (400, code),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        message
    }
}

/// How to sign and send one request.
#[derive(Clone)]
pub struct Send {
    pub credentials: Credentials,
    pub time: Option<UnixMillis>,
    pub region: String,
    /// Applied to the (already signed) body before sending.
    pub tamper_body: Option<Vec<u8>>,
    /// Replaces `X-Amz-Security-Token` after signing.
    pub replace_token: Option<String>,
}

/// A client for one emulator.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    host: String,
    tls: Option<Arc<ClientConfig>>,
    pub send: Send,
}

pub fn tls_config(ca_der: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .expect("the emulator CA is a valid trust anchor");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Either side of a connection.
pub enum Stream {
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Plain(TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Tls(s) => s.read(buf),
            Self::Plain(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Tls(s) => s.write(buf),
            Self::Plain(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Tls(s) => s.flush(),
            Self::Plain(s) => s.flush(),
        }
    }
}

impl Client {
    /// A client with the emulator's default credentials, trusting its CA.
    pub fn new(running: &Running) -> Self {
        Self {
            addr: running.addr(),
            host: running.host_name().to_owned(),
            tls: running.is_https().then(|| tls_config(running.ca_der())),
            send: Send {
                credentials: running.credentials().sigv4().unwrap(),
                time: None,
                region: running.region().to_owned(),
                tamper_body: None,
                replace_token: None,
            },
        }
    }

    pub fn with(&self, change: impl FnOnce(&mut Send)) -> Self {
        let mut client = self.clone();
        change(&mut client.send);
        client
    }

    pub fn connect(&self) -> Stream {
        let tcp = TcpStream::connect(self.addr).unwrap();
        match &self.tls {
            Some(config) => {
                let name = ServerName::try_from(self.host.clone()).unwrap();
                let connection = ClientConnection::new(config.clone(), name).unwrap();
                Stream::Tls(Box::new(StreamOwned::new(connection, tcp)))
            }
            None => Stream::Plain(tcp),
        }
    }

    /// Signs and sends `body` for `operation` on a new connection.
    pub fn call(&self, operation: &str, body: &Value) -> Response {
        let mut stream = self.connect();
        self.call_on(&mut stream, operation, body.to_string().as_bytes(), true)
    }

    /// A typed request through the SDK's codec; returns the raw response.
    pub fn typed<R: KmsRequest>(&self, request: &R) -> Response {
        let body = kms::encode_request(request).unwrap();
        let mut stream = self.connect();
        self.call_on(&mut stream, R::OPERATION.name(), body.expose(), true)
    }

    /// A typed request decoded by the SDK's codec.
    pub fn decode<R: KmsRequest>(&self, request: &R) -> Result<R::Response, kms::KmsError> {
        let response = self.typed(request);
        let headers: Vec<(&str, &str)> = response
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        kms::decode_response(request, response.status, &headers, &response.body)
    }

    /// Signs and sends on an existing connection.
    pub fn call_on(
        &self,
        stream: &mut Stream,
        operation: &str,
        body: &[u8],
        keep_alive: bool,
    ) -> Response {
        let target = format!("TrentService.{operation}");
        let base = [
            ("Host", self.host.as_str()),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", target.as_str()),
        ];
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &base,
            body,
        };
        let params = SigningParams {
            credentials: &self.send.credentials,
            region: &self.send.region,
            service: "kms",
            time: self.send.time.unwrap_or_else(UnixMillis::now),
            settings: Settings::default(),
        };
        let mut signer = SigV4::new();
        let signed = signer.sign(&AwsLc, &params, &request).unwrap();
        let mut head = String::from("POST / HTTP/1.1\r\n");
        for (name, value) in base {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        for (name, value) in signed.headers() {
            let value = match (&self.send.replace_token, name) {
                (Some(token), "X-Amz-Security-Token") => token.as_str(),
                _ => value,
            };
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.send.tamper_body.as_deref().unwrap_or(body);
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        stream.flush().unwrap();
        read_response(stream)
    }
}

/// Reads one `Content-Length` response.
pub fn read_response(stream: &mut impl Read) -> Response {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = response.parse(&buffer).unwrap() {
            let status = response.code.unwrap();
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .expect("Content-Length");
            while buffer.len() < head_len + length {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "connection closed mid-body");
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Response {
                status,
                headers,
                body: buffer[head_len..head_len + length].to_vec(),
            };
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before a response");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Base64 (standard).
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Base64 decode.
pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
