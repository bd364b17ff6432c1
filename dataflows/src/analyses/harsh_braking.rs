//! `harsh_braking`: a vehicle's speed dropped by more than `drop_mph` within `within_secs`.
//!
//! Each vehicle's readings are taken in event-time order (whatever order they arrive in within the
//! allowed lateness) with [`Ordered`]: a reading whose speed is more than `drop_mph` below the
//! highest speed of the same vehicle in the `within_secs` before it (that instant included) is a
//! braking event; the event ends the episode, so the vehicle's history starts again at that reading.

use crate::schema::Field;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;

use crate::analysis::{number, Aliases, Analysis, AnalysisError, Context, DefaultValue, OutputSpec, SettingSpec, Settings, Spec, Timing};
use crate::output::{json, Output, Rfc3339};
use crate::params::Params;
use crate::reading::Vin;
use crate::time::Time;
use crate::windows::Ordered;

/// The fields of the output's JSON lines.
const FIELDS: &[Field] = &[Field::keyword("vin"), Field::timestamp("from_time"), Field::timestamp("to_time"), Field::double("from_speed"), Field::double("to_speed"), Field::double("drop_mph")];

/// The `harsh_braking` analysis.
pub struct HarshBraking;

/// One braking event.
#[derive(Clone, Debug, PartialEq)]
pub struct Braking {
    /// The vehicle.
    pub vin: Vin,
    /// Event time of the highest earlier speed.
    pub from_time: Time,
    /// Event time of the reading that completed the drop.
    pub to_time: Time,
    /// The highest speed in the `within_secs` before, mph.
    pub from_speed: f64,
    /// The speed of the reading, mph.
    pub to_speed: f64,
}

#[derive(Serialize)]
struct Line<'a> {
    vin: &'a str,
    from_time: Rfc3339,
    to_time: Rfc3339,
    from_speed: f64,
    to_speed: f64,
    drop_mph: f64,
}

impl Output for Braking {
    fn filed_at(&self) -> Time {
        self.to_time
    }
    fn key(&self) -> Option<Vin> {
        Some(self.vin)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        let line = Line {
            vin: self.vin.as_str(),
            from_time: Rfc3339(self.from_time),
            to_time: Rfc3339(self.to_time),
            from_speed: self.from_speed,
            to_speed: self.to_speed,
            drop_mph: ((self.from_speed - self.to_speed) * 1000.0).round() / 1000.0,
        };
        json(out, &line);
    }
}

/// The sequential rule, one vehicle's readings at a time in event-time order: what both the
/// dataflow and the tests' oracle apply.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BrakingRule {
    /// The readings of the last `within` ms: `(event time, speed)`.
    recent: VecDeque<(Time, f64)>,
}

impl BrakingRule {
    /// Takes the vehicle's next reading; returns `(from_time, from_speed)` if it completes a drop
    /// of more than `drop_mph` within `within_ms`.
    pub fn next(&mut self, ts: Time, speed: f64, drop_mph: f64, within_ms: Time) -> Option<(Time, f64)> {
        while self.recent.front().is_some_and(|(t, _)| t.saturating_add(within_ms) < ts) {
            self.recent.pop_front();
        }
        // The highest earlier speed (the earliest of equal ones).
        let top = self.recent.iter().fold(None::<(Time, f64)>, |best, &(t, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((t, s)),
        });
        let event = top.filter(|(_, s)| s - speed > drop_mph);
        if event.is_some() {
            self.recent.clear();
        }
        self.recent.push_back((ts, speed));
        event
    }
}

fn settings(settings: &Settings) -> Result<(f64, Time), AnalysisError> {
    let spec = HarshBraking.spec();
    let drop = number(spec, settings, "drop_mph")?;
    let within = number(spec, settings, "within_secs")?;
    let bad = |key: &str, problem: String| AnalysisError::Setting { analysis: spec.name, key: key.into(), problem };
    if !(drop.is_finite() && drop > 0.0) {
        return Err(bad("drop_mph", format!("{drop} is not allowed; use a speed drop above 0 mph")));
    }
    if !(within.is_finite() && within > 0.0 && within <= 3600.0) {
        return Err(bad("within_secs", format!("{within} is not allowed; use more than 0 and at most 3600 seconds")));
    }
    Ok((drop, (within * 1000.0).round().max(1.0) as Time))
}

impl Analysis for HarshBraking {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "harsh_braking",
            about: "a vehicle's speed dropped by more than drop_mph within within_secs",
            outputs: &[OutputSpec {
                name: "harsh_braking",
                about: "vin, from_time, to_time, from_speed, to_speed, drop_mph",
                timing: Timing::Untimed, fields: FIELDS,
            }],
            settings: &[
                SettingSpec { name: "drop_mph", default: DefaultValue::Number(20.0), about: "speed drop that counts as harsh, mph", aliases: Aliases::NONE },
                SettingSpec { name: "within_secs", default: DefaultValue::Number(3.0), about: "within this many seconds", aliases: Aliases::NONE },
            ],
            tables: &[],
            queries: &[],
            on_by_default: false,
            uses_offsets: false,
        }
    }

    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
        let (drop, within) = settings(ctx.settings())?;
        let events = ctx
            .readings()
            // Ties at one millisecond are ordered by record id, then speed (bit order of positive floats).
            .map(|r| (r.vin, r.timestamp, (r.record_id, r.speed.to_bits())))
            .ordered_by_key("HarshBraking", within, move |vin, rule: &mut BrakingRule, ts, &(_, bits), out| {
                let speed = f64::from_bits(bits);
                if let Some((from_time, from_speed)) = rule.next(ts, speed, drop, within) {
                    out.push(Braking { vin: *vin, from_time, to_time: ts, from_speed, to_speed: speed });
                }
            });
        ctx.output("harsh_braking", events)
    }

    /// A reading is history for the readings of the next `within_secs`.
    fn settles(&self, ts: Time, _: &Params, s: &Settings) -> Time {
        let within = settings(s).map(|(_, w)| w).unwrap_or(3_000);
        ts.saturating_add(within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_within_the_span_is_one_event_and_restarts_the_history() {
        let mut rule = BrakingRule::default();
        let seq = [(0, 60.0), (1_000, 62.0), (2_000, 50.0), (3_500, 41.0), (4_000, 40.0), (5_000, 10.0)];
        let events: Vec<_> = seq.iter().filter_map(|&(t, s)| rule.next(t, s, 20.0, 3_000).map(|e| (e, t))).collect();
        // 62 at 1 s to 41 at 3.5 s: 21 mph in 2.5 s. Then 40 at 4 s is no new event (history
        // restarted at 41), and 10 at 5 s is 31 below 41.
        assert_eq!(events, vec![((1_000, 62.0), 3_500), ((3_500, 41.0), 5_000)]);
    }

    #[test]
    fn exactly_the_drop_or_just_outside_the_span_is_not_an_event() {
        let mut rule = BrakingRule::default();
        assert_eq!(rule.next(0, 60.0, 20.0, 3_000), None);
        assert_eq!(rule.next(3_000, 40.0, 20.0, 3_000), None, "a drop of exactly 20 mph is not more than 20");
        let mut rule = BrakingRule::default();
        rule.next(0, 60.0, 20.0, 3_000);
        assert_eq!(rule.next(3_001, 10.0, 20.0, 3_000), None, "60 mph was 3.001 s before");
    }
}
