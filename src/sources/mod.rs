//! Sources: partitions of input that the driver reads, parses and stamps with event time.

use fleetflow_dataflows::Reading;

pub mod driver;
pub mod file;
pub mod generator;
pub mod kafka;

pub use driver::SourceDriver;

/// One record read from a partition.
pub enum Record<'a> {
    /// A line of text (without `\n`), to be parsed.
    Line(&'a [u8]),
    /// A reading produced already parsed (the generator).
    Reading(Reading),
    /// A message to be parsed, with its key, which when present must be the reading's vin.
    Message {
        /// The value: one reading, text or JSON (a trailing newline is allowed).
        payload: &'a [u8],
        /// The key.
        key: Option<&'a [u8]>,
    },
}

/// What a partition has to say after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// More records may be read right away.
    Ready,
    /// Nothing available now; poll again later.
    Pending,
    /// The partition is exhausted.
    Finished,
}

/// Errors reading a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An I/O error on a named input; not retryable by the job.
    #[error("reading {name}: {source}")]
    Io {
        /// The input.
        name: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Kafka refused or failed an operation; `what` says which, the error says why.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The source's settings do not fit what the broker has (a missing topic, for example).
    #[error("kafka: {0}")]
    Setup(String),
}

/// A partition of a source: read in order by exactly one worker, with a watermark of its own.
pub trait Partition {
    /// The partition's name, used in source positions (`name:offset`).
    fn name(&self) -> &str;
    /// Reads up to `max` records, handing each with its offset (line number or record index) to `emit`.
    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError>;
    /// Where a record is, for `late` and `errors`: `name:offset` unless the source says otherwise.
    fn position(&self, offset: u64) -> String {
        format!("{}:{offset}", self.name())
    }
    /// Whether the partition may fall silent for a while (a Kafka partition): after the driver's
    /// idle timeout without data it stops holding the watermark back, until data returns.
    fn may_idle(&self) -> bool {
        false
    }
}
