//! `run`, `start`, `stop` and `status`: the service's lifecycle commands.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use traffic_guardian_host::lifecycle::{self, READY_LINE_PREFIX};
use traffic_guardian_host::{Error, Guardian, StartOptions, current_status};

use crate::output::{load, load_lenient, print, print_json};

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
    let status = match current_status(&config, &paths) {
        Ok(status) => status,
        Err(err) => {
            eprintln!("traffic-guardian status: {err}");
            return ExitCode::FAILURE;
        }
    };
    let printed = if args.json {
        print_json(&status)
    } else {
        print(&status.to_text())
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
