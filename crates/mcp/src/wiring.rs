//! The container's own view of its wiring: are the proxy variables set to
//! the guardian, and is the guardian's CA where the environment says, with
//! the fingerprint the host reports? Lets an agent check that it is actually
//! protected.
//!
//! Nothing here reaches the network. Values reported back are redacted: the
//! user-info part of proxy URLs (which may carry proxy credentials) is
//! replaced by `***`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use traffic_guardian_ipc::CheckConfigData;

/// The guardian's proxy URL as the container should use it.
pub const ENV_PROXY_URL: &str = "NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL";

/// Where the CA bundle holding the guardian's CA is mounted.
pub const ENV_CA_BUNDLE: &str = "NANOCLAW_TRAFFIC_GUARDIAN_CA_BUNDLE";

/// Proxy variables, per scheme, upper case first.
pub const PROXY_VARS: [(&str, [&str; 2]); 2] = [
    ("http", ["HTTP_PROXY", "http_proxy"]),
    ("https", ["HTTPS_PROXY", "https_proxy"]),
];

/// Variables that bypass the proxy for some hosts.
pub const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Variables that make a TLS client trust a CA file, with whether missing
/// it breaks the agent itself (Node) or only some tools.
pub const CA_VARS: [(&str, bool); 6] = [
    ("NODE_EXTRA_CA_CERTS", true),
    ("SSL_CERT_FILE", false),
    ("REQUESTS_CA_BUNDLE", false),
    ("CURL_CA_BUNDLE", false),
    ("GIT_SSL_CAINFO", false),
    ("DENO_CERT", false),
];

/// Node's switch for honouring proxy variables in `fetch`.
pub const ENV_NODE_USE_ENV_PROXY: &str = "NODE_USE_ENV_PROXY";

/// The largest CA file read.
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A snapshot of the environment variables the checks read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The relevant variables of this process.
    pub fn from_process() -> Environment {
        Environment::from_pairs(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// The relevant variables among `pairs`; others are dropped.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        let wanted = |name: &str| {
            name == ENV_PROXY_URL
                || name == ENV_CA_BUNDLE
                || name == ENV_NODE_USE_ENV_PROXY
                || PROXY_VARS.iter().any(|(_, names)| names.contains(&name))
                || NO_PROXY_VARS.contains(&name)
                || CA_VARS.iter().any(|(n, _)| *n == name)
        };
        Environment {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(k, _)| wanted(k))
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// The container's wiring, as `clawsec_traffic_check_config` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WiringReport {
    /// Whether traffic is routed through the guardian.
    pub proxy: ProxyWiring,
    /// Whether the guardian's CA is trusted where inspection needs it.
    pub ca: CaWiring,
    /// What is wrong, worst first.
    pub problems: Vec<WiringProblem>,
}

impl WiringReport {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.level == Level::Error)
    }
}

/// Proxy variables and what they should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyWiring {
    /// The guardian URL the variables should name (credentials redacted).
    pub expected_url: Option<String>,
    /// Where `expected_url` came from: the environment variable or the host.
    pub expected_from: Option<&'static str>,
    /// Each proxy variable.
    pub variables: Vec<VariableCheck>,
    /// `NO_PROXY` / `no_proxy`, as set.
    pub no_proxy: Option<String>,
    /// Whether `NODE_USE_ENV_PROXY=1`.
    pub node_use_env_proxy: bool,
}

/// One proxy variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariableCheck {
    /// Its name.
    pub name: &'static str,
    /// Its value (credentials redacted), if set.
    pub value: Option<String>,
    /// Whether it names the guardian; `null` when it is unset or the
    /// guardian URL is unknown.
    pub matches_guardian: Option<bool>,
}

/// The CA bundle and the variables that should point at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaWiring {
    /// Whether the host inspects this runtime's HTTPS (it reported a CA
    /// fingerprint); `null` when the host could not be asked.
    pub https_inspection: Option<bool>,
    /// The host's CA fingerprint (SHA-256 of the DER certificate).
    pub expected_fingerprint: Option<String>,
    /// `NANOCLAW_TRAFFIC_GUARDIAN_CA_BUNDLE`, if set.
    pub bundle_path: Option<String>,
    /// What was found at `bundle_path`.
    pub bundle: Option<CaFileCheck>,
    /// Each CA variable.
    pub variables: Vec<CaVariableCheck>,
}

/// A CA file as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaFileCheck {
    /// Whether it could be read.
    pub readable: bool,
    /// PEM certificates in it.
    pub certificates: usize,
    /// Whether one of them is the guardian's CA; `null` when the expected
    /// fingerprint is unknown or the file unreadable.
    pub contains_guardian_ca: Option<bool>,
    /// Why it could not be read, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One CA variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaVariableCheck {
    /// Its name.
    pub name: &'static str,
    /// Its value, if set.
    pub value: Option<String>,
    /// Whether it names the bundle file.
    pub points_at_bundle: bool,
    /// Whether the file it names holds the guardian's CA; `null` when unset
    /// or unknown.
    pub contains_guardian_ca: Option<bool>,
}

/// How bad a wiring problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Traffic is not (fully) protected.
    Error,
    /// Something is off or cannot be verified.
    Warning,
}

/// One wiring problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WiringProblem {
    /// How bad.
    pub level: Level,
    /// What is wrong and what to do.
    pub message: String,
}

/// Checks the wiring in `env` against what the host reported (`None` when
/// the host could not be asked).
pub fn inspect(env: &Environment, host: Option<&CheckConfigData>) -> WiringReport {
    inspect_with(env, host, &read_ca_file)
}

/// [`inspect`] with a custom file reader, for tests.
pub fn inspect_with(
    env: &Environment,
    host: Option<&CheckConfigData>,
    read: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
) -> WiringReport {
    let mut problems = Vec::new();
    let proxy = check_proxy(env, host, &mut problems);
    let ca = check_ca(env, host, read, &mut problems);
    problems.sort_by_key(|p| p.level);
    WiringReport {
        proxy,
        ca,
        problems,
    }
}

fn problem(problems: &mut Vec<WiringProblem>, level: Level, message: String) {
    problems.push(WiringProblem { level, message });
}

fn check_proxy(
    env: &Environment,
    host: Option<&CheckConfigData>,
    problems: &mut Vec<WiringProblem>,
) -> ProxyWiring {
    let (expected, expected_from) = match env.get(ENV_PROXY_URL) {
        Some(url) => (Some(url.to_owned()), Some(ENV_PROXY_URL)),
        None => match host.and_then(|h| h.proxy_url.clone()) {
            Some(url) => (Some(url), Some("host")),
            None => (None, None),
        },
    };
    let expected_parsed = expected.as_deref().and_then(ProxyUrl::parse);
    if expected.is_some() && expected_parsed.is_none() {
        problem(
            problems,
            Level::Warning,
            format!(
                "the guardian URL {} is not a proxy URL this check understands",
                redact_url(expected.as_deref().unwrap_or_default())
            ),
        );
    }
    let mut variables = Vec::new();
    for (scheme, names) in PROXY_VARS {
        let mut set_values = Vec::new();
        for name in names {
            let value = env.get(name);
            let matches = match (value, &expected_parsed) {
                (Some(value), Some(expected)) => {
                    Some(ProxyUrl::parse(value).is_some_and(|v| v.same_endpoint(expected)))
                }
                _ => None,
            };
            if matches == Some(false) {
                problem(
                    problems,
                    Level::Error,
                    format!(
                        "{name} is {}, not the guardian ({}): {scheme} traffic from tools that read \
                         {name} bypasses it",
                        redact_url(value.unwrap_or_default()),
                        redact_url(expected.as_deref().unwrap_or_default())
                    ),
                );
            }
            if let Some(value) = value {
                set_values.push(value);
            }
            variables.push(VariableCheck {
                name,
                value: value.map(redact_url),
                matches_guardian: matches,
            });
        }
        if set_values.is_empty() {
            problem(
                problems,
                Level::Error,
                format!(
                    "neither {} nor {} is set: {scheme} traffic does not go through the guardian",
                    names[0], names[1]
                ),
            );
        } else if expected_parsed.is_none() {
            problem(
                problems,
                Level::Warning,
                format!(
                    "cannot tell whether {} names the guardian: {ENV_PROXY_URL} is not set and the \
                     host named no proxy URL",
                    names[0]
                ),
            );
        }
    }

    let no_proxy = NO_PROXY_VARS.iter().find_map(|name| env.get(name));
    if let Some(list) = no_proxy
        && list.split(',').any(|entry| entry.trim() == "*")
    {
        problem(
            problems,
            Level::Error,
            "NO_PROXY contains *: every host bypasses the guardian".into(),
        );
    }
    let node_use_env_proxy = env.get(ENV_NODE_USE_ENV_PROXY) == Some("1");
    if !node_use_env_proxy {
        problem(
            problems,
            Level::Warning,
            format!(
                "{ENV_NODE_USE_ENV_PROXY} is not 1: Node's built-in fetch ignores the proxy \
                 variables without it"
            ),
        );
    }
    ProxyWiring {
        expected_url: expected.as_deref().map(redact_url),
        expected_from,
        variables,
        no_proxy: no_proxy.map(str::to_owned),
        node_use_env_proxy,
    }
}

fn check_ca(
    env: &Environment,
    host: Option<&CheckConfigData>,
    read: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
    problems: &mut Vec<WiringProblem>,
) -> CaWiring {
    let expected = host
        .and_then(|h| h.ca_fingerprint.as_deref())
        .and_then(normalize_fingerprint);
    if let Some(raw) = host.and_then(|h| h.ca_fingerprint.as_deref())
        && expected.is_none()
    {
        problem(
            problems,
            Level::Warning,
            format!(
                "the host's CA fingerprint {raw:?} is not a SHA-256 fingerprint; cannot compare"
            ),
        );
    }
    let https_inspection = host.map(|h| h.ca_fingerprint.is_some());
    let mut cache: HashMap<PathBuf, CaFileCheck> = HashMap::new();
    let mut check_file = |path: &Path| -> CaFileCheck {
        cache
            .entry(path.to_path_buf())
            .or_insert_with(|| examine(path, expected.as_deref(), read))
            .clone()
    };

    let bundle_path = env.get(ENV_CA_BUNDLE).map(PathBuf::from);
    let bundle = bundle_path.as_deref().map(&mut check_file);
    let inspected = https_inspection == Some(true);
    match (&bundle_path, &bundle) {
        (None, _) if inspected => problem(
            problems,
            Level::Error,
            format!(
                "HTTPS inspection is on for this runtime but {ENV_CA_BUNDLE} is not set, so the \
                 guardian's CA cannot be checked"
            ),
        ),
        (Some(path), Some(found)) => {
            if !found.readable {
                problem(
                    problems,
                    if inspected {
                        Level::Error
                    } else {
                        Level::Warning
                    },
                    format!(
                        "the CA bundle {} cannot be read: {}",
                        path.display(),
                        found.error.as_deref().unwrap_or("unknown error")
                    ),
                );
            } else if found.certificates == 0 {
                problem(
                    problems,
                    if inspected {
                        Level::Error
                    } else {
                        Level::Warning
                    },
                    format!("the CA bundle {} holds no PEM certificate", path.display()),
                );
            } else if found.contains_guardian_ca == Some(false) {
                problem(
                    problems,
                    Level::Error,
                    format!(
                        "the CA bundle {} does not hold the guardian's CA (no certificate has the \
                         host's fingerprint): it is stale or the wrong file",
                        path.display()
                    ),
                );
            }
        }
        _ => {}
    }

    let mut variables = Vec::new();
    for (name, essential) in CA_VARS {
        let value = env.get(name);
        let path = value.map(PathBuf::from);
        let points_at_bundle = match (&path, &bundle_path) {
            (Some(path), Some(bundle)) => same_file(path, bundle),
            _ => false,
        };
        let contains = match &path {
            Some(path) if expected.is_some() => check_file(path).contains_guardian_ca,
            _ => None,
        };
        if inspected {
            match (value, contains) {
                (None, _) => problem(
                    problems,
                    if essential {
                        Level::Error
                    } else {
                        Level::Warning
                    },
                    format!(
                        "{name} is not set: {} will not trust the guardian's CA, so inspected \
                         HTTPS fails certificate checks",
                        if essential {
                            "Node (the agent)"
                        } else {
                            "tools that read it"
                        }
                    ),
                ),
                (Some(value), Some(false)) => problem(
                    problems,
                    Level::Error,
                    format!("{name}={value} does not hold the guardian's CA"),
                ),
                _ => {}
            }
        }
        variables.push(CaVariableCheck {
            name,
            value: value.map(str::to_owned),
            points_at_bundle,
            contains_guardian_ca: contains,
        });
    }
    if host.is_some() && !inspected {
        problem(
            problems,
            Level::Warning,
            "HTTPS inspection is off for this runtime: HTTPS is logged as CONNECT metadata only, \
             not scanned"
                .into(),
        );
    }
    CaWiring {
        https_inspection,
        expected_fingerprint: expected,
        bundle_path: bundle_path.map(|p| p.display().to_string()),
        bundle,
        variables,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

fn examine(
    path: &Path,
    expected: Option<&str>,
    read: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
) -> CaFileCheck {
    match read(path) {
        Ok(bytes) => {
            let fingerprints = pem_fingerprints(&bytes);
            CaFileCheck {
                readable: true,
                certificates: fingerprints.len(),
                contains_guardian_ca: expected.map(|e| fingerprints.iter().any(|f| f == e)),
                error: None,
            }
        }
        Err(error) => CaFileCheck {
            readable: false,
            certificates: 0,
            contains_guardian_ca: None,
            error: Some(error),
        },
    }
}

/// Reads a CA file, at most 4 MiB.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|err| err.to_string())?;
    let meta = file.metadata().map_err(|err| err.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| err.to_string())?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(format!("larger than {MAX_CA_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

/// SHA-256 fingerprints (64 lowercase hex digits) of the DER of every PEM
/// `CERTIFICATE` block in `pem`. Blocks that do not decode are skipped.
pub fn pem_fingerprints(pem: &[u8]) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut found = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == BEGIN {
            body = Some(String::new());
        } else if line == END {
            if let Some(b64) = body.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64.as_bytes())
                && !der.is_empty()
            {
                found.push(hex(&Sha256::digest(&der)));
            }
        } else if let Some(b64) = body.as_mut() {
            b64.extend(line.chars().filter(|c| !c.is_whitespace()));
        }
    }
    found
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fingerprint as 64 lowercase hex digits, from `AB:CD:…`, `abcd…` or
/// `sha256:…`; `None` if it is not a SHA-256 fingerprint.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let text = text.trim();
    let text = match text.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &text[7..],
        _ => text,
    };
    let hex: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// The parts of a proxy URL that decide where traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProxyUrl {
    scheme: String,
    host: String,
    port: u16,
}

impl ProxyUrl {
    /// Parses `scheme://[user@]host[:port][/…]`; a missing scheme means
    /// `http`, as curl and most tools assume.
    fn parse(text: &str) -> Option<ProxyUrl> {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_owned(), text),
        };
        let authority = rest.split(['/', '?', '#']).next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(port) => port.parse().ok()?,
            None => match scheme.as_str() {
                "http" => 80,
                "https" => 443,
                _ => return None,
            },
        };
        Some(ProxyUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn same_endpoint(&self, other: &ProxyUrl) -> bool {
        self == other
    }
}

/// `url` with any user-info replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (prefix, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{prefix}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use traffic_guardian_ipc::CheckConfigData;

    use super::*;

    /// Stand-ins for certificate DER: the fingerprint check hashes the
    /// bytes between the PEM markers and never parses them as X.509.
    const DER_A: &[u8] = b"guardian-ca-der-bytes-for-tests";
    const DER_B: &[u8] = b"some-system-root-der-bytes";

    fn pem(ders: &[&[u8]]) -> Vec<u8> {
        let mut out = String::new();
        for der in ders {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            out.push_str("-----BEGIN CERTIFICATE-----\n");
            for chunk in b64.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(chunk).unwrap());
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
        }
        out.into_bytes()
    }

    fn fp(der: &[u8]) -> String {
        hex(&Sha256::digest(der))
    }

    fn host(ca: Option<&[u8]>) -> CheckConfigData {
        CheckConfigData {
            valid: true,
            problems: vec![],
            proxy_url: Some("http://host.docker.internal:3129".into()),
            ca_fingerprint: ca.map(fp),
        }
    }

    const GOOD_PROXY: &str = "http://runtime-a:s3cr3t-pass@host.docker.internal:3129";

    fn good_env() -> Vec<(&'static str, &'static str)> {
        vec![
            (ENV_PROXY_URL, "http://host.docker.internal:3129"),
            ("HTTP_PROXY", GOOD_PROXY),
            ("http_proxy", GOOD_PROXY),
            ("HTTPS_PROXY", GOOD_PROXY),
            ("https_proxy", GOOD_PROXY),
            ("NODE_USE_ENV_PROXY", "1"),
            (ENV_CA_BUNDLE, "/guardian/ca-bundle.pem"),
            ("NODE_EXTRA_CA_CERTS", "/guardian/ca.pem"),
            ("SSL_CERT_FILE", "/guardian/ca-bundle.pem"),
            ("REQUESTS_CA_BUNDLE", "/guardian/ca-bundle.pem"),
            ("CURL_CA_BUNDLE", "/guardian/ca-bundle.pem"),
            ("GIT_SSL_CAINFO", "/guardian/ca-bundle.pem"),
            ("DENO_CERT", "/guardian/ca-bundle.pem"),
            ("UNRELATED", "ignored"),
        ]
    }

    fn files(path: &Path) -> Result<Vec<u8>, String> {
        match path.to_str() {
            Some("/guardian/ca-bundle.pem") => Ok(pem(&[DER_B, DER_A])),
            Some("/guardian/ca.pem") => Ok(pem(&[DER_A])),
            Some("/guardian/stale.pem") => Ok(pem(&[DER_B])),
            _ => Err("No such file or directory".into()),
        }
    }

    fn run(env: &[(&str, &str)], host: Option<&CheckConfigData>) -> WiringReport {
        let env = Environment::from_pairs(env.iter().map(|(k, v)| (*k, *v)));
        inspect_with(&env, host, &files)
    }

    fn messages(report: &WiringReport) -> Vec<String> {
        report
            .problems
            .iter()
            .map(|p| format!("{:?}: {}", p.level, p.message))
            .collect()
    }

    #[test]
    fn a_fully_wired_container_has_no_problems() {
        let report = run(&good_env(), Some(&host(Some(DER_A))));
        assert!(report.problems.is_empty(), "{:#?}", messages(&report));
        assert_eq!(report.ca.https_inspection, Some(true));
        let bundle = report.ca.bundle.clone().unwrap();
        assert_eq!(
            (bundle.certificates, bundle.contains_guardian_ca),
            (2, Some(true))
        );
        assert!(
            report
                .ca
                .variables
                .iter()
                .all(|v| v.contains_guardian_ca == Some(true))
        );
        assert!(
            report
                .proxy
                .variables
                .iter()
                .all(|v| v.matches_guardian == Some(true))
        );
        // Proxy credentials never appear in the report.
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("s3cr3t"), "{json}");
        assert!(
            json.contains("http://***@host.docker.internal:3129"),
            "{json}"
        );
    }

    #[track_caller]
    fn check(
        change: &[(&'static str, Option<&'static str>)],
        host: Option<&CheckConfigData>,
        expected: &[&str],
    ) {
        let mut env = good_env();
        for (name, value) in change {
            env.retain(|(n, _)| n != name);
            if let Some(value) = value {
                env.push((name, value));
            }
        }
        let report = run(&env, host);
        let got = messages(&report);
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (got, want) in got.iter().zip(expected) {
            assert!(got.contains(want), "{got:?} lacks {want:?}\nall: {got:#?}");
        }
    }

    #[test]
    fn each_wiring_fault_is_named() {
        let inspected = host(Some(DER_A));
        let plain = host(None);
        check(
            &[("HTTPS_PROXY", None), ("https_proxy", None)],
            Some(&inspected),
            &["Error: neither HTTPS_PROXY nor https_proxy is set"],
        );
        check(
            &[("https_proxy", Some("http://evil.example:8080"))],
            Some(&inspected),
            &["Error: https_proxy is http://evil.example:8080, not the guardian"],
        );
        check(
            &[("HTTP_PROXY", Some("http://host.docker.internal:3130"))],
            Some(&inspected),
            &["Error: HTTP_PROXY is"],
        );
        check(
            &[("NO_PROXY", Some("localhost, *"))],
            Some(&inspected),
            &["Error: NO_PROXY contains *"],
        );
        check(
            &[("NODE_USE_ENV_PROXY", None)],
            Some(&inspected),
            &["Warning: NODE_USE_ENV_PROXY is not 1"],
        );
        check(
            &[(ENV_CA_BUNDLE, Some("/guardian/stale.pem"))],
            Some(&inspected),
            &["Error: the CA bundle /guardian/stale.pem does not hold the guardian's CA"],
        );
        check(
            &[(ENV_CA_BUNDLE, Some("/missing.pem"))],
            Some(&inspected),
            &["Error: the CA bundle /missing.pem cannot be read: No such file"],
        );
        check(
            &[(ENV_CA_BUNDLE, None)],
            Some(&inspected),
            &[
                "Error: HTTPS inspection is on for this runtime but NANOCLAW_TRAFFIC_GUARDIAN_CA_BUNDLE is not set",
            ],
        );
        check(
            &[("NODE_EXTRA_CA_CERTS", None)],
            Some(&inspected),
            &["Error: NODE_EXTRA_CA_CERTS is not set: Node (the agent)"],
        );
        check(
            &[("SSL_CERT_FILE", Some("/guardian/stale.pem"))],
            Some(&inspected),
            &["Error: SSL_CERT_FILE=/guardian/stale.pem does not hold the guardian's CA"],
        );
        check(
            &[("CURL_CA_BUNDLE", None)],
            Some(&inspected),
            &["Warning: CURL_CA_BUNDLE is not set"],
        );
        // Without inspection the CA does not matter, but the runtime is told.
        check(
            &[(ENV_CA_BUNDLE, None), ("NODE_EXTRA_CA_CERTS", None)],
            Some(&plain),
            &["Warning: HTTPS inspection is off"],
        );
        // Without a guardian URL anywhere, the proxy cannot be verified.
        let mut nowhere = plain.clone();
        nowhere.proxy_url = None;
        check(
            &[(ENV_PROXY_URL, None)],
            Some(&nowhere),
            &[
                "Warning: cannot tell whether HTTP_PROXY",
                "Warning: cannot tell whether HTTPS_PROXY",
                "Warning: HTTPS inspection is off",
            ],
        );
        // Falling back to the host's URL still verifies.
        check(&[(ENV_PROXY_URL, None)], Some(&inspected), &[]);
        // Host unreachable: only local facts.
        check(&[], None, &[]);
    }

    #[test]
    fn proxy_urls_compare_by_endpoint() {
        let same = |a: &str, b: &str| {
            ProxyUrl::parse(a)
                .zip(ProxyUrl::parse(b))
                .is_some_and(|(a, b)| a.same_endpoint(&b))
        };
        assert!(same("http://h:3129", "HTTP://H:3129/"));
        assert!(same("http://u:p@h:3129", "http://h:3129"));
        assert!(same("h:3129", "http://h:3129"));
        assert!(same("http://h", "http://h:80"));
        assert!(same("http://[::1]:3129", "http://[::1]:3129"));
        assert!(!same("http://h:3129", "http://h:3130"));
        assert!(!same("https://h:3129", "http://h:3129"));
        assert!(!same("http://h:3129", "http://other:3129"));
        assert!(ProxyUrl::parse("http://:3129").is_none());
        assert!(ProxyUrl::parse("http://h:port").is_none());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("http://u:p@h:1"), "http://***@h:1");
        assert_eq!(redact_url("u:p@h:1"), "***@h:1");
        assert_eq!(redact_url("http://h:1/a@b"), "http://h:1/a@b");
        assert_eq!(redact_url("http://h:1"), "http://h:1");
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// Proxy credentials never survive redaction, whatever the URL
            /// looks like around them.
            #[test]
            fn redacted_urls_hold_no_credentials(
                scheme in prop_oneof![Just(""), Just("http://"), Just("https://")],
                user in "[A-Za-z0-9._-]{0,12}",
                password in "[A-Za-z0-9]{12,24}",
                host in "[a-z0-9.-]{1,20}",
                rest in prop_oneof![Just(""), Just(":3129"), Just(":3129/"), Just(":1/p?q=1")],
            ) {
                let url = format!("{scheme}{user}:{password}@{host}{rest}");
                let shown = redact_url(&url);
                prop_assert!(!shown.contains(&password), "{shown}");
                prop_assert!(shown.contains(&host));
            }

            #[test]
            fn pem_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                let mut pemish = b"-----BEGIN CERTIFICATE-----\n".to_vec();
                pemish.extend(&bytes);
                pemish.extend(b"\n-----END CERTIFICATE-----\n");
                let _ = pem_fingerprints(&bytes);
                let _ = pem_fingerprints(&pemish);
            }
        }
    }

    #[test]
    fn fingerprints_normalise() {
        let hex64 = "ab".repeat(32);
        let colons = hex64
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            normalize_fingerprint(&hex64).as_deref(),
            Some(hex64.as_str())
        );
        assert_eq!(
            normalize_fingerprint(&colons).as_deref(),
            Some(hex64.as_str())
        );
        assert_eq!(
            normalize_fingerprint(&format!("SHA256:{hex64}")).as_deref(),
            Some(hex64.as_str())
        );
        assert_eq!(normalize_fingerprint("abcd"), None);
        assert_eq!(normalize_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn pem_parsing_finds_every_certificate_and_skips_garbage() {
        let mut bytes = b"# comment\n".to_vec();
        bytes.extend(pem(&[DER_A]));
        bytes.extend(b"-----BEGIN CERTIFICATE-----\n!!!notbase64!!!\n-----END CERTIFICATE-----\n");
        bytes.extend(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        bytes.extend(pem(&[DER_B]));
        assert_eq!(pem_fingerprints(&bytes), [fp(DER_A), fp(DER_B)]);
        assert!(pem_fingerprints(b"").is_empty());
        assert!(pem_fingerprints(&[0xff, 0xfe, 0x00]).is_empty());
    }
}
