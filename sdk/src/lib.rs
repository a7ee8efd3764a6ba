//! CCC's enclave SDK: everything an enclave needs to prove what it is and to get its keys.
//!
//! The core is `no_std` + `alloc`: parsing, verification, signing and encoding do no I/O and
//! never read a clock (the caller passes the time in). I/O lives behind the `std` feature.
//!
//! # Features
//! - `std` (default): the `/dev/nsm` ioctl, vsock and TCP transports, TLS, files and clocks.
//! - `aws-lc` (default): the [`crypto::AwsLc`] backend. Core code only ever calls the narrow
//!   [`crypto::Crypto`] trait, so a `no_std` user can plug in another backend.
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
//!   and, with `aws-lc`, the builder the KMS emulator uses.
//! - [`kms`]: the KMS JSON 1.1 codec (requests, responses, typed errors with the likely fix)
//!   and the opening of attested (`Recipient`) responses.
//! - [`sigv4`]: AWS Signature Version 4 signing (and verification), with its intermediate strings.
#![no_std]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod attestation;
pub mod cms;
pub mod crypto;
pub mod der;
pub mod kms;
pub mod nsm;
pub mod secret;
pub mod sigv4;
pub mod time;
