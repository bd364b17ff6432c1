//! `geofence`: a vehicle entering or leaving a zone, zones being polygons (lon/lat) from a
//! reference file that may be edited while the job runs.
//!
//! Each vehicle's readings are taken in event-time order with [`Ordered::ordered_by_key_with`],
//! against the zones as of the reading's time (an edit of the file applies from the watermark at
//! which it was read): a reading inside a zone the vehicle's previous reading was not in is an
//! `enter`, one outside a zone it was in a `leave`. A vehicle's first reading (or its first after
//! `forget_after_secs` without readings) enters the zones it is in.

use crate::schema::Field;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use timely::dataflow::operators::vec::Map;

use crate::analysis::{Aliases, Analysis, AnalysisError, Context, DefaultValue, OutputSpec, SettingSpec, Settings, Spec, TableSpec, Timing};
use crate::output::{json, Output, Rfc3339};
use crate::params::Params;
use crate::reading::Vin;
use crate::time::Time;
use crate::windows::Ordered;

/// The fields of the output's JSON lines.
const FIELDS: &[Field] = &[Field::keyword("vin"), Field::keyword("zone"), Field::keyword("event"), Field::timestamp("time"), Field::double("lon"), Field::double("lat")];

/// The `geofence` analysis.
pub struct Geofence;

/// A zone: a name and a polygon of `(lon, lat)` vertices (closed implicitly).
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    /// The zone's name (several lines with one name make one zone of several polygons).
    pub name: String,
    /// The polygon's vertices.
    pub points: Vec<(f64, f64)>,
}

/// Parses a zones line: `name lon lat lon lat lon lat ...` (at least three vertices).
pub fn parse_zone(line: &str) -> Result<Zone, String> {
    let mut fields = line.split_whitespace();
    let name = fields.next().ok_or("empty line")?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("zone name {name:?}: use letters, digits, '_' and '-'"));
    }
    let numbers: Vec<f64> = fields
        .map(|f| f.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("{f:?} is not a coordinate")))
        .collect::<Result<_, _>>()?;
    if !numbers.len().is_multiple_of(2) || numbers.len() < 6 {
        return Err(format!("zone {name}: {} numbers; give at least three `lon lat` pairs", numbers.len()));
    }
    let points: Vec<(f64, f64)> = numbers.chunks(2).map(|p| (p[0], p[1])).collect();
    if let Some((lon, lat)) = points.iter().find(|(lon, lat)| !(-180.0..=180.0).contains(lon) || !(-90.0..=90.0).contains(lat)) {
        return Err(format!("zone {name}: ({lon}, {lat}) is not a lon/lat point (lon -180..180, lat -90..90)"));
    }
    Ok(Zone { name: name.to_string(), points })
}

impl Zone {
    /// Whether `(lon, lat)` lies inside the polygon (even-odd rule; a point on a left or bottom
    /// edge is inside, on a right or top edge outside, so adjacent zones do not overlap).
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let mut inside = false;
        let n = self.points.len();
        for i in 0..n {
            let (x1, y1) = self.points[i];
            let (x2, y2) = self.points[(i + 1) % n];
            if (y1 > lat) != (y2 > lat) {
                let x = x1 + (lat - y1) / (y2 - y1) * (x2 - x1);
                if lon < x {
                    inside = !inside;
                }
            }
        }
        inside
    }
}

/// The zones containing a point, by name.
pub fn zones_at(zones: &[Zone], lon: f64, lat: f64) -> BTreeSet<String> {
    zones.iter().filter(|z| z.contains(lon, lat)).map(|z| z.name.clone()).collect()
}

/// One crossing of a zone's border.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossing {
    /// The vehicle.
    pub vin: Vin,
    /// The zone.
    pub zone: String,
    /// `enter` or `leave`.
    pub event: &'static str,
    /// Event time of the reading.
    pub time: Time,
    /// Where the reading was.
    pub lon: f64,
    /// Where the reading was.
    pub lat: f64,
}

#[derive(Serialize)]
struct Line<'a> {
    vin: &'a str,
    zone: &'a str,
    event: &'static str,
    time: Rfc3339,
    lon: f64,
    lat: f64,
}

impl Output for Crossing {
    fn filed_at(&self) -> Time {
        self.time
    }
    fn key(&self) -> Option<Vin> {
        Some(self.vin)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        let line = Line { vin: self.vin.as_str(), zone: &self.zone, event: self.event, time: Rfc3339(self.time), lon: self.lon, lat: self.lat };
        json(out, &line);
    }
}

/// The crossings of one reading: what the vehicle entered and left since its previous reading.
pub fn crossings(vin: Vin, before: &BTreeSet<String>, now: &BTreeSet<String>, time: Time, lon: f64, lat: f64) -> Vec<Crossing> {
    let left = before.difference(now).map(|z| (z, "leave"));
    let entered = now.difference(before).map(|z| (z, "enter"));
    left.chain(entered).map(|(zone, event)| Crossing { vin, zone: zone.clone(), event, time, lon, lat }).collect()
}

/// The zones of a table's lines (the runtime has checked each line).
fn zones_of(table: &BTreeMap<String, isize>) -> Vec<Zone> {
    table.keys().filter_map(|line| parse_zone(line).ok()).collect()
}

impl Analysis for Geofence {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "geofence",
            about: "vehicles entering and leaving zones (polygons from a reference file)",
            outputs: &[OutputSpec { name: "geofence", about: "vin, zone, event (enter or leave), time, lon, lat", timing: Timing::Untimed, fields: FIELDS }],
            settings: &[
                SettingSpec { name: "zones", default: DefaultValue::Text(""), about: "the zones file: `name lon lat lon lat lon lat ...` per line", aliases: Aliases::NONE },
                SettingSpec {
                    name: "forget_after_secs",
                    default: DefaultValue::Number(3600.0),
                    about: "a vehicle silent this long starts afresh (and enters the zones it is in again)",
                    aliases: Aliases::NONE,
                },
            ],
            tables: &[TableSpec {
                name: "zones",
                setting: "zones",
                about: "name lon lat lon lat lon lat ... (a polygon; WGS84 degrees)",
                check: |line| parse_zone(line).map(|_| ()),
            }],
            queries: &[],
            on_by_default: false,
            uses_offsets: false,
        }
    }

    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
        let forget = ctx.number_in("forget_after_secs", 1.0..=30.0 * 86_400.0)?;
        if ctx.text("zones")?.trim().is_empty() {
            let problem = "empty; give the path of the zones file (`name lon lat lon lat lon lat ...` per line)".into();
            return Err(AnalysisError::Setting { analysis: "geofence", key: "zones".into(), problem });
        }
        let zones = ctx.table("zones")?;
        let crossings = ctx
            .readings()
            .map(|r| (r.vin, r.timestamp, (r.record_id, r.lon.to_bits(), r.lat.to_bits())))
            .ordered_by_key_with(
                zones,
                "Geofence",
                (forget * 1000.0) as Time,
                zones_of,
                |vin, inside: &mut BTreeSet<String>, ts, &(_, lon, lat), zones: &Vec<Zone>, out| {
                    let (lon, lat) = (f64::from_bits(lon), f64::from_bits(lat));
                    let now = zones_at(zones, lon, lat);
                    out.extend(crossings(*vin, inside, &now, ts, lon, lat));
                    *inside = now;
                },
            );
        ctx.output("geofence", crossings)
    }

    fn settles(&self, ts: Time, _: &Params, _: &Settings) -> Time {
        ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_parse_and_contain_with_half_open_edges() {
        let square = parse_zone("square 0 0 2 0 2 2 0 2").unwrap();
        assert!(square.contains(1.0, 1.0));
        assert!(square.contains(0.0, 1.0), "left edge inside");
        assert!(!square.contains(2.0, 1.0), "right edge outside");
        assert!(!square.contains(3.0, 1.0));
        let triangle = parse_zone("t -1 -1 1 -1 0 1").unwrap();
        assert!(triangle.contains(0.0, 0.0) && !triangle.contains(0.9, 0.9));
        assert!(parse_zone("x 0 0 1 1").unwrap_err().contains("at least three"));
        assert!(parse_zone("x 0 0 1 1 2 north").unwrap_err().contains("\"north\" is not a coordinate"));
        assert!(parse_zone("x 0 0 1 1 200 2").unwrap_err().contains("not a lon/lat point"));
        assert!(parse_zone("a/b 0 0 1 1 2 2").unwrap_err().contains("zone name"));
    }
}
