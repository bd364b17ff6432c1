//! Running the job: checks what must be checked before workers start (reference files, AWS sinks,
//! the archive a replay reads), starts the HTTP API and one timely worker per thread, each of which
//! builds the dataflow (`dataflow`: sources -> parse -> analyses -> route -> sinks) and runs the
//! worker loop (`worker`) until every input is finished or the job stops (`stopping`).

mod checkpointer;
mod dataflow;
pub mod info;
pub mod partitions;
mod reference_versions;
mod references;
mod stopping;
mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetflow_dataflows::Time;
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::Hooks;
use tracing::{debug, warn};

use crate::checkpoints::objects::Objects;
use crate::checkpoints::store::{StateStore, StoreError};
use crate::config::KafkaSinkConfig;
use crate::config::{Config, SourceKind, ValidConfig};
use crate::operations::date_queries::DateQuery;
use crate::operations::live_state::LiveState;
use crate::operations::metrics::Metrics;
use crate::reference_files::{parse_buggy, parse_vin_sensors, table_parser, ReferenceError, Watched};
use crate::sinks::plan::SinkPlan;
use crate::sources::archive::store::ArchiveStore;
use crate::sources::archive::ArchiveListing;
use crate::sources::files::split::SplitInput;
use crate::stream::StreamName;

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
    /// A Kafka broker did not answer, or a topic could not be created.
    #[error(transparent)]
    KafkaAdmin(#[from] crate::kafka_admin::KafkaAdminError),
    /// A source could not be opened.
    #[error(transparent)]
    Open(#[from] crate::job::partitions::OpenError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkError),
    /// An AWS sink could not be set up.
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    /// An analysis could not be built (a setting out of range).
    #[error(transparent)]
    Analysis(#[from] fleetflow_dataflows::analysis::AnalysisError),
    /// The HTTP API asked for could not be started (its address is taken, for example).
    #[error("{0}")]
    Http(String),
    /// The processes of the cluster did not connect.
    #[error(transparent)]
    Peers(#[from] crate::peer_sockets::PeerError),
    /// Timely could not start its workers.
    #[error("starting workers: {0}")]
    Workers(String),
    /// The state store failed, or holds a checkpoint this job cannot restore.
    #[error("{0}")]
    Checkpoint(String),
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
pub fn run(config: ValidConfig, stop: Arc<AtomicBool>) -> Result<Summary, JobError> {
    let mut metrics = Metrics::new(config.workers);
    metrics.lateness_ms = config.windows.allowed_lateness_ms;
    run_with(config, stop, Arc::new(metrics))
}

/// Runs the job with counters the caller keeps (and may have set up to measure latency).
pub fn run_with(config: ValidConfig, stop: Arc<AtomicBool>, metrics: Arc<Metrics>) -> Result<Summary, JobError> {
    let config = config.into_inner();
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%3f").to_string();
    check_reference_files(&config)?;
    check_brokers(&config)?;
    // Connect the AWS sinks and check their delivery streams and topics before starting workers.
    let checkpointing = config.checkpointing().then(|| (config.state_name(), config.checkpoints.interval_secs.saturating_mul(1000)));
    let plan = Arc::new(SinkPlan::prepare(&config.sinks, &config.routes()?, checkpointing, metrics.clone())?);
    let archive = match config.source.kind {
        SourceKind::Archive => {
            let listing = list_archive(&config)?;
            Metrics::add(&metrics.archive_total_bytes, listing.total_bytes());
            Some(Arc::new(listing))
        }
        _ => None,
    };
    let routes = config.routes()?;
    let live = Arc::new(LiveState::new(date_queries(&config, &routes)?));
    let routed: Vec<StreamName> = routes.into_iter().filter(|(_, to)| !to.is_empty()).map(|(s, _)| s).collect();
    let server = start_http(&config, &live, &metrics)?;
    let failure: Arc<Mutex<Option<JobError>>> = Arc::new(Mutex::new(None));
    let (allocators, network) = timely_allocators(&config)?;
    let state = open_state(&config)?;
    let splits = split_files(&config)?;
    let shared = Shared {
        config,
        plan,
        archive,
        splits,
        metrics: metrics.clone(),
        live: live.clone(),
        stop,
        failing: AtomicBool::new(false),
        run_id,
        state,
    };
    let f = failure.clone();
    let guards = timely::execute::execute_from(allocators, network, timely::WorkerConfig::default(), move |worker| {
        if let Err(e) = worker::WorkerLoop::start(worker, &shared).and_then(worker::WorkerLoop::run) {
            shared.failing.store(true, std::sync::atomic::Ordering::SeqCst);
            shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            keep_first_failure(&mut f.lock().unwrap_or_else(|p| p.into_inner()), worker.index(), e);
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

/// The files this process's workers read together, each started cutting into chunks (see
/// [`crate::config::SourceConfig::splits_files`]); none when each file is one worker's.
fn split_files(config: &Config) -> Result<Vec<Arc<SplitInput>>, JobError> {
    let source = &config.source;
    if !source.splits_files(config.workers, config.cluster.processes) {
        return Ok(Vec::new());
    }
    let max_future = (config.windows.max_future_secs > 0).then(|| config.windows.max_future_secs.saturating_mul(1000));
    let chunk = (source.chunk_kib as usize).saturating_mul(1024);
    let opened: Result<Vec<_>, _> = source.files.iter().map(|path| SplitInput::open(path, config.workers, chunk, max_future)).collect();
    Ok(opened?)
}

/// Keeps a worker's failure as the job's error (printed once, at the command line's edge) unless
/// one is kept already; a worker's own failure is the job's error rather than a peer's report of
/// it. Another error than the one kept is logged.
fn keep_first_failure(first: &mut Option<JobError>, worker: usize, e: JobError) {
    debug!("worker {worker} failed: {e}");
    match first {
        // A peer's report is replaced by this worker's own failure.
        Some(kept) if !matches!(kept, JobError::Peer(_)) || matches!(e, JobError::Peer(_)) => {
            if kept.to_string() != e.to_string() && !matches!(e, JobError::Peer(_)) {
                warn!("worker {worker} also failed: {e}");
            }
        }
        _ => *first = Some(e),
    }
}

/// Checks that the Kafka brokers of the source and of each Kafka sink answer, so that an
/// unreachable broker is named at once rather than after the client's own timeouts, and that
/// the sinks' topics exist.
fn check_brokers(config: &Config) -> Result<(), JobError> {
    if config.source.kind == crate::config::SourceKind::Kafka {
        crate::kafka_admin::check_reachable(&config.kafka.brokers, "kafka.brokers (--kafka-brokers)")?;
    }
    let routes = config.routes()?;
    for (name, sink) in &config.sinks {
        if let crate::config::SinkConfig::Kafka(KafkaSinkConfig { brokers, topic, .. }) = sink {
            crate::kafka_admin::check_reachable(brokers, &format!("sinks.{name}.brokers"))?;
            // The topics of the streams routed here: created (the broker's defaults) if missing,
            // rather than every record timing out minutes later.
            for stream in routes.iter().filter(|(_, to)| to.contains(name)).map(|(s, _)| s) {
                let t = topic.replace("{stream}", stream.as_str());
                let created = crate::kafka_admin::ensure_topic_replicated(brokers, &t, -1, -1)
                    .map_err(|e| crate::config::ConfigError::Invalid(format!("sinks.{name}.topic: {e}")))?;
                if created {
                    tracing::info!("sinks.{name}: created topic {t} for {stream} (the broker's default partitions and replication)");
                }
            }
        }
    }
    Ok(())
}

/// Checks the reference files before starting workers, so a missing file is a clear start-up
/// error (worker 0, in process 0, is the one that reads them).
fn check_reference_files(config: &Config) -> Result<(), JobError> {
    if config.cluster.process != 0 {
        return Ok(());
    }
    if let Some(p) = &config.reference.vin_sensors {
        Watched::open(p, parse_vin_sensors)?;
    }
    if let Some(p) = &config.reference.buggy_sensors {
        Watched::open(p, parse_buggy)?;
    }
    for (_, table, path) in config.analysis_tables()? {
        Watched::open(&path, table_parser(table.check))?;
    }
    Ok(())
}

/// Starts the HTTP API, if configured. An address asked for explicitly that cannot be bound stops
/// the job; the default one only warns (the job runs on without the API).
fn start_http(config: &Config, live: &Arc<LiveState>, metrics: &Arc<Metrics>) -> Result<Option<crate::operations::http::Server>, JobError> {
    let Some(bind) = http_bind(config) else { return Ok(None) };
    let token = (!config.http.token.is_empty()).then(|| config.http.token.clone());
    match crate::operations::http::start(&bind, token, info::job_info(config), live.clone(), metrics.clone()) {
        Ok(s) => {
            live.serving.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(Some(s))
        }
        Err(e) if config.http.required => Err(JobError::Http(e.to_string())),
        Err(e) => {
            warn!("{e}; running without the HTTP API");
            Ok(None)
        }
    }
}

/// Timely's allocators: this process's workers, connected to the other processes' when there
/// are several (see [`crate::peer_sockets`]), and what keeps the network threads alive.
fn timely_allocators(config: &Config) -> Result<(Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>), JobError> {
    if config.cluster.processes == 1 {
        return timely::CommunicationConfig::Process(config.workers).try_build().map_err(JobError::Workers);
    }
    let (threads, process) = (config.workers, config.cluster.process);
    let timeout = Duration::from_secs(config.cluster.connect_timeout_secs);
    let sockets = crate::peer_sockets::connect(&config.cluster.addresses()?, process, timeout)?;
    let hooks = Hooks::default();
    let local = ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, process, threads, hooks).map_err(|e| JobError::Workers(e.to_string()))?;
    Ok((builders.into_iter().map(AllocatorBuilder::Tcp).collect(), Box::new(guard)))
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
    let Some((start, end)) = config.replay_days() else {
        return Err(crate::config::ConfigError::Invalid("replay.from: empty; give the first day to replay".into()).into());
    };
    let aws = crate::aws::AwsSettings {
        region: r.region.clone(),
        endpoint_url: r.endpoint_url.clone(),
        request_timeout: Duration::from_secs(60),
    };
    let store = ArchiveStore::open(&r.archive, &aws)?;
    let margin = replay_margin(&config.params());
    let listing =
        ArchiveListing::list(store, (start.saturating_sub(margin), end.saturating_add(margin)), r.slack_secs.saturating_mul(1000))?;
    if listing.objects() == 0 {
        // (Replaying nothing and reporting success would look like a quiet day.)
        return Err(crate::config::ConfigError::Invalid(format!(
            "replay.archive: {:?} holds no raw/YYYY/MM/DD/HH files for {} to {}; the archive is what a run writes with `raw` routed to a sink (off by default: add [routes] raw = [\"local\"]), or replay from Kafka with --kafka-brokers",
            r.archive,
            crate::encode::rfc3339(start),
            crate::encode::rfc3339(end)
        ))
        .into());
    }
    Ok(listing)
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

/// The enabled analyses' queries by date, each reading closed days back from the sinks its
/// stream is routed to that store records.
fn date_queries(config: &Config, routes: &crate::stream::Routes) -> Result<Vec<DateQuery>, JobError> {
    let mut queries = Vec::new();
    for (analysis, _) in config.analyses()? {
        for spec in analysis.spec().queries {
            let to = routes.iter().find(|(s, _)| s.as_str() == spec.stream).map(|(_, to)| to.as_slice()).unwrap_or_default();
            let stores = to.iter().filter_map(|name| config.sinks.get(name)?.stored()).collect();
            queries.push(DateQuery::new(spec, stores));
        }
    }
    Ok(queries)
}

/// The group's offsets were committed with the checkpoint at `at`, which this start cannot use.
fn missing_checkpoint(config: &Config, at: Time, why: &str) -> JobError {
    JobError::Checkpoint(format!(
        "kafka.group {}: its offsets were committed with the checkpoint of {}, and the records before them are in that checkpoint's state, but {why}, or start elsewhere (--start earliest or a time) to read again",
        config.kafka.group,
        crate::encode::rfc3339(at)
    ))
}

/// What the workers of a process share.
pub(crate) struct Shared {
    config: Config,
    plan: Arc<SinkPlan>,
    /// The archive a replay reads, listed once.
    archive: Option<Arc<ArchiveListing>>,
    /// The files split among this process's workers (none: each file is one worker's).
    splits: Vec<Arc<SplitInput>>,
    metrics: Arc<Metrics>,
    live: Arc<LiveState>,
    stop: Arc<AtomicBool>,
    /// A worker of this process failed: nothing more is written or committed (set before `stop`).
    failing: AtomicBool,
    /// Names this run's output files.
    run_id: String,
    /// The state store of a checkpointed job, and the checkpoint it restores.
    state: Option<State>,
}

/// A checkpointed job's store, and what it restores (none: it starts afresh).
pub(crate) struct State {
    store: Arc<StateStore>,
    restore: Option<Arc<crate::checkpoints::store::Loaded>>,
    shape: String,
    /// The latest complete checkpoint the process's first worker saw in the store: the
    /// process's other workers read it here rather than each listing the store.
    completed: Arc<std::sync::atomic::AtomicU64>,
}

/// The state store of a job with checkpoints on (a Kafka source, or a generator told to resume):
/// the latest complete checkpoint when it resumes (from committed positions, or `--resume`);
/// when it starts elsewhere, the old checkpoints go.
fn open_state(config: &Config) -> Result<Option<State>, JobError> {
    let fail = |e: StoreError| JobError::Checkpoint(e.to_string());
    if config.checkpoints.measure_only {
        let store = StateStore::new(Objects::open(&config.checkpoints.dir, &config.checkpoints.aws_settings()).map_err(fail)?, "measure");
        let shape = checkpointer::shape(config)?;
        return Ok(Some(State { store: Arc::new(store), restore: None, shape, completed: Default::default() }));
    }
    let kafka = config.source.kind == SourceKind::Kafka;
    let resuming = !kafka || config.kafka.start == crate::sources::kafka::Start::Committed;
    if !config.checkpointing() {
        if let Some(at) = (kafka && resuming).then(|| crate::sources::kafka::checkpointed(&config.kafka)).transpose()?.flatten() {
            return Err(missing_checkpoint(config, at, "checkpoints are off (--no-checkpoints); turn them on"));
        }
        return Ok(None);
    }
    let objects = Objects::open(&config.checkpoints.dir, &config.checkpoints.aws_settings()).map_err(fail)?;
    let store = StateStore::new(objects, config.state_name());
    let shape = checkpointer::shape(config)?;
    let exact = exactly_once_sink(config);
    let restore = if resuming {
        if let Some((name, sink, t)) = &exact {
            complete_committed(&store, (name, sink, t))?;
        }
        let loaded = store.latest(&shape, config.params().correction_horizon_ms).map_err(fail)?;
        match &loaded {
            Some(l) => tracing::info!(
                "restoring the checkpoint of {} from {}: outputs before {} were delivered",
                crate::encode::rfc3339(l.restored.at),
                store.location(),
                crate::encode::rfc3339(l.durable)
            ),
            None => no_checkpoint(config, &store)?,
        }
        loaded.map(Arc::new)
    } else {
        let removed = store.clear().map_err(fail)?;
        if removed > 0 {
            tracing::info!("kafka.start is {}: removed {removed} older checkpoints from {}", config.kafka.start, store.location());
        }
        None
    };
    if let Some((_, sink, t)) = exact.filter(|_| restore.is_none() && config.cluster.process == 0) {
        // A fresh start: an earlier run's last commit must not vouch for this run's checkpoints.
        crate::sinks::kafka::progress::reset(&sink.brokers, &t, &sink.properties)?;
    }
    Ok(Some(State { store: Arc::new(store), restore, shape, completed: Default::default() }))
}

/// A resuming job whose store holds no checkpoint: a Kafka group whose offsets were committed
/// with one cannot start (the records before them are in its state); otherwise the job starts
/// from the group's offsets, or the fleet afresh.
fn no_checkpoint(config: &Config, store: &StateStore) -> Result<(), JobError> {
    if config.source.kind != SourceKind::Kafka {
        tracing::info!("no checkpoint in {}: starting the fleet afresh", store.location());
        return Ok(());
    }
    if let Some(at) = crate::sources::kafka::checkpointed(&config.kafka)? {
        return Err(missing_checkpoint(config, at, &format!("{} holds none; point --state-dir at the folder that does", store.location())));
    }
    tracing::info!("no checkpoint in {}: starting from the group's committed offsets", store.location());
    Ok(())
}

/// The job's exactly-once Kafka sink (at most one): its name, settings and transactional id.
fn exactly_once_sink(config: &Config) -> Option<(&str, &KafkaSinkConfig, crate::sinks::kafka::Transactional)> {
    config.sinks.iter().find_map(|(name, sink)| match sink {
        crate::config::SinkConfig::Kafka(k) => k.transactional(name, &config.kafka.group).map(|t| (name.as_str(), k, t)),
        _ => None,
    })
}

/// If the exactly-once sink's last transaction committed the outputs of a checkpoint that was not
/// marked complete (the job died between the two), marks it: the restart restores it, and
/// writes nothing the transaction made visible again.
fn complete_committed(
    store: &StateStore,
    (name, sink, t): (&str, &KafkaSinkConfig, &crate::sinks::kafka::Transactional),
) -> Result<(), JobError> {
    let Some(last) = crate::sinks::kafka::progress::latest(&sink.brokers, t, &sink.properties)? else { return Ok(()) };
    if last.checkpoint > 0 && store.complete_if_whole(last.checkpoint).map_err(|e| JobError::Checkpoint(e.to_string()))? {
        tracing::info!(
            "sinks.{name}: the transaction of the checkpoint of {} committed before the checkpoint was marked complete; marked it",
            crate::encode::rfc3339(last.at)
        );
    }
    Ok(())
}
