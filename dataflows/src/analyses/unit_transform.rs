//! `unit_transform`: the readings with their speed converted from mph (km/h by default) and the
//! processing time at which the job converted them: the in-stream transform the original pipeline
//! ran as a Lambda on its delivery stream, here a map step on the way to the sink.

use crate::schema::Field;
use serde::Serialize;
use timely::dataflow::operators::vec::Map;

use crate::analysis::{Aliases, Analysis, AnalysisError, Context, DefaultValue, OutputSpec, SettingSpec, Settings, Spec, Timing};
use crate::output::{json, Output, Rfc3339};
use crate::params::Params;
use crate::reading::{Reading, Vin};
use crate::time::Time;

/// The fields of the output's JSON lines.
const FIELDS: &[Field] = &[Field::count("record_id"), Field::timestamp("timestamp"), Field::keyword("vin"), Field::double("lon"), Field::double("lat"), Field::double("speed"), Field::keyword("unit"), Field::timestamp("processed_at")];

/// The `unit_transform` analysis.
pub struct UnitTransform;

/// Kilometres per mile.
pub const KM_PER_MILE: f64 = 1.609_344;

/// A reading with its converted speed and the processing time.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    /// The reading as it arrived (speed in mph).
    pub reading: Reading,
    /// The speed in the configured unit.
    pub speed: f64,
    /// The unit: `km/h` or `m/s`.
    pub unit: &'static str,
    /// Processing time of the conversion, epoch ms.
    pub processed_at: Time,
}

#[derive(Serialize)]
struct Line<'a> {
    record_id: u64,
    timestamp: Rfc3339,
    vin: &'a str,
    lon: f64,
    lat: f64,
    speed: f64,
    unit: &'static str,
    processed_at: Rfc3339,
}

impl Output for Converted {
    fn filed_at(&self) -> Time {
        self.reading.timestamp
    }
    fn key(&self) -> Option<Vin> {
        Some(self.reading.vin)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        let r = &self.reading;
        let line = Line {
            record_id: r.record_id,
            timestamp: Rfc3339(r.timestamp),
            vin: r.vin.as_str(),
            lon: r.lon,
            lat: r.lat,
            speed: self.speed,
            unit: self.unit,
            processed_at: Rfc3339(self.processed_at),
        };
        json(out, &line);
    }
}

/// The factor from mph to `unit`, and the unit's static name.
pub fn factor(unit: &str) -> Option<(f64, &'static str)> {
    match unit {
        "km/h" => Some((KM_PER_MILE, "km/h")),
        "m/s" => Some((KM_PER_MILE / 3.6, "m/s")),
        _ => None,
    }
}

impl Analysis for UnitTransform {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "unit_transform",
            about: "every reading with its speed in km/h (or m/s) and the processing time",
            outputs: &[OutputSpec {
                name: "readings_converted",
                about: "record_id, timestamp, vin, lon, lat, speed, unit, processed_at",
                timing: Timing::Untimed, fields: FIELDS,
            }],
            settings: &[SettingSpec { name: "unit", default: DefaultValue::Text("km/h"), about: "\"km/h\" or \"m/s\"", aliases: Aliases::NONE }],
            tables: &[],
            queries: &[],
            on_by_default: false,
            uses_offsets: false,
        }
    }

    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
        let unit = ctx.text("unit")?;
        let (factor, unit) = factor(&unit).ok_or_else(|| AnalysisError::Setting {
            analysis: "unit_transform",
            key: "unit".into(),
            problem: format!("{unit:?} is not a unit; use \"km/h\" or \"m/s\""),
        })?;
        let clock = ctx.clock();
        let converted =
            ctx.readings().map(move |reading| Converted { speed: reading.speed * factor, unit, processed_at: clock(), reading });
        ctx.output("readings_converted", converted)
    }

    fn settles(&self, ts: Time, _: &Params, _: &Settings) -> Time {
        ts
    }
}
