//! The two system calls std does not wrap: `mount` and `reboot`. The only `unsafe` in the
//! crate; each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `mount(source, target, fstype, MS_NOSUID, NULL)`.
///
/// # Errors
/// The kernel's `errno` (`EBUSY` when something is mounted there already).
pub(crate) fn mount(source: &str, target: &Path, fstype: &str) -> io::Result<()> {
    let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a mount argument");
    let source = CString::new(source).map_err(nul)?;
    let target = CString::new(target.as_os_str().as_bytes()).map_err(nul)?;
    let fstype = CString::new(fstype).map_err(nul)?;
    // SAFETY: source, target and fstype are NUL-terminated strings that outlive the call; data
    // may be null (mount(2)).
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `reboot(RB_AUTOBOOT)`, which ends the enclave, as `ccc-init` does: with QEMU's `-no-reboot`
/// and `reboot=t` QEMU exits (the microvm machine has no ACPI, so `RB_POWER_OFF` would only
/// halt the CPUs). Returns only on failure.
pub(crate) fn reboot() -> io::Error {
    // SAFETY: reboot takes an integer command and no pointers; as PID 1 (CAP_SYS_BOOT) it does
    // not return.
    unsafe {
        libc::reboot(libc::RB_AUTOBOOT);
    }
    io::Error::last_os_error()
}
