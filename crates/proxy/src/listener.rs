//! Accepting clients: one task per listener, the connection limit, and the
//! per-connection HTTP/1 server that hands each request to `forward`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::attribution::{Attribution, Runtime};
use crate::flow::Shared;
use crate::forward;
use crate::idle::{Activity, IdleIo};
use crate::limits::Limits;
use crate::mitm::LeafCache;
use crate::shutdown::{Phase, PhaseWatch, TrackGuard, Tracker};
use crate::stats::add;
use crate::upstream::Upstream;

/// Everything the proxy's tasks share.
#[derive(Debug)]
pub(crate) struct ProxyState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) attribution: Attribution,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) leaves: Option<LeafCache>,
    pub(crate) passthrough: Vec<String>,
    pub(crate) limits: Limits,
    /// Pass the client's `Proxy-Authorization` to the upstream proxy.
    pub(crate) forward_proxy_auth: bool,
    pub(crate) phase: PhaseWatch,
    /// Client connections and tunnels; shutdown waits for them.
    pub(crate) conns: Tracker,
    pub(crate) slots: Arc<Semaphore>,
    /// The guardian's own listening addresses, to refuse requests to itself.
    pub(crate) local_addrs: Vec<SocketAddr>,
    next_conn: AtomicU64,
}

impl ProxyState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        attribution: Attribution,
        upstream: Arc<Upstream>,
        leaves: Option<LeafCache>,
        passthrough: Vec<String>,
        limits: Limits,
        forward_proxy_auth: bool,
        phase: PhaseWatch,
        local_addrs: Vec<SocketAddr>,
    ) -> ProxyState {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        ProxyState {
            shared,
            attribution,
            upstream,
            leaves,
            passthrough,
            limits,
            forward_proxy_auth,
            phase,
            conns: Tracker::default(),
            slots,
            local_addrs,
            next_conn: AtomicU64::new(1),
        }
    }

    /// Whether `target` is the guardian itself: forwarding there would
    /// loop until the connection limit.
    pub(crate) fn is_self(&self, target: &crate::upstream::Target) -> bool {
        let ip = if target.host.eq_ignore_ascii_case("localhost") {
            None
        } else {
            match target.host.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => return false,
            }
        };
        self.local_addrs.iter().any(|local| {
            local.port() == target.port
                && match ip {
                    None => true,
                    Some(ip) => {
                        ip == local.ip()
                            || (local.ip().is_unspecified()
                                && (ip.is_loopback() || ip.is_unspecified()))
                            || (ip.is_unspecified() && local.ip().is_loopback())
                    }
                }
        })
    }
}

/// One client connection. Tunnels and upgraded streams that outlive the
/// HTTP connection hold it too, so its connection slot, its place in the
/// open count and the shutdown tracker last as long as any of its bytes
/// still move.
#[derive(Debug)]
pub(crate) struct ClientConn {
    pub(crate) state: Arc<ProxyState>,
    pub(crate) peer: SocketAddr,
    pub(crate) listener_runtime: Option<Arc<Runtime>>,
    pub(crate) activity: Arc<Activity>,
    id: u64,
    next_request: AtomicU64,
    _slot: OwnedSemaphorePermit,
    _open: OpenConnection,
    _live: TrackGuard,
}

impl ClientConn {
    /// A new flow id: connection and request number, in hex and decimal.
    pub(crate) fn next_flow_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("c{:x}-{n}", self.id)
    }

    /// The runtime of a request from this connection.
    pub(crate) fn runtime(
        &self,
        proxy_auth: Option<&http::HeaderValue>,
    ) -> Result<Arc<Runtime>, crate::Error> {
        self.state
            .attribution
            .resolve(self.listener_runtime.as_ref(), self.peer.ip(), proxy_auth)
    }
}

/// Accepts clients on `listener` until draining starts.
pub(crate) async fn accept_loop(
    state: Arc<ProxyState>,
    listener: TcpListener,
    runtime: Option<Arc<Runtime>>,
) {
    let mut phase = state.phase.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = phase.reached(Phase::Draining) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: keep serving the
                // connections we have; the next accept may work.
                tracing::warn!(error = %err, "accept failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let stats = &state.shared.stats;
        let Ok(slot) = state.slots.clone().try_acquire_owned() else {
            add(&stats.connections_refused, 1);
            tracing::warn!(%peer, limit = state.limits.max_connections, "connection limit reached; refusing");
            tokio::spawn(refuse(stream));
            continue;
        };
        add(&stats.connections_total, 1);
        let conn = Arc::new(ClientConn {
            state: state.clone(),
            peer,
            listener_runtime: runtime.clone(),
            activity: Arc::new(Activity::default()),
            id: state.next_conn.fetch_add(1, Ordering::Relaxed),
            next_request: AtomicU64::new(1),
            _slot: slot,
            _open: OpenConnection::new(&state),
            _live: state.conns.track(),
        });
        tokio::spawn(serve(conn, stream));
    }
}

/// Counts a client connection as open while it lives.
#[derive(Debug)]
struct OpenConnection(Arc<crate::stats::Stats>);

impl OpenConnection {
    fn new(state: &ProxyState) -> OpenConnection {
        add(&state.shared.stats.connections_open, 1);
        OpenConnection(state.shared.stats.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Over the connection limit: a short 503, then close.
async fn refuse(mut stream: TcpStream) {
    let body = "traffic-guardian: too many connections\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn serve(conn: Arc<ClientConn>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let limits = &conn.state.limits;
    let io = IdleIo::new(stream, limits.idle_timeout, conn.activity.clone());
    let service = {
        let conn = conn.clone();
        service_fn(move |req| forward::handle(conn.clone(), req))
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192) * 2);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    drive(connection, conn.state.phase.clone(), conn.peer).await;
}

/// A server connection that can be asked to finish gracefully.
pub(crate) trait GracefulConnection: std::future::Future {
    fn start_graceful(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn start_graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs a connection; on drain it is asked to finish its in-flight
/// exchange and close, on cut it is dropped.
pub(crate) async fn drive<C, E>(connection: C, mut phase: PhaseWatch, peer: SocketAddr)
where
    C: GracefulConnection<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = phase.reached(Phase::Draining) => {
            connection.as_mut().start_graceful();
            tokio::select! {
                result = connection.as_mut() => result,
                () = phase.reached(Phase::Cut) => return,
            }
        }
    };
    if let Err(err) = result {
        // Peers hang up, time out and send garbage all the time; hyper has
        // already answered what deserved an answer (400, 431).
        tracing::debug!(%peer, error = %err, "client connection ended with an error");
    }
}
