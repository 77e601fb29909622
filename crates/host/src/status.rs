//! What `status` reports: plain serde structs, free of secrets, keys and raw traffic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
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

impl Status {
    /// The status for people, one fact a line.
    pub fn to_text(&self) -> String {
        let status = self;
        let mut out = String::new();
        let w = &mut out;
        if status.running {
            let pid = status.pid.map_or_else(|| "?".into(), |p| p.to_string());
            let up = status
                .uptime_secs
                .map_or_else(String::new, |s| format!(", up {}", human_duration(s)));
            let _ = writeln!(
                w,
                "traffic-guardian: running (pid {pid}{up}), mode {}",
                status.mode
            );
        } else {
            let _ = writeln!(w, "traffic-guardian: not running");
        }
        let _ = writeln!(w, "home:      {}", status.home.display());
        let _ = writeln!(w, "log dir:   {}", status.log_dir.display());
        for listener in &status.listeners {
            let runtime = listener
                .runtime
                .as_deref()
                .map_or_else(|| "any runtime".to_owned(), |r| format!("runtime {r}"));
            let _ = writeln!(w, "listener:  {} ({runtime})", listener.url);
        }
        for runtime in &status.runtimes {
            let inspection = match (runtime.https_inspection, runtime.trust_exported) {
                (true, true) => "HTTPS inspected",
                (true, false) => "HTTPS inspected, CA NOT EXPORTED",
                (false, _) => "HTTPS tunnelled",
            };
            let _ = writeln!(
                w,
                "runtime:   {} (group {}): {inspection}; recognised by {}",
                runtime.name,
                runtime.group,
                if runtime.recognised_by.is_empty() {
                    "nothing".to_owned()
                } else {
                    runtime.recognised_by.join(", ")
                }
            );
        }
        match &status.ca {
            Some(ca) => {
                let _ = writeln!(w, "CA:        {}", ca.cert_path.display());
                let _ = writeln!(w, "           SHA-256 {}", ca.fingerprint_sha256);
            }
            None if status
                .notes
                .iter()
                .any(|n| n.starts_with(crate::ca::CA_UNUSABLE)) =>
            {
                let _ = writeln!(w, "CA:        unusable (see notes)");
            }
            None => {
                let _ = writeln!(
                    w,
                    "CA:        none (`traffic-guardian ca init` creates one)"
                );
            }
        }
        let scope = if status.findings_scope == "since_start" {
            "since start"
        } else {
            "in the log"
        };
        let counts = &status.findings;
        let mut parts = Vec::new();
        for severity in ["critical", "high", "medium", "low"] {
            if let Some(n) = counts.by_severity.get(severity) {
                parts.push(format!("{severity} {n}"));
            }
        }
        for (kind, n) in &counts.by_type {
            parts.push(format!("{kind} {n}"));
        }
        let last = counts
            .last_finding_at
            .map_or_else(|| "never".to_owned(), |t| t.to_string());
        let _ = writeln!(
            w,
            "findings:  {} {scope}{}; last {last}",
            counts.total,
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        );
        if status.findings_dropped > 0 {
            let _ = writeln!(
                w,
                "dropped:   {} findings could not be stored",
                status.findings_dropped
            );
        }
        if let Some(traffic) = &status.traffic {
            let _ = writeln!(
                w,
                "traffic:   {} requests, {} connections open, {} bytes scanned, {} bytes unscanned",
                traffic.requests,
                traffic.connections_open,
                traffic.scanned_bytes,
                traffic.unscanned_bytes
            );
        }
        for problem in &status.degraded {
            let _ = writeln!(w, "DEGRADED:  {problem}");
        }
        for note in &status.notes {
            let _ = writeln!(w, "note:      {note}");
        }
        out
    }
}

/// `1h 2m`, `3m 4s`, `5s`, `2d 3h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}
