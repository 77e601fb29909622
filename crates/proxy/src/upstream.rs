//! Connections towards upstream: TCP (direct, or through the upstream
//! proxy), TLS verified against the webpki roots plus configured extras,
//! HTTP/1.1 or HTTP/2 by ALPN, and a small keyed pool of idle connections.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HOST, PROXY_AUTHORIZATION};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::{OnEnd, ProxyBody, empty};
use crate::config::{ProxyConfig, UpstreamProxy};
use crate::error::Error;

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

    async fn open(&self, key: &PoolKey) -> Result<Sender, Error> {
        let dest = key.target.authority();
        let connect = async {
            if !key.target.https {
                let io = match &self.proxy {
                    Some(proxy) => tcp(proxy.authority()).await?,
                    None => tcp(&dest).await?,
                };
                return handshake_h1(io, &dest).await;
            }
            let io = self.tunnel_io(&dest, key.tunnel_auth.as_ref()).await?;
            let connector = if key.allow_h2 {
                &self.tls_h2
            } else {
                &self.tls_h1
            };
            let name =
                ServerName::try_from(key.target.host.clone()).map_err(|_| Error::UpstreamTls {
                    dest: dest.clone(),
                    reason: "not a valid TLS server name".into(),
                })?;
            let tls = connector
                .connect(name, io)
                .await
                .map_err(|err| tls_error(&dest, err))?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io: BoxIo = Box::new(tls);
            if h2 {
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(io))
                    .await
                    .map_err(|e| Error::upstream_http(&dest, &e))?;
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(error = %err, "upstream h2 connection ended");
                    }
                });
                Ok(Sender::H2(sender))
            } else {
                handshake_h1(io, &dest).await
            }
        };
        let sender = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| Error::UpstreamConnectTimeout {
                dest: dest.clone(),
                after: self.connect_timeout,
            })??;
        if let Sender::H2(h2) = &sender
            && let Ok(mut pool) = self.h2.lock()
        {
            pool.insert(key.clone(), h2.clone());
        }
        Ok(sender)
    }

    /// A byte stream to `dest` (`host:port`): a TCP connection, or a
    /// tunnel through the upstream proxy's CONNECT. Bounded by the connect
    /// timeout.
    pub(crate) async fn tunnel(
        &self,
        dest: &str,
        tunnel_auth: Option<&HeaderValue>,
    ) -> Result<BoxIo, Error> {
        tokio::time::timeout(self.connect_timeout, self.tunnel_io(dest, tunnel_auth))
            .await
            .map_err(|_| Error::UpstreamConnectTimeout {
                dest: dest.to_owned(),
                after: self.connect_timeout,
            })?
    }

    async fn tunnel_io(
        &self,
        dest: &str,
        tunnel_auth: Option<&HeaderValue>,
    ) -> Result<BoxIo, Error> {
        let Some(proxy) = &self.proxy else {
            return tcp(dest).await;
        };
        let io = tcp(proxy.authority()).await?;
        let (mut sender, conn) = http1::handshake::<_, ProxyBody>(TokioIo::new(io))
            .await
            .map_err(|e| Error::upstream_http(proxy.authority(), &e))?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "upstream proxy connection ended");
            }
        });
        let mut req = Request::new(empty());
        *req.method_mut() = Method::CONNECT;
        *req.uri_mut() = dest
            .parse()
            .map_err(|_| Error::BadRequest("CONNECT target is not host:port".into()))?;
        let host = HeaderValue::from_str(dest)
            .map_err(|_| Error::BadRequest("CONNECT target is not host:port".into()))?;
        req.headers_mut().insert(HOST, host);
        if let Some(auth) = tunnel_auth {
            req.headers_mut().insert(PROXY_AUTHORIZATION, auth.clone());
        }
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| Error::upstream_http(proxy.authority(), &e))?;
        if !response.status().is_success() {
            return Err(Error::UpstreamProxyRefused {
                dest: dest.to_owned(),
                status: response.status(),
            });
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| Error::upstream_http(proxy.authority(), &e))?;
        Ok(Box::new(TokioIo::new(upgraded)))
    }
}

enum Dispatch {
    Retry(Box<Request<ProxyBody>>),
    Failed(Error),
}

async fn tcp(addr: &str) -> Result<BoxIo, Error> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| Error::UpstreamConnect {
            dest: addr.to_owned(),
            source,
        })?;
    // Small writes (SSE events, interactive traffic) must not wait.
    let _ = stream.set_nodelay(true);
    Ok(Box::new(stream))
}

async fn handshake_h1(io: BoxIo, dest: &str) -> Result<Sender, Error> {
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::upstream_http(dest, &e))?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(error = %err, "upstream connection ended");
        }
    });
    Ok(Sender::H1(sender))
}

fn tls_error(dest: &str, err: std::io::Error) -> Error {
    let reason = match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(why)) => {
            format!("certificate verification failed: {why:?}")
        }
        Some(other) => other.to_string(),
        None => err.to_string(),
    };
    Error::UpstreamTls {
        dest: dest.to_owned(),
        reason,
    }
}

/// HTTP/1.1 towards a server (origin-form) or an upstream proxy
/// (absolute-form), with a `Host` header.
fn shape_h1(mut req: Request<ProxyBody>, target: &Target, absolute: bool) -> Request<ProxyBody> {
    *req.version_mut() = Version::HTTP_11;
    let path = path_and_query(req.uri());
    if !req.headers().contains_key(HOST) {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| target.host_header());
        if let Ok(value) = HeaderValue::from_str(&authority) {
            req.headers_mut().insert(HOST, value);
        }
    }
    if !absolute {
        *req.uri_mut() = Uri::from(path);
    }
    req
}

/// HTTP/2 needs scheme and authority in the URI, and no `Host` header.
fn shape_h2(mut req: Request<ProxyBody>, target: &Target) -> Result<Request<ProxyBody>, Dispatch> {
    *req.version_mut() = Version::HTTP_2;
    let authority = req
        .headers_mut()
        .remove(HOST)
        .and_then(|h| h.to_str().ok().map(str::to_owned))
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_else(|| target.host_header());
    let path = path_and_query(req.uri());
    let uri = Uri::builder()
        .scheme(Scheme::HTTPS)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| {
            Dispatch::Failed(Error::BadRequest("request authority is not valid".into()))
        })?;
    *req.uri_mut() = uri;
    Ok(req)
}

fn path_and_query(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, https: bool) -> Target {
        Target {
            https,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn authorities_bracket_ipv6_and_drop_default_ports() {
        assert_eq!(target("::1", 8080, false).authority(), "[::1]:8080");
        assert_eq!(target("::1", 443, true).host_header(), "[::1]");
        assert_eq!(
            target("example.com", 80, false).host_header(),
            "example.com"
        );
        assert_eq!(
            target("example.com", 8443, true).host_header(),
            "example.com:8443"
        );
    }

    #[test]
    fn h1_requests_go_origin_form_to_servers_and_absolute_to_proxies() {
        let t = target("example.com", 80, false);
        let req = || {
            let mut req = Request::new(empty());
            *req.uri_mut() = "http://example.com/a?b=c".parse().unwrap();
            req
        };
        let direct = shape_h1(req(), &t, false);
        assert_eq!(direct.uri(), "/a?b=c");
        assert_eq!(direct.headers()[HOST], "example.com");
        let proxied = shape_h1(req(), &t, true);
        assert_eq!(proxied.uri(), "http://example.com/a?b=c");
    }

    #[test]
    fn h2_requests_carry_the_host_as_authority() {
        let t = target("example.com", 443, true);
        let mut req = Request::new(empty());
        *req.uri_mut() = "/x?y".parse().unwrap();
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static("example.com"));
        let Ok(req) = shape_h2(req, &t) else {
            panic!("shape failed")
        };
        assert_eq!(req.uri(), "https://example.com/x?y");
        assert!(!req.headers().contains_key(HOST));
    }
}
