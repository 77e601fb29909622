//! Inspected HTTPS: terminate the client's TLS with a leaf for its SNI,
//! serve HTTP/1.1 or HTTP/2 on it, and forward each request upstream over
//! verified TLS.

mod ca;
mod leaf_cache;
mod prefixed;

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

use tokio::io::AsyncReadExt;

use crate::attribution::Runtime;
use crate::connect::splice;
use crate::flow::Flow;
use crate::forward::{self, Exchange};
use crate::listener::{ClientConn, GracefulConnection, drive};
use crate::shutdown::Phase;
use crate::sink::FlowHandling;
use crate::upstream::Target;
use prefixed::Prefixed;

/// What an inspected CONNECT is for.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) target: Target,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) tunnel_auth: Option<HeaderValue>,
}

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves one CONNECT meant for inspection. A client that speaks TLS gets a
/// leaf for its SNI (or the CONNECT host) and inspected HTTP; one that does
/// not (or says nothing within the header timeout, as server-first
/// protocols do) gets a plain tunnel, recorded as such.
pub(crate) async fn serve(
    conn: Arc<ClientConn>,
    upgraded: Upgraded,
    session: Session,
    flow: Arc<Flow>,
) {
    let state = conn.state.clone();
    let mut phase = state.phase.clone();
    let Some(leaves) = &state.leaves else { return };
    let limit = state.limits.header_read_timeout;
    let dest = session.target.authority();
    let mut client = TokioIo::new(upgraded);
    let mut first = [0u8; 1];
    let sniffed = tokio::select! {
        read = tokio::time::timeout(limit, client.read(&mut first)) => read,
        () = phase.reached(Phase::Cut) => return,
    };
    let prefix = match sniffed {
        Ok(Ok(0)) | Ok(Err(_)) => return,
        Ok(Ok(_)) if first[0] == TLS_HANDSHAKE => first.to_vec(),
        Ok(Ok(_)) => return tunnel(&conn, first.to_vec(), client, &session, &flow).await,
        Err(_) => return tunnel(&conn, Vec::new(), client, &session, &flow).await,
    };
    let io = Prefixed::new(prefix, client);
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = tokio::select! {
        start = tokio::time::timeout(limit, acceptor) => start,
        () = phase.reached(Phase::Cut) => return,
    };
    let start = match start {
        Ok(Ok(start)) => start,
        Ok(Err(err)) => {
            tracing::debug!(peer = %conn.peer, %dest, error = %err, "bad TLS hello from client");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer, %dest, "client sent no complete TLS hello in time");
            return;
        }
    };
    let name = start
        .client_hello()
        .server_name()
        .map(str::to_owned)
        .unwrap_or_else(|| session.target.host.clone());
    let config = match leaves.server_config(&name) {
        Ok(config) => config,
        Err(err) => {
            err.log(&flow.meta().id);
            flow.set_error(err.to_string());
            return;
        }
    };
    let handshake = tokio::select! {
        tls = tokio::time::timeout(limit, start.into_stream(config)) => tls,
        () = phase.reached(Phase::Cut) => return,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::info!(
                peer = %conn.peer,
                runtime = %session.runtime.name,
                %dest,
                error = %err,
                "client refused the guardian's certificate (is the CA trusted in this runtime?)"
            );
            flow.set_error(format!("client TLS handshake failed: {err}"));
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer, %dest, "TLS handshake with client timed out");
            return;
        }
    };
    let client_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let exchange = Arc::new(Exchange {
        runtime: session.runtime,
        protocol: Protocol::Https,
        handling: FlowHandling::Inspected,
        target: session.target,
        // HTTP/1.1 clients keep HTTP/1.1 upstream, so upgrades still work.
        allow_h2: client_h2,
        tunnel_auth: session.tunnel_auth,
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

/// Not TLS after all: a plain tunnel, as for any runtime without inspection.
async fn tunnel(
    conn: &ClientConn,
    prefix: Vec<u8>,
    client: TokioIo<Upgraded>,
    session: &Session,
    flow: &Flow,
) {
    flow.set_handling(FlowHandling::Tunnelled);
    let dest = session.target.authority();
    tracing::debug!(peer = %conn.peer, %dest, "no TLS in an inspected CONNECT; tunnelling");
    let upstream = match conn
        .state
        .upstream
        .tunnel(&dest, session.tunnel_auth.as_ref())
        .await
    {
        Ok(upstream) => upstream,
        Err(err) => {
            err.log(&flow.meta().id);
            flow.set_error(err.to_string());
            return;
        }
    };
    splice(
        flow,
        Prefixed::new(prefix, client),
        upstream,
        conn.state.phase.clone(),
    )
    .await;
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
