//! A test harness for analyses: runs one analysis on hand-built readings, in arrival order, with
//! the job's watermark rule and any number of timely workers in this process, and returns its
//! output streams as JSON lines, so a test compares them with a sequential oracle's.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;

use differential_dataflow::input::InputSession;
use timely::dataflow::operators::capture::{Capture, Event};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;
use timely::dataflow::InputHandleVec;

use crate::analysis::{self, Analysis, AnalysisError, Core, Settings};
use crate::checkpoint::Checkpoints;
use crate::params::Params;
use crate::reading::{Reading, Vin};
use crate::reference::{SensorId, SensorRow};
use crate::time::Time;

/// What a harness run produced.
#[derive(Debug, Default, PartialEq)]
pub struct Run {
    /// Each output stream's JSON lines (without the newline), sorted.
    pub streams: BTreeMap<String, Vec<String>>,
    /// The readings that arrived behind the watermark (the job's `late` stream).
    pub late: Vec<Reading>,
}

/// How to run: the workers, the allowed lateness and the processing-time clock.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Timely worker threads.
    pub workers: usize,
    /// The watermark is the highest event time seen minus this, as in the job.
    pub lateness: Time,
    /// What [`Context::clock`](crate::analysis::Context::clock) returns.
    pub clock: Time,
    /// The job's parameters.
    pub params: Params,
    /// Versions of the analysis's reference tables: `(table, time, lines)`, each replacing the
    /// table's previous version from `time` on (the watermark at which the job read the edit).
    pub tables: Vec<(&'static str, Time, Vec<String>)>,
    /// Versions of the vin-to-sensor table: `(time, rows)`, each in force from `time` on.
    pub vin_sensors: Vec<(Time, Vec<(Vin, SensorRow)>)>,
    /// Versions of the buggy-sensor list: `(time, sensors)`, each in force from `time` on.
    pub buggy_sensors: Vec<(Time, Vec<SensorId>)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            workers: 1,
            lateness: 5_000,
            clock: 1_764_064_800_000,
            params: Params::default(),
            tables: Vec::new(),
            vin_sensors: Vec::new(),
            buggy_sensors: Vec::new(),
        }
    }
}

/// Runs `analysis` with `settings` on `arrivals` (in arrival order).
///
/// # Examples
/// ```
/// use fleetflow_dataflows::analyses::unit_transform::UnitTransform;
/// use fleetflow_dataflows::harness::{run, Setup};
/// use fleetflow_dataflows::{Reading, Vin};
///
/// let vin = Vin::parse(b"1HGCM82633A000001").unwrap();
/// let reading = Reading { record_id: 7, timestamp: 1_764_064_860_000, vin, lon: 2.35, lat: 48.85, speed: 50.0 };
/// let out = run(&UnitTransform, Default::default(), vec![reading], &Setup::default()).unwrap();
/// assert_eq!(out.streams["readings_converted"], vec![
///     "{\"record_id\":7,\"timestamp\":\"2025-11-25T10:01:00.000Z\",\"vin\":\"1HGCM82633A000001\",\"lon\":2.35,\"lat\":48.85,\"speed\":80.4672,\"unit\":\"km/h\",\"processed_at\":\"2025-11-25T10:00:00.000Z\"}",
/// ]);
/// ```
pub fn run(analysis: &'static dyn Analysis, settings: Settings, arrivals: Vec<Reading>, setup: &Setup) -> Result<Run, AnalysisError> {
    let plan = Plan { workers: setup.workers, every: 0, restored: None, arrivals: arrivals.len() };
    let done = execute(analysis, settings, arrivals, setup, plan)?;
    Ok(Run { streams: sorted(done.lines.into_iter().map(|(_, name, line)| (name, line))), late: done.late })
}

/// A run stopped and restored from a checkpoint: what a crash and a restart of the job do.
#[derive(Clone, Debug)]
pub struct Restart {
    /// Checkpoint interval, ms (a multiple of the tumbling window).
    pub every: Time,
    /// Arrivals the first run reads before it stops (without closing its windows).
    pub stop_after: usize,
    /// Workers of the restored run.
    pub workers: usize,
    /// Restore the checkpoint's boundary but none of its state (to show that the state matters).
    pub drop_state: bool,
}

/// Runs `analysis` on `arrivals` with checkpoints, stops after `restart.stop_after` arrivals,
/// and restores the latest checkpoint every worker completed into a new run of
/// `restart.workers` workers that reads every arrival again (as a source re-reads from an
/// earlier position): readings before the checkpoint's boundary `T` are in the restored state
/// and are dropped. Returns the first run's outputs before `T` with the second's from `T` on,
/// and `T` (`None`: no checkpoint completed, and the second run starts afresh).
pub fn run_restarted(
    analysis: &'static dyn Analysis,
    settings: Settings,
    arrivals: Vec<Reading>,
    setup: &Setup,
    restart: &Restart,
) -> Result<(Run, Option<Time>), AnalysisError> {
    let plan = Plan { workers: setup.workers, every: restart.every, restored: None, arrivals: restart.stop_after };
    let first = execute(analysis, settings.clone(), arrivals.clone(), setup, plan)?;
    // The latest boundary every worker's operators saved; with no stateful operator, the latest
    // boundary the watermark passed (nothing to save: every reading after it is read again).
    let watermark = watermark_after(&arrivals[..restart.stop_after], setup.lateness);
    let stateless = first.checkpoints.iter().all(|(_, saved)| saved.is_none());
    let at = if stateless {
        Some(align_to(watermark, restart.every)).filter(|t| *t > 0)
    } else {
        let sets = first
            .checkpoints
            .iter()
            .map(|(_, saved)| saved.iter().flat_map(|s| s.keys().copied()).collect::<std::collections::BTreeSet<_>>());
        sets.reduce(|a, b| &a & &b).and_then(|common| common.last().copied())
    };
    let restored = at.map(|at| {
        let mut restored = crate::checkpoint::Restored { at, ..Default::default() };
        for saved in first.checkpoints.iter().filter_map(|(_, s)| s.as_ref()).filter(|_| !restart.drop_state) {
            for (name, bytes) in &saved[&at].states {
                restored.states.entry(name.clone()).or_default().push(bytes.clone());
            }
            // Increments: every one a worker kept up to the boundary (as the runtime keeps those
            // of the complete checkpoints within the horizon).
            for (name, bytes) in saved.range(..=at).flat_map(|(_, s)| &s.increments) {
                restored.increments.entry(name.clone()).or_default().push(bytes.clone());
            }
        }
        restored
    });
    let plan = Plan { workers: restart.workers, every: restart.every, restored, arrivals: arrivals.len() };
    let second = execute(analysis, settings, arrivals, setup, plan)?;
    let from = at.unwrap_or(0);
    let before = first.lines.into_iter().filter(|(t, _, _)| *t < from);
    let after = second.lines.into_iter().filter(|(t, _, _)| *t >= from);
    // A reading late in the first run is late again when read again: counted once.
    let again: Vec<Reading> = second.late.into_iter().filter(|r| !first.late.contains(r)).collect();
    let mut late = first.late;
    late.extend(again);
    Ok((Run { streams: sorted(before.chain(after).map(|(_, name, line)| (name, line))), late }, at))
}

/// The watermark after `arrivals`: the highest event time less the lateness.
fn watermark_after(arrivals: &[Reading], lateness: Time) -> Time {
    arrivals.iter().map(|r| r.timestamp).max().map_or(0, |m| m.saturating_sub(lateness))
}

fn align_to(t: Time, every: Time) -> Time {
    crate::time::align(t, every.max(1))
}

/// What one execution does.
struct Plan {
    workers: usize,
    every: Time,
    restored: Option<crate::checkpoint::Restored>,
    /// How many arrivals it reads.
    arrivals: usize,
}

/// One worker's complete checkpoints by boundary.
type WorkerCheckpoints = BTreeMap<Time, Saved>;

/// What a worker saved for a boundary: each snapshot operator's state, each increments operator's
/// increment.
struct Saved {
    states: Vec<(String, Vec<u8>)>,
    increments: Vec<(String, Vec<u8>)>,
}

/// What one execution produced: output lines with their times, late readings, and each worker's
/// complete checkpoints (boundary -> operator states).
struct Done {
    lines: Vec<(Time, String, String)>,
    late: Vec<Reading>,
    /// (None: the worker has no stateful operator.)
    checkpoints: Vec<(usize, Option<WorkerCheckpoints>)>,
}

/// One execution: builds the analysis on `plan.workers` workers and feeds the arrivals.
fn execute(
    analysis: &'static dyn Analysis,
    settings: Settings,
    arrivals: Vec<Reading>,
    setup: &Setup,
    plan: Plan,
) -> Result<Done, AnalysisError> {
    let (tx, rx) = mpsc::channel::<Event<Time, Vec<(&'static str, String)>>>();
    let (late_tx, late_rx) = mpsc::channel::<Reading>();
    let (err_tx, err_rx) = mpsc::channel::<AnalysisError>();
    let (ck_tx, ck_rx) = mpsc::channel();
    let arrivals = Arc::new(arrivals);
    let setup = Arc::new(setup.clone());
    let settings = Arc::new(settings);
    let (workers, every, restored, count) = (plan.workers, plan.every, Arc::new(plan.restored), plan.arrivals);
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let tx = tx.clone();
        let (late_tx, err_tx) = (late_tx.clone(), err_tx.clone());
        let checkpoints = Checkpoints::every(every, (*restored).clone(), (worker.index(), worker.peers()));
        let probe = timely::dataflow::ProbeHandle::new();
        let mut input: InputHandleVec<Time, Reading> = InputHandleVec::new();
        let mut rows: InputSession<Time, (Vin, SensorRow), isize> = InputSession::new();
        let mut buggy: InputSession<Time, SensorId, isize> = InputSession::new();
        let mut tables: Tables = analysis.spec().tables.iter().map(|t| (t.name, InputSession::new())).collect();
        let built = worker.dataflow::<Time, _, _>(|scope| {
            let clock = setup.clock;
            let mut core = Core::new(
                input.to_stream(scope),
                rows.to_collection(scope),
                buggy.to_collection(scope),
                &setup.params,
                analysis.uses_offsets(true),
                std::rc::Rc::new(move || clock),
            )
            .with_checkpoints(checkpoints.clone());
            for (name, session) in tables.iter_mut() {
                core.add_table(analysis.spec().name, name, session.to_collection(scope));
            }
            let mut sink = |name: &'static str, records: timely::dataflow::StreamVec<'_, Time, crate::output::Encoded>| {
                records
                    .probe_with(&probe)
                    .map(move |e| (name, String::from_utf8_lossy(&e.line).trim_end().to_string()))
                    .capture_into(tx.clone());
            };
            analysis::build(&mut core, &[(analysis, (*settings).clone())], &mut sink)
        });
        if let Err(e) = built {
            let _ = err_tx.send(e);
        }
        // Worker 0 feeds every input; the others close theirs at once.
        let mut inputs = Some((input, rows, buggy, tables));
        if worker.index() == 0 {
            if let Some(owned) = inputs.as_mut() {
                let mut inputs = Inputs::new(&setup, owned, &checkpoints);
                let restored_at = restored.as_ref().as_ref().map_or(0, |r| r.at);
                feed(worker, &setup, (&arrivals[..count], restored_at), &mut inputs, &late_tx);
            }
        } else {
            inputs = None;
        }
        // A stop, not a drain: every worker steps until the outputs' frontier has reached the
        // watermark the fed arrivals give, and the checkpoints are read before the inputs close.
        let watermark = watermark_after(&arrivals[..count], setup.lateness).max(restored.as_ref().as_ref().map_or(0, |r| r.at));
        while probe.less_than(&watermark) {
            worker.step();
            learn_complete(&checkpoints);
        }
        let _ = ck_tx.send((worker.index(), complete(&checkpoints)));
        drop(inputs);
    })
    .map_err(AnalysisError::Workers)?;
    drop(guards.join());
    if let Ok(e) = err_rx.try_recv() {
        return Err(e);
    }
    Ok(Done { lines: timed_lines(&rx), late: late_rx.try_iter().collect(), checkpoints: ck_rx.try_iter().collect() })
}

/// The captured output lines with their times.
fn timed_lines(rx: &mpsc::Receiver<Event<Time, Vec<(&'static str, String)>>>) -> Vec<(Time, String, String)> {
    let mut lines = Vec::new();
    for event in rx.try_iter() {
        if let Event::Messages(time, records) = event {
            let time = time.least().copied().unwrap_or(Time::MAX);
            lines.extend(records.into_iter().map(|(name, line)| (time, name.to_string(), line)));
        }
    }
    lines
}

/// A worker's complete checkpoints (none if it has no stateful operator).
fn complete(checkpoints: &Checkpoints) -> Option<WorkerCheckpoints> {
    let owned = |saved: Vec<(String, crate::checkpoint::SavedBytes)>| saved.into_iter().map(|(n, b)| (n, b.to_vec())).collect();
    let saved = checkpoints.complete_all().into_iter();
    let saved =
        saved.map(|t| (t, Saved { states: owned(checkpoints.states_at(t)), increments: owned(checkpoints.increments_at(t)) })).collect();
    (!checkpoints.operators().is_empty()).then_some(saved)
}

/// As the runtime learns that checkpoints completed, one behind the latest saved (so that
/// increments overlap, as they do when a checkpoint completes late).
fn learn_complete(checkpoints: &Checkpoints) {
    if let Some(t) = checkpoints.complete_all().iter().rev().nth(1) {
        checkpoints.completed_through(*t);
    }
}

/// Each stream's lines, sorted.
fn sorted(lines: impl Iterator<Item = (String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, line) in lines {
        streams.entry(name).or_default().push(line);
    }
    for lines in streams.values_mut() {
        lines.sort();
    }
    streams
}

/// The inputs worker 0 feeds, each reference input with its versions.
struct Inputs<'a> {
    readings: &'a mut InputHandleVec<Time, Reading>,
    rows: Versioned<'a, (Vin, SensorRow)>,
    buggy: Versioned<'a, SensorId>,
    tables: Vec<Versioned<'a, String>>,
    checkpoints: &'a Checkpoints,
}

/// A reference input.
type Session<T> = InputSession<Time, T, isize>;

/// The analysis's tables, by name.
type Tables = Vec<(&'static str, Session<String>)>;

/// Every input of a worker's dataflow: readings, vin-to-sensor rows, buggy sensors, tables.
type OwnedInputs = (InputHandleVec<Time, Reading>, Session<(Vin, SensorRow)>, Session<SensorId>, Tables);

/// A reference input with its versions.
type Versioned<'a, T> = (&'a mut Session<T>, Versions<T>);

/// The versions of one reference input, applied as the run's time passes them.
struct Versions<T> {
    pending: std::iter::Peekable<std::vec::IntoIter<(Time, Vec<T>)>>,
    current: Vec<T>,
}

impl<T: differential_dataflow::Data> Versions<T> {
    fn new(mut versions: Vec<(Time, Vec<T>)>) -> Self {
        versions.sort_by_key(|(t, _)| *t);
        Versions { pending: versions.into_iter().peekable(), current: Vec::new() }
    }

    /// Applies the versions due by `time` (each at its own time), then advances `session` to `time`.
    fn advance(&mut self, time: Time, session: &mut InputSession<Time, T, isize>) {
        while let Some((at, rows)) = self.pending.next_if(|(at, _)| *at <= time) {
            session.advance_to(at.max(*session.time()));
            for old in std::mem::take(&mut self.current) {
                session.remove(old);
            }
            for row in &rows {
                session.insert(row.clone());
            }
            self.current = rows;
        }
        session.advance_to(time);
        session.flush();
    }
}

/// Worker 0 sends the arrivals in order, holding the inputs at the watermark (the highest event
/// time seen less the lateness): an arrival below it is late and goes to `late`.
/// With `restored_at` above 0 the run was restored as of that time: the inputs start there, and
/// readings before it that are not late are in the restored state and are dropped.
fn feed(
    worker: &mut timely::worker::Worker,
    setup: &Setup,
    (arrivals, restored_at): (&[Reading], Time),
    inputs: &mut Inputs<'_>,
    late: &mpsc::Sender<Reading>,
) {
    let mut max_seen: Option<Time> = None;
    if restored_at > 0 {
        inputs.readings.advance_to(restored_at);
    }
    for r in arrivals {
        let watermark = max_seen.map_or(0, |m| m.saturating_sub(setup.lateness));
        if r.timestamp < watermark {
            let _ = late.send(*r);
            continue;
        }
        if r.timestamp < restored_at {
            max_seen = Some(max_seen.map_or(r.timestamp, |m| m.max(r.timestamp)));
            continue;
        }
        if *inputs.readings.time() < watermark.max(restored_at) {
            inputs.advance(watermark.max(restored_at));
            worker.step();
            learn_complete(inputs.checkpoints);
        }
        inputs.readings.send(*r);
        max_seen = Some(max_seen.map_or(r.timestamp, |m| m.max(r.timestamp)));
    }
    // The watermark after the last arrival (a stopped run's frontier stays there).
    let watermark = max_seen.map_or(0, |m| m.saturating_sub(setup.lateness)).max(restored_at);
    if *inputs.readings.time() < watermark {
        inputs.advance(watermark);
    }
}

impl<'a> Inputs<'a> {
    /// The inputs with the versions of `setup`'s reference tables, each at its first version.
    fn new(setup: &Setup, owned: &'a mut OwnedInputs, checkpoints: &'a Checkpoints) -> Self {
        let (readings, rows, buggy, tables) = owned;
        let tables = tables.iter_mut().map(|(name, session)| {
            let versions = setup.tables.iter().filter(|(n, _, _)| n == name).map(|(_, t, lines)| (*t, lines.clone()));
            (session, Versions::new(versions.collect()))
        });
        let mut inputs = Inputs {
            readings,
            rows: (rows, Versions::new(setup.vin_sensors.clone())),
            buggy: (buggy, Versions::new(setup.buggy_sensors.clone())),
            tables: tables.collect(),
            checkpoints,
        };
        inputs.advance(0);
        inputs
    }

    /// Moves every input to `watermark`, applying the reference versions due by then.
    fn advance(&mut self, watermark: Time) {
        if *self.readings.time() < watermark {
            self.readings.advance_to(watermark);
        }
        self.rows.1.advance(watermark, self.rows.0);
        self.buggy.1.advance(watermark, self.buggy.0);
        for (session, versions) in &mut self.tables {
            versions.advance(watermark, session);
        }
    }
}
