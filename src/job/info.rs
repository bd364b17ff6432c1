//! What the job is, for the status page and `/api/status`: its source in words, its size, its
//! configuration's digest.

use crate::clock::now_ms;
use crate::config::{Config, SourceKind};
use crate::operations::status::JobInfo;

/// The job of `config`, starting now, as the status page and `/api/status` describe it.
pub fn job_info(config: &Config) -> JobInfo {
    let source = match config.source.kind {
        SourceKind::Generator => format!("generator: {} vehicles every {} ms", config.generator.vehicles, config.generator.interval_ms),
        SourceKind::Files => format!("files: {}", config.source.files.join(" ")),
        SourceKind::Kafka => format!("kafka {}: topic {} (group {})", config.kafka.brokers, config.kafka.topic, config.kafka.group),
        SourceKind::Archive => format!("replay of {}", config.replay.archive),
    };
    let text = toml::to_string(config).unwrap_or_default();
    let digest = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    JobInfo {
        source,
        workers: config.workers,
        processes: config.cluster.processes,
        process: config.cluster.process,
        started_ms: now_ms(),
        config_digest: format!("{digest:016x}"),
        window_secs: config.windows.tumbling_secs,
        lateness_secs: config.windows.allowed_lateness_ms as f64 / 1000.0,
    }
}
