//! The EIF signature section: reading its signing certificate (for PCR8) and producing one
//! with a local ECDSA P-384 key.
//!
//! Layout (aws-nitro-enclaves-image-format `README.md` "EifSectionSignature",
//! `src/utils/eif_signer.rs`): a CBOR array of `PcrSignature` maps
//! `{"signing_certificate": <PEM text>, "signature": <untagged COSE_Sign1>}`, where both
//! byte vectors are serialised by serde as CBOR **arrays of unsigned integers**, not byte
//! strings. Only the first element is used (it signs PCR0). The COSE_Sign1 is
//! `[bstr({1: alg}), {}, bstr(payload), bstr(r || s)]` with payload
//! `{"register_index": 0, "register_value": [48 uints]}`, signed over
//! `["Signature1", protected, h'', payload]`.
//!
//! PCR8 = `SHA384(0^48 || SHA384(DER(certificate)))`. AWS's reader re-encodes the PEM
//! certificate with OpenSSL (`X509::from_pem(..).to_der()`); for a DER certificate (which
//! X.509 requires) that equals the base64-decoded PEM body used here.

use crate::pcr::Pcr;
use crate::reader::Eif;
use crate::x509::SigningCertificate;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use ccc_sdk::time::UnixMillis;
use minicbor::data::Type;
use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use zeroize::Zeroizing;

/// COSE algorithm identifier of ES384 (RFC 9053 §2.1).
const COSE_ES384: i32 = -35;
/// CBOR tag of a tagged COSE_Sign1 (RFC 9052 §4.2); AWS writes it untagged, both are read.
const COSE_SIGN1_TAG: u64 = 18;
/// Length of an ES384 signature: `r || s`, 48 bytes each (RFC 9053 §2.1).
const ES384_SIGNATURE_LEN: usize = 96;
/// Most elements accepted in the signature array (the format uses one; the section itself is
/// at most [`crate::format::MAX_SIGNATURE_LEN`] bytes, which bounds this anyway).
const MAX_SIGNATURES: u64 = 32;

/// A parsed signature section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSection {
    /// The first element's certificate as stored (PEM text).
    pub certificate_pem: Vec<u8>,
    /// DER of that certificate (the PCR8 input).
    pub certificate_der: Vec<u8>,
    /// The first element's COSE_Sign1 bytes (not verified by this crate).
    pub cose_sign1: Vec<u8>,
    /// Number of elements in the array (only the first is used).
    pub count: u64,
}

impl SignatureSection {
    /// Parses a signature section.
    ///
    /// # Errors
    /// A [`SignatureError`] with the offset inside the section and the reason.
    pub fn parse(section: &[u8]) -> Result<Self, SignatureError> {
        let mut d = minicbor::Decoder::new(section);
        let count = d
            .array()
            .map_err(|e| cbor_error(&d, "the section is not a CBOR array", &e))?
            .ok_or_else(|| SignatureError::at(0, "indefinite-length array; expected definite"))?;
        if count == 0 || count > MAX_SIGNATURES {
            return Err(SignatureError::at(
                0,
                format!("expected 1..={MAX_SIGNATURES} signatures, found {count}"),
            ));
        }
        let mut first = None;
        for _ in 0..count {
            let element = pcr_signature(&mut d)?;
            first.get_or_insert(element);
        }
        if d.position() != section.len() {
            return Err(SignatureError::at(
                d.position() as u64,
                "bytes after the signature array",
            ));
        }
        let (certificate_pem, cose_sign1, cert_at) =
            first.ok_or_else(|| SignatureError::at(0, "no signature element"))?;
        let certificate_der = pem_certificate_to_der(&certificate_pem)
            .map_err(|reason| SignatureError::at(cert_at, reason))?;
        Ok(Self {
            certificate_pem,
            certificate_der,
            cose_sign1,
            count,
        })
    }

    /// PCR8: `SHA384(0^48 || SHA384(certificate DER))`.
    #[must_use]
    pub fn pcr8(&self) -> Pcr {
        Pcr::of_content(&self.certificate_der)
    }
}

/// What a verified signature section vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureCheck {
    /// The signing certificate, parsed.
    pub certificate: SigningCertificate,
    /// PCR8, the measurement of that certificate.
    pub pcr8: Pcr,
}

impl SignatureSection {
    /// Verifies the section as the Nitro hypervisor and nitro-cli do, and more: the COSE_Sign1
    /// is ES384, its signature verifies with the certificate's P-384 key, its payload is
    /// exactly `{register_index: 0, register_value: PCR0}` for `pcr0` (byte for byte, as
    /// AWS's reader compares it), and — when `at` is given — the certificate is valid at `at`
    /// (`NotBefore <= at <= NotAfter`; Nitro refuses to start an enclave whose signing
    /// certificate has expired).
    ///
    /// # Errors
    /// [`SignatureCheckError`] naming the failed check.
    pub fn verify(
        &self,
        pcr0: &Pcr,
        at: Option<UnixMillis>,
    ) -> Result<SignatureCheck, SignatureCheckError> {
        let certificate = SigningCertificate::parse(&self.certificate_der)
            .map_err(|e| SignatureCheckError::Certificate(e.to_string()))?;
        let key = certificate
            .p384_key
            .as_deref()
            .ok_or(SignatureCheckError::NotP384)?;
        let cose = CoseSign1::parse(&self.cose_sign1).map_err(SignatureCheckError::Cose)?;
        if cose.algorithm != i64::from(COSE_ES384) {
            return Err(SignatureCheckError::Algorithm(cose.algorithm));
        }
        let to_be_signed = sig_structure(cose.protected, cose.payload)
            .map_err(|e| SignatureCheckError::Cose(e.to_string()))?;
        if cose.signature.len() != ES384_SIGNATURE_LEN
            || UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
                .verify(&to_be_signed, cose.signature)
                .is_err()
        {
            return Err(SignatureCheckError::BadSignature);
        }
        let expected = pcr_payload(pcr0).map_err(|e| SignatureCheckError::Cose(e.to_string()))?;
        if cose.payload != expected.as_slice() {
            return Err(SignatureCheckError::WrongPayload {
                pcr0: pcr0.hex(),
                found: hex::encode(cose.payload),
            });
        }
        if let Some(at) = at {
            if at < certificate.not_before {
                return Err(SignatureCheckError::NotYetValid {
                    not_before: certificate.not_before,
                    at,
                });
            }
            if at > certificate.not_after {
                return Err(SignatureCheckError::Expired {
                    not_after: certificate.not_after,
                    at,
                });
            }
        }
        Ok(SignatureCheck {
            certificate,
            pcr8: self.pcr8(),
        })
    }
}

impl Eif {
    /// Verifies this image's signature (see [`SignatureSection::verify`]); `Ok(None)` for an
    /// unsigned image. Callers that know the image must be signed (a release that publishes
    /// PCR8) treat `None` as [`SignatureCheckError::Missing`] — see [`Eif::require_signed`].
    ///
    /// # Errors
    /// [`SignatureCheckError`] naming the failed check.
    pub fn check_signature(
        &self,
        at: Option<UnixMillis>,
    ) -> Result<Option<SignatureCheck>, SignatureCheckError> {
        self.signature
            .as_ref()
            .map(|s| s.verify(&self.measurements.pcr0, at))
            .transpose()
    }

    /// Verifies a signature that must be there: an unsigned image is
    /// [`SignatureCheckError::Missing`], never "unsigned and fine".
    ///
    /// # Errors
    /// [`SignatureCheckError`] naming the failed check.
    pub fn require_signed(
        &self,
        at: Option<UnixMillis>,
    ) -> Result<SignatureCheck, SignatureCheckError> {
        self.check_signature(at)?
            .ok_or(SignatureCheckError::Missing)
    }
}

/// The parts of a COSE_Sign1 the check needs, borrowed.
struct CoseSign1<'a> {
    protected: &'a [u8],
    algorithm: i64,
    payload: &'a [u8],
    signature: &'a [u8],
}

impl<'a> CoseSign1<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let mut d = minicbor::Decoder::new(bytes);
        let err = |what: &str, e: &minicbor::decode::Error| format!("COSE_Sign1 {what}: {e}");
        if d.datatype().map_err(|e| err("", &e))? == Type::Tag {
            let t = d.tag().map_err(|e| err("tag", &e))?;
            if t.as_u64() != COSE_SIGN1_TAG {
                return Err(format!("COSE_Sign1 has tag {}, expected 18", t.as_u64()));
            }
        }
        if d.array().map_err(|e| err("array", &e))? != Some(4) {
            return Err("COSE_Sign1 is not a 4-element array".to_owned());
        }
        let protected = d.bytes().map_err(|e| err("protected header", &e))?;
        d.skip().map_err(|e| err("unprotected header", &e))?;
        let payload = d
            .bytes()
            .map_err(|e| err("payload (detached payloads are not accepted)", &e))?;
        let signature = d.bytes().map_err(|e| err("signature", &e))?;
        if d.position() != bytes.len() {
            return Err("bytes after the COSE_Sign1 array".to_owned());
        }
        let mut h = minicbor::Decoder::new(protected);
        let entries = h
            .map()
            .map_err(|e| err("protected header map", &e))?
            .ok_or("COSE_Sign1 protected header: indefinite-length map")?;
        let mut algorithm = None;
        for _ in 0..entries {
            let label = h.i64().map_err(|e| err("protected header label", &e))?;
            if label == 1 {
                algorithm = Some(h.i64().map_err(|e| err("alg", &e))?);
            } else {
                h.skip().map_err(|e| err("protected header value", &e))?;
            }
        }
        if h.position() != protected.len() {
            return Err("bytes after the COSE_Sign1 protected header".to_owned());
        }
        Ok(Self {
            protected,
            algorithm: algorithm.ok_or("COSE_Sign1 protected header has no alg (1)")?,
            payload,
            signature,
        })
    }
}

/// `Sig_structure = ["Signature1", protected, external_aad = h'', payload]` (RFC 9052 §4.4).
fn sig_structure(protected: &[u8], payload: &[u8]) -> Result<Vec<u8>, SignerError> {
    cbor(|e| {
        e.array(4)?
            .str("Signature1")?
            .bytes(protected)?
            .bytes(&[])?
            .bytes(payload)?;
        Ok(())
    })
}

/// The signed payload, `{"register_index": 0, "register_value": PCR0}` as serde_cbor writes
/// AWS's `PcrInfo`.
fn pcr_payload(pcr0: &Pcr) -> Result<Vec<u8>, SignerError> {
    cbor(|e| {
        e.map(2)?
            .str("register_index")?
            .u8(0)?
            .str("register_value")?;
        uint_array(e, &pcr0.0)
    })
}

/// Decodes one `PcrSignature` map; returns (certificate, signature, offset of certificate).
fn pcr_signature(d: &mut minicbor::Decoder<'_>) -> Result<(Vec<u8>, Vec<u8>, u64), SignatureError> {
    let at = d.position() as u64;
    let entries = d
        .map()
        .map_err(|e| cbor_error(d, "a signature element is not a CBOR map", &e))?
        .ok_or_else(|| SignatureError::at(at, "indefinite-length map; expected definite"))?;
    let (mut cert, mut sig) = (None, None);
    for _ in 0..entries {
        let key_at = d.position() as u64;
        let key = d
            .str()
            .map_err(|e| cbor_error(d, "a map key is not a text string", &e))?;
        let value_at = d.position() as u64;
        let slot = match key {
            "signing_certificate" => &mut cert,
            "signature" => &mut sig,
            other => {
                return Err(SignatureError::at(
                    key_at,
                    format!("unexpected key {other:?}; expected signing_certificate, signature"),
                ));
            }
        };
        if slot.is_some() {
            return Err(SignatureError::at(key_at, format!("duplicate key {key:?}")));
        }
        *slot = Some((byte_vector(d)?, value_at));
    }
    match (cert, sig) {
        (Some((cert, cert_at)), Some((sig, _))) => Ok((cert, sig, cert_at)),
        _ => Err(SignatureError::at(
            at,
            "a signature element lacks signing_certificate or signature",
        )),
    }
}

/// A serde `Vec<u8>`: an array of uints (what serde_cbor and ciborium write), or a byte
/// string (also accepted by ciborium's deserializer).
fn byte_vector(d: &mut minicbor::Decoder<'_>) -> Result<Vec<u8>, SignatureError> {
    let at = d.position() as u64;
    match d.datatype() {
        Ok(Type::Bytes) => d
            .bytes()
            .map(<[u8]>::to_vec)
            .map_err(|e| cbor_error(d, "bad byte string", &e)),
        Ok(Type::Array) => {
            let len = d
                .array()
                .map_err(|e| cbor_error(d, "bad array", &e))?
                .ok_or_else(|| {
                    SignatureError::at(at, "indefinite-length array; expected definite")
                })?;
            // Each element takes at least one byte, so the section length bounds `len`.
            let mut out = Vec::new();
            for _ in 0..len {
                out.push(
                    d.u8()
                        .map_err(|e| cbor_error(d, "array element is not a byte value", &e))?,
                );
            }
            Ok(out)
        }
        _ => Err(SignatureError::at(at, "expected an array of bytes")),
    }
}

fn cbor_error(
    d: &minicbor::Decoder<'_>,
    what: &str,
    e: &minicbor::decode::Error,
) -> SignatureError {
    let at = e.position().unwrap_or_else(|| d.position());
    SignatureError::at(at as u64, format!("{what} ({e})"))
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
fn pem_certificate_to_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    let der = CertificateDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            "no -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- block in the \
             certificate"
                .to_owned()
        }
        other => format!("the certificate PEM: {other}"),
    })?;
    check_der_sequence(&der)?;
    Ok(der.to_vec())
}

/// Checks that `der` is exactly one DER SEQUENCE (tag and definite length).
fn check_der_sequence(der: &[u8]) -> Result<(), String> {
    let (content, rest) = der_element(der, 0x30).ok_or("the certificate is not a DER SEQUENCE")?;
    if !rest.is_empty() || content.is_empty() {
        return Err("the certificate DER has trailing bytes or is empty".to_owned());
    }
    Ok(())
}

/// Splits one DER element with tag `tag` off `der`: (contents, rest).
fn der_element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, tail) = rest.split_at_checked(n)?;
        rest = tail;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        // DER: minimal length encoding.
        if len < 0x80 || bytes.first() == Some(&0) {
            return None;
        }
        len
    };
    rest.split_at_checked(len)
}

/// The `subjectPublicKey` bits of an X.509 certificate (DER).
fn certificate_public_key(der: &[u8]) -> Option<&[u8]> {
    let (cert, _) = der_element(der, 0x30)?;
    let (tbs, _) = der_element(cert, 0x30)?;
    let mut rest = tbs;
    // [0] EXPLICIT version (optional), serialNumber, signature, issuer, validity, subject.
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest, 0xa0)?.1;
    }
    rest = der_element(rest, 0x02)?.1;
    for _ in 0..4 {
        rest = der_element(rest, 0x30)?.1;
    }
    let (spki, _) = der_element(rest, 0x30)?;
    let (_, spki_rest) = der_element(spki, 0x30)?;
    let (bits, _) = der_element(spki_rest, 0x03)?;
    // BIT STRING: first byte = unused bits (0 for keys).
    match bits.split_first() {
        Some((0, key)) => Some(key),
        _ => None,
    }
}

/// Produces the signature section of an image from its PCR0 (see [`crate::EifBuilder::signer`]).
pub trait PcrSigner {
    /// DER of the signing certificate; its measurement is PCR8.
    fn certificate_der(&self) -> &[u8];

    /// The complete signature section for an image whose PCR0 is `pcr0`.
    ///
    /// # Errors
    /// [`SignerError`]: whatever prevents signing (it becomes [`crate::BuildError::Sign`]).
    fn signature_section(&self, pcr0: &Pcr) -> Result<Vec<u8>, SignerError>;
}

/// Signs PCR0 with a local ECDSA P-384 private key (ES384), as `nitro-cli build-enclave
/// --private-key key.pem --signing-certificate cert.pem` does.
///
/// The signature is randomised, so signed images are not byte-reproducible; their PCRs
/// (including PCR8) are.
pub struct LocalSigner {
    key: EcdsaKeyPair,
    certificate_pem: Vec<u8>,
    certificate_der: Vec<u8>,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner")
            .field("key", &"[redacted]")
            .field("certificate_der_len", &self.certificate_der.len())
            .finish()
    }
}

impl LocalSigner {
    /// A signer from a PEM private key (`PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1),
    /// curve P-384) and the PEM certificate of its public key.
    ///
    /// # Errors
    /// [`SignerError`] when the key is not a P-384 key, the certificate is not PEM/DER, or
    /// the certificate's public key is not the key's.
    pub fn from_pem(private_key_pem: &[u8], certificate_pem: &[u8]) -> Result<Self, SignerError> {
        // PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`); the DER is zeroized on drop.
        let der = PrivateKeyDer::from_pem_slice(private_key_pem)
            .map(Zeroizing::new)
            .map_err(|e| match e {
                pem::Error::NoItemsFound => SignerError::NoPrivateKey,
                other => SignerError::PrivateKeyPem(other.to_string()),
            })?;
        let key =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, der.secret_der())
                .map_err(|e| SignerError::NotP384(e.to_string()))?;
        let certificate_der =
            pem_certificate_to_der(certificate_pem).map_err(SignerError::Certificate)?;
        let cert_key =
            certificate_public_key(&certificate_der).ok_or(SignerError::CertificateKey)?;
        if cert_key != key.public_key().as_ref() {
            return Err(SignerError::KeyMismatch);
        }
        Ok(Self {
            key,
            certificate_pem: certificate_pem.to_vec(),
            certificate_der,
        })
    }
}

impl PcrSigner for LocalSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    fn signature_section(&self, pcr0: &Pcr) -> Result<Vec<u8>, SignerError> {
        let protected = cbor(|e| {
            e.map(1)?.u8(1)?.i32(COSE_ES384)?;
            Ok(())
        })?;
        let payload = pcr_payload(pcr0)?;
        let to_sign = sig_structure(&protected, &payload)?;
        let signature = self
            .key
            .sign(&SystemRandom::new(), &to_sign)
            .map_err(|_| SignerError::Signing)?;
        let cose = cbor(|e| {
            e.array(4)?
                .bytes(&protected)?
                .map(0)?
                .bytes(&payload)?
                .bytes(signature.as_ref())?;
            Ok(())
        })?;
        encode_section(&self.certificate_pem, &cose)
    }
}

/// A signing key held elsewhere (a KMS key, `--sign-kms-key`): the certificate PEM and the
/// key's public key were checked to match by [`DigestSigning::new`]; `sign_digest` gets the
/// SHA-384 of the COSE Sig_structure and returns the DER ECDSA signature KMS answers with.
pub struct DigestSigning {
    certificate_pem: Vec<u8>,
    certificate_der: Vec<u8>,
}

impl fmt::Debug for DigestSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestSigning")
            .field("certificate_der_len", &self.certificate_der.len())
            .finish()
    }
}

impl DigestSigning {
    /// Checks that the PEM certificate's public key is `public_key_spki` (DER
    /// SubjectPublicKeyInfo, as KMS's `GetPublicKey` answers), a P-384 key.
    ///
    /// # Errors
    /// [`SignerError::Certificate`], [`SignerError::CertificateKey`], [`SignerError::NotP384`]
    /// for a key that is not a P-384 SubjectPublicKeyInfo, [`SignerError::KeyMismatch`].
    pub fn new(certificate_pem: &[u8], public_key_spki: &[u8]) -> Result<Self, SignerError> {
        let certificate_der =
            pem_certificate_to_der(certificate_pem).map_err(SignerError::Certificate)?;
        let cert_key =
            certificate_public_key(&certificate_der).ok_or(SignerError::CertificateKey)?;
        let point = spki_p384_point(public_key_spki).ok_or_else(|| {
            SignerError::NotP384("the key's public key is not a P-384 SubjectPublicKeyInfo".into())
        })?;
        if cert_key != point {
            return Err(SignerError::KeyMismatch);
        }
        Ok(Self {
            certificate_pem: certificate_pem.to_vec(),
            certificate_der,
        })
    }

    /// DER of the signing certificate (PCR8's input).
    #[must_use]
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The signature section for `pcr0`: `sign_digest` signs the SHA-384 of the Sig_structure
    /// (ES384) and answers a DER `Ecdsa-Sig-Value`, converted here to COSE's 96-byte r‖s.
    ///
    /// # Errors
    /// What `sign_digest` returns; [`SignerError::RemoteSignature`] for a signature that is
    /// not a DER P-384 ECDSA signature.
    pub fn signature_section(
        &self,
        pcr0: &Pcr,
        sign_digest: impl FnOnce(&[u8]) -> Result<Vec<u8>, SignerError>,
    ) -> Result<Vec<u8>, SignerError> {
        let protected = cbor(|e| {
            e.map(1)?.u8(1)?.i32(COSE_ES384)?;
            Ok(())
        })?;
        let payload = pcr_payload(pcr0)?;
        let to_sign = sig_structure(&protected, &payload)?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &to_sign);
        let der = sign_digest(digest.as_ref())?;
        let signature = ecdsa_der_to_fixed(&der)?;
        let cose = cbor(|e| {
            e.array(4)?
                .bytes(&protected)?
                .map(0)?
                .bytes(&payload)?
                .bytes(&signature)?;
            Ok(())
        })?;
        encode_section(&self.certificate_pem, &cose)
    }
}

/// The uncompressed point of a P-384 SubjectPublicKeyInfo (id-ecPublicKey, secp384r1).
fn spki_p384_point(spki: &[u8]) -> Option<&[u8]> {
    // AlgorithmIdentifier { id-ecPublicKey 1.2.840.10045.2.1, secp384r1 1.3.132.0.34 }.
    const P384_ALGORITHM: [u8; 16] = [
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
        0x22,
    ];
    let (body, after) = der_element(spki, 0x30)?;
    let (algorithm, rest) = der_element(body, 0x30)?;
    let (bits, end) = der_element(rest, 0x03)?;
    if !after.is_empty() || !end.is_empty() || algorithm != P384_ALGORITHM {
        return None;
    }
    match bits.split_first() {
        Some((0, point)) if point.len() == 97 && point.first() == Some(&4) => Some(point),
        _ => None,
    }
}

/// A DER `Ecdsa-Sig-Value` (SEQUENCE { r INTEGER, s INTEGER }, RFC 3279) as COSE's fixed
/// r‖s of 48 bytes each (RFC 9053 2.1).
///
/// # Errors
/// [`SignerError::RemoteSignature`] naming what is wrong.
pub fn ecdsa_der_to_fixed(der: &[u8]) -> Result<[u8; ES384_SIGNATURE_LEN], SignerError> {
    let bad = |what: &str| SignerError::RemoteSignature(what.to_owned());
    let (body, after) = der_element(der, 0x30).ok_or_else(|| bad("not a DER SEQUENCE"))?;
    if !after.is_empty() {
        return Err(bad("bytes after the SEQUENCE"));
    }
    let (r, rest) = der_element(body, 0x02).ok_or_else(|| bad("r is not an INTEGER"))?;
    let (s, end) = der_element(rest, 0x02).ok_or_else(|| bad("s is not an INTEGER"))?;
    if !end.is_empty() {
        return Err(bad("bytes after s"));
    }
    let mut out = [0u8; ES384_SIGNATURE_LEN];
    let half = ES384_SIGNATURE_LEN / 2;
    for (value, name, at) in [(r, "r", 0), (s, "s", half)] {
        // A positive INTEGER may carry one leading zero byte; the rest must fit 48 bytes.
        let value = match value {
            [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => rest,
            [first, ..] if first & 0x80 != 0 => {
                return Err(bad(&format!("{name} is negative")));
            }
            other => other,
        };
        if value.is_empty() || value.len() > half {
            return Err(bad(&format!(
                "{name} is {} bytes; P-384 allows 1 to {half}",
                value.len()
            )));
        }
        let start = at + half - value.len();
        out.get_mut(start..at + half)
            .ok_or_else(|| bad("length"))?
            .copy_from_slice(value);
    }
    Ok(out)
}

/// A one-element signature section, `[{"signing_certificate": PEM, "signature": COSE_Sign1}]`,
/// both as serde_cbor writes `Vec<u8>` (arrays of uints). For signers other than
/// [`LocalSigner`] (a KMS key signs the same Sig_structure).
///
/// # Errors
/// [`SignerError::Encoding`] (it does not happen for in-memory output).
pub fn encode_section(certificate_pem: &[u8], cose_sign1: &[u8]) -> Result<Vec<u8>, SignerError> {
    cbor(|e| {
        e.array(1)?.map(2)?.str("signing_certificate")?;
        uint_array(e, certificate_pem)?;
        e.str("signature")?;
        uint_array(e, cose_sign1)
    })
}

type Enc = minicbor::Encoder<Vec<u8>>;
type EncResult = Result<(), minicbor::encode::Error<std::convert::Infallible>>;

fn cbor(f: impl FnOnce(&mut Enc) -> EncResult) -> Result<Vec<u8>, SignerError> {
    let mut e = minicbor::Encoder::new(Vec::new());
    f(&mut e).map_err(|e| SignerError::Encoding(e.to_string()))?;
    Ok(e.into_writer())
}

/// A serde `Vec<u8>` as serde_cbor writes it: an array of uints.
fn uint_array(e: &mut Enc, bytes: &[u8]) -> EncResult {
    e.array(bytes.len() as u64)?;
    for b in bytes {
        e.u8(*b)?;
    }
    Ok(())
}

/// A signature section that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureError {
    /// Offset inside the section's data.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl SignatureError {
    fn at(offset: u64, reason: impl Into<String>) -> Self {
        Self {
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at byte {} of the signature section: {}",
            self.offset, self.reason
        )
    }
}

impl core::error::Error for SignatureError {}

/// Why an image cannot be signed: the key or certificate given, or the signing itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignerError {
    /// The private key PEM has no `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1) block.
    NoPrivateKey,
    /// The private key PEM cannot be read (the PEM parser's reason; it never quotes key bytes).
    PrivateKeyPem(String),
    /// The key is not an ECDSA P-384 key (AWS-LC's reason).
    NotP384(String),
    /// The certificate is not one PEM `CERTIFICATE` holding a DER SEQUENCE.
    Certificate(String),
    /// The certificate's public key cannot be found.
    CertificateKey,
    /// The certificate's public key is not the private key's.
    KeyMismatch,
    /// ECDSA signing failed in AWS-LC.
    Signing,
    /// A signer elsewhere (a KMS key) refused or failed; its own words, naming the fix.
    Remote(String),
    /// A signer elsewhere answered a signature that is not a DER P-384 ECDSA signature.
    RemoteSignature(String),
    /// The section could not be encoded (minicbor's reason).
    Encoding(String),
    /// The signer produced a section larger than the format allows.
    TooLarge {
        /// Its length.
        len: u64,
        /// The format's limit ([`crate::format::MAX_SIGNATURE_LEN`]).
        limit: u64,
    },
}

impl fmt::Display for SignerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot sign the image: ")?;
        match self {
            Self::NoPrivateKey => f.write_str(
                "no PRIVATE KEY or EC PRIVATE KEY block in the private key PEM; pass the \
                 PEM file of an ECDSA P-384 key",
            ),
            Self::PrivateKeyPem(reason) => write!(f, "the private key PEM: {reason}"),
            Self::NotP384(reason) => write!(
                f,
                "the private key is not an ECDSA P-384 key ({reason}); generate one with \
                 `openssl ecparam -name secp384r1 -genkey`"
            ),
            Self::Certificate(reason) => write!(f, "{reason}"),
            Self::CertificateKey => {
                f.write_str("cannot find the public key in the signing certificate")
            }
            Self::KeyMismatch => f.write_str(
                "the certificate's public key is not the private key's; pass the matching pair",
            ),
            Self::Signing => f.write_str("ECDSA signing failed in AWS-LC"),
            Self::Remote(reason) => write!(f, "{reason}"),
            Self::RemoteSignature(reason) => write!(
                f,
                "the signer answered a signature that is not a DER P-384 ECDSA signature \
                 ({reason}); check that the key is ECC_NIST_P384 and signs with ECDSA_SHA_384"
            ),
            Self::Encoding(reason) => write!(f, "CBOR encoding failed: {reason}"),
            Self::TooLarge { len, limit } => write!(
                f,
                "the signature section is {len} bytes; the format allows {limit}"
            ),
        }
    }
}

impl core::error::Error for SignerError {}

/// Why a signed image's signature is not accepted. Every variant is a refusal: a signed image
/// whose signature does not verify is never treated as unsigned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureCheckError {
    /// The image has no signature section, but it must be signed (its release publishes PCR8).
    Missing,
    /// The signing certificate cannot be read.
    Certificate(String),
    /// The certificate's key is not an EC P-384 key.
    NotP384,
    /// The COSE_Sign1 is malformed.
    Cose(String),
    /// The COSE algorithm is not ES384 (-35).
    Algorithm(i64),
    /// The ECDSA signature does not verify with the certificate's key.
    BadSignature,
    /// The signed payload is not `(0, PCR0)` of this image.
    WrongPayload {
        /// This image's PCR0 (hex).
        pcr0: String,
        /// The signed payload (CBOR, hex).
        found: String,
    },
    /// The certificate is not valid yet at the time checked.
    NotYetValid {
        /// Its NotBefore.
        not_before: UnixMillis,
        /// The time checked.
        at: UnixMillis,
    },
    /// The certificate has expired at the time checked.
    Expired {
        /// Its NotAfter.
        not_after: UnixMillis,
        /// The time checked.
        at: UnixMillis,
    },
}

impl fmt::Display for SignatureCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the EIF signature is not valid: ")?;
        match self {
            Self::Missing => f.write_str(
                "the image has no signature section, but its release is signed (it publishes \
                 PCR8); use the signed EIF the release published, never an unsigned copy",
            ),
            Self::Certificate(reason) => write!(f, "{reason}"),
            Self::NotP384 => f.write_str(
                "the signing certificate's key is not an EC P-384 key; nitro-cli signs with \
                 ECDSA P-384 only",
            ),
            Self::Cose(reason) => write!(f, "{reason}"),
            Self::Algorithm(alg) => {
                write!(f, "the COSE_Sign1 algorithm is {alg}, expected ES384 (-35)")
            }
            Self::BadSignature => f.write_str(
                "the ECDSA signature does not verify with the signing certificate's key: the \
                 image or its signature was altered, or the certificate is not the signer's",
            ),
            Self::WrongPayload { pcr0, found } => write!(
                f,
                "the signature covers another image: its payload is {found}, expected \
                 register 0 = this image's PCR0 {pcr0}; re-sign the image"
            ),
            Self::NotYetValid { not_before, at } => write!(
                f,
                "the signing certificate is not valid before {not_before} (checked at {at}); \
                 check the clock or pass --at"
            ),
            Self::Expired { not_after, at } => write!(
                f,
                "the signing certificate expired at {not_after} (checked at {at}); Nitro \
                 refuses to run it: re-sign with a current certificate (docs/releasing.md)"
            ),
        }
    }
}

impl core::error::Error for SignatureCheckError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS-LC's DER signatures convert to the fixed form AWS-LC's fixed verifier accepts; short
    /// r/s are left-padded; malformed DER is refused by name.
    #[test]
    fn der_ecdsa_signatures_become_cose_r_and_s() {
        use aws_lc_rs::signature::{
            ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED, KeyPair as _,
        };
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let verifier = aws_lc_rs::signature::UnparsedPublicKey::new(
            &ECDSA_P384_SHA384_FIXED,
            pair.public_key().as_ref(),
        );
        // Enough signatures that some r or s has a high bit (leading zero) or is short.
        for i in 0..64u8 {
            let der = pair.sign(&SystemRandom::new(), &[i]).unwrap();
            let fixed = ecdsa_der_to_fixed(der.as_ref()).unwrap();
            verifier.verify(&[i], &fixed).unwrap();
        }
        // r = 1, s = 0x80 (DER needs a leading zero for s).
        let short = [0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80];
        let fixed = ecdsa_der_to_fixed(&short).unwrap();
        assert_eq!(fixed[47], 1);
        assert_eq!(fixed[95], 0x80);
        assert!(fixed[..47].iter().chain(&fixed[48..95]).all(|b| *b == 0));
        for (bad, why) in [
            (&[0x31, 0x00][..], "not a DER SEQUENCE"),
            (&[0x30, 0x03, 0x02, 0x01, 0x01][..], "s is not an INTEGER"),
            (
                &[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01][..],
                "r is negative",
            ),
        ] {
            let err = ecdsa_der_to_fixed(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        let mut long = vec![0x30, 0x36, 0x02, 0x31];
        long.extend([0x01; 49]);
        long.extend([0x02, 0x01, 0x01]);
        let err = ecdsa_der_to_fixed(&long).unwrap_err();
        assert!(err.to_string().contains("r is 49 bytes"), "{err}");
    }

    #[test]
    fn payload_matches_the_serde_cbor_bytes_aws_pins() {
        // image-format 0.8.1 src/utils/cbor.rs pins PcrInfo{0, 0x00..0x2f} as
        // a2 6e "register_index" 00 6e "register_value" 98 30 00 01 .. 17 18 18 ..
        let pcr = Pcr(std::array::from_fn(|i| i as u8));
        let payload = cbor(|e| {
            e.map(2)?
                .str("register_index")?
                .u8(0)?
                .str("register_value")?;
            uint_array(e, &pcr.0)
        })
        .unwrap();
        let mut expected = vec![0xa2, 0x6e];
        expected.extend_from_slice(b"register_index");
        expected.extend_from_slice(&[0x00, 0x6e]);
        expected.extend_from_slice(b"register_value");
        expected.extend_from_slice(&[0x98, 0x30]);
        for i in 0u8..48 {
            if i < 24 {
                expected.push(i);
            } else {
                expected.extend_from_slice(&[0x18, i]);
            }
        }
        assert_eq!(payload, expected);
    }

    #[test]
    fn rejects_malformed_sections_with_offsets() {
        assert_eq!(SignatureSection::parse(&[]).unwrap_err().offset, 0);
        assert!(SignatureSection::parse(&[0x80]).is_err()); // empty array
        assert!(SignatureSection::parse(&[0x81, 0xa0]).is_err()); // element lacks keys
        let err = SignatureSection::parse(&[0x81, 0xa1, 0x61, b'x', 0x00]).unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.reason.contains("unexpected key"));
    }

    #[test]
    fn der_length_rules() {
        assert!(check_der_sequence(&[0x30, 0x01, 0x00]).is_ok());
        assert!(check_der_sequence(&[0x30, 0x02, 0x00]).is_err());
        assert!(check_der_sequence(&[0x30, 0x81, 0x01, 0x00]).is_err()); // not minimal
        assert!(check_der_sequence(&[0x31, 0x01, 0x00]).is_err());
        assert!(check_der_sequence(&[0x30, 0x01, 0x00, 0x00]).is_err());
    }
}
