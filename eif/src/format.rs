//! The EIF on-disk format: constants, the 548-byte header, the 12-byte section header, the
//! section types and the metadata (`EifIdentityInfo`) JSON.
//!
//! Source of every fact here: aws/aws-nitro-enclaves-image-format (`README.md` "The File
//! Format", `src/defs/mod.rs`, `src/utils/mod.rs` `EifBuilder`), version 0.8.1. All integers
//! are big-endian; sections follow the header back to back with no padding.

use serde::{Deserialize, Serialize};

/// `.eif`.
pub const MAGIC: [u8; 4] = *b".eif";
/// The version this crate writes (4 added the mandatory metadata section).
pub const VERSION: u16 = 4;
/// Oldest published version: 2 (versions 0 and 1 were never released; README "Versions").
pub const MIN_VERSION: u16 = 2;
/// Length of [`EifHeader`] on disk.
pub const HEADER_LEN: u64 = 548;
/// Length of [`SectionHeader`] on disk.
pub const SECTION_HEADER_LEN: u64 = 12;
/// Size of the header's offset and size tables (`MAX_NUM_SECTIONS`).
pub const MAX_SECTIONS: usize = 32;
/// Fewest sections a valid file has (README: `num_sections` is 2..=32).
pub const MIN_SECTIONS: u16 = 2;
/// Offset of the `eif_crc32` field, which the CRC covers everything but.
pub const CRC_OFFSET: u64 = 0x220;
/// Header flag bit 0: the image is for aarch64 (`EIF_HDR_ARCH_ARM64`); clear for x86_64.
pub const FLAG_ARCH_AARCH64: u16 = 0x1;
/// `default_mem` written by `EifBuilder` (1 GiB; unused by the hypervisor and nitro-cli).
pub const DEFAULT_MEM: u64 = 1024 * 1024 * 1024;
/// `default_cpus` written by `EifBuilder` (unused by the hypervisor and nitro-cli).
pub const DEFAULT_CPUS: u64 = 2;
/// Largest signature section (README "EifSectionSignature": `SIGNATURE_MAX_SIZE`).
pub const MAX_SIGNATURE_LEN: u64 = 32_768;
/// Largest metadata section this crate reads. The format sets no limit; nitro-cli writes the
/// `docker image inspect` JSON (a few KiB) plus at most 4096 bytes of custom metadata
/// (`MAX_META_FILE_SIZE`, `src/utils/identity.rs`). 1 MiB leaves ample room while bounding
/// what a hostile file can make us hold in memory.
pub const MAX_METADATA_LEN: u64 = 1024 * 1024;
/// Largest cmdline section this crate reads (kept in memory). The kernel itself uses at most
/// `COMMAND_LINE_SIZE` = 2048 bytes including the NUL on x86_64 and arm64
/// (`arch/*/include/uapi/asm/setup.h`); 64 KiB only bounds memory.
pub const MAX_CMDLINE_SECTION_LEN: u64 = 64 * 1024;
/// Longest cmdline this crate writes: `COMMAND_LINE_SIZE` (2048) minus the NUL the kernel
/// appends; longer ones would be truncated at boot while the PCRs measure all of it.
pub const MAX_CMDLINE_LEN: usize = 2047;

/// CPU architecture of the enclave (header flag bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Arch {
    /// x86_64: the kernel section is a bzImage.
    #[default]
    X86_64,
    /// aarch64: the kernel section is an uncompressed `Image`.
    Aarch64,
}

impl Arch {
    /// The header flags value.
    #[must_use]
    pub const fn flags(self) -> u16 {
        match self {
            Self::X86_64 => 0,
            Self::Aarch64 => FLAG_ARCH_AARCH64,
        }
    }
}

/// Section types (`EifSectionType`). 0 (`EifSectionInvalid`) and values >= 6 are invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum SectionKind {
    /// The kernel (exactly one).
    Kernel = 1,
    /// The kernel command line, no NUL terminator (exactly one).
    Cmdline = 2,
    /// One initramfs archive; all ramdisks must follow the kernel.
    Ramdisk = 3,
    /// CBOR signature of PCR0 (at most one, version >= 3).
    Signature = 4,
    /// JSON [`EifIdentity`] (exactly one in version 4).
    Metadata = 5,
}

impl SectionKind {
    /// The kind for a raw `section_type`, if valid.
    #[must_use]
    pub const fn from_u16(value: u16) -> Option<Self> {
        match value {
            1 => Some(Self::Kernel),
            2 => Some(Self::Cmdline),
            3 => Some(Self::Ramdisk),
            4 => Some(Self::Signature),
            5 => Some(Self::Metadata),
            _ => None,
        }
    }

    /// Lower-case name, as used in messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Cmdline => "cmdline",
            Self::Ramdisk => "ramdisk",
            Self::Signature => "signature",
            Self::Metadata => "metadata",
        }
    }
}

/// The 548-byte file header, field by field as stored (no validation; see the reader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EifHeader {
    /// Must be [`MAGIC`].
    pub magic: [u8; 4],
    /// Format version.
    pub version: u16,
    /// Bit 0: [`FLAG_ARCH_AARCH64`]; other bits reserved.
    pub flags: u16,
    /// Default enclave memory in bytes (unused by the hypervisor).
    pub default_mem: u64,
    /// Default vCPU count (unused by the hypervisor).
    pub default_cpus: u64,
    /// Reserved, 0.
    pub reserved: u16,
    /// Number of sections.
    pub num_sections: u16,
    /// File offset of each section's header; unused entries 0.
    pub section_offsets: [u64; MAX_SECTIONS],
    /// Data length of each section (header excluded); unused entries 0.
    pub section_sizes: [u64; MAX_SECTIONS],
    /// Reserved, 0.
    pub unused: u32,
    /// CRC-32/ISO-HDLC of the whole file except these 4 bytes.
    pub crc32: u32,
}

impl EifHeader {
    /// The header as stored on disk.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        let mut w = Writer(&mut out);
        w.put(&self.magic);
        w.put(&self.version.to_be_bytes());
        w.put(&self.flags.to_be_bytes());
        w.put(&self.default_mem.to_be_bytes());
        w.put(&self.default_cpus.to_be_bytes());
        w.put(&self.reserved.to_be_bytes());
        w.put(&self.num_sections.to_be_bytes());
        for offset in self.section_offsets {
            w.put(&offset.to_be_bytes());
        }
        for size in self.section_sizes {
            w.put(&size.to_be_bytes());
        }
        w.put(&self.unused.to_be_bytes());
        w.put(&self.crc32.to_be_bytes());
        out
    }

    /// Decodes the fields of a stored header (any values; the reader validates them).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; HEADER_LEN as usize]) -> Self {
        let mut r = Reader(bytes);
        let magic = r.array::<4>();
        let version = u16::from_be_bytes(r.array());
        let flags = u16::from_be_bytes(r.array());
        let default_mem = u64::from_be_bytes(r.array());
        let default_cpus = u64::from_be_bytes(r.array());
        let reserved = u16::from_be_bytes(r.array());
        let num_sections = u16::from_be_bytes(r.array());
        let section_offsets = std::array::from_fn(|_| u64::from_be_bytes(r.array()));
        let section_sizes = std::array::from_fn(|_| u64::from_be_bytes(r.array()));
        let unused = u32::from_be_bytes(r.array());
        let crc32 = u32::from_be_bytes(r.array());
        Self {
            magic,
            version,
            flags,
            default_mem,
            default_cpus,
            reserved,
            num_sections,
            section_offsets,
            section_sizes,
            unused,
            crc32,
        }
    }

    /// The architecture named by the flags, if bit 0 is the only flag that may be set.
    #[must_use]
    pub const fn arch(&self) -> Option<Arch> {
        match self.flags {
            0 => Some(Arch::X86_64),
            FLAG_ARCH_AARCH64 => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// Byte offset of `section_offsets[index]` within the header.
    #[must_use]
    pub const fn section_offset_field(index: usize) -> u64 {
        0x1c + 8 * index as u64
    }

    /// Byte offset of `section_sizes[index]` within the header.
    #[must_use]
    pub const fn section_size_field(index: usize) -> u64 {
        0x11c + 8 * index as u64
    }
}

/// The 12-byte header before each section's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionHeader {
    /// Raw `section_type` (see [`SectionKind::from_u16`]).
    pub section_type: u16,
    /// Reserved, 0.
    pub flags: u16,
    /// Data length; must equal the header table's entry.
    pub size: u64,
}

impl SectionHeader {
    /// A header for a section of `kind` holding `size` bytes.
    #[must_use]
    pub const fn new(kind: SectionKind, size: u64) -> Self {
        Self {
            section_type: kind as u16,
            flags: 0,
            size,
        }
    }

    /// The header as stored on disk.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; SECTION_HEADER_LEN as usize] {
        let mut out = [0u8; SECTION_HEADER_LEN as usize];
        let mut w = Writer(&mut out);
        w.put(&self.section_type.to_be_bytes());
        w.put(&self.flags.to_be_bytes());
        w.put(&self.size.to_be_bytes());
        out
    }

    /// Decodes a stored section header (any values).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; SECTION_HEADER_LEN as usize]) -> Self {
        let mut r = Reader(bytes);
        Self {
            section_type: u16::from_be_bytes(r.array()),
            flags: u16::from_be_bytes(r.array()),
            size: u64::from_be_bytes(r.array()),
        }
    }
}

/// Sequential big-endian writer over a fixed buffer whose size the caller got right.
struct Writer<'a>(&'a mut [u8]);

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let buf = std::mem::take(&mut self.0);
        let (head, tail) = buf.split_at_mut(bytes.len().min(buf.len()));
        head.copy_from_slice(bytes.get(..head.len()).unwrap_or_default());
        self.0 = tail;
    }
}

/// Sequential reader over a fixed buffer whose size the caller got right (short reads give
/// zeros, which cannot happen for the fixed-size headers above).
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let (head, tail) = self.0.split_at(N.min(self.0.len()));
        if let Some(dst) = out.get_mut(..head.len()) {
            dst.copy_from_slice(head);
        }
        self.0 = tail;
        out
    }
}

/// The metadata section's JSON, `EifIdentityInfo`. Serialised compactly with the keys in
/// this order (`ImageName`, `ImageVersion`, `BuildMetadata`, `DockerInfo`,
/// `CustomMetadata`), exactly as `EifBuilder` does, so equal values give equal bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EifIdentity {
    /// `ImageName`.
    #[serde(rename = "ImageName")]
    pub image_name: String,
    /// `ImageVersion`.
    #[serde(rename = "ImageVersion")]
    pub image_version: String,
    /// `BuildMetadata`.
    #[serde(rename = "BuildMetadata")]
    pub build: BuildInfo,
    /// `DockerInfo`: nitro-cli stores `docker image inspect` output; `null` when not built
    /// from a docker image.
    #[serde(rename = "DockerInfo")]
    pub docker_info: serde_json::Value,
    /// `CustomMetadata`: a user JSON value or `null`.
    #[serde(rename = "CustomMetadata")]
    pub custom_metadata: serde_json::Value,
}

impl EifIdentity {
    /// Identity with `null` docker and custom metadata.
    #[must_use]
    pub fn new(
        image_name: impl Into<String>,
        image_version: impl Into<String>,
        build: BuildInfo,
    ) -> Self {
        Self {
            image_name: image_name.into(),
            image_version: image_version.into(),
            build,
            docker_info: serde_json::Value::Null,
            custom_metadata: serde_json::Value::Null,
        }
    }

    /// The compact JSON bytes written to the metadata section.
    ///
    /// # Errors
    /// Only if a `serde_json::Value` cannot be serialised, which does not happen for values
    /// built by serde_json itself.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// `BuildMetadata` (`EifBuildInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// `BuildTime`, RFC 3339 (from [`crate::SourceDateEpoch::rfc3339`] for reproducible
    /// builds).
    #[serde(rename = "BuildTime")]
    pub build_time: String,
    /// `BuildTool`.
    #[serde(rename = "BuildTool")]
    pub build_tool: String,
    /// `BuildToolVersion`.
    #[serde(rename = "BuildToolVersion")]
    pub build_tool_version: String,
    /// `OperatingSystem` (nitro-cli: from the kernel config, e.g. `Linux`).
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    /// `KernelVersion` (nitro-cli: from the kernel config, e.g. `4.14.256`).
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
}

impl BuildInfo {
    /// Build information whose `BuildTime` is `epoch` (never the current time).
    #[must_use]
    pub fn new(
        epoch: crate::SourceDateEpoch,
        build_tool: impl Into<String>,
        build_tool_version: impl Into<String>,
        operating_system: impl Into<String>,
        kernel_version: impl Into<String>,
    ) -> Self {
        Self {
            build_time: epoch.rfc3339(),
            build_tool: build_tool.into(),
            build_tool_version: build_tool_version.into(),
            operating_system: operating_system.into(),
            kernel_version: kernel_version.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_layout() {
        let mut header = EifHeader {
            magic: MAGIC,
            version: VERSION,
            flags: 0,
            default_mem: DEFAULT_MEM,
            default_cpus: DEFAULT_CPUS,
            reserved: 0,
            num_sections: 6,
            section_offsets: [0; MAX_SECTIONS],
            section_sizes: [0; MAX_SECTIONS],
            unused: 0,
            crc32: 0xdead_beef,
        };
        header.section_offsets[31] = 0x0102_0304_0506_0708;
        header.section_sizes[0] = 7;
        let bytes = header.to_bytes();
        assert_eq!(
            &bytes[..0x1c],
            &[
                0x2e, 0x65, 0x69, 0x66, 0, 4, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                2, 0, 0, 0, 6
            ]
        );
        assert_eq!(&bytes[0x114..0x11c], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[0x11c..0x124], &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&bytes[0x220..], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(EifHeader::from_bytes(&bytes), header);
        assert_eq!(EifHeader::section_offset_field(31), 0x114);
        assert_eq!(EifHeader::section_size_field(0), 0x11c);

        let section = SectionHeader::new(SectionKind::Metadata, 0x1234);
        assert_eq!(
            section.to_bytes(),
            [0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34]
        );
        assert_eq!(SectionHeader::from_bytes(&section.to_bytes()), section);
    }

    #[test]
    fn identity_json_key_order() {
        let identity = EifIdentity::new(
            "test-img",
            "1.2.3",
            BuildInfo {
                build_time: "2024-01-01T00:00:00+00:00".into(),
                build_tool: "peer".into(),
                build_tool_version: "0.0.1".into(),
                operating_system: "Linux".into(),
                kernel_version: "4.14".into(),
            },
        );
        let mut identity = identity;
        identity.docker_info = serde_json::json!({"Id": "sha256:abc"});
        // The metadata of a file written by EifBuilder 0.8.1 (research notes §1.5).
        assert_eq!(
            String::from_utf8(identity.to_json().unwrap()).unwrap(),
            r#"{"ImageName":"test-img","ImageVersion":"1.2.3","BuildMetadata":{"BuildTime":"2024-01-01T00:00:00+00:00","BuildTool":"peer","BuildToolVersion":"0.0.1","OperatingSystem":"Linux","KernelVersion":"4.14"},"DockerInfo":{"Id":"sha256:abc"},"CustomMetadata":null}"#
        );
    }
}
