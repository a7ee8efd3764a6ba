//! The parent side of the CCC enclave template: what runs on the EC2 instance next to the
//! enclave, as one static binary (`ccc-template-parent`).
//!
//! - [`proxy`]: vsock → TCP forwarding to allowlisted destinations ([`allowlist`]: nitro-cli
//!   vsock-proxy's YAML format), bounded and with timeouts; [`event_loop`]: the threads that
//!   hold its connections (`epoll`, one per core); [`relay`]: each connection's byte relay
//!   (`splice` through pipes once bulk data flows).
//! - [`credentials`]: the instance role's credentials for the enclave (IMDSv2, environment or
//!   file), over the SDK's credentials protocol.
//! - [`heartbeat`]: the enclave-ready echo, for QEMU emulation.
//! - [`logs`]: the enclave's log channel (docs/log-protocol.md): records checked, counted and
//!   written to stdout as JSON lines tagged with the enclave's CID.
//! - [`metrics`]: Prometheus metrics (`/metrics`), readiness (`/healthz`) and liveness
//!   (`/livez`) on a loopback address.
//! - [`client`]: calls the enclave's API (`enclave::protocol`) and prints JSON.
//! - [`net`]: listening on vsock, vhost-device-vsock's Unix sockets or TCP; reaching the
//!   enclave on each; [`service`]: accept loops, connection tracking, clean shutdown.
//!
//! The system calls std does not wrap (`epoll`, a non-blocking TCP `connect`, `poll`,
//! `splice`, `shutdown` on a vsock socket, the open-files limit) are ccc-sys's; this crate
//! has no `unsafe`.
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
pub mod event_loop;
pub mod heartbeat;
pub mod logs;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod relay;
pub mod service;

/// The fuzzing entry point for the allowlist parser (nitro-cli vsock-proxy's YAML, read from
/// `--allowlist`): parses `data` as an allowlist and, when it parses, asks it to admit each
/// entry's own host, every name resolving (through a table, never the system resolver) to an
/// ordinary address and to special ones (`0.0.0.0/8`, EC2's IMDS). Must never panic, whatever
/// `data` is; `fuzz/fuzz_targets/allowlist_parse.rs` calls it.
#[doc(hidden)]
pub fn fuzz_allowlist(data: &[u8]) {
    use allowlist::{Address, Allowlist, TableResolver};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let text = String::from_utf8_lossy(data);
    let _ = Address::parse(&text);
    let Ok(list) = Allowlist::parse(&text) else {
        return;
    };
    let resolver = TableResolver::default();
    let answers = vec![
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(0, 1, 2, 3)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    ];
    // Every name is in the table first: `admit` resolves other entries' names too, and a
    // name missing from the table would go to the system resolver.
    for entry in list.entries() {
        if let Address::Name(name) = &entry.address {
            resolver.set(name, answers.clone());
        }
    }
    for entry in list.entries() {
        let _ = list.admit(&entry.address.to_string(), entry.port, &resolver);
    }
}

/// The fuzzing entry point for the CONNECT parsers of the parent: the HTTP CONNECT request
/// head the proxy reads from the enclave (`proxy::parse_connect_head`), and the `OK <port>`
/// reply line vhost-device-vsock gives to `CONNECT <port>` (`net::connect_reply_ok`). Must
/// never panic, whatever `data` is; `fuzz/fuzz_targets/http_connect.rs` calls it.
#[doc(hidden)]
pub fn fuzz_connect(data: &[u8]) {
    if let Ok(Some((host, _port, _length))) = proxy::parse_connect_head(data) {
        let _ = allowlist::Address::parse(&host);
    }
    let _ = net::connect_reply_ok(&String::from_utf8_lossy(data));
}
