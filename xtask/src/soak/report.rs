//! The soak's verdict: what it checks, and the report as a table for
//! people or JSON for machines.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::canary::LeakScan;
use super::ledger::{Comparison, Recorded};
use super::load::Tally;
use super::mix::Lane;
use super::sample::{Sample, Trend};

/// Resident memory may not grow faster than this over the second half of
/// the loaded period…
pub(crate) const RSS_SLOPE_LIMIT_KIB_PER_MIN: f64 = 1024.0;
/// …unless the fitted growth across that half stays below this much.
/// Bounded structures grow in steps, at moments that vary from run to
/// run: the dedup table doubles its capacity on the way to its 10,000
/// keys (several MiB at once), allocator arenas warm up. A leak keeps
/// climbing past any one step; longer runs judge smaller leaks.
pub(crate) const RSS_GROWTH_FLOOR_KIB: f64 = 8192.0;
/// Open descriptors may not grow by more than this across the second half
/// (connections come and go; a leak only climbs).
pub(crate) const FD_GROWTH_LIMIT: f64 = 16.0;
/// A trend over a shorter second half than this is shown but not judged:
/// one allocator step would look like a leak.
pub(crate) const MIN_TREND_SECS: f64 = 20.0;

/// Everything the soak measured.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) seconds: u64,
    pub(crate) warm_up_secs: f64,
    /// Runs this long or longer have their trends judged.
    pub(crate) judged_from_secs: u64,
    pub(crate) connections: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) fresh_percent: u64,
    pub(crate) seed: u64,
    pub(crate) dedup_window_secs: u64,
    pub(crate) rotate_bytes: u64,
    pub(crate) load_secs: f64,
    pub(crate) tally: Tally,
    pub(crate) unique_keys_sent: u64,
    pub(crate) recorded: Recorded,
    pub(crate) comparison: Comparison,
    pub(crate) max_lines_per_value: u64,
    pub(crate) leaks: LeakScan,
    pub(crate) before: Option<Sample>,
    pub(crate) after: Option<Sample>,
    pub(crate) peak_rss_kib: Option<u64>,
    /// Whether any sample could be read at all.
    pub(crate) sampled: bool,
    pub(crate) samples: Vec<Sample>,
    pub(crate) rss: Option<Trend>,
    pub(crate) fds: Option<Trend>,
    pub(crate) status: Value,
    pub(crate) stop_took: Duration,
    pub(crate) exit_ok: bool,
    /// Steps that failed around the guardian (status, stop).
    pub(crate) problems: Vec<String>,
    pub(crate) service_log_warnings: u64,
    pub(crate) service_log_errors: u64,
}

impl Report {
    /// Why the soak failed; empty when it passed.
    pub(crate) fn failures(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        let c = &self.comparison;
        if self.tally.error_count() > 0 {
            out.push(format!("{} requests failed", self.tally.error_count()));
        }
        if self.tally.requests() == 0 {
            out.push("no request was served".into());
        }
        if c.missing() > 0 {
            out.push(format!("{} finding occurrences lost", c.missing()));
        }
        if c.extra() > 0 {
            out.push(format!(
                "{} finding occurrences recorded beyond the traffic",
                c.extra()
            ));
        }
        if c.unique_repeated > 0 {
            out.push(format!(
                "{} values sent once were recorded more than once",
                c.unique_repeated
            ));
        }
        if c.over_window > 0 {
            out.push(format!(
                "{} repeated values took more than {} lines (dedup windows)",
                c.over_window, self.max_lines_per_value
            ));
        }
        if self.recorded.corrupt_lines + self.recorded.malformed_lines > 0 {
            out.push(format!(
                "{} corrupt and {} malformed findings lines",
                self.recorded.corrupt_lines, self.recorded.malformed_lines
            ));
        }
        if !self.leaks.leaks.is_empty() {
            let files: Vec<String> = self
                .leaks
                .leaks
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            out.push(format!("canary secrets leaked into {}", files.join(", ")));
        }
        if let Some(rss) = self.judged(&self.rss)
            && rss.slope_per_min > RSS_SLOPE_LIMIT_KIB_PER_MIN
            && rss.fitted_growth > RSS_GROWTH_FLOOR_KIB
        {
            out.push(format!(
                "resident memory grows {:.0} KiB/min over the second half (limit {RSS_SLOPE_LIMIT_KIB_PER_MIN:.0})",
                rss.slope_per_min
            ));
        }
        if let Some(fds) = self.judged(&self.fds)
            && fds.fitted_growth > FD_GROWTH_LIMIT
        {
            out.push(format!(
                "open descriptors grow {:.1}/min over the second half ({:+.0} fitted, limit {FD_GROWTH_LIMIT:+.0})",
                fds.slope_per_min, fds.fitted_growth
            ));
        }
        if !self.sampled {
            out.push("no reading of the guardian's memory and descriptors".into());
        }
        let dropped = self.status["findings_dropped"].as_u64().unwrap_or(0);
        if dropped > 0 {
            out.push(format!(
                "the guardian dropped {dropped} finding occurrences"
            ));
        }
        let counted = self.status["traffic"]["requests"].as_u64().unwrap_or(0);
        if self.tally.error_count() == 0 && counted != self.tally.guardian_requests() {
            out.push(format!(
                "the guardian counted {counted} requests, the load made {} it could see",
                self.tally.guardian_requests()
            ));
        }
        if !self.exit_ok {
            out.push("the guardian did not exit cleanly after a graceful stop".into());
        }
        out
    }

    /// The trend, if the run was long enough to judge it.
    fn judged<'a>(&self, trend: &'a Option<Trend>) -> Option<&'a Trend> {
        trend
            .as_ref()
            .filter(|_| self.seconds >= self.judged_from_secs)
    }

    /// Why trends are not judged, if they are not.
    fn unjudged_note(&self) -> Option<String> {
        if self.seconds < self.judged_from_secs {
            return Some(format!(
                "trends not judged on runs shorter than {} s: a {:.0} s warm-up, then a second half of {MIN_TREND_SECS:.0} s",
                self.judged_from_secs, self.warm_up_secs
            ));
        }
        if self.rss.is_none() || self.fds.is_none() {
            return Some("trends not judged: too few samples".into());
        }
        None
    }

    pub(crate) fn throughput(&self) -> f64 {
        self.tally.requests() as f64 / self.load_secs.max(0.001)
    }

    /// The report as JSON.
    pub(crate) fn json(&self) -> Value {
        let t = &self.tally;
        let lanes: serde_json::Map<String, Value> = Lane::ALL
            .iter()
            .map(|lane| {
                let l = t.lanes.get(lane).cloned().unwrap_or_default();
                (
                    lane.key().to_owned(),
                    json!({
                        "requests": l.requests, "errors": l.errors, "connections": l.connections,
                        "p50_ms": ms(l.latency.quantile(0.50)), "p99_ms": ms(l.latency.quantile(0.99)),
                    }),
                )
            })
            .collect();
        let rows: Vec<Value> = self
            .comparison
            .rows
            .iter()
            .map(|r| {
                json!({
                    "rule": r.rule, "runtime": r.runtime, "protocol": r.protocol,
                    "expected": r.owed.certain, "expected_uncertain": r.owed.uncertain,
                    "recorded": r.recorded.occurrences, "lines": r.recorded.lines,
                    "missing": r.missing, "extra": r.extra,
                })
            })
            .collect();
        let trend = |t: &Option<Trend>| {
            t.map(|t| {
                json!({
                    "start": t.start, "end": t.end, "min": t.min, "max": t.max,
                    "slope_per_min": round(t.slope_per_min), "fitted_growth": round(t.fitted_growth),
                    "second_half_secs": round(t.span_secs), "samples": t.samples,
                })
            })
        };
        let failures = self.failures();
        json!({
            "passed": failures.is_empty(),
            "failures": failures,
            "settings": {
                "seconds": self.seconds, "warm_up_secs": self.warm_up_secs,
                "connections": self.connections, "rate": self.rate,
                "fresh_connection_percent": self.fresh_percent, "seed": self.seed,
                "dedup_window_secs": self.dedup_window_secs, "rotate_bytes": self.rotate_bytes,
            },
            "traffic": {
                "requests": t.requests(), "errors": t.error_count(), "errors_by_kind": t.errors,
                "error_samples": t.error_samples,
                "throughput_rps": round(self.throughput()),
                "p50_ms": ms(t.latency.quantile(0.50)), "p99_ms": ms(t.latency.quantile(0.99)),
                "connect_p50_ms": ms(t.connect.quantile(0.50)), "connect_p99_ms": ms(t.connect.quantile(0.99)),
                "connections": {"fresh": t.fresh_connections, "keep_alive": t.kept_connections},
                "bytes_sent": t.bytes_sent, "bytes_received": t.bytes_received,
                "lanes": lanes, "exchanges": t.exchanges,
                "abandoned_uploads": t.abandoned, "abandoned_uploads_echo_seen": t.abandoned_seen,
            },
            "findings": {
                "expected": self.comparison.rows.iter().map(|r| r.owed.certain).sum::<u64>(),
                "recorded": self.recorded.occurrences(), "lines": self.recorded.lines(),
                "missing": self.comparison.missing(), "extra": self.comparison.extra(),
                "unique_values": self.comparison.unique_subjects,
                "unique_values_recorded_twice": self.comparison.unique_repeated,
                "repeated_values": self.comparison.repeated_subjects,
                "max_lines_per_repeated_value": self.comparison.max_repeat_lines,
                "line_limit_per_repeated_value": self.max_lines_per_value,
                "files": self.recorded.files.len(),
                "bytes": self.recorded.files.iter().map(|f| f.bytes).sum::<u64>(),
                "highest_rotation": self.recorded.highest_rotation,
                "corrupt_lines": self.recorded.corrupt_lines, "malformed_lines": self.recorded.malformed_lines,
                "rows": rows,
            },
            "canaries": {
                "unique_secrets_sent": self.unique_keys_sent, "files_searched": self.leaks.files,
                "bytes_searched": self.leaks.bytes,
                "leaks": self.leaks.leaks.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            },
            "guardian": {
                "rss_kib": trend(&self.rss), "fds": trend(&self.fds),
                "trends_judged": self.unjudged_note().is_none(),
                "samples": self.samples.iter().map(|s| json!([round(s.at), s.rss_kib, s.fds])).collect::<Vec<_>>(),
                "peak_rss_kib": self.peak_rss_kib,
                "idle_before": self.before.map(|s| json!({"rss_kib": s.rss_kib, "fds": s.fds})),
                "idle_after": self.after.map(|s| json!({"rss_kib": s.rss_kib, "fds": s.fds})),
                "status": {
                    "requests": self.status["traffic"]["requests"],
                    "requests_by_the_load": self.tally.guardian_requests(),
                    "connections_total": self.status["traffic"]["connections_total"],
                    "findings_total": self.status["findings"]["total"],
                    "findings_dropped": self.status["findings_dropped"],
                    "upstream_errors": self.status["traffic"]["upstream_errors"],
                    "client_errors": self.status["traffic"]["client_errors"],
                    "degraded": self.status["degraded"],
                },
                "stop_secs": round(self.stop_took.as_secs_f64()), "exit_ok": self.exit_ok,
                "log_warnings": self.service_log_warnings, "log_errors": self.service_log_errors,
            },
        })
    }

    /// The report as a table.
    pub(crate) fn table(&self) -> String {
        let t = &self.tally;
        let mut out = String::new();
        let rate = self
            .rate
            .map_or("unlimited".to_owned(), |r| format!("{r:.0} req/s"));
        let _ = writeln!(
            out,
            "traffic-guardian soak: {} s ({:.0} s warm-up), {} connections, {}% fresh, rate {rate}, seed {:#x}",
            self.seconds, self.warm_up_secs, self.connections, self.fresh_percent, self.seed
        );
        let _ = writeln!(
            out,
            "dedup window {} s, rotation at {} KiB",
            self.dedup_window_secs,
            self.rotate_bytes / 1024
        );
        let _ = writeln!(out, "\nTRAFFIC");
        let _ = writeln!(
            out,
            "  {:<26} {:>9} {:>7} {:>7} {:>9} {:>9}",
            "lane", "requests", "errors", "conns", "p50", "p99"
        );
        for lane in Lane::ALL {
            let l = t.lanes.get(&lane).cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<26} {:>9} {:>7} {:>7} {:>9} {:>9}",
                lane.label(),
                l.requests,
                l.errors,
                l.connections,
                fmt_ms(l.latency.quantile(0.50)),
                fmt_ms(l.latency.quantile(0.99))
            );
        }
        let _ = writeln!(
            out,
            "  {:<26} {:>9} {:>7} {:>7} {:>9} {:>9}",
            "all",
            t.requests(),
            t.error_count(),
            t.fresh_connections + t.kept_connections,
            fmt_ms(t.latency.quantile(0.50)),
            fmt_ms(t.latency.quantile(0.99))
        );
        let _ = writeln!(
            out,
            "  throughput {:.0} req/s over {:.1} s; connections: {} fresh (one request), {} keep-alive; connect p50 {} p99 {}",
            self.throughput(),
            self.load_secs,
            t.fresh_connections,
            t.kept_connections,
            fmt_ms(t.connect.quantile(0.50)),
            fmt_ms(t.connect.quantile(0.99))
        );
        if t.errors.is_empty() {
            let _ = writeln!(out, "  errors: none");
        } else {
            for (kind, n) in &t.errors {
                let sample = t.error_samples.get(kind).map_or("", String::as_str);
                let _ = writeln!(out, "  errors: {n} {kind} (first: {sample})");
            }
        }
        let mix: Vec<String> = t
            .exchanges
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let _ = writeln!(out, "  mix: {}", mix.join(", "));
        let _ = writeln!(
            out,
            "  abandoned uploads: {} (the upstream's echo of the part sent seen for {})",
            t.abandoned, t.abandoned_seen
        );

        let _ = writeln!(out, "\nFINDINGS (occurrences = sum of count)");
        let _ = writeln!(
            out,
            "  {:<16} {:<10} {:<6} {:>9} {:>9} {:>8} {:>8}  verdict",
            "rule", "runtime", "proto", "expected", "recorded", "lines", "maybe"
        );
        for r in &self.comparison.rows {
            let verdict = match (r.missing, r.extra) {
                (0, 0) => "ok".to_owned(),
                (m, 0) => format!("MISSING {m}"),
                (0, e) => format!("EXTRA {e}"),
                (m, e) => format!("MISSING {m}, EXTRA {e}"),
            };
            let _ = writeln!(
                out,
                "  {:<16} {:<10} {:<6} {:>9} {:>9} {:>8} {:>8}  {verdict}",
                r.rule,
                r.runtime,
                r.protocol,
                r.owed.certain,
                r.recorded.occurrences,
                r.recorded.lines,
                r.owed.uncertain
            );
        }
        let c = &self.comparison;
        let _ = writeln!(
            out,
            "  total: expected {}, recorded {} in {} lines; missing {}, extra {}",
            c.rows.iter().map(|r| r.owed.certain).sum::<u64>(),
            self.recorded.occurrences(),
            self.recorded.lines(),
            c.missing(),
            c.extra()
        );
        let _ = writeln!(
            out,
            "  dedup: {} values sent once, {} recorded more than once; {} repeated values, at most {} lines each (limit {})",
            c.unique_subjects,
            c.unique_repeated,
            c.repeated_subjects,
            c.max_repeat_lines,
            self.max_lines_per_value
        );
        let _ = writeln!(
            out,
            "  files: {} holding {:.1} MiB (rotated up to findings.jsonl.{}), {} corrupt and {} malformed lines",
            self.recorded.files.len(),
            self.recorded.files.iter().map(|f| f.bytes).sum::<u64>() as f64 / (1024.0 * 1024.0),
            self.recorded.highest_rotation,
            self.recorded.corrupt_lines,
            self.recorded.malformed_lines
        );
        let _ = writeln!(
            out,
            "  canaries: {} unique secrets and 3 shared tokens sent; {} leaks in {} files ({:.1} MiB searched)",
            self.unique_keys_sent,
            self.leaks.leaks.len(),
            self.leaks.files,
            self.leaks.bytes as f64 / (1024.0 * 1024.0)
        );

        let _ = writeln!(out, "\nGUARDIAN");
        let mib = |kib: f64| format!("{:.1} MiB", kib / 1024.0);
        match &self.rss {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  RSS   start {}  end {}  range {}..{}  trend {:+.0} KiB/min over the last {:.0} s (fitted {:+.0} KiB)",
                    mib(r.start),
                    mib(r.end),
                    mib(r.min),
                    mib(r.max),
                    r.slope_per_min,
                    r.span_secs,
                    r.fitted_growth
                );
            }
            None => {
                let _ = writeln!(out, "  RSS   no trend");
            }
        }
        match &self.fds {
            Some(f) => {
                let _ = writeln!(
                    out,
                    "  fds   start {:.0}  end {:.0}  range {:.0}..{:.0}  trend {:+.1}/min (fitted {:+.1})",
                    f.start, f.end, f.min, f.max, f.slope_per_min, f.fitted_growth
                );
            }
            None => {
                let _ = writeln!(out, "  fds   no trend");
            }
        }
        if let Some(note) = self.unjudged_note() {
            let _ = writeln!(out, "  ({note})");
        }
        let idle = |s: &Option<Sample>| {
            s.map_or("-".to_owned(), |s| {
                format!("{} RSS, {} fds", mib(s.rss_kib as f64), s.fds)
            })
        };
        let _ = writeln!(
            out,
            "  idle before load {}; idle after load {}; peak RSS {}",
            idle(&self.before),
            idle(&self.after),
            self.peak_rss_kib.map_or("-".to_owned(), |k| mib(k as f64))
        );
        let s = &self.status;
        let _ = writeln!(
            out,
            "  its counters: {} requests (the load made {} it could see, CONNECTs included), {} connections, {} findings, {} dropped, {} upstream errors, {} client errors",
            s["traffic"]["requests"],
            t.guardian_requests(),
            s["traffic"]["connections_total"],
            s["findings"]["total"],
            s["findings_dropped"],
            s["traffic"]["upstream_errors"],
            s["traffic"]["client_errors"]
        );
        let _ = writeln!(
            out,
            "  graceful stop took {:.2} s, exit {}; its log: {} warnings, {} errors",
            self.stop_took.as_secs_f64(),
            if self.exit_ok { "clean" } else { "NOT CLEAN" },
            self.service_log_warnings,
            self.service_log_errors
        );

        let failures = self.failures();
        if failures.is_empty() {
            let _ = writeln!(out, "\nPASS");
        } else {
            let _ = writeln!(out, "\nFAIL");
            for failure in failures {
                let _ = writeln!(out, "  - {failure}");
            }
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1000.0)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}
