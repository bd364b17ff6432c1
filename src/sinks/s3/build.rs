//! Building S3 sinks: once per process the client and the check that the bucket is there; then
//! one sink per worker, staged when the job checkpoints.

use std::path::PathBuf;
use std::sync::Arc;

use super::objects::S3Objects;
use super::S3Config;
use crate::aws::AwsError;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::retry::RetryPolicy;
use crate::sinks::folder::sealed::SealedFolderSink;
use crate::sinks::folder::staged::StagedSealedSink;
use crate::sinks::Sink;

/// An S3 sink connected and checked, ready for each worker.
pub struct PreparedS3 {
    client: aws_sdk_s3::Client,
    config: S3Config,
}

/// Connects sink `name` and, if `used`, checks that its bucket exists and can be reached.
pub fn prepare(name: &str, cfg: &S3Config, used: bool) -> Result<PreparedS3, AwsError> {
    let settings = cfg.aws_settings();
    let sdk = crate::aws::load(&settings, &format!("sinks.{name}"))?;
    let s3 = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(settings.endpoint_url.is_some()).build();
    let client = aws_sdk_s3::Client::from_conf(s3);
    if used {
        let found = crate::aws::runtime().block_on(client.head_bucket().bucket(&cfg.bucket).send());
        if let Err(e) = found {
            return Err(AwsError::Resource {
                field: format!("sinks.{name}.bucket"),
                message: format!(
                    "bucket {:?} is not usable: {}; create it (fleetflow aws setup --config F) or fix the name, region and credentials",
                    cfg.bucket,
                    crate::sinks::delivery::error_text(&e)
                ),
            });
        }
    }
    Ok(PreparedS3 { client, config: cfg.clone() })
}

impl PreparedS3 {
    /// Worker `worker` (of `peers`)'s instance of sink `name`, whose run tag is `tag`; staged
    /// when the job `checkpoints`.
    pub fn instance(&self, name: &str, tag: &str, worker: (usize, usize), checkpoints: bool, counters: Arc<SinkCounters>) -> Box<dyn Sink> {
        let cfg = &self.config;
        let objects = S3Objects {
            client: self.client.clone(),
            bucket: cfg.bucket.clone(),
            prefix: cfg.key_prefix(),
            part_bytes: (cfg.part_mib * 1024.0 * 1024.0) as usize,
            retry: RetryPolicy::with_budget(cfg.retry_secs),
            dead_letter: Arc::new(DeadLetter::new(&cfg.dead_letter_dir, name, tag.to_string())),
            counters,
        };
        let root = PathBuf::from(format!("s3://{}/{}", cfg.bucket, cfg.key_prefix()));
        let sealed = SealedFolderSink::new(&root).with_files(cfg.files()).with_store(root, Box::new(objects));
        if checkpoints {
            Box::new(StagedSealedSink::staging_in(sealed, &cfg.staging_dir.join(name), tag, worker))
        } else {
            Box::new(sealed)
        }
    }
}
