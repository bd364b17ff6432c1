//! `[kafka]`: a topic of readings, as the job's source.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::position::{Start, Stop};

/// `[kafka]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic of readings.
    pub topic: String,
    /// Consumer group, for committed offsets (partitions are assigned by fleetflow, not the group).
    pub group: String,
    /// `committed` (default), `earliest`, `latest`, or an RFC 3339 time or date (offsets for that time).
    pub start: Start,
    /// `never` (a live stream, the default), `end` (the end of each partition at start-up), or an
    /// RFC 3339 time or date.
    pub stop: Stop,
    /// A partition without messages for this long stops holding the watermark back, ms.
    pub idle_timeout_ms: u64,
    /// Offsets are committed at most this often, ms (0: whenever more is committable). A restart
    /// reads again what was read after the last commit (at least once).
    pub commit_interval_ms: u64,
    /// Extra librdkafka properties (e.g. `"security.protocol" = "SSL"`).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_string(),
            topic: "vehicles".to_string(),
            group: "fleetflow".to_string(),
            start: Start::Committed,
            stop: Stop::Never,
            idle_timeout_ms: 10_000,
            commit_interval_ms: 1_000,
            properties: BTreeMap::new(),
        }
    }
}
