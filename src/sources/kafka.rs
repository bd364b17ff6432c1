//! The Kafka source: each partition of the topic is one source partition, assigned to worker
//! `partition mod total_workers` by hand (no group rebalancing), read from a start position
//! (committed group offsets, earliest, latest, or the offsets for a time) up to an optional stop.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::{Partition, Poll, Record, SourceError};
use crate::config::KafkaConfig;

/// How long metadata and offset look-ups may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to start reading a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The group's committed offset, or the earliest when there is none.
    Committed,
    /// The earliest offset still on the broker.
    Earliest,
    /// Only messages produced from now on.
    Latest,
    /// The first message whose timestamp is at or after this time (epoch ms).
    Time(u64),
}

/// Where to stop reading a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Never: a live stream.
    Never,
    /// At the end of the partition as it is when the job starts.
    End,
    /// At the first message whose timestamp is at or after this time (epoch ms).
    Time(u64),
}

fn parse_time(field: &str, s: &str) -> Result<u64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis().max(0) as u64)
        .map_err(|e| format!("{field}: {s:?} is not a position ({e}); write committed, earliest, latest or an RFC 3339 time"))
}

impl Start {
    /// Parses `committed`, `earliest`, `latest` or an RFC 3339 time.
    pub fn parse(s: &str) -> Result<Start, String> {
        match s {
            "committed" | "" => Ok(Start::Committed),
            "earliest" => Ok(Start::Earliest),
            "latest" => Ok(Start::Latest),
            t => parse_time("kafka.start", t).map(Start::Time),
        }
    }
}

impl Stop {
    /// Parses `` (never), `end` or an RFC 3339 time.
    pub fn parse(s: &str) -> Result<Stop, String> {
        match s {
            "" | "never" => Ok(Stop::Never),
            "end" => Ok(Stop::End),
            t => parse_time("kafka.stop", t).map(Stop::Time).map_err(|e| e.replace("committed, earliest, latest", "never, end")),
        }
    }
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> SourceError {
    let what = what.into();
    move |source| SourceError::Kafka { what, source }
}

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// The number of partitions of the configured topic.
pub fn partition_count(cfg: &KafkaConfig) -> Result<i32, SourceError> {
    let consumer: BaseConsumer = client_config(cfg).create().map_err(kafka("creating a consumer"))?;
    let metadata = consumer.fetch_metadata(Some(&cfg.topic), LOOKUP_TIMEOUT).map_err(kafka(format!("metadata of topic {}", cfg.topic)))?;
    let topic = metadata.topics().iter().find(|t| t.name() == cfg.topic);
    match topic {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
        _ => Err(SourceError::Setup(format!(
            "topic {:?} does not exist on {}; create it (`fleetflow produce --partitions N` creates it) or fix kafka.topic",
            cfg.topic, cfg.brokers
        ))),
    }
}

/// This worker's partitions: partition `p` goes to worker `p mod peers`.
pub fn partitions_for(cfg: &KafkaConfig, index: usize, peers: usize) -> Result<Vec<Box<dyn Partition>>, SourceError> {
    let start = Start::parse(&cfg.start).map_err(SourceError::Setup)?;
    let stop = Stop::parse(&cfg.stop).map_err(SourceError::Setup)?;
    let count = partition_count(cfg)?;
    let mut out: Vec<Box<dyn Partition>> = Vec::new();
    for p in 0..count {
        if p as usize % peers == index {
            out.push(Box::new(KafkaPartition::open(cfg, p, start, stop)?));
        }
    }
    Ok(out)
}

/// One partition of the topic, read by its own consumer.
pub struct KafkaPartition {
    name: String,
    consumer: BaseConsumer,
    stop_at: Option<i64>,
    finished: bool,
}

fn offset_for_time(consumer: &BaseConsumer, topic: &str, partition: i32, ms: u64) -> Result<Option<i64>, SourceError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ms as i64)).map_err(kafka("building an offsets-for-times request"))?;
    let found = consumer.offsets_for_times(tpl, LOOKUP_TIMEOUT).map_err(kafka(format!("offsets for time {ms} in {topic}/{partition}")))?;
    let offset = found.elements().first().map(|e| e.offset());
    Ok(match offset {
        Some(Offset::Offset(o)) => Some(o),
        _ => None, // no message at or after that time
    })
}

impl KafkaPartition {
    /// Opens partition `partition` of the configured topic at `start`, to read until `stop`.
    pub fn open(cfg: &KafkaConfig, partition: i32, start: Start, stop: Stop) -> Result<Self, SourceError> {
        let topic = cfg.topic.as_str();
        let consumer: BaseConsumer = client_config(cfg).create().map_err(kafka("creating a consumer"))?;
        let (low, high) =
            consumer.fetch_watermarks(topic, partition, LOOKUP_TIMEOUT).map_err(kafka(format!("offsets of {topic}/{partition}")))?;
        let offset = match start {
            Start::Earliest => Offset::Beginning,
            Start::Latest => Offset::Offset(high),
            Start::Time(ms) => Offset::Offset(offset_for_time(&consumer, topic, partition, ms)?.unwrap_or(high)),
            Start::Committed => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, partition);
                let committed =
                    consumer.committed_offsets(tpl, LOOKUP_TIMEOUT).map_err(kafka(format!("committed offset of {topic}/{partition}")))?;
                let offset = committed.elements().first().map(|e| e.offset());
                // librdkafka hangs if a consumer is dropped while such a list lives: drop it first.
                drop(committed);
                match offset {
                    Some(Offset::Offset(o)) => Offset::Offset(o),
                    _ => Offset::Beginning,
                }
            }
        };
        let stop_at = match stop {
            Stop::Never => None,
            Stop::End => Some(high),
            Stop::Time(ms) => Some(offset_for_time(&consumer, topic, partition, ms)?.unwrap_or(high)),
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, offset).map_err(kafka("building an assignment"))?;
        consumer.assign(&tpl).map_err(kafka(format!("assigning {topic}/{partition}")))?;
        drop(tpl);
        debug!("kafka {topic}/{partition}: offsets {low}..{high}, start {offset:?}, stop {stop_at:?}");
        let first = match offset {
            Offset::Offset(o) => o,
            _ => low,
        };
        let finished = stop_at.is_some_and(|s| first >= s);
        Ok(KafkaPartition { name: format!("{topic}/{partition}"), consumer, stop_at, finished })
    }
}

impl Partition for KafkaPartition {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError> {
        if self.finished {
            return Ok(Poll::Finished);
        }
        for _ in 0..max {
            match self.consumer.poll(Duration::ZERO) {
                None => return Ok(Poll::Pending),
                Some(Err(e)) => {
                    // Broker and network errors are retried by the client; report and carry on.
                    warn!("kafka {}: {e}", self.name);
                    return Ok(Poll::Pending);
                }
                Some(Ok(message)) => {
                    let offset = message.offset();
                    if self.stop_at.is_some_and(|s| offset >= s) {
                        self.finished = true;
                        return Ok(Poll::Finished);
                    }
                    let payload = message.payload().unwrap_or(&[]);
                    let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
                    emit(Record::Message { payload, key: message.key() }, offset.max(0) as u64);
                    if self.stop_at.is_some_and(|s| offset + 1 >= s) {
                        self.finished = true;
                        return Ok(Poll::Finished);
                    }
                }
            }
        }
        Ok(Poll::Ready)
    }

    fn position(&self, offset: u64) -> String {
        format!("{}/{offset}", self.name)
    }

    fn may_idle(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(Start::parse("committed"), Ok(Start::Committed));
        assert_eq!(Start::parse("2025-11-25T00:00:00Z"), Ok(Start::Time(1_764_028_800_000)));
        assert!(Start::parse("yesterday").unwrap_err().starts_with("kafka.start:"));
        assert_eq!(Stop::parse("end"), Ok(Stop::End));
        assert!(Stop::parse("soon").unwrap_err().contains("never, end"));
    }
}
