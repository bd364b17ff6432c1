//! One input read by every worker of the process: a reader thread cuts a file (or stdin) into
//! chunks of whole lines and deals them to the workers in turn; each worker parses its chunks,
//! and judges lateness with the running maximum carried from the chunks before its own.
//!
//! Why the outputs are those of one worker reading the file in order: the lateness rule of a
//! partition depends only on the highest accepted event time of the records before (its running
//! maximum). A chunk's own highest event time is known once it is parsed, in parallel with the
//! others (a late reading is below the maximum already, so it does not change it). The `Board`
//! gathers what each chunk's parse found; once every chunk before chunk `k` is parsed, the
//! maximum carried into `k` is the highest of theirs, and a worker judges chunk `k`'s records
//! exactly as one reading the whole file would have, record by record. Line numbers are carried
//! the same way, so `late` and `errors` name the same `path:line`. Each worker holds its input
//! capability at its own running maximum minus the lateness, as any partition does: every
//! reading it accepts later lies above it (the maximum carried into a later chunk is no lower).

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

use fleetflow_dataflows::{Reading, Time};

use super::cutter::{lines, Chunk, Cutter};
use crate::parse::{parse_line, Parsed, OVERSIZED_HEAD};
use crate::sources::driver::too_far_ahead;
use crate::sources::{Partition, Poll, Record, SourceError};

/// Chunks read ahead per worker.
const QUEUED: usize = 2;

/// What the parse of one chunk found: its highest accepted event time and its lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Found {
    max_ts: Option<Time>,
    lines: u64,
}

/// What every chunk's parse found, shared by the workers reading one input: for each chunk
/// whose predecessors are all parsed, the running maximum and line count carried into it.
#[derive(Default)]
struct Board {
    inner: Mutex<BoardState>,
}

#[derive(Default)]
struct BoardState {
    /// Chunks parsed beyond the known prefix, by index.
    found: std::collections::BTreeMap<usize, Found>,
    /// What is carried into chunk `i`, for every chunk up to the first one not yet parsed.
    carried: Vec<Found>,
}

impl Board {
    /// Records chunk `index`'s parse.
    fn publish(&self, index: usize, found: Found) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut *guard;
        if s.carried.is_empty() {
            s.carried.push(Found::default());
        }
        s.found.insert(index, found);
        while let Some(next) = s.found.remove(&(s.carried.len() - 1)) {
            let last = s.carried.last().copied().unwrap_or_default();
            s.carried.push(Found { max_ts: last.max_ts.max(next.max_ts), lines: last.lines + next.lines });
        }
    }

    /// What is carried into chunk `index`, once every chunk before it is parsed.
    fn carried(&self, index: usize) -> Option<Found> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match index {
            0 => Some(Found::default()),
            _ => s.carried.get(index).copied(),
        }
    }
}

/// One input split among the workers of this process: the reader thread's queues, one per
/// worker, taken once each.
pub struct SplitInput {
    name: String,
    queues: Mutex<Vec<Option<Receiver<std::io::Result<Chunk>>>>>,
    board: Arc<Board>,
    /// Readings more than this many ms ahead of the wall clock are errors (`None`: no check).
    max_future: Option<Time>,
}

impl SplitInput {
    /// Opens `path` (`-`: standard input) and starts cutting it into chunks of about
    /// `chunk_bytes` for `workers` workers.
    pub fn open(path: &str, workers: usize, chunk_bytes: usize, max_future: Option<Time>) -> Result<Arc<Self>, SourceError> {
        let (name, input, live): (String, Box<dyn Read + Send>, _) = if path == "-" {
            ("stdin".into(), Box::new(std::io::stdin()), Some(libc::STDIN_FILENO))
        } else {
            let file = std::fs::File::open(path).map_err(|source| SourceError::Io { name: path.to_string(), source })?;
            (path.to_string(), Box::new(file), None)
        };
        let workers = workers.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| sync_channel(QUEUED)).unzip();
        std::thread::Builder::new()
            .name("file-splitter".into())
            .spawn(move || deal(Cutter::new(input, chunk_bytes, live), &senders))
            .map_err(|source| SourceError::Io { name: name.clone(), source })?;
        let queues = Mutex::new(receivers.into_iter().map(Some).collect());
        Ok(Arc::new(SplitInput { name, queues, board: Arc::default(), max_future }))
    }

    /// The partition this process's worker `local` reads (once; `None` after).
    pub fn partition(&self, local: usize) -> Option<ChunkPartition> {
        let queue = self.queues.lock().unwrap_or_else(|p| p.into_inner()).get_mut(local)?.take()?;
        Some(ChunkPartition { name: self.name.clone(), queue, board: self.board.clone(), max_future: self.max_future, current: None })
    }
}

/// The reader thread: deals chunk `k` to worker `k % workers`; stops at the end of the input,
/// at an error (dealt like a chunk), or when a worker is gone.
fn deal<R: Read>(mut cutter: Cutter<R>, queues: &[SyncSender<std::io::Result<Chunk>>]) {
    for index in 0.. {
        let queue = &queues[index % queues.len()];
        let chunk = match cutter.next_chunk() {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let failed = chunk.is_err();
        if queue.send(chunk).is_err() || failed {
            return;
        }
    }
}

/// A chunk parsed, its records handed out from `next`.
struct ParsedChunk {
    chunk: Chunk,
    /// Where each line ends in the chunk's data (it starts after the one before).
    ends: Vec<usize>,
    /// The full length of each line cut short, by its index.
    oversized: Vec<(usize, u64)>,
    /// Each line's reading, when it parses as one (the others, blanks and errors, are judged
    /// again from their line).
    readings: Vec<Option<Reading>>,
    /// The wall clock the parse checked readings ahead of it against: the judge checks them
    /// against the same one, so a reading the maximum left out is the error it was taken for.
    wall: Time,
    /// What the chunks before carried in, once known and told to the driver.
    carried: Option<Found>,
    next: usize,
}

/// A worker's share of a split input: the chunks dealt to it, in order.
pub struct ChunkPartition {
    name: String,
    queue: Receiver<std::io::Result<Chunk>>,
    board: Arc<Board>,
    max_future: Option<Time>,
    current: Option<ParsedChunk>,
}

impl ChunkPartition {
    /// Parses the next chunk dealt to this worker and publishes what it found (`None`: none is
    /// there yet; `Some(false)`: the input is finished).
    fn take_chunk(&mut self) -> Result<Option<bool>, SourceError> {
        let chunk = match self.queue.try_recv() {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(source)) => return Err(SourceError::Io { name: self.name.clone(), source }),
            Err(TryRecvError::Empty) => return Ok(None),
            Err(TryRecvError::Disconnected) => return Ok(Some(false)),
        };
        let wall = crate::clock::now_ms();
        let mut max_ts: Option<Time> = None;
        let (mut ends, mut readings, mut oversized) = (Vec::new(), Vec::new(), Vec::new());
        let mut cut_short = chunk.oversized.iter().peekable();
        for (start, end) in lines(&chunk.data) {
            if let Some(&(_, len)) = cut_short.next_if(|(at, _)| *at == start) {
                oversized.push((ends.len(), len));
            }
            let reading = match parse_line(&chunk.data[start..end]) {
                Parsed::Reading(r) => Some(r),
                _ => None,
            };
            // (A reading too far ahead of the wall clock is an error: it moves no maximum.)
            max_ts = max_ts.max(reading.filter(|r| too_far_ahead(self.max_future, r.timestamp, wall).is_none()).map(|r| r.timestamp));
            readings.push(reading);
            ends.push(end);
        }
        self.board.publish(chunk.index, Found { max_ts, lines: ends.len() as u64 });
        self.current = Some(ParsedChunk { chunk, ends, oversized, readings, wall, carried: None, next: 0 });
        Ok(Some(true))
    }
}

impl Partition for ChunkPartition {
    fn name(&self) -> &str {
        &self.name
    }

    fn carried_max(&mut self) -> Option<Time> {
        let current = self.current.as_mut().filter(|c| c.carried.is_none())?;
        let carried = self.board.carried(current.chunk.index)?;
        current.carried = Some(carried);
        carried.max_ts
    }

    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError> {
        let Some(current) = self.current.as_mut() else {
            return Ok(match self.take_chunk()? {
                None => Poll::Pending,
                Some(true) => Poll::Ready,
                Some(false) => Poll::Finished,
            });
        };
        // A chunk's records wait until the driver knows the maximum carried into it.
        let Some(carried) = current.carried else { return Ok(Poll::Pending) };
        let (data, ends) = (&current.chunk.data, &current.ends);
        let end = (current.next + max).min(ends.len());
        for i in current.next..end {
            let start = if i == 0 { 0 } else { ends[i - 1] + 1 };
            let line = &data[start..ends[i]];
            let offset = carried.lines + i as u64 + 1;
            match (current.readings[i], current.oversized.iter().find(|(at, _)| *at == i)) {
                (_, Some(&(_, len))) => emit(Record::Oversized { head: &line[..OVERSIZED_HEAD.min(line.len())], len }, offset),
                (Some(reading), None) => emit(Record::Parsed { line, reading, wall: current.wall }, offset),
                (None, None) => emit(Record::Line(line), offset),
            }
        }
        current.next = end;
        if end == ends.len() {
            self.current = None;
        }
        Ok(Poll::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_carries_the_running_maximum_and_lines_in_chunk_order() {
        let board = Board::default();
        assert_eq!(board.carried(0), Some(Found::default()));
        board.publish(2, Found { max_ts: Some(50), lines: 3 });
        board.publish(1, Found { max_ts: Some(90), lines: 2 });
        assert_eq!(board.carried(1), None, "chunk 0 is not parsed yet");
        board.publish(0, Found { max_ts: Some(70), lines: 4 });
        assert_eq!(board.carried(1), Some(Found { max_ts: Some(70), lines: 4 }));
        assert_eq!(board.carried(2), Some(Found { max_ts: Some(90), lines: 6 }));
        assert_eq!(board.carried(3), Some(Found { max_ts: Some(90), lines: 9 }), "a lower chunk maximum does not lower it");
        assert_eq!(board.carried(4), None);
    }
}
