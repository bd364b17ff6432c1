//! `BatchHistogram`: a Prometheus histogram the workers update without a lock, taking a whole
//! batch of equal observations at once (every window of a hand-off batch has the same latency).
//!
//! prometheus-client's own histogram takes a mutex per observation; at a window boundary each
//! worker hands off thousands of windows at the same moment, and one lock per window between the
//! workers showed in the hand-off time.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A histogram with fixed upper bounds, in seconds; counts and the sum are relaxed atomics.
#[derive(Debug)]
pub struct BatchHistogram {
    bounds: Vec<f64>,
    /// One count per bound, then one for above the last (`+Inf`).
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum of observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl BatchHistogram {
    /// `len` buckets from `start` seconds, each bound `factor` times the one before.
    pub fn exponential(start: f64, factor: f64, len: usize) -> Self {
        let bounds: Vec<f64> = std::iter::successors(Some(start), |b| Some(b * factor)).take(len).collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        BatchHistogram { bounds, counts, count: AtomicU64::new(0), sum_nanos: AtomicU64::new(0) }
    }

    /// Records `n` observations of `seconds`.
    pub fn observe_n(&self, seconds: f64, n: u64) {
        if n == 0 {
            return;
        }
        let bucket = self.bounds.iter().position(|b| seconds <= *b).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(n, Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
        let nanos = (seconds.max(0.0) * 1e9) as u64;
        self.sum_nanos.fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// The upper bounds, and the count of each bucket (one more: above every bound).
    pub fn snapshot(&self) -> (Vec<f64>, Vec<u64>) {
        (self.bounds.clone(), self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect())
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl EncodeMetric for BatchHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            // (The text encoder writes `le="+Inf"` for infinity only; Prometheus needs that bucket.)
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, self.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_land_in_their_bucket_and_add_to_count_and_sum() {
        let h = BatchHistogram::exponential(0.001, 2.0, 4); // 1, 2, 4, 8 ms, +Inf
        h.observe_n(0.0015, 3);
        h.observe_n(0.5, 2);
        h.observe_n(0.001, 1);
        h.observe_n(0.003, 0);
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, vec![1, 3, 0, 0, 2]);
        assert_eq!(h.count(), 6);
        assert!((h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9 - (0.0045 + 1.0 + 0.001)).abs() < 1e-9);
    }

    #[test]
    fn the_top_bucket_is_written_as_plus_inf() {
        let h = BatchHistogram::exponential(0.001, 2.0, 2);
        h.observe_n(10.0, 1);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("latency_seconds", "Latency", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("latency_seconds_bucket{le=\"+Inf\"} 1"), "{text}");
        assert!(!text.contains("e308"), "{text}");
    }
}
