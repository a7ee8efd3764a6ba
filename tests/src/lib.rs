//! Helpers shared by the cross-crate tests (servers on loopback).
//!
//! - [`moto`]: moto (PyPI) as an independent SigV4-verifying KMS, installed under `target/`.

pub mod moto;
