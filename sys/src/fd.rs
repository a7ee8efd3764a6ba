//! Descriptor flags: `O_NONBLOCK` through `fcntl(2)`.

use crate::check;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sets or clears `O_NONBLOCK` on `fd` (any descriptor: a vsock socket, a listener, a pipe).
///
/// # Errors
/// The `fcntl` failure (`EBADF`).
pub fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // SAFETY: `F_GETFL` takes no argument and returns the flags; no pointers, and `fd` is
    // borrowed for the call.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let flags = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: `F_SETFL` takes an int; no pointers, and `fd` is borrowed for the call.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// Whether `O_NONBLOCK` is set on `fd`.
///
/// # Errors
/// The `fcntl` failure (`EBADF`).
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: `F_GETFL` takes no argument and returns the flags; no pointers, and `fd` is
    // borrowed for the call.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_flag_is_set_and_cleared() {
        let (socket, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!is_nonblocking(socket.as_fd()).unwrap());
        set_nonblocking(socket.as_fd(), true).unwrap();
        assert!(is_nonblocking(socket.as_fd()).unwrap());
        // std sees the same descriptor state: a read with nothing to read does not block.
        let error = std::io::Read::read(&mut &socket, &mut [0u8; 1]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        set_nonblocking(socket.as_fd(), false).unwrap();
        assert!(!is_nonblocking(socket.as_fd()).unwrap());
    }
}
