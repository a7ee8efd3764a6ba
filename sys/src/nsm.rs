//! The `/dev/nsm` ioctl: the NSM's only system call.
//!
//! Linux `include/uapi/linux/nsm.h` (driver `drivers/misc/nsm.c`, Linux 6.8+; the same ABI as
//! AWS's out-of-tree driver):
//!
//! ```c
//! #define NSM_MAGIC 0x0A
//! struct nsm_iovec { __u64 addr; __u64 len; };
//! struct nsm_raw { struct nsm_iovec request; struct nsm_iovec response; };
//! #define NSM_IOCTL_RAW _IOWR(NSM_MAGIC, 0x0, struct nsm_raw)
//! ```
//!
//! The driver copies the request in (failing with `EMSGSIZE` over [`REQUEST_MAX`] bytes), waits
//! for the device, copies `min(response.len, reply length)` bytes back and writes that length
//! into `response.len`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `NSM_REQUEST_MAX_SIZE` of the driver (`drivers/misc/nsm.c`): the largest request, 4 KiB.
pub const REQUEST_MAX: usize = 0x1000;

/// `NSM_RESPONSE_MAX_SIZE` of the driver (`drivers/misc/nsm.c`): the largest response, 12 KiB.
/// A response buffer of this size never truncates an answer.
pub const RESPONSE_MAX: usize = 0x3000;

/// `NSM_MAGIC`, the ioctl type byte.
const NSM_MAGIC: u32 = 0x0A;

/// `struct nsm_iovec`.
#[repr(C)]
struct NsmIovec {
    addr: u64,
    len: u64,
}

/// `struct nsm_raw`.
#[repr(C)]
struct NsmRaw {
    request: NsmIovec,
    response: NsmIovec,
}

/// `_IOC_WRITE | _IOC_READ`, the direction of `_IOWR` (`include/uapi/asm-generic/ioctl.h`).
const IOC_READ_WRITE: u32 = 1 | 2;

/// Linux's generic `_IOC` encoding (x86-64 and aarch64, `include/uapi/asm-generic/ioctl.h`):
/// direction in bits 30..32, size in bits 16..30, type in bits 8..16, number in bits 0..8.
const fn ioc(direction: u32, kind: u32, number: u32, size: usize) -> u32 {
    // The size field is 14 bits wide; every struct passed here is far smaller.
    (direction << 30) | (((size & 0x3fff) as u32) << 16) | (kind << 8) | number
}

/// `NSM_IOCTL_RAW` = `_IOWR(NSM_MAGIC, 0, struct nsm_raw)` = 0xC0200A00.
pub const NSM_IOCTL_RAW: u32 = ioc(IOC_READ_WRITE, NSM_MAGIC, 0, size_of::<NsmRaw>());

/// One `NSM_IOCTL_RAW` call on `device` (an open `/dev/nsm`): sends `request`, fills
/// `response`, returns the response length (at most `response.len()`).
///
/// # Errors
/// The ioctl's `errno`: `EMSGSIZE` for a request over [`REQUEST_MAX`], `ENOTTY` when `device`
/// is not the NSM, `EIO` when the device failed.
pub fn raw(device: BorrowedFd<'_>, request: &[u8], response: &mut [u8]) -> io::Result<usize> {
    let mut raw = NsmRaw {
        request: NsmIovec {
            addr: request.as_ptr() as u64,
            len: request.len() as u64,
        },
        response: NsmIovec {
            addr: response.as_mut_ptr() as u64,
            len: response.len() as u64,
        },
    };
    // SAFETY: `device` is a live descriptor borrowed for this call. `raw` is a properly laid
    // out `struct nsm_raw` (repr(C), two pairs of u64) that outlives the call; its request
    // iovec points at `request.len()` readable bytes and its response iovec at
    // `response.len()` writable bytes, both borrowed for the duration of the call, and the
    // driver writes no more than `response.len` bytes (it copies `min(response.len, reply
    // length)`). The request number encodes the exact size of `NsmRaw`, which the driver
    // checks.
    let status = unsafe { libc::ioctl(device.as_raw_fd(), NSM_IOCTL_RAW as _, &raw mut raw) };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    // The driver never reports more than the buffer it was given; clamp anyway.
    Ok(usize::try_from(raw.response.len)
        .unwrap_or(usize::MAX)
        .min(response.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_number_matches_the_linux_uapi() {
        // _IOWR(0x0A, 0, struct nsm_raw): dir 3 << 30 | size 32 << 16 | 0x0A << 8 | 0.
        assert_eq!(size_of::<NsmRaw>(), 32);
        assert_eq!(NSM_IOCTL_RAW, 0xC020_0A00);
        // The encoding itself, against another _IOWR from the uapi headers:
        // VHOST_SET_VRING_ADDR is _IOW(0xAF, 0x11, struct vhost_vring_addr) = 0x4028AF11.
        assert_eq!(ioc(1, 0xAF, 0x11, 40), 0x4028_AF11);
    }

    #[test]
    fn ioctl_on_a_device_that_is_not_the_nsm_fails_cleanly() {
        // /dev/null does not implement NSM_IOCTL_RAW: the kernel answers ENOTTY and nothing
        // is written into the response buffer.
        let file = std::fs::File::open("/dev/null").unwrap();
        let mut response = [0xAAu8; 16];
        let error = raw(
            std::os::fd::AsFd::as_fd(&file),
            b"\x6bDescribeNSM",
            &mut response,
        )
        .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOTTY));
        assert_eq!(response, [0xAAu8; 16]);
    }
}
