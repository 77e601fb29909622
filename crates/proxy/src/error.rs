//! The one error type of the proxy crate, and how each failure is classified.
//!
//! Every failure is downstream (the client misbehaved), upstream (the server
//! or the path to it failed) or internal (a bug or a bad setup). The class
//! decides both the status code the client sees and the log level.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

/// Who is to blame for a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The client sent something the proxy cannot serve: 400, 403 or 407.
    /// Logged at debug level.
    Downstream,
    /// The upstream server, or the way to it, failed: 502, or 504 on a
    /// timeout. Logged at warn level.
    Upstream,
    /// A setup problem or a bug in the proxy: 500. Logged at error level.
    Internal,
}

/// Everything that can go wrong in the proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work. Reported by [`crate::Proxy::start`].
    #[error("invalid proxy config: {0}")]
    Config(String),

    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The certificate authority could not be loaded or could not sign.
    #[error("certificate authority: {0}")]
    Ca(String),

    /// The client's request is malformed or not something a forward proxy
    /// serves.
    #[error("bad request: {0}")]
    BadRequest(String),

    /// The client must name itself with `Proxy-Authorization`.
    #[error("proxy authentication required")]
    ProxyAuthRequired,

    /// The client's address or identity is not allowed to use the proxy.
    #[error("client not allowed to use this proxy")]
    Forbidden,

    /// The upstream server (or upstream proxy) could not be reached.
    #[error("cannot connect to {dest}: {source}")]
    UpstreamConnect {
        /// `host:port` that was being reached.
        dest: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// Connecting upstream took longer than the configured limit.
    #[error("connecting to {dest} timed out after {after:?}")]
    UpstreamConnectTimeout {
        /// `host:port` that was being reached.
        dest: String,
        /// The limit that was hit.
        after: Duration,
    },

    /// The upstream TLS handshake failed, including certificate
    /// verification failures. Never silently accepted.
    #[error("TLS with {dest} failed: {reason}")]
    UpstreamTls {
        /// `host:port` that was being reached.
        dest: String,
        /// What rustls reported.
        reason: String,
    },

    /// The upstream proxy answered a CONNECT with something other than 2xx.
    #[error("upstream proxy refused CONNECT to {dest} with status {status}")]
    UpstreamProxyRefused {
        /// `host:port` the tunnel was for.
        dest: String,
        /// The status the upstream proxy sent.
        status: StatusCode,
    },

    /// The upstream server did not answer within the configured limit.
    #[error("{dest} sent no response within {after:?}")]
    UpstreamResponseTimeout {
        /// `host:port` of the server.
        dest: String,
        /// The limit that was hit.
        after: Duration,
    },

    /// The HTTP exchange with the upstream server failed.
    #[error("HTTP exchange with {dest} failed: {reason}")]
    UpstreamHttp {
        /// `host:port` of the server.
        dest: String,
        /// What hyper reported.
        reason: String,
    },

    /// A bug or an unexpected local failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Who is to blame.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::BadRequest(_) | Error::ProxyAuthRequired | Error::Forbidden => {
                ErrorClass::Downstream
            }
            Error::UpstreamConnect { .. }
            | Error::UpstreamConnectTimeout { .. }
            | Error::UpstreamTls { .. }
            | Error::UpstreamProxyRefused { .. }
            | Error::UpstreamResponseTimeout { .. }
            | Error::UpstreamHttp { .. } => ErrorClass::Upstream,
            Error::Config(_) | Error::Bind { .. } | Error::Ca(_) | Error::Internal(_) => {
                ErrorClass::Internal
            }
        }
    }

    /// The status code a client gets for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Error::Forbidden => StatusCode::FORBIDDEN,
            Error::UpstreamConnectTimeout { .. } | Error::UpstreamResponseTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            // A refusal by the upstream proxy that concerns the client
            // (authentication) is relayed so the client can react to it.
            Error::UpstreamProxyRefused { status, .. }
                if *status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
                    || *status == StatusCode::FORBIDDEN =>
            {
                *status
            }
            Error::UpstreamConnect { .. }
            | Error::UpstreamTls { .. }
            | Error::UpstreamProxyRefused { .. }
            | Error::UpstreamHttp { .. } => StatusCode::BAD_GATEWAY,
            Error::Config(_) | Error::Bind { .. } | Error::Ca(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Logs the failure at the level its class calls for. The message
    /// carries `host:port` only: never a query, header value or body.
    pub(crate) fn log(&self, flow_id: &str) {
        match self.class() {
            ErrorClass::Downstream => {
                tracing::debug!(flow = flow_id, error = %self, "client error")
            }
            ErrorClass::Upstream => tracing::warn!(flow = flow_id, error = %self, "upstream error"),
            ErrorClass::Internal => {
                tracing::error!(flow = flow_id, error = %self, "internal error")
            }
        }
    }

    /// Classifies a hyper client error from an exchange with `dest`.
    pub(crate) fn upstream_http(dest: &str, err: &hyper::Error) -> Error {
        Error::UpstreamHttp {
            dest: dest.to_owned(),
            reason: describe(err),
        }
    }
}

/// A one-line description of an error and every cause below it.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: Error, class: ErrorClass, status: u16) {
        assert_eq!(err.class(), class, "{err}");
        assert_eq!(err.status().as_u16(), status, "{err}");
    }

    #[test]
    fn class_drives_status() {
        let dest = || "example.com:443".to_owned();
        let after = Duration::from_secs(1);
        check(Error::BadRequest("x".into()), ErrorClass::Downstream, 400);
        check(Error::ProxyAuthRequired, ErrorClass::Downstream, 407);
        check(Error::Forbidden, ErrorClass::Downstream, 403);
        check(
            Error::UpstreamConnectTimeout {
                dest: dest(),
                after,
            },
            ErrorClass::Upstream,
            504,
        );
        check(
            Error::UpstreamResponseTimeout {
                dest: dest(),
                after,
            },
            ErrorClass::Upstream,
            504,
        );
        check(
            Error::UpstreamTls {
                dest: dest(),
                reason: "bad cert".into(),
            },
            ErrorClass::Upstream,
            502,
        );
        check(
            Error::UpstreamProxyRefused {
                dest: dest(),
                status: StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            },
            ErrorClass::Upstream,
            407,
        );
        check(
            Error::UpstreamProxyRefused {
                dest: dest(),
                status: StatusCode::SERVICE_UNAVAILABLE,
            },
            ErrorClass::Upstream,
            502,
        );
        check(Error::Internal("x".into()), ErrorClass::Internal, 500);
    }
}
