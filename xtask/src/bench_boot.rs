//! `cargo xtask bench boot`: boot → first attestation of the enclave template's image against a
//! minimal reference image, both booted the same way under QEMU's nitro-enclave machine (TCG)
//! and timed with the guest's own clock; plus each EIF's size and the least memory it boots in.
//!
//! # The two images
//! - **template**: what `cargo xtask release` builds from this checkout (same kernel, command
//!   line, `ccc-init`, layout): `ccc-init` mounts, sends the heartbeat, switches root and starts
//!   `ccc-template-enclave`, which asks the NSM for a document first thing at start-up.
//! - **reference**: the "kernel + a one-line init that calls NSM once": the same kernel
//!   and measured command line, and one ramdisk holding only `dev/` and `/init` =
//!   `ccc-boot-reference` (mounts `/dev` and `/proc`, one NSM `Attestation` with the SDK's
//!   client — the template's request —, prints, reboots). No `ccc-init`, no heartbeat, no
//!   second ramdisk. Compiled by the release pipeline (same toolchain, profile, target, flags).
//!
//! # What is measured
//! - **guest**: the uptime (`/proc/uptime`, the kernel's `CLOCK_BOOTTIME` in 10 ms steps) the
//!   attesting program reads right after the NSM returned the document, from its console line.
//!   Zero is the kernel's timekeeping start: firmware, QEMU's EIF loading and the bzImage's
//!   decompression come before it, and are the same for both images (same kernel and flags).
//! - **host**: from the moment vhost-device-vsock is started to the moment that console line
//!   reaches the host (QEMU start, firmware and decompression included).
//!
//! Both images boot with [`Boot`]'s flags (2 vCPUs, TCG, `-append` with the TCG fixes and the
//! emulation switches, heartbeat answered). After one untimed warm-up boot each, the timed
//! boots alternate and swap order every round, so a changing machine load falls on both.
//! A boot ends as soon as the attestation line is seen (the template serves forever; the
//! reference reboots by itself).
//!
//! # Stalls
//! Under TCG on a loaded host, the guest's clocksource watchdog sometimes marks the TSC
//! unstable (tens of milliseconds of skew against jiffies) and falls back to `refined-jiffies`;
//! the guest's random pool then never initialises and the first NSM request does not return
//! before the driver's 120 s timeout (1 in 18 boots before the fix; every stalled console had
//! "Marking clocksource 'tsc' as unstable", no attesting one did). Every emulated boot now
//! appends `tsc=reliable` (see `ccc_build::boot::Boot`), and no stall was seen in the 22 boots after it.
//! Should one still happen, the boot is killed at `--timeout`, counted, reported, and tried
//! again (`--retries`); it never enters the timings.
//!
//! # Memory
//! A binary search, in steps of `--memory-step` MiB between `--memory-floor` and the timed
//! boots' memory, for the least `-m` at which each image still reaches its first attestation,
//! compared with the rule of thumb "enclave memory ≥ 4 × EIF size" (aws-nitro-enclaves-cli
//! issue 196: the initramfs is unpacked into RAM) and Nitro's 64 MiB minimum (Linux
//! `Documentation/virt/ne_overview.rst`). It assumes a boot that works with N MiB also works
//! with more.

use anyhow::{Context, Result, bail, ensure};
use ccc_eif::initramfs::{self, Init};
use ccc_eif::{Eif, EifBuilder, EifIdentity, FileSource, SourceDateEpoch};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ccc_build::boot::Boot;
use ccc_build::progress::elapsed;
use ccc_build::project::{AppSpec, Project};
use ccc_build::release;
use ccc_build::tools::Tools;

/// The reference's package and binary.
const REFERENCE_PACKAGE: &str = "ccc-boot-reference";

/// Where the benchmark writes its images, relative to the workspace root.
const WORK_DIR: &str = "target/ccc-bench/boot";

/// The target: the template reaches its first attestation within 1.1 × the reference's
/// time (medians of the guest times).
const TARGET_RATIO: f64 = 1.1;

/// Nitro's smallest enclave (Linux `Documentation/virt/ne_overview.rst`).
const NITRO_MIN_MIB: u32 = 64;

/// The rule of thumb "memory ≥ 4 × EIF size" (aws-nitro-enclaves-cli issue 196).
const EIF_MEMORY_FACTOR: u64 = 4;

const MIB: u64 = 1024 * 1024;

/// Options of `cargo xtask bench boot`.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask bench boot",
    about = "Boot → first attestation of the template's EIF vs a one-line-init reference, \
             under QEMU nitro-enclave (TCG), timed inside the guest"
)]
pub(crate) struct Args {
    /// Timed boots of each image (after one untimed warm-up boot each).
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Guest memory of the timed boots, in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Seconds a boot may take to reach its attestation before it counts as stalled (a boot
    /// normally takes 2-5 s; see the module docs on stalls).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// How often a stalled boot is tried again before the benchmark gives up.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Do not search for the least memory each image boots in.
    #[arg(long)]
    no_memory_search: bool,
    /// Lowest memory the search tries, in MiB.
    #[arg(long, default_value_t = 16)]
    memory_floor: u32,
    /// Resolution of the memory search, in MiB.
    #[arg(long, default_value_t = 8)]
    memory_step: u32,
}

/// `cargo xtask bench boot [OPTIONS]` (`args` are the words after `boot`).
///
/// # Errors
/// Bad options, a failed build, a missing emulation tool, or an image that does not reach its
/// attestation at the timed memory.
pub(crate) fn run(project: &Project, args: &[String]) -> Result<()> {
    let args = Args::try_parse_from(
        std::iter::once("cargo xtask bench boot".to_owned()).chain(args.iter().cloned()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(
        args.memory_step > 0 && args.memory_floor > 0 && args.memory_floor < args.memory,
        "the memory search needs 0 < --memory-floor < --memory and --memory-step > 0"
    );
    let dir = project.root.join(WORK_DIR);
    let tools = ccc_build::tools::ensure(&project.cache, &project.root)?;
    let images = [
        Image::template(project, &dir, &tools).context("building the template's image")?,
        Image::reference(project, &dir, &tools).context("building the reference image")?,
    ];
    for image in &images {
        remove_old_consoles(&image.eif)?;
        eprintln!(
            "bench boot: {} image {} ({} bytes)",
            image.subject.name(),
            image.eif.display(),
            image.len
        );
    }

    let timeout = Duration::from_secs(args.timeout);
    let mut stalls = [0u32; 2];
    for (image, stalled) in images.iter().zip(&mut stalls) {
        eprintln!("bench boot: warm-up boot of the {}", image.subject.name());
        boot_retrying(image, args.memory, timeout, args.retries, stalled)?;
    }
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.runs {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let (image, list) = (&images[index], &mut samples[index]);
            let sample = boot_retrying(
                image,
                args.memory,
                timeout,
                args.retries,
                &mut stalls[index],
            )?;
            eprintln!(
                "bench boot: {} {}/{}: guest {} ms, host {} ms",
                image.subject.name(),
                round + 1,
                args.runs,
                sample.attested.as_millis(),
                sample.host.as_millis()
            );
            list.push(sample);
        }
    }

    let memory = if args.no_memory_search {
        None
    } else {
        let mut found = Vec::new();
        for (image, stalled) in images.iter().zip(&mut stalls) {
            found.push(least_memory(image, &args, stalled)?);
        }
        Some(found)
    };
    print_report(&args, &images, &samples, memory.as_deref(), stalls);
    Ok(())
}

/// Removes the consoles an earlier run saved next to `eif`.
fn remove_old_consoles(eif: &Path) -> Result<()> {
    let Some(dir) = eif.parent() else {
        return Ok(());
    };
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("console-") && name.ends_with(".txt") {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Which image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// The enclave template (`ccc-init` + `ccc-template-enclave`).
    Template,
    /// The one-line-init reference (`ccc-boot-reference` as PID 1).
    Reference,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Self::Template => "template",
            Self::Reference => "reference",
        }
    }

    /// The guest uptime of the first attestation line in `console`:
    /// - template: `ccc-enclave: attestation: <backend>, module <id>, document <n> bytes at
    ///   <time>, uptime <s> s, signature ...`;
    /// - reference: `ccc-boot-reference: attestation document <n> bytes at uptime <s> s`.
    fn attested(self, console: &str) -> Option<Duration> {
        let marker = match self {
            Self::Template => "ccc-enclave: attestation: ",
            Self::Reference => "ccc-boot-reference: attestation document ",
        };
        first_uptime(console, marker, "uptime ")
    }

    /// The guest uptime at which PID 1 reported its start: `ccc-init: started at <s> s after
    /// boot`, or `ccc-boot-reference: started at uptime <s> s`.
    fn pid1_started(self, console: &str) -> Option<Duration> {
        match self {
            Self::Template => first_uptime(console, "ccc-init: started at ", ""),
            Self::Reference => first_uptime(console, "ccc-boot-reference: started at ", "uptime "),
        }
    }

    /// The guest uptime at which the init started the application (template only):
    /// `ccc-init: starting /bin/<app> at <s> s after boot`.
    fn app_started(self, console: &str) -> Option<Duration> {
        match self {
            Self::Template => first_uptime(console, "ccc-init: starting ", " at "),
            Self::Reference => None,
        }
    }
}

/// In the first line holding `marker`, the seconds after the first `before` that follows the
/// marker (right after it for an empty `before`), which must be followed by ` s` (e.g.
/// `uptime 1.23 s`). Serial-console lines may
/// carry kernel output in front of the marker, so the marker is searched, not anchored.
fn first_uptime(console: &str, marker: &str, before: &str) -> Option<Duration> {
    console.lines().find_map(|line| {
        let rest = &line[line.find(marker)? + marker.len()..];
        let value = &rest[rest.find(before)? + before.len()..];
        let end = value.find(' ')?;
        value[end..]
            .starts_with(" s")
            .then(|| parse_seconds(&value[..end]))
            .flatten()
    })
}

/// Decimal seconds (`1.23`, `0.930000`, `12`) as a duration, to the nanosecond; `None` for
/// anything else.
fn parse_seconds(text: &str) -> Option<Duration> {
    let (whole, fraction) = match text.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
    Some(Duration::new(whole.parse().ok()?, nanos))
}

/// One image to boot.
#[derive(Debug)]
struct Image {
    subject: Subject,
    eif: PathBuf,
    len: u64,
    tools: Tools,
}

impl Image {
    /// The release pipeline's image of the enclave template, built from this checkout.
    fn template(project: &Project, dir: &Path, tools: &Tools) -> Result<Self> {
        let built =
            release::build_image(project, &project.app, None, &dir.join("template"), |_| {})?;
        Ok(Self {
            subject: Subject::Template,
            eif: built.eif,
            len: built.len,
            tools: tools.clone(),
        })
    }

    /// The reference image: `ccc-boot-reference` compiled by the release pipeline (which also
    /// assembles a standard two-ramdisk image of it, unused here), then packed as the only
    /// ramdisk's `/init` with the template's kernel and command line.
    fn reference(project: &Project, dir: &Path, tools: &Tools) -> Result<Self> {
        let mut parts: Option<(PathBuf, String, PathBuf, EifIdentity)> = None;
        release::build_image(
            project,
            &AppSpec::bin(REFERENCE_PACKAGE, REFERENCE_PACKAGE),
            None,
            &dir.join("reference-build"),
            |spec| {
                parts = Some((
                    spec.kernel.path.clone(),
                    spec.cmdline.clone(),
                    spec.app.clone(),
                    spec.identity.clone(),
                ));
            },
        )?;
        let (kernel, cmdline, init, identity) =
            parts.context("the release pipeline did not describe the reference's image")?;
        // Compressed like the release's ramdisks, so both kernels unpack gzip.
        let ramdisk = ccc_build::image::ramdisk_bytes(&initramfs::bootstrap_ramdisk(
            SourceDateEpoch::UNIX_EPOCH,
            Init::File(&init),
        )?)?;
        let kernel = FileSource::open(&kernel)
            .with_context(|| format!("cannot open the kernel {}", kernel.display()))?;
        let eif = dir.join(format!("{REFERENCE_PACKAGE}.eif"));
        let built = EifBuilder::new(&kernel, cmdline, identity)
            .ramdisk(&ramdisk)
            .write_file(&eif)
            .with_context(|| format!("cannot write {}", eif.display()))?;
        let read = Eif::open(&eif)
            .with_context(|| format!("{} does not read back as an EIF", eif.display()))?;
        ensure!(
            read.measurements == built.measurements && read.len == built.len,
            "{} reads back with other measurements than it was written with",
            eif.display()
        );
        Ok(Self {
            subject: Subject::Reference,
            eif,
            len: built.len,
            tools: tools.clone(),
        })
    }
}

/// Numbers the saved consoles of this run.
static BOOTS: AtomicUsize = AtomicUsize::new(0);

/// One boot that reached its attestation.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Guest uptime at the first attestation.
    attested: Duration,
    /// Guest uptime when PID 1 reported its start.
    pid1: Option<Duration>,
    /// Guest uptime when the init started the application (template).
    app: Option<Duration>,
    /// Host time from the boot's start to the attestation line.
    host: Duration,
}

/// Boots `image` with `memory_mib` MiB until its attestation line (then stops it), and saves
/// the console next to the EIF (`console-<subject>-<n>-<MiB>MiB.txt`). The outer error is a
/// tool failure; the inner one says why the guest did not attest (for the memory search, an
/// expected outcome).
fn boot_once(
    image: &Image,
    memory_mib: u32,
    timeout: Duration,
) -> Result<std::result::Result<Sample, Failure>> {
    let done = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let subject = image.subject;
    let (on_done, on_seen) = (Arc::clone(&done), Arc::clone(&seen));
    let boot = Boot::new(&image.eif, &image.tools)
        .memory_mib(memory_mib)
        .timeout(timeout)
        .cancel_on(Arc::clone(&done))
        .on_console_line(move |line| {
            if subject.attested(line).is_some() {
                if let Ok(mut at) = on_seen.lock() {
                    at.get_or_insert_with(Instant::now);
                }
                on_done.store(true, Ordering::SeqCst);
            } else if kernel_failure(line) {
                // panic=30 would keep the machine up for 30 s, and an oops can hang it: end
                // the boot now.
                on_done.store(true, Ordering::SeqCst);
            }
        });
    let running = boot.start()?;
    let started = running.started_at();
    let outcome = running.wait()?;
    let n = BOOTS.fetch_add(1, Ordering::Relaxed);
    let saved = image.eif.with_file_name(format!(
        "console-{}-{n:03}-{memory_mib}MiB.txt",
        subject.name()
    ));
    std::fs::write(&saved, &outcome.console)
        .with_context(|| format!("cannot write {}", saved.display()))?;
    let host = seen
        .lock()
        .ok()
        .and_then(|at| *at)
        .map(|at| at.saturating_duration_since(started));
    match (subject.attested(&outcome.console), host) {
        (Some(attested), Some(host)) => Ok(Ok(Sample {
            attested,
            pid1: subject.pid1_started(&outcome.console),
            app: subject.app_started(&outcome.console),
            host,
        })),
        _ => {
            let oops = outcome.console.lines().find(|line| kernel_failure(line));
            let how = if let Some(line) = oops {
                format!("the kernel failed: {}", line.trim())
            } else if outcome.timed_out {
                format!("no attestation line within {}", elapsed(timeout))
            } else {
                "QEMU ended without an attestation line".to_owned()
            };
            let tail: Vec<&str> = outcome.console.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Ok(Err(Failure {
                stalled: outcome.timed_out && oops.is_none(),
                reason: format!(
                    "{how} ({memory_mib} MiB; console in {}); it ends:\n  {}",
                    saved.display(),
                    tail.join("\n  ")
                ),
            }))
        }
    }
}

/// A console line saying the kernel failed: a panic, an oops or a `BUG:` (seen with too little
/// memory: `BUG: unable to handle page fault`, after which the machine hangs).
fn kernel_failure(line: &str) -> bool {
    line.contains("Kernel panic") || line.contains("BUG: ") || line.contains("Oops: ")
}

/// Why a boot did not reach its attestation.
#[derive(Debug, Clone)]
struct Failure {
    /// It was still running at the timeout (the NSM stall of the module docs, or a hang).
    stalled: bool,
    /// What happened, with the end of the console.
    reason: String,
}

/// [`boot_once`], trying a stalled boot again up to `retries` times (counted in `stalled`).
///
/// # Errors
/// A tool failure, a boot that fails otherwise, or one that stalls every time.
fn boot_retrying(
    image: &Image,
    memory_mib: u32,
    timeout: Duration,
    retries: u32,
    stalled: &mut u32,
) -> Result<Sample> {
    let mut attempt = 0;
    loop {
        match boot_once(image, memory_mib, timeout)? {
            Ok(sample) => return Ok(sample),
            Err(failure) if failure.stalled && attempt < retries => {
                attempt += 1;
                *stalled += 1;
                eprintln!(
                    "bench boot: the {} STALLED, trying again ({attempt}/{retries}): {}",
                    image.subject.name(),
                    failure.reason.lines().next().unwrap_or_default()
                );
            }
            Err(failure) => bail!(
                "the {} did not attest{}: {}",
                image.subject.name(),
                if failure.stalled {
                    format!(" in {} tries", retries + 1)
                } else {
                    String::new()
                },
                failure.reason
            ),
        }
    }
}

/// The result of the memory search for one image.
#[derive(Debug, Clone, Copy)]
struct MemoryFound {
    /// The least memory (MiB) that reached the attestation.
    least: u32,
    /// The most memory (MiB) that did not (`None`: the floor worked).
    failed: Option<u32>,
}

/// Binary search for the least memory (a multiple of `step` above `floor`, at most `ceiling`)
/// at which `image` still attests. `ceiling` is known to work (the timed boots used it).
/// A stalled probe is tried once more before it counts as failed (with too little memory a
/// boot may hang too, so more tries would mostly cost time).
fn least_memory(image: &Image, args: &Args, stalled: &mut u32) -> Result<MemoryFound> {
    let (floor, ceiling, step) = (args.memory_floor, args.memory, args.memory_step);
    let timeout = Duration::from_secs(args.timeout);
    let mut probe = |mib: u32| -> Result<bool> {
        let mut attempt = 0;
        let result = loop {
            match boot_once(image, mib, timeout)? {
                Err(failure) if failure.stalled && attempt < args.retries.min(1) => {
                    attempt += 1;
                    *stalled += 1;
                    eprintln!(
                        "bench boot: memory probe {} at {mib} MiB STALLED, trying once more",
                        image.subject.name()
                    );
                }
                other => break other,
            }
        };
        eprintln!(
            "bench boot: memory probe {} at {mib} MiB: {}",
            image.subject.name(),
            match &result {
                Ok(sample) => format!("attested at {} ms", sample.attested.as_millis()),
                Err(failure) => format!(
                    "FAILED ({})",
                    failure.reason.lines().next().unwrap_or_default()
                ),
            }
        );
        Ok(result.is_ok())
    };
    if probe(floor)? {
        return Ok(MemoryFound {
            least: floor,
            failed: None,
        });
    }
    let (mut bad, mut good) = (floor, ceiling);
    while good - bad > step {
        let mid = bad + ((good - bad) / 2).div_ceil(step) * step;
        let mid = mid.min(good - step).max(bad + step);
        if probe(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(MemoryFound {
        least: good,
        failed: Some(bad),
    })
}

/// Median of durations (the lower middle one for an even count).
fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// Half the range of the kernel's time to PID 1 over all boots of both images.
fn spread(samples: &[Vec<Sample>; 2]) -> Duration {
    let all: Vec<Duration> = samples.iter().flatten().filter_map(|s| s.pid1).collect();
    match (all.iter().min(), all.iter().max()) {
        (Some(lo), Some(hi)) => (*hi - *lo) / 2,
        _ => Duration::ZERO,
    }
}

fn ms(value: Option<Duration>) -> String {
    value.map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis()))
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (!b.is_zero()).then(|| a.as_secs_f64() / b.as_secs_f64())
}

/// A report row: its label, what it takes from a sample, and best (true) or median.
type Row = (&'static str, fn(&Sample) -> Option<Duration>, bool);

fn print_report(
    args: &Args,
    images: &[Image; 2],
    samples: &[Vec<Sample>; 2],
    memory: Option<&[MemoryFound]>,
    stalls: [u32; 2],
) {
    let stat = |index: usize, pick: fn(&Sample) -> Option<Duration>, best: bool| {
        let values: Vec<Duration> = samples[index].iter().filter_map(pick).collect();
        if best {
            values.iter().min().copied()
        } else {
            median(&values)
        }
    };
    let rows: [Row; 7] = [
        (
            "guest: kernel → attestation, median",
            |s| Some(s.attested),
            false,
        ),
        (
            "guest: kernel → attestation, best",
            |s| Some(s.attested),
            true,
        ),
        ("guest: kernel → PID 1 start, median", |s| s.pid1, false),
        (
            "guest: PID 1 → app start, median",
            |s| s.app?.checked_sub(s.pid1?),
            false,
        ),
        (
            "guest: PID 1 → attestation, median",
            |s| s.attested.checked_sub(s.pid1?),
            false,
        ),
        (
            "host: start → attestation line, median",
            |s| Some(s.host),
            false,
        ),
        (
            "host: start → attestation line, best",
            |s| Some(s.host),
            true,
        ),
    ];
    println!();
    println!(
        "bench boot: boot → first attestation, QEMU nitro-enclave (TCG), 2 vCPUs, {} MiB, {} \
         timed boots each (alternating, after one warm-up each); guest times from /proc/uptime \
         (10 ms steps)",
        args.memory, args.runs
    );
    println!();
    println!(
        "{:<42} {:>14} {:>14} {:>8}",
        "", "template", "reference", "ratio"
    );
    for (label, pick, best) in rows {
        let (t, r) = (stat(0, pick, best), stat(1, pick, best));
        println!(
            "{label:<42} {:>14} {:>14} {:>8}",
            ms(t),
            ms(r),
            ratio(t, r).map_or_else(|| "-".to_owned(), |x| format!("{x:.2}×"))
        );
    }
    let mib = |len: u64| format!("{:.2} MiB", len as f64 / MIB as f64);
    println!(
        "{:<42} {:>14} {:>14} {:>8}",
        "EIF size",
        mib(images[0].len),
        mib(images[1].len),
        format!("{:.2}×", images[0].len as f64 / images[1].len.max(1) as f64)
    );
    println!(
        "{:<42} {:>14} {:>14}",
        "EIF size (bytes)", images[0].len, images[1].len
    );
    if let Some(found) = memory {
        let least = |i: usize| {
            found.get(i).map_or_else(
                || "-".to_owned(),
                |m| match m.failed {
                    Some(f) => format!("{} (<{} ✗)", m.least, f + 1),
                    None => format!("≤ {}", m.least),
                },
            )
        };
        println!(
            "{:<42} {:>14} {:>14}",
            format!("least memory that attests (MiB, ±{})", args.memory_step),
            least(0),
            least(1)
        );
    }
    let rule = |len: u64| (EIF_MEMORY_FACTOR * len).div_ceil(MIB);
    println!(
        "{:<42} {:>14} {:>14}",
        format!("rule of thumb {EIF_MEMORY_FACTOR} × EIF (MiB)"),
        rule(images[0].len),
        rule(images[1].len)
    );
    println!(
        "{:<42} {:>14}",
        "Nitro's minimum enclave memory (MiB)", NITRO_MIN_MIB
    );
    println!(
        "{:<42} {:>14} {:>14}",
        "stalled boots, tried again (not timed)", stalls[0], stalls[1]
    );
    println!();
    let after_pid1 = |i: usize| {
        median(
            &samples[i]
                .iter()
                .filter_map(|s| s.attested.checked_sub(s.pid1?))
                .collect::<Vec<_>>(),
        )
    };
    if let (Some(t), Some(r)) = (after_pid1(0), after_pid1(1)) {
        println!(
            "the template's own cost (median PID 1 → attestation, template − reference): {} ms; \
             the kernel's part before PID 1 is the same kernel and varies by ±{} ms between \
             boots here",
            t.as_millis() as i128 - r.as_millis() as i128,
            spread(samples).as_millis()
        );
    }
    let guest = |i: usize| median(&samples[i].iter().map(|s| s.attested).collect::<Vec<_>>());
    match ratio(guest(0), guest(1)) {
        Some(x) => println!(
            "target: template ≤ {TARGET_RATIO}× reference (median guest time to the first \
             attestation): {x:.2}× — {}",
            if x <= TARGET_RATIO { "met" } else { "NOT MET" }
        ),
        None => println!("target: no ratio (no samples)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Console text of a template boot (abridged from a real `cargo xtask bench boot` run under
    /// QEMU 10.0.2, kernel 6.12.117).
    const TEMPLATE_CONSOLE: &str = "\
[    0.000000] Linux version 6.12.117 (enclave@enclave) #1 SMP 1970-01-01
[    0.000000] Command line: reboot=k panic=30 console=ttyS0 i8042.noaux tsc_early_khz=2600000 reboot=t ccc.emulation=1 ccc.parent_cid=2
Run /init as init process
ccc-init: started at 0.90 s after boot
ccc-init: parent CID 2, heartbeat port 9000
ccc-init: !!! EMULATION MODE (ccc.emulation=1): a failed heartbeat will NOT stop the enclave !!!
ccc-init: heartbeat to the parent ok
ccc-init: starting /bin/ccc-template-enclave at 0.93 s after boot
ccc-enclave: setting CCC_APP_REGION=us-east-1 (default)
ccc-enclave: setting ccc.emulation=1 (kernel command line)
ccc-enclave: EMULATION (ccc.emulation=1): ccc_app.* switches from the kernel command line are honoured; never set this in a release image
ccc-enclave: attestation: /dev/nsm, module i-0ccc000000000000-enc0ccc000000000000, document 1165 bytes at 2026-11-28T23:12:29.000Z, uptime 1.02 s, signature NONE: QEMU nitro-enclave emulation, the document is unsigned and proves nothing
ccc-enclave: attestation: PCR0 917e5f80bf64b0dc5ce383918d674e67535e6632e7f36f7476958fbbcab2bbe42667f6b1990af511e59352c2e359863c
clocksource: Switched to clocksource tsc
";

    /// Console text of a reference boot.
    const REFERENCE_CONSOLE: &str = "\
[    0.000000] Linux version 6.12.117 (enclave@enclave) #1 SMP 1970-01-01
Run /init as init process
ccc-boot-reference: started at uptime 0.88 s
ccc-boot-reference: attestation document 1165 bytes at uptime 0.89 s
";

    #[test]
    fn template_console_parses() {
        let s = Subject::Template;
        assert_eq!(
            s.attested(TEMPLATE_CONSOLE),
            Some(Duration::from_millis(1020))
        );
        assert_eq!(
            s.pid1_started(TEMPLATE_CONSOLE),
            Some(Duration::from_millis(900))
        );
        assert_eq!(
            s.app_started(TEMPLATE_CONSOLE),
            Some(Duration::from_millis(930))
        );
        // The reference's markers are not in the template's console and vice versa.
        assert_eq!(Subject::Reference.attested(TEMPLATE_CONSOLE), None);
        assert_eq!(s.attested(REFERENCE_CONSOLE), None);
    }

    #[test]
    fn reference_console_parses() {
        let s = Subject::Reference;
        assert_eq!(
            s.attested(REFERENCE_CONSOLE),
            Some(Duration::from_millis(890))
        );
        assert_eq!(
            s.pid1_started(REFERENCE_CONSOLE),
            Some(Duration::from_millis(880))
        );
        assert_eq!(s.app_started(REFERENCE_CONSOLE), None);
    }

    #[test]
    fn kernel_output_in_front_of_the_line_is_tolerated() {
        let console = "[    1.234567] virtio_mmio: probe ccc-boot-reference: attestation document \
                       10 bytes at uptime 1.25 s\n";
        assert_eq!(
            Subject::Reference.attested(console),
            Some(Duration::from_millis(1250))
        );
    }

    #[test]
    fn lines_without_a_usable_uptime_do_not_count() {
        for console in [
            "ccc-boot-reference: attestation document 10 bytes at uptime unknown\n",
            "ccc-boot-reference: attestation document 10 bytes at uptime 1.2x s\n",
            "ccc-boot-reference: attestation document 10 bytes at uptime 1.25\n",
            "ccc-enclave: attestation: nsm device, document 10 bytes at T, uptime unknown, \
             signature x\n",
            "ccc-boot-reference: FAILED: /dev/nsm not found\n",
            "",
        ] {
            assert_eq!(Subject::Reference.attested(console), None, "{console}");
            assert_eq!(Subject::Template.attested(console), None, "{console}");
        }
        // The first usable line wins.
        let two = "ccc-boot-reference: attestation document 1 bytes at uptime 2.00 s\n\
                   ccc-boot-reference: attestation document 1 bytes at uptime 1.00 s\n";
        assert_eq!(
            Subject::Reference.attested(two),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn kernel_failures_are_recognised() {
        assert!(kernel_failure(
            "BUG: unable to handle page fault for address: ffff9afdc01d8000"
        ));
        assert!(kernel_failure(
            "Kernel panic - not syncing: System is deadlocked on memory"
        ));
        assert!(kernel_failure("Oops: 0000 [#1] SMP NOPTI"));
        assert!(!kernel_failure("ccc-init: started at 0.90 s after boot"));
        assert!(!kernel_failure(
            "tsc: Marking TSC unstable due to clocksource watchdog"
        ));
    }

    #[test]
    fn seconds_parse_exactly() {
        assert_eq!(parse_seconds("0.93"), Some(Duration::from_millis(930)));
        assert_eq!(parse_seconds("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_seconds("1.000000001"), Some(Duration::new(1, 1)));
        for bad in [
            "",
            ".5",
            "1.",
            "1.0000000001",
            "-1",
            "1,5",
            "1.2.3",
            "x",
            "+1",
        ] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn median_is_the_middle_or_lower_middle() {
        let d = Duration::from_millis;
        assert_eq!(median(&[d(3), d(1), d(2)]), Some(d(2)));
        assert_eq!(median(&[d(4), d(1), d(3), d(2)]), Some(d(2)));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn options_parse_after_the_benchmark_name() {
        let args = Args::try_parse_from(["x", "--runs", "3", "--no-memory-search"]).unwrap();
        assert_eq!(args.runs, 3);
        assert!(args.no_memory_search);
        assert_eq!(args.memory, 512);
        assert!(Args::try_parse_from(["x", "--bogus"]).is_err());
    }
}
