//! The real NSM: `/dev/nsm` opened as an owned file and driven through ccc-sys's ioctl.

use super::codec::{REQUEST_MAX, RESPONSE_MAX};
use super::{NsmError, Transport};
use alloc::vec;
use alloc::vec::Vec;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

/// Where the Linux NSM driver puts its device node.
pub const DEVICE_PATH: &str = "/dev/nsm";

/// The `/dev/nsm` character device. The descriptor is owned and closed on drop.
#[derive(Debug)]
pub struct Device {
    file: File,
}

impl Device {
    /// Opens `/dev/nsm` read-write.
    ///
    /// # Errors
    /// [`NsmError::DeviceMissing`] if it does not exist; [`NsmError::Io`] otherwise.
    pub fn open() -> Result<Self, NsmError> {
        Self::open_path(Path::new(DEVICE_PATH))
    }

    /// Opens an NSM device node at another path (for containers that mount it elsewhere).
    ///
    /// # Errors
    /// As [`Device::open`].
    pub fn open_path(path: &Path) -> Result<Self, NsmError> {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => Ok(Self { file }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(NsmError::DeviceMissing),
            Err(source) => Err(NsmError::Io {
                operation: "open /dev/nsm",
                source,
            }),
        }
    }
}

impl Transport for Device {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, NsmError> {
        if request.len() > REQUEST_MAX {
            return Err(NsmError::RequestTooLarge {
                size: request.len(),
                limit: REQUEST_MAX,
            });
        }
        let mut response = vec![0u8; RESPONSE_MAX];
        match ccc_sys::nsm::raw(self.file.as_fd(), request, &mut response) {
            Ok(len) => {
                response.truncate(len);
                Ok(response)
            }
            Err(error) if error.raw_os_error() == Some(ccc_sys::libc::EMSGSIZE) => {
                Err(NsmError::RequestTooLarge {
                    size: request.len(),
                    limit: REQUEST_MAX,
                })
            }
            Err(source) => Err(NsmError::Io {
                operation: "ioctl NSM_IOCTL_RAW on /dev/nsm",
                source,
            }),
        }
    }

    fn name(&self) -> &'static str {
        DEVICE_PATH
    }
}

#[cfg(test)]
#[expect(clippy::panic, reason = "test code: a panic is the test failure")]
mod tests {
    use super::*;
    use crate::nsm::Nsm;
    use alloc::string::ToString;

    #[test]
    fn a_missing_device_says_how_to_select_the_simulator() {
        let error = Device::open_path(Path::new("/nonexistent/ccc/nsm")).unwrap_err();
        assert!(matches!(error, NsmError::DeviceMissing));
        let message = error.to_string();
        assert!(message.starts_with("/dev/nsm not found: not running inside a Nitro Enclave"));
        assert!(message.contains("CONFIG_NSM"));
        assert!(message.contains("simulator"));
    }

    #[test]
    fn open_uses_the_real_device_or_fails_clearly() {
        // On a development machine or CI there is no /dev/nsm and `open` must say so; inside
        // an enclave it must open the device (and never anything else).
        match (Path::new(DEVICE_PATH).exists(), Nsm::open()) {
            (false, Err(NsmError::DeviceMissing)) => {}
            (true, Ok(nsm)) => assert_eq!(nsm.backend_name(), "/dev/nsm"),
            (exists, result) => panic!("/dev/nsm exists: {exists}, open gave {result:?}"),
        }
    }

    #[test]
    fn a_device_that_is_not_the_nsm_gives_an_io_error() {
        let device = Device::open_path(Path::new("/dev/null")).unwrap();
        let error = device.exchange(b"\x6bDescribeNSM").unwrap_err();
        match &error {
            NsmError::Io { source, .. } => {
                assert_eq!(source.raw_os_error(), Some(ccc_sys::libc::ENOTTY))
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert!(
            error
                .to_string()
                .starts_with("ioctl NSM_IOCTL_RAW on /dev/nsm failed")
        );
    }

    #[test]
    fn the_codec_limits_are_the_drivers() {
        assert_eq!(REQUEST_MAX, ccc_sys::nsm::REQUEST_MAX);
        assert_eq!(RESPONSE_MAX, ccc_sys::nsm::RESPONSE_MAX);
    }

    #[test]
    fn oversized_requests_are_refused_before_the_ioctl() {
        let device = Device::open_path(Path::new("/dev/null")).unwrap();
        let error = device.exchange(&[0u8; REQUEST_MAX + 1]).unwrap_err();
        assert!(matches!(
            error,
            NsmError::RequestTooLarge { size, limit: REQUEST_MAX } if size == REQUEST_MAX + 1
        ));
    }
}
