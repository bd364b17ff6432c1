//! Sources: partitions of input that the driver reads, parses and stamps with event time.

use fleetflow_dataflows::Reading;

pub mod driver;
pub mod file;
pub mod generator;

pub use driver::SourceDriver;

/// One record read from a partition.
pub enum Record<'a> {
    /// A line of text (without `\n`), to be parsed.
    Line(&'a [u8]),
    /// A reading produced already parsed (the generator).
    Reading(Reading),
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
}

/// A partition of a source: read in order by exactly one worker, with a watermark of its own.
pub trait Partition {
    /// The partition's name, used in source positions (`name:offset`).
    fn name(&self) -> &str;
    /// Reads up to `max` records, handing each with its offset (line number or record index) to `emit`.
    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError>;
}
