//! Every system call the init makes that Rust's std does not wrap: mount, signals, stdio,
//! the loopback interface, vsock, fork/exec/wait, sync and reboot. The only `unsafe` in the
//! crate; each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

fn c_path(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// `mount(2)`.
///
/// # Errors
/// The kernel's `errno` (e.g. `EBUSY` when something is already mounted there).
pub(crate) fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = c_string(source)?;
    let target = c_path(target)?;
    let fstype = fstype.map(c_string).transpose()?;
    let data = data.map(c_string).transpose()?;
    // SAFETY: every pointer is either null (allowed by mount(2) for fstype and data) or points
    // at a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast::<libc::c_void>()),
        )
    })?;
    Ok(())
}

fn set_signal_mask(how: libc::c_int) -> io::Result<()> {
    // SAFETY: sigset_t is plain data; sigfillset initialises it before sigprocmask reads it,
    // and sigprocmask only reads `set` and may write nothing (old set pointer is null).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        check(libc::sigfillset(&raw mut set))?;
        check(libc::sigprocmask(how, &raw const set, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Blocks every signal in this process (PID 1 handles none; children get `waitpid`).
///
/// # Errors
/// `sigprocmask`'s `errno`.
pub(crate) fn block_all_signals() -> io::Result<()> {
    set_signal_mask(libc::SIG_BLOCK)
}

/// Unblocks every signal (in the application's process, before `execve`).
///
/// # Errors
/// `sigprocmask`'s `errno`.
pub(crate) fn unblock_all_signals() -> io::Result<()> {
    set_signal_mask(libc::SIG_UNBLOCK)
}

/// Restores the default action of `SIGPIPE`. Rust's runtime sets it to "ignore" in every
/// Rust program, and an ignored disposition survives `execve`: without this the application
/// would start with SIGPIPE ignored (std's `Command` resets it the same way).
///
/// # Errors
/// `signal`'s `errno`.
pub(crate) fn default_sigpipe() -> io::Result<()> {
    // SAFETY: installs the default disposition (no handler code runs); SIGPIPE is a valid
    // signal number.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Points stdin, stdout and stderr at `console`.
///
/// # Errors
/// Opening the console or `dup2` failed.
pub(crate) fn reopen_stdio(console: &Path) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(console)?;
    for target in 0..=2 {
        // SAFETY: `file` is an open descriptor; dup2 atomically replaces `target`, which this
        // process owns as its standard stream (nothing else holds it as an OwnedFd).
        check(unsafe { libc::dup2(file.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// Brings the loopback interface `lo` up (`SIOCGIFFLAGS`, set `IFF_UP`, `SIOCSIFFLAGS`).
///
/// # Errors
/// The socket or an ioctl failed (e.g. a kernel without `CONFIG_INET`).
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let raw =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data (a name and a union of integers/plain structs): all zero is
    // a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of the ifreq we own.
    check(unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCGIFFLAGS as _,
            &raw mut request,
        )
    })?;
    // SAFETY: after SIOCGIFFLAGS the union holds the flags member.
    unsafe {
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    check(unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCSIFFLAGS as _,
            &raw const request,
        )
    })?;
    Ok(())
}

/// Connects an `AF_VSOCK` stream socket to (`cid`, `port`); reads and writes on it then time
/// out after `io_timeout`.
///
/// # Errors
/// The socket, connect or the timeouts failed (`ETIMEDOUT` when nothing answers: the vsock
/// connect timeout is 2 s by default).
pub(crate) fn vsock_connect(cid: u32, port: u32, io_timeout: Duration) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let raw =
        check(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let timeout = libc::timeval {
        tv_sec: io_timeout.as_secs().try_into().unwrap_or(i64::MAX),
        tv_usec: io_timeout.subsec_micros().into(),
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: the option value is a timeval we own, with its exact size.
        check(unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const timeout).cast::<libc::c_void>(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
    }
    // SAFETY: sockaddr_vm is plain data: all zero is valid (and svm_zero must be zero).
    let mut address: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    address.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    address.svm_cid = cid;
    address.svm_port = port;
    // SAFETY: the address is a sockaddr_vm we own, passed with its exact size.
    check(unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&raw const address).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    Ok(socket)
}

/// Which side of a `fork` this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// In the parent; the child's PID.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// `fork(2)`.
///
/// # Errors
/// `fork`'s `errno`.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: the init is single-threaded (it never spawns threads), so the child may go on
    // running ordinary Rust code, including allocation, until it calls execve or _exit.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

/// `setsid(2)`: the application leads its own session.
///
/// # Errors
/// `setsid`'s `errno`.
pub(crate) fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// `execve(2)`; returns only on failure, with the reason.
pub(crate) fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: `path` is NUL-terminated; both pointer arrays are NULL-terminated and point at
    // CStrings that outlive the call.
    unsafe {
        libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
    }
    io::Error::last_os_error()
}

/// Waits for any child; returns its PID and raw status. Retries on `EINTR`.
///
/// # Errors
/// `ECHILD` when no child is left.
pub(crate) fn wait_any() -> io::Result<(libc::pid_t, i32)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a c_int we own; waitpid writes it.
        let pid = unsafe { libc::waitpid(-1, &raw mut status, 0) };
        if pid != -1 {
            return Ok((pid, status));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Ends this process at once, without running destructors or flushing (for a forked child
/// whose `execve` failed).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns.
    unsafe { libc::_exit(code) }
}

/// `sync(2)`: flush file systems before the enclave stops.
pub(crate) fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// `reboot(RB_AUTOBOOT)`, which ends the enclave: AWS's init does the same on Nitro, and with
/// QEMU's `-no-reboot` (plus `reboot=t` on the command line of a microvm machine, which has no
/// keyboard controller to reset through) QEMU exits. Without ACPI there is no power-off
/// method, so `RB_POWER_OFF` would only halt the CPUs and leave the machine running.
/// Returns only on failure.
pub(crate) fn reboot() -> io::Error {
    // SAFETY: reboot takes an integer command; as PID 1 (CAP_SYS_BOOT) it does not return.
    unsafe {
        libc::reboot(libc::RB_AUTOBOOT);
    }
    io::Error::last_os_error()
}
