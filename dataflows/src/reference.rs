//! Reference data as differential collections: which sensor each vehicle carries since when, and
//! which sensors are buggy, folded into one per-vehicle [`Timeline`] that the joins look up.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use crate::reading::Vin;
use crate::time::Time;

/// A sensor identifier, as written in the reference files.
pub type SensorId = String;

/// One row of the VIN-to-sensor table: from `effective_from` (epoch ms; 0 when the file leaves it
/// empty, meaning always) the vehicle carries `sensor`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SensorRow {
    /// First event time the row applies to.
    pub effective_from: Time,
    /// The installed sensor.
    pub sensor: SensorId,
}

/// One stretch of a vehicle's history: from `from` on, until the next segment, `sensor` is installed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Segment {
    /// First event time of the segment.
    pub from: Time,
    /// The sensor installed.
    pub sensor: SensorId,
    /// Whether that sensor is on the buggy list.
    pub buggy: bool,
}

/// A vehicle's sensor history, sorted by `from`, at most one segment per `from`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timeline(pub Vec<Segment>);

impl Timeline {
    /// The segment in force at event time `ts`: the greatest `from <= ts`.
    pub fn at(&self, ts: Time) -> Option<&Segment> {
        let i = self.0.partition_point(|s| s.from <= ts);
        i.checked_sub(1).map(|i| &self.0[i])
    }

    /// The segments overlapping `[start, end)`, each with the sub-range it covers there.
    pub fn covering(&self, start: Time, end: Time) -> impl Iterator<Item = (&Segment, Time, Time)> {
        let first = self.0.partition_point(|s| s.from <= start).saturating_sub(1);
        let segs = &self.0;
        segs[first..].iter().enumerate().filter_map(move |(i, seg)| {
            let next = segs.get(first + i + 1).map(|n| n.from).unwrap_or(Time::MAX);
            let lo = seg.from.max(start);
            let hi = next.min(end);
            (lo < hi).then_some((seg, lo, hi))
        })
    }
}

/// Folds the reference rows and the buggy list into one timeline per vehicle.
///
/// Incremental: a changed row or buggy-list entry updates only the timelines of the vehicles it
/// concerns. Should two rows of a vehicle share an `effective_from`, the greater sensor id wins
/// (the runtime's loader rejects such files, so this only keeps the result deterministic).
pub fn timelines<'scope>(
    rows: VecCollection<'scope, Time, (Vin, SensorRow)>,
    buggy: VecCollection<'scope, Time, SensorId>,
) -> VecCollection<'scope, Time, (Vin, Timeline)> {
    let buggy = buggy.distinct();
    let by_sensor = rows.clone().map(|(vin, row)| (row.sensor.clone(), (vin, row.effective_from)));
    let flagged = by_sensor.semijoin(buggy).map(|(sensor, (vin, from))| (vin, (from, sensor, true)));
    rows.map(|(vin, row)| (vin, (row.effective_from, row.sensor, false))).concat(flagged).reduce(|_vin, input, output| {
        let mut segments: Vec<Segment> = Vec::new();
        // Input is sorted by (from, sensor, buggy); a buggy flag follows its row.
        for ((from, sensor, buggy), count) in input.iter() {
            if *count <= 0 {
                continue;
            }
            match segments.last_mut() {
                Some(last) if last.from == *from && &last.sensor == sensor => last.buggy |= *buggy,
                Some(last) if last.from == *from => {
                    // Same `from`, greater sensor id (input is sorted): it wins.
                    *last = Segment { from: *from, sensor: sensor.clone(), buggy: *buggy };
                }
                _ => segments.push(Segment { from: *from, sensor: sensor.clone(), buggy: *buggy }),
            }
        }
        if !segments.is_empty() {
            output.push((Timeline(segments), 1));
        }
    })
}

/// The timelines arranged by vehicle, the index the reference joins share.
pub type TimelineTrace = differential_dataflow::operators::arrange::TraceAgent<
    differential_dataflow::trace::implementations::ValSpine<Vin, Timeline, Time, isize>,
>;

/// Arranges timelines by vehicle so several joins can share one index.
pub fn arrange_timelines<'scope>(
    timelines: VecCollection<'scope, Time, (Vin, Timeline)>,
) -> differential_dataflow::operators::arrange::Arranged<'scope, TimelineTrace> {
    timelines.arrange_by_key_named("Arrange: timelines")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(from: Time, sensor: &str, buggy: bool) -> Segment {
        Segment { from, sensor: sensor.to_string(), buggy }
    }

    #[test]
    fn as_of_lookup() {
        let t = Timeline(vec![seg(0, "A", false), seg(100, "B", true)]);
        assert_eq!(t.at(99).map(|s| s.sensor.as_str()), Some("A"));
        assert_eq!(t.at(100).map(|s| s.sensor.as_str()), Some("B"));
        let late = Timeline(vec![seg(50, "A", false)]);
        assert!(late.at(49).is_none());
    }

    #[test]
    fn covering_splits_a_window() {
        let t = Timeline(vec![seg(0, "A", false), seg(30, "B", true), seg(90, "C", false)]);
        let spans: Vec<(&str, Time, Time)> = t.covering(0, 60).map(|(s, lo, hi)| (s.sensor.as_str(), lo, hi)).collect();
        assert_eq!(spans, vec![("A", 0, 30), ("B", 30, 60)]);
        let spans: Vec<(&str, Time, Time)> = t.covering(60, 120).map(|(s, lo, hi)| (s.sensor.as_str(), lo, hi)).collect();
        assert_eq!(spans, vec![("B", 60, 90), ("C", 90, 120)]);
        let before = Timeline(vec![seg(100, "A", false)]);
        assert_eq!(before.covering(0, 60).count(), 0);
        assert_eq!(before.covering(60, 120).map(|(_, lo, hi)| (lo, hi)).collect::<Vec<_>>(), vec![(100, 120)]);
    }
}
