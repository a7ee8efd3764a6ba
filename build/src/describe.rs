//! The `describe-eif PATH` command: validate an enclave image and print its measurements and
//! metadata as the `nitro-cli describe-eif` JSON (see `ccc_eif::describe` for the shape and
//! the deliberate differences).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Options of `describe-eif`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .eif file.
    pub path: PathBuf,
}

/// Reads, validates and describes the EIF at `path`.
///
/// # Errors
/// When the file cannot be read or is not a valid EIF; the message gives the byte offset
/// and the check that failed.
pub fn describe(path: &Path) -> Result<String> {
    let eif = ccc_eif::Eif::open(path).map_err(|source| Error::Eif {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(eif.describe_json())
}

/// Prints [`describe`]'s JSON on stdout.
///
/// # Errors
/// As [`describe`].
pub fn run(args: &Args) -> Result<()> {
    println!("{}", describe(&args.path)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_eif::{BuildInfo, EifBuilder, EifIdentity, SourceDateEpoch};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ccc-build-eif-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("image.eif")
    }

    #[test]
    fn describes_a_valid_image_in_nitro_cli_key_order() {
        let epoch = SourceDateEpoch::from_secs(1_700_000_000);
        let mut identity = EifIdentity::new(
            "app",
            "1.0",
            BuildInfo::new(epoch, "ccc", "0.1.0", "Linux", "6.12"),
        );
        identity.custom_metadata = serde_json::json!({"owner": "sec"});
        let (kernel, ramdisk) = (vec![7u8; 100], vec![1u8; 8]);
        let path = scratch("ok");
        let built = EifBuilder::new(&kernel, "console=ttyS0", identity)
            .ramdisk(&ramdisk)
            .write_file(&path)
            .unwrap();
        let json = describe(&path).unwrap();
        let keys: Vec<&str> = json
            .lines()
            .filter_map(|l| l.strip_prefix("  \"").and_then(|l| l.split('"').next()))
            .collect();
        assert_eq!(
            keys,
            [
                "EifVersion",
                "Measurements",
                "IsSigned",
                "CheckCRC",
                "ImageName",
                "ImageVersion",
                "Metadata"
            ]
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["Measurements"]["PCR0"], built.measurements.pcr0.hex());
        assert_eq!(value["Metadata"]["BuildTime"], "2023-11-14T22:13:20+00:00");
        assert_eq!(value["Metadata"]["owner"], "sec");
        let metadata_keys: Vec<&str> = json
            .lines()
            .filter_map(|l| l.strip_prefix("    \"").and_then(|l| l.split('"').next()))
            .skip_while(|k| *k != "BuildTime")
            .collect();
        assert_eq!(
            metadata_keys,
            [
                "BuildTime",
                "BuildTool",
                "BuildToolVersion",
                "OperatingSystem",
                "KernelVersion",
                "DockerInfo",
                "owner"
            ]
        );
    }

    #[test]
    fn rejects_a_corrupt_image_with_the_offset() {
        let path = scratch("bad");
        let mut bytes = vec![0u8; 600];
        bytes[..6].copy_from_slice(b".eif\x00\x09");
        std::fs::write(&path, &bytes).unwrap();
        let err = describe(&path).unwrap_err().to_string();
        assert!(err.contains("invalid EIF at byte 4"), "{err}");
        assert!(err.contains("version"), "{err}");
    }
}
