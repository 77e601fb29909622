//! Inspected HTTPS: terminate the client's TLS with a leaf for its SNI,
//! serve HTTP/1.1 or HTTP/2 on it, and forward each request upstream over
//! verified TLS.

mod ca;
mod leaf_cache;

pub use ca::CertificateAuthority;
pub(crate) use leaf_cache::LeafCache;

use std::sync::Arc;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::LazyConfigAcceptor;
use traffic_guardian_core::Protocol;

use crate::attribution::Runtime;
use crate::forward::{self, Exchange};
use crate::listener::{ClientConn, GracefulConnection, drive};
use crate::sink::FlowHandling;
use crate::upstream::Target;

/// Serves one inspected TLS session on a CONNECT tunnel.
pub(crate) async fn serve(
    conn: Arc<ClientConn>,
    upgraded: Upgraded,
    target: Target,
    runtime: Arc<Runtime>,
    tunnel_auth: Option<HeaderValue>,
) {
    let state = conn.state.clone();
    let Some(leaves) = &state.leaves else { return };
    let handshake_limit = state.limits.header_read_timeout;
    let acceptor =
        LazyConfigAcceptor::new(rustls::server::Acceptor::default(), TokioIo::new(upgraded));
    let start = match tokio::time::timeout(handshake_limit, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(err)) => {
            tracing::debug!(peer = %conn.peer, dest = %target.authority(), error = %err, "no TLS from client in tunnel");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer, dest = %target.authority(), "client sent no TLS hello in time");
            return;
        }
    };
    let name = start
        .client_hello()
        .server_name()
        .map(str::to_owned)
        .unwrap_or_else(|| target.host.clone());
    let config = match leaves.server_config(&name) {
        Ok(config) => config,
        Err(err) => {
            err.log("-");
            return;
        }
    };
    let tls = match tokio::time::timeout(handshake_limit, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::info!(
                peer = %conn.peer,
                runtime = %runtime.name,
                dest = %target.authority(),
                error = %err,
                "client refused the guardian's certificate (is the CA trusted in this runtime?)"
            );
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer, dest = %target.authority(), "TLS handshake with client timed out");
            return;
        }
    };
    let client_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let exchange = Arc::new(Exchange {
        runtime,
        protocol: Protocol::Https,
        handling: FlowHandling::Inspected,
        target,
        // HTTP/1.1 clients keep HTTP/1.1 upstream, so upgrades still work.
        allow_h2: client_h2,
        tunnel_auth,
    });
    let service = {
        let conn = conn.clone();
        service_fn(move |req| forward::handle_inspected(conn.clone(), exchange.clone(), req))
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_read_timeout)
        // The auto builder has no separate head limit: the read buffer
        // bounds the head (hyper answers 431 beyond it).
        .max_buf_size(state.limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(state.limits.max_header_bytes).unwrap_or(u32::MAX));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    drive(connection, state.phase.clone(), conn.peer).await;
}

impl<I, S, B> GracefulConnection for auto::UpgradeableConnection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Send + 'static,
{
    fn start_graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
