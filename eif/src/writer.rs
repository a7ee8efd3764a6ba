//! Writing an EIF v4 in one streaming pass, computing its CRC and PCRs on the way.
//!
//! Output is byte-identical to aws-nitro-enclaves-image-format's `EifBuilder` (0.8.1) given
//! the same inputs: sections kernel, cmdline, metadata, ramdisks (in the order added), then
//! the signature when signing; header version 4, flags = architecture, `default_mem` 1 GiB,
//! `default_cpus` 2; compact metadata JSON. With `BuildTime` taken from
//! `SOURCE_DATE_EPOCH`, the same inputs always give the same file.
//!
//! The header (which holds the sizes and the CRC) is written last: a 548-byte placeholder
//! first, then each section streamed from its source, then the real header over the
//! placeholder. Its CRC is the CRC of the header bytes combined with the CRC of the
//! sections (crc32fast `combine`), so nothing is read twice.

use crate::format::{
    self, Arch, EifHeader, EifIdentity, HEADER_LEN, MAX_SECTIONS, SectionHeader, SectionKind,
};
use crate::pcr::{self, Measurements, Pcr, PipeError, Pipeline, Role};
use crate::signature::{PcrSigner, SignerError};
use std::fmt;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Something that provides one section's bytes, with the length known up front (the
/// header records it before the data).
pub trait SectionSource {
    /// Exact number of bytes [`SectionSource::write_into`] writes.
    fn len(&self) -> u64;

    /// True when the section is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the bytes. Called once per build (twice if the caller builds twice).
    ///
    /// # Errors
    /// Any I/O error; it is reported as [`BuildError::Source`].
    fn write_into(&self, out: &mut dyn Write) -> io::Result<()>;
}

impl SectionSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn write_into(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self)
    }
}

impl SectionSource for Vec<u8> {
    fn len(&self) -> u64 {
        Vec::len(self) as u64
    }

    fn write_into(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self)
    }
}

impl SectionSource for crate::cpio::Archive {
    fn len(&self) -> u64 {
        self.encoded_len()
    }

    fn write_into(&self, out: &mut dyn Write) -> io::Result<()> {
        self.write_to(out).map(|_| ()).map_err(|e| match e {
            crate::cpio::ArchiveError::Write(e) => e,
            other => io::Error::other(other),
        })
    }
}

/// A host file streamed into a section (its length is taken when opened; a different
/// length at build time is an error).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    len: u64,
}

impl FileSource {
    /// Records `path` and its current length.
    ///
    /// # Errors
    /// When the file's metadata cannot be read or it is not a regular file.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(Self {
            path,
            len: meta.len(),
        })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SectionSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn write_into(&self, out: &mut dyn Write) -> io::Result<()> {
        let file = std::fs::File::open(&self.path)?;
        io::copy(&mut io::BufReader::with_capacity(256 * 1024, file), out)?;
        Ok(())
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The header as written (with the CRC).
    pub header: EifHeader,
    /// PCR0/1/2 and, when signed, PCR8.
    pub measurements: Measurements,
    /// Total bytes written.
    pub len: u64,
}

/// Builds an EIF v4 from a kernel, a command line, ramdisks and identity metadata.
///
/// ```
/// use ccc_eif::{BuildInfo, EifBuilder, EifIdentity, SourceDateEpoch, Eif};
/// let epoch = SourceDateEpoch::from_secs(1_700_000_000);
/// let identity = EifIdentity::new("app", "1.0", BuildInfo::new(epoch, "ccc", "0.1.0", "Linux", "6.12"));
/// let kernel = vec![0u8; 1000];
/// let bootstrap = vec![1u8; 124];
/// let (bytes, built) = EifBuilder::new(&kernel, "console=ttyS0", identity)
///     .ramdisk(&bootstrap)
///     .to_vec()?;
/// assert_eq!(Eif::from_bytes(&bytes)?.measurements, built.measurements);
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
pub struct EifBuilder<'a> {
    kernel: &'a dyn SectionSource,
    cmdline: String,
    ramdisks: Vec<&'a dyn SectionSource>,
    identity: EifIdentity,
    arch: Arch,
    default_mem: u64,
    default_cpus: u64,
    signer: Option<&'a dyn PcrSigner>,
}

impl fmt::Debug for EifBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EifBuilder")
            .field("kernel_len", &self.kernel.len())
            .field("cmdline", &self.cmdline)
            .field(
                "ramdisk_lens",
                &self.ramdisks.iter().map(|r| r.len()).collect::<Vec<_>>(),
            )
            .field("identity", &self.identity)
            .field("arch", &self.arch)
            .field("signed", &self.signer.is_some())
            .finish()
    }
}

impl<'a> EifBuilder<'a> {
    /// A builder for an x86_64 image with no ramdisks yet.
    ///
    /// `cmdline` is stored as is: no NUL terminator, no trailing newline (it is checked when
    /// building).
    #[must_use]
    pub fn new(
        kernel: &'a dyn SectionSource,
        cmdline: impl Into<String>,
        identity: EifIdentity,
    ) -> Self {
        Self {
            kernel,
            cmdline: cmdline.into(),
            ramdisks: Vec::new(),
            identity,
            arch: Arch::X86_64,
            default_mem: format::DEFAULT_MEM,
            default_cpus: format::DEFAULT_CPUS,
            signer: None,
        }
    }

    /// Appends a ramdisk. The first one is the bootstrap ramdisk (PCR1), the others the
    /// application (PCR2).
    #[must_use]
    pub fn ramdisk(mut self, ramdisk: &'a dyn SectionSource) -> Self {
        self.ramdisks.push(ramdisk);
        self
    }

    /// Sets the architecture flag (default x86_64).
    #[must_use]
    pub fn arch(mut self, arch: Arch) -> Self {
        self.arch = arch;
        self
    }

    /// Overrides the header's `default_mem` and `default_cpus` (unused by the hypervisor;
    /// the defaults match `EifBuilder`).
    #[must_use]
    pub fn defaults(mut self, default_mem: u64, default_cpus: u64) -> Self {
        self.default_mem = default_mem;
        self.default_cpus = default_cpus;
        self
    }

    /// Signs the image: a signature section of PCR0 is appended and PCR8 measures the
    /// signer's certificate.
    #[must_use]
    pub fn signer(mut self, signer: &'a dyn PcrSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Writes the image at the current position of `out` (normally the start of a new
    /// file), streaming every source once, and returns its header and measurements.
    /// `out` is left positioned after the image.
    ///
    /// # Errors
    /// [`BuildError`]: invalid cmdline, too many sections, a source failing or writing a
    /// different length than it declared, the output failing, signing failing.
    pub fn write_to<W: Write + Seek>(&self, out: &mut W) -> Result<Built, BuildError> {
        self.check_cmdline()?;
        let metadata = self.identity.to_json().map_err(BuildError::Metadata)?;
        let cmdline = self.cmdline.as_bytes().to_vec();
        let mut sections: Vec<(SectionKind, &dyn SectionSource, Role)> = vec![
            (SectionKind::Kernel, self.kernel, Role::Bootstrap),
            (SectionKind::Cmdline, &cmdline, Role::Bootstrap),
            (SectionKind::Metadata, &metadata, Role::Unmeasured),
        ];
        for (i, ramdisk) in self.ramdisks.iter().enumerate() {
            let role = if i == 0 { Role::Bootstrap } else { Role::App };
            sections.push((SectionKind::Ramdisk, *ramdisk, role));
        }
        let count = sections.len() + usize::from(self.signer.is_some());
        if count > MAX_SECTIONS {
            return Err(BuildError::TooManySections { count });
        }

        let start = out.stream_position().map_err(BuildError::Output)?;
        out.write_all(&[0u8; HEADER_LEN as usize])
            .map_err(BuildError::Output)?;
        let mut offsets = [0u64; MAX_SECTIONS];
        let mut sizes = [0u64; MAX_SECTIONS];
        let measured: u64 = sections
            .iter()
            .filter(|(_, _, role)| *role != Role::Unmeasured)
            .map(|(_, s, _)| s.len())
            .sum();
        let mut pos = HEADER_LEN;
        let result = {
            let mut pipe = Pipeline::new(
                crc32fast::Hasher::new(),
                Some(out as &mut dyn Write),
                measured >= pcr::PARALLEL_THRESHOLD,
            );
            for (index, (kind, source, role)) in sections.iter().enumerate() {
                let len = source.len();
                if let (Some(o), Some(s)) = (offsets.get_mut(index), sizes.get_mut(index)) {
                    *o = pos;
                    *s = len;
                }
                let name = section_name(*kind, index);
                pipe.begin(Role::Unmeasured)
                    .map_err(|e| pipe_error(e, &name))?;
                pipe.absorb(&SectionHeader::new(*kind, len).to_bytes())
                    .map_err(|e| pipe_error(e, &name))?;
                pipe.begin(*role).map_err(|e| pipe_error(e, &name))?;
                let mut sink = Sink {
                    pipe: &mut pipe,
                    remaining: len,
                    error: None,
                };
                let written = source.write_into(&mut sink);
                let (remaining, error) = (sink.remaining, sink.error.take());
                match (written, error) {
                    (_, Some(e)) => return Err(pipe_error(e, &name)),
                    (Err(source), None) if source.kind() == io::ErrorKind::WriteZero => {
                        return Err(BuildError::SectionLength {
                            section: name,
                            declared: len,
                            written: None,
                        });
                    }
                    (Err(source), None) => {
                        return Err(BuildError::Source {
                            section: name,
                            source,
                        });
                    }
                    (Ok(()), None) if remaining != 0 => {
                        return Err(BuildError::SectionLength {
                            section: name,
                            declared: len,
                            written: Some(len - remaining),
                        });
                    }
                    (Ok(()), None) => {}
                }
                pos += format::SECTION_HEADER_LEN + len;
            }
            pipe.finish().map_err(|e| pipe_error(e, "the image"))?
        };
        let mut crc = result.crc;
        let pcr8 = self.signer.map(|s| Pcr::of_content(s.certificate_der()));
        if let Some(signer) = self.signer {
            let signature = signer
                .signature_section(&result.pcr0)
                .map_err(BuildError::Sign)?;
            let len = signature.len() as u64;
            if len > format::MAX_SIGNATURE_LEN {
                return Err(BuildError::Sign(SignerError::TooLarge {
                    len,
                    limit: format::MAX_SIGNATURE_LEN,
                }));
            }
            let index = sections.len();
            if let (Some(o), Some(s)) = (offsets.get_mut(index), sizes.get_mut(index)) {
                *o = pos;
                *s = len;
            }
            let header = SectionHeader::new(SectionKind::Signature, len).to_bytes();
            for part in [&header[..], &signature] {
                crc.update(part);
                out.write_all(part).map_err(BuildError::Output)?;
            }
            pos += format::SECTION_HEADER_LEN + len;
        }

        let mut header = EifHeader {
            magic: format::MAGIC,
            version: format::VERSION,
            flags: self.arch.flags(),
            default_mem: self.default_mem,
            default_cpus: self.default_cpus,
            reserved: 0,
            // count <= MAX_SECTIONS (32) was checked above.
            num_sections: u16::try_from(count).unwrap_or(u16::MAX),
            section_offsets: offsets,
            section_sizes: sizes,
            unused: 0,
            crc32: 0,
        };
        let mut whole = crc32fast::Hasher::new();
        whole.update(
            header
                .to_bytes()
                .get(..format::CRC_OFFSET as usize)
                .unwrap_or_default(),
        );
        whole.combine(&crc);
        header.crc32 = whole.finalize();
        out.seek(SeekFrom::Start(start))
            .map_err(BuildError::Output)?;
        out.write_all(&header.to_bytes())
            .map_err(BuildError::Output)?;
        out.seek(SeekFrom::Start(start + pos))
            .map_err(BuildError::Output)?;
        out.flush().map_err(BuildError::Output)?;
        Ok(Built {
            header,
            measurements: Measurements {
                pcr0: result.pcr0,
                pcr1: result.pcr1,
                pcr2: result.pcr2,
                pcr8,
            },
            len: pos,
        })
    }

    /// Writes the image to a new file at `path` (truncating an existing one).
    ///
    /// # Errors
    /// As [`EifBuilder::write_to`], plus [`BuildError::Output`] when the file cannot be
    /// created.
    pub fn write_file(&self, path: &Path) -> Result<Built, BuildError> {
        let file = std::fs::File::create(path).map_err(BuildError::Output)?;
        let mut out = io::BufWriter::with_capacity(1024 * 1024, file);
        let built = self.write_to(&mut out)?;
        out.into_inner()
            .map_err(|e| BuildError::Output(e.into_error()))?
            .sync_all()
            .map_err(BuildError::Output)?;
        Ok(built)
    }

    /// The image in memory.
    ///
    /// # Errors
    /// As [`EifBuilder::write_to`].
    pub fn to_vec(&self) -> Result<(Vec<u8>, Built), BuildError> {
        let mut out = io::Cursor::new(Vec::new());
        let built = self.write_to(&mut out)?;
        Ok((out.into_inner(), built))
    }

    /// The header and measurements the image would have, without writing it (sources are
    /// still read once). A signed image is signed and the signature discarded.
    ///
    /// # Errors
    /// As [`EifBuilder::write_to`].
    pub fn measure(&self) -> Result<Built, BuildError> {
        self.write_to(&mut Discard(0))
    }

    fn check_cmdline(&self) -> Result<(), BuildError> {
        let reason = if self.cmdline.contains('\0') {
            Some("it contains a NUL byte (the kernel would stop reading there)")
        } else if self.cmdline.ends_with(|c: char| c.is_ascii_whitespace()) {
            Some(
                "it ends with whitespace; trim it (nitro-cli trims the cmdline file before building)",
            )
        } else if self.cmdline.len() > format::MAX_CMDLINE_LEN {
            Some(
                "it is longer than 2047 bytes; the kernel keeps only COMMAND_LINE_SIZE (2048) bytes including the NUL",
            )
        } else {
            None
        };
        reason.map_or(Ok(()), |reason| Err(BuildError::InvalidCmdline { reason }))
    }
}

fn section_name(kind: SectionKind, index: usize) -> String {
    match kind {
        SectionKind::Ramdisk => format!("ramdisk {}", index.saturating_sub(3)),
        other => other.name().to_owned(),
    }
}

/// Feeds a section's bytes into the pipeline, refusing more than declared.
struct Sink<'p, 'w> {
    pipe: &'p mut Pipeline<'w>,
    remaining: u64,
    error: Option<PipeError>,
}

impl Write for Sink<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "more bytes than the declared section length",
            ));
        }
        if let Err(e) = self.pipe.absorb(buf) {
            self.error = Some(e);
            return Err(io::Error::other("the EIF output failed"));
        }
        self.remaining -= buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An output that only counts (for [`EifBuilder::measure`]).
struct Discard(u64);

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Discard {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        if let SeekFrom::Start(p) = pos {
            self.0 = p;
        }
        Ok(self.0)
    }
}

fn pipe_error(e: PipeError, section: &str) -> BuildError {
    match e {
        PipeError::Write(source) => BuildError::Output(source),
        PipeError::Read(source) => BuildError::Source {
            section: section.to_owned(),
            source,
        },
        PipeError::Worker => {
            BuildError::Output(io::Error::other("the SHA-384 worker thread stopped"))
        }
    }
}

/// Signs a built, unsigned image: appends its signature section (as AWS's
/// `EifSigner::sign_image` and `nitro-cli build-enclave --private-key` do: the section goes
/// last) and rewrites the header's section table and CRC. Every byte after the header is the
/// unsigned image's, so PCR0, PCR1 and PCR2 do not change; PCR8 is the certificate's.
/// Returns the signed image and its measurements.
///
/// # Errors
/// [`BuildError::NotAnImage`] when `unsigned` is not a valid EIF, [`BuildError::AlreadySigned`],
/// [`BuildError::TooManySections`], or [`BuildError::Sign`].
pub fn sign_image(
    unsigned: &[u8],
    signer: &dyn PcrSigner,
) -> Result<(Vec<u8>, Measurements), BuildError> {
    let eif =
        crate::Eif::from_bytes(unsigned).map_err(|e| BuildError::NotAnImage(e.to_string()))?;
    if eif.signature.is_some() {
        return Err(BuildError::AlreadySigned);
    }
    let signature = signer
        .signature_section(&eif.measurements.pcr0)
        .map_err(BuildError::Sign)?;
    let len = signature.len() as u64;
    if len > format::MAX_SIGNATURE_LEN {
        return Err(BuildError::Sign(SignerError::TooLarge {
            len,
            limit: format::MAX_SIGNATURE_LEN,
        }));
    }
    let mut header = eif.header;
    let index = usize::from(header.num_sections);
    let (Some(offset), Some(size)) = (
        header.section_offsets.get_mut(index),
        header.section_sizes.get_mut(index),
    ) else {
        return Err(BuildError::TooManySections { count: index + 1 });
    };
    *offset = unsigned.len() as u64;
    *size = len;
    header.num_sections += 1;
    header.crc32 = 0;
    let body = unsigned.get(HEADER_LEN as usize..).unwrap_or_default();
    let section_header = SectionHeader::new(SectionKind::Signature, len).to_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(
        header
            .to_bytes()
            .get(..format::CRC_OFFSET as usize)
            .unwrap_or_default(),
    );
    for part in [body, &section_header[..], &signature] {
        crc.update(part);
    }
    header.crc32 = crc.finalize();
    let mut out = Vec::with_capacity(unsigned.len() + section_header.len() + signature.len());
    for part in [
        &header.to_bytes()[..],
        body,
        &section_header[..],
        &signature,
    ] {
        out.extend_from_slice(part);
    }
    let measurements = Measurements {
        pcr8: Some(Pcr::of_content(signer.certificate_der())),
        ..eif.measurements
    };
    Ok((out, measurements))
}

/// Why an image could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The kernel command line cannot be stored as is.
    InvalidCmdline {
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// More than 32 sections (kernel, cmdline, metadata, ramdisks, signature).
    TooManySections {
        /// How many the image would have.
        count: usize,
    },
    /// A source wrote a different number of bytes than its `len()`.
    SectionLength {
        /// `kernel`, `cmdline`, `metadata`, `ramdisk N`.
        section: String,
        /// `len()`.
        declared: u64,
        /// Bytes written (`None`: more than declared).
        written: Option<u64>,
    },
    /// A source failed.
    Source {
        /// Which section.
        section: String,
        /// Its error.
        source: io::Error,
    },
    /// Writing the image failed.
    Output(io::Error),
    /// The metadata could not be serialised.
    Metadata(serde_json::Error),
    /// The signer failed.
    Sign(SignerError),
    /// The image given to [`sign_image`] is not a valid EIF (the reader's reason).
    NotAnImage(String),
    /// The image given to [`sign_image`] is signed already.
    AlreadySigned,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCmdline { reason } => write!(f, "invalid kernel command line: {reason}"),
            Self::TooManySections { count } => write!(
                f,
                "the image would have {count} sections; an EIF holds at most {MAX_SECTIONS} \
                 (kernel, cmdline, metadata, ramdisks, signature): merge ramdisks"
            ),
            Self::SectionLength {
                section,
                declared,
                written: Some(written),
            } => write!(
                f,
                "the {section} source declared {declared} bytes but wrote {written}; did the \
                 input change while the image was built?"
            ),
            Self::SectionLength {
                section,
                declared,
                written: None,
            } => write!(
                f,
                "the {section} source declared {declared} bytes but wrote more; did the input \
                 change while the image was built?"
            ),
            Self::Source { section, source } => write!(f, "reading the {section} failed: {source}"),
            Self::Output(source) => write!(f, "writing the EIF failed: {source}"),
            Self::Metadata(source) => write!(f, "serialising the EIF metadata failed: {source}"),
            Self::Sign(error) => write!(f, "signing the EIF failed: {error}"),
            Self::NotAnImage(reason) => {
                write!(f, "the image to sign is not a valid EIF: {reason}")
            }
            Self::AlreadySigned => f.write_str(
                "the image to sign is signed already; sign the unsigned image the build produced",
            ),
        }
    }
}

/// The underlying error's message is part of `Display`, so `source()` is not set (printing a
/// chain would repeat it).
impl core::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildInfo, SourceDateEpoch};

    fn identity() -> EifIdentity {
        EifIdentity::new(
            "t",
            "1",
            BuildInfo::new(SourceDateEpoch::UNIX_EPOCH, "t", "1", "Linux", "6"),
        )
    }

    /// Declares one length and writes another.
    struct Liar {
        declared: u64,
        writes: usize,
    }

    impl SectionSource for Liar {
        fn len(&self) -> u64 {
            self.declared
        }

        fn write_into(&self, out: &mut dyn Write) -> io::Result<()> {
            out.write_all(&vec![7u8; self.writes])
        }
    }

    #[test]
    fn sources_must_write_their_declared_length() {
        let kernel = vec![1u8; 10];
        for (declared, writes, expected) in [(10, 5, Some(5)), (10, 11, None)] {
            let liar = Liar { declared, writes };
            let err = EifBuilder::new(&kernel, "c", identity())
                .ramdisk(&liar)
                .to_vec()
                .unwrap_err();
            assert!(
                matches!(
                    &err,
                    BuildError::SectionLength { section, declared: d, written }
                        if section == "ramdisk 0" && *d == declared && *written == expected
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn cmdline_rules() {
        let kernel = vec![1u8; 10];
        for bad in ["a\0b", "console=ttyS0\n", "x ", &"a".repeat(2048)] {
            let err = EifBuilder::new(&kernel, bad, identity())
                .to_vec()
                .unwrap_err();
            assert!(
                matches!(err, BuildError::InvalidCmdline { .. }),
                "{bad:?}: {err}"
            );
        }
        EifBuilder::new(&kernel, "a".repeat(2047), identity())
            .to_vec()
            .unwrap();
        EifBuilder::new(&kernel, "", identity()).to_vec().unwrap();
    }

    #[test]
    fn at_most_32_sections() {
        let kernel = vec![1u8; 10];
        let ramdisk = vec![2u8; 4];
        let mut builder = EifBuilder::new(&kernel, "c", identity());
        for _ in 0..29 {
            builder = builder.ramdisk(&ramdisk);
        }
        let (bytes, built) = builder.to_vec().unwrap();
        assert_eq!(built.header.num_sections, 32);
        assert_eq!(crate::Eif::from_bytes(&bytes).unwrap().sections.len(), 32);
        let err = builder.ramdisk(&ramdisk).to_vec().unwrap_err();
        assert!(
            matches!(err, BuildError::TooManySections { count: 33 }),
            "{err}"
        );
    }

    #[test]
    fn writes_at_the_current_position_and_leaves_the_cursor_at_the_end() {
        let kernel = vec![1u8; 1000];
        let builder = EifBuilder::new(&kernel, "c", identity())
            .defaults(512 << 20, 4)
            .arch(Arch::Aarch64);
        let (alone, built) = builder.to_vec().unwrap();
        let mut out = io::Cursor::new(b"prefix".to_vec());
        out.seek(SeekFrom::End(0)).unwrap();
        builder.write_to(&mut out).unwrap();
        assert_eq!(out.position(), 6 + built.len);
        assert_eq!(&out.get_ref()[6..], &alone[..]);
        assert_eq!(builder.measure().unwrap().measurements, built.measurements);
        let eif = crate::Eif::from_bytes(&alone).unwrap();
        assert_eq!(eif.arch(), Arch::Aarch64);
        assert_eq!(
            (eif.header.default_mem, eif.header.default_cpus),
            (512 << 20, 4)
        );
    }
}
