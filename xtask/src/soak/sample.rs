//! The guardian's resident memory and open file descriptors over the run,
//! and whether they trend upwards.
//!
//! Samples come from `/proc/<pid>` at a fixed interval while the load
//! runs. The trend is the least-squares slope over the second half of the
//! loaded period: by then pools, caches and the dedup table have filled,
//! so a leak shows as steady growth while a warm process stays flat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use traffic_guardian_test_support::procfs;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since the load started.
    pub(crate) at: f64,
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
}

/// Reads `pid` once, `at` seconds into the run.
pub(crate) fn read(pid: u32, at: f64) -> Option<Sample> {
    Some(Sample {
        at,
        rss_kib: procfs::memory(pid)?.rss_kib,
        fds: procfs::open_fds(pid)? as u64,
    })
}

/// Samples `pid` every `every` on a thread of its own until `stop` is set.
pub(crate) fn spawn(
    pid: u32,
    started: Instant,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Some(sample) = read(pid, started.elapsed().as_secs_f64()) {
                samples.push(sample);
            }
            next += every;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        samples
    })
}

/// Start, end and trend of one measure over the loaded period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Trend {
    /// The first sample after warm-up.
    pub(crate) start: f64,
    /// The last sample under load.
    pub(crate) end: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// Least-squares slope over the second half, per minute.
    pub(crate) slope_per_min: f64,
    /// What that slope adds up to across the second half.
    pub(crate) fitted_growth: f64,
    /// Seconds the second half spans.
    pub(crate) span_secs: f64,
    pub(crate) samples: usize,
}

/// The trend of `value` over the samples taken from `warm` seconds on;
/// `None` with fewer than three of them.
pub(crate) fn trend(
    samples: &[Sample],
    warm: f64,
    value: impl Fn(&Sample) -> f64,
) -> Option<Trend> {
    let loaded: Vec<&Sample> = samples.iter().filter(|s| s.at >= warm).collect();
    if loaded.len() < 3 {
        return None;
    }
    let first = loaded[0];
    let last = loaded[loaded.len() - 1];
    let middle = first.at + (last.at - first.at) / 2.0;
    let half: Vec<(f64, f64)> = loaded
        .iter()
        .filter(|s| s.at >= middle)
        .map(|s| (s.at, value(s)))
        .collect();
    let slope = slope(&half).unwrap_or(0.0);
    let span = half.last().map_or(0.0, |l| l.0) - half.first().map_or(0.0, |f| f.0);
    let values = loaded.iter().map(|s| value(s));
    Some(Trend {
        start: value(first),
        end: value(last),
        min: values.clone().fold(f64::INFINITY, f64::min),
        max: values.fold(f64::NEG_INFINITY, f64::max),
        slope_per_min: slope * 60.0,
        fitted_growth: slope * span,
        span_secs: span,
        samples: loaded.len(),
    })
}

/// The least-squares slope of `points` (x, y), or `None` with fewer than
/// two distinct x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: impl Fn(f64) -> f64) -> Vec<Sample> {
        (0..=60)
            .map(|i| {
                let at = f64::from(i);
                Sample {
                    at,
                    rss_kib: rss(at) as u64,
                    fds: 40,
                }
            })
            .collect()
    }

    #[test]
    fn a_steady_leak_shows_its_rate_and_a_flat_process_none() {
        // 10 KiB a second after warm-up: 600 KiB a minute.
        let leaking = samples(|t| 20_000.0 + 10.0 * t);
        let t = trend(&leaking, 10.0, |s| s.rss_kib as f64).unwrap();
        assert!((t.slope_per_min - 600.0).abs() < 1.0, "{t:?}");
        assert_eq!((t.start, t.end), (20_100.0, 20_600.0));
        assert!((t.fitted_growth - 250.0).abs() < 1.0, "{t:?}");

        // Warm-up growth, then flat with noise.
        let warm = samples(|t| {
            if t < 10.0 {
                15_000.0 + 500.0 * t
            } else {
                20_000.0 + (t % 2.0) * 30.0
            }
        });
        let t = trend(&warm, 10.0, |s| s.rss_kib as f64).unwrap();
        assert!(t.slope_per_min.abs() < 30.0, "{t:?}");
        let fds = trend(&warm, 10.0, |s| s.fds as f64).unwrap();
        assert_eq!(fds.slope_per_min, 0.0);

        assert_eq!(trend(&warm[..12], 10.0, |s| s.fds as f64), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
