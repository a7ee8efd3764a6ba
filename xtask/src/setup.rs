//! Host prerequisites: Debian packages and Rust targets. As root on a fresh machine they are
//! installed; otherwise the error names the exact command to run.

use anyhow::{Context, Result, bail};
use std::process::Command;
use xshell::{Shell, cmd};

/// Packages every build and test needs (aws-lc-sys and the AWS image-format peer build C code
/// and link OpenSSL; musl-tools gives musl-gcc for the static enclave binaries; the `openssl`
/// command line is the independent peer of the NSM simulator's chain and signature tests).
pub(crate) const BASE_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "openssl",
    "musl-tools",
    "cpio",
    "python3-venv",
];

/// True when this process runs as root (so apt-get may be used).
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// The subset of `packages` that dpkg reports as not installed.
pub(crate) fn missing_packages<'a>(packages: &[&'a str]) -> Vec<&'a str> {
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

/// Installs `packages` with apt-get (from `suite` when given, e.g. `bookworm-backports`).
///
/// # Errors
/// When not root, an error naming the exact command to run; otherwise apt-get's failure.
pub(crate) fn ensure_packages(packages: &[&str], suite: Option<&str>) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    let target = suite.map(|s| format!("-t {s} ")).unwrap_or_default();
    let command = format!("apt-get install -y {target}{}", missing.join(" "));
    if !is_root() {
        bail!(
            "missing Debian packages: {}. Run as root:\n    {command}",
            missing.join(", ")
        );
    }
    eprintln!("setup: installing {}", missing.join(" "));
    let sh = Shell::new()?;
    if suite.is_some() {
        ensure_backports(&sh)?;
    }
    cmd!(sh, "apt-get update -qq")
        .quiet()
        .run()
        .context("apt-get update failed")?;
    let mut args: Vec<&str> = vec!["install", "-y", "-qq", "--no-install-recommends"];
    if let Some(suite) = suite {
        args.extend(["-t", suite]);
    }
    args.extend(missing.iter().copied());
    cmd!(sh, "apt-get {args...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .with_context(|| format!("`{command}` failed"))?;
    Ok(())
}

const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/ccc-bookworm-backports.sources";

/// Adds Debian bookworm-backports (binaries and sources) to apt, for meson and QEMU 10.
fn ensure_backports(sh: &Shell) -> Result<()> {
    let listed = cmd!(
        sh,
        "grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d"
    )
    .quiet()
    .ignore_status()
    .output()?
    .status
    .success();
    if listed {
        return Ok(());
    }
    sh.write_file(
        BACKPORTS_SOURCES,
        "Types: deb deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
         Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )
    .with_context(|| format!("cannot write {BACKPORTS_SOURCES}"))?;
    Ok(())
}

/// The target the SDK's `no_std` core is built for in CI: no operating system, no `std` at
/// all, so a dependency that quietly needs `std` fails to build there.
pub(crate) const NO_STD_TARGET: &str = "x86_64-unknown-none";

/// Adds `target` to the pinned toolchain unless it is installed (rustup does not install
/// targets on first use when `RUSTUP_AUTO_INSTALL=0`).
fn ensure_target(target: &str) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(crate::workspace_root());
    let installed = cmd!(sh, "rustup target list --installed").quiet().read()?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    cmd!(sh, "rustup target add {target}")
        .run()
        .with_context(|| {
            format!("cannot add the {target} target; run: rustup target add {target}")
        })?;
    Ok(())
}

/// The musl target of the pinned toolchain (rust-toolchain.toml lists it, so rustup normally
/// installs it on first use; this covers toolchains installed without it).
pub(crate) fn ensure_musl_target() -> Result<()> {
    ensure_target("x86_64-unknown-linux-musl")
}

/// Everything the workspace build and the default tests need, and the no_std check's target.
pub(crate) fn ensure_base() -> Result<()> {
    ensure_packages(BASE_PACKAGES, None)?;
    ensure_musl_target()?;
    ensure_target(NO_STD_TARGET)
}
