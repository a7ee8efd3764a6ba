//! `cargo xtask bench eif`: PCR computation on a 100 MiB EIF against the raw SHA-384 of the
//! same bytes (target: at most 1.1x) and against AWS's reader (aws-nitro-enclaves-image-format
//! `EifReader::from_eif` + `get_measurements`, what `nitro-cli describe-eif` runs).

use anyhow::{Context, Result, ensure};
use aws_lc_rs::digest::{SHA384, digest};
use ccc_eif::{BuildInfo, Eif, EifBuilder, EifIdentity, SourceDateEpoch};
use std::time::Instant;

const MIB: usize = 1024 * 1024;

/// A timed operation: its label and the call.
type Candidate<'a> = (&'static str, Box<dyn Fn() + 'a>);

/// Deterministic filler (xorshift64*), so runs are comparable.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// CPU time (user + system, all threads) this process has used, from `/proc/self/stat`;
/// divided by wall time it shows how many cores a candidate kept busy.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks are 100 per second on Linux (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn run() -> Result<()> {
    // nitro-cli's shape: a kernel, a small bootstrap ramdisk, a large application ramdisk.
    let kernel = filler(1, 8 * MIB);
    let bootstrap = filler(2, 2 * MIB);
    let app = filler(3, 90 * MIB);
    let identity = EifIdentity::new(
        "bench",
        "1",
        BuildInfo::new(
            SourceDateEpoch::UNIX_EPOCH,
            "ccc-bench",
            "0",
            "Linux",
            "6.12",
        ),
    );
    let builder = EifBuilder::new(&kernel, "console=ttyS0 reboot=k panic=30", identity)
        .ramdisk(&bootstrap)
        .ramdisk(&app);
    let dir = std::env::temp_dir().join(format!("ccc-bench-eif-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.eif");
    let started = Instant::now();
    let built = builder.write_file(&path)?;
    let write_once = started.elapsed();
    let bytes = std::fs::read(&path)?;
    let path_text = path.to_str().context("temp path is UTF-8")?.to_owned();
    println!(
        "EIF: {} bytes ({:.1} MiB), PCR0 {}",
        bytes.len(),
        bytes.len() as f64 / MIB as f64,
        built.measurements.pcr0
    );

    // All implementations agree before anything is timed.
    ensure!(Eif::from_bytes(&bytes)?.measurements == built.measurements);
    ensure!(Eif::open(&path)?.measurements == built.measurements);
    let mut aws =
        aws_nitro_enclaves_image_format::utils::eif_reader::EifReader::from_eif(path_text.clone())
            .map_err(anyhow::Error::msg)?;
    ensure!(aws.check_crc());
    let aws_pcrs = aws.get_measurements().map_err(anyhow::Error::msg)?;
    ensure!(aws_pcrs.get("PCR0") == Some(&built.measurements.pcr0.hex()));

    // The machine is shared (builds run next to benchmarks), so each candidate is timed in
    // rounds interleaved with the raw SHA-384 baseline and the ratio is the median of the
    // per-round ratios: load that comes and goes hits both sides of a round alike.
    let rounds = 7;
    let raw = || {
        std::hint::black_box(digest(&SHA384, std::hint::black_box(&bytes)));
    };
    let candidates: Vec<Candidate<'_>> = vec![
        ("raw SHA-384 of the file bytes (aws-lc-rs)", Box::new(raw)),
        (
            "raw CRC-32 of the file bytes (crc32fast)",
            Box::new(|| {
                std::hint::black_box(crc32fast::hash(std::hint::black_box(&bytes)));
            }),
        ),
        (
            "floor, 1 thread: SHA-384 of content_0 + content_2",
            Box::new(|| {
                std::hint::black_box(digest(&SHA384, std::hint::black_box(&bytes)));
                std::hint::black_box(digest(&SHA384, std::hint::black_box(&app)));
            }),
        ),
        (
            "ccc-eif Eif::open (file, streaming, 2 threads)",
            Box::new(|| {
                std::hint::black_box(Eif::open(&path).map(|e| e.measurements).ok());
            }),
        ),
        (
            "ccc-eif Eif::read (in memory, 2 threads)",
            Box::new(|| {
                std::hint::black_box(Eif::read(&bytes[..]).map(|e| e.measurements).ok());
            }),
        ),
        (
            "ccc-eif Eif::from_bytes (in memory, 1 thread)",
            Box::new(|| {
                std::hint::black_box(Eif::from_bytes(&bytes).map(|e| e.measurements).ok());
            }),
        ),
        (
            "ccc-eif EifBuilder::measure (no output)",
            Box::new(|| {
                std::hint::black_box(builder.measure().ok());
            }),
        ),
        (
            "ccc-eif EifBuilder::write_file (+ fsync)",
            Box::new(|| {
                std::hint::black_box(builder.write_file(&path).ok());
            }),
        ),
        (
            "AWS EifReader::from_eif + get_measurements",
            Box::new(|| {
                let mut reader =
                    aws_nitro_enclaves_image_format::utils::eif_reader::EifReader::from_eif(
                        path_text.clone(),
                    )
                    .ok();
                std::hint::black_box(reader.as_mut().map(|r| r.get_measurements()));
            }),
        ),
    ];

    println!("\nPCR0/1/2 + CRC of a 100 MiB EIF, ratio to one raw SHA-384 pass over its bytes");
    println!(
        "(median of {rounds} interleaved rounds; target for our reader: <= 1.10x; {} CPUs, load \
         average {})",
        std::thread::available_parallelism().map_or(1, usize::from),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?"),
    );
    let mut times = Vec::new();
    for (label, candidate) in &candidates {
        let mut ratios = Vec::with_capacity(rounds);
        let mut own = Vec::with_capacity(rounds);
        let mut cpu = 0.0;
        for _ in 0..rounds {
            let t = Instant::now();
            raw();
            let base = t.elapsed();
            let (t, c) = (Instant::now(), cpu_seconds());
            candidate();
            let took = t.elapsed();
            cpu += cpu_seconds() - c;
            ratios.push(took.as_secs_f64() / base.as_secs_f64());
            own.push(took);
        }
        ratios.sort_by(f64::total_cmp);
        own.sort();
        let (ratio, time) = (ratios[rounds / 2], own[rounds / 2]);
        let busy = cpu / own.iter().map(|d| d.as_secs_f64()).sum::<f64>();
        println!("{label:<52} {time:>12.3?} per call   {ratio:>6.2}x   {busy:>4.2} CPUs busy");
        times.push(time);
    }
    let (ours, aws) = (times[3], times[8]);
    println!(
        "\nccc-eif Eif::open vs AWS reader: {:.2}x faster (first write, cold: {write_once:.3?})",
        aws.as_secs_f64() / ours.as_secs_f64()
    );

    // Release task: add here the EIF size of the default template and the release build
    // times (first build, rebuild-and-compare), next to these numbers.

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
