//! Processes: the signal mask and `SIGPIPE`, the standard streams, fork/exec/wait, sessions,
//! and the open-files limit. What PID 1 and the parent need that std does not offer.

use crate::check;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A process id.
pub type Pid = libc::pid_t;

fn set_signal_mask(how: libc::c_int) -> io::Result<()> {
    // SAFETY: `sigset_t` is plain data (an array of words): all zero bytes is a valid value,
    // and `sigfillset` below initialises it anyway.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live, writable `sigset_t`.
    check(unsafe { libc::sigfillset(&raw mut set) })?;
    // SAFETY: `set` is a live, initialised `sigset_t` that `sigprocmask` only reads; the old
    // set pointer may be null.
    check(unsafe { libc::sigprocmask(how, &raw const set, std::ptr::null_mut()) })?;
    Ok(())
}

/// Blocks every signal in this thread (PID 1 handles none; children are reaped with
/// [`wait_any`]).
///
/// # Errors
/// `sigprocmask`'s `errno`.
pub fn block_all_signals() -> io::Result<()> {
    set_signal_mask(libc::SIG_BLOCK)
}

/// Unblocks every signal (in the application's process, before `execve`).
///
/// # Errors
/// `sigprocmask`'s `errno`.
pub fn unblock_all_signals() -> io::Result<()> {
    set_signal_mask(libc::SIG_UNBLOCK)
}

/// Restores the default action of `SIGPIPE`. Rust's runtime sets it to "ignore" in every Rust
/// program, and an ignored disposition survives `execve`: without this an application started
/// by a Rust program would start with SIGPIPE ignored (std's `Command` resets it the same way).
///
/// # Errors
/// `signal`'s `errno`.
pub fn default_sigpipe() -> io::Result<()> {
    // SAFETY: installs the default disposition (no handler code runs); SIGPIPE is a valid
    // signal number.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Points stdin, stdout and stderr at `console` (opened read-write).
///
/// # Errors
/// Opening the console or `dup2` failed.
pub fn reopen_stdio(console: &Path) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(console)?;
    for stream in 0..=2 {
        // SAFETY: `file` is an open descriptor; `dup2` atomically replaces `stream`, which is
        // this process's standard stream (std reaches it by number and never owns it as an
        // `OwnedFd`), so no owner sees its descriptor change under it.
        check(unsafe { libc::dup2(file.as_raw_fd(), stream) })?;
    }
    Ok(())
}

/// Which side of a [`fork`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent; the child's PID.
    Parent(Pid),
    /// In the child.
    Child,
}

/// How many threads this process has (the entries of `/proc/self/task`).
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// `fork(2)`, allowed only in a single-threaded process (checked through `/proc/self/task`):
/// there the child may go on running ordinary Rust code (allocation included) until it calls
/// [`execve`] or [`exit_now`]. In a process with other threads, a lock one of them held (the
/// allocator's, stdout's) would stay locked forever in the child, so that is refused.
///
/// # Errors
/// `Unsupported` when the process has more than one thread; `/proc` unreadable (it must be
/// mounted); `fork`'s `errno`.
pub fn fork() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("fork from a process with {threads} threads (only a single-threaded one may)"),
        ));
    }
    // SAFETY: the process is single-threaded (checked just above; with one thread nothing can
    // start another in between), so every lock is free in the child and it may run ordinary
    // code until `execve` or `_exit`.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

/// `setsid(2)`: the calling process leads a new session (the application, detached from the
/// init's).
///
/// # Errors
/// `setsid`'s `errno` (`EPERM` for a process group leader).
pub fn setsid() -> io::Result<()> {
    // SAFETY: `setsid` takes no arguments.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// `execve(2)`: replaces this process with `path`, run with `argv` and `envp`. Returns only on
/// failure, with the reason.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (argv, envp) = (pointers(argv), pointers(envp));
    // SAFETY: `path` is NUL-terminated; both pointer arrays are NULL-terminated and point at
    // C strings borrowed for the call (the kernel copies them before replacing this process).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Waits for any child; returns its PID and raw wait status. Retries on `EINTR`.
///
/// # Errors
/// `ECHILD` when no child is left.
pub fn wait_any() -> io::Result<(Pid, libc::c_int)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live, writable `c_int`; `waitpid` writes it.
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

/// Ends this process at once, without running destructors or flushing buffers (for a forked
/// child whose `execve` failed: the buffers are the parent's copies).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes an integer and never returns; skipping destructors is sound.
    unsafe { libc::_exit(code) }
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
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) })?;
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a live `rlimit` the kernel only reads.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) })?;
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_is_refused_in_a_multithreaded_process() {
        // The test harness runs tests on threads of their own: this process has several.
        let worker = std::thread::spawn(|| std::thread::park_timeout(std::time::Duration::MAX));
        let error = fork().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}");
        assert!(thread_count().unwrap() > 1);
        worker.thread().unpark();
        worker.join().unwrap();
    }

    #[test]
    fn execve_of_a_missing_program_returns_the_reason() {
        let error = execve(c"/nonexistent/ccc-program", &[c"x".to_owned()], &[]);
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn wait_without_children_is_echild() {
        // Cargo's test harness starts no child processes in this test binary.
        let error = wait_any().unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ECHILD));
    }

    #[test]
    fn the_open_files_limit_reaches_the_hard_limit() {
        let (before, after) = raise_open_files_limit().unwrap();
        assert!(after >= before);
        let (again_before, again_after) = raise_open_files_limit().unwrap();
        assert_eq!((again_before, again_after), (after, after));
    }
}
