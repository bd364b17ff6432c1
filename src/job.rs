//! Running the job: one timely worker per thread builds the dataflow (sources -> parse ->
//! analyses -> route -> sinks), then loops reading its partitions, applying reference edits and
//! stepping the dataflow until every input is finished and every output flushed.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::input::InputSession;
use fleetflow_dataflows::analyses::daily_speeders::LiveDailySpeeders;
use fleetflow_dataflows::analysis::Core;
use fleetflow_dataflows::reference::{SensorId, SensorRow};
use fleetflow_dataflows::{Time, Vin};
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::core::unordered_input::UnorderedInput;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Inspect, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};
use tracing::{debug, error, info, warn};

use crate::config::{Config, SourceKind};
use crate::encode::{self, Encoded};
use crate::failure::{FailureNotices, Notice};
use crate::live::LiveState;
use crate::metrics::Metrics;
use crate::reference::{parse_buggy, parse_vin_sensors, table_parser, ReferenceError, Watched};
use crate::rejected::Rejected;
use crate::route::{Router, StreamName};
use crate::sinks::plan::SinkPlan;
use crate::sources::archive::{ArchiveListing, ArchivePartition};
use crate::sources::archive_store::ArchiveStore;
use crate::sources::driver::SourceInputs;
use crate::sources::file::FilePartition;
use crate::sources::generator::{FleetConfig, FleetPartition};
use crate::sources::{Partition, Poll, SourceDriver};

/// Errors that stop the job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A reference file is missing or invalid at start-up.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A source failed.
    #[error(transparent)]
    Source(#[from] crate::sources::SourceError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkError),
    /// An AWS sink could not be set up.
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    /// An analysis could not be built (a setting out of range).
    #[error(transparent)]
    Analysis(#[from] fleetflow_dataflows::analysis::AnalysisError),
    /// Timely could not start its workers.
    #[error("starting workers: {0}")]
    Workers(String),
    /// Another worker failed (this one stopped reading and committed nothing after it).
    #[error("stopped: {0}")]
    Peer(String),
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records read from sources.
    pub records_read: u64,
    /// Readings accepted.
    pub readings: u64,
    /// Blank lines.
    pub blank: u64,
    /// Malformed records.
    pub malformed: u64,
    /// Late readings.
    pub late: u64,
    /// Records out per routed stream, in [`StreamName::all`] order.
    pub out: Vec<(StreamName, u64)>,
}

impl Summary {
    fn of(m: &Metrics, routed: &[StreamName]) -> Self {
        Summary {
            records_read: Metrics::get(&m.records_read),
            readings: Metrics::get(&m.readings),
            blank: Metrics::get(&m.blank),
            malformed: Metrics::get(&m.malformed),
            late: Metrics::get(&m.late),
            out: routed.iter().map(|&s| (s, m.out(s))).collect(),
        }
    }
}

/// Runs the job to the end of its input (or until `stop` is set), returning its counts.
pub fn run(config: Config, stop: Arc<AtomicBool>) -> Result<Summary, JobError> {
    let mut metrics = Metrics::new(config.workers);
    metrics.lateness_ms = config.windows.allowed_lateness_ms;
    run_with(config, stop, Arc::new(metrics))
}

/// Runs the job with counters the caller keeps (and may have set up to measure latency).
pub fn run_with(config: Config, stop: Arc<AtomicBool>, metrics: Arc<Metrics>) -> Result<Summary, JobError> {
    config.validate()?;
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%3f").to_string();
    // Check the reference files before starting workers, so a missing file is a clear start-up
    // error (worker 0, in process 0, is the one that reads them).
    if config.cluster.process == 0 {
        if let Some(p) = &config.reference.vin_sensors {
            Watched::open(p, parse_vin_sensors)?;
        }
        if let Some(p) = &config.reference.buggy_sensors {
            Watched::open(p, parse_buggy)?;
        }
        for (_, table, path) in config.analysis_tables()? {
            Watched::open(&path, table_parser(table.check))?;
        }
    }
    // Connect the AWS sinks and check their delivery streams and topics before starting workers.
    let plan = Arc::new(SinkPlan::prepare(&config, metrics.clone())?);
    let archive = match config.source.kind {
        SourceKind::Archive => {
            let listing = list_archive(&config)?;
            Metrics::add(&metrics.archive_total_bytes, listing.total_bytes());
            Some(Arc::new(listing))
        }
        _ => None,
    };
    let live = Arc::new(LiveState::new(daily_folders(&config)));
    let routed: Vec<StreamName> = config.routes().into_iter().filter(|(_, to)| !to.is_empty()).map(|(s, _)| s).collect();
    let server = match http_bind(&config) {
        None => None,
        Some(bind) => {
            let bind = bind.as_str();
            let token = (!config.http.token.is_empty()).then(|| config.http.token.clone());
            match crate::http::start(bind, token, live.clone(), metrics.clone()) {
                Ok(s) => {
                    live.serving.store(true, std::sync::atomic::Ordering::Relaxed);
                    Some(s)
                }
                // The API is for operating the job; its port being taken must not stop the job.
                Err(e) => {
                    warn!("{e}; running without the HTTP API");
                    None
                }
            }
        }
    };
    let failure: Arc<Mutex<Option<JobError>>> = Arc::new(Mutex::new(None));
    let timely_config = match config.cluster.processes {
        1 => timely::Config::process(config.workers),
        _ => timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: config.workers,
                process: config.cluster.process,
                addresses: config.cluster.addresses()?,
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        },
    };
    let shared =
        Shared { config, plan, archive, metrics: metrics.clone(), live: live.clone(), stop, failing: AtomicBool::new(false), run_id };
    let f = failure.clone();
    let guards = timely::execute(timely_config, move |worker| {
        if let Err(e) = run_worker(worker, &shared) {
            error!("worker {} failed: {e}", worker.index());
            shared.failing.store(true, std::sync::atomic::Ordering::SeqCst);
            shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            // A worker's own failure is the job's error rather than a peer's report of it.
            let mut first = f.lock().unwrap_or_else(|p| p.into_inner());
            if first.as_ref().is_none_or(|kept| matches!(kept, JobError::Peer(_)) && !matches!(e, JobError::Peer(_))) {
                *first = Some(e);
            }
        }
    })
    .map_err(JobError::Workers)?;
    drop(guards.join());
    live.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(server);
    if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let discarded = Metrics::get(&metrics.discarded);
        if discarded > 0 {
            warn!("{discarded} output records computed after the failure were not written (windows closed by the stop are partial; a Kafka source derives them again from its committed offsets)");
        }
        return Err(e);
    }
    Ok(Summary::of(&metrics, &routed))
}

/// How much event time around replayed days is read for context: a sliding window and one slide
/// before (an alert looks back one slide) and after (windows starting in the days end after them),
/// and one tumbling window.
pub fn replay_margin(params: &fleetflow_dataflows::Params) -> Time {
    params.sliding_size_ms + params.sliding_slide_ms + params.tumbling_ms
}

/// Lists the archive hours a replay reads (its days plus the margin, plus the slack).
pub fn list_archive(config: &Config) -> Result<ArchiveListing, JobError> {
    let r = &config.replay;
    let Some((start, end)) = config.replay_days()? else {
        return Err(crate::config::ConfigError::Invalid("replay.from: empty; give the first day to replay".into()).into());
    };
    let aws = crate::aws::AwsSettings {
        region: r.region.clone(),
        endpoint_url: r.endpoint_url.clone(),
        request_timeout: Duration::from_secs(60),
    };
    let store = ArchiveStore::open(&r.archive, &aws)?;
    let margin = replay_margin(&config.params());
    Ok(ArchiveListing::list(store, (start.saturating_sub(margin), end.saturating_add(margin)), r.slack_secs.saturating_mul(1000))?)
}

/// The HTTP address of this process: the configured port plus the process index (so processes
/// of a cluster on one host do not collide), or none.
fn http_bind(config: &Config) -> Option<String> {
    let bind = &config.http.bind;
    if bind.is_empty() {
        return None;
    }
    match bind.parse::<std::net::SocketAddr>() {
        Ok(mut addr) if addr.port() != 0 => {
            addr.set_port(addr.port().saturating_add(config.cluster.process as u16));
            Some(addr.to_string())
        }
        _ => Some(bind.clone()),
    }
}

/// The folders of folder sinks that receive `daily_speeders` (where closed days are read back).
fn daily_folders(config: &Config) -> Vec<std::path::PathBuf> {
    let routes = config.routes();
    let Some((_, to)) = routes.iter().find(|(s, _)| *s == StreamName::DAILY_SPEEDERS) else { return Vec::new() };
    config
        .sinks
        .values()
        .enumerate()
        .filter(|(i, _)| to.contains(i))
        .filter_map(|(_, s)| match s {
            crate::config::SinkConfig::Folder { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

fn partitions_for(
    config: &Config,
    archive: Option<&Arc<ArchiveListing>>,
    metrics: &Arc<Metrics>,
    index: usize,
    peers: usize,
) -> Result<Vec<Box<dyn Partition>>, JobError> {
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
        SourceKind::Kafka => out = crate::sources::kafka::partitions_for(&config.kafka, index, peers)?,
        SourceKind::Generator => {
            let g = &config.generator;
            let start_ms = if g.realtime { crate::sources::driver::now_ms() } else { config.generator_start()? };
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

/// Attaches an output stream to the router: hand each encoded record to the stream's sinks.
///
/// The returned stream's frontier is how far this stream's output is durable: the operator holds a
/// capability for the times of records its sinks have not flushed yet, so a probe on it tells what
/// every worker has delivered (what Kafka offsets may be committed for). Its records are failure
/// notices (see [`crate::failure`]). `tap` sees each batch after its hand-off, with its timely time,
/// and then the input frontier.
fn route<'scope>(
    stream: StreamVec<'scope, Time, Encoded>,
    name: StreamName,
    router: &std::rc::Rc<std::cell::RefCell<Router>>,
    mut tap: impl FnMut(&[Encoded], Time, Option<Time>) + 'static,
) -> StreamVec<'scope, Time, Notice> {
    let router = router.clone();
    let wanted = router.borrow().wants(name);
    let stream = if router.borrow().sealed(name) {
        // Sealed files hold all records of one event hour: they are gathered on one worker.
        use timely::dataflow::operators::core::Exchange;
        stream.exchange(move |record: &Encoded| record.time / 3_600_000)
    } else {
        stream
    };
    let scope = stream.scope();
    let worker = scope.index();
    stream.unary_frontier(Local, name.as_str(), move |_cap, info| {
        router.borrow_mut().on_flush(scope.activator_for(info.address));
        // Times not yet durable, with where the sinks stood when they were written.
        let mut held: Vec<(crate::route::FlushMark, timely::dataflow::operators::Capability<Time>)> = Vec::new();
        let mut announced = false;
        move |(input, frontier),
              output: &mut timely::dataflow::operators::generic::OutputBuilderSession<
            '_,
            Time,
            timely::container::CapacityContainerBuilder<Vec<Notice>>,
        >| {
            input.for_each_stamp(|cap, data| {
                let mut router = router.borrow_mut();
                let time = cap.least().copied().unwrap_or(0);
                let mut wrote = false;
                for batch in data {
                    if wanted && !router.suppressed(name, time) {
                        wrote |= router.write(name, time, batch) > 0;
                        if name == StreamName::SPEED_WINDOWS {
                            // Windows travel at their last millisecond: they ended at `time + 1`.
                            router.metrics().windows_handed_off(time + 1, batch.len() as u64);
                        }
                    }
                    tap(batch, time, None);
                    batch.clear();
                }
                if wrote {
                    if let Some(c) = cap.retain_least(0) {
                        // One entry per time, waiting for the latest records written at it (or one
                        // per flush, when nothing was flushed since the last entry was written).
                        let mark = router.mark(name);
                        let merge = held.last().is_some_and(|(m, last)| last.time() == c.time() || !router.delivered_since(name, m));
                        match held.last_mut() {
                            Some((m, last)) if merge => {
                                *m = mark;
                                if c.time() < last.time() {
                                    *last = c;
                                }
                            }
                            _ => held.push((mark, c)),
                        }
                    }
                }
            });
            let sealed_to = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            tap(&[], sealed_to, Some(sealed_to));
            if wanted {
                router.borrow_mut().seal(name, sealed_to);
            }
            let router = router.borrow();
            if !announced {
                // The job failed: before letting go of records the failure may have lost (a failed
                // sink settles them), tell every worker at the earliest time still held, so none
                // commits offsets past them (see `failure`).
                if let (Some(failure), Some((_, cap))) = (router.failure(), held.iter().min_by_key(|(_, c)| *c.time())) {
                    output.session(cap).give(Notice::Failed(format!("worker {worker} failed: {failure}")));
                    announced = true;
                }
            }
            held.retain(|(mark, _)| !router.durable(name, mark));
        }
    })
}

/// A batch handed off (with its timely time), or the input frontier (with no batch).
type Tap = Box<dyn FnMut(&[Encoded], Time, Option<Time>)>;

/// What the runtime does with a batch of a stream after its hand-off: feed the live state behind
/// the HTTP API and the latency measurements.
fn tap_for(name: StreamName, live: &Arc<LiveState>, metrics: &Arc<Metrics>) -> Tap {
    let (live, metrics) = (live.clone(), metrics.clone());
    match name {
        StreamName::DAILY_SPEEDERS => Box::new(move |days, _, frontier| {
            live.note_days(days);
            if let Some(f) = frontier {
                live.days_closed_to(f);
            }
        }),
        StreamName::ALERTS => Box::new(move |alerts, time, _| {
            if alerts.is_empty() {
                return;
            }
            // Alerts travel at their window's last millisecond.
            metrics.alerts_handed_off(std::iter::repeat_n(time + 1, alerts.len()));
            live.note_alerts(alerts.iter().map(|a| String::from_utf8_lossy(&a.line).trim_end().to_string()))
        }),
        _ => Box::new(|_, _, _| {}),
    }
}

type RefInputs = (InputSession<Time, (Vin, SensorRow), isize>, InputSession<Time, SensorId, isize>, Vec<InputSession<Time, String, isize>>);

/// What the workers of a process share.
struct Shared {
    config: Config,
    plan: Arc<SinkPlan>,
    /// The archive a replay reads, listed once.
    archive: Option<Arc<ArchiveListing>>,
    metrics: Arc<Metrics>,
    live: Arc<LiveState>,
    stop: Arc<AtomicBool>,
    /// A worker of this process failed: nothing more is written or committed (set before `stop`).
    failing: AtomicBool,
    /// Names this run's output files.
    run_id: String,
}

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<(), JobError> {
    let Shared { config, plan, archive, metrics, live, stop, failing, run_id } = shared;
    let archive = archive.as_ref();
    let index = worker.index();
    // This process's workers are numbered from `process * workers`.
    let local = index - config.cluster.process * config.workers;
    let peers = worker.peers();
    if config.pin_workers && config.workers > 1 {
        match crate::affinity::pin_current_thread(index) {
            Ok(Some(cpu)) => debug!("worker {index} pinned to CPU {cpu}"),
            Ok(None) => {}
            Err(e) => warn!("worker {index}: could not pin to a CPU ({e}); running unpinned"),
        }
    }
    let params = config.params();
    let analyses = &config.analyses()?;
    let router = std::rc::Rc::new(std::cell::RefCell::new(Router::new(
        plan.build(&format!("p{:03}-w{index:03}-{run_id}", config.cluster.process))?,
        &config.routes(),
        metrics.clone(),
    )));
    if let Some((start, end)) = config.replay_days()? {
        router.borrow_mut().keep_only(start, end);
    }
    let mut rows_input: InputSession<Time, (Vin, SensorRow), isize> = InputSession::new();
    let mut buggy_input: InputSession<Time, SensorId, isize> = InputSession::new();
    // The analyses' reference tables: their files (read by worker 0) and their sessions.
    let table_files = config.analysis_tables()?;
    let mut table_inputs: Vec<InputSession<Time, String, isize>> = table_files.iter().map(|_| InputSession::new()).collect();
    let watermark_probe = ProbeHandle::new();
    let done_probe = ProbeHandle::new();

    let inputs = worker.dataflow::<Time, _, _>(|scope| {
        let ((readings_handle, readings_cap), readings) = scope.new_unordered_input();
        let ((late_handle, late_cap), late) = scope.new_unordered_input::<timely::container::CapacityContainerBuilder<Vec<Rejected>>>();
        let ((errors_handle, errors_cap), errors) =
            scope.new_unordered_input::<timely::container::CapacityContainerBuilder<Vec<Rejected>>>();
        let ((reread_handle, reread_cap), reread) = scope.new_unordered_input();
        let readings: StreamVec<'_, Time, fleetflow_dataflows::Reading> = readings;
        // Each output operator's failure notices (see `failure`).
        let mut notices = Vec::new();
        if router.borrow().wants(StreamName::RAW) {
            // Only when routed: a second consumer of the readings costs a copy of every batch.
            // (Readings an earlier run archived before it stopped exactly are not archived again.)
            notices.push(route(readings.clone().map(|r| encode::raw(&r)), StreamName::RAW, &router, |_, _, _| {}));
        }
        let readings = readings.concat(reread).probe_with(&watermark_probe);
        let rows = rows_input.to_collection(scope);
        let buggy = buggy_input.to_collection(scope);
        let keep_offsets = analyses.iter().any(|(a, _)| a.spec().uses_offsets);
        let clock: fleetflow_dataflows::analysis::Clock = std::rc::Rc::new(crate::sources::driver::now_ms);
        let mut core = Core::new(readings, rows, buggy, &params, keep_offsets, clock);
        for ((analysis, table, _), session) in table_files.iter().zip(table_inputs.iter_mut()) {
            core.add_table(analysis, table.name, session.to_collection(scope));
        }
        // Each output is attached to its sinks as its analysis declares it, so the first streams
        // are handed off before later analyses run in the same step.
        let attach: &mut fleetflow_dataflows::analysis::OutputSink<'_, '_> = &mut |stream, records| {
            let name = StreamName::parse(stream).unwrap_or(StreamName::ERRORS);
            notices.push(route(records, name, &router, tap_for(name, live, metrics)));
        };
        let published = fleetflow_dataflows::analysis::build(&mut core, analyses, attach);
        // The latest window of each vehicle, for the HTTP API (after the outputs' hand-off). Built
        // whether or not this process serves the API: every process of a cluster must build the
        // same dataflow (one without an API would otherwise mismatch channels and stall progress).
        let (l, serving) = (live.clone(), live.serving.load(std::sync::atomic::Ordering::Relaxed));
        core.speed_windows().inspect_core(move |event| {
            if let (true, Ok((_, windows))) = (serving, event) {
                l.note_windows(windows);
            }
        });
        notices.push(route(late.map(|r| encode::rejected(&r)), StreamName::LATE, &router, |_, _, _| {}));
        notices.push(route(errors.map(|r| encode::rejected(&r)), StreamName::ERRORS, &router, |_, _, _| {}));
        let (failures, notices) = FailureNotices::build(scope, notices);
        notices.probe_with(&done_probe);
        let inputs = SourceInputs {
            readings: (readings_handle, readings_cap),
            reread: (reread_handle, reread_cap),
            late: (late_handle, late_cap),
            errors: (errors_handle, errors_cap),
        };
        published.map(|published| (inputs, failures, published.into_iter().find_map(|p| p.downcast::<LiveDailySpeeders>().ok())))
    });
    let (inputs, mut failures, live_daily) = inputs?;
    let queries = live.register();

    // Worker 0 owns the reference files; every worker advances its (empty) sessions alike.
    let mut watchers = None;
    if index == 0 {
        let mut vin = None;
        let mut bug = None;
        if let Some(p) = &config.reference.vin_sensors {
            let (w, rows) = Watched::open(p, parse_vin_sensors)?;
            live.note_reference((&rows, &[]), (&[], &[]));
            for r in rows {
                rows_input.insert(r);
            }
            vin = Some(w);
        }
        if let Some(p) = &config.reference.buggy_sensors {
            let (w, ids) = Watched::open(p, parse_buggy)?;
            live.note_reference((&[], &[]), (&ids, &[]));
            for s in ids {
                buggy_input.insert(s);
            }
            bug = Some(w);
        }
        watchers = Some((vin, bug));
    }
    let mut table_watchers: Vec<Option<Watched<String>>> = Vec::new();
    for ((analysis, table, path), session) in table_files.iter().zip(table_inputs.iter_mut()) {
        if index != 0 {
            table_watchers.push(None);
            continue;
        }
        let (w, lines) = Watched::open(path, table_parser(table.check))?;
        info!("analysis {analysis}: table {} from {}: {} lines", table.name, path.display(), lines.len());
        for line in lines {
            session.insert(line);
        }
        table_watchers.push(Some(w));
    }
    let mut refs: Option<RefInputs> = Some((rows_input, buggy_input, table_inputs));

    let partitions = partitions_for(config, archive, metrics, index, peers)?;
    let mut driver = SourceDriver::new(partitions, inputs, config.windows.allowed_lateness_ms, params.tumbling_ms, metrics.clone())
        .with_idle_timeout(Duration::from_millis(config.kafka.idle_timeout_ms))
        .with_max_future((config.windows.max_future_secs > 0).then(|| Duration::from_secs(config.windows.max_future_secs)))
        .with_completion(completion(&params, analyses, &router.borrow()));
    if config.source.kind == SourceKind::Kafka {
        // Outputs an earlier run delivered (below the durable frontier it committed) are not written again.
        let resume = crate::sources::kafka::resume_frontier(&config.kafka)?;
        if resume > 0 {
            info!("resuming from committed offsets: outputs before {} were delivered", encode::rfc3339(resume));
        }
        router.borrow_mut().suppress_below(resume);
    }
    let poll_every = Duration::from_millis(config.reference.poll_interval_ms);
    let progress_every = Duration::from_secs(config.progress_interval_secs.max(1));
    let mut last_poll = Instant::now();
    let started = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    let mut failed: Option<JobError> = None;
    // A stop of a Kafka source keeps the open windows open for the restart (unless `drain`).
    let exact = config.source.kind == SourceKind::Kafka && !config.drain;
    let mut phase = Phase::Reading;
    // The dataflow is built and the sources are open.
    live.ready.store(true, std::sync::atomic::Ordering::Relaxed);

    loop {
        // (`fail` sets `failing` before `stop`: read in this order, a failure is never taken for a stop.)
        let failing_now = failing.load(std::sync::atomic::Ordering::SeqCst);
        let stopping = stop.load(std::sync::atomic::Ordering::SeqCst);
        if phase == Phase::Reading && exact && !failing_now && (stopping || failures.pause_heard()) {
            phase = Phase::Paused;
            failures.announce_pause(index);
            if local == 0 {
                info!("stopping: reading paused; delivering what the closed windows produced, then committing (open windows stay open for the restart)");
            }
        }
        // A failure or a draining stop closes the sources but not the dataflow: every worker steps
        // on until the dataflow has drained, so no peer waits forever on this one.
        if failing_now || (phase == Phase::Reading && stopping) {
            driver.close();
        }
        let status = match phase {
            Phase::Reading => driver.pump(16_384).unwrap_or_else(|e| {
                fail(&mut failed, e.into(), stop, failing);
                Poll::Pending
            }),
            Phase::Paused | Phase::Halted => Poll::Pending,
        };
        // Once a worker of this process failed, nothing more is written: closing the sources
        // closes every window, and those written now would be partial; all of it is derived again
        // from the uncommitted readings at the next start.
        if failing_now {
            router.borrow_mut().halt();
        }
        if let Some(w) = metrics.watermarks.get(local) {
            w.store(driver.watermark().unwrap_or(u64::MAX), std::sync::atomic::Ordering::Relaxed);
        }
        metrics.note_watermarks();

        // The job's watermark, as the dataflow sees it after the exchange of progress.
        let watermark = watermark_probe.with_frontier(|f| f.first().copied());
        failures.follow(watermark);
        // (A peer's failure is not announced again: every worker hears the peer's own notice.)
        if let Some(e) = failed.as_ref().filter(|e| !matches!(e, JobError::Peer(_))) {
            failures.announce(&format!("worker {index} failed: {e}"));
        }
        if let Some((rows, buggy, tables)) = refs.as_mut() {
            match watermark {
                Some(w) => {
                    // Advance first: an edit takes effect at the current watermark, after every
                    // window that has already closed (those were emitted at times below it).
                    if *rows.time() < w {
                        rows.advance_to(w);
                        buggy.advance_to(w);
                        for t in tables.iter_mut() {
                            t.advance_to(w);
                        }
                    }
                    if last_poll.elapsed() >= poll_every {
                        last_poll = Instant::now();
                        if let Some((vin, bug)) = watchers.as_mut() {
                            if let Some(d) = apply_edits(vin.as_mut(), rows, metrics) {
                                live.note_reference((&d.added, &d.removed), (&[], &[]));
                            }
                            if let Some(d) = apply_edits(bug.as_mut(), buggy, metrics) {
                                live.note_reference((&[], &[]), (&d.added, &d.removed));
                            }
                        }
                        for (watched, table) in table_watchers.iter_mut().zip(tables.iter_mut()) {
                            apply_edits(watched.as_mut(), table, metrics);
                        }
                    }
                    rows.flush();
                    buggy.flush();
                    for t in tables.iter_mut() {
                        t.flush();
                    }
                }
                // Every source of every worker is finished: no more reference changes matter.
                None => refs = None,
            }
        }
        if refs.is_none() {
            // Every source is finished: flush at once rather than on the buffering hints, so the
            // output operators see their records durable and the dataflow can complete.
            if let Err(e) = router.borrow_mut().flush() {
                fail(&mut failed, e.into(), stop, failing);
            }
            if done_probe.done() {
                break;
            }
        }

        match status {
            Poll::Ready => {
                worker.step();
            }
            _ => {
                // Nothing to read now: sleep briefly. 1 ms keeps window hand-off latency low (a
                // watermark step takes a few steps to reach the sinks) at little CPU cost.
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
        }
        // Queries from the HTTP API, answered between steps from this worker's open windows.
        while let Ok(q) = queries.try_recv() {
            LiveState::answer(q, live_daily.as_deref());
        }
        router.borrow_mut().poll();
        if let Err(e) = router.borrow_mut().check() {
            fail(&mut failed, e.into(), stop, failing);
        }
        // What every worker's sinks have delivered: the sources may commit what lies before it,
        // unless a worker failed (its sinks may have lost records below this frontier: it reaches
        // here only after the failure's notice, see `failure`).
        let durable = done_probe.with_frontier(|f| f.first().copied());
        if phase != Phase::Halted {
            commit_unless_failed(&mut driver, durable, false, failures.heard(), &mut failed, (stop, failing));
        }
        if phase == Phase::Paused && !failing.load(std::sync::atomic::Ordering::SeqCst) {
            let stopped = exact_stop(&mut driver, &mut router.borrow_mut(), &failures, peers, (durable, watermark));
            phase = stopped.unwrap_or_else(|e| {
                fail(&mut failed, e, stop, failing);
                Phase::Paused
            });
            if phase == Phase::Halted && local == 0 {
                let at = watermark.map(encode::rfc3339).unwrap_or_default();
                info!("stopped exactly: every output before {at} delivered and its offsets committed; a restart from them continues the open windows");
            }
        }

        if last_progress.0.elapsed() >= progress_every {
            let lags = driver.lags();
            if !lags.is_empty() {
                metrics.kafka_lag.lock().unwrap_or_else(|p| p.into_inner()).extend(lags);
            }
            let readings = Metrics::get(&metrics.readings);
            if local == 0 {
                log_progress(metrics, readings - last_progress.1, last_progress.0.elapsed(), watermark);
            }
            last_progress = (Instant::now(), readings);
        }
    }
    if let Err(e) = router.borrow_mut().flush() {
        fail(&mut failed, e.into(), stop, failing);
    }
    if phase != Phase::Halted {
        commit_unless_failed(&mut driver, None, true, failures.heard(), &mut failed, (stop, failing));
    }
    if local == 0 {
        info!("worker {index} finished in {:.2}s", started.elapsed().as_secs_f64());
    }
    failed.map_or(Ok(()), Err)
}

/// One progress line (and the Kafka lag, when reading Kafka).
fn log_progress(metrics: &Metrics, new_readings: u64, elapsed: Duration, closed_to: Option<Time>) {
    info!(
        "readings {} ({:.0}/s), watermark {}, windows closed to {}, windows out {}, alerts {}, late {}, errors {}",
        Metrics::get(&metrics.readings),
        new_readings as f64 / elapsed.as_secs_f64(),
        metrics.watermark().map(encode::rfc3339).unwrap_or_else(|| "done".into()),
        closed_to.map(encode::rfc3339).unwrap_or_else(|| "done".into()),
        metrics.out(StreamName::SPEED_WINDOWS),
        metrics.out(StreamName::ALERTS),
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
/// latest [`Analysis::settles`](fleetflow_dataflows::analysis::Analysis::settles) of the enabled
/// analyses with a routed output.
fn completion(
    params: &fleetflow_dataflows::Params,
    analyses: &[(&'static dyn fleetflow_dataflows::analysis::Analysis, fleetflow_dataflows::analysis::Settings)],
    router: &Router,
) -> impl Fn(Time) -> Time + 'static {
    let routed: Vec<_> = analyses
        .iter()
        .filter(|(a, _)| a.spec().outputs.iter().any(|o| StreamName::parse(o.name).is_some_and(|s| router.wants(s))))
        .map(|(a, s)| (*a, s.clone()))
        .collect();
    let p = params.clone();
    move |ts| routed.iter().map(|(a, s)| a.settles(ts, &p, s)).fold(ts, Time::max)
}

/// Where a worker is in an exact stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading its sources (a draining stop stays here: its sources are closed).
    Reading,
    /// Reading paused with the input capabilities where they were: waiting for every worker to
    /// pause and for what the closed windows produced to be delivered.
    Paused,
    /// Committed at the stop's frontier: nothing more is written or committed while the dataflow
    /// drains (the windows it closes now would be partial).
    Halted,
}

/// One look at an exact stop: once every worker has paused (no worker reads on, so the readings'
/// frontier is final) and every output below that frontier is delivered (the durable frontier
/// has reached it, and the sinks hold nothing undelivered), commits there and halts.
///
/// Consistency: every reading below the frontier entered windows that closed below it, and
/// their outputs were delivered; a reading at or above it is in an open window, whose outputs
/// have not been written. So committing the offsets up to the first reading whose outputs are not
/// all delivered, with the frontier as the point below which a restart writes nothing again, and
/// how far each partition was read (its `late`, `errors` and `raw` records were delivered), loses
/// and repeats nothing. No worker closes its inputs before it has heard every worker's pause, so
/// the frontier cannot move past the stop while any worker still writes.
fn exact_stop(
    driver: &mut SourceDriver,
    router: &mut Router,
    notices: &FailureNotices,
    peers: usize,
    (durable, watermark): (Option<Time>, Option<Time>),
) -> Result<Phase, JobError> {
    // Every source already finished: this is the end of the input, drained as usual.
    let Some(frontier) = watermark.filter(|_| notices.paused() >= peers) else { return Ok(Phase::Paused) };
    router.flush_for_stop()?;
    if !router.settled() || durable.is_none_or(|d| d < frontier) {
        return Ok(Phase::Paused);
    }
    driver.commit_stop(frontier)?;
    router.halt();
    driver.close();
    Ok(Phase::Halted)
}

/// Commits what the durable frontier allows (`None`: everything read), unless this worker failed,
/// another worker of the process did, or a notice of a failure was `heard` (then this worker fails
/// too: it stops reading and commits nothing more).
fn commit_unless_failed(
    driver: &mut SourceDriver,
    durable: Option<Time>,
    force: bool,
    heard: Option<String>,
    failed: &mut Option<JobError>,
    (stop, failing): (&AtomicBool, &AtomicBool),
) {
    if let Some(notice) = heard {
        fail(failed, JobError::Peer(notice), stop, failing);
    }
    // (`fail` sets `failing` whenever it keeps an error, so this covers this worker's own.)
    if !failing.load(std::sync::atomic::Ordering::SeqCst) {
        if let Err(e) = driver.commit(durable, force) {
            fail(failed, e.into(), stop, failing);
        }
    }
}

/// Keeps the first error of a worker, tells the process's workers that one failed, and asks every
/// source to stop.
fn fail(failed: &mut Option<JobError>, e: JobError, stop: &AtomicBool, failing: &AtomicBool) {
    if failed.is_none() {
        error!("{e}; stopping the sources and draining the dataflow");
        failing.store(true, std::sync::atomic::Ordering::SeqCst);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        *failed = Some(e);
    }
}

/// Applies a reference file's edits, if any, and returns them.
fn apply_edits<T: Ord + Clone + differential_dataflow::Data>(
    watched: Option<&mut Watched<T>>,
    input: &mut InputSession<Time, T, isize>,
    metrics: &Metrics,
) -> Option<crate::reference::Diff<T>> {
    let w = watched?;
    match w.reload() {
        Ok(None) => None,
        Ok(Some(diff)) => {
            info!(
                "reference {}: {} rows added, {} removed, at watermark {}",
                w.path().display(),
                diff.added.len(),
                diff.removed.len(),
                input.time()
            );
            for r in &diff.removed {
                input.remove(r.clone());
            }
            for a in &diff.added {
                input.insert(a.clone());
            }
            Metrics::add(&metrics.reference_updates, 1);
            Some(diff)
        }
        Err(e) => {
            warn!("{e}; keeping the last good version");
            Metrics::add(&metrics.reference_errors, 1);
            None
        }
    }
}
