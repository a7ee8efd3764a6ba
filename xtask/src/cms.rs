//! `cargo xtask cms decrypt --key KEY.pem FILE`: decrypts a captured KMS
//! `CiphertextForRecipient` to stdout, for debugging. FILE is raw BER, its base64 text, or a
//! whole KMS JSON response with a `CiphertextForRecipient` member (detected). The envelope's
//! outline and any rejection go to stderr.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use ccc_sdk::cms;
use ccc_sdk::crypto::{AwsLc, AwsLcRsaKey, RsaDecryptionKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// `cargo xtask cms ...`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Decrypt a CiphertextForRecipient with the enclave's private key; plaintext to stdout.
    Decrypt {
        /// The RSA private key: PKCS#8 PEM (`BEGIN PRIVATE KEY`) or PKCS#8 DER.
        #[arg(long, value_name = "KEY.pem")]
        key: PathBuf,
        /// The envelope: raw BER, base64, or a KMS JSON response.
        file: PathBuf,
    },
}

/// Runs `cargo xtask cms`.
pub(crate) fn run(args: &Args) -> Result<()> {
    match &args.command {
        Command::Decrypt { key, file } => {
            let (plaintext, notes) = decrypt_file(key, file)?;
            for note in notes {
                eprintln!("{note}");
            }
            eprintln!(
                "cms: writing {} plaintext bytes to stdout (a secret: do not paste it anywhere)",
                plaintext.len()
            );
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(plaintext.expose())?;
            stdout.flush()?;
            Ok(())
        }
    }
}

/// Loads a PKCS#8 RSA key from PEM or DER.
pub(crate) fn load_key(path: &Path) -> Result<AwsLcRsaKey> {
    let bytes =
        Zeroizing::new(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    let der = if bytes.first() == Some(&0x30) {
        bytes
    } else {
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("BEGIN RSA PRIVATE KEY") {
            bail!(
                "{} is a PKCS#1 key; convert it with: openssl pkcs8 -topk8 -nocrypt -in {} -out \
                 key.pkcs8.pem",
                path.display(),
                path.display()
            );
        }
        let key = PrivatePkcs8KeyDer::from_pem_slice(&bytes)
            .map(Zeroizing::new)
            .with_context(|| {
                format!("{}: no `-----BEGIN PRIVATE KEY-----` block", path.display())
            })?;
        Zeroizing::new(key.secret_pkcs8_der().to_vec())
    };
    AwsLcRsaKey::from_pkcs8(&der).with_context(|| format!("{}", path.display()))
}

/// The envelope bytes in `input`: raw BER (starts with a SEQUENCE tag), a JSON response with
/// `CiphertextForRecipient`, or base64 text. Returns the bytes and how they were found.
pub(crate) fn envelope_bytes(input: &[u8]) -> Result<(Vec<u8>, &'static str)> {
    if input.first() == Some(&0x30) {
        return Ok((input.to_vec(), "raw BER"));
    }
    let text = std::str::from_utf8(input).context("input is neither BER nor text")?;
    let trimmed = text.trim();
    let (b64, form) = if trimmed.starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(trimmed).context("input looks like JSON but does not parse")?;
        let field = json["CiphertextForRecipient"].as_str().context(
            "the JSON has no CiphertextForRecipient string (was the request sent with a \
             Recipient?)",
        )?;
        (
            field.to_owned(),
            "CiphertextForRecipient of a KMS JSON response",
        )
    } else {
        (trimmed.split_whitespace().collect(), "base64")
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("input is not raw BER (0x30...), base64 or a KMS JSON response")?;
    Ok((bytes, form))
}

/// Decrypts `file` with the key in `key_path`; returns the plaintext and notes for stderr.
pub(crate) fn decrypt_file(
    key_path: &Path,
    file: &Path,
) -> Result<(ccc_sdk::secret::SecretBytes, Vec<String>)> {
    let key = load_key(key_path)?;
    let input = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (envelope, form) = envelope_bytes(&input)?;
    let mut notes = vec![format!("cms: input is {form}, {} bytes", envelope.len())];
    let parsed = cms::parse(&envelope)?;
    let ours = cms::recipient_key_id(&AwsLc, key.public_key_spki());
    notes.push(format!(
        "cms: recipient key id {} ({}), wrapped key {} bytes, content {} bytes",
        hex::encode(parsed.recipient_key_id),
        if parsed.recipient_key_id == ours {
            "matches this key"
        } else {
            "NOT this key"
        },
        parsed.encrypted_key.len(),
        parsed.encrypted_content.len()
    ));
    let plaintext = parsed.decrypt(&AwsLc, &key)?;
    Ok((plaintext, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> PathBuf {
        ccc_test_vectors::path("kms-cms-vectors")
    }

    #[test]
    fn decrypts_raw_and_base64_and_json_inputs() {
        let dir = vectors().join("real-kms/enclaver-hello-world");
        let key = dir.join("private-key.pem");
        for file in [
            "ciphertext-for-recipient.ber",
            "ciphertext-for-recipient.b64",
        ] {
            let (plaintext, notes) = decrypt_file(&key, &dir.join(file)).unwrap();
            assert_eq!(plaintext.expose(), b"Hello, World", "{file}");
            assert!(notes[1].contains("matches this key"), "{notes:?}");
        }
        // DER key, and a JSON response wrapping the envelope.
        let b64 = std::fs::read_to_string(dir.join("ciphertext-for-recipient.b64")).unwrap();
        let json = format!(r#"{{"KeyId":"arn:k","CiphertextForRecipient":"{b64}"}}"#);
        let (bytes, form) = envelope_bytes(json.as_bytes()).unwrap();
        assert_eq!(form, "CiphertextForRecipient of a KMS JSON response");
        let key = load_key(&dir.join("private-key.pkcs8.der")).unwrap();
        assert_eq!(
            cms::decrypt(&bytes, &AwsLc, &key).unwrap().expose(),
            b"Hello, World"
        );
    }

    #[test]
    fn wrong_key_and_bad_input_are_explained() {
        let dir = vectors();
        let error = decrypt_file(
            &dir.join("generated/keys/wrong-key.pem"),
            &dir.join("real-kms/enclaver-hello-world/ciphertext-for-recipient.ber"),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("KMS encrypted to another public key"));
        assert!(envelope_bytes(b"not base64 at all!").is_err());
        assert!(envelope_bytes(br#"{"Plaintext":"AA=="}"#).is_err());
    }
}
