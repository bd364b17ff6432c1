//! `[sinks.NAME] kind = "folder"`: a local folder laid out as Firehose lays out S3.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::stored_files::format::{Compression, FileFormat, FileSpec, Format};
use crate::stored_files::layout::Layout;

/// A folder sink's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The folder.
    #[serde(default = "default_output")]
    pub path: PathBuf,
    /// Flush a stream once this many MiB are buffered.
    #[serde(default = "default_buffer_mib")]
    pub buffer_mib: f64,
    /// Flush a stream this many seconds after its first buffered record.
    #[serde(default = "default_buffer_secs")]
    pub buffer_secs: f64,
    /// Write each file once, complete and sorted, named by stream and hour rather than by
    /// writer (`<stream>-<YYYYMMDDTHH>.jsonl`, the hour its windows closed), when the dataflow
    /// has passed that hour: reruns and replays write the same bytes and overwrite. The
    /// buffering hints do not apply; files appear an hour (plus the lateness) after the fact.
    #[serde(default)]
    pub sealed: bool,
    /// The files' format: `jsonl` (the default) or `parquet`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub format: Format,
    /// `none` (the default), `gzip` or `zstd`: of the whole file for JSON lines, of the pages
    /// for Parquet.
    #[serde(default, skip_serializing_if = "is_default")]
    pub compression: Compression,
    /// The hour folders: `hourly` (`YYYY/MM/DD/HH`, the default) or `hive` (`dt=YYYY-MM-DD/hr=HH`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub layout: Layout,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_output() -> PathBuf {
    PathBuf::from("./fleetflow-out")
}
fn default_buffer_mib() -> f64 {
    5.0
}
fn default_buffer_secs() -> f64 {
    60.0
}

impl Default for FolderConfig {
    fn default() -> Self {
        FolderConfig {
            path: default_output(),
            buffer_mib: default_buffer_mib(),
            buffer_secs: default_buffer_secs(),
            sealed: false,
            format: Format::default(),
            compression: Compression::default(),
            layout: Layout::default(),
        }
    }
}

impl FolderConfig {
    /// Checks the buffering hints of sink `name`.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let mib = self.buffer_mib;
        if !(mib.is_finite() && mib > 0.0 && mib <= 128.0) {
            return Err(format!("sinks.{name}.buffer_mib: {mib} is out of range; use (0, 128] MiB like Firehose"));
        }
        crate::sinks::config::in_range(name, "buffer_secs", self.buffer_secs, (0.0, 900.0), "seconds")
    }
}

impl FolderConfig {
    /// How its files are written.
    pub fn files(&self) -> FileSpec {
        FileSpec { format: FileFormat { format: self.format, compression: self.compression }, layout: self.layout }
    }

    /// The instance of worker `worker` (of `peers`) whose run tag is `tag`: a sealed folder sink
    /// (committing with the checkpoints in a job that `checkpoints`), or one writing buffered
    /// files named by `tag`.
    pub fn instance(&self, tag: &str, (worker, peers): (usize, usize), checkpoints: bool) -> Box<dyn crate::sinks::Sink> {
        if self.sealed && checkpoints {
            return Box::new(super::staged::StagedSealedSink::new(&self.path, tag, (worker, peers)).with_files(self.files()));
        }
        if self.sealed {
            return Box::new(super::sealed::SealedFolderSink::new(&self.path).with_files(self.files()));
        }
        let hints = super::BufferHints {
            size_bytes: (self.buffer_mib * 1024.0 * 1024.0) as usize,
            interval: std::time::Duration::from_secs_f64(self.buffer_secs),
        };
        Box::new(super::FolderSink::new(&self.path, tag.to_string(), hints).with_files(self.files()))
    }
}
