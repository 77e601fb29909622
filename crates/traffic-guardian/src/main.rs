//! `traffic-guardian`: the host binary. It parses arguments, sets up
//! logging and calls the libraries; it holds no logic of its own.

use std::process::ExitCode;

use clap::Parser;

/// NanoClaw traffic guardian: an opt-in, detect-and-log HTTP/HTTPS proxy for
/// agent containers.
#[derive(Debug, Parser)]
#[command(name = "traffic-guardian", version)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}
