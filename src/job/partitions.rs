//! Opening a worker's share of the configured source: which partitions of the files, the Kafka
//! topic, the generated fleet or the archive this worker reads.

use std::sync::Arc;

use crate::config::{Config, ConfigError, SourceKind};
use crate::operations::metrics::Metrics;
use crate::sources::archive::{ArchiveListing, ArchivePartition};
use crate::sources::files::FilePartition;
use crate::sources::generator::{FleetConfig, FleetPartition};
use crate::sources::{Partition, SourceError};

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The source's settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The source could not be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// The partitions worker `index` of `peers` reads (`archive`: the listing a replay reads;
/// `restored`: a checkpoint's positions, by partition name).
pub fn partitions_for(
    config: &Config,
    (archive, restored): (Option<&Arc<ArchiveListing>>, &std::collections::BTreeMap<String, crate::sources::SavedPosition>),
    metrics: &Arc<Metrics>,
    index: usize,
    peers: usize,
) -> Result<Vec<Box<dyn Partition>>, OpenError> {
    let mut out: Vec<Box<dyn Partition>> = Vec::new();
    match config.source.kind {
        SourceKind::Archive => {
            if let Some(listing) = archive {
                out.push(Box::new(ArchivePartition::new(listing.clone(), index, peers, metrics.clone())));
            }
        }
        SourceKind::Files => {
            for (i, path) in config.source.files.iter().enumerate() {
                if i % peers == index {
                    out.push(Box::new(FilePartition::open(path)?));
                }
            }
        }
        SourceKind::Kafka => out = crate::sources::kafka::partitions_for(&config.kafka, (index, peers), restored)?,
        SourceKind::Generator => {
            let g = &config.generator;
            let start_ms = if g.realtime { crate::clock::now_ms() } else { config.generator_start() };
            let fleet = FleetConfig {
                vehicles: g.vehicles,
                interval_ms: g.interval_ms,
                speeder_fraction: g.speeder_fraction,
                seed: g.seed,
                start_ms,
                duration_ms: (g.duration_secs > 0).then(|| g.duration_secs * 1000),
                max_delay_ms: g.max_delay_ms,
                late_fraction: g.late_fraction,
                late_delay_ms: config.windows.allowed_lateness_ms + 30_000,
                realtime: g.realtime,
            };
            let partitions = if g.partitions == 0 { peers as u64 } else { g.partitions };
            for p in 0..partitions {
                if p as usize % peers == index {
                    out.push(Box::new(FleetPartition::new(fleet.clone(), p, partitions)));
                }
            }
        }
    }
    Ok(out)
}
