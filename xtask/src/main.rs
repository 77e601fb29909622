//! `cargo xtask <task>`: developer tasks that need more than one cargo command.

mod fuzz;
mod soak;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci           run what CI runs: fmt check, clippy, the whole test suite
  bench scan   scan throughput against a bare keyword prefilter, as a ratio
  bench proxy  the guardian against two baselines in one run (direct, and
               a bare hyper hop): req/s ratio, p50/p99 latency, peak RSS,
               a 1 GiB download, RSS at 1,000 idle keep-alive connections
               (about a minute)
  fuzz [--seconds N | --smoke] [TARGET...]
               run the fuzz targets for a bounded time (needs cargo-fuzz)
  soak [--seconds N] [--connections C] [--rate R] [--dedup-window S]
       [--seed X] [--json] [--keep]
               the release guardian under mixed load for N s (default 60):
               requests and errors, findings expected vs recorded (none
               lost, none duplicated beyond dedup), canary leaks, RSS and
               fd trends, a clean graceful stop; fails on any of them
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            eprint!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n\n{USAGE}"),
    }
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace"])
}

fn bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("scan") => cargo(&["bench", "-p", "traffic-guardian-core", "--bench", "scan"]),
        Some("proxy") => cargo(&["bench", "-p", "traffic-guardian-proxy", "--bench", "proxy"]),
        Some(other) => bail!("unknown bench {other:?}\n\n{USAGE}"),
        None => bail!("which bench?\n\n{USAGE}"),
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = cargo_command()
        .args(args)
        .status()
        .context("starting cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// A nested `cargo` that does not invalidate the artifacts of the build
/// that ran xtask.
pub(crate) fn cargo_command() -> Command {
    traffic_guardian_test_support::nested_cargo()
}
