//! SHA-256 for pins, cache keys, manifests and `SHA256SUMS`, with aws-lc-rs (the one crypto
//! backend of the project); files are hashed in a streaming pass.

use aws_lc_rs::digest::{Context, SHA256};
use std::io::Read;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Read size of the streaming file hash.
const CHUNK: usize = 1 << 16;

/// The lowercase hex SHA-256 of a file.
///
/// # Errors
/// The file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).io("open", path)?;
    let mut context = Context::new(&SHA256);
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buffer).io("read", path)?;
        let Some(chunk) = buffer.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        context.update(chunk);
    }
    Ok(hex::encode(context.finish()))
}

/// The lowercase hex SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&SHA256, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // FIPS 180-2 example "abc" and the empty string.
        assert_eq!(
            sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // A file longer than one chunk, against coreutils' sha256sum (an independent peer).
        let dir = std::env::temp_dir().join(format!("ccc-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("data");
        let data: Vec<u8> = (0..CHUNK * 3 + 17).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        let peer = std::process::Command::new("sha256sum")
            .arg(&file)
            .output()
            .unwrap();
        let peer = String::from_utf8(peer.stdout).unwrap();
        assert_eq!(
            Some(sha256_file(&file).unwrap().as_str()),
            peer.split(' ').next()
        );
        assert_eq!(sha256_file(&file).unwrap(), sha256(&data));
        assert!(sha256_file(&dir.join("absent")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
