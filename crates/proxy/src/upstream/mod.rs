//! Connections towards upstream: TCP (direct, or through the upstream
//! proxy), TLS verified against the webpki roots plus configured extras,
//! HTTP/1.1 or HTTP/2 by ALPN, and a small keyed pool of idle connections.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

mod dial;
mod shape;

use crate::body::{OnEnd, ProxyBody};
use crate::config::{ProxyConfig, UpstreamProxy};
use crate::error::Error;
use shape::{shape_h1, shape_h2};

/// Any byte stream the proxy talks over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed byte stream.
pub(crate) type BoxIo = Box<dyn Io>;

/// Most idle HTTP/1 connections kept per destination.
const MAX_IDLE_PER_KEY: usize = 64;

/// Idle connections older than this are not reused.
const IDLE_EXPIRY: Duration = Duration::from_secs(60);

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    /// TLS towards the server (inspected HTTPS).
    pub(crate) https: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub(crate) host: String,
    /// Port.
    pub(crate) port: u16,
}

impl Target {
    /// `host:port`, with brackets around IPv6 literals.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// The authority as written in a URL or `Host` header: the port is
    /// left out when it is the scheme's default.
    fn host_header(&self) -> String {
        if self.port == self.default_port() {
            if self.host.contains(':') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            }
        } else {
            self.authority()
        }
    }
}

/// Idle connections are keyed by everything that makes one connection
/// unfit for another request: destination, whether HTTP/2 may be used, and
/// the credentials the upstream-proxy tunnel was opened with.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    target: Target,
    allow_h2: bool,
    tunnel_auth: Option<HeaderValue>,
}

enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

/// An idle HTTP/1 connection and when it became idle.
type IdleSender = (http1::SendRequest<ProxyBody>, Instant);

/// A response from upstream and, for a pooled HTTP/1 connection, what
/// returns the connection to the pool once the response body has ended.
pub(crate) struct Sent {
    pub(crate) response: Response<Incoming>,
    pub(crate) release: Option<OnEnd>,
}

/// The upstream side of the proxy.
pub(crate) struct Upstream {
    idle: Mutex<HashMap<PoolKey, Vec<IdleSender>>>,
    h2: Mutex<HashMap<PoolKey, http2::SendRequest<ProxyBody>>>,
    tls_h1: TlsConnector,
    tls_h2: TlsConnector,
    proxy: Option<UpstreamProxy>,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    /// An upstream connection with no bytes moving for this long is
    /// closed: a stalled body must not hold a client forever.
    idle_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// The rustls provider: ring, the one crypto backend of the tree.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Upstream {
    pub(crate) fn new(config: &ProxyConfig) -> Result<Arc<Upstream>, Error> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for (i, cert) in config.extra_upstream_roots.iter().enumerate() {
            roots.add(cert.clone()).map_err(|e| {
                Error::Config(format!("extra_upstream_roots[{i}] is not a usable CA: {e}"))
            })?;
        }
        let tls = |alpn: &[&[u8]]| -> Result<TlsConnector, Error> {
            let mut tls = ClientConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsConnector::from(Arc::new(tls)))
        };
        Ok(Arc::new(Upstream {
            idle: Mutex::new(HashMap::new()),
            h2: Mutex::new(HashMap::new()),
            tls_h1: tls(&[b"http/1.1"])?,
            tls_h2: tls(&[b"h2", b"http/1.1"])?,
            proxy: config.upstream_proxy.clone(),
            connect_timeout: config.limits.upstream_connect_timeout,
            response_timeout: config.limits.upstream_response_timeout,
            // Waiting for a response head is bounded by the response
            // timeout; silence beyond both limits is a stalled connection.
            idle_timeout: config
                .limits
                .idle_timeout
                .max(config.limits.upstream_response_timeout.unwrap_or_default()),
        }))
    }

    /// Whether plain HTTP goes to an upstream proxy (in absolute form).
    pub(crate) fn has_proxy(&self) -> bool {
        self.proxy.is_some()
    }

    /// Drops every idle connection (at shutdown).
    pub(crate) fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        if let Ok(mut h2) = self.h2.lock() {
            h2.clear();
        }
    }

    /// Sends `req` to `target` and returns the response head. `req` carries
    /// an absolute URI and end-to-end headers only; it is shaped here for
    /// the connection that carries it. `tunnel_auth` goes on the upstream
    /// proxy's CONNECT for HTTPS.
    pub(crate) async fn send(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
        target: &Target,
        allow_h2: bool,
        tunnel_auth: Option<&HeaderValue>,
    ) -> Result<Sent, Error> {
        let key = PoolKey {
            target: target.clone(),
            allow_h2,
            tunnel_auth: tunnel_auth.cloned(),
        };
        let mut req = req;
        if let Some(sender) = self.checkout(&key) {
            match self.dispatch(sender, req, &key).await {
                Ok(sent) => return Ok(sent),
                // A pooled connection closed before the request went out:
                // retry once on a fresh one.
                Err(Dispatch::Retry(back)) => req = *back,
                Err(Dispatch::Failed(err)) => return Err(err),
            }
        }
        let sender = self.open(&key).await?;
        match self.dispatch(sender, req, &key).await {
            Ok(sent) => Ok(sent),
            Err(Dispatch::Retry(_)) => Err(Error::UpstreamHttp {
                dest: target.authority(),
                reason: "connection closed before the request was sent".into(),
            }),
            Err(Dispatch::Failed(err)) => Err(err),
        }
    }

    fn checkout(&self, key: &PoolKey) -> Option<Sender> {
        if key.allow_h2
            && let Ok(mut h2) = self.h2.lock()
        {
            match h2.get(key) {
                Some(sender) if !sender.is_closed() => return Some(Sender::H2(sender.clone())),
                Some(_) => {
                    h2.remove(key);
                }
                None => {}
            }
        }
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        // Newest first. A connection still finishing its last exchange
        // stays for later; closed or stale ones are dropped.
        let mut busy = Vec::new();
        let mut found = None;
        while let Some((sender, since)) = list.pop() {
            if since.elapsed() >= IDLE_EXPIRY || sender.is_closed() {
                continue;
            }
            if sender.is_ready() {
                found = Some(Sender::H1(sender));
                break;
            }
            busy.push((sender, since));
        }
        list.extend(busy.into_iter().rev());
        found
    }

    /// Returns an HTTP/1 connection whose response has ended. It may need a
    /// moment to be ready again; `checkout` only hands out ready ones.
    fn checkin(&self, key: PoolKey, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(key).or_default();
            if list.len() < MAX_IDLE_PER_KEY {
                list.push((sender, Instant::now()));
            }
        }
    }

    async fn dispatch(
        self: &Arc<Self>,
        sender: Sender,
        req: Request<ProxyBody>,
        key: &PoolKey,
    ) -> Result<Sent, Dispatch> {
        let dest = key.target.authority();
        match sender {
            Sender::H1(mut sender) => {
                let req = shape_h1(req, &key.target, self.has_proxy() && !key.target.https);
                let result = self.timed(&dest, sender.try_send_request(req)).await?;
                let release: OnEnd = {
                    let this = self.clone();
                    let key = key.clone();
                    Box::new(move || this.checkin(key, sender))
                };
                Ok(Sent {
                    response: result,
                    release: Some(release),
                })
            }
            Sender::H2(mut sender) => {
                let req = shape_h2(req, &key.target)?;
                let response = self.timed(&dest, sender.try_send_request(req)).await?;
                Ok(Sent {
                    response,
                    release: None,
                })
            }
        }
    }

    async fn timed(
        &self,
        dest: &str,
        fut: impl Future<
            Output = Result<
                Response<Incoming>,
                hyper::client::conn::TrySendError<Request<ProxyBody>>,
            >,
        >,
    ) -> Result<Response<Incoming>, Dispatch> {
        let result = match self.response_timeout {
            Some(after) => tokio::time::timeout(after, fut).await.map_err(|_| {
                Dispatch::Failed(Error::UpstreamResponseTimeout {
                    dest: dest.to_owned(),
                    after,
                })
            })?,
            None => fut.await,
        };
        result.map_err(|mut err| match err.take_message() {
            Some(req) => Dispatch::Retry(Box::new(req)),
            None => Dispatch::Failed(Error::upstream_http(dest, err.error())),
        })
    }
}

enum Dispatch {
    Retry(Box<Request<ProxyBody>>),
    Failed(Error),
}
