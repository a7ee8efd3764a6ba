//! Deterministic cpio "newc" archives (the SVR4 format with magic `070701` that the Linux
//! initramfs unpacker reads): an in-memory tree, written sorted, with fixed metadata.
//!
//! Determinism rules (the same tree always gives the same bytes, whatever the insertion order
//! or the host it is built on):
//! - entries are sorted bytewise by path; a directory therefore always precedes its contents,
//!   which the kernel needs (it creates files with `open(O_CREAT)`, not `mkdir -p`);
//! - every parent directory is an explicit entry;
//! - mtime = `SOURCE_DATE_EPOCH`, uid = gid = 0, device numbers 0, check 0;
//! - modes are fixed: directories 0755, files 0644 or 0755 ([`FileMode`]), symlinks 0777;
//! - inode numbers are 1, 2, 3, ... in path order; `nlink` is 2 + the number of
//!   subdirectories for a directory and 1 otherwise (no hard links, so the kernel's
//!   hard-link detection, which applies to regular files with `nlink >= 2`, never triggers);
//! - header + name and file data are each padded with NULs to a multiple of 4 bytes, and the
//!   archive ends with a `TRAILER!!!` entry, so its length is a multiple of 4: the kernel only
//!   recognises a following archive (the next EIF ramdisk) at a 4-byte-aligned offset
//!   (torvalds/linux `init/initramfs.c`, `unpack_to_rootfs`).
//!
//! Format reference: `man 5 cpio` ("New ASCII Format") and the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`.
//!
//! Compression: none. nitro-cli's ramdisks are uncompressed (its linuxkit
//! `kernel+initrd-nogz` format), and a gzip stream's bytes depend on the deflate
//! implementation and its version, which would tie PCR1/PCR2 to a library version.

use crate::SourceDateEpoch;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The newc magic.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Length of a newc header: the magic and 13 fields of 8 hex digits.
pub const HEADER_LEN: u64 = 110;
/// The name of the entry that ends an archive.
pub const TRAILER_NAME: &[u8] = b"TRAILER!!!";
/// Longest path accepted, in bytes: Linux `PATH_MAX` (4096, `include/uapi/linux/limits.h`)
/// counts the NUL; the kernel's unpacker rejects longer names (`init/initramfs.c`,
/// `do_header`: `name_len > PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4095;
/// Longest path component, in bytes: Linux `NAME_MAX` (`include/uapi/linux/limits.h`).
pub const MAX_COMPONENT_LEN: usize = 255;
/// Largest file: `c_filesize` is 8 hex digits.
pub const MAX_FILE_LEN: u64 = u32::MAX as u64;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const DIR_PERMISSIONS: u32 = 0o755;
const SYMLINK_PERMISSIONS: u32 = 0o777;

/// Permissions of a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileMode {
    /// 0644: data, configuration, `/cmd`, `/env`.
    Regular,
    /// 0755: programs, including `/init`.
    Executable,
}

impl FileMode {
    /// The permission bits (without the file type).
    #[must_use]
    pub const fn permissions(self) -> u32 {
        match self {
            Self::Regular => 0o644,
            Self::Executable => 0o755,
        }
    }
}

/// Where a file's bytes come from.
#[derive(Clone)]
enum Content {
    Bytes(Vec<u8>),
    /// Read when the archive is written; the length is fixed when the file is added.
    Host {
        path: PathBuf,
        len: u64,
    },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::Host { len, .. } => *len,
        }
    }
}

#[derive(Clone)]
enum Node {
    Dir,
    File { content: Content, mode: FileMode },
    Symlink { target: Vec<u8> },
}

/// A deterministic cpio newc archive under construction: a tree of directories, files and
/// symlinks keyed by their path inside the archive (relative, `/`-separated, e.g.
/// `rootfs/bin/app`).
///
/// ```
/// use ccc_eif::{cpio::{Archive, FileMode}, SourceDateEpoch};
/// let mut archive = Archive::new(SourceDateEpoch::UNIX_EPOCH);
/// archive.add_file("rootfs/etc/hostname", b"enclave\n".to_vec(), FileMode::Regular)?;
/// let bytes = archive.to_vec()?;
/// assert_eq!(bytes.len() as u64, archive.encoded_len());
/// assert_eq!(bytes.len() % 4, 0);
/// # Ok::<(), ccc_eif::cpio::ArchiveError>(())
/// ```
#[derive(Clone)]
pub struct Archive {
    mtime: SourceDateEpoch,
    nodes: BTreeMap<Vec<u8>, Node>,
}

impl fmt::Debug for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Archive")
            .field("mtime", &self.mtime)
            .field("entries", &self.nodes.len())
            .field("encoded_len", &self.encoded_len())
            .finish()
    }
}

impl Archive {
    /// An empty archive whose entries will all carry `mtime`.
    #[must_use]
    pub fn new(mtime: SourceDateEpoch) -> Self {
        Self {
            mtime,
            nodes: BTreeMap::new(),
        }
    }

    /// Number of entries (directories, files, symlinks; the trailer not counted).
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the archive has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a directory (mode 0755) and its missing parents. Adding an existing directory
    /// again is allowed and changes nothing.
    ///
    /// # Errors
    /// [`ArchiveError::InvalidPath`], or [`ArchiveError::Conflict`] when the path or a parent
    /// is already a file or symlink.
    pub fn add_dir(&mut self, path: impl AsRef<[u8]>) -> Result<(), ArchiveError> {
        let path = path.as_ref();
        validate_path(path)?;
        self.add_parents(path)?;
        match self.nodes.get(path) {
            Some(Node::Dir) => Ok(()),
            Some(_) => Err(ArchiveError::Conflict {
                path: lossy(path),
                existing: lossy(path),
            }),
            None => {
                self.nodes.insert(path.to_vec(), Node::Dir);
                Ok(())
            }
        }
    }

    /// Adds a regular file with the given contents and its missing parent directories.
    ///
    /// # Errors
    /// [`ArchiveError::InvalidPath`], [`ArchiveError::FileTooLarge`], or
    /// [`ArchiveError::Conflict`] when the path exists or a parent is not a directory.
    pub fn add_file(
        &mut self,
        path: impl AsRef<[u8]>,
        contents: impl Into<Vec<u8>>,
        mode: FileMode,
    ) -> Result<(), ArchiveError> {
        self.add_leaf(
            path.as_ref(),
            Node::File {
                content: Content::Bytes(contents.into()),
                mode,
            },
        )
    }

    /// Adds a regular file whose bytes are read from `host_path` when the archive is written
    /// (streaming; the file is not loaded now). Its length is recorded now, and writing fails
    /// if the file changed size in between. The host file's own metadata is ignored: the
    /// mode is `mode`, the owner root, the mtime the archive's.
    ///
    /// # Errors
    /// As [`Archive::add_file`], plus [`ArchiveError::Host`] when the file cannot be
    /// inspected and [`ArchiveError::UnsupportedFileType`] when it is not a regular file.
    pub fn add_host_file(
        &mut self,
        path: impl AsRef<[u8]>,
        host_path: &Path,
        mode: FileMode,
    ) -> Result<(), ArchiveError> {
        let meta = std::fs::metadata(host_path).map_err(|source| ArchiveError::Host {
            path: host_path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            return Err(ArchiveError::UnsupportedFileType {
                path: host_path.to_path_buf(),
            });
        }
        self.add_leaf(
            path.as_ref(),
            Node::File {
                content: Content::Host {
                    path: host_path.to_path_buf(),
                    len: meta.len(),
                },
                mode,
            },
        )
    }

    /// Adds a symbolic link (mode 0777) pointing at `target` (stored verbatim; it may be
    /// absolute or relative and need not exist), and its missing parent directories.
    ///
    /// # Errors
    /// [`ArchiveError::InvalidPath`], [`ArchiveError::InvalidSymlinkTarget`], or
    /// [`ArchiveError::Conflict`].
    pub fn add_symlink(
        &mut self,
        path: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> Result<(), ArchiveError> {
        let target = target.as_ref();
        if target.is_empty() || target.contains(&0) || target.len() > MAX_PATH_LEN {
            return Err(ArchiveError::InvalidSymlinkTarget {
                path: lossy(path.as_ref()),
                target: lossy(target),
            });
        }
        self.add_leaf(
            path.as_ref(),
            Node::Symlink {
                target: target.to_vec(),
            },
        )
    }

    /// Adds everything under the host directory `host_dir` below `prefix` (an archive path,
    /// or empty for the archive root): directories, regular files (streamed at write time,
    /// [`FileMode::Executable`] when any execute bit is set on the host, else
    /// [`FileMode::Regular`]) and symlinks (not followed). All other host metadata (owner,
    /// times, other permission bits) is ignored.
    ///
    /// # Errors
    /// [`ArchiveError::Host`] on I/O errors, [`ArchiveError::UnsupportedFileType`] for
    /// devices, FIFOs and sockets, [`ArchiveError::InvalidPath`] for names the archive
    /// cannot hold, and [`ArchiveError::Conflict`] for collisions with existing entries.
    pub fn add_host_tree(
        &mut self,
        prefix: impl AsRef<[u8]>,
        host_dir: &Path,
    ) -> Result<(), ArchiveError> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;

        let prefix = prefix.as_ref();
        if !prefix.is_empty() {
            self.add_dir(prefix)?;
        }
        let host_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ArchiveError::Host { path, source }
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(host_dir).map_err(host_error(host_dir))? {
            names.push(entry.map_err(host_error(host_dir))?.file_name());
        }
        names.sort();
        for name in names {
            let host_path = host_dir.join(&name);
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.as_bytes());
            let meta = std::fs::symlink_metadata(&host_path).map_err(host_error(&host_path))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                self.add_host_tree(&path, &host_path)?;
            } else if kind.is_file() {
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    FileMode::Executable
                } else {
                    FileMode::Regular
                };
                self.add_host_file(&path, &host_path, mode)?;
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&host_path).map_err(host_error(&host_path))?;
                self.add_symlink(&path, target.as_os_str().as_bytes())?;
            } else {
                return Err(ArchiveError::UnsupportedFileType { path: host_path });
            }
        }
        Ok(())
    }

    /// The exact number of bytes [`Archive::write_to`] writes (always a multiple of 4).
    #[must_use]
    pub fn encoded_len(&self) -> u64 {
        let entries: u64 = self
            .nodes
            .iter()
            .map(|(path, node)| {
                let data = match node {
                    Node::Dir => 0,
                    Node::File { content, .. } => content.len(),
                    Node::Symlink { target } => target.len() as u64,
                };
                header_and_name_len(path.len()) + align4(data)
            })
            .sum();
        entries + header_and_name_len(TRAILER_NAME.len())
    }

    /// Writes the archive to `out` and returns the number of bytes written
    /// (= [`Archive::encoded_len`]). Host files are streamed.
    ///
    /// # Errors
    /// [`ArchiveError::Write`] when `out` fails, [`ArchiveError::Host`] when a host file
    /// cannot be read, [`ArchiveError::HostFileChanged`] when its size changed since it was
    /// added.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<u64, ArchiveError> {
        let mut out = io::BufWriter::with_capacity(64 * 1024, out);
        let subdirs = self.subdirectory_counts();
        let mut written = 0u64;
        for (index, (path, node)) in self.nodes.iter().enumerate() {
            // Inode 0 is left unused; the trailer carries 0.
            let ino = u32::try_from(index + 1).map_err(|_| ArchiveError::TooManyEntries)?;
            let (mode, nlink, len) = match node {
                Node::Dir => {
                    let subdirs = subdirs.get(path.as_slice()).copied().unwrap_or(0);
                    (S_IFDIR | DIR_PERMISSIONS, 2u32.saturating_add(subdirs), 0)
                }
                Node::File { content, mode } => (S_IFREG | mode.permissions(), 1, content.len()),
                Node::Symlink { target } => (S_IFLNK | SYMLINK_PERMISSIONS, 1, target.len() as u64),
            };
            let len32 = u32::try_from(len).map_err(|_| ArchiveError::FileTooLarge {
                path: lossy(path),
                len,
            })?;
            written += write_header(&mut out, ino, mode, nlink, self.mtime.secs(), len32, path)?;
            match node {
                Node::Dir => {}
                Node::File { content, .. } => match content {
                    Content::Bytes(bytes) => out.write_all(bytes).map_err(ArchiveError::Write)?,
                    Content::Host { path: host, len } => copy_host_file(host, *len, &mut out)?,
                },
                Node::Symlink { target } => out.write_all(target).map_err(ArchiveError::Write)?,
            }
            written += len + write_padding(&mut out, len)?;
        }
        written += write_header(&mut out, 0, 0, 1, 0, 0, TRAILER_NAME)?;
        out.flush().map_err(ArchiveError::Write)?;
        Ok(written)
    }

    /// The archive as bytes (for small archives and tests; large ones can be streamed with
    /// [`Archive::write_to`], or handed to the EIF writer as a section source).
    ///
    /// # Errors
    /// As [`Archive::write_to`].
    pub fn to_vec(&self) -> Result<Vec<u8>, ArchiveError> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.encoded_len()).unwrap_or_default());
        self.write_to(&mut bytes)?;
        Ok(bytes)
    }

    fn add_leaf(&mut self, path: &[u8], node: Node) -> Result<(), ArchiveError> {
        validate_path(path)?;
        if let Node::File { content, .. } = &node
            && content.len() > MAX_FILE_LEN
        {
            return Err(ArchiveError::FileTooLarge {
                path: lossy(path),
                len: content.len(),
            });
        }
        self.add_parents(path)?;
        if self.nodes.contains_key(path) {
            return Err(ArchiveError::Conflict {
                path: lossy(path),
                existing: lossy(path),
            });
        }
        self.nodes.insert(path.to_vec(), node);
        Ok(())
    }

    /// Creates every missing ancestor directory of `path` (which has been validated).
    fn add_parents(&mut self, path: &[u8]) -> Result<(), ArchiveError> {
        for (at, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
            let parent = path.get(..at).unwrap_or_default();
            match self.nodes.get(parent) {
                Some(Node::Dir) => {}
                Some(_) => {
                    return Err(ArchiveError::Conflict {
                        path: lossy(path),
                        existing: lossy(parent),
                    });
                }
                None => {
                    self.nodes.insert(parent.to_vec(), Node::Dir);
                }
            }
        }
        Ok(())
    }

    /// For each directory, how many directories it directly contains.
    fn subdirectory_counts(&self) -> BTreeMap<&[u8], u32> {
        let mut counts: BTreeMap<&[u8], u32> = BTreeMap::new();
        for (path, node) in &self.nodes {
            if let (Node::Dir, Some(slash)) = (node, path.iter().rposition(|b| *b == b'/'))
                && let Some(parent) = path.get(..slash)
            {
                *counts.entry(parent).or_default() += 1;
            }
        }
        counts
    }
}

fn align4(len: u64) -> u64 {
    len.div_ceil(4) * 4
}

/// Header, name and its NUL, padded to 4.
fn header_and_name_len(name_len: usize) -> u64 {
    align4(HEADER_LEN + name_len as u64 + 1)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn validate_path(path: &[u8]) -> Result<(), ArchiveError> {
    let invalid = |reason: &'static str| ArchiveError::InvalidPath {
        path: lossy(path),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("it is empty"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(invalid("it is longer than PATH_MAX - 1 (4095) bytes"));
    }
    if path.contains(&0) {
        return Err(invalid("it contains a NUL byte"));
    }
    if path == TRAILER_NAME {
        return Err(invalid(
            "TRAILER!!! is the end-of-archive marker: the unpacker would stop there",
        ));
    }
    if path.first() == Some(&b'/') {
        return Err(invalid(
            "archive paths are relative (write `rootfs/bin`, not `/rootfs/bin`)",
        ));
    }
    for component in path.split(|b| *b == b'/') {
        match component {
            b"" => {
                return Err(invalid(
                    "it has an empty component (`//` or a trailing `/`)",
                ));
            }
            b"." | b".." => return Err(invalid("it has a `.` or `..` component")),
            c if c.len() > MAX_COMPONENT_LEN => {
                return Err(invalid("a component is longer than NAME_MAX (255) bytes"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn write_header(
    out: &mut dyn Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    name: &[u8],
) -> Result<u64, ArchiveError> {
    // Names are at most MAX_PATH_LEN, so namesize fits.
    let namesize = u32::try_from(name.len() + 1).map_err(|_| ArchiveError::InvalidPath {
        path: lossy(name),
        reason: "it is too long",
    })?;
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check.
    let fields = [
        ino, mode, 0, 0, nlink, mtime, filesize, 0, 0, 0, 0, namesize, 0,
    ];
    let mut header = [0u8; HEADER_LEN as usize];
    let (magic, mut rest) = header.split_at_mut(NEWC_MAGIC.len());
    magic.copy_from_slice(NEWC_MAGIC);
    for field in fields {
        let (digits, tail) = rest.split_at_mut(8);
        for (i, digit) in digits.iter_mut().enumerate() {
            let nibble = (field >> (28 - 4 * i)) & 0xf;
            *digit = b"0123456789abcdef"
                .get(nibble as usize)
                .copied()
                .unwrap_or(b'0');
        }
        rest = tail;
    }
    out.write_all(&header).map_err(ArchiveError::Write)?;
    out.write_all(name).map_err(ArchiveError::Write)?;
    let unpadded = HEADER_LEN + u64::from(namesize);
    let padding = align4(unpadded) - unpadded;
    // The NUL terminator plus the padding.
    let zeros = [0u8; 4];
    out.write_all(zeros.get(..=padding as usize).unwrap_or(&zeros))
        .map_err(ArchiveError::Write)?;
    Ok(align4(unpadded))
}

fn write_padding(out: &mut dyn Write, len: u64) -> Result<u64, ArchiveError> {
    let padding = align4(len) - len;
    out.write_all([0u8; 3].get(..padding as usize).unwrap_or_default())
        .map_err(ArchiveError::Write)?;
    Ok(padding)
}

fn copy_host_file(path: &Path, len: u64, out: &mut dyn Write) -> Result<(), ArchiveError> {
    let host_error = |source| ArchiveError::Host {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(host_error)?;
    let copied = io::copy(&mut (&mut file).take(len), out).map_err(|e| {
        // A failure may come from either side; name both.
        ArchiveError::Host {
            path: path.to_path_buf(),
            source: io::Error::new(e.kind(), format!("copying into the archive: {e}")),
        }
    })?;
    let mut probe = [0u8; 1];
    let grew = file.read(&mut probe).map_err(host_error)? != 0;
    if copied != len || grew {
        let found = std::fs::metadata(path).map_or(copied, |m| m.len());
        return Err(ArchiveError::HostFileChanged {
            path: path.to_path_buf(),
            expected: len,
            found,
        });
    }
    Ok(())
}

/// Why an archive could not be built or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A path the archive (or the kernel's unpacker) cannot hold.
    InvalidPath {
        /// The path, lossily decoded.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The path already exists, or one of its parents is not a directory.
    Conflict {
        /// The path being added.
        path: String,
        /// The existing entry in the way.
        existing: String,
    },
    /// A symlink target that is empty, contains NUL, or is longer than 4095 bytes.
    InvalidSymlinkTarget {
        /// The symlink's path.
        path: String,
        /// The rejected target.
        target: String,
    },
    /// A file larger than newc's 32-bit size field.
    FileTooLarge {
        /// The file's archive path.
        path: String,
        /// Its length.
        len: u64,
    },
    /// More than `u32::MAX` entries (inode numbers are 32-bit).
    TooManyEntries,
    /// A host file type the archive does not store (device, FIFO, socket).
    UnsupportedFileType {
        /// The host path.
        path: PathBuf,
    },
    /// A host file or directory could not be read.
    Host {
        /// The host path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A host file's size changed between adding it and writing the archive.
    HostFileChanged {
        /// The host path.
        path: PathBuf,
        /// The size recorded when it was added.
        expected: u64,
        /// The size found while writing.
        found: u64,
    },
    /// A line of `/cmd` or `/env` that the enclave's init cannot represent.
    InvalidLaunchLine {
        /// `cmd` or `env`.
        file: &'static str,
        /// The rejected element.
        line: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Writing the archive failed.
    Write(io::Error),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPath { path, reason } => {
                write!(f, "invalid archive path {path:?}: {reason}")
            }
            Self::Conflict { path, existing } if path == existing => {
                write!(
                    f,
                    "archive path {path:?} was already added; add each path once"
                )
            }
            Self::Conflict { path, existing } => write!(
                f,
                "cannot add {path:?}: {existing:?} is already in the archive and is not a \
                 directory"
            ),
            Self::InvalidSymlinkTarget { path, target } => write!(
                f,
                "symlink {path:?} has an invalid target {target:?}: it must be 1..=4095 \
                 bytes without NUL"
            ),
            Self::FileTooLarge { path, len } => write!(
                f,
                "file {path:?} is {len} bytes; cpio newc files are limited to {MAX_FILE_LEN} \
                 bytes"
            ),
            Self::TooManyEntries => write!(f, "more than 2^32 - 1 archive entries"),
            Self::UnsupportedFileType { path } => write!(
                f,
                "{} is not a regular file, directory or symlink; the archive stores only \
                 those (remove it from the tree)",
                path.display()
            ),
            Self::Host { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::HostFileChanged {
                path,
                expected,
                found,
            } => write!(
                f,
                "{} changed while the archive was written: it was {expected} bytes when \
                 added, {found} bytes now; rebuild from a tree nothing else modifies",
                path.display()
            ),
            Self::InvalidLaunchLine { file, line, reason } => {
                write!(f, "cannot write {line:?} to /{file}: {reason}")
            }
            Self::Write(source) => write!(f, "writing the archive failed: {source}"),
        }
    }
}

/// The underlying error's message is part of `Display`, so `source()` is not set (printing a
/// chain would repeat it).
impl core::error::Error for ArchiveError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Archive {
        Archive::new(SourceDateEpoch::from_secs(1_700_000_000))
    }

    #[test]
    fn empty_archive_is_just_the_trailer() {
        let bytes = archive().to_vec().unwrap();
        assert_eq!(bytes.len(), 124);
        assert_eq!(
            &bytes[..110],
            b"07070100000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000b00000000"
        );
        assert_eq!(&bytes[110..124], b"TRAILER!!!\0\0\0\0");
    }

    #[test]
    fn header_fields_are_fixed() {
        let mut a = archive();
        a.add_file("init", vec![1, 2, 3, 4, 5], FileMode::Executable)
            .unwrap();
        let bytes = a.to_vec().unwrap();
        let field = |i: usize| &bytes[6 + 8 * i..14 + 8 * i];
        assert_eq!(field(0), b"00000001"); // ino
        assert_eq!(field(1), b"000081ed"); // S_IFREG | 0755
        assert_eq!(field(2), b"00000000"); // uid
        assert_eq!(field(3), b"00000000"); // gid
        assert_eq!(field(4), b"00000001"); // nlink
        assert_eq!(field(5), b"6553f100"); // mtime 1700000000
        assert_eq!(field(6), b"00000005"); // filesize
        assert_eq!(field(11), b"00000005"); // namesize "init\0"
        // 110 + 5 = 115 -> 116; data 5 -> 8.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..124], &[1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(bytes.len(), 124 + 124);
    }

    #[test]
    fn parents_are_explicit_and_nlink_counts_subdirectories() {
        let mut a = archive();
        a.add_file("a/b/c", b"x".to_vec(), FileMode::Regular)
            .unwrap();
        a.add_dir("a/d").unwrap();
        let paths: Vec<_> = a.nodes.keys().map(|k| lossy(k)).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c", "a/d"]);
        let counts = a.subdirectory_counts();
        assert_eq!(counts.get(&b"a"[..]), Some(&2));
        assert_eq!(counts.get(&b"a/b"[..]), None);
    }

    #[test]
    fn rejects_bad_paths_and_conflicts() {
        let mut a = archive();
        for bad in [
            &b""[..],
            b"/abs",
            b"a//b",
            b"a/",
            b"./a",
            b"a/../b",
            b"nul\0",
            b"TRAILER!!!",
        ] {
            assert!(
                matches!(
                    a.add_file(bad, vec![], FileMode::Regular),
                    Err(ArchiveError::InvalidPath { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(
            a.add_file(vec![b'x'; 256], vec![], FileMode::Regular)
                .is_err()
        );
        a.add_file("f", vec![], FileMode::Regular).unwrap();
        assert!(matches!(
            a.add_file("f", vec![], FileMode::Regular),
            Err(ArchiveError::Conflict { .. })
        ));
        assert!(matches!(a.add_dir("f"), Err(ArchiveError::Conflict { .. })));
        assert!(matches!(
            a.add_file("f/g", vec![], FileMode::Regular),
            Err(ArchiveError::Conflict { .. })
        ));
        assert!(matches!(
            a.add_symlink("l", ""),
            Err(ArchiveError::InvalidSymlinkTarget { .. })
        ));
        a.add_dir("d").unwrap();
        a.add_dir("d").unwrap();
    }
}
