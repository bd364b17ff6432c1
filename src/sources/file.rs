//! The file source: each file (or `-` for stdin) is one partition, read line by line in order.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};

use super::{Partition, Poll, Record, SourceError};

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
    Stdin(Receiver<std::io::Result<Vec<u8>>>),
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
                        match lock.read_until(b'\n', &mut line) {
                            Ok(0) => break,
                            Ok(_) => {
                                if tx.send(Ok(line)).is_err() {
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

fn strip_newline(buf: &[u8]) -> &[u8] {
    buf.strip_suffix(b"\n").unwrap_or(buf)
}

impl Partition for FilePartition {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError> {
        for _ in 0..max {
            match &mut self.input {
                Input::File(reader) => {
                    self.buf.clear();
                    let n =
                        reader.read_until(b'\n', &mut self.buf).map_err(|source| SourceError::Io { name: self.name.clone(), source })?;
                    if n == 0 {
                        return Ok(Poll::Finished);
                    }
                    self.line += 1;
                    emit(Record::Line(strip_newline(&self.buf)), self.line);
                }
                Input::Stdin(rx) => match rx.try_recv() {
                    Ok(Ok(line)) => {
                        self.line += 1;
                        emit(Record::Line(strip_newline(&line)), self.line);
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
