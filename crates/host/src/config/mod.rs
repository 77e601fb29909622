//! The guardian's configuration: the JSON schema, its embedded defaults, loading, and problem reports.
//!
//! A config comes from, in order of precedence (highest first):
//!
//! 1. `NANOCLAW_TRAFFIC_GUARDIAN_*` variables ([`env`]);
//! 2. the JSON file at `--config`, `$NANOCLAW_TRAFFIC_GUARDIAN_CONFIG`, or
//!    `<home>/config.json`;
//! 3. the embedded defaults ([`Config::default`]): detect mode, one loopback
//!    listener on `http://127.0.0.1:10280`, no HTTPS inspection.
//!
//! No file is needed to run. Unknown fields are errors, everywhere. Every
//! field is documented in `SPEC.md` (section Config).

pub mod env;
pub(crate) mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use traffic_guardian_core::{DEFAULT_MAX_SCAN_BYTES, Redaction};

pub use env::Env;
pub use validate::{check_config, parse_cidr, parse_listen_url, parse_upstream_url, valid_name};

/// The default listen URL of the default runtime.
pub const DEFAULT_PROXY_URL: &str = "http://127.0.0.1:10280";
/// The only mode this version has.
pub const MODE_DETECT: &str = "detect";
/// The name of the runtime that clients no other rule claims belong to.
pub const DEFAULT_RUNTIME: &str = "default";

/// The whole configuration. Field names are the JSON keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Only `"detect"`: the guardian logs, it never blocks.
    pub mode: String,
    /// The state folder. `None` means the default home (see
    /// [`crate::paths::default_home`]); loading fills it in.
    pub home: Option<PathBuf>,
    /// The URL the guardian listens on for the default runtime; the same
    /// URL clients on the host put in `HTTP_PROXY`. Port 0 picks a free
    /// port, reported in status and `run/listeners.json`.
    pub proxy_url: String,
    /// The exported combined CA bundle of the default runtime on the host.
    /// Default `<home>/trust/default/ca-bundle.pem`; its folder is what gets
    /// mounted read-only.
    pub ca_bundle: Option<PathBuf>,
    /// The CA folder (`ca.pem`, `ca.key`). Default `<home>/ca`.
    pub ca_dir: Option<PathBuf>,
    /// The folder of `findings.jsonl` and its rotations. Default
    /// `<home>/logs`.
    pub log_dir: Option<PathBuf>,
    /// Body bytes scanned per message (4096..=67108864). Bytes beyond still
    /// flow, unscanned and counted.
    pub max_scan_bytes: usize,
    /// How much context snippets keep: `"partial"` (default) or `"full"`
    /// masking. Redaction itself cannot be turned off.
    pub redact_snippets: Redaction,
    /// The runtime that clients which no rule claims are attributed to.
    /// `None` refuses them (`403`, or `407` when some runtime is
    /// recognised by proxy user).
    pub default_runtime: Option<String>,
    /// Runtimes: containers or groups told apart by listener, proxy user or
    /// source network.
    pub runtimes: Vec<RuntimeConfig>,
    /// Client networks allowed to use the proxy at all (CIDRs or single
    /// addresses). Default loopback only.
    pub allowed_clients: Vec<String>,
    /// An HTTP proxy all upstream traffic goes through (for example the
    /// OneCLI gateway).
    pub upstream_proxy: Option<UpstreamProxyConfig>,
    /// PEM files of extra CAs trusted for upstream TLS (for example
    /// OneCLI's), on top of the built-in roots.
    pub upstream_ca_files: Vec<PathBuf>,
    /// Hosts always tunnelled, never inspected (`example.com`,
    /// `*.example.com`).
    pub passthrough_hosts: Vec<String>,
    /// Host folders that are mounted into containers. The home, CA and log
    /// folders must not be inside any of them.
    pub container_mounts: Vec<PathBuf>,
    /// The NanoClaw IPC roots the IPC watcher serves.
    pub ipc: IpcConfig,
    /// Findings log rotation and dedup.
    pub findings: FindingsConfig,
    /// On graceful shutdown, how long in-flight flows may finish, in
    /// seconds.
    pub drain_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mode: MODE_DETECT.to_owned(),
            home: None,
            proxy_url: DEFAULT_PROXY_URL.to_owned(),
            ca_bundle: None,
            ca_dir: None,
            log_dir: None,
            max_scan_bytes: DEFAULT_MAX_SCAN_BYTES,
            redact_snippets: Redaction::Partial,
            default_runtime: Some(DEFAULT_RUNTIME.to_owned()),
            runtimes: Vec::new(),
            allowed_clients: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            upstream_proxy: None,
            upstream_ca_files: Vec::new(),
            passthrough_hosts: Vec::new(),
            container_mounts: Vec::new(),
            ipc: IpcConfig::default(),
            findings: FindingsConfig::default(),
            drain_timeout_secs: 10,
        }
    }
}

/// One runtime: a container or agent group whose traffic is attributed
/// together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// The name findings carry in `runtime`
    /// (`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`).
    pub name: String,
    /// The NanoClaw group this runtime serves (for MCP scoping); defaults
    /// to the name.
    pub group: Option<String>,
    /// A dedicated listener URL (`http://host:port`): every client on it
    /// belongs to this runtime.
    pub listen: Option<String>,
    /// Proxy-auth user names that name this runtime (an attribution hint,
    /// not access control).
    pub proxy_users: Vec<String>,
    /// Client networks (CIDRs) that belong to this runtime.
    pub source_cidrs: Vec<String>,
    /// Decrypt and scan this runtime's HTTPS. Needs a CA (`ca init`) and an
    /// exported trust folder (`ca export --runtime NAME`).
    pub https_inspection: bool,
    /// Where this runtime's public trust files are exported. Default
    /// `<home>/trust/<name>`.
    pub trust_dir: Option<PathBuf>,
}

impl RuntimeConfig {
    /// The group this runtime serves.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// How this runtime is recognised, as short phrases for people.
    pub fn recognised_by(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(listen) = &self.listen {
            out.push(format!("listener {listen}"));
        }
        out.extend(self.proxy_users.iter().map(|u| format!("proxy user {u}")));
        out.extend(self.source_cidrs.iter().map(|c| format!("source {c}")));
        out
    }
}

/// An upstream HTTP proxy the guardian chains to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamProxyConfig {
    /// `http://host:port` of the upstream proxy. Only `http` is supported.
    /// Credentials in the URL are refused: the client's own
    /// `Proxy-Authorization` is passed through instead.
    pub url: String,
    /// Pass the client's `Proxy-Authorization` through untouched (never
    /// logged). Default true.
    #[serde(default = "yes")]
    pub forward_proxy_authorization: bool,
}

fn yes() -> bool {
    true
}

/// NanoClaw IPC roots for the IPC watcher.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpcConfig {
    /// NanoClaw v1: `data/ipc`, holding one folder per group.
    pub groups_root: Option<PathBuf>,
    /// NanoClaw v2: `data/v2-sessions`.
    pub sessions_root: Option<PathBuf>,
}

impl IpcConfig {
    /// The configured roots, with their field paths.
    pub fn roots(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("ipc.groups_root", self.groups_root.as_deref()),
            ("ipc.sessions_root", self.sessions_root.as_deref()),
        ]
        .into_iter()
        .filter_map(|(field, path)| path.map(|p| (field, p)))
    }
}

/// How findings are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FindingsConfig {
    /// Rotate `findings.jsonl` past this size. Default 10 MiB.
    pub rotate_bytes: u64,
    /// Rotated files kept. Default 5.
    pub keep_files: usize,
    /// Repeats of the same finding inside this window are folded into one
    /// line with a count. 0 disables dedup. Default 60.
    pub dedup_window_secs: u64,
    /// Findings kept in memory while the log cannot be written, before the
    /// oldest are dropped (and counted). Default 10000.
    pub max_backlog: usize,
}

impl Default for FindingsConfig {
    fn default() -> FindingsConfig {
        FindingsConfig {
            rotate_bytes: traffic_guardian_core::Rotation::DEFAULT_MAX_BYTES,
            keep_files: traffic_guardian_core::Rotation::DEFAULT_KEEP,
            dedup_window_secs: 60,
            max_backlog: 10_000,
        }
    }
}

impl Config {
    /// The runtime named `name`, if configured.
    pub fn runtime(&self, name: &str) -> Option<&RuntimeConfig> {
        self.runtimes.iter().find(|r| r.name == name)
    }

    /// Every runtime, with the default runtime added (without inspection)
    /// when it is not configured explicitly.
    pub fn effective_runtimes(&self) -> Vec<RuntimeConfig> {
        let mut out = self.runtimes.clone();
        if let Some(default) = &self.default_runtime
            && self.runtime(default).is_none()
        {
            out.push(RuntimeConfig {
                name: default.clone(),
                ..RuntimeConfig::default()
            });
        }
        out
    }

    /// The trust folder of `runtime` under `paths`: its `trust_dir`, the
    /// folder of `ca_bundle` for the default runtime, else
    /// `<home>/trust/<runtime>`.
    pub fn trust_dir(&self, paths: &crate::paths::StatePaths, runtime: &str) -> PathBuf {
        if let Some(dir) = self.runtime(runtime).and_then(|r| r.trust_dir.clone()) {
            return dir;
        }
        if self.default_runtime.as_deref() == Some(runtime)
            && let Some(parent) = self.ca_bundle.as_deref().and_then(Path::parent)
        {
            return parent.to_path_buf();
        }
        paths.default_trust_dir(runtime)
    }

    /// The combined bundle of `runtime`: `ca_bundle` for the default
    /// runtime when set, else `<trust dir>/ca-bundle.pem`.
    pub fn bundle_path(&self, paths: &crate::paths::StatePaths, runtime: &str) -> PathBuf {
        if self.default_runtime.as_deref() == Some(runtime)
            && self
                .runtime(runtime)
                .and_then(|r| r.trust_dir.as_ref())
                .is_none()
            && let Some(bundle) = &self.ca_bundle
        {
            return bundle.clone();
        }
        self.trust_dir(paths, runtime).join(crate::ca::BUNDLE_FILE)
    }
}

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemSeverity {
    /// Worth knowing; the config still works.
    Warning,
    /// The config cannot be used.
    Error,
}

/// One thing wrong with a config, at a field path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The field (`runtimes[1].https_inspection`), the variable
    /// (`NANOCLAW_TRAFFIC_GUARDIAN_MAX_SCAN_BYTES`), or `""` for the whole
    /// file.
    pub path: String,
    /// Why, in a sentence.
    pub reason: String,
    /// Error or warning.
    pub severity: ProblemSeverity,
}

impl Problem {
    /// An error at `path`.
    pub fn error(path: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            reason: reason.into(),
            severity: ProblemSeverity::Error,
        }
    }

    /// A warning at `path`.
    pub fn warning(path: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            reason: reason.into(),
            severity: ProblemSeverity::Warning,
        }
    }

    /// Whether this problem makes the config unusable.
    pub fn is_error(&self) -> bool {
        self.severity == ProblemSeverity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            ProblemSeverity::Error => "error",
            ProblemSeverity::Warning => "warning",
        };
        if self.path.is_empty() {
            write!(f, "{level}: {}", self.reason)
        } else {
            write!(f, "{level}: {}: {}", self.path, self.reason)
        }
    }
}

/// The result of checking a config: valid when no problem is an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfigReport {
    /// Whether the config can be used.
    pub valid: bool,
    /// The file that was read, if any.
    pub source: Option<PathBuf>,
    /// Every problem found, errors first.
    pub problems: Vec<Problem>,
}

impl ConfigReport {
    /// A report over `problems`.
    pub fn new(source: Option<PathBuf>, mut problems: Vec<Problem>) -> ConfigReport {
        problems.sort_by_key(|p| std::cmp::Reverse(p.severity));
        ConfigReport {
            valid: !problems.iter().any(Problem::is_error),
            source,
            problems,
        }
    }
}

/// A config as loaded from file, defaults and environment, before it is
/// checked against the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The config (defaults where the file could not be read).
    pub config: Config,
    /// The file that was read, if any.
    pub source: Option<PathBuf>,
    /// Problems met while reading the file and the environment.
    pub problems: Vec<Problem>,
    /// The config file could not be read or parsed, so `config` holds the
    /// defaults: checking them would only report on the defaults.
    pub file_failed: bool,
}

impl Loaded {
    /// Loads, then checks the result: every problem in one report. A
    /// malformed variable leaves its field as the file set it, so the rest
    /// is still checked; a file that failed to parse is reported alone.
    pub fn report(&self) -> ConfigReport {
        let mut problems = self.problems.clone();
        if !self.file_failed && self.config.home.is_some() {
            problems.extend(check_config(&self.config).problems);
        }
        ConfigReport::new(self.source.clone(), problems)
    }

    /// The config if loading and checking found no error (warnings are
    /// logged by the caller); otherwise every problem.
    pub fn into_valid(self) -> Result<(Config, ConfigReport), crate::Error> {
        let report = self.report();
        if report.valid {
            Ok((self.config, report))
        } else {
            Err(crate::Error::Config(report.problems))
        }
    }
}

/// Loads the config: the file at `explicit` (`--config`), else
/// `$NANOCLAW_TRAFFIC_GUARDIAN_CONFIG`, else `<home>/config.json` if it
/// exists, else the embedded defaults; then the environment overrides.
///
/// Never fails: problems are collected in [`Loaded::problems`]. A file named
/// explicitly (flag or variable) must exist.
pub fn load(env: &Env, explicit: Option<&Path>) -> Loaded {
    let mut problems = Vec::new();
    let mut file_failed = false;
    let named = explicit.map(|p| ("--config", p.to_path_buf())).or_else(|| {
        env.get(env::CONFIG)
            .filter(|v| !v.is_empty())
            .map(|v| (env::CONFIG, PathBuf::from(v)))
    });
    let (config, source) = match named {
        Some((origin, path)) => match read_file(&path) {
            Ok(Some(config)) => (config, Some(path)),
            Ok(None) => {
                problems.push(Problem::error(
                    origin,
                    format!("config file {} does not exist", path.display()),
                ));
                file_failed = true;
                (Config::default(), None)
            }
            Err(problem) => {
                problems.push(problem);
                file_failed = true;
                (Config::default(), Some(path))
            }
        },
        None => {
            let home = crate::paths::default_home(env).ok();
            match home.map(|h| h.join("config.json")) {
                Some(path) => match read_file(&path) {
                    Ok(Some(config)) => (config, Some(path)),
                    Ok(None) => (Config::default(), None),
                    Err(problem) => {
                        problems.push(problem);
                        file_failed = true;
                        (Config::default(), Some(path))
                    }
                },
                None => (Config::default(), None),
            }
        }
    };
    let mut config = config;
    env::apply(env, &mut config, &mut problems);
    if config.home.is_none() {
        match crate::paths::default_home(env) {
            Ok(home) => config.home = Some(home),
            Err(err) => problems.push(Problem::error("home", err.to_string())),
        }
    }
    Loaded {
        config,
        source,
        problems,
        file_failed,
    }
}

/// Parses a config from JSON text. The problem names the field path where
/// the text goes wrong (`runtimes[0].https_inspection`).
pub fn parse(text: &str) -> Result<Config, Problem> {
    // serde would also read a JSON array into the struct, by position.
    if !text.trim_start().starts_with('{') {
        return Err(Problem::error(
            "",
            "the config must be one JSON object ({ \"field\": value, ... })",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Config>(&mut de) {
        Ok(config) => Ok(config),
        Err(err) => {
            let path = err.path().to_string();
            let path = if path == "." || path == "?" {
                String::new()
            } else {
                path
            };
            Err(Problem::error(path, err.into_inner().to_string()))
        }
    }
}

/// Reads and parses a config file; `Ok(None)` if it does not exist.
fn read_file(path: &Path) -> Result<Option<Config>, Problem> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some).map_err(|mut problem| {
            problem.reason = format!("{}: {}", path.display(), problem.reason);
            problem
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Problem::error(
            "",
            format!("cannot read {}: {err}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_detect_loopback_no_inspection() {
        let config = Config::default();
        assert_eq!(config.mode, "detect");
        assert_eq!(config.proxy_url, "http://127.0.0.1:10280");
        assert!(
            config
                .effective_runtimes()
                .iter()
                .all(|r| !r.https_inspection)
        );
        assert_eq!(config.effective_runtimes()[0].name, "default");
        // The defaults round-trip through JSON.
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(parse(&text).unwrap(), config);
        assert_eq!(parse("{}").unwrap(), config);
    }

    #[track_caller]
    fn check_parse_error(text: &str, path: &str, reason_part: &str) {
        let problem = parse(text).unwrap_err();
        assert_eq!(problem.path, path, "{problem}");
        assert!(problem.reason.contains(reason_part), "{problem}");
        assert!(problem.is_error());
    }

    #[test]
    fn parse_errors_name_the_field() {
        check_parse_error(r#"{"mood": "detect"}"#, "mood", "unknown field `mood`");
        check_parse_error(
            r#"{"runtimes": [{"name": "a"}, {"name": "b", "inspect": true}]}"#,
            "runtimes[1].inspect",
            "unknown field `inspect`",
        );
        check_parse_error(
            r#"{"max_scan_bytes": "big"}"#,
            "max_scan_bytes",
            "invalid type",
        );
        check_parse_error(
            r#"{"redact_snippets": "none"}"#,
            "redact_snippets",
            "unknown variant",
        );
        check_parse_error(
            r#"{"ipc": {"groups": "/x"}}"#,
            "ipc.groups",
            "unknown field `groups`",
        );
        check_parse_error("{", "", "EOF");
    }

    #[test]
    fn load_reads_the_named_file_and_requires_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("c.json");
        std::fs::write(&file, r#"{"proxy_url": "http://127.0.0.1:9"}"#).unwrap();
        let env = Env::from_pairs([("NANOCLAW_TRAFFIC_GUARDIAN_HOME", "/h")]);
        let loaded = load(&env, Some(&file));
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(loaded.config.proxy_url, "http://127.0.0.1:9");
        assert_eq!(loaded.config.home, Some(PathBuf::from("/h")));
        assert_eq!(loaded.source, Some(file));

        let missing = load(&env, Some(&tmp.path().join("absent.json")));
        assert_eq!(missing.problems[0].path, "--config");

        let via_env = Env::from_pairs([
            ("NANOCLAW_TRAFFIC_GUARDIAN_HOME", "/h"),
            (
                "NANOCLAW_TRAFFIC_GUARDIAN_CONFIG",
                tmp.path().join("nope.json").to_str().unwrap(),
            ),
        ]);
        assert_eq!(
            load(&via_env, None).problems[0].path,
            "NANOCLAW_TRAFFIC_GUARDIAN_CONFIG"
        );
    }

    #[test]
    fn load_uses_home_config_when_present_and_defaults_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().to_str().unwrap();
        let env = Env::from_pairs([("NANOCLAW_TRAFFIC_GUARDIAN_HOME", home)]);
        let loaded = load(&env, None);
        assert!(loaded.problems.is_empty());
        assert_eq!(loaded.source, None);
        assert_eq!(loaded.config.proxy_url, DEFAULT_PROXY_URL);

        std::fs::write(
            tmp.path().join("config.json"),
            r#"{"max_scan_bytes": 8192}"#,
        )
        .unwrap();
        let loaded = load(&env, None);
        assert_eq!(loaded.config.max_scan_bytes, 8192);
        assert_eq!(loaded.source, Some(tmp.path().join("config.json")));
    }
}
