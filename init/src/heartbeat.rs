//! The boot heartbeat: the enclave tells its parent it is up.
//!
//! nitro-cli (`eif_loader`) listens on vsock port 9000 of the parent before it starts the
//! enclave, waits for one connection, reads one byte that must be 0xB7 and echoes it back;
//! without it `nitro-cli run-enclave` fails with E36 (EnclaveBootFailure). AWS's init sends it
//! the same way (connect, write 0xB7, read 0xB7, close).

use std::fmt;
use std::io::{self, Read, Write};

/// The parent's heartbeat port (nitro-cli `eif_loader`, AWS init `enclave_ready`).
pub(crate) const PORT: u32 = 9000;

/// The heartbeat byte, sent and echoed back.
pub(crate) const BYTE: u8 = 0xB7;

/// Why the heartbeat failed.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum HeartbeatError {
    /// Connecting to the parent failed.
    Connect { cid: u32, source: io::Error },
    /// Sending the byte failed.
    Send(io::Error),
    /// Reading the echo failed (including the parent closing without answering).
    Receive(io::Error),
    /// The parent answered with another byte.
    WrongEcho { found: u8 },
}

impl fmt::Display for HeartbeatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { cid, source } => write!(
                f,
                "cannot connect to the parent at vsock CID {cid} port {PORT}: {source} (is \
                 the parent listening? On Nitro it is CID 3; for QEMU with vhost-device-vsock's \
                 Unix-socket backend put ccc.parent_cid=2 on the command line)"
            ),
            Self::Send(e) => write!(f, "cannot send the heartbeat byte: {e}"),
            Self::Receive(e) => write!(f, "no heartbeat echo from the parent: {e}"),
            Self::WrongEcho { found } => {
                write!(f, "the parent echoed 0x{found:02X}, expected 0x{BYTE:02X}")
            }
        }
    }
}

/// Sends the heartbeat byte on `stream` and requires the same byte back.
///
/// # Errors
/// A send or receive failure, or a wrong echo.
pub(crate) fn exchange(stream: &mut (impl Read + Write)) -> Result<(), HeartbeatError> {
    stream.write_all(&[BYTE]).map_err(HeartbeatError::Send)?;
    let mut echo = [0u8; 1];
    stream
        .read_exact(&mut echo)
        .map_err(HeartbeatError::Receive)?;
    match echo {
        [BYTE] => Ok(()),
        [found] => Err(HeartbeatError::WrongEcho { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::thread;

    /// A parent that behaves like nitro-cli: read one byte, answer with `reply`.
    fn parent(reply: Option<u8>) -> (UnixStream, thread::JoinHandle<u8>) {
        let (enclave, mut parent) = UnixStream::pair().unwrap();
        let handle = thread::spawn(move || {
            let mut byte = [0u8; 1];
            parent.read_exact(&mut byte).unwrap();
            if let Some(reply) = reply {
                parent.write_all(&[reply]).unwrap();
            }
            byte[0]
        });
        (enclave, handle)
    }

    #[test]
    fn echoed_byte_succeeds() {
        let (mut enclave, handle) = parent(Some(0xB7));
        exchange(&mut enclave).unwrap();
        assert_eq!(handle.join().unwrap(), 0xB7, "the parent must receive 0xB7");
    }

    #[test]
    fn wrong_echo_fails() {
        let (mut enclave, handle) = parent(Some(0x00));
        let err = exchange(&mut enclave).unwrap_err();
        assert!(
            matches!(err, HeartbeatError::WrongEcho { found: 0 }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "the parent echoed 0x00, expected 0xB7");
        handle.join().unwrap();
    }

    #[test]
    fn parent_closing_without_echo_fails() {
        // The parent reads the byte, then closes without answering.
        let (mut enclave, handle) = parent(None);
        let err = exchange(&mut enclave).unwrap_err();
        assert_eq!(handle.join().unwrap(), 0xB7);
        assert!(
            matches!(&err, HeartbeatError::Receive(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
    }
}
