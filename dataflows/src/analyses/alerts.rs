//! `alerts`: a vehicle's sliding-window average speed went above the alert threshold, once per
//! episode (no alert when the window one slide earlier was already above it).

use crate::schema::Field;
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use super::SpeedWindow;
use crate::checkpoint::{Checkpoints, OperatorState};
use crate::analysis::{Aliases, Analysis, AnalysisError, Context, DefaultValue, OutputSpec, SettingSpec, Settings, Spec, Timing};
use crate::output::{JsonObject, Output};
use crate::params::Params;
use crate::reading::Vin;
use crate::time::{align, Pending, Time};
use crate::windows::Sliding;

/// The fields of the output's JSON lines.
const FIELDS: &[Field] = &[Field::keyword("vin"), Field::timestamp("window_start"), Field::timestamp("window_end"), Field::double("avg_speed")];

/// The `alerts` analysis: sliding windows (`params.sliding_size_ms` every `params.sliding_slide_ms`)
/// whose average speed goes above the `threshold_mph` setting (80 by default), once per episode.
pub struct Alerts;

/// An `alerts` record.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRow(pub SpeedWindow);

impl Output for AlertRow {
    fn filed_at(&self) -> Time {
        self.0.start
    }
    fn key(&self) -> Option<Vin> {
        Some(self.0.key)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        let w = &self.0;
        JsonObject::new(out).str("vin", w.key.as_str()).time("window_start", w.start).time("window_end", w.end).f64("avg_speed", w.agg.avg()).end();
    }
}

impl Analysis for Alerts {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "alerts",
            about: "a vehicle's sliding-window average speed went above the alert threshold (once per episode)",
            outputs: &[OutputSpec { name: "alerts", about: "vin, window_start, window_end, avg_speed", timing: Timing::Detection, fields: FIELDS }],
            settings: &[SettingSpec {
                name: "threshold_mph",
                default: DefaultValue::Number(80.0),
                about: "a sliding window whose average speed is strictly above this starts an alert episode, mph",
                aliases: Aliases { key: Some("thresholds.alert_avg_mph"), flag: Some("alert-threshold") },
            }],
            tables: &[],
            queries: &[],
            on_by_default: true,
            uses_offsets: false,
        }
    }

    fn build<'scope>(&self, ctx: &mut Context<'scope, '_>) -> Result<(), AnalysisError> {
        let p = ctx.params().clone();
        let threshold = ctx.number_in("threshold_mph", 0.0..=300.0)?;
        let (panes, episodes) = (ctx.state("panes"), ctx.state("episodes"));
        let windows = ctx.speed_windows().sliding_saved(p.sliding_size_ms, p.sliding_slide_ms, panes).0;
        let alerts = windows.alerts_saved(threshold, p.sliding_size_ms, p.sliding_slide_ms, episodes);
        ctx.output("alerts", alerts.map(AlertRow))
    }

    /// The next window's episode decision looks back at the window of `ts`: one slide more.
    fn settles(&self, ts: Time, p: &Params, _: &Settings) -> Time {
        align(ts, p.sliding_slide_ms) + p.sliding_size_ms + p.sliding_slide_ms - 1
    }
}

/// Extension trait for the alert episode detector on a stream of sliding windows.
pub trait AlertEpisodes<'scope>: Sized {
    /// Sliding windows whose average is above `threshold_mph` while the same vehicle's window one
    /// `slide` earlier was not (or did not exist). Windows are `size` ms long. Windows are processed in event-time order,
    /// whatever order they arrive in.
    fn alerts(self, threshold_mph: f64, size: Time, slide: Time) -> StreamVec<'scope, Time, SpeedWindow> {
        self.alerts_saved(threshold_mph, size, slide, Checkpoints::off().operator("alerts"))
    }

    /// As [`AlertEpisodes::alerts`], saving the vehicles above the threshold at checkpoint
    /// boundaries into `state` and starting from what it restores.
    fn alerts_saved(self, threshold_mph: f64, size: Time, slide: Time, state: OperatorState) -> StreamVec<'scope, Time, SpeedWindow>;
}

impl<'scope> AlertEpisodes<'scope> for StreamVec<'scope, Time, SpeedWindow> {
    fn alerts_saved(self, threshold_mph: f64, size: Time, slide: Time, mut saved: OperatorState) -> StreamVec<'scope, Time, SpeedWindow> {
        let pact = Exchange::new(|w: &SpeedWindow| w.key.worker_hash());
        self.unary_frontier(pact, "Alerts", move |_cap, _info| {
            let mut pending: Pending<Vec<SpeedWindow>> = Pending::new();
            // Vehicle -> start of its latest window above the threshold.
            let mut above: FxHashMap<Vin, Time> = FxHashMap::default();
            for part in saved.restored::<Vec<(Vin, Time)>>() {
                above.extend(part.into_iter().filter(|(vin, _)| saved.owns(vin.worker_hash())));
            }
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    for batch in data {
                        let Some(&t) = cap.least() else { continue };
                        let (_, v) = pending.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
                        v.append(batch);
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    saved.passing(*entry.key(), |_| above.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
                    let (end, (cap, mut windows)) = entry.remove_entry();
                    windows.sort_unstable_by_key(|a| (a.start, a.key));
                    let mut session = output.session(&cap);
                    for w in windows {
                        if w.agg.avg_above(threshold_mph) {
                            let continuing = w.start >= slide && above.get(&w.key) == Some(&(w.start - slide));
                            above.insert(w.key, w.start);
                            if !continuing {
                                session.give(w);
                            }
                        }
                    }
                    // An episode ends when a window is not above the threshold (or is missing): only
                    // vehicles above it in this round's windows (start `end - size`) can continue.
                    above.retain(|_, start| *start + size >= end);
                }
                let reached = frontier.frontier().first().copied().unwrap_or(Time::MAX);
                saved.passing(reached, |_| above.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            }
        })
    }
}
