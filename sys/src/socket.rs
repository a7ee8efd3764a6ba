//! What any socket needs beyond std (which offers these only on its own socket types, not on a
//! vsock descriptor): read/write timeouts, `shutdown(2)`, and the pending error.

use crate::{check, socklen};
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Which blocking call a timeout bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `SO_RCVTIMEO`: a read that waits longer fails with `EAGAIN` (`WouldBlock`).
    Read,
    /// `SO_SNDTIMEO`: a write that waits longer fails with `EAGAIN` (`WouldBlock`).
    Write,
}

impl Direction {
    fn option(self) -> libc::c_int {
        match self {
            Self::Read => libc::SO_RCVTIMEO,
            Self::Write => libc::SO_SNDTIMEO,
        }
    }
}

/// A `struct timeval` of `duration` (whole microseconds; more seconds than `time_t` holds
/// become its maximum).
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

fn duration(value: libc::timeval) -> Duration {
    let secs = u64::try_from(value.tv_sec).unwrap_or(0);
    let micros = u64::try_from(value.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// Sets a `struct timeval` option at `level`. A zero duration means "no timeout" to the kernel.
pub(crate) fn set_timeval_option(
    socket: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: Duration,
) -> io::Result<()> {
    let value = timeval(value);
    // SAFETY: `value` is a live `struct timeval` and the length passed is exactly its size;
    // the kernel only reads it. `socket` is borrowed for the call.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            socklen(size_of::<libc::timeval>()),
        )
    };
    check(status)?;
    Ok(())
}

/// Reads back a `struct timeval` option at `level`.
pub(crate) fn timeval_option(
    socket: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<Duration> {
    let mut value = timeval(Duration::ZERO);
    let mut len = socklen(size_of::<libc::timeval>());
    // SAFETY: `value` and `len` are live and writable, and `len` holds the size of `value`;
    // the kernel writes at most `len` bytes and updates `len`. `socket` is borrowed for the
    // call.
    let status = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    check(status)?;
    Ok(duration(value))
}

/// Bounds how long a read or a write on `socket` may block (`None`: forever).
///
/// # Errors
/// `InvalidInput` for `Some(Duration::ZERO)` (the kernel would read zero as "no timeout",
/// the opposite of what a caller means); otherwise the `setsockopt` failure.
pub fn set_timeout(
    socket: BorrowedFd<'_>,
    direction: Direction,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let value = match timeout {
        Some(timeout) if timeout.is_zero() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a zero timeout (use None for no timeout)",
            ));
        }
        Some(timeout) => timeout,
        None => Duration::ZERO,
    };
    set_timeval_option(socket, libc::SOL_SOCKET, direction.option(), value)
}

/// The current read or write timeout of `socket` (`None`: none).
///
/// # Errors
/// The `getsockopt` failure.
pub fn timeout(socket: BorrowedFd<'_>, direction: Direction) -> io::Result<Option<Duration>> {
    let value = timeval_option(socket, libc::SOL_SOCKET, direction.option())?;
    Ok((!value.is_zero()).then_some(value))
}

/// `shutdown(2)`: `Write` closes the sending side (the peer reads end of file), `Read` the
/// receiving side, `Both` both.
///
/// # Errors
/// The `shutdown` failure (`ENOTCONN` once the peer is gone).
pub fn shutdown(socket: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: no pointers; `socket` is borrowed for the call.
    let status = unsafe { libc::shutdown(socket.as_raw_fd(), how) };
    check(status)?;
    Ok(())
}

/// The pending error of a socket (`SO_ERROR`), cleared by reading it: how a non-blocking
/// `connect` reports its outcome.
///
/// # Errors
/// The `getsockopt` failure.
pub fn take_error(socket: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut value: libc::c_int = 0;
    let mut len = socklen(size_of::<libc::c_int>());
    // SAFETY: `value` and `len` are live and writable, `len` holds the size of `value`; the
    // kernel writes one int. `socket` is borrowed for the call.
    let status = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    check(status)?;
    Ok((value != 0).then(|| io::Error::from_raw_os_error(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn timeouts_round_trip_and_zero_is_refused() {
        let (socket, _peer) = UnixStream::pair().unwrap();
        assert_eq!(timeout(socket.as_fd(), Direction::Read).unwrap(), None);
        // Whole seconds: the kernel stores these in jiffies, so other values may come back
        // rounded to the tick (250 ms read back as 252 ms with HZ=250).
        for (direction, value) in [(Direction::Read, 1), (Direction::Write, 2)] {
            let value = Duration::from_secs(value);
            set_timeout(socket.as_fd(), direction, Some(value)).unwrap();
            assert_eq!(timeout(socket.as_fd(), direction).unwrap(), Some(value));
        }
        set_timeout(socket.as_fd(), Direction::Read, None).unwrap();
        assert_eq!(timeout(socket.as_fd(), Direction::Read).unwrap(), None);
        let error = set_timeout(socket.as_fd(), Direction::Read, Some(Duration::ZERO)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_read_timeout_ends_a_read_that_would_wait_forever() {
        let (mut socket, _peer) = UnixStream::pair().unwrap();
        set_timeout(
            socket.as_fd(),
            Direction::Read,
            Some(Duration::from_millis(20)),
        )
        .unwrap();
        let error = socket.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn shutdown_write_gives_the_peer_end_of_file() {
        let (mut socket, mut peer) = UnixStream::pair().unwrap();
        socket.write_all(b"x").unwrap();
        shutdown(socket.as_fd(), Shutdown::Write).unwrap();
        let mut received = Vec::new();
        peer.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"x");
        assert_eq!(take_error(socket.as_fd()).unwrap().map(|e| e.kind()), None);
    }

    #[test]
    fn calls_on_a_descriptor_that_is_not_a_socket_fail_with_enotsock() {
        let file = std::fs::File::open("/dev/null").unwrap();
        for error in [
            shutdown(file.as_fd(), Shutdown::Both).unwrap_err(),
            take_error(file.as_fd()).unwrap_err(),
            timeout(file.as_fd(), Direction::Write).unwrap_err(),
        ] {
            assert_eq!(error.raw_os_error(), Some(libc::ENOTSOCK), "{error}");
        }
    }
}
