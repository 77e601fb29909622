//! Folds repeats of the same finding inside a time window into one line with a count.
//!
//! An agent that leaks a key usually leaks it on every request. Without
//! dedup, the log fills with identical lines and the one different finding
//! drowns. [`Dedup`] sits between the scanner and the sink and turns a flood
//! into a first line plus a summary line that carries the repeat count.
//!
//! # Key
//!
//! Two findings are repeats of each other when they share the rule
//! (`pattern`), the `direction`, the `dest`, the `runtime`, and the
//! `fingerprint` of the matched value, or the `snippet` when the finding has
//! no fingerprint. A finding with a fingerprint and one without never share a
//! key.
//!
//! # Semantics
//!
//! A key's window opens at its first occurrence and covers the half-open span
//! `[start, start + window)`. Time is the [`Instant`] the caller passes in,
//! and it never runs backwards: an instant earlier than one already seen is
//! read as the latest instant seen.
//!
//! - [`Dedup::observe`]: the first occurrence of a key, or the first after its
//!   window closed, is returned at once, to be written, with its own count.
//!   Repeats inside the window are absorbed: their counts are added to a
//!   pending tally, and the latest repeat (its timestamp, snippet and other
//!   fields) is kept.
//! - [`Dedup::expire`]: for every key whose window has closed and that
//!   absorbed repeats, returns one summary finding whose `count` is the
//!   absorbed total and whose fields are those of the last occurrence, and
//!   forgets the key. Keys that absorbed no repeats are just forgotten.
//! - [`Dedup::drain`]: at shutdown, returns the summaries of all pending
//!   tallies and forgets every key.
//! - `observe` also closes every window that has ended by `now`, exactly as
//!   `expire` would, and returns those summaries before anything else. A
//!   caller that never calls `expire` therefore loses nothing; `expire` is
//!   for quiet periods, so that a summary is not held back until the next
//!   finding arrives.
//! - Memory is bounded: at most [`DedupConfig::max_keys`] keys are tracked.
//!   When a new key arrives and the table is full, the key whose window opened
//!   first is evicted, and its pending summary, if any, is returned by the same
//!   `observe` call.
//! - A window of zero disables dedup: every finding passes straight through.
//! - A `count` of 0 on an incoming finding is read as 1: every finding stands
//!   for at least one occurrence.
//!
//! Nothing is ever lost: over the life of a `Dedup`, the sum of `count` over
//! everything returned by `observe`, `expire` and `drain` equals the sum of
//! `count` over the findings observed. Every method that returns findings is
//! `#[must_use]`, so dropping them by accident is a compiler warning.
//!
//! # Cost
//!
//! `observe` is amortised O(1): a hash lookup plus work proportional to the
//! windows it closes. Keys sit in a queue ordered by window start, so `expire`
//! only looks at the closed windows at its front and never scans the table.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::finding::{Direction, Finding, RuleId};

/// How [`Dedup`] groups repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupConfig {
    /// How long a key's window stays open after its first occurrence.
    /// Zero disables dedup. Default: 60 seconds.
    pub window: Duration,
    /// How many keys are tracked at most. Must be at least 1.
    /// Default: 10 000.
    pub max_keys: usize,
}

impl DedupConfig {
    /// The default window: 60 seconds.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
    /// The default bound on tracked keys.
    pub const DEFAULT_MAX_KEYS: usize = 10_000;
}

impl Default for DedupConfig {
    fn default() -> DedupConfig {
        DedupConfig {
            window: DedupConfig::DEFAULT_WINDOW,
            max_keys: DedupConfig::DEFAULT_MAX_KEYS,
        }
    }
}

/// Folds repeated findings into counted summaries. See the [module
/// documentation](self) for the exact semantics.
#[derive(Debug)]
pub struct Dedup {
    config: DedupConfig,
    /// Every tracked key and its open window.
    entries: HashMap<Key, Entry>,
    /// The same keys, ordered by window start (oldest first).
    order: VecDeque<(Instant, Key)>,
    /// The latest instant seen; time never runs backwards.
    clock: Option<Instant>,
}

/// What makes two findings repeats of each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    pattern: RuleId,
    direction: Direction,
    dest: String,
    runtime: Option<String>,
    subject: Subject,
}

/// The matched value's identity: its fingerprint when known, else the snippet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Fingerprint(String),
    Snippet(String),
}

impl Key {
    fn of(finding: &Finding) -> Key {
        Key {
            pattern: finding.pattern.clone(),
            direction: finding.direction,
            dest: finding.dest.clone(),
            runtime: finding.runtime.clone(),
            subject: match &finding.fingerprint {
                Some(fingerprint) => Subject::Fingerprint(fingerprint.clone()),
                None => Subject::Snippet(finding.snippet.clone()),
            },
        }
    }
}

/// One open window.
#[derive(Debug)]
struct Entry {
    /// The latest repeat absorbed, with `count` set to the absorbed total.
    /// `None` while the window has seen only its first occurrence.
    pending: Option<Finding>,
}

impl Default for Dedup {
    fn default() -> Dedup {
        Dedup::with_valid_config(DedupConfig::default())
    }
}

impl Dedup {
    /// Builds a dedup stage. Fails if `max_keys` is 0.
    pub fn new(config: DedupConfig) -> Result<Dedup, Error> {
        if config.max_keys == 0 {
            return Err(Error::InvalidSetting {
                field: "dedup.max_keys",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Dedup::with_valid_config(config))
    }

    fn with_valid_config(config: DedupConfig) -> Dedup {
        Dedup {
            config,
            entries: HashMap::new(),
            order: VecDeque::new(),
            clock: None,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> DedupConfig {
        self.config
    }

    /// How many keys are tracked now. Never more than `max_keys`.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes one finding and returns what must be written now, oldest first:
    /// summaries of windows closed by `now`, the summary of an evicted key,
    /// and the finding itself if it opens a new window.
    #[must_use = "the returned findings must be written, or occurrences are lost"]
    pub fn observe(&mut self, mut finding: Finding, now: Instant) -> Vec<Finding> {
        finding.count = finding.count.max(1);
        if self.config.window.is_zero() {
            return vec![finding];
        }
        let now = self.advance(now);
        let mut out = Vec::new();
        self.expire_into(now, &mut out);

        let key = Key::of(&finding);
        if let Some(entry) = self.entries.get_mut(&key) {
            // The window is open: anything closed was expired just above.
            absorb(entry, finding, &mut out);
            return out;
        }
        if self.entries.len() >= self.config.max_keys {
            self.evict_oldest_into(&mut out);
        }
        self.entries.insert(key.clone(), Entry { pending: None });
        self.order.push_back((now, key));
        out.push(finding);
        out
    }

    /// Closes every window that has ended by `now` and returns one summary
    /// per closed key that absorbed repeats, oldest window first.
    #[must_use = "the returned summaries must be written, or occurrences are lost"]
    pub fn expire(&mut self, now: Instant) -> Vec<Finding> {
        let now = self.advance(now);
        let mut out = Vec::new();
        self.expire_into(now, &mut out);
        out
    }

    /// Forgets every key and returns the summaries of all pending tallies,
    /// oldest window first. Call it at shutdown.
    #[must_use = "the returned summaries must be written, or occurrences are lost"]
    pub fn drain(&mut self) -> Vec<Finding> {
        let mut out = Vec::new();
        while self.evict_oldest_into(&mut out) {}
        out
    }

    /// Moves the clock forward to `now` (never back) and returns the clock.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = match self.clock {
            Some(clock) => clock.max(now),
            None => now,
        };
        self.clock = Some(now);
        now
    }

    fn expire_into(&mut self, now: Instant, out: &mut Vec<Finding>) {
        let window = self.config.window;
        while let Some((opened, _)) = self.order.front() {
            if now.saturating_duration_since(*opened) < window {
                break;
            }
            self.evict_oldest_into(out);
        }
    }

    /// Forgets the key whose window opened first, emitting its pending
    /// summary. Returns false when nothing was tracked.
    fn evict_oldest_into(&mut self, out: &mut Vec<Finding>) -> bool {
        let Some((_, key)) = self.order.pop_front() else {
            return false;
        };
        if let Some(Entry {
            pending: Some(summary),
        }) = self.entries.remove(&key)
        {
            out.push(summary);
        }
        true
    }
}

/// Adds a repeat to a window's tally, keeping the repeat's fields.
fn absorb(entry: &mut Entry, mut repeat: Finding, out: &mut Vec<Finding>) {
    match entry.pending.take() {
        None => {}
        Some(pending) => match pending.count.checked_add(repeat.count) {
            Some(total) => repeat.count = total,
            // A tally this large cannot grow further without losing count:
            // write it out and start a new one.
            None => out.push(pending),
        },
    }
    entry.pending = Some(repeat);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Protocol;
    use crate::timestamp::Timestamp;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000;

    /// A finding for key `key`, made at `millis` after the epoch.
    fn finding(key: &str, millis: u64) -> Finding {
        Finding {
            protocol: Protocol::Https,
            source: "172.17.0.2:40000".into(),
            dest: "api.example.com:443".into(),
            snippet: format!("key={key}****"),
            timestamp: Timestamp::from_unix_millis(i64::try_from(millis).unwrap()),
            runtime: Some("main".into()),
            ..crate::finding::sample()
        }
    }

    enum Step {
        /// Observe a finding for key at millis; expect (key, count) written.
        Observe(&'static str, u64, &'static [(&'static str, u64)]),
        /// Expire at millis; expect (key, count) written.
        Expire(u64, &'static [(&'static str, u64)]),
        /// Drain; expect (key, count) written.
        Drain(&'static [(&'static str, u64)]),
    }
    use Step::{Drain, Expire, Observe};

    /// Runs `steps` against a dedup with the given window and key bound and
    /// checks what each step returns, as (snippet key, count) pairs.
    #[track_caller]
    fn check(window_secs: u64, max_keys: usize, steps: &[Step]) {
        let base = Instant::now();
        let at = |millis: u64| base + Duration::from_millis(millis);
        let mut dedup = Dedup::new(DedupConfig {
            window: Duration::from_secs(window_secs),
            max_keys,
        })
        .unwrap();
        for (i, step) in steps.iter().enumerate() {
            let (got, expected) = match step {
                Observe(key, millis, expected) => {
                    (dedup.observe(finding(key, *millis), at(*millis)), expected)
                }
                Expire(millis, expected) => (dedup.expire(at(*millis)), expected),
                Drain(expected) => (dedup.drain(), expected),
            };
            let got: Vec<(String, u64)> = got
                .iter()
                .map(|f| (f.snippet.trim_end_matches('*')[4..].to_owned(), f.count))
                .collect();
            let expected: Vec<(String, u64)> = expected
                .iter()
                .map(|(k, c)| ((*k).to_owned(), *c))
                .collect();
            assert_eq!(got, expected, "step {i}");
            assert!(dedup.len() <= max_keys, "step {i}: {} keys", dedup.len());
        }
    }

    #[test]
    fn first_occurrence_passes_and_repeats_fold_into_one_summary() {
        check(
            60,
            10,
            &[
                Observe("a", 0, &[("a", 1)]),
                Observe("a", SECOND, &[]),
                Observe("a", 2 * SECOND, &[]),
                Expire(59 * SECOND, &[]),
                Expire(60 * SECOND, &[("a", 2)]),
                Observe("a", 61 * SECOND, &[("a", 1)]),
                Drain(&[]),
            ],
        );
    }

    #[test]
    fn a_key_without_repeats_is_forgotten_silently() {
        check(
            60,
            10,
            &[
                Observe("a", 0, &[("a", 1)]),
                Expire(120 * SECOND, &[]),
                Drain(&[]),
            ],
        );
    }

    #[test]
    fn window_is_half_open() {
        check(
            10,
            10,
            &[
                Observe("a", 0, &[("a", 1)]),
                Observe("a", 10 * SECOND - 1, &[]),
                // At exactly start + window the old window is closed: its summary
                // comes first, then the occurrence that opens the next window.
                Observe("a", 10 * SECOND, &[("a", 1), ("a", 1)]),
                Drain(&[]),
            ],
        );
    }

    #[test]
    fn observe_closes_other_expired_windows_first() {
        check(
            10,
            10,
            &[
                Observe("a", 0, &[("a", 1)]),
                Observe("a", 1, &[]),
                Observe("b", 5 * SECOND, &[("b", 1)]),
                Observe("b", 6 * SECOND, &[]),
                Observe("c", 11 * SECOND, &[("a", 1), ("c", 1)]),
                Expire(16 * SECOND, &[("b", 1)]),
            ],
        );
    }

    #[test]
    fn keys_are_independent() {
        check(
            60,
            10,
            &[
                Observe("a", 0, &[("a", 1)]),
                Observe("b", 1, &[("b", 1)]),
                Observe("a", 2, &[]),
                Observe("b", 3, &[]),
                Observe("b", 4, &[]),
                Drain(&[("a", 1), ("b", 2)]),
            ],
        );
    }

    #[test]
    fn full_table_evicts_the_oldest_key_with_its_summary() {
        check(
            60,
            2,
            &[
                Observe("a", 0, &[("a", 1)]),
                Observe("a", 1, &[]),
                Observe("b", 2, &[("b", 1)]),
                Observe("c", 3, &[("a", 1), ("c", 1)]),
                Observe("c", 4, &[]),
                // b has no repeats: evicted silently.
                Observe("d", 5, &[("d", 1)]),
                // c goes with its summary; a was evicted, so it opens a new window.
                Observe("a", 6, &[("c", 1), ("a", 1)]),
                Drain(&[]),
            ],
        );
    }

    #[test]
    fn window_zero_passes_everything_through() {
        check(
            0,
            1,
            &[
                Observe("a", 0, &[("a", 1)]),
                Observe("a", 0, &[("a", 1)]),
                Observe("b", 0, &[("b", 1)]),
                Expire(SECOND, &[]),
                Drain(&[]),
            ],
        );
    }

    #[test]
    fn time_running_backwards_is_read_as_now() {
        check(
            10,
            10,
            &[
                Observe("a", 20 * SECOND, &[("a", 1)]),
                // Earlier than the clock: still inside a's window.
                Observe("a", 0, &[]),
                Expire(29 * SECOND, &[]),
                Expire(30 * SECOND, &[("a", 1)]),
            ],
        );
    }

    #[test]
    fn summary_keeps_the_latest_repeat_and_sums_counts() {
        let base = Instant::now();
        let mut dedup = Dedup::default();
        let mut first = finding("a", 1_000);
        first.count = 3;
        assert_eq!(dedup.observe(first, base)[0].count, 3);
        let mut repeat = finding("a", 2_000);
        repeat.count = 4;
        repeat.source = "172.17.0.9:1".into();
        assert!(
            dedup
                .observe(repeat, base + Duration::from_secs(1))
                .is_empty()
        );
        let mut last = finding("a", 3_000);
        last.count = 0; // read as 1
        assert!(
            dedup
                .observe(last, base + Duration::from_secs(2))
                .is_empty()
        );
        let summary = dedup.drain();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].count, 5);
        assert_eq!(summary[0].timestamp, Timestamp::from_unix_millis(3_000));
        assert_eq!(summary[0].source, "172.17.0.2:40000");
    }

    #[test]
    fn key_uses_fingerprint_when_present_else_snippet() {
        let now = Instant::now();
        let mut dedup = Dedup::default();
        let with_fp = |snippet: &str, fp: &str| {
            let mut f = finding(snippet, 0);
            f.fingerprint = Some(fp.into());
            f
        };
        // Same fingerprint, different snippets: repeats.
        assert_eq!(dedup.observe(with_fp("x", "fp1"), now).len(), 1);
        assert!(dedup.observe(with_fp("y", "fp1"), now).is_empty());
        // Different fingerprint, same snippet: distinct.
        assert_eq!(dedup.observe(with_fp("x", "fp2"), now).len(), 1);
        // No fingerprint: keyed by snippet, distinct from the fingerprinted ones.
        assert_eq!(dedup.observe(finding("x", 0), now).len(), 1);
        assert!(dedup.observe(finding("x", 0), now).is_empty());
        // Each other key field separates findings.
        let mut other = finding("x", 0);
        other.runtime = Some("group-b".into());
        assert_eq!(dedup.observe(other, now).len(), 1);
        let mut other = finding("x", 0);
        other.dest = "evil.example:443".into();
        assert_eq!(dedup.observe(other, now).len(), 1);
        let mut other = finding("x", 0);
        other.direction = Direction::Inbound;
        assert_eq!(dedup.observe(other, now).len(), 1);
        let mut other = finding("x", 0);
        other.pattern = RuleId::new("github_token");
        assert_eq!(dedup.observe(other, now).len(), 1);
        assert_eq!(dedup.len(), 7);
    }

    #[test]
    fn overflowing_tally_is_written_rather_than_lost() {
        let now = Instant::now();
        let mut dedup = Dedup::default();
        let _ = dedup.observe(finding("a", 0), now);
        let mut big = finding("a", 0);
        big.count = u64::MAX;
        assert!(dedup.observe(big.clone(), now).is_empty());
        let out = dedup.observe(big, now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, u64::MAX);
        assert_eq!(dedup.drain()[0].count, u64::MAX);
    }

    #[test]
    fn zero_max_keys_is_rejected() {
        let err = Dedup::new(DedupConfig {
            window: Duration::from_secs(1),
            max_keys: 0,
        })
        .unwrap_err();
        assert!(err.to_string().contains("dedup.max_keys"), "{err}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Observe { key: u8, after_ms: u64, count: u64 },
        Expire { after_ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, 0u64..400, 1u64..4)
                .prop_map(|(key, after_ms, count)| Op::Observe { key, after_ms, count }),
            1 => (0u64..1_000).prop_map(|after_ms| Op::Expire { after_ms }),
        ]
    }

    proptest! {
        #[test]
        fn every_occurrence_is_counted_exactly_once(
            window_ms in 0u64..1_500,
            max_keys in 1usize..5,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut dedup = Dedup::new(DedupConfig {
                window: Duration::from_millis(window_ms),
                max_keys,
            }).unwrap();
            let mut now = Instant::now();
            let mut observed = 0u64;
            let mut written = 0u64;
            for op in ops {
                let out = match op {
                    Op::Observe { key, after_ms, count } => {
                        now += Duration::from_millis(after_ms);
                        let mut f = finding(&key.to_string(), 0);
                        f.count = count;
                        observed += count;
                        dedup.observe(f, now)
                    }
                    Op::Expire { after_ms } => {
                        now += Duration::from_millis(after_ms);
                        dedup.expire(now)
                    }
                };
                prop_assert!(out.iter().all(|f| f.count >= 1));
                written += out.iter().map(|f| f.count).sum::<u64>();
                prop_assert!(dedup.len() <= max_keys);
                prop_assert_eq!(dedup.entries.len(), dedup.order.len());
            }
            written += dedup.drain().iter().map(|f| f.count).sum::<u64>();
            prop_assert_eq!(written, observed);
            prop_assert!(dedup.is_empty());
        }
    }
}
