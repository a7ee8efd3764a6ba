//! `cargo xtask kms-emulator`: runs the KMS emulator in the foreground, prints how to reach it,
//! and stops it cleanly on Ctrl-C (SIGINT) or SIGTERM.

use anyhow::{Context, Result};
use ccc_emulator::{Config, Emulator, Transport, TrustMode};
use std::path::PathBuf;

/// Options for `cargo xtask kms-emulator`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// State file (keys, credentials, CA; PLAINTEXT, development only). Created if missing.
    /// Default: target/kms-emulator/state.json in the workspace.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Key policy JSON (or @FILE) for the default key and the account policy (GenerateRandom,
    /// CreateKey, ListKeys). Replaces the stored ones at every start.
    #[arg(long, value_name = "JSON")]
    policy: Option<String>,
    /// Region (default: the state's, or us-east-1 for a new state).
    #[arg(long)]
    region: Option<String>,
    /// Which attestation documents a Recipient may carry: `aws` (AWS Nitro root),
    /// `simulator:<root.pem>` (a development root, e.g. from `cargo xtask nsm
    /// simulate-attestation`), or `qemu-unsigned` (INSECURE: QEMU's unsigned documents).
    #[arg(long, default_value = "aws", value_name = "MODE")]
    trust: String,
    /// Serve plain HTTP instead of HTTPS (INSECURE; printed loudly).
    #[arg(long)]
    http: bool,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let trust = TrustMode::from_flag(&args.trust)?;
    let state = args.state.clone().unwrap_or_else(|| {
        crate::workspace_root()
            .join("target")
            .join("kms-emulator")
            .join("state.json")
    });
    let mut config = Config::new(state)
        .with_port(args.port)
        .with_trust(trust)
        .with_transport(if args.http {
            Transport::InsecureHttp
        } else {
            Transport::Https
        });
    if let Some(region) = &args.region {
        config = config.with_region(region);
    }
    if let Some(policy) = &args.policy {
        let text = match policy.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the policy file {path}"))?,
            None => policy.clone(),
        };
        config = config.with_policy(text);
    }
    // Install the handler before starting, so a Ctrl-C during start-up is not lost.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing the SIGINT/SIGTERM handler")?;
    let running = Emulator::start(config)?;
    let credentials = running.credentials();
    let ca = running.ca_path().display();
    println!("KMS emulator: {}", running.endpoint());
    println!(
        "  host name:     {} (the certificate also names localhost, 127.0.0.1)",
        running.host_name()
    );
    if running.is_https() {
        println!("  CA to trust:   {ca}");
    } else {
        println!("  PLAIN HTTP: no TLS (INSECURE)");
    }
    println!("  trust mode:    {}", running.trust().label());
    println!("  region:        {}", running.region());
    println!("  default key:   {}", running.default_key_arn());
    println!("  state:         {}", running.state_path().display());
    println!("  principal:     {}", credentials.principal_arn());
    println!("  credentials (development only):");
    println!(
        "    export AWS_ACCESS_KEY_ID={}",
        credentials.access_key_id()
    );
    println!(
        "    export AWS_SECRET_ACCESS_KEY={}",
        credentials.secret_access_key()
    );
    if let Some(token) = credentials.session_token() {
        println!("    export AWS_SESSION_TOKEN={token}");
    }
    println!(
        "    export AWS_REGION={0} AWS_DEFAULT_REGION={0}",
        running.region()
    );
    let ca_option = if running.is_https() {
        format!(" --ca-bundle {ca}")
    } else {
        String::new()
    };
    println!(
        "  try: aws kms generate-random --number-of-bytes 32 --endpoint-url {}{ca_option}",
        running.endpoint()
    );
    println!("Ctrl-C stops it.");
    let signal = signals.forever().next();
    eprintln!(
        "kms-emulator: stopping (signal {})",
        signal.map_or_else(|| "?".into(), |s| s.to_string())
    );
    running.stop();
    eprintln!("kms-emulator: stopped; state kept");
    Ok(())
}
