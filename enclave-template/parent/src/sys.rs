//! The system calls the parent makes that std does not wrap: `poll` (an accept loop that
//! also wakes on shutdown), `fcntl(O_NONBLOCK)` and `shutdown` on any socket (vsock
//! included), and `setrlimit(RLIMIT_NOFILE)`. The only `unsafe` in the crate; each block
//! says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Which of two descriptors became readable (or hung up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readable {
    /// The first.
    pub first: bool,
    /// The second.
    pub second: bool,
}

/// Waits until `first` or `second` is readable (or reports an error or hang-up), or
/// `timeout` passes (`None`: no timeout). Retries on `EINTR`.
///
/// # Errors
/// The `poll` failure.
pub fn poll_two(
    first: BorrowedFd<'_>,
    second: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> io::Result<Readable> {
    let mut fds = [
        libc::pollfd {
            fd: first.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: second.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let millis = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
    });
    loop {
        // SAFETY: `fds` is a live, writable array of two `pollfd`s and its length is passed;
        // both descriptors are borrowed for the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
        match check(ready) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let [a, b] = fds;
    Ok(Readable {
        first: a.revents != 0,
        second: b.revents != 0,
    })
}

/// Sets `O_NONBLOCK` on `fd` (a listener, so that a connection reset between `poll` and
/// `accept` makes `accept` fail with `EAGAIN` instead of blocking).
///
/// # Errors
/// The `fcntl` failure.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take and return plain integers; `fd` is borrowed for the call.
    unsafe {
        let flags = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        check(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            flags | libc::O_NONBLOCK,
        ))?;
    }
    Ok(())
}

/// `shutdown(2)`: `write_only` closes our sending side (the peer reads end of file), else
/// both sides.
///
/// # Errors
/// The `shutdown` failure (`ENOTCONN` once the peer is gone, which callers ignore).
pub fn shutdown(fd: BorrowedFd<'_>, write_only: bool) -> io::Result<()> {
    let how = if write_only {
        libc::SHUT_WR
    } else {
        libc::SHUT_RDWR
    };
    // SAFETY: no pointers; `fd` is borrowed for the call.
    unsafe {
        check(libc::shutdown(fd.as_raw_fd(), how))?;
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit (a proxy holds two descriptors per
/// connection; the usual soft limit of 1024 would cap it near 500). Returns the soft limit
/// before and after.
///
/// # Errors
/// The `getrlimit`/`setrlimit` failure.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a live, writable `rlimit`.
    unsafe {
        check(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit))?;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a live `rlimit` read by the kernel.
        unsafe {
            check(libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit))?;
        }
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn poll_reports_which_side_is_readable() {
        let (mut a_tx, a_rx) = UnixStream::pair().unwrap();
        let (_b_tx, b_rx) = UnixStream::pair().unwrap();
        let quiet = poll_two(a_rx.as_fd(), b_rx.as_fd(), Some(Duration::from_millis(1))).unwrap();
        assert_eq!(
            quiet,
            Readable {
                first: false,
                second: false
            }
        );
        a_tx.write_all(b"x").unwrap();
        let ready = poll_two(a_rx.as_fd(), b_rx.as_fd(), None).unwrap();
        assert_eq!(
            ready,
            Readable {
                first: true,
                second: false
            }
        );
    }

    #[test]
    fn shutdown_write_gives_the_peer_end_of_file() {
        use std::io::Read;
        let (a, mut b) = UnixStream::pair().unwrap();
        shutdown(a.as_fd(), true).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(b.read(&mut buf).unwrap(), 0);
        let (_, after) = raise_open_files_limit().unwrap();
        assert!(after >= 1024, "{after}");
    }
}
