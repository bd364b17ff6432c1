//! Which records of a stream are durable when they are delivered in batches that complete out of
//! order: records are numbered as written, batches cover consecutive numbers, and the durable
//! count is the first number not yet delivered.

use std::collections::BTreeMap;

/// Per-stream delivery accounting of an asynchronous sink.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    written: u64,
    /// Records before this number were handed to a batch.
    sent: u64,
    /// Batches in flight: first record number -> record count.
    in_flight: BTreeMap<u64, u64>,
}

impl Ledger {
    /// Numbers one more written record.
    pub fn write(&mut self) {
        self.written += 1;
    }

    /// Records written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Records written but not yet in a batch.
    pub fn unsent(&self) -> u64 {
        self.written - self.sent
    }

    /// The next `count` unsent records go out as one batch; returns the batch's first number.
    pub fn send(&mut self, count: u64) -> u64 {
        let first = self.sent;
        let count = count.min(self.unsent());
        if count > 0 {
            self.in_flight.insert(first, count);
            self.sent += count;
        }
        first
    }

    /// The batch starting at `first` was delivered (or dead-lettered).
    pub fn complete(&mut self, first: u64) {
        self.in_flight.remove(&first);
    }

    /// Records durable: every record numbered below this was delivered.
    pub fn delivered(&self) -> u64 {
        self.in_flight.keys().next().copied().unwrap_or(self.sent)
    }

    /// Batches in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_is_the_completed_prefix() {
        let mut l = Ledger::default();
        for _ in 0..10 {
            l.write();
        }
        let a = l.send(3);
        let b = l.send(4);
        assert_eq!((a, b, l.unsent(), l.delivered()), (0, 3, 3, 0));
        l.complete(b);
        assert_eq!(l.delivered(), 0, "a later batch alone does not make earlier records durable");
        l.complete(a);
        assert_eq!(l.delivered(), 7, "records still buffered are not durable");
        let c = l.send(100);
        assert_eq!((c, l.unsent()), (7, 0));
        l.complete(c);
        assert_eq!(l.delivered(), 10);
        assert_eq!(l.send(5), 10, "nothing unsent: no batch");
        assert_eq!(l.in_flight(), 0);
    }
}
