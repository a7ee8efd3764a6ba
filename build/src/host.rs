//! Host prerequisites: Debian packages and Rust targets. As root on a fresh machine they are
//! installed; otherwise the error names the exact command to run.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Packages every build and test needs (aws-lc-sys and the AWS image-format peer build C code
/// and link OpenSSL; musl-tools gives musl-gcc for the static enclave binaries; the `openssl`
/// command line is the independent peer of the NSM simulator's chain and signature tests).
pub const BASE_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "openssl",
    "musl-tools",
    "cpio",
    "python3-venv",
];

/// The target the enclave's binaries are built for.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// True when this process runs as root (so apt-get may be used).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// The subset of `packages` that dpkg reports as not installed.
pub fn missing_packages<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    packages
        .iter()
        .copied()
        .filter(|pkg| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output()
                .is_ok_and(|out| out.stdout.ends_with(b" installed"))
        })
        .collect()
}

/// Runs `command` quietly; its stderr goes into the error when it fails.
///
/// # Errors
/// It cannot start or exits unsuccessfully.
pub(crate) fn run_quiet(command: &mut Command, what: &str) -> Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::program(what, format!("cannot start: {e}")))?;
    if !out.status.success() {
        return Err(Error::program(
            what,
            format!(
                "failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs `packages` with apt-get (from `suite` when given, e.g. `bookworm-backports`).
///
/// # Errors
/// When not root, an error naming the exact command to run; otherwise apt-get's failure.
pub fn ensure_packages(packages: &[&str], suite: Option<&str>) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    let target = suite.map(|s| format!("-t {s} ")).unwrap_or_default();
    let command = format!("apt-get install -y {target}{}", missing.join(" "));
    if !is_root() {
        return Err(Error::Prerequisite {
            problem: format!(
                "Debian packages {}. Run as root:\n    {command}",
                missing.join(", ")
            ),
        });
    }
    eprintln!("setup: installing {}", missing.join(" "));
    if suite.is_some() {
        ensure_backports()?;
    }
    run_quiet(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )?;
    let mut args: Vec<&str> = vec!["install", "-y", "-qq", "--no-install-recommends"];
    if let Some(suite) = suite {
        args.extend(["-t", suite]);
    }
    args.extend(missing.iter().copied());
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| Error::program("apt-get", format!("cannot start: {e}")))?;
    if !status.success() {
        return Err(Error::program(
            "apt-get",
            format!("`{command}` failed ({status})"),
        ));
    }
    Ok(())
}

const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/ccc-bookworm-backports.sources";

/// Adds Debian bookworm-backports (binaries and sources) to apt, for meson and QEMU 10.
fn ensure_backports() -> Result<()> {
    let listed = Command::new("grep")
        .args([
            "-rqs",
            "bookworm-backports",
            "/etc/apt/sources.list",
            "/etc/apt/sources.list.d",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if listed {
        return Ok(());
    }
    std::fs::write(
        BACKPORTS_SOURCES,
        "Types: deb deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
         Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )
    .map_err(|e| Error::io("write", Path::new(BACKPORTS_SOURCES), e))
}

/// The target the SDK's `no_std` core is built for in CI: no operating system, no `std` at
/// all, so a dependency that quietly needs `std` fails to build there.
pub const NO_STD_TARGET: &str = "x86_64-unknown-none";

/// Adds `target` to the toolchain `dir` builds with (its rust-toolchain.toml) unless it is
/// installed (rustup does not install targets on first use when `RUSTUP_AUTO_INSTALL=0`).
///
/// # Errors
/// rustup cannot list or add the target.
pub fn ensure_target(dir: &Path, target: &str) -> Result<()> {
    let installed = run_quiet(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(dir),
        "rustup target list",
    )?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(dir)
        .status()
        .map_err(|e| Error::program("rustup", format!("cannot start: {e}")))?;
    if !status.success() {
        return Err(Error::Prerequisite {
            problem: format!("the {target} target; run: rustup target add {target}"),
        });
    }
    Ok(())
}

/// The musl target of the toolchain `dir` builds with (its rust-toolchain.toml lists it, so
/// rustup normally installs it on first use; this covers toolchains installed without it).
///
/// # Errors
/// As [`ensure_target`].
pub fn ensure_musl_target(dir: &Path) -> Result<()> {
    ensure_target(dir, MUSL_TARGET)
}

/// Everything a build of the enclave binaries in `dir` needs.
///
/// # Errors
/// As [`ensure_packages`] and [`ensure_musl_target`].
pub fn ensure_base(dir: &Path) -> Result<()> {
    ensure_packages(BASE_PACKAGES, None)?;
    ensure_musl_target(dir)
}
