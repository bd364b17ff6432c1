//! Window and alert latency: measured at each hand-off of windows to the sinks against the moment
//! they could close by the wall clock, split where the sources' watermark passed their end
//! (`fleetflow bench`), and kept per boundary.

use super::metrics::Metrics;

/// The wall clock in microseconds since the epoch, what latencies are measured with.
fn wall_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// One message in this many (by offset) has its read delay measured.
pub const READ_DELAY_SAMPLE: u64 = 16;

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

impl Metrics {
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

    /// Measures how long messages take from their producer to the job (see [`Metrics::read_delay`]).
    pub fn measuring_read_delay(mut self) -> Self {
        self.read_delay = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok().map(std::sync::Mutex::new);
        self
    }

    /// Records the read, now, of the message at `offset` sent at `sent` (epoch ms), if measuring
    /// and the message is one of the sample.
    pub fn note_read(&self, offset: u64, sent: Option<u64>) {
        if let (Some(h), Some(sent), 0) = (&self.read_delay, sent, offset % READ_DELAY_SAMPLE) {
            let delay = wall_us().saturating_sub(sent * 1000);
            h.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(delay.max(1));
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn window_latency_is_measured_from_end_plus_lateness_until_the_cut_off() {
        let now = crate::clock::now_ms();
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
        let now = crate::clock::now_ms();
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
