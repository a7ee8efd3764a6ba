//! How an enclave stops: `sync(2)`, then `reboot(2)`.

use std::io;

/// `sync(2)`: flushes file systems before the enclave stops.
pub fn sync() {
    // SAFETY: `sync` takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// `reboot(RB_AUTOBOOT)`, which ends the enclave: AWS's init does the same on Nitro, and with
/// QEMU's `-no-reboot` (plus `reboot=t` on the command line of a microvm machine, which has no
/// keyboard controller to reset through) QEMU exits. Without ACPI there is no power-off
/// method, so `RB_POWER_OFF` would only halt the CPUs and leave the machine running.
///
/// Returns only on failure (`EPERM` without `CAP_SYS_BOOT`), with the reason.
pub fn reboot() -> io::Error {
    // SAFETY: `reboot` takes an integer command and no pointers; with CAP_SYS_BOOT it does
    // not return, without it it fails and changes nothing.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    io::Error::last_os_error()
}
