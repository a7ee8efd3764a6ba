//! Unix stream listeners that are private from the first instant: the socket's mode is set
//! to `0600` (`fchmod` on the unbound socket) *before* `bind` creates its file, so no other
//! user can connect in the window between `bind` and a later `chmod` (Linux takes the new
//! file's mode from the socket's inode, less the umask: `net/unix/af_unix.c`,
//! `unix_bind_bsd`). std's `UnixListener::bind` binds at once with the umask's mode.

use crate::{check, socklen};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The mode of every socket file [`listen_private`] creates: read and write (connect) for the
/// owner only.
pub const PRIVATE_MODE: libc::mode_t = 0o600;

/// A `sockaddr_un` for `path` and its length (family, path bytes, terminating NUL).
fn address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    let mut address = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    if bytes.is_empty() || bytes.contains(&0) || bytes.len() >= address.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: a Unix socket path is 1 to {} bytes without NUL",
                path.display(),
                address.sun_path.len() - 1
            ),
        ));
    }
    for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = libc::c_char::from_ne_bytes([*byte]);
    }
    // `sun_family`, the path and its NUL (the rest of `sun_path` is zero already).
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((address, socklen(len)))
}

/// A listening Unix stream socket at `path` whose file has mode [`PRIVATE_MODE`] (less the
/// umask) from its creation: `socket`, `fchmod(0600)`, `bind`, `listen`. The descriptor is
/// close-on-exec and blocking.
///
/// # Errors
/// `InvalidInput` for a path that does not fit a `sockaddr_un`; `EADDRINUSE` when the path
/// exists; the failing call's error otherwise.
pub fn listen_private(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let (address, len) = address(path)?;
    // SAFETY: `socket` takes no pointers.
    let fd =
        check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `socket` has just returned `fd`: it is open and nothing else owns it, so
    // `OwnedFd` may close it on drop (also on the error paths below).
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: no pointers; `socket` is open for the call.
    check(unsafe { libc::fchmod(socket.as_raw_fd(), PRIVATE_MODE) })?;
    // SAFETY: `address` is a live `sockaddr_un` and `len` is at most its size (checked in
    // `address`); the kernel only reads it. `socket` is open for the call.
    check(unsafe { libc::bind(socket.as_raw_fd(), (&raw const address).cast(), len) })?;
    // SAFETY: no pointers; `socket` is open for the call.
    check(unsafe { libc::listen(socket.as_raw_fd(), backlog) })?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn the_socket_file_is_private_from_its_creation_and_accepts() {
        let dir = std::env::temp_dir().join(format!("ccc-sys-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("private.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::from(listen_private(&path, 8).unwrap());
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let mut client = UnixStream::connect(&path).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        // The path is taken now.
        let error = listen_private(&path, 8).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EADDRINUSE), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_that_do_not_fit_are_refused_before_any_call() {
        let long = "x".repeat(200);
        for path in ["", "a\0b", long.as_str()] {
            let error = listen_private(Path::new(path), 1).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{path:?}");
        }
    }
}
