//! `SinkCounters`: one sink's delivery figures, shared by its instances on every worker of a
//! process, read by `/metrics` and the status page.

use std::sync::atomic::AtomicU64;

/// One sink's delivery counters, shared by its instances on every worker of the process.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Records delivered (acknowledged by the service).
    pub delivered: AtomicU64,
    /// Records sent again after a failure.
    pub retried: AtomicU64,
    /// Records written to the dead-letter folder.
    pub dead_lettered: AtomicU64,
    /// Requests made.
    pub requests: AtomicU64,
    /// Requests that failed as a whole (throttled, 5xx, timed out, unreachable).
    pub failed_requests: AtomicU64,
    /// Per worker of the process: records handed to the sink and records it settled (delivered
    /// or dead-lettered), as last published by the worker.
    pub ledgers: std::sync::Mutex<std::collections::BTreeMap<usize, (u64, u64)>>,
    /// The latest error (wall clock, epoch ms, and the error), retried or not.
    pub last_error: std::sync::Mutex<Option<(u64, String)>>,
}

impl SinkCounters {
    /// Notes `error` as the sink's latest.
    pub fn note_error(&self, error: &str) {
        let now = crate::clock::now_ms();
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, error.to_string()));
    }

    /// Records handed to the sink and not settled yet, over the process's workers.
    pub fn pending(&self) -> u64 {
        self.ledgers.lock().unwrap_or_else(|p| p.into_inner()).values().map(|(w, s)| w.saturating_sub(*s)).sum()
    }

    /// Records handed to the sink, over the process's workers.
    pub fn handed(&self) -> u64 {
        self.ledgers.lock().unwrap_or_else(|p| p.into_inner()).values().map(|(w, _)| w).sum()
    }
}
