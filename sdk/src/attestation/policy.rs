//! What an authentic document must also say to be accepted: expected PCRs, nonce, public key,
//! user data, and no debug mode unless explicitly allowed.

use super::document::{Document, MAX_PCR_INDEX};
use super::error::{AttestationError, PolicyError};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Requirements applied after the document's authenticity has been verified.
///
/// The default policy expects no particular PCRs but still rejects debug-mode documents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pcrs: BTreeMap<u8, Vec<u8>>,
    nonce: Option<Vec<u8>>,
    public_key: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
    allow_debug: bool,
}

fn input_error(what: String) -> AttestationError {
    AttestationError::InvalidInput(what)
}

impl Policy {
    /// A policy with no expectations beyond "not debug mode".
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires PCR `index` to equal `value`.
    ///
    /// # Errors
    /// [`AttestationError::InvalidInput`] for an index above 31 or a value that is not 32, 48
    /// or 64 bytes (no PCR could ever match it).
    pub fn expect_pcr(mut self, index: u8, value: &[u8]) -> Result<Self, AttestationError> {
        if index > MAX_PCR_INDEX {
            return Err(input_error(format!("PCR{index}: indices are 0..=31")));
        }
        if !matches!(value.len(), 32 | 48 | 64) {
            return Err(input_error(format!(
                "PCR{index}: {} bytes, PCRs are 32, 48 or 64 bytes (96 hex digits for SHA-384)",
                value.len()
            )));
        }
        self.pcrs.insert(index, value.to_vec());
        Ok(self)
    }

    /// Like [`Policy::expect_pcr`], with the value in hex.
    ///
    /// # Errors
    /// [`AttestationError::InvalidInput`] for bad hex, index or length.
    pub fn expect_pcr_hex(self, index: u8, value: &str) -> Result<Self, AttestationError> {
        let bytes = hex::decode(value.trim())
            .map_err(|e| input_error(format!("PCR{index}: not hex ({e})")))?;
        self.expect_pcr(index, &bytes)
    }

    /// Builds the PCR expectations from a measurements JSON: CCC's release
    /// `pcr-measurements.json` (`{"measurements": {"PCR0": "<hex>", ...}, ...}`) or the output
    /// of `nitro-cli build-enclave` / `describe-eif`
    /// (`{"Measurements": {"HashAlgorithm": ..., "PCR0": "<hex>", ...}}`). Other top-level keys
    /// are ignored; inside the measurements object only `PCR<n>` and `HashAlgorithm` are
    /// allowed (the hash-algorithm string varies between nitro-cli versions and is not
    /// compared).
    ///
    /// # Errors
    /// [`AttestationError::InvalidInput`] naming what is wrong with the JSON.
    pub fn from_measurements_json(json: &str) -> Result<Self, AttestationError> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| input_error(format!("measurements JSON does not parse: {e}")))?;
        let top = value
            .as_object()
            .ok_or_else(|| input_error("measurements JSON is not an object".into()))?;
        let measurements = match (top.get("measurements"), top.get("Measurements")) {
            (Some(m), None) | (None, Some(m)) => m,
            (Some(_), Some(_)) => {
                return Err(input_error(
                    "measurements JSON has both \"measurements\" and \"Measurements\"".into(),
                ));
            }
            (None, None) => {
                return Err(input_error(
                    "measurements JSON has no \"measurements\" (CCC release) or \
                     \"Measurements\" (nitro-cli) object"
                        .into(),
                ));
            }
        };
        let measurements = measurements
            .as_object()
            .ok_or_else(|| input_error("\"measurements\" is not an object".into()))?;
        let mut policy = Self::new();
        for (key, value) in measurements {
            if key == "HashAlgorithm" {
                continue;
            }
            let index = key
                .strip_prefix("PCR")
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|n| *n <= MAX_PCR_INDEX)
                .ok_or_else(|| {
                    input_error(format!(
                        "unexpected measurement key {key:?}; expected PCR0..PCR31 or \
                         HashAlgorithm"
                    ))
                })?;
            let hex = value
                .as_str()
                .ok_or_else(|| input_error(format!("{key} is not a string of hex digits")))?;
            policy = policy.expect_pcr_hex(index, hex)?;
        }
        if policy.pcrs.is_empty() {
            return Err(input_error(
                "measurements JSON lists no PCRs; a policy from it would accept any image".into(),
            ));
        }
        Ok(policy)
    }

    /// Requires the document's nonce to equal `nonce` (the challenge you sent).
    #[must_use]
    pub fn expect_nonce(mut self, nonce: &[u8]) -> Self {
        self.nonce = Some(nonce.to_vec());
        self
    }

    /// Requires the document's `public_key` to equal `key`.
    #[must_use]
    pub fn require_public_key(mut self, key: &[u8]) -> Self {
        self.public_key = Some(key.to_vec());
        self
    }

    /// Requires the document's `user_data` to equal `data`.
    #[must_use]
    pub fn require_user_data(mut self, data: &[u8]) -> Self {
        self.user_data = Some(data.to_vec());
        self
    }

    /// Accepts debug-mode documents (PCR0/1/2 all zero). Development only: a debug enclave's
    /// memory and console are visible to the parent instance.
    #[must_use]
    pub fn allow_debug_mode(mut self) -> Self {
        self.allow_debug = true;
        self
    }

    /// The expected PCRs, by index.
    #[must_use]
    pub fn expected_pcrs(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.pcrs
    }

    /// Checks a (verified) document against this policy: debug mode, then PCRs in index
    /// order, nonce, public key, user data.
    ///
    /// # Errors
    /// The first [`PolicyError`] found.
    pub fn check(&self, doc: &Document<'_>) -> Result<(), PolicyError> {
        if !self.allow_debug && is_debug_mode(doc) {
            return Err(PolicyError::DebugMode);
        }
        for (&index, expected) in &self.pcrs {
            let found = doc.pcrs.get(index);
            if found != Some(expected.as_slice()) {
                return Err(PolicyError::PcrMismatch {
                    index,
                    expected: expected.clone(),
                    found: found.map(<[u8]>::to_vec),
                });
            }
        }
        let mismatch = |want: &Option<Vec<u8>>, have: Option<&[u8]>| match want {
            Some(w) if have != Some(w.as_slice()) => Some((w.clone(), have.map(<[u8]>::to_vec))),
            _ => None,
        };
        if let Some((expected, found)) = mismatch(&self.nonce, doc.nonce) {
            return Err(PolicyError::NonceMismatch { expected, found });
        }
        if let Some((expected, found)) = mismatch(&self.public_key, doc.public_key) {
            return Err(PolicyError::PublicKeyMismatch { expected, found });
        }
        if let Some((expected, found)) = mismatch(&self.user_data, doc.user_data) {
            return Err(PolicyError::UserDataMismatch { expected, found });
        }
        Ok(())
    }
}

/// True when PCR0, PCR1 and PCR2 are all present and all zero, which is what the NSM reports
/// for an enclave started with `--debug-mode` (AWS Nitro Enclaves user guide).
pub(crate) fn is_debug_mode(doc: &Document<'_>) -> bool {
    (0..=2).all(|i| doc.pcrs.get(i).is_some_and(|v| v.iter().all(|&b| b == 0)))
}
