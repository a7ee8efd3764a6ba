//! The KMS service behind the HTTP layer: SigV4 authentication, operation dispatch, the
//! `Recipient` path (attestation verification, condition keys, `CiphertextForRecipient`), key
//! policy evaluation, and every operation's request checks and response shape.

use crate::fault::Fault;
use crate::http::{self, Request};
use crate::keys::{self, BlobError, Curve};
use crate::state::{Alias, KeyKind, KeyRecord, PolicyDoc, State, Store};
use crate::{Clock, TrustMode};
use ccc_policy::{Policy, RequestContext};
use ccc_sdk::attestation::RootOfTrust;
use ccc_sdk::cms::build::{self as cms_build, ContentLayout};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::kms::{
    DataKeyPairSpec, DataKeySpec, DecryptRequest, DecryptResponse, DeriveSharedSecretRequest,
    DeriveSharedSecretResponse, EncryptRequest, EncryptResponse, EncryptionAlgorithm,
    GenerateDataKeyPairRequest, GenerateDataKeyPairResponse, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateRandomRequest, GenerateRandomResponse, KeyAgreementAlgorithm,
    KeyEncryptionAlgorithm, KeyOrigin, Operation as Op, Recipient,
};
use ccc_sdk::secret::SecretBytes;
use ccc_sdk::sigv4::{Authorization, SigV4, SigV4Error};
use ccc_sdk::time::UnixMillis;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use zeroize::Zeroizing;

/// KMS's ciphertext bound (botocore KMS model `CiphertextType`, 1..6144).
const MAX_CIPHERTEXT_LEN: usize = 6144;
/// KMS's plaintext bound (botocore `PlaintextType`, 1..4096).
const MAX_PLAINTEXT_LEN: usize = 4096;
/// `NumberOfBytes` bound of GenerateDataKey and GenerateRandom (botocore `NumberOfBytesType`).
const MAX_NUMBER_OF_BYTES: i64 = 1024;
/// `AttestationDocument` bound (botocore `AttestationDocumentType`, 1..262144).
const MAX_ATTESTATION_DOCUMENT_LEN: usize = 262_144;
/// `PublicKey` bound of DeriveSharedSecret (botocore `PublicKeyType`, 1..8192).
const MAX_PUBLIC_KEY_LEN: usize = 8192;
/// `KeyId` bound (botocore `KeyIdType`, 1..2048).
const MAX_KEY_ID_LEN: usize = 2048;
/// `PolicyType` bound (botocore, 1..131072).
const MAX_POLICY_LEN: usize = 131_072;
/// `DescriptionType` bound (botocore, 0..8192).
const MAX_DESCRIPTION_LEN: usize = 8192;
/// `AliasNameType` bound (botocore, 1..256).
const MAX_ALIAS_LEN: usize = 256;
/// `Message` bound of Sign (botocore KMS model, 1..4096).
const MAX_SIGN_MESSAGE_LEN: usize = 4096;
/// A SHA-384 digest, what `DIGEST` messages for `ECDSA_SHA_384` must be (KMS developer guide).
const SHA384_LEN: usize = 48;
/// Characters of an error message kept on a log line.
const LOG_MESSAGE_CHARS: usize = 400;

/// The operations served, each through [`Service::dispatch`].
const SERVED: [Op; 19] = Op::ALL;

/// The authenticated caller.
struct Caller {
    principal_arn: String,
    /// The principal's account: alias names and bare key ids resolve in it.
    account: String,
}

/// What a verified `Recipient` contributes.
struct Attested {
    pcrs: BTreeMap<u8, Vec<u8>>,
    spki: Vec<u8>,
}

/// What the log line says about a request.
#[derive(Default)]
struct Note {
    op: Option<&'static str>,
    principal: Option<String>,
    key: Option<String>,
    recipient: Option<String>,
}

/// An HTTP answer.
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// May hold secrets in base64 (Plaintext members): zeroized on drop.
    pub(crate) body: Zeroizing<Vec<u8>>,
    pub(crate) request_id: String,
    pub(crate) date: String,
}

/// The service state shared by all connections.
pub(crate) struct Service {
    store: Mutex<Store>,
    trust: Vec<RootOfTrust>,
    trust_mode: TrustMode,
    clock: Clock,
    log: bool,
}

type Output = Result<Zeroizing<Vec<u8>>, Fault>;

fn to_json<T: Serialize>(value: &T) -> Output {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| Fault::internal(format!("response encoding failed: {e}")))
}

/// Reads an operation's input straight from the (zeroizing) body into its typed shape, whose
/// secret members are `SecretBytes`: required members first (KMS's "Value null at 'keyId'"
/// wording, found without copying any value), then the typed parse (a type mismatch is a
/// SerializationException, as in AWS JSON protocols).
fn parse<T: DeserializeOwned>(input: &[u8], required: &[(&str, &str)]) -> Result<T, Fault> {
    let present: BTreeMap<String, Option<IgnoredAny>> = serde_json::from_slice(input)
        .map_err(|e| Fault::serialization(format!("the body is not a JSON object: {e}")))?;
    for (member, camel) in required {
        if !matches!(present.get(*member), Some(Some(_))) {
            return Err(Fault::member_null(camel));
        }
    }
    serde_json::from_slice(input).map_err(|e| Fault::serialization(e.to_string()))
}

fn check_len(member: &str, len: usize, min: usize, max: usize) -> Result<(), Fault> {
    if len < min || len > max {
        return Err(Fault::length(member, len, min, max));
    }
    Ok(())
}

/// `NumberOfBytes` checked as a number before the typed parse, so -1 or 2000 get KMS's range
/// message rather than a type error.
fn number_of_bytes(input: &[u8]) -> Result<Option<usize>, Fault> {
    #[derive(serde::Deserialize)]
    struct Count {
        #[serde(rename = "NumberOfBytes", default)]
        number_of_bytes: Option<Value>,
    }
    let count: Count = serde_json::from_slice(input)
        .map_err(|e| Fault::serialization(format!("the body is not a JSON object: {e}")))?;
    match count.number_of_bytes {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = v
                .as_i64()
                .ok_or_else(|| Fault::serialization("NumberOfBytes is not an integer"))?;
            if !(1..=MAX_NUMBER_OF_BYTES).contains(&n) {
                return Err(Fault::range("numberOfBytes", n, 1, MAX_NUMBER_OF_BYTES));
            }
            Ok(usize::try_from(n).ok())
        }
    }
}

fn dry_run() -> Fault {
    Fault::new(
        "DryRunOperationException",
        "The request would have succeeded, but the DryRun option is set.",
    )
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// KMS key metadata (DescribeKey, CreateKey).
fn metadata(state: &State, key: &KeyRecord) -> Value {
    let mut m = json!({
        "AWSAccountId": key.account,
        "KeyId": key.id,
        "Arn": state.key_arn(&key.id),
        "CreationDate": key.created,
        "Enabled": key.enabled,
        "Description": key.description,
        "KeyUsage": key.key_usage(),
        "KeyState": if key.enabled { "Enabled" } else { "Disabled" },
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": key.key_spec(),
        "KeySpec": key.key_spec(),
        "MultiRegion": false,
    });
    let (member, algorithms) = match &key.kind {
        KeyKind::Symmetric(_) => ("EncryptionAlgorithms", json!(["SYMMETRIC_DEFAULT"])),
        KeyKind::Ecc { .. } => ("KeyAgreementAlgorithms", json!(["ECDH"])),
        KeyKind::Signing { .. } => ("SigningAlgorithms", json!(["ECDSA_SHA_384"])),
    };
    if let Some(object) = m.as_object_mut() {
        object.insert(member.to_owned(), algorithms);
    }
    m
}

/// Resolves a key id, key ARN, alias name or alias ARN as KMS does for a caller of `account`:
/// an alias name or a bare key id names something in the caller's own account; an ARN names
/// its account (a key of another account is then the key policy's to allow or deny).
fn resolve(state: &State, key_id: &str, account: &str) -> Result<Arc<KeyRecord>, Fault> {
    check_len("keyId", key_id.len(), 1, MAX_KEY_ID_LEN)?;
    let arn_prefix = format!("arn:{}:kms:{}:", state.partition(), state.region);
    let (owner, rest, is_arn) = match key_id.strip_prefix(&arn_prefix) {
        Some(rest) => match rest.split_once(':') {
            Some((owner, rest)) if crate::state::is_account_id(owner) => (owner, rest, true),
            _ => return Err(Fault::not_found(format!("Key '{key_id}' does not exist"))),
        },
        None if key_id.starts_with("arn:") => {
            return Err(Fault::not_found(format!("Key '{key_id}' does not exist")));
        }
        None => (account, key_id, false),
    };
    if rest.starts_with("alias/") {
        let target = state
            .aliases
            .get(&(owner.to_owned(), rest.to_owned()))
            .ok_or_else(|| {
                Fault::not_found(format!(
                    "Alias {} is not found.",
                    state.alias_arn(owner, rest)
                ))
            })?;
        return state
            .keys
            .get(&target.target)
            .cloned()
            .ok_or_else(|| Fault::internal("an alias targets a missing key"));
    }
    let id = if is_arn {
        rest.strip_prefix("key/").unwrap_or_default()
    } else {
        rest
    };
    match state.keys.get(id).filter(|k| k.account == owner) {
        Some(key) => Ok(key.clone()),
        None if is_arn => Err(Fault::not_found(format!("Key '{key_id}' does not exist"))),
        None => Err(Fault::not_found(format!(
            "Key '{}' does not exist",
            state.key_arn_in(owner, id)
        ))),
    }
}

fn symmetric(state: &State, key: &KeyRecord, op: Op) -> Result<[u8; 32], Fault> {
    match &key.kind {
        KeyKind::Symmetric(material) => Ok(**material),
        KeyKind::Ecc { .. } | KeyKind::Signing { .. } => Err(Fault::invalid_key_usage(format!(
            "{} key usage is {} which is not valid for {}.",
            state.key_arn(&key.id),
            key.key_usage(),
            op.name()
        ))),
    }
}

fn check_enabled(state: &State, key: &KeyRecord) -> Result<(), Fault> {
    if key.enabled {
        Ok(())
    } else {
        Err(Fault::new(
            "DisabledException",
            format!("{} is disabled.", state.key_arn(&key.id)),
        ))
    }
}

fn check_symmetric_algorithm(algorithm: Option<&EncryptionAlgorithm>) -> Result<(), Fault> {
    match algorithm {
        None | Some(EncryptionAlgorithm::SymmetricDefault) => Ok(()),
        Some(other) => Err(Fault::invalid_key_usage(format!(
            "The encryption algorithm {other} is not supported for a SYMMETRIC_DEFAULT key; \
             use SYMMETRIC_DEFAULT"
        ))),
    }
}

/// The `CiphertextForRecipient`: `plaintext` as KMS's CMS envelope to the attested key.
fn envelope(attested: &Attested, plaintext: &[u8]) -> Result<Vec<u8>, Fault> {
    cms_build::build(&attested.spki, plaintext, ContentLayout::Chunked)
        .map_err(|e| Fault::internal(format!("building CiphertextForRecipient failed: {e}")))
}

/// Splits a secret into the response members: `(Plaintext, CiphertextForRecipient)`.
fn deliver(
    attested: Option<&Attested>,
    secret: SecretBytes,
) -> Result<(Option<SecretBytes>, Option<Vec<u8>>), Fault> {
    match attested {
        Some(a) => Ok((None, Some(envelope(a, secret.expose())?))),
        None => Ok((Some(secret), None)),
    }
}

fn valid_alias_name(name: &str) -> Result<(), Fault> {
    check_len("aliasName", name.len(), 1, MAX_ALIAS_LEN)?;
    let pattern_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'));
    if !pattern_ok || !name.starts_with("alias/") || name.len() == "alias/".len() {
        return Err(Fault::validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(Fault::new(
            "NotAuthorizedException",
            "Cannot create alias with prefix 'alias/aws/'; that prefix is reserved for AWS \
             managed keys",
        ));
    }
    Ok(())
}

impl Service {
    pub(crate) fn new(
        store: Store,
        trust: Vec<RootOfTrust>,
        trust_mode: TrustMode,
        clock: Clock,
        log: bool,
    ) -> Self {
        Self {
            store: Mutex::new(store),
            trust,
            trust_mode,
            clock,
            log,
        }
    }

    pub(crate) fn logging(&self) -> bool {
        self.log
    }

    fn request_id() -> String {
        crate::state::uuid().unwrap_or_else(|_| "00000000-0000-4000-8000-000000000000".into())
    }

    /// The answer to a request the HTTP layer refused.
    pub(crate) fn refusal(&self, fault: &Fault) -> Reply {
        let reply = Reply {
            status: fault.status,
            body: Zeroizing::new(fault.body()),
            request_id: Self::request_id(),
            date: http::http_date(self.clock.now()),
        };
        self.log_line(&reply, &Note::default(), Some(fault));
        reply
    }

    /// Answers one request and logs one line.
    pub(crate) fn handle(&self, request: &Request) -> Reply {
        let now = self.clock.now();
        let mut note = Note::default();
        let result = self.process(request, now, &mut note);
        let (status, body, fault) = match result {
            Ok(body) => (200, body, None),
            Err(fault) => (fault.status, Zeroizing::new(fault.body()), Some(fault)),
        };
        let reply = Reply {
            status,
            body,
            request_id: Self::request_id(),
            date: http::http_date(now),
        };
        self.log_line(&reply, &note, fault.as_ref());
        reply
    }

    fn log_line(&self, reply: &Reply, note: &Note, fault: Option<&Fault>) {
        if self.log {
            eprintln!("{}", self.log_text(reply, note, fault));
        }
    }

    /// One line per answer: the trust mode (so an insecure mode shows on every line), request
    /// id, operation, status, who, which key, which enclave, and the error.
    fn log_text(&self, reply: &Reply, note: &Note, fault: Option<&Fault>) -> String {
        let mut line = format!(
            "kms-emulator[{}]: {} {} {}",
            self.trust_mode.label(),
            reply.request_id,
            note.op.unwrap_or("-"),
            reply.status
        );
        for (name, value) in [
            ("principal", &note.principal),
            ("key", &note.key),
            ("recipient", &note.recipient),
        ] {
            if let Some(value) = value {
                line.push_str(&format!(" {name}={value}"));
            }
        }
        if let Some(fault) = fault {
            let message: String = fault.message.chars().take(LOG_MESSAGE_CHARS).collect();
            line.push_str(&format!(" -> {}: {message}", fault.code));
        }
        // Messages may quote request values: no control character reaches the terminal.
        line.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }

    fn process(&self, request: &Request, now: UnixMillis, note: &mut Note) -> Output {
        if request.method != "POST" || request.path != "/" {
            return Err(Fault::new(
                "UnknownOperationException",
                "KMS takes POST / with X-Amz-Target: TrentService.<Operation>",
            ));
        }
        let caller = self.authenticate(request, now)?;
        note.principal = Some(caller.principal_arn.clone());
        let op = request
            .header("x-amz-target")
            .and_then(Op::from_target)
            .filter(|op| SERVED.contains(op))
            .ok_or_else(|| {
                Fault::new(
                    "UnknownOperationException",
                    format!(
                        "X-Amz-Target {:?} is not an operation the emulator serves (it serves \
                         TrentService.{})",
                        request.header("x-amz-target").unwrap_or_default(),
                        SERVED.map(Op::name).join(", TrentService.")
                    ),
                )
            })?;
        note.op = Some(op.name());
        let body: &[u8] = if request.body.is_empty() {
            b"{}"
        } else {
            &request.body
        };
        self.dispatch(op, &caller, body, now, note)
    }

    fn dispatch(
        &self,
        op: Op,
        caller: &Caller,
        input: &[u8],
        now: UnixMillis,
        note: &mut Note,
    ) -> Output {
        match op {
            Op::Encrypt => self.encrypt(caller, input, note),
            Op::Decrypt => self.decrypt(caller, input, now, note),
            Op::GenerateDataKey | Op::GenerateDataKeyWithoutPlaintext => {
                self.generate_data_key(op, caller, input, now, note)
            }
            Op::GenerateDataKeyPair => self.generate_data_key_pair(caller, input, now, note),
            Op::GenerateRandom => self.generate_random(caller, input, now, note),
            Op::DeriveSharedSecret => self.derive_shared_secret(caller, input, now, note),
            Op::GetPublicKey => self.get_public_key(caller, input, note),
            Op::Sign => self.sign(caller, input, note),
            Op::CreateKey => self.create_key(caller, input, note),
            Op::DescribeKey => self.describe_key(caller, input, note),
            Op::ListKeys => self.list_keys(caller, input),
            Op::EnableKey | Op::DisableKey => self.set_enabled(op, caller, input, note),
            Op::PutKeyPolicy => self.put_key_policy(caller, input, note),
            Op::GetKeyPolicy => self.get_key_policy(caller, input, note),
            Op::CreateAlias => self.create_alias(caller, input, note),
            Op::DeleteAlias => self.delete_alias(caller, input),
            Op::ListAliases => self.list_aliases(caller, input),
            other => Err(Fault::new(
                "UnknownOperationException",
                format!("the emulator does not serve {other}"),
            )),
        }
    }

    // ---- authentication ----------------------------------------------------------------

    fn authenticate(&self, request: &Request, now: UnixMillis) -> Result<Caller, Fault> {
        let incomplete = |m: String| Fault::new("IncompleteSignatureException", m);
        let Some(value) = request.header("authorization") else {
            return Err(Fault::new(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ));
        };
        let authorization = Authorization::parse(value).map_err(|e| incomplete(e.to_string()))?;
        let (credential, region) = {
            let store = lock(&self.store);
            let credential = store.state.credential(authorization.access_key_id).cloned();
            (credential, store.state.region.clone())
        };
        let credential = credential.ok_or_else(|| {
            Fault::new(
                "UnrecognizedClientException",
                "The security token included in the request is invalid",
            )
        })?;
        if authorization.service != ccc_sdk::kms::SIGNING_NAME {
            return Err(Fault::new(
                "InvalidSignatureException",
                format!(
                    "Credential should be scoped to correct service: 'kms'. (the request is \
                     scoped to '{}')",
                    authorization.service
                ),
            ));
        }
        if authorization.region != region {
            return Err(Fault::new(
                "InvalidSignatureException",
                format!(
                    "Credential should be scoped to a valid region, not '{}'. (the emulator \
                     serves {region})",
                    authorization.region
                ),
            ));
        }
        let sigv4 = credential
            .sigv4()
            .map_err(|e| Fault::internal(e.to_string()))?;
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let signed = ccc_sdk::sigv4::Request {
            method: &request.method,
            path: &request.path,
            query: &request.query,
            headers: &headers,
            body: &request.body,
        };
        SigV4::new()
            .verify(&AwsLc, &sigv4, &signed, Some(now), true)
            .map_err(|e| match e {
                SigV4Error::SignatureExpired { signed_at, now } => Fault::new(
                    "InvalidSignatureException",
                    format!(
                        "Signature expired: {} is now earlier than {} ({} - 5 min.)",
                        signed_at.amz_date(),
                        UnixMillis(now.0.saturating_sub(ccc_sdk::sigv4::MAX_CLOCK_SKEW_MILLIS))
                            .amz_date(),
                        now.amz_date()
                    ),
                ),
                SigV4Error::SignatureNotYetCurrent { signed_at, now } => Fault::new(
                    "InvalidSignatureException",
                    format!(
                        "Signature not yet current: {} is still later than {} ({} + 5 min.)",
                        signed_at.amz_date(),
                        UnixMillis(now.0.saturating_add(ccc_sdk::sigv4::MAX_CLOCK_SKEW_MILLIS))
                            .amz_date(),
                        now.amz_date()
                    ),
                ),
                SigV4Error::SignatureMismatch => Fault::new(
                    "InvalidSignatureException",
                    "The request signature we calculated does not match the signature you \
                     provided. Check your AWS Secret Access Key and signing method. Consult \
                     the service documentation for details.",
                ),
                SigV4Error::SessionTokenMismatch => Fault::new(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid",
                ),
                SigV4Error::PayloadHashMismatch | SigV4Error::ScopeDateMismatch => {
                    Fault::new("InvalidSignatureException", e.to_string())
                }
                other => incomplete(other.to_string()),
            })?;
        let account = crate::state::account_of_arn(credential.principal_arn())
            .ok_or_else(|| Fault::internal("a credential's principal has no account"))?
            .to_owned();
        Ok(Caller {
            principal_arn: credential.principal_arn().to_owned(),
            account,
        })
    }

    // ---- authorization -----------------------------------------------------------------

    /// The request context, built by `ccc_policy` (the one `explain` shows).
    fn context(
        caller: &Caller,
        action: &str,
        resource: &str,
        encryption_context: Option<&BTreeMap<String, String>>,
        attested: Option<&Attested>,
    ) -> RequestContext {
        RequestContext::for_kms(
            &caller.principal_arn,
            action,
            resource,
            encryption_context.unwrap_or(&BTreeMap::new()),
            attested.map(|a| &a.pcrs),
        )
    }

    fn authorize(policy: &Policy, ctx: &RequestContext) -> Result<(), Fault> {
        let evaluation = policy.evaluate(ctx);
        if evaluation.is_allowed() {
            Ok(())
        } else {
            Err(Fault::access_denied(evaluation.message(ctx)))
        }
    }

    /// Resolves the key and authorizes `op` on it; returns the key and its ARN.
    fn key_for(
        &self,
        op: Op,
        caller: &Caller,
        key_id: &str,
        encryption_context: Option<&BTreeMap<String, String>>,
        attested: Option<&Attested>,
        note: &mut Note,
    ) -> Result<(Arc<KeyRecord>, String), Fault> {
        let (key, arn) = {
            let store = lock(&self.store);
            let key = resolve(&store.state, key_id, &caller.account)?;
            let arn = store.state.key_arn(&key.id);
            (key, arn)
        };
        note.key = Some(arn.clone());
        let ctx = Self::context(caller, op.name(), &arn, encryption_context, attested);
        Self::authorize(&key.policy.parsed, &ctx)?;
        Ok((key, arn))
    }

    /// Authorizes a key-less operation by the caller's account policy: the state's for its
    /// account, KMS's default (the account root may do everything) for any other account.
    fn account_authorize(
        &self,
        op: Op,
        caller: &Caller,
        attested: Option<&Attested>,
    ) -> Result<(), Fault> {
        let policy = {
            let store = lock(&self.store);
            let state = &store.state;
            if caller.account == state.account_id {
                state.account_policy.parsed.clone()
            } else {
                PolicyDoc::parse(&crate::state::default_policy(
                    &state.region,
                    &caller.account,
                ))
                .map_err(|e| Fault::internal(e.to_string()))?
                .parsed
            }
        };
        let ctx = Self::context(caller, op.name(), "*", None, attested);
        Self::authorize(&policy, &ctx)
    }

    // ---- Recipient ---------------------------------------------------------------------

    fn verify_recipient(
        &self,
        recipient: Option<&Recipient>,
        now: UnixMillis,
        note: &mut Note,
    ) -> Result<Option<Attested>, Fault> {
        let Some(recipient) = recipient else {
            return Ok(None);
        };
        if recipient.key_encryption_algorithm != KeyEncryptionAlgorithm::RsaesOaepSha256 {
            return Err(Fault::enumeration(
                "recipient.keyEncryptionAlgorithm",
                recipient.key_encryption_algorithm.as_str(),
                &["RSAES_OAEP_SHA_256"],
            ));
        }
        let document = &recipient.attestation_document;
        check_len(
            "recipient.attestationDocument",
            document.len(),
            1,
            MAX_ATTESTATION_DOCUMENT_LEN,
        )?;
        // KMS accepts debug-mode documents: their all-zero PCRs just fail PCR conditions.
        let verified = crate::verify_with(&self.trust, document, now).map_err(|e| {
            Fault::validation(format!(
                "Recipient.AttestationDocument is not a valid attestation document (emulator \
                 trust mode {}): {e}",
                self.trust_mode.label()
            ))
        })?;
        let spki = verified
            .public_key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Fault::validation(
                    "Recipient.AttestationDocument has no public_key; put the enclave's RSA-2048 \
                     public key (DER SubjectPublicKeyInfo) in the attestation request",
                )
            })?;
        keys::check_recipient_key(&spki).map_err(|why| {
            Fault::validation(format!(
                "the public_key in Recipient.AttestationDocument is unusable: {why}; it must \
                 be the DER SubjectPublicKeyInfo of an RSA-2048 key"
            ))
        })?;
        note.recipient = Some(if verified.is_unsigned_emulated() {
            format!("UNSIGNED({})", verified.module_id)
        } else {
            verified.module_id.clone()
        });
        Ok(Some(Attested {
            pcrs: verified.pcrs,
            spki,
        }))
    }

    // ---- cryptographic operations ------------------------------------------------------

    fn encrypt(&self, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: EncryptRequest = parse(input, &[("KeyId", "keyId"), ("Plaintext", "plaintext")])?;
        check_len("plaintext", req.plaintext.len(), 1, MAX_PLAINTEXT_LEN)?;
        check_symmetric_algorithm(req.encryption_algorithm.as_ref())?;
        let (key, arn) = self.key_for(
            Op::Encrypt,
            caller,
            &req.key_id,
            Some(&req.encryption_context),
            None,
            note,
        )?;
        let material = self.usable_symmetric(&key, Op::Encrypt)?;
        if req.dry_run == Some(true) {
            return Err(dry_run());
        }
        let blob = keys::seal(
            &key.id,
            &material,
            &req.encryption_context,
            req.plaintext.expose(),
        )?;
        to_json(&EncryptResponse {
            ciphertext_blob: Some(blob),
            key_id: Some(arn),
            encryption_algorithm: Some(EncryptionAlgorithm::SymmetricDefault),
        })
    }

    fn usable_symmetric(&self, key: &KeyRecord, op: Op) -> Result<Zeroizing<[u8; 32]>, Fault> {
        let store = lock(&self.store);
        check_enabled(&store.state, key)?;
        symmetric(&store.state, key, op).map(Zeroizing::new)
    }

    fn decrypt(&self, caller: &Caller, input: &[u8], now: UnixMillis, note: &mut Note) -> Output {
        let req: DecryptRequest = parse(input, &[("CiphertextBlob", "ciphertextBlob")])?;
        check_len(
            "ciphertextBlob",
            req.ciphertext_blob.len(),
            1,
            MAX_CIPHERTEXT_LEN,
        )?;
        check_symmetric_algorithm(req.encryption_algorithm.as_ref())?;
        let blob_key = keys::blob_key_id(&req.ciphertext_blob).map_err(BlobError::fault)?;
        {
            let store = lock(&self.store);
            let state = &store.state;
            if !state.keys.contains_key(blob_key) {
                return Err(Fault::invalid_ciphertext(format!(
                    "the ciphertext was made under key {blob_key}, which this emulator's state \
                     does not have"
                )));
            }
            if let Some(named) = &req.key_id {
                let named = resolve(state, named, &caller.account)?;
                if named.id != blob_key {
                    note.key = Some(state.key_arn(&named.id));
                    return Err(Fault::new(
                        "IncorrectKeyException",
                        "The key ID in the request does not identify a CMK that can perform \
                         this operation.",
                    ));
                }
            }
        }
        let attested = self.verify_recipient(req.recipient.as_ref(), now, note)?;
        // The blob names its key by id; by ARN, so that a key of another account is found and
        // its policy decides.
        let blob_key_arn = lock(&self.store).state.key_arn(blob_key);
        let (key, arn) = self.key_for(
            Op::Decrypt,
            caller,
            &blob_key_arn,
            Some(&req.encryption_context),
            attested.as_ref(),
            note,
        )?;
        let material = self.usable_symmetric(&key, Op::Decrypt)?;
        if req.dry_run == Some(true) {
            return Err(dry_run());
        }
        let plaintext = keys::open(&req.ciphertext_blob, &material, &req.encryption_context)
            .map_err(BlobError::fault)?;
        let (plaintext, ciphertext_for_recipient) = deliver(attested.as_ref(), plaintext)?;
        to_json(&DecryptResponse {
            key_id: Some(arn),
            plaintext,
            encryption_algorithm: Some(EncryptionAlgorithm::SymmetricDefault),
            ciphertext_for_recipient,
            key_material_id: None,
        })
    }

    fn generate_data_key(
        &self,
        op: Op,
        caller: &Caller,
        input: &[u8],
        now: UnixMillis,
        note: &mut Note,
    ) -> Output {
        let number = number_of_bytes(input)?;
        let req: GenerateDataKeyRequest = parse(input, &[("KeyId", "keyId")])?;
        let len = match (number, &req.key_spec) {
            (Some(n), None) => n,
            (None, Some(DataKeySpec::Aes256)) => 32,
            (None, Some(DataKeySpec::Aes128)) => 16,
            (None, Some(other)) => {
                return Err(Fault::enumeration(
                    "keySpec",
                    other.as_str(),
                    &["AES_256", "AES_128"],
                ));
            }
            _ => {
                return Err(Fault::validation(
                    "Please specify either number of bytes or key spec.",
                ));
            }
        };
        let recipient = match op {
            Op::GenerateDataKey => req.recipient.as_ref(),
            _ => None,
        };
        let attested = self.verify_recipient(recipient, now, note)?;
        let (key, arn) = self.key_for(
            op,
            caller,
            &req.key_id,
            Some(&req.encryption_context),
            attested.as_ref(),
            note,
        )?;
        let material = self.usable_symmetric(&key, op)?;
        if req.dry_run == Some(true) {
            return Err(dry_run());
        }
        let data_key = keys::random(len)?;
        let blob = keys::seal(
            &key.id,
            &material,
            &req.encryption_context,
            data_key.expose(),
        )?;
        if op == Op::GenerateDataKeyWithoutPlaintext {
            return to_json(&json!({ "CiphertextBlob": base64_of(&blob), "KeyId": arn }));
        }
        let (plaintext, ciphertext_for_recipient) = deliver(attested.as_ref(), data_key)?;
        to_json(&GenerateDataKeyResponse {
            ciphertext_blob: Some(blob),
            plaintext,
            key_id: Some(arn),
            ciphertext_for_recipient,
            key_material_id: None,
        })
    }

    fn generate_data_key_pair(
        &self,
        caller: &Caller,
        input: &[u8],
        now: UnixMillis,
        note: &mut Note,
    ) -> Output {
        let req: GenerateDataKeyPairRequest =
            parse(input, &[("KeyId", "keyId"), ("KeyPairSpec", "keyPairSpec")])?;
        enum Kind {
            Rsa(usize),
            Ecc(Curve),
        }
        let kind = match &req.key_pair_spec {
            DataKeyPairSpec::Rsa2048 => Kind::Rsa(2048),
            DataKeyPairSpec::Rsa3072 => Kind::Rsa(3072),
            DataKeyPairSpec::Rsa4096 => Kind::Rsa(4096),
            DataKeyPairSpec::EccNistP256 => Kind::Ecc(Curve::P256),
            DataKeyPairSpec::EccNistP384 => Kind::Ecc(Curve::P384),
            DataKeyPairSpec::EccNistP521 => Kind::Ecc(Curve::P521),
            other => {
                return Err(Fault::unsupported(format!(
                    "KeyPairSpec {other} is not supported by the KMS emulator (it supports \
                     RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521)"
                )));
            }
        };
        let attested = self.verify_recipient(req.recipient.as_ref(), now, note)?;
        let (key, arn) = {
            let (key, arn) = {
                let store = lock(&self.store);
                let key = resolve(&store.state, &req.key_id, &caller.account)?;
                let arn = store.state.key_arn(&key.id);
                (key, arn)
            };
            note.key = Some(arn.clone());
            let mut ctx = Self::context(
                caller,
                Op::GenerateDataKeyPair.name(),
                &arn,
                Some(&req.encryption_context),
                attested.as_ref(),
            );
            ctx.set("kms:DataKeyPairSpec", req.key_pair_spec.as_str());
            Self::authorize(&key.policy.parsed, &ctx)?;
            (key, arn)
        };
        let material = self.usable_symmetric(&key, Op::GenerateDataKeyPair)?;
        if req.dry_run == Some(true) {
            return Err(dry_run());
        }
        let pair = match kind {
            Kind::Rsa(bits) => keys::rsa_pair(bits)?,
            Kind::Ecc(curve) => keys::ecc_pair(curve)?,
        };
        let blob = keys::seal(
            &key.id,
            &material,
            &req.encryption_context,
            pair.pkcs8.expose(),
        )?;
        let (private_key_plaintext, ciphertext_for_recipient) =
            deliver(attested.as_ref(), pair.pkcs8)?;
        to_json(&GenerateDataKeyPairResponse {
            private_key_ciphertext_blob: Some(blob),
            private_key_plaintext,
            public_key: Some(pair.spki),
            key_id: Some(arn),
            key_pair_spec: Some(req.key_pair_spec),
            ciphertext_for_recipient,
            key_material_id: None,
        })
    }

    fn generate_random(
        &self,
        caller: &Caller,
        input: &[u8],
        now: UnixMillis,
        note: &mut Note,
    ) -> Output {
        let number = number_of_bytes(input)?;
        let req: GenerateRandomRequest = parse(input, &[])?;
        if let Some(store_id) = &req.custom_key_store_id {
            return Err(Fault::new(
                "CustomKeyStoreNotFoundException",
                format!("Custom key store {store_id} does not exist (the emulator has none)"),
            ));
        }
        let len = number.ok_or_else(|| Fault::member_null("numberOfBytes"))?;
        let attested = self.verify_recipient(req.recipient.as_ref(), now, note)?;
        self.account_authorize(Op::GenerateRandom, caller, attested.as_ref())?;
        let (plaintext, ciphertext_for_recipient) = deliver(attested.as_ref(), keys::random(len)?)?;
        to_json(&GenerateRandomResponse {
            plaintext,
            ciphertext_for_recipient,
        })
    }

    fn derive_shared_secret(
        &self,
        caller: &Caller,
        input: &[u8],
        now: UnixMillis,
        note: &mut Note,
    ) -> Output {
        let req: DeriveSharedSecretRequest = parse(
            input,
            &[
                ("KeyId", "keyId"),
                ("KeyAgreementAlgorithm", "keyAgreementAlgorithm"),
                ("PublicKey", "publicKey"),
            ],
        )?;
        if req.key_agreement_algorithm != KeyAgreementAlgorithm::Ecdh {
            return Err(Fault::enumeration(
                "keyAgreementAlgorithm",
                req.key_agreement_algorithm.as_str(),
                &["ECDH"],
            ));
        }
        check_len("publicKey", req.public_key.len(), 1, MAX_PUBLIC_KEY_LEN)?;
        let attested = self.verify_recipient(req.recipient.as_ref(), now, note)?;
        let (key, arn) = self.key_for(
            Op::DeriveSharedSecret,
            caller,
            &req.key_id,
            None,
            attested.as_ref(),
            note,
        )?;
        let (curve, pkcs8) = {
            let store = lock(&self.store);
            check_enabled(&store.state, &key)?;
            match &key.kind {
                KeyKind::Ecc { curve, pkcs8, .. } => (*curve, pkcs8.clone()),
                KeyKind::Symmetric(_) | KeyKind::Signing { .. } => {
                    return Err(Fault::invalid_key_usage(format!(
                        "{arn} key usage is {} which is not valid for DeriveSharedSecret.",
                        key.key_usage()
                    )));
                }
            }
        };
        if req.dry_run == Some(true) {
            return Err(dry_run());
        }
        let secret = keys::ecdh(curve, pkcs8.expose(), &req.public_key)?;
        let (shared_secret, ciphertext_for_recipient) = deliver(attested.as_ref(), secret)?;
        to_json(&DeriveSharedSecretResponse {
            key_id: Some(arn),
            shared_secret,
            ciphertext_for_recipient,
            key_agreement_algorithm: Some(KeyAgreementAlgorithm::Ecdh),
            key_origin: Some(KeyOrigin::AwsKms),
        })
    }

    fn get_public_key(&self, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: KeyIdInput = parse(input, &[("KeyId", "keyId")])?;
        let (key, arn) = self.key_for(Op::GetPublicKey, caller, &req.key_id, None, None, note)?;
        check_enabled(&lock(&self.store).state, &key)?;
        match &key.kind {
            KeyKind::Ecc { curve, spki, .. } => to_json(&json!({
                "KeyId": arn,
                "PublicKey": base64_of(spki),
                "CustomerMasterKeySpec": curve.spec(),
                "KeySpec": curve.spec(),
                "KeyUsage": "KEY_AGREEMENT",
                "KeyAgreementAlgorithms": ["ECDH"],
            })),
            KeyKind::Signing { spki, .. } => to_json(&json!({
                "KeyId": arn,
                "PublicKey": base64_of(spki),
                "CustomerMasterKeySpec": "ECC_NIST_P384",
                "KeySpec": "ECC_NIST_P384",
                "KeyUsage": "SIGN_VERIFY",
                "SigningAlgorithms": ["ECDSA_SHA_384"],
            })),
            KeyKind::Symmetric(_) => Err(Fault::unsupported(format!(
                "{arn} is a symmetric key; GetPublicKey is only for asymmetric keys."
            ))),
        }
    }

    /// `Sign`: an ECC_NIST_P384 SIGN_VERIFY key, ECDSA_SHA_384, `RAW` (at most 4096 bytes,
    /// hashed here) or `DIGEST` (48 bytes), authorised by the key policy (`kms:Sign`).
    fn sign(&self, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: SignInput = parse(input, &[("KeyId", "keyId")])?;
        let message = req.message;
        check_len("message", message.len(), 1, MAX_SIGN_MESSAGE_LEN)?;
        let message_type = req.message_type.as_deref().unwrap_or("RAW");
        if !matches!(message_type, "RAW" | "DIGEST") {
            return Err(Fault::enumeration(
                "messageType",
                message_type,
                &["RAW", "DIGEST", "EXTERNAL_MU"],
            ));
        }
        let (key, arn) = self.key_for(Op::Sign, caller, &req.key_id, None, None, note)?;
        check_enabled(&lock(&self.store).state, &key)?;
        let KeyKind::Signing { pkcs8, .. } = &key.kind else {
            return Err(Fault::invalid_key_usage(format!(
                "{arn} key usage is {} which is not valid for Sign.",
                key.key_usage()
            )));
        };
        if req.signing_algorithm != "ECDSA_SHA_384" {
            return Err(Fault::invalid_key_usage(format!(
                "Algorithm {} is incompatible with key spec ECC_NIST_P384.",
                req.signing_algorithm
            )));
        }
        let digest = if message_type == "DIGEST" {
            message
        } else {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &message)
                .as_ref()
                .to_vec()
        };
        if digest.len() != SHA384_LEN {
            return Err(Fault::validation(
                "Digest is invalid length for algorithm ECDSA_SHA_384.",
            ));
        }
        let signature = keys::sign_digest(pkcs8.expose(), &digest)?;
        to_json(&json!({
            "KeyId": arn,
            "Signature": base64_of(&signature),
            "SigningAlgorithm": "ECDSA_SHA_384",
        }))
    }

    // ---- key management ----------------------------------------------------------------

    fn create_key(&self, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: CreateKeyInput = parse(input, &[])?;
        let spec = req
            .key_spec
            .or(req.customer_master_key_spec)
            .unwrap_or_else(|| "SYMMETRIC_DEFAULT".into());
        let usage = req.key_usage.unwrap_or_else(|| "ENCRYPT_DECRYPT".into());
        if let Some(origin) = req.origin.filter(|o| o != "AWS_KMS") {
            return Err(Fault::unsupported(format!(
                "Origin {origin} is not supported by the KMS emulator (only AWS_KMS)"
            )));
        }
        if req.multi_region == Some(true) || req.custom_key_store_id.is_some() {
            return Err(Fault::unsupported(
                "multi-Region keys and custom key stores are not supported by the KMS emulator",
            ));
        }
        check_len(
            "description",
            req.description.as_deref().map_or(0, str::len),
            0,
            MAX_DESCRIPTION_LEN,
        )?;
        self.account_authorize(Op::CreateKey, caller, None)?;
        let kind = match (spec.as_str(), usage.as_str()) {
            ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT") => KeyKind::Symmetric(keys::symmetric_key()?),
            (spec, "KEY_AGREEMENT") if Curve::from_spec(spec).is_some() => {
                let curve = Curve::from_spec(spec).ok_or_else(|| Fault::internal("curve"))?;
                let pair = keys::ecc_pair(curve)?;
                KeyKind::Ecc {
                    curve,
                    pkcs8: pair.pkcs8,
                    spki: pair.spki,
                }
            }
            ("ECC_NIST_P384", "SIGN_VERIFY") => {
                let pair = keys::signing_pair()?;
                KeyKind::Signing {
                    pkcs8: pair.pkcs8,
                    spki: pair.spki,
                }
            }
            (spec, usage) => {
                return Err(Fault::unsupported(format!(
                    "KeySpec {spec} with KeyUsage {usage} is not supported by the KMS emulator \
                     (it supports SYMMETRIC_DEFAULT/ENCRYPT_DECRYPT, \
                     ECC_NIST_P256|ECC_NIST_P384|ECC_NIST_P521/KEY_AGREEMENT and \
                     ECC_NIST_P384/SIGN_VERIFY)"
                )));
            }
        };
        let id = crate::state::uuid()?;
        let policy = {
            let store = lock(&self.store);
            let text = match &req.policy {
                Some(text) => text.clone(),
                None => crate::state::default_policy(&store.state.region, &caller.account),
            };
            let arn = store.state.key_arn_in(&caller.account, &id);
            Self::new_policy(caller, &text, &arn, req.bypass_policy_lockout_safety_check)?
        };
        let record = KeyRecord {
            id: id.clone(),
            account: caller.account.clone(),
            created: UnixMillis::now().as_secs(),
            description: req.description.unwrap_or_default(),
            kind,
            enabled: true,
            policy,
        };
        let mut store = lock(&self.store);
        note.key = Some(store.state.key_arn(&id));
        store.update(|state| {
            state.keys.insert(id.clone(), Arc::new(record));
            Ok(())
        })?;
        let key = store
            .state
            .keys
            .get(&id)
            .cloned()
            .ok_or_else(|| Fault::internal("the new key vanished"))?;
        to_json(&json!({ "KeyMetadata": metadata(&store.state, &key) }))
    }

    /// Parses a new key policy and applies KMS's lockout safety check: unless bypassed, the
    /// caller must still be allowed `kms:PutKeyPolicy` under it.
    fn new_policy(
        caller: &Caller,
        text: &str,
        key_arn: &str,
        bypass: Option<bool>,
    ) -> Result<PolicyDoc, Fault> {
        check_len("policy", text.len(), 1, MAX_POLICY_LEN)?;
        let policy = PolicyDoc::parse(text)
            .map_err(|e| Fault::new("MalformedPolicyDocumentException", e.to_string()))?;
        if bypass != Some(true) {
            let ctx = Self::context(caller, "PutKeyPolicy", key_arn, None, None);
            if !policy.parsed.evaluate(&ctx).is_allowed() {
                return Err(Fault::new(
                    "MalformedPolicyDocumentException",
                    format!(
                        "The new key policy will not allow you to update the key policy in the \
                         future. ({} would lose kms:PutKeyPolicy; set \
                         BypassPolicyLockoutSafetyCheck to insist)",
                        caller.principal_arn
                    ),
                ));
            }
        }
        Ok(policy)
    }

    fn describe_key(&self, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: KeyIdInput = parse(input, &[("KeyId", "keyId")])?;
        let (key, _) = self.key_for(Op::DescribeKey, caller, &req.key_id, None, None, note)?;
        let store = lock(&self.store);
        to_json(&json!({ "KeyMetadata": metadata(&store.state, &key) }))
    }

    fn list_keys(&self, caller: &Caller, input: &[u8]) -> Output {
        let req: ListInput = parse(input, &[])?;
        self.account_authorize(Op::ListKeys, caller, None)?;
        let store = lock(&self.store);
        let state = &store.state;
        let entries: Vec<Value> = state
            .keys
            .values()
            .filter(|k| k.account == caller.account)
            .map(|k| json!({ "KeyId": k.id, "KeyArn": state.key_arn(&k.id) }))
            .collect();
        to_json(&page("Keys", entries, &req)?)
    }

    fn set_enabled(&self, op: Op, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: KeyIdInput = parse(input, &[("KeyId", "keyId")])?;
        let (key, _) = self.key_for(op, caller, &req.key_id, None, None, note)?;
        lock(&self.store).update(|state| {
            if let Some(record) = state.keys.get_mut(&key.id) {
                Arc::make_mut(record).enabled = op == Op::EnableKey;
            }
            Ok(())
        })?;
        Ok(Zeroizing::new(Vec::new()))
    }

    fn put_key_policy(&self, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: PutKeyPolicyInput = parse(input, &[("KeyId", "keyId"), ("Policy", "policy")])?;
        if req.policy_name.as_deref().is_some_and(|n| n != "default") {
            return Err(Fault::validation(
                "PolicyName must be \"default\" (KMS keys have one policy)",
            ));
        }
        let (key, arn) = self.key_for(Op::PutKeyPolicy, caller, &req.key_id, None, None, note)?;
        let policy = Self::new_policy(
            caller,
            &req.policy,
            &arn,
            req.bypass_policy_lockout_safety_check,
        )?;
        lock(&self.store).update(|state| {
            if let Some(record) = state.keys.get_mut(&key.id) {
                Arc::make_mut(record).policy = policy;
            }
            Ok(())
        })?;
        Ok(Zeroizing::new(Vec::new()))
    }

    fn get_key_policy(&self, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: PutKeyPolicyInput = parse(input, &[("KeyId", "keyId")])?;
        let (key, _) = self.key_for(Op::GetKeyPolicy, caller, &req.key_id, None, None, note)?;
        to_json(&json!({ "Policy": key.policy.text, "PolicyName": "default" }))
    }

    fn create_alias(&self, caller: &Caller, input: &[u8], note: &mut Note) -> Output {
        let req: AliasInput = parse(
            input,
            &[("AliasName", "aliasName"), ("TargetKeyId", "targetKeyId")],
        )?;
        valid_alias_name(&req.alias_name)?;
        let target = req.target_key_id.unwrap_or_default();
        if target.starts_with("alias/") || target.contains(":alias/") {
            return Err(Fault::validation(
                "TargetKeyId must name a key (id or key ARN), not an alias",
            ));
        }
        let (key, _) = self.key_for(Op::CreateAlias, caller, &target, None, None, note)?;
        if key.account != caller.account {
            return Err(Fault::not_found(format!(
                "Key '{target}' is not in your account {}: an alias and its key must be in the \
                 same account",
                caller.account
            )));
        }
        let name = (caller.account.clone(), req.alias_name);
        lock(&self.store).update(|state| {
            if state.aliases.contains_key(&name) {
                return Err(Fault::new(
                    "AlreadyExistsException",
                    format!(
                        "An alias with the name {} already exists",
                        state.alias_arn(&name.0, &name.1)
                    ),
                ));
            }
            state.aliases.insert(
                name.clone(),
                Alias {
                    target: key.id.clone(),
                    created: UnixMillis::now().as_secs(),
                },
            );
            Ok(())
        })?;
        Ok(Zeroizing::new(Vec::new()))
    }

    fn delete_alias(&self, caller: &Caller, input: &[u8]) -> Output {
        let req: AliasInput = parse(input, &[("AliasName", "aliasName")])?;
        let name = (caller.account.clone(), req.alias_name);
        let target = {
            let store = lock(&self.store);
            let state = &store.state;
            let alias = state.aliases.get(&name).ok_or_else(|| {
                Fault::not_found(format!(
                    "Alias {} is not found.",
                    state.alias_arn(&name.0, &name.1)
                ))
            })?;
            state
                .keys
                .get(&alias.target)
                .cloned()
                .ok_or_else(|| Fault::internal("an alias targets a missing key"))?
        };
        let arn = lock(&self.store).state.key_arn(&target.id);
        let ctx = Self::context(caller, Op::DeleteAlias.name(), &arn, None, None);
        Self::authorize(&target.policy.parsed, &ctx)?;
        lock(&self.store).update(|state| {
            state.aliases.remove(&name);
            Ok(())
        })?;
        Ok(Zeroizing::new(Vec::new()))
    }

    fn list_aliases(&self, caller: &Caller, input: &[u8]) -> Output {
        let req: ListInput = parse(input, &[])?;
        self.account_authorize(Op::ListAliases, caller, None)?;
        let store = lock(&self.store);
        let state = &store.state;
        let filter = match &req.key_id {
            Some(key_id) => Some(resolve(state, key_id, &caller.account)?.id.clone()),
            None => None,
        };
        let entries: Vec<Value> = state
            .aliases
            .iter()
            .filter(|((account, _), a)| {
                *account == caller.account && filter.as_ref().is_none_or(|id| *id == a.target)
            })
            .map(|((account, name), a)| {
                json!({
                    "AliasName": name,
                    "AliasArn": state.alias_arn(account, name),
                    "TargetKeyId": a.target,
                    "CreationDate": a.created,
                    "LastUpdatedDate": a.created,
                })
            })
            .collect();
        to_json(&page("Aliases", entries, &req)?)
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One page of a list: `Limit` entries after the `Marker` (the index of the next entry).
fn page(member: &str, entries: Vec<Value>, req: &ListInput) -> Result<Value, Fault> {
    let limit = match req.limit {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => usize::try_from(n).unwrap_or(100),
        Some(n) => return Err(Fault::range("limit", n, 1, 1000)),
    };
    let start = match &req.marker {
        None => 0,
        Some(marker) => marker
            .parse::<usize>()
            .ok()
            .filter(|&m| m <= entries.len())
            .ok_or_else(|| {
                Fault::new(
                    "InvalidMarkerException",
                    "The request was rejected because the marker that specifies where \
                     pagination should next begin is not valid.",
                )
            })?,
    };
    let end = start.saturating_add(limit).min(entries.len());
    let truncated = end < entries.len();
    let mut out = json!({
        member: entries.get(start..end).unwrap_or_default(),
        "Truncated": truncated,
    });
    if truncated && let Some(object) = out.as_object_mut() {
        object.insert("NextMarker".to_owned(), json!(end.to_string()));
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdInput {
    key_id: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListInput {
    limit: Option<i64>,
    marker: Option<String>,
    key_id: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutKeyPolicyInput {
    key_id: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    policy_name: Option<String>,
    #[serde(default)]
    bypass_policy_lockout_safety_check: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasInput {
    alias_name: String,
    #[serde(default)]
    target_key_id: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignInput {
    key_id: String,
    #[serde(with = "ccc_sdk::blob::bytes")]
    message: Vec<u8>,
    #[serde(default)]
    message_type: Option<String>,
    signing_algorithm: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateKeyInput {
    policy: Option<String>,
    description: Option<String>,
    key_usage: Option<String>,
    customer_master_key_spec: Option<String>,
    key_spec: Option<String>,
    origin: Option<String>,
    custom_key_store_id: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    multi_region: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_carry_the_trust_mode_and_no_control_characters() {
        let dir = std::env::temp_dir().join(format!(
            "ccc-emulator-log-{}-{}",
            std::process::id(),
            crate::state::uuid().unwrap()
        ));
        let (store, _) = Store::open(&dir.join("state.json"), None).unwrap();
        let service = Service::new(
            store,
            vec![RootOfTrust::InsecureQemuUnsigned],
            TrustMode::InsecureQemuUnsigned,
            Clock::manual(UnixMillis(0)),
            false,
        );
        let fault = Fault::not_found("Alias alias/x\n\u{1b}[2Jforged line is not found.");
        let reply = service.refusal(&fault);
        let note = Note {
            op: Some("Decrypt"),
            principal: Some("arn:aws:iam::111122223333:user/u".into()),
            key: None,
            recipient: Some("UNSIGNED(i-emulated)".into()),
        };
        let line = service.log_text(&reply, &note, Some(&fault));
        assert!(
            line.starts_with(&format!(
                "kms-emulator[INSECURE-qemu-unsigned]: {} Decrypt 400 principal=",
                reply.request_id
            )),
            "{line}"
        );
        assert!(line.contains(" recipient=UNSIGNED(i-emulated) -> NotFoundException: Alias"));
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(reply.date, "Thu, 01 Jan 1970 00:00:00 GMT");
        let _ = std::fs::remove_dir_all(dir);
    }
}
