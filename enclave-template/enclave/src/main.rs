//! The enclave binary: reads its settings, opens the NSM, runs the start-up sequence and
//! serves the API until the enclave stops. The application itself is in `app.rs`.
//!
//! Failures before the log channel exists (unusable settings, no NSM) go to the console only;
//! from the start-up on they are `enclave.fatal` records as well (`enclave::log::Log::fatal`),
//! flushed before the process exits.
// Bytes from peers (the enclave, the parent, KMS clients, the kernel command line) are read
// with get()/split_first()/cursors: indexing that could panic is an error outside tests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use ccc_sdk::log::Level;
use enclave::Stop;
use enclave::config::{NsmChoice, Settings};
use enclave::console::Console;
use enclave::log::{FLUSH_ON_EXIT, record};
use std::process::ExitCode;

fn main() -> ExitCode {
    let console = Console::stderr();
    match run(&console) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Some(message)) => {
            console.line(format_args!("FATAL: {message}"));
            ExitCode::FAILURE
        }
        // Already reported (console and log channel).
        Err(None) => ExitCode::FAILURE,
    }
}

/// `Err(Some)`: a failure still to print; `Err(None)`: one already reported.
fn run(console: &Console) -> Result<(), Option<String>> {
    let settings = Settings::from_process().map_err(|e| Some(e.to_string()))?;
    let nsm = open_nsm(settings.nsm, console).map_err(Some)?;
    let started = enclave::start(&settings, nsm, console.clone()).map_err(|_| None)?;
    let log = started.log().clone();
    match started.wait() {
        Stop::Served(n) => {
            log.emit(
                record(
                    Level::Warn,
                    "enclave.exit",
                    format!(
                        "EMULATION: {n} request(s) answered (ccc_app.exit_after): exiting with \
                         status 0"
                    ),
                )
                .field("requests", n)
                .field("status", 0u8),
            );
            let _ = log.flush(FLUSH_ON_EXIT);
            Ok(())
        }
        Stop::Failed(error) => {
            log.fatal(&format!("the API server stopped: {error}"));
            Err(None)
        }
        _ => {
            log.fatal("the API server stopped");
            Err(None)
        }
    }
}

/// The NSM the settings name: the device, or (development builds only) the simulator. Never
/// one in place of the other.
fn open_nsm(choice: NsmChoice, console: &Console) -> Result<ccc_sdk::nsm::Nsm, String> {
    match choice {
        NsmChoice::Device => ccc_sdk::nsm::Nsm::open().map_err(|e| e.to_string()),
        NsmChoice::Simulator => simulator(console),
        _ => Err("unknown NSM choice".into()),
    }
}

#[cfg(feature = "simulator")]
fn simulator(console: &Console) -> Result<ccc_sdk::nsm::Nsm, String> {
    use ccc_sdk::nsm::{Simulator, SimulatorConfig};
    let simulator = Simulator::new(SimulatorConfig::default()).map_err(|e| e.to_string())?;
    console.line(format_args!(
        "NSM SIMULATOR SELECTED (CCC_APP_NSM=simulator): attestation documents are signed by \
         a development root generated now, NOT by AWS; no real KMS key policy accepts them"
    ));
    // The emulator must trust this root: `cargo xtask kms-emulator --trust simulator:FILE`.
    if let Some(path) = std::env::var_os("CCC_SIMULATOR_ROOT_OUT") {
        std::fs::write(&path, simulator.root_pem())
            .map_err(|e| format!("cannot write the simulator's root: {e}"))?;
        console.line(format_args!(
            "NSM simulator root written to {}",
            std::path::Path::new(&path).display()
        ));
    }
    Ok(ccc_sdk::nsm::Nsm::simulator(simulator))
}

#[cfg(not(feature = "simulator"))]
fn simulator(_: &Console) -> Result<ccc_sdk::nsm::Nsm, String> {
    Err(
        "CCC_APP_NSM=simulator, but this binary was built without the `simulator` feature \
         (release images never have it); build with `--features simulator` for development"
            .into(),
    )
}
