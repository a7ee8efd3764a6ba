//! `cargo xtask nsm ...`: NSM developer tools (the signed simulator from the command line).

use anyhow::{Context, Result, bail};
use ccc_sdk::nsm::simulator::{Simulator, SimulatorConfig};
use ccc_sdk::nsm::{Nsm, PCR_LEN};
use ccc_sdk::time::UnixMillis;
use clap::{Args as ClapArgs, Subcommand};
use std::path::PathBuf;

/// `cargo xtask nsm`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write an attestation document signed by the NSM simulator's development chain, and that
    /// chain's root certificate (FILE.root.pem). Not signed by AWS: for development, tests
    /// and the fuzz seed corpus only.
    SimulateAttestation(SimulateArgs),
}

#[derive(Debug, ClapArgs)]
struct SimulateArgs {
    /// Where to write the document (raw CBOR COSE_Sign1).
    #[arg(long)]
    out: PathBuf,
    /// Nonce to bind, hex.
    #[arg(long)]
    nonce: Option<String>,
    /// User data to bind, hex.
    #[arg(long)]
    user_data: Option<String>,
    /// Public key to bind (e.g. a DER SubjectPublicKeyInfo), hex.
    #[arg(long)]
    public_key: Option<String>,
    /// Boot-time PCR value N=HEX (N in 0..=15, 48 bytes of hex); repeatable.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pcrs: Vec<String>,
    /// Document time, RFC 3339 or Unix milliseconds (default: now).
    #[arg(long)]
    time: Option<String>,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    match &args.command {
        Command::SimulateAttestation(args) => simulate_attestation(args),
    }
}

fn hex_arg(name: &str, value: Option<&String>) -> Result<Option<Vec<u8>>> {
    value
        .map(|text| hex::decode(text).with_context(|| format!("--{name} is not hex: {text:?}")))
        .transpose()
}

fn pcr_arg(text: &str) -> Result<(u16, [u8; PCR_LEN])> {
    let (index, value) = text
        .split_once('=')
        .with_context(|| format!("--pcr {text:?}: expected N=HEX"))?;
    let index: u16 = index
        .parse()
        .with_context(|| format!("--pcr {text:?}: {index:?} is not a PCR number"))?;
    let bytes = hex::decode(value).with_context(|| format!("--pcr {text:?}: value is not hex"))?;
    let Ok(value) = <[u8; PCR_LEN]>::try_from(bytes.as_slice()) else {
        bail!(
            "--pcr {text:?}: value is {} bytes, a PCR is {PCR_LEN} (96 hex digits)",
            bytes.len()
        );
    };
    Ok((index, value))
}

fn simulate_attestation(args: &SimulateArgs) -> Result<()> {
    let mut config = SimulatorConfig::default();
    for text in &args.pcrs {
        let (index, value) = pcr_arg(text)?;
        config = config.with_pcr(index, value);
    }
    if let Some(time) = &args.time {
        let at = UnixMillis::parse(time).with_context(|| format!("--time {time:?}"))?;
        config = config.with_fixed_time(at);
    }
    let simulator = Simulator::new(config).context("building the NSM simulator")?;
    eprintln!("{}", ccc_sdk::nsm::simulator::ANNOUNCEMENT);
    let root_pem = simulator.root_pem().to_owned();
    let nsm = Nsm::simulator(simulator);
    let nonce = hex_arg("nonce", args.nonce.as_ref())?;
    let user_data = hex_arg("user-data", args.user_data.as_ref())?;
    let public_key = hex_arg("public-key", args.public_key.as_ref())?;
    let document = nsm
        .attestation(
            user_data.as_deref(),
            nonce.as_deref(),
            public_key.as_deref(),
        )
        .context("simulated attestation")?;
    std::fs::write(&args.out, &document)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let mut root_path = args.out.clone().into_os_string();
    root_path.push(".root.pem");
    let root_path = PathBuf::from(root_path);
    std::fs::write(&root_path, root_pem)
        .with_context(|| format!("writing {}", root_path.display()))?;
    println!(
        "wrote {} ({} bytes, simulator-signed) and its development root {}",
        args.out.display(),
        document.len(),
        root_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_arguments_are_checked() {
        let value = "ab".repeat(PCR_LEN);
        assert_eq!(
            pcr_arg(&format!("4={value}")).unwrap(),
            (4, [0xab; PCR_LEN])
        );
        let short = format!("{:#}", pcr_arg("0=abcd").unwrap_err());
        assert!(short.contains("value is 2 bytes, a PCR is 48"), "{short}");
        assert!(pcr_arg("x=00").is_err());
        assert!(pcr_arg("0").is_err());
    }

    #[test]
    fn simulate_attestation_writes_a_document_and_its_root() {
        let dir = std::env::temp_dir().join(format!("ccc-xtask-nsm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("doc.cose");
        let args = SimulateArgs {
            out: out.clone(),
            nonce: Some("00ff".into()),
            user_data: None,
            public_key: None,
            pcrs: vec![format!("0={}", "11".repeat(PCR_LEN))],
            time: Some("2025-11-24T16:00:00Z".into()),
        };
        simulate_attestation(&args).unwrap();
        let document = std::fs::read(&out).unwrap();
        // Untagged COSE_Sign1 with the ES384 protected header, like the NSM's.
        assert!(document.starts_with(&[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0]));
        let root = std::fs::read_to_string(dir.join("doc.cose.root.pem")).unwrap();
        assert!(root.starts_with("-----BEGIN CERTIFICATE-----"));
        let bad = SimulateArgs {
            nonce: Some("zz".into()),
            ..args
        };
        assert!(format!("{:#}", simulate_attestation(&bad).unwrap_err()).contains("--nonce"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
