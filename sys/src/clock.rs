//! The wall clock: `clock_settime(CLOCK_REALTIME)`, which an enclave application started with a
//! wrong clock uses to take its NSM document's time.

use std::io;
use std::time::Duration;

/// Sets the system's wall clock (`CLOCK_REALTIME`) to `since_epoch` after 1970-01-01T00:00:00Z.
///
/// # Errors
/// `EPERM` without `CAP_SYS_TIME` (the enclave's applications run as root and have it);
/// `EINVAL` for a time the kernel refuses; `InvalidInput` for one beyond `time_t`.
pub fn set_realtime(since_epoch: Duration) -> io::Result<()> {
    let tv_sec = libc::time_t::try_from(since_epoch.as_secs()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the time does not fit the kernel's time_t",
        )
    })?;
    let spec = libc::timespec {
        tv_sec,
        tv_nsec: libc::c_long::from(since_epoch.subsec_nanos()),
    };
    // SAFETY: `spec` is a valid, initialised timespec that outlives the call, which only reads
    // it; CLOCK_REALTIME is a valid clock id.
    let rc = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &raw const spec) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without CAP_SYS_TIME the call fails with EPERM and changes nothing; as root (CI) a
    /// time beyond time_t is refused before the kernel is asked. Setting the host's real
    /// clock in a test would disturb every other process, so that path is tested in the QEMU
    /// guest (`cargo xtask emulate`, whose guest clock starts wrong).
    #[test]
    fn refuses_what_it_cannot_set() {
        let err = set_realtime(Duration::from_secs(u64::MAX)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
