//! When to try a failed request again: exponential backoff with jitter, within a time budget
//! after which the records go to the dead-letter folder.

use std::time::{Duration, Instant};

use rand::Rng;

/// A retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The first backoff.
    pub base: Duration,
    /// The longest backoff.
    pub cap: Duration,
    /// How long a batch is retried, from its first attempt, before it is dead-lettered.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: Duration::from_millis(100), cap: Duration::from_secs(5), budget: Duration::from_secs(120) }
    }
}

impl RetryPolicy {
    /// The default backoff with a budget of `secs` seconds.
    pub fn with_budget(secs: f64) -> Self {
        RetryPolicy { budget: Duration::from_secs_f64(secs.max(0.0)), ..RetryPolicy::default() }
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1): half of `base * 2^(attempt-1)`
    /// (capped) plus a random part up to the other half, so that clients throttled together do
    /// not come back together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.cap);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    /// Whether a batch first tried at `started` may wait `next` and try again.
    pub fn may_retry(&self, started: Instant, next: Duration) -> bool {
        started.elapsed() + next <= self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let p = RetryPolicy { base: Duration::from_millis(100), cap: Duration::from_secs(1), budget: Duration::from_secs(10) };
        for _ in 0..100 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let third = p.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
            let late = p.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1), "{late:?}");
        }
        assert!(p.may_retry(Instant::now(), Duration::from_secs(1)));
        assert!(!p.may_retry(Instant::now(), Duration::from_secs(11)));
    }
}
