//! KMS for the policy commands: where it is (AWS, or an emulator or moto for tests and
//! rehearsals), whose credentials sign (the operator's chain unless given), and the two calls
//! (`GetKeyPolicy`, `PutKeyPolicy`) through the SDK's own SigV4 client.

use crate::Error;
use ccc_sdk::credentials::operator::operator_source;
use ccc_sdk::credentials::{CredentialsProvider, Refreshing};
use ccc_sdk::kms::client::{ClientConfig, KmsClient, Transport};
use ccc_sdk::kms::{GetKeyPolicyRequest, PutKeyPolicyRequest};
use ccc_sdk::net::Endpoint;
use ccc_sdk::tls::TrustAnchors;
use std::path::PathBuf;
use std::sync::Arc;

/// Where KMS is, when it is not AWS's regional endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct KmsOptions {
    /// KMS at this URL instead of https://kms.<region>.amazonaws.com: `https://127.0.0.1:PORT`
    /// for the KMS emulator (with --ca-file), `http://127.0.0.1:PORT` for moto.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// The CA certificate (PEM) to trust for an https --endpoint-url (the emulator writes
    /// `<state>.ca.pem`); never needed for AWS.
    #[arg(long, value_name = "PEM", requires = "endpoint_url")]
    pub ca_file: Option<PathBuf>,
}

/// Whose credentials sign.
#[derive(Clone)]
#[non_exhaustive]
pub enum Signer {
    /// The operator's chain: environment, shared credentials file, IMDSv2.
    OperatorChain,
    /// These credentials (tests, and callers with their own provider).
    Given(Arc<dyn CredentialsProvider>),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OperatorChain => f.write_str("Signer::OperatorChain"),
            Self::Given(p) => write!(f, "Signer::Given({p:?})"),
        }
    }
}

fn bad_url(problem: impl Into<String>) -> Error {
    Error::Input {
        option: "--endpoint-url",
        problem: problem.into(),
    }
}

/// A KMS client for `region`.
///
/// # Errors
/// [`Error::Input`] for an unusable URL or CA file, [`Error::Credentials`] when the chain finds
/// nothing, [`Error::Kms`] when the TLS setup fails.
pub fn client(options: &KmsOptions, region: &str, signer: &Signer) -> Result<KmsClient, Error> {
    let credentials: Arc<dyn CredentialsProvider> = match signer {
        Signer::Given(provider) => Arc::clone(provider),
        Signer::OperatorChain => {
            let source = operator_source().map_err(Error::Credentials)?;
            eprintln!("kms: signing with credentials from {}", source.describe());
            Arc::new(Refreshing::new(source))
        }
    };
    let config = match &options.endpoint_url {
        None => ClientConfig::new(
            region,
            Endpoint::tcp(ccc_sdk::kms::endpoint_host(region), 443),
            Transport::Tls(TrustAnchors::AmazonRoots),
        ),
        Some(url) => {
            let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
                (true, rest)
            } else if let Some(rest) = url.strip_prefix("http://") {
                (false, rest)
            } else {
                return Err(bad_url(format!(
                    "`{url}`: write http://HOST:PORT (moto) or https://HOST:PORT (the KMS \
                     emulator, with --ca-file)"
                )));
            };
            let authority = rest.trim_end_matches('/');
            let (host, port) = authority
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .ok_or_else(|| bad_url(format!("`{url}` has no :PORT")))?;
            if host.is_empty() || authority.contains('/') {
                return Err(bad_url(format!(
                    "`{url}`: write SCHEME://HOST:PORT, no path"
                )));
            }
            let transport = match (https, &options.ca_file) {
                (true, Some(ca)) => {
                    Transport::Tls(TrustAnchors::CustomCaPem(crate::files::read(ca)?))
                }
                (true, None) => Transport::Tls(TrustAnchors::AmazonRoots),
                (false, Some(_)) => {
                    return Err(bad_url(
                        "--ca-file is for https:// endpoints; drop it or use https",
                    ));
                }
                (false, None) => Transport::PlainHttpForEmulator,
            };
            ClientConfig::new(region, Endpoint::tcp(host, port), transport)
        }
    };
    KmsClient::new(config, credentials).map_err(|error| Error::Kms {
        what: "setting up the KMS client".to_owned(),
        error: Box::new(error),
    })
}

/// The key's policy (`GetKeyPolicy`).
///
/// # Errors
/// [`Error::Kms`] (AccessDenied when the caller may not read it: the key administrator may).
pub fn key_policy(client: &KmsClient, key_arn: &str) -> Result<String, Error> {
    let response = client
        .send(&GetKeyPolicyRequest {
            key_id: key_arn.to_owned(),
            policy_name: Some("default".to_owned()),
        })
        .map_err(|error| Error::Kms {
            what: format!("GetKeyPolicy of {key_arn}"),
            error: Box::new(error),
        })?;
    response.policy.ok_or_else(|| Error::Answer {
        what: format!("GetKeyPolicy of {key_arn}"),
        problem: "the answer has no Policy member; is the endpoint really KMS?".to_owned(),
    })
}

/// Replaces the key's policy (`PutKeyPolicy`, never bypassing KMS's lockout check).
///
/// # Errors
/// [`Error::Kms`]: AccessDenied (only the key administrator may), or
/// MalformedPolicyDocumentException (KMS's own checks, the lockout check among them).
pub fn put_key_policy(client: &KmsClient, key_arn: &str, policy: &str) -> Result<(), Error> {
    client
        .send(&PutKeyPolicyRequest {
            key_id: key_arn.to_owned(),
            policy: policy.to_owned(),
            policy_name: Some("default".to_owned()),
            bypass_policy_lockout_safety_check: None,
        })
        .map(drop)
        .map_err(|error| Error::Kms {
            what: format!("PutKeyPolicy of {key_arn}"),
            error: Box::new(error),
        })
}
