//! AF_VSOCK streams and listeners (Linux): the enclave's only way out. Owned descriptors,
//! connect with a deadline, read/write timeouts; the system calls are ccc-sys's.

use ccc_sys::socket::{self, Direction};
use ccc_sys::vsock as sys;
use core::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// `VMADDR_CID_ANY`: bind on every CID of this machine.
pub const CID_ANY: u32 = sys::VMADDR_CID_ANY;
/// `VMADDR_CID_HOST` (2): the host, e.g. QEMU's host side through vhost-vsock.
pub const CID_HOST: u32 = sys::VMADDR_CID_HOST;
/// CID 3: the parent instance, seen from a Nitro Enclave (`VMADDR_CID_PARENT`;
/// aws-nitro-enclaves-cli `src/common/mod.rs`, research notes §5).
pub const CID_PARENT: u32 = 3;
/// `VMADDR_PORT_ANY`: let the kernel choose the port when binding.
pub const PORT_ANY: u32 = sys::VMADDR_PORT_ANY;

/// A vsock address: context id and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VsockAddr {
    /// The context id (3 = the parent of an enclave, 2 = the host).
    pub cid: u32,
    /// The port.
    pub port: u32,
}

impl VsockAddr {
    /// `(cid, port)`.
    #[must_use]
    pub const fn new(cid: u32, port: u32) -> Self {
        Self { cid, port }
    }
}

impl fmt::Display for VsockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vsock://{}:{}", self.cid, self.port)
    }
}

/// A connected vsock stream. Reads and writes go through the owned descriptor (`read(2)` /
/// `write(2)`); it is closed on drop.
#[derive(Debug)]
pub struct VsockStream {
    file: File,
    peer: VsockAddr,
}

impl VsockStream {
    /// A stream another piece of code accepted (a listener handed over by socket activation,
    /// say): `fd` must be a connected stream socket and `peer` the address `accept` reported
    /// for it, which is what [`VsockStream::peer_addr`] returns and what services that check
    /// their peer's CID decide on.
    #[must_use]
    pub fn from_accepted(fd: OwnedFd, peer: VsockAddr) -> Self {
        Self {
            file: File::from(fd),
            peer,
        }
    }

    /// Connects to `peer`, failing with [`io::ErrorKind::TimedOut`] after `timeout`.
    ///
    /// # Errors
    /// `EAFNOSUPPORT` when the kernel has no vsock, `ENODEV` when no transport reaches the
    /// CID, `ECONNREFUSED`/`ECONNRESET` when nothing listens on the port, `TimedOut`, or
    /// `InvalidInput` for a zero timeout.
    pub fn connect(peer: VsockAddr, timeout: Duration) -> io::Result<Self> {
        let fd = sys::connect_stream(peer.cid, peer.port, timeout)?;
        Ok(Self {
            file: File::from(fd),
            peer,
        })
    }

    /// The address this stream is connected to.
    #[must_use]
    pub fn peer_addr(&self) -> VsockAddr {
        self.peer
    }

    /// Sets `SO_RCVTIMEO` (`None` = wait forever); a read that times out fails with
    /// [`io::ErrorKind::WouldBlock`].
    ///
    /// # Errors
    /// The `setsockopt` failure, or `InvalidInput` for `Some(Duration::ZERO)`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        socket::set_timeout(self.file.as_fd(), Direction::Read, timeout)
    }

    /// Sets `SO_SNDTIMEO` (`None` = wait forever).
    ///
    /// # Errors
    /// As [`VsockStream::set_read_timeout`].
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        socket::set_timeout(self.file.as_fd(), Direction::Write, timeout)
    }

    /// Shuts both directions down (the peer sees end of file).
    ///
    /// # Errors
    /// The `shutdown` failure.
    pub fn shutdown(&self) -> io::Result<()> {
        socket::shutdown(self.file.as_fd(), Shutdown::Both)
    }

    /// The current `SO_RCVTIMEO` (`None`: none).
    ///
    /// # Errors
    /// The `getsockopt` failure.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        socket::timeout(self.file.as_fd(), Direction::Read)
    }
}

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for VsockStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// A listening vsock socket (the parent's credentials server, the heartbeat peer in tests).
#[derive(Debug)]
pub struct VsockListener {
    fd: OwnedFd,
    local: VsockAddr,
}

/// The listening socket, for `poll` (a server waiting on several listeners and a shutdown
/// signal at once).
impl AsFd for VsockListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Pending connections the kernel queues (`SOMAXCONN`-sized queues are pointless here: one
/// enclave connects at a time).
const LISTEN_BACKLOG: i32 = 16;

impl VsockListener {
    /// Binds and listens on `local` (use [`CID_ANY`]; [`PORT_ANY`] lets the kernel choose).
    ///
    /// # Errors
    /// `EAFNOSUPPORT` without vsock, `EADDRINUSE`, or another `bind`/`listen` failure.
    pub fn bind(local: VsockAddr) -> io::Result<Self> {
        let fd = sys::socket()?;
        sys::bind(fd.as_fd(), local.cid, local.port)?;
        sys::listen(fd.as_fd(), LISTEN_BACKLOG)?;
        let (cid, port) = sys::local_address(fd.as_fd())?;
        Ok(Self {
            fd,
            local: VsockAddr::new(cid, port),
        })
    }

    /// The bound address (with the port the kernel chose).
    #[must_use]
    pub fn local_addr(&self) -> VsockAddr {
        self.local
    }

    /// Waits for a connection.
    ///
    /// # Errors
    /// The `accept4` failure.
    pub fn accept(&self) -> io::Result<(VsockStream, VsockAddr)> {
        let (fd, cid, port) = sys::accept(self.fd.as_fd())?;
        let peer = VsockAddr::new(cid, port);
        Ok((
            VsockStream {
                file: File::from(fd),
                peer,
            },
            peer,
        ))
    }
}

#[cfg(test)]
#[expect(clippy::panic, reason = "test code: a panic is the test failure")]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// Connect failures this host may legitimately give for a peer that is not there: no
    /// vsock at all, no transport to the CID, nobody listening, or a timeout.
    fn is_expected_absence(error: &io::Error) -> bool {
        error.kind() == io::ErrorKind::TimedOut
            || matches!(
                error.raw_os_error(),
                Some(
                    ccc_sys::libc::EAFNOSUPPORT
                        | ccc_sys::libc::ENODEV
                        | ccc_sys::libc::ECONNREFUSED
                        | ccc_sys::libc::ECONNRESET
                )
            )
    }

    #[test]
    fn connecting_to_an_absent_parent_fails_within_the_timeout() {
        // There is no Nitro parent on a development machine or CI runner; whatever the
        // kernel's vsock setup, the connect must fail (never hang, never "succeed"). It runs
        // on its own thread so that a hang fails the test instead of stalling it; how long
        // the call takes is not asserted.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(VsockStream::connect(
                VsockAddr::new(CID_PARENT, 8000),
                Duration::from_millis(300),
            ));
        });
        let error = result
            .recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|_| panic!("a 300 ms vsock connect had not returned after 600 s"))
            .unwrap_err();
        assert!(is_expected_absence(&error), "{error:?}");
    }

    #[test]
    fn connect_timeouts_are_enforced_by_poll() {
        // CID 1 is the local loopback transport. Without the vsock_loopback module (this
        // development host, a Firecracker guest) the connect neither fails nor completes, so
        // the poll deadline must end it; elsewhere it fails at once or is refused.
        let timeout = Duration::from_millis(200);
        match VsockStream::connect(VsockAddr::new(1, 9), timeout) {
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                assert_eq!(error.to_string(), "vsock connect timed out");
            }
            Err(error) => assert!(is_expected_absence(&error), "{error:?}"),
            Ok(stream) => panic!("nothing listens on vsock://1:9, yet connected: {stream:?}"),
        }
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let error =
            VsockStream::connect(VsockAddr::new(CID_PARENT, 8000), Duration::ZERO).unwrap_err();
        // Either no vsock at all, or the explicit refusal before connecting.
        assert!(
            error.kind() == io::ErrorKind::InvalidInput
                || error.raw_os_error() == Some(ccc_sys::libc::EAFNOSUPPORT),
            "{error:?}"
        );
    }

    #[test]
    fn listener_binds_a_kernel_chosen_port_or_reports_no_vsock() {
        match VsockListener::bind(VsockAddr::new(CID_ANY, PORT_ANY)) {
            Ok(listener) => {
                assert_ne!(listener.local_addr().port, PORT_ANY);
                // A second listener on the same port is refused.
                let again =
                    VsockListener::bind(VsockAddr::new(CID_ANY, listener.local_addr().port))
                        .unwrap_err();
                assert_eq!(
                    again.raw_os_error(),
                    Some(ccc_sys::libc::EADDRINUSE),
                    "{again:?}"
                );
            }
            Err(error) => assert_eq!(
                error.raw_os_error(),
                Some(ccc_sys::libc::EAFNOSUPPORT),
                "{error:?}"
            ),
        }
    }

    #[test]
    fn addresses_print_as_urls() {
        assert_eq!(VsockAddr::new(3, 8000).to_string(), "vsock://3:8000");
    }
}
