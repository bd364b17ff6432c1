//! Building SNS sinks: once per process the client, the rate limiter and the check that the
//! topic exists; then one sink per worker.

use std::path::PathBuf;
use std::sync::Arc;

use governor::DefaultDirectRateLimiter;

use super::{SnsApi, SnsConfig, SnsSink};
use crate::aws::AwsError;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::retry::RetryPolicy;

/// Bytes in flight at most per worker.
const MAX_IN_FLIGHT_BYTES: usize = 8 * 1024 * 1024;

/// An SNS sink connected and checked, ready for each worker.
pub struct PreparedSns {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    limiter: Arc<DefaultDirectRateLimiter>,
    retry: RetryPolicy,
    dead_letter: PathBuf,
}

/// Connects sink `name` and, when a stream is routed to it (`used`), checks its topic.
pub fn prepare(name: &str, cfg: &SnsConfig, used: bool) -> Result<PreparedSns, AwsError> {
    let client = aws_sdk_sns::Client::new(&crate::aws::load(&cfg.aws_settings(), &format!("sinks.{name}"))?);
    let topic_arn = &cfg.topic_arn;
    if used {
        let found = crate::aws::runtime().block_on(client.get_topic_attributes().topic_arn(topic_arn).send());
        if let Err(e) = found {
            return Err(AwsError::Resource {
                field: format!("sinks.{name}.topic_arn"),
                message: format!(
                    "topic {topic_arn:?} is not usable: {}; create it (fleetflow aws setup) or fix the ARN and credentials",
                    crate::sinks::delivery::error_text(&e)
                ),
            });
        }
    }
    Ok(PreparedSns {
        client,
        topic_arn: topic_arn.clone(),
        limiter: super::limiter(cfg.max_per_sec),
        retry: RetryPolicy::with_budget(cfg.retry_secs),
        dead_letter: cfg.dead_letter_dir.clone(),
    })
}

impl PreparedSns {
    /// Worker `tag`'s instance of sink `name`.
    pub fn instance(&self, name: &str, tag: &str, counters: Arc<SinkCounters>) -> SnsSink {
        let dead_letter = Arc::new(DeadLetter::new(&self.dead_letter, name, tag.to_string()));
        let api = SnsApi::new(self.client.clone(), self.limiter.clone());
        SnsSink::new(api, self.topic_arn.clone(), self.retry.clone(), dead_letter, counters, MAX_IN_FLIGHT_BYTES)
    }
}
