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
