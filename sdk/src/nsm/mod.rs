//! The Nitro Secure Module (NSM): its wire [`codec`], the [`Transport`] seam, the typed
//! [`Nsm`] client, the `/dev/nsm` device (feature `std`) and the signed simulator (feature
//! `simulator`).
//!
//! # Selecting a backend
//! Selection is always explicit and never falls back:
//! - [`Nsm::open`] is the real `/dev/nsm` and nothing else. Outside an enclave it fails with
//!   [`NsmError::DeviceMissing`], whose message says how to select the simulator.
//! - The simulator (feature `simulator`) is built explicitly with `Nsm::simulator(...)` or
//!   chosen from configuration with `NsmBackend::Simulator(...)`; the application announces
//!   it (`simulator::ANNOUNCEMENT`). Its attestation documents chain to a development root
//!   that no production verifier trusts, and its own failures (an expired chain) come back as
//!   [`NsmError::Simulator`] with the reason.
//!
//! # Semantics (Nitro, and the simulator)
//! 32 PCRs of 48 bytes (SHA-384); PCRs 0..=15 are locked at boot; `ExtendPCR` computes
//! `PCR = SHA384(PCR || data)` and fails with [`ErrorCode::ReadOnlyIndex`] on a locked PCR;
//! `LockPCR`/`LockPCRs` lock more. `GetRandom` returns up to [`RANDOM_PER_CALL`] bytes per call,
//! so [`Nsm::random`] calls it as often as needed.

pub mod codec;
#[cfg(test)]
mod codec_tests;

#[cfg(all(feature = "std", target_os = "linux"))]
mod device;
#[cfg(feature = "simulator")]
pub mod simulator;

pub use codec::{CodecError, CodecErrorKind, Description, Digest, ErrorCode, Request, Response};
#[cfg(all(feature = "std", target_os = "linux"))]
pub use device::{DEVICE_PATH, Device};
#[cfg(feature = "simulator")]
pub use simulator::{Clock, Simulator, SimulatorConfig, SimulatorError};

use crate::secret::SecretBytes;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use zeroize::Zeroize;

/// Number of PCRs a Nitro NSM has (`max_pcrs` in `DescribeNSM`; AWS `nsm-check` asserts 32).
pub const PCR_COUNT: u16 = 32;

/// Length of a PCR in bytes (SHA-384).
pub const PCR_LEN: usize = 48;

/// PCRs `0..LOCKED_AT_BOOT` are locked before the enclave's code runs (AWS `nsm-check`
/// asserts the initial `locked_pcrs` is exactly 0..=15).
pub const LOCKED_AT_BOOT: u16 = 16;

/// Most random bytes one `GetRandom` returns: "Returns up to 256 bytes of random data"
/// (`aws-nitro-enclaves-nsm-api` `nsm-lib/src/lib.rs` `nsm_get_random`); QEMU's
/// `virtio-nsm.c` returns exactly `NSM_RND_BUF_SIZE` = 256.
pub const RANDOM_PER_CALL: usize = 256;

/// Most random bytes [`Nsm::random`] gathers in one call (1 MiB): a bound on the number of
/// device round trips, not an NSM limit.
pub const RANDOM_MAX: usize = 1 << 20;

/// A way to exchange one raw CBOR request for one raw CBOR response with an NSM.
///
/// Implemented by the `/dev/nsm` [`Device`] (feature `std`) and the `Simulator` (feature
/// `simulator`). Implementations do not interpret the bytes; [`Nsm`] does.
pub trait Transport: Send + Sync {
    /// Sends `request` (at most [`codec::REQUEST_MAX`] bytes) and returns the response (at most
    /// [`codec::RESPONSE_MAX`] bytes).
    ///
    /// # Errors
    /// [`NsmError::RequestTooLarge`] for an oversized request, [`NsmError::Io`] when the
    /// device call fails.
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, NsmError>;

    /// A short name for messages (`"/dev/nsm"`, `"NSM simulator"`).
    fn name(&self) -> &'static str;
}

/// A shared transport (e.g. an `Arc<Simulator>` kept to read its development root).
impl<T: Transport + ?Sized> Transport for alloc::sync::Arc<T> {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, NsmError> {
        (**self).exchange(request)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }
}

/// Which NSM to use, chosen by configuration. There is no default: the simulator is selected
/// only by naming it.
#[derive(Debug)]
#[non_exhaustive]
pub enum NsmBackend {
    /// The real `/dev/nsm` inside a Nitro Enclave (or QEMU's `nitro-enclave` machine).
    Device,
    /// The signed development simulator (feature `simulator`).
    #[cfg(feature = "simulator")]
    Simulator(SimulatorConfig),
}

/// The state of one PCR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrState {
    /// True if the PCR is locked.
    pub locked: bool,
    /// The PCR's value (48 bytes on Nitro).
    pub value: Vec<u8>,
}

/// A typed NSM client over any [`Transport`].
pub struct Nsm {
    transport: Box<dyn Transport>,
}

impl fmt::Debug for Nsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nsm")
            .field("transport", &self.transport.name())
            .finish()
    }
}

impl Nsm {
    /// Opens the real `/dev/nsm`. Never falls back to anything else.
    ///
    /// # Errors
    /// [`NsmError::DeviceMissing`] outside a Nitro Enclave; [`NsmError::Io`] if the device
    /// exists but cannot be opened.
    #[cfg(all(feature = "std", target_os = "linux"))]
    pub fn open() -> Result<Self, NsmError> {
        Ok(Self::with_transport(Box::new(Device::open()?)))
    }

    /// Uses the given simulator (feature `simulator`).
    #[cfg(feature = "simulator")]
    #[must_use]
    pub fn simulator(simulator: Simulator) -> Self {
        Self::with_transport(Box::new(simulator))
    }

    /// Opens the backend the configuration names.
    ///
    /// # Errors
    /// As [`Nsm::open`] for [`NsmBackend::Device`]; [`NsmError::Simulator`] if the simulator
    /// cannot be built.
    #[cfg(all(feature = "std", target_os = "linux"))]
    pub fn from_backend(backend: NsmBackend) -> Result<Self, NsmError> {
        match backend {
            NsmBackend::Device => Self::open(),
            #[cfg(feature = "simulator")]
            NsmBackend::Simulator(config) => Ok(Self::simulator(
                Simulator::new(config).map_err(NsmError::Simulator)?,
            )),
        }
    }

    /// Uses any transport (for a `no_std` platform's own device access, or tests).
    #[must_use]
    pub fn with_transport(transport: Box<dyn Transport>) -> Self {
        Self { transport }
    }

    /// The transport's name (`"/dev/nsm"` or `"NSM simulator"`).
    #[must_use]
    pub fn backend_name(&self) -> &'static str {
        self.transport.name()
    }

    /// Sends one typed request and returns the typed response, whatever it is (including
    /// [`Response::Error`]).
    ///
    /// # Errors
    /// Transport failures and [`NsmError::Codec`] for a request that cannot be encoded or a
    /// response that cannot be decoded.
    pub fn request(&self, request: &Request) -> Result<Response, NsmError> {
        let mut bytes = request.encode().map_err(|error| match error.kind {
            CodecErrorKind::TooLarge { limit, found } => {
                NsmError::RequestTooLarge { size: found, limit }
            }
            _ => NsmError::Codec(error),
        })?;
        let response = self.transport.exchange(&bytes);
        bytes.zeroize();
        let mut response = response?;
        let decoded = Response::decode(&response).map_err(NsmError::Codec);
        response.zeroize();
        decoded
    }

    fn call(&self, request: &Request) -> Result<Response, NsmError> {
        match self.request(request)? {
            Response::Error(code) => Err(NsmError::Nsm {
                operation: request.wire_name(),
                code,
            }),
            response => Ok(response),
        }
    }

    /// `DescribeNSM`: version, module id, PCR count, locked PCRs, digest.
    ///
    /// # Errors
    /// See [`NsmError`].
    pub fn describe_nsm(&self) -> Result<Description, NsmError> {
        let request = Request::DescribeNsm;
        match self.call(&request)? {
            Response::DescribeNsm(description) => Ok(description),
            other => Err(unexpected(&request, &other)),
        }
    }

    /// `DescribePCR`: whether PCR `index` is locked, and its value.
    ///
    /// # Errors
    /// [`NsmError::Nsm`] with [`ErrorCode::InvalidIndex`] for an index past 31.
    pub fn describe_pcr(&self, index: u16) -> Result<PcrState, NsmError> {
        let request = Request::DescribePcr { index };
        match self.call(&request)? {
            Response::DescribePcr { lock, data } => Ok(PcrState {
                locked: lock,
                value: data,
            }),
            other => Err(unexpected(&request, &other)),
        }
    }

    /// `ExtendPCR`: `PCR[index] = SHA384(PCR[index] || data)`; returns the new value.
    ///
    /// # Errors
    /// [`NsmError::Nsm`] with [`ErrorCode::ReadOnlyIndex`] for a locked PCR (0..=15 always).
    pub fn extend_pcr(&self, index: u16, data: &[u8]) -> Result<Vec<u8>, NsmError> {
        let request = Request::ExtendPcr {
            index,
            data: data.to_vec(),
        };
        match self.call(&request)? {
            Response::ExtendPcr { data } => Ok(data),
            other => Err(unexpected(&request, &other)),
        }
    }

    /// `LockPCR`: makes PCR `index` read-only until the enclave terminates.
    ///
    /// # Errors
    /// [`NsmError::Nsm`] with [`ErrorCode::ReadOnlyIndex`] if it is already locked.
    pub fn lock_pcr(&self, index: u16) -> Result<(), NsmError> {
        let request = Request::LockPcr { index };
        match self.call(&request)? {
            Response::LockPcr => Ok(()),
            other => Err(unexpected(&request, &other)),
        }
    }

    /// `LockPCRs`: locks PCRs `0..range`.
    ///
    /// # Errors
    /// [`NsmError::Nsm`] with [`ErrorCode::InvalidIndex`] if `range` exceeds 32.
    pub fn lock_pcrs(&self, range: u16) -> Result<(), NsmError> {
        let request = Request::LockPcrs { range };
        match self.call(&request)? {
            Response::LockPcrs => Ok(()),
            other => Err(unexpected(&request, &other)),
        }
    }

    /// `Attestation`: a COSE_Sign1 document signed by the NSM, binding the given fields.
    ///
    /// # Errors
    /// [`NsmError::InputTooLarge`] before sending if a field exceeds 1024 bytes
    /// ([`codec::USER_DATA_MAX`], [`codec::NONCE_MAX`], [`codec::PUBLIC_KEY_MAX`]).
    pub fn attestation(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError> {
        for (field, value, limit) in [
            ("user_data", user_data, codec::USER_DATA_MAX),
            ("nonce", nonce, codec::NONCE_MAX),
            ("public_key", public_key, codec::PUBLIC_KEY_MAX),
        ] {
            let found = value.map_or(0, <[u8]>::len);
            if found > limit {
                return Err(NsmError::InputTooLarge {
                    field,
                    limit,
                    found,
                });
            }
        }
        let request = Request::Attestation {
            user_data: user_data.map(<[u8]>::to_vec),
            nonce: nonce.map(<[u8]>::to_vec),
            public_key: public_key.map(<[u8]>::to_vec),
        };
        match self.call(&request)? {
            Response::Attestation { document } => Ok(document),
            other => Err(unexpected(&request, &other)),
        }
    }

    /// `n` random bytes from the NSM, gathered with as many `GetRandom` calls as needed (each
    /// returns up to [`RANDOM_PER_CALL`]).
    ///
    /// # Errors
    /// [`NsmError::InputTooLarge`] if `n` exceeds [`RANDOM_MAX`];
    /// [`NsmError::UnexpectedResponse`] if the NSM returns no bytes.
    pub fn random(&self, n: usize) -> Result<SecretBytes, NsmError> {
        if n > RANDOM_MAX {
            return Err(NsmError::InputTooLarge {
                field: "random length",
                limit: RANDOM_MAX,
                found: n,
            });
        }
        let mut out = SecretBytes::new(Vec::with_capacity(n));
        while out.len() < n {
            let request = Request::GetRandom;
            match self.call(&request)? {
                Response::GetRandom { mut random } => {
                    if random.is_empty() {
                        return Err(NsmError::UnexpectedResponse {
                            operation: "GetRandom",
                            found: "an empty GetRandom response",
                        });
                    }
                    let take = random.len().min(n - out.len());
                    out.expose_mut()
                        .extend_from_slice(random.get(..take).unwrap_or_default());
                    random.zeroize();
                }
                other => return Err(unexpected(&request, &other)),
            }
        }
        Ok(out)
    }
}

fn unexpected(request: &Request, response: &Response) -> NsmError {
    NsmError::UnexpectedResponse {
        operation: request.wire_name(),
        found: response.wire_name(),
    }
}

/// Why an NSM operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum NsmError {
    /// `/dev/nsm` does not exist: not inside a Nitro Enclave, or the kernel lacks `CONFIG_NSM`.
    DeviceMissing,
    /// A system call on the device failed.
    Io {
        /// The operation (`"open /dev/nsm"`, `"ioctl NSM_IOCTL_RAW"`).
        operation: &'static str,
        /// The OS error.
        #[cfg(feature = "std")]
        source: std::io::Error,
    },
    /// The encoded request exceeds the driver's limit.
    RequestTooLarge {
        /// Encoded size.
        size: usize,
        /// [`codec::REQUEST_MAX`].
        limit: usize,
    },
    /// An input exceeds its limit (checked before anything is sent).
    InputTooLarge {
        /// Which input.
        field: &'static str,
        /// Its limit.
        limit: usize,
        /// Its size.
        found: usize,
    },
    /// The NSM answered with an error code.
    Nsm {
        /// The operation (wire name).
        operation: &'static str,
        /// The NSM's error code.
        code: ErrorCode,
    },
    /// The NSM answered with a different kind of response than the request asks for.
    UnexpectedResponse {
        /// The operation (wire name).
        operation: &'static str,
        /// What came back.
        found: &'static str,
    },
    /// The request could not be encoded or the response could not be decoded.
    Codec(CodecError),
    /// The simulator could not be built.
    #[cfg(feature = "simulator")]
    Simulator(SimulatorError),
}

impl fmt::Display for NsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeviceMissing => f.write_str(
                "/dev/nsm not found: not running inside a Nitro Enclave (or the kernel lacks \
                 CONFIG_NSM); for development select the simulator explicitly with \
                 NsmBackend::Simulator or Nsm::simulator (ccc-sdk feature `simulator`)",
            ),
            #[cfg(feature = "std")]
            Self::Io { operation, source } => write!(f, "{operation} failed: {source}"),
            #[cfg(not(feature = "std"))]
            Self::Io { operation } => write!(f, "{operation} failed"),
            Self::RequestTooLarge { size, limit } => write!(
                f,
                "NSM request is {size} bytes, over the driver's limit of {limit} bytes \
                 (shorten user_data, nonce or public_key)"
            ),
            Self::InputTooLarge {
                field,
                limit,
                found,
            } => write!(
                f,
                "{field} is {found} bytes, over the NSM limit of {limit} (hash larger data and \
                 pass the digest)"
            ),
            Self::Nsm { operation, code } => write!(f, "NSM refused {operation}: {code}"),
            Self::UnexpectedResponse { operation, found } => write!(
                f,
                "NSM answered {operation} with {found}: the device or driver is misbehaving"
            ),
            Self::Codec(error) => write!(f, "malformed NSM message: {error}"),
            #[cfg(feature = "simulator")]
            Self::Simulator(error) => write!(f, "NSM simulator: {error}"),
        }
    }
}

impl core::error::Error for NsmError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            #[cfg(feature = "std")]
            Self::Io { source, .. } => Some(source),
            Self::Codec(error) => Some(error),
            #[cfg(feature = "simulator")]
            Self::Simulator(error) => Some(error),
            _ => None,
        }
    }
}
