//! The Kafka sink: output streams to Kafka topics (one per stream, from a `{stream}` pattern), each
//! record one message keyed by vin. At least once (this file): a record counts as delivered once
//! the broker acknowledged it, which is what the job's durable frontier (and so the Kafka source's
//! offset commits) waits for. Exactly once: see `transactional`.

mod config;
pub mod progress;
pub mod transactional;
pub use config::{KafkaSinkConfig, Transactional};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use fleetflow_dataflows::Time;

use crate::encode::Encoded;
use crate::sinks::{Sink, SinkError};
use crate::stream::StreamName;

/// How long a flush (at shutdown) may wait for the broker's acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Delivery reports, per stream, from the producer's thread.
pub(crate) struct Deliveries {
    acked: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    first_error: Mutex<Option<String>>,
}

impl Default for Deliveries {
    fn default() -> Self {
        let zeros = || StreamName::all().map(|_| AtomicU64::new(0)).collect();
        Deliveries { acked: zeros(), failed: zeros(), first_error: Mutex::new(None) }
    }
}

impl Deliveries {
    /// The first delivery error, if any.
    fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fails once a record was not delivered: `what` says which record (`a record`, `a record
    /// of a transaction`).
    fn check(&self, what: &str) -> Result<(), SinkError> {
        match self.first_error() {
            Some(e) => Err(SinkError::Delivery(format!("kafka: {what} was not delivered after the client's retries: {e}"))),
            None => Ok(()),
        }
    }

    /// Records of stream `i` the broker answered for (acknowledged or failed).
    fn answered(&self, i: usize) -> u64 {
        self.acked[i].load(Ordering::Relaxed) + self.failed[i].load(Ordering::Relaxed)
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    /// (`stream` is out of range for a message that is no stream's: a progress message.)
    fn delivery(&self, result: &DeliveryResult<'_>, stream: usize) {
        match result {
            Ok(_) => {
                if let Some(acked) = self.acked.get(stream) {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((e, _)) => {
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
                if let Some(failed) = self.failed.get(stream) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Hands `message` to the producer, waiting while its queue is full (backpressure: the dataflow
/// waits for the producer rather than buffer more).
pub(crate) fn produce<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    producer: &ThreadedProducer<Deliveries>,
    mut message: BaseRecord<'_, K, P, usize>,
    topic: &str,
) -> Result<(), SinkError> {
    loop {
        match producer.send(message) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                message = m;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((source, _)) => return Err(SinkError::Kafka { what: format!("producing to {topic}"), source }),
        }
    }
}

/// Writes output streams to Kafka topics.
pub struct KafkaSink {
    producer: ThreadedProducer<Deliveries>,
    topics: Vec<String>,
    written: Vec<u64>,
    /// `written` when each stream last had every record acknowledged.
    settled: Vec<u64>,
}

impl KafkaSink {
    /// A sink to `brokers`, writing stream `s` to `topic` with `{stream}` replaced by its name.
    pub fn new(brokers: &str, topic: &str, properties: &std::collections::BTreeMap<String, String>) -> Result<Self, SinkError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers).set("linger.ms", "5").set("enable.idempotence", "true");
        for (k, v) in properties {
            config.set(k, v);
        }
        let producer = config
            .create_with_context(Deliveries::default())
            .map_err(|source| SinkError::Kafka { what: format!("creating a producer for {brokers}"), source })?;
        let topics = StreamName::all().map(|s| topic.replace("{stream}", s.as_str())).collect();
        let zeros = vec![0; StreamName::count()];
        Ok(KafkaSink { producer, topics, written: zeros.clone(), settled: zeros })
    }

    fn check(&self) -> Result<(), SinkError> {
        self.producer.context().check("a record")
    }

    /// Moves each stream's delivered count up to its written count once every record written has
    /// been acknowledged (a stream with nothing new does not move, so nothing wakes for it).
    fn note_deliveries(&mut self) {
        let ctx = self.producer.context();
        for (i, written) in self.written.iter().enumerate() {
            let settled = ctx.answered(i) >= *written;
            if settled && *written > self.settled[i] {
                self.settled[i] = *written;
            }
        }
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, stream: StreamName, _stamp: fleetflow_dataflows::Time, record: &Encoded) -> Result<(), SinkError> {
        let index = stream.index();
        let key = record.key.map(|v| v.to_string()).unwrap_or_default();
        let payload = record.line.strip_suffix(b"\n").unwrap_or(&record.line);
        let mut message = BaseRecord::with_opaque_to(&self.topics[index], index).payload(payload);
        if record.key.is_some() {
            message = message.key(&key);
        }
        produce(&self.producer, message, &self.topics[index])?;
        self.written[index] += 1;
        Ok(())
    }

    fn poll(&mut self) -> Result<(), SinkError> {
        self.note_deliveries();
        self.check()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|source| SinkError::Kafka { what: "flushing the producer".into(), source })?;
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

impl KafkaSinkConfig {
    /// Worker `worker`'s instance: a producer of its own (at least once); for an exactly-once sink
    /// (`transactional`), the transactional writer on the first worker, committing with the
    /// checkpoints taken every `every` ms, and nothing on the others.
    pub fn instance(&self, transactional: Option<&Transactional>, every: Time, worker: usize) -> Result<Box<dyn Sink>, SinkError> {
        Ok(match transactional {
            None => Box::new(KafkaSink::new(&self.brokers, &self.topic, &self.properties)?),
            Some(_) if worker > 0 => Box::new(transactional::OnFirstWorker),
            Some(t) => Box::new(transactional::TransactionalSink::new((&self.brokers, &self.topic), t.clone(), &self.properties, every)?),
        })
    }
}
