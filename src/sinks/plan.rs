//! Building the configured sinks: once per process, the AWS clients (from the standard
//! credential chain), the checks that every delivery stream and topic the routes need exists (a
//! clear start-up error rather than a dead-letter folder filling up), the shared rate limiters
//! and counters; then, per worker, the sink instances.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultDirectRateLimiter;

use super::dead_letter::DeadLetter;
use super::firehose::{FirehoseOptions, FirehoseSink};
use super::folder::{BufferHints, FolderSink};
use super::kafka::KafkaSink;
use super::retry::RetryPolicy;
use super::sealed::SealedFolderSink;
use super::sns::{SnsApi, SnsSink};
use super::NamedSink;
use super::{Sink, SinkError};
use crate::aws::AwsError;
use crate::config::{Config, SinkConfig};
use crate::metrics::Metrics;
use crate::route::StreamName;

enum Prepared {
    Local,
    Firehose { client: aws_sdk_firehose::Client, options: FirehoseOptions, dead_letter: PathBuf },
    Sns { client: aws_sdk_sns::Client, limiter: Arc<DefaultDirectRateLimiter>, retry: RetryPolicy, dead_letter: PathBuf },
}

/// The process's sinks, ready to be instantiated by each worker.
pub struct SinkPlan {
    sinks: Vec<(String, SinkConfig, Prepared)>,
    metrics: Arc<Metrics>,
}

fn retry(secs: f64) -> RetryPolicy {
    RetryPolicy { budget: Duration::from_secs_f64(secs.max(0.0)), ..RetryPolicy::default() }
}

impl SinkPlan {
    /// Connects the AWS sinks and checks their resources (the config is validated).
    pub fn prepare(config: &Config, metrics: Arc<Metrics>) -> Result<SinkPlan, AwsError> {
        let routes = config.routes().map_err(|e| AwsError::Resource { field: "config".into(), message: e.to_string() })?;
        let mut sinks = Vec::new();
        for (name, sink) in &config.sinks {
            // The streams routed to this sink.
            let streams: Vec<StreamName> = routes.iter().filter(|(_, to)| to.contains(name)).map(|(s, _)| *s).collect();
            let prepared = match sink {
                SinkConfig::Firehose {
                    delivery_stream, pack_records, buffer_secs, max_in_flight_mib, retry_secs, dead_letter_dir, ..
                } => {
                    let settings = sink.aws_settings().unwrap_or_default();
                    let client = aws_sdk_firehose::Client::new(&crate::aws::load(&settings, &format!("sinks.{name}"))?);
                    for stream in &streams {
                        let target = super::firehose::target(delivery_stream, *stream);
                        let found = crate::aws::runtime().block_on(client.describe_delivery_stream().delivery_stream_name(&target).send());
                        if let Err(e) = found {
                            return Err(AwsError::Resource {
                                field: format!("sinks.{name}.delivery_stream"),
                                message: format!(
                                    "delivery stream {target:?} (for {}) is not usable: {}; create it (fleetflow aws setup) or fix the name, region and credentials",
                                    stream.as_str(),
                                    super::delivery::error_text(&e)
                                ),
                            });
                        }
                    }
                    let options = FirehoseOptions {
                        delivery_stream: delivery_stream.clone(),
                        pack: *pack_records,
                        buffer_interval: Duration::from_secs_f64(*buffer_secs),
                        max_in_flight_bytes: (max_in_flight_mib * 1024.0 * 1024.0) as usize,
                        retry: retry(*retry_secs),
                    };
                    Prepared::Firehose { client, options, dead_letter: dead_letter_dir.clone() }
                }
                SinkConfig::Sns { topic_arn, max_per_sec, retry_secs, dead_letter_dir, .. } => {
                    let settings = sink.aws_settings().unwrap_or_default();
                    let client = aws_sdk_sns::Client::new(&crate::aws::load(&settings, &format!("sinks.{name}"))?);
                    if !streams.is_empty() {
                        let found = crate::aws::runtime().block_on(client.get_topic_attributes().topic_arn(topic_arn).send());
                        if let Err(e) = found {
                            return Err(AwsError::Resource {
                                field: format!("sinks.{name}.topic_arn"),
                                message: format!(
                                    "topic {topic_arn:?} is not usable: {}; create it (fleetflow aws setup) or fix the ARN and credentials",
                                    super::delivery::error_text(&e)
                                ),
                            });
                        }
                    }
                    Prepared::Sns {
                        client,
                        limiter: super::sns::limiter(*max_per_sec),
                        retry: retry(*retry_secs),
                        dead_letter: dead_letter_dir.clone(),
                    }
                }
                SinkConfig::Folder { .. } | SinkConfig::Kafka { .. } => Prepared::Local,
            };
            sinks.push((name.clone(), sink.clone(), prepared));
        }
        Ok(SinkPlan { sinks, metrics })
    }

    /// One worker's sink instances, by name; `tag` names its files.
    pub fn build(&self, tag: &str) -> Result<Vec<NamedSink>, SinkError> {
        self.sinks
            .iter()
            .map(|(name, config, prepared)| -> Result<NamedSink, SinkError> {
                let counters = self.metrics.sink(name);
                let sink: Box<dyn Sink> = match (config, prepared) {
                    (SinkConfig::Folder { path, sealed: true, .. }, _) => Box::new(SealedFolderSink::new(path)),
                    (SinkConfig::Folder { path, buffer_mib, buffer_secs, .. }, _) => Box::new(FolderSink::new(
                        path,
                        tag.to_string(),
                        BufferHints {
                            size_bytes: (buffer_mib * 1024.0 * 1024.0) as usize,
                            interval: Duration::from_secs_f64(*buffer_secs),
                        },
                    )),
                    (SinkConfig::Kafka { brokers, topic, properties }, _) => Box::new(KafkaSink::new(brokers, topic, properties)?),
                    (_, Prepared::Firehose { client, options, dead_letter }) => {
                        let dl = Arc::new(DeadLetter::new(dead_letter, name, tag.to_string()));
                        Box::new(FirehoseSink::new(client.clone(), options, dl, counters))
                    }
                    (SinkConfig::Sns { topic_arn, .. }, Prepared::Sns { client, limiter, retry, dead_letter }) => {
                        let dl = Arc::new(DeadLetter::new(dead_letter, name, tag.to_string()));
                        let api = SnsApi::new(client.clone(), limiter.clone());
                        Box::new(SnsSink::new(api, topic_arn.clone(), retry.clone(), dl, counters, 8 * 1024 * 1024))
                    }
                    _ => return Err(SinkError::Delivery(format!("sink {name}: not prepared"))),
                };
                Ok((name.clone(), sink))
            })
            .collect()
    }
}
