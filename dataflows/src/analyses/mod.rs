//! The analyses: each a function from windowed streams (and reference collections) to an output
//! stream, in a file of its own.

pub mod alerts;
pub mod buggy_devices;
pub mod daily_speeders;
pub mod speeders;

/// A per-vehicle speed window: the record of `speed_windows`, `speeders`, `daily_speeders` and `alerts`.
pub type SpeedWindow = crate::windows::Window<crate::reading::Vin, crate::stats::SpeedStats>;
