//! The exactly-once Kafka sink's progress topic: each transaction ends with one message keyed by
//! the transactional id naming the checkpoint it belongs to, committed with the records. The
//! first worker commits the transaction after every part of the checkpoint is written and
//! before it marks the checkpoint complete; a job that dies between the two leaves the records
//! visible and the checkpoint unmarked, and its restart reads here (`read_committed`) that the
//! checkpoint's transaction committed, and restores that checkpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetflow_dataflows::Time;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::config::Transactional;
use crate::sinks::SinkError;

/// How long a read or a transaction step may wait for the broker.
const WAIT: Duration = Duration::from_secs(30);
/// Messages read per step back from the end of the topic.
const STEP: i64 = 1000;

/// What one committed transaction says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The checkpoint's name in the state store; 0: none (a fresh start, or a run that drained
    /// its windows).
    pub checkpoint: Time,
    /// The checkpoint's boundary.
    pub at: Time,
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> SinkError {
    let what = what.into();
    move |source| SinkError::Kafka { what, source }
}

/// A progress message's body.
pub fn message(progress: Progress) -> Vec<u8> {
    serde_json::to_vec(&progress).unwrap_or_default()
}

/// The latest committed progress of sink `t`, if any.
pub fn latest(brokers: &str, t: &Transactional, properties: &BTreeMap<String, String>) -> Result<Option<Progress>, SinkError> {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{}.reader", t.id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().map_err(kafka("creating a consumer of the progress topic"))?;
    let topic = &t.progress_topic;
    let (low, high) = match consumer.fetch_watermarks(topic, 0, WAIT) {
        Ok(marks) => marks,
        Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition | RDKafkaErrorCode::UnknownTopicOrPartition)) => return Ok(None),
        Err(e) => return Err(kafka(format!("reading the end of {topic}"))(e)),
    };
    let mut end = high;
    while end > low {
        let start = (end - STEP).max(low);
        if let Some(p) = read_between(&consumer, t, (start, end))? {
            return Ok(Some(p));
        }
        end = start;
    }
    Ok(None)
}

/// The last progress of sink `t` among the committed messages of `[start, end)`.
fn read_between(consumer: &BaseConsumer, t: &Transactional, (start, end): (i64, i64)) -> Result<Option<Progress>, SinkError> {
    let topic = &t.progress_topic;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(start)).map_err(kafka(format!("reading {topic}")))?;
    consumer.assign(&assignment).map_err(kafka(format!("reading {topic}")))?;
    let mut found = None;
    loop {
        match consumer.poll(WAIT) {
            Some(Ok(m)) if m.offset() >= end => return Ok(found),
            Some(Ok(m)) => {
                if m.key() == Some(t.id.as_bytes()) {
                    found = m.payload().and_then(|p| serde_json::from_slice(p).ok()).or(found);
                }
            }
            // (With read_committed, the end is the first message of a transaction still open.)
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(found),
            Some(Err(e)) => return Err(kafka(format!("reading {topic}"))(e)),
            None => {
                return Err(SinkError::Delivery(format!(
                    "kafka: reading {topic}: no answer within {} s; is the broker up?",
                    WAIT.as_secs()
                )))
            }
        }
    }
}

/// Starts sink `t` afresh: fences any producer of an earlier run, aborting its open transaction,
/// and commits a progress naming no checkpoint (a checkpoint of this run that happens to have the
/// name an earlier run committed is not taken for committed).
pub fn reset(brokers: &str, t: &Transactional, properties: &BTreeMap<String, String>) -> Result<(), SinkError> {
    ensure_topic(brokers, t)?;
    let producer: BaseProducer = transactional_config(brokers, t, properties).create().map_err(kafka("creating a producer"))?;
    producer.init_transactions(WAIT).map_err(kafka(format!("starting transactions as {}", t.id)))?;
    producer.begin_transaction().map_err(kafka("beginning a transaction"))?;
    let body = message(Progress { checkpoint: 0, at: 0 });
    producer
        .send(BaseRecord::<[u8], [u8]>::to(&t.progress_topic).key(t.id.as_bytes()).payload(&body))
        .map_err(|(e, _)| kafka(format!("writing to {}", t.progress_topic))(e))?;
    producer.commit_transaction(WAIT).map_err(kafka("committing a transaction"))
}

/// Creates the progress topic of sink `t` (one partition, the broker's replication) if missing.
pub fn ensure_topic(brokers: &str, t: &Transactional) -> Result<(), SinkError> {
    crate::kafka_admin::ensure_topic_replicated(brokers, &t.progress_topic, 1, -1)
        .map(|_| ())
        .map_err(|e| SinkError::Delivery(format!("kafka: creating the progress topic {}: {e}", t.progress_topic)))
}

/// The producer settings of sink `t`: its transactional id, and transactions that may stay open
/// up to the broker's default limit (a checkpoint interval of event time can take long).
pub fn transactional_config(brokers: &str, t: &Transactional, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("linger.ms", "5").set("transaction.timeout.ms", "900000");
    for (k, v) in properties {
        config.set(k, v);
    }
    config.set("transactional.id", &t.id).set("enable.idempotence", "true");
    config
}
