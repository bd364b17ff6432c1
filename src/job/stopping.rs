//! How a worker stops, as one state machine: reading; paused for an exact stop (a Kafka job told
//! to stop keeps its open windows open); halted once that stop has committed; and, across all of
//! them, failed (its first error, told to the process's workers through a shared flag and to
//! every worker through the notices, see [`crate::failure`]).

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{error, info};

use super::JobError;
use crate::failure::FailureNotices;

/// Where a worker is in an exact stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading its sources (a draining stop stays here: its sources are closed).
    Reading,
    /// Reading paused with the input capabilities where they were: waiting for every worker to
    /// pause and for what the closed windows produced to be delivered.
    Paused,
    /// Committed at the stop's frontier: nothing more is written or committed while the dataflow
    /// drains (the windows it closes now would be partial).
    Halted,
}

/// What one look at the flags decided, at the top of a loop iteration.
#[derive(Clone, Copy, Debug)]
pub struct Look {
    /// A worker of this process failed: write nothing more.
    pub failing: bool,
    /// Close the sources: every window closes and the dataflow drains.
    pub close: bool,
}

/// One worker's stop.
pub struct Stopping<'a> {
    phase: Phase,
    failed: Option<JobError>,
    /// Set by a signal, or by a failure of any worker of this process.
    stop: &'a AtomicBool,
    /// A worker of this process failed (set before `stop`).
    failing: &'a AtomicBool,
    /// A stop keeps the open windows open (a Kafka source, without `drain`).
    exact: bool,
    index: usize,
    /// Whether this worker logs for its process.
    logs: bool,
}

impl<'a> Stopping<'a> {
    /// Worker `index`'s stop, over its process's flags.
    pub fn new(stop: &'a AtomicBool, failing: &'a AtomicBool, exact: bool, index: usize, logs: bool) -> Self {
        Stopping { phase: Phase::Reading, failed: None, stop, failing, exact, index, logs }
    }

    /// Reads the flags once: begins an exact stop when asked (by a signal here, or by another
    /// worker's pause), announcing where this worker's readings' capability stays (`cap`), and
    /// says whether the sources must close (a failure, or a draining stop).
    pub fn look(&mut self, notices: &mut FailureNotices, cap: Option<fleetflow_dataflows::Time>) -> Look {
        // (`fail` sets `failing` before `stop`: read in this order, a failure is never taken for a stop.)
        let failing = self.failing.load(Ordering::SeqCst);
        let stopping = self.stop.load(Ordering::SeqCst);
        if self.phase == Phase::Reading && self.exact && !failing && (stopping || notices.pause_heard()) {
            self.phase = Phase::Paused;
            notices.announce_pause(self.index, cap);
            if self.logs {
                info!("stopping: reading paused; delivering what the closed windows produced, then committing (open windows stay open for the restart)");
            }
        }
        Look { failing, close: failing || (self.phase == Phase::Reading && stopping) }
    }

    /// Whether the sources are read.
    pub fn reading(&self) -> bool {
        self.phase == Phase::Reading
    }

    /// Whether an exact stop waits to commit (paused, and no worker of the process failed).
    pub fn paused(&self) -> bool {
        self.phase == Phase::Paused && !self.failing()
    }

    /// Whether this worker has committed an exact stop and keeps its sources open until every
    /// worker has.
    pub fn halted_waiting(&self) -> bool {
        self.phase == Phase::Halted
    }

    /// Whether offsets may still be committed from the durable frontier (not after an exact
    /// stop committed: the frontier then moves on over windows that were not written).
    pub fn may_commit(&self) -> bool {
        self.phase != Phase::Halted
    }

    /// The exact stop committed at `frontier` (`saved`: with a checkpoint, if the job
    /// checkpoints): from now on the dataflow only drains.
    pub fn halted(&mut self, frontier: String, saved: bool) {
        self.phase = Phase::Halted;
        if !self.logs {
            return;
        }
        if saved {
            info!("stopped exactly: every output before {frontier} delivered and its offsets committed; a restart from them continues the open windows");
        } else {
            info!("stopped: every output before {frontier} delivered, without a checkpoint of its own; a restart resumes from the latest complete checkpoint and writes what came after it again");
        }
    }

    /// Whether a worker of this process failed.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Keeps this worker's first error, tells the process's workers that one failed, and asks
    /// every source to stop.
    pub fn fail(&mut self, e: impl Into<JobError>) {
        if self.failed.is_none() {
            let e = e.into();
            error!("{e}; stopping the sources and draining the dataflow");
            self.failing.store(true, Ordering::SeqCst);
            self.stop.store(true, Ordering::SeqCst);
            self.failed = Some(e);
        }
    }

    /// Tells every worker of this worker's own failure (a peer's failure is not told again:
    /// every worker hears the peer's own notice).
    pub fn announce(&self, notices: &mut FailureNotices) {
        if let Some(e) = self.failed.as_ref().filter(|e| !matches!(e, JobError::Peer(_))) {
            notices.announce(&format!("worker {} failed: {e}", self.index));
        }
    }

    /// The worker's outcome.
    pub fn finish(self) -> Result<(), JobError> {
        self.failed.map_or(Ok(()), Err)
    }
}
