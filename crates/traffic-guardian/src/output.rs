//! Helpers every command shares: loading the config, writing to stdout, parsing times.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use traffic_guardian_core::Timestamp;
use traffic_guardian_host::config::{self, Env};
use traffic_guardian_host::{Config, StatePaths};

use crate::EXIT_USAGE;

/// Loads and checks the config. On errors, prints every problem to stderr
/// and returns the exit code to use.
pub(crate) fn load(
    explicit: Option<&Path>,
    command: &str,
) -> Result<(Config, StatePaths), ExitCode> {
    let env = Env::from_process();
    let loaded = config::load(&env, explicit);
    match loaded.into_valid() {
        Ok((config, report)) => {
            for problem in &report.problems {
                eprintln!("traffic-guardian {command}: config {problem}");
            }
            match StatePaths::new(&config, &env) {
                Ok(paths) => Ok((config, paths)),
                Err(err) => {
                    eprintln!("traffic-guardian {command}: {err}");
                    Err(ExitCode::from(EXIT_USAGE))
                }
            }
        }
        Err(err) => {
            eprintln!("traffic-guardian {command}: {err}");
            eprintln!("(run `traffic-guardian check-config` for details)");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// Loads the config without the file-system checks: for commands that
/// only read state (status, findings, report, ca show). Problems that
/// are errors in the file or the environment still stop them.
pub(crate) fn load_lenient(
    explicit: Option<&Path>,
    command: &str,
) -> Result<(Config, StatePaths), ExitCode> {
    let env = Env::from_process();
    let loaded = config::load(&env, explicit);
    if loaded.problems.iter().any(|p| p.is_error()) {
        for problem in &loaded.problems {
            eprintln!("traffic-guardian {command}: config {problem}");
        }
        return Err(ExitCode::from(EXIT_USAGE));
    }
    match StatePaths::new(&loaded.config, &env) {
        Ok(paths) => Ok((loaded.config, paths)),
        Err(err) => {
            eprintln!("traffic-guardian {command}: {err}");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// Writes `text` to stdout; a closed pipe is not an error.
pub(crate) fn print(text: &str) -> Result<(), ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => {
            eprintln!("traffic-guardian: writing output: {err}");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), ExitCode> {
    match serde_json::to_string_pretty(value) {
        Ok(text) => print(&(text + "\n")),
        Err(err) => {
            eprintln!("traffic-guardian: encoding JSON: {err}");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// Parses a point in time: RFC 3339 (`2026-11-29T12:00:00Z`) or an age
/// before now (`90s`, `30m`, `12h`, `7d`).
pub(crate) fn parse_time(text: &str) -> Result<Timestamp, String> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let text = text.trim();
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if per > 0 => {
            Ok(Timestamp::now().saturating_sub(Duration::from_secs(n.saturating_mul(per))))
        }
        _ => Err(format!(
            "{text:?} is not a time: use RFC 3339 (2026-11-29T12:00:00Z) or an age such as 30m, 12h, 7d"
        )),
    }
}
