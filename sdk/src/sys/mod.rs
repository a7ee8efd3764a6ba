//! Every system call the SDK makes itself (the rest of the crate denies `unsafe`): the
//! `/dev/nsm` ioctl ([`nsm`]) and AF_VSOCK sockets ([`vsock`]).
//!
//! Rules here: each `unsafe` block has a `// SAFETY:` comment; file descriptors leave this
//! module only as [`std::os::fd::OwnedFd`] (closed on drop) or are borrowed as
//! [`std::os::fd::BorrowedFd`]; ABI numbers and struct layouts are pinned by unit tests.
#![allow(unsafe_code)]

pub(crate) mod nsm;
pub(crate) mod vsock;
