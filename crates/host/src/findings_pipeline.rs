//! Where the proxy's findings go: a bounded channel to one writer thread that dedups, appends to JSONL, keeps counters and survives log failures.
//!
//! ```text
//! proxy worker ─record()─► bounded channel ─► writer thread:
//!                                              Dedup::observe → FindingLog::append
//! ```
//!
//! Counters (by severity, type, runtime; last finding time) are kept at
//! intake, so they count every occurrence even while the log is failing.
//!
//! When an append fails (disk full, permissions, a folder where the file
//! should be), traffic is not affected: `record` never blocks. The status
//! turns degraded (`findings log: <error>`), the error is logged once, and
//! findings wait in a bounded in-memory backlog that is retried on every
//! new finding and every tick. When the log is writable again the backlog
//! is written, in order, and the degraded state clears. If the backlog is
//! full, new findings are dropped; the number of occurrences dropped is
//! counted, reported in status, and logged. Nothing is lost silently.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use traffic_guardian_core::{Dedup, DedupConfig, Finding, FindingLog, Rotation};

use crate::error::Error;
use crate::status::{FindingCounts, RuntimeTraffic};

/// How the pipeline stores findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// The folder of `findings.jsonl`.
    pub log_dir: PathBuf,
    /// Rotation of the log.
    pub rotation: Rotation,
    /// Dedup window and table size.
    pub dedup: DedupConfig,
    /// Findings held in memory while the log fails.
    pub max_backlog: usize,
    /// Batches queued between the proxy and the writer.
    pub channel_capacity: usize,
    /// How often dedup windows are closed and the backlog retried.
    pub tick: Duration,
}

impl PipelineConfig {
    /// Defaults for `log_dir`.
    pub fn new(log_dir: PathBuf) -> PipelineConfig {
        PipelineConfig {
            log_dir,
            rotation: Rotation::default(),
            dedup: DedupConfig::default(),
            max_backlog: 10_000,
            channel_capacity: 4096,
            tick: Duration::from_secs(1),
        }
    }
}

/// A snapshot of the pipeline's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineStatus {
    /// Counts since start, at intake.
    pub counts: FindingCounts,
    /// Per-runtime traffic from finished flows.
    pub traffic: BTreeMap<String, RuntimeTraffic>,
    /// Lines written to the log.
    pub lines_written: u64,
    /// Occurrences dropped (backlog or channel full).
    pub dropped: u64,
    /// Findings waiting for the log.
    pub backlog: u64,
    /// The current log error, if the log is failing.
    pub log_error: Option<String>,
}

enum Msg {
    Findings(Vec<Finding>),
    Flush(SyncSender<()>),
    Shutdown(SyncSender<()>),
}

#[derive(Debug, Default)]
struct Shared {
    counts: Mutex<FindingCounts>,
    traffic: Mutex<BTreeMap<String, RuntimeTraffic>>,
    log_error: Mutex<Option<String>>,
    lines_written: AtomicU64,
    dropped: AtomicU64,
    backlog: AtomicU64,
}

/// The cheap, cloneable side the proxy calls. Never blocks.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Findings(v) => write!(f, "Findings({})", v.len()),
            Msg::Flush(_) => f.write_str("Flush"),
            Msg::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

impl PipelineHandle {
    /// Takes the findings of one message. Counts them, then queues them
    /// for the writer; if the queue is full they are dropped and counted.
    pub fn record(&self, findings: Vec<Finding>) {
        if findings.is_empty() {
            return;
        }
        {
            let mut counts = lock(&self.shared.counts);
            for finding in &findings {
                counts.add(finding);
            }
        }
        let occurrences: u64 = findings.iter().map(|f| f.count.max(1)).sum();
        match self.tx.try_send(Msg::Findings(findings)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let total = self
                    .shared
                    .dropped
                    .fetch_add(occurrences, Ordering::Relaxed)
                    + occurrences;
                tracing::error!(
                    dropped = occurrences,
                    dropped_total = total,
                    "findings writer is behind; findings dropped"
                );
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared
                    .dropped
                    .fetch_add(occurrences, Ordering::Relaxed);
                tracing::error!(
                    dropped = occurrences,
                    "findings writer has stopped; findings dropped"
                );
            }
        }
    }

    /// Adds one finished flow's byte counts to its runtime's counters.
    pub fn flow(&self, runtime: &str, scanned_bytes: u64, unscanned_bytes: u64) {
        let mut traffic = lock(&self.shared.traffic);
        let entry = traffic.entry(runtime.to_owned()).or_default();
        entry.flows += 1;
        entry.scanned_bytes = entry.scanned_bytes.saturating_add(scanned_bytes);
        entry.unscanned_bytes = entry.unscanned_bytes.saturating_add(unscanned_bytes);
    }

    /// Waits until the writer has handled everything queued before this
    /// call (and retried the backlog once), for up to `timeout`. Returns
    /// whether it did.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        done.recv_timeout(timeout).is_ok()
    }

    /// The current state.
    pub fn status(&self) -> PipelineStatus {
        PipelineStatus {
            counts: lock(&self.shared.counts).clone(),
            traffic: lock(&self.shared.traffic).clone(),
            lines_written: self.shared.lines_written.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            backlog: self.shared.backlog.load(Ordering::Relaxed),
            log_error: lock(&self.shared.log_error).clone(),
        }
    }
}

/// The running pipeline: the writer thread and a handle to it.
#[derive(Debug)]
pub struct Pipeline {
    handle: PipelineHandle,
    thread: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the writer thread. Never fails because of the log itself: a
    /// log that cannot be opened starts the pipeline degraded.
    pub fn start(config: PipelineConfig) -> Result<Pipeline, Error> {
        let dedup = Dedup::new(config.dedup)?;
        if config.rotation.max_bytes == 0 {
            return Err(Error::Core(traffic_guardian_core::Error::InvalidSetting {
                field: "rotation.max_bytes",
                reason: "must be at least 1".into(),
            }));
        }
        let (tx, rx) = sync_channel(config.channel_capacity.max(1));
        let shared = Arc::new(Shared::default());
        let mut writer = Writer {
            sink: None,
            dedup,
            backlog: VecDeque::new(),
            shared: shared.clone(),
            config,
        };
        // Opened before start returns, so a log that cannot be written
        // shows in the very first status.
        match FindingLog::open(&writer.config.log_dir, writer.config.rotation) {
            Ok(sink) => writer.sink = Some(sink),
            Err(err) => writer.fail(&err),
        }
        let thread = std::thread::Builder::new()
            .name("findings-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|source| Error::io("start", "findings writer thread", source))?;
        Ok(Pipeline {
            handle: PipelineHandle { tx, shared },
            thread: Some(thread),
        })
    }

    /// The handle the proxy and status use.
    pub fn handle(&self) -> &PipelineHandle {
        &self.handle
    }

    /// Writes every pending summary and backlogged finding it can, syncs
    /// the log, and stops the writer. Findings still unwritable are counted
    /// as dropped and logged.
    pub fn shutdown(mut self) -> PipelineStatus {
        self.stop();
        self.handle.status()
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let (ack, done) = sync_channel(1);
            if self.handle.tx.send(Msg::Shutdown(ack)).is_ok() {
                let _ = done.recv();
            }
            let _ = thread.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Writer {
    sink: Option<FindingLog>,
    dedup: Dedup,
    backlog: VecDeque<Finding>,
    shared: Arc<Shared>,
    config: PipelineConfig,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Msg>) {
        loop {
            match rx.recv_timeout(self.config.tick) {
                Ok(Msg::Findings(findings)) => {
                    let now = Instant::now();
                    let mut out = Vec::new();
                    for finding in findings {
                        out.extend(self.dedup.observe(finding, now));
                    }
                    self.write(out);
                }
                Ok(Msg::Flush(ack)) => {
                    self.write(Vec::new());
                    let _ = ack.send(());
                }
                Ok(Msg::Shutdown(ack)) => {
                    self.finish();
                    let _ = ack.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let expired = self.dedup.expire(Instant::now());
                    self.write(expired);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            }
        }
    }

    fn finish(&mut self) {
        let pending = self.dedup.drain();
        self.write(pending);
        if let Some(sink) = &mut self.sink
            && let Err(err) = sink.sync()
        {
            tracing::warn!(error = %err, "syncing the findings log");
        }
        if !self.backlog.is_empty() {
            let lost: u64 = self.backlog.iter().map(|f| f.count.max(1)).sum();
            self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
            tracing::error!(
                lines = self.backlog.len(),
                occurrences = lost,
                "stopping with findings the log could not take; they are lost"
            );
            self.backlog.clear();
            self.shared.backlog.store(0, Ordering::Relaxed);
        }
    }

    /// Queues `findings` behind the backlog and writes as much as the log
    /// takes.
    fn write(&mut self, findings: Vec<Finding>) {
        for finding in findings {
            if self.backlog.len() >= self.config.max_backlog {
                let n = finding.count.max(1);
                let total = self.shared.dropped.fetch_add(n, Ordering::Relaxed) + n;
                tracing::error!(
                    dropped_total = total,
                    backlog = self.backlog.len(),
                    "findings log backlog is full; finding dropped"
                );
                continue;
            }
            self.backlog.push_back(finding);
        }
        let had_error = lock(&self.shared.log_error).is_some();
        let mut failed = false;
        if had_error && self.backlog.is_empty() {
            // Nothing to write: reopening tells whether the log is back.
            match FindingLog::open(&self.config.log_dir, self.config.rotation) {
                Ok(sink) => self.sink = Some(sink),
                Err(err) => {
                    self.fail(&err);
                    failed = true;
                }
            }
        }
        let mut written = 0u64;
        while let Some(finding) = self.backlog.front() {
            let sink = match &mut self.sink {
                Some(sink) => sink,
                None => match FindingLog::open(&self.config.log_dir, self.config.rotation) {
                    Ok(sink) => self.sink.insert(sink),
                    Err(err) => {
                        self.fail(&err);
                        failed = true;
                        break;
                    }
                },
            };
            match sink.append(finding) {
                Ok(()) => {
                    self.backlog.pop_front();
                    written += 1;
                }
                Err(err) => {
                    self.fail(&err);
                    failed = true;
                    break;
                }
            }
        }
        self.shared
            .lines_written
            .fetch_add(written, Ordering::Relaxed);
        self.shared
            .backlog
            .store(self.backlog.len() as u64, Ordering::Relaxed);
        if had_error && !failed && self.backlog.is_empty() {
            *lock(&self.shared.log_error) = None;
            tracing::warn!(
                written,
                "findings log is writable again; backlogged findings written"
            );
        }
    }

    /// Records a log failure; logs it when it is new.
    fn fail(&mut self, err: &traffic_guardian_core::Error) {
        let text = err.to_string();
        let mut current = lock(&self.shared.log_error);
        if current.as_deref() != Some(text.as_str()) {
            tracing::error!(
                error = %text,
                backlog = self.backlog.len(),
                "cannot write the findings log; traffic keeps flowing, findings wait in memory"
            );
            *current = Some(text);
        }
    }
}

/// Locks a mutex, going on with the data if another thread panicked while
/// holding it (counters stay usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use traffic_guardian_core::jsonl::read_all;
    use traffic_guardian_core::{Severity, Timestamp};
    use traffic_guardian_test_support::sample_finding;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn finding(dest: &str, severity: Severity) -> Finding {
        Finding {
            severity,
            dest: dest.into(),
            timestamp: Timestamp::now(),
            ..sample_finding()
        }
    }

    fn config(dir: &std::path::Path) -> PipelineConfig {
        PipelineConfig {
            max_backlog: 3,
            // Ticks never fire during a test: flush drives the writer.
            tick: Duration::from_secs(3600),
            ..PipelineConfig::new(dir.join("logs"))
        }
    }

    fn stored(dir: &std::path::Path) -> Vec<String> {
        read_all(&dir.join("logs"))
            .unwrap()
            .findings
            .into_iter()
            .map(|f| f.dest)
            .collect()
    }

    #[test]
    fn writes_dedups_and_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::start(config(tmp.path())).unwrap();
        let handle = pipeline.handle().clone();
        handle.record(vec![finding("a:443", Severity::High)]);
        handle.record(vec![
            finding("a:443", Severity::High),
            finding("b:443", Severity::Critical),
        ]);
        handle.flow("main", 10, 5);
        assert!(handle.flush(WAIT));
        assert_eq!(stored(tmp.path()), ["a:443", "b:443"]);
        let status = handle.status();
        assert_eq!(status.counts.total, 3);
        assert_eq!(status.counts.by_severity["high"], 2);
        assert_eq!(status.counts.by_type["EXFIL"], 3);
        assert_eq!(status.counts.by_runtime["main"], 3);
        assert!(status.counts.last_finding_at.is_some());
        assert_eq!(status.traffic["main"].unscanned_bytes, 5);
        // Shutdown writes the pending repeat summary: nothing is lost.
        let status = pipeline.shutdown();
        let all = read_all(&tmp.path().join("logs")).unwrap().findings;
        assert_eq!(all.iter().map(|f| f.count).sum::<u64>(), 3);
        assert_eq!(status.lines_written, 3);
        assert_eq!(status.dropped, 0);
    }

    /// Makes the log unwritable for real, also as root: a folder stands
    /// where the file must be.
    fn break_log(dir: &std::path::Path) {
        let file = dir.join("logs/findings.jsonl");
        let _ = fs::remove_file(&file);
        fs::create_dir_all(&file).unwrap();
    }

    fn repair_log(dir: &std::path::Path) {
        fs::remove_dir(dir.join("logs/findings.jsonl")).unwrap();
    }

    #[test]
    fn a_failing_log_degrades_backlogs_counts_drops_and_recovers() {
        let tmp = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::start(config(tmp.path())).unwrap();
        let handle = pipeline.handle().clone();
        handle.record(vec![finding("before:1", Severity::Low)]);
        assert!(handle.flush(WAIT));
        break_log(tmp.path());

        for i in 0..5 {
            handle.record(vec![finding(&format!("during:{i}"), Severity::High)]);
        }
        assert!(handle.flush(WAIT));
        let status = handle.status();
        let error = status.log_error.clone().expect("degraded");
        assert!(error.contains("findings.jsonl"), "{error}");
        assert_eq!(status.backlog, 3);
        assert_eq!(status.dropped, 2);
        // Counters still see every occurrence.
        assert_eq!(status.counts.total, 6);

        repair_log(tmp.path());
        assert!(handle.flush(WAIT));
        let status = handle.status();
        assert_eq!(status.log_error, None);
        assert_eq!(status.backlog, 0);
        assert_eq!(status.dropped, 2);
        assert_eq!(
            stored(tmp.path()),
            ["during:0", "during:1", "during:2"],
            "the log was replaced by a folder, so `before` went with it"
        );
        drop(pipeline);
    }

    #[test]
    fn starts_degraded_when_the_log_cannot_be_opened() {
        let tmp = tempfile::tempdir().unwrap();
        break_log(tmp.path());
        let pipeline = Pipeline::start(config(tmp.path())).unwrap();
        let handle = pipeline.handle().clone();
        assert!(handle.status().log_error.is_some());
        repair_log(tmp.path());
        handle.record(vec![finding("x:1", Severity::Medium)]);
        assert!(handle.flush(WAIT));
        assert_eq!(handle.status().log_error, None);
        assert_eq!(stored(tmp.path()), ["x:1"]);
    }

    #[test]
    fn shutdown_counts_what_it_could_not_write() {
        let tmp = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::start(config(tmp.path())).unwrap();
        let handle = pipeline.handle().clone();
        assert!(handle.flush(WAIT));
        break_log(tmp.path());
        handle.record(vec![finding("x:1", Severity::Medium)]);
        let status = pipeline.shutdown();
        assert_eq!(status.dropped, 1);
        assert_eq!(status.backlog, 0);
        // The handle outlives the writer without panicking.
        handle.record(vec![finding("late:1", Severity::Low)]);
        assert_eq!(handle.status().dropped, 2);
        assert!(!handle.flush(Duration::from_millis(10)));
    }
}
