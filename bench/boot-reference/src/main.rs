//! `ccc-boot-reference`: the reference image's PID 1 for `cargo xtask bench boot`.
//!
//! The "kernel + a one-line init that calls NSM once": the kernel runs this binary as
//! `/init` straight from the only ramdisk (no `ccc-init`, no heartbeat, no second ramdisk, no
//! root switch). It mounts `/dev` (for `/dev/nsm`) and `/proc` (for `/proc/uptime`, the clock
//! the template reads too), asks the NSM for one attestation document with the SDK's client
//! (the request the template sends: no user data, nonce or public key), prints the guest uptime
//! at which the document arrived, and ends the enclave.
//!
//! Console lines (parsed by the benchmark; see [`report`]):
//! `ccc-boot-reference: started at uptime 0.91 s` and
//! `ccc-boot-reference: attestation document 1175 bytes at uptime 0.93 s`.

mod report;

use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Writes one console line. Errors are ignored: PID 1 has nowhere else to report them, and a
/// panic would kill the kernel.
fn say(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout(), "{}: {text}", report::PREFIX);
}

fn main() {
    if std::process::id() != 1 {
        say(format_args!(
            "must run as PID 1 inside an enclave (it mounts file systems and reboots the \
             machine); refusing to run as PID {}",
            std::process::id()
        ));
        std::process::exit(2);
    }
    match attest_once() {
        Ok(()) => {}
        Err(message) => say(format_args!("FAILED: {message}")),
    }
    let error = ccc_sys::power::reboot();
    say(format_args!("reboot failed: {error}; halting here"));
    loop {
        std::thread::park();
    }
}

/// Mounts, one attestation, the report line.
fn attest_once() -> Result<(), String> {
    mount_dir("devtmpfs", "/dev", "devtmpfs")?;
    mount_dir("proc", "/proc", "proc")?;
    say(format_args!("started at {}", report::uptime_text()));
    let nsm = ccc_sdk::nsm::Nsm::open().map_err(|e| e.to_string())?;
    let document = nsm
        .attestation(None, None, None)
        .map_err(|e| e.to_string())?;
    // Read the clock right after the document arrives, before anything else.
    let at = report::uptime_text();
    say(format_args!(
        "attestation document {} bytes at {at}",
        document.len()
    ));
    Ok(())
}

/// Creates `target` if missing and mounts `fstype` there; `EBUSY` (already mounted) is fine.
fn mount_dir(source: &str, target: &str, fstype: &str) -> Result<(), String> {
    let path = Path::new(target);
    match std::fs::DirBuilder::new().mode(0o755).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(format!("cannot create {target}: {e}"));
        }
        _ => {}
    }
    match ccc_sys::mount::mount(source, path, Some(fstype), ccc_sys::mount::MS_NOSUID, None) {
        Err(e) if e.raw_os_error() != Some(ccc_sys::libc::EBUSY) => {
            Err(format!("cannot mount {fstype} on {target}: {e}"))
        }
        _ => Ok(()),
    }
}
