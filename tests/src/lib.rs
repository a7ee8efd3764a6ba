//! Helpers shared by the cross-crate tests (paths to ../shared vectors, servers on loopback).
//!
//! - [`moto`]: moto (PyPI) as an independent SigV4-verifying KMS, installed under `target/`.

pub mod moto;
