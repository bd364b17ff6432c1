//! The Kafka source: each partition of the topic is one source partition, assigned to worker
//! `partition mod total_workers` by hand (no group rebalancing), read from a start position
//! (committed group offsets, earliest, latest, or the offsets for a time) up to an optional stop.
//!
//! Offsets are committed only once every output derived from the records before them has been
//! delivered by its sinks (the durable frontier has passed their completion times): at least once,
//! end to end. Each commit carries metadata, `fleetflow:v1:<max_ts>:<durable>`: the partition's
//! highest event time (so a restart judges lateness as the first run did) and the durable frontier
//! (outputs below it were delivered; a restart does not write them again).

mod config;
mod position;
pub use config::KafkaConfig;
pub use position::{Start, Stop};

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use fleetflow_dataflows::Time;

use super::tracker::ReadTracker;
use super::{Delivered, Partition, Poll, Record, Run, SavedPosition, SourceError};

/// How long metadata and offset look-ups may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A partition whose consumer saw a broker error this recently is not idle, whatever its data:
/// while the broker is away every partition falls silent at once, and when it comes back the
/// first partition to read again must not move the watermark past the others (CI: a broker
/// restart slower than the idle timeout closed windows without one partition's readings).
const TROUBLE_HOLDS: Duration = Duration::from_secs(30);

/// What a commit's metadata records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The partition's highest accepted event time before the committed offset.
    pub max_ts: Option<u64>,
    /// The job's durable frontier when committing: outputs at times below it were delivered.
    pub durable: u64,
    /// Records below this offset were read by a run that stopped exactly, which delivered their
    /// `late`, `errors` and `raw` records (none when it is at or below the committed offset).
    pub read_to: Option<u64>,
    /// The offset is a checkpoint's position (the state as of this boundary holds what the
    /// records before it made): resuming from it needs that checkpoint.
    pub checkpoint: Option<u64>,
}

impl Committed {
    fn encode(&self) -> String {
        let opt = |v: Option<u64>| v.map(|t| t.to_string()).unwrap_or_default();
        match self.checkpoint {
            Some(at) => format!("fleetflow:v3:{}:{}:{}:{at}", opt(self.max_ts), self.durable, opt(self.read_to)),
            None => format!("fleetflow:v2:{}:{}:{}", opt(self.max_ts), self.durable, opt(self.read_to)),
        }
    }

    fn decode(s: &str) -> Option<Committed> {
        let opt = |v: &str| if v.is_empty() { Some(None) } else { v.parse().ok().map(Some) };
        if let Some(rest) = s.strip_prefix("fleetflow:v1:") {
            let (max_ts, durable) = rest.split_once(':')?;
            return Some(Committed { max_ts: opt(max_ts)?, durable: durable.parse().ok()?, read_to: None, checkpoint: None });
        }
        if let Some(rest) = s.strip_prefix("fleetflow:v3:") {
            let mut fields = rest.split(':');
            let (max_ts, durable, read_to, at) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            let (max_ts, durable, read_to) = (opt(max_ts)?, durable.parse().ok()?, opt(read_to)?);
            return Some(Committed { max_ts, durable, read_to, checkpoint: Some(at.parse().ok()?) });
        }
        let mut fields = s.strip_prefix("fleetflow:v2:")?.split(':');
        let (max_ts, durable, read_to) = (fields.next()?, fields.next()?, fields.next()?);
        Some(Committed { max_ts: opt(max_ts)?, durable: durable.parse().ok()?, read_to: opt(read_to)?, checkpoint: None })
    }
}

/// The committed offset and metadata of partitions `0..partitions` of the topic, for the group.
fn committed(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<Vec<(Offset, Option<Committed>)>, SourceError> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let list = patiently(|| format!("committed offsets of {topic}"), || consumer.committed_offsets(tpl.clone(), LOOKUP_TIMEOUT))?;
    let out = (0..partitions)
        .map(|p| match list.find_partition(topic, p) {
            Some(e) => (e.offset(), Committed::decode(e.metadata())),
            None => (Offset::Invalid, None),
        })
        .collect();
    // librdkafka hangs if a consumer is dropped while such a list lives: drop it first.
    drop(list);
    Ok(out)
}

/// Where an earlier run's outputs were durable up to (the highest durable frontier any partition
/// committed with), when starting from committed offsets; `None` when no run of fleetflow
/// committed for the group (then nothing was delivered).
pub fn resume_frontier(cfg: &KafkaConfig) -> Result<Option<u64>, SourceError> {
    if cfg.start != Start::Committed {
        return Ok(None);
    }
    let count = partition_count(cfg)?;
    let consumer: BaseConsumer = client_config(cfg).create().map_err(kafka("creating a consumer"))?;
    let all = committed(&consumer, &cfg.topic, count)?;
    Ok(all.iter().filter_map(|(_, c)| c.map(|c| c.durable)).max())
}

/// The latest checkpoint the group's committed offsets were taken at, if they were (then the
/// records before them are in that checkpoint's state, not only in delivered outputs).
pub fn checkpointed(cfg: &KafkaConfig) -> Result<Option<u64>, SourceError> {
    let count = partition_count(cfg)?;
    let consumer: BaseConsumer = client_config(cfg).create().map_err(kafka("creating a consumer"))?;
    let all = committed(&consumer, &cfg.topic, count)?;
    Ok(all.iter().filter_map(|(_, c)| c.and_then(|c| c.checkpoint)).max())
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
        .set("enable.partition.eof", "false")
        // Large fetches: per-message overhead, not the network, limits a consumer on loopback
        // (measured by `cargo bench --bench kafka`: 400k/s with librdkafka's defaults, 1M/s with
        // these at 2 workers). A fetch waits at most 50 ms for 1 MiB; override in [kafka.properties].
        .set("fetch.min.bytes", "1048576")
        .set("fetch.wait.max.ms", "50")
        .set("queued.min.messages", "500000")
        .set("max.partition.fetch.bytes", "8388608")
        .set("fetch.max.bytes", "52428800");
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
            "kafka: topic {:?} does not exist on {}; create it (`fleetflow produce --partitions N` creates it) or fix kafka.topic",
            cfg.topic, cfg.brokers
        ))),
    }
}

/// This worker's partitions: partition `p` goes to worker `p mod peers`. A partition with a
/// position in `restored` (a checkpoint's) starts there, the others at `kafka.start`.
pub fn partitions_for(
    cfg: &KafkaConfig,
    (index, peers): (usize, usize),
    restored: &std::collections::BTreeMap<String, SavedPosition>,
) -> Result<Vec<Box<dyn Partition>>, SourceError> {
    let (start, stop) = (cfg.start, cfg.stop);
    let count = partition_count(cfg)?;
    let mut out: Vec<Box<dyn Partition>> = Vec::new();
    for p in 0..count {
        if p as usize % peers == index {
            let saved = restored.get(&format!("{}/{p}", cfg.topic));
            out.push(Box::new(KafkaPartition::open(cfg, p, (start, saved), stop)?));
        }
    }
    Ok(out)
}

/// One partition of the topic, read by its own consumer.
pub struct KafkaPartition {
    name: String,
    topic: String,
    partition: i32,
    consumer: BaseConsumer,
    stop_at: Option<i64>,
    finished: bool,
    /// Offset of the next record to read, once one was read.
    next: Option<i64>,
    /// What was read, settled and delivered.
    tracker: ReadTracker,
    /// What was last committed.
    committed: Option<(i64, Committed)>,
    /// The offset this run started at.
    first: i64,
    last_commit: Instant,
    /// Commits at most this often (unless forced).
    commit_interval: Duration,
    /// The durable frontier an earlier run committed with (0: none).
    resumed_durable: Time,
    /// When the consumer last reported an error (the broker away, for example).
    last_error: Option<Instant>,
}

/// A partition's first and next offsets.
fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64), SourceError> {
    patiently(|| format!("offsets of {topic}/{partition}"), || consumer.fetch_watermarks(topic, partition, LOOKUP_TIMEOUT))
}

/// Whether a broker's error passes on its own: a topic created moments ago may lack a leader for
/// a partition, and a group's coordinator may be loading or moving (a fresh broker answered
/// `NotCoordinator` to a new group's first look-up in CI).
fn transient(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::NotCoordinator
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::UnknownPartition
                | C::UnknownTopicOrPartition
        )
    )
}

/// Runs a look-up, asking again every half second for up to 5 s while its error is transient.
fn patiently<T>(what: impl Fn() -> String, mut lookup: impl FnMut() -> Result<T, KafkaError>) -> Result<T, SourceError> {
    let mut attempts = 0;
    loop {
        match lookup() {
            Ok(found) => return Ok(found),
            Err(e) if transient(&e) && attempts < 10 => {
                debug!("{}: {e}; asking again", what());
                attempts += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(kafka(what())(e)),
        }
    }
}

fn offset_for_time(consumer: &BaseConsumer, topic: &str, partition: i32, ms: u64) -> Result<Option<i64>, SourceError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ms as i64)).map_err(kafka("building an offsets-for-times request"))?;
    let found =
        patiently(|| format!("offsets for time {ms} in {topic}/{partition}"), || consumer.offsets_for_times(tpl.clone(), LOOKUP_TIMEOUT))?;
    let offset = found.elements().first().map(|e| e.offset());
    Ok(match offset {
        Some(Offset::Offset(o)) => Some(o),
        _ => None, // no message at or after that time
    })
}

impl KafkaPartition {
    /// Opens partition `partition` of the configured topic at `start`, to read until `stop`.
    pub fn open(
        cfg: &KafkaConfig,
        partition: i32,
        (start, saved): (Start, Option<&SavedPosition>),
        stop: Stop,
    ) -> Result<Self, SourceError> {
        let topic = cfg.topic.as_str();
        let consumer: BaseConsumer = client_config(cfg).create().map_err(kafka("creating a consumer"))?;
        let (mut resumed, mut delivered) = (None, Delivered::default());
        let (low, high) = watermarks(&consumer, topic, partition)?;
        if let Some(p) = saved.filter(|p| p.offset > high) {
            return Err(SourceError::Setup(format!(
                "kafka {topic}/{partition}: the checkpoint restores offset {} but the partition ends at {high}: the checkpoint was taken on another topic or broker; remove it from checkpoints.dir or start elsewhere (--start earliest)",
                p.offset
            )));
        }
        let offset = if let Some(p) = saved {
            // A checkpoint's position (its durable frontier is the router's, not the partition's).
            resumed = Some(Committed { max_ts: p.max_ts, durable: 0, read_to: p.read_to, checkpoint: None });
            delivered.ranges.clone_from(&p.delivered);
            Offset::Offset(p.offset)
        } else {
            match start {
                Start::Earliest => Offset::Beginning,
                Start::Latest => Offset::Offset(high),
                Start::Time(ms) => Offset::Offset(offset_for_time(&consumer, topic, partition, ms)?.unwrap_or(high)),
                Start::Committed => match committed(&consumer, topic, partition + 1)?.pop() {
                    Some((Offset::Offset(o), meta)) => {
                        resumed = meta;
                        Offset::Offset(o)
                    }
                    _ => Offset::Beginning,
                },
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
        Ok(KafkaPartition {
            name: format!("{topic}/{partition}"),
            topic: topic.to_string(),
            partition,
            consumer,
            stop_at,
            finished,
            next: (first > 0 || matches!(offset, Offset::Offset(_))).then_some(first),
            tracker: ReadTracker::new(
                first,
                resumed.and_then(|r| r.max_ts),
                Delivered { below: resumed.and_then(|r| r.read_to).unwrap_or(0), ..delivered },
            ),
            committed: None,
            first,
            last_commit: Instant::now(),
            commit_interval: Duration::from_millis(cfg.commit_interval_ms),
            resumed_durable: resumed.map_or(0, |r| r.durable),
            last_error: None,
        })
    }
}

impl KafkaPartition {
    /// What a commit now would say: the offset to resume from, with the highest event time
    /// before it, the durable frontier (never below an earlier run's: what it delivered stays
    /// delivered) and how far the eager records are delivered.
    fn commit_now(&self, durable: u64) -> (i64, Committed) {
        let point = self.tracker.resume_point();
        let durable = durable.max(self.resumed_durable);
        (point.offset, Committed { max_ts: point.max_ts, durable, read_to: point.read_to, checkpoint: None })
    }

    /// Commits `offset` with `meta` (`sync`: waits for it).
    fn send_commit(&mut self, (offset, meta): (i64, Committed), sync: bool) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(offset)).map_err(kafka("building a commit"))?;
        if let Some(mut e) = tpl.find_partition(&self.topic, self.partition) {
            e.set_metadata(meta.encode());
        }
        let mode = if sync { CommitMode::Sync } else { CommitMode::Async };
        self.consumer.commit(&tpl, mode).map_err(kafka(format!("committing {}/{offset}", self.name)))?;
        debug!("kafka {}: committed offset {offset} ({})", self.name, meta.encode());
        self.committed = Some((offset, meta));
        self.last_commit = Instant::now();
        Ok(())
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
                    self.last_error = Some(Instant::now());
                    return Ok(Poll::Pending);
                }
                Some(Ok(message)) => {
                    let offset = message.offset();
                    self.next = Some(offset + 1);
                    if self.stop_at.is_some_and(|s| offset >= s) {
                        self.finished = true;
                        return Ok(Poll::Finished);
                    }
                    let payload = message.payload().unwrap_or(&[]);
                    let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
                    let sent = message.timestamp().to_millis().and_then(|t| u64::try_from(t).ok());
                    emit(Record::Message { payload, key: message.key(), sent }, offset.max(0) as u64);
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
        self.last_error.is_none_or(|at| at.elapsed() >= TROUBLE_HOLDS)
    }

    fn commits(&self) -> bool {
        true
    }

    fn track(&mut self, runs: &[Run], emitted: &[Run]) {
        self.tracker.track(runs, emitted);
    }

    /// Commits at most every `commit_interval` (unless forced), also when only the durable
    /// frontier moved: a restart after a crash then repeats at most what was delivered since.
    fn commit(&mut self, durable: u64, force: bool) -> Result<(), SourceError> {
        self.tracker.settle(durable);
        let now = self.commit_now(durable);
        if self.committed == Some(now) || (!force && self.last_commit.elapsed() < self.commit_interval) {
            return Ok(());
        }
        self.send_commit(now, force)
    }

    fn commit_last(&mut self, settled: u64, durable: u64) -> Result<(), SourceError> {
        self.tracker.settle(settled);
        self.tracker.read_all_below(self.next.unwrap_or(self.first).max(0) as u64);
        let now = self.commit_now(durable);
        self.send_commit(now, true)
    }

    fn position_at(&mut self, at: u64, durable: u64, read_all: bool) -> Option<SavedPosition> {
        self.tracker.settle_apart(at, durable);
        if read_all {
            self.tracker.read_all_below(self.next.unwrap_or(self.first).max(0) as u64);
        }
        Some(self.tracker.position(&self.name))
    }

    fn commit_position(&mut self, p: &SavedPosition, durable: u64) -> Result<(), SourceError> {
        let meta = Committed { max_ts: p.max_ts, durable, read_to: p.read_to, checkpoint: Some(durable) };
        self.send_commit((p.offset, meta), false)
    }

    fn resumed_max_ts(&self) -> Option<u64> {
        self.tracker.resumed_max_ts()
    }

    fn delivered_earlier(&self) -> Delivered {
        self.tracker.delivered().clone()
    }

    fn lag(&self) -> Option<i64> {
        let (low, high) = self.consumer.fetch_watermarks(&self.topic, self.partition, Duration::from_secs(1)).ok()?;
        Some(high - self.next.unwrap_or(low).max(low))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_metadata_round_trips_and_reads_the_first_version() {
        for c in [
            Committed { max_ts: Some(5), durable: 7, read_to: Some(9), checkpoint: None },
            Committed { max_ts: None, durable: 0, read_to: None, checkpoint: None },
            Committed { max_ts: Some(1_764_028_800_000), durable: u64::MAX, read_to: None, checkpoint: None },
            Committed { max_ts: Some(5), durable: 60_000, read_to: None, checkpoint: Some(60_000) },
        ] {
            assert_eq!(Committed::decode(&c.encode()), Some(c));
        }
        assert_eq!(Committed::decode("fleetflow:v1:5:7"), Some(Committed { max_ts: Some(5), durable: 7, read_to: None, checkpoint: None }));
        assert_eq!(Committed::decode("fleetflow:v1::7"), Some(Committed { max_ts: None, durable: 7, read_to: None, checkpoint: None }));
        assert_eq!(Committed::decode("fleetflow:v2:x:7:"), None);
        assert_eq!(Committed::decode("someone else's"), None);
    }
}
