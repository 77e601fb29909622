//! `check-config`: every problem with its field path and reason; exit 0 valid, 1 invalid.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use traffic_guardian_host::config::{self, Env};

use crate::output::{print, print_json};

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn check(explicit: Option<&Path>, args: &CheckArgs) -> ExitCode {
    let loaded = config::load(&Env::from_process(), explicit);
    let report = loaded.report();
    let printed = if args.json {
        print_json(&report)
    } else {
        let mut out = String::new();
        let source = report.source.as_ref().map_or_else(
            || "built-in defaults".to_owned(),
            |p| p.display().to_string(),
        );
        let verdict = if report.valid { "valid" } else { "INVALID" };
        let _ = writeln!(out, "config {verdict} ({source})");
        for problem in &report.problems {
            let _ = writeln!(out, "  {problem}");
        }
        print(&out)
    };
    if let Err(code) = printed {
        return code;
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
