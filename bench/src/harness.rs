//! Timing harness: warm up, then take the median of repeated batches, and print ratios.

use std::time::{Duration, Instant};

/// The median time of one call of `f`, measured over `batches` batches sized to take at least
/// ~20 ms each after a warm-up.
pub(crate) fn median_per_call(batches: usize, mut f: impl FnMut()) -> Duration {
    let mut per_batch = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        if t.elapsed() >= Duration::from_millis(20) || per_batch >= 1 << 20 {
            break;
        }
        per_batch *= 2;
    }
    let mut samples: Vec<Duration> = (0..batches.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed() / per_batch
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// Prints one row: a label, its time per call, and its ratio to `baseline`.
pub(crate) fn report(label: &str, time: Duration, baseline: Duration) {
    let ratio = time.as_secs_f64() / baseline.as_secs_f64();
    println!("{label:<48} {:>12.3?} per call   {ratio:>6.2}x", time);
}
