//! Sources: partitions of input that the driver reads, parses and stamps with event time.

use fleetflow_dataflows::{Reading, Time};
use serde::{Deserialize, Serialize};

pub mod archive;
pub mod driver;
pub mod files;
pub mod generator;
pub mod kafka;
pub mod tracker;

pub use driver::SourceDriver;

/// One record read from a partition.
pub enum Record<'a> {
    /// A line of text (without `\n`), to be parsed.
    Line(&'a [u8]),
    /// A reading produced already parsed (the generator).
    Reading(Reading),
    /// A line longer than [`crate::parse::MAX_RECORD_BYTES`]: its first KiB and its length. It is
    /// an error; the source skipped the rest without holding it.
    Oversized {
        /// The line's first bytes.
        head: &'a [u8],
        /// The line's length in bytes.
        len: u64,
    },
    /// A line parsed already (a split file's chunk, parsed before its lateness could be judged),
    /// with the wall clock its readings ahead of time were checked against.
    Parsed {
        /// The line, as read.
        line: &'a [u8],
        /// Its reading.
        reading: Reading,
        /// Epoch ms: the reading is judged against this wall clock, as its chunk's parse was.
        wall: Time,
    },
    /// A message to be parsed, with its key, which when present must be the reading's vin.
    Message {
        /// The value: one reading, text or JSON (a trailing newline is allowed).
        payload: &'a [u8],
        /// The key.
        key: Option<&'a [u8]>,
        /// The message's timestamp (its producer's send time), epoch ms, if it has one.
        sent: Option<Time>,
    },
}

/// What a partition has to say after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// More records may be read right away.
    Ready,
    /// Nothing available now; poll again later.
    Pending,
    /// The partition is exhausted.
    Finished,
}

/// Errors reading a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An I/O error on a named input; not retryable by the job.
    #[error("reading {name}: {source}")]
    Io {
        /// The input.
        name: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Kafka refused or failed an operation; `what` says which, the error says why.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The source's settings do not fit what is there (a missing topic or archive, for example);
    /// the message names the source.
    #[error("{0}")]
    Setup(String),
}

/// A partition of a source: read in order by exactly one worker, with a watermark of its own.
pub trait Partition {
    /// The partition's name, used in source positions (`name:offset`).
    fn name(&self) -> &str;
    /// Reads up to `max` records, handing each with its offset (line number or record index) to `emit`.
    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError>;
    /// For a partition whose earlier records other workers read (one file split in chunks): the
    /// highest accepted event time of the records before those the next poll hands out, once it
    /// is known; the driver raises the partition's running maximum to it before polling.
    fn carried_max(&mut self) -> Option<Time> {
        None
    }
    /// Where a record is, for `late` and `errors`: `name:offset` unless the source says otherwise.
    fn position(&self, offset: u64) -> String {
        format!("{}:{offset}", self.name())
    }
    /// Whether the partition may fall silent for a while (a Kafka partition): after the driver's
    /// idle timeout without data it stops holding the watermark back, until data returns.
    fn may_idle(&self) -> bool {
        false
    }
    /// Whether the partition commits what has been delivered (Kafka); only then is [`Partition::track`] called.
    fn commits(&self) -> bool {
        false
    }
    /// Records `runs` of read records (see [`Run`]): in `runs`, each run's `completion` is when all
    /// outputs derived from its records are delivered; in `emitted`, when their `late`, `errors`
    /// and `raw` records (written as soon as read) are.
    fn track(&mut self, _runs: &[Run], _emitted: &[Run]) {}
    /// Commits what the durable frontier `durable` has passed (`force`: now, and wait for it).
    fn commit(&mut self, _durable: Time, _force: bool) -> Result<(), SourceError> {
        Ok(())
    }
    /// A run's last commit: the records whose outputs complete before `settled` (`Time::MAX`: all
    /// that was read), with `durable` as the time below which a restart writes nothing again, and
    /// every record read marked as read (see [`Partition::delivered_earlier`]).
    fn commit_last(&mut self, _settled: Time, _durable: Time) -> Result<(), SourceError> {
        Ok(())
    }
    /// Where the partition must be read again from to restore a checkpoint at boundary `at`
    /// (every record whose outputs complete at or after it, see [`Run`]), with `durable` as what
    /// was delivered (the eager records before it are not written again) and, if `read_all`,
    /// every record read so far counted as delivered (an exact stop). Only partitions that commit have positions; nothing is committed.
    fn position_at(&mut self, _at: Time, _durable: Time, _read_all: bool) -> Option<SavedPosition> {
        None
    }
    /// Commits a position of a complete checkpoint to the source (for monitoring its lag).
    fn commit_position(&mut self, _position: &SavedPosition, _durable: Time) -> Result<(), SourceError> {
        Ok(())
    }
    /// How many records the partition holds beyond what was read (Kafka consumer lag), if known.
    fn lag(&self) -> Option<i64> {
        None
    }
    /// The partition's highest event time when an earlier run last committed (to judge lateness alike).
    fn resumed_max_ts(&self) -> Option<Time> {
        None
    }
    /// The offsets an earlier run read and delivered the `late`, `errors` and `raw` records of:
    /// they are not written again (their readings still enter the windows).
    fn delivered_earlier(&self) -> Delivered {
        Delivered::default()
    }
}

/// Offsets whose `late`, `errors` and `raw` records are delivered: all below `below`, and the
/// inclusive ranges above it (records read later than newer ones whose are not delivered yet: a
/// late record behind a reading of the next window).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Every offset below this.
    pub below: u64,
    /// Sorted, disjoint, each above `below`.
    pub ranges: Vec<(u64, u64)>,
}

impl Delivered {
    /// Whether `offset` is delivered.
    pub fn contains(&self, offset: u64) -> bool {
        if offset < self.below {
            return true;
        }
        let i = self.ranges.partition_point(|(_, last)| *last < offset);
        self.ranges.get(i).is_some_and(|(first, _)| *first <= offset)
    }

    /// Adds the offsets `first..=last`, merging ranges and moving `below` up over those it meets.
    pub fn add(&mut self, first: u64, last: u64) {
        self.ranges.push((first, last));
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
        for (a, b) in self.ranges.drain(..) {
            match merged.last_mut() {
                Some(m) if a <= m.1.saturating_add(1) => m.1 = m.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.ranges = merged;
        self.absorb();
    }

    /// Everything below `offset` counts as delivered.
    pub fn all_below(&mut self, offset: u64) {
        self.below = self.below.max(offset);
        self.absorb();
    }

    /// Moves `below` over the ranges that start at or below it.
    fn absorb(&mut self) {
        let taken = self.ranges.iter().take_while(|(first, _)| *first <= self.below).count();
        for (_, last) in self.ranges.drain(..taken) {
            self.below = self.below.max(last.saturating_add(1));
        }
    }
}

/// Where a partition is read again from after a restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPosition {
    /// The partition's name (`topic/partition`).
    pub partition: String,
    /// The first record to read again: every reading at or after the boundary lies at or after it.
    pub offset: i64,
    /// The partition's highest accepted event time before `offset` (lateness is judged alike).
    pub max_ts: Option<Time>,
    /// Records below this offset had their `late`, `errors` and `raw` records delivered.
    pub read_to: Option<u64>,
    /// And these records above it (inclusive offset ranges).
    pub delivered: Vec<(u64, u64)>,
    /// What the source needs besides the offset to read again from it (the generator's fleet
    /// as of a round at or before `offset`); empty for Kafka, which reads its records back.
    pub source_state: Vec<u8>,
}

/// A run of consecutive records of a partition: the last one's offset, the latest time by which
/// all their outputs are delivered, and their highest accepted event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Offset of the run's last record.
    pub last_offset: u64,
    /// All outputs derived from the run are delivered once the durable frontier passes this.
    pub completion: Time,
    /// Highest event time among the run's accepted readings.
    pub max_ts: Option<Time>,
}

impl Run {
    /// Adds a record to a list of runs, merging it into the last run when that does not delay it.
    pub fn push(runs: &mut Vec<Run>, offset: u64, completion: Time, ts: Option<Time>) {
        match runs.last_mut() {
            Some(last) if completion <= last.completion => {
                last.last_offset = offset;
                last.max_ts = last.max_ts.max(ts);
            }
            _ => runs.push(Run { last_offset: offset, completion, max_ts: ts }),
        }
    }

    /// Adds a record to a list of runs whose records share their completion exactly (what is
    /// delivered is then known record by record).
    pub fn push_exact(runs: &mut Vec<Run>, offset: u64, completion: Time) {
        match runs.last_mut() {
            Some(last) if completion == last.completion => last.last_offset = offset,
            _ => runs.push(Run { last_offset: offset, completion, max_ts: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_offsets_are_known_one_by_one_beyond_the_prefix() {
        let mut d = Delivered { below: 10, ranges: Vec::new() };
        // A late record (15) behind a reading of the next window (12..=14) is delivered first.
        d.add(15, 15);
        d.add(20, 22);
        assert!(d.contains(9) && !d.contains(10) && !d.contains(14) && d.contains(15) && !d.contains(16) && d.contains(21));
        d.add(10, 14);
        assert_eq!((d.below, d.ranges.clone()), (16, vec![(20, 22)]), "the prefix moves over what it meets");
        d.add(16, 19);
        assert_eq!((d.below, d.ranges.is_empty()), (23, true));
        let mut e = Delivered { below: 0, ranges: vec![(5, 6), (9, 9)] };
        e.all_below(7);
        assert_eq!((e.below, e.ranges.clone()), (7, vec![(9, 9)]));
        assert!(e.contains(9) && !e.contains(8));
    }
}
