//! Kafka administration the job needs: checking that a broker answers before anything waits on
//! one, and creating the readings topic when a producer asks for it.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Mutex;

/// Why a Kafka administration step failed; one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum KafkaAdminError {
    /// The client refused or failed an operation; `what` says which, the error says why.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// No broker answered, or the broker refused a step; the message names the setting and the fix.
    #[error("{0}")]
    Refused(String),
}

/// How long the brokers have to answer before they are called unreachable.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(8);

/// Keeps the client's latest error (a refused connection, a name that does not resolve) to say
/// why no broker answered, instead of logging it.
#[derive(Default)]
struct LastError(Mutex<Option<String>>);

impl ClientContext for LastError {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: KafkaError, reason: &str) {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // "1/1 brokers are down" follows the reason a broker is down: keep the reason.
        if last.is_none() || !reason.contains("brokers are down") {
            *last = Some(reason.to_string());
        }
    }
}

impl ConsumerContext for LastError {}

/// Checks within [`REACH_TIMEOUT`] that a broker of `brokers` answers; the error names the
/// brokers, why they did not answer, and `field`, the setting that gave them.
pub fn check_reachable(brokers: &str, field: &str) -> Result<(), KafkaAdminError> {
    let consumer: BaseConsumer<LastError> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("socket.connection.setup.timeout.ms", "5000")
        .create_with_context(LastError::default())
        .map_err(|source| KafkaAdminError::Kafka { what: format!("{field}: {brokers:?}"), source })?;
    let started = std::time::Instant::now();
    let mut last = None;
    while started.elapsed() < REACH_TIMEOUT {
        match consumer.fetch_metadata(None, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        // Delivers the client's error events (why it could not connect) to the context.
        let _ = consumer.poll(Duration::ZERO);
    }
    let noted = consumer.context().0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let why = noted.or_else(|| last.map(|e| e.to_string())).unwrap_or_default();
    Err(KafkaAdminError::Refused(format!(
        "{field}: no broker of {brokers} answered within {} s ({why}); check the address and that the broker is up",
        REACH_TIMEOUT.as_secs()
    )))
}

/// Creates `topic` with `partitions` partitions (replication factor 1) unless it exists.
/// Returns whether it was created.
pub fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<bool, KafkaAdminError> {
    ensure_topic_replicated(brokers, topic, partitions, 1)
}

/// [`ensure_topic`] with `replication` copies of each partition (-1: the broker's default).
pub fn ensure_topic_replicated(brokers: &str, topic: &str, partitions: i32, replication: i32) -> Result<bool, KafkaAdminError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|source| KafkaAdminError::Kafka { what: "creating an admin client".into(), source })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| KafkaAdminError::Refused(format!("kafka: starting an async runtime: {e}")))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .map_err(|source| KafkaAdminError::Kafka { what: format!("creating topic {topic}"), source })?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(KafkaAdminError::Refused(format!("kafka: creating topic {topic}: {code}"))),
        None => Err(KafkaAdminError::Refused(format!("kafka: creating topic {topic}: the broker gave no answer"))),
    }
}
