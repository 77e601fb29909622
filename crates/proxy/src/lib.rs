//! The NanoClaw traffic guardian's forward proxy: detect and log, never
//! block, never rewrite.
//!
//! Clients (agent containers) use it as their HTTP(S) proxy. Plain HTTP is
//! forwarded and scanned both ways; `CONNECT` is a byte tunnel whose flow is
//! recorded, or, for runtimes whose operator enabled HTTPS inspection, a TLS
//! session terminated with a leaf signed by the host CA and scanned like
//! plain HTTP. Bodies stream through untouched while a bounded copy feeds
//! the core scanner; findings go to a [`FindingSink`] the host implements.
//!
//! ```no_run
//! # async fn run(sink: std::sync::Arc<dyn traffic_guardian_proxy::FindingSink>) -> Result<(), traffic_guardian_proxy::Error> {
//! use traffic_guardian_proxy::{Engine, Proxy, ProxyConfig};
//! let config = ProxyConfig::new(Engine::builtin()).listen("127.0.0.1:3128".parse().unwrap());
//! let proxy = Proxy::start(config, sink).await?;
//! println!("listening on {:?}", proxy.local_addrs());
//! proxy.shutdown(true).await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod attribution;
mod body;
mod config;
mod connect;
mod counted;
mod error;
mod flow;
mod forward;
mod hop;
mod idle;
mod limits;
mod listener;
mod mitm;
mod shutdown;
mod sink;
mod stats;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::{
    IpNet, ListenerConfig, ProxyConfig, RuntimeConfig, UnknownClients, UpstreamProxy,
};
pub use error::{Error, ErrorClass};
pub use limits::Limits;
pub use mitm::CertificateAuthority;
pub use sink::{FindingSink, FlowHandling, FlowRecord};
pub use stats::ProxyStats;
/// The core scanning engine the proxy feeds (re-exported for convenience).
pub use traffic_guardian_core::{Engine, EngineConfig};

use attribution::Attribution;
use flow::Shared;
use listener::ProxyState;
use mitm::LeafCache;
use shutdown::{Phase, ShutdownSignal, Tracker};
use stats::Stats;
use upstream::Upstream;

/// Entry point: starts the proxy.
#[derive(Debug)]
pub struct Proxy;

impl Proxy {
    /// Checks `config`, binds every listener and starts serving. The proxy
    /// is ready when this returns. Must be called inside a tokio runtime.
    pub async fn start(
        config: ProxyConfig,
        sink: Arc<dyn FindingSink>,
    ) -> Result<RunningProxy, Error> {
        config.validate().map_err(Error::Config)?;
        let leaves = config
            .certificate_authority
            .clone()
            .map(|ca| LeafCache::new(ca, config.leaf_cache_capacity));
        let attribution = Attribution::new(&config, leaves.is_some());
        let upstream = Upstream::new(&config)?;
        let stats = Arc::new(Stats::default());
        let scans = Tracker::default();
        let shared = Arc::new(Shared {
            engine: config.engine.clone(),
            sink,
            stats: stats.clone(),
            scans: scans.clone(),
        });
        let signal = ShutdownSignal::new();
        let forward_proxy_auth = config
            .upstream_proxy
            .as_ref()
            .is_some_and(|p| p.forward_proxy_authorization);
        let mut bound = Vec::new();
        for listener in &config.listeners {
            let socket = TcpListener::bind(listener.addr)
                .await
                .map_err(|source| Error::Bind {
                    addr: listener.addr,
                    source,
                })?;
            let local = socket.local_addr().map_err(|source| Error::Bind {
                addr: listener.addr,
                source,
            })?;
            let runtime = listener
                .runtime
                .as_deref()
                .and_then(|name| attribution.by_name(name));
            bound.push((socket, local, runtime));
        }
        let state = Arc::new(ProxyState::new(
            shared,
            attribution,
            upstream,
            leaves,
            config.passthrough_hosts.clone(),
            config.limits.clone(),
            forward_proxy_auth,
            signal.watcher(),
            bound.iter().map(|(_, local, _)| *local).collect(),
        ));

        let mut local_addrs = Vec::new();
        let mut accept_tasks = Vec::new();
        for (socket, local, runtime) in bound {
            tracing::info!(addr = %local, runtime = runtime.as_ref().map(|r| r.name.as_str()), "listening");
            local_addrs.push(local);
            accept_tasks.push(tokio::spawn(listener::accept_loop(
                state.clone(),
                socket,
                runtime,
            )));
        }
        Ok(RunningProxy {
            local_addrs,
            state,
            signal,
            scans,
            stats,
            accept_tasks,
        })
    }
}

/// A started proxy. Dropping it without [`RunningProxy::shutdown`] stops
/// accepting and cuts every connection.
#[derive(Debug)]
pub struct RunningProxy {
    local_addrs: Vec<SocketAddr>,
    state: Arc<ProxyState>,
    signal: ShutdownSignal,
    scans: Tracker,
    stats: Arc<Stats>,
    accept_tasks: Vec<JoinHandle<()>>,
}

impl RunningProxy {
    /// The bound addresses, in the order of `config.listeners`.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.stats.snapshot()
    }

    /// Returns once no client connection is open (at once if none is), for
    /// a caller that wants quiet counters. Connections keep being accepted:
    /// it may return and a new one open right after.
    pub async fn wait_idle(&self) {
        self.state.conns.wait_idle().await;
    }

    /// Stops the proxy. Graceful: drain in-flight flows for up to
    /// `limits.drain_timeout`; otherwise cut them at once. Either way it
    /// returns after every pending finding reached the sink.
    pub async fn shutdown(self, graceful: bool) -> ProxyStats {
        let deadline = if graceful {
            self.state.limits.drain_timeout
        } else {
            Duration::ZERO
        };
        self.shutdown_with_deadline(deadline).await
    }

    /// Stops accepting, lets in-flight flows finish for up to `deadline`,
    /// cuts the rest, and returns once every finding and flow record
    /// reached the sink.
    pub async fn shutdown_with_deadline(mut self, deadline: Duration) -> ProxyStats {
        self.signal.set(Phase::Draining);
        for task in self.accept_tasks.drain(..) {
            let _ = task.await;
        }
        let conns = self.state.conns.clone();
        if tokio::time::timeout(deadline, conns.wait_idle())
            .await
            .is_err()
        {
            tracing::info!(
                left = conns.count(),
                "drain deadline passed; cutting the rest"
            );
        }
        self.signal.set(Phase::Cut);
        conns.wait_idle().await;
        self.state.upstream.clear();
        self.scans.wait_idle().await;
        tracing::info!("stopped");
        self.stats.snapshot()
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.signal.set(Phase::Cut);
        for task in &self.accept_tasks {
            task.abort();
        }
    }
}
