//! Client connections to an origin, directly or through the guardian as an
//! HTTP proxy: plain HTTP in absolute form, or a `CONNECT` tunnel with TLS
//! on top. Shared by the proxy benchmark and `cargo xtask soak`, which both
//! drive load through a guardian running in another process.
//!
//! Unlike the other fixtures, opening a connection returns its failure:
//! under load a refused or broken connection is a measurement, not a
//! broken set-up.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderValue, Request};
use http_body::Body;
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Any byte stream a client talks over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed byte stream.
pub type BoxIo = Box<dyn Io>;

/// A TLS client config that trusts only `root` and offers `alpn`.
pub fn tls_client_config(root: CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// `Proxy-Authorization: Basic` naming `user` with an empty password, as
/// `curl --proxy-user user:` sends it.
pub fn proxy_user(user: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
    HeaderValue::from_str(&format!("Basic {token}")).unwrap()
}

/// How a client reaches one origin.
#[derive(Debug, Clone)]
pub struct Route {
    origin: SocketAddr,
    proxy: Option<SocketAddr>,
    tls: Option<Arc<ClientConfig>>,
    proxy_authorization: Option<HeaderValue>,
}

/// A failure to open a connection, by the step that failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connection (to the proxy or the origin).
    Tcp(std::io::Error),
    /// The proxy did not open the tunnel: an HTTP error or a non-2xx answer.
    Tunnel(String),
    /// The TLS handshake.
    Tls(std::io::Error),
    /// The HTTP handshake on the finished stream.
    Http(hyper::Error),
}

impl ConnectError {
    /// A short stable name for counting failures by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectError::Tcp(_) => "connect",
            ConnectError::Tunnel(_) => "tunnel",
            ConnectError::Tls(_) => "tls",
            ConnectError::Http(_) => "handshake",
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Tcp(err) => write!(f, "tcp connect: {err}"),
            ConnectError::Tunnel(why) => write!(f, "CONNECT: {why}"),
            ConnectError::Tls(err) => write!(f, "tls handshake: {err}"),
            ConnectError::Http(err) => write!(f, "http handshake: {err}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl Route {
    /// Straight to `origin`, in plain HTTP.
    pub fn direct(origin: SocketAddr) -> Route {
        Route {
            origin,
            proxy: None,
            tls: None,
            proxy_authorization: None,
        }
    }

    /// Through the HTTP proxy at `proxy`.
    pub fn via(mut self, proxy: SocketAddr) -> Route {
        self.proxy = Some(proxy);
        self
    }

    /// TLS to the origin with `tls` (through a `CONNECT` tunnel when there
    /// is a proxy). The server name is the origin's IP literal.
    pub fn tls(mut self, tls: Arc<ClientConfig>) -> Route {
        self.tls = Some(tls);
        self
    }

    /// Sends `value` as `Proxy-Authorization` to the proxy: on the
    /// `CONNECT`, or on every plain request (see [`Route::target`]).
    pub fn proxy_authorization(mut self, value: HeaderValue) -> Route {
        self.proxy_authorization = Some(value);
        self
    }

    /// The origin.
    pub fn origin(&self) -> SocketAddr {
        self.origin
    }

    /// The `Proxy-Authorization` plain requests on this route must carry:
    /// set only for plain HTTP through a proxy.
    pub fn request_proxy_authorization(&self) -> Option<&HeaderValue> {
        match (&self.proxy, &self.tls) {
            (Some(_), None) => self.proxy_authorization.as_ref(),
            _ => None,
        }
    }

    /// The request target for `path` (which starts with `/`): absolute
    /// form for plain HTTP through a proxy, origin form otherwise.
    pub fn target(&self, path: &str) -> String {
        match (&self.proxy, &self.tls) {
            (Some(_), None) => format!("http://{}{path}", self.origin),
            _ => path.to_owned(),
        }
    }

    /// Opens a byte stream to the origin: TCP, the tunnel, TLS. Returns the
    /// stream and the ALPN protocol TLS agreed on, if any.
    pub async fn open(&self) -> Result<(BoxIo, Option<Vec<u8>>), ConnectError> {
        let first_hop = self.proxy.unwrap_or(self.origin);
        let tcp = TcpStream::connect(first_hop)
            .await
            .map_err(ConnectError::Tcp)?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok((Box::new(tcp), None));
        };
        let name = ServerName::from(self.origin.ip());
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        let stream = match self.proxy {
            None => connector
                .connect(name, Box::new(tcp) as BoxIo)
                .await
                .map_err(ConnectError::Tls)?,
            Some(_) => {
                let tunnel = self.tunnel(tcp).await?;
                connector
                    .connect(name, tunnel)
                    .await
                    .map_err(ConnectError::Tls)?
            }
        };
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        Ok((Box::new(stream), alpn))
    }

    /// Sends `CONNECT origin` on `tcp` and returns the tunnel.
    async fn tunnel(&self, tcp: TcpStream) -> Result<BoxIo, ConnectError> {
        let (mut sender, conn) = http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tcp))
            .await
            .map_err(ConnectError::Http)?;
        tokio::spawn(conn.with_upgrades());
        let authority = self.origin.to_string();
        let mut request = Request::connect(authority.as_str())
            .header("host", authority.as_str())
            .body(Empty::new())
            .unwrap();
        if let Some(value) = &self.proxy_authorization {
            request
                .headers_mut()
                .insert("proxy-authorization", value.clone());
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| ConnectError::Tunnel(err.to_string()))?;
        if !response.status().is_success() {
            return Err(ConnectError::Tunnel(format!(
                "proxy answered {}",
                response.status()
            )));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|err| ConnectError::Tunnel(err.to_string()))?;
        Ok(Box::new(TokioIo::new(upgraded)))
    }

    /// Opens the route and an HTTP/1.1 connection on it; the connection
    /// task runs until the sender is dropped.
    pub async fn http1<B>(&self) -> Result<http1::SendRequest<B>, ConnectError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (io, _) = self.open().await?;
        http1_on(io).await
    }
}

/// An HTTP/1.1 client connection on `io`; its task runs until the sender
/// is dropped.
pub async fn http1_on<B>(io: BoxIo) -> Result<http1::SendRequest<B>, ConnectError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(ConnectError::Http)?;
    tokio::spawn(conn);
    Ok(sender)
}

/// An HTTP/2 client connection on `io` (which must have agreed on `h2`);
/// its task runs until the sender is dropped.
pub async fn http2_on<B>(io: BoxIo) -> Result<http2::SendRequest<B>, ConnectError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(ConnectError::Http)?;
    tokio::spawn(conn);
    Ok(sender)
}
