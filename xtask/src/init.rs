//! The enclave's PID 1 as a file: `ccc-init` built for x86_64-unknown-linux-musl (release
//! profile), checked to be a static executable, ready for the bootstrap ramdisk.

use anyhow::{Context, Result, ensure};
use ccc_eif::elf::{EM_X86_64, Elf};
use std::path::PathBuf;
use xshell::{Shell, cmd};

/// The target the enclave's binaries are built for.
pub(crate) const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds `ccc-init` (release, musl) and returns its path.
///
/// # Errors
/// The musl target is missing (with the command that adds it), the build failed, or the result
/// is not a static executable.
pub(crate) fn build() -> Result<PathBuf> {
    crate::setup::ensure_musl_target()?;
    let root = crate::workspace_root();
    let sh = Shell::new()?;
    sh.change_dir(&root);
    cmd!(
        sh,
        "cargo build --locked --release -p ccc-init --bin ccc-init --target {MUSL_TARGET}"
    )
    .run()
    .context("building ccc-init for musl failed")?;
    let path = root
        .join("target")
        .join(MUSL_TARGET)
        .join("release")
        .join("ccc-init");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        !has_interpreter(&bytes)?,
        "{} asks for a dynamic loader (PT_INTERP): the init must be static",
        path.display()
    );
    Ok(path)
}

/// Whether a little-endian ELF64 x86-64 executable has a `PT_INTERP` program header (i.e. is
/// dynamically linked), read with `ccc_eif::elf`.
pub(crate) fn has_interpreter(elf: &[u8]) -> Result<bool> {
    let elf = Elf::parse(elf)?;
    ensure!(
        elf.machine() == EM_X86_64,
        "not an x86-64 file (e_machine {})",
        elf.machine()
    );
    Ok(elf.has_interpreter()?)
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
