//! `[sinks.NAME] kind = "s3"`: sealed objects in an S3 bucket, one per stream and hour.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sinks::config::{check_retries, default_dead_letter, default_request_timeout_secs, default_retry_secs, in_range, secs};
use crate::stored_files::format::{Compression, FileFormat, FileSpec, Format};
use crate::stored_files::layout::Layout;

/// An S3 sink's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The key prefix the streams' folders go under (`fleetflow/` gives `fleetflow/alerts/...`).
    #[serde(default)]
    pub prefix: String,
    /// AWS region (default: the standard chain, e.g. `AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint instead of AWS's (an emulator, a VPC endpoint, an S3-compatible store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// The objects' format: `jsonl` (the default) or `parquet`.
    #[serde(default)]
    pub format: Format,
    /// `none` (the default), `gzip` or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// The hour folders: `hourly` (`YYYY/MM/DD/HH`, the default) or `hive` (`dt=YYYY-MM-DD/hr=HH`).
    #[serde(default)]
    pub layout: Layout,
    /// MiB per part of a multipart upload (objects up to this size go in one request).
    #[serde(default = "default_part_mib")]
    pub part_mib: f64,
    /// Seconds an object that fails to upload is retried before it goes to the dead-letter folder.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: f64,
    /// Seconds one request may take.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: f64,
    /// Where objects that could not be uploaded go (a folder per sink under it).
    #[serde(default = "default_dead_letter")]
    pub dead_letter_dir: PathBuf,
    /// A job that checkpoints: the local folder where records wait for their checkpoint (a
    /// folder per sink under it; shared by the processes of a cluster).
    #[serde(default = "default_staging")]
    pub staging_dir: PathBuf,
}

fn default_part_mib() -> f64 {
    16.0
}
fn default_staging() -> PathBuf {
    PathBuf::from("./fleetflow-state/s3-staging")
}

impl S3Config {
    /// Where it connects.
    pub fn aws_settings(&self) -> crate::aws::AwsSettings {
        crate::aws::AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            request_timeout: secs(self.request_timeout_secs),
        }
    }

    /// How its objects are written.
    pub fn files(&self) -> FileSpec {
        FileSpec { format: FileFormat { format: self.format, compression: self.compression }, layout: self.layout }
    }

    /// The prefix as keys use it: empty or ending in `/`.
    pub fn key_prefix(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }

    /// Checks the bucket's name and the sink's limits.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let b = &self.bucket;
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
        let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !(3..=63).contains(&b.len()) || !b.chars().all(valid) || !ends(b.chars().next()) || !ends(b.chars().last()) {
            return Err(format!(
                "sinks.{name}.bucket: {b:?} is not a bucket name; use 3 to 63 of a-z 0-9 . - starting and ending with a letter or digit"
            ));
        }
        // S3's parts are 5 MiB at least (but the last) and 10,000 at most.
        in_range(name, "part_mib", self.part_mib, (5.0, 5120.0), "MiB (S3 takes parts of 5 MiB to 5 GiB)")?;
        check_retries(name, self.retry_secs, self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::first_error as error;

    #[test]
    fn settings_are_checked_by_name() {
        let base = "[sinks.s]\nkind = \"s3\"\n";
        assert_eq!(error(&format!("{base}bucket = \"my-bucket\"\nformat = \"parquet\"\nlayout = \"hive\"\n")), "");
        assert!(error(&format!("{base}bucket = \"My_Bucket\"\n")).starts_with("sinks.s.bucket: \"My_Bucket\" is not a bucket name"));
        assert!(error(&format!("{base}bucket = \"b-1\"\npart_mib = 1\n")).starts_with("sinks.s.part_mib: 1"));
        assert!(error(&format!("{base}bucket = \"b-1\"\nformat = \"orc\"\n")).contains("orc"), "an unknown format is named");
        assert!(error(&format!("{base}bucket = \"b-1\"\nlayout = \"daily\"\n")).contains("daily"));
    }
}
