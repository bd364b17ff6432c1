//! `[sinks.NAME]`: which kind of sink, and its settings (each kind's in its own folder).

use serde::{Deserialize, Serialize};

use super::firehose::FirehoseConfig;
use super::folder::FolderConfig;
use super::kafka::KafkaSinkConfig;
use super::opensearch::OpenSearchConfig;
use super::s3::S3Config;
use super::sns::SnsConfig;

/// A sink: `[sinks.NAME]` with `kind = "folder" | "kafka" | "firehose" | "sns" | "s3" | "opensearch"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkConfig {
    /// A local folder laid out as Firehose lays out S3.
    Folder(FolderConfig),
    /// Kafka topics, one message per record keyed by vin.
    Kafka(KafkaSinkConfig),
    /// Amazon Kinesis Data Firehose delivery streams.
    Firehose(FirehoseConfig),
    /// An Amazon SNS topic, one message per record.
    Sns(SnsConfig),
    /// Sealed objects in an S3 bucket, one per stream and hour.
    S3(S3Config),
    /// An OpenSearch or Elasticsearch cluster, one document per record.
    #[serde(rename = "opensearch")]
    OpenSearch(OpenSearchConfig),
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig::Folder(FolderConfig::default())
    }
}

impl SinkConfig {
    /// Where an AWS sink connects (its region, endpoint and request timeout); none for others.
    pub fn aws_settings(&self) -> Option<crate::aws::AwsSettings> {
        match self {
            SinkConfig::Firehose(f) => Some(f.aws_settings()),
            SinkConfig::Sns(s) => Some(s.aws_settings()),
            SinkConfig::S3(s) => Some(s.aws_settings()),
            SinkConfig::Folder(_) | SinkConfig::Kafka(_) | SinkConfig::OpenSearch(_) => None,
        }
    }

    /// Where the job can read this sink's records back (folders); none for the others.
    pub fn stored(&self) -> Option<std::sync::Arc<dyn crate::operations::stored_records::StoredRecords>> {
        match self {
            SinkConfig::Folder(f) => {
                Some(std::sync::Arc::new(super::folder::stored::FolderStore { root: f.path.clone(), layout: f.layout }))
            }
            SinkConfig::Kafka(_) | SinkConfig::Firehose(_) | SinkConfig::Sns(_) | SinkConfig::S3(_) | SinkConfig::OpenSearch(_) => None,
        }
    }
}

impl SinkConfig {
    /// Checks the values of sink `name`; the error names the field and what is allowed.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        match self {
            SinkConfig::Folder(f) => f.validate(name),
            SinkConfig::Kafka(k) => k.validate(name),
            SinkConfig::Firehose(f) => f.validate(name),
            SinkConfig::Sns(s) => s.validate(name),
            SinkConfig::OpenSearch(o) => o.validate(name),
            SinkConfig::S3(s) => s.validate(name),
        }
    }

    /// Whether sink `name` can take `stream`'s records; the error says why not and what to do.
    pub fn takes(&self, name: &str, stream: crate::stream::StreamName) -> Result<(), String> {
        match self {
            SinkConfig::OpenSearch(_) if stream.fields().is_empty() => Err(format!(
                "routes.{stream}: sink {name:?} indexes JSON records, and {stream} lines are input text; route {stream} to a folder, Kafka or Firehose sink"
            )),
            SinkConfig::Folder(super::folder::FolderConfig { format: crate::stored_files::format::Format::Parquet, .. })
            | SinkConfig::S3(S3Config { format: crate::stored_files::format::Format::Parquet, .. })
                if crate::stored_files::columnar::fields(stream).is_empty() =>
            {
                Err(format!("routes.{stream}: sink {name:?} writes Parquet, and {stream} declares no fields (its analysis's OutputSpec::fields); declare them or use format = \"jsonl\""))
            }
            _ => Ok(()),
        }
    }
}

/// `sinks.NAME.FIELD` within `[lo, hi]`, or an error saying so in `unit`.
pub fn in_range(name: &str, field: &str, v: f64, (lo, hi): (f64, f64), unit: &str) -> Result<(), String> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(format!("sinks.{name}.{field}: {v} is out of range; use {lo} to {hi} {unit}"))
    }
}

/// The retry budget and request timeout of a sink that calls a service.
pub fn check_retries(name: &str, retry_secs: f64, request_timeout_secs: f64) -> Result<(), String> {
    in_range(name, "retry_secs", retry_secs, (0.0, 86_400.0), "seconds")?;
    in_range(name, "request_timeout_secs", request_timeout_secs, (0.1, 900.0), "seconds")
}

/// Seconds as a duration, within a millisecond and an hour.
pub fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(s.clamp(0.001, 3600.0))
}

/// Default: retry a failing batch for two minutes before dead-lettering it.
pub fn default_retry_secs() -> f64 {
    120.0
}

/// Default: one request may take 30 s.
pub fn default_request_timeout_secs() -> f64 {
    30.0
}

/// Default dead-letter folder.
pub fn default_dead_letter() -> std::path::PathBuf {
    std::path::PathBuf::from("./fleetflow-dead-letter")
}
