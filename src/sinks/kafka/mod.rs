//! The Kafka sink: output streams to Kafka topics (one per stream, from a `{stream}` pattern), each
//! record one message keyed by vin. A record counts as delivered once the broker acknowledged it,
//! which is what the job's durable frontier (and so the Kafka source's offset commits) waits for.

mod config;
pub use config::KafkaSinkConfig;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::encode::Encoded;
use crate::sinks::{Sink, SinkError};
use crate::stream::StreamName;

/// How long a flush (at shutdown) may wait for the broker's acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Delivery reports, per stream, from the producer's thread.
struct Deliveries {
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

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, stream: usize) {
        match result {
            Ok(_) => self.acked[stream].fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
                self.failed[stream].fetch_add(1, Ordering::Relaxed)
            }
        };
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
        let first = self.producer.context().first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match first {
            Some(e) => Err(SinkError::Delivery(format!("kafka: a record was not delivered after the client's retries: {e}"))),
            None => Ok(()),
        }
    }

    /// Moves each stream's delivered count up to its written count once every record written has
    /// been acknowledged (a stream with nothing new does not move, so nothing wakes for it).
    fn note_deliveries(&mut self) {
        let ctx = self.producer.context();
        for (i, written) in self.written.iter().enumerate() {
            let settled = ctx.acked[i].load(Ordering::Relaxed) + ctx.failed[i].load(Ordering::Relaxed) >= *written;
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
        loop {
            match self.producer.send(message) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                    // Backpressure: the dataflow waits for the producer rather than buffer more.
                    message = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => return Err(SinkError::Kafka { what: format!("producing to {}", self.topics[index]), source }),
            }
        }
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
