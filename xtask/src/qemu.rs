//! `cargo xtask qemu`: the emulation tools and a boot of an EIF with them.
//!
//! - QEMU 10.0 with the `nitro-enclave` machine, built from Debian's source (Debian's own
//!   binary lacks the machine: it is built without libcbor), cached under
//!   `target/tools/qemu-<version>-<key>/`.
//! - `vhost-device-vsock` from crates.io, the vhost-user backend the machine requires, under
//!   `target/tools/bin/`.
//! - [`Boot`]: starts vhost-device-vsock and QEMU (TCG), answers the enclave's heartbeat,
//!   captures the console, enforces a timeout, and tears everything down on drop.
//!
//! Facts behind the recipe (flags, patches, pitfalls) are in the emulation notes: the `+ds`
//! tarball lacks the edk2 blobs (meson.build must not unpack them), meson must come from
//! bookworm-backports, and under TCG the guest needs `tsc_early_khz=` (PIT calibration
//! sometimes hangs), `tsc=reliable` (see [`TSC_RELIABLE`]) and `reboot=t` (the microvm has no keyboard controller to reset through).

use anyhow::{Context, Result, bail, ensure};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::progress::{elapsed, run_logged};
use crate::{hash, setup};

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
const FIRMWARE_DIRS: &[&str] = &["/usr/share/qemu", "/usr/share/seabios"];

/// vhost-device-vsock's crates.io version.
const VHOST_DEVICE_VSOCK_VERSION: &str = "0.3.0";

/// A fixed PATH for the QEMU build (no pyenv or other shims).
const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Options of `cargo xtask qemu`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Boot this EIF under QEMU's nitro-enclave machine (TCG) with vhost-device-vsock and a
    /// heartbeat listener, print the console, and fail unless QEMU exits by itself in time.
    #[arg(long, value_name = "EIF")]
    boot: Option<PathBuf>,
    /// Seconds before the boot is killed.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Extra kernel command-line words (QEMU's -append; not measured).
    #[arg(long = "append", value_name = "WORD")]
    append: Vec<String>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Do not answer the heartbeat (to see the init's failure path).
    #[arg(long)]
    no_heartbeat: bool,
    /// The enclave id (NSM module_id).
    #[arg(long)]
    enclave_id: Option<String>,
    /// Also write the captured console to this file.
    #[arg(long, value_name = "PATH")]
    console: Option<PathBuf>,
    /// Leave out `ccc.emulation=1 ccc.parent_cid=2` (then the init's heartbeat goes to CID 3,
    /// which the Unix-socket vsock backend cannot reach, and is fatal).
    #[arg(long)]
    no_ccc_switches: bool,
}

/// `cargo xtask qemu`.
///
/// # Errors
/// A missing prerequisite (with its fix), a failed build, or a failed boot.
pub(crate) fn run(args: &Args) -> Result<()> {
    let Some(eif) = &args.boot else {
        return ensure_all();
    };
    let mut boot = Boot::new(eif)
        .timeout(Duration::from_secs(args.timeout))
        .memory_mib(args.memory)
        .cpus(args.cpus)
        .echo_console(true)
        .heartbeat(!args.no_heartbeat);
    if let Some(id) = &args.enclave_id {
        boot = boot.enclave_id(id);
    }
    if args.no_ccc_switches {
        boot = boot.ccc_switches(false);
    }
    for word in &args.append {
        boot = boot.append(word);
    }
    let outcome = boot.start()?.wait()?;
    if let Some(path) = &args.console {
        std::fs::write(path, &outcome.console)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "qemu: {} in {}; heartbeat {}",
        match (outcome.timed_out, outcome.status) {
            (true, _) => "KILLED after the timeout".to_owned(),
            (false, Some(status)) => format!("QEMU exited by itself ({status})"),
            (false, None) => "QEMU ended".to_owned(),
        },
        elapsed(outcome.wall),
        match outcome.heartbeat {
            Some(at) => format!("answered {} after start", elapsed(at)),
            None => "not received".to_owned(),
        }
    );
    ensure!(
        !outcome.timed_out,
        "the guest did not stop within {} s",
        args.timeout
    );
    Ok(())
}

/// Installs both tools and prints where they are.
///
/// # Errors
/// As [`ensure`] and [`vhost_device_vsock`].
pub(crate) fn ensure_all() -> Result<()> {
    let qemu = ensure()?;
    let vhost = vhost_device_vsock()?;
    println!("qemu: {}", qemu.display());
    println!("vhost-device-vsock: {}", vhost.display());
    Ok(())
}

fn tools_dir() -> PathBuf {
    crate::workspace_root().join("target").join("tools")
}

/// The cache key of the QEMU build: version, tarball, recipe, devices and flags.
fn qemu_key() -> Result<String> {
    let text = format!(
        "recipe={QEMU_RECIPE}\nsource={QEMU_SOURCE_VERSION}\ntarball={QEMU_TARBALL}\n\
         sha256={QEMU_TARBALL_SHA256}\ndevices={DEVICES}\npatch={EDK2_LINE_PATCHED}\nflags={}\n",
        CONFIGURE_FLAGS.join(" ")
    );
    let digest = hash::sha256(text.as_bytes())?;
    Ok(digest.get(..12).unwrap_or(&digest).to_owned())
}

/// QEMU with the nitro-enclave machine: built on first use (about 2 minutes on 2 cores),
/// then taken from `target/tools/qemu-<version>-<key>/bin/qemu-system-x86_64`.
///
/// # Errors
/// Missing Debian packages (when not root the error names the apt-get command), a source
/// tarball that cannot be fetched or fails its pin, or a failed build.
pub(crate) fn ensure() -> Result<PathBuf> {
    let dir = tools_dir().join(format!("qemu-{QEMU_VERSION}-{}", qemu_key()?));
    let binary = dir.join("bin").join("qemu-system-x86_64");
    if binary.is_file() {
        ensure_runtime_packages()?;
        return Ok(binary);
    }
    let started = Instant::now();
    eprintln!(
        "qemu: building QEMU {QEMU_VERSION} with the nitro-enclave machine into {}",
        dir.display()
    );
    setup::ensure_packages(BACKPORTS_PACKAGES, Some("bookworm-backports"))?;
    setup::ensure_packages(QEMU_PACKAGES, None)?;
    let tarball = fetch_qemu_source()?;

    let work = tools_dir()
        .join("build")
        .join(format!("qemu-{QEMU_VERSION}"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let log = work.join("build.log");
    let t = Instant::now();
    eprintln!("qemu: [2/4] extracting and patching");
    let sh = xshell::Shell::new()?;
    xshell::cmd!(sh, "tar -xf {tarball} -C {work}")
        .quiet()
        .run()?;
    let source = work.join(format!("qemu-{QEMU_VERSION}"));
    patch_source(&source)?;
    eprintln!("qemu: extracted in {}", elapsed(t.elapsed()));

    let t = Instant::now();
    eprintln!("qemu: [3/4] configure (log: {})", log.display());
    let build = work.join("build");
    std::fs::create_dir_all(&build)?;
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
    std::fs::create_dir_all(dir.join("bin"))?;
    let built = build.join("qemu-system-x86_64");
    let partial = dir.join("bin").join("qemu-system-x86_64.partial");
    xshell::cmd!(sh, "strip --strip-all -o {partial} {built}")
        .quiet()
        .run()?;
    check_machine(&partial)?;
    std::fs::rename(&partial, &binary)?;
    std::fs::remove_dir_all(&work)?;
    eprintln!(
        "qemu: ready in {}: {} ({} bytes)",
        elapsed(started.elapsed()),
        binary.display(),
        std::fs::metadata(&binary)?.len()
    );
    Ok(binary)
}

/// The runtime firmware packages (checked on every use: a machine can lose them while
/// target/ survives).
fn ensure_runtime_packages() -> Result<()> {
    setup::ensure_packages(&["qemu-system-data", "seabios"], None)
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

/// Fetches the orig tarball with `apt-get source --tar-only` (once) and checks its SHA-256.
fn fetch_qemu_source() -> Result<PathBuf> {
    let t = Instant::now();
    eprintln!("qemu: [1/4] source qemu={QEMU_SOURCE_VERSION} ({QEMU_TARBALL})");
    let dir = tools_dir().join("source");
    let tarball = dir.join(QEMU_TARBALL);
    if tarball.is_file() && hash::sha256_file(&tarball)? == QEMU_TARBALL_SHA256 {
        return Ok(tarball);
    }
    let download = dir.join("download");
    if download.exists() {
        std::fs::remove_dir_all(&download)?;
    }
    std::fs::create_dir_all(&download)?;
    let sh = xshell::Shell::new()?;
    sh.change_dir(&download);
    let spec = format!("qemu={QEMU_SOURCE_VERSION}");
    let fetch = || {
        xshell::cmd!(sh, "apt-get source -q --download-only --tar-only {spec}")
            .quiet()
            .ignore_status()
            .output()
    };
    let mut out = fetch()?;
    if !out.status.success() && setup::is_root() {
        xshell::cmd!(sh, "apt-get update -qq").quiet().run()?;
        out = fetch()?;
    }
    let fetched = download.join(QEMU_TARBALL);
    if !fetched.is_file() {
        bail!(
            "cannot fetch QEMU's source ({spec}): {}\napt needs a `deb-src` entry for \
             bookworm-backports (run `cargo xtask setup --emulation` as root, which adds it). If \
             apt no longer offers this version (`apt-cache showsrc qemu` lists what it has), \
             move QEMU_SOURCE_VERSION, QEMU_TARBALL and QEMU_TARBALL_SHA256 in \
             xtask/src/qemu.rs together",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let sha = hash::sha256_file(&fetched)?;
    ensure!(
        sha == QEMU_TARBALL_SHA256,
        "{} has SHA-256 {sha}, expected {QEMU_TARBALL_SHA256}: refusing to build unpinned \
         source",
        fetched.display()
    );
    std::fs::rename(&fetched, &tarball)?;
    std::fs::remove_dir_all(&download)?;
    eprintln!(
        "qemu: source fetched and verified in {}",
        elapsed(t.elapsed())
    );
    Ok(tarball)
}

/// The two source changes: skip the missing edk2 blobs, add the nitro-only devices file.
fn patch_source(source: &Path) -> Result<()> {
    let meson = source.join("meson.build");
    let text = std::fs::read_to_string(&meson)?;
    let hits = text.lines().filter(|l| *l == EDK2_LINE).count();
    ensure!(
        hits == 1,
        "{}: expected the line `{EDK2_LINE}` once, found it {hits} times (a new QEMU version \
         needs the recipe checked)",
        meson.display()
    );
    std::fs::write(&meson, text.replace(EDK2_LINE, EDK2_LINE_PATCHED))?;
    std::fs::write(source.join(DEVICES_FILE), DEVICES)?;
    Ok(())
}

/// Requires `-M help` of `binary` to list the nitro-enclave machine.
fn check_machine(binary: &Path) -> Result<()> {
    let out = Command::new(binary)
        .args(["-M", "help"])
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.lines().any(|l| l.starts_with("nitro-enclave ")),
        "{} -M help does not list nitro-enclave (was libcbor found by configure?):\n{text}",
        binary.display()
    );
    Ok(())
}

/// vhost-device-vsock, installed with `cargo install --locked` into target/tools/ on first use.
///
/// # Errors
/// `cargo install` failed (it needs crates.io).
pub(crate) fn vhost_device_vsock() -> Result<PathBuf> {
    let root = tools_dir();
    let binary = root.join("bin").join("vhost-device-vsock");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(VHOST_DEVICE_VSOCK_VERSION));
    if installed {
        return Ok(binary);
    }
    let t = Instant::now();
    eprintln!("qemu: cargo install vhost-device-vsock {VHOST_DEVICE_VSOCK_VERSION}");
    std::fs::create_dir_all(&root)?;
    let mut install = Command::new("nice");
    install
        .args(["-n", "10", "cargo", "install", "--locked", "--version"])
        .arg(VHOST_DEVICE_VSOCK_VERSION)
        .arg("--root")
        .arg(&root)
        .arg("vhost-device-vsock")
        .current_dir(crate::workspace_root());
    run_logged(
        install,
        "vhost-device-vsock install",
        &root.join("vhost-device-vsock-install.log"),
    )?;
    eprintln!(
        "qemu: vhost-device-vsock installed in {}",
        elapsed(t.elapsed())
    );
    Ok(binary)
}

/// The vsock port the init's heartbeat goes to.
const HEARTBEAT_PORT: u32 = 9000;
/// The heartbeat byte.
const HEARTBEAT_BYTE: u8 = 0xB7;

/// `tsc_early_khz`: any plausible value; it only skips the PIT calibration that sometimes
/// hangs under TCG (5 of 31 boots in the notes' measurements).
const TSC_EARLY_KHZ: &str = "tsc_early_khz=2600000";

/// `tsc=reliable`: no clocksource watchdog on the TSC. Under TCG on a loaded host the watchdog
/// sometimes sees tens of milliseconds of skew against jiffies, marks the TSC unstable and
/// falls back to `refined-jiffies`; with no one-shot LAPIC timer in the microvm the guest then
/// never finishes initialising its random pool and the first NSM request never returns (1 of
/// 18 boots in `cargo xtask bench boot`, each time with "Marking clocksource 'tsc' as
/// unstable" on the console, and in no boot that attested).
const TSC_RELIABLE: &str = "tsc=reliable";

/// How long vhost-device-vsock may take to listen on its socket.
const VHOST_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// One boot of an EIF under `qemu-system-x86_64 -M nitro-enclave` (TCG).
///
/// Kernel command-line words added with QEMU's `-append` (never measured): `tsc_early_khz=`,
/// `tsc=reliable` and `reboot=t` always; `ccc.emulation=1 ccc.parent_cid=2` unless [`Boot::ccc_switches`]
/// turns them off (vhost-device-vsock's Unix-socket backend delivers only to CID 2: a guest
/// connection to CID 2 port P reaches the host socket `<vsock_uds>_P`).
#[derive(Debug, Clone)]
pub(crate) struct Boot {
    eif: PathBuf,
    memory_mib: u32,
    cpus: u32,
    append: Vec<String>,
    ccc_switches: bool,
    guest_cid: u32,
    enclave_id: String,
    timeout: Duration,
    heartbeat: bool,
    echo_console: bool,
    on_line: Option<LineSink>,
    cancel: Option<Arc<AtomicBool>>,
    run_dir: PathBuf,
}

/// A function called with each console line as it arrives.
#[derive(Clone)]
pub(crate) struct LineSink(Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineSink")
    }
}

/// Distinguishes the run directories of boots started by one process.
static BOOTS: AtomicUsize = AtomicUsize::new(0);

impl Boot {
    /// A boot of `eif` with 512 MiB, 2 vCPUs, a 120 s timeout and a heartbeat listener.
    pub(crate) fn new(eif: impl Into<PathBuf>) -> Self {
        let n = BOOTS.fetch_add(1, Ordering::Relaxed);
        // Short path: Unix socket paths are limited to 108 bytes.
        let run_dir = std::env::temp_dir().join(format!("ccc-boot-{}-{n}", std::process::id()));
        Self {
            eif: eif.into(),
            memory_mib: 512,
            cpus: 2,
            append: Vec::new(),
            ccc_switches: true,
            guest_cid: 16,
            enclave_id: "i-0ccc000000000000-enc0ccc000000000000".to_owned(),
            timeout: Duration::from_secs(120),
            heartbeat: true,
            echo_console: false,
            on_line: None,
            cancel: None,
            run_dir,
        }
    }

    /// Calls `sink` with every console line as it arrives (from the console thread).
    pub(crate) fn on_console_line(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_line = Some(LineSink(Arc::new(sink)));
        self
    }

    /// Ends the boot (as the timeout does) as soon as `flag` is set, e.g. by a SIGINT/SIGTERM
    /// handler; [`BootOutcome::interrupted`] then says so.
    pub(crate) fn cancel_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Where this boot keeps its sockets, logs and QEMU's temporary files (removed when the
    /// boot ends).
    pub(crate) fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Guest memory (`-m`; the EIF header's default is ignored by QEMU).
    pub(crate) fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Guest vCPUs (`-smp`).
    pub(crate) fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Adds one word to the kernel command line (QEMU `-append`, not measured).
    pub(crate) fn append(mut self, word: impl Into<String>) -> Self {
        self.append.push(word.into());
        self
    }

    /// Whether to append `ccc.emulation=1 ccc.parent_cid=2` (default on).
    pub(crate) fn ccc_switches(mut self, on: bool) -> Self {
        self.ccc_switches = on;
        self
    }

    /// The enclave id QEMU reports as the NSM `module_id`.
    pub(crate) fn enclave_id(mut self, id: impl Into<String>) -> Self {
        self.enclave_id = id.into();
        self
    }

    /// How long the guest may run before it is killed.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to answer the heartbeat on vsock port 9000 (default on).
    pub(crate) fn heartbeat(mut self, on: bool) -> Self {
        self.heartbeat = on;
        self
    }

    /// Whether to copy console lines to stderr as they arrive (default off).
    pub(crate) fn echo_console(mut self, on: bool) -> Self {
        self.echo_console = on;
        self
    }

    /// The host side of the guest's vsock: a guest `connect(2, P)` reaches a Unix socket
    /// listening at this path plus `_P` (bind it in [`Boot::start_with`]'s `before_guest`);
    /// the host connects here and sends `CONNECT P\n` to reach a guest listener on port P.
    pub(crate) fn vsock_uds(&self) -> PathBuf {
        self.run_dir.join("vm.vsock")
    }

    /// The kernel command-line words this boot appends.
    pub(crate) fn append_line(&self) -> String {
        let mut words = vec![
            TSC_EARLY_KHZ.to_owned(),
            TSC_RELIABLE.to_owned(),
            "reboot=t".to_owned(),
        ];
        if self.ccc_switches {
            words.extend(["ccc.emulation=1".to_owned(), "ccc.parent_cid=2".to_owned()]);
        }
        words.extend(self.append.iter().cloned());
        words.join(" ")
    }

    /// Starts vhost-device-vsock (waiting until it listens), the heartbeat listener and QEMU.
    ///
    /// # Errors
    /// A tool is missing or cannot be built, the EIF does not exist, or a process fails to
    /// start.
    pub(crate) fn start(&self) -> Result<Running> {
        self.start_with(|_| Ok(()))
    }

    /// As [`Boot::start`], calling `before_guest` with [`Boot::vsock_uds`] once
    /// vhost-device-vsock listens and before QEMU starts: the place to bind the host's
    /// listeners (`<vsock_uds>_<port>`) the guest connects to, so the guest never races them.
    /// When it fails, the boot is torn down and its error returned.
    ///
    /// # Errors
    /// As [`Boot::start`], and `before_guest`'s error.
    pub(crate) fn start_with(
        &self,
        before_guest: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Running> {
        ensure!(self.eif.is_file(), "no EIF at {}", self.eif.display());
        let qemu = ensure()?;
        let vhost = vhost_device_vsock()?;
        if self.run_dir.exists() {
            std::fs::remove_dir_all(&self.run_dir)?;
        }
        std::fs::create_dir_all(&self.run_dir)?;
        let mut running = Running {
            run_dir: self.run_dir.clone(),
            vhost: None,
            qemu: None,
            console: Arc::new(Mutex::new(String::new())),
            console_thread: None,
            heartbeat: None,
            started: Instant::now(),
            timeout: self.timeout,
            cancel: self.cancel.clone(),
        };

        let socket = self.run_dir.join("vhost.sock");
        let vhost_log = self.run_dir.join("vhost-device-vsock.log");
        let vm = format!(
            "guest-cid={},socket={},uds-path={}",
            self.guest_cid,
            socket.display(),
            self.vsock_uds().display()
        );
        running.vhost = Some(
            orphan_proof(&vhost)
                .args(["--vm", &vm])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&vhost_log)?)
                .stderr(std::fs::File::create(
                    self.run_dir.join("vhost-device-vsock.err"),
                )?)
                .spawn()
                .with_context(|| format!("cannot start {}", vhost.display()))?,
        );
        running.wait_for_listener(&socket)?;

        if self.heartbeat {
            let path = PathBuf::from(format!("{}_{HEARTBEAT_PORT}", self.vsock_uds().display()));
            running.heartbeat = Some(HeartbeatListener::start(&path, running.started)?);
        }
        before_guest(&self.vsock_uds())?;

        let machine = format!("nitro-enclave,vsock=vsock0,id={}", self.enclave_id);
        let chardev = format!("socket,id=vsock0,path={}", socket.display());
        let mut command = orphan_proof(&qemu);
        command
            .args(["-M", &machine, "-kernel"])
            .arg(&self.eif)
            .args(["-m", &format!("{}M", self.memory_mib)])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-chardev", &chardev])
            .args(["-append", &self.append_line()])
            .args([
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
            ]);
        for dir in FIRMWARE_DIRS {
            command.args(["-L", dir]);
        }
        // QEMU extracts the EIF's kernel and initrd into TMPDIR.
        command
            .env("TMPDIR", &self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.run_dir.join("qemu.err"))?);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", qemu.display()))?;
        let stdout = child.stdout.take().context("QEMU's stdout is not piped")?;
        running.qemu = Some(child);
        let console = Arc::clone(&running.console);
        let echo = self.echo_console;
        let on_line = self.on_line.clone();
        running.console_thread = Some(std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches('\r');
                if echo {
                    eprintln!("console| {line}");
                }
                if let Some(LineSink(sink)) = &on_line {
                    sink(line);
                }
                if let Ok(mut text) = console.lock() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }));
        Ok(running)
    }
}

/// A started boot. Dropping it kills QEMU and vhost-device-vsock and removes the run directory.
#[derive(Debug)]
pub(crate) struct Running {
    run_dir: PathBuf,
    vhost: Option<Child>,
    qemu: Option<Child>,
    console: Arc<Mutex<String>>,
    console_thread: Option<JoinHandle<()>>,
    heartbeat: Option<HeartbeatListener>,
    started: Instant,
    timeout: Duration,
    cancel: Option<Arc<AtomicBool>>,
}

/// How a boot ended.
#[derive(Debug, Clone)]
pub(crate) struct BootOutcome {
    /// Everything the guest printed on its serial console.
    pub(crate) console: String,
    /// QEMU's exit status (`None` when it had to be killed).
    pub(crate) status: Option<ExitStatus>,
    /// True when the timeout killed QEMU.
    pub(crate) timed_out: bool,
    /// True when the cancel flag ([`Boot::cancel_on`]) killed QEMU.
    pub(crate) interrupted: bool,
    /// When the heartbeat was answered, counted from the start (`None`: never).
    pub(crate) heartbeat: Option<Duration>,
    /// From start to QEMU's end.
    pub(crate) wall: Duration,
}

impl Running {
    /// Waits until vhost-device-vsock's socket is in the listening state (from
    /// /proc/net/unix: flag `__SO_ACCEPTCON`, 0x10000), so QEMU's connect cannot race it.
    fn wait_for_listener(&mut self, socket: &Path) -> Result<()> {
        let deadline = Instant::now() + VHOST_READY_TIMEOUT;
        let wanted = socket.display().to_string();
        loop {
            let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
            let listening = table.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.last() == Some(&wanted.as_str())
                    && fields
                        .get(3)
                        .and_then(|f| u32::from_str_radix(f, 16).ok())
                        .is_some_and(|flags| flags & 0x10000 != 0)
            });
            if listening {
                return Ok(());
            }
            if let Some(status) = self
                .vhost
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let err = std::fs::read_to_string(self.run_dir.join("vhost-device-vsock.err"))
                    .unwrap_or_default();
                bail!(
                    "vhost-device-vsock exited ({status}) before listening: {}",
                    err.trim()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "vhost-device-vsock did not listen on {wanted} within {VHOST_READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The console text so far.
    pub(crate) fn console(&self) -> String {
        self.console.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits for QEMU to exit (the guest's reboot ends it, thanks to `-no-reboot`), killing it
    /// at the timeout.
    ///
    /// # Errors
    /// Waiting on QEMU failed.
    pub(crate) fn wait(mut self) -> Result<BootOutcome> {
        let (mut timed_out, mut interrupted) = (false, false);
        let status = loop {
            let cancelled = self.is_cancelled();
            let qemu = self.qemu.as_mut().context("QEMU is not running")?;
            if let Some(status) = qemu.try_wait()? {
                break Some(status);
            }
            if cancelled || self.started.elapsed() >= self.timeout {
                timed_out = !cancelled;
                interrupted = cancelled;
                let _ = qemu.kill();
                let _ = qemu.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wall = self.started.elapsed();
        if let Some(thread) = self.console_thread.take() {
            let _ = thread.join();
        }
        let heartbeat = self.heartbeat.take().and_then(HeartbeatListener::stop);
        let mut console = self.console();
        if let Some(status) = status.filter(|s| !s.success()) {
            let err = std::fs::read_to_string(self.run_dir.join("qemu.err")).unwrap_or_default();
            console.push_str(&format!("[qemu exited with {status}: {}]\n", err.trim()));
        }
        Ok(BootOutcome {
            console,
            status,
            timed_out,
            interrupted,
            heartbeat,
            wall,
        })
    }

    /// The cancel flag of [`Boot::cancel_on`] is set.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// QEMU has exited (by itself or killed); its status once known.
    ///
    /// # Errors
    /// Waiting on QEMU failed.
    pub(crate) fn qemu_exited(&mut self) -> Result<Option<ExitStatus>> {
        let qemu = self.qemu.as_mut().context("QEMU is not running")?;
        Ok(qemu.try_wait()?)
    }

    /// When the boot started (just before vhost-device-vsock was spawned).
    pub(crate) fn started_at(&self) -> Instant {
        self.started
    }

    /// Time since the boot started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The process ids of QEMU and vhost-device-vsock (for the transcript, and for checking
    /// that they are gone after teardown).
    pub(crate) fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.qemu.as_ref().map(Child::id),
            self.vhost.as_ref().map(Child::id),
        )
    }

    /// The run directory (sockets, logs; removed on drop).
    pub(crate) fn run_dir(&self) -> &Path {
        &self.run_dir
    }
}

/// A command for `program` that dies with the thread that spawns it: run through util-linux's
/// `setpriv --pdeathsig KILL` (which sets `PR_SET_PDEATHSIG` and then execs the program, so the
/// process id is the program's), so that even a SIGKILL of the xtask leaves no QEMU or
/// vhost-device-vsock behind. Orderly ends (timeout, Ctrl-C, errors) go through
/// [`Running`]'s `Drop`. Falls back to starting the program directly when `setpriv` is absent.
/// Note: the signal follows the *thread* that spawned the child, so a boot must be started
/// and waited for on one thread that outlives it.
pub(crate) fn orphan_proof(program: &Path) -> Command {
    match which_setpriv() {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn which_setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in [self.qemu.as_mut(), self.vhost.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(listener) = self.heartbeat.take() {
            listener.stop();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// Answers the init's heartbeat like nitro-cli: read 0xB7, echo it.
#[derive(Debug)]
struct HeartbeatListener {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<Duration>>,
}

impl HeartbeatListener {
    fn start(path: &Path, started: Instant) -> Result<Self> {
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return None;
                }
                let Ok(mut stream) = stream else { continue };
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).is_ok()
                    && byte == [HEARTBEAT_BYTE]
                    && stream.write_all(&byte).is_ok()
                {
                    return Some(started.elapsed());
                }
            }
            None
        });
        Ok(Self {
            path: path.to_path_buf(),
            stop,
            thread,
        })
    }

    /// Stops listening; returns when the heartbeat was answered, if it was.
    fn stop(self) -> Option<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        if !self.thread.is_finished() {
            // Wake the blocked accept so the thread sees the flag.
            let _ = UnixStream::connect(&self.path);
        }
        let answered = self.thread.join().ok().flatten();
        let _ = std::fs::remove_file(&self.path);
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_line_has_the_tcg_fixes_and_switches() {
        let boot = Boot::new("x.eif").append("printk.time=1");
        assert_eq!(
            boot.append_line(),
            "tsc_early_khz=2600000 tsc=reliable reboot=t ccc.emulation=1 ccc.parent_cid=2 \
             printk.time=1"
        );
        assert_eq!(
            Boot::new("x.eif").ccc_switches(false).append_line(),
            "tsc_early_khz=2600000 tsc=reliable reboot=t"
        );
    }

    #[test]
    fn socket_paths_fit_sun_path() {
        let boot = Boot::new("x.eif");
        let longest = format!("{}_{}", boot.vsock_uds().display(), u32::MAX);
        assert!(longest.len() < 108, "{longest}");
        assert_ne!(Boot::new("x.eif").vsock_uds(), boot.vsock_uds());
    }

    /// The listener behaves like nitro-cli's: it echoes 0xB7, and stopping it without a
    /// heartbeat returns promptly with `None`.
    #[test]
    fn heartbeat_listener_echoes_and_stops() {
        let dir = std::env::temp_dir().join(format!("ccc-hb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vm.vsock_9000");
        let listener = HeartbeatListener::start(&path, Instant::now()).unwrap();
        let mut guest = UnixStream::connect(&path).unwrap();
        guest.write_all(&[0xB7]).unwrap();
        let mut echo = [0u8; 1];
        guest.read_exact(&mut echo).unwrap();
        assert_eq!(echo, [0xB7]);
        assert!(listener.stop().is_some());
        assert!(!path.exists());

        let listener = HeartbeatListener::start(&path, Instant::now()).unwrap();
        assert_eq!(listener.stop(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
