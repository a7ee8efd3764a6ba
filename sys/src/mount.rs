//! `mount(2)`: the init's (and the boot benchmark's) file systems.

use crate::check;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use libc::{MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REC};

/// Mount flags (`MS_*`).
pub type Flags = libc::c_ulong;

fn c_string(text: &[u8]) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a mount argument"))
}

/// `mount(source, target, fstype, flags, data)`.
///
/// # Errors
/// `InvalidInput` when an argument holds a NUL byte; otherwise the kernel's `errno` (`EBUSY`
/// when something is mounted there already, `ENODEV` for a file system this kernel lacks).
pub fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: Flags,
    data: Option<&str>,
) -> io::Result<()> {
    let source = c_string(source.as_bytes())?;
    let target = c_string(target.as_os_str().as_bytes())?;
    let fstype = fstype.map(|s| c_string(s.as_bytes())).transpose()?;
    let data = data.map(|s| c_string(s.as_bytes())).transpose()?;
    // SAFETY: every pointer is either null (allowed by mount(2) for fstype and data) or points
    // at a NUL-terminated string that outlives the call; the kernel only reads them.
    let status = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast::<libc::c_void>()),
        )
    };
    check(status)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_byte_is_refused_before_the_call() {
        let error = mount("a\0b", Path::new("/mnt"), None, MS_BIND, None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_kernel_answers_a_bad_mount() {
        // Unprivileged: EPERM; as root (CI): there is no such source file system, ENODEV or
        // ENOENT. Either way an error from the kernel, and nothing is mounted.
        let target = std::env::temp_dir();
        let error = mount("none", &target, Some("ccc-no-such-fs"), MS_NOSUID, None).unwrap_err();
        assert!(
            matches!(
                error.raw_os_error(),
                Some(libc::EPERM | libc::ENODEV | libc::ENOENT)
            ),
            "{error}"
        );
    }
}
