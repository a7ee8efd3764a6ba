//! SHA-256 for pins and cache keys, computed by coreutils' `sha256sum` (xtask stays free of
//! crypto dependencies; every Debian machine has it).

use anyhow::{Context, Result, bail};
use std::path::Path;
use xshell::{Shell, cmd};

fn first_field(output: &str) -> Result<String> {
    let digest = output.split_whitespace().next().unwrap_or_default();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("sha256sum printed `{output}`, expected a 64-digit hex digest");
    }
    Ok(digest.to_ascii_lowercase())
}

/// The lowercase hex SHA-256 of a file.
///
/// # Errors
/// The file cannot be read or `sha256sum` is missing.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let sh = Shell::new()?;
    let out = cmd!(sh, "sha256sum -b {path}")
        .quiet()
        .read()
        .with_context(|| format!("cannot hash {}", path.display()))?;
    first_field(&out)
}

/// The lowercase hex SHA-256 of `data`.
///
/// # Errors
/// `sha256sum` is missing.
pub(crate) fn sha256(data: &[u8]) -> Result<String> {
    let sh = Shell::new()?;
    let out = cmd!(sh, "sha256sum -b -").stdin(data).quiet().read()?;
    first_field(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // FIPS 180-2 example "abc" and the empty string.
        assert_eq!(
            sha256(b"abc").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256(b"").unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let file = std::env::temp_dir().join(format!("ccc-hash-{}", std::process::id()));
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(sha256_file(&file).unwrap(), sha256(b"abc").unwrap());
        std::fs::remove_file(&file).unwrap();
    }
}
