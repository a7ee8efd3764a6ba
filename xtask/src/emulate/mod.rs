//! `cargo xtask emulate`: the released enclave image booted under QEMU's `nitro-enclave`
//! machine (TCG), its measurements compared with the published ones, and its key release
//! through the attested KMS path against the KMS emulator — the whole chain (image bytes →
//! PCRs → key policy → attestation document → key release) without Nitro hardware.
//!
//! Scenarios:
//! - `default`: the release image boots; the guest's NSM (QEMU's own implementation) reports
//!   PCR0/1/2 equal to the published `pcr-measurements`; the enclave attests, gets a secret
//!   sealed under the emulated key released, and proves it holds it.
//! - `tampered`: the same image with one byte of the application changed: PCR2 and PCR0
//!   differ, the key policy refuses with `AccessDenied` naming the PCR, and the enclave
//!   reports the denial. PASS means the denial happened.
//!
//! Every process (vhost-device-vsock, QEMU, the parent side) and the KMS emulator are stopped,
//! and their sockets and state removed, whatever happens: on success, on failure, on Ctrl-C or
//! SIGTERM ([`interrupt`]), and — through the parent-death signal — even when this process is
//! killed outright.
//!
//! The emulation is INSECURE by construction and says so: QEMU's attestation documents are not
//! signed, and the KMS emulator is told explicitly to accept them.

mod image;
mod interrupt;
mod kms;
mod transcript;

use anyhow::{Context, Result, bail};
use ccc_eif::Measurements;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::progress::elapsed;
use crate::qemu;
use image::{Pinned, Release, Subject};
use interrupt::Interrupt;
use transcript::Transcript;

/// What an emulation demonstrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// The release image boots, measures as published, and gets its key released.
    Default,
    /// One byte of the application changed: other PCRs, and KMS refuses.
    Tampered,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Tampered => "tampered",
        }
    }
}

/// Options of `cargo xtask emulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Boot this EIF as the release instead of release/<V>/'s (which is rebuilt from this
    /// checkout when absent). Default scenario only.
    #[arg(long, value_name = "PATH")]
    eif: Option<PathBuf>,
    /// What to demonstrate.
    #[arg(long, value_enum, default_value_t = Scenario::Default)]
    scenario: Scenario,
    /// The published release to emulate (release/<V>/; default: the newest in
    /// release/pcr-expectations.json).
    #[arg(long)]
    version: Option<String>,
    /// Seconds the guest may run before it is killed.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB)]
    memory: u32,
}

/// Guest memory unless `--memory` says otherwise.
pub(crate) const DEFAULT_MEMORY_MIB: u32 = 512;

/// The encryption context the secret is sealed under.
fn secret_context(scenario: Scenario) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "ccc:emulate".to_owned(),
        format!("scenario-{}", scenario.name()),
    )])
}

/// `cargo xtask emulate`.
///
/// # Errors
/// A prerequisite is missing (with the command that fixes it), a build or boot fails, a check
/// fails (the verdict is FAIL), or a signal interrupted the run.
pub(crate) fn run(args: &Args) -> Result<()> {
    if args.eif.is_some() && args.scenario != Scenario::Default {
        bail!(
            "--eif applies to the default scenario only: the tampered scenario builds its image \
             from this checkout (the release's application with one byte changed)"
        );
    }
    let interrupt = Interrupt::install()?;
    let transcript = Transcript::start();
    let started = Instant::now();
    let result = emulate(args, &interrupt, &transcript);
    let total = started.elapsed();
    match &result {
        Ok(verdict) => {
            transcript.line("VERDICT", format!("{verdict} (total {})", elapsed(total)));
            println!("emulate {}: {verdict}", args.scenario.name());
        }
        Err(error) if interrupt.is_set() => {
            transcript.line("VERDICT", format!("INTERRUPTED: {error:#}"));
        }
        Err(error) => {
            transcript.line(
                "VERDICT",
                format!("FAIL after {}: {error:#}", elapsed(total)),
            );
        }
    }
    result.map(|_| ())
}

/// A run directory removed on drop (the KMS emulator's plaintext state lives in it).
#[derive(Debug)]
struct RunDir(PathBuf);

impl RunDir {
    fn create() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("ccc-emulate-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The checks of a run, printed as they are made; the verdict passes when all passed.
#[derive(Debug, Default)]
struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, transcript: &Transcript, ok: bool, what: impl Into<String>) {
        let what = what.into();
        if ok {
            self.passed += 1;
            transcript.line("check", format!("ok    {what}"));
        } else {
            transcript.line("check", format!("FAIL  {what}"));
            self.failed.push(what);
        }
    }
}

fn emulate(args: &Args, interrupt: &Interrupt, transcript: &Transcript) -> Result<String> {
    let root = crate::workspace_root();
    let version = match &args.version {
        Some(v) => v.clone(),
        None => Release::latest(&root)?,
    };
    transcript.banner(format!(
        "emulate: scenario {}, release {version}. INSECURE EMULATION: QEMU's NSM documents are \
         UNSIGNED and the KMS emulator is told to accept them; this proves the measurement and \
         policy chain, not AWS's signatures",
        args.scenario.name()
    ));

    let t = Instant::now();
    let qemu_binary = qemu::ensure()?;
    let vhost = qemu::vhost_device_vsock()?;
    transcript.line(
        "emulate",
        format!(
            "tools ready in {}: {}, {}",
            elapsed(t.elapsed()),
            qemu_binary.display(),
            vhost.display()
        ),
    );
    interrupt.check()?;

    let release = Release::load(&root, &version)?;
    let t = Instant::now();
    let resolved = image::resolve(&release, args.eif.as_deref(), transcript)?;
    let (subject, tamper) = match args.scenario {
        Scenario::Default => (resolved.subject.clone(), None),
        Scenario::Tampered => {
            let (subject, tamper) = image::build_tampered(&release)?;
            transcript.line("image", format!("TAMPERED: {tamper}"));
            (subject, Some(tamper))
        }
    };
    transcript.line(
        "image",
        format!(
            "{} ready in {}: {} bytes\n  PCR0 {}\n  PCR1 {}\n  PCR2 {}",
            subject.origin,
            elapsed(t.elapsed()),
            subject.len,
            subject.measurements.pcr0,
            subject.measurements.pcr1,
            subject.measurements.pcr2
        ),
    );
    interrupt.check()?;

    let run_dir = RunDir::create()?;
    let policy = image::key_policy(&release, &resolved, &kms::principal()?)?;
    transcript.line(
        "kms",
        match &resolved.pinned {
            Pinned::Published => format!(
                "key policy: release/{version}/{} with ACCOUNT={} ROLE={}",
                crate::release::key_policy_file_name(&version),
                kms::EMULATOR_ACCOUNT,
                kms::EMULATOR_ROLE
            ),
            Pinned::Checkout { .. } => format!(
                "key policy: the release tool's policy for THIS CHECKOUT's PCRs (not release \
                 {version}'s), ACCOUNT={} ROLE={}",
                kms::EMULATOR_ACCOUNT,
                kms::EMULATOR_ROLE
            ),
        },
    );
    let kms = kms::Kms::start(&run_dir.0.join("kms"), &policy, transcript)?;
    let sealed = kms.seal_secret(secret_context(args.scenario), transcript)?;
    interrupt.check()?;

    let t = Instant::now();
    let console = transcript.clone();
    let boot = qemu::Boot::new(&subject.eif)
        .timeout(Duration::from_secs(args.timeout))
        .memory_mib(args.memory)
        .cancel_on(interrupt.flag())
        .on_console_line(move |line| console.console(line));
    let running = boot.start()?;
    let (qemu_pid, vhost_pid) = running.pids();
    transcript.line(
        "emulate",
        format!(
            "running: qemu={} vhost={} boot_dir={} run_dir={}",
            pid_text(qemu_pid),
            pid_text(vhost_pid),
            running.run_dir().display(),
            run_dir.0.display()
        ),
    );
    let outcome = running.wait()?;
    if outcome.interrupted {
        bail!("{}", interrupt.message());
    }
    transcript.line(
        "emulate",
        format!(
            "QEMU ended after {}{}",
            elapsed(t.elapsed()),
            match (outcome.timed_out, outcome.status) {
                (true, _) => format!(": KILLED after the {} s timeout", args.timeout),
                (false, Some(status)) => format!(" by itself ({status})"),
                (false, None) => String::new(),
            }
        ),
    );

    let mut checks = Checks::default();
    checks.check(
        transcript,
        !outcome.timed_out,
        format!("the guest stopped by itself within {} s", args.timeout),
    );
    check_measurements(
        &mut checks,
        transcript,
        &outcome.console,
        &subject,
        &resolved.pinned_measurements,
        args.scenario,
    );
    checks.check(
        transcript,
        outcome.console.contains("ccc-init: app exited with status 0"),
        "the application exited with status 0 (ccc-init's report)",
    );
    // The sealed secret is what the enclave must prove it holds once the template's API is
    // integrated; until then the harness only shows the operator's side works.
    drop(sealed);
    drop(kms);

    if !checks.failed.is_empty() {
        bail!(
            "{} check(s) failed: {}",
            checks.failed.len(),
            checks.failed.join("; ")
        );
    }
    let pinned = match &resolved.pinned {
        Pinned::Published => format!("release {version}'s published PCRs"),
        Pinned::Checkout { reason } => format!(
            "THIS CHECKOUT's PCRs, not release {version}'s ({reason})"
        ),
    };
    Ok(match (args.scenario, tamper) {
        (Scenario::Default, _) => format!(
            "PASS: {} checks; the guest's NSM measured the image as {pinned}",
            checks.passed
        ),
        (Scenario::Tampered, _) => format!(
            "PASS: {} checks; the tampered image measured differently from {pinned}",
            checks.passed
        ),
    })
}

/// A PCR shortened for the transcript: the first 12 and last 6 hex digits.
fn short(pcr: &ccc_eif::Pcr) -> String {
    let hex = pcr.hex();
    format!(
        "{}..{}",
        hex.get(..12).unwrap_or_default(),
        hex.get(hex.len().saturating_sub(6)..).unwrap_or_default()
    )
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "-".to_owned(), |p| p.to_string())
}

/// Compares the PCRs the guest printed with ccc-eif's computation of the booted file (QEMU's
/// independent implementation must agree) and with what the key policy pins (equal for the
/// default scenario; for the tampered one PCR1 equal, PCR0 and PCR2 different).
fn check_measurements(
    checks: &mut Checks,
    transcript: &Transcript,
    console: &str,
    subject: &Subject,
    pinned: &Measurements,
    scenario: Scenario,
) {
    let printed = match transcript::printed_pcrs(console) {
        Ok(printed) => printed,
        Err(e) => {
            checks.check(transcript, false, e);
            return;
        }
    };
    let computed = [
        subject.measurements.pcr0,
        subject.measurements.pcr1,
        subject.measurements.pcr2,
    ];
    let policy = [pinned.pcr0, pinned.pcr1, pinned.pcr2];
    for (index, (file, pin)) in (0u8..).zip(computed.iter().zip(policy)) {
        let Some(guest) = printed.get(&index) else {
            checks.check(
                transcript,
                false,
                format!("the enclave printed no PCR{index} on the console"),
            );
            continue;
        };
        checks.check(
            transcript,
            guest == file,
            if guest == file {
                format!(
                    "PCR{index} {}: QEMU's NSM (in the guest) = ccc-eif's computation from the \
                     EIF file",
                    short(guest)
                )
            } else {
                format!(
                    "PCR{index}: QEMU's NSM reports {guest}, ccc-eif computed {file} from the EIF"
                )
            },
        );
        let (want_equal, meaning) = match (scenario, index) {
            (Scenario::Default, _) => (true, "= the PCR the key policy pins"),
            (Scenario::Tampered, 1) => (
                true,
                "= the pinned PCR1 (kernel, command line and init untouched)",
            ),
            (Scenario::Tampered, _) => (false, "DIFFERS from the PCR the key policy pins"),
        };
        let ok = (*guest == pin) == want_equal;
        checks.check(
            transcript,
            ok,
            if ok {
                format!("PCR{index} {} {meaning} ({})", short(guest), short(&pin))
            } else {
                format!("PCR{index} {guest} should be {meaning}: {pin}")
            },
        );
    }
}
