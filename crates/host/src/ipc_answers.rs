//! What the host answers containers' IPC tasks (status, findings, check-config), scoped to the asking group, and the watcher that serves them.
//!
//! The IPC crate finds tasks, decides who asks (from the folder), and
//! re-checks every answer on the way out. This module supplies the answers
//! from the guardian's status, config and findings log. Nothing here
//! carries a secret: counts, runtime names, the CA fingerprint, config
//! problems with host paths hidden, and findings as stored (redacted).

use std::path::PathBuf;
use std::sync::Arc;

use traffic_guardian_core::FindingReader;
use traffic_guardian_ipc::{
    Caller, CheckConfigData, ConfigProblem, Counts, DegradedState, FindingsParams, GroupMap,
    GroupName, HandlerError, ProblemLevel, RuntimeStatus, StatusData, TaskHandler, Watcher,
    WatcherConfig, WatcherHandle, protocol::MODE_DETECT_AND_LOG,
};

use crate::config::{Config, ProblemSeverity, check_config, parse_listen_url};
use crate::control::StatusSource;
use crate::error::Error;
use crate::paths::StatePaths;

/// The folder (under the home) where the watcher moves task entries it
/// cannot answer.
pub const QUARANTINE_DIR: &str = "ipc-quarantine";

/// The group → runtimes map the watcher authorises callers with: each
/// runtime belongs to its `group` (its name by default).
pub fn group_map(config: &Config) -> GroupMap {
    let mut map = GroupMap::new();
    for runtime in config.effective_runtimes() {
        match GroupName::new(runtime.group()) {
            Ok(group) => map.insert(group, runtime.name.clone()),
            Err(_) => tracing::warn!(
                runtime = %runtime.name,
                "runtime's group is not a valid NanoClaw group name; no group sees it over IPC"
            ),
        }
    }
    map
}

/// Starts the IPC watcher when the config names an IPC root; `None`
/// otherwise.
pub fn start_watcher(
    config: &Config,
    paths: &StatePaths,
    status: StatusSource,
) -> Result<Option<WatcherHandle>, Error> {
    if config.ipc.groups_root.is_none() && config.ipc.sessions_root.is_none() {
        return Ok(None);
    }
    let mut watcher_config = WatcherConfig::new(paths.home.join(QUARANTINE_DIR));
    watcher_config.groups_root = config.ipc.groups_root.clone();
    watcher_config.sessions_root = config.ipc.sessions_root.clone();
    for root in config.ipc.roots().map(|(_, root)| root) {
        // Created when missing; an existing root (NanoClaw's) is left as it is.
        if !root.is_dir() {
            std::fs::create_dir_all(root)
                .map_err(|source| Error::io("create folder", root, source))?;
        }
    }
    let answers = IpcAnswers {
        status,
        config: config.clone(),
        log_dir: paths.log_dir.clone(),
    };
    let ipc = |err: traffic_guardian_ipc::Error| Error::Ipc(err.to_string());
    let watcher =
        Watcher::new(watcher_config, group_map(config), Arc::new(answers)).map_err(ipc)?;
    Ok(Some(watcher.spawn().map_err(ipc)?))
}

/// The host's answers to IPC tasks.
pub struct IpcAnswers {
    /// The live status (or the offline one).
    pub status: StatusSource,
    /// The config the guardian runs with.
    pub config: Config,
    /// The findings log folder.
    pub log_dir: PathBuf,
}

impl std::fmt::Debug for IpcAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcAnswers")
            .field("log_dir", &self.log_dir)
            .finish_non_exhaustive()
    }
}

impl TaskHandler for IpcAnswers {
    fn status(&self, caller: &Caller) -> Result<StatusData, HandlerError> {
        let status = (self.status)();
        let runtimes: Vec<RuntimeStatus> = status
            .runtimes
            .iter()
            .filter(|r| caller.can_see(Some(&r.name)))
            .map(|r| RuntimeStatus {
                name: r.name.clone(),
                group: Some(r.group.clone()),
                https_inspection: r.https_inspection,
                listen: status
                    .listeners
                    .iter()
                    .find(|l| l.runtime.as_deref() == Some(r.name.as_str()))
                    .map(|l| l.addr.clone()),
            })
            .collect();
        let mut counts = Counts::default();
        let mut last_finding_at = None;
        let reader = FindingReader::open(&self.log_dir)
            .map_err(|_| HandlerError::unavailable("the findings log cannot be read"))?;
        for finding in reader.flatten() {
            if caller.can_see(finding.runtime.as_deref()) {
                counts.add(&finding);
                if last_finding_at.is_none_or(|t| finding.timestamp > t) {
                    last_finding_at = Some(finding.timestamp);
                }
            }
        }
        let inspected = runtimes.iter().any(|r| r.https_inspection);
        Ok(StatusData {
            running: status.running,
            mode: MODE_DETECT_AND_LOG.to_owned(),
            uptime_seconds: status.uptime_secs,
            runtimes,
            counts,
            last_finding_at,
            degraded: status
                .degraded
                .iter()
                .map(|text| DegradedState {
                    component: if text.starts_with("findings log") {
                        "findings_log".to_owned()
                    } else {
                        "guardian".to_owned()
                    },
                    reason: hide_paths(text),
                })
                .collect(),
            ca_fingerprint: status
                .ca
                .as_ref()
                .filter(|_| inspected)
                .map(|ca| hex_fingerprint(&ca.fingerprint_sha256)),
        })
    }

    fn findings(
        &self,
        caller: &Caller,
        params: &FindingsParams,
    ) -> Result<Vec<traffic_guardian_core::Finding>, HandlerError> {
        params
            .to_query(caller)
            .run(&self.log_dir)
            .map(|report| report.findings)
            .map_err(|_| HandlerError::unavailable("the findings log cannot be read"))
    }

    fn check_config(&self, caller: &Caller) -> Result<CheckConfigData, HandlerError> {
        let report = check_config(&self.config);
        let status = (self.status)();
        let own = caller.runtimes.first().and_then(|name| {
            self.config
                .effective_runtimes()
                .into_iter()
                .find(|r| &r.name == name)
        });
        let proxy_url = own.as_ref().and_then(|runtime| {
            let url = runtime.listen.as_deref().unwrap_or(&self.config.proxy_url);
            container_facing_url(url)
        });
        let ca_fingerprint = status
            .ca
            .as_ref()
            .filter(|_| own.as_ref().is_some_and(|r| r.https_inspection))
            .map(|ca| hex_fingerprint(&ca.fingerprint_sha256));
        Ok(CheckConfigData {
            valid: report.valid,
            problems: report
                .problems
                .iter()
                .map(|p| ConfigProblem {
                    path: p.path.clone(),
                    reason: hide_paths(&p.reason),
                    level: match p.severity {
                        ProblemSeverity::Error => ProblemLevel::Error,
                        ProblemSeverity::Warning => ProblemLevel::Warning,
                    },
                })
                .collect(),
            proxy_url,
            ca_fingerprint,
        })
    }
}

/// The listen URL when it names an address containers can use as it is:
/// not loopback and not `0.0.0.0`. Otherwise the host does not know the
/// address containers reach it by (`host.docker.internal`, a bridge), and
/// says so with `None`.
fn container_facing_url(url: &str) -> Option<String> {
    let addr = parse_listen_url(url).ok()?;
    let ip = addr.ip();
    (!ip.is_loopback() && !ip.is_unspecified() && addr.port() != 0)
        .then(|| format!("http://{addr}"))
}

/// `AB:CD:…` as the IPC protocol wants it: 64 lower-case hex digits.
fn hex_fingerprint(colons: &str) -> String {
    colons.replace(':', "").to_ascii_lowercase()
}

/// Replaces absolute host paths in `text` with `<host path>`: a container
/// learns what is wrong, not where the host keeps its files.
fn hide_paths(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let trimmed = word.trim_start_matches(['(', '"', '\'']);
            if trimmed.starts_with('/') && trimmed.len() > 1 {
                let lead = &word[..word.len() - trimmed.len()];
                let tail: String = trimmed
                    .chars()
                    .rev()
                    .take_while(|c| matches!(c, ')' | ',' | ';' | ':' | '"' | '\''))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("{lead}<host path>{tail}")
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use traffic_guardian_core::{Finding, FindingLog, Rotation, Severity, Timestamp};
    use traffic_guardian_test_support::sample_finding;

    use super::*;
    use crate::config::RuntimeConfig;
    use crate::status::{CaStatus, RuntimeStatus as HostRuntime, Status};

    fn finding(runtime: Option<&str>, severity: Severity, millis: i64) -> Finding {
        Finding {
            severity,
            timestamp: Timestamp::from_unix_millis(millis),
            runtime: runtime.map(str::to_owned),
            count: 3,
            ..sample_finding()
        }
    }

    /// Two runtimes (`main` inspected, `family` in group `family-chat`),
    /// a log with findings of each and one unattributed.
    fn answers(tmp: &std::path::Path) -> IpcAnswers {
        let config = Config {
            home: Some(tmp.join("home")),
            runtimes: vec![
                RuntimeConfig {
                    name: "main".into(),
                    proxy_users: vec!["main".into()],
                    https_inspection: true,
                    ..RuntimeConfig::default()
                },
                RuntimeConfig {
                    name: "family".into(),
                    group: Some("family-chat".into()),
                    listen: Some("http://192.168.64.1:10281".into()),
                    ..RuntimeConfig::default()
                },
            ],
            ..Config::default()
        };
        let log_dir = tmp.join("logs");
        let mut sink = FindingLog::open(&log_dir, Rotation::default()).unwrap();
        sink.append(&finding(Some("main"), Severity::Critical, 1_000))
            .unwrap();
        sink.append(&finding(Some("family"), Severity::Low, 2_000))
            .unwrap();
        sink.append(&finding(None, Severity::High, 3_000)).unwrap();
        let runtimes = ["main", "family", "default"]
            .iter()
            .map(|name| HostRuntime {
                name: (*name).into(),
                group: if *name == "family" {
                    "family-chat"
                } else {
                    name
                }
                .to_string(),
                recognised_by: vec![],
                https_inspection: *name == "main",
                trust_dir: tmp.join("trust").join(name),
                trust_exported: true,
            })
            .collect();
        let status = Status {
            running: true,
            uptime_secs: Some(5),
            runtimes,
            ca: Some(CaStatus {
                cert_path: tmp.join("home/ca/ca.pem"),
                fingerprint_sha256: "AB:CD".into(),
            }),
            degraded: vec![format!(
                "findings log: open {}/logs/findings.jsonl: disk full",
                tmp.display()
            )],
            ..Status::default()
        };
        IpcAnswers {
            status: Arc::new(move || status.clone()),
            config,
            log_dir,
        }
    }

    fn caller(answers: &IpcAnswers, group: &str) -> Caller {
        Caller::new(GroupName::new(group).unwrap(), &group_map(&answers.config))
    }

    #[test]
    fn status_is_scoped_to_the_caller() {
        let tmp = tempfile::tempdir().unwrap();
        let answers = answers(tmp.path());
        let family = answers.status(&caller(&answers, "family-chat")).unwrap();
        assert_eq!(family.runtimes.len(), 1);
        assert_eq!(family.runtimes[0].name, "family");
        assert_eq!(family.counts.total, 1, "lines, not occurrences");
        assert_eq!(family.counts.by_severity.low, 1);
        assert_eq!(family.last_finding_at.unwrap().unix_millis(), 2_000);
        assert_eq!(family.ca_fingerprint, None, "family does not inspect");
        assert_eq!(family.mode, "detect-and-log");
        assert_eq!(family.degraded[0].component, "findings_log");
        assert!(
            !family.degraded[0]
                .reason
                .contains(&*tmp.path().to_string_lossy())
        );
        assert!(family.degraded[0].reason.contains("<host path>"));

        let main = answers.status(&caller(&answers, "main")).unwrap();
        assert_eq!(main.runtimes.len(), 3, "main sees every runtime");
        assert_eq!(main.counts.total, 3, "and unattributed findings");
        assert_eq!(main.ca_fingerprint.as_deref(), Some("abcd"));

        let stranger = answers.status(&caller(&answers, "other")).unwrap();
        assert!(stranger.runtimes.is_empty());
        assert_eq!(stranger.counts.total, 0);
    }

    #[test]
    fn findings_are_scoped_to_the_caller() {
        let tmp = tempfile::tempdir().unwrap();
        let answers = answers(tmp.path());
        let params: FindingsParams = serde_json::from_str("{}").unwrap();
        let family = answers
            .findings(&caller(&answers, "family-chat"), &params)
            .unwrap();
        assert_eq!(family.len(), 1);
        assert_eq!(family[0].runtime.as_deref(), Some("family"));
        let main = answers
            .findings(&caller(&answers, "main"), &params)
            .unwrap();
        assert_eq!(main.len(), 3);
    }

    #[test]
    fn check_config_hides_paths_and_knows_only_usable_urls() {
        let tmp = tempfile::tempdir().unwrap();
        let answers = answers(tmp.path());
        let family = answers
            .check_config(&caller(&answers, "family-chat"))
            .unwrap();
        assert_eq!(
            family.proxy_url.as_deref(),
            Some("http://192.168.64.1:10281")
        );
        assert_eq!(family.ca_fingerprint, None);
        let main = answers.check_config(&caller(&answers, "main")).unwrap();
        assert_eq!(
            main.proxy_url, None,
            "a loopback bind says nothing to a container"
        );
        assert!(!main.valid, "main inspects without a CA");
        assert_eq!(main.problems[0].path, "runtimes[0].https_inspection");
        assert_eq!(main.problems[0].level, ProblemLevel::Error);
        let text = serde_json::to_string(&main).unwrap();
        assert!(!text.contains(&*tmp.path().to_string_lossy()), "{text}");
    }

    #[test]
    fn paths_are_hidden_in_text() {
        assert_eq!(
            hide_paths("open /a/b/findings.jsonl: disk full"),
            "open <host path>: disk full"
        );
        assert_eq!(hide_paths("in (/x/y), done"), "in (<host path>), done");
        assert_eq!(hide_paths("a / b"), "a / b");
    }
}
