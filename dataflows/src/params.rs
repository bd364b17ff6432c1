//! The semantic parameters shared by the analyses: window sizes, the speed limit (every window
//! counts its speeding readings), the correction horizon. An analysis's own thresholds are its
//! settings.

use serde::{Deserialize, Serialize};

use crate::time::{Time, DAY_MS};

/// A parameter, as [`ParamsError`] names it (the runtime names its configuration key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// [`Params::tumbling_ms`].
    TumblingMs,
    /// [`Params::sliding_size_ms`].
    SlidingSizeMs,
    /// [`Params::sliding_slide_ms`].
    SlidingSlideMs,
    /// [`Params::speed_limit_mph`].
    SpeedLimitMph,
}

/// Parameters that do not fit together.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{param:?}: {problem}")]
pub struct ParamsError {
    /// The parameter at fault.
    pub param: Param,
    /// What is wrong and what is allowed.
    pub problem: String,
}

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
    /// Checks that the parameters fit together; the error names the parameter and what is allowed.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let fail = |param, problem: String| Err(ParamsError { param, problem });
        if self.tumbling_ms == 0 || !DAY_MS.is_multiple_of(self.tumbling_ms) {
            return fail(
                Param::TumblingMs,
                format!("{} ms does not divide a day; use a window length that divides 86400 s (e.g. 60 s)", self.tumbling_ms),
            );
        }
        if self.sliding_slide_ms == 0 || !self.sliding_slide_ms.is_multiple_of(self.tumbling_ms) {
            let problem =
                format!("{} ms must be a positive multiple of the tumbling window ({} ms)", self.sliding_slide_ms, self.tumbling_ms);
            return fail(Param::SlidingSlideMs, problem);
        }
        if self.sliding_size_ms < self.sliding_slide_ms || !self.sliding_size_ms.is_multiple_of(self.tumbling_ms) {
            let problem = format!(
                "{} ms must be a multiple of the tumbling window ({} ms) and at least the slide ({} ms)",
                self.sliding_size_ms, self.tumbling_ms, self.sliding_slide_ms
            );
            return fail(Param::SlidingSizeMs, problem);
        }
        if self.sliding_size_ms > u32::MAX as Time {
            return fail(Param::SlidingSizeMs, "must be below 49 days".to_string());
        }
        let limit = self.speed_limit_mph;
        if !limit.is_finite() || !(0.0..=300.0).contains(&limit) {
            return fail(Param::SpeedLimitMph, format!("{limit} is not a speed; use a number of mph in [0, 300]"));
        }
        Ok(())
    }
}
