//! The file source: each file (or `-` for stdin) is one partition, read line by line in order.
//! A line longer than [`MAX_RECORD_BYTES`] is not held whole: its first KiB and its length go on
//! as an error, the rest is skipped. A process with more workers than files splits each file
//! among its workers ([`split`]).

pub mod cutter;
pub mod split;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};

use super::{Partition, Poll, Record, SourceError};
use crate::parse::{MAX_RECORD_BYTES, OVERSIZED_HEAD};

/// A file partition. Lines are numbered from 1; positions read `path:line`.
pub struct FilePartition {
    name: String,
    input: Input,
    line: u64,
    buf: Vec<u8>,
}

enum Input {
    File(BufReader<File>),
    /// Standard input is read on a thread of its own so a quiet pipe never blocks the worker.
    Stdin(Receiver<std::io::Result<(Vec<u8>, u64)>>),
}

/// Reads one line (without its `\n`) into `buf`, keeping at most `MAX_RECORD_BYTES + 1` bytes of
/// it; returns the line's full length, or `None` at the end of the input.
pub fn read_line_bounded(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    buf.clear();
    let mut len = 0u64;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(len));
        }
        any = true;
        let newline = memchr::memchr(b'\n', available);
        let part = &available[..newline.unwrap_or(available.len())];
        let room = (MAX_RECORD_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        len += part.len() as u64;
        let used = part.len() + newline.map_or(0, |_| 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(len));
        }
    }
}

/// The record for a line read by [`read_line_bounded`].
fn record(buf: &[u8], len: u64) -> Record<'_> {
    if len > MAX_RECORD_BYTES as u64 {
        Record::Oversized { head: &buf[..OVERSIZED_HEAD.min(buf.len())], len }
    } else {
        Record::Line(buf)
    }
}

impl FilePartition {
    /// Opens `path` (`-` is standard input).
    pub fn open(path: &str) -> Result<Self, SourceError> {
        let input = if path == "-" {
            let (tx, rx) = sync_channel(1024);
            std::thread::Builder::new()
                .name("stdin-reader".into())
                .spawn(move || {
                    let stdin = std::io::stdin();
                    let mut lock = stdin.lock();
                    loop {
                        let mut line = Vec::new();
                        match read_line_bounded(&mut lock, &mut line) {
                            Ok(None) => break,
                            Ok(Some(len)) => {
                                if tx.send(Ok((line, len))).is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                break;
                            }
                        }
                    }
                })
                .map_err(|source| SourceError::Io { name: "stdin".into(), source })?;
            Input::Stdin(rx)
        } else {
            let file = File::open(path).map_err(|source| SourceError::Io { name: path.to_string(), source })?;
            Input::File(BufReader::with_capacity(1 << 20, file))
        };
        let name = if path == "-" { "stdin".to_string() } else { path.to_string() };
        Ok(FilePartition { name, input, line: 0, buf: Vec::with_capacity(256) })
    }
}

impl Partition for FilePartition {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError> {
        for _ in 0..max {
            match &mut self.input {
                Input::File(reader) => {
                    let read =
                        read_line_bounded(reader, &mut self.buf).map_err(|source| SourceError::Io { name: self.name.clone(), source })?;
                    let Some(len) = read else { return Ok(Poll::Finished) };
                    self.line += 1;
                    emit(record(&self.buf, len), self.line);
                }
                Input::Stdin(rx) => match rx.try_recv() {
                    Ok(Ok((line, len))) => {
                        self.line += 1;
                        emit(record(&line, len), self.line);
                    }
                    Ok(Err(source)) => return Err(SourceError::Io { name: self.name.clone(), source }),
                    Err(TryRecvError::Empty) => return Ok(Poll::Pending),
                    Err(TryRecvError::Disconnected) => return Ok(Poll::Finished),
                },
            }
        }
        Ok(Poll::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_above_the_limit_is_read_past_without_holding_it() {
        let huge = MAX_RECORD_BYTES * 3 + 17;
        let mut input = Vec::new();
        input.extend_from_slice(b"first\n");
        input.extend(std::iter::repeat_n(b'x', huge));
        input.extend_from_slice(b"\nlast");
        // A small buffer: the long line arrives in many pieces.
        let mut reader = BufReader::with_capacity(4096, &input[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut reader, &mut buf).unwrap(), Some(5));
        assert_eq!(buf, b"first");
        assert_eq!(read_line_bounded(&mut reader, &mut buf).unwrap(), Some(huge as u64));
        assert_eq!(buf.len(), MAX_RECORD_BYTES + 1, "no more than the limit (and one byte) is held");
        assert!(matches!(record(&buf, huge as u64), Record::Oversized { head, len } if head.len() == OVERSIZED_HEAD && len == huge as u64));
        assert_eq!(read_line_bounded(&mut reader, &mut buf).unwrap(), Some(4), "the last line has no newline");
        assert_eq!(buf, b"last");
        assert_eq!(read_line_bounded(&mut reader, &mut buf).unwrap(), None);
        // A line of exactly the limit is a line.
        let exact = vec![b'y'; MAX_RECORD_BYTES];
        let mut reader = BufReader::with_capacity(4096, &exact[..]);
        let len = read_line_bounded(&mut reader, &mut buf).unwrap().unwrap();
        assert!(matches!(record(&buf, len), Record::Line(l) if l.len() == MAX_RECORD_BYTES));
    }
}
