//! What a partition that can be read again (Kafka, the generator) knows about its records: which
//! of them have all their outputs delivered, and which had their eager records (`late`,
//! `errors`, `raw`) delivered, so that a commit or a checkpoint says where a re-read must start
//! and what it must not write again.

use std::collections::VecDeque;

use fleetflow_dataflows::Time;

use super::{Delivered, Run, SavedPosition};

/// The read records of one partition, from the offset it started at.
#[derive(Debug)]
pub struct ReadTracker {
    /// Records read and not yet settled, as runs in offset order by when all their outputs are
    /// delivered.
    runs: VecDeque<Run>,
    /// The same records by when their `late`, `errors` and `raw` records are delivered, exactly
    /// (a run's records share that time), with each run's first offset.
    emitted: VecDeque<(u64, Run)>,
    /// The offset after the last record tracked in `emitted`.
    emitted_next: u64,
    /// Where a re-read would start now: the offset of the first record whose outputs are not all
    /// delivered, and the highest event time before it.
    settled: Option<(i64, Option<Time>)>,
    /// The offset this run started at.
    first: i64,
    /// The partition's highest event time before `first` (an earlier run's).
    resumed_max_ts: Option<Time>,
    /// The records whose `late`, `errors` and `raw` records are delivered (by this run or an
    /// earlier one).
    delivered: Delivered,
}

/// Where a re-read starts, as the tracker sees it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// The first record to read again.
    pub offset: i64,
    /// The partition's highest accepted event time before it.
    pub max_ts: Option<Time>,
    /// Every record below this (when above `offset`) had its eager records delivered.
    pub read_to: Option<u64>,
}

impl ReadTracker {
    /// A partition read again from a checkpoint's position `saved`.
    pub fn resuming(saved: &crate::sources::SavedPosition) -> Self {
        let delivered = Delivered { below: saved.read_to.unwrap_or(0), ranges: saved.delivered.clone() };
        ReadTracker::new(saved.offset, saved.max_ts, delivered)
    }

    /// A partition read from `first`, after an earlier run whose highest event time before it was
    /// `resumed_max_ts` and which delivered the eager records of `delivered`.
    pub fn new(first: i64, resumed_max_ts: Option<Time>, delivered: Delivered) -> Self {
        ReadTracker {
            runs: VecDeque::new(),
            emitted: VecDeque::new(),
            emitted_next: first.max(0) as u64,
            settled: None,
            first,
            resumed_max_ts,
            delivered,
        }
    }

    /// Adds the runs of a poll (see [`super::Partition::track`]).
    pub fn track(&mut self, runs: &[Run], emitted: &[Run]) {
        for run in runs {
            match self.runs.back_mut() {
                Some(last) if run.completion <= last.completion => {
                    last.last_offset = run.last_offset;
                    last.max_ts = last.max_ts.max(run.max_ts);
                }
                _ => self.runs.push_back(*run),
            }
        }
        for run in emitted {
            match self.emitted.back_mut() {
                Some((_, last)) if run.completion == last.completion => last.last_offset = run.last_offset,
                _ => self.emitted.push_back((self.emitted_next, *run)),
            }
            self.emitted_next = run.last_offset + 1;
        }
    }

    /// Moves what the durable frontier has passed into what is settled: the runs whose outputs
    /// are all delivered, and how far their eagerly written records are.
    pub fn settle(&mut self, durable: Time) {
        self.settle_apart(durable, durable);
    }

    /// As [`ReadTracker::settle`], with the runs settled below `state` (a checkpoint's boundary:
    /// the records whose effects its state holds) and the eagerly written records below
    /// `durable` (what was delivered, which may be later: a checkpoint taken while the input is
    /// idle).
    pub fn settle_apart(&mut self, state: Time, durable: Time) {
        let mut max_ts = self.settled.map_or(self.resumed_max_ts, |(_, m)| m);
        while let Some(run) = self.runs.front().filter(|r| r.completion < state) {
            max_ts = max_ts.max(run.max_ts);
            self.settled = Some((run.last_offset as i64 + 1, max_ts));
            self.runs.pop_front();
        }
        let mut waiting = VecDeque::with_capacity(self.emitted.len());
        for (first, run) in self.emitted.drain(..) {
            if run.completion < durable.max(state) {
                self.delivered.add(first, run.last_offset);
            } else {
                waiting.push_back((first, run));
            }
        }
        self.emitted = waiting;
    }

    /// Every record below `next` counts as having had its eager records delivered (a run that
    /// stops exactly delivered them all).
    pub fn read_all_below(&mut self, next: u64) {
        self.delivered.all_below(next);
    }

    /// Where a re-read would start now.
    pub fn resume_point(&self) -> ResumePoint {
        let (offset, max_ts) = self.settled.unwrap_or((self.first, self.resumed_max_ts));
        let read_to = (self.delivered.below > offset.max(0) as u64).then_some(self.delivered.below);
        ResumePoint { offset, max_ts, read_to }
    }

    /// The position of partition `name` for a checkpoint (no source state).
    pub fn position(&self, name: &str) -> SavedPosition {
        let point = self.resume_point();
        SavedPosition {
            partition: name.to_string(),
            offset: point.offset,
            max_ts: point.max_ts,
            read_to: point.read_to,
            delivered: self.delivered.ranges.clone(),
            source_state: Vec::new(),
        }
    }

    /// The records whose eager records are delivered.
    pub fn delivered(&self) -> &Delivered {
        &self.delivered
    }

    /// The partition's highest event time before the offset it started at.
    pub fn resumed_max_ts(&self) -> Option<Time> {
        self.resumed_max_ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_runs_in_order_and_knows_delivered_eager_records_exactly() {
        let mut t = ReadTracker::new(0, None, Delivered::default());
        // Offsets 0..=4 complete at 100, 5..=6 at 200, 7 (a late record) at the capability, 50.
        t.track(
            &[Run { last_offset: 4, completion: 100, max_ts: Some(90) }, Run { last_offset: 7, completion: 200, max_ts: Some(190) }],
            &[
                Run { last_offset: 4, completion: 60, max_ts: None },
                Run { last_offset: 6, completion: 150, max_ts: None },
                Run { last_offset: 7, completion: 50, max_ts: None },
            ],
        );
        t.settle(101);
        assert_eq!(t.resume_point(), ResumePoint { offset: 5, max_ts: Some(90), read_to: None });
        assert!(t.delivered().contains(7) && !t.delivered().contains(5), "the late record behind is delivered");
        t.settle(201);
        assert_eq!(t.resume_point(), ResumePoint { offset: 8, max_ts: Some(190), read_to: None });
        t.read_all_below(10);
        assert_eq!(t.resume_point().read_to, Some(10));
        assert_eq!(t.position("p").offset, 8);
    }
}
