//! `[sinks.NAME] kind = "firehose"`: Amazon Kinesis Data Firehose delivery streams.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sinks::config::{check_retries, default_dead_letter, default_request_timeout_secs, default_retry_secs, in_range, secs};

/// A Firehose sink's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    /// Delivery stream name; `{stream}` is replaced by the output stream's name.
    pub delivery_stream: String,
    /// AWS region (default: the standard chain, e.g. `AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint instead of AWS's (an emulator, a VPC endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Pack several lines into one Firehose record (fewer billed records).
    #[serde(default)]
    pub pack_records: bool,
    /// Send a partial batch this many seconds after its first record.
    #[serde(default = "default_aws_buffer_secs")]
    pub buffer_secs: f64,
    /// MiB in flight at most per worker; beyond it the dataflow waits.
    #[serde(default = "default_in_flight_mib")]
    pub max_in_flight_mib: f64,
    /// Seconds a failing batch is retried before it goes to the dead-letter folder.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: f64,
    /// Seconds one request may take.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: f64,
    /// Where undeliverable records go (a folder per sink under it).
    #[serde(default = "default_dead_letter")]
    pub dead_letter_dir: PathBuf,
}

fn default_aws_buffer_secs() -> f64 {
    1.0
}
fn default_in_flight_mib() -> f64 {
    32.0
}

impl FirehoseConfig {
    /// Where it connects.
    pub fn aws_settings(&self) -> crate::aws::AwsSettings {
        crate::aws::AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            request_timeout: secs(self.request_timeout_secs),
        }
    }

    /// Checks the delivery stream's name and the sink's limits.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let stream = &self.delivery_stream;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '{' | '}');
        if stream.is_empty() || stream.len() > 64 || !stream.chars().all(valid) {
            return Err(format!(
                "sinks.{name}.delivery_stream: {stream:?} is not a delivery stream name; use 1 to 64 of a-z A-Z 0-9 _ . - (and {{stream}})"
            ));
        }
        in_range(name, "buffer_secs", self.buffer_secs, (0.0, 900.0), "seconds")?;
        in_range(name, "max_in_flight_mib", self.max_in_flight_mib, (4.0, 4096.0), "MiB (at least one 4 MiB call)")?;
        check_retries(name, self.retry_secs, self.request_timeout_secs)
    }
}
