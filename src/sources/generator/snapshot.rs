//! The generated fleet as of the start of a reporting round: what a checkpoint keeps of a
//! generator partition so that a restart generates again, reading for reading, what the stopped
//! run would have generated from there.

use fleetflow_dataflows::Time;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::{FleetConfig, Vehicle};
use crate::sources::SourceError;

/// What makes two generated fleets the same fleet (the start and the clock aside: a resumed
/// real-time fleet goes on from its checkpoint's round).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetIdentity {
    vehicles: u64,
    interval_ms: Time,
    speeder_fraction: f64,
    seed: u64,
    max_delay_ms: Time,
    late_fraction: f64,
    late_delay_ms: Time,
    partitions: u64,
}

impl FleetIdentity {
    /// The identity of partition-count `partitions` of the fleet `cfg`.
    pub fn of(cfg: &FleetConfig, partitions: u64) -> Self {
        FleetIdentity {
            vehicles: cfg.vehicles,
            interval_ms: cfg.interval_ms,
            speeder_fraction: cfg.speeder_fraction,
            seed: cfg.seed,
            max_delay_ms: cfg.max_delay_ms,
            late_fraction: cfg.late_fraction,
            late_delay_ms: cfg.late_delay_ms,
            partitions,
        }
    }
}

impl std::fmt::Display for FleetIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vehicles in {} partitions, seed {}, every {} ms, speeders {}, delay up to {} ms, late {} (+{} ms)",
            self.vehicles,
            self.partitions,
            self.seed,
            self.interval_ms,
            self.speeder_fraction,
            self.max_delay_ms,
            self.late_fraction,
            self.late_delay_ms
        )
    }
}

/// A generator partition at the start of a round, before its first report.
#[derive(Clone, Serialize, Deserialize)]
pub struct FleetSnapshot {
    /// The fleet.
    pub identity: FleetIdentity,
    /// The event time the fleet started at (its end is counted from it).
    pub start_ms: Time,
    /// The round's start.
    pub round: Time,
    /// The index of the round's first report in the partition.
    pub record_id: u64,
    /// The partition's delivery delays.
    pub rng: Xoshiro256PlusPlus,
    /// The vehicles, in report order.
    pub vehicles: Vec<Vehicle>,
}

impl FleetSnapshot {
    /// The snapshot as a checkpoint stores it.
    pub fn encode(&self) -> Vec<u8> {
        // (Serializing plain numbers and vectors into memory cannot fail.)
        bincode::serialize(self).unwrap_or_default()
    }

    /// A stored snapshot of partition `name`, refused unless it is of the fleet `expected`.
    pub fn decode(name: &str, bytes: &[u8], expected: &FleetIdentity) -> Result<Self, SourceError> {
        let snapshot: FleetSnapshot = bincode::deserialize(bytes).map_err(|e| {
            SourceError::Setup(format!("{name}: the checkpoint's fleet cannot be read ({e}); remove the checkpoint to start afresh"))
        })?;
        if &snapshot.identity != expected {
            return Err(SourceError::Setup(format!(
                "{name}: the checkpoint was taken of another fleet ({}), this job generates {expected}; run with the checkpoint's [generator] settings, or remove the checkpoint (or run without --resume) to start afresh",
                snapshot.identity
            )));
        }
        Ok(snapshot)
    }
}
