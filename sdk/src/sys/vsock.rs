//! AF_VSOCK stream sockets: create, connect with a deadline, bind, listen, accept, and the
//! timeout options. The safe types built on these are in `crate::net::vsock`.
//!
//! ABI (Linux `include/uapi/linux/vm_sockets.h`):
//!
//! ```c
//! struct sockaddr_vm {
//!     __kernel_sa_family_t svm_family;   /* AF_VSOCK = 40 */
//!     unsigned short svm_reserved1;
//!     unsigned int svm_port;
//!     unsigned int svm_cid;
//!     __u8 svm_flags;
//!     unsigned char svm_zero[3];         /* pads to sizeof(struct sockaddr) = 16 */
//! };
//! #define SO_VM_SOCKETS_CONNECT_TIMEOUT_OLD 6  /* what SO_VM_SOCKETS_CONNECT_TIMEOUT means
//!                                                when long is 64 bits; value: struct timeval */
//! ```
//!
//! The socket level of the vsock options is `AF_VSOCK` itself.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// `AF_VSOCK`.
pub(crate) const AF_VSOCK: libc::c_int = 40;

/// `SO_VM_SOCKETS_CONNECT_TIMEOUT` on 64-bit Linux (`_OLD`, a `struct timeval`), at level
/// `AF_VSOCK`. The kernel's default is 2 seconds (`VSOCK_DEFAULT_CONNECT_TIMEOUT`).
pub(crate) const SO_VM_SOCKETS_CONNECT_TIMEOUT: libc::c_int = 6;

/// `struct sockaddr_vm`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct SockaddrVm {
    svm_family: libc::sa_family_t,
    svm_reserved1: u16,
    svm_port: u32,
    svm_cid: u32,
    svm_flags: u8,
    svm_zero: [u8; 3],
}

/// The `socklen_t` of [`SockaddrVm`].
const SOCKADDR_VM_LEN: libc::socklen_t = core::mem::size_of::<SockaddrVm>() as libc::socklen_t;

impl SockaddrVm {
    fn new(cid: u32, port: u32) -> Self {
        Self {
            svm_family: AF_VSOCK as libc::sa_family_t,
            svm_port: port,
            svm_cid: cid,
            ..Self::default()
        }
    }
}

fn check(status: libc::c_int) -> io::Result<libc::c_int> {
    if status < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(status)
    }
}

/// `socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0)`.
pub(crate) fn socket() -> io::Result<OwnedFd> {
    // SAFETY: `socket` takes no pointers; on success it returns a new descriptor that nothing
    // else owns, which `OwnedFd::from_raw_fd` takes ownership of (closed on drop).
    unsafe {
        let fd = check(libc::socket(
            AF_VSOCK,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // SAFETY: `fcntl(F_GETFL)` / `fcntl(F_SETFL, int)` on a descriptor borrowed for this call;
    // no pointers are passed.
    unsafe {
        let flags = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        let flags = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        check(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags))?;
    }
    Ok(())
}

fn timeval(duration: Duration) -> libc::timeval {
    // The field types are inferred: libc deprecates naming `time_t`/`suseconds_t` on musl
    // (they change width in musl 1.2); both are signed and at least 32 bits wide.
    let mut value = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    value.tv_sec = duration.as_secs().try_into().unwrap_or(i32::MAX.into());
    value.tv_usec = duration.subsec_micros().min(999_999).into();
    value
}

/// Sets a `struct timeval` socket option (`SO_RCVTIMEO`, `SO_SNDTIMEO`,
/// [`SO_VM_SOCKETS_CONNECT_TIMEOUT`]). A zero duration means "no timeout" to the kernel, so
/// callers must not pass zero when they mean "fail at once".
pub(crate) fn set_timeout_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    duration: Duration,
) -> io::Result<()> {
    let value = timeval(duration);
    // SAFETY: `value` is a live `struct timeval` and the length passed is exactly its size;
    // the kernel only reads it. `fd` is borrowed for the call.
    unsafe {
        check(libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            core::mem::size_of::<libc::timeval>() as libc::socklen_t,
        ))?;
    }
    Ok(())
}

/// Reads back a `struct timeval` socket option.
pub(crate) fn timeout_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<Duration> {
    let mut value = timeval(Duration::ZERO);
    let mut len = core::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live, writable, and `len` holds the size of `value`; the
    // kernel writes at most `len` bytes and updates `len`. `fd` is borrowed for the call.
    unsafe {
        check(libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &raw mut len,
        ))?;
    }
    let secs = u64::try_from(value.tv_sec).unwrap_or(0);
    let micros = u32::try_from(value.tv_usec).unwrap_or(0);
    Ok(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

/// The pending error of a socket (`SO_ERROR`), cleared by reading it.
fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut value: libc::c_int = 0;
    let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and writable, `len` holds the size of `value`; the
    // kernel writes one int. `fd` is borrowed for the call.
    unsafe {
        check(libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut value).cast(),
            &raw mut len,
        ))?;
    }
    Ok((value != 0).then(|| io::Error::from_raw_os_error(value)))
}

/// Waits until `fd` is writable or `deadline` passes; `Ok(false)` on timeout.
fn wait_writable(fd: BorrowedFd<'_>, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // Round up so a sub-millisecond remainder still waits.
        let millis = libc::c_int::try_from(left.as_millis().saturating_add(1)).unwrap_or(i32::MAX);
        let mut pollfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one live, writable `pollfd` and a count of 1; `fd` is borrowed for the call.
        let ready = unsafe { libc::poll(&raw mut pollfd, 1, millis) };
        match ready {
            0 => continue,
            n if n > 0 => return Ok(true),
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// The error of a vsock connect that did not complete within its timeout.
fn connect_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "vsock connect timed out")
}

/// Connects `fd` to `(cid, port)` within `timeout` (non-blocking `connect` + `poll`, with the
/// kernel's own vsock connect timeout set to the same value), then makes it blocking again.
/// A timeout is reported as [`io::ErrorKind::TimedOut`].
pub(crate) fn connect(
    fd: BorrowedFd<'_>,
    cid: u32,
    port: u32,
    timeout: Duration,
) -> io::Result<()> {
    if timeout.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a zero connect timeout",
        ));
    }
    let deadline = Instant::now() + timeout;
    set_timeout_option(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, timeout)?;
    set_nonblocking(fd, true)?;
    let address = SockaddrVm::new(cid, port);
    // SAFETY: `address` is a live `struct sockaddr_vm` and the length passed is its exact
    // size; the kernel only reads it. `fd` is borrowed for the call.
    let status =
        unsafe { libc::connect(fd.as_raw_fd(), (&raw const address).cast(), SOCKADDR_VM_LEN) };
    if status < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(error);
        }
        if !wait_writable(fd, deadline)? {
            return Err(connect_timed_out());
        }
        if let Some(error) = take_error(fd)? {
            // The kernel's timer (set to the same timeout above) may fire before poll()
            // returns: the same timeout, so the same error, whichever clock won.
            if error.raw_os_error() == Some(libc::ETIMEDOUT) {
                return Err(connect_timed_out());
            }
            return Err(error);
        }
    }
    set_nonblocking(fd, false)
}

/// `bind(fd, {cid, port})`.
pub(crate) fn bind(fd: BorrowedFd<'_>, cid: u32, port: u32) -> io::Result<()> {
    let address = SockaddrVm::new(cid, port);
    // SAFETY: `address` is a live `struct sockaddr_vm` and the length passed is its exact
    // size; the kernel only reads it. `fd` is borrowed for the call.
    unsafe {
        check(libc::bind(
            fd.as_raw_fd(),
            (&raw const address).cast(),
            SOCKADDR_VM_LEN,
        ))?;
    }
    Ok(())
}

/// `listen(fd, backlog)`.
pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: no pointers; `fd` is borrowed for the call.
    unsafe {
        check(libc::listen(fd.as_raw_fd(), backlog))?;
    }
    Ok(())
}

/// `accept4(fd, SOCK_CLOEXEC)`: the new connection and the peer's `(cid, port)`.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, u32, u32)> {
    loop {
        let mut address = SockaddrVm::default();
        let mut len = SOCKADDR_VM_LEN;
        // SAFETY: `address` and `len` are live and writable and `len` holds the size of
        // `address`; the kernel writes at most that many bytes. On success the returned
        // descriptor is new and owned by nothing else, so `OwnedFd` takes it.
        let accepted = unsafe {
            let status = libc::accept4(
                fd.as_raw_fd(),
                (&raw mut address).cast(),
                &raw mut len,
                libc::SOCK_CLOEXEC,
            );
            check(status).map(|new| OwnedFd::from_raw_fd(new))
        };
        match accepted {
            Ok(new) => return Ok((new, address.svm_cid, address.svm_port)),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// `getsockname`: the local `(cid, port)` (the kernel picks the port when bound to
/// `VMADDR_PORT_ANY`).
pub(crate) fn local_address(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut address = SockaddrVm::default();
    let mut len = SOCKADDR_VM_LEN;
    // SAFETY: `address` and `len` are live and writable and `len` holds the size of
    // `address`; the kernel writes at most that many bytes. `fd` is borrowed for the call.
    unsafe {
        check(libc::getsockname(
            fd.as_raw_fd(),
            (&raw mut address).cast(),
            &raw mut len,
        ))?;
    }
    Ok((address.svm_cid, address.svm_port))
}

/// `shutdown(fd, SHUT_RDWR)`.
pub(crate) fn shutdown(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no pointers; `fd` is borrowed for the call.
    unsafe {
        check(libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn abi_matches_the_linux_uapi() {
        assert_eq!(core::mem::size_of::<SockaddrVm>(), 16);
        assert_eq!(core::mem::offset_of!(SockaddrVm, svm_port), 4);
        assert_eq!(core::mem::offset_of!(SockaddrVm, svm_cid), 8);
        assert_eq!(core::mem::offset_of!(SockaddrVm, svm_flags), 12);
        assert_eq!(AF_VSOCK, libc::AF_VSOCK);
        assert_eq!(core::mem::size_of::<libc::timeval>(), 16);
    }

    #[test]
    fn timeout_options_round_trip_on_a_real_socket() {
        // A kernel without AF_VSOCK (no vsock modules) refuses the socket itself; that is the
        // only acceptable failure, and it must be EAFNOSUPPORT.
        let fd = match socket() {
            Ok(fd) => fd,
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(libc::EAFNOSUPPORT), "{error}");
                return;
            }
        };
        // Whole seconds: the kernel stores these in jiffies, so other values may come back
        // rounded to the tick (250 ms read back as 252 ms with HZ=250).
        let wanted = Duration::from_secs(2);
        set_timeout_option(fd.as_fd(), AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, wanted).unwrap();
        assert_eq!(
            timeout_option(fd.as_fd(), AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT).unwrap(),
            wanted
        );
        let read = Duration::from_secs(1);
        set_timeout_option(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, read).unwrap();
        assert_eq!(
            timeout_option(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO).unwrap(),
            read
        );
        assert_eq!(take_error(fd.as_fd()).unwrap().map(|e| e.kind()), None);
    }

    #[test]
    fn zero_connect_timeout_is_refused_before_any_syscall() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let error = connect(file.as_fd(), 3, 8000, Duration::ZERO).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
