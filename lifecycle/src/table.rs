//! The cross-environment table: one release's environments, each policy enforced by a KMS
//! emulator, against five documents — the release's image, the previous version, a version the
//! environment does not allow, a debug-mode document and a simulator-signed one — and `explain`
//! asked the same question each time.
//!
//! # Trust, honestly
//! Real KMS trusts one root: AWS Nitro Enclaves Root G1. No local document can chain to it, so
//! here a development root of the NSM simulator **stands in for AWS's**: the documents of the
//! release, of the other versions and the debug-mode one are issued under it (one hierarchy,
//! many images: `Simulator::sibling`), and staging and production are emulated by a KMS
//! emulator that trusts that one root only. A *second*, separate simulator root is the
//! **development simulator root**: what a developer's laptop signs with. Only a development
//! environment that accepts the simulator trusts it too (its emulator trusts both roots); a
//! "simulator-signed" document is one of that root, which staging and production must refuse —
//! as real KMS refuses anything that is not AWS's. Every transcript names both roots.
//!
//! Each row holds the emulator's answer (the secret released and opened with the enclave's
//! RSA key, `AccessDeniedException`, or `ValidationException` for a refused document), what
//! `explain` predicts, whether they agree (same verdict; for a denial the same message — the
//! emulator's is the evaluator's `Evaluation::message`, cut by the SDK client at
//! `MAX_ERROR_MESSAGE_CHARS`; for a refusal the same verifier error), and what the environment
//! file says should happen.

use crate::Error;
use crate::explain::{explain, session_of};
use ccc_emulator::{Clock as EmulatorClock, Config, Credential, Emulator, Running, TrustMode};
use ccc_policy::Decision;
use ccc_policy::environment::{Environment, Kind, Pin};
use ccc_policy::expectations::{Expectations, version_key};
use ccc_policy::explain::{Explanation, RefusalKind, Verdict};
use ccc_sdk::clock::ManualClock;
use ccc_sdk::credentials::{CredentialsProvider, StaticCredentials};
use ccc_sdk::crypto::{AwsLc, AwsLcRsaKey, Crypto, RsaDecryptionKey};
use ccc_sdk::kms::client::{ClientConfig, ClientError, KmsClient, Transport};
use ccc_sdk::kms::{DecryptRequest, EncryptRequest, ErrorKind, KmsError, Recipient};
use ccc_sdk::net::Endpoint;
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::time::UnixMillis;
use ccc_sdk::tls::TrustAnchors;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Length of the secret sealed for each environment.
const SECRET_LEN: usize = 32;

/// The five documents of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CaseKind {
    /// The release's image, signed under the stand-in AWS root.
    ReleaseImage,
    /// The version published before it.
    PreviousVersion,
    /// A published version the environment does not allow.
    RemovedVersion,
    /// A debug-mode enclave (all-zero PCR0/1/2/8) under the stand-in AWS root.
    DebugMode,
    /// The release's image, signed by the development simulator root.
    SimulatorSigned,
}

impl CaseKind {
    /// Every case, in table order.
    pub const ALL: [Self; 5] = [
        Self::ReleaseImage,
        Self::PreviousVersion,
        Self::RemovedVersion,
        Self::DebugMode,
        Self::SimulatorSigned,
    ];

    /// The row's name.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::ReleaseImage => "release image",
            Self::PreviousVersion => "previous version",
            Self::RemovedVersion => "version not allowed",
            Self::DebugMode => "debug-mode document",
            Self::SimulatorSigned => "simulator-signed document",
        }
    }
}

/// What happened (or should happen) to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The secret was released (and opened by the enclave's key).
    Allowed,
    /// `AccessDeniedException`.
    Denied {
        /// The denying statements and the conditions that made each apply (`Sid (key)`), or
        /// `implicit` when no Allow applied.
        reason: String,
        /// The message.
        message: String,
    },
    /// The document was refused before the policy was read.
    Refused {
        /// Why, in a word (`foreign`, `expired`, ...).
        reason: String,
        /// The message.
        message: String,
    },
}

impl Outcome {
    /// `allowed`, `denied` or `refused`.
    #[must_use]
    pub fn word(&self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied { .. } => "denied",
            Self::Refused { .. } => "refused",
        }
    }

    /// `allowed`, `denied: <reason>` or `refused: <reason>`.
    #[must_use]
    pub fn summary(&self) -> String {
        match self {
            Self::Allowed => "allowed".to_owned(),
            Self::Denied { reason, .. } => format!("denied: {reason}"),
            Self::Refused { reason, .. } => format!("refused: {reason}"),
        }
    }
}

/// One row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Row {
    /// Which case.
    pub case: CaseKind,
    /// The release the document measures as, if any.
    pub version: Option<String>,
    /// What the environment file says should happen: allowed, denied or refused.
    pub expected: &'static str,
    /// What the KMS emulator did.
    pub emulator: Outcome,
    /// What `explain` predicted.
    pub explain: Outcome,
    /// Whether `explain` agrees with the emulator (verdict, and message or verifier error).
    pub agrees: bool,
}

impl Row {
    /// The emulator did what the environment file says, and `explain` agrees.
    #[must_use]
    pub fn passes(&self) -> bool {
        self.agrees && self.emulator.word() == self.expected
    }
}

/// One environment's table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Table {
    /// The environment.
    pub environment: String,
    /// What it is and allows, in a line.
    pub description: String,
    /// Which roots the emulator trusted, in a line.
    pub trust: String,
    /// The rows, in [`CaseKind::ALL`] order (cases without a version to show are left out).
    pub rows: Vec<Row>,
    /// Cases left out, and why.
    pub skipped: Vec<String>,
}

impl Table {
    /// Every row passes.
    #[must_use]
    pub fn passes(&self) -> bool {
        self.rows.iter().all(Row::passes)
    }

    /// The row of `case`.
    #[must_use]
    pub fn row(&self, case: CaseKind) -> Option<&Row> {
        self.rows.iter().find(|r| r.case == case)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "environment {}: {}", self.environment, self.description)?;
        writeln!(f, "trust: {}", self.trust)?;
        writeln!(
            f,
            "  {:<26} {:<8} {:<9} {:<9} KMS emulator",
            "case", "version", "expected", "explain"
        )?;
        for row in &self.rows {
            writeln!(
                f,
                "  {:<26} {:<8} {:<9} {:<9} {}{}",
                row.case.label(),
                row.version.as_deref().unwrap_or("-"),
                row.expected,
                if row.agrees { "agrees" } else { "DISAGREES" },
                row.emulator.summary(),
                if row.passes() { "" } else { "   <-- FAIL" }
            )?;
        }
        for skipped in &self.skipped {
            writeln!(f, "  (skipped: {skipped})")?;
        }
        let agree = self.rows.iter().filter(|r| r.agrees).count();
        write!(
            f,
            "verdict: {} ({} case(s); explain agrees with the emulator on {agree})",
            if self.passes() { "PASS" } else { "FAIL" },
            self.rows.len()
        )
    }
}

/// The documents' issuers and the enclave's RSA key, shared by every environment of a run.
pub struct Fixture {
    stand_in: Simulator,
    development: Simulator,
    key: AwsLcRsaKey,
    at: UnixMillis,
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

fn emulation(what: &str, e: impl fmt::Display) -> Error {
    Error::Emulation(format!("{what}: {e}"))
}

impl Fixture {
    /// Two simulator roots (the stand-in for AWS's, and the development one) and the
    /// enclave's RSA key; every document and the emulators' clocks stand at `at`.
    ///
    /// # Errors
    /// [`Error::Emulation`] when a simulator or the key cannot be made.
    pub fn new(at: UnixMillis) -> Result<Self, Error> {
        let config = |module_id: &str| {
            let mut config = SimulatorConfig::default().with_fixed_time(at);
            module_id.clone_into(&mut config.module_id);
            config
        };
        eprintln!("{}", ccc_sdk::nsm::simulator::ANNOUNCEMENT);
        let stand_in = Simulator::new(config("i-0ccc0table0000000-enc0standin0aws"))
            .map_err(|e| emulation("the stand-in AWS root", e))?;
        let development = Simulator::new(config("i-0ccc0table0000000-enc0developer0sim"))
            .map_err(|e| emulation("the development simulator root", e))?;
        Ok(Self {
            stand_in,
            development,
            key: AwsLcRsaKey::generate().map_err(|e| emulation("the enclave's RSA key", e))?,
            at,
        })
    }

    /// The time documents and emulators stand at.
    #[must_use]
    pub fn at(&self) -> UnixMillis {
        self.at
    }

    /// The stand-in for AWS's root (PEM).
    #[must_use]
    pub fn stand_in_root_pem(&self) -> &str {
        self.stand_in.root_pem()
    }

    /// The development simulator root (PEM).
    #[must_use]
    pub fn development_root_pem(&self) -> &str {
        self.development.root_pem()
    }

    /// The roots in a sentence, by the SHA-256 of their DER (as the verifier names roots).
    #[must_use]
    pub fn roots(&self) -> String {
        let fingerprint = |der: &[u8]| hex::encode(AwsLc.sha256(&[der]));
        format!(
            "stand-in for AWS Nitro Enclaves Root G1: simulator root SHA-256 {}; development \
             simulator root: SHA-256 {} (both \"CCC development - NOT AWS\", made for this run)",
            fingerprint(self.stand_in.root_der()),
            fingerprint(self.development.root_der())
        )
    }

    fn trust_of(&self, root: &Simulator) -> Result<TrustMode, Error> {
        TrustMode::development_root_pem(root.root_pem()).map_err(|e| emulation("a root", e))
    }

    /// What the KMS emulator of `environment` trusts: the stand-in only, or (a development
    /// environment that accepts the simulator, or QEMU) more.
    fn trust(&self, environment: &Environment) -> Result<(TrustMode, String), Error> {
        let stand_in = self.trust_of(&self.stand_in)?;
        let mut members = vec![stand_in];
        let mut words = vec![
            "the stand-in root (a simulator root playing AWS Nitro Enclaves Root G1)".to_owned(),
        ];
        if environment.kind == Kind::Development && environment.accept.simulator {
            members.push(self.trust_of(&self.development)?);
            words.push("the development simulator root".to_owned());
        }
        if environment.kind == Kind::Development && environment.accept.qemu_unsigned {
            members.push(TrustMode::InsecureQemuUnsigned);
            words.push("INSECURE unsigned QEMU documents".to_owned());
        }
        let trust = match <[TrustMode; 1]>::try_from(members) {
            Ok([one]) => one,
            Err(members) => TrustMode::AnyOf(members),
        };
        Ok((
            trust,
            format!("the KMS emulator trusts {}", words.join(", ")),
        ))
    }

    /// A document of an enclave measuring `pcrs`, under `root`, binding the enclave's key.
    fn document(&self, root: &Simulator, pcrs: &BTreeMap<u16, [u8; 48]>) -> Result<Vec<u8>, Error> {
        let mut config = SimulatorConfig::default().with_fixed_time(self.at);
        "i-0ccc0table0000000-enc0table0enclave".clone_into(&mut config.module_id);
        for (index, value) in pcrs {
            config = config.with_pcr(*index, *value);
        }
        let enclave = root
            .sibling(config)
            .map_err(|e| emulation("a simulated enclave", e))?;
        Nsm::with_transport(Box::new(enclave))
            .attestation(None, None, Some(self.key.public_key_spki()))
            .map_err(|e| emulation("an attestation document", e))
    }

    /// Runs `environment`'s table for `release`: its rendered policies in a KMS emulator,
    /// the five documents, `explain` for each.
    ///
    /// # Errors
    /// [`Error::Emulation`] when the emulator or a client cannot run; [`Error::Environments`]
    /// when the policies cannot be rendered; [`Error::Input`] for an unknown release.
    pub fn run(
        &self,
        environment: &Environment,
        expectations: &Expectations,
        release: &str,
    ) -> Result<Table, Error> {
        expectations.get(release).ok_or_else(|| Error::Input {
            option: "--version",
            problem: format!("release {release} is not in release/pcr-expectations.json"),
        })?;
        let rendered = environment
            .render(expectations)
            .map_err(|error| Error::Environments {
                path: PathBuf::from(ccc_policy::environment::PATH),
                error: Box::new(error),
            })?;
        let (trust, trust_words) = self.trust(environment)?;
        let state = Scratch::new(&environment.name)?;
        let enclave_session = session_of(&environment.enclave_role_arn);
        let enclave = credential("ASIACCCTABLEENCLAVE0", &enclave_session)?;
        let operator_arn = format!(
            "arn:{}:iam::{}:user/ccc-table-operator",
            environment
                .enclave_role_arn
                .split(':')
                .nth(1)
                .unwrap_or("aws"),
            environment.account
        );
        let operator = credential("AKIACCCTABLEOPERATOR", &operator_arn)?;
        let running = Emulator::start(
            Config::new(state.0.join("state.json"))
                .with_region(environment.region.clone())
                .with_trust(trust.clone())
                .with_policy(rendered.key_policy.clone())
                .with_account_policy(rendered.iam_policy.clone())
                .with_clock(EmulatorClock::manual(self.at))
                .with_log(false)
                .with_credential(enclave.clone())
                .with_credential(operator.clone()),
        )
        .map_err(|e| emulation("the KMS emulator", e))?;
        let key_arn = running.default_key_arn().to_owned();
        let context = BTreeMap::from([("ccc-table".to_owned(), environment.name.clone())]);
        let mut secret = vec![0u8; SECRET_LEN];
        AwsLc
            .fill_random(&mut secret)
            .map_err(|e| emulation("randomness", e))?;
        let secret = SecretBytes::new(secret);
        let blob = self
            .client(&running, &operator)?
            .send(&EncryptRequest {
                key_id: key_arn.clone(),
                plaintext: secret.clone(),
                encryption_context: context.clone(),
                ..EncryptRequest::default()
            })
            .map_err(|e| emulation("Encrypt by the operator", e))?
            .ciphertext_blob
            .ok_or_else(|| Error::Emulation("Encrypt answered without a CiphertextBlob".into()))?;
        let enclave_client = self.client(&running, &enclave)?;

        let mut rows = Vec::new();
        let mut skipped = Vec::new();
        for case in CaseKind::ALL {
            let Some((version, root, pcrs)) =
                self.case(case, environment, expectations, release, &mut skipped)
            else {
                continue;
            };
            let document = self.document(root, &pcrs)?;
            let emulator = decrypt(
                &enclave_client,
                &key_arn,
                &blob,
                &context,
                &document,
                &self.key,
                &secret,
            )?;
            let explanation = explain(
                &rendered.key_policy,
                &ccc_policy::explain::Request::new(
                    enclave_session.clone(),
                    "Decrypt",
                    key_arn.clone(),
                    context.clone(),
                ),
                Some(&document),
                &trust,
                self.at,
                Some(expectations),
            )?;
            let predicted = predicted(&explanation);
            let agrees = agree(&emulator, &predicted);
            let emulator = named(emulator, &predicted, agrees);
            let version_pcr8 = match &version {
                Some(v) => expectations.get(v).and_then(|r| r.pcr8.clone()),
                None => None,
            };
            rows.push(Row {
                case,
                expected: expected(
                    environment,
                    case,
                    version.as_deref(),
                    version_pcr8.as_deref(),
                ),
                version,
                emulator,
                explain: predicted,
                agrees,
            });
        }
        running.stop();
        Ok(Table {
            environment: environment.name.clone(),
            description: describe(environment),
            trust: trust_words,
            rows,
            skipped,
        })
    }

    fn client(&self, running: &Running, credential: &Credential) -> Result<KmsClient, Error> {
        let credentials: Arc<dyn CredentialsProvider> = Arc::new(StaticCredentials::new(
            credential
                .sigv4()
                .map_err(|e| emulation("credentials", e))?,
        ));
        let config = ClientConfig::new(
            running.region(),
            Endpoint::tcp("127.0.0.1", running.addr().port()),
            Transport::Tls(TrustAnchors::CustomCaPem(running.ca_pem().to_owned())),
        )
        .with_host(running.host_name());
        Ok(KmsClient::new(config, credentials)
            .map_err(|e| emulation("a KMS client", e))?
            .with_clock(Arc::new(ManualClock::new(self.at))))
    }

    /// The version a case measures as.
    fn case_version(
        &self,
        case: CaseKind,
        expectations: &Expectations,
        release: &str,
        environment: &Environment,
    ) -> Option<String> {
        let versions: Vec<&str> = expectations.iter().map(|(v, _)| v).collect();
        let position = versions.iter().position(|v| *v == release)?;
        let previous = position
            .checked_sub(1)
            .and_then(|i| versions.get(i))
            .map(|v| (*v).to_owned());
        match case {
            CaseKind::ReleaseImage | CaseKind::SimulatorSigned => Some(release.to_owned()),
            CaseKind::PreviousVersion => previous,
            CaseKind::RemovedVersion => {
                let mut candidates: Vec<&str> = versions
                    .iter()
                    .copied()
                    .filter(|v| {
                        *v != release
                            && Some(*v) != previous.as_deref()
                            && !environment.allowed_versions.iter().any(|a| a == v)
                    })
                    .collect();
                candidates.sort_by_key(|v| version_key(v));
                candidates.last().map(|v| (*v).to_owned())
            }
            CaseKind::DebugMode => None,
        }
    }

    /// The version, issuer and PCRs of a case (`None`, noted in `skipped`, when there is no
    /// such version).
    fn case<'a>(
        &'a self,
        case: CaseKind,
        environment: &Environment,
        expectations: &Expectations,
        release: &str,
        skipped: &mut Vec<String>,
    ) -> Option<CaseDocument<'a>> {
        // The parent's PCR3/PCR4 as the environment pins them (debug mode keeps them).
        let mut parent = BTreeMap::new();
        if let Pin::Signer { pcr3, pcr4, .. } = &environment.pin {
            for (index, value) in [(3u16, pcr3), (4, pcr4)] {
                if let Some(bytes) = value.as_deref().and_then(bytes48) {
                    parent.insert(index, bytes);
                }
            }
        }
        if case == CaseKind::DebugMode {
            return Some((None, &self.stand_in, parent));
        }
        let Some(version) = self.case_version(case, expectations, release, environment) else {
            skipped.push(format!(
                "{}: no published version fits (release/pcr-expectations.json)",
                case.label()
            ));
            return None;
        };
        let entry = expectations.get(&version)?;
        let mut pcrs = parent;
        for (index, value) in entry.pcrs() {
            pcrs.insert(u16::from(index), bytes48(value)?);
        }
        let root = if case == CaseKind::SimulatorSigned {
            &self.development
        } else {
            &self.stand_in
        };
        Some((Some(version), root, pcrs))
    }
}

/// A case's version, the root that signs its document, and the document's PCRs.
type CaseDocument<'a> = (Option<String>, &'a Simulator, BTreeMap<u16, [u8; 48]>);

fn bytes48(hex_text: &str) -> Option<[u8; 48]> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

fn credential(access_key_id: &str, principal: &str) -> Result<Credential, Error> {
    Credential::new(
        access_key_id,
        "ccc/table/secret/access/key/0123456789ab",
        Some("ccc-table-session-token".to_owned()),
        principal,
    )
    .map_err(|e| emulation("an emulator credential", e))
}

/// A run directory removed on drop (the emulator's state holds keys in plaintext).
struct Scratch(PathBuf);

static RUNS: AtomicU64 = AtomicU64::new(0);

impl Scratch {
    fn new(name: &str) -> Result<Self, Error> {
        let dir = std::env::temp_dir().join(format!(
            "ccc-table-{}-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::SeqCst),
            name
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Decrypt with the document as `Recipient`; an allowed answer must open to the secret.
fn decrypt(
    client: &KmsClient,
    key_arn: &str,
    blob: &[u8],
    context: &BTreeMap<String, String>,
    document: &[u8],
    key: &AwsLcRsaKey,
    secret: &SecretBytes,
) -> Result<Outcome, Error> {
    let answer = client.send(&DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        encryption_context: context.clone(),
        key_id: Some(key_arn.to_owned()),
        recipient: Some(Recipient::new(document.to_vec())),
        ..DecryptRequest::default()
    });
    match answer {
        Ok(response) => {
            let opened = ccc_sdk::kms::open_recipient_response(&response, &AwsLc, key)
                .map_err(|e| emulation("opening CiphertextForRecipient", e))?;
            if opened.expose() == secret.expose() {
                Ok(Outcome::Allowed)
            } else {
                Err(Error::Emulation(
                    "the released secret is not the one sealed".into(),
                ))
            }
        }
        Err(ClientError::Kms(KmsError::Service(e))) => {
            let message = e.message.clone().unwrap_or_default();
            match e.kind {
                ErrorKind::AccessDenied => Ok(Outcome::Denied {
                    reason: String::new(),
                    message,
                }),
                _ if e.code == "ValidationException" => Ok(Outcome::Refused {
                    reason: String::new(),
                    message,
                }),
                _ => Err(emulation("Decrypt", format!("{} {message}", e.code))),
            }
        }
        Err(other) => Err(emulation("Decrypt", other)),
    }
}

/// What `explain` predicts, as an [`Outcome`] with its reason.
fn predicted(explanation: &Explanation) -> Outcome {
    match explanation.verdict() {
        Verdict::Allowed { .. } => Outcome::Allowed,
        Verdict::Denied(decision) => {
            let reason = match (&decision, &explanation.evaluation) {
                (Decision::ExplicitDeny { .. }, Some(evaluation)) => evaluation
                    .statements
                    .iter()
                    .filter(|s| s.effect == ccc_policy::Effect::Deny && s.applies())
                    .map(|s| {
                        let keys: Vec<&str> = s
                            .conditions
                            .iter()
                            .map(|c| c.key.rsplit(':').next().unwrap_or(&c.key))
                            .collect();
                        let sid = s.sid.clone().unwrap_or_else(|| s.name());
                        if keys.is_empty() {
                            format!("{sid} (unconditional)")
                        } else {
                            format!("{sid} ({})", keys.join(", "))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "implicit (no Allow applies)".to_owned(),
            };
            Outcome::Denied {
                reason,
                message: explanation.denial_message().unwrap_or_default(),
            }
        }
        Verdict::DocumentRefused(kind) => Outcome::Refused {
            reason: match kind {
                RefusalKind::Foreign => "foreign document (untrusted root)",
                RefusalKind::Expired => "expired document",
                RefusalKind::Unsigned => "unsigned document",
                RefusalKind::Malformed => "malformed document",
                RefusalKind::Forged => "document does not verify",
                _ => "document refused",
            }
            .to_owned(),
            message: match &explanation.attestation {
                ccc_policy::explain::Attestation::Refused(refusal) => refusal.detail.clone(),
                _ => String::new(),
            },
        },
        _ => Outcome::Denied {
            reason: "a verdict this tool does not know".to_owned(),
            message: String::new(),
        },
    }
}

/// The emulator's answer with `explain`'s reason filled in when they agree.
fn agree(emulator: &Outcome, explain: &Outcome) -> bool {
    match (emulator, explain) {
        (Outcome::Allowed, Outcome::Allowed) => true,
        (Outcome::Denied { message: got, .. }, Outcome::Denied { message: want, .. }) => {
            // The SDK client keeps MAX_ERROR_MESSAGE_CHARS characters and marks a cut with
            // "...": the kept part must be explain's message, or all of it.
            match got.strip_suffix("...") {
                Some(kept) if got.chars().count() > ccc_sdk::kms::MAX_ERROR_MESSAGE_CHARS => {
                    want.starts_with(kept)
                }
                _ => got == want,
            }
        }
        (Outcome::Refused { message: got, .. }, Outcome::Refused { message: want, .. }) => {
            !want.is_empty() && got.contains(want.as_str())
        }
        _ => false,
    }
}

/// The emulator's outcome named as `explain` names it when they agree (the emulator's message
/// holds the same statements), else by the start of its own message.
fn named(emulator: Outcome, explain: &Outcome, agrees: bool) -> Outcome {
    let reason = |message: &str, theirs: &str| {
        if agrees {
            theirs.to_owned()
        } else {
            message.chars().take(120).collect()
        }
    };
    match (emulator, explain) {
        (Outcome::Denied { message, .. }, Outcome::Denied { reason: theirs, .. }) => {
            Outcome::Denied {
                reason: reason(&message, theirs),
                message,
            }
        }
        (Outcome::Refused { message, .. }, Outcome::Refused { reason: theirs, .. }) => {
            Outcome::Refused {
                reason: reason(&message, theirs),
                message,
            }
        }
        (Outcome::Denied { message, .. }, _) => Outcome::Denied {
            reason: message.chars().take(120).collect(),
            message,
        },
        (Outcome::Refused { message, .. }, _) => Outcome::Refused {
            reason: message.chars().take(120).collect(),
            message,
        },
        (other, _) => other,
    }
}

/// What the environment file says about a case — computed from the file, not from the
/// policy, so the table checks that the rendered policy does what the file means: allowed,
/// denied or refused.
fn expected(
    environment: &Environment,
    case: CaseKind,
    version: Option<&str>,
    version_pcr8: Option<&str>,
) -> &'static str {
    let development = environment.kind == Kind::Development;
    let allows_version = match (&environment.pin, version) {
        (Pin::Pcrs, Some(v)) => environment.allowed_versions.iter().any(|a| a == v),
        // A signer pin admits every image its certificate signed, whatever its version.
        (Pin::Signer { pcr8, .. }, Some(_)) => {
            version_pcr8.is_some_and(|v| pcr8.iter().any(|p| p == v))
        }
        _ => false,
    };
    match case {
        CaseKind::DebugMode if development && environment.accept.debug_mode => "allowed",
        CaseKind::DebugMode => "denied",
        CaseKind::SimulatorSigned if !(development && environment.accept.simulator) => "refused",
        _ if allows_version => "allowed",
        _ => "denied",
    }
}

fn describe(environment: &Environment) -> String {
    let pin = match &environment.pin {
        Pin::Pcrs => "pins PCR0/1/2 per release".to_owned(),
        Pin::Signer { pcr8, .. } => format!(
            "pins the signer (PCR8 {})",
            pcr8.iter()
                .map(|p| format!("{}...", p.get(..16).unwrap_or(p)))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        _ => "pins something this tool does not know".to_owned(),
    };
    let mut accepts = Vec::new();
    if environment.accept.debug_mode {
        accepts.push("debug mode");
    }
    if environment.accept.simulator {
        accepts.push("the simulator root");
    }
    if environment.accept.qemu_unsigned {
        accepts.push("QEMU's unsigned documents");
    }
    format!(
        "{}, {pin}, allows {}{}",
        environment.kind,
        if environment.allowed_versions.is_empty() {
            "no release".to_owned()
        } else {
            environment.allowed_versions.join(", ")
        },
        if accepts.is_empty() {
            String::new()
        } else {
            format!(", accepts {}", accepts.join(", "))
        }
    )
}

/// Checks that the EIF at `path` measures as `release` is published (PCR0/1/2, and PCR8 when
/// either has one), so the table's documents can be seeded from it.
///
/// # Errors
/// [`Error::Input`] naming the PCR that differs, or an unreadable or invalid EIF.
pub fn check_eif(
    path: &std::path::Path,
    expectations: &Expectations,
    release: &str,
) -> Result<(), Error> {
    let bad = |problem: String| Error::Input {
        option: "--eif",
        problem,
    };
    let eif = ccc_eif::Eif::open(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let published = expectations
        .get(release)
        .ok_or_else(|| bad(format!("release {release} is not published")))?;
    let m = &eif.measurements;
    let built = [
        (0u8, Some(m.pcr0.hex())),
        (1, Some(m.pcr1.hex())),
        (2, Some(m.pcr2.hex())),
        (8, m.pcr8.as_ref().map(ccc_eif::Pcr::hex)),
    ];
    for (index, value) in built {
        let want = published
            .pcrs()
            .into_iter()
            .find(|(i, _)| *i == index)
            .map(|(_, v)| v.to_owned());
        if value != want {
            return Err(bad(format!(
                "{} is not release {release}: PCR{index} is {} in the image and {} in \
                 release/pcr-expectations.json; give the release's EIF (or rebuild it: `cargo \
                 xtask verify-release {release}`)",
                path.display(),
                value.as_deref().unwrap_or("absent"),
                want.as_deref().unwrap_or("absent")
            )));
        }
    }
    Ok(())
}

/// Runs `environment`'s table for `release` (default: the newest published version) with a
/// fresh fixture at the current time, and writes it to `out`, with the roots named. Returns
/// whether every row passes.
///
/// # Errors
/// As [`Fixture::run`], and unreadable or invalid files.
pub fn print(
    paths: &crate::files::Paths,
    environment: &str,
    release: Option<&str>,
    eif: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> Result<bool, Error> {
    let (expectations, environment) = paths.environment(environment)?;
    let release = match release {
        Some(version) => version.to_owned(),
        None => expectations
            .latest()
            .ok_or_else(|| Error::Input {
                option: "--version",
                problem: "release/pcr-expectations.json records no release yet: run `cargo \
                          xtask release` first"
                    .into(),
            })?
            .to_owned(),
    };
    let nitro = ["/dev/nitro_enclaves", "/dev/nsm"]
        .iter()
        .any(|device| std::path::Path::new(device).exists());
    let runtime = match environment.runtime(ccc_policy::environment::Host::new(nitro)) {
        Ok(runtime) => runtime.warning.unwrap_or_else(|| {
            format!(
                "on this host, environment {} would run on the Nitro NSM and AWS KMS",
                environment.name
            )
        }),
        Err(e) => format!("on this host: {e}"),
    };
    let seeded = match eif {
        None => "release/pcr-expectations.json".to_owned(),
        Some(path) => {
            check_eif(path, &expectations, &release)?;
            format!("{}, equal to release/pcr-expectations.json", path.display())
        }
    };
    let fixture = Fixture::new(UnixMillis::now())?;
    let table = fixture.run(&environment, &expectations, &release)?;
    let write = |out: &mut dyn std::io::Write, text: String| {
        writeln!(out, "{text}").map_err(|source| Error::Write {
            path: PathBuf::from("(standard output)"),
            source,
        })
    };
    write(
        out,
        format!(
            "EMULATION: release {release}'s measurements ({seeded}) seeded into the NSM \
             simulator, documents and KMS emulators at {}. Real KMS trusts only AWS \
             Nitro Enclaves Root G1; here a simulator root stands in for it, and a second one is \
             the development simulator root that only a development environment accepting the \
             simulator trusts. {}.",
            fixture.at(),
            fixture.roots()
        ),
    )?;
    write(out, table.to_string())?;
    write(
        out,
        format!(
            "runtime (outside this emulation, no fallback for staging or production): {runtime}"
        ),
    )?;
    Ok(table.passes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(message: &str) -> Outcome {
        Outcome::Denied {
            reason: "R".into(),
            message: message.into(),
        }
    }

    /// The emulator's message as the SDK client keeps it (cut, marked `...`) still agrees with
    /// explain's whole message; anything else must be equal.
    #[test]
    fn agreement_needs_the_same_verdict_and_message() {
        let whole = "x".repeat(ccc_sdk::kms::MAX_ERROR_MESSAGE_CHARS + 50);
        let cut = format!(
            "{}...",
            whole
                .chars()
                .take(ccc_sdk::kms::MAX_ERROR_MESSAGE_CHARS)
                .collect::<String>()
        );
        assert!(agree(&denied(&cut), &denied(&whole)));
        assert!(agree(&denied("m"), &denied("m")));
        assert!(!agree(&denied("m"), &denied("n")));
        assert!(!agree(&denied("m..."), &denied("mm")));
        assert!(!agree(&Outcome::Allowed, &denied("m")));
        let refused = |m: &str| Outcome::Refused {
            reason: String::new(),
            message: m.into(),
        };
        assert!(agree(
            &refused("not valid (trust mode aws): the root is X"),
            &refused("the root is X")
        ));
        assert!(!agree(&refused("the root is X"), &refused("")));
        assert!(!agree(&refused("the root is X"), &denied("the root is X")));
    }

    /// A row passes only when the emulator did what the file says and explain agrees; the
    /// table then says FAIL and marks the row.
    #[test]
    fn a_row_against_the_file_fails_the_table() {
        let row = |expected, agrees| Row {
            case: CaseKind::ReleaseImage,
            version: Some("0.3.0".into()),
            expected,
            emulator: denied("m"),
            explain: denied("m"),
            agrees,
        };
        assert!(row("denied", true).passes());
        assert!(!row("allowed", true).passes());
        assert!(!row("denied", false).passes());
        let table = Table {
            environment: "staging".into(),
            description: "d".into(),
            trust: "t".into(),
            rows: vec![row("denied", true), row("allowed", true)],
            skipped: Vec::new(),
        };
        assert!(!table.passes());
        let text = table.to_string();
        assert_eq!(text.matches("<-- FAIL").count(), 1, "{text}");
        assert!(text.ends_with("verdict: FAIL (2 case(s); explain agrees with the emulator on 2)"));
    }
}
