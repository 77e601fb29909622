//! What `status` reports: plain serde structs, free of secrets, keys and raw traffic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use traffic_guardian_core::{Finding, Timestamp};

/// The state of a guardian, running or not. Maps onto the IPC wire types;
/// never carries a secret, the CA key, or traffic content.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Status {
    /// Whether a guardian runs with this home.
    pub running: bool,
    /// Its pid.
    pub pid: Option<u32>,
    /// The guardian version that answered.
    pub version: String,
    /// Always `detect`.
    pub mode: String,
    /// The state folder.
    pub home: PathBuf,
    /// The findings log folder.
    pub log_dir: PathBuf,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// Seconds since it started.
    pub uptime_secs: Option<u64>,
    /// The bound listeners (actual ports, also when port 0 was asked for).
    pub listeners: Vec<ListenerStatus>,
    /// Every runtime and its inspection state.
    pub runtimes: Vec<RuntimeStatus>,
    /// The CA, if one exists.
    pub ca: Option<CaStatus>,
    /// Finding counts. Running: since start (occurrences, before dedup).
    /// Not running: read from the log files.
    pub findings: FindingCounts,
    /// `since_start` or `log`: where `findings` comes from.
    pub findings_scope: String,
    /// Findings lost because the log could not be written and the
    /// in-memory backlog was full (occurrences). Never silently lost:
    /// also logged.
    pub findings_dropped: u64,
    /// Findings waiting in memory for the log to be writable again.
    pub findings_backlog: u64,
    /// Traffic counters, when running.
    pub traffic: Option<TrafficStatus>,
    /// The IPC watcher's state.
    pub ipc: IpcStatus,
    /// Current problems that reduce what the guardian does, such as
    /// `findings log: <error>`. Empty when healthy.
    pub degraded: Vec<String>,
    /// Other facts worth telling, such as stale run files cleaned.
    pub notes: Vec<String>,
}

/// One bound listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// The proxy URL clients use: `http://<addr>`.
    pub url: String,
    /// The bound address.
    pub addr: String,
    /// The runtime every client of this listener belongs to, if any.
    pub runtime: Option<String>,
}

/// One runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeStatus {
    /// Its name.
    pub name: String,
    /// The NanoClaw group it serves.
    pub group: String,
    /// How clients are recognised as this runtime.
    pub recognised_by: Vec<String>,
    /// Whether HTTPS inspection is configured.
    pub https_inspection: bool,
    /// Where its trust files are exported.
    pub trust_dir: PathBuf,
    /// Whether its trust folder holds the current CA.
    pub trust_exported: bool,
}

/// The CA's public facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaStatus {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint_sha256: String,
}

/// Counts of findings, summing each finding's `count`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FindingCounts {
    /// Occurrences in all.
    pub total: u64,
    /// By severity (`low` … `critical`).
    pub by_severity: BTreeMap<String, u64>,
    /// By threat type (`EXFIL`, `INJECTION`).
    pub by_type: BTreeMap<String, u64>,
    /// By runtime (`-` for unattributed).
    pub by_runtime: BTreeMap<String, u64>,
    /// The newest finding's timestamp.
    pub last_finding_at: Option<Timestamp>,
    /// Log lines that could not be read (when counted from the log).
    pub unreadable_lines: u64,
}

impl FindingCounts {
    /// Adds one finding (its `count`, at least 1).
    pub fn add(&mut self, finding: &Finding) {
        let n = finding.count.max(1);
        self.total = self.total.saturating_add(n);
        *self
            .by_severity
            .entry(finding.severity.as_str().to_owned())
            .or_default() += n;
        *self
            .by_type
            .entry(finding.threat_type.as_str().to_owned())
            .or_default() += n;
        *self
            .by_runtime
            .entry(finding.runtime.clone().unwrap_or_else(|| "-".to_owned()))
            .or_default() += n;
        if self.last_finding_at.is_none_or(|t| finding.timestamp > t) {
            self.last_finding_at = Some(finding.timestamp);
        }
    }
}

/// Traffic counters of a running guardian.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrafficStatus {
    /// Client connections open now.
    pub connections_open: u64,
    /// Client connections accepted since start.
    pub connections_total: u64,
    /// HTTP requests handled.
    pub requests: u64,
    /// Flows scanned (plain HTTP and inspected HTTPS).
    pub flows_inspected: u64,
    /// Flows tunnelled without decryption (metadata only).
    pub flows_tunnelled: u64,
    /// Body bytes scanned.
    pub scanned_bytes: u64,
    /// Body bytes that passed unscanned: over the per-message bound, or
    /// tunnelled.
    pub unscanned_bytes: u64,
    /// Requests that failed upstream.
    pub upstream_errors: u64,
    /// Requests refused as the client's fault.
    pub client_errors: u64,
    /// Per runtime, from finished flows.
    pub by_runtime: BTreeMap<String, RuntimeTraffic>,
}

/// Per-runtime traffic counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RuntimeTraffic {
    /// Finished flows.
    pub flows: u64,
    /// Body bytes scanned.
    pub scanned_bytes: u64,
    /// Body bytes not scanned.
    pub unscanned_bytes: u64,
}

/// The IPC side, as far as the host knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpcStatus {
    /// Configured NanoClaw v1 groups root.
    pub groups_root: Option<PathBuf>,
    /// Configured NanoClaw v2 sessions root.
    pub sessions_root: Option<PathBuf>,
    /// Whether a watcher serves them in this build.
    pub watcher: bool,
}
