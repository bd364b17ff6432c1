//! Sinks: where encoded output records go. Each worker owns its sink instances.

use crate::encode::Encoded;
use crate::route::StreamName;

pub mod folder;
pub mod kafka;

/// Errors delivering output.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing a file failed (disk full, permissions): not retried, the job stops with this error.
    #[error("writing {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The Kafka client refused an operation.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A record could not be delivered within the client's retries.
    #[error("{0}")]
    Delivery(String),
}

/// A destination for output records.
pub trait Sink {
    /// Buffers one record of `stream`.
    fn write(&mut self, stream: StreamName, record: &Encoded) -> Result<(), SinkError>;
    /// Flushes what the buffering hints say is due (called often).
    fn poll(&mut self) -> Result<(), SinkError>;
    /// Flushes everything buffered.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// How many times `stream` has been flushed: a record written while this was `n` is durable
    /// (delivered, or on disk) once it is above `n`.
    fn flushes(&self, stream: StreamName) -> u64;
}
