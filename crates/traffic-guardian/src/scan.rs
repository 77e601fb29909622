//! `traffic-guardian scan`: arguments and output of offline scanning.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use traffic_guardian_core::offline::{OfflineScan, scan_input};
use traffic_guardian_core::{
    Direction, Engine, EngineConfig, Severity, format_markdown, format_table,
};

use crate::EXIT_USAGE;

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// HAR 1.2 files, plain files, or `-` for standard input.
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<String>,

    /// Scan the inputs as plain text in this direction instead of as HAR.
    #[arg(long, value_enum)]
    direction: Option<DirectionArg>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,

    /// Exit with status 1 when a finding at or above this severity exists.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    fail_on: Option<Severity>,

    /// Body bytes scanned per message (the proxy's bound).
    #[arg(long, value_name = "BYTES", default_value_t = traffic_guardian_core::DEFAULT_MAX_SCAN_BYTES)]
    max_scan_bytes: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DirectionArg {
    Outbound,
    Inbound,
    Both,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// One finding per line, as the proxy writes them.
    Jsonl,
    /// An aligned table for terminals.
    Table,
    /// A markdown summary.
    Markdown,
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    text.parse().map_err(|err| format!("{err}"))
}

pub(crate) fn run(args: &ScanArgs) -> ExitCode {
    let config = EngineConfig {
        max_scan_bytes: args.max_scan_bytes,
        ..EngineConfig::default()
    };
    let engine = match Engine::new(config) {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("traffic-guardian scan: --max-scan-bytes: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let directions: Option<&[Direction]> = args.direction.map(|d| match d {
        DirectionArg::Outbound => &[Direction::Outbound][..],
        DirectionArg::Inbound => &[Direction::Inbound][..],
        DirectionArg::Both => &[Direction::Outbound, Direction::Inbound][..],
    });

    let mut total = OfflineScan::default();
    for input in &args.inputs {
        match scan_input(&engine, input, directions) {
            Ok(scan) => {
                for note in &scan.notes {
                    eprintln!("traffic-guardian scan: {input}: {note}");
                }
                if scan.unscanned_bytes > 0 {
                    eprintln!(
                        "traffic-guardian scan: {input}: {} bytes beyond the scan bound of {} per message were not scanned",
                        scan.unscanned_bytes, args.max_scan_bytes
                    );
                }
                total.findings.extend(scan.findings);
            }
            Err(err) => {
                eprintln!("traffic-guardian scan: {err}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }

    let output = match args.format {
        Format::Jsonl => total
            .findings
            .iter()
            .map(|f| f.to_json_line() + "\n")
            .collect::<String>(),
        Format::Table => format_table(&total.findings),
        Format::Markdown => format_markdown(&total.findings, "traffic-guardian scan"),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("traffic-guardian scan: writing output: {err}");
        return ExitCode::from(EXIT_USAGE);
    }
    match args.fail_on {
        Some(threshold) if total.findings.iter().any(|f| f.severity >= threshold) => {
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}
