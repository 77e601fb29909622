//! The traffic side of the guardian: the host's config mapped onto the proxy crate, and the proxy's findings fed into the pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use traffic_guardian_core::{Engine, Finding};
use traffic_guardian_proxy::{
    CertificateAuthority, FindingSink, FlowRecord, IpNet, ListenerConfig, Proxy, ProxyConfig,
    RunningProxy, RuntimeConfig as ProxyRuntime, UnknownClients, UpstreamProxy,
};

use crate::ca::SigningMaterial;
use crate::config::{Problem, RuntimeConfig};
use crate::error::Error;
use crate::findings_pipeline::PipelineHandle;
use crate::status::TrafficStatus;

/// Everything the proxy needs, resolved and checked by the host.
#[derive(Debug)]
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
    proxy: RunningProxy,
    bound: Vec<(SocketAddr, Option<String>)>,
}

/// The proxy's sink: findings and flow records go to the pipeline, which
/// never blocks the proxy.
#[derive(Debug)]
struct PipelineSink(PipelineHandle);

impl FindingSink for PipelineSink {
    fn record(&self, findings: Vec<Finding>) {
        self.0.record(findings);
    }

    fn flow(&self, flow: &FlowRecord) {
        self.0
            .flow(&flow.runtime, flow.scanned_bytes, flow.unscanned_bytes);
    }
}

impl Traffic {
    /// Starts the proxy; ready when this returns.
    pub(crate) async fn start(plan: TrafficPlan, sink: PipelineHandle) -> Result<Traffic, Error> {
        let nets = |path: String, list: &[String]| -> Result<Vec<IpNet>, Error> {
            list.iter()
                .map(|text| {
                    text.parse::<IpNet>()
                        .map_err(|reason| Error::Config(vec![Problem::error(path.clone(), reason)]))
                })
                .collect()
        };
        let mut config = ProxyConfig::new(plan.engine);
        config.listeners = plan
            .listeners
            .iter()
            .map(|(addr, runtime)| ListenerConfig {
                addr: *addr,
                runtime: runtime.clone(),
            })
            .collect();
        config.runtimes = plan
            .runtimes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(ProxyRuntime {
                    name: r.name.clone(),
                    proxy_auth_users: r.proxy_users.clone(),
                    source_nets: nets(format!("runtimes[{i}].source_cidrs"), &r.source_cidrs)?,
                    https_inspection: r.https_inspection,
                })
            })
            .collect::<Result<_, Error>>()?;
        config.allowed_clients = nets("allowed_clients".into(), &plan.allowed_clients)?;
        config.unknown_clients = match plan.default_runtime {
            Some(name) => UnknownClients::Attribute(name),
            None => UnknownClients::Refuse,
        };
        config.upstream_proxy = plan.upstream_proxy.map(|(addr, forward)| UpstreamProxy {
            addr,
            forward_proxy_authorization: forward,
        });
        config.passthrough_hosts = plan.passthrough_hosts;
        config.extra_upstream_roots = plan.extra_roots;
        config.certificate_authority = match &plan.ca {
            Some(material) => Some(
                CertificateAuthority::from_pem(&material.cert_pem, &material.key_pem)
                    .map_err(|err| Error::Ca(err.to_string()))?,
            ),
            None => None,
        };
        config.limits.drain_timeout = plan.drain_timeout;
        let proxy = Proxy::start(config, Arc::new(PipelineSink(sink)))
            .await
            .map_err(|err| Error::Proxy(err.to_string()))?;
        let bound = proxy
            .local_addrs()
            .iter()
            .zip(&plan.listeners)
            .map(|(addr, (_, runtime))| (*addr, runtime.clone()))
            .collect();
        Ok(Traffic { proxy, bound })
    }

    /// The bound addresses with their runtimes.
    pub(crate) fn bound(&self) -> &[(SocketAddr, Option<String>)] {
        &self.bound
    }

    /// The proxy's counters.
    pub(crate) fn stats(&self) -> TrafficStatus {
        let stats = self.proxy.stats();
        TrafficStatus {
            connections_open: stats.connections_open,
            connections_total: stats.connections_total,
            requests: stats.requests,
            flows_inspected: stats.flows_inspected,
            flows_tunnelled: stats.flows_tunnelled,
            scanned_bytes: stats.scanned_bytes,
            unscanned_bytes: stats.unscanned_bytes,
            upstream_errors: stats.upstream_errors,
            client_errors: stats.client_errors,
            by_runtime: Default::default(),
        }
    }

    /// Stops the proxy; every finding has reached the sink when it returns.
    pub(crate) async fn shutdown(self, graceful: bool) {
        self.proxy.shutdown(graceful).await;
    }
}
