//! The embeddable guardian: start from a config, read status, query findings, shut down.
//!
//! This is the API the `traffic-guardian` binary uses, the one the
//! host-side security suite embeds, and the one the IPC watcher calls.
//!
//! ```no_run
//! # async fn demo() -> Result<(), traffic_guardian_host::Error> {
//! use traffic_guardian_host::{Guardian, StartOptions, config};
//! let loaded = config::load(&config::Env::from_process(), None);
//! let (config, _report) = loaded.into_valid()?;
//! let guardian = Guardian::start(config, StartOptions::default()).await?;
//! println!("{:?}", guardian.status().listeners);
//! guardian.shutdown(true).await;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use traffic_guardian_core::{
    DedupConfig, Engine, EngineConfig, FindingQuery, FindingReader, QueryReport, Rotation,
    Timestamp,
};

use crate::ca;
use crate::config::{Config, Env, check_config, parse_listen_url, parse_upstream_url};
use crate::control::{ControlServer, StatusSource};
use crate::error::Error;
use crate::findings_pipeline::{Pipeline, PipelineConfig, PipelineHandle};
use crate::ipc_answers::start_watcher;
use crate::lifecycle::{self, Probe, RunLock};
use crate::paths::{self, StatePaths};
use crate::status::{CaStatus, FindingCounts, IpcStatus, ListenerStatus, RuntimeStatus, Status};
use crate::traffic::{Traffic, TrafficPlan};

/// How [`Guardian::start`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// Serve the control socket `run/control.sock` (the binary does;
    /// an embedder may not need it).
    pub control_socket: bool,
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions {
            control_socket: true,
        }
    }
}

/// A running guardian: proxy, findings pipeline, IPC watcher (when an IPC
/// root is configured), control socket.
#[derive(Debug)]
pub struct Guardian {
    shared: Arc<Shared>,
    pipeline: Pipeline,
    control: Option<ControlServer>,
    stop_rx: mpsc::Receiver<bool>,
    ipc: Option<traffic_guardian_ipc::WatcherHandle>,
    lock: RunLock,
}

/// What status needs, shared with the control socket.
#[derive(Debug)]
struct Shared {
    config: Config,
    paths: StatePaths,
    started_at: Timestamp,
    started: Instant,
    listeners: Vec<ListenerStatus>,
    runtimes: Vec<RuntimeStatus>,
    ca: Option<CaStatus>,
    notes: Vec<String>,
    pipeline: PipelineHandle,
    traffic: Mutex<Option<Traffic>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Guardian {
    /// Checks `config`, takes the single-instance lock of its home, and
    /// starts the findings pipeline, the proxy and (if asked) the control
    /// socket. Ready when it returns: every listener is bound, and
    /// `run/listeners.json` names the actual addresses. Must be called
    /// inside a tokio runtime.
    pub async fn start(config: Config, options: StartOptions) -> Result<Guardian, Error> {
        let report = check_config(&config);
        if !report.valid {
            return Err(Error::Config(report.problems));
        }
        for warning in &report.problems {
            tracing::warn!("config {warning}");
        }
        let paths = StatePaths::new(&config, &Env::from_process())?;
        let lock = RunLock::acquire(&paths)?;
        let key = paths::fingerprint_key(&paths)?;
        let engine = Engine::new(EngineConfig {
            max_scan_bytes: config.max_scan_bytes,
            redaction: config.redact_snippets,
            fingerprint_key: Some(key),
            ..EngineConfig::default()
        })?;
        let pipeline = Pipeline::start(PipelineConfig {
            rotation: Rotation {
                max_bytes: config.findings.rotate_bytes,
                keep: config.findings.keep_files,
            },
            dedup: DedupConfig {
                window: Duration::from_secs(config.findings.dedup_window_secs),
                ..DedupConfig::default()
            },
            max_backlog: config.findings.max_backlog,
            ..PipelineConfig::new(paths.log_dir.clone())
        })?;
        let runtimes = config.effective_runtimes();
        let inspecting = runtimes.iter().any(|r| r.https_inspection);
        let signing = if inspecting {
            Some(ca::read_signing(&paths)?)
        } else {
            None
        };
        let mut extra_roots = Vec::new();
        for file in &config.upstream_ca_files {
            extra_roots.extend(ca::read_pem_certs(file).map_err(Error::Ca)?);
        }
        let plan = TrafficPlan {
            listeners: listen_plan(&config)?,
            runtimes: runtimes.clone(),
            allowed_clients: config.allowed_clients.clone(),
            default_runtime: config.default_runtime.clone(),
            upstream_proxy: config.upstream_proxy.as_ref().map(|u| {
                let addr = parse_upstream_url(&u.url).unwrap_or_else(|_| u.url.clone());
                (addr, u.forward_proxy_authorization)
            }),
            passthrough_hosts: config.passthrough_hosts.clone(),
            extra_roots,
            ca: signing,
            engine,
            drain_timeout: Duration::from_secs(config.drain_timeout_secs),
        };
        let traffic = Traffic::start(plan, pipeline.handle().clone()).await?;
        let listeners: Vec<ListenerStatus> = traffic
            .bound()
            .iter()
            .map(|(addr, runtime)| ListenerStatus {
                url: format!("http://{addr}"),
                addr: addr.to_string(),
                runtime: runtime.clone(),
            })
            .collect();
        lock.write_listeners(&listeners)?;
        let mut notes = lock.notes.clone();
        let ca = ca::status(&paths).unwrap_or_else(|note| {
            notes.push(note);
            None
        });
        let shared = Arc::new(Shared {
            runtimes: runtime_statuses(&config, &paths),
            notes,
            pipeline: pipeline.handle().clone(),
            traffic: Mutex::new(Some(traffic)),
            stopped: std::sync::atomic::AtomicBool::new(false),
            started_at: Timestamp::now(),
            started: Instant::now(),
            listeners,
            ca,
            config,
            paths,
        });
        let (stop_tx, stop_rx) = mpsc::channel(4);
        let source: StatusSource = {
            let shared = shared.clone();
            Arc::new(move || shared.status())
        };
        let started = (|| {
            let ipc = start_watcher(&shared.config, &shared.paths, source.clone())?;
            let control = if options.control_socket {
                Some(ControlServer::start(
                    &shared.paths.control_socket(),
                    source,
                    stop_tx,
                )?)
            } else {
                None
            };
            Ok::<_, Error>((ipc, control))
        })();
        let (ipc, control) = match started {
            Ok(parts) => parts,
            Err(err) => {
                if let Some(traffic) = take(&shared.traffic) {
                    traffic.shutdown(false).await;
                }
                return Err(err);
            }
        };
        Ok(Guardian {
            shared,
            pipeline,
            control,
            stop_rx,
            ipc,
            lock,
        })
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// A cheap, cloneable handle for tasks that answer queries while the
    /// guardian runs (the IPC watcher): status and findings, nothing that
    /// can stop or change it.
    pub fn handle(&self) -> GuardianHandle {
        GuardianHandle {
            shared: self.shared.clone(),
        }
    }

    /// The bound listeners.
    pub fn listeners(&self) -> &[ListenerStatus] {
        &self.shared.listeners
    }

    /// The paths in use.
    pub fn paths(&self) -> &StatePaths {
        &self.shared.paths
    }

    /// The config in use.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Runs `query` over the findings log (current and rotated files).
    pub fn findings(&self, query: &FindingQuery) -> Result<QueryReport, Error> {
        Ok(query.run(&self.shared.paths.log_dir)?)
    }

    /// Waits until every finding recorded so far has been handled by the
    /// writer (written, or backlogged if the log fails), up to `timeout`.
    pub fn flush_findings(&self, timeout: Duration) -> bool {
        self.shared.pipeline.flush(timeout)
    }

    /// Resolves when someone asks the control socket to stop; the value is
    /// whether to drain gracefully. Never resolves without a control socket.
    pub async fn stop_requested(&mut self) -> bool {
        match self.stop_rx.recv().await {
            Some(graceful) => graceful,
            None => std::future::pending().await,
        }
    }

    /// Stops: no new connections, in-flight flows drained (graceful) or cut,
    /// every finding written, run files removed, lock released. Returns the
    /// final status.
    pub async fn shutdown(self, graceful: bool) -> Status {
        let Guardian {
            shared,
            pipeline,
            control,
            stop_rx,
            ipc,
            lock,
        } = self;
        drop(stop_rx);
        if let Some(control) = control {
            control.stop();
        }
        if let Some(ipc) = ipc {
            // Returns within one scan of the IPC roots.
            let _ = tokio::task::spawn_blocking(move || ipc.shutdown()).await;
        }
        if let Some(traffic) = take(&shared.traffic) {
            traffic.shutdown(graceful).await;
        }
        shared
            .stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut status = shared.status();
        let pipeline = tokio::task::spawn_blocking(move || pipeline.shutdown())
            .await
            .ok();
        if let Some(pipeline) = pipeline {
            status.findings_dropped = pipeline.dropped;
            status.findings_backlog = pipeline.backlog;
        }
        drop(lock);
        tracing::info!("stopped");
        status
    }
}

/// Read-only access to a running guardian, for the IPC watcher and other
/// query servers. Stays valid after shutdown: status then reports the
/// final counters and no traffic.
#[derive(Debug, Clone)]
pub struct GuardianHandle {
    shared: Arc<Shared>,
}

impl GuardianHandle {
    /// The current status.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Runs `query` over the findings log (current and rotated files).
    /// Callers scope it (`runtimes`) to what their client may see.
    pub fn findings(&self, query: &FindingQuery) -> Result<QueryReport, Error> {
        Ok(query.run(&self.shared.paths.log_dir)?)
    }

    /// The config the guardian runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }
}

impl Shared {
    fn status(&self) -> Status {
        let pipeline = self.pipeline.status();
        let traffic = lock(&self.traffic).as_ref().map(|t| {
            let mut stats = t.stats();
            stats.by_runtime = pipeline.traffic.clone();
            stats
        });
        let mut degraded = Vec::new();
        if let Some(error) = &pipeline.log_error {
            degraded.push(format!("findings log: {error}"));
            if pipeline.backlog > 0 {
                degraded.push(format!(
                    "findings log: {} findings waiting in memory",
                    pipeline.backlog
                ));
            }
        }
        let running = !self.stopped.load(std::sync::atomic::Ordering::Relaxed);
        Status {
            running,
            pid: running.then(std::process::id),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            mode: self.config.mode.clone(),
            home: self.paths.home.clone(),
            log_dir: self.paths.log_dir.clone(),
            started_at: Some(self.started_at),
            uptime_secs: Some(self.started.elapsed().as_secs()),
            listeners: self.listeners.clone(),
            runtimes: self.runtimes.clone(),
            ca: self.ca.clone(),
            findings: pipeline.counts,
            findings_scope: "since_start".into(),
            findings_dropped: pipeline.dropped,
            findings_backlog: pipeline.backlog,
            traffic,
            ipc: IpcStatus {
                watcher: running && self.config.ipc.roots().next().is_some(),
                ..ipc_status(&self.config)
            },
            degraded,
            notes: self.notes.clone(),
        }
    }
}

/// The status of a home where no guardian runs (or of one that runs, as
/// far as the disk tells): CA, runtimes, and finding counts read from the
/// log. `probe` tells whether a service runs; stale run files are cleaned.
pub fn offline_status(config: &Config, paths: &StatePaths) -> Result<Status, Error> {
    let (running, pid, mut notes) = match lifecycle::probe(paths)? {
        Probe::Running { pid } => (true, pid, Vec::new()),
        Probe::NotRunning { notes } => (false, None, notes),
    };
    let mut counts = FindingCounts::default();
    let mut degraded = Vec::new();
    let mut reader = FindingReader::open(&paths.log_dir)?;
    for finding in &mut reader {
        match finding {
            Ok(finding) => counts.add(&finding),
            Err(err) => degraded.push(format!("findings log: {err}")),
        }
    }
    counts.unreadable_lines = reader.skipped();
    let ca = ca::status(paths).unwrap_or_else(|note| {
        notes.push(note);
        None
    });
    Ok(Status {
        running,
        pid,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        mode: config.mode.clone(),
        home: paths.home.clone(),
        log_dir: paths.log_dir.clone(),
        listeners: if running {
            lifecycle::read_listeners(paths).unwrap_or_default()
        } else {
            Vec::new()
        },
        runtimes: runtime_statuses(config, paths),
        ca,
        findings: counts,
        findings_scope: "log".into(),
        ipc: ipc_status(config),
        degraded,
        notes,
        ..Status::default()
    })
}

/// The status as the running service reports it over its control socket;
/// when none runs, or it does not answer, what the disk tells
/// ([`offline_status`]) with the reason noted.
pub fn current_status(config: &Config, paths: &StatePaths) -> Result<Status, Error> {
    let (live, cleaned) = match lifecycle::probe(paths)? {
        Probe::Running { .. } => (
            Some(crate::control::request(
                &paths.control_socket(),
                &crate::control::Request::Status,
                std::time::Duration::from_secs(5),
            )),
            Vec::new(),
        ),
        Probe::NotRunning { notes } => (None, notes),
    };
    if let Some(Ok(response)) = &live
        && let Some(status) = response.status.as_deref()
    {
        return Ok(status.clone());
    }
    let mut status = offline_status(config, paths)?;
    status.notes.splice(0..0, cleaned);
    if let Some(Err(err)) = live {
        status
            .degraded
            .push(format!("control socket did not answer: {err}"));
    }
    Ok(status)
}

/// Runs a guardian until SIGTERM (graceful), SIGINT (fast) or a stop
/// request on the control socket, then shuts it down. Calls `on_ready`
/// once the guardian is ready.
pub async fn run_until_stopped(
    config: Config,
    options: StartOptions,
    on_ready: impl FnOnce(&Guardian),
) -> Result<Status, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|source| Error::io("listen for", "SIGTERM", source))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|source| Error::io("listen for", "SIGINT", source))?;
    let mut guardian = Guardian::start(config, options).await?;
    on_ready(&guardian);
    let graceful = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: draining"); true }
        _ = int.recv() => { tracing::info!("SIGINT: stopping now"); false }
        graceful = guardian.stop_requested() => {
            tracing::info!(graceful, "stop requested on the control socket");
            graceful
        }
    };
    Ok(guardian.shutdown(graceful).await)
}

/// The listeners to bind: the default URL (not tied to a runtime) and each
/// runtime's dedicated one.
fn listen_plan(config: &Config) -> Result<Vec<(std::net::SocketAddr, Option<String>)>, Error> {
    let parse = |path: String, url: &str| {
        parse_listen_url(url)
            .map_err(|reason| Error::Config(vec![crate::config::Problem::error(path, reason)]))
    };
    let mut out = vec![(parse("proxy_url".into(), &config.proxy_url)?, None)];
    for (i, runtime) in config.runtimes.iter().enumerate() {
        if let Some(url) = &runtime.listen {
            out.push((
                parse(format!("runtimes[{i}].listen"), url)?,
                Some(runtime.name.clone()),
            ));
        }
    }
    Ok(out)
}

fn runtime_statuses(config: &Config, paths: &StatePaths) -> Vec<RuntimeStatus> {
    let current = ca::read_public(paths).ok();
    config
        .effective_runtimes()
        .iter()
        .map(|r| {
            let trust_dir = config.trust_dir(paths, &r.name);
            let trust_exported = current.as_ref().is_some_and(|ca| {
                ca::read_pem_certs(&trust_dir.join(ca::GUARDIAN_CA_FILE))
                    .is_ok_and(|certs| certs.iter().any(|c| c.as_ref() == ca.der.as_slice()))
            });
            let mut recognised_by = r.recognised_by();
            if config.default_runtime.as_deref() == Some(r.name.as_str()) {
                recognised_by.push("every client no other rule claims".into());
            }
            RuntimeStatus {
                name: r.name.clone(),
                group: r.group().to_owned(),
                recognised_by,
                https_inspection: r.https_inspection,
                trust_dir,
                trust_exported,
            }
        })
        .collect()
}

fn ipc_status(config: &Config) -> IpcStatus {
    IpcStatus {
        groups_root: config.ipc.groups_root.clone(),
        sessions_root: config.ipc.sessions_root.clone(),
        watcher: false,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn take<T>(mutex: &Mutex<Option<T>>) -> Option<T> {
    lock(mutex).take()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::config::Config;

    /// A loopback upstream that answers one request `200 ok`.
    fn upstream() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.ends_with(b"end-of-body") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        addr
    }

    fn post(proxy: &str, upstream: std::net::SocketAddr, body: &str) -> String {
        let mut stream = std::net::TcpStream::connect(proxy).unwrap();
        let request = format!(
            "POST http://{upstream}/x HTTP/1.1\r\nHost: {upstream}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_start_status_findings_shutdown() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            home: Some(tmp.path().join("home")),
            proxy_url: "http://127.0.0.1:0".into(),
            ..Config::default()
        };
        let guardian = Guardian::start(config.clone(), StartOptions::default())
            .await
            .unwrap();
        let status = guardian.status();
        assert!(status.running);
        assert_eq!(status.pid, Some(std::process::id()));
        assert_eq!(status.listeners.len(), 1);
        assert!(status.degraded.is_empty(), "{:?}", status.degraded);
        assert!(matches!(
            Guardian::start(config.clone(), StartOptions::default()).await,
            Err(Error::AlreadyRunning { .. })
        ));

        let proxy = guardian.listeners()[0].addr.clone();
        let key = format!(
            "sk-ant-api03-{}",
            "Cq9Wv3Nz7Lk2Hx5Rt8Yb4Md6Pf1Gs0Jc3Qe5Tu7Io9AaZzYyXx2468"
        );
        let body = format!("k={key}&end-of-body");
        let target = upstream();
        let response = tokio::task::spawn_blocking(move || post(&proxy, target, &body))
            .await
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");

        let log_dir = guardian.paths().log_dir.clone();
        let paths = guardian.paths().clone();
        let last = guardian.shutdown(true).await;
        assert!(!last.running);
        assert_eq!(last.findings.total, 1);
        assert_eq!(last.findings_dropped, 0);
        let stored = FindingQuery::default().run(&log_dir).unwrap();
        assert_eq!(stored.findings.len(), 1);
        assert_eq!(stored.findings[0].pattern, "ai_api_key");
        assert!(stored.findings[0].fingerprint.is_some());
        assert!(!stored.findings[0].snippet.contains(&key[14..]));

        let offline = offline_status(&config, &paths).unwrap();
        assert!(!offline.running);
        assert_eq!(offline.findings.total, 1);
        assert!(
            offline.notes.is_empty(),
            "a clean stop leaves nothing stale"
        );
    }
}
