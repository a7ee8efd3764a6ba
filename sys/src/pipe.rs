//! Pipes and `splice(2)`: the parent's proxy moves bytes between two sockets through a pipe
//! without copying them through user space.

use crate::check;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A pipe (read end, write end), close-on-exec, for [`splice`]. Asks the kernel for `capacity`
/// bytes of buffer (it may give less: the default is 64 KiB and an unprivileged process gets
/// at most `/proc/sys/fs/pipe-max-size`) and returns the size it has.
///
/// # Errors
/// The `pipe2` failure (usually the open-file limit), or `fcntl(F_GETPIPE_SZ)`'s.
pub fn pipe(capacity: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let mut ends = [-1 as libc::c_int; 2];
    // SAFETY: `ends` is a live, writable array of two ints, as `pipe2` requires.
    check(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) })?;
    let [read, write] = ends;
    // SAFETY: `pipe2` succeeded, so `read` is an open descriptor that nothing else owns.
    let read = unsafe { OwnedFd::from_raw_fd(read) };
    // SAFETY: as for `read`: open, and owned by nothing else.
    let write = unsafe { OwnedFd::from_raw_fd(write) };
    let wanted = libc::c_int::try_from(capacity).unwrap_or(libc::c_int::MAX);
    // SAFETY: `F_SETPIPE_SZ` takes an int; no pointers, and `write` is open. A refusal (EPERM
    // above /proc/sys/fs/pipe-max-size) keeps the default size, so its result is not needed.
    let _ = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, wanted) };
    // SAFETY: `F_GETPIPE_SZ` takes no argument; no pointers, and `write` is open.
    let size = check(unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) })?;
    Ok((read, write, usize::try_from(size).unwrap_or(0)))
}

/// `splice(2)` of up to `len` bytes from `from` to `to` (one of them a pipe), without blocking
/// on the pipe (`SPLICE_F_NONBLOCK`; a socket's own `O_NONBLOCK` governs the socket). Returns
/// the bytes moved (0: end of file on `from`).
///
/// # Errors
/// The `splice` failure: `WouldBlock` when nothing can move now; `EINVAL` when a descriptor
/// does not support splicing.
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets mean "the descriptors' own positions"; both descriptors are
    // borrowed for the call and no user memory is passed.
    let moved = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if moved < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(moved).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn bytes_move_socket_to_pipe_to_socket() {
        let (read, write, size) = pipe(1 << 20).unwrap();
        assert!(size >= 4096, "{size}");
        let (mut client, from) = UnixStream::pair().unwrap();
        let (to, mut server) = UnixStream::pair().unwrap();
        client.write_all(b"hello").unwrap();
        assert_eq!(splice(from.as_fd(), write.as_fd(), size).unwrap(), 5);
        assert_eq!(splice(read.as_fd(), to.as_fd(), size).unwrap(), 5);
        let mut received = [0u8; 5];
        server.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"hello");
        // An empty pipe does not block: the caller polls instead.
        let error = splice(read.as_fd(), to.as_fd(), size).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        // End of file on the source moves nothing.
        drop(client);
        assert_eq!(splice(from.as_fd(), write.as_fd(), size).unwrap(), 0);
    }
}
