//! Firehose's service limits and the batching that keeps within them: records are
//! newline-terminated lines, optionally several packed into one record (Firehose bills per
//! record, in 5 KB steps), gathered into `PutRecordBatch` calls of at most 500 records and 4 MiB.

/// Records per `PutRecordBatch` call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Bytes of record data per `PutRecordBatch` call.
pub const MAX_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// Bytes per record (before base64 encoding).
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

/// One call's worth of records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// The records' data.
    pub records: Vec<Vec<u8>>,
    /// Output lines in the batch (one record holds several when packing).
    pub lines: u64,
    /// Bytes of data.
    pub bytes: usize,
}

/// A line above [`MAX_RECORD_BYTES`]: Firehose can never take it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a record of {0} bytes is above Firehose's limit of {MAX_RECORD_BYTES} bytes (1,000 KiB) per record")]
pub struct TooLarge(pub usize);

/// Gathers lines into batches.
#[derive(Debug, Default)]
pub struct Batcher {
    pack: bool,
    current: Batch,
}

impl Batcher {
    /// A batcher; `pack` puts as many lines into one record as fit.
    pub fn new(pack: bool) -> Self {
        Batcher { pack, current: Batch::default() }
    }

    /// Adds a line. Returns the batch that was full before this line (the line starts the next
    /// one), or an error for a line no record can hold (the batcher is unchanged).
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Batch>, TooLarge> {
        if line.len() > MAX_RECORD_BYTES {
            return Err(TooLarge(line.len()));
        }
        let b = &mut self.current;
        let fits_last = self.pack && b.records.last().is_some_and(|r| r.len() + line.len() <= MAX_RECORD_BYTES);
        let full = b.bytes + line.len() > MAX_BYTES_PER_CALL || (!fits_last && b.records.len() == MAX_RECORDS_PER_CALL);
        let done = if full { self.take() } else { None };
        let b = &mut self.current;
        match b.records.last_mut() {
            Some(last) if fits_last && !full => last.extend_from_slice(line),
            _ => b.records.push(line.to_vec()),
        }
        b.lines += 1;
        b.bytes += line.len();
        Ok(done)
    }

    /// The batch gathered so far, if any.
    pub fn take(&mut self) -> Option<Batch> {
        (self.current.lines > 0).then(|| std::mem::take(&mut self.current))
    }

    /// Lines gathered so far.
    pub fn lines(&self) -> u64 {
        self.current.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(b: &mut Batcher, lines: impl Iterator<Item = Vec<u8>>) -> Vec<Batch> {
        let mut out: Vec<Batch> = lines.filter_map(|l| b.push(&l).unwrap()).collect();
        out.extend(b.take());
        out
    }

    #[test]
    fn at_most_500_records_per_call() {
        let mut b = Batcher::new(false);
        let batches = all(&mut b, (0..1201).map(|i| format!("{i}\n").into_bytes()));
        let sizes: Vec<usize> = batches.iter().map(|b| b.records.len()).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
        assert_eq!(batches.iter().map(|b| b.lines).sum::<u64>(), 1201);
        assert_eq!(batches[1].records[0], b"500\n");
    }

    #[test]
    fn at_most_4_mib_per_call() {
        let mut b = Batcher::new(false);
        let line = vec![b'x'; 100 * 1024];
        let batches = all(&mut b, (0..100).map(|_| line.clone()));
        assert!(batches.iter().all(|b| b.bytes <= MAX_BYTES_PER_CALL));
        assert_eq!(batches[0].records.len(), 40, "40 x 100 KiB = 4,000 KiB; the 41st would pass 4 MiB");
        assert_eq!(batches.iter().map(|b| b.records.len()).sum::<usize>(), 100);
    }

    #[test]
    fn packing_fills_records_up_to_the_record_limit() {
        let mut b = Batcher::new(true);
        let line = vec![b'y'; 300 * 1024];
        let batches = all(&mut b, (0..7).map(|_| line.clone()));
        let b0 = &batches[0];
        assert_eq!(b0.records.iter().map(|r| r.len() / (300 * 1024)).collect::<Vec<_>>(), vec![3, 3, 1]);
        assert!(b0.records.iter().all(|r| r.len() <= MAX_RECORD_BYTES));
        let mut small = Batcher::new(true);
        let batches = all(&mut small, (0..10_000).map(|i| format!("{{\"i\":{i}}}\n").into_bytes()));
        assert_eq!(batches.len(), 1);
        assert!(batches[0].records.len() < 5, "ten thousand short lines pack into a few records");
        assert_eq!(batches[0].records.concat().split(|c| *c == b'\n').filter(|l| !l.is_empty()).count(), 10_000);
    }

    #[test]
    fn a_line_above_the_record_limit_is_refused() {
        let mut b = Batcher::new(true);
        b.push(b"a\n").unwrap();
        assert_eq!(b.push(&vec![b'z'; MAX_RECORD_BYTES + 1]), Err(TooLarge(MAX_RECORD_BYTES + 1)));
        assert_eq!(b.push(&vec![b'z'; MAX_RECORD_BYTES]), Ok(None), "exactly the limit fits, in a record of its own");
        let batch = b.take().unwrap();
        assert_eq!((batch.lines, batch.records.len()), (2, 2));
    }
}
