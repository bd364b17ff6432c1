//! The worker loop: one timely worker builds its dataflow, then reads its share of the sources,
//! follows the reference files, steps the dataflow, lets its sinks deliver, commits what they
//! delivered, and stops as asked, until every input is finished and every output flushed.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use fleetflow_dataflows::analysis::Analysis;
use fleetflow_dataflows::query::LiveQuery;
use fleetflow_dataflows::Time;
use timely::dataflow::ProbeHandle;
use tracing::{debug, info, warn};

use std::sync::Arc;

use fleetflow_dataflows::checkpoint::Checkpoints;

use super::checkpointer::Checkpointer;
use super::dataflow::{self, Analyses};
use super::partitions::Opened;
use super::references::{References, Sessions};
use super::stopping::Stopping;
use super::{JobError, Shared};
use crate::checkpoints::store::Loaded;
use crate::config::SourceKind;
use crate::encode;
use crate::failure::FailureNotices;
use crate::operations::live_state::{LiveState, Query};
use crate::operations::metrics::Metrics;
use crate::operations::operator_profile::OperatorProfile;
use crate::route::Router;
use crate::sources::{Poll, SourceDriver};
use crate::stream::{StreamName, Timing};

/// Records read from the sources per loop iteration, at most.
const READ_BUDGET: usize = 16_384;

/// One worker of the job, between building its dataflow and finishing.
pub struct WorkerLoop<'w> {
    worker: &'w mut timely::worker::Worker,
    shared: &'w Shared,
    /// This worker's index among the workers of this process.
    local: usize,
    peers: usize,
    router: Rc<RefCell<Router>>,
    driver: SourceDriver,
    notices: FailureNotices,
    references: References,
    queries: Receiver<Query>,
    live_queries: Vec<Box<dyn LiveQuery>>,
    /// The readings' frontier (the job's watermark) and the outputs' (what is delivered).
    probes: (ProbeHandle<Time>, ProbeHandle<Time>),
    stopping: Stopping<'w>,
    /// When progress was last reported, and the readings then.
    progress: (Instant, u64),
    /// The job's last watermark before its sources finished: the windows below it closed on the
    /// watermark, complete (those the end of the input closed are partial).
    last_watermark: Time,
    started: Instant,
    /// When the sinks' health was last published for the status page.
    health_at: Instant,
    /// The checkpoints of a Kafka job (none: it commits delivered offsets instead).
    checkpointer: Option<Checkpointer>,
    /// Whether the log still has to say when the first windows close (live sources, worker 0).
    tell_first_windows: bool,
    /// Where the dataflow's time goes (`FLEETFLOW_OPERATOR_PROFILE`).
    profile: Option<OperatorProfile>,
}

impl<'w> WorkerLoop<'w> {
    /// Builds this worker's dataflow and opens its sources and reference files.
    pub fn start(worker: &'w mut timely::worker::Worker, shared: &'w Shared) -> Result<Self, JobError> {
        let Shared { config, plan, archive, splits, metrics, live, stop, failing, run_id, state } = shared;
        let (index, peers) = (worker.index(), worker.peers());
        // This process's workers are numbered from `process * workers`.
        let local = index - config.cluster.process * config.workers;
        pin(config, index);
        let analyses = config.analyses()?;
        let tag = format!("p{:03}-w{index:03}-{run_id}", config.cluster.process);
        let router = Rc::new(RefCell::new(Router::new(plan.build(&tag, (index, peers))?, &config.routes()?, metrics.clone())));
        if let Some((start, end)) = config.replay_days() {
            router.borrow_mut().keep_only(start, end);
        }
        let tables = config.analysis_tables()?;
        let mut sessions = Sessions::new(&tables);
        let (registry, restore) = registry_for(shared, (index, peers));
        // Sources open before the dataflow is built: a worker that fails here leaves no dataflow
        // waiting for it.
        let positions = restore.as_ref().map(|r| r.positions.clone()).unwrap_or_default();
        let opened = Opened { archive: archive.as_ref(), restored: &positions, splits };
        let partitions = crate::job::partitions::partitions_for(config, opened, metrics, index, peers)?;
        if state.is_some() {
            // What an earlier run's sinks held back for checkpoints, kept if the restored one
            // covers it (by the first worker, before the dataflow exists: no worker of this run
            // stages anything before every worker has built it).
            router.borrow_mut().restore_checkpoint(restore.as_ref().map_or(0, |r| r.name), index == 0)?;
        }
        let profile = OperatorProfile::install(worker);
        let built = dataflow::build(worker, config, (&analyses, &tables), &router, &mut sessions, (live, metrics), &registry)?;
        let queries = live.register();
        let references = References::open(index, config, (&tables, restore.as_deref()), sessions, (live, metrics))?;
        let params = config.params();
        let mut driver =
            SourceDriver::new(partitions, built.inputs, config.windows.allowed_lateness_ms, params.tumbling_ms, metrics.clone())
                .with_idle_timeout(Duration::from_millis(config.kafka.idle_timeout_ms))
                .with_max_future((config.windows.max_future_secs > 0).then(|| Duration::from_secs(config.windows.max_future_secs)))
                .with_completion(completion(&params, &analyses, &router.borrow(), registry.interval()));
        if let Some(r) = &restore {
            driver = driver.with_restored(r.restored.at);
        }
        resume(config, &mut router.borrow_mut(), restore.as_deref())?;
        let checkpointer = state.as_ref().map(|s| {
            let restored_name = restore.as_ref().map_or(0, |r| r.name);
            let idle_commits = super::exactly_once_sink(config).is_some();
            let identity = (s.shape.clone(), config.checkpoints.keep, restored_name, idle_commits);
            Checkpointer::new(registry.clone(), s.store.clone(), (index, peers, metrics.clone()), identity)
                .with_history(params.correction_horizon_ms, references.versions())
                .seeing_completed(s.completed.clone(), local == 0)
        });
        // A stop of a source that can be read again keeps the open windows open for the restart.
        let exact = config.stops_exactly();
        let stopping = Stopping::new(stop, failing, exact, index, local == 0);
        // The dataflow is built and the sources are open.
        live.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(WorkerLoop {
            worker,
            shared,
            local,
            peers,
            router,
            driver,
            notices: built.notices,
            references,
            queries,
            live_queries: built.queries,
            probes: (built.watermark, built.durable),
            stopping,
            progress: (Instant::now(), 0),
            last_watermark: 0,
            started: Instant::now(),
            health_at: Instant::now(),
            checkpointer,
            profile,
            tell_first_windows: index == 0
                && (config.source.kind == SourceKind::Kafka || config.generator.realtime && config.source.kind == SourceKind::Generator),
        })
    }

    /// Runs the worker to the end of its inputs (or its stop) and reports its outcome.
    pub fn run(mut self) -> Result<(), JobError> {
        loop {
            let status = self.read_sources();
            let watermark = self.follow_watermark();
            self.references.follow(watermark);
            if self.references.finished() && self.drained() {
                break;
            }
            self.step(status);
            self.answer_queries();
            self.poll_sinks();
            let durable = self.probes.1.with_frontier(|f| f.first().copied());
            self.commit(durable);
            self.checkpoint(durable, watermark);
            self.stop_exactly(durable, watermark);
            self.report_progress(watermark);
            self.tell_when_windows_close();
        }
        self.finish()
    }

    /// Reads the sources (unless stopping), closing them on a failure or a draining stop. Once a
    /// worker of this process failed, nothing more is written: closing the sources closes every
    /// window, and those written now would be partial; all of it is derived again from the
    /// uncommitted readings at the next start.
    fn read_sources(&mut self) -> Poll {
        let look = self.stopping.look(&mut self.notices, self.driver.capability());
        // A failure or a draining stop closes the sources but not the dataflow: every worker steps
        // on until the dataflow has drained, so no peer waits forever on this one.
        if look.close {
            self.driver.close();
        }
        let status = match self.stopping.reading() {
            true => self.driver.pump(READ_BUDGET).unwrap_or_else(|e| {
                self.stopping.fail(e);
                Poll::Pending
            }),
            false => Poll::Pending,
        };
        if look.failing {
            self.router.borrow_mut().halt();
        }
        status
    }

    /// Publishes this worker's watermark, and returns the job's, as the dataflow sees it after
    /// the exchange of progress (`None`: every source of every worker is finished).
    fn follow_watermark(&mut self) -> Option<Time> {
        let metrics = &self.shared.metrics;
        if let Some(w) = metrics.watermarks.get(self.local) {
            w.store(self.driver.watermark().unwrap_or(u64::MAX), std::sync::atomic::Ordering::Relaxed);
        }
        metrics.note_watermarks();
        let watermark = self.probes.0.with_frontier(|f| f.first().copied());
        self.last_watermark = watermark.unwrap_or(self.last_watermark);
        self.notices.follow(watermark);
        self.stopping.announce(&mut self.notices);
        watermark
    }

    /// Once every source is finished: flushes at once rather than on the buffering hints, so the
    /// output operators see their records durable, and says whether the dataflow has completed.
    fn drained(&mut self) -> bool {
        if let Err(e) = self.router.borrow_mut().flush() {
            self.stopping.fail(e);
        }
        self.probes.1.done()
    }

    fn step(&mut self, status: Poll) {
        match status {
            Poll::Ready => {
                self.worker.step();
            }
            _ => {
                // Nothing to read now: sleep briefly. 1 ms keeps window hand-off latency low (a
                // watermark step takes a few steps to reach the sinks) at little CPU cost.
                self.worker.step_or_park(Some(Duration::from_millis(1)));
            }
        }
    }

    /// Queries from the HTTP API, answered between steps from this worker's open windows.
    fn answer_queries(&mut self) {
        while let Ok(q) = self.queries.try_recv() {
            LiveState::answer(q, &self.live_queries);
        }
    }

    /// Lets the sinks deliver on their buffering hints; a sink's error fails the worker.
    fn poll_sinks(&mut self) {
        let mut router = self.router.borrow_mut();
        router.poll();
        if self.health_at.elapsed() >= Duration::from_secs(1) {
            router.publish(self.worker.index());
            self.health_at = Instant::now();
        }
        if let Err(e) = router.check() {
            drop(router);
            self.stopping.fail(e);
        }
    }

    /// Commits what every worker's sinks have delivered (`durable`), unless a worker failed: its
    /// sinks may have lost records below that frontier, and this worker reaches here only after
    /// the failure's notice (see `failure`), then fails too.
    fn commit(&mut self, durable: Option<Time>) {
        // (A checkpointed job commits its checkpoints' positions instead.)
        if self.checkpointer.is_none() && self.may_commit() {
            if let Some(Err(e)) = durable.map(|d| self.driver.commit(d, false)) {
                self.stopping.fail(e);
            }
        }
    }

    /// Writes this worker's part of each checkpoint whose outputs are delivered (see
    /// [`Checkpointer`]), unless a worker failed or the job is stopping.
    fn checkpoint(&mut self, durable: Option<Time>, watermark: Option<Time>) {
        if self.checkpointer.is_none() || self.stopping.paused() || !self.may_commit() {
            return;
        }
        let (driver, router, notices) = (&mut self.driver, &mut self.router.borrow_mut(), &mut self.notices);
        if let Some(Err(e)) = self.checkpointer.as_mut().map(|c| c.step((driver, router, notices), durable, watermark)) {
            self.stopping.fail(e);
        }
    }

    /// Whether offsets may be committed now (a failure heard from another worker fails this one).
    fn may_commit(&mut self) -> bool {
        if let Some(notice) = self.notices.heard() {
            self.stopping.fail(JobError::Peer(notice));
        }
        self.stopping.may_commit() && !self.stopping.failing()
    }

    /// Takes an exact stop one look further (see [`exact_stop`]); once every worker has
    /// committed and halted, closes the sources so that the dataflow drains.
    fn stop_exactly(&mut self, durable: Option<Time>, watermark: Option<Time>) {
        if self.stopping.halted_waiting() && self.notices.halted() >= self.peers {
            self.driver.close();
        }
        if !self.stopping.paused() {
            return;
        }
        let checkpointer = self.checkpointer.as_mut();
        let notices = (&mut self.notices, self.peers);
        match exact_stop(&mut self.driver, checkpointer, &mut self.router.borrow_mut(), notices, (durable, watermark)) {
            Ok(true) => {
                let at = self.notices.pause_frontier(self.peers).flatten().map(encode::rfc3339).unwrap_or_default();
                let saved = self.checkpointer.as_ref().is_none_or(Checkpointer::stop_saved);
                self.stopping.halted(at, saved);
                self.notices.announce_halt(self.worker.index());
            }
            Ok(false) => {}
            Err(e) => self.stopping.fail(e),
        }
    }

    /// Once, on a live source, as soon as there is a watermark: when the first windows close (for
    /// a minute or two after start-up, only `late/` may be on disk).
    fn tell_when_windows_close(&mut self) {
        if !self.tell_first_windows {
            return;
        }
        let Some(w) = self.shared.metrics.watermark().filter(|w| *w > 0) else { return };
        self.tell_first_windows = false;
        let config = &self.shared.config;
        let window = config.windows.tumbling_secs.max(1) * 1000;
        let end = fleetflow_dataflows::time::align(w, window) + window;
        info!(
            "the first windows close when the watermark (the newest reading less the allowed lateness, {} s) reaches {}: in about {} s",
            config.windows.allowed_lateness_ms as f64 / 1000.0,
            encode::rfc3339(end),
            (end - w).div_ceil(1000)
        );
    }

    /// Every progress interval: the Kafka lag into the metrics, and a progress line.
    fn report_progress(&mut self, watermark: Option<Time>) {
        let metrics = &self.shared.metrics;
        let every = Duration::from_secs(self.shared.config.progress_interval_secs.max(1));
        if self.progress.0.elapsed() < every {
            return;
        }
        let lags = self.driver.lags();
        if !lags.is_empty() {
            metrics.kafka_lag.lock().unwrap_or_else(|p| p.into_inner()).extend(lags);
        }
        let readings = Metrics::get(&metrics.readings);
        if self.local == 0 {
            log_progress(metrics, readings - self.progress.1, self.progress.0.elapsed(), watermark);
        }
        self.progress = (Instant::now(), readings);
    }

    /// The last flush and commit.
    fn finish(mut self) -> Result<(), JobError> {
        if let Err(e) = self.router.borrow_mut().flush() {
            self.stopping.fail(e);
        }
        // Everything read is delivered; below the last watermark the windows were complete (a
        // restart from here with more data writes what lies above it, the rest of those windows).
        if self.may_commit() {
            self.commit_drained();
        }
        if self.local == 0 {
            info!("worker {} finished in {:.2}s", self.worker.index(), self.started.elapsed().as_secs_f64());
        }
        if let Some(p) = &self.profile {
            p.write();
        }
        self.stopping.finish()
    }

    /// The end of a drained run, everything delivered: what the sinks held back for checkpoints
    /// becomes visible (before the checkpoints are forgotten: a restart publishes what a crash
    /// left; if it fails, nothing is forgotten or committed), then the checkpoints are forgotten
    /// and the last offsets committed.
    fn commit_drained(&mut self) {
        if let Err(e) = self.router.borrow_mut().checkpoint_complete(Time::MAX) {
            self.stopping.fail(e);
            return;
        }
        // A checkpointed job that drained its windows has no state left to restore.
        if let Some(Err(e)) = self.checkpointer.as_ref().filter(|_| self.local == 0).map(Checkpointer::forget) {
            self.stopping.fail(e);
        }
        if let Err(e) = self.driver.commit_last(Time::MAX, self.last_watermark) {
            self.stopping.fail(e);
        }
    }
}

/// This worker's checkpoint registry (off unless the job checkpoints) and the checkpoint restored.
fn registry_for(shared: &Shared, (index, peers): (usize, usize)) -> (Checkpoints, Option<Arc<Loaded>>) {
    let Some(state) = &shared.state else { return (Checkpoints::off(), None) };
    let every = shared.config.checkpoints.interval_secs.saturating_mul(1000);
    let restore = state.restore.clone();
    // (The budget is the process's, shared by its workers.)
    let budget = shared.config.checkpoints.pending_mib.saturating_mul(1 << 20) / shared.config.workers.max(1) as u64;
    (Checkpoints::every(every, restore.as_ref().map(|r| r.restored.clone()), (index, peers)).with_budget(budget), restore)
}

/// Outputs an earlier run delivered are not written again: those below a restored checkpoint's
/// durable frontier, or (without checkpoints) below the one the group's offsets were committed with.
fn resume(config: &crate::config::Config, router: &mut Router, restore: Option<&Loaded>) -> Result<(), JobError> {
    let resume = match restore {
        Some(r) => Some(r.durable),
        None if config.source.kind == SourceKind::Kafka => crate::sources::kafka::resume_frontier(&config.kafka)?,
        None => None,
    };
    if let Some(resume) = resume.filter(|r| *r > 0) {
        info!("resuming: outputs before {} were delivered", encode::rfc3339(resume));
        router.suppress_below(resume);
    }
    Ok(())
}

/// With more than one worker in the process, pins this one to a CPU (as configured).
fn pin(config: &crate::config::Config, index: usize) {
    if config.pin_workers && config.workers > 1 {
        match crate::affinity::pin_current_thread(index) {
            Ok(Some(cpu)) => debug!("worker {index} pinned to CPU {cpu}"),
            Ok(None) => {}
            Err(e) => warn!("worker {index}: could not pin to a CPU ({e}); running unpinned"),
        }
    }
}

/// One look at an exact stop: once every worker has paused (no worker reads on, so the readings'
/// frontier is final: the lowest capability they announced, which this worker's own view may lag)
/// and every output below that frontier is delivered (the durable frontier
/// has reached it, and the sinks hold nothing undelivered), commits there and halts (`true`);
/// the sources stay open (their capabilities hold the frontier) until every worker has halted.
///
/// Consistency: every reading below the frontier entered windows that closed below it, and
/// their outputs were delivered; a reading at or above it is in an open window, whose outputs
/// have not been written. So committing the offsets up to the first reading whose outputs are not
/// all delivered, with the frontier as the point below which a restart writes nothing again, and
/// how far each partition was read (its `late`, `errors` and `raw` records were delivered), loses
/// and repeats nothing. No worker commits before it has heard every worker's pause (another could
/// still be reading and move the frontier), and none closes its inputs before every worker has
/// halted: the frontier would move on to the lowest capability left and close windows that a
/// worker not yet halted would write, partial (the chaos test in `tests/kafka.rs` found this).
///
/// With checkpoints, the stop ends with a checkpoint instead of a commit: the state as of the
/// latest boundary below the frontier that every worker holds, the frontier as what was
/// delivered, every record read counted as read (see [`Checkpointer::stop_at`]).
fn exact_stop(
    driver: &mut SourceDriver,
    checkpointer: Option<&mut Checkpointer>,
    router: &mut Router,
    (notices, peers): (&mut FailureNotices, usize),
    (durable, watermark): (Option<Time>, Option<Time>),
) -> Result<bool, JobError> {
    // Where the frontier stops, from what every worker announced; `None` inside: every source
    // already finished, and this is the end of the input, drained as usual.
    let Some(Some(frontier)) = notices.pause_frontier(peers) else { return Ok(false) };
    router.flush_for_stop()?;
    // This worker's view of the frontier, and of what is delivered, has caught up with it.
    if !router.settled() || watermark.is_none_or(|w| w < frontier) || durable.is_none_or(|d| d < frontier) {
        return Ok(false);
    }
    match checkpointer {
        Some(c) => {
            if !c.stop_at((driver, router, notices), frontier)? {
                return Ok(false);
            }
        }
        None => driver.commit_last(frontier, frontier)?,
    }
    router.halt();
    Ok(true)
}

/// One progress line (and the Kafka lag, when reading Kafka).
fn log_progress(metrics: &Metrics, new_readings: u64, elapsed: Duration, closed_to: Option<Time>) {
    info!(
        "readings {} ({:.0}/s), watermark {}, windows closed to {}, windows out {}, alerts {}, late {}, errors {}",
        Metrics::get(&metrics.readings),
        new_readings as f64 / elapsed.as_secs_f64(),
        metrics.watermark().map(encode::rfc3339).unwrap_or_else(|| "done".into()),
        closed_to.map(encode::rfc3339).unwrap_or_else(|| "done".into()),
        metrics.out_of(Timing::WindowClose),
        metrics.out_of(Timing::Detection),
        Metrics::get(&metrics.late),
        Metrics::get(&metrics.malformed),
    );
    let lag = metrics.kafka_lag.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !lag.is_empty() {
        let total: i64 = lag.values().sum();
        let each: Vec<String> = lag.iter().map(|(p, l)| format!("{p}={l}")).collect();
        info!("kafka lag {total}: {}", each.join(" "));
    }
}

/// When every enabled output derived from a reading of event time `ts` has been emitted: the
/// latest [`Analysis::settles`] of the enabled analyses with a routed output. With checkpoints
/// every `every` ms, a reading is settled by the first checkpoint after it, when the state it
/// went into is saved, if that comes earlier.
fn completion(params: &fleetflow_dataflows::Params, analyses: &Analyses, router: &Router, every: Time) -> impl Fn(Time) -> Time + 'static {
    let routed: Vec<(&'static dyn Analysis, _)> = analyses
        .iter()
        .filter(|(a, _)| a.spec().outputs.iter().any(|o| StreamName::parse(o.name).is_some_and(|s| router.wants(s))))
        .map(|(a, s)| (*a, s.clone()))
        .collect();
    let p = params.clone();
    move |ts| {
        let settles = routed.iter().map(|(a, s)| a.settles(ts, &p, s)).fold(ts, Time::max);
        if every > 0 {
            settles.min(fleetflow_dataflows::time::align(ts, every) + every - 1)
        } else {
            settles
        }
    }
}
