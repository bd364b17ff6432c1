//! The sealed folder sink of a job that checkpoints: the same files as [`super::sealed`], each
//! written once, complete, but committed with the checkpoints in two phases, as Flink's file sink
//! keeps its pending files in its checkpoints.
//!
//! Why: a sealed file holds `late`, `errors` and `raw` records. A restart from an earlier
//! checkpoint reads again every record it does not record as delivered and writes its outputs
//! again (`late` and `errors` at the hour they are read at, so into another file). A file made
//! visible before a checkpoint recorded all its records as delivered would repeat them after a
//! crash, or after a stop that gave up while another sink was down. And a file is complete only
//! once its hour is: were its records to count as delivered only then, no checkpoint could
//! complete within an hour (a crash would read an hour again).
//!
//! How ([`super::staging`] holds the folders):
//! 1. The sink counts a record as delivered once written. Just before a worker writes its part
//!    of checkpoint `N`, whose durable frontier is `D`, the sink stages every record it holds
//!    with a dataflow time below `D` (an exact stop's checkpoint: every record) as pieces of the
//!    files they belong to, marking a file done once its hour is complete and all of it is
//!    staged; what is pending becomes `N`'s. The part then records as delivered exactly the
//!    records staged under `N` or below: a restart from `N` writes again the outputs at or after
//!    `D`, and the rejects it does not count as delivered, and nothing else.
//! 2. When the worker learns that checkpoint `N` is complete, it writes into place each file
//!    it marked done under `N` or below, from its pieces.
//!
//! A restart from checkpoint `N` keeps what earlier runs staged under `N` or below (carried)
//! and removes the rest. Every file is written by the worker that owns its event hour
//! ([`owner`]): with its own pieces it takes the carried ones, and a carried file that no record
//! of the new run joins it writes once a checkpoint is past the file's hour. A drained run
//! writes everything at its end.

use std::collections::BTreeMap;
use std::path::Path;

use fleetflow_dataflows::Time;

use super::sealed::SealedFolderSink;
use super::staging::Staging;
use crate::encode::Encoded;
use crate::sinks::{CheckpointCommit, Sink, SinkError};
use crate::stored_files::layout::HOUR_MS;
use crate::stream::StreamName;

/// The records of one file not staged yet: `(dataflow time, line)`, and whether its hour is
/// complete.
#[derive(Default)]
struct Held {
    lines: Vec<(Time, Vec<u8>)>,
    complete: bool,
}

#[derive(Default)]
struct StreamState {
    /// By `(completion hour, event hour)`.
    held: BTreeMap<(Time, Time), Held>,
    written: u64,
}

/// A sealed folder sink that commits with the checkpoints.
pub struct StagedSealedSink {
    /// The files' names, and how a file is written into place.
    files: SealedFolderSink,
    staging: Staging,
    streams: Vec<StreamState>,
    /// This worker, of how many: it writes the files of the event hours it owns.
    worker: (usize, usize),
}

/// The worker of `peers` that writes the sealed files of event hour `hour` (hours since the
/// epoch): the route stage sends it every record of that hour (timely's exchange sends a hash
/// below the worker count to the worker of that index).
pub fn owner(hour: Time, peers: usize) -> usize {
    (hour % peers.max(1) as Time) as usize
}

impl StagedSealedSink {
    /// The sink of worker `worker` (of `peers`), whose run tag is `tag`, writing under `root`.
    pub fn new(root: impl AsRef<Path>, tag: &str, worker: (usize, usize)) -> Self {
        Self::staging_in(SealedFolderSink::new(root.as_ref()), root.as_ref(), tag, worker)
    }

    /// The sink of worker `worker` (of `peers`), whose run tag is `tag`, publishing through
    /// `files` and staging under `staging` (`<staging>/.staged/`, a local folder).
    pub fn staging_in(files: SealedFolderSink, staging: &Path, tag: &str, (worker, peers): (usize, usize)) -> Self {
        let staging = Staging::new(staging, tag);
        let streams = StreamName::all().map(|_| Default::default()).collect();
        StagedSealedSink { files, staging, streams, worker: (worker, peers) }
    }

    /// The same sink writing files as `files` says.
    pub fn with_files(mut self, files: crate::stored_files::format::FileSpec) -> Self {
        self.files = self.files.with_files(files);
        self
    }

    /// Stages the records held with a dataflow time below `below`, marking the files whose hour
    /// is complete and all staged done (`all`: every file counts as complete: the run ended).
    fn stage_below(&mut self, below: Time, all: bool) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            let mut done = Vec::new();
            for (&(completion, hour), held) in &mut self.streams[stream.index()].held {
                let (mut lines, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut held.lines).into_iter().partition(|(t, _)| *t < below);
                held.lines = kept;
                let finished = (held.complete || all) && held.lines.is_empty();
                if lines.is_empty() && !finished {
                    continue;
                }
                lines.sort_unstable_by(|a, b| a.1.cmp(&b.1));
                let path = self.files.file_of(stream, completion, hour);
                let relative = path.strip_prefix(self.files.root()).unwrap_or(&path);
                self.staging.stage(relative, lines.into_iter().map(|(_, l)| l).collect(), finished)?;
                if finished {
                    done.push((completion, hour));
                }
            }
            for key in done {
                self.streams[stream.index()].held.remove(&key);
            }
        }
        Ok(())
    }
}

impl Sink for StagedSealedSink {
    fn write(&mut self, stream: StreamName, stamp: Time, record: &Encoded) -> Result<(), SinkError> {
        let state = &mut self.streams[stream.index()];
        state.written += 1;
        let key = (stamp / HOUR_MS, record.time / HOUR_MS);
        state.held.entry(key).or_default().lines.push((stamp, record.line.clone()));
        Ok(())
    }

    /// A file whose completion hour the frontier passed is complete (written once staged whole
    /// and covered by a complete checkpoint).
    fn seal(&mut self, stream: StreamName, frontier: Time) -> Result<(), SinkError> {
        for ((completion, _), held) in &mut self.streams[stream.index()].held {
            if (completion + 1) * HOUR_MS > frontier {
                break;
            }
            held.complete = true;
        }
        Ok(())
    }

    fn sealed(&self) -> bool {
        true
    }

    fn resumed_below(&mut self, time: Time) {
        self.files.resumed_below(time);
    }

    fn prepare_checkpoint(&mut self, c: &CheckpointCommit) -> Result<(), SinkError> {
        self.stage_below(if c.stop { Time::MAX } else { c.durable }, false)?;
        self.staging.tag(c.name)
    }

    fn checkpoint_complete(&mut self, name: Time) -> Result<(), SinkError> {
        if name == Time::MAX {
            self.stage_below(Time::MAX, true)?;
        }
        let ((worker, peers), files) = (self.worker, &self.files);
        let owns = |relative: &Path| super::staging::event_hour(relative).is_some_and(|h| owner(h, peers) == worker);
        self.staging.complete(name, owns, &mut |relative, lines| files.publish(&files.root().join(relative), lines))
    }

    fn restore_checkpoint(&mut self, name: Time, first: bool) -> Result<(), SinkError> {
        self.staging.restore(name, first)
    }

    fn poll(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Nothing: records are staged with the checkpoints, and written at the end of a drained run
    /// ([`Sink::checkpoint_complete`] with `MAX`).
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Nothing: the stop's checkpoint stages every record.
    fn flush_for_stop(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn written(&self, stream: StreamName) -> u64 {
        self.streams[stream.index()].written
    }

    /// Every record written: each checkpoint stages what it covers before its part is written.
    fn delivered(&self, stream: StreamName) -> u64 {
        self.streams[stream.index()].written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Time = 1_764_064_860_000; // 2025-11-25T10:01:00Z

    fn rec(line: &str, time: Time) -> Encoded {
        Encoded { line: format!("{line}\n").into_bytes(), time, key: None }
    }

    fn checkpoint(name: Time, durable: Time) -> CheckpointCommit {
        CheckpointCommit { name, at: durable, durable, stop: false }
    }

    /// The files under `root` that a reader sees (not the staged ones), with their lines.
    fn visible(root: &Path) -> Vec<String> {
        let files = super::super::staging::files_under(root).into_iter().filter(|f| !f.starts_with(root.join(".staged")));
        files
            .map(|f| format!("{}: {}", f.file_name().unwrap().to_string_lossy(), std::fs::read_to_string(&f).unwrap().replace('\n', " ")))
            .collect()
    }

    fn staged_is_empty(root: &Path) -> bool {
        super::super::staging::files_under(&root.join(".staged")).is_empty()
    }

    #[test]
    fn a_file_appears_whole_once_a_checkpoint_covers_all_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let speeders = StreamName::named("speeders");
        let mut sink = StagedSealedSink::new(dir.path(), "p000-w000-a", (0, 1));
        sink.write(speeders, T, &rec("b", T)).unwrap();
        sink.write(speeders, T + 5, &rec("a", T)).unwrap();
        assert_eq!(sink.delivered(speeders), 2, "delivered once written: each checkpoint stages what it covers");
        sink.prepare_checkpoint(&checkpoint(100, T + 1)).unwrap();
        sink.checkpoint_complete(100).unwrap();
        assert!(visible(dir.path()).is_empty(), "the hour is not complete");
        sink.write(speeders, T + 10, &rec("c", T)).unwrap();
        sink.seal(speeders, T + HOUR_MS).unwrap();
        sink.prepare_checkpoint(&checkpoint(200, T + 6)).unwrap();
        sink.checkpoint_complete(200).unwrap();
        assert!(visible(dir.path()).is_empty(), "complete, but not all of it is below a checkpoint's frontier");
        sink.prepare_checkpoint(&checkpoint(300, T + HOUR_MS)).unwrap();
        assert!(visible(dir.path()).is_empty(), "staged whole, the checkpoint not complete");
        sink.checkpoint_complete(300).unwrap();
        assert_eq!(visible(dir.path()), ["speeders-20251125T10.jsonl: a b c "]);
        assert!(staged_is_empty(dir.path()), "nothing left staged");
    }

    #[test]
    fn a_restart_keeps_what_its_checkpoint_covers_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (errors, alerts) = (StreamName::named("errors"), StreamName::named("alerts"));
        let mut first = StagedSealedSink::new(dir.path(), "p000-w000-a", (0, 1));
        first.write(errors, T, &rec("e1", T)).unwrap();
        // Written again by the restart: at or after the frontier of the checkpoint it restores.
        first.write(errors, T + 10, &rec("e2", T)).unwrap();
        // A file complete under checkpoint 100, which the run never learned was complete.
        first.write(alerts, T - HOUR_MS, &rec("x", T - HOUR_MS)).unwrap();
        first.seal(alerts, T).unwrap();
        first.prepare_checkpoint(&checkpoint(100, T + 10)).unwrap();
        first.prepare_checkpoint(&checkpoint(200, T + 20)).unwrap();
        first.write(errors, T + 30, &rec("e3", T)).unwrap();
        first.seal(errors, T + HOUR_MS).unwrap();
        drop(first);

        // At 2 workers: the first worker of the process carries what 100 covers.
        let mut other = StagedSealedSink::new(dir.path(), "p000-w001-b", (1, 2));
        other.restore_checkpoint(100, false).unwrap();
        let mut restart = StagedSealedSink::new(dir.path(), "p000-w000-b", (0, 2));
        restart.restore_checkpoint(100, true).unwrap();
        for sink in [&mut restart, &mut other] {
            sink.resumed_below(T + 10);
        }
        // The hour of `errors` is worker 0's, that of `alerts` worker 1's: each writes its own.
        assert_eq!((owner(T / HOUR_MS, 2), owner(T / HOUR_MS - 1, 2)), (0, 1));
        restart.write(errors, T + 10, &rec("e2", T)).unwrap();
        restart.write(errors, T + 30, &rec("e3", T)).unwrap();
        restart.seal(errors, T + HOUR_MS).unwrap();
        let soon = T + 20;
        for sink in [&mut restart, &mut other] {
            sink.prepare_checkpoint(&checkpoint(soon, soon)).unwrap();
            sink.checkpoint_complete(soon).unwrap();
        }
        assert_eq!(visible(dir.path()), ["alerts-20251125T09.jsonl: x "], "complete and covered: written by its owner");
        let past = T + HOUR_MS;
        for sink in [&mut restart, &mut other] {
            sink.prepare_checkpoint(&checkpoint(past, past)).unwrap();
            sink.checkpoint_complete(past).unwrap();
        }
        assert_eq!(visible(dir.path()), ["alerts-20251125T09.jsonl: x ", "errors-20251125T10.jsonl: e1 e2 e3 "]);
        assert!(staged_is_empty(dir.path()), "nothing left staged");
    }

    #[test]
    fn a_carried_file_no_record_joins_is_written_once_a_checkpoint_is_past_its_hour() {
        let dir = tempfile::tempdir().unwrap();
        let raw = StreamName::named("raw");
        let mut first = StagedSealedSink::new(dir.path(), "p000-w000-a", (0, 1));
        first.write(raw, T, &rec("r1", T)).unwrap();
        first.prepare_checkpoint(&checkpoint(T + 1, T + 1)).unwrap();
        drop(first);
        let mut restart = StagedSealedSink::new(dir.path(), "p000-w000-b", (0, 2));
        restart.restore_checkpoint(T + 1, true).unwrap();
        restart.resumed_below(T + 1);
        restart.prepare_checkpoint(&checkpoint(T + 60_000, T + 60_000)).unwrap();
        restart.checkpoint_complete(T + 60_000).unwrap();
        assert!(visible(dir.path()).is_empty(), "its hour is not over");
        restart.prepare_checkpoint(&checkpoint(T + HOUR_MS, T + HOUR_MS)).unwrap();
        restart.checkpoint_complete(T + HOUR_MS).unwrap();
        assert_eq!(visible(dir.path()), ["raw-20251125T10.jsonl: r1 "]);
        assert!(staged_is_empty(dir.path()));
    }

    #[test]
    fn an_exact_stop_stages_everything_and_a_drained_run_writes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let raw = StreamName::named("raw");
        let mut first = StagedSealedSink::new(dir.path(), "p000-w000-a", (0, 1));
        first.write(raw, T + 50, &rec("r2", T)).unwrap();
        first.prepare_checkpoint(&CheckpointCommit { name: T + 3, at: T, durable: T + 1, stop: true }).unwrap();
        first.checkpoint_complete(T + 3).unwrap();
        assert!(visible(dir.path()).is_empty());
        drop(first);
        let mut restart = StagedSealedSink::new(dir.path(), "p000-w000-b", (0, 2));
        restart.restore_checkpoint(T + 3, true).unwrap();
        restart.resumed_below(T + 1);
        restart.write(raw, T + 60, &rec("r3", T)).unwrap();
        restart.checkpoint_complete(Time::MAX).unwrap();
        assert_eq!(visible(dir.path()), ["raw-20251125T10.jsonl: r2 r3 "]);
        assert!(staged_is_empty(dir.path()));
    }
}
