//! ELF64 little-endian headers of the executables that go into an image: the program headers
//! (is the init static, i.e. without `PT_INTERP`?) and the section headers with their names
//! (the emulation's tampered application changes one byte of a section that is not loaded at
//! run time).
//!
//! Layout from the System V gABI ("ELF Header", "Program Header", "Sections"): `e_ident` (16
//! bytes: magic, `EI_CLASS` 2 = 64-bit, `EI_DATA` 1 = little-endian), `e_machine` at 0x12,
//! `e_phoff` 0x20, `e_shoff` 0x28, `e_phentsize` 0x36, `e_phnum` 0x38, `e_shentsize` 0x3A,
//! `e_shnum` 0x3C, `e_shstrndx` 0x3E; a program header starts with `p_type`; a section header
//! holds `sh_name` (+0), `sh_type` (+4), `sh_flags` (+8), `sh_offset` (+24), `sh_size` (+32).
//! Reading never panics: every offset is checked against the file.

use std::fmt;

/// `e_machine` of x86-64 (`EM_X86_64`).
pub const EM_X86_64: u16 = 62;
/// Program header type of the dynamic loader request (`PT_INTERP`).
pub const PT_INTERP: u32 = 3;
/// Section flag: occupies memory at run time (`SHF_ALLOC`).
pub const SHF_ALLOC: u64 = 0x2;
/// Section type: occupies no file space (`SHT_NOBITS`).
pub const SHT_NOBITS: u32 = 8;
/// Size of the ELF64 header.
pub const HEADER_LEN: usize = 64;
/// Size of an ELF64 section header (`e_shentsize`).
pub const SECTION_HEADER_LEN: usize = 64;

/// Why bytes are not a readable ELF64 little-endian file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElfError {
    /// No `\x7fELF` magic.
    NotElf,
    /// An ELF file, but not 64-bit little-endian (`EI_CLASS`, `EI_DATA`).
    NotElf64LittleEndian {
        /// `EI_CLASS` found (2 expected).
        class: u8,
        /// `EI_DATA` found (1 expected).
        data: u8,
    },
    /// A header or table runs past the end of the file.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// The file's length.
        len: u64,
    },
    /// `e_shentsize` is not 64 although there are section headers.
    SectionHeaderSize {
        /// `e_shentsize` found.
        found: u16,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf => f.write_str("not an ELF file (no \\x7fELF magic)"),
            Self::NotElf64LittleEndian { class, data } => write!(
                f,
                "not a 64-bit little-endian ELF file (EI_CLASS {class}, EI_DATA {data}; \
                 expected 2 and 1): build for x86_64"
            ),
            Self::Truncated { what, offset, len } => write!(
                f,
                "the ELF file is truncated: its {what} at byte {offset} runs past the end of \
                 the {len}-byte file"
            ),
            Self::SectionHeaderSize { found } => write!(
                f,
                "the ELF file's section headers are {found} bytes each, expected \
                 {SECTION_HEADER_LEN}"
            ),
        }
    }
}

impl core::error::Error for ElfError {}

/// One section header, with its name from the section-name table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Its index in the section header table.
    pub index: usize,
    /// Its name (`.text`, `.comment`; empty when the name table has none).
    pub name: String,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_offset`: where its contents start in the file.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
}

/// The header of an ELF64 little-endian file, over its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    machine: u16,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
    shoff: u64,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

fn array<const N: usize>(bytes: &[u8], at: u64) -> Option<[u8; N]> {
    let at = usize::try_from(at).ok()?;
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(bytes: &[u8], at: u64) -> Option<u16> {
    array(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: u64) -> Option<u32> {
    array(bytes, at).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: u64) -> Option<u64> {
    array(bytes, at).map(u64::from_le_bytes)
}

impl<'a> Elf<'a> {
    /// Reads the ELF header of `bytes`.
    ///
    /// # Errors
    /// [`ElfError::NotElf`], [`ElfError::NotElf64LittleEndian`], or a header shorter than 64
    /// bytes ([`ElfError::Truncated`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::NotElf);
        }
        let (class, data) = (
            bytes.get(4).copied().unwrap_or(0),
            bytes.get(5).copied().unwrap_or(0),
        );
        if (class, data) != (2, 1) {
            return Err(ElfError::NotElf64LittleEndian { class, data });
        }
        let truncated = ElfError::Truncated {
            what: "ELF header",
            offset: 0,
            len: bytes.len() as u64,
        };
        let header = || -> Option<Self> {
            Some(Self {
                bytes,
                machine: u16_at(bytes, 0x12)?,
                phoff: u64_at(bytes, 0x20)?,
                shoff: u64_at(bytes, 0x28)?,
                phentsize: u16_at(bytes, 0x36)?,
                phnum: u16_at(bytes, 0x38)?,
                shentsize: u16_at(bytes, 0x3A)?,
                shnum: u16_at(bytes, 0x3C)?,
                shstrndx: u16_at(bytes, 0x3E)?,
            })
        };
        header().ok_or(truncated)
    }

    /// `e_machine` ([`EM_X86_64`] for x86-64).
    #[must_use]
    pub fn machine(&self) -> u16 {
        self.machine
    }

    fn truncated(&self, what: &'static str, offset: u64) -> ElfError {
        ElfError::Truncated {
            what,
            offset,
            len: self.bytes.len() as u64,
        }
    }

    /// The `p_type` of every program header, in order.
    ///
    /// # Errors
    /// [`ElfError::Truncated`] when the program header table runs past the end of the file.
    pub fn program_header_types(&self) -> Result<Vec<u32>, ElfError> {
        (0..u64::from(self.phnum))
            .map(|index| {
                let at = index
                    .checked_mul(u64::from(self.phentsize))
                    .and_then(|o| o.checked_add(self.phoff))
                    .unwrap_or(u64::MAX);
                u32_at(self.bytes, at).ok_or_else(|| self.truncated("program header", at))
            })
            .collect()
    }

    /// Whether the file asks for a dynamic loader (a `PT_INTERP` program header), i.e. is not
    /// a static executable.
    ///
    /// # Errors
    /// As [`Elf::program_header_types`].
    pub fn has_interpreter(&self) -> Result<bool, ElfError> {
        Ok(self.program_header_types()?.contains(&PT_INTERP))
    }

    /// Every section header, with its name.
    ///
    /// # Errors
    /// [`ElfError::SectionHeaderSize`], or [`ElfError::Truncated`] when the section header
    /// table or the section-name table's header runs past the end of the file.
    pub fn sections(&self) -> Result<Vec<Section>, ElfError> {
        if self.shnum == 0 {
            return Ok(Vec::new());
        }
        if usize::from(self.shentsize) != SECTION_HEADER_LEN {
            return Err(ElfError::SectionHeaderSize {
                found: self.shentsize,
            });
        }
        let raw = |index: usize| -> Result<(u32, Section), ElfError> {
            let at = (index as u64)
                .checked_mul(SECTION_HEADER_LEN as u64)
                .and_then(|o| o.checked_add(self.shoff))
                .unwrap_or(u64::MAX);
            let field = |offset: u64| at.saturating_add(offset);
            let read = || -> Option<(u32, Section)> {
                Some((
                    u32_at(self.bytes, at)?,
                    Section {
                        index,
                        name: String::new(),
                        kind: u32_at(self.bytes, field(4))?,
                        flags: u64_at(self.bytes, field(8))?,
                        offset: u64_at(self.bytes, field(24))?,
                        size: u64_at(self.bytes, field(32))?,
                    },
                ))
            };
            read().ok_or_else(|| self.truncated("section header", at))
        };
        let (_, names) = raw(usize::from(self.shstrndx))?;
        let name_of = |name: u32| -> String {
            let start = names.offset.saturating_add(u64::from(name));
            let end = names.offset.saturating_add(names.size);
            usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(start, end)| self.bytes.get(start..end))
                .and_then(|table| table.split(|&b| b == 0).next())
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default()
        };
        (0..usize::from(self.shnum))
            .map(|index| {
                let (name, mut section) = raw(index)?;
                section.name = name_of(name);
                Ok(section)
            })
            .collect()
    }

    /// The index of the section-name table (`e_shstrndx`).
    #[must_use]
    pub fn section_names_index(&self) -> usize {
        usize::from(self.shstrndx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal x86-64 ELF64 with program headers of `types` and the sections null, .text
    /// (ALLOC), .comment, .shstrtab.
    fn elf(types: &[u32]) -> Vec<u8> {
        let names = b"\0.text\0.comment\0.shstrtab\0";
        let mut out = vec![0u8; HEADER_LEN];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        out[0x20..0x28].copy_from_slice(&(HEADER_LEN as u64).to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for t in types {
            let mut header = [0u8; 56];
            header[..4].copy_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&header);
        }
        let text_at = out.len();
        out.extend_from_slice(&[0x90; 16]);
        let comment_at = out.len();
        out.extend_from_slice(b"rustc version 1.95.0\0");
        let names_at = out.len();
        out.extend_from_slice(names);
        let shoff = out.len();
        for (name, kind, flags, offset, size) in [
            (0u32, 0u32, 0u64, 0usize, 0usize),
            (1, 1, SHF_ALLOC | 0x4, text_at, 16),
            (7, 1, 0x30, comment_at, 21),
            (16, 3, 0, names_at, names.len()),
        ] {
            let mut h = [0u8; SECTION_HEADER_LEN];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            out.extend_from_slice(&h);
        }
        out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        out[0x3A..0x3C].copy_from_slice(&(SECTION_HEADER_LEN as u16).to_le_bytes());
        out[0x3C..0x3E].copy_from_slice(&4u16.to_le_bytes());
        out[0x3E..0x40].copy_from_slice(&3u16.to_le_bytes());
        out
    }

    #[test]
    fn program_headers_tell_static_from_dynamic() {
        let bytes = elf(&[6, 1, 1, 2]);
        let parsed = Elf::parse(&bytes).unwrap();
        assert_eq!(parsed.machine(), EM_X86_64);
        assert_eq!(parsed.program_header_types().unwrap(), [6, 1, 1, 2]);
        assert!(!parsed.has_interpreter().unwrap());
        assert!(
            Elf::parse(&elf(&[6, PT_INTERP, 1]))
                .unwrap()
                .has_interpreter()
                .unwrap()
        );
    }

    #[test]
    fn sections_come_with_their_names() {
        let bytes = elf(&[]);
        let parsed = Elf::parse(&bytes).unwrap();
        let sections = parsed.sections().unwrap();
        let names: Vec<&str> = sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["", ".text", ".comment", ".shstrtab"]);
        assert_eq!(parsed.section_names_index(), 3);
        let comment = &sections[2];
        assert_eq!(
            (comment.kind, comment.flags & SHF_ALLOC, comment.size),
            (1, 0, 21)
        );
        let at = usize::try_from(comment.offset).unwrap();
        assert_eq!(&bytes[at..at + 5], b"rustc");
    }

    #[test]
    fn what_is_not_elf64_or_is_cut_short_is_named() {
        assert_eq!(Elf::parse(b"#!/bin/sh\n").unwrap_err(), ElfError::NotElf);
        let mut elf32 = elf(&[]);
        elf32[4] = 1;
        assert_eq!(
            Elf::parse(&elf32).unwrap_err(),
            ElfError::NotElf64LittleEndian { class: 1, data: 1 }
        );
        assert!(matches!(
            Elf::parse(b"\x7fELF\x02\x01").unwrap_err(),
            ElfError::Truncated {
                what: "ELF header",
                ..
            }
        ));
        // Program headers past the end.
        let mut bytes = elf(&[1, 1]);
        bytes.truncate(HEADER_LEN + 56 + 2);
        let error = Elf::parse(&bytes)
            .unwrap()
            .program_header_types()
            .unwrap_err();
        assert!(
            matches!(
                error,
                ElfError::Truncated {
                    what: "program header",
                    offset: 120,
                    ..
                }
            ),
            "{error:?}"
        );
        // Section headers past the end: every truncation fails cleanly, never panics.
        let full = elf(&[1]);
        for len in 0..full.len() {
            if let Ok(parsed) = Elf::parse(&full[..len]) {
                let _ = parsed.sections();
                let _ = parsed.has_interpreter();
            }
        }
        let mut odd = elf(&[]);
        odd[0x3A..0x3C].copy_from_slice(&40u16.to_le_bytes());
        assert_eq!(
            Elf::parse(&odd).unwrap().sections().unwrap_err(),
            ElfError::SectionHeaderSize { found: 40 }
        );
    }

    /// The host's own executables, as Debian ships them (a real peer): /bin/sh is dynamically
    /// linked and has the usual sections.
    #[test]
    fn host_binaries() {
        let sh = std::fs::read("/bin/sh").unwrap();
        let parsed = Elf::parse(&sh).unwrap();
        assert!(
            parsed.has_interpreter().unwrap(),
            "/bin/sh is dynamically linked on Debian"
        );
        let sections = parsed.sections().unwrap();
        assert!(sections.iter().any(|s| s.name == ".text"), "{sections:?}");
    }
}
