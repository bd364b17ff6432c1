//! What `fleetflow bench` reports (its JSON report, and what its plots draw).

use serde::Serialize;

/// Latency percentiles, milliseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// Windows measured.
    pub windows: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// What `fleetflow bench` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Offered readings per second: the vehicles over their reporting interval, a whole number of
    /// milliseconds (so it can be above the rate asked for).
    pub rate_offered: u64,
    /// Readings read per second, from the first reading read to the last.
    pub rate_achieved: f64,
    /// Readings processed.
    pub readings: u64,
    /// Wall time, s.
    pub wall_secs: f64,
    /// Worker threads.
    pub workers: usize,
    /// Vehicles.
    pub vehicles: u64,
    /// Allowed lateness, ms: latency is measured beyond it.
    pub allowed_lateness_ms: u64,
    /// Tumbling window length, s.
    #[serde(default)]
    pub window_secs: u64,
    /// Largest delivery delay of the generated readings, ms.
    pub max_delay_ms: u64,
    /// Window latency beyond the allowed lateness.
    pub window_latency_ms: Percentiles,
    /// Alert latency: from the end of the alert's window (its latest reading's ingest) to the
    /// alert's hand-off, allowed lateness included.
    pub alert_latency_ms: Percentiles,
    /// Where window latency goes: from the window's due moment to the sources' watermark passing
    /// its end (readings arriving), ms.
    pub window_latency_source_ms: Percentiles,
    /// ... and from the watermark passing its end to the hand-off (the dataflow), ms.
    pub window_latency_dataflow_ms: Percentiles,
    /// Window latency boundary by boundary (the windows ending together), to tell a slow boundary
    /// from a slow job.
    pub window_latency_by_boundary: Vec<crate::operations::latency::BoundaryLatency>,
    /// The window latency distribution: `(quantile, ms)` pairs, for plots.
    pub window_latency_cdf: Vec<(f64, f64)>,
    /// CPU time in user mode, s.
    pub cpu_user_secs: f64,
    /// CPU time in the kernel, s.
    pub cpu_system_secs: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// What checkpoints cost (`--checkpoints`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointCost>,
    /// What the path through a Kafka topic cost (`--kafka-brokers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaCost>,
}

/// What the path through Kafka cost in a run (`fleetflow bench --kafka-brokers`).
#[derive(Debug, Serialize)]
pub struct KafkaCost {
    /// The topic.
    pub topic: String,
    /// Its partitions (when the bench created it).
    pub partitions: i32,
    /// From a message's send (its timestamp, set by the producer) to the job's read of it, one
    /// message in 16: the broker path alone (the window latency includes it).
    pub read_delay_ms: Percentiles,
    /// CPU the producer process used, s (user and system).
    pub producer_cpu_secs: f64,
    /// CPU the broker process used during the run, s (none: the broker is not on this machine).
    pub broker_cpu_secs: Option<f64>,
}

/// What the checkpoints of a run cost.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckpointCost {
    /// Boundaries at which the operators saved their state.
    pub boundaries: f64,
    /// Mean size of the state saved at a boundary (every operator of every worker), bytes.
    pub mean_state_bytes: f64,
    /// Mean time the workers spent encoding it at a boundary (summed over workers, inside the
    /// dataflow's steps), ms.
    pub mean_encode_ms: f64,
    /// Parts written to the store (a checkpoint completes when its sinks have delivered what
    /// came before it: the folder sink's buffering paces them).
    pub parts_written: u64,
    /// Mean time a worker spent writing a part, ms.
    pub mean_write_ms: f64,
    /// Boundaries whose saved states were dropped to keep within `checkpoints.pending_mib`.
    pub states_dropped: u64,
}

impl CheckpointCost {
    /// From the job's counters.
    pub fn of(m: &crate::operations::metrics::Metrics) -> Self {
        use crate::operations::metrics::Metrics as M;
        let boundaries = M::get(&m.checkpoint_states) as f64 / M::get(&m.checkpoint_operators).max(1) as f64;
        let per_boundary = |v: u64| if boundaries == 0.0 { 0.0 } else { v as f64 / boundaries };
        let parts = M::get(&m.checkpoint_parts);
        CheckpointCost {
            boundaries,
            mean_state_bytes: per_boundary(M::get(&m.checkpoint_state_bytes)),
            mean_encode_ms: per_boundary(M::get(&m.checkpoint_encode_micros)) / 1000.0,
            parts_written: parts,
            mean_write_ms: if parts == 0 { 0.0 } else { M::get(&m.checkpoint_write_micros) as f64 / parts as f64 / 1000.0 },
            states_dropped: M::get(&m.checkpoint_states_dropped),
        }
    }
}

impl Report {
    /// Whether the run kept up with its rate and kept the p99 window latency below `max_p99_ms`.
    pub fn sustained(&self, max_p99_ms: f64) -> bool {
        self.rate_achieved >= 0.97 * self.rate_offered as f64
            && self.window_latency_ms.windows > 0
            && self.window_latency_ms.p99 < max_p99_ms
    }
}

/// A sweep's runs and the highest rate sustained.
#[derive(Debug, Serialize)]
pub struct Sweep {
    /// Each run, by rising rate.
    pub runs: Vec<Report>,
    /// The highest rate offered (as run: whole-ms report intervals) that was sustained (none when
    /// even the first was not).
    pub highest_sustained_rate: Option<u64>,
    /// The p99 window latency bound used, ms.
    pub max_p99_ms: f64,
}

/// What `fleetflow bench` did: one run, or a sweep.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// One run at `--rate`.
    Run(Box<Report>),
    /// A sweep of rising rates.
    Sweep(Sweep),
}
