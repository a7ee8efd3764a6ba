//! `deploy/environments.toml`: the environments a key is deployed to, what each pins and what it
//! accepts, validated against `release/pcr-expectations.json`.
//!
//! ```toml
//! format = 1
//!
//! [environments.production]
//! kind = "production"                 # development | staging | production
//! account = "333344445555"
//! region = "eu-west-1"
//! key_arn = "arn:aws:kms:eu-west-1:333344445555:key/1234abcd-12ab-34cd-56ef-1234567890ab"
//! enclave_role_arn = "arn:aws:iam::333344445555:role/ccc-parent"
//! key_admin_role_arn = "arn:aws:iam::333344445555:role/ccc-key-admin"
//! pin = "pcrs"                        # pcrs: PCR0/1/2 of each allowed version; signer: PCR8
//! allowed_versions = ["0.2.0"]
//! # development only:
//! # accept_debug_mode = true          # all-zero PCRs (the parent can read the enclave's memory)
//! # accept_simulator = true           # emulation: the NSM simulator's development root
//! # accept_qemu_unsigned = true       # emulation: QEMU's unsigned documents
//!
//! # with pin = "signer":
//! # [environments.production.signer]
//! # pcr8 = "<96 hex>"                 # the signing certificate's measurement (a list of two
//! #                                   # during a rotation: the one in use and its successor)
//! # pcr3 = "<96 hex>"                 # optional: the parent's IAM role
//! # pcr4 = "<96 hex>"                 # optional: the parent instance
//! ```
//!
//! The file owns *who* and *what may be released*; the crate's [`crate::template`] writes the
//! policies from it, and the linter ([`crate::check`]) judges them with the environment's own
//! [`crate::check::Options`]. This module lives in `ccc-policy` because everything it decides
//! is a policy rule (production never accepts debug mode, a superseded release is not deployed,
//! a signer pin covers only the releases it signed), because it is pure (text in, values out,
//! like the rest of the crate), and because every consumer — the policy commands, `explain`,
//! the KMS emulator's cross-environment table — already depends on this crate.
//!
//! **Invariant:** a parsed [`Environments`] satisfies every rule below; any violation is
//! reported, all of them at once, each naming the environment, the field and the fix.
//! - the file has `format = 1` and at least one environment; unknown keys are refused;
//! - names are lowercase words (`[a-z][a-z0-9-]*`, at most 32 characters);
//! - the account is 12 digits, the region an AWS region name, the key ARN a key ARN
//!   (`ccc_sdk::kms::KeyArn`) of that account and region, the role ARNs IAM role ARNs of one
//!   partition, and the enclave role is not the key administrator;
//! - staging and production never accept debug mode, the simulator root or QEMU's unsigned
//!   documents, and never allow a superseded release;
//! - every allowed version is in `release/pcr-expectations.json`, once;
//! - `pin = "signer"` has a `[signer]` table with PCR8 (one certificate, or two while rotating),
//!   and every allowed release is signed by one of them (its recorded PCR8 is listed);
//!   `pin = "pcrs"` has none;
//! - the allowed releases can be told apart by PCR0 (two with one PCR0 are one image).

use crate::check::Options;
use crate::expectations::{Expectations, version_key};
use crate::hex::{is_pcr_hex, is_zero};
use crate::template::{self, Admitted, Lead, PolicySpec, Principals, SetName};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The file this module reads, in a CCC repository.
pub const PATH: &str = "deploy/environments.toml";

/// The format this module reads.
pub const FORMAT: u32 = 1;

/// Longest environment name.
pub const MAX_NAME: usize = 32;

/// What an environment is for; it decides what the environment may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Developers' own: may accept debug mode and, in emulation, the simulator and QEMU.
    Development,
    /// Production's rehearsal: accepts what production accepts.
    Staging,
    /// Real keys, real data: only AWS-signed documents of allowed releases.
    Production,
}

impl Kind {
    /// `development`, `staging` or `production`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the key policy pins.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pin {
    /// PCR0, PCR1 and PCR2 of each allowed release, together.
    Pcrs,
    /// PCR8 of the signing certificate: every image it signs. PCR3 (the parent's role) and
    /// PCR4 (the parent instance) narrow it further when given.
    Signer {
        /// PCR8, lowercase hex: one certificate, or two while a rotation is under way (the one
        /// in use and its successor).
        pcr8: Vec<String>,
        /// PCR3, lowercase hex.
        pcr3: Option<String>,
        /// PCR4, lowercase hex.
        pcr4: Option<String>,
    },
}

/// Which documents an environment accepts beyond AWS-signed documents of its releases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Acceptance {
    /// Debug-mode documents (all-zero PCR0/1/2): the key policy admits them.
    pub debug_mode: bool,
    /// In emulation, documents of the NSM simulator's development root.
    pub simulator: bool,
    /// In emulation, QEMU's unsigned documents.
    pub qemu_unsigned: bool,
}

/// One environment, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Environment {
    /// Its name (the table name).
    pub name: String,
    /// What it is for.
    pub kind: Kind,
    /// The AWS account of the key.
    pub account: String,
    /// The region of the key.
    pub region: String,
    /// The key.
    pub key_arn: String,
    /// The parent instance's role, which signs the enclave's requests.
    pub enclave_role_arn: String,
    /// The role that administers the key and its policy.
    pub key_admin_role_arn: String,
    /// What the policy pins.
    pub pin: Pin,
    /// The releases it allows, oldest first.
    pub allowed_versions: Vec<String>,
    /// What else it accepts.
    pub accept: Acceptance,
}

/// Every environment of the file, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environments {
    list: BTreeMap<String, Environment>,
}

/// The rule a problem breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// Not TOML, a missing field, a wrong type or an unknown key.
    Syntax,
    /// `format` is not [`FORMAT`].
    Format,
    /// The file declares no environment.
    NoEnvironment,
    /// An environment name is not a lowercase word.
    Name,
    /// `kind` is not development, staging or production.
    Kind,
    /// The account is not 12 digits.
    Account,
    /// The region is not an AWS region name.
    Region,
    /// The key ARN is malformed, or of another account or region.
    KeyArn,
    /// A role ARN is malformed, or both roles are one.
    RoleArn,
    /// `pin` is not `pcrs` or `signer`, or its `[signer]` table is missing or misplaced.
    Pin,
    /// A PCR value is not 96 hex digits, or is all zeros.
    Pcr,
    /// Staging or production accepts debug mode, the simulator root or QEMU documents.
    ProductionAcceptance,
    /// An allowed version is not in `release/pcr-expectations.json`, or listed twice.
    UnknownVersion,
    /// Staging or production allows a superseded release.
    SupersededVersion,
    /// In signer mode, an allowed release not signed by the environment's certificate.
    UnsignedVersion,
    /// Two allowed releases share a PCR0.
    AmbiguousVersions,
}

impl Rule {
    /// A short id, as printed.
    #[must_use]
    pub fn id(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::Format => "format",
            Self::NoEnvironment => "no-environment",
            Self::Name => "name",
            Self::Kind => "kind",
            Self::Account => "account",
            Self::Region => "region",
            Self::KeyArn => "key-arn",
            Self::RoleArn => "role-arn",
            Self::Pin => "pin",
            Self::Pcr => "pcr",
            Self::ProductionAcceptance => "production-acceptance",
            Self::UnknownVersion => "unknown-version",
            Self::SupersededVersion => "superseded-version",
            Self::UnsignedVersion => "unsigned-version",
            Self::AmbiguousVersions => "ambiguous-versions",
        }
    }
}

/// One problem of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The rule broken.
    pub rule: Rule,
    /// `environments.<name>.<field>`, or `(file)`.
    pub place: String,
    /// What is wrong and what to write.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.rule.id(), self.place, self.message)
    }
}

/// Why the file, or a request about an environment, was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvironmentsError {
    /// The file breaks these rules (all of them are listed).
    Invalid(Vec<Problem>),
    /// No environment has this name.
    Unknown {
        /// The name asked for.
        name: String,
        /// The names the file declares.
        known: Vec<String>,
    },
    /// The environment's policies cannot be written (a template error).
    Render {
        /// The environment.
        environment: String,
        /// Why.
        error: template::TemplateError,
    },
    /// A policy may not be applied to the environment ([`Environment::gate`]).
    Refused {
        /// The environment.
        environment: String,
        /// Each reason, with its fix.
        reasons: Vec<String>,
    },
    /// The rendered policy fails the linter under the environment's options (a bug in the
    /// renderer or a hand-edited release: nothing is written).
    Findings {
        /// The environment.
        environment: String,
        /// `finding: ...` lines.
        findings: Vec<String>,
    },
}

impl fmt::Display for EnvironmentsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(problems) => {
                write!(
                    f,
                    "{PATH} has {} problem(s); fix each, then run the command again:",
                    problems.len()
                )?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
            Self::Unknown { name, known } => write!(
                f,
                "no environment `{name}` in {PATH} (it declares: {}); add \
                 [environments.{name}] or use one of those",
                known.join(", ")
            ),
            Self::Render { environment, error } => write!(
                f,
                "cannot write the policies of environment {environment}: {error}"
            ),
            Self::Refused {
                environment,
                reasons,
            } => {
                write!(
                    f,
                    "refusing to apply this key policy to environment {environment}:"
                )?;
                for reason in reasons {
                    write!(f, "\n  {reason}")?;
                }
                Ok(())
            }
            Self::Findings {
                environment,
                findings,
            } => write!(
                f,
                "the key policy rendered for environment {environment} fails `policy check`; \
                 nothing was written (report this: the renderer must never produce it):\n{}",
                findings.join("\n")
            ),
        }
    }
}

impl std::error::Error for EnvironmentsError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    format: u32,
    #[serde(default)]
    environments: BTreeMap<String, EnvironmentToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentToml {
    kind: String,
    account: String,
    region: String,
    key_arn: String,
    enclave_role_arn: String,
    key_admin_role_arn: String,
    pin: String,
    allowed_versions: Vec<String>,
    #[serde(default)]
    accept_debug_mode: bool,
    #[serde(default)]
    accept_simulator: bool,
    #[serde(default)]
    accept_qemu_unsigned: bool,
    #[serde(default)]
    signer: Option<SignerToml>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMore {
    One(String),
    More(Vec<String>),
}

/// Most signing certificates an environment pins at once: the one in use and its successor.
pub const MAX_SIGNERS: usize = 2;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignerToml {
    pcr8: OneOrMore,
    #[serde(default)]
    pcr3: Option<String>,
    #[serde(default)]
    pcr4: Option<String>,
}

/// Collects problems for one environment.
struct Problems<'a> {
    out: &'a mut Vec<Problem>,
    environment: &'a str,
}

impl Problems<'_> {
    fn add(&mut self, rule: Rule, field: &str, message: impl Into<String>) {
        self.out.push(Problem {
            rule,
            place: format!("environments.{}.{field}", self.environment),
            message: message.into(),
        });
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-5`: lowercase
/// words joined by dashes, ending in a number.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
        && parts
            .iter()
            .rev()
            .skip(1)
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

fn is_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn pcr_value(p: &mut Problems<'_>, field: &str, value: &str) -> Option<String> {
    if !is_pcr_hex(value) {
        p.add(
            Rule::Pcr,
            field,
            format!(
                "`{value}` is not 96 hexadecimal digits (a SHA-384 measurement as `nitro-cli \
                 describe-eif` or `nitro-cli pcr` prints it)"
            ),
        );
        return None;
    }
    if is_zero(value) {
        p.add(
            Rule::Pcr,
            field,
            "is all zeros, what debug-mode enclaves report: pin the real measurement",
        );
        return None;
    }
    Some(value.to_ascii_lowercase())
}

fn validate(
    name: &str,
    raw: EnvironmentToml,
    expectations: &Expectations,
    out: &mut Vec<Problem>,
) -> Option<Environment> {
    let before = out.len();
    let mut p = Problems {
        out,
        environment: name,
    };
    if !is_name(name) {
        p.out.push(Problem {
            rule: Rule::Name,
            place: format!("environments.{name}"),
            message: format!(
                "`{name}` is not an environment name: 1 to {MAX_NAME} lowercase letters, digits \
                 and dashes, starting with a letter"
            ),
        });
    }
    let kind = match raw.kind.as_str() {
        "development" => Some(Kind::Development),
        "staging" => Some(Kind::Staging),
        "production" => Some(Kind::Production),
        other => {
            p.add(
                Rule::Kind,
                "kind",
                format!("`{other}`: write \"development\", \"staging\" or \"production\""),
            );
            None
        }
    };
    if raw.account.len() != 12 || !raw.account.bytes().all(|b| b.is_ascii_digit()) {
        p.add(
            Rule::Account,
            "account",
            format!("`{}` is not an AWS account id (12 digits)", raw.account),
        );
    }
    if !is_region(&raw.region) {
        p.add(
            Rule::Region,
            "region",
            format!(
                "`{}` is not an AWS region name such as eu-west-1 or us-gov-west-1",
                raw.region
            ),
        );
    }
    match ccc_sdk::kms::KeyArn::parse(&raw.key_arn) {
        Ok(arn) => {
            if arn.account() != raw.account {
                p.add(
                    Rule::KeyArn,
                    "key_arn",
                    format!(
                        "names account {} but the environment's account is {}; the key \
                         belongs to the environment's account",
                        arn.account(),
                        raw.account
                    ),
                );
            }
            if arn.region() != raw.region {
                p.add(
                    Rule::KeyArn,
                    "key_arn",
                    format!(
                        "names region {} but the environment's region is {}; KMS keys are \
                         regional",
                        arn.region(),
                        raw.region
                    ),
                );
            }
        }
        Err(e) => p.add(Rule::KeyArn, "key_arn", e.to_string()),
    }
    for (field, arn, which) in [
        ("enclave_role_arn", &raw.enclave_role_arn, "enclave role"),
        (
            "key_admin_role_arn",
            &raw.key_admin_role_arn,
            "key-administrator role",
        ),
    ] {
        if let Err(e) = template::parse_role_arn(which, arn) {
            p.add(Rule::RoleArn, field, e.to_string());
        }
    }
    if raw.enclave_role_arn == raw.key_admin_role_arn {
        p.add(
            Rule::RoleArn,
            "key_admin_role_arn",
            "is the enclave role: the parent holds that role's credentials, so it could rewrite \
             the policy; name a separate key-administrator role",
        );
    }
    let pin = match (raw.pin.as_str(), raw.signer) {
        ("pcrs", None) => Some(Pin::Pcrs),
        ("pcrs", Some(_)) => {
            p.add(
                Rule::Pin,
                "signer",
                "is only read with pin = \"signer\"; remove the table or set pin = \"signer\"",
            );
            None
        }
        ("signer", Some(signer)) => {
            let listed = match signer.pcr8 {
                OneOrMore::One(one) => vec![one],
                OneOrMore::More(more) => more,
            };
            let mut pcr8 = Some(Vec::new());
            if listed.is_empty() || listed.len() > MAX_SIGNERS {
                p.add(
                    Rule::Pin,
                    "signer.pcr8",
                    format!(
                        "lists {} certificates: pin one, or two while rotating (the one in use \
                         and its successor)",
                        listed.len()
                    ),
                );
                pcr8 = None;
            }
            for value in &listed {
                match (pcr_value(&mut p, "signer.pcr8", value), pcr8.as_mut()) {
                    (Some(v), Some(list)) if !list.contains(&v) => list.push(v),
                    (Some(_), Some(_)) => {
                        p.add(Rule::Pin, "signer.pcr8", "lists a certificate twice");
                        pcr8 = None;
                    }
                    _ => pcr8 = None,
                }
            }
            // Absent is fine (`Ok(None)`); present must be a measurement.
            let mut optional = |field: &str, value: Option<String>| match value {
                None => Ok(None),
                Some(v) => pcr_value(&mut p, field, &v).map(Some).ok_or(()),
            };
            let pcr3 = optional("signer.pcr3", signer.pcr3);
            let pcr4 = optional("signer.pcr4", signer.pcr4);
            match (pcr8, pcr3, pcr4) {
                (Some(pcr8), Ok(pcr3), Ok(pcr4)) => Some(Pin::Signer { pcr8, pcr3, pcr4 }),
                _ => None,
            }
        }
        ("signer", None) => {
            p.add(
                Rule::Pin,
                "signer",
                "pin = \"signer\" needs [environments.<name>.signer] with pcr8 = \"<PCR8 of the \
                 signing certificate>\" (`nitro-cli pcr --signing-certificate CERT.pem`)",
            );
            None
        }
        (other, _) => {
            p.add(
                Rule::Pin,
                "pin",
                format!(
                    "`{other}`: write \"pcrs\" (PCR0/1/2 of each allowed version) or \"signer\" \
                     (PCR8 of the signing certificate)"
                ),
            );
            None
        }
    };
    let accept = Acceptance {
        debug_mode: raw.accept_debug_mode,
        simulator: raw.accept_simulator,
        qemu_unsigned: raw.accept_qemu_unsigned,
    };
    if let Some(kind) = kind
        && kind != Kind::Development
    {
        for (field, on, what) in [
            (
                "accept_debug_mode",
                accept.debug_mode,
                "debug-mode documents (all-zero PCRs: the parent can read the enclave's memory \
                 through the console)",
            ),
            (
                "accept_simulator",
                accept.simulator,
                "documents of the NSM simulator's development root (anyone can make them)",
            ),
            (
                "accept_qemu_unsigned",
                accept.qemu_unsigned,
                "QEMU's unsigned documents (they prove nothing)",
            ),
        ] {
            if on {
                p.add(
                    Rule::ProductionAcceptance,
                    field,
                    format!(
                        "{kind} never accepts {what}; set it to false (only a development \
                         environment may)"
                    ),
                );
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut by_pcr0: BTreeMap<String, String> = BTreeMap::new();
    for version in &raw.allowed_versions {
        if !seen.insert(version.clone()) {
            p.add(
                Rule::UnknownVersion,
                "allowed_versions",
                format!("lists {version} twice; list it once"),
            );
            continue;
        }
        let Some(release) = expectations.get(version) else {
            let published: Vec<&str> = expectations.iter().map(|(v, _)| v).collect();
            p.add(
                Rule::UnknownVersion,
                "allowed_versions",
                format!(
                    "release {version} is not in release/pcr-expectations.json (published: {}); \
                     publish it with `cargo xtask release --version {version}` or remove it",
                    if published.is_empty() {
                        "none".to_owned()
                    } else {
                        published.join(", ")
                    }
                ),
            );
            continue;
        };
        if let (Some(why), Some(Kind::Staging | Kind::Production)) = (&release.superseded, kind) {
            p.add(
                Rule::SupersededVersion,
                "allowed_versions",
                format!(
                    "release {version} is superseded ({why}); a {} environment may not allow \
                     it: allow a later release",
                    kind.map_or("", Kind::as_str)
                ),
            );
        }
        if let Some(Pin::Signer { pcr8, .. }) = &pin
            && !release.pcr8.as_ref().is_some_and(|p| pcr8.contains(p))
        {
            p.add(
                Rule::UnsignedVersion,
                "allowed_versions",
                match &release.pcr8 {
                    None => format!(
                        "release {version} is not signed, and a signer pin admits only images \
                         signed by the environment's certificate: allow a signed release or use \
                         pin = \"pcrs\""
                    ),
                    Some(other) => format!(
                        "release {version} was signed by another certificate (PCR8 {other}, \
                         the environment pins {}): re-sign it or pin that certificate",
                        pcr8.join(" and ")
                    ),
                },
            );
        }
        if let Some(other) = by_pcr0.insert(release.pcr0.clone(), version.clone()) {
            p.add(
                Rule::AmbiguousVersions,
                "allowed_versions",
                format!(
                    "releases {other} and {version} have the same PCR0, so they are one image; \
                     allow one of them"
                ),
            );
        }
    }
    if out.len() > before {
        return None;
    }
    let (Some(kind), Some(pin)) = (kind, pin) else {
        return None;
    };
    let mut allowed_versions = raw.allowed_versions;
    allowed_versions.sort_by_key(|v| version_key(v));
    Some(Environment {
        name: name.to_owned(),
        kind,
        account: raw.account,
        region: raw.region,
        key_arn: raw.key_arn,
        enclave_role_arn: raw.enclave_role_arn,
        key_admin_role_arn: raw.key_admin_role_arn,
        pin,
        allowed_versions,
        accept,
    })
}

impl Environments {
    /// Parses and validates the file's text against the published releases.
    ///
    /// # Errors
    /// [`EnvironmentsError::Invalid`] listing every problem.
    pub fn parse(text: &str, expectations: &Expectations) -> Result<Self, EnvironmentsError> {
        let file: FileToml = toml::from_str(text).map_err(|e| {
            EnvironmentsError::Invalid(vec![Problem {
                rule: Rule::Syntax,
                place: "(file)".into(),
                message: e.to_string().trim_end().replace('\n', "\n    "),
            }])
        })?;
        let mut problems = Vec::new();
        if file.format != FORMAT {
            problems.push(Problem {
                rule: Rule::Format,
                place: "format".into(),
                message: format!(
                    "is {}, this tool reads format {FORMAT}; restore the file from git",
                    file.format
                ),
            });
        }
        if file.environments.is_empty() {
            problems.push(Problem {
                rule: Rule::NoEnvironment,
                place: "(file)".into(),
                message: "declares no environment; add [environments.development] (see \
                          docs/releasing.md)"
                    .into(),
            });
        }
        let mut list = BTreeMap::new();
        for (name, raw) in file.environments {
            if let Some(environment) = validate(&name, raw, expectations, &mut problems) {
                list.insert(name, environment);
            }
        }
        if problems.is_empty() {
            Ok(Self { list })
        } else {
            Err(EnvironmentsError::Invalid(problems))
        }
    }

    /// The environment called `name`.
    ///
    /// # Errors
    /// [`EnvironmentsError::Unknown`] naming the environments there are.
    pub fn get(&self, name: &str) -> Result<&Environment, EnvironmentsError> {
        self.list
            .get(name)
            .ok_or_else(|| EnvironmentsError::Unknown {
                name: name.to_owned(),
                known: self.list.keys().cloned().collect(),
            })
    }

    /// Every environment, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Environment> {
        self.list.values()
    }

    /// Environment name → the versions it allows (what `pcr-expectations.json` records).
    #[must_use]
    pub fn allowed(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.list
            .iter()
            .map(|(name, e)| (name.clone(), e.allowed_versions.iter().cloned().collect()))
            .collect()
    }
}

/// An environment's two policies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rendered {
    /// The KMS key policy (pretty JSON, trailing newline).
    pub key_policy: String,
    /// The IAM policy for the enclave role (`kms:GenerateRandom`).
    pub iam_policy: String,
}

impl Environment {
    /// The principals of the policies: the account, the enclave role, the key administrator.
    ///
    /// # Errors
    /// [`template::TemplateError`] (never for a validated environment).
    pub fn principals(&self) -> Result<Principals, template::TemplateError> {
        Principals::from_arns(
            &self.account,
            &self.enclave_role_arn,
            &self.key_admin_role_arn,
        )
    }

    /// The linter's options for this environment's policies.
    #[must_use]
    pub fn check_options(&self) -> Options {
        Options {
            accept_debug_mode: self.kind == Kind::Development && self.accept.debug_mode,
        }
    }

    /// The attestation sets the key policy admits: one per allowed release (pcrs mode) or the
    /// signer (signer mode), then debug mode when accepted.
    ///
    /// # Errors
    /// [`EnvironmentsError::Render`] for a release missing from `expectations` (never after
    /// [`Environments::parse`] with the same expectations).
    pub fn policy_spec(
        &self,
        expectations: &Expectations,
    ) -> Result<PolicySpec, EnvironmentsError> {
        let render = |error| EnvironmentsError::Render {
            environment: self.name.clone(),
            error,
        };
        let mut admitted = Vec::new();
        let (lead, parent) = match &self.pin {
            Pin::Pcrs => {
                for version in &self.allowed_versions {
                    let release = expectations.get(version).ok_or_else(|| {
                        render(template::TemplateError::MissingLead {
                            set: format!("release {version} (not in pcr-expectations.json)"),
                            key: crate::keys::IMAGE_SHA384.to_owned(),
                        })
                    })?;
                    admitted.push(
                        Admitted::new(
                            SetName::Release(version.clone()),
                            &[
                                (0, release.pcr0.as_str()),
                                (1, release.pcr1.as_str()),
                                (2, release.pcr2.as_str()),
                            ],
                        )
                        .map_err(render)?,
                    );
                }
                (Lead::ImageSha384, Vec::new())
            }
            Pin::Signer { pcr8, pcr3, pcr4 } => {
                let mut parent: Vec<(u8, &str)> = Vec::new();
                if let Some(pcr3) = pcr3 {
                    parent.push((3, pcr3));
                }
                if let Some(pcr4) = pcr4 {
                    parent.push((4, pcr4));
                }
                for certificate in pcr8 {
                    let mut pcrs = vec![(8, certificate.as_str())];
                    pcrs.extend(parent.iter().copied());
                    let name = if pcr8.len() == 1 {
                        SetName::Signer
                    } else {
                        SetName::SignerOf(certificate.clone())
                    };
                    admitted.push(Admitted::new(name, &pcrs).map_err(render)?);
                }
                (Lead::Pcr8, parent)
            }
        };
        if self.check_options().accept_debug_mode {
            admitted.push(Admitted::debug_mode(lead == Lead::Pcr8, &parent));
        }
        Ok(PolicySpec {
            principals: self.principals().map_err(render)?,
            admitted,
            lead,
        })
    }

    /// The key policy and IAM policy, each checked by the linter with
    /// [`Environment::check_options`] before it is returned.
    ///
    /// # Errors
    /// [`EnvironmentsError::Render`] or [`EnvironmentsError::Findings`].
    pub fn render(&self, expectations: &Expectations) -> Result<Rendered, EnvironmentsError> {
        let spec = self.policy_spec(expectations)?;
        let render = |error| EnvironmentsError::Render {
            environment: self.name.clone(),
            error,
        };
        let key_policy = template::render_key_policy(&spec).map_err(render)?;
        let iam_policy = template::render_iam_policy(&spec).map_err(render)?;
        for text in [&key_policy, &iam_policy] {
            let findings = crate::Policy::parse_any(text)
                .map(|policy| crate::check::check_with(&policy, self.check_options()))
                .map_err(|e| EnvironmentsError::Findings {
                    environment: self.name.clone(),
                    findings: vec![e.to_string()],
                })?;
            if !findings.is_empty() {
                return Err(EnvironmentsError::Findings {
                    environment: self.name.clone(),
                    findings: findings.iter().map(ToString::to_string).collect(),
                });
            }
        }
        Ok(Rendered {
            key_policy,
            iam_policy,
        })
    }

    /// Whether `policy_text` may become this environment's key policy: it must parse, pass the
    /// linter with the environment's options, leave the key administrator able to change it
    /// again, and — outside development — admit no debug-mode document whatever the options
    /// say.
    ///
    /// # Errors
    /// [`EnvironmentsError::Refused`] with every reason.
    pub fn gate(&self, policy_text: &str) -> Result<(), EnvironmentsError> {
        let refused = |reasons| EnvironmentsError::Refused {
            environment: self.name.clone(),
            reasons,
        };
        let policy = crate::Policy::parse(policy_text)
            .map_err(|e| refused(vec![format!("{e}; fix the document")]))?;
        let mut reasons: Vec<String> = crate::check::check_with(&policy, self.check_options())
            .iter()
            .map(|f| format!("it fails `policy check`: {f}"))
            .collect();
        let admin = crate::RequestContext::new(
            self.key_admin_role_arn.clone(),
            "kms:PutKeyPolicy",
            self.key_arn.clone(),
        );
        if !policy.evaluate(&admin).is_allowed() {
            reasons.push(format!(
                "it would lock out administration: {} (the environment's key administrator) \
                 could not call kms:PutKeyPolicy again; keep the KeyAdministration statement",
                self.key_admin_role_arn
            ));
        }
        if self.kind != Kind::Development {
            // Whatever the linter's options: staging and production never accept debug mode.
            reasons.extend(
                crate::check::check_with(&policy, crate::check::Options::default())
                    .into_iter()
                    .filter(|f| f.rule == crate::Rule::AcceptsDebugMode)
                    .map(|f| format!("it lets {} accept debug mode: {}", self.kind, f.message)),
            );
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(refused(reasons))
        }
    }

    /// Where attestation documents and KMS come from on `host`: the real NSM and AWS KMS on
    /// Nitro hardware; without it, a development environment that accepts the simulator falls
    /// back — loudly — to the NSM simulator and the KMS emulator, and every other environment
    /// refuses to run. There is no fallback for staging or production.
    ///
    /// # Errors
    /// [`RuntimeError::NoNitro`] when the host has no Nitro Enclaves device and the
    /// environment may not fall back.
    pub fn runtime(&self, host: Host) -> Result<Runtime, RuntimeError> {
        if host.nitro {
            return Ok(Runtime {
                nsm: NsmSource::Device,
                kms: KmsSource::Aws {
                    region: self.region.clone(),
                },
                warning: None,
            });
        }
        if self.kind == Kind::Development && self.accept.simulator {
            return Ok(Runtime {
                nsm: NsmSource::Simulator,
                kms: KmsSource::Emulator,
                warning: Some(format!(
                    "INSECURE development fallback for environment {}: no Nitro Enclaves device \
                     on this host, so attestation documents come from the NSM simulator (signed \
                     by its development root, which anyone can run) and keys from the KMS \
                     emulator (plaintext state on disk). Nothing here is protected; staging and \
                     production never fall back.",
                    self.name
                )),
            });
        }
        Err(RuntimeError::NoNitro {
            environment: self.name.clone(),
            kind: self.kind,
        })
    }
}

/// What the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Host {
    /// A Nitro Enclaves device (`/dev/nitro_enclaves` on the parent, `/dev/nsm` inside).
    pub nitro: bool,
}

impl Host {
    /// A host with (`true`) or without Nitro Enclaves.
    #[must_use]
    pub fn new(nitro: bool) -> Self {
        Self { nitro }
    }
}

/// Where attestation documents come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NsmSource {
    /// `/dev/nsm`: documents signed by AWS's Nitro hierarchy.
    Device,
    /// The NSM simulator (development root).
    Simulator,
}

/// Where KMS is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KmsSource {
    /// AWS KMS in the environment's region.
    Aws {
        /// The region.
        region: String,
    },
    /// The KMS emulator on loopback.
    Emulator,
}

/// The sources an environment runs with on a host ([`Environment::runtime`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Runtime {
    /// The NSM.
    pub nsm: NsmSource,
    /// KMS.
    pub kms: KmsSource,
    /// What to print, loudly, before anything runs (set for the development fallback).
    pub warning: Option<String>,
}

/// Why an environment cannot run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No Nitro Enclaves device, and the environment has no fallback.
    NoNitro {
        /// The environment.
        environment: String,
        /// Its kind.
        kind: Kind,
    },
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoNitro { environment, kind } => match kind {
                Kind::Development => write!(
                    f,
                    "environment {environment}: this host has no Nitro Enclaves device and the \
                     environment does not accept the simulator; run on a Nitro Enclaves parent \
                     instance, or set accept_simulator = true in {PATH} for local development"
                ),
                _ => write!(
                    f,
                    "environment {environment} ({kind}): this host has no Nitro Enclaves device, \
                     and a {kind} environment has no fallback (no simulator, no emulator); run \
                     it on a Nitro Enclaves parent instance (`/dev/nitro_enclaves`)"
                ),
            },
        }
    }
}

impl std::error::Error for RuntimeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expectations::Release;
    use crate::{Decision, RequestContext};

    fn hex_of(byte: u8) -> String {
        format!("{byte:02x}").repeat(48)
    }

    fn expectations() -> Expectations {
        let mut e = Expectations::default();
        for (version, seed, pcr8) in [
            ("0.1.0", 0x10u8, None),
            ("0.2.0", 0x20, None),
            ("0.3.0", 0x30, Some(0x88u8)),
        ] {
            e.record(
                version,
                Release::new(
                    [&hex_of(seed), &hex_of(seed + 1), &hex_of(seed + 2)],
                    pcr8.map(hex_of).as_deref(),
                    "2026-12-01T10:00:00Z",
                    &"cd".repeat(20),
                )
                .unwrap(),
            )
            .unwrap();
        }
        e.supersede("0.1.0", "its key policy predates the linter")
            .unwrap();
        e
    }

    fn file() -> String {
        format!(
            r#"format = 1

[environments.development]
kind = "development"
account = "111122223333"
region = "eu-west-1"
key_arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
enclave_role_arn = "arn:aws:iam::111122223333:role/ccc-dev-parent"
key_admin_role_arn = "arn:aws:iam::111122223333:role/ccc-dev-key-admin"
pin = "pcrs"
allowed_versions = ["0.2.0", "0.1.0"]
accept_debug_mode = true
accept_simulator = true
accept_qemu_unsigned = true

[environments.staging]
kind = "staging"
account = "222233334444"
region = "eu-west-1"
key_arn = "arn:aws:kms:eu-west-1:222233334444:key/2234abcd-12ab-34cd-56ef-1234567890ab"
enclave_role_arn = "arn:aws:iam::222233334444:role/ccc-parent"
key_admin_role_arn = "arn:aws:iam::222233334444:role/ops/ccc-key-admin"
pin = "pcrs"
allowed_versions = ["0.2.0", "0.3.0"]

[environments.production]
kind = "production"
account = "333344445555"
region = "us-east-1"
key_arn = "arn:aws:kms:us-east-1:333344445555:key/mrk-0123456789abcdef0123456789abcdef"
enclave_role_arn = "arn:aws:iam::333344445555:role/ccc-parent"
key_admin_role_arn = "arn:aws:iam::333344445555:role/ccc-key-admin"
pin = "signer"
allowed_versions = ["0.3.0"]

[environments.production.signer]
pcr8 = "{pcr8}"
pcr3 = "{pcr3}"
"#,
            pcr8 = hex_of(0x88),
            pcr3 = hex_of(0x33),
        )
    }

    fn parse(text: &str) -> Result<Environments, EnvironmentsError> {
        Environments::parse(text, &expectations())
    }

    #[test]
    fn a_valid_file_parses_and_lists_what_each_environment_allows() {
        let environments = parse(&file()).unwrap();
        let development = environments.get("development").unwrap();
        assert_eq!(development.kind, Kind::Development);
        assert_eq!(development.allowed_versions, ["0.1.0", "0.2.0"]);
        assert!(development.accept.debug_mode && development.check_options().accept_debug_mode);
        let production = environments.get("production").unwrap();
        assert_eq!(
            production.pin,
            Pin::Signer {
                pcr8: vec![hex_of(0x88)],
                pcr3: Some(hex_of(0x33)),
                pcr4: None
            }
        );
        assert!(!production.check_options().accept_debug_mode);
        assert_eq!(
            environments.allowed()["staging"],
            BTreeSet::from(["0.2.0".to_owned(), "0.3.0".to_owned()])
        );
        let err = environments.get("prod").unwrap_err().to_string();
        assert!(
            err.contains("no environment `prod`")
                && err.contains("development, production, staging"),
            "{err}"
        );
    }

    /// Every rule, broken once, reported with its place and a fix; several at once are all
    /// reported.
    #[test]
    fn each_rule_names_the_field_and_the_fix() {
        let good = file();
        let cases: Vec<(String, Rule, &str, &str)> = vec![
            (
                good.replace("format = 1", "format = 1\nextra = 2"),
                Rule::Syntax,
                "(file)",
                "unknown field `extra`",
            ),
            (
                good.replace("accept_qemu_unsigned = true", "accept_qemu = true"),
                Rule::Syntax,
                "(file)",
                "unknown field `accept_qemu`",
            ),
            (
                good.replace("format = 1", "format = 2"),
                Rule::Format,
                "format",
                "restore the file",
            ),
            (
                "format = 1\n".to_owned(),
                Rule::NoEnvironment,
                "(file)",
                "declares no environment",
            ),
            (
                good.replace("[environments.staging]", "[environments.Staging]"),
                Rule::Name,
                "environments.Staging",
                "lowercase",
            ),
            (
                good.replace("kind = \"staging\"", "kind = \"qa\""),
                Rule::Kind,
                "environments.staging.kind",
                "\"development\", \"staging\" or \"production\"",
            ),
            (
                good.replace("account = \"222233334444\"", "account = \"22223333444\""),
                Rule::Account,
                "environments.staging.account",
                "12 digits",
            ),
            (
                good.replace("region = \"us-east-1\"", "region = \"useast1\""),
                Rule::Region,
                "environments.production.region",
                "eu-west-1",
            ),
            (
                good.replace(
                    "key_arn = \"arn:aws:kms:eu-west-1:222233334444:key/2234abcd-12ab-34cd-56ef-1234567890ab\"",
                    "key_arn = \"alias/ccc\"",
                ),
                Rule::KeyArn,
                "environments.staging.key_arn",
                "is an alias",
            ),
            (
                good.replace(
                    "arn:aws:kms:eu-west-1:222233334444:key/2234abcd",
                    "arn:aws:kms:eu-west-2:222233334444:key/2234abcd",
                ),
                Rule::KeyArn,
                "environments.staging.key_arn",
                "KMS keys are regional",
            ),
            (
                good.replace(
                    "enclave_role_arn = \"arn:aws:iam::222233334444:role/ccc-parent\"",
                    "enclave_role_arn = \"ccc-parent\"",
                ),
                Rule::RoleArn,
                "environments.staging.enclave_role_arn",
                "not an IAM role ARN",
            ),
            (
                good.replace(
                    "role/ccc-dev-key-admin",
                    "role/ccc-dev-parent",
                ),
                Rule::RoleArn,
                "environments.development.key_admin_role_arn",
                "is the enclave role",
            ),
            (
                good.replace("pin = \"signer\"", "pin = \"pcr8\""),
                Rule::Pin,
                "environments.production.pin",
                "\"pcrs\"",
            ),
            (
                good.replace("pin = \"signer\"", "pin = \"pcrs\""),
                Rule::Pin,
                "environments.production.signer",
                "only read with pin = \"signer\"",
            ),
            (
                good.replace(&format!("pcr8 = \"{}\"", hex_of(0x88)), &format!("pcr8 = \"{}\"", "0".repeat(96))),
                Rule::Pcr,
                "environments.production.signer.pcr8",
                "all zeros",
            ),
            (
                good.replace(&format!("pcr3 = \"{}\"", hex_of(0x33)), "pcr3 = \"abc\""),
                Rule::Pcr,
                "environments.production.signer.pcr3",
                "96 hexadecimal digits",
            ),
            (
                good.replace("kind = \"development\"", "kind = \"staging\""),
                Rule::ProductionAcceptance,
                "environments.development.accept_debug_mode",
                "staging never accepts debug-mode documents",
            ),
            (
                good.replace(
                    "allowed_versions = [\"0.2.0\", \"0.3.0\"]",
                    "allowed_versions = [\"0.2.0\", \"0.3.0\"]\naccept_simulator = true",
                ),
                Rule::ProductionAcceptance,
                "environments.staging.accept_simulator",
                "simulator",
            ),
            (
                good.replace("allowed_versions = [\"0.3.0\"]", "allowed_versions = [\"0.9.0\"]"),
                Rule::UnknownVersion,
                "environments.production.allowed_versions",
                "release 0.9.0 is not in release/pcr-expectations.json (published: 0.1.0, 0.2.0, 0.3.0)",
            ),
            (
                good.replace("allowed_versions = [\"0.2.0\", \"0.3.0\"]", "allowed_versions = [\"0.2.0\", \"0.2.0\"]"),
                Rule::UnknownVersion,
                "environments.staging.allowed_versions",
                "twice",
            ),
            (
                good.replace("allowed_versions = [\"0.2.0\", \"0.3.0\"]", "allowed_versions = [\"0.1.0\"]"),
                Rule::SupersededVersion,
                "environments.staging.allowed_versions",
                "release 0.1.0 is superseded (its key policy predates the linter)",
            ),
            (
                good.replace("allowed_versions = [\"0.3.0\"]", "allowed_versions = [\"0.2.0\"]"),
                Rule::UnsignedVersion,
                "environments.production.allowed_versions",
                "release 0.2.0 is not signed",
            ),
        ];
        for (text, rule, place, words) in cases {
            let err = parse(&text).unwrap_err();
            let EnvironmentsError::Invalid(problems) = &err else {
                unreachable!("parse returns Invalid, not {err}")
            };
            assert!(
                problems
                    .iter()
                    .any(|p| p.rule == rule && p.place == place && p.message.contains(words)),
                "{rule:?} at {place} with {words:?}: {err}"
            );
            assert!(err.to_string().starts_with("deploy/environments.toml has"));
        }
        // All problems at once.
        let text = good
            .replace("kind = \"development\"", "kind = \"production\"")
            .replace("account = \"222233334444\"", "account = \"x\"");
        let EnvironmentsError::Invalid(problems) = parse(&text).unwrap_err() else {
            unreachable!("parse returns Invalid")
        };
        assert!(problems.len() >= 4, "{problems:#?}");
    }

    /// Each environment's policies pass the linter with its own options; development admits
    /// debug mode, the others never; the signer pin admits the signer's images.
    #[test]
    fn rendered_policies_admit_what_the_environment_allows() {
        let e = expectations();
        let environments = parse(&file()).unwrap();
        let decide = |name: &str, pcrs: &[(u8, String)]| {
            let environment = environments.get(name).unwrap();
            let rendered = environment.render(&e).unwrap();
            let policy = crate::Policy::parse(&rendered.key_policy).unwrap();
            let session = environment
                .enclave_role_arn
                .replace(":iam::", ":sts::")
                .replace(":role/", ":assumed-role/")
                + "/i-0abc";
            let mut ctx = RequestContext::new(session, "kms:Decrypt", environment.key_arn.clone());
            for (index, value) in pcrs {
                ctx.set(&crate::template::pcr_key(*index), value.clone());
            }
            policy.evaluate(&ctx).decision
        };
        let release = |seed: u8| {
            vec![
                (0, hex_of(seed)),
                (1, hex_of(seed + 1)),
                (2, hex_of(seed + 2)),
            ]
        };
        let zeros = vec![
            (0, hex_of(0)),
            (1, hex_of(0)),
            (2, hex_of(0)),
            (8, hex_of(0)),
        ];
        assert!(matches!(
            decide("development", &release(0x10)),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            decide("development", &release(0x20)),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            decide("development", &zeros),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            decide("development", &release(0x30)),
            Decision::ExplicitDeny { .. }
        ));
        assert!(matches!(
            decide("staging", &release(0x20)),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            decide("staging", &zeros),
            Decision::ExplicitDeny { .. }
        ));
        assert!(matches!(
            decide("staging", &release(0x10)),
            Decision::ExplicitDeny { .. }
        ));
        // Signer: PCR8 and PCR3 must both match; any image they sign is admitted.
        let mut signed = release(0x50);
        signed.push((8, hex_of(0x88)));
        signed.push((3, hex_of(0x33)));
        assert!(matches!(
            decide("production", &signed),
            Decision::Allow { .. }
        ));
        signed.pop();
        assert!(matches!(
            decide("production", &signed),
            Decision::ExplicitDeny { .. }
        ));
        assert!(matches!(
            decide("production", &zeros),
            Decision::ExplicitDeny { .. }
        ));
        assert!(matches!(
            decide("production", &release(0x30)),
            Decision::ExplicitDeny { .. }
        ));
        // The linter with production's options refuses development's policy.
        let development = environments.get("development").unwrap().render(&e).unwrap();
        let findings = crate::check::check(&crate::Policy::parse(&development.key_policy).unwrap());
        assert!(
            findings
                .iter()
                .any(|f| f.rule == crate::Rule::AcceptsDebugMode),
            "{findings:#?}"
        );
        let iam: serde_json::Value = serde_json::from_str(&development.iam_policy).unwrap();
        let sids: Vec<&str> = iam["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert_eq!(
            sids,
            [
                "EnclaveRandomWithAllowedImage1",
                "EnclaveRandomWithAllowedImage2",
                "EnclaveRandomInDebugMode"
            ]
        );
    }

    /// The seed's "graceful degradation", done safely: development falls back to the simulator
    /// and the emulator (and says so); staging and production have no fallback.
    #[test]
    fn only_development_falls_back_without_nitro() {
        let environments = parse(&file()).unwrap();
        let development = environments.get("development").unwrap();
        let fallback = development.runtime(Host::new(false)).unwrap();
        assert_eq!(fallback.nsm, NsmSource::Simulator);
        assert_eq!(fallback.kms, KmsSource::Emulator);
        assert!(
            fallback
                .warning
                .unwrap()
                .starts_with("INSECURE development fallback")
        );
        let real = development.runtime(Host::new(true)).unwrap();
        assert_eq!(real.nsm, NsmSource::Device);
        assert_eq!(
            real.kms,
            KmsSource::Aws {
                region: "eu-west-1".into()
            }
        );
        assert_eq!(real.warning, None);
        for name in ["staging", "production"] {
            let environment = environments.get(name).unwrap();
            let err = environment
                .runtime(Host::new(false))
                .unwrap_err()
                .to_string();
            assert!(err.contains("has no fallback"), "{err}");
            assert_eq!(
                environment.runtime(Host::new(true)).unwrap().nsm,
                NsmSource::Device
            );
        }
        // A development environment that does not accept the simulator does not fall back.
        let strict = parse(&file().replace("accept_simulator = true\n", "")).unwrap();
        let err = strict
            .get("development")
            .unwrap()
            .runtime(Host::new(false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("set accept_simulator = true"), "{err}");
    }

    #[test]
    fn apply_is_gated_on_the_linter_lockout_and_debug_mode() {
        let e = expectations();
        let environments = parse(&file()).unwrap();
        let staging = environments.get("staging").unwrap();
        let development = environments.get("development").unwrap();
        let own = staging.render(&e).unwrap().key_policy;
        staging.gate(&own).unwrap();
        development
            .gate(&development.render(&e).unwrap().key_policy)
            .unwrap();
        // Development's policy (debug mode admitted) is refused for staging.
        let err = staging
            .gate(&development.render(&e).unwrap().key_policy)
            .unwrap_err()
            .to_string();
        assert!(err.contains("accepts-debug-mode"), "{err}");
        // Without the administration statement: locked out (and the linter says so too).
        let mut value: serde_json::Value = serde_json::from_str(&own).unwrap();
        value["Statement"]
            .as_array_mut()
            .unwrap()
            .retain(|s| s["Sid"] != "KeyAdministration");
        let err = staging.gate(&value.to_string()).unwrap_err().to_string();
        assert!(err.contains("would lock out administration"), "{err}");
        assert!(err.contains("no-policy-administrator"), "{err}");
        let err = staging.gate("{}").unwrap_err().to_string();
        assert!(err.contains("invalid key policy"), "{err}");
    }

    /// A certificate rotation: the environment pins the certificate in use and its successor;
    /// images signed by either are admitted, by a third are not.
    #[test]
    fn a_rotation_pins_two_signers() {
        let mut e = expectations();
        e.record(
            "0.4.0",
            Release::new(
                [&hex_of(0x40), &hex_of(0x41), &hex_of(0x42)],
                Some(&hex_of(0x99)),
                "2026-12-02T10:00:00Z",
                &"cd".repeat(20),
            )
            .unwrap(),
        )
        .unwrap();
        let rotating = file()
            .replace(
                &format!("pcr8 = \"{}\"", hex_of(0x88)),
                &format!("pcr8 = [\"{}\", \"{}\"]", hex_of(0x88), hex_of(0x99)),
            )
            .replace(
                "allowed_versions = [\"0.3.0\"]",
                "allowed_versions = [\"0.3.0\", \"0.4.0\"]",
            );
        let environments = Environments::parse(&rotating, &e).unwrap();
        let production = environments.get("production").unwrap();
        let rendered = production.render(&e).unwrap();
        let policy = crate::Policy::parse(&rendered.key_policy).unwrap();
        let decide = |pcr8: u8| {
            let mut ctx = RequestContext::new(
                "arn:aws:sts::333344445555:assumed-role/ccc-parent/i-0",
                "kms:Decrypt",
                "*",
            );
            ctx.set(&crate::template::pcr_key(8), hex_of(pcr8));
            ctx.set(&crate::template::pcr_key(3), hex_of(0x33));
            policy.evaluate(&ctx).decision
        };
        assert!(matches!(decide(0x88), Decision::Allow { .. }));
        assert!(matches!(decide(0x99), Decision::Allow { .. }));
        assert!(matches!(decide(0x77), Decision::ExplicitDeny { .. }));
        assert!(
            rendered
                .key_policy
                .contains("EnclaveUseWithSigner 888888888888")
        );
        assert!(rendered.iam_policy.contains("EnclaveRandomWithSigner2"));
        for (pcr8, words) in [
            (
                format!(
                    "[\"{}\", \"{}\", \"{}\"]",
                    hex_of(0x88),
                    hex_of(0x99),
                    hex_of(0x77)
                ),
                "lists 3 certificates",
            ),
            (
                format!("[\"{}\", \"{}\"]", hex_of(0x88), hex_of(0x88)),
                "lists a certificate twice",
            ),
            ("[]".to_owned(), "lists 0 certificates"),
        ] {
            let text = file().replace(
                &format!("pcr8 = \"{}\"", hex_of(0x88)),
                &format!("pcr8 = {pcr8}"),
            );
            let err = Environments::parse(&text, &e).unwrap_err().to_string();
            assert!(err.contains(words), "{words}: {err}");
        }
    }
}
