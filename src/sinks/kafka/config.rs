//! `[sinks.NAME] kind = "kafka"`: Kafka topics, one message per record keyed by vin.

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
    /// Extra librdkafka producer properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_sink_topic() -> String {
    "fleetflow.{stream}".to_string()
}

impl KafkaSinkConfig {
    /// Checks that sink `name` has brokers and a topic.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        if self.brokers.trim().is_empty() || self.topic.trim().is_empty() {
            return Err(format!("sinks.{name}: a kafka sink needs brokers and a topic (e.g. \"fleetflow.{{stream}}\")"));
        }
        Ok(())
    }
}

impl KafkaSinkConfig {
    /// A worker's instance (a producer of its own).
    pub fn instance(&self) -> Result<super::KafkaSink, crate::sinks::SinkError> {
        super::KafkaSink::new(&self.brokers, &self.topic, &self.properties)
    }
}
