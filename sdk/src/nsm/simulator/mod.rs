//! The signed NSM simulator (feature `simulator`): the same CBOR protocol as `/dev/nsm`,
//! Nitro's PCR semantics, and attestation documents shaped exactly like real ones but signed by
//! a development chain generated in this process.
//!
//! It is reached only through the same [`Transport`] seam as the device, so every call goes
//! through the codec. The first simulator created in a process prints
//! `NSM SIMULATOR: attestation documents are signed by a development root, not AWS` on stderr.
//!
//! Documents: an untagged COSE_Sign1 array `[h'a1013822', {}, payload, signature]` (protected
//! header `{1: -35}` = ES384), the payload a 9-entry map in the NSM's key order (`module_id`,
//! `digest`, `timestamp`, `pcrs`, `certificate`, `cabundle`, `public_key`, `user_data`,
//! `nonce`) with absent options as `null`, `pcrs` holding every locked PCR (0..=15 plus any
//! locked later: "Map of all locked PCRs at the moment the attestation document was generated",
//! `aws-nitro-enclaves-nsm-api` `AttestationDoc`; QEMU's `virtio-nsm.c` does the same),
//! `cabundle` = `[root, intermediate]` root first, `certificate` = the leaf, which lives
//! [`SimulatorConfig::leaf_validity`] (3 hours by default, like AWS's leaves) and is renewed
//! when it nears expiry. The signature is ECDSA P-384 / SHA-384, raw `r || s`, over
//! `["Signature1", protected, h'', payload]`.

mod chain;
#[cfg(test)]
mod tests;

use super::codec::{self, Description, Digest, ErrorCode, REQUEST_MAX, Request, Response};
use super::{LOCKED_AT_BOOT, NsmError, PCR_COUNT, PCR_LEN, RANDOM_PER_CALL, Transport};
use crate::crypto::{AwsLc, Crypto};
use crate::time::UnixMillis;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use chain::{Chain, Leaf};
use core::fmt;
use core::time::Duration;
use minicbor::Encoder;
use std::sync::{Arc, Mutex};

/// The module id a simulator reports unless configured otherwise; real ones look like
/// `i-0123456789abcdef0-enc0123456789abcdef`.
pub const DEFAULT_MODULE_ID: &str = "i-00000000000000000-enc0000000000simulator";

/// Longest module id accepted (real ones are 39 characters).
pub const MODULE_ID_MAX: usize = 256;

/// The warning an application prints when it selects a simulator (the SDK itself prints
/// nothing: an application's console is its own).
pub const ANNOUNCEMENT: &str =
    "NSM SIMULATOR: attestation documents are signed by a development root, not AWS";

/// The protected COSE header of every NSM document: the map `{1: -35}` (alg ES384).
pub const COSE_PROTECTED: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

/// How far before "now" the root and intermediate become valid, so a verifier whose clock is
/// a little behind still accepts them.
const CHAIN_BACKDATE: Duration = Duration::from_secs(3600);

/// A leaf with less than this left is replaced before it signs.
const LEAF_RENEW_MARGIN: Duration = Duration::from_secs(600);

/// Longest chain validity accepted (X.509 times beyond this need care we do not need).
const CHAIN_VALIDITY_MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Where the simulator's clock comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clock {
    /// The system clock (documents carry the current time, like the NSM's).
    System,
    /// A fixed instant (reproducible documents for tests and fixed-time verification).
    Fixed(UnixMillis),
}

impl Clock {
    fn now(self) -> UnixMillis {
        match self {
            Self::System => UnixMillis::now(),
            Self::Fixed(at) => at,
        }
    }
}

/// How to build a simulator. Start from [`SimulatorConfig::default`] and set fields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimulatorConfig {
    /// Boot-time measurements of PCRs 0..=15 (index → 48-byte value, e.g. an EIF's PCR0/1/2).
    /// PCRs not given are 48 zero bytes, as in a debug-mode enclave.
    pub pcrs: BTreeMap<u16, [u8; PCR_LEN]>,
    /// The `module_id` reported by `DescribeNSM` and written into documents.
    pub module_id: String,
    /// Where `timestamp` and certificate validity come from.
    pub clock: Clock,
    /// How long the root and intermediate are valid after the simulator starts (30 days).
    pub chain_validity: Duration,
    /// How long each leaf is valid (3 hours, like AWS's leaves).
    pub leaf_validity: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            pcrs: BTreeMap::new(),
            module_id: String::from(DEFAULT_MODULE_ID),
            clock: Clock::System,
            chain_validity: Duration::from_secs(30 * 86_400),
            leaf_validity: Duration::from_secs(3 * 3600),
        }
    }
}

impl SimulatorConfig {
    /// Sets the boot-time value of PCR `index` (0..=15).
    #[must_use]
    pub fn with_pcr(mut self, index: u16, value: [u8; PCR_LEN]) -> Self {
        self.pcrs.insert(index, value);
        self
    }

    /// Uses a fixed clock.
    #[must_use]
    pub fn with_fixed_time(mut self, at: UnixMillis) -> Self {
        self.clock = Clock::Fixed(at);
        self
    }
}

/// Why a simulator could not be built or could not sign.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimulatorError {
    /// A boot-time PCR index outside 0..=15 (PCRs 16..=31 start at zero on Nitro; extend
    /// them at run time).
    PcrIndex(u16),
    /// The module id is empty or longer than [`MODULE_ID_MAX`].
    ModuleId(usize),
    /// A validity period is zero, too long, or out of the certificate time range.
    Validity(&'static str),
    /// A key generation or signing operation failed.
    Crypto(&'static str),
    /// The development chain has expired; build a new simulator or a longer `chain_validity`.
    ChainExpired {
        /// When it expired (seconds since the epoch).
        not_after: u64,
    },
}

impl fmt::Display for SimulatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PcrIndex(index) => write!(
                f,
                "boot-time PCR{index} cannot be seeded: only PCRs 0-15 are measured at boot \
                 (extend PCRs 16-31 at run time)"
            ),
            Self::ModuleId(len) => write!(
                f,
                "module_id is {len} characters; it must be 1 to {MODULE_ID_MAX}"
            ),
            Self::Validity(what) => write!(f, "invalid validity period: {what}"),
            Self::Crypto(what) => write!(f, "{what} failed in AWS-LC"),
            Self::ChainExpired { not_after } => write!(
                f,
                "the development chain expired at {not_after} s since the epoch; create a new \
                 simulator (or set a longer chain_validity)"
            ),
        }
    }
}

impl core::error::Error for SimulatorError {}

/// Mutable NSM state.
#[derive(Debug)]
struct State {
    clock: Clock,
    pcrs: [[u8; PCR_LEN]; PCR_COUNT as usize],
    locked: [bool; PCR_COUNT as usize],
    leaf: Option<Leaf>,
}

/// The NSM simulator. Use it through [`super::Nsm::simulator`] (or as a [`Transport`]).
pub struct Simulator {
    module_id: String,
    leaf_validity: Duration,
    /// Shared with [`Simulator::sibling`]s: one hierarchy, many enclaves.
    chain: Arc<Chain>,
    state: Mutex<State>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("module_id", &self.module_id)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

type BootPcrs = (
    [[u8; PCR_LEN]; PCR_COUNT as usize],
    [bool; PCR_COUNT as usize],
);

/// PCRs 0..=15 seeded and locked, the rest zero and open, as the NSM boots them.
fn boot_pcrs(seeds: BTreeMap<u16, [u8; PCR_LEN]>) -> Result<BootPcrs, SimulatorError> {
    let mut pcrs = [[0u8; PCR_LEN]; PCR_COUNT as usize];
    for (index, value) in seeds {
        let slot = pcrs
            .get_mut(usize::from(index))
            .filter(|_| index < LOCKED_AT_BOOT)
            .ok_or(SimulatorError::PcrIndex(index))?;
        *slot = value;
    }
    let mut locked = [false; PCR_COUNT as usize];
    for slot in locked.iter_mut().take(usize::from(LOCKED_AT_BOOT)) {
        *slot = true;
    }
    Ok((pcrs, locked))
}

fn seconds(duration: Duration, what: &'static str) -> Result<u64, SimulatorError> {
    match duration.as_secs() {
        0 => Err(SimulatorError::Validity(what)),
        secs => Ok(secs),
    }
}

impl Simulator {
    /// Builds a simulator: validates the configuration, generates the development root and
    /// intermediate, seeds and locks PCRs 0..=15. The caller announces the choice (see
    /// [`ANNOUNCEMENT`]).
    ///
    /// # Errors
    /// [`SimulatorError`] naming the bad setting, or a crypto failure.
    pub fn new(config: SimulatorConfig) -> Result<Self, SimulatorError> {
        let SimulatorConfig {
            pcrs: seeds,
            module_id,
            clock,
            chain_validity,
            leaf_validity,
        } = config;
        if module_id.is_empty() || module_id.chars().count() > MODULE_ID_MAX {
            return Err(SimulatorError::ModuleId(module_id.chars().count()));
        }
        let chain_secs = seconds(chain_validity, "chain_validity is zero")?;
        seconds(leaf_validity, "leaf_validity is zero")?;
        if chain_validity > CHAIN_VALIDITY_MAX {
            return Err(SimulatorError::Validity("chain_validity exceeds 100 years"));
        }
        let (pcrs, locked) = boot_pcrs(seeds)?;

        let now = clock.now().as_secs();
        let not_before = now.saturating_sub(CHAIN_BACKDATE.as_secs());
        let not_after = now
            .checked_add(chain_secs)
            .ok_or(SimulatorError::Validity("chain end overflows"))?;
        let chain = Arc::new(Chain::generate(not_before, not_after)?);

        Ok(Self {
            module_id,
            leaf_validity,
            chain,
            state: Mutex::new(State {
                clock,
                pcrs,
                locked,
                leaf: None,
            }),
        })
    }

    /// Another enclave on the same simulated hierarchy: `config`'s PCRs, module id, clock and
    /// leaf validity, with documents that chain to this simulator's root and intermediate — as
    /// every real enclave's documents chain to AWS's one root. (`config.chain_validity` is not
    /// used: the chain is this simulator's.) Lets a test stand one development root in for
    /// AWS's while enclaves of different images attest under it.
    ///
    /// # Errors
    /// [`SimulatorError`] naming the bad setting.
    pub fn sibling(&self, config: SimulatorConfig) -> Result<Self, SimulatorError> {
        let SimulatorConfig {
            pcrs: seeds,
            module_id,
            clock,
            chain_validity: _,
            leaf_validity,
        } = config;
        if module_id.is_empty() || module_id.chars().count() > MODULE_ID_MAX {
            return Err(SimulatorError::ModuleId(module_id.chars().count()));
        }
        seconds(leaf_validity, "leaf_validity is zero")?;
        let (pcrs, locked) = boot_pcrs(seeds)?;
        Ok(Self {
            module_id,
            leaf_validity,
            chain: Arc::clone(&self.chain),
            state: Mutex::new(State {
                clock,
                pcrs,
                locked,
                leaf: None,
            }),
        })
    }

    /// The development root certificate (DER), to hand to a verifier as its trust anchor.
    #[must_use]
    pub fn root_der(&self) -> &[u8] {
        self.chain.root_der()
    }

    /// The development root certificate (PEM).
    #[must_use]
    pub fn root_pem(&self) -> &str {
        self.chain.root_pem()
    }

    /// The intermediate certificate (DER), `cabundle[1]` of every document.
    #[must_use]
    pub fn intermediate_der(&self) -> &[u8] {
        self.chain.intermediate_der()
    }

    /// The module id.
    #[must_use]
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// Changes the clock, e.g. to move a fixed clock forward and see leaves renewed or the
    /// chain expire. Keep an `Arc<Simulator>` to call this while an `Nsm` uses it.
    pub fn set_clock(&self, clock: Clock) {
        // A poisoned lock means a panic elsewhere; the clock is plain data, so carry on.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.clock = clock;
    }

    /// Answers one decoded request, as the NSM would; `Err` when the simulator itself cannot
    /// (its chain expired, signing failed).
    fn handle(&self, request: Request) -> Result<Response, SimulatorError> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(Response::Error(ErrorCode::InternalError));
        };
        let state = &mut *state;
        Ok(match request {
            Request::DescribeNsm => Response::DescribeNsm(Description {
                version_major: 1,
                version_minor: 0,
                version_patch: 0,
                module_id: self.module_id.clone(),
                max_pcrs: PCR_COUNT,
                locked_pcrs: locked_set(&state.locked),
                digest: Digest::Sha384,
            }),
            Request::DescribePcr { index } => {
                match (
                    state.pcrs.get(usize::from(index)),
                    state.locked.get(usize::from(index)),
                ) {
                    (Some(value), Some(lock)) => Response::DescribePcr {
                        lock: *lock,
                        data: value.to_vec(),
                    },
                    _ => Response::Error(ErrorCode::InvalidIndex),
                }
            }
            Request::ExtendPcr { index, data } => {
                let slot = usize::from(index);
                match (state.pcrs.get_mut(slot), state.locked.get(slot)) {
                    (Some(_), Some(true)) => Response::Error(ErrorCode::ReadOnlyIndex),
                    (Some(value), Some(false)) => {
                        *value = AwsLc.sha384(&[value.as_slice(), &data]);
                        Response::ExtendPcr {
                            data: value.to_vec(),
                        }
                    }
                    _ => Response::Error(ErrorCode::InvalidIndex),
                }
            }
            Request::LockPcr { index } => match state.locked.get_mut(usize::from(index)) {
                Some(lock) if *lock => Response::Error(ErrorCode::ReadOnlyIndex),
                Some(lock) => {
                    *lock = true;
                    Response::LockPcr
                }
                None => Response::Error(ErrorCode::InvalidIndex),
            },
            Request::LockPcrs { range } => {
                if range > PCR_COUNT {
                    Response::Error(ErrorCode::InvalidIndex)
                } else {
                    for lock in state.locked.iter_mut().take(usize::from(range)) {
                        *lock = true;
                    }
                    Response::LockPcrs
                }
            }
            Request::GetRandom => {
                let mut random = alloc::vec![0u8; RANDOM_PER_CALL];
                match AwsLc.fill_random(&mut random) {
                    Ok(()) => Response::GetRandom { random },
                    Err(_) => Response::Error(ErrorCode::InternalError),
                }
            }
            Request::Attestation {
                user_data,
                nonce,
                public_key,
            } => {
                let too_large = [
                    (user_data.as_deref(), codec::USER_DATA_MAX),
                    (nonce.as_deref(), codec::NONCE_MAX),
                    (public_key.as_deref(), codec::PUBLIC_KEY_MAX),
                ]
                .into_iter()
                .any(|(value, limit)| value.is_some_and(|v| v.len() > limit));
                if too_large {
                    return Ok(Response::Error(ErrorCode::InputTooLarge));
                }
                let fields = Optional {
                    public_key: public_key.as_deref(),
                    user_data: user_data.as_deref(),
                    nonce: nonce.as_deref(),
                };
                // A failure of the simulator itself (its chain expired, signing failed) is
                // the caller's to see, with the reason, not an anonymous InternalError.
                Response::Attestation {
                    document: self.attest(state, &fields)?,
                }
            }
        })
    }

    /// Builds and signs one attestation document.
    fn attest(&self, state: &mut State, fields: &Optional<'_>) -> Result<Vec<u8>, SimulatorError> {
        let timestamp = state.clock.now();
        let now = timestamp.as_secs();
        if now >= self.chain.not_after {
            return Err(SimulatorError::ChainExpired {
                not_after: self.chain.not_after,
            });
        }
        let renew = state.leaf.as_ref().is_none_or(|leaf| {
            now < leaf.not_before
                || now.saturating_add(LEAF_RENEW_MARGIN.as_secs()) >= leaf.not_after
        });
        if renew {
            let not_after = now
                .saturating_add(self.leaf_validity.as_secs())
                .min(self.chain.not_after);
            state.leaf = Some(self.chain.issue_leaf(&self.module_id, now, not_after)?);
        }
        let leaf = state
            .leaf
            .as_ref()
            .ok_or(SimulatorError::Crypto("leaf issuance"))?;

        let pcrs: Vec<(u16, &[u8])> = (0..PCR_COUNT)
            .zip(state.pcrs.iter().zip(state.locked.iter()))
            .filter(|(_, (_, locked))| **locked)
            .map(|(index, (value, _))| (index, value.as_slice()))
            .collect();
        let payload = encode_payload(&Payload {
            module_id: &self.module_id,
            timestamp,
            pcrs: &pcrs,
            certificate: &leaf.der,
            cabundle: &[self.chain.root_der(), self.chain.intermediate_der()],
            fields,
        })?;
        let signature = leaf.key.sign(&sig_structure(&COSE_PROTECTED, &payload)?)?;
        cose_sign1(&COSE_PROTECTED, &payload, &signature)
    }
}

fn locked_set(locked: &[bool]) -> BTreeSet<u16> {
    (0..PCR_COUNT)
        .zip(locked)
        .filter(|(_, lock)| **lock)
        .map(|(index, _)| index)
        .collect()
}

impl Transport for Simulator {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, NsmError> {
        // The driver refuses oversized requests before they reach the device.
        if request.len() > REQUEST_MAX {
            return Err(NsmError::RequestTooLarge {
                size: request.len(),
                limit: REQUEST_MAX,
            });
        }
        // A request the NSM cannot parse is answered with InvalidOperation (as QEMU's
        // virtio-nsm does).
        let response = match Request::decode(request) {
            Ok(request) => self.handle(request).map_err(NsmError::Simulator)?,
            Err(_) => Response::Error(ErrorCode::InvalidOperation),
        };
        response
            .encode()
            .or_else(|_| Response::Error(ErrorCode::InternalError).encode())
            .map_err(NsmError::Codec)
    }

    fn name(&self) -> &'static str {
        "NSM simulator"
    }
}

/// The optional, caller-supplied fields of a document.
struct Optional<'a> {
    public_key: Option<&'a [u8]>,
    user_data: Option<&'a [u8]>,
    nonce: Option<&'a [u8]>,
}

/// Everything in an attestation payload.
struct Payload<'a> {
    module_id: &'a str,
    timestamp: UnixMillis,
    pcrs: &'a [(u16, &'a [u8])],
    certificate: &'a [u8],
    cabundle: &'a [&'a [u8]],
    fields: &'a Optional<'a>,
}

type Written = Result<(), minicbor::encode::Error<core::convert::Infallible>>;

fn encoded(written: Written, e: Encoder<Vec<u8>>) -> Result<Vec<u8>, SimulatorError> {
    written.map_err(|_| SimulatorError::Crypto("CBOR encoding of the document"))?;
    Ok(e.into_writer())
}

fn bytes_or_null(e: &mut Encoder<Vec<u8>>, value: Option<&[u8]>) -> Written {
    match value {
        Some(bytes) => e.bytes(bytes)?,
        None => e.null()?,
    };
    Ok(())
}

/// The payload map, keys in the NSM's order.
fn encode_payload(p: &Payload<'_>) -> Result<Vec<u8>, SimulatorError> {
    let mut e = Encoder::new(Vec::new());
    let written = (|| -> Written {
        e.map(9)?;
        e.str("module_id")?.str(p.module_id)?;
        e.str("digest")?.str(Digest::Sha384.wire_name())?;
        e.str("timestamp")?.u64(p.timestamp.0)?;
        e.str("pcrs")?.map(p.pcrs.len() as u64)?;
        for (index, value) in p.pcrs {
            e.u16(*index)?.bytes(value)?;
        }
        e.str("certificate")?.bytes(p.certificate)?;
        e.str("cabundle")?.array(p.cabundle.len() as u64)?;
        for certificate in p.cabundle {
            e.bytes(certificate)?;
        }
        e.str("public_key")?;
        bytes_or_null(&mut e, p.fields.public_key)?;
        e.str("user_data")?;
        bytes_or_null(&mut e, p.fields.user_data)?;
        e.str("nonce")?;
        bytes_or_null(&mut e, p.fields.nonce)
    })();
    encoded(written, e)
}

/// The COSE `Sig_structure` for a COSE_Sign1 with no external AAD (RFC 9052 §4.4).
fn sig_structure(protected: &[u8], payload: &[u8]) -> Result<Vec<u8>, SimulatorError> {
    let mut e = Encoder::new(Vec::new());
    let written = e
        .array(4)
        .and_then(|e| e.str("Signature1"))
        .and_then(|e| e.bytes(protected))
        .and_then(|e| e.bytes(&[]))
        .and_then(|e| e.bytes(payload))
        .map(drop);
    encoded(written, e)
}

/// The untagged COSE_Sign1 array, as the NSM emits it.
fn cose_sign1(
    protected: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> Result<Vec<u8>, SimulatorError> {
    let mut e = Encoder::new(Vec::new());
    let written = e
        .array(4)
        .and_then(|e| e.bytes(protected))
        .and_then(|e| e.map(0))
        .and_then(|e| e.bytes(payload))
        .and_then(|e| e.bytes(signature))
        .map(drop);
    encoded(written, e)
}
