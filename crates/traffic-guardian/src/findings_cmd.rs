//! `findings` and `report`: read the current and rotated JSONL files.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use traffic_guardian_core::{
    FindingQuery, Severity, ThreatType, Timestamp, format_markdown, format_table,
};

use crate::EXIT_FAILED;
use crate::output::{load_lenient, parse_time, print, print_json};

#[derive(Debug, Args)]
pub(crate) struct FindingsArgs {
    /// Only findings at or after this time (RFC 3339, or an age: 30m, 12h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<Timestamp>,
    /// Only findings before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Timestamp>,
    /// Only findings at least this severe (low, medium, high, critical).
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    severity: Option<Severity>,
    /// Only EXFIL or INJECTION findings.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    threat_type: Option<ThreatType>,
    /// Only findings of this runtime (repeatable).
    #[arg(long, value_name = "NAME")]
    runtime: Vec<String>,
    /// Show at most this many (the newest), 1 or more.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = parse_limit)]
    limit: usize,
    /// Print JSON: {"matched", "skipped_lines", "findings": [...]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Start of the range (RFC 3339, or an age: 30m, 12h, 7d). Default: all.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<Timestamp>,
    /// End of the range (exclusive). Default: now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Timestamp>,
    /// Only this runtime (repeatable).
    #[arg(long, value_name = "NAME")]
    runtime: Vec<String>,
}

fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    text.parse().map_err(|err| format!("{err}"))
}

fn parse_type(text: &str) -> Result<ThreatType, String> {
    text.parse().map_err(|err| format!("{err}"))
}

fn runtimes(names: &[String]) -> Option<Vec<String>> {
    (!names.is_empty()).then(|| names.to_vec())
}

pub(crate) fn findings(config: Option<&Path>, args: &FindingsArgs) -> ExitCode {
    let (_config, paths) = match load_lenient(config, "findings") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let query = FindingQuery {
        since: args.since,
        until: args.until,
        min_severity: args.severity,
        threat_type: args.threat_type,
        direction: None,
        runtimes: runtimes(&args.runtime),
        limit: Some(args.limit),
    };
    let report = match query.run(&paths.log_dir) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("traffic-guardian findings: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let printed = if args.json {
        print_json(&serde_json::json!({
            "matched": report.matched,
            "skipped_lines": report.skipped_lines,
            "findings": report.findings,
        }))
    } else {
        if report.skipped_lines > 0 {
            eprintln!(
                "traffic-guardian findings: {} unreadable lines skipped (a torn last line after a crash is normal)",
                report.skipped_lines
            );
        }
        if report.matched > report.findings.len() as u64 {
            eprintln!(
                "traffic-guardian findings: showing the newest {} of {} matches (--limit)",
                report.findings.len(),
                report.matched
            );
        }
        print(&format_table(&report.findings))
    };
    printed.map_or_else(|code| code, |()| ExitCode::SUCCESS)
}

pub(crate) fn report(config: Option<&Path>, args: &ReportArgs) -> ExitCode {
    let (_config, paths) = match load_lenient(config, "report") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let query = FindingQuery {
        since: args.since,
        until: args.until,
        runtimes: runtimes(&args.runtime),
        ..FindingQuery::default()
    };
    let report = match query.run(&paths.log_dir) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("traffic-guardian report: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let range = match (args.since, args.until) {
        (None, None) => "all stored findings".to_owned(),
        (Some(since), None) => format!("since {since}"),
        (None, Some(until)) => format!("until {until}"),
        (Some(since), Some(until)) => format!("{since} to {until}"),
    };
    let mut text = format_markdown(
        &report.findings,
        &format!("Traffic guardian report: {range}"),
    );
    if report.skipped_lines > 0 {
        text.push_str(&format!(
            "\n_{} unreadable log lines were skipped._\n",
            report.skipped_lines
        ));
    }
    print(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS)
}
