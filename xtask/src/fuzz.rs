//! `cargo xtask fuzz`: run every fuzz target for a bounded time and report
//! executions per target.
//!
//! The targets live in `fuzz/` (a cargo-fuzz project outside the
//! workspace). They build on the stable toolchain with `RUSTC_BOOTSTRAP=1`
//! and no sanitizer: the project forbids `unsafe`, so the value is in
//! coverage-guided inputs and the targets' own assertions.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Every target, in the order they run.
const TARGETS: &[&str] = &[
    "decode_content",
    "decode_text",
    "scan_redact",
    "har",
    "ipc_task",
    "config",
];

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target for `--smoke` (what CI runs, on a debug build).
const SMOKE_SECONDS: u64 = 5;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut smoke = false;
    let mut chosen: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--smoke" => {
                seconds = SMOKE_SECONDS;
                smoke = true;
            }
            "--seconds" => {
                let value = it.next().context("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds {value:?} is not a number"))?;
            }
            target if TARGETS.contains(&target) => chosen.push(target),
            other => bail!(
                "unknown fuzz argument {other:?}; targets: {}",
                TARGETS.join(", ")
            ),
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.to_vec();
    }
    ensure_cargo_fuzz()?;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut rows = Vec::new();
    for target in chosen {
        let corpus = root.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        eprintln!("== fuzz {target} for {seconds}s");
        let mut fuzz = Command::new("cargo");
        fuzz.current_dir(&root).env("RUSTC_BOOTSTRAP", "1").args([
            "fuzz",
            "run",
            target,
            "--sanitizer",
            "none",
        ]);
        if smoke {
            // A smoke run executes for seconds: an unoptimised build is
            // ready much sooner and still finds what a few seconds can.
            fuzz.arg("--dev");
        }
        let output = fuzz
            .arg(&corpus)
            .arg(root.join("seeds").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=1024")
            .output()
            .with_context(|| format!("running cargo fuzz for {target}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("fuzz target {target} failed:\n{}", tail.join("\n"));
        }
        let runs = done_runs(&stderr)
            .with_context(|| format!("no \"Done N runs\" line from {target}:\n{stderr}"))?;
        rows.push((target, runs));
    }
    println!(
        "{:<16} {:>8} {:>14} {:>12}",
        "target", "seconds", "executions", "exec/s"
    );
    for (target, runs) in rows {
        println!(
            "{target:<16} {seconds:>8} {runs:>14} {:>12}",
            runs / seconds.max(1)
        );
    }
    Ok(())
}

/// The executions libFuzzer reports in its final `Done N runs in S second(s)`.
fn done_runs(stderr: &str) -> Option<u64> {
    let line = stderr.lines().rev().find(|l| l.starts_with("Done "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ensure_cargo_fuzz() -> Result<()> {
    let found = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        bail!("cargo-fuzz is not installed; install it with: cargo install --locked cargo-fuzz");
    }
    Ok(())
}
