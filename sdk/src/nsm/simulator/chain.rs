//! The simulator's development certificate chain (root → intermediate → leaf, all P-384),
//! shaped like AWS's: CA certificates with basicConstraints CA and keyCertSign/cRLSign, a
//! short-lived leaf with digitalSignature that is not a CA.
//!
//! Keys are aws-lc-rs `EcdsaKeyPair`s; AWS-LC cleanses their memory when they are freed, no
//! copy of the private key exists outside it, and `Debug` never shows them.

use super::SimulatorError;
use alloc::string::String;
use alloc::vec::Vec;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use core::fmt;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SerialNumber, SignatureAlgorithm, SigningKey,
};

/// Organisation written into every simulator certificate, so nobody mistakes one for AWS's.
const ORGANIZATION: &str = "CCC development - NOT AWS";

/// A P-384 key that signs certificates (ASN.1 DER signatures, as X.509 wants).
struct CaKey(EcdsaKeyPair);

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaKey([redacted])")
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

impl SigningKey for CaKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0
            .sign(&SystemRandom::new(), message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

/// The leaf's P-384 key: signs COSE Sig_structures (fixed `r || s`, as COSE wants).
pub(super) struct LeafKey(EcdsaKeyPair);

impl fmt::Debug for LeafKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeafKey([redacted])")
    }
}

impl PublicKeyData for LeafKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

impl LeafKey {
    /// ECDSA P-384 / SHA-384 over `message`, as 96 bytes `r || s`.
    pub(super) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SimulatorError> {
        self.0
            .sign(&SystemRandom::new(), message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| SimulatorError::Crypto("ECDSA P-384 signing of the COSE document"))
    }
}

/// A signed leaf certificate and its key, valid `[not_before, not_after)` (seconds).
#[derive(Debug)]
pub(super) struct Leaf {
    pub(super) key: LeafKey,
    pub(super) der: Vec<u8>,
    pub(super) not_before: u64,
    pub(super) not_after: u64,
}

/// Root and intermediate: the part of the chain that lives for the simulator's lifetime.
pub(super) struct Chain {
    root_der: Vec<u8>,
    root_pem: String,
    intermediate_der: Vec<u8>,
    intermediate: Issuer<'static, CaKey>,
    pub(super) not_after: u64,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("root_der_len", &self.root_der.len())
            .field("intermediate_der_len", &self.intermediate_der.len())
            .field("keys", &"[redacted]")
            .field("not_after", &self.not_after)
            .finish()
    }
}

fn datetime(seconds: u64) -> Result<time::OffsetDateTime, SimulatorError> {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(SimulatorError::Validity(
            "a certificate time is out of range",
        ))
}

fn ca_key() -> Result<CaKey, SimulatorError> {
    EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)
        .map(CaKey)
        .map_err(|_| SimulatorError::Crypto("P-384 key generation"))
}

fn serial() -> Result<SerialNumber, SimulatorError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SimulatorError::Crypto("random serial"))?;
    // A positive INTEGER with no leading zero byte: top bits 01.
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x3f) | 0x40;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

fn params(
    common_name: &str,
    not_before: u64,
    not_after: u64,
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
) -> Result<CertificateParams, SimulatorError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "US");
    name.push(DnType::OrganizationName, ORGANIZATION);
    name.push(DnType::OrganizationalUnitName, "NSM simulator");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.not_before = datetime(not_before)?;
    params.not_after = datetime(not_after)?;
    params.serial_number = Some(serial()?);
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn rcgen_error(_: rcgen::Error) -> SimulatorError {
    SimulatorError::Crypto("certificate signing (rcgen)")
}

impl Chain {
    /// Generates a root and an intermediate valid `[not_before, not_after)` (seconds).
    pub(super) fn generate(not_before: u64, not_after: u64) -> Result<Self, SimulatorError> {
        let ca_usages = || {
            alloc::vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ]
        };
        let root_key = ca_key()?;
        let mut root_params = params(
            "ccc-nsm-simulator.development-root",
            not_before,
            not_after,
            IsCa::Ca(BasicConstraints::Unconstrained),
            ca_usages(),
        )?;
        root_params.use_authority_key_identifier_extension = false;
        let root = root_params.self_signed(&root_key).map_err(rcgen_error)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let intermediate_key = ca_key()?;
        let intermediate_params = params(
            "ccc-nsm-simulator.development-intermediate",
            not_before,
            not_after,
            IsCa::Ca(BasicConstraints::Constrained(0)),
            ca_usages(),
        )?;
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .map_err(rcgen_error)?;
        Ok(Self {
            root_der: root.der().to_vec(),
            root_pem: root.pem(),
            intermediate_der: intermediate.der().to_vec(),
            intermediate: Issuer::new(intermediate_params, intermediate_key),
            not_after,
        })
    }

    /// Issues a fresh leaf for `module_id`, valid `[not_before, not_after)` (seconds).
    pub(super) fn issue_leaf(
        &self,
        module_id: &str,
        not_before: u64,
        not_after: u64,
    ) -> Result<Leaf, SimulatorError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
            .map(LeafKey)
            .map_err(|_| SimulatorError::Crypto("P-384 key generation"))?;
        let mut common_name = String::from(module_id);
        common_name.push_str(".simulator.ccc");
        let leaf_params = params(
            &common_name,
            not_before,
            not_after,
            IsCa::ExplicitNoCa,
            alloc::vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
        )?;
        let certificate = leaf_params
            .signed_by(&key, &self.intermediate)
            .map_err(rcgen_error)?;
        Ok(Leaf {
            key,
            der: certificate.der().to_vec(),
            not_before,
            not_after,
        })
    }

    /// The development root certificate, DER.
    pub(super) fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The development root certificate, PEM.
    pub(super) fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The intermediate certificate, DER.
    pub(super) fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }
}
