//! `[replay]`: the days a replay recomputes and the `raw` archive it reads.

use serde::{Deserialize, Serialize};

use crate::time_arg::ConfigTime;

/// `[replay]`: recompute the outputs of past days from the `raw` archive (`source.kind =
/// "archive"`) or from Kafka, writing only those days' outputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// First day (`YYYY-MM-DD`, UTC) or time (RFC 3339) replayed; empty: no replay range.
    pub from: ConfigTime,
    /// Last day replayed, included (`YYYY-MM-DD`), or the time it ends before (RFC 3339).
    pub to: ConfigTime,
    /// The archive of the `raw` stream: a folder or `s3://bucket/prefix`, holding `raw/YYYY/MM/DD/HH/`.
    pub archive: String,
    /// How long after its event hour a reading may be filed in the archive, s: 0 for archives
    /// filed by event time (the folder sink); Firehose files by arrival, so use its buffer
    /// interval plus the allowed lateness (and more if the live job ran behind).
    pub slack_secs: u64,
    /// Region of an S3 archive (default: the standard chain, `AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint of an S3 archive instead of AWS's (an emulator).
    pub endpoint_url: Option<String>,
}
