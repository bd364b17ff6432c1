//! `alerts`: a vehicle's sliding-window average speed went above the alert threshold, once per
//! episode (no alert when the window one slide earlier was already above it).

use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::SpeedWindow;
use crate::reading::Vin;
use crate::time::{Pending, Time};

/// Extension trait for the alert episode detector on a stream of sliding windows.
pub trait Alerts<'scope> {
    /// Sliding windows whose average is above `threshold_mph` while the same vehicle's window one
    /// `slide` earlier was not (or did not exist). Windows are `size` ms long. Windows are processed in event-time order,
    /// whatever order they arrive in.
    fn alerts(self, threshold_mph: f64, size: Time, slide: Time) -> StreamVec<'scope, Time, SpeedWindow>;
}

impl<'scope> Alerts<'scope> for StreamVec<'scope, Time, SpeedWindow> {
    fn alerts(self, threshold_mph: f64, size: Time, slide: Time) -> StreamVec<'scope, Time, SpeedWindow> {
        let pact = Exchange::new(|w: &SpeedWindow| w.key.route());
        self.unary_frontier(pact, "Alerts", move |_cap, _info| {
            let mut pending: Pending<Vec<SpeedWindow>> = Pending::new();
            // Vehicle -> start of its latest window above the threshold.
            let mut above: FxHashMap<Vin, Time> = FxHashMap::default();
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
            }
        })
    }
}
