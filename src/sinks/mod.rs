//! Sinks: where encoded output records go. Each worker owns its sink instances.

use fleetflow_dataflows::Time;

use crate::encode::Encoded;
use crate::stream::StreamName;
pub use config::SinkConfig;

pub mod config;
pub mod delivery;
pub mod firehose;
pub mod folder;
pub mod kafka;
pub mod opensearch;
pub mod plan;
pub mod s3;
pub mod sns;

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

/// A checkpoint about to be marked complete (see [`Sink::commit_checkpoint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointCommit {
    /// Its name in the state store.
    pub name: Time,
    /// Its boundary.
    pub at: Time,
    /// Every output before this is delivered.
    pub durable: Time,
    /// An exact stop's: every record read counts as read, every output written is final.
    pub stop: bool,
}

/// A sink instance with the name the configuration gives it.
pub type NamedSink = (String, Box<dyn Sink>);

/// A destination for output records.
pub trait Sink {
    /// Buffers one record of `stream`, produced at dataflow time `stamp`.
    fn write(&mut self, stream: StreamName, stamp: Time, record: &Encoded) -> Result<(), SinkError>;
    /// No record of `stream` below dataflow time `frontier` will be written any more.
    fn seal(&mut self, _stream: StreamName, _frontier: Time) -> Result<(), SinkError> {
        Ok(())
    }
    /// Whether the sink needs all records of one event hour on one worker (its files are complete
    /// and independent of the worker count).
    fn sealed(&self) -> bool {
        false
    }
    /// Whether every record of the sink must reach one writer, the job's first worker (a sink
    /// whose writes commit in one transaction). Every worker's instance answers alike.
    fn single_writer(&self) -> bool {
        false
    }
    /// Checkpoint `c` is about to be marked complete: a sink that commits with checkpoints
    /// commits exactly the records before its durable frontier, or, for an exact stop's
    /// checkpoint, every record it was given. `false`: not possible at this checkpoint (try the
    /// next one).
    fn commit_checkpoint(&mut self, _c: &CheckpointCommit) -> Result<bool, SinkError> {
        Ok(true)
    }
    /// The job failed or stopped: nothing more is written, and nothing not committed yet may
    /// become visible (a transaction is aborted, not committed by a later flush).
    fn abandon(&mut self) {}
    /// Outputs below dataflow time `time` were delivered by an earlier run that this one resumes.
    fn resumed_below(&mut self, _time: Time) {}
    /// This worker is about to write its part of checkpoint `c` (and take the positions for
    /// it): what the sink counts as delivered below `c.durable` (or, for an exact stop's, all it
    /// was given) must be durable now.
    fn prepare_checkpoint(&mut self, _c: &CheckpointCommit) -> Result<(), SinkError> {
        Ok(())
    }
    /// This worker learned that checkpoint `name` is complete (`Time::MAX`: the run ended with
    /// everything delivered): a sink that holds outputs back until then makes them visible.
    fn checkpoint_complete(&mut self, _name: Time) -> Result<(), SinkError> {
        Ok(())
    }
    /// The job starts from checkpoint `name` (0: from none), before its dataflow exists: what an
    /// earlier run held back is kept if that checkpoint covers it, and dropped if not (the job
    /// writes it again). `first`: this is the instance of the job's first worker.
    fn restore_checkpoint(&mut self, _name: Time, _first: bool) -> Result<(), SinkError> {
        Ok(())
    }
    /// Flushes what the buffering hints say is due (called often).
    fn poll(&mut self) -> Result<(), SinkError>;
    /// Flushes everything buffered.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// An exact stop: delivers everything written so far, even what waits for more records to be
    /// complete (a sealed file: the restart merges the rest into it).
    fn flush_for_stop(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
    /// Records of `stream` accepted by [`Sink::write`] so far.
    fn written(&self, stream: StreamName) -> u64;
    /// Records of `stream` durable so far (delivered, on disk, or dead-lettered): the first
    /// `delivered` records written are all durable. Never above [`Sink::written`].
    fn delivered(&self, stream: StreamName) -> u64;
}
