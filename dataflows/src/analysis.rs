//! The analysis API: what an analysis is given (readings, shared windows, reference data, its
//! settings, a processing-time clock), how it declares its named output streams, and how the
//! runtime builds the enabled analyses into one dataflow.
//!
//! An analysis is a unit struct implementing [`Analysis`] in a file of its own under
//! `dataflows/src/analyses/`, registered with one line in `analyses/mod.rs`. It never performs I/O:
//! the runtime feeds it and routes each output stream it declares to the sinks the configuration
//! names for that stream.

use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::VecCollection;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use crate::checkpoint::{Checkpoints, OperatorState};
use crate::output::{encode, Encoded, Output};
use crate::params::Params;
use crate::query::{LiveQuery, QuerySpec};
use crate::reading::{Reading, Vin};
use crate::reference::{arrange_timelines, timelines, SensorId, SensorRow, TimelineTrace};
use crate::schema::Field;
use crate::stats::{SpeedSample, SpeedStats, SpeedWindow};
use crate::time::Time;
use crate::windows::{Offsets, OpenWindows, Tumbling, Window};

/// One named output stream of an analysis.
#[derive(Debug)]
pub struct OutputSpec {
    /// The stream's name: its key under `[routes]`, its folder, its Firehose/Kafka `{stream}`.
    pub name: &'static str,
    /// What one record is (for `fleetflow analyses` and the docs).
    pub about: &'static str,
    /// When its records are due, for the runtime's latency measurements.
    pub timing: Timing,
    /// The fields of its JSON lines, in order (the types sinks and query engines need).
    pub fields: &'static [Field],
}

/// When an output's records are due: the runtime measures each hand-off to the sinks against it
/// (`/metrics`, the status page, `fleetflow bench`) and counts the records by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// Not measured.
    Untimed,
    /// Tumbling windows closed by the watermark: each record travels at its window's last
    /// millisecond and is due when the window's end plus the allowed lateness passes by the wall
    /// clock (the job's window latency).
    WindowClose,
    /// Detections decided on a window (alerts): each record travels at its window's last
    /// millisecond and is measured from the window's end, the allowed lateness included.
    Detection,
}

/// A setting's default value (also its type).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DefaultValue {
    /// A number.
    Number(f64),
    /// A string.
    Text(&'static str),
}

/// One setting of an analysis, under `[analyses.<name>]` in the configuration.
#[derive(Debug)]
pub struct SettingSpec {
    /// The key.
    pub name: &'static str,
    /// Its default value and type.
    pub default: DefaultValue,
    /// What it means, with its unit.
    pub about: &'static str,
    /// Its older spellings, still read.
    pub aliases: Aliases,
}

/// The older spellings of a setting, from before it was its analysis's: the runtime reads them as
/// the setting, and refuses a configuration that gives both spellings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aliases {
    /// A configuration key outside `[analyses.<name>]`, dotted (`thresholds.alert_avg_mph`).
    pub key: Option<&'static str>,
    /// A flag of `fleetflow run`, without its dashes (`alert-threshold`); it wins over the file.
    pub flag: Option<&'static str>,
}

impl Aliases {
    /// No older spelling.
    pub const NONE: Aliases = Aliases { key: None, flag: None };
}

/// A reference table of an analysis: a text file named by one of its settings, read by the runtime
/// (blank lines and `#` comments skipped), watched for edits, and given to the analysis as a
/// differential collection of its lines (an edit arrives as changes at the watermark).
#[derive(Debug)]
pub struct TableSpec {
    /// The table's name, for [`Context::table`].
    pub name: &'static str,
    /// The text setting holding the file's path.
    pub setting: &'static str,
    /// What one line is.
    pub about: &'static str,
    /// Checks one line: the runtime refuses a file (at start) or an edit (keeping the last good
    /// version) with a line that fails, naming the file, the line and the reason.
    pub check: fn(&str) -> Result<(), String>,
}

/// What an analysis is: its name, outputs and settings.
#[derive(Debug)]
pub struct Spec {
    /// The name used in `analyses.enabled`.
    pub name: &'static str,
    /// One line on what it computes.
    pub about: &'static str,
    /// The output streams it declares (it may emit only these).
    pub outputs: &'static [OutputSpec],
    /// Its settings.
    pub settings: &'static [SettingSpec],
    /// Its reference tables.
    pub tables: &'static [TableSpec],
    /// The queries by date it answers from its state (see [`crate::query`]).
    pub queries: &'static [QuerySpec],
    /// Whether it runs when the configuration does not list the enabled analyses.
    pub on_by_default: bool,
    /// Whether it uses [`Context::window_offsets`] (the tumbling windows then keep every reading's
    /// time, four bytes per reading of each open window).
    pub uses_offsets: bool,
}

/// A setting's value, as the configuration gave it.
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
}

/// An analysis's settings by key (the configuration's `[analyses.<name>]`); missing keys take
/// the defaults of its [`Spec`].
pub type Settings = BTreeMap<String, Setting>;

/// Why an analysis could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    /// A setting is missing from the spec, of the wrong type or out of range.
    #[error("analyses.{analysis}.{key}: {problem}")]
    Setting {
        /// The analysis.
        analysis: &'static str,
        /// The setting.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// The analysis emitted a stream its spec does not declare.
    #[error("analysis {analysis} emits `{stream}`, which its spec does not declare among its outputs")]
    Undeclared {
        /// The analysis.
        analysis: &'static str,
        /// The stream.
        stream: String,
    },
    /// Timely could not start its workers (in the test harness).
    #[error("starting timely workers: {0}")]
    Workers(String),
    /// The analysis published a query its spec does not declare, or one on another's stream.
    #[error("analysis {analysis} publishes query `{query}`, which its spec does not declare (or its stream is not among its outputs)")]
    UndeclaredQuery {
        /// The analysis.
        analysis: &'static str,
        /// The query.
        query: &'static str,
    },
    /// The analysis asked for reading offsets without declaring `uses_offsets`.
    #[error(
        "analysis {0} uses window offsets but does not declare them (`uses_offsets` in its spec, or `Analysis::uses_offsets` for this job)"
    )]
    Offsets(&'static str),
}

/// An analysis: builds its part of the dataflow from a [`Context`].
///
/// # Examples
/// A complete analysis (this is `dataflows/src/analyses/speeders.rs` less its tests):
/// ```
/// use fleetflow_dataflows::analysis::{Analysis, AnalysisError, Context, OutputSpec, Timing, Settings, Spec};
/// use fleetflow_dataflows::analyses::speeders::SpeederRow;
/// use fleetflow_dataflows::{Params, Time};
/// use timely::dataflow::operators::vec::{Filter, Map};
///
/// pub struct Fast;
///
/// impl Analysis for Fast {
///     fn spec(&self) -> &'static Spec {
///         &Spec {
///             name: "fast",
///             about: "tumbling windows whose top speed is above the speed limit",
///             outputs: &[OutputSpec { name: "fast", about: "a speeders row", timing: Timing::Untimed, fields: SpeederRow::FIELDS }],
///             settings: &[],
///             tables: &[],
///             queries: &[],
///             on_by_default: false,
///             uses_offsets: false,
///         }
///     }
///     fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
///         let limit = ctx.params().speed_limit_mph;
///         let fast = ctx.speed_windows().filter(move |w| w.agg.max > limit).map(SpeederRow);
///         ctx.output("fast", fast)
///     }
///     fn settles(&self, ts: Time, params: &Params, _: &Settings) -> Time {
///         fleetflow_dataflows::analysis::settles_with_tumbling(ts, params)
///     }
/// }
/// ```
pub trait Analysis: Sync {
    /// Name, outputs and settings.
    fn spec(&self) -> &'static Spec;

    /// Wires the analysis: reads inputs from `ctx` and hands each output stream to
    /// [`Context::output`].
    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError>;

    /// The latest timely time at which an output derived from a reading of event time `ts` can be
    /// emitted: the runtime commits source offsets (Kafka) only once outputs up to it are
    /// delivered. `ts` for analyses that emit at the reading's own time.
    fn settles(&self, ts: Time, params: &Params, settings: &Settings) -> Time;

    /// Whether the analysis reads the tumbling windows' reading offsets
    /// ([`Context::window_offsets`]) in a job that has a vin-to-sensor table (`has_reference`) or
    /// not: the core keeps every reading's offset only if an analysis does. By default what the
    /// spec declares.
    fn uses_offsets(&self, has_reference: bool) -> bool {
        let _ = has_reference;
        self.spec().uses_offsets
    }
}

/// The default of `spec`'s setting `key` and its configured value, if any.
fn setting<'s>(spec: &'static Spec, settings: &'s Settings, key: &str) -> Result<(DefaultValue, Option<&'s Setting>), AnalysisError> {
    let declared = spec.settings.iter().find(|s| s.name == key).ok_or_else(|| AnalysisError::Setting {
        analysis: spec.name,
        key: key.to_string(),
        problem: "not a setting of this analysis's spec".into(),
    })?;
    Ok((declared.default, settings.get(key)))
}

/// A number setting of `spec` from `settings`, or its default.
pub fn number(spec: &'static Spec, settings: &Settings, key: &str) -> Result<f64, AnalysisError> {
    match setting(spec, settings, key)? {
        (_, Some(Setting::Number(n))) => Ok(*n),
        (DefaultValue::Number(n), None) => Ok(n),
        (_, given) => Err(AnalysisError::Setting {
            analysis: spec.name,
            key: key.to_string(),
            problem: format!("{given:?} is not a number; give a number"),
        }),
    }
}

/// [`Analysis::settles`] for outputs of tumbling windows: the last millisecond of the window of `ts`.
pub fn settles_with_tumbling(ts: Time, params: &Params) -> Time {
    crate::time::align(ts, params.tumbling_ms) + params.tumbling_ms - 1
}

/// What every analysis shares: the readings, the reference collections and, built on first use,
/// the tumbling windows and the sensor timelines.
pub struct Core<'scope> {
    readings: StreamVec<'scope, Time, Reading>,
    rows: VecCollection<'scope, Time, (Vin, SensorRow)>,
    buggy: VecCollection<'scope, Time, SensorId>,
    params: Params,
    keep_offsets: bool,
    clock: Rc<dyn Fn() -> Time>,
    windows: Option<Windows<'scope>>,
    timelines: Option<Arranged<'scope, TimelineTrace>>,
    tables: BTreeMap<(&'static str, &'static str), VecCollection<'scope, Time, String>>,
    checkpoints: Checkpoints,
    /// Whether a vin-to-sensor table may ever be given (`false`: the timelines stay empty).
    reference: bool,
}

/// Tumbling windows with their readings' offsets.
type WithOffsets = Window<Vin, (SpeedStats, Offsets)>;

/// The shared tumbling windows, the reading offsets beside them, and the open panes.
struct Windows<'scope> {
    /// The tumbling operator's output with each window's reading offsets, when they are kept
    /// (without, the operator makes the speed windows directly, with nothing beside them).
    tumbling: Option<StreamVec<'scope, Time, WithOffsets>>,
    /// The speed windows as emitted, for the first analysis that asks.
    speed: StreamVec<'scope, Time, SpeedWindow>,
    /// Whether an analysis has had `speed`.
    speed_given: bool,
    /// The speed windows handed on after the first analysis's operators, for the others.
    handed_on: Option<StreamVec<'scope, Time, SpeedWindow>>,
    /// The reading offsets (built when first asked for).
    offsets: Option<StreamVec<'scope, Time, Window<Vin, Offsets>>>,
    open: OpenWindows<Vin, SpeedStats>,
}

/// Passes a stream on unchanged, batch by batch. Built after other operators, it runs after them
/// within a step: what is attached to it waits for them.
fn hand_on<'scope, D: Clone + 'static>(stream: StreamVec<'scope, Time, D>) -> StreamVec<'scope, Time, D> {
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::generic::Operator;
    stream.unary(Pipeline, "HandOn", |_, _| {
        move |input, output| {
            input.for_each_stamp(|cap, data| {
                let mut session = output.session(&cap);
                for batch in data {
                    session.give_container(batch);
                }
            });
        }
    })
}

/// The processing-time clock of the running job: epoch milliseconds.
pub type Clock = Rc<dyn Fn() -> Time>;

impl<'scope> Core<'scope> {
    /// The inputs of the analyses. `readings` travel at timely times no later than their event
    /// times; `keep_offsets` must be set if an enabled analysis [`Spec::uses_offsets`]; `clock`
    /// gives processing time (the wall clock when running, a fixed one in tests).
    pub fn new(
        readings: StreamVec<'scope, Time, Reading>,
        rows: VecCollection<'scope, Time, (Vin, SensorRow)>,
        buggy: VecCollection<'scope, Time, SensorId>,
        params: &Params,
        keep_offsets: bool,
        clock: Clock,
    ) -> Self {
        let checkpoints = Checkpoints::off();
        Core {
            readings,
            rows,
            buggy,
            params: params.clone(),
            keep_offsets,
            clock,
            windows: None,
            timelines: None,
            tables: BTreeMap::new(),
            checkpoints,
            reference: true,
        }
    }

    /// No vin-to-sensor table will ever be given (the job reads no reference file): the
    /// timelines stay empty, and a join with them need hold nothing.
    pub fn without_reference(mut self) -> Self {
        self.reference = false;
        self
    }

    /// Saves the analyses' operator state into `checkpoints` and restores what it holds.
    pub fn with_checkpoints(mut self, checkpoints: Checkpoints) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// The checkpoint registry the stateful operators save into.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// Gives analysis `analysis` its table `table`: the lines of the file, as a collection.
    pub fn add_table(&mut self, analysis: &'static str, table: &'static str, lines: VecCollection<'scope, Time, String>) {
        self.tables.insert((analysis, table), lines);
    }

    /// The job's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The readings.
    pub fn readings(&self) -> StreamVec<'scope, Time, Reading> {
        self.readings.clone()
    }

    fn windows(&mut self) -> &mut Windows<'scope> {
        let (limit, size, keep) = (self.params.speed_limit_mph, self.params.tumbling_ms, self.keep_offsets);
        let readings = self.readings.clone();
        self.windows.get_or_insert_with(|| {
            // Without offsets the operator makes speed windows directly: an open window is then
            // 24 bytes smaller, and a boundary's windows are not copied into speed windows (a
            // million of each at a million vehicles).
            let (tumbling, speed, open) = if keep {
                let (tumbling, open) = readings
                    .map(move |r| (r.vin, r.timestamp, (SpeedSample::of(&r, limit), true)))
                    .tumbling_open::<(SpeedStats, Offsets)>(size);
                let speed = tumbling.clone().map(|w| Window { key: w.key, start: w.start, end: w.end, agg: w.agg.0 });
                (Some(tumbling), speed, open.first())
            } else {
                let (speed, open) =
                    readings.map(move |r| (r.vin, r.timestamp, SpeedSample::of(&r, limit))).tumbling_open::<SpeedStats>(size);
                (None, speed, open)
            };
            Windows { tumbling, speed, speed_given: false, handed_on: None, offsets: None, open }
        })
    }

    /// Every vehicle's tumbling speed windows (built once, shared by every analysis).
    ///
    /// When windows end, every vehicle's closes in the same step. The first analysis to ask gets
    /// the windows as they are emitted; the others get them handed on by an operator built after
    /// the first one's operators (and its output's hand-off to the sinks), so the first stream
    /// (`speed_windows`, in the default order) reaches the sinks before the windows are copied and
    /// exchanged for every other analysis.
    pub fn speed_windows(&mut self) -> StreamVec<'scope, Time, SpeedWindow> {
        let w = self.windows();
        if !w.speed_given {
            w.speed_given = true;
            return w.speed.clone();
        }
        let speed = w.speed.clone();
        w.handed_on.get_or_insert_with(|| hand_on(speed)).clone()
    }

    /// The offsets of the readings in each tumbling window (built when first asked for; the core
    /// must have been made with `keep_offsets`).
    pub fn window_offsets(&mut self) -> StreamVec<'scope, Time, Window<Vin, Offsets>> {
        let w = self.windows();
        let (tumbling, speed) = (w.tumbling.clone(), w.speed.clone());
        w.offsets
            .get_or_insert_with(|| match tumbling {
                Some(t) => t.map(|w| Window { key: w.key, start: w.start, end: w.end, agg: w.agg.1 }),
                // (Made without `keep_offsets`: every window's offsets are empty, as documented.)
                None => speed.map(|w| Window { key: w.key, start: w.start, end: w.end, agg: Offsets::default() }),
            })
            .clone()
    }

    /// This worker's open tumbling windows (for answering queries from live state).
    pub fn open_windows(&mut self) -> OpenWindows<Vin, SpeedStats> {
        self.windows().open.clone()
    }

    /// The vehicles' sensor timelines, arranged by vehicle (built once).
    pub fn timelines(&mut self) -> Arranged<'scope, TimelineTrace> {
        let (rows, buggy) = (self.rows.clone(), self.buggy.clone());
        self.timelines.get_or_insert_with(|| arrange_timelines(timelines(rows, buggy))).clone()
    }
}

/// The sink of the analyses' output streams: the runtime attaches each to its sinks as it is
/// declared (so a stream declared early is handed off before later analyses run in a step).
pub type OutputSink<'scope, 'a> = dyn FnMut(&'static str, StreamVec<'scope, Time, Encoded>) + 'a;

/// What one analysis is given while it is built.
pub struct Context<'scope, 'a> {
    spec: &'static Spec,
    settings: &'a Settings,
    core: &'a mut Core<'scope>,
    sink: &'a mut OutputSink<'scope, 'a>,
    queries: &'a mut Vec<Box<dyn LiveQuery>>,
}

impl<'scope, 'a> Context<'scope, 'a> {
    /// The job's parameters (window sizes, thresholds).
    pub fn params(&self) -> &Params {
        &self.core.params
    }

    /// This analysis's settings as configured (see [`Context::number`] and [`Context::text`]).
    pub fn settings(&self) -> &Settings {
        self.settings
    }

    /// The parsed readings, at timely times no later than their event times.
    pub fn readings(&self) -> StreamVec<'scope, Time, Reading> {
        self.core.readings()
    }

    /// Every vehicle's tumbling speed windows (`params().tumbling_ms`), shared by all analyses.
    pub fn speed_windows(&mut self) -> StreamVec<'scope, Time, SpeedWindow> {
        self.core.speed_windows()
    }

    /// The offsets of the readings in each tumbling window (the spec must set `uses_offsets`).
    pub fn window_offsets(&mut self) -> Result<StreamVec<'scope, Time, Window<Vin, Offsets>>, AnalysisError> {
        if !self.spec.uses_offsets || !self.core.keep_offsets {
            return Err(AnalysisError::Offsets(self.spec.name));
        }
        Ok(self.core.window_offsets())
    }

    /// This worker's open tumbling windows.
    pub fn open_windows(&mut self) -> OpenWindows<Vin, SpeedStats> {
        self.core.open_windows()
    }

    /// The vehicles' sensor timelines, arranged by vehicle (a differential arrangement: changes to
    /// the reference files arrive as changes at the watermark).
    pub fn timelines(&mut self) -> Arranged<'scope, TimelineTrace> {
        self.core.timelines()
    }

    /// Whether a vin-to-sensor table may ever be given: `false` when the job reads none, so the
    /// timelines stay empty forever (an analysis joining with them can output nothing, and need
    /// not hold its windows for the correction horizon).
    pub fn has_reference(&self) -> bool {
        self.core.reference
    }

    /// The lines of this analysis's reference table `name` (declared in its spec's `tables`).
    pub fn table(&self, name: &str) -> Result<VecCollection<'scope, Time, String>, AnalysisError> {
        self.core.tables.iter().find(|((a, t), _)| *a == self.spec.name && *t == name).map(|(_, c)| c.clone()).ok_or_else(|| {
            AnalysisError::Setting {
                analysis: self.spec.name,
                key: self.spec.tables.iter().find(|t| t.name == name).map_or(name, |t| t.setting).to_string(),
                problem: format!("table {name:?} was not given; set the file's path"),
            }
        })
    }

    /// Processing time (epoch ms): the wall clock in the job, a fixed clock in tests.
    pub fn clock(&self) -> Clock {
        self.core.clock.clone()
    }

    /// A number setting (its default when not configured).
    pub fn number(&self, key: &str) -> Result<f64, AnalysisError> {
        number(self.spec, self.settings, key)
    }

    /// A number setting that must lie in `range`; the error names the key, the value and the range.
    pub fn number_in(&self, key: &str, range: std::ops::RangeInclusive<f64>) -> Result<f64, AnalysisError> {
        let n = self.number(key)?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(AnalysisError::Setting {
                analysis: self.spec.name,
                key: key.to_string(),
                problem: format!("{n} is out of range; use {} to {}", range.start(), range.end()),
            })
        }
    }

    /// A text setting (its default when not configured).
    pub fn text(&self, key: &str) -> Result<String, AnalysisError> {
        match setting(self.spec, self.settings, key)? {
            (_, Some(Setting::Text(s))) => Ok(s.clone()),
            (DefaultValue::Text(s), None) => Ok(s.to_string()),
            (_, given) => Err(AnalysisError::Setting {
                analysis: self.spec.name,
                key: key.to_string(),
                problem: format!("{given:?} is not text; give a quoted string"),
            }),
        }
    }

    /// Hands a declared output stream to the runtime, which encodes each record as a JSON line
    /// and routes it to the stream's sinks.
    pub fn output<D: Output>(&mut self, stream: &'static str, records: StreamVec<'scope, Time, D>) -> Result<(), AnalysisError> {
        if !self.spec.outputs.iter().any(|o| o.name == stream) {
            return Err(AnalysisError::Undeclared { analysis: self.spec.name, stream: stream.to_string() });
        }
        (self.sink)(stream, records.map(|r| encode(&r)));
        Ok(())
    }

    /// Registers a stateful operator of this analysis (named `<analysis>.<name>`) with the job's
    /// checkpoints: the operator saves its state as of each checkpoint boundary and starts from
    /// what a restart restores (see [`crate::checkpoint`]). Every operator that keeps state across
    /// windows must save it, or a restart loses it.
    pub fn state(&mut self, name: &str) -> OperatorState {
        self.core.checkpoints.operator(&format!("{}.{name}", self.spec.name))
    }

    /// Registers an operator of this analysis (named `<analysis>.<name>`) that saves increments
    /// rather than its whole state (see [`Checkpoints::increments`]).
    pub fn increments(&mut self, name: &str) -> OperatorState {
        self.core.checkpoints.increments(&format!("{}.{name}", self.spec.name))
    }

    /// Publishes the state that answers one of the queries the spec declares: the runtime asks it
    /// between steps (see [`crate::query`]).
    pub fn live_query(&mut self, query: Box<dyn LiveQuery>) -> Result<(), AnalysisError> {
        let q = query.spec();
        let declared = self.spec.queries.iter().any(|d| d.name == q.name) && self.spec.outputs.iter().any(|o| o.name == q.stream);
        if !declared {
            return Err(AnalysisError::UndeclaredQuery { analysis: self.spec.name, query: q.name });
        }
        self.queries.push(query);
        Ok(())
    }
}

/// Builds `analyses` (each with its settings) over `core`, handing their outputs to `sink` as they
/// are declared; returns the state they published for their queries.
pub fn build<'scope>(
    core: &mut Core<'scope>,
    analyses: &[(&dyn Analysis, Settings)],
    sink: &mut OutputSink<'scope, '_>,
) -> Result<Vec<Box<dyn LiveQuery>>, AnalysisError> {
    let mut queries = Vec::new();
    // Generic stateful operators (`Ordered`) register with the core's checkpoints while built.
    let _building = crate::checkpoint::building(&core.checkpoints.clone());
    for (analysis, settings) in analyses {
        let mut ctx = Context { spec: analysis.spec(), settings, core: &mut *core, sink: &mut *sink, queries: &mut queries };
        analysis.build(&mut ctx)?;
    }
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use differential_dataflow::input::Input;
    use timely::dataflow::operators::capture::{Capture, Event};
    use timely::dataflow::operators::ToStream;

    use super::*;

    /// The names of the operators `worker` builds from now on, as timely logs them.
    fn operator_names(worker: &mut timely::worker::Worker) -> Rc<std::cell::RefCell<Vec<String>>> {
        let names = Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = names.clone();
        let mut registry = worker.log_register().expect("a logging registry");
        registry.insert::<timely::logging::TimelyEventBuilder, _>("timely", move |_, events| {
            for (_, e) in events.iter().flatten() {
                if let timely::logging::TimelyEvent::Operates(o) = e {
                    seen.borrow_mut().push(o.name.clone());
                }
            }
        });
        names
    }

    #[test]
    fn later_analyses_get_the_same_windows_handed_on() {
        let vin = |i: u64| Vin::parse(format!("1HGCM82633A{i:06}").as_bytes()).unwrap();
        let reading = |i: u64, timestamp: Time, speed: f64| Reading { record_id: i, timestamp, vin: vin(i % 3), lon: 0.0, lat: 0.0, speed };
        let readings: Vec<Reading> = (0..30).map(|i| reading(i, i * 5_000, 50.0 + i as f64)).collect();
        let (first, later, names) = timely::execute_directly(move |worker| {
            let names = operator_names(worker);
            let (first, later) = worker.dataflow::<Time, _, _>(|scope| {
                let rows = scope.new_collection_from(Vec::<(Vin, SensorRow)>::new()).1;
                let buggy = scope.new_collection_from(Vec::<SensorId>::new()).1;
                let mut core = Core::new(readings.to_stream(scope), rows, buggy, &Params::default(), false, Rc::new(|| 0));
                let first = core.speed_windows().capture();
                let later = core.speed_windows().capture();
                (first, later)
            });
            while worker.step_or_park(None) {}
            let names = names.borrow().clone();
            (first, later, names)
        });
        let timed = |events: std::sync::mpsc::Receiver<Event<Time, Vec<SpeedWindow>>>| {
            // A batch's stamp is its times; window batches travel at one time each.
            let mut windows: Vec<(Time, SpeedWindow)> = events
                .try_iter()
                .flat_map(|e| match e {
                    Event::Messages(stamp, ws) => ws.into_iter().map(|w| (stamp.least().copied().unwrap_or(Time::MAX), w)).collect(),
                    Event::Progress(_) => Vec::new(),
                })
                .collect();
            windows.sort_by_key(|(t, w)| (*t, w.key));
            windows
        };
        let (first, later) = (timed(first), timed(later));
        assert_eq!(first.len(), 9, "three vehicles, three windows each: {first:?}");
        assert_eq!(first, later, "the same windows at the same times");
        assert!(names.iter().any(|n| n == "HandOn"), "the second consumer reads from a pass-through: {names:?}");
    }

    #[test]
    fn without_a_reference_table_the_buggy_devices_join_is_not_built() {
        // A job that reads no vin-to-sensor file can never have a buggy device: the analysis
        // outputs nothing and holds no windows for the correction horizon (no join, no offsets).
        for reference in [true, false] {
            let names = timely::execute_directly(move |worker| {
                let names = operator_names(worker);
                worker.dataflow::<Time, _, _>(|scope| {
                    let rows = scope.new_collection_from(Vec::<(Vin, SensorRow)>::new()).1;
                    let buggy = scope.new_collection_from(Vec::<SensorId>::new()).1;
                    let mut core = Core::new(Vec::<Reading>::new().to_stream(scope), rows, buggy, &Params::default(), true, Rc::new(|| 0));
                    if !reference {
                        core = core.without_reference();
                    }
                    let analyses: [(&dyn Analysis, Settings); 1] = [(&crate::analyses::buggy_devices::BuggyDevices, Settings::new())];
                    build(&mut core, &analyses, &mut |_, _| {}).unwrap();
                });
                while worker.step_or_park(None) {}
                let names = names.borrow().clone();
                names
            });
            assert_eq!(names.iter().any(|n| n == "Join"), reference, "{names:?}");
            assert_eq!(names.iter().any(|n| n == "Tumbling"), reference, "no windows are made for it either: {names:?}");
            // Nor are the readings' offsets kept in the windows other analyses make.
            assert_eq!(crate::analyses::buggy_devices::BuggyDevices.uses_offsets(reference), reference);
        }
    }
}
