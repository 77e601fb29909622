//! Checks a loaded config against its rules and the file system, without starting anything or opening a port.

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use traffic_guardian_core::{MAX_SCAN_BYTES_LIMIT, MIN_SCAN_BYTES};

use super::env::{mode_reason, scan_bound_reason};
use super::{Config, ConfigReport, MODE_DETECT, Problem};
use crate::paths::{StatePaths, is_within, mode_of};

/// Checks `config`: every problem with its field path and a reason.
///
/// Reads the file system (CA files, IPC roots, upstream CA files) but
/// creates nothing and binds nothing.
pub fn check_config(config: &Config) -> ConfigReport {
    let mut out = Vec::new();
    check_scalars(config, &mut out);
    check_listeners(config, &mut out);
    check_runtimes(config, &mut out);
    check_upstream(config, &mut out);
    match &config.home {
        Some(home) if home.is_absolute() => {
            let paths = StatePaths::with_home(home.clone(), config);
            check_paths(config, &paths, &mut out);
            check_ca(config, &paths, &mut out);
        }
        Some(home) => out.push(Problem::error(
            "home",
            format!("{} is not an absolute path", home.display()),
        )),
        None => out.push(Problem::error("home", "no home folder is set")),
    }
    ConfigReport::new(None, out)
}

fn check_scalars(config: &Config, out: &mut Vec<Problem>) {
    if config.mode != MODE_DETECT {
        out.push(Problem::error("mode", mode_reason(&config.mode)));
    }
    if !(MIN_SCAN_BYTES..=MAX_SCAN_BYTES_LIMIT).contains(&config.max_scan_bytes) {
        out.push(Problem::error(
            "max_scan_bytes",
            scan_bound_reason(config.max_scan_bytes),
        ));
    }
    if config.findings.rotate_bytes < 4096 {
        out.push(Problem::error(
            "findings.rotate_bytes",
            "must be at least 4096 bytes",
        ));
    }
    if config.findings.max_backlog == 0 {
        out.push(Problem::error("findings.max_backlog", "must be at least 1"));
    }
    if config.findings.keep_files == 0 {
        out.push(Problem::error(
            "findings.keep_files",
            "must be at least 1: with 0, every rotation would delete the findings just written",
        ));
    }
    if config.drain_timeout_secs > 3600 {
        out.push(Problem::error(
            "drain_timeout_secs",
            "must be at most 3600 seconds",
        ));
    }
    for (i, net) in config.allowed_clients.iter().enumerate() {
        if let Err(reason) = parse_cidr(net) {
            out.push(Problem::error(format!("allowed_clients[{i}]"), reason));
        }
    }
    if config.allowed_clients.is_empty() {
        out.push(Problem::error(
            "allowed_clients",
            "is empty: no client could use the proxy",
        ));
    }
    for (i, host) in config.passthrough_hosts.iter().enumerate() {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        if bare.is_empty()
            || bare
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            out.push(Problem::error(
                format!("passthrough_hosts[{i}]"),
                format!("{host:?} is not a host name or *.domain pattern"),
            ));
        }
    }
    if let Some(bundle) = &config.ca_bundle
        && bundle.file_name().is_none()
    {
        out.push(Problem::error(
            "ca_bundle",
            "must name a file (its folder is what gets mounted)",
        ));
    }
}

fn check_listeners(config: &Config, out: &mut Vec<Problem>) {
    let mut seen: Vec<(SocketAddr, String)> = Vec::new();
    let mut urls = vec![("proxy_url".to_owned(), config.proxy_url.as_str())];
    for (i, runtime) in config.runtimes.iter().enumerate() {
        if let Some(listen) = &runtime.listen {
            urls.push((format!("runtimes[{i}].listen"), listen.as_str()));
        }
    }
    let allowed_loopback_only = config
        .allowed_clients
        .iter()
        .filter_map(|c| parse_cidr(c).ok())
        .all(|(ip, _)| ip.is_loopback());
    for (path, url) in urls {
        match parse_listen_url(url) {
            Ok(addr) => {
                if !addr.ip().is_loopback() {
                    out.push(Problem::warning(
                        path.clone(),
                        format!(
                            "binds {}, which is not loopback: other machines may reach the proxy; \
                             allow only your containers' addresses with a firewall rule",
                            addr.ip()
                        ),
                    ));
                    if allowed_loopback_only {
                        out.push(Problem::warning(
                            path.clone(),
                            "allowed_clients is loopback only, so containers reaching this \
                             address will be refused (403); add their network to allowed_clients",
                        ));
                    }
                }
                if addr.port() != 0
                    && let Some((_, other)) = seen.iter().find(|(a, _)| {
                        a.port() == addr.port()
                            && (a.ip() == addr.ip()
                                || a.ip().is_unspecified()
                                || addr.ip().is_unspecified())
                    })
                {
                    out.push(Problem::error(
                        path.clone(),
                        format!("{url} uses the same address as {other}"),
                    ));
                }
                seen.push((addr, path));
            }
            Err(reason) => out.push(Problem::error(path, reason)),
        }
    }
}

fn check_runtimes(config: &Config, out: &mut Vec<Problem>) {
    let mut names = BTreeSet::new();
    let mut users = BTreeSet::new();
    for (i, runtime) in config.runtimes.iter().enumerate() {
        let at = |field: &str| format!("runtimes[{i}].{field}");
        if !valid_name(&runtime.name) {
            out.push(Problem::error(
                at("name"),
                format!(
                    "{:?} is not a valid name (letters, digits, _ and -, starting with a letter or digit, at most 64)",
                    runtime.name
                ),
            ));
        } else if !names.insert(runtime.name.as_str()) {
            out.push(Problem::error(
                at("name"),
                format!("runtime {:?} is configured twice", runtime.name),
            ));
        }
        if let Some(group) = &runtime.group
            && !valid_name(group)
        {
            out.push(Problem::error(
                at("group"),
                format!("{group:?} is not a valid NanoClaw group name"),
            ));
        }
        for (j, user) in runtime.proxy_users.iter().enumerate() {
            if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                out.push(Problem::error(
                    format!("runtimes[{i}].proxy_users[{j}]"),
                    "must be a non-empty user name without ':'",
                ));
            } else if !users.insert(user.as_str()) {
                out.push(Problem::error(
                    format!("runtimes[{i}].proxy_users[{j}]"),
                    format!("proxy user {user:?} names two runtimes"),
                ));
            }
        }
        for (j, net) in runtime.source_cidrs.iter().enumerate() {
            if let Err(reason) = parse_cidr(net) {
                out.push(Problem::error(
                    format!("runtimes[{i}].source_cidrs[{j}]"),
                    reason,
                ));
            }
        }
        let is_default = config.default_runtime.as_deref() == Some(runtime.name.as_str());
        if runtime.listen.is_none()
            && runtime.proxy_users.is_empty()
            && runtime.source_cidrs.is_empty()
            && !is_default
        {
            out.push(Problem::warning(
                format!("runtimes[{i}]"),
                format!(
                    "runtime {:?} has no listen, proxy_users or source_cidrs, so no client is attributed to it",
                    runtime.name
                ),
            ));
        }
    }
    match &config.default_runtime {
        Some(name) if !valid_name(name) => out.push(Problem::error(
            "default_runtime",
            format!("{name:?} is not a valid runtime name"),
        )),
        Some(_) => {}
        None => out.push(Problem::warning(
            "default_runtime",
            "is null: clients no runtime recognises are refused",
        )),
    }
}

fn check_upstream(config: &Config, out: &mut Vec<Problem>) {
    if let Some(upstream) = &config.upstream_proxy
        && let Err(reason) = parse_upstream_url(&upstream.url)
    {
        out.push(Problem::error("upstream_proxy.url", reason));
    }
    for (i, file) in config.upstream_ca_files.iter().enumerate() {
        if let Err(reason) = crate::ca::read_pem_certs(file) {
            out.push(Problem::error(format!("upstream_ca_files[{i}]"), reason));
        }
    }
}

fn check_paths(config: &Config, paths: &StatePaths, out: &mut Vec<Problem>) {
    let mut mounts: Vec<(String, &Path)> = config
        .ipc
        .roots()
        .map(|(field, path)| (field.to_owned(), path))
        .collect();
    for (i, mount) in config.container_mounts.iter().enumerate() {
        mounts.push((format!("container_mounts[{i}]"), mount.as_path()));
    }
    let own = [
        ("home", &paths.home),
        ("ca_dir", &paths.ca_dir),
        ("log_dir", &paths.log_dir),
    ];
    for (field, path) in own {
        if !path.is_absolute() {
            out.push(Problem::error(
                field,
                format!("{} is not an absolute path", path.display()),
            ));
            continue;
        }
        for (mount_field, mount) in &mounts {
            if is_within(path, mount) {
                out.push(Problem::error(
                    field,
                    format!(
                        "{} is inside {} ({}), which containers can reach; keep guardian state outside every container mount",
                        path.display(),
                        mount_field,
                        mount.display()
                    ),
                ));
            }
        }
    }
    for (field, root) in config.ipc.roots() {
        if let Err(reason) = creatable_dir(root) {
            out.push(Problem::error(field, reason));
        }
    }
    // Relative ones were reported above.
    for (field, dir) in [("home", &paths.home), ("log_dir", &paths.log_dir)] {
        if dir.is_absolute()
            && let Err(reason) = creatable_dir(dir)
        {
            out.push(Problem::error(field, reason));
        }
    }
    let socket = paths.control_socket();
    let len = socket.as_os_str().len();
    if len > crate::control::MAX_SOCKET_PATH {
        out.push(Problem::error(
            "home",
            format!(
                "the control socket {} would be {len} bytes, over the {} a Unix socket path may have; choose a shorter home",
                socket.display(),
                crate::control::MAX_SOCKET_PATH
            ),
        ));
    }
}

fn check_ca(config: &Config, paths: &StatePaths, out: &mut Vec<Problem>) {
    let key = paths.ca_key();
    let cert = paths.ca_cert();
    if let Some(mode) = mode_of(&key)
        && mode & 0o077 != 0
    {
        out.push(Problem::error(
            "ca_dir",
            format!(
                "the CA key {} has mode {mode:04o}: it is readable by group or others; run chmod 600 on it (and consider the key exposed: rotate the CA)",
                key.display()
            ),
        ));
    }
    if let Some(mode) = mode_of(&paths.ca_dir)
        && mode & 0o077 != 0
    {
        out.push(Problem::warning(
            "ca_dir",
            format!(
                "{} has mode {mode:04o}; start sets it to 0700",
                paths.ca_dir.display()
            ),
        ));
    }
    let ca = crate::ca::read_public(paths);
    for (i, runtime) in config.runtimes.iter().enumerate() {
        if !runtime.https_inspection {
            continue;
        }
        let path = format!("runtimes[{i}].https_inspection");
        let ca = match (&ca, key.exists()) {
            (Ok(ca), true) => ca,
            (Err(err), _) if cert.exists() => {
                out.push(Problem::error(
                    path,
                    format!("the CA cannot be read: {err}"),
                ));
                continue;
            }
            _ => {
                out.push(Problem::error(
                    path,
                    format!(
                        "HTTPS inspection needs a CA and a trust bundle in the runtime; there is no CA in {}: run `traffic-guardian ca init`, then `traffic-guardian ca export --runtime {}`",
                        paths.ca_dir.display(),
                        runtime.name
                    ),
                ));
                continue;
            }
        };
        let dir = config.trust_dir(paths, &runtime.name);
        match crate::ca::read_pem_certs(&dir.join(crate::ca::GUARDIAN_CA_FILE)) {
            Err(_) => out.push(Problem::error(
                path,
                format!(
                    "HTTPS inspection without trust configuration: the runtime's trust folder {} has no exported CA; run `traffic-guardian ca export --runtime {}` and mount that folder read-only",
                    dir.display(),
                    runtime.name
                ),
            )),
            Ok(certs) if !certs.iter().any(|c| c.as_ref() == ca.der.as_slice()) => {
                out.push(Problem::error(
                    path,
                    format!(
                        "the CA exported to {} is not the current CA (rotated?); run `traffic-guardian ca export --runtime {}` again",
                        dir.display(),
                        runtime.name
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
}

/// Whether `dir` exists as a folder, or could be created: its nearest
/// existing ancestor is a writable folder.
fn creatable_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!("{} is not an absolute path", dir.display()));
    }
    let mut at = dir;
    loop {
        match fs::metadata(at) {
            Ok(meta) if meta.is_dir() => {
                if at == dir {
                    return Ok(());
                }
                return rustix::fs::access(at, rustix::fs::Access::WRITE_OK).map_err(|err| {
                    format!(
                        "{} does not exist and cannot be created: {} is not writable ({err})",
                        dir.display(),
                        at.display()
                    )
                });
            }
            Ok(_) => {
                return Err(format!(
                    "{} cannot be a folder: {} is not a folder",
                    dir.display(),
                    at.display()
                ));
            }
            Err(_) => match at.parent() {
                Some(parent) => at = parent,
                None => return Err(format!("{} cannot be created", dir.display())),
            },
        }
    }
}

/// A runtime or group name: `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// Parses a listen URL: `http://IP:PORT` (or `http://localhost:PORT`),
/// with an optional trailing `/`. Port 0 picks a free port.
pub fn parse_listen_url(url: &str) -> Result<SocketAddr, String> {
    let shown = without_userinfo(url);
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "{shown:?} must be an http:// URL such as http://127.0.0.1:10280 (clients speak plain HTTP to the proxy, also for HTTPS)"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "{shown:?} must be just http://HOST:PORT, without user, path or query"
        ));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| {
        format!("{shown:?} needs an explicit port, such as http://127.0.0.1:10280")
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{shown:?}: port {port:?} is not a number in 0..=65535"))?;
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| {
            format!("{shown:?}: listen on an IP address (such as 127.0.0.1 or 0.0.0.0), not the name {host:?}")
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses an upstream proxy URL: `http://HOST:PORT`, no credentials.
/// Returns `host:port`.
pub fn parse_upstream_url(url: &str) -> Result<String, String> {
    let shown = without_userinfo(url);
    let Some(rest) = url.strip_prefix("http://") else {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        return Err(if scheme.is_empty() {
            format!("{shown:?} must be an http:// URL such as http://127.0.0.1:10255")
        } else {
            format!(
                "{shown:?}: only http:// upstream proxies are supported, not {scheme}:// (the guardian speaks plain HTTP CONNECT to its upstream)"
            )
        });
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(
            "credentials in the upstream URL are not accepted: the client's own Proxy-Authorization is passed through (forward_proxy_authorization)".into(),
        );
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!("{shown:?} must be just http://HOST:PORT"));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| {
        format!("{shown:?} needs an explicit port, such as http://127.0.0.1:10255")
    })?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok(authority.to_owned()),
        _ => Err(format!("{shown:?}: {port:?} is not a port in 1..=65535")),
    }
}

/// `url` as an error message may show it: a `user:password@` part, which
/// may hold a credential, becomes `***@`.
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Splits `host:port` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = authority.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

/// Parses `10.0.0.0/8`, `::1/128` or a bare address.
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address or network such as 10.0.0.0/8"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
        None => max,
    };
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;
    use crate::config::{RuntimeConfig, UpstreamProxyConfig, parse};

    /// A config in a fresh temporary home, changed by `edit`.
    fn with(home: &Path, edit: impl FnOnce(&mut Config)) -> Config {
        let mut config = Config {
            home: Some(home.to_owned()),
            ..Config::default()
        };
        edit(&mut config);
        config
    }

    /// Checks that `config` has an error at `path` whose reason contains
    /// `part`, and that it is therefore invalid.
    #[track_caller]
    fn check_error(config: &Config, path: &str, part: &str) {
        let report = check_config(config);
        assert!(!report.valid, "{report:?}");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.is_error() && p.path == path && p.reason.contains(part)),
            "want error at {path} containing {part:?}, got {:#?}",
            report.problems
        );
    }

    #[test]
    fn defaults_are_valid_without_problems() {
        let tmp = tempfile::tempdir().unwrap();
        let report = check_config(&with(tmp.path(), |_| {}));
        assert!(report.valid);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn rejections() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let ipc = tmp.path().join("data/ipc");
        fs::create_dir_all(&ipc).unwrap();
        let file = tmp.path().join("a-file");
        fs::write(&file, "").unwrap();
        let h = home.as_path();

        let table: Vec<(Config, &str, &str)> = vec![
            (
                with(h, |c| c.mode = "block".into()),
                "mode",
                "blocking does not exist in this version; only detect",
            ),
            (with(h, |c| c.mode = "Detect".into()), "mode", "only detect"),
            (
                with(h, |c| c.max_scan_bytes = 4095),
                "max_scan_bytes",
                "outside",
            ),
            (
                with(h, |c| c.max_scan_bytes = MAX_SCAN_BYTES_LIMIT + 1),
                "max_scan_bytes",
                "outside",
            ),
            (
                with(h, |c| c.proxy_url = "https://127.0.0.1:1".into()),
                "proxy_url",
                "http://",
            ),
            (
                with(h, |c| c.proxy_url = "http://example.com:1".into()),
                "proxy_url",
                "IP address",
            ),
            (
                with(h, |c| {
                    c.upstream_proxy = Some(UpstreamProxyConfig {
                        url: "https://127.0.0.1:10255".into(),
                        forward_proxy_authorization: true,
                    })
                }),
                "upstream_proxy.url",
                "only http://",
            ),
            (
                with(h, |c| {
                    c.upstream_proxy = Some(UpstreamProxyConfig {
                        url: "socks5://127.0.0.1:1080".into(),
                        forward_proxy_authorization: true,
                    })
                }),
                "upstream_proxy.url",
                "not socks5://",
            ),
            (
                with(h, |c| {
                    c.upstream_proxy = Some(UpstreamProxyConfig {
                        url: "http://user:pw@127.0.0.1:10255".into(),
                        forward_proxy_authorization: true,
                    })
                }),
                "upstream_proxy.url",
                "credentials",
            ),
            (
                with(&ipc.join("main/tg"), |c| {
                    c.ipc.groups_root = Some(ipc.clone())
                }),
                "home",
                "inside ipc.groups_root",
            ),
            (
                with(h, |c| {
                    c.ipc.sessions_root = Some(ipc.clone());
                    c.log_dir = Some(ipc.join("logs"));
                }),
                "log_dir",
                "inside ipc.sessions_root",
            ),
            (
                with(h, |c| {
                    c.container_mounts = vec![tmp.path().join("data")];
                    c.ca_dir = Some(tmp.path().join("data/ca"));
                }),
                "ca_dir",
                "inside container_mounts[0]",
            ),
            (
                with(h, |c| {
                    c.runtimes = vec![RuntimeConfig {
                        name: "main".into(),
                        https_inspection: true,
                        ..RuntimeConfig::default()
                    }]
                }),
                "runtimes[0].https_inspection",
                "ca init",
            ),
            (
                with(h, |c| {
                    c.runtimes = vec![RuntimeConfig {
                        name: "bad name".into(),
                        ..RuntimeConfig::default()
                    }]
                }),
                "runtimes[0].name",
                "not a valid name",
            ),
            (
                with(h, |c| {
                    c.runtimes = vec![
                        RuntimeConfig {
                            name: "a".into(),
                            proxy_users: vec!["u".into()],
                            ..RuntimeConfig::default()
                        },
                        RuntimeConfig {
                            name: "a".into(),
                            proxy_users: vec!["u".into()],
                            ..RuntimeConfig::default()
                        },
                    ]
                }),
                "runtimes[1].name",
                "configured twice",
            ),
            (
                with(h, |c| {
                    c.runtimes = vec![RuntimeConfig {
                        name: "a".into(),
                        source_cidrs: vec!["10.0.0.0/40".into()],
                        ..RuntimeConfig::default()
                    }]
                }),
                "runtimes[0].source_cidrs[0]",
                "prefix length",
            ),
            (
                with(h, |c| {
                    c.runtimes = vec![RuntimeConfig {
                        name: "a".into(),
                        listen: Some("http://127.0.0.1:10280".into()),
                        ..RuntimeConfig::default()
                    }]
                }),
                "runtimes[0].listen",
                "same address as proxy_url",
            ),
            (
                with(h, |c| c.allowed_clients = vec!["everyone".into()]),
                "allowed_clients[0]",
                "not an IP address",
            ),
            (
                with(h, |c| {
                    c.upstream_ca_files = vec![tmp.path().join("none.pem")]
                }),
                "upstream_ca_files[0]",
                "none.pem",
            ),
            (
                with(h, |c| c.ipc.groups_root = Some(PathBuf::from("data/ipc"))),
                "ipc.groups_root",
                "not an absolute path",
            ),
            (
                with(h, |c| c.home = Some(PathBuf::from("relative"))),
                "home",
                "not an absolute path",
            ),
            (
                with(h, |c| c.passthrough_hosts = vec!["https://x.com".into()]),
                "passthrough_hosts[0]",
                "not a host name",
            ),
            (
                with(h, |c| c.findings.keep_files = 0),
                "findings.keep_files",
                "at least 1",
            ),
            (
                with(h, |c| c.log_dir = Some(file.join("logs"))),
                "log_dir",
                "is not a folder",
            ),
            (with(&file, |_| {}), "home", "cannot be a folder"),
            (
                with(&tmp.path().join("h".repeat(120)), |_| {}),
                "home",
                "over the",
            ),
        ];
        for (config, path, part) in &table {
            check_error(config, path, part);
        }
    }

    #[test]
    fn ipc_root_must_exist_or_be_creatable() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        let config = with(&tmp.path().join("home"), |c| {
            c.ipc.groups_root = Some(file.join("ipc"))
        });
        check_error(&config, "ipc.groups_root", "is not a folder");
        let ok = with(&tmp.path().join("home"), |c| {
            c.ipc.groups_root = Some(tmp.path().join("new/ipc"))
        });
        assert!(check_config(&ok).valid);
    }

    #[test]
    fn url_errors_never_show_credentials() {
        for url in [
            "socks5://user:hunter2@127.0.0.1:1080",
            "https://user:hunter2@127.0.0.1:1",
            "hunter2@127.0.0.1",
        ] {
            let listen = parse_listen_url(url).unwrap_err();
            let upstream = parse_upstream_url(url).unwrap_err();
            for err in [listen, upstream] {
                assert!(!err.contains("hunter2"), "{url}: {err}");
            }
        }
        assert!(
            parse_upstream_url("socks5://u:p@h:1")
                .unwrap_err()
                .contains("socks5://***@h:1")
        );
    }

    #[test]
    fn the_config_must_be_an_object() {
        for text in [
            "[]",
            r#"["detect", null, "http://0.0.0.0:1"]"#,
            "7",
            "\"x\"",
        ] {
            let problem = parse(text).unwrap_err();
            assert!(
                problem.reason.contains("one JSON object"),
                "{text}: {problem}"
            );
        }
        assert!(parse(" \n{}").is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let problem =
            parse(r#"{"runtimes": [{"name": "main", "https_inspect": true}]}"#).unwrap_err();
        assert_eq!(problem.path, "runtimes[0].https_inspect");
        assert!(problem.reason.contains("unknown field `https_inspect`"));
    }

    #[test]
    fn a_group_readable_ca_key_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let config = with(tmp.path(), |_| {});
        let paths = StatePaths::with_home(tmp.path().to_owned(), &config);
        crate::ca::init(&paths, false).unwrap();
        assert!(check_config(&config).valid);
        fs::set_permissions(paths.ca_key(), fs::Permissions::from_mode(0o640)).unwrap();
        check_error(&config, "ca_dir", "readable by group or others");
    }

    #[test]
    fn inspection_needs_an_exported_current_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let config = with(tmp.path(), |c| {
            c.runtimes = vec![RuntimeConfig {
                name: "main".into(),
                proxy_users: vec!["main".into()],
                https_inspection: true,
                ..RuntimeConfig::default()
            }]
        });
        let paths = StatePaths::with_home(tmp.path().to_owned(), &config);
        crate::ca::init(&paths, false).unwrap();
        check_error(
            &config,
            "runtimes[0].https_inspection",
            "without trust configuration",
        );
        let roots = crate::ca::tests::fake_roots();
        crate::ca::export(&paths, &config.trust_dir(&paths, "main"), &roots).unwrap();
        let report = check_config(&config);
        assert!(report.valid, "{:?}", report.problems);
        crate::ca::init(&paths, true).unwrap();
        check_error(
            &config,
            "runtimes[0].https_inspection",
            "not the current CA",
        );
    }

    #[test]
    fn warns_about_a_non_loopback_bind() {
        let tmp = tempfile::tempdir().unwrap();
        let config = with(tmp.path(), |c| c.proxy_url = "http://0.0.0.0:10280".into());
        let report = check_config(&config);
        assert!(report.valid);
        assert!(
            report
                .problems
                .iter()
                .any(|p| !p.is_error() && p.path == "proxy_url" && p.reason.contains("firewall")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn listen_urls() {
        let ok = |url: &str| parse_listen_url(url).unwrap().to_string();
        assert_eq!(ok("http://127.0.0.1:10280"), "127.0.0.1:10280");
        assert_eq!(ok("http://localhost:0/"), "127.0.0.1:0");
        assert_eq!(ok("http://[::1]:8080"), "[::1]:8080");
        assert_eq!(ok("http://0.0.0.0:1"), "0.0.0.0:1");
        for bad in [
            "127.0.0.1:1",
            "http://127.0.0.1",
            "http://127.0.0.1:x",
            "http://u@127.0.0.1:1",
            "http://127.0.0.1:1/path",
            "http://::1:80",
        ] {
            assert!(parse_listen_url(bad).is_err(), "{bad}");
        }
    }
}
