//! Which runtime a client belongs to: by listener, by proxy-auth user name,
//! or by source network, in that order; and whether it may use the proxy.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;

use crate::config::{IpNet, ProxyConfig, UnknownClients};
use crate::error::Error;

/// A runtime as the proxy uses it at run time.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// The name findings carry.
    pub(crate) name: String,
    /// Whether its HTTPS is decrypted and inspected.
    pub(crate) inspect_https: bool,
    users: Vec<String>,
    nets: Vec<IpNet>,
}

/// Resolves clients to runtimes.
#[derive(Debug)]
pub(crate) struct Attribution {
    runtimes: Vec<Arc<Runtime>>,
    allowed: Vec<IpNet>,
    unknown: Option<Arc<Runtime>>,
    ask_for_auth: bool,
}

impl Attribution {
    pub(crate) fn new(config: &ProxyConfig, can_inspect: bool) -> Attribution {
        let runtimes: Vec<Arc<Runtime>> = config
            .runtimes
            .iter()
            .map(|r| {
                Arc::new(Runtime {
                    name: r.name.clone(),
                    inspect_https: r.https_inspection && can_inspect,
                    users: r.proxy_auth_users.clone(),
                    nets: r.source_nets.clone(),
                })
            })
            .collect();
        let unknown = match &config.unknown_clients {
            UnknownClients::Refuse => None,
            UnknownClients::Attribute(name) => Some(
                runtimes
                    .iter()
                    .find(|r| &r.name == name)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Runtime {
                            name: name.clone(),
                            inspect_https: false,
                            users: Vec::new(),
                            nets: Vec::new(),
                        })
                    }),
            ),
        };
        let ask_for_auth = runtimes.iter().any(|r| !r.users.is_empty());
        Attribution {
            runtimes,
            allowed: config.allowed_clients.clone(),
            unknown,
            ask_for_auth,
        }
    }

    /// The runtime a listener is bound to, by name.
    pub(crate) fn by_name(&self, name: &str) -> Option<Arc<Runtime>> {
        self.runtimes.iter().find(|r| r.name == name).cloned()
    }

    /// Whether a client at `ip` may use the proxy at all.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(ip))
    }

    /// The runtime a request belongs to. `listener` is the runtime the
    /// listener is bound to, if any; `proxy_auth` the request's
    /// `Proxy-Authorization` (read for its user name only, never logged).
    pub(crate) fn resolve(
        &self,
        listener: Option<&Arc<Runtime>>,
        ip: IpAddr,
        proxy_auth: Option<&HeaderValue>,
    ) -> Result<Arc<Runtime>, Error> {
        if !self.allows(ip) {
            return Err(Error::Forbidden);
        }
        if let Some(runtime) = listener {
            return Ok(runtime.clone());
        }
        if let Some(user) = proxy_auth.and_then(basic_user)
            && let Some(runtime) = self.runtimes.iter().find(|r| r.users.contains(&user))
        {
            return Ok(runtime.clone());
        }
        if let Some(runtime) = self
            .runtimes
            .iter()
            .find(|r| r.nets.iter().any(|net| net.contains(ip)))
        {
            return Ok(runtime.clone());
        }
        match &self.unknown {
            Some(runtime) => Ok(runtime.clone()),
            None if self.ask_for_auth => Err(Error::ProxyAuthRequired),
            None => Err(Error::Forbidden),
        }
    }
}

/// The user name of a `Basic` credential; `None` for anything else.
fn basic_user(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuntimeConfig;
    use traffic_guardian_core::Engine;

    fn attribution(unknown: UnknownClients) -> Attribution {
        let mut config = ProxyConfig::new(Engine::builtin());
        config.allowed_clients = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        config.unknown_clients = unknown;
        config.runtimes = vec![
            RuntimeConfig {
                proxy_auth_users: vec!["alice".into()],
                ..RuntimeConfig::named("by-user")
            },
            RuntimeConfig {
                source_nets: vec!["10.1.0.0/16".parse().unwrap()],
                ..RuntimeConfig::named("by-net")
            },
        ];
        Attribution::new(&config, false)
    }

    fn basic(credential: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(credential);
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    fn check(
        unknown: UnknownClients,
        ip: &str,
        auth: Option<HeaderValue>,
        expect: Result<&str, u16>,
    ) {
        let got = attribution(unknown)
            .resolve(None, ip.parse().unwrap(), auth.as_ref())
            .map(|r| r.name.clone())
            .map_err(|e| e.status().as_u16());
        assert_eq!(got, expect.map(str::to_owned), "{ip} {auth:?}");
    }

    #[test]
    fn resolves_by_user_then_network_then_policy() {
        let default = || UnknownClients::default();
        check(
            default(),
            "127.0.0.1",
            Some(basic("alice:secret")),
            Ok("by-user"),
        );
        check(default(), "10.1.2.3", None, Ok("by-net"));
        check(default(), "10.1.2.3", Some(basic("alice:x")), Ok("by-user"));
        check(
            default(),
            "10.1.2.3",
            Some(basic("mallory:x")),
            Ok("by-net"),
        );
        check(default(), "127.0.0.1", None, Ok("default"));
        check(default(), "192.168.1.1", None, Err(403));
        check(UnknownClients::Refuse, "127.0.0.1", None, Err(407));
        check(
            UnknownClients::Refuse,
            "127.0.0.1",
            Some(HeaderValue::from_static("Bearer x")),
            Err(407),
        );
        check(
            UnknownClients::Refuse,
            "127.0.0.1",
            Some(HeaderValue::from_static("Basic !!!")),
            Err(407),
        );
    }

    #[test]
    fn listener_runtime_wins_but_sources_are_still_checked() {
        let attribution = attribution(UnknownClients::Refuse);
        let bound = attribution.by_name("by-net").unwrap();
        let got = attribution
            .resolve(
                Some(&bound),
                "127.0.0.1".parse().unwrap(),
                Some(&basic("alice:x")),
            )
            .unwrap();
        assert_eq!(got.name, "by-net");
        assert!(
            attribution
                .resolve(Some(&bound), "8.8.8.8".parse().unwrap(), None)
                .is_err()
        );
    }
}
