//! The NSM wire format: CBOR requests and responses, both directions, with named size limits.
//!
//! The format is the one AWS's `aws-nitro-enclaves-nsm-api` crate produces with `serde_cbor`:
//! externally tagged enums, so a unit variant is a text string (`"DescribeNSM"`), a struct
//! variant is a one-entry map from its name to a map of its fields (`{"DescribePCR":
//! {"index": 3}}`), and the error response is `{"Error": "ReadOnlyIndex"}`. Byte fields are
//! CBOR byte strings, absent options are CBOR `null`, integers use the shortest encoding. The
//! encoders here write fields in the same order as that crate, so the bytes are identical (the
//! tests check this against the crate itself).
//!
//! The decoders accept what any conforming encoder may send: map entries in any order,
//! definite or indefinite lengths (the NSM itself switched its attestation payload to an
//! indefinite-length map in 2025), unknown fields skipped. They reject duplicate or missing
//! fields, wrong types, oversized input and trailing bytes, and never panic.

use alloc::borrow::Cow;
use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

/// Largest CBOR request the NSM driver accepts: `NSM_REQUEST_MAX_SIZE` = 0x1000 in Linux
/// `include/uapi/linux/nsm.h` (and in `aws-nitro-enclaves-nsm-api` `src/driver/mod.rs`). The
/// driver fails larger requests with `EMSGSIZE`.
pub const REQUEST_MAX: usize = 0x1000;

/// Largest CBOR response the NSM produces: `NSM_RESPONSE_MAX_SIZE` = 0x3000 in Linux
/// `include/uapi/linux/nsm.h`; the driver's and QEMU's response buffers have exactly this size.
pub const RESPONSE_MAX: usize = 0x3000;

/// Largest `user_data` in an attestation request. The AWS attestation specification
/// (`aws-nitro-enclaves-nsm-api` `docs/attestation_process.md`) gives 1024 in its CDDL, and
/// AWS's own `nsm-check` test sends 1024-byte `user_data`, `nonce` and `public_key` together.
pub const USER_DATA_MAX: usize = 1024;

/// Largest `nonce` in an attestation request (same sources as [`USER_DATA_MAX`]).
pub const NONCE_MAX: usize = 1024;

/// Largest `public_key` in an attestation request (same sources as [`USER_DATA_MAX`]).
pub const PUBLIC_KEY_MAX: usize = 1024;

/// The error codes an NSM returns (`aws-nitro-enclaves-nsm-api` `src/api/mod.rs` `ErrorCode`).
/// On the wire each is its name as a CBOR text string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No error (defined by the API, never sent by a working NSM in an error response).
    Success,
    /// An argument was invalid.
    InvalidArgument,
    /// The PCR index is outside `0..max_pcrs`.
    InvalidIndex,
    /// The response does not correspond to the request.
    InvalidResponse,
    /// The PCR is locked (read-only); PCRs 0..=15 are locked at boot.
    ReadOnlyIndex,
    /// The operation is not possible (also the answer to a malformed request).
    InvalidOperation,
    /// The output buffer was too small.
    BufferTooSmall,
    /// An input was too large.
    InputTooLarge,
    /// The NSM failed internally.
    InternalError,
}

impl ErrorCode {
    /// Every code, in the order the API defines them.
    pub const ALL: [Self; 9] = [
        Self::Success,
        Self::InvalidArgument,
        Self::InvalidIndex,
        Self::InvalidResponse,
        Self::ReadOnlyIndex,
        Self::InvalidOperation,
        Self::BufferTooSmall,
        Self::InputTooLarge,
        Self::InternalError,
    ];

    /// The name on the wire (`"ReadOnlyIndex"`).
    #[must_use]
    pub const fn wire_name(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::InvalidArgument => "InvalidArgument",
            Self::InvalidIndex => "InvalidIndex",
            Self::InvalidResponse => "InvalidResponse",
            Self::ReadOnlyIndex => "ReadOnlyIndex",
            Self::InvalidOperation => "InvalidOperation",
            Self::BufferTooSmall => "BufferTooSmall",
            Self::InputTooLarge => "InputTooLarge",
            Self::InternalError => "InternalError",
        }
    }

    /// The code with this wire name, if there is one.
    #[must_use]
    pub fn from_wire_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.wire_name() == name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meaning = match self {
            Self::Success => "success",
            Self::InvalidArgument => "an argument is invalid",
            Self::InvalidIndex => "the PCR index is out of range (0..=31)",
            Self::InvalidResponse => "the response does not match the request",
            Self::ReadOnlyIndex => {
                "the PCR is locked (PCRs 0-15 are locked at boot; extend and lock PCRs 16-31)"
            }
            Self::InvalidOperation => "the operation is not possible or the request is malformed",
            Self::BufferTooSmall => "the output buffer is too small",
            Self::InputTooLarge => "an input is too large",
            Self::InternalError => "the NSM failed internally",
        };
        write!(f, "{} ({meaning})", self.wire_name())
    }
}

/// The hash a PCR bank uses. On the wire, `"SHA256"`, `"SHA384"` or `"SHA512"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Digest {
    /// SHA-256 (32-byte PCRs).
    Sha256,
    /// SHA-384 (48-byte PCRs), what every Nitro NSM reports.
    Sha384,
    /// SHA-512 (64-byte PCRs).
    Sha512,
}

impl Digest {
    /// The name on the wire (`"SHA384"`).
    #[must_use]
    pub const fn wire_name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }

    /// The digest with this wire name, if there is one.
    #[must_use]
    pub fn from_wire_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|digest| digest.wire_name() == name)
    }

    /// Length of one PCR in bytes.
    #[must_use]
    pub const fn pcr_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// A request to the NSM.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Read PCR `index` (wire name `DescribePCR`).
    DescribePcr {
        /// PCR index.
        index: u16,
    },
    /// Extend PCR `index` with `data`: `PCR = SHA384(PCR || data)` (wire name `ExtendPCR`).
    ExtendPcr {
        /// PCR index.
        index: u16,
        /// Data to extend the PCR with.
        data: Vec<u8>,
    },
    /// Lock PCR `index` against further extension (wire name `LockPCR`).
    LockPcr {
        /// PCR index.
        index: u16,
    },
    /// Lock PCRs `0..range` (wire name `LockPCRs`).
    LockPcrs {
        /// One past the last PCR to lock.
        range: u16,
    },
    /// Describe the NSM: version, PCR count, locked PCRs, digest (wire name `DescribeNSM`).
    DescribeNsm,
    /// Produce a signed attestation document with the optional fields included.
    Attestation {
        /// Application data bound into the document.
        user_data: Option<Vec<u8>>,
        /// A verifier's nonce bound into the document.
        nonce: Option<Vec<u8>>,
        /// A public key bound into the document (KMS expects a DER SubjectPublicKeyInfo).
        public_key: Option<Vec<u8>>,
    },
    /// Random bytes from the NSM (up to 256 per call).
    GetRandom,
}

impl Request {
    /// The operation's name on the wire (`"ExtendPCR"`).
    #[must_use]
    pub const fn wire_name(&self) -> &'static str {
        match self {
            Self::DescribePcr { .. } => "DescribePCR",
            Self::ExtendPcr { .. } => "ExtendPCR",
            Self::LockPcr { .. } => "LockPCR",
            Self::LockPcrs { .. } => "LockPCRs",
            Self::DescribeNsm => "DescribeNSM",
            Self::Attestation { .. } => "Attestation",
            Self::GetRandom => "GetRandom",
        }
    }

    /// Encodes the request as CBOR.
    ///
    /// # Errors
    /// [`CodecErrorKind::TooLarge`] if the encoding exceeds [`REQUEST_MAX`] (the driver would
    /// refuse it with `EMSGSIZE`).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut e = Encoder::new(Vec::new());
        let written = match self {
            Self::DescribeNsm | Self::GetRandom => e.str(self.wire_name()).map(drop),
            Self::DescribePcr { index } | Self::LockPcr { index } => e
                .map(1)
                .and_then(|e| e.str(self.wire_name()))
                .and_then(|e| e.map(1))
                .and_then(|e| e.str("index"))
                .and_then(|e| e.u16(*index))
                .map(drop),
            Self::LockPcrs { range } => e
                .map(1)
                .and_then(|e| e.str("LockPCRs"))
                .and_then(|e| e.map(1))
                .and_then(|e| e.str("range"))
                .and_then(|e| e.u16(*range))
                .map(drop),
            Self::ExtendPcr { index, data } => e
                .map(1)
                .and_then(|e| e.str("ExtendPCR"))
                .and_then(|e| e.map(2))
                .and_then(|e| e.str("index"))
                .and_then(|e| e.u16(*index))
                .and_then(|e| e.str("data"))
                .and_then(|e| e.bytes(data))
                .map(drop),
            Self::Attestation {
                user_data,
                nonce,
                public_key,
            } => e
                .map(1)
                .and_then(|e| e.str("Attestation"))
                .and_then(|e| e.map(3))
                .and_then(|e| e.str("user_data"))
                .and_then(|e| optional_bytes(e, user_data.as_deref()))
                .and_then(|e| e.str("nonce"))
                .and_then(|e| optional_bytes(e, nonce.as_deref()))
                .and_then(|e| e.str("public_key"))
                .and_then(|e| optional_bytes(e, public_key.as_deref()))
                .map(drop),
        };
        finish(written, e, REQUEST_MAX)
    }

    /// Decodes a CBOR request (what the simulator, standing in for the NSM, receives).
    ///
    /// # Errors
    /// [`CodecError`] with the byte offset and the check that failed.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes, REQUEST_MAX)?;
        let request = match r.variant()? {
            (name, None) => match &*name {
                "DescribeNSM" => Self::DescribeNsm,
                "GetRandom" => Self::GetRandom,
                _ => return Err(r.unknown_variant(&name)),
            },
            (name, Some(at)) => match &*name {
                "DescribePCR" => {
                    let [index] = r.fields("DescribePCR", ["index"])?;
                    Self::DescribePcr {
                        index: r.required_u16(index, "DescribePCR", "index", at)?,
                    }
                }
                "LockPCR" => {
                    let [index] = r.fields("LockPCR", ["index"])?;
                    Self::LockPcr {
                        index: r.required_u16(index, "LockPCR", "index", at)?,
                    }
                }
                "LockPCRs" => {
                    let [range] = r.fields("LockPCRs", ["range"])?;
                    Self::LockPcrs {
                        range: r.required_u16(range, "LockPCRs", "range", at)?,
                    }
                }
                "ExtendPCR" => {
                    let [index, data] = r.fields("ExtendPCR", ["index", "data"])?;
                    Self::ExtendPcr {
                        index: r.required_u16(index, "ExtendPCR", "index", at)?,
                        data: r.required_bytes(data, "ExtendPCR", "data", at)?,
                    }
                }
                "Attestation" => {
                    let [user_data, nonce, public_key] =
                        r.fields("Attestation", ["user_data", "nonce", "public_key"])?;
                    Self::Attestation {
                        user_data: r.optional_bytes(user_data)?,
                        nonce: r.optional_bytes(nonce)?,
                        public_key: r.optional_bytes(public_key)?,
                    }
                }
                _ => return Err(r.unknown_variant(&name)),
            },
        };
        r.finish()?;
        Ok(request)
    }
}

/// What `DescribeNSM` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// Major version (breaking changes).
    pub version_major: u16,
    /// Minor version.
    pub version_minor: u16,
    /// Patch version.
    pub version_patch: u16,
    /// The NSM's identifier (`i-<instance>-enc<enclave>` on Nitro).
    pub module_id: String,
    /// Number of PCRs (32 on Nitro).
    pub max_pcrs: u16,
    /// The PCRs that are locked.
    pub locked_pcrs: BTreeSet<u16>,
    /// The PCR bank's hash.
    pub digest: Digest,
}

/// A response from the NSM.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// The state of one PCR (wire name `DescribePCR`).
    DescribePcr {
        /// True if the PCR is locked.
        lock: bool,
        /// The PCR's value.
        data: Vec<u8>,
    },
    /// The PCR's value after the extension (wire name `ExtendPCR`).
    ExtendPcr {
        /// The new value.
        data: Vec<u8>,
    },
    /// The PCR was locked (wire name `LockPCR`).
    LockPcr,
    /// The PCRs were locked (wire name `LockPCRs`).
    LockPcrs,
    /// The NSM's description (wire name `DescribeNSM`).
    DescribeNsm(Description),
    /// A COSE_Sign1 attestation document.
    Attestation {
        /// The document bytes.
        document: Vec<u8>,
    },
    /// Random bytes.
    GetRandom {
        /// The bytes (256 per call on Nitro and in QEMU).
        random: Vec<u8>,
    },
    /// The NSM refused the request.
    Error(ErrorCode),
}

impl Response {
    /// The response's name on the wire (`"DescribePCR"`, `"Error"`).
    #[must_use]
    pub const fn wire_name(&self) -> &'static str {
        match self {
            Self::DescribePcr { .. } => "DescribePCR",
            Self::ExtendPcr { .. } => "ExtendPCR",
            Self::LockPcr => "LockPCR",
            Self::LockPcrs => "LockPCRs",
            Self::DescribeNsm(_) => "DescribeNSM",
            Self::Attestation { .. } => "Attestation",
            Self::GetRandom { .. } => "GetRandom",
            Self::Error(_) => "Error",
        }
    }

    /// Encodes the response as CBOR (what the simulator, standing in for the NSM, sends).
    ///
    /// # Errors
    /// [`CodecErrorKind::TooLarge`] if the encoding exceeds [`RESPONSE_MAX`].
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut e = Encoder::new(Vec::new());
        let name = self.wire_name();
        let written = match self {
            Self::LockPcr | Self::LockPcrs => e.str(name).map(drop),
            Self::DescribePcr { lock, data } => e
                .map(1)
                .and_then(|e| e.str(name))
                .and_then(|e| e.map(2))
                .and_then(|e| e.str("lock"))
                .and_then(|e| e.bool(*lock))
                .and_then(|e| e.str("data"))
                .and_then(|e| e.bytes(data))
                .map(drop),
            Self::ExtendPcr { data } => one_bytes_field(&mut e, name, "data", data),
            Self::Attestation { document } => one_bytes_field(&mut e, name, "document", document),
            Self::GetRandom { random } => one_bytes_field(&mut e, name, "random", random),
            Self::Error(code) => e
                .map(1)
                .and_then(|e| e.str(name))
                .and_then(|e| e.str(code.wire_name()))
                .map(drop),
            Self::DescribeNsm(d) => e
                .map(1)
                .and_then(|e| e.str(name))
                .and_then(|e| e.map(7))
                .and_then(|e| e.str("version_major"))
                .and_then(|e| e.u16(d.version_major))
                .and_then(|e| e.str("version_minor"))
                .and_then(|e| e.u16(d.version_minor))
                .and_then(|e| e.str("version_patch"))
                .and_then(|e| e.u16(d.version_patch))
                .and_then(|e| e.str("module_id"))
                .and_then(|e| e.str(&d.module_id))
                .and_then(|e| e.str("max_pcrs"))
                .and_then(|e| e.u16(d.max_pcrs))
                .and_then(|e| e.str("locked_pcrs"))
                .and_then(|e| e.array(d.locked_pcrs.len() as u64))
                .and_then(|e| d.locked_pcrs.iter().try_fold(e, |e, pcr| e.u16(*pcr)))
                .and_then(|e| e.str("digest"))
                .and_then(|e| e.str(d.digest.wire_name()))
                .map(drop),
        };
        finish(written, e, RESPONSE_MAX)
    }

    /// Decodes a CBOR response (what the client receives from the NSM).
    ///
    /// # Errors
    /// [`CodecError`] with the byte offset and the check that failed.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes, RESPONSE_MAX)?;
        let response = match r.variant()? {
            (name, None) => match &*name {
                "LockPCR" => Self::LockPcr,
                "LockPCRs" => Self::LockPcrs,
                _ => return Err(r.unknown_variant(&name)),
            },
            (name, Some(at)) => match &*name {
                "Error" => {
                    let offset = r.offset();
                    let code = r.text()?;
                    Self::Error(ErrorCode::from_wire_name(&code).ok_or_else(|| {
                        CodecError::new(offset, CodecErrorKind::UnknownErrorCode(clip(&code)))
                    })?)
                }
                "DescribePCR" => {
                    let [lock, data] = r.fields("DescribePCR", ["lock", "data"])?;
                    Self::DescribePcr {
                        lock: r.required_bool(lock, "DescribePCR", "lock", at)?,
                        data: r.required_bytes(data, "DescribePCR", "data", at)?,
                    }
                }
                "ExtendPCR" => {
                    let [data] = r.fields("ExtendPCR", ["data"])?;
                    Self::ExtendPcr {
                        data: r.required_bytes(data, "ExtendPCR", "data", at)?,
                    }
                }
                "Attestation" => {
                    let [document] = r.fields("Attestation", ["document"])?;
                    Self::Attestation {
                        document: r.required_bytes(document, "Attestation", "document", at)?,
                    }
                }
                "GetRandom" => {
                    let [random] = r.fields("GetRandom", ["random"])?;
                    Self::GetRandom {
                        random: r.required_bytes(random, "GetRandom", "random", at)?,
                    }
                }
                "DescribeNSM" => Self::DescribeNsm(r.description(at)?),
                _ => return Err(r.unknown_variant(&name)),
            },
        };
        r.finish()?;
        Ok(response)
    }
}

/// Why bytes could not be encoded or decoded as an NSM message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError {
    /// Byte offset in the input where the check failed (0 for encoding errors).
    pub offset: usize,
    /// Which check failed.
    pub kind: CodecErrorKind,
}

/// The check that failed, with what was expected and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecErrorKind {
    /// The message is larger than the NSM allows.
    TooLarge {
        /// The limit ([`REQUEST_MAX`] or [`RESPONSE_MAX`]).
        limit: usize,
        /// The size found.
        found: usize,
    },
    /// The CBOR ended early.
    Truncated,
    /// A CBOR item of the wrong type (or malformed CBOR); the payload names what was expected.
    Malformed(&'static str),
    /// A text string that is not UTF-8.
    InvalidUtf8,
    /// The operation name is not one this codec knows (clipped to 64 characters).
    UnknownOperation(String),
    /// The error response names a code this codec does not know (clipped to 64 characters).
    UnknownErrorCode(String),
    /// The digest name is not SHA256, SHA384 or SHA512 (clipped to 64 characters).
    UnknownDigest(String),
    /// A required field is missing.
    MissingField {
        /// The operation.
        operation: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field appears twice.
    DuplicateField {
        /// The operation.
        operation: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A unit operation was sent as a map, or a struct operation as a bare name.
    WrongShape {
        /// The operation.
        operation: String,
    },
    /// A top-level enum map with other than exactly one entry.
    NotOneEntry,
    /// Bytes after the message.
    TrailingBytes,
    /// The CBOR encoder failed.
    Encode,
}

impl CodecError {
    fn new(offset: usize, kind: CodecErrorKind) -> Self {
        Self { offset, kind }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NSM message, byte {}: ", self.offset)?;
        match &self.kind {
            CodecErrorKind::TooLarge { limit, found } => {
                write!(f, "{found} bytes exceed the NSM limit of {limit} bytes")
            }
            CodecErrorKind::Truncated => f.write_str("the CBOR ends early (truncated message)"),
            CodecErrorKind::Malformed(expected) => write!(f, "expected {expected}"),
            CodecErrorKind::InvalidUtf8 => f.write_str("text string is not valid UTF-8"),
            CodecErrorKind::UnknownOperation(name) => {
                write!(f, "unknown NSM operation {name:?}")
            }
            CodecErrorKind::UnknownErrorCode(name) => {
                write!(f, "unknown NSM error code {name:?}")
            }
            CodecErrorKind::UnknownDigest(name) => {
                write!(
                    f,
                    "unknown digest {name:?}, expected SHA256, SHA384 or SHA512"
                )
            }
            CodecErrorKind::MissingField { operation, field } => {
                write!(f, "{operation} lacks its required field {field:?}")
            }
            CodecErrorKind::DuplicateField { operation, field } => {
                write!(f, "{operation} has field {field:?} twice")
            }
            CodecErrorKind::WrongShape { operation } => write!(
                f,
                "{operation:?} has the wrong shape (unit operations are bare text strings, \
                 the others a one-entry map to their fields)"
            ),
            CodecErrorKind::NotOneEntry => {
                f.write_str("the message map must have exactly one entry (the operation)")
            }
            CodecErrorKind::TrailingBytes => f.write_str("bytes after the end of the message"),
            CodecErrorKind::Encode => f.write_str("CBOR encoding failed"),
        }
    }
}

impl core::error::Error for CodecError {}

type EncodeResult<'a> =
    Result<&'a mut Encoder<Vec<u8>>, minicbor::encode::Error<core::convert::Infallible>>;

fn optional_bytes<'a>(e: &'a mut Encoder<Vec<u8>>, value: Option<&[u8]>) -> EncodeResult<'a> {
    match value {
        Some(bytes) => e.bytes(bytes),
        None => e.null(),
    }
}

fn one_bytes_field(
    e: &mut Encoder<Vec<u8>>,
    name: &str,
    field: &str,
    value: &[u8],
) -> Result<(), minicbor::encode::Error<core::convert::Infallible>> {
    e.map(1)?.str(name)?.map(1)?.str(field)?.bytes(value)?;
    Ok(())
}

fn finish(
    written: Result<(), minicbor::encode::Error<core::convert::Infallible>>,
    e: Encoder<Vec<u8>>,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    written.map_err(|_| CodecError::new(0, CodecErrorKind::Encode))?;
    let bytes = e.into_writer();
    if bytes.len() > limit {
        return Err(CodecError::new(
            0,
            CodecErrorKind::TooLarge {
                limit,
                found: bytes.len(),
            },
        ));
    }
    Ok(bytes)
}

/// Longest name echoed back in an error message.
const ECHO_MAX: usize = 64;

fn clip(text: &str) -> String {
    text.chars().take(ECHO_MAX).collect()
}

/// A field seen in a struct variant: where its value starts.
type FieldAt = Option<usize>;

/// A cursor over one message. Fields are located first (any order, unknown ones skipped,
/// duplicates rejected), then decoded by offset, so no field is read twice.
struct Reader<'b> {
    d: Decoder<'b>,
    outer: Outer,
}

/// The enum map around a struct variant, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outer {
    /// A bare name: no map.
    None,
    /// `0xa1`: one entry, nothing to close.
    Definite,
    /// `0xbf`: one entry, then a break byte.
    Indefinite,
}

impl<'b> Reader<'b> {
    fn new(bytes: &'b [u8], limit: usize) -> Result<Self, CodecError> {
        if bytes.len() > limit {
            return Err(CodecError::new(
                0,
                CodecErrorKind::TooLarge {
                    limit,
                    found: bytes.len(),
                },
            ));
        }
        Ok(Self {
            d: Decoder::new(bytes),
            outer: Outer::None,
        })
    }

    fn offset(&self) -> usize {
        self.d.position()
    }

    fn cbor_error(&self, error: &minicbor::decode::Error, expected: &'static str) -> CodecError {
        let offset = error.position().unwrap_or_else(|| self.offset());
        let kind = if error.is_end_of_input() {
            CodecErrorKind::Truncated
        } else {
            CodecErrorKind::Malformed(expected)
        };
        CodecError::new(offset, kind)
    }

    fn datatype(&self) -> Result<Type, CodecError> {
        self.d
            .datatype()
            .map_err(|e| self.cbor_error(&e, "a CBOR item"))
    }

    /// Reads a text string of definite or indefinite length.
    fn text(&mut self) -> Result<Cow<'b, str>, CodecError> {
        let start = self.offset();
        match self.datatype()? {
            Type::String => self
                .d
                .str()
                .map(Cow::Borrowed)
                .map_err(|e| self.text_error(&e, start)),
            Type::StringIndef => {
                let mut text = String::new();
                let chunks = self
                    .d
                    .str_iter()
                    .map_err(|e| CodecError::new(start, decode_kind(&e, "a text string")))?;
                for chunk in chunks {
                    let chunk =
                        chunk.map_err(|e| CodecError::new(start, decode_kind(&e, "text")))?;
                    text.push_str(chunk);
                }
                Ok(Cow::Owned(text))
            }
            _ => Err(CodecError::new(
                start,
                CodecErrorKind::Malformed("a text string"),
            )),
        }
    }

    fn text_error(&self, error: &minicbor::decode::Error, start: usize) -> CodecError {
        if error.is_end_of_input() {
            CodecError::new(start, CodecErrorKind::Truncated)
        } else if error.is_type_mismatch() {
            CodecError::new(start, CodecErrorKind::Malformed("a text string"))
        } else {
            CodecError::new(start, CodecErrorKind::InvalidUtf8)
        }
    }

    /// Reads a byte string of definite or indefinite length.
    fn bytes(&mut self) -> Result<Vec<u8>, CodecError> {
        let start = self.offset();
        match self.datatype()? {
            Type::Bytes => self
                .d
                .bytes()
                .map(<[u8]>::to_vec)
                .map_err(|e| CodecError::new(start, decode_kind(&e, "a byte string"))),
            Type::BytesIndef => {
                let mut bytes = Vec::new();
                let chunks = self
                    .d
                    .bytes_iter()
                    .map_err(|e| CodecError::new(start, decode_kind(&e, "a byte string")))?;
                for chunk in chunks {
                    let chunk = chunk
                        .map_err(|e| CodecError::new(start, decode_kind(&e, "a byte string")))?;
                    bytes.extend_from_slice(chunk);
                }
                Ok(bytes)
            }
            _ => Err(CodecError::new(
                start,
                CodecErrorKind::Malformed("a byte string"),
            )),
        }
    }

    /// Starts a map; returns its length (`None` for indefinite).
    fn map(&mut self) -> Result<Option<u64>, CodecError> {
        let start = self.offset();
        self.d
            .map()
            .map_err(|e| CodecError::new(start, decode_kind(&e, "a map")))
    }

    /// Starts an array; returns its length (`None` for indefinite).
    fn array(&mut self) -> Result<Option<u64>, CodecError> {
        let start = self.offset();
        self.d
            .array()
            .map_err(|e| CodecError::new(start, decode_kind(&e, "an array")))
    }

    /// Advances through a map or array of `len` entries: true while another entry follows.
    /// For indefinite lengths it consumes the break byte at the end.
    fn another(&mut self, len: &mut Option<u64>) -> Result<bool, CodecError> {
        match len {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None => {
                if self.datatype()? == Type::Break {
                    self.d.set_position(self.offset().saturating_add(1));
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    fn skip(&mut self) -> Result<(), CodecError> {
        let start = self.offset();
        self.d
            .skip()
            .map_err(|e| CodecError::new(start, decode_kind(&e, "a CBOR item")))
    }

    /// Reads the enum tag: a bare name (`None`) or a one-entry map (`Some(offset of value)`).
    fn variant(&mut self) -> Result<(Cow<'b, str>, Option<usize>), CodecError> {
        let start = self.offset();
        match self.datatype()? {
            Type::String | Type::StringIndef => Ok((self.text()?, None)),
            Type::Map | Type::MapIndef => {
                let len = self.map()?;
                match len {
                    Some(1) => self.outer = Outer::Definite,
                    None if self.datatype()? != Type::Break => self.outer = Outer::Indefinite,
                    _ => return Err(CodecError::new(start, CodecErrorKind::NotOneEntry)),
                }
                let name = self.text()?;
                Ok((name, Some(self.offset())))
            }
            _ => Err(CodecError::new(
                start,
                CodecErrorKind::Malformed("an operation name or a one-entry map"),
            )),
        }
    }

    fn unknown_variant(&self, name: &str) -> CodecError {
        let known_unit = ["DescribeNSM", "GetRandom", "LockPCR", "LockPCRs"];
        let known = [
            "DescribePCR",
            "ExtendPCR",
            "LockPCR",
            "LockPCRs",
            "DescribeNSM",
            "Attestation",
            "GetRandom",
            "Error",
        ];
        let kind = if known.contains(&name) || known_unit.contains(&name) {
            CodecErrorKind::WrongShape {
                operation: name.to_string(),
            }
        } else {
            CodecErrorKind::UnknownOperation(clip(name))
        };
        CodecError::new(self.offset(), kind)
    }

    /// Reads the field map of a struct variant, recording where each named field's value
    /// starts; unknown fields are skipped. Leaves the cursor after the map.
    fn fields<const N: usize>(
        &mut self,
        operation: &'static str,
        names: [&'static str; N],
    ) -> Result<[FieldAt; N], CodecError> {
        let mut found: [FieldAt; N] = [None; N];
        let mut len = self.map()?;
        while self.another(&mut len)? {
            let key_at = self.offset();
            let key = self.text()?;
            let slot = names
                .iter()
                .position(|name| *name == key)
                .and_then(|i| found.get_mut(i).zip(names.get(i)));
            if let Some((slot, field)) = slot {
                if slot.is_some() {
                    return Err(CodecError::new(
                        key_at,
                        CodecErrorKind::DuplicateField { operation, field },
                    ));
                }
                *slot = Some(self.offset());
            }
            self.skip()?;
        }
        Ok(found)
    }

    /// Runs `read` at a recorded field offset, then restores the cursor.
    fn at<T>(
        &mut self,
        offset: usize,
        read: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<T, CodecError> {
        let resume = self.offset();
        self.d.set_position(offset);
        let value = read(self);
        self.d.set_position(resume);
        value
    }

    fn required(
        field_at: FieldAt,
        operation: &'static str,
        field: &'static str,
        map_at: usize,
    ) -> Result<usize, CodecError> {
        field_at.ok_or_else(|| {
            CodecError::new(map_at, CodecErrorKind::MissingField { operation, field })
        })
    }

    fn required_u16(
        &mut self,
        field_at: FieldAt,
        operation: &'static str,
        field: &'static str,
        map_at: usize,
    ) -> Result<u16, CodecError> {
        let offset = Self::required(field_at, operation, field, map_at)?;
        self.at(offset, |r| {
            r.d.u16()
                .map_err(|e| CodecError::new(offset, decode_kind(&e, "an unsigned 16-bit integer")))
        })
    }

    fn required_bool(
        &mut self,
        field_at: FieldAt,
        operation: &'static str,
        field: &'static str,
        map_at: usize,
    ) -> Result<bool, CodecError> {
        let offset = Self::required(field_at, operation, field, map_at)?;
        self.at(offset, |r| {
            r.d.bool()
                .map_err(|e| CodecError::new(offset, decode_kind(&e, "a boolean")))
        })
    }

    fn required_bytes(
        &mut self,
        field_at: FieldAt,
        operation: &'static str,
        field: &'static str,
        map_at: usize,
    ) -> Result<Vec<u8>, CodecError> {
        let offset = Self::required(field_at, operation, field, map_at)?;
        self.at(offset, Self::bytes)
    }

    /// A byte string, or `null`, or absent (serde's default for `Option`).
    fn optional_bytes(&mut self, field_at: FieldAt) -> Result<Option<Vec<u8>>, CodecError> {
        let Some(offset) = field_at else {
            return Ok(None);
        };
        self.at(offset, |r| {
            if r.datatype()? == Type::Null {
                r.d.set_position(offset.saturating_add(1));
                Ok(None)
            } else {
                r.bytes().map(Some)
            }
        })
    }

    fn description(&mut self, map_at: usize) -> Result<Description, CodecError> {
        const OP: &str = "DescribeNSM";
        let [
            major,
            minor,
            patch,
            module_id,
            max_pcrs,
            locked_pcrs,
            digest,
        ] = self.fields(
            OP,
            [
                "version_major",
                "version_minor",
                "version_patch",
                "module_id",
                "max_pcrs",
                "locked_pcrs",
                "digest",
            ],
        )?;
        let module_id_at = Self::required(module_id, OP, "module_id", map_at)?;
        let locked_at = Self::required(locked_pcrs, OP, "locked_pcrs", map_at)?;
        let digest_at = Self::required(digest, OP, "digest", map_at)?;
        Ok(Description {
            version_major: self.required_u16(major, OP, "version_major", map_at)?,
            version_minor: self.required_u16(minor, OP, "version_minor", map_at)?,
            version_patch: self.required_u16(patch, OP, "version_patch", map_at)?,
            module_id: self.at(module_id_at, |r| r.text().map(Cow::into_owned))?,
            max_pcrs: self.required_u16(max_pcrs, OP, "max_pcrs", map_at)?,
            locked_pcrs: self.at(locked_at, |r| {
                let mut set = BTreeSet::new();
                let mut len = r.array()?;
                while r.another(&mut len)? {
                    let at = r.offset();
                    let pcr = r
                        .d
                        .u16()
                        .map_err(|e| CodecError::new(at, decode_kind(&e, "a PCR index (u16)")))?;
                    set.insert(pcr);
                }
                Ok(set)
            })?,
            digest: self.at(digest_at, |r| {
                let at = r.offset();
                let name = r.text()?;
                Digest::from_wire_name(&name)
                    .ok_or_else(|| CodecError::new(at, CodecErrorKind::UnknownDigest(clip(&name))))
            })?,
        })
    }

    /// Checks that the message ended: an indefinite enum map closes after its one entry, and
    /// nothing follows the message.
    fn finish(&mut self) -> Result<(), CodecError> {
        if self.outer == Outer::Indefinite {
            if self.datatype()? != Type::Break {
                return Err(CodecError::new(self.offset(), CodecErrorKind::NotOneEntry));
            }
            self.d.set_position(self.offset().saturating_add(1));
        }
        if self.offset() != self.d.input().len() {
            return Err(CodecError::new(
                self.offset(),
                CodecErrorKind::TrailingBytes,
            ));
        }
        Ok(())
    }
}

fn decode_kind(error: &minicbor::decode::Error, expected: &'static str) -> CodecErrorKind {
    if error.is_end_of_input() {
        CodecErrorKind::Truncated
    } else {
        CodecErrorKind::Malformed(expected)
    }
}
