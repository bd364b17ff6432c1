//! The semantic parameters shared by the analyses: window sizes, the speed limit (every window
//! counts its speeding readings), the correction horizon. An analysis's own thresholds are its
//! settings.

use serde::{Deserialize, Serialize};

use crate::time::{Time, DAY_MS};

/// Parameters shared by the analyses. The runtime fills these from its configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Tumbling window length, ms (default 60 s).
    pub tumbling_ms: Time,
    /// Sliding window length, ms (default 300 s); a multiple of `tumbling_ms`.
    pub sliding_size_ms: Time,
    /// Sliding window slide, ms (default 60 s); a multiple of `tumbling_ms`.
    pub sliding_slide_ms: Time,
    /// Speed limit in mph: a reading above it is speeding (default 65).
    pub speed_limit_mph: f64,
    /// How long after a tumbling window closes a reference change still corrects its
    /// `buggy_devices` rows, ms (default 10 min). State for a window is released after it.
    pub correction_horizon_ms: Time,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            tumbling_ms: 60_000,
            sliding_size_ms: 300_000,
            sliding_slide_ms: 60_000,
            speed_limit_mph: 65.0,
            correction_horizon_ms: 600_000,
        }
    }
}

impl Params {
    /// Checks that the parameters fit together; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.tumbling_ms == 0 || !DAY_MS.is_multiple_of(self.tumbling_ms) {
            return Err(format!(
                "windows.tumbling_secs: {} ms does not divide a day; use a window length that divides 86400 s (e.g. 60)",
                self.tumbling_ms
            ));
        }
        if self.sliding_slide_ms == 0 || !self.sliding_slide_ms.is_multiple_of(self.tumbling_ms) {
            return Err(format!(
                "windows.sliding_slide_secs: {} ms must be a positive multiple of the tumbling window ({} ms)",
                self.sliding_slide_ms, self.tumbling_ms
            ));
        }
        if self.sliding_size_ms < self.sliding_slide_ms || !self.sliding_size_ms.is_multiple_of(self.tumbling_ms) {
            return Err(format!(
                "windows.sliding_size_secs: {} ms must be a multiple of the tumbling window ({} ms) and at least the slide ({} ms)",
                self.sliding_size_ms, self.tumbling_ms, self.sliding_slide_ms
            ));
        }
        if self.sliding_size_ms > u32::MAX as Time {
            return Err("windows.sliding_size_secs: must be below 49 days".to_string());
        }
        let limit = self.speed_limit_mph;
        if !limit.is_finite() || !(0.0..=300.0).contains(&limit) {
            return Err(format!("thresholds.speed_limit_mph: {limit} is not a speed; use a number of mph in [0, 300]"));
        }
        Ok(())
    }
}
