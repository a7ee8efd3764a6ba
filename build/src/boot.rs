//! One boot of an EIF under QEMU's `nitro-enclave` machine (TCG) with the emulation tools of
//! [`crate::tools`]: [`Boot`] starts vhost-device-vsock and QEMU, answers the enclave's
//! heartbeat, captures the console, enforces a timeout, and tears everything down on drop.
//! The `qemu` command builds the tools or boots one EIF with them. Emulation, benchmarks and
//! the plugin all boot through here.
//!
//! Under TCG the guest needs `tsc_early_khz=` (PIT calibration sometimes hangs),
//! `tsc=reliable` (see [`TSC_RELIABLE`]) and `reboot=t` (the microvm has no keyboard
//! controller to reset through); [`Boot`] appends them (not measured).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::error::{Error, IoContext, Result, ensure};
use crate::progress::elapsed;
use crate::tools::{self, FIRMWARE_DIRS, Tools};

/// Options of the `qemu` command.
#[derive(Debug, clap::Args)]
pub struct Args {
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

impl Args {
    /// The options that only build or install the tools (no `--boot`).
    pub fn tools() -> Self {
        Self {
            boot: None,
            timeout: 120,
            append: Vec::new(),
            memory: 512,
            cpus: 2,
            no_heartbeat: false,
            enclave_id: None,
            console: None,
            no_ccc_switches: false,
        }
    }
}

/// The `qemu` command: without `--boot`, builds or installs the tools and prints where they
/// are; with it, boots that EIF and prints the console (`cargo_dir` is where `cargo install`
/// runs, see [`tools::ensure`]).
///
/// # Errors
/// A missing prerequisite (with its fix), a failed build, or a failed boot.
pub fn run(cache: &Cache, cargo_dir: &Path, args: &Args) -> Result<()> {
    let tools = tools::ensure(cache, cargo_dir)?;
    let Some(eif) = &args.boot else {
        println!("qemu: {}", tools.qemu.display());
        println!("vhost-device-vsock: {}", tools.vhost_device_vsock.display());
        return Ok(());
    };
    let mut boot = Boot::new(eif, &tools)
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
        std::fs::write(path, &outcome.console).io("write", path)?;
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
        Error::boot(format!("the guest did not stop within {} s", args.timeout))
    );
    Ok(())
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
pub struct Boot {
    eif: PathBuf,
    tools: Tools,
    memory_mib: u32,
    cpus: u32,
    append: Vec<String>,
    ccc_switches: bool,
    guest_cid: u32,
    enclave_id: String,
    timeout: Duration,
    heartbeat: bool,
    echo_console: bool,
    rtc_base: Option<String>,
    on_line: Option<LineSink>,
    cancel: Option<Arc<AtomicBool>>,
    run_dir: PathBuf,
}

/// A function called with each console line as it arrives.
#[derive(Clone)]
pub struct LineSink(Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineSink")
    }
}

/// Distinguishes the run directories of boots started by one process.
static BOOTS: AtomicUsize = AtomicUsize::new(0);

impl Boot {
    /// A boot of `eif` with `tools`, 512 MiB, 2 vCPUs, a 120 s timeout and a heartbeat
    /// listener.
    pub fn new(eif: impl Into<PathBuf>, tools: &Tools) -> Self {
        let n = BOOTS.fetch_add(1, Ordering::Relaxed);
        // Short path: Unix socket paths are limited to 108 bytes.
        let run_dir = std::env::temp_dir().join(format!("ccc-boot-{}-{n}", std::process::id()));
        Self {
            eif: eif.into(),
            tools: tools.clone(),
            memory_mib: 512,
            cpus: 2,
            append: Vec::new(),
            ccc_switches: true,
            guest_cid: 16,
            enclave_id: "i-0ccc000000000000-enc0ccc000000000000".to_owned(),
            timeout: Duration::from_secs(120),
            heartbeat: true,
            echo_console: false,
            rtc_base: None,
            on_line: None,
            cancel: None,
            run_dir,
        }
    }

    /// Calls `sink` with every console line as it arrives (from the console thread).
    pub fn on_console_line(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_line = Some(LineSink(Arc::new(sink)));
        self
    }

    /// Ends the boot (as the timeout does) as soon as `flag` is set, e.g. by a SIGINT/SIGTERM
    /// handler; [`BootOutcome::interrupted`] then says so.
    pub fn cancel_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Where this boot keeps its sockets, logs and QEMU's temporary files (removed when the
    /// boot ends).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Guest memory (`-m`; the EIF header's default is ignored by QEMU).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Guest vCPUs (`-smp`).
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Adds one word to the kernel command line (QEMU `-append`, not measured).
    pub fn append(mut self, word: impl Into<String>) -> Self {
        self.append.push(word.into());
        self
    }

    /// Whether to append `ccc.emulation=1 ccc.parent_cid=2` (default on).
    pub fn ccc_switches(mut self, on: bool) -> Self {
        self.ccc_switches = on;
        self
    }

    /// The enclave id QEMU reports as the NSM `module_id`.
    pub fn enclave_id(mut self, id: impl Into<String>) -> Self {
        self.enclave_id = id.into();
        self
    }

    /// Starts the guest's wall clock (its CMOS RTC, which the kernel reads at boot) at `base`
    /// instead of the host's time: QEMU's `-rtc base=<base>` (`2001-01-01T00:00:00`, or `utc`).
    /// The NSM device's document time stays the host's, so the enclave sees the difference.
    pub fn rtc_base(mut self, base: impl Into<String>) -> Self {
        self.rtc_base = Some(base.into());
        self
    }

    /// How long the guest may run before it is killed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to answer the heartbeat on vsock port 9000 (default on).
    pub fn heartbeat(mut self, on: bool) -> Self {
        self.heartbeat = on;
        self
    }

    /// Whether to copy console lines to stderr as they arrive (default off).
    pub fn echo_console(mut self, on: bool) -> Self {
        self.echo_console = on;
        self
    }

    /// The host side of the guest's vsock: a guest `connect(2, P)` reaches a Unix socket
    /// listening at this path plus `_P` (bind it in [`Boot::start_with`]'s `before_guest`);
    /// the host connects here and sends `CONNECT P\n` to reach a guest listener on port P.
    pub fn vsock_uds(&self) -> PathBuf {
        self.run_dir.join("vm.vsock")
    }

    /// The kernel command-line words this boot appends.
    pub fn append_line(&self) -> String {
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
    pub fn start(&self) -> Result<Running> {
        self.start_with(|_| Ok::<(), Error>(()))
    }

    /// As [`Boot::start`], calling `before_guest` with [`Boot::vsock_uds`] once
    /// vhost-device-vsock listens and before QEMU starts: the place to bind the host's
    /// listeners (`<vsock_uds>_<port>`) the guest connects to, so the guest never races them.
    /// When it fails, the boot is torn down and its error returned.
    ///
    /// # Errors
    /// As [`Boot::start`], and `before_guest`'s error.
    pub fn start_with<E: From<Error>>(
        &self,
        before_guest: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Running, E> {
        ensure!(
            self.eif.is_file(),
            Error::boot(format!("no EIF at {}", self.eif.display())).into()
        );
        let qemu = &self.tools.qemu;
        let vhost = &self.tools.vhost_device_vsock;
        if self.run_dir.exists() {
            std::fs::remove_dir_all(&self.run_dir).io("remove", &self.run_dir)?;
        }
        std::fs::create_dir_all(&self.run_dir).io("create", &self.run_dir)?;
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
            orphan_proof(vhost)
                .args(["--vm", &vm])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&vhost_log).io("create", &vhost_log)?)
                .stderr(create(&self.run_dir.join("vhost-device-vsock.err"))?)
                .spawn()
                .map_err(|e| Error::boot(format!("cannot start {}: {e}", vhost.display())))?,
        );
        running.wait_for_listener(&socket)?;

        if self.heartbeat {
            let path = PathBuf::from(format!("{}_{HEARTBEAT_PORT}", self.vsock_uds().display()));
            running.heartbeat = Some(HeartbeatListener::start(&path, running.started)?);
        }
        before_guest(&self.vsock_uds())?;

        let machine = format!("nitro-enclave,vsock=vsock0,id={}", self.enclave_id);
        let chardev = format!("socket,id=vsock0,path={}", socket.display());
        let mut command = orphan_proof(qemu);
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
        if let Some(base) = &self.rtc_base {
            command.args(["-rtc", &format!("base={base}")]);
        }
        for dir in FIRMWARE_DIRS {
            command.args(["-L", dir]);
        }
        // QEMU extracts the EIF's kernel and initrd into TMPDIR.
        command
            .env("TMPDIR", &self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(create(&self.run_dir.join("qemu.err"))?);
        let mut child = command
            .spawn()
            .map_err(|e| Error::boot(format!("cannot start {}: {e}", qemu.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::boot("QEMU's stdout is not piped"))?;
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
pub struct Running {
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
pub struct BootOutcome {
    /// Everything the guest printed on its serial console.
    pub console: String,
    /// QEMU's exit status (`None` when it had to be killed).
    pub status: Option<ExitStatus>,
    /// True when the timeout killed QEMU.
    pub timed_out: bool,
    /// True when the cancel flag ([`Boot::cancel_on`]) killed QEMU.
    pub interrupted: bool,
    /// When the heartbeat was answered, counted from the start (`None`: never).
    pub heartbeat: Option<Duration>,
    /// From start to QEMU's end.
    pub wall: Duration,
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
                return Err(Error::boot(format!(
                    "vhost-device-vsock exited ({status}) before listening: {}",
                    err.trim()
                )));
            }
            ensure!(
                Instant::now() < deadline,
                Error::boot(format!(
                    "vhost-device-vsock did not listen on {wanted} within {VHOST_READY_TIMEOUT:?}"
                ))
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The console text so far.
    pub fn console(&self) -> String {
        self.console.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits for QEMU to exit (the guest's reboot ends it, thanks to `-no-reboot`), killing it
    /// at the timeout.
    ///
    /// # Errors
    /// Waiting on QEMU failed.
    pub fn wait(mut self) -> Result<BootOutcome> {
        let (mut timed_out, mut interrupted) = (false, false);
        let status = loop {
            let cancelled = self.is_cancelled();
            let qemu = self
                .qemu
                .as_mut()
                .ok_or_else(|| Error::boot("QEMU is not running"))?;
            if let Some(status) = qemu
                .try_wait()
                .map_err(|e| Error::boot(format!("cannot wait for QEMU: {e}")))?
            {
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
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// QEMU has exited (by itself or killed); its status once known.
    ///
    /// # Errors
    /// Waiting on QEMU failed.
    pub fn qemu_exited(&mut self) -> Result<Option<ExitStatus>> {
        let qemu = self
            .qemu
            .as_mut()
            .ok_or_else(|| Error::boot("QEMU is not running"))?;
        qemu.try_wait()
            .map_err(|e| Error::boot(format!("cannot wait for QEMU: {e}")))
    }

    /// When the boot started (just before vhost-device-vsock was spawned).
    pub fn started_at(&self) -> Instant {
        self.started
    }

    /// Time since the boot started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The process ids of QEMU and vhost-device-vsock (for the transcript, and for checking
    /// that they are gone after teardown).
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.qemu.as_ref().map(Child::id),
            self.vhost.as_ref().map(Child::id),
        )
    }

    /// The run directory (sockets, logs; removed on drop).
    pub fn run_dir(&self) -> &Path {
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
pub fn orphan_proof(program: &Path) -> Command {
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

/// Creates a log file for a child's output.
fn create(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).io("create", path)
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
        let listener = UnixListener::bind(path).io("listen on", path)?;
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

    fn no_tools() -> Tools {
        Tools {
            qemu: PathBuf::from("/nonexistent/qemu"),
            vhost_device_vsock: PathBuf::from("/nonexistent/vhost"),
        }
    }

    #[test]
    fn append_line_has_the_tcg_fixes_and_switches() {
        let boot = Boot::new("x.eif", &no_tools()).append("printk.time=1");
        assert_eq!(
            boot.append_line(),
            "tsc_early_khz=2600000 tsc=reliable reboot=t ccc.emulation=1 ccc.parent_cid=2 \
             printk.time=1"
        );
        assert_eq!(
            Boot::new("x.eif", &no_tools())
                .ccc_switches(false)
                .append_line(),
            "tsc_early_khz=2600000 tsc=reliable reboot=t"
        );
    }

    #[test]
    fn socket_paths_fit_sun_path() {
        let boot = Boot::new("x.eif", &no_tools());
        let longest = format!("{}_{}", boot.vsock_uds().display(), u32::MAX);
        assert!(longest.len() < 108, "{longest}");
        assert_ne!(
            Boot::new("x.eif", &no_tools()).vsock_uds(),
            boot.vsock_uds()
        );
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
}
