//! EIF v4 images, deterministic initramfs archives and their PCR measurements.
//!
//! An enclave image (EIF) is what AWS Nitro Enclaves boot: a kernel, its command line and
//! initramfs ramdisks, plus metadata and an optional signature. Its measurements — PCR0
//! (everything measured), PCR1 (kernel, cmdline, bootstrap ramdisk), PCR2 (application
//! ramdisks), PCR8 (signing certificate) — are what KMS key policies pin. This crate
//! produces those bytes reproducibly and recomputes those measurements exactly as nitro-cli
//! and the Nitro hypervisor do.
//!
//! - [`cpio`]: deterministic cpio newc archives ([`cpio::Archive`]).
//! - [`initramfs`]: the bootstrap and customer ramdisk layouts, `/cmd` and `/env`.
//! - [`EifBuilder`] ([`writer`]): writes an EIF in one streaming pass and returns its
//!   measurements; byte-identical to AWS's `EifBuilder`.
//! - [`Eif`] ([`reader`]): reads and validates any EIF (versions 2–4) in one streaming pass;
//!   rejects malformed files with the byte offset and the reason; never panics.
//! - [`pcr`]: [`Pcr`], [`Measurements`] and the streaming SHA-384 pipeline.
//! - [`describe`]: the `nitro-cli describe-eif` JSON.
//! - [`elf`]: the ELF64 headers of the executables an image carries (static or not, sections).
//! - [`signature`]: the signature section (PCR8), its verification ([`Eif::check_signature`])
//!   and a local ES384 [`LocalSigner`]; [`writer::sign_image`] signs a built image.
//! - [`x509`]: the signing certificate's fields (`describe-eif`'s `SigningCertificate`).
//!
//! Nothing here reads a clock or the environment: the build time is a [`SourceDateEpoch`]
//! passed in by the caller.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod cpio;
pub mod describe;
pub mod elf;
mod epoch;
pub mod format;
pub mod initramfs;
pub mod pcr;
pub mod reader;
pub mod signature;
pub mod writer;
pub mod x509;

pub use epoch::{EpochError, SourceDateEpoch};
pub use format::{Arch, BuildInfo, EifHeader, EifIdentity, SectionKind};
pub use pcr::{Measurements, Pcr};
pub use reader::{Eif, EifError, Place, SectionInfo};
pub use signature::{
    DigestSigning, LocalSigner, PcrSigner, SignatureCheck, SignatureCheckError, SignatureSection,
};
pub use writer::{BuildError, Built, EifBuilder, FileSource, SectionSource, sign_image};

/// The fuzzing entry point for the EIF reader: parses `data` as an EIF and, when it is
/// valid, renders its describe-eif JSON. Must never panic, whatever `data` is; a fuzz target
/// calls it directly (`fuzz_target!(|data: &[u8]| ccc_eif::fuzz_read(data));`).
pub fn fuzz_read(data: &[u8]) {
    if let Ok(eif) = Eif::from_bytes(data) {
        let _ = eif.describe_json();
    }
}
