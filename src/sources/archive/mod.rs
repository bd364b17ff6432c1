//! The archive source, for replay and backfill: the `raw` stream of earlier runs read back from
//! its archive (`raw/YYYY/MM/DD/HH/`), just the hours a replay needs, in event-time order.
//!
//! Each worker reads its share of each hour's objects, an hour at a time, and hands its readings
//! on sorted by event time: archived readings were accepted (not late) when they were live, and
//! fed in order none is late again, whatever order the archive's files hold them in. An archive
//! filed by arrival time rather than event time (Firehose's own S3 layout) needs `slack`: how long
//! after its event hour a reading may be filed; readings are held until no later folder can hold
//! an earlier one. Memory is one hour (plus the slack) of this worker's readings.

mod config;
pub mod store;
pub use config::ReplayConfig;

use std::collections::VecDeque;
use std::sync::Arc;

use fleetflow_dataflows::{Reading, Time};

use super::{Partition, Poll, Record, SourceError};
use crate::operations::metrics::Metrics;
use crate::parse::{parse_line, Parsed};
use store::{ArchiveObject, ArchiveStore};

const HOUR_MS: Time = 3_600_000;

/// What a replay reads: the archive's hours and the event-time span of readings wanted.
pub struct ArchiveListing {
    /// Where the archive is.
    pub store: ArchiveStore,
    /// Readings with event times in `[start, end)` are read; the others are skipped (counted).
    pub span: (Time, Time),
    /// How long after its event hour a reading may be filed, ms (0: filed by event hour).
    pub slack: Time,
    /// The objects of each hour folder to read, in hour order.
    pub hours: Vec<(Time, Vec<ArchiveObject>)>,
}

impl ArchiveListing {
    /// Lists the hour folders holding readings of `span` (event time, ms), `slack` ms included.
    pub fn list(store: ArchiveStore, span: (Time, Time), slack: Time) -> Result<ArchiveListing, SourceError> {
        let first = span.0 / HOUR_MS;
        let last = span.1.saturating_sub(1) / HOUR_MS + slack.div_ceil(HOUR_MS);
        let mut hours = Vec::new();
        for hour in first..=last {
            let objects = store.list(hour)?;
            if !objects.is_empty() {
                hours.push((hour, objects));
            }
        }
        Ok(ArchiveListing { store, span, slack, hours })
    }

    /// Bytes in the listed objects.
    pub fn total_bytes(&self) -> u64 {
        self.hours.iter().flat_map(|(_, o)| o).map(|o| o.size).sum()
    }

    /// Objects listed.
    pub fn objects(&self) -> usize {
        self.hours.iter().map(|(_, o)| o.len()).sum()
    }
}

/// One worker's share of an archive: every `peers`-th object, starting at its index.
pub struct ArchivePartition {
    listing: Arc<ArchiveListing>,
    /// This worker's objects by hour, the next hour first.
    hours: VecDeque<(Time, Vec<ArchiveObject>)>,
    /// Parsed readings not yet released, with their offsets.
    pending: Vec<(Reading, u64)>,
    /// Released readings, in event-time order.
    ready: VecDeque<(Reading, u64)>,
    /// Lines that did not parse (or were blank), for the driver to report, with their offsets.
    rejects: VecDeque<(Vec<u8>, u64)>,
    /// `(first offset, object)` of each object read: how offsets map back to `object:line`.
    objects: Vec<(u64, String)>,
    next_offset: u64,
    metrics: Arc<Metrics>,
}

impl ArchivePartition {
    /// Worker `index` of `peers`'s share of `listing`.
    pub fn new(listing: Arc<ArchiveListing>, index: usize, peers: usize, metrics: Arc<Metrics>) -> Self {
        let mut k = 0usize;
        let mut hours = VecDeque::new();
        for (hour, objects) in &listing.hours {
            let mine: Vec<ArchiveObject> = objects
                .iter()
                .filter(|_| {
                    k += 1;
                    (k - 1) % peers == index
                })
                .cloned()
                .collect();
            if !mine.is_empty() {
                hours.push_back((*hour, mine));
            }
        }
        ArchivePartition {
            listing,
            hours,
            pending: Vec::new(),
            ready: VecDeque::new(),
            rejects: VecDeque::new(),
            objects: Vec::new(),
            next_offset: 1,
            metrics,
        }
    }

    /// Reads the next hour's objects and releases what no later folder can precede.
    fn load_hour(&mut self) -> Result<(), SourceError> {
        let Some((hour, objects)) = self.hours.pop_front() else {
            self.release(Time::MAX);
            return Ok(());
        };
        let (start, end) = self.listing.span;
        for object in &objects {
            let bytes = self.listing.store.read(object)?;
            Metrics::add(&self.metrics.archive_bytes, bytes.len() as u64);
            self.objects.push((self.next_offset, self.listing.store.display(object)));
            let mut skipped = 0;
            for line in bytes.split(|&b| b == b'\n') {
                let offset = self.next_offset;
                self.next_offset += 1;
                match parse_line(line) {
                    Parsed::Reading(r) if (start..end).contains(&r.timestamp) => self.pending.push((r, offset)),
                    Parsed::Reading(_) => skipped += 1,
                    // The last piece after a final newline is not a line.
                    Parsed::Blank if line.is_empty() => {}
                    _ => self.rejects.push_back((line.to_vec(), offset)),
                }
            }
            Metrics::add(&self.metrics.archive_skipped, skipped);
        }
        self.release(((hour + 1) * HOUR_MS).saturating_sub(self.listing.slack));
        Ok(())
    }

    /// Moves the pending readings below `bound` to the ready queue, in event-time order.
    fn release(&mut self, bound: Time) {
        self.pending.sort_unstable_by_key(|(r, offset)| (r.timestamp, *offset));
        let split = self.pending.partition_point(|(r, _)| r.timestamp < bound);
        self.ready.extend(self.pending.drain(..split));
    }
}

impl Partition for ArchivePartition {
    fn name(&self) -> &str {
        "archive"
    }

    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError> {
        if self.ready.is_empty() && self.rejects.is_empty() {
            if self.hours.is_empty() && self.pending.is_empty() {
                return Ok(Poll::Finished);
            }
            self.load_hour()?;
        }
        let mut n = 0;
        while n < max {
            let Some((line, offset)) = self.rejects.pop_front() else { break };
            emit(Record::Line(&line), offset);
            n += 1;
        }
        while n < max {
            let Some((reading, offset)) = self.ready.pop_front() else { break };
            emit(Record::Reading(reading), offset);
            n += 1;
        }
        Ok(Poll::Ready)
    }

    fn position(&self, offset: u64) -> String {
        let i = self.objects.partition_point(|(first, _)| *first <= offset);
        match i.checked_sub(1).and_then(|i| self.objects.get(i)) {
            Some((first, name)) => format!("{name}:{}", offset - first + 1),
            None => format!("archive:{offset}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H10: Time = 1_764_064_800_000; // 2025-11-25T10:00:00Z

    fn line(id: u64, ts: Time) -> String {
        format!("{id} {ts} 1HGCM82633A004352 -73.98 40.75 30.5\n")
    }

    fn archive(files: &[(&str, String)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    fn read_all(p: &mut ArchivePartition) -> (Vec<(Time, String)>, Vec<String>) {
        let (mut readings, mut rejects) = (Vec::new(), Vec::new());
        loop {
            let mut got = Vec::new();
            let status = p
                .poll(3, &mut |r, offset| match r {
                    Record::Reading(r) => got.push(Ok((r.timestamp, offset))),
                    Record::Line(l) => got.push(Err((String::from_utf8_lossy(l).to_string(), offset))),
                    _ => unreachable!("the archive emits lines and readings"),
                })
                .unwrap();
            for g in got {
                match g {
                    Ok((ts, offset)) => readings.push((ts, p.position(offset))),
                    Err((l, offset)) => rejects.push(format!("{l} at {}", p.position(offset))),
                }
            }
            if status == Poll::Finished {
                return (readings, rejects);
            }
        }
    }

    #[test]
    fn reads_the_span_in_event_time_order_and_reports_bad_lines_with_their_place() {
        let dir = archive(&[
            ("raw/2025/11/25/10/b.jsonl", format!("{}{}", line(1, H10 + 5), line(2, H10 + 1))),
            ("raw/2025/11/25/10/a.jsonl", format!("{}not a reading\n{}", line(3, H10 + 3), line(4, H10 - 5))),
            ("raw/2025/11/25/11/a.jsonl", line(5, H10 + HOUR_MS)),
            ("raw/2025/11/25/12/a.jsonl", line(6, H10 + 2 * HOUR_MS)),
        ]);
        let store = ArchiveStore::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let listing = Arc::new(ArchiveListing::list(store, (H10, H10 + 2 * HOUR_MS), 0).unwrap());
        assert_eq!(listing.objects(), 3, "hour 12 is outside the span");
        let metrics = Arc::new(Metrics::new(1));
        let mut p = ArchivePartition::new(listing, 0, 1, metrics.clone());
        let (readings, rejects) = read_all(&mut p);
        let times: Vec<Time> = readings.iter().map(|(t, _)| t - H10).collect();
        assert_eq!(times, vec![1, 3, 5, HOUR_MS]);
        assert!(readings[0].1.ends_with("10/b.jsonl:2"), "{:?}", readings[0]);
        assert_eq!(rejects.len(), 1);
        assert!(rejects[0].starts_with("not a reading at ") && rejects[0].ends_with("10/a.jsonl:2"), "{rejects:?}");
        assert_eq!(Metrics::get(&metrics.archive_skipped), 1, "the reading before the span is skipped and counted");
    }

    #[test]
    fn workers_share_objects_and_slack_holds_readings_filed_late() {
        // Filed by arrival: a 10:59 reading sits in the 11 folder, after an 11:00 one in 10's.
        let dir = archive(&[
            ("raw/2025/11/25/10/a", line(1, H10 + 3_540_000)),
            ("raw/2025/11/25/10/b", line(2, H10 + 10)),
            ("raw/2025/11/25/11/a", line(3, H10 + 3_599_000)),
            ("raw/2025/11/25/11/b", line(4, H10 + HOUR_MS + 5)),
        ]);
        let open = || ArchiveStore::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let listing = Arc::new(ArchiveListing::list(open(), (H10, H10 + 2 * HOUR_MS), HOUR_MS).unwrap());
        let mut one = ArchivePartition::new(listing.clone(), 0, 1, Arc::new(Metrics::new(1)));
        let times: Vec<Time> = read_all(&mut one).0.iter().map(|(t, _)| t - H10).collect();
        assert_eq!(times, vec![10, 3_540_000, 3_599_000, HOUR_MS + 5], "in order despite the filing");
        let mut shares: Vec<Time> = (0..2)
            .flat_map(|i| read_all(&mut ArchivePartition::new(listing.clone(), i, 2, Arc::new(Metrics::new(1)))).0)
            .map(|(t, _)| t - H10)
            .collect();
        shares.sort();
        assert_eq!(shares, vec![10, 3_540_000, 3_599_000, HOUR_MS + 5], "two workers read each object once");
    }
}
