//! Job counters shared by all workers of a process: what came in, what was rejected, what went
//! out. Latency measurement is in [`super::latency`], sinks' counters in [`super::sink_counters`],
//! the latest rejects in [`super::rejects`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::latency::LatencySplit;
use super::rejects::RecentReject;
use super::sink_counters::SinkCounters;
use crate::stream::StreamName;

/// Process-wide counters. Cheap to update (relaxed atomics), read by the progress log.
#[derive(Debug)]
pub struct Metrics {
    /// Lines (or generated records) read from sources.
    pub records_read: AtomicU64,
    /// When a source first and last read a record, epoch ms (the benchmark's achieved rate).
    pub first_read_ms: AtomicU64,
    /// See `first_read_ms`.
    pub last_read_ms: AtomicU64,
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
    pub out: Vec<AtomicU64>,
    /// Reference reloads applied (as diffs).
    pub reference_updates: AtomicU64,
    /// Reference files rejected (the last good version is kept).
    pub reference_errors: AtomicU64,
    /// Kafka consumer lag by partition (`topic/partition`), as last measured.
    pub kafka_lag: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
    /// When measuring (`fleetflow bench`): microseconds from the moment each tumbling window could
    /// close by the wall clock (its end plus the allowed lateness) to its hand-off to the sinks.
    pub window_latency: Option<std::sync::Mutex<hdrhistogram::Histogram<u64>>>,
    /// When measuring: microseconds from the end of each alert's sliding window (the event time of
    /// the latest reading that can trigger it, which an open-loop source ingests at that moment of
    /// the wall clock) to the alert's hand-off. It includes the allowed lateness.
    pub alert_latency: Option<std::sync::Mutex<hdrhistogram::Histogram<u64>>>,
    /// When measuring a Kafka source (`fleetflow bench --kafka-brokers`): microseconds from a
    /// message's timestamp (its producer's send time) to the moment the job read it, for one
    /// message in [`READ_DELAY_SAMPLE`](crate::operations::latency::READ_DELAY_SAMPLE) by offset.
    pub read_delay: Option<std::sync::Mutex<hdrhistogram::Histogram<u64>>>,
    /// When measuring, window latency split in two: from the window's due moment to the moment
    /// every worker's sources had passed its end (the source side: readings arriving, the
    /// watermark moving), and from then to the hand-off (the dataflow side), microseconds.
    pub latency_split: Option<std::sync::Mutex<LatencySplit>>,
    /// The allowed lateness the latency is measured against, ms.
    pub lateness_ms: u64,
    /// Windows ending after this (epoch ms) are not measured: the end of the input closes them early.
    pub latency_until: u64,
    /// Window latency for `/metrics`: seconds from a window's end plus the allowed lateness (by
    /// the wall clock) to its hand-off to the sinks. Meaningful when event time follows the clock.
    pub window_latency_seconds: crate::operations::histogram::BatchHistogram,
    /// Replay: output records filed outside the replayed days (computed for context, not written).
    pub outside_range: AtomicU64,
    /// Output records not written because the job had failed (derived again from the uncommitted
    /// readings at the next start).
    pub discarded: AtomicU64,
    /// Checkpoint parts this process's workers wrote.
    pub checkpoint_parts: AtomicU64,
    /// Their bytes.
    pub checkpoint_bytes: AtomicU64,
    /// Microseconds the operators spent encoding their states (in the dataflow's steps), the
    /// states encoded (one per stateful operator per boundary) and their bytes.
    pub checkpoint_encode_micros: AtomicU64,
    /// (See `checkpoint_encode_micros`.)
    pub checkpoint_states: AtomicU64,
    /// (See `checkpoint_encode_micros`.)
    pub checkpoint_state_bytes: AtomicU64,
    /// Stateful operators of all workers of this process.
    pub checkpoint_operators: AtomicU64,
    /// Boundaries whose saved states were dropped, before the sinks delivered them, to keep
    /// within `checkpoints.pending_mib`.
    pub checkpoint_states_dropped: AtomicU64,
    /// Microseconds spent writing parts to the state store (in the worker loop).
    pub checkpoint_write_micros: AtomicU64,
    /// Replay: bytes read from the archive.
    pub archive_bytes: AtomicU64,
    /// Replay: bytes in the archive objects listed for it (set once listed).
    pub archive_total_bytes: AtomicU64,
    /// Replay: archived readings outside the replayed days and their margin (not read into windows).
    pub archive_skipped: AtomicU64,
    /// Per configured sink, by name: what it delivered, retried and dead-lettered.
    pub sinks: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<SinkCounters>>>,
    /// The latest late and malformed records, newest last (for the status page).
    pub recent_rejects: std::sync::Mutex<std::collections::VecDeque<RecentReject>>,
}

impl Metrics {
    /// Counters for a process with `workers` worker threads.
    pub fn new(workers: usize) -> Self {
        let zero = || AtomicU64::new(0);
        Metrics {
            records_read: zero(),
            first_read_ms: zero(),
            last_read_ms: zero(),
            readings: zero(),
            blank: zero(),
            malformed: zero(),
            late: zero(),
            watermarks: (0..workers).map(|_| zero()).collect(),
            out: StreamName::all().map(|_| zero()).collect(),
            reference_updates: zero(),
            reference_errors: zero(),
            kafka_lag: Default::default(),
            window_latency: None,
            alert_latency: None,
            read_delay: None,
            latency_split: None,
            lateness_ms: 0,
            latency_until: u64::MAX,
            window_latency_seconds: crate::operations::histogram::BatchHistogram::exponential(0.001, 2.0, 20),
            outside_range: zero(),
            discarded: zero(),
            checkpoint_parts: zero(),
            checkpoint_bytes: zero(),
            checkpoint_encode_micros: zero(),
            checkpoint_states: zero(),
            checkpoint_state_bytes: zero(),
            checkpoint_states_dropped: zero(),
            checkpoint_operators: zero(),
            checkpoint_write_micros: zero(),
            archive_bytes: zero(),
            archive_total_bytes: zero(),
            archive_skipped: zero(),
            sinks: Default::default(),
            recent_rejects: Default::default(),
        }
    }

    /// The counters of the sink called `name` (created on first use).
    pub fn sink(&self, name: &str) -> std::sync::Arc<SinkCounters> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_default().clone()
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

    /// Records handed to sinks for the streams of `timing` (closed windows, detections).
    pub fn out_of(&self, timing: crate::stream::Timing) -> u64 {
        StreamName::timed(timing).map(|s| self.out(s)).sum()
    }

    /// Records handed to sinks for `stream`.
    pub fn out(&self, stream: StreamName) -> u64 {
        Self::get(&self.out[stream.index()])
    }
}
