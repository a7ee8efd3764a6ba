//! TLS from the enclave to KMS, end to end through the parent's byte-forwarding proxy
//! (feature `std`): rustls with the aws-lc-rs provider, the server name
//! `kms.<region>.amazonaws.com` for SNI and certificate checks whatever the socket connects
//! to, and trust anchored on the Amazon roots unless the caller names another CA.
//!
//! The Amazon roots are taken from the `webpki-roots` crate (Mozilla's root program) by
//! subject: Amazon Root CA 1–4 and Starfield Services Root Certificate Authority - G2, the
//! anchors of every AWS service endpoint ("Amazon Trust Services" repository,
//! <https://www.amazontrust.com/repository/>). Nothing is downloaded.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use crate::der::{Reader, tag};
use crate::net::{Endpoint, Stream, TransportError};
use core::fmt;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, pem::PemObject};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io;
use std::sync::Arc;

/// `(organization, common name)` of the roots KMS endpoints chain to.
pub const AMAZON_ROOTS: [(&str, &str); 5] = [
    ("Amazon", "Amazon Root CA 1"),
    ("Amazon", "Amazon Root CA 2"),
    ("Amazon", "Amazon Root CA 3"),
    ("Amazon", "Amazon Root CA 4"),
    (
        "Starfield Technologies, Inc.",
        "Starfield Services Root Certificate Authority - G2",
    ),
];

/// The ALPN protocol offered (the AWS C SDK sets ALPN on its KMS connection).
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Which certificates a KMS endpoint may present.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustAnchors {
    /// The Amazon roots ([`AMAZON_ROOTS`]): real KMS. The default.
    #[default]
    AmazonRoots,
    /// Only the CA certificates in this PEM text (e.g. the KMS emulator's CA). Chosen
    /// explicitly; the KMS client prints a notice when it uses one.
    CustomCaPem(String),
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AmazonRoots => f.write_str("AmazonRoots"),
            Self::CustomCaPem(pem) => write!(f, "CustomCaPem({} bytes)", pem.len()),
        }
    }
}

/// The `(organization, common name)` of a trust anchor's subject (the content of its Name).
fn subject_names(subject: &[u8]) -> (Option<&str>, Option<&str>) {
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    let (mut organization, mut common_name) = (None, None);
    let mut rdns = Reader::new(subject);
    while let Ok(set) = rdns.read(tag::SET) {
        let mut attributes = set.reader();
        while let Ok(attribute) = attributes.read(tag::SEQUENCE) {
            let mut fields = attribute.reader();
            let (Ok(oid), Ok(value)) = (fields.read(tag::OID), fields.read_any()) else {
                continue;
            };
            let text = core::str::from_utf8(value.content).ok();
            if oid.content == COMMON_NAME {
                common_name = text;
            } else if oid.content == ORGANIZATION {
                organization = text;
            }
        }
    }
    (organization, common_name)
}

/// The Amazon roots from `webpki-roots`, selected by subject.
#[must_use]
pub fn amazon_roots() -> Vec<TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .filter(|anchor| {
            let (organization, common_name) = subject_names(anchor.subject.as_ref());
            AMAZON_ROOTS
                .iter()
                .any(|(o, cn)| organization == Some(*o) && common_name == Some(*cn))
        })
        .cloned()
        .collect()
}

/// A TLS stream over a [`Stream`].
pub type TlsStream = StreamOwned<ClientConnection, Stream>;

/// A rustls client configuration for one set of trust anchors; cheap to clone, and it keeps
/// the session-resumption cache across connections.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    anchors: usize,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("trust_anchors", &self.anchors)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// TLS 1.2 and 1.3 with rustls's safe defaults (aws-lc-rs), ALPN `http/1.1`, no client
    /// certificate.
    ///
    /// # Errors
    /// [`TransportError::TlsConfig`] if the Amazon roots are not all found in
    /// `webpki-roots` or a custom PEM holds no usable certificate.
    pub fn new(trust: &TrustAnchors) -> Result<Self, TransportError> {
        let mut roots = RootCertStore::empty();
        match trust {
            TrustAnchors::AmazonRoots => {
                let anchors = amazon_roots();
                if anchors.len() != AMAZON_ROOTS.len() {
                    return Err(TransportError::TlsConfig {
                        problem: format!(
                            "found {} of the {} Amazon roots in webpki-roots; the crate \
                             version dropped one: pin a version that has them",
                            anchors.len(),
                            AMAZON_ROOTS.len()
                        ),
                    });
                }
                roots.extend(anchors);
            }
            TrustAnchors::CustomCaPem(pem) => {
                for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let certificate = certificate.map_err(|e| TransportError::TlsConfig {
                        problem: format!("the CA PEM does not parse: {e}"),
                    })?;
                    roots
                        .add(certificate)
                        .map_err(|e| TransportError::TlsConfig {
                            problem: format!("a CA certificate in the PEM is unusable: {e}"),
                        })?;
                }
                if roots.is_empty() {
                    return Err(TransportError::TlsConfig {
                        problem: "the CA PEM holds no CERTIFICATE block".into(),
                    });
                }
            }
        }
        let anchors = roots.len();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::TlsConfig {
                problem: format!("{e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(Self {
            config: Arc::new(config),
            anchors,
        })
    }

    /// How many trust anchors this connector holds.
    #[must_use]
    pub fn anchor_count(&self) -> usize {
        self.anchors
    }

    /// Runs the TLS handshake on `stream` (already connected to `endpoint`, timeouts set),
    /// checking the certificate against `server_name`.
    ///
    /// # Errors
    /// [`TransportError::TlsConfig`] for a `server_name` that is not a DNS name or IP address,
    /// [`TransportError::Tls`] when the handshake fails (untrusted certificate, wrong name,
    /// alert), [`TransportError::Io`] / [`TransportError::Timeout`] when the stream fails.
    pub fn connect(
        &self,
        mut stream: Stream,
        endpoint: &Endpoint,
        server_name: &str,
        io_timeout: core::time::Duration,
    ) -> Result<TlsStream, TransportError> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            TransportError::TlsConfig {
                problem: format!("{server_name:?} is not a valid TLS server name"),
            }
        })?;
        let mut connection =
            ClientConnection::new(Arc::clone(&self.config), name).map_err(|error| {
                TransportError::Tls {
                    endpoint: endpoint.clone(),
                    server_name: server_name.into(),
                    error: Box::new(error),
                }
            })?;
        while connection.is_handshaking() {
            if let Err(source) = connection.complete_io(&mut stream) {
                return Err(handshake_error(source, endpoint, server_name, io_timeout));
            }
        }
        Ok(StreamOwned::new(connection, stream))
    }
}

fn handshake_error(
    source: io::Error,
    endpoint: &Endpoint,
    server_name: &str,
    io_timeout: core::time::Duration,
) -> TransportError {
    const DURING: &str = "the TLS handshake";
    if let Some(error) = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return TransportError::Tls {
            endpoint: endpoint.clone(),
            server_name: server_name.into(),
            error: Box::new(error.clone()),
        };
    }
    match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::Timeout {
            endpoint: endpoint.clone(),
            during: DURING,
            timeout: io_timeout,
        },
        _ => TransportError::Io {
            endpoint: endpoint.clone(),
            during: DURING,
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn the_amazon_roots_are_all_found_and_nothing_else() {
        let roots = amazon_roots();
        let mut names: Vec<_> = roots
            .iter()
            .map(|anchor| subject_names(anchor.subject.as_ref()))
            .collect();
        names.sort();
        let mut expected: Vec<_> = AMAZON_ROOTS
            .iter()
            .map(|(o, cn)| (Some(*o), Some(*cn)))
            .collect();
        expected.sort();
        assert_eq!(names, expected);
        // The similarly named Starfield root that is NOT an AWS anchor stays out.
        assert!(
            webpki_roots::TLS_SERVER_ROOTS
                .iter()
                .any(|a| subject_names(a.subject.as_ref()).1
                    == Some("Starfield Root Certificate Authority - G2"))
        );
        assert_eq!(
            TlsConnector::new(&TrustAnchors::AmazonRoots)
                .unwrap()
                .anchor_count(),
            5
        );
    }

    #[test]
    fn custom_ca_pem_must_hold_a_certificate() {
        for (pem, problem) in [
            ("", "no CERTIFICATE block"),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "does not parse",
            ),
        ] {
            let error = TlsConnector::new(&TrustAnchors::CustomCaPem(pem.into())).unwrap_err();
            assert!(error.to_string().contains(problem), "{error}");
        }
        assert_eq!(
            format!("{:?}", TrustAnchors::CustomCaPem("x".repeat(10))),
            "CustomCaPem(10 bytes)"
        );
    }
}
