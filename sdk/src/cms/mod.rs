//! KMS's `CiphertextForRecipient`: a CMS EnvelopedData (RFC 5652) in BER, read with our own
//! BER reader, checked against the one profile KMS uses, and decrypted through the crypto seam
//! (RSAES-OAEP-SHA-256 unwraps a 32-byte AES key, AES-256-CBC decrypts the content).
//!
//! The profile (see the KMS layout in the CMS vectors README and the research notes §2):
//!
//! ```text
//! ContentInfo { envelopedData, [0] EnvelopedData {
//!   version 2, no originatorInfo,
//!   recipientInfos SET { exactly one KeyTransRecipientInfo {
//!     version 2, rid [0] subjectKeyIdentifier = SHA-256(DER SPKI of the attested RSA key),
//!     keyEncryptionAlgorithm rsaesOaep { [0] sha256, [1] mgf1(sha256) }  (NULL params or none,
//!                                        no label),
//!     encryptedKey OCTET STRING } },
//!   encryptedContentInfo { id-data, aes256-CBC with a 16-byte IV,
//!                          [0] ciphertext (primitive, or constructed chunks) },
//!   no unprotectedAttrs } }
//! ```
//!
//! Indefinite and definite lengths are both accepted; every indefinite element must be
//! terminated and nothing may follow the ContentInfo. Anything else is rejected with an error
//! that names what was found. OAEP, key-length and padding failures are one error,
//! [`CmsError::Decrypt`], reached by the same work whichever check fails (see
//! [`EnvelopedData::decrypt`]), and no plaintext (not even part of it) is ever returned with an
//! error.

mod ber;
#[cfg(feature = "cms-build")]
pub mod build;
mod padding;

pub use ber::{BerError, BerProblem, MAX_DEPTH};
pub use padding::{BLOCK_LEN, pkcs7_unpadded_len};

use crate::crypto::{Crypto, RsaDecryptionKey};
use crate::der::{oid, tag};
use crate::secret::SecretBytes;
use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ber::{Ber, Tlv};
use core::fmt;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// Largest input accepted: the botocore KMS model (API 2014-11-01) bounds
/// `CiphertextForRecipient` (shape `CiphertextType`) to 6144 bytes.
pub const MAX_INPUT_LEN: usize = 6144;

/// Why a `CiphertextForRecipient` was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmsError {
    /// The input is larger than [`MAX_INPUT_LEN`].
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not well-formed BER.
    Malformed(BerError),
    /// An element has another tag than the structure requires.
    UnexpectedTag {
        /// Offset of the element.
        offset: usize,
        /// Which element of the structure.
        element: &'static str,
        /// The tag the structure requires.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// Well-formed CMS outside the profile KMS uses.
    Unsupported {
        /// Offset of the element.
        offset: usize,
        /// Which element (`key transport`, `EnvelopedData version`, ...).
        element: &'static str,
        /// What was found there.
        found: String,
        /// What KMS sends instead.
        expected: &'static str,
    },
    /// The envelope is addressed to another key: its recipient identifier is not SHA-256 of
    /// this key's SubjectPublicKeyInfo.
    RecipientMismatch {
        /// SHA-256 of our DER SubjectPublicKeyInfo.
        ours: [u8; 32],
        /// The subjectKeyIdentifier in the envelope.
        found: Vec<u8>,
    },
    /// Decryption failed. RSA-OAEP failures, a content key that is not 32 bytes, and AES-CBC
    /// padding failures all give this one error, deliberately without detail.
    Decrypt,
}

impl fmt::Display for CmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(
                f,
                "CiphertextForRecipient is {len} bytes, more than the {max} KMS allows; this is \
                 not a KMS response"
            ),
            Self::Malformed(e) => write!(
                f,
                "CiphertextForRecipient is not valid BER at byte {}: {}; it is truncated or \
                 corrupted (decode KMS's base64 field exactly once)",
                e.offset, e.problem
            ),
            Self::UnexpectedTag {
                offset,
                element,
                expected,
                found,
            } => write!(
                f,
                "CMS {element} at byte {offset}: tag 0x{found:02x} where 0x{expected:02x} is \
                 required; this is not the EnvelopedData KMS sends"
            ),
            Self::Unsupported {
                offset,
                element,
                found,
                expected,
            } => write!(f, "CMS {element} is {found}; {expected} (byte {offset})"),
            Self::RecipientMismatch { ours, found } => write!(
                f,
                "the envelope's recipient key id is {}, but SHA-256 of this key's \
                 SubjectPublicKeyInfo is {}: KMS encrypted to another public key (was the \
                 attestation document requested with this key's DER SPKI as public_key?)",
                hex::encode(found),
                hex::encode(ours)
            ),
            Self::Decrypt => f.write_str(
                "CiphertextForRecipient did not decrypt with this key (RSA-OAEP or AES-CBC \
                 padding failed): it was made for another key or corrupted",
            ),
        }
    }
}

impl core::error::Error for CmsError {}

impl From<BerError> for CmsError {
    fn from(e: BerError) -> Self {
        Self::Malformed(e)
    }
}

/// The parts of a KMS EnvelopedData that decryption needs. Slices borrow from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopedData<'a> {
    /// The recipient's subjectKeyIdentifier (KMS: SHA-256 of the DER SubjectPublicKeyInfo).
    pub recipient_key_id: &'a [u8],
    /// The RSA-OAEP-SHA-256 encrypted content-encryption key.
    pub encrypted_key: &'a [u8],
    /// The AES-256-CBC IV.
    pub iv: [u8; 16],
    /// The AES-256-CBC ciphertext (all chunks concatenated; borrowed when there is one).
    pub encrypted_content: Cow<'a, [u8]>,
}

/// The recipient key id KMS puts in the envelope for `spki`: SHA-256 of the DER
/// SubjectPublicKeyInfo.
#[must_use]
pub fn recipient_key_id(crypto: &dyn Crypto, spki: &[u8]) -> [u8; 32] {
    crypto.sha256(&[spki])
}

/// Parses and checks a `CiphertextForRecipient` (the bytes after base64 decoding) without
/// decrypting it.
///
/// # Errors
/// [`CmsError`] naming the first structural problem or profile violation.
pub fn parse(input: &[u8]) -> Result<EnvelopedData<'_>, CmsError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(CmsError::TooLarge {
            len: input.len(),
            max: MAX_INPUT_LEN,
        });
    }
    let mut top = Ber::new(input);
    let content_info = expect(&mut top, tag::SEQUENCE, "ContentInfo")?;
    top.finish()?;

    let mut ci = content_info.children();
    let content_type = expect_oid(&mut ci, "ContentInfo contentType")?;
    if content_type.content != oid::ENVELOPED_DATA {
        return Err(unsupported(
            &content_type,
            "content type",
            describe_oid(content_type.content),
            "KMS sends envelopedData (1.2.840.113549.1.7.3)",
        ));
    }
    let explicit = expect(
        &mut ci,
        tag::context_constructed(0),
        "ContentInfo content [0]",
    )?;
    ci.finish()?;
    let mut wrapper = explicit.children();
    let enveloped = expect(&mut wrapper, tag::SEQUENCE, "EnvelopedData")?;
    wrapper.finish()?;

    let mut ed = enveloped.children();
    expect_version(&mut ed, "EnvelopedData version")?;
    if let Some(t @ 0xa0) = ed.peek_tag() {
        let at = ed.offset();
        return Err(CmsError::Unsupported {
            offset: at,
            element: "EnvelopedData originatorInfo",
            found: format!("present (tag 0x{t:02x})"),
            expected: "KMS sends none",
        });
    }
    let recipient_infos = expect(&mut ed, tag::SET, "EnvelopedData recipientInfos")?;
    let (recipient_key_id, encrypted_key) = parse_recipient_infos(&recipient_infos)?;
    let eci = expect(&mut ed, tag::SEQUENCE, "EncryptedContentInfo")?;
    let (iv, encrypted_content) = parse_encrypted_content_info(&eci)?;
    if let Some(t) = ed.peek_tag() {
        let at = ed.offset();
        return Err(CmsError::Unsupported {
            offset: at,
            element: "EnvelopedData",
            found: if t == 0xa1 {
                String::from("carrying unprotectedAttrs")
            } else {
                format!("followed by an element with tag 0x{t:02x}")
            },
            expected: "KMS sends no unprotectedAttrs",
        });
    }
    Ok(EnvelopedData {
        recipient_key_id,
        encrypted_key,
        iv,
        encrypted_content,
    })
}

/// Parses, checks and decrypts a `CiphertextForRecipient` with the enclave's RSA key.
///
/// # Errors
/// Any [`parse`] error; [`CmsError::RecipientMismatch`] if the envelope is for another key;
/// [`CmsError::Decrypt`] if decryption fails (no plaintext is returned in that case).
pub fn decrypt(
    input: &[u8],
    crypto: &dyn Crypto,
    key: &dyn RsaDecryptionKey,
) -> Result<SecretBytes, CmsError> {
    parse(input)?.decrypt(crypto, key)
}

impl EnvelopedData<'_> {
    /// Checks that the envelope is for `key` (recipient key id = SHA-256 of its SPKI), unwraps
    /// the 32-byte AES key with RSA-OAEP-SHA-256 and decrypts the content.
    ///
    /// # Where the diagnostics stop
    /// Everything up to and including the recipient check depends on public bytes only (the
    /// envelope's structure, the key id in it, our public key), so those errors name what they
    /// found. After it, every failure (RSA-OAEP decoding, a content key that is not 32 bytes,
    /// PKCS#7 padding) is the one [`CmsError::Decrypt`], reached by the same work: when OAEP
    /// fails or gives a key of another length, AES-CBC still runs (under an all-zero key) and
    /// the padding is still checked, in constant time ([`pkcs7_unpadded_len`]), and only the
    /// combined verdict is branched on. Neither the error nor the time taken tells which check
    /// failed, so the opening is no padding oracle.
    ///
    /// # Errors
    /// [`CmsError::RecipientMismatch`] or [`CmsError::Decrypt`].
    pub fn decrypt(
        &self,
        crypto: &dyn Crypto,
        key: &dyn RsaDecryptionKey,
    ) -> Result<SecretBytes, CmsError> {
        let ours = recipient_key_id(crypto, key.public_key_spki());
        if self.recipient_key_id != ours {
            return Err(CmsError::RecipientMismatch {
                ours,
                found: self.recipient_key_id.to_vec(),
            });
        }
        // A failed OAEP decoding is an empty key here: it fails the length check below with
        // the rest, instead of returning early.
        let unwrapped = key
            .decrypt_oaep_sha256(self.encrypted_key)
            .unwrap_or_default();
        let key_ok = unwrapped.len().ct_eq(&CONTENT_KEY_LEN);
        let mut cek = Zeroizing::new([0u8; CONTENT_KEY_LEN]);
        for (slot, byte) in cek
            .iter_mut()
            .zip(unwrapped.expose().iter().chain(core::iter::repeat(&0u8)))
        {
            *slot = u8::conditional_select(&0, byte, key_ok);
        }
        drop(unwrapped);
        let mut content = SecretBytes::copy_from(&self.encrypted_content);
        // Fails only for a length that is not whole blocks, which `parse` already refused.
        let decrypted = crypto
            .aes256_cbc_decrypt(&cek, &self.iv, content.expose_mut())
            .is_ok();
        let (plain_len, padding_ok) = pkcs7_unpadded_len(content.expose());
        let valid = key_ok & Choice::from(u8::from(decrypted)) & padding_ok;
        if bool::from(valid) {
            content.expose_mut().truncate(plain_len);
            Ok(content)
        } else {
            // `content` (whatever the wrong key or padding made of it) is zeroized on drop.
            Err(CmsError::Decrypt)
        }
    }
}

/// The AES-256 content-encryption key's length.
const CONTENT_KEY_LEN: usize = 32;

fn expect<'a>(
    reader: &mut Ber<'a>,
    expected: u8,
    element: &'static str,
) -> Result<Tlv<'a>, CmsError> {
    let offset = reader.offset();
    match reader.peek_tag() {
        Some(found) if found != expected => Err(CmsError::UnexpectedTag {
            offset,
            element,
            expected,
            found,
        }),
        _ => Ok(reader.read_any()?),
    }
}

fn expect_oid<'a>(reader: &mut Ber<'a>, element: &'static str) -> Result<Tlv<'a>, CmsError> {
    expect(reader, tag::OID, element)
}

fn unsupported(
    tlv: &Tlv<'_>,
    element: &'static str,
    found: String,
    expected: &'static str,
) -> CmsError {
    CmsError::Unsupported {
        offset: tlv.offset,
        element,
        found,
        expected,
    }
}

/// Reads `INTEGER 2`.
fn expect_version(reader: &mut Ber<'_>, element: &'static str) -> Result<(), CmsError> {
    let version = expect(reader, tag::INTEGER, element)?;
    if version.content != [2] {
        let found = match version.content {
            [v] => format!("{v}"),
            other => format!("INTEGER {}", hex::encode(other)),
        };
        let expected = if element.starts_with("KeyTrans") {
            "KMS sends version 2 (recipient identified by subjectKeyIdentifier)"
        } else {
            "KMS sends version 2"
        };
        return Err(unsupported(&version, element, found, expected));
    }
    Ok(())
}

fn parse_recipient_infos<'a>(set: &Tlv<'a>) -> Result<(&'a [u8], &'a [u8]), CmsError> {
    let mut recipients = set.children();
    if recipients.is_empty() {
        return Err(unsupported(
            set,
            "recipientInfos",
            String::from("empty"),
            "KMS sends exactly one KeyTransRecipientInfo",
        ));
    }
    let ri = recipients.read_any()?;
    let kind = match ri.tag {
        tag::SEQUENCE => None,
        0xa1 => Some("KeyAgreeRecipientInfo [1]"),
        0xa2 => Some("KEKRecipientInfo [2]"),
        0xa3 => Some("PasswordRecipientInfo [3]"),
        0xa4 => Some("OtherRecipientInfo [4]"),
        _ => Some("an unknown RecipientInfo choice"),
    };
    if let Some(kind) = kind {
        return Err(unsupported(
            &ri,
            "recipient",
            String::from(kind),
            "KMS sends a KeyTransRecipientInfo (RSA key transport)",
        ));
    }
    if !recipients.is_empty() {
        return Err(CmsError::Unsupported {
            offset: recipients.offset(),
            element: "recipientInfos",
            found: String::from("more than one recipient"),
            expected: "KMS sends exactly one",
        });
    }

    let mut ktri = ri.children();
    expect_version(&mut ktri, "KeyTransRecipientInfo version")?;
    let rid = ktri.read_any()?;
    if rid.tag != tag::context_primitive(0) {
        let found = if rid.tag == tag::SEQUENCE {
            String::from("issuerAndSerialNumber")
        } else {
            format!("tag 0x{:02x}", rid.tag)
        };
        return Err(unsupported(
            &rid,
            "recipient identifier",
            found,
            "KMS identifies the recipient by subjectKeyIdentifier [0]",
        ));
    }
    let algorithm = expect(&mut ktri, tag::SEQUENCE, "keyEncryptionAlgorithm")?;
    check_key_transport(&algorithm)?;
    let encrypted_key = expect(&mut ktri, tag::OCTET_STRING, "encryptedKey")?;
    ktri.finish()?;
    Ok((rid.content, encrypted_key.content))
}

/// rsaesOaep with SHA-256 and MGF1-SHA-256 and an empty label, NULL hash parameters optional.
fn check_key_transport(algorithm: &Tlv<'_>) -> Result<(), CmsError> {
    const EXPECTED: &str = "KMS uses RSAES-OAEP-SHA-256 only";
    let mut alg = algorithm.children();
    let id = expect_oid(&mut alg, "keyEncryptionAlgorithm")?;
    if id.content != oid::RSAES_OAEP {
        let found = if id.content == oid::RSA_ENCRYPTION {
            String::from("rsaEncryption (PKCS#1 v1.5)")
        } else {
            describe_oid(id.content)
        };
        return Err(unsupported(&id, "key transport", found, EXPECTED));
    }
    let params = if alg.is_empty() {
        None
    } else {
        Some(expect(&mut alg, tag::SEQUENCE, "RSAES-OAEP-params")?)
    };
    alg.finish()?;
    let Some(params) = params else {
        return Err(unsupported(
            &id,
            "key transport",
            String::from("RSAES-OAEP without parameters (SHA-1 defaults)"),
            EXPECTED,
        ));
    };
    let mut p = params.children();
    if p.peek_tag() != Some(0xa0) {
        return Err(unsupported(
            &params,
            "OAEP hash",
            String::from("absent (the SHA-1 default)"),
            EXPECTED,
        ));
    }
    let hash = expect(&mut p, 0xa0, "OAEP hashFunc [0]")?;
    let mut hash_inner = hash.children();
    let hash_alg = expect(&mut hash_inner, tag::SEQUENCE, "OAEP hashFunc")?;
    hash_inner.finish()?;
    check_sha256_algorithm(&hash_alg, "OAEP hash")?;

    let mgf = match p.peek_tag() {
        Some(0xa1) => expect(&mut p, 0xa1, "OAEP maskGenFunc [1]")?,
        _ => {
            return Err(CmsError::Unsupported {
                offset: p.offset(),
                element: "OAEP mask generation",
                found: String::from("absent (the MGF1-SHA-1 default)"),
                expected: EXPECTED,
            });
        }
    };
    let mut mgf_inner = mgf.children();
    let mgf_alg = expect(&mut mgf_inner, tag::SEQUENCE, "OAEP maskGenFunc")?;
    mgf_inner.finish()?;
    let mut m = mgf_alg.children();
    let mgf_id = expect_oid(&mut m, "OAEP maskGenFunc algorithm")?;
    if mgf_id.content != oid::MGF1 {
        return Err(unsupported(
            &mgf_id,
            "OAEP mask generation",
            describe_oid(mgf_id.content),
            EXPECTED,
        ));
    }
    let mgf_hash = expect(&mut m, tag::SEQUENCE, "MGF1 hash")?;
    m.finish()?;
    check_sha256_algorithm(&mgf_hash, "MGF1 hash")?;

    if p.peek_tag() == Some(0xa2) {
        check_empty_label(&expect(&mut p, 0xa2, "OAEP pSourceFunc [2]")?)?;
    }
    p.finish()?;
    Ok(())
}

/// `AlgorithmIdentifier { sha256, NULL }` or `{ sha256 }` (both occur: KMS sends NULL,
/// openssl omits it).
fn check_sha256_algorithm(algorithm: &Tlv<'_>, element: &'static str) -> Result<(), CmsError> {
    let mut a = algorithm.children();
    let id = expect_oid(&mut a, element)?;
    if id.content != oid::SHA256 {
        return Err(unsupported(
            &id,
            element,
            describe_oid(id.content),
            "KMS uses RSAES-OAEP-SHA-256 only (SHA-256 and MGF1-SHA-256)",
        ));
    }
    if !a.is_empty() {
        let null = expect(&mut a, tag::NULL, element)?;
        if !null.content.is_empty() {
            return Err(unsupported(
                &null,
                element,
                String::from("a NULL with content"),
                "SHA-256 parameters are absent or an empty NULL",
            ));
        }
    }
    a.finish()?;
    Ok(())
}

/// pSourceFunc `[2] { id-pSpecified, OCTET STRING '' }` (the default, spelled out) is accepted;
/// a label is not.
fn check_empty_label(source: &Tlv<'_>) -> Result<(), CmsError> {
    /// id-pSpecified (1.2.840.113549.1.1.9)
    const P_SPECIFIED: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x09];
    let mut outer = source.children();
    let alg = expect(&mut outer, tag::SEQUENCE, "OAEP pSourceFunc")?;
    outer.finish()?;
    let mut a = alg.children();
    let id = expect_oid(&mut a, "OAEP pSourceFunc")?;
    let label = expect(&mut a, tag::OCTET_STRING, "OAEP label")?;
    a.finish()?;
    if id.content != P_SPECIFIED || !label.content.is_empty() {
        return Err(unsupported(
            &label,
            "OAEP label",
            format!("a {}-byte label", label.content.len()),
            "KMS uses an empty OAEP label",
        ));
    }
    Ok(())
}

fn parse_encrypted_content_info<'a>(eci: &Tlv<'a>) -> Result<([u8; 16], Cow<'a, [u8]>), CmsError> {
    let mut e = eci.children();
    let content_type = expect_oid(&mut e, "EncryptedContentInfo contentType")?;
    if content_type.content != oid::DATA {
        return Err(unsupported(
            &content_type,
            "encrypted content type",
            describe_oid(content_type.content),
            "KMS encrypts id-data (1.2.840.113549.1.7.1)",
        ));
    }
    let algorithm = expect(&mut e, tag::SEQUENCE, "contentEncryptionAlgorithm")?;
    let mut a = algorithm.children();
    let id = expect_oid(&mut a, "contentEncryptionAlgorithm")?;
    if id.content != oid::AES256_CBC {
        return Err(unsupported(
            &id,
            "content encryption",
            describe_oid(id.content),
            "KMS uses aes256-CBC only",
        ));
    }
    let iv = expect(&mut a, tag::OCTET_STRING, "AES-CBC IV")?;
    a.finish()?;
    let iv_bytes: [u8; 16] = iv.content.try_into().map_err(|_| {
        unsupported(
            &iv,
            "AES-CBC IV",
            format!("{} bytes", iv.content.len()),
            "an AES-CBC IV is 16 bytes",
        )
    })?;

    let content = match e.peek_tag() {
        Some(0x80) => Cow::Borrowed(e.read_any()?.content),
        Some(0xa0) => {
            let constructed = e.read_any()?;
            let mut chunks: Vec<&'a [u8]> = Vec::new();
            collect_chunks(&constructed, &mut chunks)?;
            match chunks.as_slice() {
                [] => Cow::Borrowed(&[][..]),
                [one] => Cow::Borrowed(*one),
                many => Cow::Owned(many.concat()),
            }
        }
        Some(t) => {
            return Err(CmsError::UnexpectedTag {
                offset: e.offset(),
                element: "encryptedContent [0]",
                expected: 0x80,
                found: t,
            });
        }
        None => {
            return Err(unsupported(
                eci,
                "encryptedContent",
                String::from("absent (detached content)"),
                "KMS always includes the ciphertext",
            ));
        }
    };
    e.finish()?;
    if content.is_empty() || content.len() % 16 != 0 {
        return Err(unsupported(
            eci,
            "encryptedContent",
            format!("{} bytes", content.len()),
            "AES-CBC with PKCS#7 padding gives a positive multiple of 16 bytes",
        ));
    }
    Ok((iv_bytes, content))
}

/// The OCTET STRING chunks of a constructed string, in order (chunks may themselves be
/// constructed, X.690 8.7.3).
fn collect_chunks<'a>(constructed: &Tlv<'a>, out: &mut Vec<&'a [u8]>) -> Result<(), CmsError> {
    let mut chunks = constructed.children();
    while !chunks.is_empty() {
        let offset = chunks.offset();
        let chunk = chunks.read_any()?;
        match chunk.tag {
            tag::OCTET_STRING => out.push(chunk.content),
            0x24 => collect_chunks(&chunk, out)?,
            found => {
                return Err(CmsError::UnexpectedTag {
                    offset,
                    element: "encryptedContent chunk",
                    expected: tag::OCTET_STRING,
                    found,
                });
            }
        }
    }
    Ok(())
}

/// A readable name for an OID: `aes128-CBC (2.16.840.1.101.3.4.1.2)`, or just the dotted form.
fn describe_oid(content: &[u8]) -> String {
    const NAMES: &[(&[u8], &str)] = &[
        (oid::RSA_ENCRYPTION, "rsaEncryption (PKCS#1 v1.5)"),
        (oid::RSAES_OAEP, "rsaesOaep"),
        (oid::MGF1, "mgf1"),
        (oid::SHA256, "sha256"),
        (&[0x2b, 0x0e, 0x03, 0x02, 0x1a], "sha1"),
        (
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02],
            "sha384",
        ),
        (
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03],
            "sha512",
        ),
        (
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02],
            "aes128-CBC",
        ),
        (
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16],
            "aes192-CBC",
        ),
        (oid::AES256_CBC, "aes256-CBC"),
        (
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2e],
            "aes256-GCM",
        ),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07],
            "des-ede3-cbc",
        ),
        (oid::DATA, "id-data"),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02],
            "signedData",
        ),
        (oid::ENVELOPED_DATA, "envelopedData"),
        (
            &[
                0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17,
            ],
            "authEnvelopedData",
        ),
    ];
    let dotted = dotted_oid(content);
    match NAMES.iter().find(|(bytes, _)| *bytes == content) {
        Some((_, name)) if name.contains('(') => String::from(*name),
        Some((_, name)) => format!("{name} ({dotted})"),
        None => format!("OID {dotted}"),
    }
}

fn dotted_oid(content: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in content {
        if value > (u64::MAX >> 7) {
            return String::from("(an OID with an arc too large to print)");
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        }
    }
    if content.is_empty() || content.last().is_some_and(|b| b & 0x80 != 0) {
        return String::from("(a malformed OID)");
    }
    let mut out = String::new();
    for (i, arc) in arcs.iter().enumerate() {
        if i == 0 {
            let (first, second) = match arc {
                0..=39 => (0, *arc),
                40..=79 => (1, arc - 40),
                _ => (2, arc - 80),
            };
            out.push_str(&format!("{first}.{second}"));
        } else {
            out.push_str(&format!(".{arc}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_are_named() {
        assert_eq!(
            describe_oid(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02]),
            "aes128-CBC (2.16.840.1.101.3.4.1.2)"
        );
        assert_eq!(
            describe_oid(oid::RSA_ENCRYPTION),
            "rsaEncryption (PKCS#1 v1.5)"
        );
        assert_eq!(describe_oid(&[0x2a, 0x03]), "OID 1.2.3");
        assert_eq!(describe_oid(&[0x2a, 0x83]), "OID (a malformed OID)");
        assert_eq!(describe_oid(&[0x88, 0x37]), "OID 2.999");
    }

    #[test]
    fn too_large_input_is_refused_before_parsing() {
        let big = alloc::vec![0u8; MAX_INPUT_LEN + 1];
        assert_eq!(
            parse(&big),
            Err(CmsError::TooLarge {
                len: MAX_INPUT_LEN + 1,
                max: MAX_INPUT_LEN
            })
        );
    }
}
