//! The CCC enclave template: an enclave application that proves what it is to KMS, receives
//! keys only it can open, and serves a small request/response API over vsock.
//!
//! # Where things are
//! - [`app`]: **the application** — defaults and one handler per operation. Fork the
//!   template and change this file.
//! - [`protocol`]: the API's wire format (frames, requests, answers, error frames), shared
//!   with the parent's `client` command.
//! - [`config`]: settings from `app.rs`, `/env` and (emulation only) the kernel command line.
//! - [`seal`]: the sealed-blob format.
//! - [`server`]: the listener and per-connection loop.
//! - [`console`], [`failure`]: the console log and the error frames that name their step.
//! - [`start`] (here): the start-up sequence the binary runs.
//!
//! # Start-up
//! 1. Print the settings and the attestation summary from the enclave's own NSM document
//!    (module id, PCRs, signed or QEMU-unsigned, debug mode). The enclave does not verify its
//!    own document: KMS does, against the key policy. But it reads its signature algorithm:
//!    the emulation-only words of the kernel command line (`ccc.emulation=1`, `ccc_app.*`)
//!    are honoured only when the document is QEMU's unsigned one; with a signed document
//!    (Nitro, or the signed simulator) their presence stops the start
//!    ([`StartError::EmulationSwitchesOnSignedDocument`]), because the command line is not
//!    covered by PCR2 and a parent could rebuild the image with its own CA there.
//!    Then compare the enclave's clock with the document's time ([`clock`]): beyond
//!    [`clock::MAX_SKEW`] the clock is set to the document's time (printed loudly), or the start
//!    stops with [`StartError::Clock`] when it cannot be set.
//! 2. Ask the parent for credentials (a failure is printed; every KMS call asks again).
//! 3. Build the attested KMS client: TLS to `kms.<region>.amazonaws.com` through the parent's
//!    proxy, the enclave's RSA-2048 key generated inside.
//! 4. Listen on the API port and serve.

pub mod app;
pub mod clock;
pub mod config;
pub mod console;
pub mod failure;
pub mod protocol;
pub mod seal;
pub mod server;

use ccc_sdk::attestation::{self, Algorithm};
use ccc_sdk::credentials::enclave::FromParent;
use ccc_sdk::credentials::{CredentialsProvider, Refreshing};
use ccc_sdk::kms::attested::AttestedKmsClient;
use ccc_sdk::kms::client::{ClientConfig, ClientError, KmsClient, Transport};
use ccc_sdk::nsm::{Nsm, NsmError};
use ccc_sdk::time::UnixMillis;
use ccc_sdk::tls::TrustAnchors;
use config::Settings;
use console::Console;
pub use server::Stop;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

/// The PCRs printed at start: the image (0), kernel and bootstrap (1), application (2),
/// parent's IAM role (3), parent instance (4), signing certificate (8).
pub const SUMMARY_PCRS: [u8; 6] = [0, 1, 2, 3, 4, 8];

/// Why the enclave could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The NSM did not give an attestation document.
    Nsm(NsmError),
    /// The NSM's document does not parse.
    Attestation(attestation::AttestationError),
    /// The KMS client could not be built (unusable CA, RSA key generation).
    Kms(ClientError),
    /// Emulation-only words are on the kernel command line, but the NSM signs its documents:
    /// this is not a QEMU emulation, and the words would let whoever built the image choose
    /// the KMS CA, key or region.
    EmulationSwitchesOnSignedDocument {
        /// The words found (up to their `=`).
        switches: Vec<String>,
    },
    /// The clock is far from the NSM document's time and could not be set.
    Clock(clock::ClockError),
    /// The API's listener could not be bound.
    Listen {
        /// Where.
        endpoint: String,
        /// The OS error.
        error: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nsm(e) => write!(f, "nsm Attestation failed: {e}"),
            Self::Attestation(e) => {
                write!(f, "the NSM's attestation document does not parse: {e}")
            }
            Self::Kms(e) => write!(f, "the KMS client cannot be built: {e}"),
            Self::EmulationSwitchesOnSignedDocument { switches } => write!(
                f,
                "the kernel command line holds emulation-only words ({}), but this enclave's NSM \
                 signs its attestation documents (ES384): they are honoured only under QEMU's \
                 unsigned NSM. An image for Nitro must not carry them: remove them from the \
                 EIF's command line and configure the image through app.rs or /env \
                 (CCC_APP_*), which PCR2 measures",
                switches.join(", ")
            ),
            Self::Clock(e) => write!(f, "{e}"),
            Self::Listen { endpoint, error } => write!(
                f,
                "cannot listen on {endpoint}: {error} (CCC_APP_PORT / CCC_APP_LISTEN)"
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// A started enclave: its listener's address and how serving ends.
#[derive(Debug)]
pub struct Started {
    address: String,
    app: Arc<app::App>,
    stop: Receiver<Stop>,
}

impl Started {
    /// Where the API listens (`tcp://127.0.0.1:41234`, `vsock://4294967295:5000`).
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The application.
    #[must_use]
    pub fn app(&self) -> &Arc<app::App> {
        &self.app
    }

    /// Waits until serving stops — when `accept` fails for good, or (emulation,
    /// `ccc_app.exit_after`) when the request budget is spent — and returns why.
    #[must_use]
    pub fn wait(self) -> Stop {
        self.stop
            .recv()
            .unwrap_or_else(|_| Stop::Failed(io::Error::other("the server thread panicked")))
    }
}

/// Refuses emulation-only command-line words unless the enclave's own document is QEMU's
/// unsigned one (`algorithm` from [`print_attestation_summary`]).
///
/// # Errors
/// [`StartError::EmulationSwitchesOnSignedDocument`] when `switches` is not empty and the
/// document is signed (or of an algorithm this template does not know).
pub fn check_emulation_switches(
    switches: &[String],
    algorithm: Algorithm,
) -> Result<(), StartError> {
    if switches.is_empty() || algorithm == Algorithm::QemuUnsigned {
        Ok(())
    } else {
        Err(StartError::EmulationSwitchesOnSignedDocument {
            switches: switches.to_vec(),
        })
    }
}

/// Prints the attestation summary of the enclave's own NSM document, checks the clock against
/// the document's time ([`clock::check`], setting the clock when it is off), and returns the
/// document's signature algorithm.
///
/// # Errors
/// [`StartError::Nsm`], [`StartError::Attestation`], [`StartError::Clock`].
pub fn print_attestation_summary(nsm: &Nsm, console: &Console) -> Result<Algorithm, StartError> {
    let document = nsm.attestation(None, None, None).map_err(StartError::Nsm)?;
    // The guest clock when the document arrived (`cargo xtask bench boot` reads it).
    let uptime = console::uptime();
    let parsed = attestation::parse(&document).map_err(StartError::Attestation)?;
    let doc = &parsed.document;
    let signature = match parsed.cose.algorithm {
        Algorithm::Es384 => "ES384 (signed by the NSM; KMS checks it against the AWS Nitro root)",
        Algorithm::QemuUnsigned => {
            "NONE: QEMU nitro-enclave emulation, the document is unsigned and proves nothing"
        }
        _ => "of an algorithm this template does not know",
    };
    console.line(format_args!(
        "attestation: {}, module {}, document {} bytes at {}, {uptime}, signature {signature}",
        nsm.backend_name(),
        doc.module_id,
        document.len(),
        doc.timestamp
    ));
    for index in SUMMARY_PCRS {
        if let Some(value) = doc.pcrs.get(index) {
            console.line(format_args!(
                "attestation: PCR{index} {}",
                hex::encode(value)
            ));
        }
    }
    let debug = doc
        .pcrs
        .get(0)
        .is_some_and(|pcr0| pcr0.iter().all(|&b| b == 0));
    console.line(format_args!(
        "attestation: debug mode: {}",
        if debug {
            "YES (PCR0 is all zeros: a debug-mode enclave, or a simulator without PCRs; no key \
             policy pinning a real image releases keys to it)"
        } else {
            "no"
        }
    ));
    let now = UnixMillis::now();
    match clock::check(now, doc.timestamp, ccc_sdk::clock::set_system_clock)
        .map_err(StartError::Clock)?
    {
        clock::Outcome::InStep { skew_millis } => console.line(format_args!(
            "clock: {now} (in step with the NSM document's time: {skew_millis} ms)"
        )),
        clock::Outcome::Set { was, now } => console.line(format_args!(
            "clock: SET from {was} to {now}, the NSM document's time (it was more than {} s \
             off; TLS to KMS and SigV4 need the right time)",
            clock::MAX_SKEW.as_secs()
        )),
    }
    Ok(parsed.cose.algorithm)
}

/// Runs the start-up sequence (see the crate docs) and serves on a thread of its own.
///
/// # Errors
/// [`StartError`]; a missing credentials service is not one (it is printed, and every KMS
/// call asks again).
pub fn start(settings: &Settings, nsm: Nsm, console: Console) -> Result<Started, StartError> {
    for (name, value, origin) in &settings.report {
        console.line(format_args!("setting {name}={value} ({origin})"));
    }
    let algorithm = print_attestation_summary(&nsm, &console)?;
    check_emulation_switches(&settings.emulation_switches, algorithm)?;
    if settings.emulation {
        console.line(format_args!(
            "EMULATION (ccc.emulation=1, QEMU-unsigned NSM): ccc_app.* switches from the kernel \
             command line are honoured; never set this in a release image"
        ));
    }
    if let TrustAnchors::CustomCaPem(_) = settings.kms_trust {
        console.line(format_args!(
            "KMS TLS trusts a CUSTOM CA instead of the Amazon roots (emulator or development)"
        ));
    }

    let credentials = Arc::new(Refreshing::new(FromParent::new(
        settings.credentials_endpoint.clone(),
    )));
    match credentials.credentials() {
        Ok(c) => console.line(format_args!(
            "credentials: {} from the parent at {}{}",
            c.access_key_id(),
            settings.credentials_endpoint,
            c.expiration()
                .map_or_else(String::new, |at| format!(", expire {at}"))
        )),
        Err(e) => console.line(format_args!(
            "credentials: none yet ({e}); every KMS call asks the parent again"
        )),
    }

    let config = ClientConfig::new(
        settings.region.clone(),
        settings.kms_endpoint.clone(),
        Transport::Tls(settings.kms_trust.clone()),
    )
    .with_host(settings.kms_host());
    console.line(format_args!(
        "kms: {} via {}, TLS as {}",
        settings.region,
        settings.kms_endpoint,
        settings.kms_host()
    ));
    let kms = KmsClient::new(config, credentials)
        .map_err(StartError::Kms)?
        .with_observer(console.kms_observer());
    let kms =
        AttestedKmsClient::new(kms, nsm, settings.key_arn.clone()).map_err(StartError::Kms)?;
    match &settings.key_arn {
        Some(key) => console.line(format_args!(
            "trusted key: {key} (every seal, unseal, data key and hmac uses it and no other)"
        )),
        None => console.line(format_args!(
            "trusted key: NONE (KEY_ARN in app.rs / CCC_APP_KEY_ARN unset): only attest and \
             random work"
        )),
    }
    let app = Arc::new(app::App::new(kms));

    let listener = server::bind(&settings.listen).map_err(|error| StartError::Listen {
        endpoint: settings.listen.to_string(),
        error,
    })?;
    let address = listener.describe();
    console.line(format_args!(
        "serving API v{} on {address} (operations: {})",
        protocol::VERSION,
        protocol::OPERATIONS
    ));
    let (stop, stopped) = channel();
    let exit_after = settings.exit_after.map(|limit| {
        console.line(format_args!(
            "EMULATION (ccc_app.exit_after={limit}): this enclave EXITS after answering \
             {limit} request(s)"
        ));
        Arc::new(server::ExitAfter::new(limit, stop.clone()))
    });
    let serving = Arc::clone(&app);
    let max = settings.max_connections;
    std::thread::Builder::new()
        .name("ccc-enclave-accept".into())
        .spawn(move || {
            let error = server::serve(listener.as_ref(), serving, console, max, exit_after);
            let _ = stop.send(Stop::Failed(error));
        })
        .map_err(|error| StartError::Listen {
            endpoint: address.clone(),
            error,
        })?;
    Ok(Started {
        address,
        app,
        stop: stopped,
    })
}
