//! Reading and validating an EIF in one streaming pass: structure, CRC, PCRs, metadata,
//! signature. Never panics; every rejection names the byte offset and the failed check.
//!
//! Checks, in file order (the first failure is reported):
//! 1. header: magic `.eif`; version 2..=4; flags 0 or 1 (bit 0 = aarch64, others reserved);
//!    `reserved` and `unused` 0; `num_sections` 2..=32; table entries past `num_sections` 0;
//! 2. each section: `section_offsets[i]` equals the section's actual offset (sections are
//!    back to back from byte 548, which is how AWS's reader walks them); `section_type` 1..=5
//!    and allowed by the version (signature >= 3, metadata >= 4); section `flags` 0;
//!    `section_size` equals `section_sizes[i]`; at most one kernel, cmdline, metadata and
//!    signature; ramdisks after the kernel; size limits for the sections kept in memory;
//!    the metadata JSON and signature CBOR parse;
//! 3. the end: no bytes after the last section; a kernel and a cmdline (and, in version 4, a
//!    metadata section) exist; the CRC matches.

use crate::format::{
    self, EifHeader, EifIdentity, HEADER_LEN, MAX_SECTIONS, SECTION_HEADER_LEN, SectionHeader,
    SectionKind,
};
use crate::pcr::{self, Measurements, PipeError, Pipeline, Role};
use crate::signature::SignatureSection;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// Where one section is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// Its type.
    pub kind: SectionKind,
    /// Offset of its 12-byte header (what `section_offsets` stores).
    pub offset: u64,
    /// Length of its data.
    pub size: u64,
}

impl SectionInfo {
    /// Offset of its data.
    #[must_use]
    pub const fn data_offset(&self) -> u64 {
        self.offset + SECTION_HEADER_LEN
    }
}

/// A validated EIF: its header, section map, the small sections' contents and its
/// measurements. Kernel and ramdisk bytes are not kept.
#[derive(Debug, Clone)]
pub struct Eif {
    /// The header as stored.
    pub header: EifHeader,
    /// Every section, in file order.
    pub sections: Vec<SectionInfo>,
    /// The kernel command line (section data as stored).
    pub cmdline: Vec<u8>,
    /// The metadata section, parsed (absent before version 4).
    pub identity: Option<EifIdentity>,
    /// The signature section, parsed.
    pub signature: Option<SignatureSection>,
    /// PCR0, PCR1, PCR2 and, if signed, PCR8.
    pub measurements: Measurements,
    /// Total file length.
    pub len: u64,
}

impl Eif {
    /// Reads and validates an EIF from a stream, in one pass, holding at most a few MiB in
    /// memory whatever the file size. Large files are hashed on two threads.
    ///
    /// # Errors
    /// [`EifError`] naming the byte offset and the failed check.
    pub fn read(reader: impl Read) -> Result<Self, EifError> {
        read(&mut { reader }, true)
    }

    /// Opens and reads an EIF file (see [`Eif::read`]).
    ///
    /// # Errors
    /// [`EifError::Io`] when the file cannot be opened, otherwise as [`Eif::read`].
    pub fn open(path: &Path) -> Result<Self, EifError> {
        let file =
            std::fs::File::open(path).map_err(|source| EifError::Io { offset: 0, source })?;
        Self::read(file)
    }

    /// Validates an EIF held in memory, on the calling thread only (the fuzzing entry
    /// point).
    ///
    /// # Errors
    /// As [`Eif::read`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EifError> {
        read(&mut { bytes }, false)
    }

    /// The architecture from the header flags.
    #[must_use]
    pub fn arch(&self) -> format::Arch {
        self.header.arch().unwrap_or_default()
    }

    /// Sections of one kind, in file order.
    pub fn sections_of(&self, kind: SectionKind) -> impl Iterator<Item = &SectionInfo> {
        self.sections.iter().filter(move |s| s.kind == kind)
    }
}

/// Tracks the section counts the rules depend on.
#[derive(Default)]
struct Seen {
    kernel: bool,
    cmdline: bool,
    metadata: bool,
    signature: bool,
    ramdisks: usize,
}

fn read(reader: &mut dyn Read, allow_parallel: bool) -> Result<Eif, EifError> {
    let mut header_bytes = [0u8; HEADER_LEN as usize];
    let got = pcr::read_full(reader, &mut header_bytes)
        .map_err(|source| EifError::Io { offset: 0, source })?;
    if let Some(magic) = header_bytes.get(..got.min(4))
        && magic != format::MAGIC.get(..magic.len()).unwrap_or_default()
    {
        return Err(invalid(
            0,
            "magic",
            "2e 65 69 66 (\".eif\")",
            hex::encode(magic),
        ));
    }
    if got < header_bytes.len() {
        return Err(EifError::Truncated {
            offset: got as u64,
            what: "the 548-byte header".into(),
            end: HEADER_LEN,
        });
    }
    let header = EifHeader::from_bytes(&header_bytes);
    check_header(&header)?;

    let mut crc = crc32fast::Hasher::new();
    crc.update(
        header_bytes
            .get(..format::CRC_OFFSET as usize)
            .unwrap_or_default(),
    );
    let num_sections = usize::from(header.num_sections);
    let measured: u64 = header
        .section_sizes
        .iter()
        .take(num_sections)
        .fold(0u64, |a, b| a.saturating_add(*b));
    let parallel = allow_parallel && measured >= pcr::PARALLEL_THRESHOLD;
    let mut pipe = Pipeline::new(crc, None, parallel);

    let mut seen = Seen::default();
    let mut sections = Vec::with_capacity(num_sections);
    let mut cmdline = Vec::new();
    let mut identity = None;
    let mut signature = None;
    let mut pos = HEADER_LEN;
    for index in 0..num_sections {
        let table_offset = header
            .section_offsets
            .get(index)
            .copied()
            .unwrap_or_default();
        let table_size = header.section_sizes.get(index).copied().unwrap_or_default();
        if table_offset != pos {
            return Err(invalid_at(
                EifHeader::section_offset_field(index),
                Place::Entry(index),
                "section_offsets",
                format!("{pos} (sections follow each other without gaps)"),
                table_offset,
            ));
        }
        let mut raw = [0u8; SECTION_HEADER_LEN as usize];
        let got = pcr::read_full(reader, &mut raw).map_err(|source| EifError::Io {
            offset: pos,
            source,
        })?;
        if got < raw.len() {
            return Err(EifError::Truncated {
                offset: pos + got as u64,
                what: format!("the header of section {index}"),
                end: pos + SECTION_HEADER_LEN,
            });
        }
        let section = SectionHeader::from_bytes(&raw);
        let kind = check_section(&header, &seen, index, pos, &section, table_size)?;
        let data_offset = pos + SECTION_HEADER_LEN;
        let end = data_offset.checked_add(section.size).ok_or_else(|| {
            invalid_at(
                pos + 4,
                Place::Section {
                    index,
                    kind: Some(kind),
                },
                "section_size",
                "a size that fits in the 64-bit file offset space",
                section.size,
            )
        })?;
        let role = match kind {
            SectionKind::Kernel | SectionKind::Cmdline => Role::Bootstrap,
            SectionKind::Ramdisk if seen.ramdisks == 0 => Role::Bootstrap,
            SectionKind::Ramdisk => Role::App,
            SectionKind::Metadata | SectionKind::Signature => Role::Unmeasured,
        };
        pipe.begin(Role::Unmeasured)
            .map_err(|e| pipe_error(e, pos))?;
        pipe.absorb(&raw).map_err(|e| pipe_error(e, pos))?;
        pipe.begin(role).map_err(|e| pipe_error(e, data_offset))?;
        let truncated = |got: u64| EifError::Truncated {
            offset: data_offset + got,
            what: format!(
                "{} section {index} ({} bytes of data)",
                kind.name(),
                section.size
            ),
            end,
        };
        match kind {
            SectionKind::Kernel | SectionKind::Ramdisk => {
                let got = pipe
                    .absorb_from(reader, section.size)
                    .map_err(|e| pipe_error(e, data_offset))?;
                if got < section.size {
                    return Err(truncated(got));
                }
            }
            SectionKind::Cmdline | SectionKind::Metadata | SectionKind::Signature => {
                // Sizes were checked against their limits, so this allocation is bounded.
                let mut data = vec![0u8; usize::try_from(section.size).unwrap_or_default()];
                let got = pcr::read_full(reader, &mut data).map_err(|source| EifError::Io {
                    offset: data_offset,
                    source,
                })?;
                if (got as u64) < section.size {
                    return Err(truncated(got as u64));
                }
                pipe.absorb(&data).map_err(|e| pipe_error(e, data_offset))?;
                match kind {
                    SectionKind::Cmdline => cmdline = data,
                    SectionKind::Metadata => identity = Some(parse_metadata(&data, data_offset)?),
                    _ => {
                        signature = Some(SignatureSection::parse(&data).map_err(|e| {
                            EifError::Signature {
                                offset: data_offset + e.offset,
                                reason: e.reason,
                            }
                        })?);
                    }
                }
            }
        }
        match kind {
            SectionKind::Kernel => seen.kernel = true,
            SectionKind::Cmdline => seen.cmdline = true,
            SectionKind::Ramdisk => seen.ramdisks += 1,
            SectionKind::Metadata => seen.metadata = true,
            SectionKind::Signature => seen.signature = true,
        }
        sections.push(SectionInfo {
            kind,
            offset: pos,
            size: section.size,
        });
        pos = end;
    }

    let mut probe = [0u8; 1];
    if pcr::read_full(reader, &mut probe).map_err(|source| EifError::Io {
        offset: pos,
        source,
    })? != 0
    {
        return Err(invalid(
            pos,
            "end of file",
            format!(
                "the file to end after section {} (at byte {pos})",
                num_sections.saturating_sub(1)
            ),
            "more bytes",
        ));
    }
    let missing = |what: &str| {
        invalid(
            0x1a,
            "num_sections",
            format!("a {what} section among the sections"),
            format!("{num_sections} sections without one"),
        )
    };
    if !seen.kernel {
        return Err(missing("kernel"));
    }
    if !seen.cmdline {
        return Err(missing("cmdline"));
    }
    if header.version >= 4 && !seen.metadata {
        return Err(missing("metadata (mandatory in version 4)"));
    }

    let result = pipe.finish().map_err(|e| pipe_error(e, pos))?;
    let computed = result.crc.finalize();
    if computed != header.crc32 {
        return Err(EifError::CrcMismatch {
            stored: header.crc32,
            computed,
        });
    }
    Ok(Eif {
        header,
        sections,
        cmdline,
        identity,
        measurements: Measurements {
            pcr0: result.pcr0,
            pcr1: result.pcr1,
            pcr2: result.pcr2,
            pcr8: signature.as_ref().map(SignatureSection::pcr8),
        },
        signature,
        len: pos,
    })
}

fn check_header(header: &EifHeader) -> Result<(), EifError> {
    if !(format::MIN_VERSION..=format::VERSION).contains(&header.version) {
        return Err(invalid(
            4,
            "version",
            format!("{}..={}", format::MIN_VERSION, format::VERSION),
            header.version,
        ));
    }
    if header.arch().is_none() {
        return Err(invalid(
            6,
            "flags",
            "0 (x86_64) or 1 (aarch64); other bits are reserved",
            format!("{:#06x}", header.flags),
        ));
    }
    if header.reserved != 0 {
        return Err(invalid(0x18, "reserved", 0, header.reserved));
    }
    let count = header.num_sections;
    if !(format::MIN_SECTIONS..=MAX_SECTIONS as u16).contains(&count) {
        return Err(invalid(
            0x1a,
            "num_sections",
            format!("{}..={MAX_SECTIONS}", format::MIN_SECTIONS),
            count,
        ));
    }
    for index in usize::from(count)..MAX_SECTIONS {
        if header
            .section_offsets
            .get(index)
            .copied()
            .unwrap_or_default()
            != 0
        {
            return Err(invalid_at(
                EifHeader::section_offset_field(index),
                Place::Entry(index),
                "section_offsets",
                format!("0 (only {count} sections)"),
                header
                    .section_offsets
                    .get(index)
                    .copied()
                    .unwrap_or_default(),
            ));
        }
        if header.section_sizes.get(index).copied().unwrap_or_default() != 0 {
            return Err(invalid_at(
                EifHeader::section_size_field(index),
                Place::Entry(index),
                "section_sizes",
                format!("0 (only {count} sections)"),
                header.section_sizes.get(index).copied().unwrap_or_default(),
            ));
        }
    }
    if header.unused != 0 {
        return Err(invalid(0x21c, "unused", 0, header.unused));
    }
    Ok(())
}

/// Checks a section header at `pos` against the table and the rules; returns its kind.
fn check_section(
    header: &EifHeader,
    seen: &Seen,
    index: usize,
    pos: u64,
    section: &SectionHeader,
    table_size: u64,
) -> Result<SectionKind, EifError> {
    let kind = SectionKind::from_u16(section.section_type).ok_or_else(|| {
        invalid_at(
            pos,
            Place::Section { index, kind: None },
            "section_type",
            "1 kernel, 2 cmdline, 3 ramdisk, 4 signature or 5 metadata",
            section.section_type,
        )
    })?;
    let place = Place::Section {
        index,
        kind: Some(kind),
    };
    if section.flags != 0 {
        return Err(invalid_at(
            pos + 2,
            place,
            "flags",
            "0 (reserved)",
            section.flags,
        ));
    }
    if section.size != table_size {
        return Err(invalid_at(
            pos + 4,
            place,
            "section_size",
            format!("{table_size} (section_sizes[{index}] in the header)"),
            section.size,
        ));
    }
    let (introduced, duplicate, limit) = match kind {
        SectionKind::Kernel => (2, seen.kernel, None),
        SectionKind::Cmdline => (2, seen.cmdline, Some(format::MAX_CMDLINE_SECTION_LEN)),
        SectionKind::Ramdisk => (2, false, None),
        SectionKind::Signature => (3, seen.signature, Some(format::MAX_SIGNATURE_LEN)),
        SectionKind::Metadata => (4, seen.metadata, Some(format::MAX_METADATA_LEN)),
    };
    if header.version < introduced {
        return Err(invalid_at(
            pos,
            place,
            "section_type",
            format!(
                "no {} section in a version {} file (introduced in version {introduced})",
                kind.name(),
                header.version
            ),
            kind.name(),
        ));
    }
    if duplicate {
        return Err(invalid_at(
            pos,
            place,
            "section_type",
            format!("at most one {} section", kind.name()),
            "a second one",
        ));
    }
    if kind == SectionKind::Ramdisk && !seen.kernel {
        return Err(invalid_at(
            pos,
            place,
            "section_type",
            "ramdisks after the kernel section",
            "a ramdisk before the kernel",
        ));
    }
    if let Some(limit) = limit
        && section.size > limit
    {
        return Err(invalid_at(
            pos + 4,
            place,
            "section_size",
            format!("at most {limit} bytes"),
            section.size,
        ));
    }
    Ok(kind)
}

fn parse_metadata(data: &[u8], offset: u64) -> Result<EifIdentity, EifError> {
    serde_json::from_slice(data).map_err(|e| {
        // serde_json reports line/column; compute the byte offset from them.
        let line_start: usize = data
            .split(|b| *b == b'\n')
            .take(e.line().saturating_sub(1))
            .map(|l| l.len() + 1)
            .sum();
        EifError::Metadata {
            offset: offset + (line_start + e.column().saturating_sub(1)) as u64,
            reason: e.to_string(),
        }
    })
}

fn pipe_error(e: PipeError, offset: u64) -> EifError {
    match e {
        PipeError::Read(source) | PipeError::Write(source) => EifError::Io { offset, source },
        PipeError::Worker => EifError::Io {
            offset,
            source: io::Error::other("the SHA-384 worker thread stopped"),
        },
    }
}

/// A field of the file header that breaks a rule.
fn invalid(
    offset: u64,
    field: &'static str,
    expected: impl fmt::Display,
    found: impl fmt::Display,
) -> EifError {
    invalid_at(offset, Place::Header, field, expected, found)
}

/// A field that breaks a rule, at `place`.
fn invalid_at(
    offset: u64,
    place: Place,
    field: &'static str,
    expected: impl fmt::Display,
    found: impl fmt::Display,
) -> EifError {
    EifError::Invalid {
        offset,
        place,
        field,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// Where a field that breaks a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Place {
    /// In the file header, or the file as a whole.
    Header,
    /// Entry `i` of a header table (`section_offsets[i]`, `section_sizes[i]`).
    Entry(usize),
    /// In the header of section `index` (of `kind`, once it is known).
    Section {
        /// The section's index.
        index: usize,
        /// Its kind, unless the kind itself is what is wrong.
        kind: Option<SectionKind>,
    },
}

/// Why an EIF was rejected. Every variant carries the byte offset of the problem.
#[derive(Debug)]
#[non_exhaustive]
pub enum EifError {
    /// Reading failed.
    Io {
        /// Where reading was.
        offset: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// The file ends early.
    Truncated {
        /// Where it ends.
        offset: u64,
        /// What was being read.
        what: String,
        /// Where that item would end.
        end: u64,
    },
    /// A field breaks a format rule.
    Invalid {
        /// Offset of the field.
        offset: u64,
        /// Where the field is.
        place: Place,
        /// The field or rule: a fixed name (`magic`, `version`, `num_sections`,
        /// `section_offsets`, `section_type`, `section_size`, `end of file`, ...).
        field: &'static str,
        /// What the rule requires.
        expected: String,
        /// What the file has.
        found: String,
    },
    /// The stored CRC (at offset 0x220) does not match the file.
    CrcMismatch {
        /// `eif_crc32` as stored.
        stored: u32,
        /// CRC-32 of the file without those 4 bytes.
        computed: u32,
    },
    /// The metadata section is not `EifIdentityInfo` JSON.
    Metadata {
        /// Offset of the error in the file.
        offset: u64,
        /// serde_json's message.
        reason: String,
    },
    /// The signature section cannot be read.
    Signature {
        /// Offset of the error in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl EifError {
    /// The byte offset of the problem in the file.
    #[must_use]
    pub fn offset(&self) -> u64 {
        match self {
            Self::Io { offset, .. }
            | Self::Truncated { offset, .. }
            | Self::Invalid { offset, .. }
            | Self::Metadata { offset, .. }
            | Self::Signature { offset, .. } => *offset,
            Self::CrcMismatch { .. } => format::CRC_OFFSET,
        }
    }
}

impl fmt::Display for EifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { offset, source } => {
                write!(f, "reading the EIF failed at byte {offset}: {source}")
            }
            Self::Truncated { offset, what, end } => write!(
                f,
                "EIF truncated at byte {offset}: {what} needs bytes up to {end}; the file is \
                 incomplete (interrupted copy or download?)"
            ),
            Self::Invalid {
                offset,
                place,
                field,
                expected,
                found,
            } => {
                write!(f, "invalid EIF at byte {offset} ({offset:#x}): ")?;
                match place {
                    Place::Header => write!(f, "{field}")?,
                    Place::Entry(index) => write!(f, "{field}[{index}]")?,
                    Place::Section {
                        index,
                        kind: Some(kind),
                    } => write!(f, "{} section {index} {field}", kind.name())?,
                    Place::Section { index, kind: None } => {
                        write!(f, "section {index} {field}")?;
                    }
                }
                write!(
                    f,
                    ": expected {expected}, found {found}; the file is corrupt or not an \
                     enclave image"
                )
            }
            Self::CrcMismatch { stored, computed } => write!(
                f,
                "invalid EIF at byte {} (0x220): eif_crc32: stored {stored:#010x}, computed \
                 {computed:#010x}; the file was modified or corrupted after it was built",
                format::CRC_OFFSET
            ),
            Self::Metadata { offset, reason } => write!(
                f,
                "invalid EIF metadata JSON at byte {offset}: {reason}; expected the \
                 EifIdentityInfo object (ImageName, ImageVersion, BuildMetadata, DockerInfo, \
                 CustomMetadata)"
            ),
            Self::Signature { offset, reason } => {
                write!(
                    f,
                    "invalid EIF signature section at byte {offset}: {reason}"
                )
            }
        }
    }
}

/// The underlying error's message is part of `Display`, so `source()` is not set (printing a
/// chain would repeat it).
impl core::error::Error for EifError {}
