//! PID 1 of a CCC enclave: mounts the basic file systems, brings up `lo`, sends the boot
//! heartbeat to the parent, switches into the application's root, runs the application, reaps
//! every child, reports how the application ended and stops the enclave.
//!
//! The image layout is nitro-cli's: the first ramdisk holds this init (and `dev/`), the second
//! `/cmd`, `/env` and `/rootfs`. Kernel command-line switches (see `cmdline`):
//! `ccc.parent_cid=<CID>` (default 3) and `ccc.emulation=1` (a failed heartbeat is then
//! reported loudly instead of stopping the enclave). PID 1 must never return: the kernel
//! panics when it exits, so every path ends in `reboot`.
// Bytes from peers (the enclave, the parent, KMS clients, the kernel command line) are read
// with get()/split_first()/cursors: indexing that could panic is an error outside tests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod cmdline;
mod heartbeat;
mod launch;

use std::fmt::Display;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Duration;

use ccc_sys::libc;
use ccc_sys::mount::{MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REC};
use ccc_sys::process::{self, Forked, Pid};
use ccc_sys::{interface, power, socket, vsock};
use cmdline::BootOptions;
use launch::{Ending, Launch};

/// How long the heartbeat's connect may take: the kernel's own default for vsock
/// (`VSOCK_DEFAULT_CONNECT_TIMEOUT`, 2 s), what AWS's init gets with a plain `connect`.
const HEARTBEAT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the heartbeat waits for the parent's echo once connected. nitro-cli answers at
/// once; the bound only keeps a silent listener from stalling the boot forever.
const HEARTBEAT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes one line on the console. A console write error is ignored: PID 1 has nowhere else
/// to report it, and `eprintln!` would panic (which kills PID 1 and so the kernel).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), "ccc-init: {}", format_args!($($arg)*));
    }};
}

fn main() {
    if std::process::id() != 1 {
        say!(
            "must run as PID 1 inside an enclave (it mounts file systems and reboots the \
             machine); refusing to run as PID {}",
            std::process::id()
        );
        std::process::exit(2);
    }
    let ending = boot();
    say!("{ending}");
    stop_enclave()
}

/// Everything from the first mount to the application's end; errors are fatal.
fn boot() -> Ending {
    or_die("block signals", process::block_all_signals());
    // The kernel started us with the built-in initramfs's /dev/console; mount devtmpfs over
    // /dev and reopen it so the console stays valid whatever the ramdisks contain.
    or_die(
        "mount /dev",
        mount_dir("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, Some("mode=0755")),
    );
    or_die(
        "reopen stdio on /dev/console",
        process::reopen_stdio(Path::new("/dev/console")),
    );
    or_die(
        "mount /proc",
        mount_dir("proc", "/proc", "proc", NO_SUID_DEV_EXEC, None),
    );
    say!("started at {} s after boot", uptime());

    let options = read_options();
    say!(
        "parent CID {}, heartbeat port {}",
        options.parent_cid,
        heartbeat::PORT
    );
    if options.emulation {
        say!(
            "!!! EMULATION MODE (ccc.emulation=1): a failed heartbeat will NOT stop the enclave !!!"
        );
    }

    or_die(
        "bring up the loopback interface lo",
        interface::bring_up("lo"),
    );
    let launch = read_launch();
    send_heartbeat(options);

    switch_root();
    mount_app_filesystems();
    let app = start(&launch);
    reap_until(app)
}

/// Mount flags for pseudo file systems nothing is executed from.
const NO_SUID_DEV_EXEC: ccc_sys::mount::Flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;

/// Creates `target` if missing, then mounts; `EBUSY` (already mounted, e.g. devtmpfs mounted
/// by the kernel) counts as done.
fn mount_dir(
    source: &str,
    target: &str,
    fstype: &str,
    flags: ccc_sys::mount::Flags,
    data: Option<&str>,
) -> io::Result<()> {
    let target = Path::new(target);
    match std::fs::DirBuilder::new().mode(0o755).create(target) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    match ccc_sys::mount::mount(source, target, Some(fstype), flags, data) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other,
    }
}

fn read_options() -> BootOptions {
    let raw = or_die("read /proc/cmdline", std::fs::read("/proc/cmdline"));
    or_die("parse the kernel command line", cmdline::parse(&raw))
}

fn read_launch() -> Launch {
    let read = |path: &str| {
        std::fs::read(path).unwrap_or_else(|e| {
            die(format_args!(
                "cannot read {path}: {e}. The customer ramdisk must hold /cmd (argv, one per \
                 line), /env (KEY=VALUE per line) and /rootfs, as nitro-cli lays it out"
            ))
        })
    };
    let (cmd, env) = (read("/cmd"), read("/env"));
    or_die("read the launch files", Launch::parse(&cmd, &env))
}

fn send_heartbeat(options: BootOptions) {
    let result = connect_heartbeat(options.parent_cid)
        .map_err(|source| heartbeat::HeartbeatError::Connect {
            cid: options.parent_cid,
            source,
        })
        .and_then(|socket| heartbeat::exchange(&mut std::fs::File::from(socket)));
    match result {
        Ok(()) => say!("heartbeat to the parent ok"),
        Err(e) if options.emulation => {
            say!("!!! EMULATION: heartbeat failed: {e}");
            say!(
                "!!! EMULATION: continuing because ccc.emulation=1; on Nitro this stops the enclave"
            );
        }
        Err(e) => die(format_args!("heartbeat failed: {e}")),
    }
}

/// A vsock stream to the parent's heartbeat port whose reads and writes time out after
/// [`HEARTBEAT_IO_TIMEOUT`].
fn connect_heartbeat(cid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let stream = vsock::connect_stream(cid, heartbeat::PORT, HEARTBEAT_CONNECT_TIMEOUT)?;
    for direction in [socket::Direction::Read, socket::Direction::Write] {
        socket::set_timeout(stream.as_fd(), direction, Some(HEARTBEAT_IO_TIMEOUT))?;
    }
    Ok(stream)
}

/// Makes `/rootfs` the root: bind it on itself (so it is a mount point), move it over `/`,
/// chroot into it.
fn switch_root() {
    let root = Path::new("/rootfs");
    if !root.is_dir() {
        die(
            "the customer ramdisk has no /rootfs directory (nitro-cli's layout puts the app's files there)",
        );
    }
    or_die(
        "bind-mount /rootfs",
        ccc_sys::mount::mount("/rootfs", root, None, MS_BIND | MS_REC, None),
    );
    or_die("chdir /rootfs", std::env::set_current_dir(root));
    or_die(
        "move /rootfs onto /",
        ccc_sys::mount::mount(".", Path::new("/"), None, MS_MOVE, None),
    );
    or_die("chroot into the new root", std::os::unix::fs::chroot("."));
    or_die("chdir /", std::env::set_current_dir("/"));
}

/// The file systems an application expects, mounted inside its root (missing mount points are
/// created; the root is an in-memory file system).
fn mount_app_filesystems() {
    const MODE_0755: Option<&str> = Some("mode=0755");
    const MODE_1777: Option<&str> = Some("mode=1777");
    let nosuid_nodev = MS_NOSUID | MS_NODEV;
    let table: [(&str, &str, &str, ccc_sys::mount::Flags, Option<&str>); 7] = [
        ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, MODE_0755),
        ("proc", "/proc", "proc", NO_SUID_DEV_EXEC, None),
        ("sysfs", "/sys", "sysfs", NO_SUID_DEV_EXEC, None),
        ("tmpfs", "/tmp", "tmpfs", nosuid_nodev, MODE_1777),
        ("tmpfs", "/run", "tmpfs", nosuid_nodev, MODE_0755),
        ("tmpfs", "/dev/shm", "tmpfs", nosuid_nodev, MODE_1777),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            Some("mode=0620,ptmxmode=0666"),
        ),
    ];
    for (source, target, fstype, flags, data) in table {
        or_die(
            format_args!("mount {target} in the app's root"),
            mount_dir(source, target, fstype, flags, data),
        );
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        match std::os::unix::fs::symlink(target, link) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                die(format_args!("cannot link {link} -> {target}: {e}"));
            }
            _ => {}
        }
    }
}

/// Forks the application: a new session, every signal unblocked, `execve` with `/env`.
fn start(launch: &Launch) -> Pid {
    // Everything the child needs is prepared before the fork.
    let candidates = launch.candidates();
    let program = launch
        .argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    say!("starting {program} at {} s after boot", uptime());
    match or_die("fork", process::fork()) {
        Forked::Parent(pid) => pid,
        Forked::Child => {
            let code = exec_child(launch, &candidates);
            process::exit_now(code)
        }
    }
}

/// In the forked child: returns only if no candidate could be executed (exit code 127, as a
/// shell uses for "command not found", or 126 for "found but not executable").
fn exec_child(launch: &Launch, candidates: &[std::path::PathBuf]) -> i32 {
    if let Err(e) = process::default_sigpipe()
        .and_then(|()| process::unblock_all_signals())
        .and_then(|()| process::setsid())
    {
        say!("cannot prepare the app's process: {e}");
        return 126;
    }
    let mut denied = None;
    for path in candidates {
        let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        let error = process::execve(&c_path, &launch.argv, &launch.envp);
        match error.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => {}
            Some(libc::EACCES) => denied = Some((path.clone(), error)),
            _ => {
                say!("cannot execute {}: {error}", path.display());
                return 126;
            }
        }
    }
    match denied {
        Some((path, error)) => {
            say!("cannot execute {}: {error}", path.display());
            126
        }
        None => {
            let tried: Vec<_> = candidates.iter().map(|p| p.display().to_string()).collect();
            say!("app not found; tried {}", tried.join(", "));
            127
        }
    }
}

/// Reaps every child (PID 1 inherits orphans) until the application itself ends.
fn reap_until(app: Pid) -> Ending {
    loop {
        match process::wait_any() {
            Ok((pid, status)) if pid == app => return Ending::from_wait_status(status),
            Ok(_) => {}
            Err(e) => die(format_args!("waiting for the app (PID {app}) failed: {e}")),
        }
    }
}

/// Seconds since boot, from /proc/uptime (or `?` when unreadable).
fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn or_die<T, E: Display>(what: impl Display, result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| die(format_args!("{what}: {e}")))
}

/// Reports a fatal error and stops the enclave.
fn die(message: impl Display) -> ! {
    say!("FATAL: {message}");
    stop_enclave()
}

/// Flushes file systems and ends the enclave; never returns.
fn stop_enclave() -> ! {
    say!("stopping the enclave");
    power::sync();
    let error = power::reboot();
    say!("reboot failed: {error}; halting here");
    loop {
        std::thread::park();
    }
}
