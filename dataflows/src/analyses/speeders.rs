//! `speeders`: tumbling windows in which a vehicle went above the speed limit.

use timely::dataflow::operators::vec::Filter;
use timely::dataflow::StreamVec;

use super::SpeedWindow;
use crate::time::Time;

/// The tumbling windows whose highest speed is strictly above `speed_limit_mph`.
pub fn speeders<'scope>(windows: StreamVec<'scope, Time, SpeedWindow>, speed_limit_mph: f64) -> StreamVec<'scope, Time, SpeedWindow> {
    windows.filter(move |w| w.agg.max > speed_limit_mph)
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
