//! The memory and vCPUs a release's image needs, published with it (`resources` in
//! `pcr-measurements-V.json` and `build-manifest.json`, and a section of `REPRODUCE.md`):
//! - `nitro_cli_minimum_memory_mib`: `nitro-cli run-enclave` refuses `--memory` below four
//!   times the EIF's size (error E26, "insufficient memory requested"; aws-nitro-enclaves-cli
//!   PR #198), rounded up to a whole MiB;
//! - `least_memory_mib`: the least `-m` at which the released EIF still boots under QEMU's
//!   `nitro-enclave` machine (TCG) and obtains its attestation document, found by bisection;
//!   a measurement on the releasing host, not part of the image or of the two-pass comparison;
//! - `recommended_memory_mib`: the larger of nitro-cli's minimum, the Nitro driver's 64 MiB
//!   minimum, and the measured least plus [`HEADROOM_MIB`];
//! - `recommended_cpu_count`: [`RECOMMENDED_CPU_COUNT`].

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::boot::Boot;
use crate::error::{Error, Result, ensure};
use crate::tools::Tools;

/// One MiB, the unit of `nitro-cli run-enclave --memory`.
pub const MIB: u64 = 1024 * 1024;

/// `nitro-cli run-enclave` refuses memory below this many times the EIF's size (error E26;
/// aws-nitro-enclaves-cli PR #198: the kernel and ramdisks are copied into enclave memory and
/// the initramfs is unpacked there).
pub const NITRO_CLI_MEMORY_FACTOR: u64 = 4;

/// The Nitro Enclaves driver's least enclave memory (Linux
/// `Documentation/virt/ne_overview.rst`: 64 MiB).
pub const NITRO_MINIMUM_MEMORY_MIB: u64 = 64;

/// Added to the measured least memory in the recommendation: the measurement stops at the
/// first attestation, before the application serves requests (KMS calls, TLS buffers, its own
/// data), so a deployment needs room beyond it.
pub const HEADROOM_MIB: u64 = 64;

/// The recommended `--cpu-count`: on x86 nitro-cli takes vCPUs in whole cores and refuses
/// fewer than one full core, which is 2 vCPUs on instances with two threads per core (every
/// current Nitro x86 type); the template needs no more.
pub const RECOMMENDED_CPU_COUNT: u32 = 2;

/// The bisection's lower end (MiB): no CCC image's kernel and unpacked initramfs fit below.
pub const SEARCH_FLOOR_MIB: u32 = 16;

/// The bisection's resolution (MiB): the published least is at most this much above the true
/// least on the measuring host.
pub const SEARCH_STEP_MIB: u32 = 8;

/// The bisection's upper end unless nitro-cli's minimum is higher (MiB): the first probe, which
/// must attest.
pub const SEARCH_CEILING_MIB: u32 = 256;

/// How long one probe may take to attest (a TCG boot attests in 2–5 s; a failing one is ended
/// at its kernel's panic line, or by this).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The console line the enclave template prints when it has its attestation document
/// (`start.attestation`; under emulation the console shows every record).
pub const ATTESTED_MARKER: &str = "attestation: ";

/// `resources` in the published files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// The EIF's size in bytes.
    pub eif_bytes: u64,
    /// ceil(4 × `eif_bytes` / MiB): the least `--memory` nitro-cli accepts.
    pub nitro_cli_minimum_memory_mib: u64,
    /// The least memory that booted and attested under QEMU (absent: not measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub least_memory_mib: Option<u64>,
    /// How the least memory was measured (or why it was not).
    pub least_memory_method: String,
    /// The `--memory` to run the enclave with.
    pub recommended_memory_mib: u64,
    /// The `--cpu-count` to run the enclave with.
    pub recommended_cpu_count: u32,
    /// How the recommendations are derived.
    pub rule: String,
}

/// ceil([`NITRO_CLI_MEMORY_FACTOR`] × `eif_bytes` / MiB).
#[must_use]
pub fn nitro_cli_minimum_mib(eif_bytes: u64) -> u64 {
    eif_bytes
        .saturating_mul(NITRO_CLI_MEMORY_FACTOR)
        .div_ceil(MIB)
}

/// max(nitro-cli's minimum, [`NITRO_MINIMUM_MEMORY_MIB`], least + [`HEADROOM_MIB`]); without a
/// measurement, the first two.
#[must_use]
pub fn recommended_memory_mib(nitro_cli_minimum: u64, least: Option<u64>) -> u64 {
    let measured = least.map_or(0, |least| least.saturating_add(HEADROOM_MIB));
    nitro_cli_minimum
        .max(NITRO_MINIMUM_MEMORY_MIB)
        .max(measured)
}

/// The result of [`least_passing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The least probed memory that passed.
    pub least_mib: u32,
    /// True when even the floor passed (the true least may be lower).
    pub at_floor: bool,
    /// Every probe, in order: (MiB, passed).
    pub probes: Vec<(u32, bool)>,
}

/// Bisection for the least memory in `floor, floor + step, …, ceiling` at which `probe`
/// passes, assuming a probe that passes with N MiB passes with more. `ceiling` is probed first
/// and must pass.
///
/// # Errors
/// `step` is 0 or `floor > ceiling`; `probe` fails; the ceiling does not pass.
pub fn least_passing(
    floor: u32,
    ceiling: u32,
    step: u32,
    mut probe: impl FnMut(u32) -> Result<bool>,
) -> Result<Search> {
    ensure!(
        step > 0 && floor <= ceiling,
        Error::invalid(
            "the memory search",
            format!(
                "needs a step above 0 and floor ≤ ceiling, found step {step}, {floor}..{ceiling} MiB"
            )
        )
    );
    let mut probes = Vec::new();
    let mut run = |mib: u32| -> Result<bool> {
        let passed = probe(mib)?;
        probes.push((mib, passed));
        Ok(passed)
    };
    ensure!(
        run(ceiling)?,
        Error::boot(format!(
            "the image did not boot and attest with {ceiling} MiB, the memory search's upper \
             end; boot it with `qemu --boot EIF --memory {ceiling}` to see why"
        ))
    );
    // Candidates floor + k·step (k = 0..n, n standing for the ceiling); `passing` is the least
    // index known to pass, and every index below `low` is known to fail.
    let n = (ceiling - floor).div_ceil(step);
    let candidate = |k: u32| (floor + k * step).min(ceiling);
    let (mut low, mut passing) = (0_u32, n);
    while low < passing {
        let middle = low + (passing - low) / 2;
        if run(candidate(middle))? {
            passing = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(Search {
        least_mib: candidate(passing),
        at_floor: passing == 0,
        probes,
    })
}

/// True when a console line shows the enclave obtained its attestation document.
#[must_use]
pub fn attested(line: &str) -> bool {
    line.contains(ATTESTED_MARKER) && line.contains(" document ")
}

/// True when a console line shows the guest's kernel failed (out of memory at this size).
fn kernel_failed(line: &str) -> bool {
    line.contains("Kernel panic") || line.contains("Out of memory") || line.contains("Oops: ")
}

/// One boot of `eif` with `memory_mib` MiB, ended at the attestation line or a kernel failure.
fn boots_and_attests(eif: &Path, tools: &Tools, memory_mib: u32) -> Result<bool> {
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicBool::new(false));
    let (on_done, on_seen) = (Arc::clone(&done), Arc::clone(&seen));
    let outcome = Boot::new(eif, tools)
        .memory_mib(memory_mib)
        .cpus(RECOMMENDED_CPU_COUNT)
        .timeout(PROBE_TIMEOUT)
        .cancel_on(Arc::clone(&done))
        .on_console_line(move |line| {
            if attested(line) {
                on_seen.store(true, Ordering::SeqCst);
                on_done.store(true, Ordering::SeqCst);
            } else if kernel_failed(line) {
                // panic=30 would keep the machine up for 30 s: end the boot now.
                on_done.store(true, Ordering::SeqCst);
            }
        })
        .start()?
        .wait()?;
    let passed = seen.load(Ordering::SeqCst) || outcome.console.lines().any(attested);
    eprintln!(
        "release: memory probe {memory_mib} MiB: {}",
        if passed {
            "attested".to_owned()
        } else if outcome.timed_out {
            format!("no attestation within {} s", PROBE_TIMEOUT.as_secs())
        } else {
            "did not attest".to_owned()
        }
    );
    Ok(passed)
}

/// QEMU's version line (`QEMU emulator version …`).
fn qemu_version(tools: &Tools) -> String {
    std::process::Command::new(&tools.qemu)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "QEMU (version unknown)".to_owned())
}

/// The rule text published with the figures.
fn rule() -> String {
    format!(
        "nitro_cli_minimum_memory_mib = ceil({NITRO_CLI_MEMORY_FACTOR} x eif_bytes / MiB) \
         (nitro-cli run-enclave refuses less, error E26); recommended_memory_mib = max(that, \
         {NITRO_MINIMUM_MEMORY_MIB} MiB Nitro driver minimum, least_memory_mib + \
         {HEADROOM_MIB} MiB headroom for the application's work after its first \
         attestation); recommended_cpu_count = {RECOMMENDED_CPU_COUNT}: nitro-cli takes whole \
         cores and at least one, which is 2 vCPUs on x86 with two threads per core; the \
         allocator (allocator.yaml) must reserve at least both"
    )
}

/// The figures for an EIF of `eif_bytes` bytes and a measured least memory.
#[must_use]
pub fn figures(eif_bytes: u64, least: Option<u64>, method: String) -> Resources {
    let minimum = nitro_cli_minimum_mib(eif_bytes);
    Resources {
        eif_bytes,
        nitro_cli_minimum_memory_mib: minimum,
        least_memory_mib: least,
        least_memory_method: method,
        recommended_memory_mib: recommended_memory_mib(minimum, least),
        recommended_cpu_count: RECOMMENDED_CPU_COUNT,
        rule: rule(),
    }
}

/// Measures `eif` (boots under QEMU with `tools`) and returns its published figures.
///
/// # Errors
/// The EIF cannot be read; a boot cannot be started; the image does not attest at the search's
/// upper end.
pub fn measure(eif: &Path, tools: &Tools) -> Result<Resources> {
    use crate::error::IoContext;
    let eif_bytes = std::fs::metadata(eif).io("stat", eif)?.len();
    let minimum = nitro_cli_minimum_mib(eif_bytes);
    let step = u64::from(SEARCH_STEP_MIB);
    let ceiling = u32::try_from(minimum.div_ceil(step) * step)
        .unwrap_or(u32::MAX)
        .max(SEARCH_CEILING_MIB);
    let search = least_passing(SEARCH_FLOOR_MIB, ceiling, SEARCH_STEP_MIB, |mib| {
        boots_and_attests(eif, tools, mib)
    })?;
    let method = format!(
        "measured when this release was made: the least -m (MiB) at which the EIF booted under \
         {} -M nitro-enclave (TCG, {RECOMMENDED_CPU_COUNT} vCPUs) and printed its attestation \
         line, by bisection between {SEARCH_FLOOR_MIB} and {ceiling} MiB in steps of \
         {SEARCH_STEP_MIB} MiB{}; probes {}; a measurement on the releasing host, not part of \
         the image or of the reproducibility comparison",
        qemu_version(tools),
        if search.at_floor {
            " (it attested at the floor: the true least may be lower)"
        } else {
            ""
        },
        search
            .probes
            .iter()
            .map(|(mib, ok)| format!("{mib} {}", if *ok { "ok" } else { "failed" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(figures(
        eif_bytes,
        Some(u64::from(search.least_mib)),
        method,
    ))
}

/// The figures without a measurement (`--skip-memory-measurement`).
///
/// # Errors
/// The EIF cannot be read.
pub fn unmeasured(eif: &Path) -> Result<Resources> {
    use crate::error::IoContext;
    let eif_bytes = std::fs::metadata(eif).io("stat", eif)?.len();
    Ok(figures(
        eif_bytes,
        None,
        "not measured (--skip-memory-measurement)".to_owned(),
    ))
}

/// The lines printed at the end of a release and written into REPRODUCE.md.
#[must_use]
pub fn summary(resources: &Resources) -> Vec<String> {
    vec![
        format!(
            "EIF {} bytes: nitro-cli run-enclave needs --memory >= {} MiB (4 x EIF size, \
             rounded up)",
            resources.eif_bytes, resources.nitro_cli_minimum_memory_mib
        ),
        match resources.least_memory_mib {
            Some(least) => format!(
                "least memory that boots and attests: {least} MiB ({})",
                resources.least_memory_method
            ),
            None => format!("least memory: {}", resources.least_memory_method),
        },
        format!(
            "recommended: nitro-cli run-enclave --memory {} --cpu-count {}",
            resources.recommended_memory_mib, resources.recommended_cpu_count
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nitro_cli_minimum_rounds_four_times_the_eif_up_to_a_mib() {
        assert_eq!(nitro_cli_minimum_mib(0), 0);
        assert_eq!(nitro_cli_minimum_mib(1), 1);
        // 4 × 256 KiB is exactly 1 MiB; one byte more needs a second MiB.
        assert_eq!(nitro_cli_minimum_mib(256 * 1024), 1);
        assert_eq!(nitro_cli_minimum_mib(256 * 1024 + 1), 2);
        // release 0.1.0's EIF: 4,514,792 bytes × 4 = 17.22 MiB → 18.
        assert_eq!(nitro_cli_minimum_mib(4_514_792), 18);
        assert_eq!(nitro_cli_minimum_mib(u64::MAX), u64::MAX / MIB + 1);
    }

    #[test]
    fn recommendation_takes_the_largest_rule() {
        // Small image, measured: measured + headroom wins.
        assert_eq!(recommended_memory_mib(18, Some(40)), 40 + HEADROOM_MIB);
        // Not measured: the driver's 64 MiB floor.
        assert_eq!(recommended_memory_mib(18, None), NITRO_MINIMUM_MEMORY_MIB);
        // Large image: nitro-cli's 4x minimum wins.
        assert_eq!(recommended_memory_mib(2048, Some(300)), 2048);
        let r = figures(100 * MIB, Some(120), "m".into());
        assert_eq!(r.nitro_cli_minimum_memory_mib, 400);
        assert_eq!(r.recommended_memory_mib, 400);
        assert_eq!(r.recommended_cpu_count, 2);
    }

    /// A fake boot that attests from `least` MiB on, recording the probes.
    fn search_with(least: u32, floor: u32, ceiling: u32, step: u32) -> Result<Search> {
        least_passing(floor, ceiling, step, |mib| Ok(mib >= least))
    }

    #[test]
    fn bisection_finds_the_least_passing_step() {
        let found = search_with(37, 16, 256, 8).unwrap();
        assert_eq!(found.least_mib, 40);
        assert!(!found.at_floor);
        assert_eq!(found.probes.first(), Some(&(256, true)));
        // 30 candidates: the ceiling plus at most ceil(log2(31)) = 5 bisection probes.
        assert!(found.probes.len() <= 6, "{:?}", found.probes);
        // Exactly on a step.
        assert_eq!(search_with(40, 16, 256, 8).unwrap().least_mib, 40);
        // Just above the last step below the ceiling: the ceiling itself.
        assert_eq!(search_with(250, 16, 256, 8).unwrap().least_mib, 256);
        // A ceiling off the step grid is never exceeded.
        assert_eq!(search_with(99, 16, 100, 8).unwrap().least_mib, 100);
        // Everything passes: the floor, flagged.
        let all = search_with(0, 16, 256, 8).unwrap();
        assert_eq!((all.least_mib, all.at_floor), (16, true));
        // Every probed value below the result failed and the result passed.
        for least in [17, 64, 129, 200] {
            let found = search_with(least, 16, 256, 16).unwrap();
            assert!(found.least_mib >= least && found.least_mib < least + 16);
            for (mib, ok) in &found.probes {
                assert_eq!(*ok, *mib >= least);
            }
        }
    }

    #[test]
    fn bisection_refuses_a_failing_ceiling_and_bad_bounds() {
        let err = search_with(300, 16, 256, 8).unwrap_err().to_string();
        assert!(err.contains("256 MiB"), "{err}");
        assert!(search_with(0, 16, 256, 0).is_err());
        assert!(search_with(0, 300, 256, 8).is_err());
        // A probe error stops the search.
        let err = least_passing(16, 64, 8, |_| Err(Error::boot("no QEMU"))).unwrap_err();
        assert!(err.to_string().contains("no QEMU"), "{err}");
    }

    #[test]
    fn the_attestation_line_is_recognised() {
        assert!(attested(
            "ccc-enclave: attestation: qemu, module i-0ccc-enc0, document 4467 bytes at \
             2026-12-06T10:00:00Z, uptime 1.2 s, signature NONE"
        ));
        assert!(!attested("ccc-enclave: attestation: PCR0 abcd"));
        assert!(!attested("[    0.000000] Linux version 6.12"));
    }
}
