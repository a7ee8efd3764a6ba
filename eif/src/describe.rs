//! The `describe-eif` JSON, in the shape and key order `nitro-cli describe-eif` prints
//! (aws-nitro-enclaves-cli `src/common/json_output.rs` `EifDescribeInfo`,
//! `MetadataDescribeInfo`; `src/lib.rs` `describe_eif`).
//!
//! ```text
//! { "EifVersion": 4,
//!   "Measurements": { "HashAlgorithm": "Sha384 { .. }", "PCR0": .., "PCR1": .., "PCR2": .., ["PCR8": ..] },
//!   "IsSigned": false,
//!   "CheckCRC": true,
//!   "ImageName": .., "ImageVersion": ..,                      (version 4 only)
//!   "Metadata": { "BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem",
//!                 "KernelVersion", "DockerInfo", <CustomMetadata keys, flattened> } }
//! ```
//! Differences from nitro-cli, on purpose:
//! - `HashAlgorithm` is a fixed string ([`crate::Measurements::HASH_ALGORITHM`]); nitro-cli prints
//!   a `Debug` string that varies with its sha2 version.
//! - `CheckCRC` is always `true`: a CRC mismatch is an error here, not a flag.
//! - Signed images: nitro-cli adds `SigningCertificate` (issuer, validity, ...) and
//!   `SignatureCheck` (COSE verification). This crate does not parse X.509 or verify the
//!   COSE signature, so those keys are absent; `IsSigned` and `PCR8` are present.
//! - `CustomMetadata` is flattened like nitro-cli only when it is a JSON object none of whose
//!   keys collides with the keys above; otherwise it is printed unflattened under
//!   `"CustomMetadata"` (nitro-cli would fail to serialise a non-object, and would print a
//!   colliding key twice, letting custom metadata shadow e.g. `BuildTime`).

use crate::reader::Eif;
use serde::ser::{Serialize, SerializeMap, Serializer};

const METADATA_KEYS: [&str; 6] = [
    "BuildTime",
    "BuildTool",
    "BuildToolVersion",
    "OperatingSystem",
    "KernelVersion",
    "DockerInfo",
];

/// Serialises as the describe-eif JSON object (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Describe<'a>(pub &'a Eif);

impl Eif {
    /// The describe-eif view of this image.
    #[must_use]
    pub fn describe(&self) -> Describe<'_> {
        Describe(self)
    }

    /// The describe-eif JSON, pretty-printed as nitro-cli prints it.
    #[must_use]
    pub fn describe_json(&self) -> String {
        // Serialising strings, numbers and serde_json values cannot fail.
        serde_json::to_string_pretty(&self.describe()).unwrap_or_default()
    }
}

impl Serialize for Describe<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let eif = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("EifVersion", &eif.header.version)?;
        map.serialize_entry("Measurements", &eif.measurements.to_json())?;
        map.serialize_entry("IsSigned", &eif.signature.is_some())?;
        map.serialize_entry("CheckCRC", &true)?;
        if let Some(identity) = &eif.identity {
            map.serialize_entry("ImageName", &identity.image_name)?;
            map.serialize_entry("ImageVersion", &identity.image_version)?;
            map.serialize_entry("Metadata", &MetadataView(identity))?;
        }
        map.end()
    }
}

struct MetadataView<'a>(&'a crate::format::EifIdentity);

impl Serialize for MetadataView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let identity = self.0;
        let build = &identity.build;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("BuildTime", &build.build_time)?;
        map.serialize_entry("BuildTool", &build.build_tool)?;
        map.serialize_entry("BuildToolVersion", &build.build_tool_version)?;
        map.serialize_entry("OperatingSystem", &build.operating_system)?;
        map.serialize_entry("KernelVersion", &build.kernel_version)?;
        map.serialize_entry("DockerInfo", &identity.docker_info)?;
        match &identity.custom_metadata {
            serde_json::Value::Null => {}
            serde_json::Value::Object(custom)
                if !custom.keys().any(|k| METADATA_KEYS.contains(&k.as_str())) =>
            {
                for (key, value) in custom {
                    map.serialize_entry(key, value)?;
                }
            }
            other => map.serialize_entry("CustomMetadata", other)?,
        }
        map.end()
    }
}
