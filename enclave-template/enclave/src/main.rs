//! The template's enclave side (minimal placeholder until the template proper lands): asks the
//! real NSM (`/dev/nsm`, never a simulator) for an attestation document and prints its summary
//! on the console: module id, timestamp, PCR0/1/2 and whether the enclave runs in debug mode.
//! Exits 0 when that worked; without `/dev/nsm` it prints why and exits 1.

use std::process::ExitCode;

use ccc_sdk::attestation;
use ccc_sdk::nsm::Nsm;

/// The PCRs an image's measurements pin (kernel + cmdline + ramdisks, bootstrap, application).
const IMAGE_PCRS: [u8; 3] = [0, 1, 2];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ccc-template-enclave: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let nsm = Nsm::open().map_err(|e| e.to_string())?;
    let document = nsm
        .attestation(None, None, None)
        .map_err(|e| format!("the NSM refused an attestation document: {e}"))?;
    let parsed = attestation::parse(&document)
        .map_err(|e| format!("the NSM returned a document that does not parse: {e}"))?;
    let doc = &parsed.document;
    println!(
        "ccc-template-enclave: attestation document, {} bytes",
        document.len()
    );
    println!("ccc-template-enclave: module_id {}", doc.module_id);
    println!("ccc-template-enclave: timestamp {}", doc.timestamp);
    let mut all_zero = true;
    for index in IMAGE_PCRS {
        let value = doc
            .pcrs
            .get(index)
            .ok_or_else(|| format!("the document has no PCR{index}"))?;
        all_zero &= value.iter().all(|&b| b == 0);
        println!("ccc-template-enclave: PCR{index} {}", hex(value));
    }
    // Debug-mode enclaves report all-zero image PCRs (AWS Nitro Enclaves user guide,
    // `nitro-cli run-enclave --debug-mode`): KMS policies pinning real PCRs refuse them.
    println!(
        "ccc-template-enclave: debug mode: {}",
        if all_zero {
            "YES (PCR0/1/2 are zero: no key policy pinning this image will release keys)"
        } else {
            "no"
        }
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
