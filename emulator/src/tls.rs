//! The emulator's TLS: a development CA kept in the state file (so clients keep trusting it
//! across restarts), a server certificate issued by it at every start, and the rustls server
//! configuration (aws-lc-rs provider).
//!
//! The CA is name-constrained to the emulator's names (`kms.<region>.amazonaws.com`,
//! `localhost`, `127.0.0.1`): a client told to trust it trusts nothing else it might sign,
//! even though its private key sits in a plaintext development file.

use crate::EmulatorError;
use crate::state::CaMaterial;
use ccc_sdk::time::UnixMillis;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SerialNumber,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// How long the CA is valid: long enough that a developer never has to re-trust it.
const CA_VALIDITY_DAYS: i64 = 10 * 365;
/// How long a server certificate is valid (a new one is issued at every start).
const SERVER_VALIDITY_DAYS: i64 = 365;
/// Certificates start a day early so a client whose clock lags still accepts them.
const BACKDATE_DAYS: i64 = 1;

fn tls_error(what: &str) -> impl FnOnce(rcgen::Error) -> EmulatorError + '_ {
    move |e| EmulatorError::Tls(format!("{what}: {e}"))
}

fn days_from_now(days: i64) -> Result<OffsetDateTime, EmulatorError> {
    let now = i64::try_from(UnixMillis::now().as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(now.saturating_add(days.saturating_mul(86_400)))
        .map_err(|e| EmulatorError::Tls(format!("certificate time out of range: {e}")))
}

/// The permitted names of the CA and the names of the server certificate.
fn names(host: &str) -> Vec<String> {
    vec![
        host.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ]
}

/// What a (re)built issuer needs: the CA's name, key usages and key identifier method, which
/// are fixed here, so the issuer made at any later start matches the stored certificate.
fn ca_params(common_name: &str, host: &str) -> Result<CertificateParams, EmulatorError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error("CA"))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::OrganizationName,
        "CCC KMS emulator (development only)",
    );
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName(host.to_owned()),
            GeneralSubtree::DnsName("localhost".to_owned()),
            GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([127, 0, 0, 1], 32)),
        ],
        excluded_subtrees: Vec::new(),
    });
    Ok(params)
}

/// A new CA for a state file of `region`.
pub(crate) fn new_ca(region: &str) -> Result<CaMaterial, EmulatorError> {
    let host = ccc_sdk::kms::endpoint_host(region);
    let id = crate::state::uuid().map_err(|f| EmulatorError::Tls(f.message))?;
    let common_name = format!("CCC KMS emulator CA {}", id.get(..8).unwrap_or_default());
    let mut params = ca_params(&common_name, &host)?;
    params.not_before = days_from_now(-BACKDATE_DAYS)?;
    params.not_after = days_from_now(CA_VALIDITY_DAYS)?;
    let serial = crate::keys::random(16).map_err(|f| EmulatorError::Tls(f.message))?;
    params.serial_number = Some(SerialNumber::from_slice(serial.expose()));
    let key = KeyPair::generate().map_err(tls_error("CA key generation"))?;
    let certificate = params.self_signed(&key).map_err(tls_error("CA signing"))?;
    Ok(CaMaterial {
        common_name,
        certificate_pem: certificate.pem(),
        private_key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// The CA certificate's DER.
pub(crate) fn ca_der(ca: &CaMaterial) -> Result<Vec<u8>, EmulatorError> {
    use rustls_pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(ca.certificate_pem.as_bytes())
        .map(|der| der.to_vec())
        .map_err(|e| EmulatorError::Tls(format!("the stored CA certificate is not PEM: {e}")))
}

/// Issues a server certificate for `host`, `localhost` and `127.0.0.1` and builds the rustls
/// configuration (TLS 1.2 and 1.3, ALPN `http/1.1`).
pub(crate) fn server_config(
    ca: &CaMaterial,
    host: &str,
) -> Result<Arc<ServerConfig>, EmulatorError> {
    let ca_key = KeyPair::from_pem(&ca.private_key_pem).map_err(tls_error("the stored CA key"))?;
    let issuer = Issuer::new(ca_params(&ca.common_name, host)?, ca_key);

    let mut params = CertificateParams::new(names(host)).map_err(tls_error("server names"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = days_from_now(-BACKDATE_DAYS)?;
    params.not_after = days_from_now(SERVER_VALIDITY_DAYS)?;
    let serial = crate::keys::random(16).map_err(|f| EmulatorError::Tls(f.message))?;
    params.serial_number = Some(SerialNumber::from_slice(serial.expose()));
    let key = KeyPair::generate().map_err(tls_error("server key generation"))?;
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(tls_error("issuing the server certificate"))?;

    let chain = vec![certificate.der().clone(), CertificateDer::from(ca_der(ca)?)];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EmulatorError::Tls(format!("protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| EmulatorError::Tls(format!("server certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
