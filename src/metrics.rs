//! Job counters shared by all workers of a process: what came in, what was rejected, what went out.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::route::StreamName;

/// The wall clock in microseconds since the epoch, what latencies are measured with.
fn wall_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

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
    pub window_latency_seconds: crate::histogram::BatchHistogram,
    /// Replay: output records filed outside the replayed days (computed for context, not written).
    pub outside_range: AtomicU64,
    /// Output records not written because the job had failed (derived again from the uncommitted
    /// readings at the next start).
    pub discarded: AtomicU64,
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

/// Rejected records kept for the status page.
const RECENT_REJECTS: usize = 20;

/// A late or malformed record, as the status page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecentReject {
    /// `late` or `errors`.
    pub stream: &'static str,
    /// Why it was rejected.
    pub reason: String,
    /// Where it came from (`file:line`, `partition/offset`).
    pub position: String,
    /// The record, cut to 160 bytes.
    pub record: String,
    /// When it arrived, epoch ms.
    pub arrived: u64,
}

/// Window latency split at the moment the sources' watermark passed the window's end.
#[derive(Debug)]
pub struct LatencySplit {
    /// Tumbling window length, ms: the ends to note.
    pub window_ms: u64,
    /// Window ends the watermark has passed, with the wall-clock moment (µs), until handed off.
    pub passed_at: std::collections::BTreeMap<u64, u64>,
    /// The highest window end noted.
    pub noted_to: u64,
    /// Due moment to watermark passing the end.
    pub source: hdrhistogram::Histogram<u64>,
    /// Watermark passing the end to hand-off.
    pub dataflow: hdrhistogram::Histogram<u64>,
    /// Per window end: windows handed off, and the first and last hand-off's latency (µs).
    pub boundaries: std::collections::BTreeMap<u64, (u64, u64, u64)>,
}

/// Window latency of one boundary: the windows that ended at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BoundaryLatency {
    /// The windows' end, epoch ms.
    pub end_ms: u64,
    /// Windows handed off.
    pub windows: u64,
    /// From the due moment to the sources' watermark passing the end, ms (none if not seen).
    pub source_ms: Option<f64>,
    /// Latency of the first hand-off, ms.
    pub first_ms: f64,
    /// Latency of the last hand-off, ms.
    pub last_ms: f64,
}

/// One sink's delivery counters, shared by its instances on every worker of the process.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Records delivered (acknowledged by the service).
    pub delivered: AtomicU64,
    /// Records sent again after a failure.
    pub retried: AtomicU64,
    /// Records written to the dead-letter folder.
    pub dead_lettered: AtomicU64,
    /// Requests made.
    pub requests: AtomicU64,
    /// Requests that failed as a whole (throttled, 5xx, timed out, unreachable).
    pub failed_requests: AtomicU64,
    /// Per worker of the process: records handed to the sink and records it settled (delivered
    /// or dead-lettered), as last published by the worker.
    pub ledgers: std::sync::Mutex<std::collections::BTreeMap<usize, (u64, u64)>>,
    /// The latest error (wall clock, epoch ms, and the error), retried or not.
    pub last_error: std::sync::Mutex<Option<(u64, String)>>,
}

impl SinkCounters {
    /// Notes `error` as the sink's latest.
    pub fn note_error(&self, error: &str) {
        let now = crate::sources::driver::now_ms();
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, error.to_string()));
    }

    /// Records handed to the sink and not settled yet, over the process's workers.
    pub fn pending(&self) -> u64 {
        self.ledgers.lock().unwrap_or_else(|p| p.into_inner()).values().map(|(w, s)| w.saturating_sub(*s)).sum()
    }

    /// Records handed to the sink, over the process's workers.
    pub fn handed(&self) -> u64 {
        self.ledgers.lock().unwrap_or_else(|p| p.into_inner()).values().map(|(w, _)| w).sum()
    }
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
            out: StreamName::all().map(|_| zero()).collect(),
            reference_updates: zero(),
            reference_errors: zero(),
            kafka_lag: Default::default(),
            window_latency: None,
            alert_latency: None,
            latency_split: None,
            lateness_ms: 0,
            latency_until: u64::MAX,
            window_latency_seconds: crate::histogram::BatchHistogram::exponential(0.001, 2.0, 20),
            outside_range: zero(),
            discarded: zero(),
            archive_bytes: zero(),
            archive_total_bytes: zero(),
            archive_skipped: zero(),
            sinks: Default::default(),
            recent_rejects: Default::default(),
        }
    }

    /// Keeps the last of `rejected` (sent to `stream`) among the recent rejects.
    pub fn note_reject(&self, stream: &'static str, rejected: Option<&crate::rejected::Rejected>) {
        let Some(r) = rejected else { return };
        let cut = &r.record[..r.record.len().min(160)];
        let reject = RecentReject {
            stream,
            reason: r.reason.clone(),
            position: r.position.clone(),
            record: String::from_utf8_lossy(cut).into_owned(),
            arrived: r.arrived,
        };
        let mut recent = self.recent_rejects.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back(reject);
        if recent.len() > RECENT_REJECTS {
            recent.pop_front();
        }
    }

    /// The counters of the sink called `name` (created on first use).
    pub fn sink(&self, name: &str) -> std::sync::Arc<SinkCounters> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_default().clone()
    }

    /// Also measures window latency against `lateness_ms` (for an event time that follows the clock).
    pub fn measuring_latency(mut self, lateness_ms: u64, until: u64, window_ms: u64) -> Self {
        let histogram = || hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok();
        if let (Some(source), Some(dataflow)) = (histogram(), histogram()) {
            let split = LatencySplit {
                window_ms: window_ms.max(1),
                passed_at: Default::default(),
                noted_to: 0,
                source,
                dataflow,
                boundaries: Default::default(),
            };
            self.latency_split = Some(std::sync::Mutex::new(split));
        }
        self.latency_until = until;
        // 1 µs to 1 hour (longer latencies count as an hour), three significant digits.
        self.window_latency = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok().map(std::sync::Mutex::new);
        self.alert_latency = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok().map(std::sync::Mutex::new);
        self.lateness_ms = lateness_ms;
        self
    }

    /// Records the hand-off, now, of `count` windows that ended at `end` (epoch ms).
    pub fn windows_handed_off(&self, end: u64, count: u64) {
        let now_us = wall_us();
        let due_us = (end + self.lateness_ms) * 1000;
        let latency = now_us.saturating_sub(due_us);
        self.window_latency_seconds.observe_n(latency as f64 / 1e6, count);
        if let (Some(h), true) = (&self.window_latency, end <= self.latency_until) {
            let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
            h.saturating_record_n(latency, count);
            if let Some(split) = &self.latency_split {
                let mut s = split.lock().unwrap_or_else(|p| p.into_inner());
                let b = s.boundaries.entry(end).or_insert((0, latency, latency));
                *b = (b.0 + count, b.1.min(latency), b.2.max(latency));
                if let Some(&passed) = s.passed_at.get(&end) {
                    s.source.saturating_record_n(passed.saturating_sub(due_us), count);
                    s.dataflow.saturating_record_n(now_us.saturating_sub(passed), count);
                }
            }
        }
    }

    /// When measuring: the window latency of each boundary measured, by end.
    pub fn latency_by_boundary(&self) -> Vec<BoundaryLatency> {
        let Some(split) = &self.latency_split else { return Vec::new() };
        let s = split.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |us: u64| us as f64 / 1000.0;
        s.boundaries
            .iter()
            .map(|(&end_ms, &(windows, first, last))| BoundaryLatency {
                end_ms,
                windows,
                source_ms: s.passed_at.get(&end_ms).map(|&p| ms(p.saturating_sub((end_ms + self.lateness_ms) * 1000))),
                first_ms: ms(first),
                last_ms: ms(last),
            })
            .collect()
    }

    /// When measuring: notes the moment the lowest of the workers' source watermarks passes
    /// window ends (called by each worker after it updated its own watermark).
    pub fn note_watermarks(&self) {
        let Some(split) = &self.latency_split else { return };
        let Some(low) = self.watermarks.iter().map(Self::get).min().filter(|w| *w != u64::MAX) else { return };
        let mut s = split.lock().unwrap_or_else(|p| p.into_inner());
        let passed = low / s.window_ms * s.window_ms;
        if passed <= s.noted_to {
            return;
        }
        let now_us = wall_us();
        // Every end passed since the last note (the first note starts at the latest end).
        let first = if s.noted_to == 0 { passed } else { s.noted_to + s.window_ms };
        let window = s.window_ms;
        for end in (first..=passed).step_by(window as usize).take(10_000) {
            s.passed_at.insert(end, now_us);
        }
        s.noted_to = passed;
        // Ends long handed off are not needed any more.
        let keep_from = passed.saturating_sub(3_600_000);
        s.passed_at = s.passed_at.split_off(&keep_from);
    }

    /// Records the hand-off, now, of alerts whose windows ended at `ends` (epoch ms), when measuring.
    pub fn alerts_handed_off(&self, ends: impl Iterator<Item = u64>) {
        let Some(h) = &self.alert_latency else { return };
        let now_us = wall_us();
        let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
        for end in ends.filter(|e| *e <= self.latency_until) {
            h.saturating_record(now_us.saturating_sub(end * 1000));
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
        Self::get(&self.out[stream.index()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_latency_is_measured_from_end_plus_lateness_until_the_cut_off() {
        let now = crate::sources::driver::now_ms();
        let m = Metrics::new(1).measuring_latency(5_000, now, 60_000);
        m.windows_handed_off(now - 6_000, 3); // could close 1 s ago
        m.windows_handed_off(now + 60_000, 1); // after the cut-off: not measured
        let h = m.window_latency.as_ref().unwrap().lock().unwrap();
        assert_eq!(h.len(), 3);
        let ms = h.value_at_quantile(0.5) as f64 / 1000.0;
        assert!((1_000.0..2_000.0).contains(&ms), "{ms}");
        assert!(Metrics::new(1).window_latency.is_none(), "off unless asked for");
    }

    #[test]
    fn latency_splits_where_the_watermark_passed_the_window_end() {
        let now = crate::sources::driver::now_ms();
        let end = now / 60_000 * 60_000 - 60_000; // a minute end passed a minute or so ago
        let m = Metrics::new(2).measuring_latency(5_000, u64::MAX, 60_000);
        m.watermarks[0].store(end + 10, Ordering::Relaxed);
        m.watermarks[1].store(end - 10, Ordering::Relaxed);
        m.note_watermarks();
        let passed = m.latency_split.as_ref().unwrap().lock().unwrap().passed_at.contains_key(&end);
        assert!(!passed, "one worker is not there yet");
        m.watermarks[1].store(end + 60_000 + 5, Ordering::Relaxed);
        m.note_watermarks();
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.windows_handed_off(end, 1);
        let s = m.latency_split.as_ref().unwrap().lock().unwrap();
        assert_eq!((s.source.len(), s.dataflow.len()), (1, 1));
        assert!(s.dataflow.value_at_quantile(0.5) >= 20_000, "the dataflow side is the 20 ms after the watermark passed");
        drop(s);
        // A second batch of the same boundary, later: the boundary's last hand-off moves.
        std::thread::sleep(std::time::Duration::from_millis(10));
        m.windows_handed_off(end, 3);
        let b = m.latency_by_boundary();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].end_ms, b[0].windows), (end, 4));
        assert!(b[0].last_ms >= b[0].first_ms + 10.0, "{:?}", b[0]);
        let source = b[0].source_ms.expect("the watermark passed this end");
        assert!(b[0].first_ms >= source + 20.0, "{:?}", b[0]);
    }
}
