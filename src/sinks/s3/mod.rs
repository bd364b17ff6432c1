//! The S3 sink: each output stream as sealed objects in a bucket, one per stream, event hour and
//! completion hour, laid out as the sealed folder sink lays out its files
//! (`<prefix><stream>/YYYY/MM/DD/HH/<stream>-<completion hour>.<ext>` or the Hive layout), in any
//! of its formats (JSON lines, gzip or zstd; Parquet). An object is uploaded once its hour is
//! complete, whole (see [`objects`]): no partial object is ever visible. In a job that checkpoints
//! the records wait in a local staging folder until a checkpoint covers them, as the sealed
//! folder's do ([`crate::sinks::folder::staged`]): the exactly-once path to S3.

pub mod build;
mod config;
pub mod objects;

pub use config::S3Config;
