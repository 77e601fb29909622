//! `NANOCLAW_TRAFFIC_GUARDIAN_*` variables: a snapshot of the environment and how each variable overrides its field.
//!
//! An empty variable counts as unset. A malformed value is a [`Problem`]
//! whose path is the variable's name; the field keeps its value from the
//! file or the defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use traffic_guardian_core::{MAX_SCAN_BYTES_LIMIT, MIN_SCAN_BYTES, Redaction};

use super::{Config, MODE_DETECT, Problem};

/// The prefix of every guardian variable.
pub const PREFIX: &str = "NANOCLAW_TRAFFIC_GUARDIAN_";
/// The state folder.
pub const HOME: &str = "NANOCLAW_TRAFFIC_GUARDIAN_HOME";
/// The config file.
pub const CONFIG: &str = "NANOCLAW_TRAFFIC_GUARDIAN_CONFIG";
/// The mode; only `detect`.
pub const MODE: &str = "NANOCLAW_TRAFFIC_GUARDIAN_MODE";
/// The default runtime's listen URL.
pub const PROXY_URL: &str = "NANOCLAW_TRAFFIC_GUARDIAN_PROXY_URL";
/// The exported (host) or mounted (container) combined CA bundle.
pub const CA_BUNDLE: &str = "NANOCLAW_TRAFFIC_GUARDIAN_CA_BUNDLE";
/// The findings log folder.
pub const LOG_DIR: &str = "NANOCLAW_TRAFFIC_GUARDIAN_LOG_DIR";
/// The per-message scan bound.
pub const MAX_SCAN_BYTES: &str = "NANOCLAW_TRAFFIC_GUARDIAN_MAX_SCAN_BYTES";
/// Snippet context: `full` or `partial`.
pub const REDACT_SNIPPETS: &str = "NANOCLAW_TRAFFIC_GUARDIAN_REDACT_SNIPPETS";

/// Every variable the host reads, in documentation order.
pub const ALL: [&str; 8] = [
    HOME,
    CONFIG,
    MODE,
    PROXY_URL,
    CA_BUNDLE,
    LOG_DIR,
    MAX_SCAN_BYTES,
    REDACT_SNIPPETS,
];

/// Variables only `traffic-guardian-mcp` reads, inside containers. The
/// host ignores them without a warning: a shared environment file may set
/// them.
pub const CONTAINER_ONLY: [&str; 2] = [
    "NANOCLAW_TRAFFIC_GUARDIAN_IPC_DIR",
    "NANOCLAW_TRAFFIC_GUARDIAN_IPC_TIMEOUT_MS",
];

/// A snapshot of the variables the host reads: every
/// `NANOCLAW_TRAFFIC_GUARDIAN_*` plus `HOME` and `XDG_DATA_HOME`. Tests
/// build one from pairs instead of touching the process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
    /// Guardian variables whose value is not UTF-8.
    not_utf8: Vec<String>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Env {
        let mut env = Env::default();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with(PREFIX) || name == "HOME" || name == "XDG_DATA_HOME") {
                continue;
            }
            match value.into_string() {
                Ok(value) => {
                    env.vars.insert(name.to_owned(), value);
                }
                Err(_) => env.not_utf8.push(name.to_owned()),
            }
        }
        env
    }

    /// An environment with exactly these variables.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            not_utf8: Vec::new(),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The value of `name` if set and not empty.
    fn value(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// Applies every set variable to `config`, collecting problems.
pub(super) fn apply(env: &Env, config: &mut Config, problems: &mut Vec<Problem>) {
    for name in &env.not_utf8 {
        problems.push(Problem::error(name.clone(), "value is not valid UTF-8"));
    }
    for name in env.vars.keys() {
        if name.starts_with(PREFIX)
            && !ALL.contains(&name.as_str())
            && !CONTAINER_ONLY.contains(&name.as_str())
        {
            problems.push(Problem::warning(
                name.clone(),
                format!(
                    "unknown variable, ignored; the host reads {}",
                    ALL.join(", ")
                ),
            ));
        }
    }
    if let Some(home) = env.value(HOME) {
        config.home = Some(PathBuf::from(home));
    }
    if let Some(mode) = env.value(MODE) {
        if mode == MODE_DETECT {
            config.mode = mode.to_owned();
        } else {
            problems.push(Problem::error(MODE, mode_reason(mode)));
        }
    }
    if let Some(url) = env.value(PROXY_URL) {
        match super::validate::parse_listen_url(url) {
            Ok(_) => config.proxy_url = url.to_owned(),
            Err(reason) => problems.push(Problem::error(PROXY_URL, reason)),
        }
    }
    if let Some(bundle) = env.value(CA_BUNDLE) {
        config.ca_bundle = Some(PathBuf::from(bundle));
    }
    if let Some(dir) = env.value(LOG_DIR) {
        config.log_dir = Some(PathBuf::from(dir));
    }
    if let Some(bytes) = env.value(MAX_SCAN_BYTES) {
        match bytes.trim().parse::<usize>() {
            Ok(n) if (MIN_SCAN_BYTES..=MAX_SCAN_BYTES_LIMIT).contains(&n) => {
                config.max_scan_bytes = n;
            }
            Ok(n) => problems.push(Problem::error(MAX_SCAN_BYTES, scan_bound_reason(n))),
            Err(_) => problems.push(Problem::error(
                MAX_SCAN_BYTES,
                format!("{bytes:?} is not a whole number of bytes"),
            )),
        }
    }
    if let Some(redact) = env.value(REDACT_SNIPPETS) {
        match redact.parse::<Redaction>() {
            Ok(r) => config.redact_snippets = r,
            Err(reason) => problems.push(Problem::error(REDACT_SNIPPETS, reason)),
        }
    }
}

/// Why a mode other than `detect` is refused.
pub(super) fn mode_reason(mode: &str) -> String {
    format!("mode {mode:?} is not supported: blocking does not exist in this version; only detect")
}

/// Why a scan bound is refused.
pub(super) fn scan_bound_reason(n: usize) -> String {
    format!("{n} is outside {MIN_SCAN_BYTES}..={MAX_SCAN_BYTES_LIMIT} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `pairs` over the defaults; returns the config and the
    /// problems as `path: reason` strings.
    fn check(pairs: &[(&str, &str)]) -> (Config, Vec<String>) {
        let env = Env::from_pairs(pairs.iter().copied());
        let mut config = Config::default();
        let mut problems = Vec::new();
        apply(&env, &mut config, &mut problems);
        (
            config,
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.reason))
                .collect(),
        )
    }

    #[test]
    fn each_variable_overrides_its_field() {
        let (config, problems) = check(&[
            (HOME, "/state"),
            (MODE, "detect"),
            (PROXY_URL, "http://127.0.0.1:0"),
            (CA_BUNDLE, "/state/trust/default/ca-bundle.pem"),
            (LOG_DIR, "/var/log/tg"),
            (MAX_SCAN_BYTES, "65536"),
            (REDACT_SNIPPETS, "FULL"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.home, Some(PathBuf::from("/state")));
        assert_eq!(config.proxy_url, "http://127.0.0.1:0");
        assert_eq!(
            config.ca_bundle,
            Some(PathBuf::from("/state/trust/default/ca-bundle.pem"))
        );
        assert_eq!(config.log_dir, Some(PathBuf::from("/var/log/tg")));
        assert_eq!(config.max_scan_bytes, 65536);
        assert_eq!(config.redact_snippets, Redaction::Full);
    }

    #[test]
    fn empty_variables_are_unset() {
        let (config, problems) = check(&[(MAX_SCAN_BYTES, ""), (MODE, ""), (HOME, "")]);
        assert!(problems.is_empty());
        assert_eq!(config, Config::default());
    }

    #[test]
    fn malformed_values_are_problems_named_by_variable() {
        let cases: &[(&str, &str, &str)] = &[
            (MODE, "block", "blocking does not exist in this version"),
            (MAX_SCAN_BYTES, "lots", "not a whole number"),
            (MAX_SCAN_BYTES, "-1", "not a whole number"),
            (MAX_SCAN_BYTES, "100", "outside 4096..=67108864"),
            (MAX_SCAN_BYTES, "67108865", "outside"),
            (REDACT_SNIPPETS, "off", "cannot be turned off"),
            (PROXY_URL, "https://127.0.0.1:1", "http://"),
            (PROXY_URL, "127.0.0.1:10280", "http://"),
            (PROXY_URL, "http://127.0.0.1", "port"),
            (PROXY_URL, "http://localhost:99999", "port"),
            (
                "NANOCLAW_TRAFFIC_GUARDIAN_MAX_SCAN_BYTE",
                "1",
                "unknown variable",
            ),
        ];
        for (name, value, part) in cases {
            let (config, problems) = check(&[(name, value)]);
            assert_eq!(problems.len(), 1, "{name}={value}: {problems:?}");
            assert!(
                problems[0].starts_with(&format!("{name}: ")) && problems[0].contains(part),
                "{name}={value}: {problems:?}"
            );
            assert_eq!(config, Config::default(), "{name}={value}");
        }
    }
}
