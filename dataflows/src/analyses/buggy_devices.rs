//! `buggy_devices`: per vehicle, sensor and tumbling window, the readings taken while a sensor on
//! the buggy list was installed: an incremental (differential) join of window summaries with the
//! reference timelines, so a reference change corrects the windows it affects.

use crate::schema::Field;
use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::StreamVec;

use crate::analysis::{Settings, settles_with_tumbling, Analysis, AnalysisError, Context, OutputSpec, Timing, Spec};
use crate::changelog::{Change, Changelog};
use crate::output::{json, Output, Rfc3339};
use crate::params::Params;
use crate::reading::Vin;
use crate::reference::{SensorId, TimelineTrace};
use crate::time::Time;
use crate::checkpoint::OperatorState;
use crate::windows::{Held, Offsets, Window};

/// The fields of the output's JSON lines.
const FIELDS: &[Field] = &[Field::keyword("vin"), Field::keyword("sensor_id"), Field::timestamp("window_start"), Field::timestamp("window_end"), Field::count("readings"), Field::keyword("revision").optional(), Field::timestamp("revised_at").optional()];

/// One `buggy_devices` row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BuggyDevice {
    /// The vehicle.
    pub vin: Vin,
    /// The buggy sensor installed during (part of) the window.
    pub sensor: SensorId,
    /// Window start, epoch ms.
    pub start: Time,
    /// Window end, epoch ms.
    pub end: Time,
    /// Readings in the window taken while that sensor was installed.
    pub readings: u64,
}

/// How a `buggy_devices` change relates to what was emitted before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revision {
    /// Part of the window's result when it closed.
    Initial,
    /// A later reference change retracted this row.
    Retract,
    /// A later reference change added this row.
    Insert,
}

impl Change<BuggyDevice> {
    /// Whether this change is the window's first result or a later correction.
    pub fn revision(&self) -> Revision {
        if self.time < self.data.end && self.diff > 0 {
            Revision::Initial
        } else if self.diff > 0 {
            Revision::Insert
        } else {
            Revision::Retract
        }
    }
}

/// Joins tumbling-window reading offsets with the vehicles' sensor timelines.
///
/// A window enters the join when it closes (time `end - 1`) and leaves it `horizon` ms later
/// (`horizon >= 1`): until then a reference change at time `t` yields correcting changes at `t`,
/// after it the window's state is released and its rows are final. The output holds the
/// initial rows and the corrections, not the releases. The windows the join holds are
/// checkpointed into `held` (see [`Held`]).
pub fn buggy_devices<'scope>(
    windows: StreamVec<'scope, Time, Window<Vin, Offsets>>,
    timelines: Arranged<'scope, TimelineTrace>,
    horizon: Time,
    held: OperatorState,
) -> StreamVec<'scope, Time, Change<BuggyDevice>> {
    assert!(horizon >= 1, "the correction horizon must be at least 1 ms");
    let summaries = windows.held(horizon, held).map(|w| ((w.key, (w.start, w.end, w.agg)), w.end - 1, 1isize)).as_collection();
    let held = summaries.clone().concat(summaries.negate().delay(move |t| t + horizon));
    held.join_core(timelines, |vin, (start, end, offsets), timeline| {
        let mut rows: Vec<BuggyDevice> = Vec::new();
        for (segment, lo, hi) in timeline.covering(*start, *end) {
            if !segment.buggy {
                continue;
            }
            let readings = offsets.count_between(lo - start, hi - start);
            if readings == 0 {
                continue;
            }
            // A sensor installed twice within one window gives one row.
            match rows.iter_mut().find(|r| r.sensor == segment.sensor) {
                Some(row) => row.readings += readings,
                None => rows.push(BuggyDevice { vin: *vin, sensor: segment.sensor.clone(), start: *start, end: *end, readings }),
            }
        }
        rows
    })
    .changelog()
    .filter(move |c| c.time < c.data.end - 1 + horizon)
}

/// The `buggy_devices` analysis: the incremental join of the tumbling windows' readings with the
/// sensor timelines; a reference change within `params.correction_horizon_ms` corrects its rows.
pub struct BuggyDevices;

#[derive(Serialize)]
struct Line<'a> {
    vin: &'a str,
    sensor_id: &'a str,
    window_start: Rfc3339,
    window_end: Rfc3339,
    readings: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revised_at: Option<Rfc3339>,
}

/// A `buggy_devices` record: the window's row when it closed, or a later correction carrying
/// `revision` (`retract` or `insert`) and `revised_at` (the watermark when the reference changed).
impl Output for Change<BuggyDevice> {
    fn filed_at(&self) -> Time {
        self.data.start
    }
    fn key(&self) -> Option<Vin> {
        Some(self.data.vin)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        let d = &self.data;
        let (revision, revised_at) = match self.revision() {
            Revision::Initial => (None, None),
            Revision::Retract => (Some("retract"), Some(Rfc3339(self.time))),
            Revision::Insert => (Some("insert"), Some(Rfc3339(self.time))),
        };
        let line = Line {
            vin: d.vin.as_str(),
            sensor_id: &d.sensor,
            window_start: Rfc3339(d.start),
            window_end: Rfc3339(d.end),
            readings: d.readings,
            revision,
            revised_at,
        };
        json(out, &line);
    }
}

impl Analysis for BuggyDevices {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "buggy_devices",
            about: "per vehicle, buggy sensor and tumbling window, the readings taken while it was installed",
            outputs: &[OutputSpec {
                name: "buggy_devices",
                about: "vin, sensor_id, window_start, window_end, readings[, revision, revised_at]",
                timing: Timing::Untimed, fields: FIELDS,
            }],
            settings: &[],
            tables: &[],
            queries: &[],
            on_by_default: true,
            uses_offsets: true,
        }
    }

    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
        if !ctx.has_reference() {
            // No vehicle will ever have a sensor: no row, and no windows held for corrections
            // (at a million vehicles, 20 windows each with their offsets over the horizon).
            let none = timely::dataflow::operators::generic::operator::empty(ctx.readings().scope());
            return ctx.output::<Change<BuggyDevice>>("buggy_devices", none);
        }
        let offsets = ctx.window_offsets()?;
        let timelines = ctx.timelines();
        // (The windows within the correction horizon are as large as its readings: checkpointed
        // as increments, see docs/checkpoints.md.)
        let held = ctx.increments("held");
        let rows = buggy_devices(offsets, timelines, ctx.params().correction_horizon_ms, held);
        ctx.output("buggy_devices", rows)
    }

    /// Without a vin-to-sensor table it builds no join, and reads no offsets.
    fn uses_offsets(&self, has_reference: bool) -> bool {
        has_reference
    }

    /// Corrections follow reference changes, not readings: a reading is settled with its window.
    fn settles(&self, ts: Time, params: &Params, _: &Settings) -> Time {
        settles_with_tumbling(ts, params)
    }
}

/// The analysis's rows over `core` (made with `keep_offsets`), typed: what [`BuggyDevices`]
/// hands to its output, for tests that look at the changes themselves.
pub fn rows_of<'scope>(core: &mut crate::analysis::Core<'scope>) -> StreamVec<'scope, Time, Change<BuggyDevice>> {
    let horizon = core.params().correction_horizon_ms;
    let held = core.checkpoints().increments("buggy_devices.held");
    buggy_devices(core.window_offsets(), core.timelines(), horizon, held)
}
