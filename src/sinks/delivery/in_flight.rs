//! The bound on what an asynchronous sink has in flight: the worker thread reserves a batch's
//! bytes before handing it over and waits while the bound is reached, so a slow or failing
//! endpoint slows the dataflow down instead of growing memory. Finished batches come back here
//! for the worker to account.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A batch that finished (delivered or dead-lettered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The output stream's index.
    pub stream: usize,
    /// The batch's first record number (see [`crate::sinks::delivery::ledger::Ledger`]).
    pub first: u64,
    /// The bytes it had reserved.
    pub bytes: usize,
}

#[derive(Default)]
struct State {
    bytes: usize,
    batches: usize,
    done: Vec<Completion>,
    fatal: Option<String>,
}

/// Bytes in flight, bounded, shared by a sink and its delivery tasks.
pub struct InFlight {
    limit: usize,
    state: Mutex<State>,
    changed: Condvar,
}

impl InFlight {
    /// A bound of `limit` bytes (one batch larger than the bound still goes, alone).
    pub fn new(limit: usize) -> Self {
        InFlight { limit, state: Mutex::new(State::default()), changed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `bytes` as in flight, first waiting while that would pass the bound.
    pub fn reserve(&self, bytes: usize) {
        let mut state = self.lock();
        while state.batches > 0 && state.bytes + bytes > self.limit {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.bytes += bytes;
        state.batches += 1;
    }

    /// A delivery task finished a batch.
    pub fn complete(&self, done: Completion) {
        let mut state = self.lock();
        state.bytes = state.bytes.saturating_sub(done.bytes);
        state.batches = state.batches.saturating_sub(1);
        state.done.push(done);
        self.changed.notify_all();
    }

    /// A delivery task could not even dead-letter its records: the sink must stop the job.
    pub fn fail(&self, error: String) {
        self.lock().fatal.get_or_insert(error);
    }

    /// The batches finished since the last call, and the first fatal error, if any.
    pub fn take(&self) -> (Vec<Completion>, Option<String>) {
        let mut state = self.lock();
        (std::mem::take(&mut state.done), state.fatal.clone())
    }

    /// Waits until nothing is in flight (at most `timeout`); returns whether that happened.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self.changed.wait_timeout_while(state, timeout, |s| s.batches > 0).unwrap_or_else(|p| p.into_inner());
        state.batches == 0
    }

    /// Bytes in flight now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reserve_waits_for_room() {
        let f = Arc::new(InFlight::new(100));
        f.reserve(80);
        f.reserve(20);
        let g = f.clone();
        let t = std::thread::spawn(move || {
            g.reserve(50); // waits: 100 + 50 > 100
            g.bytes()
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(f.bytes(), 100, "the third batch waits");
        f.complete(Completion { stream: 0, first: 0, bytes: 80 });
        assert_eq!(t.join().unwrap(), 70);
        let (done, fatal) = f.take();
        assert_eq!((done.len(), fatal), (1, None));
        assert!(!f.wait_idle(Duration::from_millis(10)));
    }

    #[test]
    fn one_oversized_batch_still_goes() {
        let f = InFlight::new(10);
        f.reserve(1000);
        assert_eq!(f.bytes(), 1000);
    }
}
