//! The emulation tools, built or installed once into the per-user cache ([`crate::cache`])
//! and shared by every project:
//!
//! - QEMU 10.0 with the `nitro-enclave` machine, built from Debian's source (Debian's own
//!   binary lacks the machine: it is built without libcbor), in
//!   `<cache>/tools/qemu-<version>-<key>/`;
//! - `vhost-device-vsock` from crates.io, the vhost-user backend the machine requires, in
//!   `<cache>/tools/vhost-device-vsock-<version>/`.
//!
//! Facts behind the recipe (flags, patches, pitfalls) are in the emulation notes: the `+ds`
//! tarball lacks the edk2 blobs (meson.build must not unpack them), and meson must come from
//! bookworm-backports. [`crate::boot`] runs an EIF with them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cache::{self, Cache};
use crate::error::{Error, IoContext, Result, ensure};
use crate::hash;
use crate::host::{self, run_quiet};
use crate::progress::{elapsed, run_logged};

/// The cache's kind for the emulation tools.
const CACHE_KIND: &str = "tools";

/// The Debian source package QEMU is built from (bookworm-backports; only its orig tarball is
/// used, Debian's packaging is not needed).
const QEMU_SOURCE_VERSION: &str = "1:10.0.2+ds-2+deb13u1~bpo12+1";
const QEMU_VERSION: &str = "10.0.2";
const QEMU_TARBALL: &str = "qemu_10.0.2+ds.orig.tar.xz";
/// SHA-256 of [`QEMU_TARBALL`] as fetched with `apt-get source --tar-only`.
const QEMU_TARBALL_SHA256: &str =
    "0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1";

/// Bump when the build steps change (it is part of the cache key).
const QEMU_RECIPE: u32 = 1;

/// The `+ds` tarball has no edk2 `*.fd.bz2` blobs; meson must not try to unpack them (Debian
/// carries `skip-unpack-edk2-blobs.patch` for the same reason).
const EDK2_LINE: &str = "    unpack_edk2_blobs = bzip2.found()";
const EDK2_LINE_PATCHED: &str = "    unpack_edk2_blobs = false";

/// The only device set built in: the nitro-enclave machine (it selects microvm, the EIF
/// loader, vhost-user-vsock and virtio-nsm).
const DEVICES_FILE: &str = "configs/devices/x86_64-softmmu/nitro.mak";
const DEVICES: &str = "CONFIG_NITRO_ENCLAVE=y\n";

/// `configure` flags: x86_64 system emulator only, nothing by default, then exactly what the
/// machine needs (libcbor and gnutls for the EIF loader and NSM, vhost-user for vsock, fdt).
/// Firmware comes from Debian's qemu-system-data and seabios.
const CONFIGURE_FLAGS: &[&str] = &[
    "--python=/usr/bin/python3",
    "--prefix=/usr/local",
    "--firmwarepath=/usr/share/qemu:/usr/share/seabios",
    "--disable-relocatable",
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--without-default-devices",
    "--with-devices-x86_64=nitro",
    "--enable-kvm",
    "--enable-tcg",
    "--enable-libcbor",
    "--enable-gnutls",
    "--enable-vhost-user",
    "--enable-fdt=system",
    "--disable-docs",
    "--disable-install-blobs",
    "--disable-werror",
];

/// QEMU 10 needs meson >= 1.5 (bookworm has 1.0); mkvenv needs pycotap.
const BACKPORTS_PACKAGES: &[&str] = &["meson", "python3-pycotap"];

/// QEMU's build dependencies and runtime firmware (qboot.rom, linuxboot_dma.bin from
/// qemu-system-data; bios-microvm.bin from seabios).
const QEMU_PACKAGES: &[&str] = &[
    "build-essential",
    "ninja-build",
    "pkgconf",
    "python3",
    "xz-utils",
    "flex",
    "bison",
    "libcbor-dev",
    "libglib2.0-dev",
    "libpixman-1-dev",
    "zlib1g-dev",
    "libgnutls28-dev",
    "libfdt-dev",
    "qemu-system-data",
    "seabios",
];

/// The firmware directories QEMU is told about (Debian's qemu-system-data and seabios).
pub(crate) const FIRMWARE_DIRS: &[&str] = &["/usr/share/qemu", "/usr/share/seabios"];

/// vhost-device-vsock's crates.io version.
const VHOST_DEVICE_VSOCK_VERSION: &str = "0.3.0";

/// A fixed PATH for the QEMU build (no pyenv or other shims).
const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The two emulation tools, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `qemu-system-x86_64` with the nitro-enclave machine.
    pub qemu: PathBuf,
    /// `vhost-device-vsock`.
    pub vhost_device_vsock: PathBuf,
}

/// Builds or installs both tools (or finds them in the cache). `cargo_dir` is where `cargo
/// install` runs (a directory whose rust-toolchain.toml picks the toolchain).
///
/// # Errors
/// As [`qemu`] and [`vhost_device_vsock`].
pub fn ensure(cache: &Cache, cargo_dir: &Path) -> Result<Tools> {
    Ok(Tools {
        qemu: qemu(cache)?,
        vhost_device_vsock: vhost_device_vsock(cache, cargo_dir)?,
    })
}

/// The cache key of the QEMU build: version, tarball, recipe, devices and flags.
fn qemu_key() -> String {
    let text = format!(
        "recipe={QEMU_RECIPE}\nsource={QEMU_SOURCE_VERSION}\ntarball={QEMU_TARBALL}\n\
         sha256={QEMU_TARBALL_SHA256}\ndevices={DEVICES}\npatch={EDK2_LINE_PATCHED}\nflags={}\n",
        CONFIGURE_FLAGS.join(" ")
    );
    let digest = hash::sha256(text.as_bytes());
    digest.get(..12).unwrap_or(&digest).to_owned()
}

/// QEMU with the nitro-enclave machine: built on first use (about 10 minutes on 2 cores),
/// then taken from `<cache>/tools/qemu-<version>-<key>/bin/qemu-system-x86_64`.
///
/// # Errors
/// Missing Debian packages (when not root the error names the apt-get command), a source
/// tarball that cannot be fetched or fails its pin, or a failed build.
pub fn qemu(cache: &Cache) -> Result<PathBuf> {
    let tools = cache.dir(CACHE_KIND);
    let key = format!("qemu-{QEMU_VERSION}-{}", qemu_key());
    let dir = tools.join(&key);
    let binary = dir.join("bin").join("qemu-system-x86_64");
    if binary.is_file() {
        ensure_runtime_packages()?;
        return Ok(binary);
    }
    let _lock = cache.lock(CACHE_KIND, &key)?;
    if binary.is_file() {
        // Another process built it while this one waited for the lock.
        ensure_runtime_packages()?;
        return Ok(binary);
    }
    let started = Instant::now();
    eprintln!(
        "qemu: building QEMU {QEMU_VERSION} with the nitro-enclave machine into {}",
        dir.display()
    );
    host::ensure_packages(BACKPORTS_PACKAGES, Some("bookworm-backports"))?;
    host::ensure_packages(QEMU_PACKAGES, None)?;
    let tarball = fetch_qemu_source(&tools.join("source"))?;

    let work = tools.join("build").join(&key);
    if work.exists() {
        std::fs::remove_dir_all(&work).io("remove", &work)?;
    }
    std::fs::create_dir_all(&work).io("create", &work)?;
    let log = work.join("build.log");
    let t = Instant::now();
    eprintln!("qemu: [2/4] extracting and patching");
    run_quiet(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&work),
        "tar -x (QEMU's source)",
    )?;
    let source = work.join(format!("qemu-{QEMU_VERSION}"));
    patch_source(&source)?;
    eprintln!("qemu: extracted in {}", elapsed(t.elapsed()));

    let t = Instant::now();
    eprintln!("qemu: [3/4] configure (log: {})", log.display());
    let build = work.join("build");
    std::fs::create_dir_all(&build).io("create", &build)?;
    let mut configure = Command::new(source.join("configure"));
    configure.args(CONFIGURE_FLAGS);
    run_logged(clean_env(configure, &build), "qemu configure", &log)?;
    eprintln!("qemu: configured in {}", elapsed(t.elapsed()));

    let t = Instant::now();
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    eprintln!("qemu: [4/4] ninja qemu-system-x86_64 with {jobs} jobs");
    let mut ninja = Command::new("nice");
    ninja.args([
        "-n",
        "10",
        "ninja",
        &format!("-j{jobs}"),
        "qemu-system-x86_64",
    ]);
    run_logged(clean_env(ninja, &build), "qemu build", &log)?;
    eprintln!("qemu: compiled in {}", elapsed(t.elapsed()));

    // Out of the build tree the binary finds its firmware in --firmwarepath (inside the tree
    // it would look only in build/qemu-bundle/).
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).io("create", &bin)?;
    let built = build.join("qemu-system-x86_64");
    let stripped = work.join("qemu-system-x86_64.stripped");
    run_quiet(
        Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&stripped)
            .arg(&built),
        "strip",
    )?;
    check_machine(&stripped)?;
    cache::install_file(&stripped, &binary)?;
    set_executable(&binary)?;
    std::fs::remove_dir_all(&work).io("remove", &work)?;
    eprintln!(
        "qemu: ready in {}: {} ({} bytes)",
        elapsed(started.elapsed()),
        binary.display(),
        std::fs::metadata(&binary).io("stat", &binary)?.len()
    );
    Ok(binary)
}

/// Makes `path` executable (a copy keeps the mode, but say so explicitly).
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).io("chmod", path)
}

/// The runtime firmware packages (checked on every use: a machine can lose them while the
/// cache survives).
fn ensure_runtime_packages() -> Result<()> {
    host::ensure_packages(&["qemu-system-data", "seabios"], None)
}

/// Runs `command` in `dir` with a minimal, fixed environment.
fn clean_env(mut command: Command, dir: &Path) -> Command {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", BUILD_PATH)
        .env("HOME", home)
        .env("LC_ALL", "C.UTF-8");
    command
}

/// Fetches the orig tarball into `dir` with `apt-get source --tar-only` (once) and checks its
/// SHA-256.
fn fetch_qemu_source(dir: &Path) -> Result<PathBuf> {
    let t = Instant::now();
    eprintln!("qemu: [1/4] source qemu={QEMU_SOURCE_VERSION} ({QEMU_TARBALL})");
    let tarball = dir.join(QEMU_TARBALL);
    if tarball.is_file() && hash::sha256_file(&tarball)? == QEMU_TARBALL_SHA256 {
        return Ok(tarball);
    }
    let download = dir.join(format!("download-{}", std::process::id()));
    if download.exists() {
        std::fs::remove_dir_all(&download).io("remove", &download)?;
    }
    std::fs::create_dir_all(&download).io("create", &download)?;
    let spec = format!("qemu={QEMU_SOURCE_VERSION}");
    let fetch = || {
        Command::new("apt-get")
            .args(["source", "-q", "--download-only", "--tar-only", &spec])
            .current_dir(&download)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::program("apt-get source", format!("cannot start: {e}")))
    };
    let mut out = fetch()?;
    if !out.status.success() && host::is_root() {
        run_quiet(
            Command::new("apt-get").args(["update", "-qq"]),
            "apt-get update",
        )?;
        out = fetch()?;
    }
    let fetched = download.join(QEMU_TARBALL);
    if !fetched.is_file() {
        return Err(Error::input(format!(
            "cannot fetch QEMU's source ({spec}): {}\napt needs a `deb-src` entry for \
             bookworm-backports (run `cargo xtask setup --emulation` as root in CCC's \
             repository, which adds it). If apt no longer offers this version (`apt-cache \
             showsrc qemu` lists what it has), move QEMU_SOURCE_VERSION, QEMU_TARBALL and \
             QEMU_TARBALL_SHA256 in build/src/tools.rs together",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let sha = hash::sha256_file(&fetched)?;
    ensure!(
        sha == QEMU_TARBALL_SHA256,
        Error::input(format!(
            "{} has SHA-256 {sha}, expected {QEMU_TARBALL_SHA256}: refusing to build unpinned \
             source",
            fetched.display()
        ))
    );
    std::fs::rename(&fetched, &tarball)
        .io(&format!("rename {} to", fetched.display()), &tarball)?;
    std::fs::remove_dir_all(&download).io("remove", &download)?;
    eprintln!(
        "qemu: source fetched and verified in {}",
        elapsed(t.elapsed())
    );
    Ok(tarball)
}

/// The two source changes: skip the missing edk2 blobs, add the nitro-only devices file.
fn patch_source(source: &Path) -> Result<()> {
    let meson = source.join("meson.build");
    let text = std::fs::read_to_string(&meson).io("read", &meson)?;
    let hits = text.lines().filter(|l| *l == EDK2_LINE).count();
    ensure!(
        hits == 1,
        Error::input(format!(
            "{}: expected the line `{EDK2_LINE}` once, found it {hits} times (a new QEMU \
             version needs the recipe checked)",
            meson.display()
        ))
    );
    std::fs::write(&meson, text.replace(EDK2_LINE, EDK2_LINE_PATCHED)).io("write", &meson)?;
    let devices = source.join(DEVICES_FILE);
    std::fs::write(&devices, DEVICES).io("write", &devices)
}

/// Requires `-M help` of `binary` to list the nitro-enclave machine.
fn check_machine(binary: &Path) -> Result<()> {
    let text = run_quiet(Command::new(binary).args(["-M", "help"]), "qemu -M help")?;
    ensure!(
        text.lines().any(|l| l.starts_with("nitro-enclave ")),
        Error::program(
            binary.display().to_string(),
            format!(
                "-M help does not list nitro-enclave (was libcbor found by configure?):\n{text}"
            )
        )
    );
    Ok(())
}

/// vhost-device-vsock, installed with `cargo install --locked` into
/// `<cache>/tools/vhost-device-vsock-<version>/` on first use (`cargo install` runs in
/// `cargo_dir`, so its rust-toolchain.toml picks the compiler).
///
/// # Errors
/// `cargo install` failed (it needs crates.io).
pub fn vhost_device_vsock(cache: &Cache, cargo_dir: &Path) -> Result<PathBuf> {
    let key = format!("vhost-device-vsock-{VHOST_DEVICE_VSOCK_VERSION}");
    let root = cache.dir(CACHE_KIND).join(&key);
    let binary = root.join("bin").join("vhost-device-vsock");
    let installed = |binary: &Path| {
        Command::new(binary)
            .arg("--version")
            .output()
            .is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout).contains(VHOST_DEVICE_VSOCK_VERSION)
            })
    };
    if installed(&binary) {
        return Ok(binary);
    }
    let _lock = cache.lock(CACHE_KIND, &key)?;
    if installed(&binary) {
        return Ok(binary);
    }
    let t = Instant::now();
    eprintln!("qemu: cargo install vhost-device-vsock {VHOST_DEVICE_VSOCK_VERSION}");
    // Installed into a fresh directory, then moved into place: never a half-installed binary.
    let staging = cache
        .dir(CACHE_KIND)
        .join("build")
        .join(format!("{key}-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).io("remove", &staging)?;
    }
    std::fs::create_dir_all(&staging).io("create", &staging)?;
    let mut install = Command::new("nice");
    install
        .args(["-n", "10", "cargo", "install", "--locked", "--version"])
        .arg(VHOST_DEVICE_VSOCK_VERSION)
        .arg("--root")
        .arg(&staging)
        .arg("vhost-device-vsock")
        .current_dir(cargo_dir);
    run_logged(
        install,
        "vhost-device-vsock install",
        &cache.dir(CACHE_KIND).join("vhost-device-vsock-install.log"),
    )?;
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).io("create", &bin)?;
    cache::install_file(&staging.join("bin").join("vhost-device-vsock"), &binary)?;
    set_executable(&binary)?;
    std::fs::remove_dir_all(&staging).io("remove", &staging)?;
    eprintln!(
        "qemu: vhost-device-vsock installed in {}",
        elapsed(t.elapsed())
    );
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_patch_applies_exactly_once() {
        let dir = std::env::temp_dir().join(format!("ccc-qemu-patch-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("configs/devices/x86_64-softmmu")).unwrap();
        std::fs::write(dir.join("meson.build"), format!("a\n{EDK2_LINE}\nb\n")).unwrap();
        patch_source(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("meson.build")).unwrap(),
            format!("a\n{EDK2_LINE_PATCHED}\nb\n")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(DEVICES_FILE)).unwrap(),
            DEVICES
        );
        // Already patched (or a changed upstream line): refuse rather than build differently.
        assert!(patch_source(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
