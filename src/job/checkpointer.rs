//! The worker loop's checkpoint step: once every stateful operator of this worker has saved a
//! boundary `T` (its input frontier passed `T`, see `fleetflow_dataflows::checkpoint`) and every
//! output before `T` is delivered (the durable frontier passed it), the worker writes its part:
//! the states, and where each of its partitions must be read again from. The job's first worker
//! marks the checkpoint complete once every worker's part is in the store, prunes old ones, and
//! every worker then commits its positions to Kafka (for the group's lag; a restore reads the
//! positions from the checkpoint, written together with the state).
//!
//! An exact stop (SIGTERM) ends with one more checkpoint: the latest boundary below the stop's
//! frontier, with the frontier as what was delivered and every record read counted as read, so
//! the restart writes nothing twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetflow_dataflows::checkpoint::Checkpoints;
use fleetflow_dataflows::time::align;
use fleetflow_dataflows::Time;
use tracing::{debug, info};

use super::JobError;
use crate::checkpoints::part::{Part, SavedPosition};
use crate::checkpoints::store::{FolderStore, StoreError};
use crate::operations::metrics::Metrics;
use crate::sources::SourceDriver;

/// How often the first worker looks for complete sets of parts.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// One worker's checkpoints.
pub struct Checkpointer {
    registry: Checkpoints,
    store: Arc<FolderStore>,
    /// This worker, of how many; the shape of the job.
    worker: usize,
    peers: usize,
    shape: String,
    keep: usize,
    /// The last boundary this worker wrote a part for, and its positions by boundary (until
    /// committed).
    written: Time,
    positions: Vec<(Time, Vec<SavedPosition>)>,
    /// The last complete checkpoint seen.
    completed: Time,
    /// Counters, and the encoding time already counted.
    metrics: Arc<Metrics>,
    encode_counted: fleetflow_dataflows::checkpoint::Encoded,
    /// The boundary of the exact stop's part, once written.
    stopped_at: Option<Time>,
    looked: Instant,
}

impl Checkpointer {
    /// The checkpoints of worker `worker` of `peers` into `store`; `restored`: the boundary the
    /// job was restored from (none is written again).
    pub fn new(
        registry: Checkpoints,
        store: Arc<FolderStore>,
        (worker, peers, metrics): (usize, usize, Arc<Metrics>),
        shape: String,
        keep: usize,
    ) -> Self {
        let restored = registry.restored_at().unwrap_or(0);
        Metrics::add(&metrics.checkpoint_operators, registry.operators().len() as u64);
        let looked = Instant::now();
        Checkpointer {
            registry,
            store,
            worker,
            peers,
            shape,
            keep,
            written: restored,
            positions: Vec::new(),
            completed: restored,
            metrics,
            encode_counted: Default::default(),
            stopped_at: None,
            looked,
        }
    }

    /// The boundaries this worker may write now, oldest first: those every operator saved (the
    /// watermark's latest, if the job keeps no state) that the outputs have passed.
    fn ready(&self, durable: Time, watermark: Time) -> Vec<Time> {
        let every = self.registry.interval();
        let saved =
            if self.registry.operators().is_empty() { vec![align(watermark.min(durable), every)] } else { self.registry.complete_all() };
        saved.into_iter().filter(|t| *t > self.written && *t > 0 && *t <= durable).collect()
    }

    /// One look: writes this worker's parts, completes checkpoints (first worker), commits.
    pub fn step(&mut self, driver: &mut SourceDriver, durable: Option<Time>, watermark: Option<Time>) -> Result<(), JobError> {
        self.count_encoding();
        let (Some(durable), Some(watermark)) = (durable, watermark) else { return Ok(()) };
        for at in self.ready(durable, watermark) {
            self.write(driver, at, at, false)?;
        }
        self.complete_and_commit(driver)
    }

    /// The exact stop's checkpoint at the latest boundary below `frontier` (every output below
    /// the frontier delivered, every record read counted as read). `true` once the checkpoint is
    /// complete (the first worker waits for every part).
    pub fn stop_at(&mut self, driver: &mut SourceDriver, frontier: Time) -> Result<bool, JobError> {
        let every = self.registry.interval();
        let at = if self.registry.operators().is_empty() {
            Some(align(frontier, every))
        } else {
            self.registry.complete_all().into_iter().rfind(|t| *t <= frontier)
        };
        let Some(at) = at.filter(|t| *t > 0) else { return Ok(true) };
        if self.stopped_at != Some(at) {
            // (Replaces a part written for the same boundary before the stop.)
            self.write(driver, at, frontier, true)?;
            self.stopped_at = Some(at);
        }
        self.looked = Instant::now() - LOOK_EVERY;
        self.complete_and_commit(driver)?;
        Ok(self.worker != 0 || self.completed >= at)
    }

    /// Adds what the operators spent encoding since the last look to the counters.
    fn count_encoding(&mut self) {
        let now = self.registry.encoded();
        let before = std::mem::replace(&mut self.encode_counted, now);
        Metrics::add(&self.metrics.checkpoint_encode_micros, (now.time - before.time).as_micros() as u64);
        Metrics::add(&self.metrics.checkpoint_states, now.states - before.states);
        Metrics::add(&self.metrics.checkpoint_state_bytes, now.bytes - before.bytes);
    }

    /// Removes every checkpoint: the job drained its windows, a restart resumes from the
    /// offsets committed with its last watermark.
    pub fn forget(&self) -> Result<(), JobError> {
        self.store.clear().map(|_| ()).map_err(store)
    }

    fn write(&mut self, driver: &mut SourceDriver, at: Time, durable: Time, read_all: bool) -> Result<(), JobError> {
        let positions = driver.positions_at(at, durable, read_all);
        let states = self.registry.states_at(at).into_iter().map(|(name, bytes)| (name, bytes.to_vec())).collect();
        let part =
            Part { at, durable, worker: self.worker, peers: self.peers, shape: self.shape.clone(), states, positions: positions.clone() };
        let started = Instant::now();
        let bytes = self.store.write_part(&part).map_err(store)?;
        Metrics::add(&self.metrics.checkpoint_parts, 1);
        Metrics::add(&self.metrics.checkpoint_bytes, bytes);
        Metrics::add(&self.metrics.checkpoint_write_micros, started.elapsed().as_micros() as u64);
        debug!(
            "worker {}: checkpoint part at {}: {}",
            self.worker,
            crate::encode::rfc3339(at),
            part.states.iter().map(|(n, b)| format!("{n} {} B", b.len())).collect::<Vec<_>>().join(", ")
        );
        // The latest written boundary's states stay: an exact stop may write its part again.
        self.registry.release_through(at.saturating_sub(1));
        self.written = self.written.max(at);
        self.positions.retain(|(t, _)| *t != at);
        self.positions.push((at, positions));
        Ok(())
    }

    /// The first worker completes the latest checkpoint every worker wrote; every worker commits
    /// the positions of the latest complete one it wrote.
    fn complete_and_commit(&mut self, driver: &mut SourceDriver) -> Result<(), JobError> {
        // (Nothing written that is not yet complete and committed: nothing to look for.)
        if self.positions.is_empty() || self.looked.elapsed() < LOOK_EVERY {
            return Ok(());
        }
        self.looked = Instant::now();
        if self.worker == 0 {
            for &(at, _) in self.positions.iter().rev() {
                if at > self.completed && self.store.parts_written(at, self.peers) >= self.peers {
                    self.store.complete(at, self.peers).map_err(store)?;
                    self.store.prune(self.keep).map_err(store)?;
                    info!("checkpoint complete: state as of {}", crate::encode::rfc3339(at));
                    break;
                }
            }
        }
        let latest = self.store.completed().pop().unwrap_or(0);
        if latest > self.completed {
            self.completed = latest;
            if let Some((at, positions)) = self.positions.iter().rev().find(|(t, _)| *t <= latest) {
                driver.commit_positions(positions, *at)?;
            }
            self.positions.retain(|(t, _)| *t > latest);
        }
        Ok(())
    }
}

fn store(e: StoreError) -> JobError {
    JobError::Checkpoint(e.to_string())
}

/// What a job computes, as far as its state is concerned: a checkpoint restores only into a job
/// of the same shape (window lengths, lateness, interval, the analyses that run).
pub fn shape(config: &crate::config::Config) -> Result<String, crate::config::ConfigError> {
    let names: Vec<&str> = config.analyses()?.iter().map(|(a, _)| a.spec().name).collect();
    let w = &config.windows;
    Ok(format!(
        "tumbling {} s, sliding {}/{} s, lateness {} ms, every {} s, analyses {}",
        w.tumbling_secs,
        w.sliding_size_secs,
        w.sliding_slide_secs,
        w.allowed_lateness_ms,
        config.checkpoints.interval_secs,
        names.join(" ")
    ))
}
