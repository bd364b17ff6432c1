//! The analyses: each a file of its own, registered below with one line.
//!
//! To add one, write `dataflows/src/analyses/<name>.rs` with a unit struct implementing
//! [`Analysis`](crate::analysis::Analysis) and add `<name>::<Struct>,` to the list (docs/analyses.md, "Your
//! first analysis"). The order of the list is the order they are built in: a stream declared
//! earlier is handed to its sinks before later analyses run in the same step.

pub use crate::stats::SpeedWindow;

macro_rules! register {
    ($($module:ident :: $analysis:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every analysis this build knows, in build order.
        pub static REGISTRY: &[&dyn crate::analysis::Analysis] = &[$(&$module::$analysis),*];
    };
}

register! {
    speed_windows::SpeedWindows,
    speeders::Speeders,
    daily_speeders::DailySpeeders,
    alerts::Alerts,
    buggy_devices::BuggyDevices,
    harsh_braking::HarshBraking,
    unit_transform::UnitTransform,
    geofence::Geofence,
}

/// The registered analysis called `name`.
pub fn named(name: &str) -> Option<&'static dyn crate::analysis::Analysis> {
    REGISTRY.iter().copied().find(|a| a.spec().name == name)
}
