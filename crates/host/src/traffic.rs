//! The traffic side of the guardian: what the host asks of the proxy, mapped from its config.

use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use traffic_guardian_core::Engine;

use crate::ca::SigningMaterial;
use crate::config::RuntimeConfig;
use crate::error::Error;
use crate::findings_pipeline::PipelineHandle;
use crate::status::TrafficStatus;

/// Everything the proxy needs, resolved and checked by the host.
#[derive(Debug)]
#[allow(dead_code)] // Read once the proxy crate is wired in.
pub(crate) struct TrafficPlan {
    /// Addresses to bind, each with the runtime it belongs to, if any.
    pub(crate) listeners: Vec<(SocketAddr, Option<String>)>,
    /// Every runtime, the default one included.
    pub(crate) runtimes: Vec<RuntimeConfig>,
    /// Client networks allowed at all.
    pub(crate) allowed_clients: Vec<String>,
    /// The runtime for clients no rule claims; `None` refuses them.
    pub(crate) default_runtime: Option<String>,
    /// `host:port` of the upstream proxy, and whether client credentials
    /// pass through.
    pub(crate) upstream_proxy: Option<(String, bool)>,
    /// Hosts never inspected.
    pub(crate) passthrough_hosts: Vec<String>,
    /// Extra upstream trust anchors.
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    /// The CA, when some runtime inspects HTTPS.
    pub(crate) ca: Option<SigningMaterial>,
    /// The scanning engine.
    pub(crate) engine: Engine,
    /// Graceful drain limit.
    pub(crate) drain_timeout: Duration,
}

/// The running proxy.
#[derive(Debug)]
pub(crate) struct Traffic {
    bound: Vec<(SocketAddr, Option<String>)>,
}

impl Traffic {
    /// Starts the proxy; ready when this returns.
    pub(crate) async fn start(plan: TrafficPlan, sink: PipelineHandle) -> Result<Traffic, Error> {
        let _ = (plan, sink);
        Err(Error::Proxy(
            "proxy not built into this version: the traffic-guardian-proxy crate has not landed yet; `run` cannot serve traffic".into(),
        ))
    }

    /// The bound addresses with their runtimes.
    pub(crate) fn bound(&self) -> &[(SocketAddr, Option<String>)] {
        &self.bound
    }

    /// The proxy's counters.
    pub(crate) fn stats(&self) -> TrafficStatus {
        TrafficStatus::default()
    }

    /// Stops the proxy; every finding has reached the sink when it returns.
    pub(crate) async fn shutdown(self, graceful: bool) {
        let _ = graceful;
    }
}
