//! `[generator]`: the built-in fleet, as the job's source.

use serde::{Deserialize, Serialize};

use crate::time_arg::ConfigTime;

/// `[generator]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Vehicles simulated.
    pub vehicles: u64,
    /// Each vehicle reports every this many ms.
    pub interval_ms: u64,
    /// Share of habitual speeders, in [0, 1].
    pub speeder_fraction: f64,
    /// Seed of the simulation.
    pub seed: u64,
    /// Follow the wall clock (true) or produce as fast as possible from `start` (false).
    pub realtime: bool,
    /// Event time of the first report when not real time (RFC 3339).
    pub start: ConfigTime,
    /// Stop after this many seconds of event time (0: never).
    pub duration_secs: u64,
    /// Largest delivery delay (out-of-order), ms; keep it below the allowed lateness.
    pub max_delay_ms: u64,
    /// Share of readings delivered later than the allowed lateness, in [0, 1].
    pub late_fraction: f64,
    /// Partitions of the fleet (0: one per worker; a resumed fleet keeps its checkpoint's).
    pub partitions: u64,
    /// Checkpoint the fleet with the operators' state, stop exactly on SIGTERM (open windows stay
    /// open) and go on from the latest checkpoint at start (`--resume`): the outputs are those of
    /// a run that never stopped. Off: every run starts the fleet afresh and a stop drains.
    pub resume: bool,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            vehicles: 1_000,
            interval_ms: 1_000,
            speeder_fraction: 0.05,
            seed: 42,
            realtime: true,
            start: "2025-11-25T00:00:00Z".parse().unwrap_or_default(),
            duration_secs: 0,
            max_delay_ms: 2_000,
            late_fraction: 0.001,
            partitions: 0,
            resume: false,
        }
    }
}
