//! The KMS emulator.
