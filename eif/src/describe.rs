//! The `describe-eif` JSON, in the shape and key order `nitro-cli describe-eif` prints
//! (aws-nitro-enclaves-cli `src/common/json_output.rs` `EifDescribeInfo`,
//! `MetadataDescribeInfo`; `src/lib.rs` `describe_eif`).
//!
//! ```text
//! { "EifVersion": 4,
//!   "Measurements": { "HashAlgorithm": "Sha384 { ... }", "PCR0": .., "PCR1": .., "PCR2": .., ["PCR8": ..] },
//!   "IsSigned": false,
//!   "CheckCRC": true,
//!   "ImageName": .., "ImageVersion": ..,                      (version 4 only)
//!   "Metadata": { "BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem",
//!                 "KernelVersion", "DockerInfo", <CustomMetadata keys, flattened> } }
//! ```
//! Checked against aws-nitro-enclaves-cli `src/common/json_output.rs` (`EifDescribeInfo`,
//! `MetadataDescribeInfo`; blob 39840382236 of the stored index, the version that flattens
//! `CustomMetadata`) and aws-nitro-enclaves-image-format 0.8.1 `src/utils/eif_reader.rs`
//! (`SignCertificateInfo`, `get_certificate_info`). Signed images add, in nitro-cli's order,
//! `"SigningCertificate": {"IssuerName": {..}, "Algorithm", "NotBefore", "NotAfter",
//! "Signature"}` after `IsSigned` and `"SignatureCheck": true` after `CheckCRC`
//! (see [`crate::x509`] for the string forms). The golden shape test is
//! `describe_has_nitro_clis_keys_and_types` in `eif/tests/peer_aws.rs`.
//!
//! Differences from nitro-cli, on purpose:
//! - `HashAlgorithm` is a fixed string ([`crate::Measurements::HASH_ALGORITHM`]); nitro-cli prints
//!   a `Debug` string that varies with its sha2 version.
//! - `CheckCRC` is `true` whenever anything is printed: the reader computes the CRC and refuses
//!   an image whose CRC does not match (nitro-cli prints `false` and carries on).
//! - `SignatureCheck`: nitro-cli verifies the COSE signature and compares its payload with
//!   PCR0, printing `false` on a payload mismatch and failing on a bad signature. Here
//!   [`Eif::describe_at`] fails on either, and also when the certificate is not valid at the
//!   time given (nitro-cli does not look at validity; Nitro does, at `run-enclave`). The
//!   infallible [`Eif::describe`] (for fuzzing) prints `false` for any failed check and checks
//!   no time.
//! - `CustomMetadata` is flattened like nitro-cli only when it is a JSON object none of whose
//!   keys collides with the keys above; otherwise it is printed unflattened under
//!   `"CustomMetadata"` (nitro-cli would fail to serialise a non-object, and would print a
//!   colliding key twice, letting custom metadata shadow e.g. `BuildTime`).

use crate::reader::Eif;
use crate::signature::SignatureCheckError;
use crate::x509::SigningCertificate;
use ccc_sdk::time::UnixMillis;
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
#[derive(Debug, Clone)]
pub struct Describe<'a> {
    eif: &'a Eif,
    /// Signed images: the certificate (when it parses) and the signature check's outcome.
    signed: Option<(Option<SigningCertificate>, bool)>,
}

impl Describe<'_> {
    /// The pretty-printed JSON, as nitro-cli prints it.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serialising strings, numbers and serde_json values cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl Eif {
    /// The describe-eif view of this image, failing closed: a signed image whose signature,
    /// payload or certificate (validity at `at`) does not verify is an error, never a
    /// `"SignatureCheck": false` line to overlook.
    ///
    /// # Errors
    /// [`SignatureCheckError`] naming the failed check.
    pub fn describe_at(&self, at: UnixMillis) -> Result<Describe<'_>, SignatureCheckError> {
        let signed = self
            .check_signature(Some(at))?
            .map(|check| (Some(check.certificate), true));
        Ok(Describe { eif: self, signed })
    }

    /// The describe-eif view without a time: a failed signature check prints
    /// `"SignatureCheck": false` (the fuzzing entry point; commands use [`Eif::describe_at`]).
    #[must_use]
    pub fn describe(&self) -> Describe<'_> {
        let signed = self.signature.as_ref().map(|section| {
            match section.verify(&self.measurements.pcr0, None) {
                Ok(check) => (Some(check.certificate), true),
                Err(_) => (
                    SigningCertificate::parse(&section.certificate_der).ok(),
                    false,
                ),
            }
        });
        Describe { eif: self, signed }
    }

    /// [`Eif::describe`]'s JSON, pretty-printed as nitro-cli prints it.
    #[must_use]
    pub fn describe_json(&self) -> String {
        self.describe().to_json()
    }
}

impl Serialize for Describe<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let eif = self.eif;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("EifVersion", &eif.header.version)?;
        map.serialize_entry("Measurements", &eif.measurements.to_json())?;
        map.serialize_entry("IsSigned", &eif.signature.is_some())?;
        if let Some((Some(certificate), _)) = &self.signed {
            map.serialize_entry("SigningCertificate", &certificate.describe_json())?;
        }
        map.serialize_entry("CheckCRC", &true)?;
        if let Some((_, check)) = &self.signed {
            map.serialize_entry("SignatureCheck", check)?;
        }
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

#[cfg(test)]
mod tests {
    use crate::{BuildInfo, Eif, EifBuilder, EifIdentity, SourceDateEpoch};
    use serde_json::{Value, json};

    fn describe(custom: Value) -> Value {
        let mut identity = EifIdentity::new(
            "n",
            "v",
            BuildInfo::new(SourceDateEpoch::UNIX_EPOCH, "t", "1", "Linux", "6"),
        );
        identity.custom_metadata = custom;
        identity.docker_info = json!({"Id": "sha256:0"});
        let kernel = vec![1u8; 10];
        let (bytes, _) = EifBuilder::new(&kernel, "c", identity).to_vec().unwrap();
        serde_json::from_str(&Eif::from_bytes(&bytes).unwrap().describe_json()).unwrap()
    }

    #[test]
    fn custom_metadata_is_flattened_only_when_it_cannot_shadow() {
        let flat = describe(json!({"team": "sec", "n": 1}));
        assert_eq!(flat["Metadata"]["team"], "sec");
        assert_eq!(flat["Metadata"]["n"], 1);
        assert!(flat["Metadata"].get("CustomMetadata").is_none());
        assert_eq!(flat["Metadata"]["DockerInfo"]["Id"], "sha256:0");
        assert_eq!(flat["IsSigned"], false);
        assert_eq!(flat["Measurements"]["HashAlgorithm"], "Sha384 { ... }");
        assert!(flat["Measurements"].get("PCR8").is_none());

        let shadowing = describe(json!({"BuildTime": "forged"}));
        assert_eq!(
            shadowing["Metadata"]["BuildTime"],
            "1970-01-01T00:00:00+00:00"
        );
        assert_eq!(
            shadowing["Metadata"]["CustomMetadata"]["BuildTime"],
            "forged"
        );

        let scalar = describe(json!("just text"));
        assert_eq!(scalar["Metadata"]["CustomMetadata"], "just text");

        let none = describe(Value::Null);
        assert_eq!(none["Metadata"].as_object().unwrap().len(), 6);
    }
}
