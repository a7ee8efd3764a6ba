//! The `emulate` command (`cargo xtask emulate`, `cargo ccc emulate`): a project's released
//! enclave image booted under QEMU's `nitro-enclave` machine (TCG), its measurements compared
//! with the published ones, and its key release through the attested KMS path against the KMS
//! emulator — the whole chain (image bytes → PCRs → key policy → attestation document → key
//! release) without Nitro hardware. The enclave's API is driven with the project's parent
//! binary (`run` for the proxy and credentials, `client attest` and `client hmac`), so the
//! application must keep the template's `attest` and `hmac` operations.
//!
//! Scenarios:
//! - `default`: the release image boots; the guest's NSM (QEMU's own implementation) reports
//!   PCR0/1/2 equal to the published `pcr-measurements`; the enclave attests, gets a secret
//!   sealed under the emulated key released, and proves it holds it.
//! - `tampered`: the same image with one byte of the application changed: PCR2 and PCR0
//!   differ, the key policy refuses with `AccessDenied` naming the PCR, and the enclave
//!   reports the denial. PASS means the denial happened.
//!
//! The enclave's console is kept a production enclave's (`ccc_app.console=production`: one
//! start line), as on Nitro, where only a debug-mode console can be read: the harness takes
//! the enclave's PCRs, its key-release outcome and its exit from the records the parent
//! receives on the log channel (shown as `log` lines), and ends with a scrape of the parent's
//! metrics, which must count the scenario's Decrypt (`ok` by default, `access_denied`
//! tampered).
//!
//! Every process (vhost-device-vsock, QEMU, the parent side) and the KMS emulator are stopped,
//! and their sockets and state removed, whatever happens: on success, on failure, on Ctrl-C or
//! SIGTERM ([`interrupt`]), and — through the parent-death signal — even when this process is
//! killed outright.
//!
//! The emulation is INSECURE by construction and says so: QEMU's attestation documents are not
//! signed, and the KMS emulator is told explicitly to accept them.

mod error;
mod guest;
mod image;
mod interrupt;
mod kms;
mod parent;
mod transcript;

pub use error::{Error, Result};

use base64::Engine as _;
use ccc_build::boot::{Boot, Running};
use ccc_build::progress::elapsed;
use ccc_build::project::Project;
use ccc_eif::Measurements;
use ccc_sdk::crypto::{AwsLc, Crypto};
use ccc_sdk::time::UnixMillis;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use image::{Pinned, Release, Subject};
use interrupt::Interrupt;
use transcript::Transcript;

/// What an emulation demonstrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
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

/// Options of the `emulate` command.
#[derive(Debug, clap::Args)]
pub struct Args {
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
    /// The guest's wall clock at boot: an RFC 3339 time (QEMU `-rtc base=`, whole seconds,
    /// UTC) or `host`. Wrong by default so that every boot proves the enclave sets its clock
    /// from its NSM document's time (TLS to KMS and SigV4 fail otherwise).
    #[arg(long, value_name = "RFC3339|host", default_value = guest::DEFAULT_GUEST_CLOCK,
          value_parser = guest::GuestClock::parse)]
    guest_clock: guest::GuestClock,
    /// Instead of booting: the cross-environment table of this environment (a table of
    /// deploy/environments.toml) — its rendered policy in a KMS emulator against the release's
    /// image, the previous version, a version it does not allow, a debug-mode and a
    /// simulator-signed document (NSM simulator, no QEMU), with `explain` for each. Exit 1
    /// unless every row is as the environment file says and explain agrees.
    /// With --eif, the documents are seeded from that image's PCRs (checked to be the
    /// release's).
    #[arg(long, value_name = "NAME", conflicts_with = "scenario")]
    env: Option<String>,
}

/// `--env NAME`: the environment's cross-environment table (`ccc_lifecycle::table`), from the
/// project's `deploy/environments.toml` and `release/pcr-expectations.json`.
///
/// # Errors
/// [`Error::Environments`] for unreadable files or an EIF that is not the release;
/// [`Error::Failed`] when a row is not as the environment file says or explain disagrees.
fn environment_table(project: &Project, environment: &str, args: &Args) -> Result<()> {
    let paths = ccc_lifecycle::files::Files::default().resolve(&project.root);
    let passes = ccc_lifecycle::table::print(
        &paths,
        environment,
        args.version.as_deref(),
        args.eif.as_deref(),
        &mut std::io::stdout(),
    )
    .map_err(Error::Environments)?;
    if passes {
        return Ok(());
    }
    Err(Error::Failed {
        checks: vec![format!(
            "the cross-environment table of {environment} has rows that are not as {} says, or \
             where explain disagrees with the emulator (marked FAIL above)",
            paths.environments.display()
        )],
    })
}

/// Guest memory unless `--memory` says otherwise.
pub const DEFAULT_MEMORY_MIB: u32 = 512;

/// The encryption context the secret is sealed under (the `hmac` request repeats it; keys
/// starting with `ccc:` are reserved by the enclave API).
fn secret_context(scenario: Scenario) -> BTreeMap<String, String> {
    BTreeMap::from([("emulate-scenario".to_owned(), scenario.name().to_owned())])
}

/// The enclave API calls the harness makes (`attest`, then `hmac`); the enclave is started
/// with `ccc_app.exit_after` = this, so it exits after them and the guest powers off.
const API_CALLS: u32 = 2;

/// Length of the nonce the harness binds into the attestation document.
const NONCE_LEN: usize = 16;

/// The `emulate` command for `project`.
///
/// # Errors
/// A prerequisite is missing (with the command that fixes it), a build or boot fails, a check
/// fails (the verdict is FAIL), or a signal interrupted the run.
pub fn run(project: &Project, args: &Args) -> Result<()> {
    if let Some(environment) = &args.env {
        return environment_table(project, environment, args);
    }
    if args.eif.is_some() && args.scenario != Scenario::Default {
        return Err(Error::Invalid {
            problem: "--eif applies to the default scenario only: the tampered scenario builds \
                      its image from this checkout (the release's application with one byte \
                      changed)"
                .to_owned(),
        });
    }
    let interrupt = Interrupt::install()?;
    let transcript = Transcript::start();
    let started = Instant::now();
    let result = emulate(project, args, &interrupt, &transcript);
    let total = started.elapsed();
    match &result {
        Ok(verdict) => {
            transcript.line("VERDICT", format!("{verdict} (total {})", elapsed(total)));
            println!("emulate {}: {verdict}", args.scenario.name());
        }
        Err(error) if interrupt.is_set() => {
            transcript.line("VERDICT", format!("INTERRUPTED: {error}"));
        }
        Err(error) => {
            transcript.line("VERDICT", format!("FAIL after {}: {error}", elapsed(total)));
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
        let fail =
            |e: std::io::Error| Error::setup(format!("cannot create {}: {e}", dir.display()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(fail)?;
        }
        std::fs::create_dir_all(&dir).map_err(fail)?;
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

fn emulate(
    project: &Project,
    args: &Args,
    interrupt: &Interrupt,
    transcript: &Transcript,
) -> Result<String> {
    let version = match &args.version {
        Some(v) => v.clone(),
        None => Release::latest(project)?,
    };
    transcript.banner(format!(
        "emulate: scenario {}, release {version}. INSECURE EMULATION: QEMU's NSM documents are \
         UNSIGNED and the KMS emulator is told to accept them; this proves the measurement and \
         policy chain, not AWS's signatures",
        args.scenario.name()
    ));

    let t = Instant::now();
    let tools = ccc_build::tools::ensure(&project.cache, &project.root)?;
    transcript.line(
        "emulate",
        format!(
            "tools ready in {}: {}, {}",
            elapsed(t.elapsed()),
            tools.qemu.display(),
            tools.vhost_device_vsock.display()
        ),
    );
    interrupt.check()?;

    let release = Release::load(project, &version)?;
    let t = Instant::now();
    let resolved = image::resolve(project, &release, args.eif.as_deref(), transcript)?;
    let (subject, tamper) = match args.scenario {
        Scenario::Default => (resolved.subject.clone(), None),
        Scenario::Tampered => {
            let (subject, tamper) =
                image::build_tampered(project, &release, resolved.signer.as_deref())?;
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
    let (policy, superseded) = image::key_policy(&release, &resolved, &kms::principal()?)?;
    if let Some(note) = superseded {
        transcript.line("kms", note);
    }
    transcript.line(
        "kms",
        match &resolved.pinned {
            Pinned::Published => format!(
                "key policy: release/{version}/{} with ACCOUNT={} ROLE={} KEY_ADMIN_ROLE={}",
                ccc_build::release::key_policy_file_name(&version),
                kms::EMULATOR_ACCOUNT,
                kms::EMULATOR_ROLE,
                kms::EMULATOR_ADMIN_ROLE
            ),
            Pinned::Checkout { .. } => format!(
                "key policy: the release tool's policy for THIS CHECKOUT's PCRs (not release \
                 {version}'s), ACCOUNT={} ROLE={} KEY_ADMIN_ROLE={}",
                kms::EMULATOR_ACCOUNT,
                kms::EMULATOR_ROLE,
                kms::EMULATOR_ADMIN_ROLE
            ),
            Pinned::SubstituteSigner { pcr8, .. } => format!(
                "key policy: the release tool's policy for release {version}'s published \
                 PCR0/1/2 and the THROWAWAY signer's PCR8 {} (not the published PCR8), \
                 ACCOUNT={} ROLE={} KEY_ADMIN_ROLE={}",
                short(pcr8),
                kms::EMULATOR_ACCOUNT,
                kms::EMULATOR_ROLE,
                kms::EMULATOR_ADMIN_ROLE
            ),
        },
    );
    let kms = kms::Kms::start(&run_dir.0.join("kms"), &policy, transcript)?;
    let sealed = kms.seal_secret(secret_context(args.scenario), transcript)?;
    interrupt.check()?;

    let parent_binary = parent::build(project, transcript)?;
    interrupt.check()?;

    let running_kms = kms.running()?;
    let ca = base64::engine::general_purpose::STANDARD.encode(running_kms.ca_der());
    let t = Instant::now();
    let console = transcript.clone();
    let mut boot = Boot::new(&subject.eif, &tools);
    if let Some(base) = args.guest_clock.rtc_base() {
        boot = boot.rtc_base(&base);
        transcript.line(
            "emulate",
            format!(
                "GUEST CLOCK DELIBERATELY WRONG: QEMU -rtc base={base} (--guest-clock {}); the \
                 enclave must set its clock from its NSM document's time or its key release \
                 fails",
                args.guest_clock
            ),
        );
    } else {
        transcript.line("emulate", "guest clock: the host's (--guest-clock host)");
    }
    let host_from = UnixMillis::now();
    let boot = boot
        .timeout(Duration::from_secs(args.timeout))
        .memory_mib(args.memory)
        .cancel_on(interrupt.flag())
        // Emulation-only switches (QEMU's -append is not measured; the enclave accepts them
        // only with ccc.emulation=1, which Boot appends, and only because its NSM document is
        // QEMU's unsigned one): trust the KMS emulator's CA, its region and its key (the
        // release image has no trusted key of its own), exit after the harness's requests
        // so the guest powers off, and keep the console as a production enclave's (one start
        // line): the harness reads the enclave's records from the parent's log channel, as an
        // operator of a real enclave must.
        .append(format!("ccc_app.kms_ca={ca}"))
        .append(format!("ccc_app.region={}", running_kms.region()))
        .append(format!("ccc_app.key_arn={}", running_kms.default_key_arn()))
        .append(format!("ccc_app.exit_after={API_CALLS}"))
        .append("ccc_app.console=production")
        .on_console_line(move |line| {
            if transcript::is_app_line(line) {
                console.console(line);
            }
        });
    transcript.line(
        "emulate",
        format!(
            "kernel command line appended (not measured): {}",
            boot.append_line().replace(
                &ca,
                &format!("<the KMS emulator's CA, {} base64 characters>", ca.len())
            )
        ),
    );
    let mut parent_side = None;
    let running = boot.start_with(|uds| {
        parent_side = Some(parent::Parent::start(
            &parent_binary,
            uds,
            &run_dir.0,
            &kms,
            transcript,
        )?);
        Ok::<(), Error>(())
    })?;
    let parent_side = parent_side.ok_or_else(|| Error::parent("the parent was not started"))?;
    let (qemu_pid, vhost_pid) = running.pids();
    transcript.line(
        "emulate",
        format!(
            "running: qemu={} vhost={} parent={} boot_dir={} run_dir={}",
            pid_text(qemu_pid),
            pid_text(vhost_pid),
            parent_side.pid(),
            boot.run_dir().display(),
            run_dir.0.display()
        ),
    );
    let deadline = t + Duration::from_secs(args.timeout);
    let uds = boot.vsock_uds();
    let mut checks = Checks::default();
    let mut running = running;
    let mut records = Vec::new();
    let api = api_ready(
        &mut running,
        parent_side.records(),
        &mut records,
        deadline,
        interrupt,
    )?;
    let serving = match &api {
        Serving::Ready => {
            transcript.line(
                "emulate",
                format!(
                    "the enclave serves its API {} after QEMU started",
                    elapsed(running.elapsed())
                ),
            );
            true
        }
        Serving::Ended(why) => {
            let qemu_err =
                std::fs::read_to_string(running.run_dir().join("qemu.err")).unwrap_or_default();
            checks.check(
                transcript,
                false,
                format!(
                    "the enclave serves its API: {why}{}",
                    if qemu_err.trim().is_empty() {
                        String::new()
                    } else {
                        format!(" (QEMU's stderr: {})", qemu_err.trim())
                    }
                ),
            );
            false
        }
    };
    if serving {
        let call = Call {
            binary: &parent_binary,
            uds: &uds,
            deadline,
            cancel: interrupt.flag(),
            transcript,
        };
        attest(&mut checks, &call, &subject)?;
        interrupt.check()?;
        prove_secret(
            &mut checks,
            &call,
            &sealed,
            args.scenario,
            &tamper_pcrs(&resolved.pinned_measurements, &subject),
        )?;
        interrupt.check()?;
    }

    let outcome = running.wait()?;
    if outcome.interrupted {
        return Err(Error::Interrupted {
            message: interrupt.message(),
        });
    }
    // The enclave flushes its queue before it exits; its last record (`enclave.exit`, or
    // `enclave.fatal`) means every earlier one was counted by the parent.
    let ended = last_records(parent_side.records(), &mut records, interrupt);
    let scrape = parent_side.scrape();
    drop(parent_side);
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

    checks.check(
        transcript,
        !outcome.timed_out,
        format!("the guest stopped by itself within {} s", args.timeout),
    );
    checks.check(
        transcript,
        outcome.console.contains("production console:")
            && !outcome.console.contains("serving API v"),
        "the console was a production enclave's: its start line and none of the records",
    );
    let pcr_lines: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "start.pcr")
        .filter_map(|r| r["message"].as_str())
        .collect();
    check_measurements(
        &mut checks,
        transcript,
        &pcr_lines.join("\n"),
        &subject,
        &resolved.pinned_measurements,
        args.scenario,
    );
    if args.scenario == Scenario::Tampered {
        let denied = records.iter().any(|r| {
            let message = r["message"].as_str().unwrap_or_default();
            r["event"] == "api.request"
                && r["fields"]["outcome"] == "kms_access_denied"
                && message.contains("hmac: FAILED")
                && message.contains("AccessDenied")
        });
        checks.check(
            transcript,
            denied,
            "the enclave's api.request record on the log channel reports the hmac's key release \
             as refused (kms_access_denied, AccessDenied)",
        );
    }
    checks.check(
        transcript,
        ended
            .as_ref()
            .is_some_and(|r| r["event"] == "enclave.exit" && r["fields"]["status"] == 0),
        "the application exited with status 0 (its enclave.exit record on the log channel)",
    );
    let clock = guest::check_clock(
        records.iter().find(|r| r["event"] == "start.clock"),
        args.guest_clock,
        host_from,
        UnixMillis::now(),
    );
    checks.check(transcript, clock.is_ok(), clock.unwrap_or_else(|e| e));
    for (ok, what) in guest::check_devices(&outcome.console, &records) {
        checks.check(transcript, ok, what);
    }
    check_scrape(&mut checks, transcript, scrape, args.scenario);
    drop(sealed);
    drop(kms);

    let kernel: Vec<&str> = outcome
        .console
        .lines()
        .filter(|line| !transcript::is_app_line(line))
        .collect();
    if checks.failed.is_empty() {
        transcript.line(
            "enclave",
            format!(
                "({} kernel console lines not shown; a failed run prints them)",
                kernel.len()
            ),
        );
    } else {
        for line in &kernel {
            transcript.line("kernel", line);
        }
        return Err(Error::Failed {
            checks: checks.failed,
        });
    }
    let pinned = match &resolved.pinned {
        Pinned::Published => format!("release {version}'s published PCRs"),
        Pinned::Checkout { reason } => {
            format!("THIS CHECKOUT's PCRs, not release {version}'s ({reason})")
        }
        Pinned::SubstituteSigner { reason, .. } => format!(
            "release {version}'s published PCR0/1/2 with a THROWAWAY SIGNER's PCR8, not the \
             published PCR8 ({reason})"
        ),
    };
    Ok(match (args.scenario, tamper) {
        (Scenario::Default, _) => format!(
            "PASS: {} checks; the guest's NSM measured the image as {pinned}, KMS released the \
             sealed secret to it and its MAC checked out",
            checks.passed
        ),
        (Scenario::Tampered, _) => format!(
            "PASS: {} checks; the tampered image measured differently from {pinned} and KMS \
             refused it the secret (AccessDenied naming the PCR)",
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
                format!("the enclave reported no PCR{index} on the log channel (start.pcr)"),
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

/// How long the enclave's last records may take to reach the harness after QEMU ended (they
/// were flushed before the guest powered off; this only bounds a hang).
const LAST_RECORDS: Duration = Duration::from_secs(15);

/// Collects the records still arriving until the enclave's last one (`enclave.exit` or
/// `enclave.fatal`), which it returns; `None` if it never came.
fn last_records(
    arriving: &Receiver<serde_json::Value>,
    records: &mut Vec<serde_json::Value>,
    interrupt: &Interrupt,
) -> Option<serde_json::Value> {
    let last =
        |r: &serde_json::Value| r["event"] == "enclave.exit" || r["event"] == "enclave.fatal";
    if let Some(found) = records.iter().find(|r| last(r)) {
        return Some(found.clone());
    }
    let deadline = Instant::now() + LAST_RECORDS;
    while Instant::now() < deadline && interrupt.check().is_ok() {
        match arriving.recv_timeout(POLL) {
            Ok(record) => {
                let is_last = last(&record);
                records.push(record);
                if is_last {
                    return records.last().cloned();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
    None
}

/// The value of the sample `series` (its name and labels as written) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Shows the parent's metrics (histogram buckets left out) and checks that the scenario's KMS
/// outcome was counted: a successful Decrypt by default, an `access_denied` one tampered.
fn check_scrape(
    checks: &mut Checks,
    transcript: &Transcript,
    scrape: Result<String>,
    scenario: Scenario,
) {
    let text = match scrape {
        Ok(text) => text,
        Err(e) => {
            checks.check(transcript, false, format!("the parent's metrics: {e}"));
            return;
        }
    };
    transcript.line(
        "metrics",
        "GET /metrics on the parent (histogram buckets not shown):",
    );
    for line in text
        .lines()
        .filter(|l| l.starts_with("ccc_") && !l.contains("_bucket{"))
    {
        transcript.line("metrics", line);
    }
    let outcome = match scenario {
        Scenario::Default => "ok",
        Scenario::Tampered => "access_denied",
    };
    let series =
        format!(r#"ccc_enclave_kms_calls_total{{operation="Decrypt",outcome="{outcome}"}}"#);
    let counted = sample(&text, &series);
    checks.check(
        transcript,
        counted.is_some_and(|n| n >= 1.0),
        format!(
            "the parent's metrics count the enclave's Decrypt with outcome {outcome}: {series} {}",
            counted.map_or_else(|| "absent".to_owned(), |n| n.to_string())
        ),
    );
    let malformed = sample(&text, "ccc_parent_log_lines_malformed_total");
    checks.check(
        transcript,
        malformed == Some(0.0),
        format!(
            "every line on the log channel was a record (ccc_parent_log_lines_malformed_total {})",
            malformed.map_or_else(|| "absent".to_owned(), |n| n.to_string())
        ),
    );
}

/// Whether the enclave came to serve its API.
#[derive(Debug)]
enum Serving {
    /// It reported `start.serving` on the log channel.
    Ready,
    /// It did not, and why (its last record, QEMU's exit, the timeout).
    Ended(String),
}

/// How often the API wait looks at QEMU and the cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// Waits for the enclave's `start.serving` record on the log channel (keeping every record in
/// `records`) — or a sign it will never come: an `enclave.fatal` or `enclave.exit` record,
/// QEMU's exit, the deadline.
///
/// # Errors
/// A signal interrupted the run, or QEMU cannot be waited on.
fn api_ready(
    running: &mut Running,
    arriving: &Receiver<serde_json::Value>,
    records: &mut Vec<serde_json::Value>,
    deadline: Instant,
    interrupt: &Interrupt,
) -> Result<Serving> {
    loop {
        match arriving.recv_timeout(POLL) {
            Ok(record) => {
                let event = record["event"].as_str().unwrap_or_default().to_owned();
                let message = record["message"].as_str().unwrap_or_default().to_owned();
                records.push(record);
                match event.as_str() {
                    "start.serving" => return Ok(Serving::Ready),
                    "enclave.fatal" | "enclave.exit" => {
                        return Ok(Serving::Ended(format!(
                            "the enclave's {event} record said `{message}`"
                        )));
                    }
                    _ => {}
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Ok(Serving::Ended("the parent's stdout closed".to_owned()));
            }
        }
        if running.is_cancelled() {
            return Err(Error::Interrupted {
                message: interrupt.message(),
            });
        }
        if let Some(status) = running.qemu_exited()? {
            return Ok(Serving::Ended(format!("QEMU exited first ({status})")));
        }
        if Instant::now() >= deadline {
            return Ok(Serving::Ended("not serving before the timeout".to_owned()));
        }
    }
}

/// What every client call needs.
struct Call<'a> {
    binary: &'a Path,
    uds: &'a Path,
    deadline: Instant,
    cancel: Arc<AtomicBool>,
    transcript: &'a Transcript,
}

impl Call<'_> {
    fn run(&self, args: &[String]) -> Result<parent::Answer> {
        self.transcript.line(
            "api",
            format!(
                "{} client --enclave vhost-uds://{}:{} {}",
                self.binary
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy(),
                self.uds.display(),
                parent::API_PORT,
                args.iter()
                    .map(|a| if a.len() > 60 {
                        format!("{}...({} chars)", a.get(..24).unwrap_or_default(), a.len())
                    } else {
                        a.clone()
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        parent::client(
            self.binary,
            self.uds,
            args,
            self.deadline,
            &self.cancel,
            self.transcript,
        )
    }
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0; n];
    AwsLc
        .fill_random(&mut bytes)
        .map_err(|e| Error::setup(format!("no randomness: {e}")))?;
    Ok(bytes)
}

/// `attest` with a fresh nonce: the document must parse, carry the nonce and the enclave's
/// public key, and report the PCRs ccc-eif computed from the booted file.
///
/// # Errors
/// The client call could not be made (a refused call is a failed check instead).
fn attest(checks: &mut Checks, call: &Call<'_>, subject: &Subject) -> Result<()> {
    let transcript = call.transcript;
    let nonce = random_bytes(NONCE_LEN)?;
    // The client verifies only with PCRs to check: the ones ccc-eif computed from the booted
    // file (the unsigned root makes it a check of shape and values, not of a signature).
    let mut args = vec![
        "attest".to_owned(),
        "--nonce".to_owned(),
        hex::encode(&nonce),
        "--root".to_owned(),
        "insecure-qemu-unsigned".to_owned(),
    ];
    for (index, pcr) in [
        (0, &subject.measurements.pcr0),
        (1, &subject.measurements.pcr1),
        (2, &subject.measurements.pcr2),
    ] {
        args.push("--expect-pcr".to_owned());
        args.push(format!("{index}={}", pcr.hex()));
    }
    let answer = call.run(&args)?;
    let value = match answer {
        parent::Answer::Answer(value) => value,
        parent::Answer::Refused(error) => {
            checks.check(
                transcript,
                false,
                format!("attest answered: refused with {error}"),
            );
            return Ok(());
        }
    };
    let document = value["document"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    let parsed = match ccc_sdk::attestation::parse(&document) {
        Ok(parsed) => parsed,
        Err(e) => {
            checks.check(
                transcript,
                false,
                format!("the attest answer's document parses: {e}"),
            );
            return Ok(());
        }
    };
    let doc = &parsed.document;
    transcript.line(
        "api",
        format!(
            "attest: document of {} bytes from module {}, signature {} ({})",
            document.len(),
            doc.module_id,
            value["summary"]["signature"].as_str().unwrap_or("?"),
            if value["summary"]["verified"].is_null() {
                "not verified".to_owned()
            } else {
                format!(
                    "shape checked by the client: {}",
                    value["summary"]["verified"]
                )
            }
        ),
    );
    checks.check(
        transcript,
        doc.nonce == Some(nonce.as_slice()),
        format!(
            "the attestation document carries the harness's nonce {}",
            hex::encode(&nonce)
        ),
    );
    let key_digest = doc
        .public_key
        .map(|key| hex::encode(AwsLc.sha256(&[key])))
        .unwrap_or_default();
    checks.check(
        transcript,
        !key_digest.is_empty() && value["public_key_sha256"].as_str() == Some(key_digest.as_str()),
        format!(
            "the document binds the enclave's RSA public key (SHA-256 {})",
            if key_digest.is_empty() {
                "none"
            } else {
                &key_digest
            }
        ),
    );
    let computed = [
        subject.measurements.pcr0,
        subject.measurements.pcr1,
        subject.measurements.pcr2,
    ];
    for (index, pcr) in (0u8..).zip(computed) {
        let found = doc.pcrs.get(index).map(hex::encode).unwrap_or_default();
        checks.check(
            transcript,
            found == pcr.hex(),
            if found == pcr.hex() {
                format!(
                    "attest: PCR{index} {} in the document = ccc-eif's computation from the EIF",
                    short(&pcr)
                )
            } else {
                format!("attest: PCR{index} in the document is {found}, ccc-eif computed {pcr}")
            },
        );
    }
    Ok(())
}

/// The PCRs (0, 1, 2 and 8) where the booted image differs from what the key policy pins.
/// PCR8 differs only when the tampered image of a signed release is not signed with the
/// pinned certificate (the published signed EIF was booted: its key is not here); a rebuilt
/// signed release's tampered image is signed by the same throwaway signer, so it does not.
fn tamper_pcrs(pinned: &Measurements, subject: &Subject) -> Vec<u8> {
    let ours = &subject.measurements;
    [
        (0u8, pinned.pcr0 != ours.pcr0),
        (1, pinned.pcr1 != ours.pcr1),
        (2, pinned.pcr2 != ours.pcr2),
        (8, pinned.pcr8 != ours.pcr8),
    ]
    .into_iter()
    .filter_map(|(index, differs)| differs.then_some(index))
    .collect()
}

/// The condition key prefix KMS's attestation conditions use.
const RECIPIENT_CONDITION: &str = "kms:RecipientAttestation:";

/// The PCRs whose conditions a refusal says failed: every
/// `kms:RecipientAttestation:<KEY>: request has` in the KMS emulator's message, with
/// `ImageSha384` read as PCR0 (AWS documents the two as the same value). Other mentions (the
/// "Likely fix" list of condition keys) do not count.
fn refused_pcrs(message: &str) -> Vec<u8> {
    let mut found = Vec::new();
    let mut rest = message;
    while let Some(at) = rest.find(RECIPIENT_CONDITION) {
        rest = rest
            .get(at + RECIPIENT_CONDITION.len()..)
            .unwrap_or_default();
        let Some((key, _)) = rest.split_once(": request has") else {
            continue;
        };
        let index = match key {
            "ImageSha384" => Some(0),
            other => other.strip_prefix("PCR").and_then(|n| n.parse::<u8>().ok()),
        };
        if let Some(index) = index
            && !found.contains(&index)
        {
            found.push(index);
        }
    }
    found.sort_unstable();
    found
}

/// `hmac` over the sealed secret: the default scenario must get the MAC the harness computes
/// with the secret it kept; the tampered one must be refused with `kms_access_denied`, the
/// message naming `AccessDenied` and a PCR the tampered image really changed.
///
/// # Errors
/// The client call could not be made.
fn prove_secret(
    checks: &mut Checks,
    call: &Call<'_>,
    sealed: &kms::Sealed,
    scenario: Scenario,
    differing: &[u8],
) -> Result<()> {
    let transcript = call.transcript;
    let message = format!(
        "ccc emulate {} {}",
        scenario.name(),
        hex::encode(random_bytes(NONCE_LEN)?)
    );
    let mut args = vec![
        "hmac".to_owned(),
        "--blob".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(&sealed.ciphertext_blob),
        "--message".to_owned(),
        message.clone(),
    ];
    for (key, value) in &sealed.context {
        args.extend(["--context".to_owned(), format!("{key}={value}")]);
    }
    let answer = call.run(&args)?;
    match (scenario, answer) {
        (Scenario::Default, parent::Answer::Answer(value)) => {
            let expected =
                hex::encode(AwsLc.hmac_sha256(sealed.secret.expose(), &[message.as_bytes()]));
            let mac = value["mac_hex"].as_str().unwrap_or_default();
            transcript.line("api", format!("hmac: MAC {mac} over `{message}`"));
            checks.check(
                transcript,
                mac == expected,
                if mac == expected {
                    "the enclave's MAC = HMAC-SHA256(secret, message) computed on the host with \
                     the secret the operator sealed: KMS released the secret to the enclave"
                        .to_owned()
                } else {
                    format!(
                        "the enclave's MAC {mac} is not HMAC-SHA256(secret, message) {expected}"
                    )
                },
            );
        }
        (Scenario::Default, parent::Answer::Refused(error)) => {
            checks.check(
                transcript,
                false,
                format!("hmac: the key release was refused: {error}"),
            );
        }
        (Scenario::Tampered, parent::Answer::Answer(value)) => {
            checks.check(
                transcript,
                false,
                format!(
                    "hmac: the TAMPERED enclave got the secret released (MAC {}): the key \
                     policy did not stop it",
                    value["mac_hex"]
                ),
            );
        }
        (Scenario::Tampered, parent::Answer::Refused(error)) => {
            let code = error["code"].as_str().unwrap_or_default();
            let text = error["message"].as_str().unwrap_or_default();
            transcript.line(
                "api",
                format!(
                    "hmac: refused, code {code}, step {}: {text}",
                    error["step"].as_str().unwrap_or_default()
                ),
            );
            checks.check(
                transcript,
                code == "kms_access_denied" && text.contains("AccessDenied"),
                format!("hmac refused with kms_access_denied / AccessDenied (got code `{code}`)"),
            );
            let named = refused_pcrs(text);
            // A refusal naming only PCR8 (the signer) would not show that the tamper was caught.
            let ok = named.iter().any(|n| *n <= 2) && named.iter().all(|n| differing.contains(n));
            checks.check(
                transcript,
                ok,
                format!(
                    "the refusal's failed conditions name PCR{} (ImageSha384 = PCR0); the \
                     tampered image changed PCR{}",
                    named
                        .iter()
                        .map(u8::to_string)
                        .collect::<Vec<_>>()
                        .join(", PCR"),
                    differing
                        .iter()
                        .map(u8::to_string)
                        .collect::<Vec<_>>()
                        .join(", PCR")
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tampered image differs from the pins in PCR0/PCR2, and in PCR8 only when it is not
    /// signed with the pinned certificate.
    #[test]
    fn tampered_pcrs_include_pcr8_only_when_the_signer_differs() {
        let pcr = |b: u8| ccc_eif::Pcr::of_content(&[b]);
        let pinned = Measurements {
            pcr0: pcr(0),
            pcr1: pcr(1),
            pcr2: pcr(2),
            pcr8: Some(pcr(8)),
        };
        let subject = |pcr8| Subject {
            eif: PathBuf::from("t.eif"),
            measurements: Measurements {
                pcr0: pcr(10),
                pcr2: pcr(12),
                pcr8,
                ..pinned
            },
            len: 0,
            origin: String::new(),
        };
        assert_eq!(tamper_pcrs(&pinned, &subject(Some(pcr(8)))), [0, 2]);
        assert_eq!(tamper_pcrs(&pinned, &subject(Some(pcr(9)))), [0, 2, 8]);
        assert_eq!(tamper_pcrs(&pinned, &subject(None)), [0, 2, 8]);
    }

    /// The shape of the KMS emulator's refusal (from a real run of the tampered scenario,
    /// values shortened): the failed conditions count, the "Likely fix" list does not.
    #[test]
    fn a_refusal_names_the_pcrs_of_its_failed_conditions() {
        let message = "KMS Decrypt failed with AccessDeniedException (HTTP 400): User: \
            arn:aws:sts::111122223333:assumed-role/ccc-emulator-parent/emulator is not authorized \
            to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1a0f: \
            statement \"EnclaveUseOnlyWithThisImage\" did not apply because condition \
            StringEqualsIgnoreCase kms:RecipientAttestation:ImageSha384: request has 4afd, policy \
            requires 2cab, and condition StringEqualsIgnoreCase kms:RecipientAttestation:PCR2: \
            request has ca6e, policy requires 3b93. Likely fix: check the key policy's \
            kms:RecipientAttestation:* conditions (ImageSha384, PCR0, PCR1, PCR2, PCR3, PCR4, \
            PCR8) against this enclave's PCRs";
        assert_eq!(refused_pcrs(message), [0, 2]);
        let one = "condition StringEqualsIgnoreCase kms:RecipientAttestation:PCR1: request has a";
        assert_eq!(refused_pcrs(one), [1]);
        assert!(refused_pcrs("AccessDeniedException: kms:RecipientAttestation:* PCR2").is_empty());
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use ccc_build::cache::Cache;
    use ccc_build::project::{Project, Tool};
    use std::path::PathBuf;

    /// CCC's own workspace as a project (the tests read its committed release).
    pub(crate) fn ccc_project() -> Project {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let tool = Tool {
            name: "ccc-emulate-test".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command: "cargo xtask".into(),
        };
        Project::load(
            &root,
            tool,
            Cache::at(std::env::temp_dir().join("ccc-emulate-test-cache")),
        )
        .unwrap()
    }
}
