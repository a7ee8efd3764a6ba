//! Where the parent listens and how it reaches the enclave, on each transport it meets:
//! - **vsock** (a Nitro parent): listen on `VsockAddr(any, port)`, reach `vsock://CID:PORT`.
//! - **the vhost-user UDS backend** (QEMU emulation with `vhost-device-vsock --vm
//!   ...,uds-path=P`): a guest `connect(CID 2, port N)` arrives at a Unix socket listening at
//!   `P_N`, so the parent listens there; the host reaches a guest listener on port N by
//!   connecting to `P` itself, writing `CONNECT N\n` and reading `OK <host port>\n` (written
//!   once the guest accepted; the backend closes the socket if the guest refuses).
//! - **TCP and Unix sockets** (a laptop, tests, benchmarks): the same services on loopback.
//!
//! [`Family`] names a listening transport for every port of a service; [`Target`] names one
//! enclave endpoint for the `client` command.

use crate::ArgumentError;
use ccc_sdk::net::vsock::CID_ANY;
use ccc_sdk::net::{Endpoint, Listener, Stream, Timeouts, VsockAddr, VsockListener, VsockStream};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Longest `OK <port>\n` line accepted from vhost-device-vsock (a u32 port: 14 bytes).
const MAX_CONNECT_REPLY: usize = 64;

/// Pending connections queued on a Unix listener (std's `UnixListener::bind` uses 128).
const UNIX_BACKLOG: i32 = 128;

/// How the parent listens, for every port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Family {
    /// AF_VSOCK on any CID (a Nitro parent instance). Written `vsock`.
    Vsock,
    /// Unix sockets at `<prefix>_<port>`: vhost-device-vsock's UDS backend (QEMU emulation),
    /// whose `uds-path` is the prefix. Written `uds:<prefix>`. The socket files are created
    /// with mode `0600`.
    Uds(PathBuf),
    /// TCP on one address (development, tests, benchmarks). Written `tcp:<address>`.
    Tcp(String),
}

impl FromStr for Family {
    type Err = ArgumentError;

    fn from_str(text: &str) -> Result<Self, ArgumentError> {
        match text.split_once(':') {
            None if text == "vsock" => Ok(Self::Vsock),
            Some(("uds", prefix)) if !prefix.is_empty() => Ok(Self::Uds(PathBuf::from(prefix))),
            Some(("tcp", address)) if !address.is_empty() => Ok(Self::Tcp(address.to_owned())),
            _ => Err(ArgumentError::new(
                text,
                "`vsock` (a Nitro parent), `uds:<vhost-device-vsock uds-path>` (QEMU \
                 emulation) or `tcp:<address>` (development)",
            )),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock => f.write_str("vsock"),
            Self::Uds(prefix) => write!(f, "uds:{}", prefix.display()),
            Self::Tcp(address) => write!(f, "tcp:{address}"),
        }
    }
}

impl Family {
    /// Binds the listener for `port` (TCP: port 0 lets the kernel choose). A stale Unix
    /// socket file at the path is replaced.
    ///
    /// # Errors
    /// The `bind`/`listen` failure, naming the address.
    pub fn bind(&self, port: u32) -> io::Result<Bound> {
        let named = |e: io::Error, what: String| io::Error::new(e.kind(), format!("{what}: {e}"));
        let bound = match self {
            Self::Vsock => Bound::Vsock(
                VsockListener::bind(VsockAddr::new(CID_ANY, port))
                    .map_err(|e| named(e, format!("vsock port {port}")))?,
            ),
            Self::Uds(prefix) => {
                let path = PathBuf::from(format!("{}_{port}", prefix.display()));
                remove_stale_socket(&path)?;
                // 0600 from the instant the file exists: only the parent's user (and so
                // vhost-device-vsock, run by it) may connect.
                let listener = ccc_sys::unix::listen_private(&path, UNIX_BACKLOG)
                    .map(UnixListener::from)
                    .map_err(|e| named(e, path.display().to_string()))?;
                Bound::Unix(listener, path)
            }
            Self::Tcp(address) => {
                let port = u16::try_from(port).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("TCP port {port}"))
                })?;
                Bound::Tcp(
                    TcpListener::bind((address.as_str(), port))
                        .map_err(|e| named(e, format!("{address}:{port}")))?,
                )
            }
        };
        ccc_sys::fd::set_nonblocking(bound.as_fd(), true)?;
        Ok(bound)
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(_) => Ok(()),
    }
}

/// A bound, non-blocking listener. A Unix socket's file is removed when it is dropped.
#[derive(Debug)]
pub enum Bound {
    /// vsock.
    Vsock(VsockListener),
    /// A Unix socket and its path.
    Unix(UnixListener, PathBuf),
    /// TCP.
    Tcp(TcpListener),
}

impl Bound {
    /// Accepts one connection (fails with `WouldBlock` when none is pending). The accepted
    /// stream is blocking.
    ///
    /// # Errors
    /// The `accept` failure.
    pub fn accept(&self) -> io::Result<Stream> {
        let stream = match self {
            Self::Vsock(l) => l.accept_stream()?,
            Self::Unix(l, _) => l.accept_stream()?,
            Self::Tcp(l) => l.accept_stream()?,
        };
        // Linux does not pass O_NONBLOCK on to accepted sockets; TCP and Unix say so
        // explicitly in std, so make sure.
        match &stream {
            Stream::Tcp(s) => s.set_nonblocking(false)?,
            Stream::Unix(s) => s.set_nonblocking(false)?,
            _ => {}
        }
        Ok(stream)
    }

    /// Where it listens (`vsock port 8000`, `unix:///run/vm.vsock_8000`, `tcp://127.0.0.1:8000`).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Vsock(l) => format!("vsock port {}", l.local_addr().port),
            Self::Unix(_, path) => format!("unix://{}", path.display()),
            Self::Tcp(l) => l.describe(),
        }
    }

    /// The TCP port (tests bind port 0).
    #[must_use]
    pub fn tcp_port(&self) -> Option<u16> {
        match self {
            Self::Tcp(l) => l.local_addr().ok().map(|a| a.port()),
            _ => None,
        }
    }
}

impl AsFd for Bound {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Vsock(l) => l.as_fd(),
            Self::Unix(l, _) => l.as_fd(),
            Self::Tcp(l) => l.as_fd(),
        }
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One end of a proxied connection: a socket that can be cloned (one thread reads, another
/// writes) and half-closed.
#[derive(Debug)]
pub enum Conn {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix socket.
    Unix(UnixStream),
    /// A vsock socket, held as its descriptor.
    Vsock(File),
}

impl Conn {
    /// Takes an accepted stream, setting its read and write timeouts to `io`.
    ///
    /// # Errors
    /// Setting the timeouts or duplicating the vsock descriptor failed.
    pub fn from_stream(stream: Stream, io: Duration) -> io::Result<Self> {
        stream.set_timeouts(io)?;
        Ok(match stream {
            Stream::Tcp(s) => Self::Tcp(s),
            Stream::Unix(s) => Self::Unix(s),
            Stream::Vsock(s) => Self::Vsock(vsock_file(&s)?),
            _ => return Err(io::Error::other("unknown stream type")),
        })
    }

    /// Takes an accepted stream for the proxy's event loop: non-blocking, no timeouts (the
    /// loop keeps the deadlines).
    ///
    /// # Errors
    /// Setting `O_NONBLOCK` or duplicating the vsock descriptor failed.
    pub fn nonblocking(stream: Stream) -> io::Result<Self> {
        let conn = match stream {
            Stream::Tcp(s) => Self::Tcp(s),
            Stream::Unix(s) => Self::Unix(s),
            Stream::Vsock(s) => Self::Vsock(vsock_file(&s)?),
            _ => return Err(io::Error::other("unknown stream type")),
        };
        ccc_sys::fd::set_nonblocking(conn.as_fd(), true)?;
        Ok(conn)
    }

    /// Another handle to the same socket.
    ///
    /// # Errors
    /// The `dup` failure.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Unix(s) => Self::Unix(s.try_clone()?),
            Self::Vsock(f) => Self::Vsock(f.try_clone()?),
        })
    }

    /// Closes the sending side (`write_only`) or both; errors (a peer already gone) are
    /// ignored.
    pub fn shutdown(&self, write_only: bool) {
        let how = if write_only {
            Shutdown::Write
        } else {
            Shutdown::Both
        };
        let _ = match self {
            Self::Tcp(s) => s.shutdown(how),
            Self::Unix(s) => s.shutdown(how),
            Self::Vsock(f) => ccc_sys::socket::shutdown(f.as_fd(), how),
        };
    }
}

/// A vsock stream as a plain descriptor (the SDK's stream has no `try_clone`; a `dup` of the
/// descriptor shares the socket and its timeouts).
fn vsock_file(stream: &VsockStream) -> io::Result<File> {
    Ok(File::from(stream.as_fd().try_clone_to_owned()?))
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(s) => s.as_fd(),
            Self::Unix(s) => s.as_fd(),
            Self::Vsock(f) => f.as_fd(),
        }
    }
}

impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => { s }.read(buf),
            Conn::Unix(s) => { s }.read(buf),
            Conn::Vsock(f) => { f }.read(buf),
        }
    }
}

impl Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => { s }.write(buf),
            Conn::Unix(s) => { s }.write(buf),
            Conn::Vsock(f) => { f }.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        { &*self }.read(buf)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        { &*self }.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where the `client` command reaches the enclave's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An SDK endpoint: `vsock://CID:PORT` (Nitro), `tcp://HOST:PORT`, `unix:///PATH`.
    Endpoint(Endpoint),
    /// A guest port behind vhost-device-vsock's UDS backend: `vhost-uds://<uds-path>:<port>`.
    VhostUds {
        /// The backend's `uds-path`.
        path: PathBuf,
        /// The guest's vsock port.
        port: u32,
    },
}

impl FromStr for Target {
    type Err = ArgumentError;

    fn from_str(text: &str) -> Result<Self, ArgumentError> {
        if let Some(rest) = text.strip_prefix("vhost-uds://") {
            let bad = || ArgumentError::new(text, "vhost-uds://<uds-path>:<port> (a u32 port)");
            let (path, port) = rest
                .rsplit_once(':')
                .filter(|(path, _)| !path.is_empty())
                .ok_or_else(bad)?;
            let port = port.parse().map_err(|_| bad())?;
            return Ok(Self::VhostUds {
                path: PathBuf::from(path),
                port,
            });
        }
        text.parse().map(Self::Endpoint).map_err(|_| {
            ArgumentError::new(
                text,
                "vsock://CID:PORT (Nitro), tcp://HOST:PORT, unix:///PATH, or \
                 vhost-uds://<uds-path>:<port> for a QEMU guest (emulation)",
            )
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Endpoint(e) => e.fmt(f),
            Self::VhostUds { path, port } => write!(f, "vhost-uds://{}:{port}", path.display()),
        }
    }
}

impl Target {
    /// Connects, with `timeouts` for the connection and each read and write.
    ///
    /// # Errors
    /// The connection failed, or vhost-device-vsock did not answer `OK` (nothing listens on
    /// that guest port yet, or the guest is not running).
    pub fn connect(&self, timeouts: &Timeouts) -> io::Result<Stream> {
        match self {
            Self::Endpoint(endpoint) => {
                Stream::connect(endpoint, timeouts).map_err(|e| io::Error::other(e.to_string()))
            }
            Self::VhostUds { path, port } => {
                let mut stream = UnixStream::connect(path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot connect to vhost-device-vsock at {}: {e} (is the QEMU \
                             guest running?)",
                            path.display()
                        ),
                    )
                })?;
                let io = (!timeouts.io.is_zero()).then_some(timeouts.io);
                stream.set_read_timeout(io)?;
                stream.set_write_timeout(io)?;
                stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
                let reply = read_line(&mut stream)?;
                if connect_reply_ok(&reply) {
                    Ok(Stream::Unix(stream))
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!(
                            "vhost-device-vsock answered {reply:?} to CONNECT {port}: nothing \
                             listens on guest port {port} (has the enclave printed `serving API \
                             v1`?)"
                        ),
                    ))
                }
            }
        }
    }
}

/// Whether vhost-device-vsock's reply line to `CONNECT <port>` (without its `\n`) is
/// `OK <host port>`: the guest port accepted the connection.
pub(crate) fn connect_reply_ok(reply: &str) -> bool {
    reply
        .strip_prefix("OK ")
        .is_some_and(|host_port| host_port.parse::<u32>().is_ok())
}

/// Reads one `\n`-terminated line, byte by byte (nothing after it may be consumed: it belongs
/// to the protocol that follows).
fn read_line(stream: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte == [b'\n'] => break,
            Ok(_) if line.len() < MAX_CONNECT_REPLY => line.push(byte[0]),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "vhost-device-vsock's reply line is too long",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_targets_parse() {
        assert_eq!("vsock".parse::<Family>().unwrap(), Family::Vsock);
        assert_eq!(
            "uds:/run/ccc/vm.vsock".parse::<Family>().unwrap(),
            Family::Uds("/run/ccc/vm.vsock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1".parse::<Family>().unwrap(),
            Family::Tcp("127.0.0.1".into())
        );
        for bad in ["", "uds:", "vsock:3", "http:x"] {
            assert!(bad.parse::<Family>().is_err(), "{bad}");
        }
        assert_eq!(
            "vhost-uds:///tmp/run/vm.vsock:5000"
                .parse::<Target>()
                .unwrap(),
            Target::VhostUds {
                path: "/tmp/run/vm.vsock".into(),
                port: 5000
            }
        );
        assert_eq!(
            "vsock://16:5000".parse::<Target>().unwrap().to_string(),
            "vsock://16:5000"
        );
        assert!("vhost-uds://:5000".parse::<Target>().is_err());
        assert!("vhost-uds:///x:port".parse::<Target>().is_err());
        assert!("16:5000".parse::<Target>().is_err());
    }

    #[test]
    fn uds_listeners_follow_the_vhost_naming_and_clean_up() {
        let dir = std::env::temp_dir().join(format!("ccc-parent-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let family = Family::Uds(dir.join("vm.vsock"));
        let bound = family.bind(8002).unwrap();
        let path = dir.join("vm.vsock_8002");
        assert_eq!(bound.describe(), format!("unix://{}", path.display()));
        assert!(path.exists());
        // Private to the parent's user from its creation (not the umask's 0755/0775).
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::symlink_metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        // Nothing pending: a non-blocking accept.
        assert_eq!(
            bound.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(bound);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
