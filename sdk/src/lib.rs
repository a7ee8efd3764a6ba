//! CCC's enclave SDK: everything an enclave needs to prove what it is and to get its keys.
//!
//! The core is `no_std` + `alloc`: parsing, verification, signing and encoding do no I/O and
//! never read a clock (the caller passes the time in). I/O lives behind the `std` feature.
//!
//! # Features
//! - `std` (default): the `/dev/nsm` ioctl, vsock and TCP transports, TLS (rustls), HTTP/1.1,
//!   the KMS network client (with `aws-lc`), the credentials providers, files and clocks.
//! - `aws-lc` (default): the [`crypto::AwsLc`] backend. Core code only ever calls the narrow
//!   [`crypto::Crypto`] trait, so a `no_std` user can plug in another backend.
//! - `cms-build` (implies `aws-lc`): `cms::build`, which writes KMS's `CiphertextForRecipient`
//!   layout; the server side, for the KMS emulator and tests (an enclave never builds one).
//! - `cms-build` (implies `aws-lc`): `cms::build`, which writes KMS's `CiphertextForRecipient`
//!   layout; the server side, for the KMS emulator and tests (an enclave never builds one).
//! - `simulator`: the signed NSM simulator, for development and tests. It is never selected
//!   implicitly; see [`nsm`].
//!
//! # Modules
//! - [`attestation`]: parse and verify NSM attestation documents (COSE_Sign1, ES384, chain to
//!   the AWS Nitro root), then apply a [`attestation::Policy`].
//! - [`nsm`]: the NSM request/response codec, the device, and the simulator.
//! - [`der`]: the strict DER reader under the X.509 code.
//! - [`time`]: Unix-millisecond instants and their RFC 3339 / ASN.1 forms.
//! - [`crypto`]: the crypto seam and its aws-lc-rs implementation.
//! - [`secret`]: byte buffers that zeroize on drop and never print.
//! - [`cms`]: KMS's `CiphertextForRecipient` (BER CMS EnvelopedData): parse, check, decrypt;
//!   and, with `cms-build`, the builder the KMS emulator uses.
//! - [`kms`]: the KMS JSON 1.1 codec (requests, responses, typed errors with the likely fix)
//!   and the opening of attested (`Recipient`) responses.
//! - [`sigv4`]: AWS Signature Version 4 signing (and verification), with its intermediate strings.
//! - [`blob`]: binary JSON members as base64, for serde (KMS's blobs, the template's frames).
//! - [`log`]: structured log records and their JSON-lines wire form (the log protocol,
//!   `docs/log-protocol.md`); with `std`, `log::channel` sends them to the parent without ever
//!   blocking the caller, and the KMS client's steps convert into them.
//!
//! With `std` (Linux):
//! - [`net`]: vsock, TCP and Unix streams with timeouts; listeners; the transport error.
//! - [`tls`]: rustls to `kms.<region>.amazonaws.com`, trust anchored on the Amazon roots.
//! - [`http`]: the client side of HTTP/1.1 with named limits.
//! - [`clock`]: injectable clock and sleeper (retries and expiry are tested without waiting).
//! - [`credentials`]: AWS credentials providers: the enclave asks the parent over vsock
//!   (protocol in `docs/credentials-protocol.md`); the parent reads IMDSv2 or the environment
//!   and serves them.
//! - `kms::client` (with `aws-lc`): the signed, retrying KMS client and the attested client
//!   (fresh NSM document per call, `CiphertextForRecipient` opened with the enclave's key).
#![no_std]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod attestation;
pub mod blob;
#[cfg(feature = "std")]
pub mod clock;
pub mod cms;
#[cfg(all(feature = "std", target_os = "linux"))]
pub mod credentials;
pub mod crypto;
pub mod der;
#[cfg(feature = "std")]
pub mod http;
pub mod kms;
pub mod log;
#[cfg(all(feature = "std", target_os = "linux"))]
pub mod net;
pub mod nsm;
pub mod secret;
pub mod sigv4;
pub mod time;
#[cfg(all(feature = "std", target_os = "linux"))]
pub mod tls;
