//! `ccc-template-parent client`: calls one operation of the enclave's API and prints the
//! answer as one JSON object on stdout (binary members in base64, as on the wire). An error
//! frame is printed the same way (`{"type":"error","code":...,"step":...,"message":...}`)
//! and the exit status is 2; a connection failure exits 1 with a message on stderr.

use crate::net::Target;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccc_sdk::attestation::{self, Algorithm, AttestationError, Policy, RootOfTrust, VerifyOptions};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::net::Timeouts;
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::time::UnixMillis;
use enclave::protocol::{Client, Failure, ProtocolError, Request, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why `client` could not call the enclave or use its answer (an error frame from the
/// enclave is not one: it is [`Outcome::Refused`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// A command-line value is missing or unusable.
    Argument {
        /// The option (`--timeout`, `--expect-pcr 0=..`).
        argument: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A file could not be read or written.
    File {
        /// The file.
        path: PathBuf,
        /// `read` or `write`.
        action: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// The enclave could not be reached.
    Connect {
        /// Where it was looked for.
        target: String,
        /// The failure.
        error: io::Error,
    },
    /// The call broke (I/O or framing).
    Call {
        /// The enclave called.
        target: String,
        /// The failure.
        error: ProtocolError,
    },
    /// The attestation document does not parse, the root or an expected PCR is unusable, or
    /// the document did not verify.
    Attestation {
        /// What was being done.
        step: String,
        /// The SDK's error (it names the failed check).
        error: AttestationError,
    },
    /// The answer could not be written as JSON.
    Encode(serde_json::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Argument { argument, problem } => write!(f, "{argument}: {problem}"),
            Self::File {
                path,
                action,
                error,
            } => write!(f, "cannot {action} {}: {error}", path.display()),
            Self::Connect { target, error } => write!(
                f,
                "cannot reach the enclave at {target}: {error} (is it running, and is \
                 --enclave its API address?)"
            ),
            Self::Call { target, error } => write!(f, "calling {target}: {error}"),
            Self::Attestation { step, error } => write!(f, "{step}: {error}"),
            Self::Encode(error) => write!(f, "encoding the answer as JSON: {error}"),
        }
    }
}

impl core::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::File { error, .. } | Self::Connect { error, .. } => Some(error),
            Self::Call { error, .. } => Some(error),
            Self::Attestation { error, .. } => Some(error),
            Self::Encode(error) => Some(error),
            Self::Argument { .. } => None,
        }
    }
}

fn argument(argument: impl Into<String>, problem: impl fmt::Display) -> ClientError {
    ClientError::Argument {
        argument: argument.into(),
        problem: problem.to_string(),
    }
}

fn attestation_step(step: impl Into<String>) -> impl FnOnce(AttestationError) -> ClientError {
    let step = step.into();
    move |error| ClientError::Attestation { step, error }
}

/// Options of `client`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The enclave's API: vsock://CID:PORT (Nitro; the enclave's CID from `nitro-cli
    /// describe-enclaves`), vhost-uds://<uds-path>:PORT (QEMU emulation), tcp://HOST:PORT or
    /// unix:///PATH (the enclave binary on a laptop).
    #[arg(long, value_name = "TARGET")]
    pub enclave: Target,
    /// Seconds to wait for the connection and for the answer (KMS retries take a while).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// The operation.
    #[command(subcommand)]
    pub op: Op,
}

/// An encryption-context pair, `key=value`.
fn context_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}`: expected KEY=VALUE"))
}

/// Bytes given on the command line (a newtype: clap reads `Option<Vec<u8>>` as a list).
#[derive(Debug, Clone)]
pub struct Bytes(pub Vec<u8>);

fn hex_bytes(text: &str) -> Result<Bytes, String> {
    hex::decode(text)
        .map(Bytes)
        .map_err(|e| format!("not hex: {e}"))
}

fn b64_bytes(text: &str) -> Result<Bytes, String> {
    STANDARD
        .decode(text.trim())
        .map(Bytes)
        .map_err(|e| format!("not base64: {e}"))
}

/// One operation.
#[derive(Debug, clap::Subcommand)]
pub enum Op {
    /// An attestation document (public_key = the enclave's RSA key); printed with its
    /// summary, and verified when --root is given, which also needs the image's PCRs
    /// (--expect-pcr or --release): a signature alone says nothing about which image runs.
    Attest {
        /// Nonce to bind, hex (at most 1024 bytes).
        #[arg(long, value_parser = hex_bytes)]
        nonce: Option<Bytes>,
        /// User data to bind, hex (at most 1024 bytes).
        #[arg(long, value_parser = hex_bytes)]
        user_data: Option<Bytes>,
        /// Verify the document: `aws` (the AWS Nitro root), a PEM file (the NSM simulator's
        /// development root), or `insecure-qemu-unsigned` (QEMU's unsigned documents, which
        /// prove nothing). Needs --expect-pcr or --release.
        #[arg(long, value_name = "ROOT")]
        root: Option<String>,
        /// With --root: require PCR N to be HEX (repeatable).
        #[arg(long = "expect-pcr", value_name = "N=HEX", requires = "root")]
        expect_pcr: Vec<String>,
        /// With --root: require PCR0, PCR1 and PCR2 of release V, read from
        /// `<release-dir>/V/pcr-measurements-V.json` (what `cargo xtask release` publishes).
        #[arg(long, value_name = "V", requires = "root")]
        release: Option<String>,
        /// Where --release looks for `V/pcr-measurements-V.json`.
        #[arg(
            long,
            value_name = "DIR",
            default_value = "release",
            requires = "release"
        )]
        release_dir: PathBuf,
    },
    /// A data key under the enclave's trusted key: prints its KMS ciphertext (the plaintext
    /// stays in the enclave).
    GenerateDataKey {
        /// Encryption context, KEY=VALUE (repeatable).
        #[arg(long = "context", value_parser = context_pair)]
        context: Vec<(String, String)>,
    },
    /// Seals data; prints the sealed blob.
    Seal {
        /// The data, as text.
        #[arg(long, conflicts_with = "data_file")]
        data: Option<String>,
        /// The data, from a file.
        #[arg(long, value_name = "PATH")]
        data_file: Option<PathBuf>,
        /// Encryption context, KEY=VALUE (repeatable; unseal needs the same).
        #[arg(long = "context", value_parser = context_pair)]
        context: Vec<(String, String)>,
    },
    /// Unseals a sealed blob; prints the data (base64), or writes it to --out.
    Unseal {
        /// The sealed blob, base64.
        #[arg(long, value_parser = b64_bytes, conflicts_with = "sealed_file")]
        sealed: Option<Bytes>,
        /// The sealed blob, raw, from a file.
        #[arg(long, value_name = "PATH")]
        sealed_file: Option<PathBuf>,
        /// Encryption context given to seal, KEY=VALUE (repeatable).
        #[arg(long = "context", value_parser = context_pair)]
        context: Vec<(String, String)>,
        /// Write the data here instead of printing it.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// N random bytes (1..=1024) from KMS GenerateRandom.
    Random {
        /// How many bytes.
        n: u32,
    },
    /// HMAC-SHA256 of a message under the secret inside a KMS ciphertext, computed inside
    /// the enclave (the secret never leaves).
    Hmac {
        /// The KMS ciphertext, base64 (from generate-data-key).
        #[arg(long, value_parser = b64_bytes, conflicts_with = "blob_file")]
        blob: Option<Bytes>,
        /// The KMS ciphertext, raw, from a file.
        #[arg(long, value_name = "PATH")]
        blob_file: Option<PathBuf>,
        /// The message, as text.
        #[arg(long, conflicts_with = "message_hex")]
        message: Option<String>,
        /// The message, hex.
        #[arg(long, value_parser = hex_bytes)]
        message_hex: Option<Bytes>,
        /// Encryption context of the ciphertext, KEY=VALUE (repeatable).
        #[arg(long = "context", value_parser = context_pair)]
        context: Vec<(String, String)>,
    },
}

/// What `client` ended with.
#[derive(Debug)]
pub enum Outcome {
    /// The answer, to print (exit 0).
    Answer(Value),
    /// The enclave's error frame, to print (exit 2).
    Refused(Value),
}

fn one_of(
    inline: Option<Vec<u8>>,
    file: Option<&PathBuf>,
    what: &str,
) -> Result<Vec<u8>, ClientError> {
    match (inline, file) {
        (Some(bytes), _) => Ok(bytes),
        (None, Some(path)) => std::fs::read(path).map_err(|error| ClientError::File {
            path: path.clone(),
            action: "read",
            error,
        }),
        (None, None) => Err(argument(what, "missing (see --help)")),
    }
}

fn context(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

/// The request an operation sends (and, for attest, how to check the answer).
fn request(op: &Op) -> Result<Request, ClientError> {
    Ok(match op {
        Op::Attest {
            nonce, user_data, ..
        } => Request::Attest {
            nonce: nonce.as_ref().map(|b| b.0.clone()),
            user_data: user_data.as_ref().map(|b| b.0.clone()),
        },
        Op::GenerateDataKey { context: c } => Request::GenerateDataKey {
            context: context(c.clone()),
        },
        Op::Seal {
            data,
            data_file,
            context: c,
        } => Request::Seal {
            data: SecretBytes::new(one_of(
                data.as_ref().map(|d| d.as_bytes().to_vec()),
                data_file.as_ref(),
                "data (--data or --data-file)",
            )?),
            context: context(c.clone()),
        },
        Op::Unseal {
            sealed,
            sealed_file,
            context: c,
            ..
        } => Request::Unseal {
            sealed: one_of(
                sealed.as_ref().map(|b| b.0.clone()),
                sealed_file.as_ref(),
                "sealed blob (--sealed or --sealed-file)",
            )?,
            context: context(c.clone()),
        },
        Op::Random { n } => Request::Random { n: *n },
        Op::Hmac {
            blob,
            blob_file,
            message,
            message_hex,
            context: c,
        } => Request::Hmac {
            ciphertext_blob: one_of(
                blob.as_ref().map(|b| b.0.clone()),
                blob_file.as_ref(),
                "ciphertext (--blob or --blob-file)",
            )?,
            message: match (message, message_hex) {
                (Some(text), _) => text.as_bytes().to_vec(),
                (None, Some(bytes)) => bytes.0.clone(),
                (None, None) => {
                    return Err(argument(
                        "message (--message or --message-hex)",
                        "missing (see --help)",
                    ));
                }
            },
            context: context(c.clone()),
        },
    })
}

/// The PCRs a verification requires: `--expect-pcr N=HEX` pins and, with `--release V`, PCR0,
/// PCR1 and PCR2 of that release's `pcr-measurements-V.json`.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `--expect-pcr` values, `N=HEX`.
    pub pins: &'a [String],
    /// `--release V` and the directory holding `V/`.
    pub release: Option<(&'a str, &'a std::path::Path)>,
}

/// PCR0, PCR1 and PCR2 of release `version`, from `<dir>/<version>/pcr-measurements-<version>.json`
/// (`measurements.PCR0` ...).
///
/// # Errors
/// [`ClientError::File`] if the file cannot be read, [`ClientError::Argument`] if it is not a
/// PCR measurements file or a PCR is missing or not 96 hex digits.
pub fn release_pcrs(
    dir: &std::path::Path,
    version: &str,
) -> Result<Vec<(u8, String)>, ClientError> {
    let option = format!("--release {version}");
    if version.is_empty() || version.contains(['/', '\\']) || version.starts_with('.') {
        return Err(argument(&option, "not a release version (like 0.2.0)"));
    }
    let path = dir
        .join(version)
        .join(format!("pcr-measurements-{version}.json"));
    let text = std::fs::read_to_string(&path).map_err(|error| ClientError::File {
        path: path.clone(),
        action: "read (--release)",
        error,
    })?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| argument(&option, format!("{} is not JSON: {e}", path.display())))?;
    (0u8..3)
        .map(|index| {
            let name = format!("PCR{index}");
            json.get("measurements")
                .and_then(|m| m.get(&name))
                .and_then(Value::as_str)
                .filter(|hex| hex.len() == 96 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|hex| (index, hex.to_ascii_lowercase()))
                .ok_or_else(|| {
                    argument(
                        &option,
                        format!(
                            "{} has no measurements.{name} of 96 hex digits (is it a file \
                             `cargo xtask release` wrote?)",
                            path.display()
                        ),
                    )
                })
        })
        .collect()
}

/// Every PCR the verification requires, as `(index, lower-case hex)`, sorted by index.
///
/// # Errors
/// [`ClientError::Argument`] for a malformed `--expect-pcr`, a release that cannot be read,
/// two different values for one PCR, or no PCR at all: a document is never reported verified
/// without one, because the signature alone only proves that *some* enclave made it.
pub fn expected_pcrs(expected: &Expected<'_>) -> Result<Vec<(u8, String)>, ClientError> {
    let mut pcrs: BTreeMap<u8, (String, String)> = BTreeMap::new();
    let mut add = |index: u8, value: String, from: String| match pcrs.get(&index) {
        Some((other, other_from)) if *other != value => Err(argument(
            from.clone(),
            format!("PCR{index} is {value} here and {other} in {other_from}"),
        )),
        _ => {
            pcrs.insert(index, (value, from));
            Ok(())
        }
    };
    if let Some((version, dir)) = expected.release {
        for (index, value) in release_pcrs(dir, version)? {
            add(index, value, format!("--release {version}"))?;
        }
    }
    for pin in expected.pins {
        let option = format!("--expect-pcr {pin}");
        let (index, value) = pin
            .split_once('=')
            .ok_or_else(|| argument(&option, "expected N=HEX"))?;
        let index: u8 = index
            .parse()
            .map_err(|_| argument(&option, "N is not a PCR index"))?;
        add(index, value.to_ascii_lowercase(), option)?;
    }
    if pcrs.is_empty() {
        return Err(argument(
            "--root",
            "verifies the signature and the chain, but not which image signed: give the \
             image's PCRs with --expect-pcr N=HEX (repeatable) or --release V (reads \
             release/V/pcr-measurements-V.json); without --root the document is printed \
             unverified",
        ));
    }
    Ok(pcrs
        .into_iter()
        .map(|(index, (value, _))| (index, value))
        .collect())
}

/// The attestation summary (and verification) printed with an `attest` answer. The
/// `verified` member is filled only after the document verified *and* every expected PCR
/// (at least one, see [`expected_pcrs`]) matched.
///
/// # Errors
/// The document does not parse, the root or an expected PCR is unusable, no PCR is expected,
/// or the document does not verify.
pub fn attest_summary(
    document: &[u8],
    nonce: Option<&[u8]>,
    user_data: Option<&[u8]>,
    root: Option<&str>,
    expected: &Expected<'_>,
) -> Result<Value, ClientError> {
    let parsed =
        attestation::parse(document).map_err(attestation_step("the document does not parse"))?;
    let doc = &parsed.document;
    let pcrs: BTreeMap<String, String> = doc
        .pcrs
        .iter()
        .map(|(i, v)| (i.to_string(), hex::encode(v)))
        .collect();
    let summary = |verified: Value| {
        json!({
            "module_id": doc.module_id,
            "timestamp": doc.timestamp.to_string(),
            "signature": match parsed.cose.algorithm {
                Algorithm::Es384 => "ES384",
                Algorithm::QemuUnsigned => "none (QEMU emulation: unsigned)",
                _ => "unknown",
            },
            "pcrs": pcrs,
            "verified": verified,
        })
    };
    let Some(root) = root else {
        return Ok(summary(Value::Null));
    };
    let expected_pcrs = expected_pcrs(expected)?;
    let root = match root {
        "aws" => RootOfTrust::AwsNitro,
        "insecure-qemu-unsigned" => RootOfTrust::InsecureQemuUnsigned,
        path => {
            let pem = std::fs::read_to_string(path).map_err(|error| ClientError::File {
                path: PathBuf::from(path),
                action: "read the --root PEM",
                error,
            })?;
            RootOfTrust::custom_pem(&pem).map_err(attestation_step(format!("--root {path}")))?
        }
    };
    let mut policy = Policy::new();
    if let Some(n) = nonce {
        policy = policy.expect_nonce(n);
    }
    if let Some(u) = user_data {
        policy = policy.require_user_data(u);
    }
    for (index, value) in &expected_pcrs {
        policy = policy
            .expect_pcr_hex(*index, value)
            .map_err(attestation_step(format!("--expect-pcr {index}={value}")))?;
    }
    if matches!(root, RootOfTrust::InsecureQemuUnsigned) {
        // QEMU's enclaves are not in debug mode, but nothing in an unsigned document is
        // evidence anyway; only the shape is checked.
        policy = policy.allow_debug_mode();
    }
    let verified = attestation::verify(
        document,
        &VerifyOptions::new(UnixMillis::now())
            .with_root(root)
            .with_policy(policy),
        &AwsLc,
    )
    .map_err(attestation_step("the attestation document did not verify"))?;
    Ok(summary(json!({
        "trust": format!("{:?}", verified.trust),
        "chain": verified.chain.iter().map(|c| c.subject_cn.clone()).collect::<Vec<_>>(),
        "pcrs_checked": expected_pcrs
            .iter()
            .map(|(index, _)| index.to_string())
            .collect::<Vec<_>>(),
    })))
}

/// Runs `client`.
///
/// # Errors
/// The connection failed, the answer was malformed, an input could not be read, or the
/// attestation document did not verify.
pub fn run(args: &Args) -> Result<Outcome, ClientError> {
    let timeout =
        Duration::try_from_secs_f64(args.timeout).map_err(|e| argument("--timeout", e))?;
    let request = request(&args.op)?;
    request
        .check()
        .map_err(|f| argument(request.op(), f.message))?;
    if let Op::Attest {
        root: Some(_),
        expect_pcr,
        release,
        release_dir,
        ..
    } = &args.op
    {
        // Before the call: a verification that could not name its PCRs never starts.
        expected_pcrs(&Expected {
            pins: expect_pcr,
            release: release.as_deref().map(|v| (v, release_dir.as_path())),
        })?;
    }
    let timeouts = Timeouts {
        connect: timeout,
        io: timeout,
    };
    let stream = args
        .enclave
        .connect(&timeouts)
        .map_err(|error| ClientError::Connect {
            target: args.enclave.to_string(),
            error,
        })?;
    let mut client = Client::new(stream);
    let response = match client.call(&request) {
        Ok(response) => response,
        Err(ProtocolError::Refused(failure)) => {
            return Ok(Outcome::Refused(failure_json(&failure)));
        }
        Err(error) => {
            return Err(ClientError::Call {
                target: args.enclave.to_string(),
                error,
            });
        }
    };
    let mut value = serde_json::to_value(&response).map_err(ClientError::Encode)?;
    let mut set = |member: &str, member_value: Value| {
        if let Some(object) = value.as_object_mut() {
            object.insert(member.to_owned(), member_value);
        }
    };
    match (&args.op, &response) {
        (
            Op::Attest {
                nonce,
                user_data,
                root,
                expect_pcr,
                release,
                release_dir,
            },
            Response::Attest { document, .. },
        ) => {
            let expected = Expected {
                pins: expect_pcr,
                release: release.as_deref().map(|v| (v, release_dir.as_path())),
            };
            set(
                "summary",
                attest_summary(
                    document,
                    nonce.as_ref().map(|b| b.0.as_slice()),
                    user_data.as_ref().map(|b| b.0.as_slice()),
                    root.as_deref(),
                    &expected,
                )?,
            );
        }
        (
            Op::Unseal {
                out: Some(path), ..
            },
            Response::Unseal { data },
        ) => {
            std::fs::write(path, data.expose()).map_err(|error| ClientError::File {
                path: path.clone(),
                action: "write",
                error,
            })?;
            return Ok(Outcome::Answer(
                json!({"type": "unseal", "bytes": data.len(), "out": path}),
            ));
        }
        (Op::Hmac { .. }, Response::Hmac { mac }) => {
            set("mac_hex", Value::String(hex::encode(mac)));
        }
        _ => {}
    }
    Ok(Outcome::Answer(value))
}

fn failure_json(failure: &Failure) -> Value {
    json!({
        "type": "error",
        "code": failure.code.as_str(),
        "step": failure.step,
        "message": failure.message,
    })
}
