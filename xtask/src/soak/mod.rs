//! `cargo xtask soak`: the real guardian under a bounded, mixed load for a
//! while, then an exact account of what it served and recorded.
//!
//! The release `traffic-guardian` runs as a child with a temporary home:
//! runtime `plain` (HTTPS tunnelled) and runtime `inspected` (HTTPS
//! decrypted with the guardian's own CA), a short dedup window and a small
//! rotation size. A loopback upstream (plain and TLS, its own test CA that
//! the guardian trusts through `upstream_ca_files`) answers. The load mixes
//! benign traffic, requests carrying secrets (a fresh one each time, or one
//! of a few shared ones), and responses carrying injection shapes, over
//! plain HTTP, inspected HTTPS (h1 and h2) and tunnels, on keep-alive and
//! fresh connections.
//!
//! When the time is up the guardian is stopped gracefully, every findings
//! file is read, and the run fails on a failed request, a lost or extra
//! finding occurrence, a line dedup should have merged, a leaked canary,
//! steady memory or descriptor growth, or an unclean exit.

mod canary;
mod guardian;
mod latency;
mod ledger;
mod load;
mod mix;
mod report;
mod rng;
mod sample;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use traffic_guardian_test_support::client::{Route, proxy_user, tls_client_config};
use traffic_guardian_test_support::{TestCa, UpstreamServer, procfs};

use canary::Canaries;
use guardian::{Home, Settings};
use mix::{INSPECTED_RUNTIME, Lane};
use report::Report;
use rng::Rng;

/// Seconds when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;
/// How long the guardian may take to see every client connection close
/// once the load ends.
const QUIET_TIMEOUT: Duration = Duration::from_secs(10);
/// Client connections open at once when `--connections` is not given.
const DEFAULT_CONNECTIONS: usize = 24;
/// Out of a hundred sessions, how many use a fresh connection.
const FRESH_PERCENT: u64 = 25;
/// The guardian's dedup window when `--dedup-window` is not given: short,
/// so windows close and summaries are written while the load runs.
const DEDUP_WINDOW_SECS: u64 = 5;
/// The keys the guardian's dedup table holds (`DedupConfig::max_keys`,
/// not configurable): with more values than this in a window, the oldest
/// key is evicted early with its summary.
const DEDUP_MAX_KEYS: u64 = 10_000;
/// The rotation size: small, so the log rotates many times.
const ROTATE_BYTES: u64 = 128 * 1024;
/// Rotated files kept: enough that none is deleted, so every line counts.
const KEEP_FILES: usize = 100_000;

/// What the command line asked for.
#[derive(Debug, Clone, Copy)]
struct Options {
    seconds: u64,
    connections: usize,
    rate: Option<f64>,
    seed: Option<u64>,
    dedup_window_secs: u64,
    json: bool,
    keep: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            seconds: DEFAULT_SECONDS,
            connections: DEFAULT_CONNECTIONS,
            rate: None,
            seed: None,
            dedup_window_secs: DEDUP_WINDOW_SECS,
            json: false,
            keep: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .with_context(|| format!("{name} needs a value"))
                    .map(String::as_str)
            };
            match arg.as_str() {
                "--seconds" => options.seconds = number(value("--seconds")?)?,
                "--connections" => options.connections = number(value("--connections")?)?,
                "--rate" => {
                    let rate: f64 = number(value("--rate")?)?;
                    options.rate = (rate > 0.0).then_some(rate);
                }
                "--seed" => {
                    let text = value("--seed")?;
                    let seed = match text.strip_prefix("0x") {
                        Some(hex) => u64::from_str_radix(hex, 16).ok(),
                        None => text.parse().ok(),
                    };
                    options.seed =
                        Some(seed.with_context(|| format!("--seed {text:?} is not a number"))?);
                }
                "--dedup-window" => {
                    options.dedup_window_secs = number(value("--dedup-window")?)?;
                    if options.dedup_window_secs == 0 {
                        bail!("--dedup-window must be at least 1 (0 turns dedup off)");
                    }
                }
                "--json" => options.json = true,
                "--keep" => options.keep = true,
                other => bail!("unknown soak argument {other:?}"),
            }
        }
        if options.seconds < 5 {
            bail!("--seconds must be at least 5 (warm-up plus a trend)");
        }
        if !(1..=512).contains(&options.connections) {
            bail!("--connections must be 1 to 512");
        }
        Ok(options)
    }

    /// Samples before this are warm-up: caches, pools, allocator arenas
    /// and the dedup table are still filling. A quarter of the run, and at
    /// least one dedup window (the table is not full before it ends).
    fn warm_up(&self) -> Duration {
        let quarter = (self.seconds as f64 * 0.25).clamp(2.0, 60.0);
        Duration::from_secs_f64(quarter.max(self.dedup_window_secs as f64 + 5.0))
    }

    /// The shortest run whose trends are judged: its warm-up ends by half
    /// way and leaves a second half of at least [`report::MIN_TREND_SECS`].
    fn judged_from_secs(&self) -> u64 {
        (5..)
            .find(|&seconds| {
                let run = Options { seconds, ..*self };
                let warm = run.warm_up().as_secs_f64();
                let seconds = seconds as f64;
                warm <= seconds / 2.0 && (seconds - warm) / 2.0 >= report::MIN_TREND_SECS + 1.0
            })
            .unwrap_or(u64::MAX)
    }

    fn sample_every(&self) -> Duration {
        if self.seconds <= 60 {
            Duration::from_millis(500)
        } else {
            Duration::from_secs((self.seconds / 120).max(1))
        }
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a number"))
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    eprintln!("== soak: building traffic-guardian (release)");
    let bin = guardian::build()?;
    let tmp = tempfile::Builder::new()
        .prefix("traffic-guardian-soak-")
        .tempdir()
        .context("creating a temporary folder")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(soak(&options, bin, tmp.path()));
    runtime.shutdown_timeout(Duration::from_secs(5));
    if options.keep {
        let kept = tmp.keep();
        eprintln!("== soak: kept {}", kept.display());
    }
    let report = report?;
    if options.json {
        println!("{:#}", report.json());
    } else {
        print!("{}", report.table());
    }
    let failures = report.failures();
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    Ok(())
}

async fn soak(options: &Options, bin: std::path::PathBuf, root: &Path) -> Result<Report> {
    let seed = options.seed.unwrap_or_else(Rng::fresh_seed);
    let mut rng = Rng::new(seed);
    let canaries = Canaries::new(&mut rng);

    let upstream_ca = TestCa::new("soak upstream");
    let plain = UpstreamServer::start(mix::routes()).await;
    let tls =
        UpstreamServer::start_tls(mix::routes(), upstream_ca.server_config(&["127.0.0.1"])).await;

    let home = Home::new(bin, root);
    let settings = Settings {
        rotate_bytes: ROTATE_BYTES,
        keep_files: KEEP_FILES,
        dedup_window_secs: options.dedup_window_secs,
    };
    home.prepare(&upstream_ca.cert_file(), &settings)?;
    let mut guardian = home.start()?;
    let pid = guardian.pid();
    eprintln!(
        "== soak: guardian pid {pid} on {}; {} connections for {} s",
        guardian.addr(),
        options.connections,
        options.seconds
    );
    let guardian_ca = CertificateDer::from_pem_slice(home.ca_pem()?.as_bytes())
        .context("reading the guardian CA")?;
    let inspected = proxy_user(INSPECTED_RUNTIME);
    let routes: Vec<Route> = Lane::ALL
        .iter()
        .map(|lane| {
            let origin = if lane.tls() { tls.addr() } else { plain.addr() };
            let route = Route::direct(origin).via(guardian.addr());
            match lane {
                Lane::PlainHttp => route,
                Lane::InspectedHttp => route.proxy_authorization(inspected.clone()),
                Lane::InspectedHttps => route
                    .tls(tls_client_config(guardian_ca.clone(), &[b"http/1.1"]))
                    .proxy_authorization(inspected.clone()),
                Lane::InspectedH2 => route
                    .tls(tls_client_config(guardian_ca.clone(), &[b"h2"]))
                    .proxy_authorization(inspected.clone()),
                Lane::Tunnelled => {
                    route.tls(tls_client_config(upstream_ca.cert_der(), &[b"http/1.1"]))
                }
            }
        })
        .collect();

    let before = sample::read(pid, 0.0);
    let started = Instant::now();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample::spawn(pid, started, options.sample_every(), stop_sampling.clone());
    let plan = Arc::new(load::Plan {
        canaries: canaries.clone(),
        routes,
        deadline: started + Duration::from_secs(options.seconds),
        fresh_percent: FRESH_PERCENT,
        rate: options.rate,
        started,
        sequence: AtomicU64::new(0),
        served: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let progress = tokio::spawn(progress(plan.clone()));
    let tally = load::run(plan.clone(), options.connections, rng.next_u64()).await;
    let load_secs = started.elapsed().as_secs_f64();
    progress.abort();
    stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    // A run too short for its warm-up still shows its trend, from half
    // way, but the trend is not judged.
    let warm = options.warm_up().as_secs_f64();
    let half = options.seconds as f64 / 2.0;
    let rss = sample::trend(&samples, warm.min(half), |s| s.rss_kib as f64);
    let fds = sample::trend(&samples, warm.min(half), |s| s.fds as f64);
    let peak_rss_kib = procfs::memory(pid).map(|m| m.peak_kib);

    // A guardian that died or hangs is a finding of the soak, not a reason
    // to skip the account of what it wrote.
    let mut problems = Vec::new();
    // The idle reading waits until the guardian has seen every client
    // connection close. Each status call is a run of the CLI, which paces
    // the asking.
    let quiet_by = Instant::now() + QUIET_TIMEOUT;
    let status = loop {
        match home.status() {
            Ok(status) if status["traffic"]["connections_open"] == 0 => break status,
            Ok(status) if Instant::now() >= quiet_by => {
                problems.push(format!(
                    "client connections still open {QUIET_TIMEOUT:?} after the load ended: {}",
                    status["traffic"]["connections_open"]
                ));
                break status;
            }
            Ok(_) => {}
            Err(err) => {
                problems.push(format!("status failed: {err:#}"));
                break serde_json::Value::Null;
            }
        }
    };
    let after = sample::read(pid, started.elapsed().as_secs_f64());
    let (stop_took, exit_ok) = match home.stop(&mut guardian) {
        Ok((took, exit)) => (took, exit.success()),
        Err(err) => {
            problems.push(format!("graceful stop failed: {err:#}"));
            (started.elapsed(), false)
        }
    };
    let total_secs = started.elapsed().as_secs_f64();
    drop(guardian);

    let recorded = ledger::read(&home.log_dir())?;
    // A repeated value opens at most one window per dedup window of the
    // run, and each window writes a first line and at most one summary. A
    // full table evicts its oldest key early: a key that came back is the
    // newest, so it goes again only after every other key does, once per
    // table's worth of new keys.
    let windows = (total_secs / options.dedup_window_secs as f64).ceil() as u64 + 1;
    let evictions = recorded.lines().div_ceil(DEDUP_MAX_KEYS);
    let max_lines_per_value = 2 * (windows + evictions);
    let comparison = ledger::compare(&tally.owed, &recorded, max_lines_per_value);
    let leaks = canary::scan(&[root], &canaries)?;
    let log = without_ansi(&std::fs::read_to_string(home.service_log()).unwrap_or_default());
    let unique_keys_sent = ["unique key", "big upload"]
        .iter()
        .filter_map(|name| tally.exchanges.get(name))
        .sum::<u64>()
        + tally.abandoned;

    Ok(Report {
        seconds: options.seconds,
        warm_up_secs: warm,
        judged_from_secs: options.judged_from_secs(),
        connections: options.connections,
        rate: options.rate,
        fresh_percent: FRESH_PERCENT,
        seed,
        dedup_window_secs: options.dedup_window_secs,
        rotate_bytes: ROTATE_BYTES,
        load_secs,
        tally,
        unique_keys_sent,
        recorded,
        comparison,
        max_lines_per_value,
        leaks,
        before,
        after,
        peak_rss_kib,
        sampled: !samples.is_empty(),
        samples,
        rss,
        fds,
        status,
        stop_took,
        exit_ok,
        problems,
        service_log_warnings: log.lines().filter(|l| l.contains(" WARN ")).count() as u64,
        service_log_errors: log.lines().filter(|l| l.contains(" ERROR ")).count() as u64,
    })
}

/// A line on stderr every half minute, so a long run shows it is alive.
async fn progress(plan: Arc<load::Plan>) {
    const EVERY: Duration = Duration::from_secs(30);
    let mut next = plan.started + EVERY;
    while next < plan.deadline {
        tokio::time::sleep_until(next.into()).await;
        eprintln!(
            "== soak: {:.0} s, {} requests answered, {} failed",
            plan.started.elapsed().as_secs_f64(),
            plan.served.load(Ordering::Relaxed),
            plan.failed.load(Ordering::Relaxed)
        );
        next += EVERY;
    }
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_sequences_are_dropped() {
        assert_eq!(
            without_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x"),
            "2026  WARN x"
        );
        assert_eq!(without_ansi("plain"), "plain");
    }

    #[test]
    fn options() {
        let parse = |args: &[&str]| {
            Options::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
        };
        let o = parse(&[
            "--seconds",
            "300",
            "--json",
            "--rate",
            "0",
            "--seed",
            "0x10",
        ])
        .unwrap();
        assert_eq!(
            (o.seconds, o.json, o.rate, o.seed),
            (300, true, None, Some(16))
        );
        assert_eq!(o.warm_up(), Duration::from_secs(60));
        assert_eq!(parse(&[]).unwrap().warm_up(), Duration::from_secs(15));
        let short = parse(&["--seconds", "10", "--dedup-window", "60"]).unwrap();
        assert_eq!(short.warm_up(), Duration::from_secs(65));
        assert_eq!(short.judged_from_secs(), 130);
        assert_eq!(parse(&[]).unwrap().judged_from_secs(), 56);
        assert!(parse(&["--seconds", "2"]).is_err());
        assert!(parse(&["--connections", "0"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--seconds"]).is_err());
    }
}
