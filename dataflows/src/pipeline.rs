//! The whole job's dataflow: parsed readings and reference collections in, named output streams out.

use differential_dataflow::VecCollection;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use crate::analyses::alerts::AlertEpisodes;
use crate::analyses::buggy_devices::{buggy_devices, BuggyDevice};
use crate::analyses::daily_speeders::{daily_speeders_open, LiveDailySpeeders};
use crate::analyses::speeders::speeders;
use crate::analyses::SpeedWindow;
use crate::changelog::Change;
use crate::params::Params;
use crate::reading::{Reading, Vin};
use crate::reference::{arrange_timelines, timelines, SensorId, SensorRow};
use crate::stats::{SpeedSample, SpeedStats};
use crate::time::Time;
use crate::windows::{Offsets, Sliding, Tumbling, Window};

/// The named output streams of the job (see docs/configuration.md for their fields).
pub struct Outputs<'scope> {
    /// Every tumbling window of every vehicle.
    pub speed_windows: StreamVec<'scope, Time, SpeedWindow>,
    /// Tumbling windows above the speed limit.
    pub speeders: StreamVec<'scope, Time, SpeedWindow>,
    /// Per vehicle and UTC day with speeding readings.
    pub daily_speeders: StreamVec<'scope, Time, SpeedWindow>,
    /// Sliding windows that start an above-threshold episode.
    pub alerts: StreamVec<'scope, Time, SpeedWindow>,
    /// Readings under a buggy sensor, per vehicle, sensor and tumbling window, with corrections.
    pub buggy_devices: StreamVec<'scope, Time, Change<BuggyDevice>>,
    /// This worker's live state behind `daily_speeders`, for queries between steps.
    pub live_daily: LiveDailySpeeders,
}

/// Builds the job's dataflow.
pub struct Pipeline;

impl Pipeline {
    /// Wires the analyses. `readings` must travel at timely times no later than their event times,
    /// with the frontier as the watermark; `rows` and `buggy` are the reference collections.
    pub fn build<'scope>(
        readings: StreamVec<'scope, Time, Reading>,
        rows: VecCollection<'scope, Time, (Vin, SensorRow)>,
        buggy: VecCollection<'scope, Time, SensorId>,
        params: &Params,
    ) -> Outputs<'scope> {
        let limit = params.speed_limit_mph;
        let windows = readings
            .map(move |r| (r.vin, r.timestamp, (SpeedSample::of(&r, limit), true)))
            .tumbling_open::<(SpeedStats, Offsets)>(params.tumbling_ms);
        let (windows, panes) = windows;
        let offsets = windows.clone().map(|w| Window { key: w.key, start: w.start, end: w.end, agg: w.agg.1 });
        let speed_windows = windows.map(|w| Window { key: w.key, start: w.start, end: w.end, agg: w.agg.0 });

        let alerts = speed_windows.clone().sliding(params.sliding_size_ms, params.sliding_slide_ms).alerts(
            params.alert_avg_mph,
            params.sliding_size_ms,
            params.sliding_slide_ms,
        );
        let timelines = arrange_timelines(timelines(rows, buggy));
        let (daily_speeders, days) = daily_speeders_open(speed_windows.clone());
        Outputs {
            speeders: speeders(speed_windows.clone(), limit),
            daily_speeders,
            live_daily: LiveDailySpeeders { panes, days },
            alerts,
            buggy_devices: buggy_devices(offsets, timelines, params.correction_horizon_ms),
            speed_windows,
        }
    }
}
