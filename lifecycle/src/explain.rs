//! `explain`: what KMS would decide for a request, statement by statement, before KMS decides
//! it. The document is judged by the KMS emulator's own check (`TrustMode::verify`), the
//! decision by `ccc_policy`'s evaluator (the emulator's), and rendered by
//! `ccc_policy::explain` — no second copy of any of them.
//!
//! Exit status: 0 when KMS would allow the request, 1 when it would refuse it (denied by the
//! policy, or the document refused), 2 on bad input.

use crate::files::{self, Files};
use crate::kms::{self, KmsOptions};
use crate::{Context, Error};
use ccc_emulator::TrustMode;
use ccc_policy::Policy;
use ccc_policy::expectations::Expectations;
use ccc_policy::explain::{Attestation, Document, Explanation, Refusal, RefusalKind, Request};
use ccc_sdk::attestation::{self, AttestationError, CertificateErrorKind, Trust};
use ccc_sdk::crypto::{AwsLc, Crypto};
use ccc_sdk::kms::Operation;
use ccc_sdk::net::{Endpoint, Stream, Timeouts};
use ccc_sdk::time::UnixMillis;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// Length of the nonce `--enclave` binds into the fresh document.
pub const NONCE_LEN: usize = 16;

/// `explain`'s options.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("attestation").required(true)
    .args(["document", "enclave", "no_attestation"])))]
#[command(group(clap::ArgGroup::new("key_policy").required(true).args(["policy", "env"])))]
pub struct Args {
    /// The attestation document (raw CBOR, hex or base64).
    #[arg(long, value_name = "FILE")]
    pub document: Option<PathBuf>,
    /// Ask a running enclave template for a fresh document (`attest` with a random nonce),
    /// e.g. vsock://16:5000 (tcp://HOST:PORT works too).
    #[arg(long, value_name = "vsock://CID:PORT")]
    pub enclave: Option<String>,
    /// The request carries no attestation document (a call from outside an enclave).
    #[arg(long)]
    pub no_attestation: bool,
    /// The key policy (JSON).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Read the key policy of this environment's key with GetKeyPolicy (the usual credentials
    /// chain); the principal defaults to its enclave role and the key to its key.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// The calling principal: role, assumed-role session or user ARN.
    #[arg(long, value_name = "ARN", required_unless_present = "env")]
    pub principal: Option<String>,
    /// The operation, e.g. Decrypt or kms:Decrypt.
    #[arg(long, value_name = "OP")]
    pub operation: String,
    /// One pair of the encryption context (repeatable).
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// When the request is made: RFC 3339 or Unix milliseconds (default: now). Certificates
    /// must be valid then.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The key ARN the request names (default: the environment's key, else `*`).
    #[arg(long, value_name = "ARN")]
    pub key_arn: Option<String>,
    /// EMULATION: trust this PEM root as KMS trusts AWS Nitro Enclaves Root G1 (repeatable;
    /// the NSM simulator's root, or the emulator's stand-in). Real KMS trusts only AWS's.
    #[arg(long = "root", value_name = "PEM")]
    pub roots: Vec<PathBuf>,
    /// EMULATION, INSECURE: accept QEMU's unsigned documents as the KMS emulator can.
    #[arg(long)]
    pub insecure_qemu_unsigned: bool,
    /// Where KMS is (with --env).
    #[command(flatten)]
    pub kms: KmsOptions,
    /// Where the environments and releases are.
    #[command(flatten)]
    pub files: Files,
}

/// Runs `explain`; errors are printed on stderr (exit 2).
#[must_use]
pub fn run(context: &Context, args: &Args, out: &mut dyn Write) -> u8 {
    match execute(context, args, out) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            2
        }
    }
}

/// Runs `explain` and returns its exit status (0 allowed, 1 refused).
///
/// # Errors
/// Bad input (exit 2).
pub fn execute(context: &Context, args: &Args, out: &mut dyn Write) -> Result<u8, Error> {
    let paths = args.files.resolve(&context.root);
    // Published releases name the document's image; a checkout without them still explains.
    let expectations = if paths.expectations.exists() {
        Some(paths.expectations()?)
    } else {
        None
    };
    let (policy_text, environment) = match (&args.policy, &args.env) {
        (Some(file), _) => (files::read(file)?, None),
        (None, Some(name)) => {
            let (_, environment) = paths.environment(name)?;
            let client = kms::client(&args.kms, &environment.region, &context.signer)?;
            eprintln!(
                "explain: reading the policy of {} with GetKeyPolicy",
                environment.key_arn
            );
            (
                kms::key_policy(&client, &environment.key_arn)?,
                Some(environment),
            )
        }
        (None, None) => {
            return Err(Error::Input {
                option: "--policy",
                problem: "give the key policy with --policy FILE or --env NAME".into(),
            });
        }
    };
    let principal = match (&args.principal, &environment) {
        (Some(p), _) => p.clone(),
        (None, Some(e)) => session_of(&e.enclave_role_arn),
        (None, None) => {
            return Err(Error::Input {
                option: "--principal",
                problem: "give the calling principal's ARN".into(),
            });
        }
    };
    let resource = args
        .key_arn
        .clone()
        .or_else(|| environment.as_ref().map(|e| e.key_arn.clone()))
        .unwrap_or_else(|| "*".to_owned());
    let operation = operation(&args.operation)?;
    let encryption_context = encryption_context(&args.context)?;
    let at = match &args.at {
        Some(text) => UnixMillis::parse(text).map_err(|e| Error::Input {
            option: "--at",
            problem: format!("`{text}`: {e}; write RFC 3339 (2026-12-01T10:00:00Z) or Unix ms"),
        })?,
        None => UnixMillis::now(),
    };
    let trust = trust(&args.roots, args.insecure_qemu_unsigned)?;
    let document = if let Some(file) = &args.document {
        let bytes = std::fs::read(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        Some(
            attestation::decode_any(&bytes).map_err(|e| Error::Document {
                what: file.display().to_string(),
                problem: format!("{e}"),
            })?,
        )
    } else if let Some(endpoint) = &args.enclave {
        Some(fresh_document(endpoint)?)
    } else {
        None
    };
    let request = Request::new(principal, operation, resource, encryption_context);
    let explanation = explain(
        &policy_text,
        &request,
        document.as_deref(),
        &trust,
        at,
        expectations.as_ref(),
    )?;
    writeln!(out, "{explanation}").map_err(|source| Error::Write {
        path: PathBuf::from("(standard output)"),
        source,
    })?;
    Ok(u8::from(!explanation.is_allowed()))
}

/// Explains one request: `document` (raw CBOR, or `None` for no attestation) judged under
/// `trust` at `at` as the KMS emulator judges a `Recipient`, then the policy's decision.
///
/// # Errors
/// [`Error::Policy`] when `policy` is not a key policy.
pub fn explain(
    policy: &str,
    request: &Request,
    document: Option<&[u8]>,
    trust: &TrustMode,
    at: UnixMillis,
    expectations: Option<&Expectations>,
) -> Result<Explanation, Error> {
    let policy = Policy::parse(policy).map_err(|error| Error::Policy {
        what: "the key policy".to_owned(),
        error,
    })?;
    let attestation = match document {
        None => Attestation::Absent,
        Some(document) => judge(document, trust, at),
    };
    Ok(Explanation::new(
        &policy,
        request,
        attestation,
        expectations,
    ))
}

/// The document as KMS (the emulator) judges it.
#[must_use]
pub fn judge(document: &[u8], trust: &TrustMode, at: UnixMillis) -> Attestation {
    match trust.verify(document, at) {
        Ok(verified) => {
            let trust = match verified.trust {
                Trust::AwsNitroRoot => "chain to AWS Nitro Enclaves Root G1".to_owned(),
                Trust::CustomRoot => format!(
                    "chain to a root trusted by emulation ({}), NOT AWS's",
                    verified
                        .chain
                        .first()
                        .map_or("?", |c| c.subject_cn.as_str())
                ),
                _ => "NOTHING: an unsigned QEMU document, accepted by the insecure emulation"
                    .to_owned(),
            };
            Attestation::Verified(Document::new(
                verified.pcrs,
                verified.module_id,
                verified.timestamp.to_string(),
                trust,
            ))
        }
        Err(error) => {
            let pcrs = attestation::parse(document).ok().map(|p| {
                p.document
                    .pcrs
                    .iter()
                    .map(|(i, v)| (i, v.to_vec()))
                    .collect()
            });
            Attestation::Refused(Refusal::new(refusal_kind(&error), error.to_string(), pcrs))
        }
    }
}

fn refusal_kind(error: &AttestationError) -> RefusalKind {
    match error {
        AttestationError::Malformed(_) | AttestationError::TooLarge { .. } => {
            RefusalKind::Malformed
        }
        AttestationError::UnsignedDocument => RefusalKind::Unsigned,
        AttestationError::UntrustedRoot { .. } | AttestationError::NotQemuUnsigned(_) => {
            RefusalKind::Foreign
        }
        AttestationError::Certificate(e)
            if matches!(e.kind, CertificateErrorKind::Expired { .. }) =>
        {
            RefusalKind::Expired
        }
        AttestationError::Certificate(_) | AttestationError::DocumentSignature { .. } => {
            RefusalKind::Forged
        }
        _ => RefusalKind::Other,
    }
}

/// The trust explain applies: AWS's root, or (emulation) the given roots and/or QEMU's
/// unsigned documents.
///
/// # Errors
/// [`Error::Input`] for an unreadable or unusable root.
pub fn trust(roots: &[PathBuf], insecure_qemu_unsigned: bool) -> Result<TrustMode, Error> {
    let mut members = Vec::new();
    for path in roots {
        let pem = files::read(path)?;
        members.push(
            TrustMode::development_root_pem(&pem).map_err(|e| Error::Input {
                option: "--root",
                problem: format!("{}: {e}", path.display()),
            })?,
        );
    }
    if insecure_qemu_unsigned {
        eprintln!(
            "explain: WARNING: --insecure-qemu-unsigned: UNSIGNED documents are accepted, as \
             only the KMS emulator's insecure mode does; real KMS never does"
        );
        members.push(TrustMode::InsecureQemuUnsigned);
    }
    if !members.is_empty() {
        eprintln!(
            "explain: EMULATION: trusting {} root(s) given on the command line instead of AWS \
             Nitro Enclaves Root G1",
            members.len()
        );
    }
    Ok(match <[TrustMode; 1]>::try_from(members) {
        Ok([one]) => one,
        Err(members) if members.is_empty() => TrustMode::AwsNitro,
        Err(members) => TrustMode::AnyOf(members),
    })
}

/// `arn:aws:sts::<account>:assumed-role/<name>/ccc-explain` for a role ARN (the session ARN
/// KMS sees when the role's credentials sign; a role path is not part of it).
#[must_use]
pub fn session_of(role_arn: &str) -> String {
    let mut parts = role_arn.splitn(6, ':');
    let (Some(_), Some(partition), Some(_), Some(_), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return role_arn.to_owned();
    };
    let name = resource.rsplit('/').next().unwrap_or(resource);
    format!("arn:{partition}:sts::{account}:assumed-role/{name}/ccc-explain")
}

fn operation(text: &str) -> Result<String, Error> {
    let name = text.strip_prefix("kms:").unwrap_or(text);
    let known: Vec<&str> = Operation::ALL.iter().map(|op| op.name()).collect();
    let extra = [
        "ReEncryptFrom",
        "ReEncryptTo",
        "CreateGrant",
        "RevokeGrant",
        "RetireGrant",
        "ScheduleKeyDeletion",
        "Sign",
        "Verify",
    ];
    if known.contains(&name) || extra.contains(&name) {
        Ok(format!("kms:{name}"))
    } else {
        Err(Error::Input {
            option: "--operation",
            problem: format!(
                "`{text}` is not a KMS operation this tool knows; one of {}, {}",
                known.join(", "),
                extra.join(", ")
            ),
        })
    }
}

fn encryption_context(pairs: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (key, value) = pair.split_once('=').ok_or_else(|| Error::Input {
            option: "--context",
            problem: format!("`{pair}`: write KEY=VALUE"),
        })?;
        if key.is_empty() || out.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(Error::Input {
                option: "--context",
                problem: format!("`{pair}`: an empty or repeated key"),
            });
        }
    }
    Ok(out)
}

/// A fresh document from a running enclave template: `attest` with a random nonce, checked to
/// be bound into the answer (a replayed document would not have it).
///
/// # Errors
/// [`Error::Input`] for a malformed endpoint, [`Error::Document`] when the enclave cannot be
/// reached, refuses, or answers with a document without the nonce.
pub fn fresh_document(endpoint: &str) -> Result<Vec<u8>, Error> {
    use enclave::protocol::{Client, Request as ApiRequest, Response as ApiResponse};
    let at: Endpoint = endpoint.parse().map_err(|e| Error::Input {
        option: "--enclave",
        problem: format!("{e}"),
    })?;
    let unreachable = |problem: String| Error::Document {
        what: format!("from the enclave at {endpoint}"),
        problem,
    };
    let mut nonce = [0u8; NONCE_LEN];
    AwsLc
        .fill_random(&mut nonce)
        .map_err(|e| unreachable(format!("no randomness for the nonce: {e}")))?;
    let stream = Stream::connect(&at, &Timeouts::default()).map_err(|e| {
        unreachable(format!(
            "{e}; is the enclave running and serving API v1 there (its console prints \
             `serving API v1 on ...`)?"
        ))
    })?;
    let answer = Client::new(stream)
        .call(&ApiRequest::Attest {
            nonce: Some(nonce.to_vec()),
            user_data: None,
        })
        .map_err(|e| unreachable(format!("the attest call failed: {e}")))?;
    let ApiResponse::Attest { document, .. } = answer else {
        return Err(unreachable(
            "the enclave answered something else than attest".into(),
        ));
    };
    let parsed = attestation::parse(&document)
        .map_err(|e| unreachable(format!("the enclave's answer is not a document: {e}")))?;
    if parsed.document.nonce != Some(&nonce[..]) {
        return Err(unreachable(
            "the document does not carry the nonce just sent: it is not fresh (a replay?)".into(),
        ));
    }
    eprintln!("explain: fresh document from {endpoint} (nonce bound)");
    Ok(document)
}
