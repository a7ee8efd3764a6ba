//! AF_VSOCK stream sockets: create, connect with a deadline, bind, listen, accept, and the
//! local address. The address is libc's `sockaddr_vm` (Linux
//! `include/uapi/linux/vm_sockets.h`); the socket level of the vsock options is `AF_VSOCK`
//! itself.

use crate::socket::set_timeval_option;
use crate::{check, socklen};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub use libc::{VMADDR_CID_ANY, VMADDR_CID_HOST, VMADDR_CID_LOCAL, VMADDR_PORT_ANY};

/// `SO_VM_SOCKETS_CONNECT_TIMEOUT` on 64-bit Linux (`SO_VM_SOCKETS_CONNECT_TIMEOUT_OLD` = 6 in
/// `vm_sockets.h`, a `struct timeval`; libc does not define it), at level `AF_VSOCK`. The
/// kernel's default is 2 seconds (`VSOCK_DEFAULT_CONNECT_TIMEOUT`).
const SO_VM_SOCKETS_CONNECT_TIMEOUT: libc::c_int = 6;

/// A `sockaddr_vm` for `(cid, port)`.
fn address(cid: u32, port: u32) -> libc::sockaddr_vm {
    libc::sockaddr_vm {
        svm_family: libc::AF_VSOCK as libc::sa_family_t,
        svm_reserved1: 0,
        svm_port: port,
        svm_cid: cid,
        svm_zero: [0; 4],
    }
}

/// `socklen_t` of `sockaddr_vm`.
fn address_len() -> libc::socklen_t {
    socklen(size_of::<libc::sockaddr_vm>())
}

/// `socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0)`.
///
/// # Errors
/// `EAFNOSUPPORT` when the kernel has no vsock.
pub fn socket() -> io::Result<OwnedFd> {
    // SAFETY: `socket` takes no pointers.
    let fd =
        check(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `socket` has just returned `fd`: it is open and nothing else owns it, so
    // `OwnedFd` may close it on drop.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects `socket` to `(cid, port)` within `timeout` (non-blocking `connect` + `poll`, with
/// the kernel's own vsock connect timeout set to the same value), then makes it blocking again.
///
/// # Errors
/// `InvalidInput` for a zero timeout (before any system call); `TimedOut` ("vsock connect
/// timed out") when the deadline passes, whichever of `poll` and the kernel's timer notices
/// first; otherwise the kernel's answer: `ENODEV` when no transport reaches the CID,
/// `ECONNREFUSED`/`ECONNRESET` when nothing listens on the port.
pub fn connect(socket: BorrowedFd<'_>, cid: u32, port: u32, timeout: Duration) -> io::Result<()> {
    if timeout.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a zero connect timeout",
        ));
    }
    let deadline = Instant::now() + timeout;
    set_timeval_option(
        socket,
        libc::AF_VSOCK,
        SO_VM_SOCKETS_CONNECT_TIMEOUT,
        timeout,
    )?;
    crate::fd::set_nonblocking(socket, true)?;
    let peer = address(cid, port);
    // SAFETY: `peer` is a live `sockaddr_vm` and the length passed is its exact size; the
    // kernel only reads it. `socket` is borrowed for the call.
    let status =
        unsafe { libc::connect(socket.as_raw_fd(), (&raw const peer).cast(), address_len()) };
    if status < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(timeout_as_such(error));
        }
        if !wait_writable(socket, deadline)? {
            return Err(timed_out());
        }
        if let Some(error) = crate::socket::take_error(socket)? {
            return Err(timeout_as_such(error));
        }
    }
    crate::fd::set_nonblocking(socket, false)
}

/// The error of a connect whose deadline passed.
fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "vsock connect timed out")
}

/// The kernel's own connect timeout (`ETIMEDOUT`, set to the same deadline) reported as
/// [`timed_out`], so that callers see one error for one cause.
fn timeout_as_such(error: io::Error) -> io::Error {
    if error.raw_os_error() == Some(libc::ETIMEDOUT) {
        timed_out()
    } else {
        error
    }
}

/// Waits until `socket` is writable or `deadline` passes; `Ok(false)` on timeout.
fn wait_writable(socket: BorrowedFd<'_>, deadline: Instant) -> io::Result<bool> {
    use crate::poll::{PollFd, WRITABLE, poll};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        if poll(&mut [PollFd::new(socket, WRITABLE)], Some(left))? > 0 {
            return Ok(true);
        }
    }
}

/// A new vsock stream connected to `(cid, port)` within `connect_timeout`.
///
/// # Errors
/// As [`socket`] and [`connect`].
pub fn connect_stream(cid: u32, port: u32, connect_timeout: Duration) -> io::Result<OwnedFd> {
    use std::os::fd::AsFd;
    let fd = socket()?;
    connect(fd.as_fd(), cid, port, connect_timeout)?;
    Ok(fd)
}

/// `bind(socket, {cid, port})`.
///
/// # Errors
/// `EADDRINUSE`, `EADDRNOTAVAIL` for a CID that is not this machine's, ...
pub fn bind(socket: BorrowedFd<'_>, cid: u32, port: u32) -> io::Result<()> {
    let local = address(cid, port);
    // SAFETY: `local` is a live `sockaddr_vm` and the length passed is its exact size; the
    // kernel only reads it. `socket` is borrowed for the call.
    let status =
        unsafe { libc::bind(socket.as_raw_fd(), (&raw const local).cast(), address_len()) };
    check(status)?;
    Ok(())
}

/// `listen(socket, backlog)`.
///
/// # Errors
/// The `listen` failure.
pub fn listen(socket: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: no pointers; `socket` is borrowed for the call.
    check(unsafe { libc::listen(socket.as_raw_fd(), backlog) })?;
    Ok(())
}

/// `accept4(socket, SOCK_CLOEXEC)`: the new connection and the peer's `(cid, port)`. Retries
/// on `EINTR`.
///
/// # Errors
/// The `accept4` failure (`EAGAIN` on a non-blocking listener with nothing pending).
pub fn accept(socket: BorrowedFd<'_>) -> io::Result<(OwnedFd, u32, u32)> {
    loop {
        let mut peer = address(0, 0);
        let mut len = address_len();
        // SAFETY: `peer` and `len` are live and writable and `len` holds the size of `peer`;
        // the kernel writes at most that many bytes. `socket` is borrowed for the call.
        let status = unsafe {
            libc::accept4(
                socket.as_raw_fd(),
                (&raw mut peer).cast(),
                &raw mut len,
                libc::SOCK_CLOEXEC,
            )
        };
        match check(status) {
            Ok(fd) => {
                // SAFETY: `accept4` has just returned `fd`: it is open and nothing else owns
                // it, so `OwnedFd` may close it on drop.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                return Ok((fd, peer.svm_cid, peer.svm_port));
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// `getsockname`: the local `(cid, port)` (the kernel picks the port when bound to
/// [`VMADDR_PORT_ANY`]).
///
/// # Errors
/// The `getsockname` failure.
pub fn local_address(socket: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut local = address(0, 0);
    let mut len = address_len();
    // SAFETY: `local` and `len` are live and writable and `len` holds the size of `local`;
    // the kernel writes at most that many bytes. `socket` is borrowed for the call.
    let status =
        unsafe { libc::getsockname(socket.as_raw_fd(), (&raw mut local).cast(), &raw mut len) };
    check(status)?;
    Ok((local.svm_cid, local.svm_port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::timeval_option;
    use std::os::fd::AsFd;

    #[test]
    fn abi_matches_the_linux_uapi() {
        // struct sockaddr_vm: family (2), reserved (2), port (4), cid (4), flags + zero (4).
        assert_eq!(size_of::<libc::sockaddr_vm>(), 16);
        assert_eq!(std::mem::offset_of!(libc::sockaddr_vm, svm_port), 4);
        assert_eq!(std::mem::offset_of!(libc::sockaddr_vm, svm_cid), 8);
        assert_eq!(libc::AF_VSOCK, 40);
        assert_eq!(size_of::<libc::timeval>(), 16);
        assert_eq!((VMADDR_CID_ANY, VMADDR_PORT_ANY), (u32::MAX, u32::MAX));
    }

    /// A vsock socket, or `None` on a kernel without AF_VSOCK (no vsock modules), whose only
    /// acceptable failure is `EAFNOSUPPORT`.
    fn socket_or_no_vsock() -> Option<OwnedFd> {
        match socket() {
            Ok(fd) => Some(fd),
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(libc::EAFNOSUPPORT), "{error}");
                None
            }
        }
    }

    #[test]
    fn the_connect_timeout_option_round_trips_on_a_real_socket() {
        let Some(fd) = socket_or_no_vsock() else {
            return;
        };
        // Whole seconds: the kernel stores these in jiffies.
        let wanted = Duration::from_secs(2);
        set_timeval_option(
            fd.as_fd(),
            libc::AF_VSOCK,
            SO_VM_SOCKETS_CONNECT_TIMEOUT,
            wanted,
        )
        .unwrap();
        assert_eq!(
            timeval_option(fd.as_fd(), libc::AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT).unwrap(),
            wanted
        );
    }

    #[test]
    fn a_listener_gets_a_kernel_chosen_port() {
        let Some(fd) = socket_or_no_vsock() else {
            return;
        };
        bind(fd.as_fd(), VMADDR_CID_ANY, VMADDR_PORT_ANY).unwrap();
        listen(fd.as_fd(), 1).unwrap();
        let (_, port) = local_address(fd.as_fd()).unwrap();
        assert_ne!(port, VMADDR_PORT_ANY);
        // Nothing connects: a non-blocking accept says so instead of waiting.
        crate::fd::set_nonblocking(fd.as_fd(), true).unwrap();
        let error = accept(fd.as_fd()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
    }

    #[test]
    fn the_kernels_connect_timeout_reads_as_the_deadline() {
        let error = timeout_as_such(io::Error::from_raw_os_error(libc::ETIMEDOUT));
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(error.to_string(), "vsock connect timed out");
        let other = timeout_as_such(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(other.raw_os_error(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn zero_connect_timeout_is_refused_before_any_syscall() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let error = connect(file.as_fd(), 3, 8000, Duration::ZERO).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
