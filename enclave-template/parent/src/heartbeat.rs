//! The enclave-ready heartbeat for emulation: the init connects to the parent's vsock port
//! 9000, writes 0xB7 and waits for it to come back (nitro-cli's `enclave_ready`). On a Nitro
//! parent nitro-cli itself listens there while it starts the enclave, so `run` answers it
//! only when asked (`--heartbeat`, for QEMU through vhost-device-vsock).

use crate::metrics::Metrics;
use crate::service::{Log, Services};
use ccc_sdk::net::Stream;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

/// The port (nitro-cli's `ENCLAVE_READY_VSOCK_PORT`).
pub const PORT: u32 = 9000;

/// The byte sent and echoed (nitro-cli's `HEART_BEAT`).
pub const BYTE: u8 = 0xB7;

/// How long the init may take to send its byte once connected.
const TIMEOUT: Duration = Duration::from_secs(5);

fn answer(mut stream: Stream, log: &Log, metrics: &Metrics) {
    let peer = stream.describe_peer();
    let mut byte = [0u8; 1];
    let result = stream
        .set_timeouts(TIMEOUT)
        .and_then(|()| stream.read_exact(&mut byte))
        .and_then(|()| {
            if byte == [BYTE] {
                stream.write_all(&byte)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("got 0x{:02x}, expected 0x{BYTE:02x}", byte[0]),
                ))
            }
        });
    match result {
        Ok(()) => {
            metrics.heartbeat();
            log.line(format_args!("heartbeat: the enclave is up ({peer})"));
        }
        Err(e) => log.line(format_args!("heartbeat from {peer}: {e}")),
    }
}

/// Answers heartbeats on `listener`.
///
/// # Errors
/// The accept thread could not be started.
pub fn serve(services: &mut Services, listener: crate::net::Bound) -> io::Result<()> {
    let log = services.log().clone();
    let metrics = Arc::clone(services.metrics());
    services.listen(listener, move |stream| {
        let log = log.clone();
        let metrics = Arc::clone(&metrics);
        // A heartbeat is one byte each way; a short thread keeps a stuck peer off the loop.
        let _ = std::thread::Builder::new()
            .name("ccc-parent-heartbeat".into())
            .spawn(move || answer(stream, &log, &metrics));
    })
}
