//! `[sinks.NAME] kind = "kafka"`: Kafka topics, one message per record keyed by vin; at least
//! once, or exactly once (transactions committed with the job's checkpoints).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Kafka sink's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers.
    pub brokers: String,
    /// Topic name; `{stream}` is replaced by the stream's name.
    #[serde(default = "default_sink_topic")]
    pub topic: String,
    /// Exactly once: the records are written in transactions committed with each checkpoint
    /// (consumers read them with `isolation.level = read_committed`). Needs a Kafka source with
    /// checkpoints; the records go through the job's first worker.
    #[serde(default)]
    pub exactly_once: bool,
    /// The transactional id of an exactly-once sink (default `fleetflow-<group>-<sink name>`):
    /// the same across restarts, so a restart fences the producer of a run that died.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Where an exactly-once sink records which checkpoint each transaction belongs to (default
    /// `<transactional id>.progress`, created with one partition if missing).
    #[serde(default)]
    pub progress_topic: Option<String>,
    /// Extra librdkafka producer properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_sink_topic() -> String {
    "fleetflow.{stream}".to_string()
}

/// An exactly-once sink's identity: its transactional id and progress topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Transactional {
    /// The transactional id.
    pub id: String,
    /// The progress topic.
    pub progress_topic: String,
}

impl KafkaSinkConfig {
    /// Checks that sink `name` has brokers and a topic.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        if self.brokers.trim().is_empty() || self.topic.trim().is_empty() {
            return Err(format!("sinks.{name}: a kafka sink needs brokers and a topic (e.g. \"fleetflow.{{stream}}\")"));
        }
        if !self.exactly_once && (self.transactional_id.is_some() || self.progress_topic.is_some()) {
            return Err(format!(
                "sinks.{name}: transactional_id and progress_topic belong to an exactly-once sink; add exactly_once = true or remove them"
            ));
        }
        let owned: &[&str] = if self.exactly_once { &["transactional.id", "enable.idempotence"] } else { &["transactional.id"] };
        if let Some(key) = owned.iter().find(|k| self.properties.contains_key(**k)) {
            return Err(format!("sinks.{name}.properties: {key} is set by fleetflow; remove it (use exactly_once and transactional_id)"));
        }
        Ok(())
    }

    /// The transactional id and progress topic of sink `name` of the job reading as `group`,
    /// if it is exactly once.
    pub fn transactional(&self, name: &str, group: &str) -> Option<Transactional> {
        if !self.exactly_once {
            return None;
        }
        let id = self.transactional_id.clone().unwrap_or_else(|| format!("fleetflow-{group}-{name}"));
        let safe: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let progress_topic = self.progress_topic.clone().unwrap_or_else(|| format!("{safe}.progress"));
        Some(Transactional { id, progress_topic })
    }
}
