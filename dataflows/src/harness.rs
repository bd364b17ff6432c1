//! A test harness for analyses: runs one analysis on hand-built readings, in arrival order, with
//! the job's watermark rule and any number of timely workers in this process, and returns its
//! output streams as JSON lines, so a test compares them with a sequential oracle's.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;

use differential_dataflow::input::InputSession;
use timely::dataflow::operators::capture::{Capture, Event};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::InputHandleVec;

use crate::analysis::{self, Analysis, AnalysisError, Core, Settings};
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
}

impl Default for Setup {
    fn default() -> Self {
        Setup { workers: 1, lateness: 5_000, clock: 1_764_064_800_000, params: Params::default(), tables: Vec::new() }
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
    let (tx, rx) = mpsc::channel::<Event<Time, Vec<(&'static str, String)>>>();
    let (late_tx, late_rx) = mpsc::channel::<Reading>();
    let (err_tx, err_rx) = mpsc::channel::<AnalysisError>();
    let arrivals = Arc::new(arrivals);
    let setup = Arc::new(setup.clone());
    let settings = Arc::new(settings);
    let guards = timely::execute(timely::Config::process(setup.workers), move |worker| {
        let tx = tx.clone();
        let (late_tx, err_tx) = (late_tx.clone(), err_tx.clone());
        let mut input: InputHandleVec<Time, Reading> = InputHandleVec::new();
        let mut rows: InputSession<Time, (Vin, SensorRow), isize> = InputSession::new();
        let mut buggy: InputSession<Time, SensorId, isize> = InputSession::new();
        let mut tables: Vec<(&'static str, InputSession<Time, String, isize>)> =
            analysis.spec().tables.iter().map(|t| (t.name, InputSession::new())).collect();
        let built = worker.dataflow::<Time, _, _>(|scope| {
            let clock = setup.clock;
            let mut core = Core::new(
                input.to_stream(scope),
                rows.to_collection(scope),
                buggy.to_collection(scope),
                &setup.params,
                analysis.spec().uses_offsets,
                std::rc::Rc::new(move || clock),
            );
            for (name, session) in tables.iter_mut() {
                core.add_table(analysis.spec().name, name, session.to_collection(scope));
            }
            let mut sink = |name: &'static str, records: timely::dataflow::StreamVec<'_, Time, crate::output::Encoded>| {
                records.map(move |e| (name, String::from_utf8_lossy(&e.line).trim_end().to_string())).capture_into(tx.clone());
            };
            analysis::build(&mut core, &[(analysis, (*settings).clone())], &mut sink)
        });
        if let Err(e) = built {
            let _ = err_tx.send(e);
        }
        if worker.index() == 0 {
            let mut versions = TableVersions::new(setup.tables.clone());
            versions.advance(0, &mut tables);
            let mut inputs = Inputs { readings: &mut input, rows: &mut rows, buggy: &mut buggy, tables: &mut tables };
            feed(worker, &setup, &arrivals, &mut inputs, &mut versions, &late_tx);
        }
    })
    .map_err(AnalysisError::Workers)?;
    drop(guards.join());
    if let Ok(e) = err_rx.try_recv() {
        return Err(e);
    }
    let streams = collect(analysis, &rx);
    Ok(Run { streams, late: late_rx.try_iter().collect() })
}

/// A table's input.
type Tables = Vec<(&'static str, InputSession<Time, String, isize>)>;

/// The inputs worker 0 feeds.
struct Inputs<'a> {
    readings: &'a mut InputHandleVec<Time, Reading>,
    rows: &'a mut InputSession<Time, (Vin, SensorRow), isize>,
    buggy: &'a mut InputSession<Time, SensorId, isize>,
    tables: &'a mut Tables,
}

/// The versions of a run's tables, applied to their inputs as the run's time passes them.
struct TableVersions {
    pending: std::iter::Peekable<std::vec::IntoIter<(&'static str, Time, Vec<String>)>>,
    current: BTreeMap<&'static str, Vec<String>>,
}

impl TableVersions {
    fn new(mut versions: Vec<(&'static str, Time, Vec<String>)>) -> Self {
        versions.sort_by_key(|(_, t, _)| *t);
        TableVersions { pending: versions.into_iter().peekable(), current: BTreeMap::new() }
    }

    /// Applies the versions due by `time` (each at its own time), then advances the tables to `time`.
    fn advance(&mut self, time: Time, tables: &mut Tables) {
        while let Some((name, at, lines)) = self.pending.next_if(|(_, at, _)| *at <= time) {
            for (n, session) in tables.iter_mut().filter(|(n, _)| *n == name) {
                session.advance_to(at.max(*session.time()));
                for old in self.current.remove(n).unwrap_or_default() {
                    session.remove(old);
                }
                for line in &lines {
                    session.insert(line.clone());
                }
                self.current.insert(name, lines.clone());
            }
        }
        for (_, session) in tables.iter_mut() {
            session.advance_to(time);
            session.flush();
        }
    }
}

/// Worker 0 sends the arrivals in order, holding the inputs at the watermark (the highest event
/// time seen less the lateness): an arrival below it is late and goes to `late`.
fn feed(
    worker: &mut timely::worker::Worker,
    setup: &Setup,
    arrivals: &[Reading],
    inputs: &mut Inputs<'_>,
    versions: &mut TableVersions,
    late: &mpsc::Sender<Reading>,
) {
    let mut max_seen: Option<Time> = None;
    for r in arrivals {
        let watermark = max_seen.map_or(0, |m| m.saturating_sub(setup.lateness));
        if r.timestamp < watermark {
            let _ = late.send(*r);
            continue;
        }
        if *inputs.readings.time() < watermark {
            inputs.readings.advance_to(watermark);
            inputs.rows.advance_to(watermark);
            inputs.buggy.advance_to(watermark);
            inputs.rows.flush();
            inputs.buggy.flush();
            versions.advance(watermark, inputs.tables);
            worker.step();
        }
        inputs.readings.send(*r);
        max_seen = Some(max_seen.map_or(r.timestamp, |m| m.max(r.timestamp)));
    }
}

/// Each declared stream's lines, sorted.
fn collect(analysis: &dyn Analysis, rx: &mpsc::Receiver<Event<Time, Vec<(&'static str, String)>>>) -> BTreeMap<String, Vec<String>> {
    let mut streams: BTreeMap<String, Vec<String>> = analysis.spec().outputs.iter().map(|o| (o.name.to_string(), Vec::new())).collect();
    for event in rx.try_iter() {
        if let Event::Messages(_, records) = event {
            for (name, line) in records {
                streams.entry(name.to_string()).or_default().push(line);
            }
        }
    }
    for lines in streams.values_mut() {
        lines.sort();
    }
    streams
}
