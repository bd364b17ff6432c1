//! The local folder sink: output laid out as Kinesis Firehose lays it out in S3,
//! `ROOT/<stream>/YYYY/MM/DD/HH/<file>.jsonl` (or Hive style `dt=YYYY-MM-DD/hr=HH/`; JSON lines,
//! compressed or not, or Parquet: see [`format`]), each file written atomically (temporary file, then
//! rename), flushed when a stream's buffer reaches its size hint or its interval hint, and at
//! shutdown. The hour folder is the record's event time (UTC), so reruns file records alike.
//!
//! Files are written (and synced) by a writer thread of the sink, not by the worker: a flush
//! hands the buffers over and the worker goes on; records count as delivered once their file is
//! on disk. What is handed over and not yet on disk is bounded in bytes ([`IN_FLIGHT_BYTES`]):
//! enough for the burst of a window boundary (a million windows are about 170 MB of lines), so
//! the worker does not wait for the disk there, while a disk slower than the output over time
//! still holds the worker back.

mod config;
pub use config::FolderConfig;

pub mod sealed;
pub mod staged;
pub mod staging;
pub mod store;
pub mod stored;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleetflow_dataflows::Time;

use crate::encode::Encoded;
use crate::sinks::{Sink, SinkError};
use crate::stored_files::format::{FileFormat, FileSpec};
use crate::stream::StreamName;

/// Buffering hints, as Firehose has them.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferHints {
    /// Flush a stream once this many bytes are buffered.
    pub size_bytes: usize,
    /// Flush a stream this long after its first buffered record.
    pub interval: Duration,
}

struct StreamBuffer {
    /// Buffered lines per hour folder (`YYYY/MM/DD/HH`).
    by_hour: BTreeMap<String, Vec<u8>>,
    bytes: usize,
    since: Option<Instant>,
    files: u64,
    /// Records written.
    written: u64,
    /// Records written before the last completed flush: all on disk.
    delivered: u64,
    /// The last hour seen and its folder, to format folder names once per hour.
    last_hour: Option<(u64, String)>,
}

/// Files of one stream to write, and the stream's record count once they are on disk.
struct Flush {
    stream: StreamName,
    files: Vec<(PathBuf, Vec<u8>)>,
    written: u64,
    format: FileFormat,
    /// The lines' bytes, counted against the in-flight bound.
    bytes: usize,
}

/// A flush done: its stream and record count, how it went, and its emptied buffers (reused, so
/// a burst of output fills memory that is already mapped instead of faulting in fresh pages).
struct Written {
    stream: StreamName,
    written: u64,
    bytes: usize,
    result: Result<(), SinkError>,
    buffers: Vec<Vec<u8>>,
}

impl Flush {
    fn write(self) -> Written {
        let (stream, format) = (self.stream, self.format);
        let result = self.files.iter().try_for_each(|(path, bytes)| {
            let file = format.encode(stream, bytes).map_err(|e| SinkError::Delivery(format!("{}: {e}", path.display())))?;
            write_atomically(path, &file)
        });
        let buffers = self
            .files
            .into_iter()
            .map(|(_, mut bytes)| {
                bytes.clear();
                bytes
            })
            .collect();
        Written { stream: self.stream, written: self.written, bytes: self.bytes, result, buffers }
    }
}

/// Emptied buffers kept for reuse, at most (and at most twice the size hint in all).
const SPARE_BUFFERS: usize = 4;

/// Bytes of lines handed to the writer thread and not yet on disk, at most, before a flush
/// waits for room (or four flushes of the size hint, if more; one flush always goes).
pub const IN_FLIGHT_BYTES: usize = 64 << 20;

/// Writes output streams under a folder.
pub struct FolderSink {
    root: PathBuf,
    /// Distinguishes this writer's files: worker (and process) and run.
    tag: String,
    hints: BufferHints,
    streams: Vec<StreamBuffer>,
    /// Hands flushes to the writer thread (`None` once it is gone).
    to_writer: Option<std::sync::mpsc::Sender<Flush>>,
    /// What the writer thread finished: a flush's stream and record count, and how it went.
    from_writer: std::sync::mpsc::Receiver<Written>,
    /// Emptied buffers of finished flushes, for the next hours' lines.
    spare: Vec<Vec<u8>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Flushes handed over and not reported back yet, and their bytes.
    in_flight: usize,
    in_flight_bytes: usize,
    /// The files' format and layout.
    files: FileSpec,
}

impl FolderSink {
    /// A sink writing under `root`, naming files `<stream>-<tag>-<seq>.jsonl`.
    pub fn new(root: impl AsRef<Path>, tag: String, hints: BufferHints) -> Self {
        let streams = StreamName::all()
            .map(|_| StreamBuffer { by_hour: BTreeMap::new(), bytes: 0, since: None, files: 0, written: 0, delivered: 0, last_hour: None })
            .collect();
        let (to_writer, jobs) = std::sync::mpsc::channel::<Flush>();
        let (done, from_writer) = std::sync::mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("fleetflow-folder".into())
            .spawn(move || {
                for flush in jobs {
                    if done.send(flush.write()).is_err() {
                        return;
                    }
                }
            })
            .ok();
        FolderSink {
            root: root.as_ref().to_path_buf(),
            tag,
            hints,
            streams,
            to_writer: writer.as_ref().map(|_| to_writer),
            from_writer,
            spare: Vec::new(),
            writer,
            in_flight: 0,
            in_flight_bytes: 0,
            files: FileSpec::default(),
        }
    }

    /// The same sink writing files as `files` says.
    pub fn with_files(mut self, files: FileSpec) -> Self {
        self.files = files;
        self
    }

    /// Hands the stream's buffered lines to the writer thread (or writes them here, if the
    /// thread could not be started).
    fn flush_stream(&mut self, stream: StreamName) -> Result<(), SinkError> {
        let buffer = &mut self.streams[stream.index()];
        if buffer.by_hour.is_empty() {
            return Ok(());
        }
        let mut files = Vec::new();
        for (hour, bytes) in std::mem::take(&mut buffer.by_hour) {
            let dir = self.root.join(stream.as_str()).join(&hour);
            let name = format!("{}-{}-{:06}.{}", stream.as_str(), self.tag, buffer.files, self.files.format.extension());
            buffer.files += 1;
            files.push((dir.join(name), bytes));
        }
        buffer.since = None;
        let bytes = std::mem::take(&mut buffer.bytes);
        let flush = Flush { stream, files, written: buffer.written, format: self.files.format, bytes };
        // (An earlier flush that failed is reported once this one is handed over, not instead.)
        let room = self.wait_for_room(bytes);
        match &self.to_writer {
            Some(to) => match to.send(flush) {
                Ok(()) => {
                    self.in_flight += 1;
                    self.in_flight_bytes += bytes;
                }
                // The writer thread is gone: it reported why, or panicked.
                Err(std::sync::mpsc::SendError(flush)) => {
                    self.settle()?;
                    self.write_here(flush)?;
                }
            },
            None => self.write_here(flush)?,
        }
        room
    }

    fn write_here(&mut self, flush: Flush) -> Result<(), SinkError> {
        // (Counted as in flight for the moment it takes, as `finished` settles it.)
        self.in_flight += 1;
        self.in_flight_bytes += flush.bytes;
        let written = flush.write();
        self.finished(written)
    }

    /// Takes in what the writer thread finished, without waiting.
    fn settle(&mut self) -> Result<(), SinkError> {
        while let Ok(done) = self.from_writer.try_recv() {
            self.finished(done)?;
        }
        Ok(())
    }

    /// Waits until `bytes` more fit under the in-flight bound (see [`IN_FLIGHT_BYTES`]), or
    /// the writer thread is gone; the first failed flush it took in is the result.
    fn wait_for_room(&mut self, bytes: usize) -> Result<(), SinkError> {
        let bound = IN_FLIGHT_BYTES.max(4 * self.hints.size_bytes);
        let mut result = Ok(());
        while self.in_flight > 0 && self.in_flight_bytes + bytes > bound {
            let Ok(done) = self.from_writer.recv() else { return result.and(Err(self.writer_gone())) };
            let finished = self.finished(done);
            result = result.and(finished);
        }
        result
    }

    /// Waits for the writer thread to finish one flush.
    fn wait_one(&mut self) -> Result<(), SinkError> {
        match self.from_writer.recv() {
            Ok(done) => self.finished(done),
            Err(_) => Err(self.writer_gone()),
        }
    }

    fn writer_gone(&self) -> SinkError {
        SinkError::Io { path: self.root.display().to_string(), source: std::io::Error::other("the folder writer thread stopped") }
    }

    /// A finished flush. A failed one is reported (the job stops on it) and its records are
    /// settled all the same, so the dataflow can drain.
    fn finished(&mut self, done: Written) -> Result<(), SinkError> {
        self.in_flight -= 1;
        self.in_flight_bytes -= done.bytes;
        self.streams[done.stream.index()].delivered = done.written;
        let mut kept: usize = self.spare.iter().map(Vec::capacity).sum();
        for bytes in done.buffers {
            if self.spare.len() < SPARE_BUFFERS && kept + bytes.capacity() <= 2 * self.hints.size_bytes {
                kept += bytes.capacity();
                self.spare.push(bytes);
            }
        }
        done.result
    }

    /// Waits until every flush handed over is on disk.
    fn wait_idle(&mut self) -> Result<(), SinkError> {
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }
}

impl Drop for FolderSink {
    fn drop(&mut self) {
        // Closing the queue ends the writer thread once it has written what it holds.
        self.to_writer = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Writes `bytes` to `path` whole or not at all: a hidden temporary file beside it, synced, then
/// renamed over it (creating the folders).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let io = |source| SinkError::Io { path: path.display().to_string(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_data().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl Sink for FolderSink {
    fn write(&mut self, stream: StreamName, _stamp: Time, record: &Encoded) -> Result<(), SinkError> {
        let layout = self.files.layout;
        let buffer = &mut self.streams[stream.index()];
        let hour = record.time / 3_600_000;
        let key = match &buffer.last_hour {
            Some((h, key)) if *h == hour => key,
            _ => &buffer.last_hour.insert((hour, layout.hour(hour * crate::stored_files::layout::HOUR_MS))).1,
        };
        match buffer.by_hour.get_mut(key) {
            Some(bytes) => bytes.extend_from_slice(&record.line),
            None => {
                let mut bytes = self.spare.pop().unwrap_or_default();
                bytes.extend_from_slice(&record.line);
                buffer.by_hour.insert(key.clone(), bytes);
            }
        }
        buffer.bytes += record.line.len();
        buffer.written += 1;
        buffer.since.get_or_insert_with(Instant::now);
        if buffer.bytes >= self.hints.size_bytes {
            self.flush_stream(stream)?;
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            let due = self.streams[stream.index()].since.is_some_and(|s| s.elapsed() >= self.hints.interval);
            if due {
                self.flush_stream(stream)?;
            }
        }
        self.settle()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            self.flush_stream(stream)?;
        }
        self.wait_idle()
    }

    fn written(&self, stream: StreamName) -> u64 {
        self.streams[stream.index()].written
    }

    fn delivered(&self, stream: StreamName) -> u64 {
        self.streams[stream.index()].delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn lays_out_by_stream_and_event_hour_and_flushes_on_size() {
        let dir = tempfile::tempdir().unwrap();
        let hints = BufferHints { size_bytes: 10, interval: Duration::from_secs(3600) };
        let mut sink = FolderSink::new(dir.path(), "w000-run".into(), hints);
        let rec = |time| Encoded { line: b"{\"a\":1}\n".to_vec(), time, key: None };
        sink.write(StreamName::named("alerts"), 0, &rec(1_764_064_860_000)).unwrap();
        sink.wait_idle().unwrap();
        assert!(files(dir.path()).is_empty(), "below the size hint nothing is written");
        assert_eq!((sink.written(StreamName::named("alerts")), sink.delivered(StreamName::named("alerts"))), (1, 0));
        sink.write(StreamName::named("alerts"), 0, &rec(1_764_064_860_000)).unwrap();
        sink.wait_idle().unwrap();
        assert_eq!(files(dir.path()), vec!["alerts/2025/11/25/10/alerts-w000-run-000000.jsonl"]);
        assert_eq!(sink.delivered(StreamName::named("alerts")), 2, "delivered once on disk");
        sink.write(StreamName::LATE, 0, &rec(0)).unwrap();
        sink.flush().unwrap();
        let all = files(dir.path());
        assert_eq!(all.len(), 2);
        assert!(all.contains(&"late/1970/01/01/00/late-w000-run-000000.jsonl".to_string()));
        let content = std::fs::read_to_string(dir.path().join(&all[0])).unwrap();
        assert_eq!(content, "{\"a\":1}\n{\"a\":1}\n");
    }

    #[test]
    fn reuses_flushed_buffers_without_their_old_lines() {
        let dir = tempfile::tempdir().unwrap();
        let hints = BufferHints { size_bytes: 1 << 20, interval: Duration::from_secs(3600) };
        let mut sink = FolderSink::new(dir.path(), "t".into(), hints);
        let rec = |line: &[u8], time| Encoded { line: line.to_vec(), time, key: None };
        sink.write(StreamName::named("alerts"), 0, &rec(b"first\n", 0)).unwrap();
        sink.flush().unwrap();
        assert_eq!(sink.spare.len(), 1, "the written buffer comes back");
        sink.write(StreamName::named("alerts"), 0, &rec(b"second\n", 3_600_000)).unwrap();
        assert!(sink.spare.is_empty(), "and holds the next hour's lines");
        sink.flush().unwrap();
        let all = files(dir.path());
        assert_eq!(all.len(), 2);
        assert_eq!(std::fs::read_to_string(dir.path().join(&all[0])).unwrap(), "first\n");
        assert_eq!(std::fs::read_to_string(dir.path().join(&all[1])).unwrap(), "second\n");
    }

    #[test]
    fn holds_at_most_the_in_flight_bound_of_lines_not_yet_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        // A size hint a quarter of the bound: four flushes fit, a fifth waits for the first.
        let size = IN_FLIGHT_BYTES / 4;
        let hints = BufferHints { size_bytes: size, interval: Duration::from_secs(3600) };
        let mut sink = FolderSink::new(dir.path(), "t".into(), hints);
        let line = vec![b'x'; size - 1].into_iter().chain([b'\n']).collect::<Vec<u8>>();
        for i in 0..6 {
            sink.write(StreamName::RAW, 0, &Encoded { line: line.clone(), time: i * 3_600_000, key: None }).unwrap();
            assert!(sink.in_flight_bytes <= IN_FLIGHT_BYTES, "{} in flight after flush {i}", sink.in_flight_bytes);
        }
        sink.flush().unwrap();
        assert_eq!((sink.in_flight, sink.in_flight_bytes), (0, 0));
        assert_eq!(sink.delivered(StreamName::RAW), 6);
        assert_eq!(files(dir.path()).len(), 6);
    }

    #[test]
    fn a_failed_flush_met_while_waiting_for_room_is_reported_after_the_next_is_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        // A file where `errors`' folder should be: its flushes fail; `alerts`' succeed.
        std::fs::write(dir.path().join("errors"), b"").unwrap();
        let size = IN_FLIGHT_BYTES / 4;
        let hints = BufferHints { size_bytes: size, interval: Duration::from_secs(3600) };
        let mut sink = FolderSink::new(dir.path(), "t".into(), hints);
        let line = vec![b'x'; size - 1].into_iter().chain([b'\n']).collect::<Vec<u8>>();
        let record = |time| Encoded { line: line.clone(), time, key: None };
        let failed: Vec<bool> = (0..4).map(|i| sink.write(StreamName::ERRORS, 0, &record(i * 3_600_000)).is_err()).collect();
        // The bound is full: this flush waits for the first failed one, and is handed over.
        let alerts = sink.write(StreamName::named("alerts"), 0, &record(0));
        assert!(failed.iter().any(|f| *f) || alerts.is_err(), "the failure is reported");
        // (Each failed flush is reported once; the rest settle.)
        let settled = (0..5).any(|_| sink.flush().is_ok());
        assert!(settled && sink.in_flight == 0);
        assert_eq!(sink.delivered(StreamName::named("alerts")), 1, "written all the same");
        assert_eq!(files(dir.path()), vec!["alerts/1970/01/01/00/alerts-t-000000.jsonl", "errors"]);
    }

    #[test]
    fn flushes_on_interval() {
        let dir = tempfile::tempdir().unwrap();
        let hints = BufferHints { size_bytes: 1 << 20, interval: Duration::from_millis(0) };
        let mut sink = FolderSink::new(dir.path(), "t".into(), hints);
        sink.write(StreamName::ERRORS, 0, &Encoded { line: b"x\n".to_vec(), time: 0, key: None }).unwrap();
        sink.poll().unwrap();
        sink.wait_idle().unwrap();
        assert_eq!(files(dir.path()).len(), 1);
    }

    #[test]
    fn a_failed_write_stops_the_sink_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the stream's folder should be: the writer cannot create the folder.
        std::fs::write(dir.path().join("errors"), b"").unwrap();
        let hints = BufferHints { size_bytes: 1, interval: Duration::from_secs(3600) };
        let mut sink = FolderSink::new(dir.path(), "t".into(), hints);
        sink.write(StreamName::ERRORS, 0, &Encoded { line: b"x\n".to_vec(), time: 0, key: None }).unwrap();
        let e = sink.flush().unwrap_err().to_string();
        assert!(e.contains("errors"), "{e}");
        assert!(sink.flush().is_ok(), "reported once; the failed records are settled so the job can drain");
    }
}
