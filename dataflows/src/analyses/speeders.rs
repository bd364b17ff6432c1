//! `speeders`: tumbling windows in which a vehicle went above the speed limit.

use timely::dataflow::operators::vec::Filter;
use timely::dataflow::StreamVec;

use super::SpeedWindow;
use crate::time::Time;

/// The tumbling windows whose highest speed is strictly above `speed_limit_mph`.
pub fn speeders<'scope>(windows: StreamVec<'scope, Time, SpeedWindow>, speed_limit_mph: f64) -> StreamVec<'scope, Time, SpeedWindow> {
    windows.filter(move |w| w.agg.max > speed_limit_mph)
}
