//! `[sinks.NAME] kind = "sns"`: an Amazon SNS topic, one message per record.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sinks::config::{check_retries, default_dead_letter, default_request_timeout_secs, default_retry_secs, secs};

/// An SNS sink's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// The topic's ARN.
    pub topic_arn: String,
    /// AWS region (default: the topic ARN's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint instead of AWS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Messages a second at most, per process.
    #[serde(default = "default_sns_rate")]
    pub max_per_sec: u32,
    /// Seconds a failing batch is retried before it goes to the dead-letter folder.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: f64,
    /// Seconds one request may take.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: f64,
    /// Where undeliverable records go.
    #[serde(default = "default_dead_letter")]
    pub dead_letter_dir: PathBuf,
}

fn default_sns_rate() -> u32 {
    100
}

impl SnsConfig {
    /// Where it connects: its region, else the topic ARN's.
    pub fn aws_settings(&self) -> crate::aws::AwsSettings {
        let from_arn = || self.topic_arn.split(':').nth(3).filter(|r| !r.is_empty()).map(str::to_string);
        crate::aws::AwsSettings {
            region: self.region.clone().or_else(from_arn),
            endpoint_url: self.endpoint_url.clone(),
            request_timeout: secs(self.request_timeout_secs),
        }
    }

    /// Checks the topic ARN and the sink's limits.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let arn = &self.topic_arn;
        if !arn.starts_with("arn:") || arn.split(':').count() != 6 {
            return Err(format!("sinks.{name}.topic_arn: {arn:?} is not a topic ARN; write arn:aws:sns:REGION:ACCOUNT:TOPIC"));
        }
        if self.max_per_sec == 0 {
            return Err(format!("sinks.{name}.max_per_sec: 0; allow at least 1 message a second"));
        }
        check_retries(name, self.retry_secs, self.request_timeout_secs)
    }
}
