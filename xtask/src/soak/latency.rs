//! A latency histogram with bounded memory: log-linear buckets (16 per
//! power of two, so a quantile is within about 6%), whatever the run's
//! length.

use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: u64 = 16;
const SUB_BITS: u32 = 4;
/// Buckets for every `u64` of microseconds.
const BUCKETS: usize = (64 * SUB) as usize;

/// Counts of durations, in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    pub(crate) fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(micros)] += 1;
        self.total += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The duration below which a fraction `q` of the recorded ones lie
    /// (the middle of its bucket), or zero when nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds(i);
                return Duration::from_micros(low + (high - low) / 2);
            }
        }
        Duration::ZERO
    }
}

/// The bucket of `v`: exact below 16, then 16 per power of two.
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let power = 63 - v.leading_zeros();
    let sub = (v >> (power - SUB_BITS)) & (SUB - 1);
    ((u64::from(power - SUB_BITS + 1)) * SUB + sub) as usize
}

/// The values bucket `i` holds: `low..=high`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i);
    }
    let power = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = i % SUB;
    let low = (1u64 << power) | (sub << (power - SUB_BITS));
    let width = 1u64 << (power - SUB_BITS);
    (low, low.saturating_add(width - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        for v in (0..5000).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let (low, high) = bounds(bucket(v));
            assert!(low <= v && v <= high, "{v}: {low}..={high}");
            assert!(bucket(v) < BUCKETS);
        }
        assert!(bucket(1_000) < bucket(1_100));
    }

    #[test]
    fn quantiles_are_within_the_bucket_precision() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), Duration::ZERO);
        for micros in 1..=10_000 {
            h.record(Duration::from_micros(micros));
        }
        let near = |got: Duration, want: f64| {
            let got = got.as_micros() as f64;
            assert!((got - want).abs() / want < 0.07, "{got} vs {want}");
        };
        near(h.quantile(0.5), 5_000.0);
        near(h.quantile(0.99), 9_900.0);
        let mut other = Histogram::default();
        other.record(Duration::from_secs(10));
        h.merge(&other);
        assert_eq!(h.total, 10_001);
        near(h.quantile(1.0), 10_000_000.0);
    }
}
