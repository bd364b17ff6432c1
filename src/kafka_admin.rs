//! Kafka administration the job needs: creating the readings topic when a producer asks for it.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::sources::SourceError;

/// Creates `topic` with `partitions` partitions (replication factor 1) unless it exists.
/// Returns whether it was created.
pub fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<bool, SourceError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|source| SourceError::Kafka { what: "creating an admin client".into(), source })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| SourceError::Setup(format!("kafka: starting an async runtime: {e}")))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .map_err(|source| SourceError::Kafka { what: format!("creating topic {topic}"), source })?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(SourceError::Setup(format!("kafka: creating topic {topic}: {code}"))),
        None => Err(SourceError::Setup(format!("kafka: creating topic {topic}: the broker gave no answer"))),
    }
}
