//! Opening a worker's share of the configured source: which partitions of the files, the Kafka
//! topic, the generated fleet or the archive this worker reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, ConfigError, SourceKind};
use crate::operations::metrics::Metrics;
use crate::sources::archive::{ArchiveListing, ArchivePartition};
use crate::sources::files::split::SplitInput;
use crate::sources::files::FilePartition;
use crate::sources::generator::{FleetConfig, FleetPartition};
use crate::sources::{Partition, SavedPosition, SourceError};

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

/// What the process opened for its workers to read from.
pub struct Opened<'a> {
    /// The listing a replay reads.
    pub archive: Option<&'a Arc<ArchiveListing>>,
    /// A checkpoint's positions, by partition name.
    pub restored: &'a BTreeMap<String, SavedPosition>,
    /// The files split among the process's workers (empty: each file is one worker's).
    pub splits: &'a [Arc<SplitInput>],
}

/// The partitions worker `index` of `peers` reads.
pub fn partitions_for(
    config: &Config,
    Opened { archive, restored, splits }: Opened<'_>,
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
        SourceKind::Files if !splits.is_empty() => {
            let local = index - config.cluster.process * config.workers;
            out.extend(splits.iter().filter_map(|s| s.partition(local)).map(|p| Box::new(p) as Box<dyn Partition>));
        }
        SourceKind::Files => {
            for (i, path) in config.source.files.iter().enumerate() {
                if i % peers == index {
                    out.push(Box::new(FilePartition::open(path)?));
                }
            }
        }
        SourceKind::Kafka => out = crate::sources::kafka::partitions_for(&config.kafka, (index, peers), restored)?,
        SourceKind::Generator => out = generator_partitions(config, restored, index, peers)?,
    }
    Ok(out)
}

/// The fleet's partitions worker `index` of `peers` generates: afresh, or (`restored` holds a
/// checkpoint's positions) as many as the checkpoint's fleet had, each from its position.
fn generator_partitions(
    config: &Config,
    restored: &BTreeMap<String, SavedPosition>,
    index: usize,
    peers: usize,
) -> Result<Vec<Box<dyn Partition>>, OpenError> {
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
    let saved = |p: u64| restored.get(&format!("generator/{p}"));
    let restoring = restored.keys().filter(|k| k.starts_with("generator/")).count() as u64;
    let partitions = match (restoring, g.partitions) {
        (0, 0) => peers as u64,
        (0, n) => n,
        (r, n) if n == 0 || n == r => r,
        (r, n) => {
            return Err(ConfigError::Invalid(format!(
                "generator.partitions: {n}, but the checkpoint restored holds a fleet of {r} partitions; set {r} (or 0), or start the fleet afresh without --resume"
            ))
            .into())
        }
    };
    let every = config.checkpoints.interval_secs.saturating_mul(1000);
    let mut out: Vec<Box<dyn Partition>> = Vec::new();
    for p in (0..partitions).filter(|p| *p as usize % peers == index) {
        let partition = match saved(p) {
            Some(position) => FleetPartition::restore(fleet.clone(), (p, partitions), position, every)?,
            None if restoring > 0 => {
                return Err(SourceError::Setup(format!(
                    "generator/{p}: the checkpoint restored has no position for it; remove the checkpoint to start afresh"
                ))
                .into())
            }
            None if config.checkpointing() => FleetPartition::new(fleet.clone(), p, partitions).checkpointed(every),
            None => FleetPartition::new(fleet.clone(), p, partitions),
        };
        out.push(Box::new(partition));
    }
    Ok(out)
}
