//! The `attestation verify FILE` command: verify an NSM attestation document (raw CBOR, hex or
//! base64) with the SDK, print a JSON summary on success, name the failed check otherwise.

use ccc_sdk::attestation::{self, Policy, RootOfTrust, Trust, VerifiedAttestation, VerifyOptions};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::time::UnixMillis;
use serde_json::{Value, json};
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};

/// `attestation ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify a document: signature, chain to the AWS Nitro root (or --root), validity at
    /// --at, then the policy (--expect-pcrs, --nonce, debug mode).
    Verify(VerifyArgs),
}

/// Options of `attestation verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The document: raw CBOR, hex or base64 (detected).
    file: PathBuf,
    /// Verification time, RFC 3339 or Unix milliseconds (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Trust this PEM root instead of AWS Nitro Enclaves Root G1 (must be cabundle[0]).
    #[arg(long, value_name = "PEM")]
    root: Option<PathBuf>,
    /// Expected PCRs: a release pcr-measurements.json or nitro-cli build-enclave output.
    #[arg(long, value_name = "JSON")]
    expect_pcrs: Option<PathBuf>,
    /// Expected nonce, in hex.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Accept debug-mode documents (PCR0/1/2 all zero).
    #[arg(long)]
    allow_debug: bool,
    /// INSECURE: accept QEMU nitro-enclave documents, which are not signed at all.
    #[arg(long, conflicts_with = "root")]
    insecure_qemu_unsigned: bool,
}

/// Runs an `attestation` subcommand.
///
/// # Errors
/// The document cannot be read or decoded, an option is invalid, or a check fails (the error
/// names it).
pub fn run(command: &Command) -> Result<()> {
    match command {
        Command::Verify(args) => verify(args),
    }
}

/// Raw CBOR, hex or base64 (`ccc_sdk::attestation::decode_any`, which `explain` shares).
fn decode_document(bytes: &[u8]) -> Result<Vec<u8>, String> {
    attestation::decode_any(bytes).map_err(|e| e.to_string())
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let file = args.file.display().to_string();
    let raw = std::fs::read(&args.file).io("read", &args.file)?;
    let document = decode_document(&raw).map_err(|problem| {
        Error::invalid(&file, format!("cannot decode the document: {problem}"))
    })?;

    let at = match &args.at {
        Some(text) => UnixMillis::parse(text)
            .map_err(|e| Error::invalid(format!("--at {text:?}"), e.to_string()))?,
        None => {
            let now = UnixMillis::now();
            eprintln!("attestation: no --at given, verifying at the current time {now}");
            now
        }
    };
    let root = if args.insecure_qemu_unsigned {
        eprintln!(
            "attestation: WARNING: --insecure-qemu-unsigned: accepting an UNSIGNED emulator \
             document; it proves nothing about where it came from"
        );
        RootOfTrust::InsecureQemuUnsigned
    } else if let Some(path) = &args.root {
        let pem = std::fs::read_to_string(path).io("read --root", path)?;
        RootOfTrust::custom_pem(&pem)
            .map_err(|e| Error::invalid(format!("--root {}", path.display()), e.to_string()))?
    } else {
        RootOfTrust::AwsNitro
    };
    let mut policy = match &args.expect_pcrs {
        Some(path) => {
            let json = std::fs::read_to_string(path).io("read --expect-pcrs", path)?;
            Policy::from_measurements_json(&json).map_err(|e| {
                Error::invalid(format!("--expect-pcrs {}", path.display()), e.to_string())
            })?
        }
        None => Policy::new(),
    };
    if let Some(nonce) = &args.nonce {
        let nonce = hex::decode(nonce.trim())
            .map_err(|e| Error::invalid("--nonce", format!("not hex: {e}")))?;
        policy = policy.expect_nonce(&nonce);
    }
    if args.allow_debug {
        policy = policy.allow_debug_mode();
    }
    let options = VerifyOptions::new(at).with_root(root).with_policy(policy);
    let verified =
        attestation::verify(&document, &options, &AwsLc).map_err(|e| Error::Attestation {
            problem: format!("{file}: {e}"),
        })?;
    if verified.is_debug_mode() {
        eprintln!("attestation: WARNING: debug-mode document accepted (--allow-debug)");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&summary(&verified)).unwrap_or_default()
    );
    Ok(())
}

fn opt_hex(value: Option<&Vec<u8>>) -> Value {
    value.map_or(Value::Null, |v| Value::String(hex::encode(v)))
}

fn summary(v: &VerifiedAttestation) -> Value {
    let pcrs: serde_json::Map<String, Value> = v
        .pcrs
        .iter()
        .map(|(i, value)| (format!("PCR{i}"), Value::String(hex::encode(value))))
        .collect();
    let trust = match v.trust {
        Trust::AwsNitroRoot => "aws-nitro-root-g1",
        Trust::CustomRoot => "custom-root",
        Trust::InsecureQemuUnsigned => "INSECURE-qemu-unsigned",
        _ => "unknown",
    };
    let chain: Vec<Value> = v
        .chain
        .iter()
        .map(|c| {
            json!({
                "subject_cn": c.subject_cn,
                "not_before": c.not_before.to_string(),
                "not_after": c.not_after.to_string(),
            })
        })
        .collect();
    json!({
        "module_id": v.module_id,
        "timestamp": v.timestamp.0,
        "timestamp_rfc3339": v.timestamp.to_string(),
        "digest": v.digest,
        "pcrs": pcrs,
        "public_key": opt_hex(v.public_key.as_ref()),
        "user_data": opt_hex(v.user_data.as_ref()),
        "nonce": opt_hex(v.nonce.as_ref()),
        "debug_mode": v.is_debug_mode(),
        "unsigned_emulated": v.is_unsigned_emulated(),
        "trust": trust,
        "verified_at": v.verified_at.to_string(),
        "chain": chain,
    })
}

#[cfg(test)]
mod tests {
    use super::{VerifyArgs, decode_document, verify};
    use std::path::PathBuf;

    fn vector(dir: &str, file: &str) -> PathBuf {
        ccc_test_vectors::path(format!("nitro-attestation-vectors/{dir}/{file}"))
    }

    fn args(file: PathBuf) -> VerifyArgs {
        VerifyArgs {
            file,
            at: Some("1762795210812".into()),
            root: None,
            expect_pcrs: None,
            nonce: None,
            allow_debug: false,
            insecure_qemu_unsigned: false,
        }
    }

    #[test]
    fn verifies_a_real_document_and_names_a_failed_check() {
        let file = vector(
            "fastcrypto-nondebug-pcr16-indefmap-2025-11-10",
            "attestation.hex",
        );
        verify(&args(file.clone())).unwrap();
        let mut wrong_nonce = args(file.clone());
        wrong_nonce.nonce = Some("abcd".into());
        let err = verify(&wrong_nonce).unwrap_err().to_string();
        assert!(
            err.contains("nonce mismatch: expected abcd, found (absent)"),
            "{err}"
        );
        let mut late = args(file);
        late.at = Some("2025-11-10T20:20:10.001Z".into());
        let err = verify(&late).unwrap_err().to_string();
        assert!(
            err.contains("leaf certificate") && err.contains("expired"),
            "{err}"
        );
    }

    #[test]
    fn detects_raw_hex_and_base64() {
        let raw = [0x84u8, 0x43, 0xa1, 0x01, 0x20];
        assert_eq!(decode_document(&raw).unwrap(), raw);
        assert_eq!(decode_document(b"8443a10120\n").unwrap(), raw);
        assert_eq!(decode_document(b"hEOhASA=").unwrap(), raw);
        assert!(decode_document(b"").is_err());
        assert!(decode_document(b"!!").is_err());
    }
}
