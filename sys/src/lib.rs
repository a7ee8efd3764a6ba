//! Every system call CCC makes that Rust's std does not wrap, and the only crate of the
//! workspace allowed `unsafe` (every other crate has `unsafe_code = "forbid"`).
//!
//! Rules here:
//! - each `unsafe` block holds one unsafe operation and a `// SAFETY:` comment saying why it
//!   is sound (clippy `undocumented_unsafe_blocks`, `multiple_unsafe_ops_per_block`);
//! - descriptors leave this crate only as [`std::os::fd::OwnedFd`] (closed on drop) and come
//!   in borrowed, as [`std::os::fd::BorrowedFd`]; no raw descriptor crosses the API;
//! - ABI numbers and struct layouts come from the kernel's headers (or libc's copies of them)
//!   and are pinned by unit tests;
//! - the only dependency is libc, so the init (PID 1, a small static binary) can use it.
//!
//! Linux only. The modules:
//! - [`nsm`]: the `/dev/nsm` ioctl (`NSM_IOCTL_RAW`);
//! - [`vsock`]: AF_VSOCK stream sockets (socket, connect with a deadline, bind, listen,
//!   accept, local address);
//! - [`socket`]: what any socket needs (read/write timeouts, `shutdown`, the pending error);
//! - [`fd`]: descriptor flags (`O_NONBLOCK`);
//! - [`poll`]: `poll(2)` over a few descriptors;
//! - [`epoll`]: `epoll(7)`, the parent's proxy event loop;
//! - [`tcp`]: a TCP `connect` started without blocking (the event loop waits for it);
//! - [`pipe`]: pipes and `splice(2)` (the parent's proxy moves bytes without copying them);
//! - [`mount`](mod@mount): `mount(2)`;
//! - [`interface`]: bringing a network interface up (the enclave's `lo`);
//! - [`unix`]: Unix stream listeners whose socket file is `0600` from its creation;
//! - [`process`]: signals, the standard streams, fork/exec/wait, sessions, resource limits;
//! - [`power`]: `sync(2)` and `reboot(2)`, how an enclave stops;
//! - [`residue`]: a global allocator for tests that counts freed blocks still holding a
//!   secret (the zeroisation tests).
//! - [`clock`]: setting the wall clock (`clock_settime(CLOCK_REALTIME)`).
//!
//! [`libc`] is re-exported for its constants (errno values, flags): its functions are all
//! `unsafe`, so outside this crate they cannot be called at all.
#![cfg(target_os = "linux")]

pub use libc;

pub mod clock;
pub mod epoll;
pub mod fd;
pub mod interface;
pub mod mount;
pub mod nsm;
pub mod pipe;
pub mod poll;
pub mod power;
pub mod process;
pub mod residue;
pub mod socket;
pub mod tcp;
pub mod unix;
pub mod vsock;

use std::io;

/// Turns a negative return value into the thread's `errno`.
fn check(status: libc::c_int) -> io::Result<libc::c_int> {
    if status < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(status)
    }
}

/// A `usize` length as the `socklen_t` the socket calls take. Every length passed is the size
/// of a small fixed struct, so this never saturates in practice.
fn socklen(len: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(len).unwrap_or(libc::socklen_t::MAX)
}
