//! `daily_speeders`: per vehicle and UTC day, the speeding readings and the day's top speed.

use timely::dataflow::operators::vec::Filter;
use timely::dataflow::StreamVec;

use super::SpeedWindow;
use crate::time::{Time, DAY_MS};
use crate::windows::Sliding;

/// Re-windows speeding panes (tumbling windows with at least one speeding reading) into UTC days.
///
/// Only speeding panes are kept, so a vehicle's state exists only for days it sped on. The day's
/// `max` is the top speed of the day: a pane without speeding readings cannot hold it.
pub fn daily_speeders<'scope>(panes: StreamVec<'scope, Time, SpeedWindow>) -> StreamVec<'scope, Time, SpeedWindow> {
    panes.filter(|w| w.agg.speeding > 0).sliding(DAY_MS, DAY_MS)
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
}
