//! The enclave's PID 1 as a file: `ccc-init` built for x86_64-unknown-linux-musl (release
//! profile), checked to be a static executable, ready for the bootstrap ramdisk; and the ELF
//! check every enclave binary goes through.

use ccc_eif::elf::{EM_X86_64, Elf};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result, ensure};
use crate::host::{self, MUSL_TARGET};

/// The init's package (and binary) in CCC's workspace.
pub const PACKAGE: &str = "ccc-init";

/// Builds `ccc-init` (release, musl) in CCC's workspace at `ccc_root`, into its own target
/// directory, and returns its path. (A release builds the init its own way, with every path
/// remapped: see [`crate::release`].)
///
/// # Errors
/// The musl target is missing (with the command that adds it), the build failed, or the result
/// is not a static executable.
pub fn build(ccc_root: &Path) -> Result<PathBuf> {
    host::ensure_musl_target(ccc_root)?;
    let status = Command::new("cargo")
        .args([
            "build",
            "--locked",
            "--release",
            "-p",
            PACKAGE,
            "--bin",
            PACKAGE,
        ])
        .args(["--target", MUSL_TARGET])
        .current_dir(ccc_root)
        .status()
        .map_err(|e| Error::program("cargo", format!("cannot start: {e}")))?;
    ensure!(
        status.success(),
        Error::program(
            "cargo build -p ccc-init",
            format!("building ccc-init for musl failed ({status})")
        )
    );
    let path = ccc_root
        .join("target")
        .join(MUSL_TARGET)
        .join("release")
        .join(PACKAGE);
    let bytes = std::fs::read(&path).io("read", &path)?;
    ensure!(
        !has_interpreter(&bytes).map_err(|e| e.context(path.display().to_string()))?,
        Error::invalid(
            path.display().to_string(),
            "asks for a dynamic loader (PT_INTERP): the init must be static"
        )
    );
    Ok(path)
}

/// Whether a little-endian ELF64 x86-64 executable has a `PT_INTERP` program header (i.e. is
/// dynamically linked), read with `ccc_eif::elf`.
///
/// # Errors
/// Not an ELF64 x86-64 file, or a truncated one (the message says which).
pub fn has_interpreter(elf: &[u8]) -> Result<bool> {
    let not_usable = |e: ccc_eif::elf::ElfError| Error::invalid("the executable", e.to_string());
    let elf = Elf::parse(elf).map_err(not_usable)?;
    ensure!(
        elf.machine() == EM_X86_64,
        Error::invalid(
            "the executable",
            format!("not an x86-64 file (e_machine {})", elf.machine())
        )
    );
    elf.has_interpreter().map_err(not_usable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_eif::elf::PT_INTERP;

    /// A minimal ELF64 header with program headers of the given types.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x40 + 56 * types.len()];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        bytes[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            let at = 0x40 + 56 * i;
            bytes[at..at + 4].copy_from_slice(&t.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn finds_the_interpreter_header() {
        assert!(!has_interpreter(&elf(&[6, 1, 1, 2])).unwrap());
        assert!(has_interpreter(&elf(&[6, PT_INTERP, 1])).unwrap());
        assert!(has_interpreter(b"#!/bin/sh\n").is_err());
        let mut truncated = elf(&[1, 1]);
        truncated.truncate(0x40 + 56);
        assert!(has_interpreter(&truncated).is_err());
    }

    /// The host's own dynamically linked tools are recognised as such (a real peer: the ELF
    /// files Debian ships).
    #[test]
    fn host_binaries() {
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(
            has_interpreter(&sh).unwrap(),
            "/bin/sh is dynamically linked on Debian"
        );
    }
}
