//! `daily_speeders`: per vehicle and UTC day, the speeding readings and the day's top speed.

use crate::schema::Field;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::StreamVec;

use super::SpeedWindow;
use crate::analysis::{Settings, Analysis, AnalysisError, Context, OutputSpec, Timing, Spec};
use crate::output::{JsonObject, Output};
use crate::checkpoint::OperatorState;
use crate::params::Params;
use crate::query::{LiveQuery, QuerySpec};
use crate::reading::Vin;
use crate::stats::SpeedStats;
use crate::time::{align, Time, DAY_MS};
use crate::windows::{OpenWindows, Sliding};

/// The fields of the output's JSON lines.
const FIELDS: &[Field] = &[Field::keyword("vin"), Field::date("date"), Field::count("speeding_readings"), Field::double("max_speed")];

/// Re-windows speeding panes (tumbling windows with at least one speeding reading) into UTC days.
///
/// Only speeding panes are kept, so a vehicle's state exists only for days it sped on. The day's
/// `max` is the top speed of the day: a pane without speeding readings cannot hold it.
pub fn daily_speeders<'scope>(panes: StreamVec<'scope, Time, SpeedWindow>) -> StreamVec<'scope, Time, SpeedWindow> {
    daily_speeders_open(panes, crate::checkpoint::Checkpoints::off().operator("days")).0
}

/// As [`daily_speeders`], also returning this worker's open days, saved into `state` at
/// checkpoints.
pub fn daily_speeders_open<'scope>(
    panes: StreamVec<'scope, Time, SpeedWindow>,
    state: OperatorState,
) -> (StreamVec<'scope, Time, SpeedWindow>, OpenWindows<Vin, SpeedStats>) {
    panes.filter(|w| w.agg.speeding > 0).sliding_saved(DAY_MS, DAY_MS, state)
}

/// A vehicle's speeding on one day so far.
#[derive(Clone, Debug, PartialEq)]
pub struct DaySoFar {
    /// The vehicle.
    pub vin: Vin,
    /// Speeding readings so far.
    pub speeding: u64,
    /// Top speed so far.
    pub max: f64,
}

/// What a worker knows of days not yet closed: the open days of `daily_speeders` (closed panes)
/// and the panes still open, which have not reached it yet.
#[derive(Clone)]
pub struct LiveDailySpeeders {
    /// Open tumbling windows.
    pub panes: OpenWindows<Vin, SpeedStats>,
    /// Open days.
    pub days: OpenWindows<Vin, SpeedStats>,
}

impl LiveDailySpeeders {
    /// This worker's vehicles with speeding readings on the UTC day starting at `day`, so far,
    /// by vin: what `daily_speeders` will say of the day if no more readings come.
    pub fn on_day(&self, day: Time) -> Vec<DaySoFar> {
        let mut by_vin: std::collections::BTreeMap<Vin, DaySoFar> = std::collections::BTreeMap::new();
        let mut add = |vin: &Vin, stats: &SpeedStats| {
            if stats.speeding > 0 {
                let e = by_vin.entry(*vin).or_insert(DaySoFar { vin: *vin, speeding: 0, max: f64::MIN });
                e.speeding += stats.speeding;
                e.max = e.max.max(stats.max);
            }
        };
        self.days.for_each_ending_in(day, day + DAY_MS, |_, _, vin, stats| add(vin, stats));
        self.panes.for_each_ending_in(day, day + DAY_MS, |_, _, vin, stats| add(vin, stats));
        by_vin.into_values().collect()
    }
}

impl LiveQuery for LiveDailySpeeders {
    fn spec(&self) -> &'static QuerySpec {
        &SPEEDERS_BY_DATE
    }
    fn open_rows(&self, day: Time) -> Vec<serde_json::Value> {
        self.on_day(day).iter().map(|d| speeder(d.vin.as_str(), d.speeding, d.max)).collect()
    }
}

/// An answer row of the speeders-by-date query.
fn speeder(vin: &str, speeding: u64, max: f64) -> serde_json::Value {
    serde_json::json!({ "vin": vin, "speeding_readings": speeding, "max_speed": max })
}

/// The speeders of a UTC day: `/speeders?date=YYYY-MM-DD`.
pub const SPEEDERS_BY_DATE: QuerySpec = QuerySpec {
    name: "speeders",
    about: "vehicles with speeding readings on a UTC day: their count and the day's top speed",
    stream: "daily_speeders",
    row_of: |line| {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        Some(speeder(v["vin"].as_str()?, v["speeding_readings"].as_u64()?, v["max_speed"].as_f64()?))
    },
    key_field: "vin",
    rank_field: "speeding_readings",
    columns: &[("vin", "vin"), ("speeding_readings", "speeding readings"), ("max_speed", "max mph")],
};

/// The `daily_speeders` analysis. It answers speeders by date from its [`LiveDailySpeeders`].
pub struct DailySpeeders;

/// A `daily_speeders` record: the window is one UTC day.
#[derive(Clone, Debug, PartialEq)]
pub struct DailySpeederRow(pub SpeedWindow);

impl Output for DailySpeederRow {
    fn filed_at(&self) -> Time {
        align(self.0.start, DAY_MS)
    }
    fn key(&self) -> Option<Vin> {
        Some(self.0.key)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        let w = &self.0;
        JsonObject::new(out).str("vin", w.key.as_str()).date("date", w.start).u64("speeding_readings", w.agg.speeding).f64("max_speed", w.agg.max).end();
    }
}

impl Analysis for DailySpeeders {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "daily_speeders",
            about: "per vehicle and UTC day with speeding readings, their count and the day's top speed",
            outputs: &[OutputSpec { name: "daily_speeders", about: "vin, date, speeding_readings, max_speed", timing: Timing::Untimed, fields: FIELDS }],
            settings: &[],
            tables: &[],
            queries: &[SPEEDERS_BY_DATE],
            on_by_default: true,
            uses_offsets: false,
        }
    }

    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
        let state = ctx.state("days");
        let (days, open_days) = daily_speeders_open(ctx.speed_windows(), state);
        let panes = ctx.open_windows();
        ctx.live_query(Box::new(LiveDailySpeeders { panes, days: open_days }))?;
        ctx.output("daily_speeders", days.map(DailySpeederRow))
    }

    fn settles(&self, ts: Time, _params: &Params, _: &Settings) -> Time {
        align(ts, DAY_MS) + DAY_MS - 1
    }
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::capture::{Capture, Event};
    use timely::dataflow::operators::ToStream;

    use super::*;
    use crate::reading::Vin;
    use crate::stats::SpeedStats;
    use crate::windows::Window;

    fn pane(vin: Vin, start: Time, speeding: u64, max: f64) -> SpeedWindow {
        let agg = SpeedStats { readings: 3, sum_micro: 150_000_000, min: 10.0, max, speeding };
        Window { key: vin, start, end: start + 60_000, agg }
    }

    #[test]
    fn days_of_speeding_panes_only() {
        let a = Vin::parse(b"1HGCM82633A000001").unwrap();
        let b = Vin::parse(b"1HGCM82633A000002").unwrap();
        let midnight = 1_764_115_200_000; // 2025-11-26T00:00:00Z
        let panes = vec![
            pane(a, midnight - 120_000, 1, 70.0),
            pane(a, midnight - 60_000, 2, 90.0),
            pane(a, midnight, 1, 66.0),
            pane(b, midnight - 60_000, 0, 60.0), // no speeding: no row
        ];
        let rx = timely::example(move |scope| daily_speeders(panes.to_stream(scope)).capture());
        let mut days: Vec<(Vin, Time, u64, f64)> = rx
            .try_iter()
            .flat_map(|e| match e {
                Event::Messages(_, v) => v,
                _ => vec![],
            })
            .map(|w| (w.key, w.start, w.agg.speeding, w.agg.max))
            .collect();
        days.sort_by_key(|d| (d.0, d.1));
        assert_eq!(days, vec![(a, midnight - DAY_MS, 3, 90.0), (a, midnight, 1, 66.0)]);
    }

    #[test]
    fn live_state_answers_for_the_open_day_including_open_panes() {
        use crate::analysis::{build, Core};
        use crate::reading::Reading;
        use differential_dataflow::input::InputSession;
        use timely::dataflow::operators::core::input::Input;
        use timely::dataflow::operators::Probe;
        use std::rc::Rc;
        use timely::dataflow::ProbeHandle;

        let a = Vin::parse(b"1HGCM82633A000001").unwrap();
        let b = Vin::parse(b"1HGCM82633A000002").unwrap();
        let midnight = 1_764_115_200_000; // 2025-11-26T00:00:00Z
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let mut rows = InputSession::new();
            let mut buggy = InputSession::new();
            let (mut input, live) = worker.dataflow::<Time, _, _>(|scope| {
                let (input, readings) = scope.new_input::<Vec<Reading>>();
                // What the job builds: the core and the analysis, its live state as it publishes it.
                let params = crate::Params::default();
                let mut core = Core::new(readings, rows.to_collection(scope), buggy.to_collection(scope), &params, false, Rc::new(|| 0));
                let mut queries = build(&mut core, &[(&DailySpeeders, Settings::new())], &mut |_, out| {
                    out.probe_with(&probe);
                })
                .unwrap();
                (input, queries.remove(0))
            });
            let reading = |vin, t: Time, speed| Reading { record_id: 1, timestamp: t, vin, lon: 0.0, lat: 0.0, speed };
            // Minute 0: a speeds twice (closes when the input reaches minute 1); minute 1: a and b.
            input.send(reading(a, midnight + 1_000, 70.0));
            input.send(reading(a, midnight + 2_000, 90.0));
            input.send(reading(b, midnight + 3_000, 50.0));
            input.advance_to(midnight + 60_000);
            input.send(reading(a, midnight + 61_000, 66.0));
            input.send(reading(b, midnight + 62_000, 80.0));
            rows.advance_to(midnight + 60_000);
            buggy.advance_to(midnight + 60_000);
            rows.flush();
            buggy.flush();
            input.flush();
            while probe.less_than(&(midnight + 60_000)) {
                worker.step();
            }
            for _ in 0..10 {
                worker.step();
            }
            assert_eq!(live.spec().name, "speeders");
            let day = live.open_rows(midnight);
            assert_eq!(day, vec![speeder(a.as_str(), 3, 90.0), speeder(b.as_str(), 1, 80.0)]);
            assert!(live.open_rows(midnight - DAY_MS).is_empty());
            let stored = br#"{"vin":"1HGCM82633A000001","date":"2025-11-26","speeding_readings":3,"max_speed":90.0}"#;
            assert_eq!((SPEEDERS_BY_DATE.row_of)(stored), Some(speeder(a.as_str(), 3, 90.0)), "a written record is a row less its date");
        });
    }
}
