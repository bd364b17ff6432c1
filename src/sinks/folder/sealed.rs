//! The sealed folder sink: the folder layout of [`super`], but each file is written once,
//! when it is complete, with its lines sorted, under a name that says what it holds rather than
//! who wrote it: `ROOT/<stream>/YYYY/MM/DD/HH/<stream>-<completion hour>.jsonl`. The hour folder
//! is the record's event time; the completion hour is the hour of the record's dataflow time (when
//! its window closed). A file is written when the dataflow's frontier passes the end of its
//! completion hour, so no record can join it later.
//!
//! The route stage sends all records of one event hour to one worker, so the files do not depend
//! on the worker count: a rerun, a replay or a run on another cluster writes the same bytes under
//! the same names, and overwrites rather than duplicates.
//!
//! In a job that checkpoints, [`super::staged`] writes the same files, with the checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleetflow_dataflows::Time;

use crate::encode::Encoded;
use crate::sinks::{Sink, SinkError};
use crate::stream::StreamName;

const HOUR_MS: Time = 3_600_000;

/// The records of one file: `(completion hour, event hour)`.
struct Group {
    /// Number of the group's first record, in the order written.
    first: u64,
    lines: Vec<Vec<u8>>,
}

#[derive(Default)]
struct StreamState {
    open: BTreeMap<(Time, Time), Group>,
    written: u64,
}

impl StreamState {
    /// Records before the first one still in an open group are on disk.
    fn delivered(&self) -> u64 {
        self.open.values().map(|g| g.first).min().unwrap_or(self.written)
    }
}

/// Writes complete, sorted, deterministically named files under a folder.
pub struct SealedFolderSink {
    root: PathBuf,
    /// Where the files are published.
    store: Box<dyn super::store::FileStore>,
    streams: Vec<StreamState>,
    /// This run resumes where an earlier one stopped (from its committed offsets): files may hold
    /// records of that run which this one does not repeat, so it merges rather than replaces.
    resumed: bool,
    /// The files' format and layout.
    files: crate::stored_files::format::FileSpec,
}

impl SealedFolderSink {
    /// A sink writing under `root`.
    pub fn new(root: impl AsRef<Path>) -> Self {
        SealedFolderSink {
            root: root.as_ref().to_path_buf(),
            store: Box::new(super::store::LocalFolder { root: root.as_ref().to_path_buf() }),
            streams: StreamName::all().map(|_| StreamState::default()).collect(),
            resumed: false,
            files: crate::stored_files::format::FileSpec::default(),
        }
    }

    /// The same sink writing files as `files` says.
    pub fn with_files(mut self, files: crate::stored_files::format::FileSpec) -> Self {
        self.files = files;
        self
    }

    /// The same sink publishing into `store` (whose root `root` names, for messages).
    pub fn with_store(mut self, root: PathBuf, store: Box<dyn super::store::FileStore>) -> Self {
        (self.root, self.store) = (root, store);
        self
    }

    /// The file of `stream` for records of event hour `hour` completed in hour `completion`.
    pub fn file_of(&self, stream: StreamName, completion: Time, hour: Time) -> PathBuf {
        let ext = self.files.format.extension();
        let name = match chrono::DateTime::<chrono::Utc>::from_timestamp_millis((completion * HOUR_MS) as i64) {
            Some(t) => format!("{}-{}.{ext}", stream.as_str(), t.format("%Y%m%dT%H")),
            None => format!("{}-{completion}.{ext}", stream.as_str()),
        };
        self.root.join(stream.as_str()).join(self.files.layout.hour(hour * HOUR_MS)).join(name)
    }

    /// The folder the files are written under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn write_group(&self, stream: StreamName, (completion, hour): (Time, Time), lines: Vec<Vec<u8>>) -> Result<(), SinkError> {
        self.publish(&self.file_of(stream, completion, hour), lines)
    }

    /// Writes `lines` as the file at `path`: merged into the file there if this run resumes an
    /// earlier one.
    pub fn publish(&self, path: &Path, mut lines: Vec<Vec<u8>>) -> Result<(), SinkError> {
        // A run that resumes where an earlier one stopped may find part of this file's records
        // written by it, which it does not repeat: below the earlier run's frontier, and (after
        // an exact stop, which writes the files it holds) raw, late and errors records written
        // ahead of it, in any later hour, even when that frontier was 0. So a resumed run merges
        // into every file it finds.
        let stream = self.stream_of(path);
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        let existing = if self.resumed { self.store.read(relative)? } else { None };
        let merged = existing.is_some();
        if let Some(existing) = existing {
            let name = path.display().to_string();
            let existing = crate::stored_files::format::decode(stream, &name, existing)
                .map_err(|e| SinkError::Delivery(format!("merging into {e}")))?;
            lines.extend(existing.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec));
        }
        lines.sort_unstable();
        if merged {
            lines.dedup();
        }
        let lines = lines.concat();
        let file = self.files.format.encode(stream, &lines).map_err(|e| SinkError::Delivery(format!("{}: {e}", path.display())))?;
        self.store.write(relative, &file)
    }

    /// The stream of a file under the root: its first folder.
    fn stream_of(&self, path: &Path) -> StreamName {
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        let first = relative.iter().next().and_then(|c| c.to_str()).unwrap_or("");
        StreamName::parse(first).unwrap_or(StreamName::RAW)
    }
}

impl Sink for SealedFolderSink {
    fn write(&mut self, stream: StreamName, stamp: Time, record: &Encoded) -> Result<(), SinkError> {
        let state = &mut self.streams[stream.index()];
        let first = state.written;
        state.written += 1;
        let key = (stamp / HOUR_MS, record.time / HOUR_MS);
        state.open.entry(key).or_insert_with(|| Group { first, lines: Vec::new() }).lines.push(record.line.clone());
        Ok(())
    }

    fn seal(&mut self, stream: StreamName, frontier: Time) -> Result<(), SinkError> {
        let complete: Vec<(Time, Time)> = self.streams[stream.index()]
            .open
            .keys()
            .take_while(|(completion, _)| (completion + 1) * HOUR_MS <= frontier)
            .copied()
            .collect();
        for key in complete {
            if let Some(group) = self.streams[stream.index()].open.remove(&key) {
                self.write_group(stream, key, group.lines)?;
            }
        }
        Ok(())
    }

    fn sealed(&self) -> bool {
        true
    }

    fn resumed_below(&mut self, _time: Time) {
        self.resumed = true;
    }

    fn poll(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Nothing: a file is written only when complete ([`Sink::seal`]); at the end of a run the
    /// frontier is empty and seals every file.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Writes every open file as it stands: the run that resumes from the stop merges its
    /// records into them.
    fn flush_for_stop(&mut self) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            let open = std::mem::take(&mut self.streams[stream.index()].open);
            for (key, group) in open {
                self.write_group(stream, key, group.lines)?;
            }
        }
        // Records that still arrive join what was just written rather than replace it.
        self.resumed = true;
        Ok(())
    }

    fn written(&self, stream: StreamName) -> u64 {
        self.streams[stream.index()].written
    }

    fn delivered(&self, stream: StreamName) -> u64 {
        self.streams[stream.index()].delivered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Time = 1_764_064_860_000; // 2025-11-25T10:01:00Z

    fn rec(line: &str, time: Time) -> Encoded {
        Encoded { line: format!("{line}\n").into_bytes(), time, key: None }
    }

    #[test]
    fn writes_a_file_once_its_completion_hour_is_sealed_with_sorted_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SealedFolderSink::new(dir.path());
        sink.write(StreamName::named("speeders"), T + 59_999, &rec("b", T)).unwrap();
        sink.write(StreamName::named("speeders"), T + 59_999, &rec("a", T)).unwrap();
        // Completed in the next hour: a file of its own.
        sink.write(StreamName::named("speeders"), T + HOUR_MS, &rec("c", T)).unwrap();
        assert_eq!(sink.delivered(StreamName::named("speeders")), 0);
        sink.seal(StreamName::named("speeders"), T + 60_000).unwrap();
        assert!(!dir.path().join("speeders").exists(), "the hour is not complete yet");
        sink.seal(StreamName::named("speeders"), 1_764_068_400_000).unwrap(); // 11:00
        let first = dir.path().join("speeders/2025/11/25/10/speeders-20251125T10.jsonl");
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "a\nb\n");
        assert_eq!(sink.delivered(StreamName::named("speeders")), 2);
        assert_eq!(sink.written(StreamName::named("speeders")), 3);
        sink.seal(StreamName::named("speeders"), Time::MAX).unwrap();
        let second = dir.path().join("speeders/2025/11/25/10/speeders-20251125T11.jsonl");
        assert_eq!(std::fs::read_to_string(second).unwrap(), "c\n");
        assert_eq!(sink.delivered(StreamName::named("speeders")), 3);
    }

    #[test]
    fn a_rerun_replaces_a_file_and_a_resumed_run_merges_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = SealedFolderSink::new(dir.path());
        for l in ["a", "b"] {
            first.write(StreamName::named("alerts"), T, &rec(l, T)).unwrap();
        }
        first.seal(StreamName::named("alerts"), Time::MAX).unwrap();
        let path = first.file_of(StreamName::named("alerts"), T / HOUR_MS, T / HOUR_MS);
        let mut rerun = SealedFolderSink::new(dir.path());
        rerun.write(StreamName::named("alerts"), T, &rec("b", T)).unwrap();
        rerun.seal(StreamName::named("alerts"), Time::MAX).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        let mut resumed = SealedFolderSink::new(dir.path());
        resumed.resumed_below(T + 1);
        for l in ["c", "a"] {
            resumed.write(StreamName::named("alerts"), T, &rec(l, T)).unwrap();
        }
        resumed.seal(StreamName::named("alerts"), Time::MAX).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        // Also into a file of an hour past where it resumed: an exact stop wrote raw, late and
        // errors records ahead of its frontier.
        let mut ahead = SealedFolderSink::new(dir.path());
        ahead.resumed_below(T - 2 * HOUR_MS);
        ahead.write(StreamName::named("alerts"), T, &rec("d", T)).unwrap();
        ahead.seal(StreamName::named("alerts"), Time::MAX).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\nd\n");
    }

    #[test]
    fn a_resumed_run_merges_into_a_parquet_file_of_the_hive_layout() {
        use crate::stored_files::format::{Compression, FileFormat, FileSpec, Format};
        let dir = tempfile::tempdir().unwrap();
        let files = FileSpec {
            format: FileFormat { format: Format::Parquet, compression: Compression::Zstd },
            layout: crate::stored_files::layout::Layout::Hive,
        };
        let alerts = StreamName::named("alerts");
        let line = |vin: &str| {
            format!("{{\"vin\":\"{vin}\",\"window_start\":\"2025-11-25T10:00:00.000Z\",\"window_end\":\"2025-11-25T10:05:00.000Z\",\"avg_speed\":81.5}}")
        };
        let mut first = SealedFolderSink::new(dir.path()).with_files(files);
        first.write(alerts, T, &rec(&line("B"), T)).unwrap();
        first.seal(alerts, Time::MAX).unwrap();
        let path = first.file_of(alerts, T / HOUR_MS, T / HOUR_MS);
        assert!(path.ends_with("alerts/dt=2025-11-25/hr=10/alerts-20251125T10.parquet"), "{}", path.display());
        let mut resumed = SealedFolderSink::new(dir.path()).with_files(files);
        resumed.resumed_below(T + 1);
        resumed.write(alerts, T, &rec(&line("A"), T)).unwrap();
        resumed.seal(alerts, Time::MAX).unwrap();
        let read = crate::stored_files::format::decode(alerts, &path.display().to_string(), std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(String::from_utf8(read).unwrap(), format!("{}\n{}\n", line("A"), line("B")));
    }
}
