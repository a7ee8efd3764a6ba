//! The enclave side of the credentials protocol: ask the parent over vsock (or any
//! [`Endpoint`]) for the instance role's credentials.

use super::protocol::{self, DEFAULT_PORT};
use super::{Credentials, CredentialsError, CredentialsSource, Refreshing};
use crate::net::vsock::CID_PARENT;
use crate::net::{Endpoint, Stream, Timeouts, TransportError, VsockAddr};
use alloc::string::String;
use std::format;
use std::io;

/// Fetches credentials from the parent's credentials service (one connection per fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromParent {
    endpoint: Endpoint,
    timeouts: Timeouts,
}

impl FromParent {
    /// Asks the service at `endpoint` (`vsock://3:8002` in an enclave; TCP or Unix in tests).
    #[must_use]
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            timeouts: Timeouts::default(),
        }
    }

    /// The parent at CID 3 on [`protocol::DEFAULT_PORT`] (8002).
    #[must_use]
    pub fn vsock_parent() -> Self {
        Self::new(Endpoint::Vsock(VsockAddr::new(CID_PARENT, DEFAULT_PORT)))
    }

    /// Uses other timeouts.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The endpoint asked.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn io_error(&self, during: &'static str, source: io::Error) -> CredentialsError {
        let error = match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::Timeout {
                endpoint: self.endpoint.clone(),
                during,
                timeout: self.timeouts.io,
            },
            io::ErrorKind::InvalidData => {
                return CredentialsError::Malformed {
                    from: self.describe(),
                    detail: format!("{source}"),
                };
            }
            _ => TransportError::Io {
                endpoint: self.endpoint.clone(),
                during,
                source,
            },
        };
        CredentialsError::Unreachable {
            from: self.describe(),
            error,
        }
    }
}

impl CredentialsSource for FromParent {
    fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let mut stream = Stream::connect(&self.endpoint, &self.timeouts).map_err(|error| {
            CredentialsError::Unreachable {
                from: self.describe(),
                error,
            }
        })?;
        protocol::write_frame(&mut stream, &protocol::encode_request())
            .map_err(|e| self.io_error("sending the credentials request", e))?;
        let payload = protocol::read_frame(&mut stream)
            .map_err(|e| self.io_error("reading the credentials answer", e))?
            .ok_or_else(|| CredentialsError::Malformed {
                from: self.describe(),
                detail: "the connection closed without an answer".into(),
            })?;
        protocol::decode_answer(&payload, &self.describe())
    }

    fn describe(&self) -> String {
        format!("the parent's credentials service at {}", self.endpoint)
    }
}

/// The provider an enclave uses: [`FromParent::vsock_parent`], cached and refreshed
/// [`super::REFRESH_AHEAD`] before expiry.
#[must_use]
pub fn parent_provider() -> Refreshing<FromParent> {
    Refreshing::new(FromParent::vsock_parent())
}
