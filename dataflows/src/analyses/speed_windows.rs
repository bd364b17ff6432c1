//! `speed_windows`: every vehicle's tumbling speed window (readings, average, top and lowest speed).

use crate::schema::Field;
use timely::dataflow::operators::vec::Map;

use super::SpeedWindow;
use crate::analysis::{Settings, settles_with_tumbling, Analysis, AnalysisError, Context, OutputSpec, Timing, Spec};
use crate::output::{JsonObject, Output};
use crate::params::Params;
use crate::reading::Vin;
use crate::time::Time;

/// The fields of the output's JSON lines.
const FIELDS: &[Field] = &[Field::keyword("vin"), Field::timestamp("window_start"), Field::timestamp("window_end"), Field::count("readings"), Field::double("avg_speed"), Field::double("max_speed"), Field::double("min_speed")];

/// The `speed_windows` analysis.
pub struct SpeedWindows;

/// A `speed_windows` record.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeedWindowRow(pub SpeedWindow);

impl Output for SpeedWindowRow {
    /// Windows are filed under their start.
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
            .f64("avg_speed", w.agg.avg())
            .f64("max_speed", w.agg.max)
            .f64("min_speed", w.agg.min)
            .end();
    }
}

impl Analysis for SpeedWindows {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "speed_windows",
            about: "every vehicle's tumbling speed window",
            outputs: &[OutputSpec {
                name: "speed_windows",
                about: "vin, window_start, window_end, readings, avg_speed, max_speed, min_speed",
                timing: Timing::WindowClose, fields: FIELDS,
            }],
            settings: &[],
            tables: &[],
            queries: &[],
            on_by_default: true,
            uses_offsets: false,
        }
    }

    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
        let windows = ctx.speed_windows().map(SpeedWindowRow);
        ctx.output("speed_windows", windows)
    }

    fn settles(&self, ts: Time, params: &Params, _: &Settings) -> Time {
        settles_with_tumbling(ts, params)
    }
}
