//! `SpeedStats`: the speed aggregate of a window (count, sum, min, max, speeding count).

use serde::{Deserialize, Serialize};

use crate::reading::{Reading, MICRO};
use crate::windows::{Window, WindowAggregate};

/// A per-vehicle speed window: the record of `speed_windows`, `speeders`, `daily_speeders` and `alerts`.
pub type SpeedWindow = Window<crate::reading::Vin, SpeedStats>;

/// Speed figures of a set of readings. Merging is associative and commutative, and the sum is
/// kept in integer micro-mph, so results do not depend on arrival order or worker count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedStats {
    /// Number of readings.
    pub readings: u64,
    /// Sum of speeds, micro-mph.
    pub sum_micro: u64,
    /// Lowest speed, mph.
    pub min: f64,
    /// Highest speed, mph.
    pub max: f64,
    /// Readings strictly above the speed limit.
    pub speeding: u64,
}

impl SpeedStats {
    /// Average speed in mph, rounded to 0.001 mph.
    pub fn avg(&self) -> f64 {
        if self.readings == 0 {
            return 0.0;
        }
        let micro = self.sum_micro as f64 / self.readings as f64;
        (micro / 1_000.0).round() / 1_000.0
    }

    /// Whether the exact average is strictly above `threshold_mph`.
    pub fn avg_above(&self, threshold_mph: f64) -> bool {
        // sum / n > t  <=>  sum > t * n, compared in micro-mph without rounding the average.
        (self.sum_micro as f64) > threshold_mph * MICRO * self.readings as f64
    }
}

impl Default for SpeedStats {
    fn default() -> Self {
        SpeedStats { readings: 0, sum_micro: 0, min: f64::INFINITY, max: f64::NEG_INFINITY, speeding: 0 }
    }
}

/// What one reading contributes to a [`SpeedStats`]: its speed and whether it is speeding.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedSample {
    /// Speed in mph.
    pub speed: f64,
    /// Speed in micro-mph.
    pub micro: u64,
    /// Above the speed limit.
    pub speeding: bool,
}

impl SpeedSample {
    /// The sample of `reading` under `speed_limit_mph`.
    #[inline]
    pub fn of(reading: &Reading, speed_limit_mph: f64) -> Self {
        SpeedSample { speed: reading.speed, micro: reading.speed_micro(), speeding: reading.speed > speed_limit_mph }
    }
}

impl WindowAggregate for SpeedStats {
    type Input = SpeedSample;

    #[inline]
    fn add(&mut self, _offset: u32, s: &SpeedSample) {
        self.readings += 1;
        self.sum_micro += s.micro;
        if s.speed < self.min {
            self.min = s.speed;
        }
        if s.speed > self.max {
            self.max = s.speed;
        }
        self.speeding += s.speeding as u64;
    }

    fn merge(&mut self, other: &Self) {
        self.readings += other.readings;
        self.sum_micro += other.sum_micro;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.speeding += other.speeding;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_is_order_independent_and_threshold_exact() {
        let mut a = SpeedStats::default();
        for s in [80.0, 80.0, 80.000001] {
            a.add(0, &SpeedSample { speed: s, micro: (s * MICRO).round() as u64, speeding: true });
        }
        assert!(a.avg_above(80.0));
        let mut b = SpeedStats::default();
        for s in [80.0, 80.0] {
            b.add(0, &SpeedSample { speed: s, micro: (s * MICRO).round() as u64, speeding: true });
        }
        assert!(!b.avg_above(80.0));
        assert_eq!(b.avg(), 80.0);
        assert_eq!(b.min, 80.0);
    }
}
