//! `traffic-guardian`: the host binary. It parses arguments, sets up
//! logging and calls the libraries; it holds no logic of its own.

mod ca_cmd;
mod config_cmd;
mod findings_cmd;
mod output;
mod scan;
mod service_cmd;
mod setup_cmd;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// NanoClaw traffic guardian: an opt-in, detect-and-log HTTP/HTTPS proxy for
/// agent containers.
#[derive(Debug, Parser)]
#[command(name = "traffic-guardian", version, about)]
struct Cli {
    /// The config file (default: $NANOCLAW_TRAFFIC_GUARDIAN_CONFIG, else
    /// <home>/config.json if it exists, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the guardian in the foreground (for launchd and systemd).
    /// SIGTERM drains gracefully, SIGINT stops fast.
    Run,
    /// Start the guardian in the background; returns once it is ready.
    Start(service_cmd::StartArgs),
    /// Stop the background guardian and wait until it has exited.
    Stop(service_cmd::StopArgs),
    /// Show whether the guardian runs, and what it has seen.
    Status(service_cmd::StatusArgs),
    /// Check the config without starting anything or opening a port.
    CheckConfig(config_cmd::CheckArgs),
    /// Manage the guardian's own certificate authority.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// List stored findings, newest first.
    Findings(findings_cmd::FindingsArgs),
    /// Print a markdown summary of stored findings.
    Report(findings_cmd::ReportArgs),
    /// Print the exact wiring for a container runtime.
    Setup(setup_cmd::SetupArgs),
    /// Scan HAR captures or plain files offline with the proxy's engine.
    Scan(scan::ScanArgs),
}

/// Exit status for a usage or input error, as clap uses for bad arguments.
const EXIT_USAGE: u8 = 2;
/// Exit status for an operation that could not be done (SPEC.md, CLI).
const EXIT_FAILED: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run => "info",
        _ => "warn",
    };
    init_logging(default_level);
    let config = cli.config.as_deref();
    match cli.command {
        Command::Run => service_cmd::run(config),
        Command::Start(args) => service_cmd::start(config, &args),
        Command::Stop(args) => service_cmd::stop(config, &args),
        Command::Status(args) => service_cmd::status(config, &args),
        Command::CheckConfig(args) => config_cmd::check(config, &args),
        Command::Ca(command) => ca_cmd::run(config, &command),
        Command::Findings(args) => findings_cmd::findings(config, &args),
        Command::Report(args) => findings_cmd::report(config, &args),
        Command::Setup(args) => setup_cmd::run(config, &args),
        Command::Scan(args) => scan::run(&args),
    }
}

/// Logs go to stderr; stdout carries command output only. Colours only
/// on a terminal: `start` sends stderr to `run/service.log`, which must
/// stay plain text for operators and their tools.
fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAFFIC_GUARDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
