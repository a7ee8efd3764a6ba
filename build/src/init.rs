//! The enclave's PID 1 as a file: `ccc-init` built for x86_64-unknown-linux-musl (release
//! profile), checked to be a static executable, ready for the bootstrap ramdisk; and the ELF
//! check every enclave binary goes through.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result, ensure};
use crate::host::{self, MUSL_TARGET};

/// The init's package (and binary) in CCC's workspace.
pub const PACKAGE: &str = "ccc-init";

/// ELF program header type of the dynamic loader request (`PT_INTERP`).
const PT_INTERP: u32 = 3;

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
        !has_interpreter(&bytes).map_err(|p| Error::invalid(path.display().to_string(), p))?,
        Error::invalid(
            path.display().to_string(),
            "asks for a dynamic loader (PT_INTERP): the init must be static"
        )
    );
    Ok(path)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Whether a little-endian ELF64 x86-64 executable has a `PT_INTERP` program header (i.e. is
/// dynamically linked). Layout from the System V gABI: `e_phoff` at 0x20, `e_phentsize` at
/// 0x36, `e_phnum` at 0x38; each program header starts with its `p_type`.
///
/// # Errors
/// Not an ELF64 x86-64 file, or a truncated one (the message says which).
pub fn has_interpreter(elf: &[u8]) -> Result<bool, String> {
    ensure!(
        elf.get(..4) == Some(b"\x7fELF".as_slice()),
        "not an ELF file".to_owned()
    );
    ensure!(
        elf.get(4) == Some(&2) && elf.get(5) == Some(&1) && u16_at(elf, 0x12) == Some(62),
        "not a little-endian ELF64 x86-64 file".to_owned()
    );
    let header = || -> Option<(usize, usize, usize)> {
        Some((
            usize::try_from(u64_at(elf, 0x20)?).ok()?,
            usize::from(u16_at(elf, 0x36)?),
            usize::from(u16_at(elf, 0x38)?),
        ))
    };
    let (phoff, phentsize, phnum) = header().ok_or("truncated ELF header")?;
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or("program header offset overflows")?;
        let kind = u32_at(elf, at).ok_or("truncated program header table")?;
        if kind == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

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
