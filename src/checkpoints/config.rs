//! `[checkpoints]`: whether a Kafka job checkpoints its operator state, how often, and where.

use serde::{Deserialize, Serialize};

/// The state store and the checkpoint interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Checkpoint a Kafka job's operator state (`--no-checkpoints` turns it off).
    pub enabled: bool,
    /// Event time between checkpoints, seconds: a multiple of `windows.tumbling_secs`. A crash
    /// re-reads about this much plus the allowed lateness.
    pub interval_secs: u64,
    /// The state store, one subfolder per Kafka group (`--state-dir`): a local folder (shared by
    /// the processes of a cluster on one machine), or `s3://bucket/prefix` (a cluster's machines).
    pub dir: String,
    /// Region of an S3 store (default: the standard chain, `AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint of an S3 store instead of AWS's (an emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Complete checkpoints kept (older ones are removed).
    pub keep: usize,
    /// Memory the states saved at boundaries may take while they wait for the sinks to deliver
    /// their outputs, MiB a process (shared by its workers). Beyond it the oldest waiting
    /// boundary is dropped (its checkpoint skipped; the newest is always kept).
    pub pending_mib: u64,
    /// Take checkpoints whatever the source, restoring none (`fleetflow bench --checkpoints`
    /// measures their cost on the generator); not a configuration field.
    #[serde(skip)]
    pub measure_only: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            enabled: true,
            interval_secs: 60,
            dir: "fleetflow-state".into(),
            region: None,
            endpoint_url: None,
            keep: 3,
            pending_mib: 1024,
            measure_only: false,
        }
    }
}

impl CheckpointConfig {
    /// How the job reaches an S3 store.
    pub fn aws_settings(&self) -> crate::aws::AwsSettings {
        crate::aws::AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            request_timeout: std::time::Duration::from_secs(10),
        }
    }

    /// Checks the interval against the tumbling window and the number kept.
    pub fn validate(&self, tumbling_secs: u64) -> Result<(), String> {
        if self.interval_secs == 0 || tumbling_secs == 0 || !self.interval_secs.is_multiple_of(tumbling_secs) {
            return Err(format!(
                "checkpoints.interval_secs: {} is not a multiple of windows.tumbling_secs ({tumbling_secs}); use {tumbling_secs} or a multiple of it",
                self.interval_secs
            ));
        }
        if self.pending_mib == 0 {
            return Err("checkpoints.pending_mib: 0 leaves no room for a saved state; use at least 1 (1024 by default)".into());
        }
        if self.keep < 2 {
            return Err(format!(
                "checkpoints.keep: {} keeps too few; keep at least 2 (the latest may be half written when a job dies)",
                self.keep
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_named_with_its_fix() {
        assert_eq!(CheckpointConfig::default().validate(60), Ok(()));
        let e = CheckpointConfig { interval_secs: 90, ..Default::default() }.validate(60).unwrap_err();
        assert!(e.starts_with("checkpoints.interval_secs: 90") && e.contains("use 60"), "{e}");
        let e = CheckpointConfig { keep: 1, ..Default::default() }.validate(60).unwrap_err();
        assert!(e.starts_with("checkpoints.keep: 1") && e.contains("at least 2"), "{e}");
        let e = CheckpointConfig { pending_mib: 0, ..Default::default() }.validate(60).unwrap_err();
        assert!(e.starts_with("checkpoints.pending_mib: 0") && e.contains("at least 1"), "{e}");
    }
}
