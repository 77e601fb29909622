//! The exact wiring an operator pastes into a container runtime: proxy variables, CA variables, the read-only mount, and the notes that go with them.
//!
//! Everything here is text. Nothing is run, and no trust store is touched:
//! trust-store commands are printed only when asked for explicitly.

use std::fmt::Write as _;
use std::path::Path;

use crate::ca::{BUNDLE_FILE, GUARDIAN_CA_FILE};
use crate::config::{Config, DEFAULT_RUNTIME, parse_listen_url};
use crate::error::Error;
use crate::paths::StatePaths;

/// Where the trust folder is mounted inside containers.
pub const CONTAINER_TRUST_DIR: &str = "/opt/clawsec/ca";
/// The port OneCLI's gateway listens on.
const ONECLI_PORT: u16 = 10255;
/// The password beside a proxy user in the proxy URL. The guardian never
/// checks it, but it must be there: Python `requests` sends no credentials
/// for a user without a password, and Node's fetch (undici) none unless both
/// are non-empty, so their traffic would not be recognised as the runtime's.
const UNCHECKED_PASSWORD: &str = "unchecked";

/// Which container runtime the wiring is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// Docker (Linux or Docker Desktop).
    Docker,
    /// Apple Container on macOS.
    AppleContainer,
}

impl ContainerKind {
    /// The host name or address containers use to reach the host.
    pub fn host_address(self) -> &'static str {
        match self {
            ContainerKind::Docker => "host.docker.internal",
            ContainerKind::AppleContainer => "192.168.64.1",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ContainerKind::Docker => "Docker",
            ContainerKind::AppleContainer => "Apple Container",
        }
    }
}

/// What to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupRequest {
    /// The runtime to wire (default: the default runtime).
    pub runtime: Option<String>,
    /// The container runtime.
    pub kind: ContainerKind,
    /// Also print system trust-store commands (printed, never run).
    pub trust_store_instructions: bool,
}

/// Facts about the install that the text depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetupFacts {
    /// The CA fingerprint, if a CA exists.
    pub ca_fingerprint: Option<String>,
    /// Whether the runtime's trust folder holds the current CA.
    pub trust_exported: bool,
    /// The actual port of the runtime's listener when the guardian runs
    /// (matters when the config asks for port 0).
    pub bound_port: Option<u16>,
}

/// Renders the wiring for one runtime.
pub fn render(
    config: &Config,
    paths: &StatePaths,
    request: &SetupRequest,
    facts: &SetupFacts,
) -> Result<String, Error> {
    let runtimes = config.effective_runtimes();
    let name = request
        .runtime
        .clone()
        .or_else(|| config.default_runtime.clone())
        .unwrap_or_else(|| DEFAULT_RUNTIME.to_owned());
    let Some(runtime) = runtimes.iter().find(|r| r.name == name) else {
        let known: Vec<&str> = runtimes.iter().map(|r| r.name.as_str()).collect();
        return Err(Error::Config(vec![crate::config::Problem::error(
            "--runtime",
            format!(
                "no runtime named {name:?}; configured: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )]));
    };
    let listen_url = runtime.listen.as_deref().unwrap_or(&config.proxy_url);
    let bind = parse_listen_url(listen_url).map_err(|reason| {
        Error::Config(vec![crate::config::Problem::error("proxy_url", reason)])
    })?;
    let port = match (bind.port(), facts.bound_port) {
        (0, Some(port)) => port.to_string(),
        (0, None) => "<port: start the guardian, then run setup again>".to_owned(),
        (port, _) => port.to_string(),
    };
    let kind = request.kind;
    let host = kind.host_address();
    let user = if runtime.listen.is_none() {
        runtime
            .proxy_users
            .first()
            .map(|u| format!("{u}:{UNCHECKED_PASSWORD}@"))
    } else {
        None
    };
    let proxy = format!("http://{}{host}:{port}", user.as_deref().unwrap_or(""));
    let trust_dir = config.trust_dir(paths, &runtime.name);
    let bundle_name = config
        .bundle_path(paths, &runtime.name)
        .file_name()
        .map_or_else(
            || BUNDLE_FILE.to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
    let in_container = |file: &str| format!("{CONTAINER_TRUST_DIR}/{file}");
    let bundle = in_container(&bundle_name);
    let ca_alone = in_container(GUARDIAN_CA_FILE);

    let mut env: Vec<(String, String)> = Vec::new();
    for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.push((key.into(), proxy.clone()));
    }
    for key in ["NO_PROXY", "no_proxy"] {
        env.push((key.into(), "localhost,127.0.0.1,::1".into()));
    }
    env.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    // For the MCP server's wiring check: the same endpoint, no user.
    env.push((
        "NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL".into(),
        format!("http://{host}:{port}"),
    ));
    if runtime.https_inspection {
        env.push(("NANOCLAW_TRAFFIC_GUARDIAN_CA_BUNDLE".into(), bundle.clone()));
        env.push(("NODE_EXTRA_CA_CERTS".into(), ca_alone.clone()));
        for key in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO",
            "DENO_CERT",
        ] {
            env.push((key.into(), bundle.clone()));
        }
    }

    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# NanoClaw traffic guardian: wiring for runtime \"{}\" ({})",
        runtime.name,
        kind.label()
    );
    let _ = writeln!(
        w,
        "# The guardian watches and logs; it never blocks and never changes a trust store."
    );
    let _ = writeln!(w, "# Containers reach it at {proxy}");
    if let Some(user) = runtime
        .proxy_users
        .first()
        .filter(|_| runtime.listen.is_none())
    {
        let _ = writeln!(
            w,
            "# The proxy user \"{user}\" names the runtime; the password is never checked,"
        );
        let _ = writeln!(
            w,
            "# but clients such as Python requests and Node's fetch send no user without one."
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "## 1. Environment variables (set in every container of this runtime)"
    );
    for (key, value) in &env {
        let _ = writeln!(w, "{key}={value}");
    }
    let _ = writeln!(w);

    if runtime.https_inspection {
        let _ = writeln!(w, "## 2. Read-only mount of the public trust folder");
        let _ = writeln!(w, "# host folder:      {}", trust_dir.display());
        let _ = writeln!(w, "# container folder: {CONTAINER_TRUST_DIR} (read-only)");
        let _ = writeln!(
            w,
            "# {GUARDIAN_CA_FILE}: the guardian CA alone, for NODE_EXTRA_CA_CERTS (adds to Node's roots)"
        );
        let _ = writeln!(
            w,
            "# {bundle_name}: system roots + the guardian CA, for the variables that replace the defaults"
        );
        if !facts.trust_exported {
            let _ = writeln!(
                w,
                "# NOT EXPORTED YET: run `traffic-guardian ca export --runtime {}` first",
                runtime.name
            );
        }
    } else {
        let _ = writeln!(w, "## 2. Trust");
        let _ = writeln!(
            w,
            "# HTTPS inspection is off for this runtime: HTTPS is tunnelled and only its"
        );
        let _ = writeln!(
            w,
            "# metadata (host, port, byte counts) is recorded. No CA variables or mount are needed."
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## 3. Command-line form");
    let mut flags: Vec<String> = Vec::new();
    let run = match kind {
        ContainerKind::Docker => {
            flags.push("--add-host=host.docker.internal:host-gateway".into());
            "docker run"
        }
        ContainerKind::AppleContainer => "container run",
    };
    for (key, value) in &env {
        flags.push(format!("-e {}", sh_quote(&format!("{key}={value}"))));
    }
    if runtime.https_inspection {
        flags.push(mount_flag(kind, &trust_dir));
    }
    let _ = writeln!(w, "{run} \\");
    for flag in &flags {
        let _ = writeln!(w, "  {flag} \\");
    }
    let _ = writeln!(w, "  IMAGE");
    let _ = writeln!(
        w,
        "# In NanoClaw's container runner: add the same variables to the container's env{}.",
        if runtime.https_inspection {
            " and the folder as a read-only mount"
        } else {
            ""
        }
    );
    let _ = writeln!(w);

    let _ = writeln!(w, "## 4. Reaching the host");
    let field = match config.runtimes.iter().position(|r| r.name == runtime.name) {
        Some(i) if runtime.listen.is_some() => format!("runtimes[{i}].listen"),
        _ => "proxy_url".to_owned(),
    };
    match (kind, bind.ip().is_loopback()) {
        (ContainerKind::Docker, true) => {
            let _ = writeln!(
                w,
                "# Docker Desktop forwards host.docker.internal to the host's loopback, so the"
            );
            let _ = writeln!(w, "# loopback bind {listen_url} works there.");
            let _ = writeln!(
                w,
                "# On Linux, host.docker.internal is the docker0 bridge (usually 172.17.0.1), which"
            );
            let _ = writeln!(
                w,
                "# a loopback bind does not reach: set {field} to http://172.17.0.1:{port}"
            );
            let _ = writeln!(w, "# and add 172.17.0.0/16 to allowed_clients.");
        }
        (ContainerKind::Docker, false) => {
            let _ = writeln!(
                w,
                "# The guardian listens on {listen_url}. Containers' source addresses (usually"
            );
            let _ = writeln!(w, "# 172.17.0.0/16) must be in allowed_clients.");
        }
        (ContainerKind::AppleContainer, _) => {
            let _ = writeln!(
                w,
                "# Apple Container reaches the host at the bridge address, usually 192.168.64.1"
            );
            let _ = writeln!(
                w,
                "# (check with `container network list`). That needs {field} bound to"
            );
            let _ = writeln!(
                w,
                "# http://0.0.0.0:{port} and 192.168.64.0/24 in allowed_clients."
            );
        }
    }
    if bind.ip().is_unspecified() || kind == ContainerKind::AppleContainer {
        let _ = writeln!(
            w,
            "# Firewall: a 0.0.0.0 bind listens on every interface. Allow port {port} only from"
        );
        match kind {
            ContainerKind::AppleContainer => {
                let _ = writeln!(w, "# the container network, for example with pf:");
                let _ = writeln!(w, "#   block in proto tcp from any to any port {port}");
                let _ = writeln!(
                    w,
                    "#   pass in proto tcp from 192.168.64.0/24 to any port {port}"
                );
            }
            ContainerKind::Docker => {
                let _ = writeln!(w, "# the container network, for example:");
                let _ = writeln!(
                    w,
                    "#   iptables -A INPUT -p tcp --dport {port} ! -s 172.17.0.0/16 ! -i lo -j DROP"
                );
            }
        }
    }
    let _ = writeln!(w);

    let _ = writeln!(
        w,
        "## 5. In front of OneCLI (container -> guardian -> OneCLI -> internet)"
    );
    match &config.upstream_proxy {
        Some(upstream) => {
            let _ = writeln!(w, "# Chained now: upstream_proxy.url = {}", upstream.url);
            let _ = writeln!(
                w,
                "# Proxy-Authorization from the container is {} (never logged).",
                if upstream.forward_proxy_authorization {
                    "passed to OneCLI untouched"
                } else {
                    "NOT passed on (forward_proxy_authorization is false)"
                }
            );
        }
        None => {
            let _ = writeln!(w, "# Add to config.json:");
            let _ = writeln!(
                w,
                "#   \"upstream_proxy\": {{\"url\": \"http://127.0.0.1:{ONECLI_PORT}\", \"forward_proxy_authorization\": true}},"
            );
            let _ = writeln!(
                w,
                "#   \"upstream_ca_files\": [\"<path of OneCLI's CA certificate, PEM>\"]"
            );
        }
    }
    let _ = writeln!(
        w,
        "# Point the containers at the guardian instead of OneCLI, keeping the credentials OneCLI"
    );
    let _ = writeln!(
        w,
        "# gave them in the proxy URL (http://USER:TOKEN@{host}:{port}); the guardian passes them on."
    );
    let _ = writeln!(w);

    let _ = writeln!(w, "## 6. CA fingerprint");
    match (&facts.ca_fingerprint, runtime.https_inspection) {
        (Some(fingerprint), true) => {
            let _ = writeln!(w, "# SHA-256 {fingerprint}");
            let _ = writeln!(
                w,
                "# Compare inside the container: openssl x509 -in {ca_alone} -noout -fingerprint -sha256"
            );
        }
        (None, true) => {
            let _ = writeln!(w, "# No CA yet: run `traffic-guardian ca init`.");
        }
        (_, false) => {
            let _ = writeln!(w, "# Not needed: HTTPS inspection is off for this runtime.");
        }
    }

    if request.trust_store_instructions {
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "## 7. System trust store (printed only; the guardian never runs these)"
        );
        let _ = writeln!(
            w,
            "# Only for a host or image where you want EVERY program to trust the guardian CA."
        );
        let _ = writeln!(
            w,
            "# The per-container variables above are the recommended way; these change a system"
        );
        let _ = writeln!(
            w,
            "# trust store, and you must undo them yourself after a CA rotation."
        );
        let cert = paths.ca_cert();
        let _ = writeln!(w, "# Debian/Ubuntu image or host:");
        let _ = writeln!(
            w,
            "#   sudo cp {} /usr/local/share/ca-certificates/nanoclaw-traffic-guardian.crt",
            sh_quote(&cert.display().to_string())
        );
        let _ = writeln!(w, "#   sudo update-ca-certificates");
        let _ = writeln!(w, "# macOS host:");
        let _ = writeln!(
            w,
            "#   sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {}",
            sh_quote(&cert.display().to_string())
        );
    }
    Ok(out)
}

fn mount_flag(kind: ContainerKind, dir: &Path) -> String {
    let source = dir.display().to_string();
    match kind {
        ContainerKind::Docker => format!(
            "-v {}",
            sh_quote(&format!("{source}:{CONTAINER_TRUST_DIR}:ro"))
        ),
        ContainerKind::AppleContainer => format!(
            "--mount {}",
            sh_quote(&format!(
                "type=bind,source={source},target={CONTAINER_TRUST_DIR},readonly"
            ))
        ),
    }
}

/// Quotes `text` for a POSIX shell when it needs it.
pub fn sh_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=,@+-%".contains(&b));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("a=b"), "a=b");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
