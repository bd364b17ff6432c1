//! Building Firehose sinks: once per process the client and the check that every delivery stream
//! the routes need exists; then one sink per worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{FirehoseConfig, FirehoseOptions, FirehoseSink};
use crate::aws::AwsError;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::retry::RetryPolicy;
use crate::stream::StreamName;

/// A Firehose sink connected and checked, ready for each worker.
pub struct PreparedFirehose {
    client: aws_sdk_firehose::Client,
    options: FirehoseOptions,
    dead_letter: PathBuf,
}

/// Connects sink `name` and checks the delivery stream of each of `streams`.
pub fn prepare(name: &str, cfg: &FirehoseConfig, streams: &[StreamName]) -> Result<PreparedFirehose, AwsError> {
    let client = aws_sdk_firehose::Client::new(&crate::aws::load(&cfg.aws_settings(), &format!("sinks.{name}"))?);
    for stream in streams {
        let target = super::target(&cfg.delivery_stream, *stream);
        let found = crate::aws::runtime().block_on(client.describe_delivery_stream().delivery_stream_name(&target).send());
        if let Err(e) = found {
            return Err(AwsError::Resource {
                field: format!("sinks.{name}.delivery_stream"),
                message: format!(
                    "delivery stream {target:?} (for {}) is not usable: {}; create it (fleetflow aws setup) or fix the name, region and credentials",
                    stream.as_str(),
                    crate::sinks::delivery::error_text(&e)
                ),
            });
        }
    }
    let options = FirehoseOptions {
        delivery_stream: cfg.delivery_stream.clone(),
        pack: cfg.pack_records,
        buffer_interval: Duration::from_secs_f64(cfg.buffer_secs),
        max_in_flight_bytes: (cfg.max_in_flight_mib * 1024.0 * 1024.0) as usize,
        retry: RetryPolicy::with_budget(cfg.retry_secs),
    };
    Ok(PreparedFirehose { client, options, dead_letter: cfg.dead_letter_dir.clone() })
}

impl PreparedFirehose {
    /// Worker `tag`'s instance of sink `name`.
    pub fn instance(&self, name: &str, tag: &str, counters: Arc<SinkCounters>) -> FirehoseSink {
        let dead_letter = Arc::new(DeadLetter::new(&self.dead_letter, name, tag.to_string()));
        FirehoseSink::new(self.client.clone(), &self.options, dead_letter, counters)
    }
}
