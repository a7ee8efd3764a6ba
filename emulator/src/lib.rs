//! The KMS emulator: a real HTTPS server on loopback that speaks KMS's JSON 1.1 protocol,
//! verifies SigV4, honours the attestation `Recipient` and enforces key policies.
//!
//! - [`policy`]: AWS JSON key policies and their evaluation, with denials that say why.

pub mod policy;
