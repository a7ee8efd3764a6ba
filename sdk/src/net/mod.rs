//! Byte streams to KMS, the parent and IMDS (feature `std`): where to connect ([`Endpoint`]:
//! vsock inside the enclave, TCP or a Unix socket for local use), connecting with timeouts
//! ([`Stream::connect`]), listening ([`Listener`]) and serving ([`accept_loop`]: one thread
//! per connection, bounded), and the one error of the transport boundary
//! ([`TransportError`]), which covers TLS ([`crate::tls`]) and HTTP ([`crate::http`]) failures
//! too.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

mod accept;
pub mod vsock;

use crate::http::HttpError;
pub use accept::accept_loop;
use core::fmt;
use core::str::FromStr;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;
pub use vsock::{VsockAddr, VsockListener, VsockStream};

/// The vsock port the parent's KMS proxy listens on by convention (`vsock-proxy 8000
/// kms.<region>.amazonaws.com 443`; the AWS C SDK's and kmstool's default; research notes §5).
pub const KMS_PROXY_PORT: u32 = 8000;

/// Where a stream goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// AF_VSOCK (inside an enclave: CID 3 is the parent).
    Vsock(VsockAddr),
    /// TCP to a host name or IP address.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix stream socket (e.g. a vhost-device-vsock socket on a QEMU host).
    Unix(PathBuf),
}

impl Endpoint {
    /// The parent's KMS proxy as seen from an enclave: `vsock://3:8000`.
    #[must_use]
    pub const fn kms_proxy() -> Self {
        Self::Vsock(VsockAddr::new(vsock::CID_PARENT, KMS_PROXY_PORT))
    }

    /// `tcp://host:port`.
    #[must_use]
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Self::Tcp {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock(address) => address.fmt(f),
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Parses `vsock://CID:PORT`, `tcp://HOST:PORT` (IPv6 in brackets) or `unix:///PATH`.
impl FromStr for Endpoint {
    type Err = TransportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |problem: &'static str| TransportError::InvalidEndpoint {
            text: text.into(),
            problem,
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| invalid("expected vsock://CID:PORT, tcp://HOST:PORT or unix:///PATH"))?;
        match scheme {
            "vsock" => {
                let (cid, port) = rest
                    .split_once(':')
                    .ok_or_else(|| invalid("expected vsock://CID:PORT"))?;
                let cid = cid.parse().map_err(|_| invalid("the CID is not a u32"))?;
                let port = port.parse().map_err(|_| invalid("the port is not a u32"))?;
                Ok(Self::Vsock(VsockAddr::new(cid, port)))
            }
            "tcp" => {
                let (host, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| invalid("expected tcp://HOST:PORT"))?;
                let port = port.parse().map_err(|_| invalid("the port is not a u16"))?;
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                if host.is_empty() {
                    return Err(invalid("the host is empty"));
                }
                Ok(Self::tcp(host, port))
            }
            "unix" if !rest.is_empty() => Ok(Self::Unix(PathBuf::from(rest))),
            "unix" => Err(invalid("the socket path is empty")),
            _ => Err(invalid("unknown scheme (vsock, tcp or unix)")),
        }
    }
}

/// How long to wait for a connection and for each read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (the TCP or vsock handshake; TLS counts as I/O). Default 3.1 s, the AWS
    /// SDK for Rust's default connect timeout (smithy-rs `TimeoutConfig`).
    pub connect: Duration,
    /// Each read or write, including the TLS handshake. Default 10 s: a KMS call answers in
    /// milliseconds, so this only bounds a stalled proxy.
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(3100),
            io: Duration::from_secs(10),
        }
    }
}

/// A connected byte stream with read and write timeouts set.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// AF_VSOCK.
    Vsock(VsockStream),
    /// A Unix stream socket.
    Unix(UnixStream),
}

fn zero_to_none(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl Stream {
    /// Connects to `endpoint` and sets the I/O timeouts.
    ///
    /// # Errors
    /// [`TransportError::Resolve`], [`TransportError::VsockUnsupported`],
    /// [`TransportError::ConnectTimeout`] or [`TransportError::Connect`].
    pub fn connect(endpoint: &Endpoint, timeouts: &Timeouts) -> Result<Self, TransportError> {
        let connect_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::TimedOut {
                TransportError::ConnectTimeout {
                    endpoint: endpoint.clone(),
                    timeout: timeouts.connect,
                }
            } else if source.raw_os_error() == Some(ccc_sys::libc::EAFNOSUPPORT) {
                TransportError::VsockUnsupported {
                    endpoint: endpoint.clone(),
                }
            } else {
                TransportError::Connect {
                    endpoint: endpoint.clone(),
                    source,
                }
            }
        };
        let io_timeout = zero_to_none(timeouts.io);
        let stream = match endpoint {
            Endpoint::Vsock(address) => {
                let stream =
                    VsockStream::connect(*address, timeouts.connect).map_err(connect_error)?;
                stream
                    .set_read_timeout(io_timeout)
                    .and_then(|()| stream.set_write_timeout(io_timeout))
                    .map_err(connect_error)?;
                Self::Vsock(stream)
            }
            Endpoint::Tcp { host, port } => {
                let addresses: Vec<_> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|source| TransportError::Resolve {
                        endpoint: endpoint.clone(),
                        source,
                    })?
                    .collect();
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                let mut connected = None;
                for address in addresses {
                    match TcpStream::connect_timeout(&address, timeouts.connect) {
                        Ok(stream) => {
                            connected = Some(stream);
                            break;
                        }
                        Err(error) => last = error,
                    }
                }
                let stream = connected.ok_or_else(|| connect_error(last))?;
                stream
                    .set_read_timeout(io_timeout)
                    .and_then(|()| stream.set_write_timeout(io_timeout))
                    .and_then(|()| stream.set_nodelay(true))
                    .map_err(connect_error)?;
                Self::Tcp(stream)
            }
            Endpoint::Unix(path) => {
                let stream = UnixStream::connect(path).map_err(connect_error)?;
                stream
                    .set_read_timeout(io_timeout)
                    .and_then(|()| stream.set_write_timeout(io_timeout))
                    .map_err(connect_error)?;
                Self::Unix(stream)
            }
        };
        Ok(stream)
    }

    /// The peer, for messages (`tcp://127.0.0.1:50312`, `vsock://16:1034`, `unix peer`).
    #[must_use]
    pub fn describe_peer(&self) -> String {
        match self {
            Self::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "tcp peer".into(), |a| format!("tcp://{a}")),
            Self::Vsock(s) => s.peer_addr().to_string(),
            Self::Unix(_) => "unix peer".into(),
        }
    }

    /// Sets the read and write timeouts of an accepted stream (`Duration::ZERO` = none).
    ///
    /// # Errors
    /// The `setsockopt` failure.
    pub fn set_timeouts(&self, io: Duration) -> io::Result<()> {
        let t = zero_to_none(io);
        match self {
            Self::Tcp(s) => s.set_read_timeout(t).and_then(|()| s.set_write_timeout(t)),
            Self::Vsock(s) => s.set_read_timeout(t).and_then(|()| s.set_write_timeout(t)),
            Self::Unix(s) => s.set_read_timeout(t).and_then(|()| s.set_write_timeout(t)),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Vsock(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Vsock(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.flush(),
            Self::Vsock(s) => s.flush(),
            Self::Unix(s) => s.flush(),
        }
    }
}

/// Something that accepts streams: a TCP, Unix or vsock listener.
pub trait Listener: Send + Sync {
    /// Waits for the next connection.
    ///
    /// # Errors
    /// The `accept` failure.
    fn accept_stream(&self) -> io::Result<Stream>;

    /// Where it listens, for messages (`tcp://127.0.0.1:8002`, `vsock://4294967295:8002`).
    fn describe(&self) -> String;
}

impl Listener for TcpListener {
    fn accept_stream(&self) -> io::Result<Stream> {
        let (stream, _) = self.accept()?;
        stream.set_nodelay(true)?;
        Ok(Stream::Tcp(stream))
    }

    fn describe(&self) -> String {
        self.local_addr()
            .map_or_else(|_| "tcp://?".into(), |a| format!("tcp://{a}"))
    }
}

impl Listener for UnixListener {
    fn accept_stream(&self) -> io::Result<Stream> {
        Ok(Stream::Unix(self.accept()?.0))
    }

    fn describe(&self) -> String {
        self.local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix://{}", p.display())))
            .unwrap_or_else(|| "unix://?".into())
    }
}

impl Listener for VsockListener {
    fn accept_stream(&self) -> io::Result<Stream> {
        Ok(Stream::Vsock(self.accept()?.0))
    }

    fn describe(&self) -> String {
        self.local_addr().to_string()
    }
}

/// Why a connection, a TLS session or an HTTP exchange failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// An endpoint string did not parse.
    InvalidEndpoint {
        /// The text.
        text: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The host name did not resolve.
    Resolve {
        /// The endpoint.
        endpoint: Endpoint,
        /// The resolver's error.
        source: io::Error,
    },
    /// The kernel has no AF_VSOCK.
    VsockUnsupported {
        /// The endpoint.
        endpoint: Endpoint,
    },
    /// The connection was refused or failed.
    Connect {
        /// The endpoint.
        endpoint: Endpoint,
        /// The OS error.
        source: io::Error,
    },
    /// Connecting took longer than [`Timeouts::connect`].
    ConnectTimeout {
        /// The endpoint.
        endpoint: Endpoint,
        /// The timeout.
        timeout: Duration,
    },
    /// A read or write failed (including the peer closing in the middle of a message).
    Io {
        /// The endpoint.
        endpoint: Endpoint,
        /// What was being done (`"sending the request"`, `"reading the response headers"`).
        during: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A read or write took longer than [`Timeouts::io`].
    Timeout {
        /// The endpoint.
        endpoint: Endpoint,
        /// What was being done.
        during: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The TLS configuration is unusable (a CA PEM without certificates, a bad server name).
    TlsConfig {
        /// What is wrong.
        problem: String,
    },
    /// The TLS handshake or session failed (certificate not trusted, wrong name, alert).
    Tls {
        /// The endpoint.
        endpoint: Endpoint,
        /// The name the certificate must carry (`kms.<region>.amazonaws.com`).
        server_name: String,
        /// rustls's error (boxed: it is large and rare).
        error: Box<rustls::Error>,
    },
    /// The peer broke the HTTP/1.1 protocol or a size limit.
    Http {
        /// The endpoint.
        endpoint: Endpoint,
        /// What was wrong.
        error: HttpError,
    },
}

impl TransportError {
    /// True when a new attempt on a new connection may succeed: refused or reset
    /// connections, timeouts, a peer that closed early. False for configuration, TLS trust
    /// and protocol errors, which would fail the same way again.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { source, .. } => !matches!(
                source.raw_os_error(),
                Some(
                    ccc_sys::libc::ENODEV
                        | ccc_sys::libc::EINVAL
                        | ccc_sys::libc::EACCES
                        | ccc_sys::libc::EPERM
                )
            ),
            Self::ConnectTimeout { .. } | Self::Io { .. } | Self::Timeout { .. } => true,
            Self::Http { error, .. } => error.is_transient(),
            _ => false,
        }
    }
}

fn is_certificate_problem(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    )
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEndpoint { text, problem } => write!(
                f,
                "invalid endpoint {text:?}: {problem} (e.g. vsock://3:8000, \
                 tcp://127.0.0.1:4443, unix:///run/ccc.sock)"
            ),
            Self::Resolve { endpoint, source } => {
                write!(
                    f,
                    "cannot resolve {endpoint}: {source}; check the host name"
                )
            }
            Self::VsockUnsupported { endpoint } => write!(
                f,
                "cannot connect to {endpoint}: this kernel has no AF_VSOCK (vsock modules not \
                 loaded); an enclave always has it; for local runs use a tcp:// endpoint"
            ),
            Self::Connect { endpoint, source } => {
                write!(f, "cannot connect to {endpoint}: {source}; ")?;
                match endpoint {
                    Endpoint::Vsock(address)
                        if source.raw_os_error() == Some(ccc_sys::libc::ENODEV) =>
                    {
                        write!(
                            f,
                            "no vsock transport reaches CID {} (CID 3 exists only inside a \
                             Nitro Enclave or an emulated one)",
                            address.cid
                        )
                    }
                    Endpoint::Vsock(address) => write!(
                        f,
                        "nothing listens on vsock port {port} of CID {}: start the parent-side \
                         service for that port (the KMS proxy: `vsock-proxy {port} \
                         kms.<region>.amazonaws.com 443`; the credentials service: \
                         ccc_sdk::credentials::parent::serve)",
                        address.cid,
                        port = address.port
                    ),
                    _ => f.write_str("is the server running and listening there?"),
                }
            }
            Self::ConnectTimeout { endpoint, timeout } => write!(
                f,
                "connecting to {endpoint} timed out after {timeout:?}; is the peer up and \
                 reachable?"
            ),
            Self::Io {
                endpoint,
                during,
                source,
            } => write!(
                f,
                "{during} to/from {endpoint} failed: {source}; the connection broke (a proxy or \
                 server restart?)"
            ),
            Self::Timeout {
                endpoint,
                during,
                timeout,
            } => write!(
                f,
                "{during} to/from {endpoint} timed out after {timeout:?}; the peer or a proxy \
                 in between stalled"
            ),
            Self::TlsConfig { problem } => write!(f, "TLS configuration: {problem}"),
            Self::Tls {
                endpoint,
                server_name,
                error,
            } if is_certificate_problem(error.as_ref()) => write!(
                f,
                "TLS to {endpoint} as {server_name}: {error}; KMS certificates chain to the \
                 Amazon roots and carry kms.<region>.amazonaws.com: check the region and that \
                 the proxy forwards to KMS; for the emulator trust its CA explicitly \
                 (TrustAnchors::CustomCaPem)"
            ),
            Self::Tls {
                endpoint,
                server_name,
                error,
            } => write!(
                f,
                "TLS to {endpoint} as {server_name} failed: {error}; is the peer a TLS server \
                 (a plain-HTTP emulator needs Transport::PlainHttpForEmulator)?"
            ),
            Self::Http { endpoint, error } => write!(f, "HTTP from {endpoint}: {error}"),
        }
    }
}

impl core::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Resolve { source, .. }
            | Self::Connect { source, .. }
            | Self::Io { source, .. } => Some(source),
            Self::Tls { error, .. } => Some(error.as_ref()),
            Self::Http { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
#[expect(clippy::panic, reason = "test code: a panic is the test failure")]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print() {
        for text in [
            "vsock://3:8000",
            "tcp://127.0.0.1:4443",
            "tcp://kms.eu-west-1.amazonaws.com:443",
            "tcp://[::1]:80",
            "unix:///run/ccc/parent.sock_8002",
        ] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
        }
        assert_eq!(
            "vsock://3:8000".parse::<Endpoint>().unwrap(),
            Endpoint::kms_proxy()
        );
        assert_eq!(
            "tcp://[::1]:80".parse::<Endpoint>().unwrap(),
            Endpoint::tcp("::1", 80)
        );
        for (text, problem) in [
            ("127.0.0.1:80", "expected vsock://"),
            ("vsock://3", "expected vsock://CID:PORT"),
            ("vsock://x:1", "CID"),
            ("tcp://host:99999", "u16"),
            ("tcp://:80", "empty"),
            ("http://x:1", "unknown scheme"),
            ("unix://", "empty"),
        ] {
            let error = text.parse::<Endpoint>().unwrap_err();
            let shown = error.to_string();
            assert!(shown.contains(problem), "{text}: {shown}");
            assert!(shown.contains("vsock://3:8000"), "{shown}");
        }
    }

    #[test]
    fn tcp_connect_refused_names_the_endpoint_and_is_transient() {
        // Bind then drop a listener: the port is (almost certainly) closed right after.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error =
            Stream::connect(&Endpoint::tcp("127.0.0.1", port), &Timeouts::default()).unwrap_err();
        assert!(matches!(error, TransportError::Connect { .. }), "{error:?}");
        assert!(error.is_transient());
        let shown = error.to_string();
        assert!(
            shown.contains(&format!("tcp://127.0.0.1:{port}")),
            "{shown}"
        );
        assert!(shown.contains("is the server running"), "{shown}");
    }

    #[test]
    fn vsock_to_the_absent_parent_says_what_to_run() {
        let timeouts = Timeouts {
            connect: Duration::from_millis(300),
            io: Duration::from_secs(1),
        };
        let error = Stream::connect(&Endpoint::kms_proxy(), &timeouts).unwrap_err();
        let shown = error.to_string();
        assert!(shown.contains("vsock://3:8000"), "{shown}");
        match &error {
            TransportError::VsockUnsupported { .. } => assert!(shown.contains("tcp://")),
            TransportError::ConnectTimeout { timeout, .. } => {
                assert_eq!(*timeout, Duration::from_millis(300));
            }
            TransportError::Connect { source, .. }
                if source.raw_os_error() == Some(ccc_sys::libc::ENODEV) =>
            {
                assert!(
                    shown.contains("no vsock transport reaches CID 3"),
                    "{shown}"
                );
                assert!(!error.is_transient());
            }
            TransportError::Connect { .. } => {
                assert!(shown.contains("vsock-proxy 8000"), "{shown}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unix_streams_carry_bytes_both_ways() {
        let dir = std::env::temp_dir().join(format!("ccc-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("echo.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(listener.describe(), format!("unix://{}", path.display()));
        let server = std::thread::spawn(move || {
            let mut stream = listener.accept_stream().unwrap();
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).unwrap();
            stream.write_all(&buf).unwrap();
        });
        let mut stream =
            Stream::connect(&Endpoint::Unix(path.clone()), &Timeouts::default()).unwrap();
        stream.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
