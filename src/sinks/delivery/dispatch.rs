//! The worker-side half of an asynchronous (AWS) sink: hands batches to delivery tasks on the
//! AWS runtime within the in-flight bound, and keeps per-stream ledgers of what they delivered,
//! which is what the sink reports as durable.

use std::sync::Arc;
use std::time::Duration;

use crate::operations::metrics::Metrics;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::in_flight::{Completion, InFlight};
use crate::sinks::delivery::ledger::Ledger;
use crate::sinks::delivery::retry::RetryPolicy;
use crate::sinks::delivery::{deliver, Deliver};
use crate::sinks::SinkError;
use crate::stream::StreamName;

/// Batches in flight to one service, for every output stream.
pub struct Dispatcher<D: Deliver> {
    service: Arc<D>,
    policy: RetryPolicy,
    dead_letter: Arc<DeadLetter>,
    counters: Arc<SinkCounters>,
    in_flight: Arc<InFlight>,
    ledgers: Vec<Ledger>,
}

impl<D: Deliver> Dispatcher<D> {
    /// A dispatcher with at most `max_in_flight_bytes` in flight.
    pub fn new(
        service: Arc<D>,
        policy: RetryPolicy,
        dead_letter: Arc<DeadLetter>,
        counters: Arc<SinkCounters>,
        max_in_flight_bytes: usize,
    ) -> Self {
        Dispatcher {
            service,
            policy,
            dead_letter,
            counters,
            in_flight: Arc::new(InFlight::new(max_in_flight_bytes)),
            ledgers: vec![Ledger::default(); StreamName::count()],
        }
    }

    /// Counts one record written to `stream`.
    pub fn wrote(&mut self, stream: StreamName) {
        self.ledgers[stream.index()].write();
    }

    /// Sends the next `lines` written records of `stream` as `items` to `target`. Waits first
    /// while the in-flight bound is reached.
    pub fn dispatch(&mut self, stream: StreamName, target: &str, items: Vec<D::Item>, lines: u64, bytes: usize) {
        let first = self.ledgers[stream.index()].send(lines);
        self.in_flight.reserve(bytes);
        let (service, policy, dl, counters, in_flight) =
            (self.service.clone(), self.policy.clone(), self.dead_letter.clone(), self.counters.clone(), self.in_flight.clone());
        let target = target.to_string();
        crate::aws::runtime().spawn(async move {
            if let Err(e) = deliver(service, target, items, policy, dl, counters).await {
                in_flight.fail(e);
            }
            in_flight.complete(Completion { stream: stream.index(), first, bytes });
        });
    }

    /// Dead-letters the next written record of `stream` at once (the service can never take it).
    pub fn refuse(&mut self, stream: StreamName, target: &str, error: &str, data: &[u8]) -> Result<(), SinkError> {
        let ledger = &mut self.ledgers[stream.index()];
        let first = ledger.send(1);
        let path = self
            .dead_letter
            .write(target, error, 0, &[data])
            .map_err(|e| SinkError::Delivery(format!("{target}: could not dead-letter a record ({error}): {e}")))?;
        tracing::error!("{target}: a record dead-lettered to {} ({error})", path.display());
        Metrics::add(&self.counters.dead_lettered, 1);
        ledger.complete(first);
        Ok(())
    }

    /// Accounts the batches that finished; reports a task's fatal error.
    pub fn settle(&mut self) -> Result<(), SinkError> {
        let (done, fatal) = self.in_flight.take();
        for c in done {
            self.ledgers[c.stream].complete(c.first);
        }
        match fatal {
            Some(e) => Err(SinkError::Delivery(e)),
            None => Ok(()),
        }
    }

    /// Waits until every batch sent has finished (delivered or dead-lettered).
    pub fn wait_idle(&mut self) -> Result<(), SinkError> {
        // Each batch ends within its retry budget (plus one request timeout); wait a little longer.
        let limit = self.policy.budget + Duration::from_secs(120);
        if !self.in_flight.wait_idle(limit) {
            return Err(SinkError::Delivery(format!("batches still in flight after {limit:?}")));
        }
        self.settle()
    }

    /// Records of `stream` written.
    pub fn written(&self, stream: StreamName) -> u64 {
        self.ledgers[stream.index()].written()
    }

    /// Records of `stream` delivered or dead-lettered, as a prefix of those written.
    pub fn delivered(&self, stream: StreamName) -> u64 {
        self.ledgers[stream.index()].delivered()
    }

    /// Records of `stream` written but not yet handed to a batch.
    pub fn unsent(&self, stream: StreamName) -> u64 {
        self.ledgers[stream.index()].unsent()
    }
}
