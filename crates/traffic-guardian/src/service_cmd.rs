//! `run`, `start`, `stop` and `status`: the service's lifecycle commands.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use traffic_guardian_host::control::{self, Request};
use traffic_guardian_host::lifecycle::{self, Probe, READY_LINE_PREFIX};
use traffic_guardian_host::{Error, Guardian, StartOptions, Status, offline_status};

use crate::output::{human_duration, load, load_lenient, print, print_json};

/// Exit status of `status` when no guardian runs (as LSB init scripts use).
const EXIT_NOT_RUNNING: u8 = 3;

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// Seconds to wait for the service to be ready.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// Cut in-flight connections instead of draining them.
    #[arg(long)]
    fast: bool,
    /// Seconds to wait for the service to exit.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(config: Option<&Path>) -> ExitCode {
    let (config, _paths) = match load(config, "run") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("guardian")
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("traffic-guardian run: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(traffic_guardian_host::run_until_stopped(
        config,
        StartOptions::default(),
        announce_ready,
    ));
    match result {
        Ok(status) => {
            if status.findings_dropped > 0 {
                eprintln!(
                    "traffic-guardian run: {} finding occurrences could not be written and were dropped",
                    status.findings_dropped
                );
            }
            ExitCode::SUCCESS
        }
        Err(err @ Error::AlreadyRunning { .. }) => {
            eprintln!("traffic-guardian run: {err}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("traffic-guardian run: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the ready line `start` waits for. Only this one line goes to
/// stdout: after it, `start`'s pipe is closed.
fn announce_ready(guardian: &Guardian) {
    let listeners: Vec<String> = guardian
        .listeners()
        .iter()
        .map(|l| match &l.runtime {
            Some(runtime) => format!("{} (runtime {runtime})", l.url),
            None => l.url.clone(),
        })
        .collect();
    let line = format!(
        "{READY_LINE_PREFIX} pid {}, listening on {}\n",
        std::process::id(),
        listeners.join(", ")
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush());
}

pub(crate) fn start(config: Option<&Path>, args: &StartArgs) -> ExitCode {
    let (_config, paths) = match load(config, "start") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let exe = match lifecycle::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("traffic-guardian start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut child_args: Vec<OsString> = Vec::new();
    if let Some(config) = config {
        let absolute = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
        child_args.push("--config".into());
        child_args.push(absolute.into_os_string());
    }
    match lifecycle::start_background(&exe, &child_args, &paths, Duration::from_secs(args.timeout))
    {
        Ok(started) => {
            for note in &started.notes {
                eprintln!("traffic-guardian start: {note}");
            }
            let urls: Vec<&str> = started.listeners.iter().map(|l| l.url.as_str()).collect();
            let _ = print(&format!(
                "traffic-guardian started: pid {}, listening on {} (ready in {} ms)\nservice log: {}\n",
                started.pid,
                urls.join(", "),
                started.ready_after.as_millis(),
                paths.service_log().display()
            ));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("traffic-guardian start: {err}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn stop(config: Option<&Path>, args: &StopArgs) -> ExitCode {
    let (_config, paths) = match load_lenient(config, "stop") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match lifecycle::stop(&paths, !args.fast, Duration::from_secs(args.timeout)) {
        Ok(stopped) => {
            let pid = stopped
                .pid
                .map_or_else(String::new, |p| format!(" (pid {p})"));
            let _ = print(&format!("traffic-guardian stopped{pid}\n"));
            ExitCode::SUCCESS
        }
        Err(Error::NotRunning { .. }) => {
            let _ = print("traffic-guardian is not running\n");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("traffic-guardian stop: {err}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn status(config: Option<&Path>, args: &StatusArgs) -> ExitCode {
    let (config, paths) = match load_lenient(config, "status") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let probe = match lifecycle::probe(&paths) {
        Ok(probe) => probe,
        Err(err) => {
            eprintln!("traffic-guardian status: {err}");
            return ExitCode::FAILURE;
        }
    };
    let (live, cleaned) = match probe {
        Probe::Running { .. } => (
            Some(control::request(
                &paths.control_socket(),
                &Request::Status,
                Duration::from_secs(5),
            )),
            Vec::new(),
        ),
        Probe::NotRunning { notes } => (None, notes),
    };
    let status = match &live {
        Some(Ok(response)) => response.status.as_deref().cloned(),
        _ => None,
    };
    let status = match status {
        Some(status) => status,
        None => match offline_status(&config, &paths) {
            Ok(mut status) => {
                status.notes.splice(0..0, cleaned);
                if let Some(Err(err)) = live {
                    status
                        .degraded
                        .push(format!("control socket did not answer: {err}"));
                }
                status
            }
            Err(err) => {
                eprintln!("traffic-guardian status: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    let printed = if args.json {
        print_json(&status)
    } else {
        print(&human(&status))
    };
    if let Err(code) = printed {
        return code;
    }
    if status.running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    }
}

/// The status for people.
fn human(status: &Status) -> String {
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
