//! The emulator's state and its file: keys, aliases, policies, credentials and the TLS CA.
//!
//! **Development only: the file holds all key material, the credentials' secrets and the CA's
//! private key in PLAINTEXT.** It is written with mode 0600, atomically (a temporary file in
//! the same directory, `fsync`, rename), after every change, so a crash or restart never loses
//! or half-writes it.
//!
//! Format (JSON, version 1; unknown fields are refused so a typo is not silently ignored):
//!
//! ```json
//! {
//!   "format": "ccc-kms-emulator-state",
//!   "version": 1,
//!   "warning": "DEVELOPMENT ONLY: ... PLAINTEXT ...",
//!   "region": "us-east-1",
//!   "account_id": "111122223333",
//!   "default_key_id": "<uuid>",
//!   "account_policy": "<policy JSON for key-less operations: GenerateRandom, CreateKey, ...>",
//!   "credentials": [{"access_key_id": "ASIA...", "secret_access_key": "...",
//!                    "session_token": "..." | null, "principal_arn": "arn:aws:sts::...:assumed-role/..."}],
//!   "keys": [{"key_id": "<uuid>", "account_id": "111122223333" (optional: the state's account),
//!             "creation_date": <unix seconds>, "description": "...",
//!             "key_spec": "SYMMETRIC_DEFAULT" | "ECC_NIST_P256" | "ECC_NIST_P384" | "ECC_NIST_P521",
//!             "key_usage": "ENCRYPT_DECRYPT" | "KEY_AGREEMENT", "enabled": true,
//!             "policy": "<key policy JSON>",
//!             "material": "<base64: the 32-byte AES key, or the ECC private key as PKCS#8 DER>"}],
//!   "aliases": [{"alias_name": "alias/name", "account_id": "..." (optional, as for keys),
//!                "target_key_id": "<uuid>", "creation_date": <secs>}],
//!   "ca": {"common_name": "...", "certificate_pem": "...", "private_key_pem": "..."}
//! }
//! ```

use crate::fault::Fault;
use crate::keys::{self, Curve};
use crate::{Credential, EmulatorError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccc_policy::Policy;
use ccc_sdk::secret::SecretBytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The `format` field.
pub const FORMAT: &str = "ccc-kms-emulator-state";
/// The `version` field this emulator reads and writes.
pub const VERSION: u32 = 1;
/// The account id of a new state (AWS's documentation example account).
pub const DEFAULT_ACCOUNT_ID: &str = "111122223333";
/// The role name in the principal of a new state's credentials.
pub const DEFAULT_ROLE: &str = "ccc-emulator-parent";

const WARNING: &str = "DEVELOPMENT ONLY: this file holds every KMS emulator key, credential \
                       secret and the TLS CA private key in PLAINTEXT. Never use it for real data.";

/// The account id of an IAM or STS ARN (`arn:aws:iam::111122223333:role/R` → `111122223333`).
#[must_use]
pub fn account_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(_partition), Some("iam" | "sts"), Some(""), Some(account), Some(_)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    is_account_id(account).then_some(account)
}

/// Whether `text` is an AWS account id (12 digits).
pub(crate) fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The ARN partition of a region.
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// KMS's default key policy: the account root may do everything (and, in AWS, delegates to
/// IAM; the emulator has no IAM, so every principal of the account is admitted).
pub(crate) fn default_policy(region: &str, account_id: &str) -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [
    {{
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {{"AWS": "arn:{}:iam::{account_id}:root"}},
      "Action": "kms:*",
      "Resource": "*"
    }}
  ]
}}"#,
        partition(region)
    )
}

/// A random (version 4) UUID, as KMS key ids are.
pub(crate) fn uuid() -> Result<String, Fault> {
    let mut bytes = keys::random(16)?;
    let b = bytes.expose_mut();
    // RFC 9562 §5.4: version 4 in the high nibble of byte 6, variant 10 in byte 8.
    if let Some(version) = b.get_mut(6) {
        *version = (*version & 0x0f) | 0x40;
    }
    if let Some(variant) = b.get_mut(8) {
        *variant = (*variant & 0x3f) | 0x80;
    }
    let hex = hex::encode(bytes.expose());
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// A parsed policy with the text it came from (GetKeyPolicy returns the text as given).
#[derive(Clone, Debug)]
pub(crate) struct PolicyDoc {
    pub(crate) text: String,
    pub(crate) parsed: Policy,
}

impl PolicyDoc {
    /// A key policy (every statement names its principal).
    pub(crate) fn parse(text: &str) -> Result<Self, crate::PolicyError> {
        Ok(Self {
            text: text.to_owned(),
            parsed: Policy::parse(text)?,
        })
    }

    /// The account policy: a key policy, or an IAM identity policy (no principals: it applies
    /// to every principal of the account, as if attached to each).
    pub(crate) fn parse_account(text: &str) -> Result<Self, crate::PolicyError> {
        Ok(Self {
            text: text.to_owned(),
            parsed: Policy::parse_any(text)?,
        })
    }
}

/// What a key is made of.
#[derive(Clone)]
pub(crate) enum KeyKind {
    /// SYMMETRIC_DEFAULT / ENCRYPT_DECRYPT: AES-256-GCM.
    Symmetric(Zeroizing<[u8; 32]>),
    /// ECC_NIST_* / KEY_AGREEMENT: ECDH.
    Ecc {
        curve: Curve,
        pkcs8: SecretBytes,
        spki: Vec<u8>,
    },
    /// ECC_NIST_P384 / SIGN_VERIFY: ECDSA_SHA_384 (a release's `--sign-kms-key`).
    Signing { pkcs8: SecretBytes, spki: Vec<u8> },
}

/// One KMS key.
#[derive(Clone)]
pub(crate) struct KeyRecord {
    pub(crate) id: String,
    /// The account that owns it: the state's account, or the account of the caller that
    /// created it (a second account, e.g. a parent's own, plays an attacker in tests).
    pub(crate) account: String,
    pub(crate) created: u64,
    pub(crate) description: String,
    pub(crate) kind: KeyKind,
    pub(crate) enabled: bool,
    pub(crate) policy: PolicyDoc,
}

impl KeyRecord {
    pub(crate) fn key_spec(&self) -> &'static str {
        match &self.kind {
            KeyKind::Symmetric(_) => "SYMMETRIC_DEFAULT",
            KeyKind::Ecc { curve, .. } => curve.spec(),
            KeyKind::Signing { .. } => "ECC_NIST_P384",
        }
    }

    pub(crate) fn key_usage(&self) -> &'static str {
        match &self.kind {
            KeyKind::Symmetric(_) => "ENCRYPT_DECRYPT",
            KeyKind::Ecc { .. } => "KEY_AGREEMENT",
            KeyKind::Signing { .. } => "SIGN_VERIFY",
        }
    }
}

/// Aliases by (account, alias name): an alias name resolves in the caller's account, as in KMS.
pub(crate) type Aliases = BTreeMap<(String, String), Alias>;

/// An alias.
#[derive(Clone, Debug)]
pub(crate) struct Alias {
    pub(crate) target: String,
    pub(crate) created: u64,
}

/// The CA that issues the server certificate.
#[derive(Clone)]
pub(crate) struct CaMaterial {
    pub(crate) common_name: String,
    pub(crate) certificate_pem: String,
    pub(crate) private_key_pem: Zeroizing<String>,
}

/// Everything the emulator knows.
#[derive(Clone)]
pub(crate) struct State {
    pub(crate) region: String,
    pub(crate) account_id: String,
    pub(crate) default_key_id: String,
    pub(crate) account_policy: PolicyDoc,
    pub(crate) credentials: Vec<Credential>,
    pub(crate) keys: BTreeMap<String, Arc<KeyRecord>>,
    pub(crate) aliases: Aliases,
    pub(crate) ca: CaMaterial,
}

impl State {
    pub(crate) fn partition(&self) -> &'static str {
        partition(&self.region)
    }

    /// The ARN of key `id`, in the account that owns it (the state's account for an id it
    /// does not have).
    pub(crate) fn key_arn(&self, id: &str) -> String {
        let account = self.keys.get(id).map_or(&self.account_id, |k| &k.account);
        self.key_arn_in(account, id)
    }

    /// The ARN key `id` would have in `account`.
    pub(crate) fn key_arn_in(&self, account: &str, id: &str) -> String {
        format!(
            "arn:{}:kms:{}:{account}:key/{id}",
            self.partition(),
            self.region,
        )
    }

    pub(crate) fn alias_arn(&self, account: &str, name: &str) -> String {
        format!(
            "arn:{}:kms:{}:{account}:{name}",
            self.partition(),
            self.region,
        )
    }

    pub(crate) fn credential(&self, access_key_id: &str) -> Option<&Credential> {
        self.credentials
            .iter()
            .find(|c| c.access_key_id() == access_key_id)
    }

    /// A new state: one symmetric default key with KMS's default policy, one set of
    /// temporary-style credentials, and a fresh CA.
    fn create(region: &str) -> Result<Self, EmulatorError> {
        let internal = |f: Fault| EmulatorError::State {
            path: PathBuf::new(),
            problem: f.message,
        };
        let account_id = DEFAULT_ACCOUNT_ID.to_owned();
        let policy = PolicyDoc::parse(&default_policy(region, &account_id))
            .map_err(EmulatorError::Policy)?;
        let key_id = uuid().map_err(internal)?;
        let key = KeyRecord {
            id: key_id.clone(),
            account: account_id.clone(),
            created: ccc_sdk::time::UnixMillis::now().as_secs(),
            description: "CCC KMS emulator default key".into(),
            kind: KeyKind::Symmetric(keys::symmetric_key().map_err(internal)?),
            enabled: true,
            policy: policy.clone(),
        };
        let credential = new_credential(region, &account_id).map_err(internal)?;
        let ca = crate::tls::new_ca(region)?;
        Ok(Self {
            region: region.to_owned(),
            account_id,
            default_key_id: key_id.clone(),
            account_policy: policy,
            credentials: vec![credential],
            keys: BTreeMap::from([(key_id, Arc::new(key))]),
            aliases: BTreeMap::new(),
            ca,
        })
    }
}

/// Random temporary-style credentials (`ASIA...` with a session token), as a parent role's.
fn new_credential(region: &str, account_id: &str) -> Result<Credential, Fault> {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let random = keys::random(16 + 30 + 96)?;
    let bytes = random.expose();
    let id: String = bytes
        .get(..16)
        .unwrap_or_default()
        .iter()
        .filter_map(|b| BASE32.get(usize::from(b % 32)).copied().map(char::from))
        .collect();
    let secret = STANDARD.encode(bytes.get(16..46).unwrap_or_default());
    let token = STANDARD.encode(bytes.get(46..).unwrap_or_default());
    Credential::new(
        format!("ASIA{id}"),
        secret,
        Some(token),
        format!(
            "arn:{}:sts::{account_id}:assumed-role/{DEFAULT_ROLE}/emulator",
            partition(region)
        ),
    )
    .map_err(|e| Fault::internal(e.to_string()))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: String,
    version: u32,
    warning: String,
    region: String,
    account_id: String,
    default_key_id: String,
    account_policy: String,
    credentials: Vec<CredentialFile>,
    keys: Vec<KeyFile>,
    aliases: Vec<AliasFile>,
    ca: CaFile,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
    principal_arn: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key_id: String,
    #[serde(default)]
    account_id: Option<String>,
    creation_date: u64,
    description: String,
    key_spec: String,
    key_usage: String,
    enabled: bool,
    policy: String,
    material: Zeroizing<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasFile {
    alias_name: String,
    #[serde(default)]
    account_id: Option<String>,
    target_key_id: String,
    creation_date: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaFile {
    common_name: String,
    certificate_pem: String,
    private_key_pem: Zeroizing<String>,
}

impl StateFile {
    fn from_state(state: &State) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            warning: WARNING.into(),
            region: state.region.clone(),
            account_id: state.account_id.clone(),
            default_key_id: state.default_key_id.clone(),
            account_policy: state.account_policy.text.clone(),
            credentials: state
                .credentials
                .iter()
                .map(|c| CredentialFile {
                    access_key_id: c.access_key_id().into(),
                    secret_access_key: Zeroizing::new(c.secret_access_key().into()),
                    session_token: c.session_token().map(|t| Zeroizing::new(t.into())),
                    principal_arn: c.principal_arn().into(),
                })
                .collect(),
            keys: state
                .keys
                .values()
                .map(|k| KeyFile {
                    key_id: k.id.clone(),
                    account_id: Some(k.account.clone()),
                    creation_date: k.created,
                    description: k.description.clone(),
                    key_spec: k.key_spec().into(),
                    key_usage: k.key_usage().into(),
                    enabled: k.enabled,
                    policy: k.policy.text.clone(),
                    material: Zeroizing::new(match &k.kind {
                        KeyKind::Symmetric(key) => STANDARD.encode(&key[..]),
                        KeyKind::Ecc { pkcs8, .. } | KeyKind::Signing { pkcs8, .. } => {
                            STANDARD.encode(pkcs8.expose())
                        }
                    }),
                })
                .collect(),
            aliases: state
                .aliases
                .iter()
                .map(|((account, name), a)| AliasFile {
                    alias_name: name.clone(),
                    account_id: Some(account.clone()),
                    target_key_id: a.target.clone(),
                    creation_date: a.created,
                })
                .collect(),
            ca: CaFile {
                common_name: state.ca.common_name.clone(),
                certificate_pem: state.ca.certificate_pem.clone(),
                private_key_pem: state.ca.private_key_pem.clone(),
            },
        }
    }

    fn into_state(self) -> Result<State, String> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(format!(
                "format {:?} version {} is not {FORMAT:?} version {VERSION}",
                self.format, self.version
            ));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("region {:?} is not a region name", self.region));
        }
        if !is_account_id(&self.account_id) {
            return Err(format!("account_id {:?} is not 12 digits", self.account_id));
        }
        let account_policy = PolicyDoc::parse_account(&self.account_policy)
            .map_err(|e| format!("account_policy: {e}"))?;
        let mut credentials: Vec<Credential> = Vec::new();
        for c in self.credentials {
            let credential = Credential::new(
                c.access_key_id,
                c.secret_access_key.as_str(),
                c.session_token.map(|t| t.as_str().to_owned()),
                c.principal_arn,
            )
            .map_err(|e| e.to_string())?;
            if credentials
                .iter()
                .any(|o| o.access_key_id() == credential.access_key_id())
            {
                return Err(format!(
                    "access key id {} is listed twice",
                    credential.access_key_id()
                ));
            }
            credentials.push(credential);
        }
        let mut keys = BTreeMap::new();
        for k in self.keys {
            let material = STANDARD
                .decode(k.material.as_bytes())
                .map(SecretBytes::new)
                .map_err(|_| format!("key {}: material is not base64", k.key_id))?;
            let kind = match (k.key_spec.as_str(), k.key_usage.as_str()) {
                ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT") => {
                    let bytes: [u8; 32] = material
                        .expose()
                        .try_into()
                        .map_err(|_| format!("key {}: a symmetric key is 32 bytes", k.key_id))?;
                    KeyKind::Symmetric(Zeroizing::new(bytes))
                }
                (spec, "KEY_AGREEMENT") if Curve::from_spec(spec).is_some() => {
                    let curve = Curve::from_spec(spec).ok_or("unreachable")?;
                    let spki = keys::check_ecc(curve, material.expose())
                        .map_err(|e| format!("key {}: {e}", k.key_id))?;
                    KeyKind::Ecc {
                        curve,
                        pkcs8: material,
                        spki,
                    }
                }
                ("ECC_NIST_P384", "SIGN_VERIFY") => {
                    let spki = keys::check_signing(material.expose())
                        .map_err(|e| format!("key {}: {e}", k.key_id))?;
                    KeyKind::Signing {
                        pkcs8: material,
                        spki,
                    }
                }
                (spec, usage) => {
                    return Err(format!(
                        "key {}: KeySpec {spec} with KeyUsage {usage} is not supported",
                        k.key_id
                    ));
                }
            };
            if k.key_id.is_empty() || k.key_id.len() > 64 {
                return Err(format!("key id {:?} is not 1..=64 characters", k.key_id));
            }
            let policy =
                PolicyDoc::parse(&k.policy).map_err(|e| format!("key {}: {e}", k.key_id))?;
            let account = k.account_id.unwrap_or_else(|| self.account_id.clone());
            if !is_account_id(&account) {
                return Err(format!(
                    "key {}: account_id {account:?} is not 12 digits",
                    k.key_id
                ));
            }
            let record = KeyRecord {
                id: k.key_id.clone(),
                account,
                created: k.creation_date,
                description: k.description,
                kind,
                enabled: k.enabled,
                policy,
            };
            if keys.insert(k.key_id.clone(), Arc::new(record)).is_some() {
                return Err(format!("key {} is listed twice", k.key_id));
            }
        }
        if !keys.contains_key(&self.default_key_id) {
            return Err(format!(
                "default_key_id {} is not among the keys",
                self.default_key_id
            ));
        }
        let mut aliases = BTreeMap::new();
        for a in self.aliases {
            let account = a.account_id.unwrap_or_else(|| self.account_id.clone());
            let target_account = keys
                .get(&a.target_key_id)
                .map(|k: &Arc<KeyRecord>| k.account.clone());
            if target_account.as_deref() != Some(account.as_str()) {
                return Err(format!(
                    "alias {} of account {account} targets key {}, which is not a key of that \
                     account",
                    a.alias_name, a.target_key_id
                ));
            }
            aliases.insert(
                (account, a.alias_name),
                Alias {
                    target: a.target_key_id,
                    created: a.creation_date,
                },
            );
        }
        Ok(State {
            region: self.region,
            account_id: self.account_id,
            default_key_id: self.default_key_id,
            account_policy,
            credentials,
            keys,
            aliases,
            ca: CaMaterial {
                common_name: self.ca.common_name,
                certificate_pem: self.ca.certificate_pem,
                private_key_pem: self.ca.private_key_pem,
            },
        })
    }
}

/// The state and the file it lives in.
pub(crate) struct Store {
    path: PathBuf,
    pub(crate) state: State,
    /// `<state>.lock`, exclusively locked while this emulator runs (released on drop).
    _lock: std::fs::File,
}

/// Takes the exclusive lock that keeps a second emulator off the same state file.
fn lock_state(path: &Path) -> Result<std::fs::File, EmulatorError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|source| EmulatorError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| EmulatorError::Io {
            what: format!("opening {}", lock_path.display()),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(EmulatorError::State {
            path: path.to_owned(),
            problem: "another KMS emulator is running on it (one emulator per state file); \
                      stop it or use another --state"
                .into(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(EmulatorError::Io {
            what: format!("locking {}", lock_path.display()),
            source,
        }),
    }
}

impl Store {
    /// Loads the state file, or creates it (and its directory) for `region`.
    pub(crate) fn open(path: &Path, region: Option<&str>) -> Result<(Self, bool), EmulatorError> {
        let state_error = |problem: String| EmulatorError::State {
            path: path.to_owned(),
            problem,
        };
        let lock = lock_state(path)?;
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| {
                    state_error(format!(
                        "not a KMS emulator state file ({e}); move it away to start afresh"
                    ))
                })?;
                let state = file.into_state().map_err(state_error)?;
                if let Some(region) = region
                    && region != state.region
                {
                    return Err(state_error(format!(
                        "it was created for region {}, not {region}: keys and ARNs are \
                         regional. Use --region {} or another state file",
                        state.region, state.region
                    )));
                }
                Ok((
                    Self {
                        path: path.to_owned(),
                        state,
                        _lock: lock,
                    },
                    false,
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let region = region.unwrap_or(crate::DEFAULT_REGION);
                let store = Self {
                    path: path.to_owned(),
                    state: State::create(region)?,
                    _lock: lock,
                };
                store.write(&store.state)?;
                Ok((store, true))
            }
            Err(source) => Err(EmulatorError::Io {
                what: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Applies `change` to a copy of the state, writes the copy, and only then makes it the
    /// state: a failed write leaves both the file and the memory as they were.
    pub(crate) fn update<T>(
        &mut self,
        change: impl FnOnce(&mut State) -> Result<T, Fault>,
    ) -> Result<T, Fault> {
        let mut next = self.state.clone();
        let out = change(&mut next)?;
        self.write(&next)
            .map_err(|e| Fault::internal(format!("the state file could not be written: {e}")))?;
        self.state = next;
        Ok(out)
    }

    /// Writes `state` atomically with mode 0600.
    pub(crate) fn write(&self, state: &State) -> Result<(), EmulatorError> {
        let io = |what: String| move |source| EmulatorError::Io { what, source };
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(&StateFile::from_state(state)).map_err(|e| {
                EmulatorError::State {
                    path: self.path.clone(),
                    problem: format!("cannot serialize: {e}"),
                }
            })?,
        );
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let temporary = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)?;
            // Make the rename itself durable.
            std::fs::File::open(&dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(io(format!("writing {}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ccc-emulator-state-{name}-{}-{}",
            std::process::id(),
            uuid().unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("state.json")
    }

    #[test]
    fn a_new_state_round_trips_through_its_file_with_mode_0600() {
        let path = scratch("roundtrip");
        let (store, created) = Store::open(&path, Some("eu-west-1")).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("PLAINTEXT"), "{text}");

        // One emulator per state file: a second open is refused while the first holds it.
        let busy = Store::open(&path, None).err().unwrap().to_string();
        assert!(
            busy.contains("another KMS emulator is running on it"),
            "{busy}"
        );
        let original = store.state.clone();
        drop(store);

        let (again, created) = Store::open(&path, None).unwrap();
        assert!(!created);
        let (a, b) = (&original, &again.state);
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(b.region, a.region);
        assert_eq!(b.default_key_id, a.default_key_id);
        assert_eq!(b.credentials, a.credentials);
        assert_eq!(b.ca.certificate_pem, a.ca.certificate_pem);
        let (ka, kb) = (&a.keys[&a.default_key_id], &b.keys[&b.default_key_id]);
        assert!(
            matches!((&ka.kind, &kb.kind), (KeyKind::Symmetric(x), KeyKind::Symmetric(y)) if x == y),
            "the default key is symmetric and survives the round trip"
        );
        assert!(a.credentials[0].access_key_id().starts_with("ASIA"));
        assert!(a.credentials[0].session_token().is_some());
        assert_eq!(
            account_of_arn(a.credentials[0].principal_arn()),
            Some(DEFAULT_ACCOUNT_ID)
        );

        drop(again);
        let err = Store::open(&path, Some("us-east-1")).err().unwrap();
        assert!(
            err.to_string().contains("created for region eu-west-1"),
            "{err}"
        );
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let path = scratch("damaged");
        let (store, _) = Store::open(&path, None).unwrap();
        let good: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let key = store.state.default_key_id.clone();
        drop(store);
        for (edit, needle) in [
            (
                Box::new(|v: &mut serde_json::Value| v["version"] = 2.into())
                    as Box<dyn Fn(&mut serde_json::Value)>,
                "version 2",
            ),
            (
                Box::new(|v: &mut serde_json::Value| v["keys"][0]["material"] = "AAAA".into()),
                "32 bytes",
            ),
            (
                Box::new(|v: &mut serde_json::Value| v["keys"][0]["policy"] = "{}".into()),
                "Statement",
            ),
            (
                Box::new(|v: &mut serde_json::Value| v["default_key_id"] = "nope".into()),
                "default_key_id",
            ),
            (
                Box::new(|v: &mut serde_json::Value| v["extra"] = 1.into()),
                "unknown field",
            ),
        ] {
            let mut value = good.clone();
            edit(&mut value);
            std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
            let err = Store::open(&path, None).err().unwrap().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(key.len() == 36);
    }

    #[test]
    fn a_failed_update_changes_nothing() {
        let path = scratch("update");
        let (mut store, _) = Store::open(&path, None).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = store
            .update(|s| {
                s.aliases.insert(
                    (s.account_id.clone(), "alias/x".into()),
                    Alias {
                        target: "k".into(),
                        created: 0,
                    },
                );
                Err::<(), _>(Fault::validation("no"))
            })
            .unwrap_err();
        assert_eq!(err.code, "ValidationException");
        assert!(store.state.aliases.is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        store
            .update(|s| {
                s.aliases.insert(
                    (s.account_id.clone(), "alias/y".into()),
                    Alias {
                        target: s.default_key_id.clone(),
                        created: 1,
                    },
                );
                Ok(())
            })
            .unwrap();
        drop(store);
        let (reloaded, _) = Store::open(&path, None).unwrap();
        let account = reloaded.state.account_id.clone();
        assert!(
            reloaded
                .state
                .aliases
                .contains_key(&(account, "alias/y".to_owned()))
        );
    }
}
