//! `traffic-guardian-mcp`: the MCP server that runs inside an agent
//! container. It sets up logging to stderr and serves MCP on stdio; all
//! logic lives in the library.

#![deny(clippy::print_stdout)]

use std::process::ExitCode;

fn main() -> ExitCode {
    init_logging();
    match traffic_guardian_mcp::run_stdio() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout is the MCP channel); `TRAFFIC_GUARDIAN_LOG`
/// sets the filter, default `warn`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAFFIC_GUARDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
