//! Job counters shared by all workers of a process: what came in, what was rejected, what went out.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::route::StreamName;

/// Process-wide counters. Cheap to update (relaxed atomics), read by the progress log.
#[derive(Default, Debug)]
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
    /// Lowest watermark over this process's partitions, epoch ms.
    pub watermark: AtomicU64,
    /// Records handed to sinks, per output stream.
    pub out: [AtomicU64; StreamName::ALL.len()],
    /// Reference reloads applied (as diffs).
    pub reference_updates: AtomicU64,
    /// Reference files rejected (the last good version is kept).
    pub reference_errors: AtomicU64,
}

impl Metrics {
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
