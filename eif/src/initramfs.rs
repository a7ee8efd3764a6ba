//! The two ramdisks of an enclave image, laid out as nitro-cli lays them out, and the
//! `/cmd` and `/env` launch files.
//!
//! - Ramdisk 0, *bootstrap* (measured into PCR1 with the kernel and cmdline): `dev/` (0755)
//!   and `init` (0755). nitro-cli also ships `nsm.ko` here; CCC's kernel has the NSM driver
//!   built in, so there is none (the init must not require it).
//! - Ramdisk 1, *customer* (measured into PCR2): `cmd` and `env` (0644) at the archive root,
//!   the application tree under `rootfs/`, and the mount points `rootfs/{dev,run,sys,var,
//!   proc,tmp}` (0755) that init mounts over after `chroot`.
//!
//! `/cmd` and `/env` format (as AWS's bootstrap init reads them, line by line with the
//! trailing `\n` stripped): one element per line, every line terminated by `\n`, no quoting
//! or escaping. `/cmd` is the argv (first line = program, looked up in
//! `PATH=/sbin:/usr/sbin:/bin:/usr/bin` when it has no `/`); `/env` is the environment, one
//! `KEY=VALUE` per line (it may be empty). An element therefore cannot contain `\n` (or NUL),
//! and this module refuses such elements instead of silently splitting them.

use crate::SourceDateEpoch;
use crate::cpio::{Archive, ArchiveError, FileMode};
use std::path::Path;

/// Directories that exist in every customer ramdisk under `rootfs/` (nitro-cli's
/// `yaml_generator.rs` creates the same set); init mounts devtmpfs, tmpfs, sysfs and proc on
/// them.
pub const ROOTFS_MOUNT_POINTS: [&str; 6] = ["dev", "run", "sys", "var", "proc", "tmp"];

/// Prefix of the application tree inside the customer ramdisk.
pub const ROOTFS: &str = "rootfs";

/// The bytes of the init program for the bootstrap ramdisk.
#[derive(Debug, Clone, Copy)]
pub enum Init<'a> {
    /// Already in memory.
    Bytes(&'a [u8]),
    /// A host file, streamed when the archive is written.
    File(&'a Path),
}

/// Ramdisk 0: `dev/` and `init` (0755).
///
/// # Errors
/// [`ArchiveError::Host`] when the init file cannot be inspected.
pub fn bootstrap_ramdisk(epoch: SourceDateEpoch, init: Init<'_>) -> Result<Archive, ArchiveError> {
    let mut archive = Archive::new(epoch);
    archive.add_dir("dev")?;
    match init {
        Init::Bytes(bytes) => archive.add_file("init", bytes.to_vec(), FileMode::Executable)?,
        Init::File(path) => archive.add_host_file("init", path, FileMode::Executable)?,
    }
    Ok(archive)
}

/// Ramdisk 1 without the application: `cmd`, `env` and the `rootfs/` mount points. Add the
/// application with [`Archive::add_host_tree`]`(ROOTFS, dir)` or with paths starting with
/// `rootfs/`.
///
/// `cmd` is the argv (non-empty); `env` holds `KEY=VALUE` strings.
///
/// # Errors
/// [`ArchiveError::InvalidLaunchLine`] for an empty `cmd`, an element with `\n` or NUL, or
/// an `env` element without `KEY=`.
pub fn customer_ramdisk<C, E>(
    epoch: SourceDateEpoch,
    cmd: &[C],
    env: &[E],
) -> Result<Archive, ArchiveError>
where
    C: AsRef<str>,
    E: AsRef<str>,
{
    let mut archive = Archive::new(epoch);
    archive.add_file("cmd", cmd_file(cmd)?, FileMode::Regular)?;
    archive.add_file("env", env_file(env)?, FileMode::Regular)?;
    archive.add_dir(ROOTFS)?;
    for dir in ROOTFS_MOUNT_POINTS {
        archive.add_dir(format!("{ROOTFS}/{dir}"))?;
    }
    Ok(archive)
}

/// The contents of `/cmd`: each argument followed by `\n`.
///
/// # Errors
/// [`ArchiveError::InvalidLaunchLine`] when `cmd` is empty or an element contains `\n` or
/// NUL (an empty element is allowed: it is an empty argument).
pub fn cmd_file<S: AsRef<str>>(cmd: &[S]) -> Result<Vec<u8>, ArchiveError> {
    if cmd.is_empty() {
        return Err(ArchiveError::InvalidLaunchLine {
            file: "cmd",
            line: String::new(),
            reason: "the command is empty; name the program to run",
        });
    }
    lines("cmd", cmd, |_| None)
}

/// The contents of `/env`: each `KEY=VALUE` followed by `\n` (empty input gives an empty
/// file).
///
/// # Errors
/// [`ArchiveError::InvalidLaunchLine`] when an element contains `\n` or NUL or does not
/// start with a non-empty `KEY=`.
pub fn env_file<S: AsRef<str>>(env: &[S]) -> Result<Vec<u8>, ArchiveError> {
    lines("env", env, |line| match line.find('=') {
        Some(0) | None => Some("an environment entry is KEY=VALUE with a non-empty KEY"),
        Some(_) => None,
    })
}

fn lines<S: AsRef<str>>(
    file: &'static str,
    items: &[S],
    extra: impl Fn(&str) -> Option<&'static str>,
) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::new();
    for item in items {
        let line = item.as_ref();
        let reason = if line.contains('\n') {
            Some("it contains a newline, which /cmd and /env cannot represent")
        } else if line.contains('\0') {
            Some("it contains a NUL byte")
        } else {
            extra(line)
        };
        if let Some(reason) = reason {
            return Err(ArchiveError::InvalidLaunchLine {
                file,
                line: line.to_owned(),
                reason,
            });
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_files_match_nitro_cli() {
        // nitro-cli's own test expectations (aws-nitro-enclaves-cli, enclave_build tests).
        assert_eq!(cmd_file(&["/bin/hello.sh"]).unwrap(), b"/bin/hello.sh\n");
        assert_eq!(
            env_file(&[
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HELLO=Hello from the enclave side!"
            ])
            .unwrap(),
            b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
              HELLO=Hello from the enclave side!\n"
        );
        assert_eq!(env_file::<&str>(&[]).unwrap(), b"");
        assert_eq!(cmd_file(&["app", "", "x y"]).unwrap(), b"app\n\nx y\n");
    }

    #[test]
    fn launch_files_refuse_what_init_cannot_read() {
        assert!(cmd_file::<&str>(&[]).is_err());
        assert!(cmd_file(&["a\nb"]).is_err());
        assert!(cmd_file(&["a\0"]).is_err());
        assert!(env_file(&["NOEQUALS"]).is_err());
        assert!(env_file(&["=value"]).is_err());
        assert!(env_file(&["K=line\nbreak"]).is_err());
        assert!(env_file(&["K="]).is_ok());
    }

    #[test]
    fn ramdisk_layouts() {
        let epoch = SourceDateEpoch::UNIX_EPOCH;
        let boot = bootstrap_ramdisk(epoch, Init::Bytes(b"\x7fELF")).unwrap();
        assert_eq!(boot.len(), 2);
        let app = customer_ramdisk(epoch, &["/app"], &["A=1"]).unwrap();
        // cmd, env, rootfs, and the six mount points.
        assert_eq!(app.len(), 9);
        assert_eq!(app.to_vec().unwrap().len() as u64, app.encoded_len());
    }
}
