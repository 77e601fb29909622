//! What the host tells the proxy: listeners, runtimes, client policy,
//! upstream proxy, HTTPS inspection and limits. Plain Rust, no parsing of
//! files here: the host maps its own config onto these types.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use rustls_pki_types::CertificateDer;

use crate::limits::Limits;
use crate::mitm::CertificateAuthority;
use traffic_guardian_core::Engine;

/// Everything [`crate::Proxy::start`] needs. Start from
/// [`ProxyConfig::new`] and set the fields that differ from the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Where to listen. At least one. A listener may be bound to a runtime,
    /// so every client on it is attributed to that runtime.
    pub listeners: Vec<ListenerConfig>,
    /// The runtimes (containers or groups) clients are attributed to.
    pub runtimes: Vec<RuntimeConfig>,
    /// Client source networks allowed to use the proxy at all; others get
    /// `403`. Default: loopback only (`127.0.0.0/8`, `::1/128`).
    pub allowed_clients: Vec<IpNet>,
    /// What to do with an allowed client that no runtime claims.
    pub unknown_clients: UnknownClients,
    /// An HTTP proxy to send all upstream traffic through (for NanoClaw,
    /// the OneCLI gateway).
    pub upstream_proxy: Option<UpstreamProxy>,
    /// Hosts that are always tunnelled, never inspected, even for runtimes
    /// with HTTPS inspection (pinned or mTLS clients). `example.com`
    /// matches that host only, `*.example.com` its subdomains.
    pub passthrough_hosts: Vec<String>,
    /// Extra trust anchors for upstream TLS, on top of the webpki roots
    /// (for example the OneCLI CA).
    pub extra_upstream_roots: Vec<CertificateDer<'static>>,
    /// The CA that signs leaf certificates for inspected HTTPS. Without it,
    /// HTTPS is tunnelled for every runtime.
    pub certificate_authority: Option<CertificateAuthority>,
    /// Resource limits.
    pub limits: Limits,
    /// How many leaf server configs are kept for reuse. Default 1024.
    pub leaf_cache_capacity: usize,
    /// The scanning engine. Its `max_scan_bytes` is the per-message body
    /// budget: beyond it bytes still flow, unscanned.
    pub engine: Engine,
}

impl ProxyConfig {
    /// A config with defaults and no listener yet.
    pub fn new(engine: Engine) -> ProxyConfig {
        ProxyConfig {
            listeners: Vec::new(),
            runtimes: Vec::new(),
            allowed_clients: IpNet::loopback(),
            unknown_clients: UnknownClients::default(),
            upstream_proxy: None,
            passthrough_hosts: Vec::new(),
            extra_upstream_roots: Vec::new(),
            certificate_authority: None,
            limits: Limits::default(),
            leaf_cache_capacity: 1024,
            engine,
        }
    }

    /// Adds a listener not bound to a runtime.
    pub fn listen(mut self, addr: SocketAddr) -> ProxyConfig {
        self.listeners.push(ListenerConfig {
            addr,
            runtime: None,
        });
        self
    }

    /// Checks the config can work.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.listeners.is_empty() {
            return Err("at least one listener is needed".into());
        }
        let known = |name: &str| self.runtimes.iter().any(|r| r.name == name);
        for listener in &self.listeners {
            if let Some(name) = &listener.runtime
                && !known(name)
            {
                return Err(format!(
                    "listener {} names runtime {name:?}, which is not configured",
                    listener.addr
                ));
            }
        }
        for (i, runtime) in self.runtimes.iter().enumerate() {
            if runtime.name.is_empty() {
                return Err("a runtime has an empty name".into());
            }
            if self.runtimes[..i].iter().any(|r| r.name == runtime.name) {
                return Err(format!("runtime {:?} is configured twice", runtime.name));
            }
        }
        if let Some(proxy) = &self.upstream_proxy {
            if proxy.addr.starts_with("https://") {
                return Err("upstream_proxy: only http:// upstream proxies are supported".into());
            }
            if proxy
                .authority()
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(format!("upstream_proxy: {:?} is not host:port", proxy.addr));
            }
        }
        if self.leaf_cache_capacity == 0 {
            return Err("leaf_cache_capacity must be at least 1".into());
        }
        if self.runtimes.iter().any(|r| r.https_inspection) && self.certificate_authority.is_none()
        {
            return Err(
                "a runtime asks for https_inspection but no certificate authority is configured"
                    .into(),
            );
        }
        self.limits.validate()
    }
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address to bind; port 0 picks a free port (see
    /// [`crate::RunningProxy::local_addrs`]).
    pub addr: SocketAddr,
    /// Every client of this listener belongs to this runtime.
    pub runtime: Option<String>,
}

/// A runtime: a container or group whose traffic is attributed together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeConfig {
    /// The name findings carry in `runtime`.
    pub name: String,
    /// Proxy-auth user names (from `Proxy-Authorization: Basic`) that
    /// identify this runtime. The password is not checked: it is an
    /// attribution hint, not access control.
    pub proxy_auth_users: Vec<String>,
    /// Client source networks that identify this runtime.
    pub source_nets: Vec<IpNet>,
    /// Decrypt and inspect this runtime's HTTPS (needs a CA). Otherwise its
    /// HTTPS is tunnelled and only metadata is recorded.
    pub https_inspection: bool,
}

impl RuntimeConfig {
    /// A runtime with the given name and nothing that recognises it yet.
    pub fn named(name: impl Into<String>) -> RuntimeConfig {
        RuntimeConfig {
            name: name.into(),
            ..RuntimeConfig::default()
        }
    }
}

/// What happens to an allowed client that no runtime claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownClients {
    /// Attribute it to this runtime name (default: `default`). If no
    /// runtime of that name is configured, it gets no HTTPS inspection.
    Attribute(String),
    /// Refuse it: `407` when some runtime is recognised by proxy-auth user
    /// (so the client can name itself), `403` otherwise.
    Refuse,
}

impl Default for UnknownClients {
    fn default() -> Self {
        UnknownClients::Attribute("default".into())
    }
}

/// An HTTP proxy the guardian forwards to.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    /// `host:port` of the upstream proxy (an `http://` prefix is accepted).
    pub addr: String,
    /// Pass the client's `Proxy-Authorization` on to the upstream proxy,
    /// untouched. Default true. It is never logged or scanned either way.
    pub forward_proxy_authorization: bool,
}

impl UpstreamProxy {
    /// An upstream proxy at `addr` that receives the client's credentials.
    pub fn new(addr: impl Into<String>) -> UpstreamProxy {
        UpstreamProxy {
            addr: addr.into(),
            forward_proxy_authorization: true,
        }
    }

    /// `host:port` without a scheme prefix or trailing slash.
    pub(crate) fn authority(&self) -> &str {
        let addr = self.addr.strip_prefix("http://").unwrap_or(&self.addr);
        addr.trim_end_matches('/')
    }
}

impl fmt::Debug for UpstreamProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamProxy")
            .field("addr", &self.authority())
            .field(
                "forward_proxy_authorization",
                &self.forward_proxy_authorization,
            )
            .finish()
    }
}

/// An IP network such as `10.0.0.0/8` or `::1/128`; a bare address is a
/// single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A network from an address and prefix length; `None` if the prefix is
    /// too long for the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    /// `127.0.0.0/8` and `::1/128`.
    pub fn loopback() -> Vec<IpNet> {
        vec![
            IpNet {
                addr: IpAddr::from([127, 0, 0, 0]),
                prefix: 8,
            },
            IpNet {
                addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                prefix: 128,
            },
        ]
    }

    /// Whether `ip` is inside the network. IPv4-mapped IPv6 addresses
    /// match their IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("{s:?}: prefix length is not a number"))?,
            None => max,
        };
        IpNet::new(addr, prefix).ok_or_else(|| format!("{s:?}: prefix longer than {max}"))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn check(net: &str, ip: &str, inside: bool) {
        let net: IpNet = net.parse().unwrap();
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(net.contains(ip), inside, "{net} contains {ip}");
    }

    #[test]
    fn networks_contain_their_addresses() {
        check("127.0.0.0/8", "127.1.2.3", true);
        check("127.0.0.0/8", "128.0.0.1", false);
        check("10.1.2.3", "10.1.2.3", true);
        check("10.1.2.3", "10.1.2.4", false);
        check("0.0.0.0/0", "8.8.8.8", true);
        check("::1/128", "::1", true);
        check("::1/128", "::2", false);
        check("fd00::/8", "fd12::1", true);
        check("127.0.0.0/8", "::ffff:127.0.0.1", true);
        check("::/0", "127.0.0.1", false);
    }

    fn check_config(edit: impl FnOnce(&mut ProxyConfig), expect: Option<&str>) {
        let mut config = ProxyConfig::new(Engine::builtin()).listen("127.0.0.1:0".parse().unwrap());
        edit(&mut config);
        match (config.validate(), expect) {
            (Ok(()), None) => {}
            (Err(err), Some(part)) => assert!(err.contains(part), "{err}"),
            (got, want) => panic!("got {got:?}, want an error containing {want:?}"),
        }
    }

    #[test]
    fn configs_that_cannot_work_are_refused_with_a_reason() {
        check_config(|_| {}, None);
        check_config(|c| c.listeners.clear(), Some("at least one listener"));
        check_config(
            |c| c.listeners[0].runtime = Some("ghost".into()),
            Some("runtime \"ghost\", which is not configured"),
        );
        check_config(
            |c| c.runtimes = vec![RuntimeConfig::named("a"), RuntimeConfig::named("a")],
            Some("configured twice"),
        );
        check_config(
            |c| {
                c.runtimes = vec![RuntimeConfig {
                    https_inspection: true,
                    ..RuntimeConfig::named("a")
                }]
            },
            Some("no certificate authority"),
        );
        check_config(|c| c.limits.max_connections = 0, Some("max_connections"));
        check_config(
            |c| c.upstream_proxy = Some(UpstreamProxy::new("https://gw:443")),
            Some("only http://"),
        );
        check_config(
            |c| c.upstream_proxy = Some(UpstreamProxy::new("gateway")),
            Some("is not host:port"),
        );
        check_config(
            |c| c.limits.idle_timeout = Duration::ZERO,
            Some("idle_timeout"),
        );
    }

    #[test]
    fn upstream_proxy_addresses_accept_a_scheme() {
        assert_eq!(
            UpstreamProxy::new("http://127.0.0.1:10255/").authority(),
            "127.0.0.1:10255"
        );
        assert_eq!(
            UpstreamProxy::new("onecli:10255").authority(),
            "onecli:10255"
        );
    }

    #[test]
    fn rejects_bad_networks() {
        for bad in ["", "x", "10.0.0.0/33", "::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
