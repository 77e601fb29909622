//! Opening upstream connections: TCP, directly or through the upstream
//! proxy's CONNECT, then TLS and the HTTP handshake ALPN picked.

use http::header::{HOST, PROXY_AUTHORIZATION};
use http::{HeaderValue, Method, Request};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use std::sync::Arc;
use std::time::Duration;

use super::{BoxIo, PoolKey, Sender, Upstream};
use crate::body::{ProxyBody, empty};
use crate::error::Error;
use crate::idle::{Activity, IdleIo};

impl Upstream {
    pub(super) async fn open(&self, key: &PoolKey) -> Result<Sender, Error> {
        let dest = key.target.authority();
        let connect = async {
            if !key.target.https {
                let io = match &self.proxy {
                    Some(proxy) => tcp(proxy.authority(), self.idle_timeout).await?,
                    None => tcp(&dest, self.idle_timeout).await?,
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

    pub(super) async fn tunnel_io(
        &self,
        dest: &str,
        tunnel_auth: Option<&HeaderValue>,
    ) -> Result<BoxIo, Error> {
        let Some(proxy) = &self.proxy else {
            return tcp(dest, self.idle_timeout).await;
        };
        let io = tcp(proxy.authority(), self.idle_timeout).await?;
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

/// A TCP connection to `addr` that fails once nothing moved on it for
/// `idle` (no request keeps it busy: upstream, silence is the only signal).
async fn tcp(addr: &str, idle: Duration) -> Result<BoxIo, Error> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| Error::UpstreamConnect {
            dest: addr.to_owned(),
            source,
        })?;
    // Small writes (SSE events, interactive traffic) must not wait.
    let _ = stream.set_nodelay(true);
    Ok(Box::new(IdleIo::new(
        stream,
        idle,
        Arc::new(Activity::default()),
    )))
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
