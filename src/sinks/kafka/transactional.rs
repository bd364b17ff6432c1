//! The exactly-once Kafka sink: the job's first worker writes every record in Kafka
//! transactions, one per checkpoint, committed when the checkpoint's parts are all written and
//! before it is marked complete (see `progress` for the step between the two).
//!
//! The transaction committed for a checkpoint with durable frontier `D` holds exactly the records
//! before dataflow time `D` (after the previous one): a record before the next boundary after the
//! last commit is sent as it comes; a later one waits in memory until that commit (it can only
//! belong to a later transaction). The sources' positions in the checkpoint count as read exactly
//! the records whose outputs are before `D`, so a restart from it writes the others again, and
//! those are in no committed transaction: a consumer reading `read_committed` sees each record
//! once. An exact stop's checkpoint counts every record read, and commits every record written.
//! Waiting records count as delivered for the durable frontier: the checkpoint that needs them
//! commits them first.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetflow_dataflows::time::align;
use fleetflow_dataflows::Time;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::config::Transactional;
use super::progress::{self, Progress};
use super::{produce, Deliveries};
use crate::encode::Encoded;
use crate::sinks::{CheckpointCommit, Sink, SinkError};
use crate::stream::StreamName;

/// How long a commit may wait for the broker.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A record waiting for the transaction it belongs to.
struct Waiting {
    stream: usize,
    stamp: Time,
    key: Option<String>,
    payload: Vec<u8>,
}

/// The exactly-once sink of the job's first worker.
pub struct TransactionalSink {
    producer: ThreadedProducer<Deliveries>,
    t: Transactional,
    topics: Vec<String>,
    /// The checkpoint interval, ms.
    every: Time,
    /// Records before this time go into the open transaction as they come (none until the first
    /// record or the restored frontier sets it).
    open_below: Option<Time>,
    /// The latest time of a record in the open transaction.
    latest_sent: Option<Time>,
    waiting: Vec<Waiting>,
    /// The job failed or stopped: the open transaction is aborted, nothing more is committed.
    abandoned: bool,
    written: Vec<u64>,
    sent: Vec<u64>,
    settled: Vec<u64>,
}

fn kafka(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> SinkError {
    let what = what.into();
    move |source| SinkError::Kafka { what, source }
}

impl TransactionalSink {
    /// The sink `t` to `brokers`, writing stream `s` to `topic` with `{stream}` replaced by its
    /// name, committing with checkpoints every `every` ms. Fences the producer of an earlier run.
    pub fn new(
        (brokers, topic): (&str, &str),
        t: Transactional,
        properties: &BTreeMap<String, String>,
        every: Time,
    ) -> Result<Self, SinkError> {
        progress::ensure_topic(brokers, &t)?;
        let producer: ThreadedProducer<Deliveries> = progress::transactional_config(brokers, &t, properties)
            .create_with_context(Deliveries::default())
            .map_err(kafka(format!("creating a producer for {brokers}")))?;
        producer.init_transactions(COMMIT_TIMEOUT).map_err(kafka(format!("starting transactions as {}", t.id)))?;
        producer.begin_transaction().map_err(kafka("beginning a transaction"))?;
        let topics = StreamName::all().map(|s| topic.replace("{stream}", s.as_str())).collect();
        let zeros = vec![0; StreamName::count()];
        Ok(TransactionalSink {
            producer,
            t,
            topics,
            every: every.max(1),
            open_below: None,
            latest_sent: None,
            waiting: Vec::new(),
            abandoned: false,
            written: zeros.clone(),
            sent: zeros.clone(),
            settled: zeros,
        })
    }

    fn send(&mut self, w: Waiting) -> Result<(), SinkError> {
        let mut message = BaseRecord::with_opaque_to(&self.topics[w.stream], w.stream).payload(&w.payload);
        if let Some(key) = &w.key {
            message = message.key(key);
        }
        produce(&self.producer, message, &self.topics[w.stream])?;
        self.sent[w.stream] += 1;
        self.latest_sent = Some(self.latest_sent.map_or(w.stamp, |l| l.max(w.stamp)));
        Ok(())
    }

    /// Sends the waiting records before `below` into the open transaction.
    fn send_waiting(&mut self, below: Time) -> Result<(), SinkError> {
        let (now, later): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting).into_iter().partition(|w| w.stamp < below);
        self.waiting = later;
        now.into_iter().try_for_each(|w| self.send(w))
    }

    /// Delivery failures inside a transaction fail the job (the restart re-derives them).
    fn check(&self) -> Result<(), SinkError> {
        self.producer.context().check("a record of a transaction")
    }

    /// Each stream is settled up to what it was written once every record sent is acknowledged
    /// (waiting ones count: see the module's comment).
    fn note_deliveries(&mut self) {
        let ctx = self.producer.context();
        for i in 0..self.written.len() {
            if ctx.answered(i) >= self.sent[i] {
                self.settled[i] = self.written[i];
            }
        }
    }

    /// Commits the open transaction, ending with `progress`, and opens the next.
    fn commit(&mut self, progress: Progress) -> Result<(), SinkError> {
        self.producer.flush(COMMIT_TIMEOUT).map_err(kafka("flushing the producer"))?;
        self.check()?;
        let body = progress::message(progress);
        let record = BaseRecord::with_opaque_to(&self.t.progress_topic, usize::MAX).key(self.t.id.as_bytes()).payload(&body);
        produce(&self.producer, record, &self.t.progress_topic)?;
        self.producer.commit_transaction(COMMIT_TIMEOUT).map_err(kafka(format!("committing the transaction of {}", self.t.id)))?;
        self.producer.begin_transaction().map_err(kafka("beginning a transaction"))?;
        self.latest_sent = None;
        Ok(())
    }
}

impl Sink for TransactionalSink {
    fn write(&mut self, stream: StreamName, stamp: Time, record: &Encoded) -> Result<(), SinkError> {
        let payload = record.line.strip_suffix(b"\n").unwrap_or(&record.line).to_vec();
        let waiting = Waiting { stream: stream.index(), stamp, key: record.key.map(|v| v.to_string()), payload };
        self.written[stream.index()] += 1;
        let open_below = *self.open_below.get_or_insert(align(stamp, self.every) + self.every);
        if stamp < open_below {
            self.send(waiting)
        } else {
            self.waiting.push(waiting);
            Ok(())
        }
    }

    fn single_writer(&self) -> bool {
        true
    }

    fn commit_checkpoint(&mut self, c: &CheckpointCommit) -> Result<bool, SinkError> {
        // (An exact stop's restart re-derives nothing this run wrote: it all belongs to it.)
        let below = if c.stop { Time::MAX } else { c.durable };
        if self.abandoned || self.latest_sent.is_some_and(|l| l >= below) {
            return Ok(false);
        }
        self.send_waiting(below)?;
        self.commit(Progress { checkpoint: c.name, at: c.at })?;
        let next = align(c.durable, self.every) + self.every;
        self.open_below = Some(self.open_below.map_or(next, |o| o.max(next)));
        self.send_waiting(next)?;
        Ok(true)
    }

    fn resumed_below(&mut self, time: Time) {
        self.open_below = Some(align(time, self.every) + self.every);
    }

    fn poll(&mut self) -> Result<(), SinkError> {
        self.note_deliveries();
        self.check()
    }

    fn abandon(&mut self) {
        if !self.abandoned {
            self.abandoned = true;
            self.waiting.clear();
            // (Best effort: a transaction left open is aborted when the restart fences it.)
            let _ = self.producer.abort_transaction(Duration::from_secs(5));
        }
    }

    /// The end of a bounded run: everything written is committed (unless the job failed).
    fn flush(&mut self) -> Result<(), SinkError> {
        if self.abandoned {
            return Ok(());
        }
        self.send_waiting(Time::MAX)?;
        self.commit(Progress { checkpoint: 0, at: 0 })?;
        self.note_deliveries();
        Ok(())
    }

    /// An exact stop: everything written goes into the open transaction, which the stop's
    /// checkpoint commits.
    fn flush_for_stop(&mut self) -> Result<(), SinkError> {
        self.send_waiting(Time::MAX)?;
        self.producer.flush(COMMIT_TIMEOUT).map_err(kafka("flushing the producer"))?;
        self.check()?;
        self.note_deliveries();
        Ok(())
    }

    fn written(&self, stream: StreamName) -> u64 {
        self.written[stream.index()]
    }

    fn delivered(&self, stream: StreamName) -> u64 {
        self.settled[stream.index()]
    }
}

/// The exactly-once sink's instance on every worker but the first: its records all go to the
/// first worker.
pub struct OnFirstWorker;

impl Sink for OnFirstWorker {
    fn write(&mut self, _: StreamName, _: Time, _: &Encoded) -> Result<(), SinkError> {
        Err(SinkError::Delivery("kafka: an exactly-once sink's record reached a worker other than the first".into()))
    }

    fn single_writer(&self) -> bool {
        true
    }

    fn poll(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn written(&self, _: StreamName) -> u64 {
        0
    }

    fn delivered(&self, _: StreamName) -> u64 {
        0
    }
}
