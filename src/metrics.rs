//! Job counters shared by all workers of a process: what came in, what was rejected, what went out.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::route::StreamName;

/// Process-wide counters. Cheap to update (relaxed atomics), read by the progress log.
#[derive(Debug)]
pub struct Metrics {
    /// Lines (or generated records) read from sources.
    pub records_read: AtomicU64,
    /// Readings accepted into windows.
    pub readings: AtomicU64,
    /// Blank lines skipped.
    pub blank: AtomicU64,
    /// Malformed records (sent to `errors`).
    pub malformed: AtomicU64,
    /// Late readings (sent to `late`).
    pub late: AtomicU64,
    /// Per worker of this process, the lowest watermark of its unfinished partitions, epoch ms
    /// (`u64::MAX` once it has none).
    pub watermarks: Vec<AtomicU64>,
    /// Records handed to sinks, per output stream.
    pub out: [AtomicU64; StreamName::ALL.len()],
    /// Reference reloads applied (as diffs).
    pub reference_updates: AtomicU64,
    /// Reference files rejected (the last good version is kept).
    pub reference_errors: AtomicU64,
    /// Kafka consumer lag by partition (`topic/partition`), as last measured.
    pub kafka_lag: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

impl Metrics {
    /// Counters for a process with `workers` worker threads.
    pub fn new(workers: usize) -> Self {
        let zero = || AtomicU64::new(0);
        Metrics {
            records_read: zero(),
            readings: zero(),
            blank: zero(),
            malformed: zero(),
            late: zero(),
            watermarks: (0..workers).map(|_| zero()).collect(),
            out: std::array::from_fn(|_| zero()),
            reference_updates: zero(),
            reference_errors: zero(),
            kafka_lag: Default::default(),
        }
    }

    /// The process's watermark: the lowest over its workers' unfinished partitions.
    pub fn watermark(&self) -> Option<u64> {
        self.watermarks.iter().map(Self::get).min().filter(|w| *w != u64::MAX)
    }

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records handed to sinks for `stream`.
    pub fn out(&self, stream: StreamName) -> u64 {
        Self::get(&self.out[stream as usize])
    }
}
