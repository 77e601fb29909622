//! Resource limits for client and upstream connections, with their defaults.

use std::time::Duration;

/// Bounds on what one client or upstream may cost the proxy.
///
/// Every limit produces a clear error when hit: an oversized header gets
/// `431`, a slow header or idle connection is closed, a refused connection
/// over `max_connections` gets `503`, upstream timeouts get `504`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line plus headers) accepted, in bytes.
    /// Default 64 KiB.
    pub max_header_bytes: usize,
    /// How long a client may take to send a complete request head, counted
    /// from when the proxy starts waiting for it (slowloris defence). On
    /// HTTP/1 keep-alive connections this also bounds the wait for the next
    /// request. Default 30 s.
    pub header_read_timeout: Duration,
    /// A client connection or tunnel with no bytes moving in either
    /// direction and no request in flight for this long (checked once per
    /// period, so between one and two periods) is closed. Upstream
    /// connections are closed after the longer of this and
    /// `upstream_response_timeout` without a byte, so a stalled response
    /// body does not hold its client forever. Default 5 min.
    pub idle_timeout: Duration,
    /// Most client connections open at once; more are answered `503` and
    /// closed. Default 4096.
    pub max_connections: usize,
    /// Limit for TCP connect (and upstream-proxy CONNECT and TLS
    /// handshake) towards upstream. Default 10 s.
    pub upstream_connect_timeout: Duration,
    /// Limit for the response head after the request was sent; `None`
    /// waits as long as the connection lives. Default 5 min (LLM calls can
    /// think for a while before the first byte).
    pub upstream_response_timeout: Option<Duration>,
    /// On graceful shutdown, how long in-flight flows may take to finish
    /// before they are cut. Default 10 s.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_connections: 4096,
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_response_timeout: Some(Duration::from_secs(300)),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Checks the limits are usable.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_header_bytes < 1024 {
            return Err("limits.max_header_bytes must be at least 1024".into());
        }
        if self.max_connections == 0 {
            return Err("limits.max_connections must be at least 1".into());
        }
        for (name, value) in [
            ("limits.header_read_timeout", self.header_read_timeout),
            ("limits.idle_timeout", self.idle_timeout),
            (
                "limits.upstream_connect_timeout",
                self.upstream_connect_timeout,
            ),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be more than zero"));
            }
        }
        Ok(())
    }
}
