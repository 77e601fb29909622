//! A token bucket per group, so that one busy or hostile group cannot use up
//! the host's time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::group::GroupName;

/// How many tasks a group may send: `burst` at once, then one more every
/// `refill_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tasks a group may send back to back. At least 1.
    pub burst: u32,
    /// The time it takes to earn one more task.
    pub refill_every: Duration,
}

impl Default for RateLimit {
    /// 10 at once, then one per second. An agent calls these tools a few
    /// times per conversation; a findings query can read the whole log, so
    /// the sustained rate stays low enough that one group cannot keep the
    /// host busy.
    fn default() -> RateLimit {
        RateLimit {
            burst: 10,
            refill_every: Duration::from_secs(1),
        }
    }
}

/// The buckets of every group seen so far.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<GroupName, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When the next token is earned (meaningful while not full).
    refilled_at: Instant,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit: RateLimit {
                burst: limit.burst.max(1),
                refill_every: limit.refill_every,
            },
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `group` at `now`; `false` if it has none left.
    pub(crate) fn allow(&mut self, group: &GroupName, now: Instant) -> bool {
        let limit = self.limit;
        let bucket = self.buckets.entry(group.clone()).or_insert(Bucket {
            tokens: limit.burst,
            refilled_at: now,
        });
        if bucket.tokens < limit.burst {
            let earned = if limit.refill_every.is_zero() {
                u128::from(limit.burst)
            } else {
                now.saturating_duration_since(bucket.refilled_at).as_nanos()
                    / limit.refill_every.as_nanos()
            };
            if earned > 0 {
                let earned = u32::try_from(earned).unwrap_or(u32::MAX);
                bucket.tokens = bucket.tokens.saturating_add(earned).min(limit.burst);
                bucket.refilled_at = if bucket.tokens == limit.burst {
                    now
                } else {
                    bucket.refilled_at + limit.refill_every * earned
                };
            }
        } else {
            bucket.refilled_at = now;
        }
        if bucket.tokens == 0 {
            return false;
        }
        bucket.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> GroupName {
        GroupName::new(name).unwrap()
    }

    #[test]
    fn bursts_then_refills_per_group() {
        let mut limiter = RateLimiter::new(RateLimit {
            burst: 3,
            refill_every: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        let a = group("a");
        let b = group("b");
        let allowed =
            |limiter: &mut RateLimiter, g: &GroupName, at: Duration| limiter.allow(g, t0 + at);
        assert!(allowed(&mut limiter, &a, Duration::ZERO));
        assert!(allowed(&mut limiter, &a, Duration::ZERO));
        assert!(allowed(&mut limiter, &a, Duration::ZERO));
        assert!(!allowed(&mut limiter, &a, Duration::ZERO));
        // Another group is not affected.
        assert!(allowed(&mut limiter, &b, Duration::ZERO));
        // Half a token is not a token.
        assert!(!allowed(&mut limiter, &a, Duration::from_millis(500)));
        assert!(allowed(&mut limiter, &a, Duration::from_millis(1000)));
        assert!(!allowed(&mut limiter, &a, Duration::from_millis(1500)));
        // Partial progress is kept: the next token is due at 2 s.
        assert!(allowed(&mut limiter, &a, Duration::from_millis(2000)));
        // A long pause refills to the burst, no further.
        for _ in 0..3 {
            assert!(allowed(&mut limiter, &a, Duration::from_secs(100)));
        }
        assert!(!allowed(&mut limiter, &a, Duration::from_secs(100)));
    }

    #[test]
    fn zero_burst_still_allows_one() {
        let mut limiter = RateLimiter::new(RateLimit {
            burst: 0,
            refill_every: Duration::from_secs(3600),
        });
        let now = Instant::now();
        assert!(limiter.allow(&group("a"), now));
        assert!(!limiter.allow(&group("a"), now));
    }
}
