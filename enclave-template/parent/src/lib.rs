//! The parent side of the CCC enclave template: what runs on the EC2 instance next to the
//! enclave, as one static binary (`ccc-template-parent`).
//!
//! - [`proxy`]: vsock → TCP forwarding to allowlisted destinations ([`allowlist`]: nitro-cli
//!   vsock-proxy's YAML format), bounded and with timeouts; [`relay`]: its zero-copy byte
//!   relay (`splice` + `poll`, one thread per connection).
//! - [`credentials`]: the instance role's credentials for the enclave (IMDSv2, environment or
//!   file), over the SDK's credentials protocol.
//! - [`heartbeat`]: the enclave-ready echo, for QEMU emulation.
//! - [`client`]: calls the enclave's API (`enclave::protocol`) and prints JSON.
//! - [`net`]: listening on vsock, vhost-device-vsock's Unix sockets or TCP; reaching the
//!   enclave on each; [`service`]: accept loops, connection tracking, clean shutdown.
//!
//! The system calls std does not wrap (`poll`, `splice`, `shutdown` on a vsock socket, the
//! open-files limit) are ccc-sys's; this crate has no `unsafe`.
// Bytes from peers (the enclave, the parent, KMS clients, the kernel command line) are read
// with get()/split_first()/cursors: indexing that could panic is an error outside tests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;

/// A command-line value the parent cannot use (`--listen`, `--route`, `--credentials`,
/// `--enclave`): what was given and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArgumentError {
    /// The value given.
    pub value: String,
    /// What is expected there.
    pub expected: &'static str,
}

impl ArgumentError {
    pub(crate) fn new(value: &str, expected: &'static str) -> Self {
        Self {
            value: value.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: expected {}", self.value, self.expected)
    }
}

impl core::error::Error for ArgumentError {}

pub mod allowlist;
pub mod client;
pub mod credentials;
pub mod heartbeat;
pub mod net;
pub mod proxy;
pub mod relay;
pub mod service;
