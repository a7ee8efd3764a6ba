//! `ccc-bench NAME`: side-by-side timings of our code against named peers, printed as ratios.
//! Built with the `bench` profile by `cargo xtask bench NAME`; tests never assert timings.

mod attestation;
mod eif;
mod harness;
mod kms;
mod proxy;

use anyhow::{Result, bail};

/// A benchmark: its name and its entry point.
type Benchmark = (&'static str, fn() -> Result<()>);

/// Every benchmark.
const BENCHMARKS: &[Benchmark] = &[
    ("attestation", attestation::run),
    ("eif", eif::run),
    ("kms", kms::run),
    ("proxy", proxy::run),
];

fn main() -> Result<()> {
    let name = std::env::args().nth(1).unwrap_or_default();
    let names: Vec<&str> = BENCHMARKS.iter().map(|(n, _)| *n).collect();
    match BENCHMARKS.iter().find(|(n, _)| *n == name) {
        Some((_, run)) => run(),
        None => bail!(
            "unknown benchmark {name:?}; available: {}",
            names.join(", ")
        ),
    }
}
