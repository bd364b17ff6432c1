//! `speeders`: tumbling windows in which a vehicle went above the speed limit.

use crate::schema::Field;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::StreamVec;

use super::SpeedWindow;
use crate::analysis::{Settings, settles_with_tumbling, Analysis, AnalysisError, Context, OutputSpec, Timing, Spec};
use crate::output::{JsonObject, Output};
use crate::params::Params;
use crate::reading::Vin;
use crate::time::Time;

/// The tumbling windows whose highest speed is strictly above `speed_limit_mph`.
pub fn speeders<'scope>(windows: StreamVec<'scope, Time, SpeedWindow>, speed_limit_mph: f64) -> StreamVec<'scope, Time, SpeedWindow> {
    windows.filter(move |w| w.agg.max > speed_limit_mph)
}

/// The `speeders` analysis.
pub struct Speeders;

/// A `speeders` record.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeederRow(pub SpeedWindow);

impl SpeederRow {
    /// The fields of a speeders line.
    pub const FIELDS: &'static [Field] = &[
        Field::keyword("vin"),
        Field::timestamp("window_start"),
        Field::timestamp("window_end"),
        Field::count("readings"),
        Field::count("speeding_readings"),
        Field::double("avg_speed"),
        Field::double("max_speed"),
    ];
}

impl Output for SpeederRow {
    fn filed_at(&self) -> Time {
        self.0.start
    }
    fn key(&self) -> Option<Vin> {
        Some(self.0.key)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        let w = &self.0;
        JsonObject::new(out)
            .str("vin", w.key.as_str())
            .time("window_start", w.start)
            .time("window_end", w.end)
            .u64("readings", w.agg.readings)
            .u64("speeding_readings", w.agg.speeding)
            .f64("avg_speed", w.agg.avg())
            .f64("max_speed", w.agg.max)
            .end();
    }
}

impl Analysis for Speeders {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "speeders",
            about: "tumbling windows in which a vehicle went above the speed limit",
            outputs: &[OutputSpec {
                name: "speeders",
                about: "vin, window_start, window_end, readings, speeding_readings, avg_speed, max_speed",
                timing: Timing::Untimed, fields: SpeederRow::FIELDS,
            }],
            settings: &[],
            tables: &[],
            queries: &[],
            on_by_default: true,
            uses_offsets: false,
        }
    }

    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
        let limit = ctx.params().speed_limit_mph;
        let rows = speeders(ctx.speed_windows(), limit).map(SpeederRow);
        ctx.output("speeders", rows)
    }

    fn settles(&self, ts: Time, params: &Params, _: &Settings) -> Time {
        settles_with_tumbling(ts, params)
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

    #[test]
    fn strictly_above_the_limit() {
        let vin = Vin::parse(b"1HGCM82633A000001").unwrap();
        let w = |max: f64| Window { key: vin, start: 0, end: 60_000, agg: SpeedStats { max, ..SpeedStats::default() } };
        let windows = vec![w(65.0), w(65.001), w(30.0)];
        let rx = timely::example(move |scope| speeders(windows.to_stream(scope), 65.0).capture());
        let maxes: Vec<f64> = rx
            .try_iter()
            .flat_map(|e| match e {
                Event::Messages(_, v) => v,
                _ => vec![],
            })
            .map(|w| w.agg.max)
            .collect();
        assert_eq!(maxes, vec![65.001]);
    }
}
