//! The worker loop's checkpoint step: once every stateful operator of this worker has saved a
//! boundary `T` (its input frontier passed `T`, see `fleetflow_dataflows::checkpoint`) and every
//! output before `T` is delivered (the durable frontier passed it), the worker writes its part:
//! the states, and where each of its partitions must be read again from. The job's first worker
//! marks the checkpoint complete once every worker's part is in the store, prunes old ones, and
//! every worker then commits its positions to Kafka (for the group's lag; a restore reads the
//! positions from the checkpoint, written together with the state).
//!
//! An exact stop (SIGTERM) ends with one more checkpoint: the latest boundary below the stop's
//! frontier that every worker holds its state saved as of (the workers tell each other, see
//! [`crate::failure::FailureNotices::common_boundary`]), with the frontier as what was
//! delivered and every record read counted as read, so the restart writes nothing twice.
//!
//! A job whose sink commits with checkpoints (the exactly-once Kafka sink) also checkpoints when
//! its input falls silent: once the durable frontier has held still for [`IDLE_COMMIT`] above the
//! latest checkpoint, a checkpoint of the state as of the latest boundary below it that every
//! worker holds (agreed as at an exact stop), with the frontier as what was delivered; its commit makes the outputs before the frontier visible,
//! rather than leaving them in an open transaction until data returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetflow_dataflows::checkpoint::Checkpoints;
use fleetflow_dataflows::time::align;
use fleetflow_dataflows::Time;
use tracing::{debug, info, warn};

use super::reference_versions::SharedVersions;
use super::JobError;
use crate::checkpoints::increments::Increments;
use crate::checkpoints::part::{Part, SavedPosition};
use crate::checkpoints::store::{StateStore, StoreError};
use crate::failure::FailureNotices;
use crate::operations::metrics::Metrics;
use crate::route::Router;
use crate::sinks::CheckpointCommit;
use crate::sources::SourceDriver;

/// How often the first worker looks for complete sets of parts.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// How long the durable frontier holds still before a job whose sink commits with checkpoints
/// checkpoints at it (see the module's comment).
pub const IDLE_COMMIT: Duration = Duration::from_secs(1);

/// One worker's checkpoints.
pub struct Checkpointer {
    registry: Checkpoints,
    store: Arc<StateStore>,
    /// This worker, of how many; the shape of the job.
    worker: usize,
    peers: usize,
    shape: String,
    keep: usize,
    /// The last boundary this worker wrote a part for, and the parts it wrote that are not
    /// complete and committed yet.
    written: Time,
    positions: Vec<Written>,
    /// The last complete checkpoint seen (its name: its durable frontier).
    completed: Time,
    /// Counters, and the encoding time already counted.
    metrics: Arc<Metrics>,
    encode_counted: fleetflow_dataflows::checkpoint::Encoded,
    /// Boundaries dropped for the memory budget, already counted.
    dropped_counted: u64,
    /// The name of the exact stop's checkpoint, once its part is written; and whether the stop
    /// has been looked at once with everything below its frontier delivered.
    stopped_at: Option<Time>,
    /// The exact stop ended without a checkpoint: no boundary below it held by every worker.
    stop_unsaved: bool,
    stop_settling: bool,
    /// The name of the checkpoint this run restored (0: none).
    restored_name: Time,
    looked: Instant,
    /// With a sink that commits with checkpoints: the durable frontier, since when it holds
    /// still; and the highest durable frontier a part was written with.
    idle: Option<(Time, Instant)>,
    durable_written: Time,
    /// How far back the increments of complete checkpoints are kept (the correction horizon).
    history: Time,
    /// The reference tables' versions (the first worker's; empty on the others).
    references: SharedVersions,
    /// The latest complete checkpoint seen in this process, and whether this worker looks for
    /// it in the store (the process's first worker) or reads it there.
    seen: Arc<AtomicU64>,
    lists: bool,
    /// The latest checkpoint refused for parts at different boundaries (warned about once).
    refused: Time,
}

impl Checkpointer {
    /// The checkpoints of worker `worker` of `peers` into `store`; `restored`: the boundary the
    /// job was restored from (none is written again).
    /// `restored_name`: the name of the checkpoint restored (0: none).
    /// `idle_commits`: whether a sink commits with checkpoints (then the job checkpoints when its
    /// input falls silent too).
    pub fn new(
        registry: Checkpoints,
        store: Arc<StateStore>,
        (worker, peers, metrics): (usize, usize, Arc<Metrics>),
        (shape, keep, restored_name, idle_commits): (String, usize, Time, bool),
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
            completed: restored_name.max(restored),
            metrics,
            encode_counted: Default::default(),
            dropped_counted: 0,
            stopped_at: None,
            stop_unsaved: false,
            stop_settling: false,
            restored_name,
            looked,
            idle: idle_commits.then(|| (0, Instant::now())),
            durable_written: restored_name.max(restored),
            history: 0,
            references: SharedVersions::default(),
            seen: Arc::default(),
            lists: true,
            refused: 0,
        }
    }

    /// Shares the latest complete checkpoint with the process's other workers through `seen`:
    /// only the process's first worker (`lists`) lists the store for it (one request every
    /// [`LOOK_EVERY`] per process, not per worker, to a store in S3).
    pub fn seeing_completed(mut self, seen: Arc<AtomicU64>, lists: bool) -> Self {
        (self.seen, self.lists) = (seen, lists);
        self
    }

    /// Keeps the increments of complete checkpoints for `history` ms, and saves the reference
    /// tables' `versions` with each part.
    pub fn with_history(mut self, history: Time, versions: SharedVersions) -> Self {
        (self.history, self.references) = (history, versions);
        self
    }

    /// The boundary this worker may write now: the latest that every operator saved (the
    /// watermark's latest, if the job keeps no state) and the outputs passed. Only the latest:
    /// when a sink's buffer moves the durable frontier over several boundaries at once, the ones
    /// below it would be pruned as soon as it completes. The durable frontier is the job's, so
    /// every worker reaches the same latest boundary while it holds still.
    fn ready(&self, durable: Time, watermark: Time) -> Option<Time> {
        let every = self.registry.interval();
        let saved = if self.registry.has_operators() { self.registry.complete_all() } else { vec![align(watermark.min(durable), every)] };
        saved.into_iter().rfind(|t| *t <= durable).filter(|t| *t > self.written && *t > 0)
    }

    /// One look: writes this worker's part, completes checkpoints (first worker), commits.
    pub fn step(
        &mut self,
        (driver, router, notices): (&mut SourceDriver, &mut Router, &mut FailureNotices),
        durable: Option<Time>,
        watermark: Option<Time>,
    ) -> Result<(), JobError> {
        self.count_encoding();
        let (Some(durable), Some(watermark)) = (durable, watermark) else { return Ok(()) };
        if let Some(at) = self.ready(durable, watermark) {
            self.write((driver, router), (at, at), at, false)?;
        } else if let Some(name) = self.idle_due(durable) {
            match self.agreed(notices, name, || self.held_below(durable - 1)) {
                None => {}
                Some(None) => {
                    debug!(
                        "worker {}: the durable frontier holds still at {}; no boundary below it held by every worker: no checkpoint at it",
                        self.worker,
                        crate::encode::rfc3339(durable)
                    );
                    self.durable_written = durable;
                }
                Some(Some(at)) => {
                    debug!(
                        "worker {}: the durable frontier holds still at {}: a checkpoint at it",
                        self.worker,
                        crate::encode::rfc3339(durable)
                    );
                    self.write((driver, router), (at, name), durable, false)?;
                }
            }
        }
        self.complete_and_commit(driver, router)
    }

    /// With a sink that commits with checkpoints, once the durable frontier has held still for
    /// [`IDLE_COMMIT`] above every part written: the name of a checkpoint at it. Every worker
    /// sees the same frontier once it holds still, so every worker names it alike, and they
    /// agree on its boundary ([`Checkpointer::agreed`]).
    fn idle_due(&mut self, durable: Time) -> Option<Time> {
        let (frontier, since) = self.idle.as_mut()?;
        if *frontier != durable {
            (*frontier, *since) = (durable, Instant::now());
            return None;
        }
        if since.elapsed() < IDLE_COMMIT || durable <= self.durable_written {
            return None;
        }
        // (Named after the frontier, below an exact stop's at the same frontier: that one must
        // commit what it reads after this one.)
        Some(durable.max(self.restored_name) + 1)
    }

    /// For a checkpoint named after a frontier (an exact stop's, an idle input's), where each
    /// worker's operators may hold different boundaries: the latest boundary every worker holds
    /// (`None` while a worker has not told which it holds; `Some(None)`: none). Tells this
    /// worker's (`held`) once.
    fn agreed(&self, notices: &mut FailureNotices, name: Time, held: impl FnOnce() -> Vec<Time>) -> Option<Option<Time>> {
        if !notices.saved_announced(name) {
            notices.announce_saved(self.worker, name, held());
        }
        notices.common_boundary(name, self.peers)
    }

    /// The boundaries at or below `frontier` this worker holds its state saved as of.
    fn held_below(&self, frontier: Time) -> Vec<Time> {
        if self.registry.has_operators() {
            self.registry.complete_all().into_iter().filter(|t| *t > 0 && *t <= frontier).collect()
        } else {
            Some(align(frontier, self.registry.interval())).into_iter().filter(|t| *t > 0).collect()
        }
    }

    /// The exact stop's checkpoint below `frontier` (every output below the frontier delivered,
    /// every record read counted as read), at the latest boundary every worker holds; none if no
    /// boundary is held by all (the restart resumes from the latest complete one). This worker
    /// tells which it holds from its second look (an operator that holds no capability may see
    /// its frontier pass a boundary, and save it, one step after the outputs' frontier passed
    /// it). `true` once the checkpoint is complete (the first worker waits for every part), or
    /// there is none.
    pub fn stop_at(
        &mut self,
        (driver, router, notices): (&mut SourceDriver, &mut Router, &mut FailureNotices),
        frontier: Time,
    ) -> Result<bool, JobError> {
        // A checkpoint of its own, named after the frontier and after the checkpoint this run
        // restored (the same for every worker): its outputs above the boundary must be committed
        // and it must be completed, even when a boundary's or an idle input's checkpoint at the
        // frontier already was.
        let name = frontier.max(self.restored_name) + 2;
        if self.stopped_at != Some(name) {
            if !std::mem::replace(&mut self.stop_settling, true) {
                return Ok(false);
            }
            let held = self.held_below(frontier);
            let Some(at) = self.agreed(notices, name, || held.clone()) else { return Ok(false) };
            let Some(at) = at else {
                if self.worker == 0 && !held.is_empty() {
                    warn!("stopping: the workers hold no saved state as of one boundary below the stop; no checkpoint written, a restart resumes from the latest complete one");
                }
                self.stop_unsaved = true;
                return Ok(true);
            };
            if !held.contains(&at) {
                let at = crate::encode::rfc3339(at);
                return Err(JobError::Checkpoint(format!("the exact stop's boundary {at} is no longer held by worker {}", self.worker)));
            }
            self.write((driver, router), (at, name), frontier, true)?;
            self.stopped_at = Some(name);
        }
        self.looked = Instant::now() - LOOK_EVERY;
        self.complete_and_commit(driver, router)?;
        // (Every worker waits to learn that it is complete: its sinks then make visible what they
        // held back for it.)
        Ok(self.completed >= name)
    }

    /// Whether the exact stop ended with a checkpoint of its own (see [`Checkpointer::stop_at`]).
    pub fn stop_saved(&self) -> bool {
        !self.stop_unsaved
    }

    /// Adds what the operators spent encoding since the last look to the counters.
    fn count_encoding(&mut self) {
        let now = self.registry.encoded();
        let before = std::mem::replace(&mut self.encode_counted, now);
        Metrics::add(&self.metrics.checkpoint_encode_micros, (now.time - before.time).as_micros() as u64);
        Metrics::add(&self.metrics.checkpoint_states, now.states - before.states);
        Metrics::add(&self.metrics.checkpoint_state_bytes, now.bytes - before.bytes);
        let dropped = self.registry.dropped();
        if dropped > self.dropped_counted {
            if self.dropped_counted == 0 {
                warn!("worker {}: the states saved for checkpoints reached checkpoints.pending_mib while the sinks had not delivered their boundary; the oldest were dropped (their checkpoints skipped). If no checkpoint completes, raise pending_mib or checkpoints.interval_secs", self.worker);
            }
            Metrics::add(&self.metrics.checkpoint_states_dropped, dropped - self.dropped_counted);
            self.dropped_counted = dropped;
        }
    }

    /// Removes every checkpoint: the job drained its windows, a restart resumes from the
    /// offsets committed with its last watermark.
    pub fn forget(&self) -> Result<(), JobError> {
        self.store.clear().map(|_| ()).map_err(store)
    }

    fn write(
        &mut self,
        (driver, router): (&mut SourceDriver, &mut Router),
        (at, name): (Time, Time),
        durable: Time,
        read_all: bool,
    ) -> Result<(), JobError> {
        // What the sinks delivered so far, and so what the positions count as delivered, belongs
        // to this checkpoint (a sink that holds outputs back until it completes).
        router.prepare_checkpoint(&CheckpointCommit { name, at, durable, stop: read_all })?;
        let positions = driver.positions_at(at, durable, read_all);
        let states = self.registry.states_at(at).into_iter().map(|(name, bytes)| (name, bytes.to_vec())).collect();
        let references = self.references.borrow().as_of(durable);
        let (worker, peers, shape) = (self.worker, self.peers, self.shape.clone());
        let part = Part { at, durable, worker, peers, shape: shape.clone(), states, positions: positions.clone(), references };
        let started = Instant::now();
        let increments: Vec<(String, Vec<u8>)> = self.registry.increments_at(at).into_iter().map(|(n, b)| (n, b.to_vec())).collect();
        if !increments.is_empty() {
            self.store.write_increments(name, (worker, peers), &Increments { at, shape, increments }).map_err(store)?;
        }
        let bytes = self.store.write_part(name, &part).map_err(store)?;
        self.references.borrow_mut().settled_before(durable);
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
        self.durable_written = self.durable_written.max(durable);
        self.positions.retain(|w| w.name != name);
        self.positions.push(Written { name, at, durable, positions, stop: read_all });
        Ok(())
    }

    /// The first worker completes the latest checkpoint every worker wrote; every worker commits
    /// the positions of the latest complete one it wrote.
    fn complete_and_commit(&mut self, driver: &mut SourceDriver, router: &mut Router) -> Result<(), JobError> {
        // (Nothing written that is not yet complete and committed: nothing to look for.)
        if self.positions.is_empty() || self.looked.elapsed() < LOOK_EVERY {
            return Ok(());
        }
        self.looked = Instant::now();
        if self.worker == 0 {
            self.complete_latest(router)?;
        }
        let latest = if self.lists {
            let latest = self.store.completed().map_err(store)?.pop().unwrap_or(0);
            self.seen.fetch_max(latest, Ordering::Relaxed);
            latest
        } else {
            self.seen.load(Ordering::Relaxed)
        };
        if latest > self.completed {
            self.completed = latest;
            router.checkpoint_complete(latest)?;
            if let Some(w) = self.positions.iter().rev().find(|w| w.name <= latest) {
                driver.commit_positions(&w.positions, w.name)?;
            }
            // Increments saved from now on start at its boundary (it holds this worker's part).
            if let Some(w) = self.positions.iter().find(|w| w.name == latest) {
                self.registry.completed_through(w.at);
            }
            self.positions.retain(|w| w.name > latest);
        }
        Ok(())
    }

    /// The first worker: marks the latest checkpoint complete whose parts every worker wrote,
    /// once the sinks that commit with checkpoints (the exactly-once Kafka sink's transaction)
    /// have committed the outputs before it; then prunes.
    fn complete_latest(&mut self, router: &mut Router) -> Result<(), JobError> {
        for w in self.positions.iter().rev() {
            if w.name <= self.completed {
                continue;
            }
            let parts = self.store.parts_written(w.name, self.peers).map_err(store)?;
            if parts.count < self.peers {
                continue;
            }
            if !parts.agree {
                // (See `PartsWritten::agree`: an earlier or a later checkpoint completes.)
                if self.refused < w.name {
                    self.refused = w.name;
                    warn!("checkpoint {}: the workers' parts hold state as of different boundaries; not completed", w.name);
                }
                continue;
            }
            let commit = CheckpointCommit { name: w.name, at: w.at, durable: w.durable, stop: w.stop };
            if !router.commit_checkpoint(&commit)? {
                // (A sink's transaction holds outputs after this checkpoint: the next one.)
                return Ok(());
            }
            self.store.complete(w.name, self.peers).map_err(store)?;
            self.store.prune(self.keep, w.at.saturating_sub(self.history)).map_err(store)?;
            info!("checkpoint complete: state as of {}", crate::encode::rfc3339(w.at));
            return Ok(());
        }
        Ok(())
    }
}

/// A part this worker wrote: the checkpoint's name (its boundary, or after the exact stop's
/// frontier), boundary, durable frontier and this worker's positions in it.
struct Written {
    name: Time,
    at: Time,
    durable: Time,
    positions: Vec<SavedPosition>,
    /// The exact stop's: every record read is counted as read, and every output is final.
    stop: bool,
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
