//! `traffic-guardian`: the host binary. It parses arguments, sets up
//! logging and calls the libraries; it holds no logic of its own.

mod scan;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// NanoClaw traffic guardian: an opt-in, detect-and-log HTTP/HTTPS proxy for
/// agent containers.
#[derive(Debug, Parser)]
#[command(name = "traffic-guardian", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan HAR captures or plain files offline with the proxy's engine.
    Scan(scan::ScanArgs),
}

/// Exit status for a usage or input error, as clap uses for bad arguments.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Scan(args) => scan::run(&args),
    }
}

/// Logs go to stderr; stdout carries command output only.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAFFIC_GUARDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
