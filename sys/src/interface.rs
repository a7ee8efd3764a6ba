//! Network interfaces: bringing one up (`SIOCGIFFLAGS`, set `IFF_UP`, `SIOCSIFFLAGS`), as the
//! init does for the enclave's loopback `lo`.

use crate::check;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An `ifreq` naming `name` (at most `IFNAMSIZ - 1` = 15 bytes), every other byte zero.
fn request(name: &str) -> io::Result<libc::ifreq> {
    let name = name.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an interface name is 1 to 15 bytes without NUL",
        ));
    }
    // SAFETY: `ifreq` is plain data (a name array and a union of integers, plain structs and
    // a pointer the kernel does not follow for these requests): all zero bytes is a valid
    // value, and it leaves no byte of the union uninitialised.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    Ok(request)
}

/// Sets `IFF_UP` on the interface `name` (the enclave's `lo`).
///
/// # Errors
/// `InvalidInput` for a bad name; the socket or ioctl failure (`ENODEV`: no such interface;
/// `EAFNOSUPPORT`: a kernel without `CONFIG_INET`; `EPERM` without `CAP_NET_ADMIN`).
pub fn bring_up(name: &str) -> io::Result<()> {
    let mut request = request(name)?;
    // SAFETY: `socket` takes no pointers.
    let raw =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `socket` has just returned `raw`: it is open and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags member of the `ifreq` we own,
    // which outlives the call.
    check(unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCGIFFLAGS as _,
            &raw mut request,
        )
    })?;
    // SAFETY: after SIOCGIFFLAGS the union holds the flags member (a plain integer).
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the `ifreq` we own, which outlives the call.
    check(unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCSIFFLAGS as _,
            &raw const request,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_call() {
        for name in ["", "a-name-of-16-byt", "lo\0"] {
            let error = bring_up(name).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
    }

    #[test]
    fn an_interface_that_does_not_exist_is_reported_by_the_kernel() {
        let error = bring_up("ccc-none0").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENODEV), "{error}");
    }
}
