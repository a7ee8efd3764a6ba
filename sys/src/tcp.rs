//! A TCP connection started without blocking (std's `TcpStream::connect_timeout` blocks its
//! thread until the connection is made): the parent's proxy event loop starts the connect,
//! waits for writability in `epoll` with a deadline of its own, and reads the outcome with
//! [`crate::socket::take_error`].

use crate::{check, socklen};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Whether [`connect_started`] already finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Connected at once.
    Connected,
    /// In progress (`EINPROGRESS`): writable once finished; then [`crate::socket::take_error`]
    /// tells how.
    Pending,
}

/// A new non-blocking, close-on-exec TCP socket whose `connect` to `peer` has been started.
///
/// # Errors
/// The `socket` failure (the open-file limit), or `connect`'s when it fails at once
/// (`ECONNREFUSED` on loopback, `ENETUNREACH`, ...).
pub fn connect_started(peer: SocketAddr) -> io::Result<(TcpStream, Progress)> {
    let family = match peer {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: `socket` takes no pointers.
    let fd = check(unsafe { libc::socket(family, kind, 0) })?;
    // SAFETY: `socket` has just returned `fd`: it is open and nothing else owns it, so
    // `OwnedFd` may close it on drop (also on the error paths below).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let status = match peer {
        SocketAddr::V4(v4) => {
            let address = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `address` is a live `sockaddr_in` and the length passed is its exact
            // size; the kernel only reads it. `owned` is open for the call.
            unsafe {
                libc::connect(
                    owned.as_raw_fd(),
                    (&raw const address).cast(),
                    socklen(size_of::<libc::sockaddr_in>()),
                )
            }
        }
        SocketAddr::V6(v6) => {
            let address = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: `address` is a live `sockaddr_in6` and the length passed is its exact
            // size; the kernel only reads it. `owned` is open for the call.
            unsafe {
                libc::connect(
                    owned.as_raw_fd(),
                    (&raw const address).cast(),
                    socklen(size_of::<libc::sockaddr_in6>()),
                )
            }
        }
    };
    let progress = match check(status) {
        Ok(_) => Progress::Connected,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Progress::Pending,
        Err(e) => return Err(e),
    };
    Ok((TcpStream::from(owned), progress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::{PollFd, WRITABLE, poll};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    fn finish(stream: &TcpStream, progress: Progress) -> io::Result<()> {
        if progress == Progress::Pending {
            poll(&mut [PollFd::new(stream.as_fd(), WRITABLE)], None)?;
        }
        crate::socket::take_error(stream.as_fd())?.map_or(Ok(()), Err)
    }

    #[test]
    fn a_started_connect_reaches_the_listener_on_v4_and_v6() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = TcpListener::bind(local) else {
                // A host without IPv6 loopback: nothing to connect to.
                assert_eq!(local, "[::1]:0");
                continue;
            };
            let peer = listener.local_addr().unwrap();
            let (mut stream, progress) = connect_started(peer).unwrap();
            assert!(crate::fd::is_nonblocking(stream.as_fd()).unwrap());
            finish(&stream, progress).unwrap();
            let (mut accepted, from) = listener.accept().unwrap();
            assert_eq!(from, stream.local_addr().unwrap());
            assert_eq!(stream.peer_addr().unwrap(), peer);
            stream.write_all(b"ping").unwrap();
            let mut got = [0u8; 4];
            accepted.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
        }
    }

    #[test]
    fn a_refused_connect_reports_the_refusal() {
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = match connect_started(closed) {
            Err(e) => e,
            Ok((stream, progress)) => finish(&stream, progress).unwrap_err(),
        };
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
    }
}
