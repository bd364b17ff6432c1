//! Output streams by name: the runtime's own (`late`, `errors`, `raw`) and those the analyses of
//! the registry declare, and which sinks each goes to. Every stage names streams through this
//! module, so none depends on another for the names.

/// Each output stream with the names of the sinks that receive it (see `Config::routes`).
pub type Routes = Vec<(StreamName, Vec<String>)>;

/// An output stream: one of the runtime's own (`late`, `errors`, `raw`) or one an analysis
/// declares. Streams are numbered once per build, from the analysis registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(u16);

/// Every stream name: the runtime's, then the registered analyses' outputs in registry order.
static NAMES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut names = vec!["late", "errors", "raw"];
    for analysis in fleetflow_dataflows::analyses::REGISTRY {
        for output in analysis.spec().outputs {
            if !names.contains(&output.name) {
                names.push(output.name);
            }
        }
    }
    names
});

impl StreamName {
    /// Late readings.
    pub const LATE: StreamName = StreamName(0);
    /// Malformed records.
    pub const ERRORS: StreamName = StreamName(1);
    /// The accepted readings, as text lines: the archive that backfills replay. Off unless routed.
    pub const RAW: StreamName = StreamName(2);
    /// Every tumbling window (analysis `speed_windows`, first in the registry).
    pub const SPEED_WINDOWS: StreamName = StreamName(3);
    /// Tumbling windows above the speed limit.
    pub const SPEEDERS: StreamName = StreamName(4);
    /// Per vehicle and day with speeding.
    pub const DAILY_SPEEDERS: StreamName = StreamName(5);
    /// Sliding-window alert episodes.
    pub const ALERTS: StreamName = StreamName(6);
    /// Readings under buggy sensors.
    pub const BUGGY_DEVICES: StreamName = StreamName(7);

    /// Every stream, in a fixed order.
    pub fn all() -> impl Iterator<Item = StreamName> {
        (0..NAMES.len() as u16).map(StreamName)
    }

    /// How many streams there are.
    pub fn count() -> usize {
        NAMES.len()
    }

    /// The stream's number, for per-stream tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The name used in configuration and as the output folder.
    pub fn as_str(self) -> &'static str {
        NAMES.get(self.index()).copied().unwrap_or("unknown")
    }

    /// The stream called `name`.
    pub fn parse(name: &str) -> Option<StreamName> {
        NAMES.iter().position(|n| *n == name).map(|i| StreamName(i as u16))
    }
}

impl std::fmt::Display for StreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::StreamName;

    #[test]
    fn the_named_constants_are_the_registry_streams_and_names_are_unique() {
        let named = [
            (StreamName::LATE, "late"),
            (StreamName::ERRORS, "errors"),
            (StreamName::RAW, "raw"),
            (StreamName::SPEED_WINDOWS, "speed_windows"),
            (StreamName::SPEEDERS, "speeders"),
            (StreamName::DAILY_SPEEDERS, "daily_speeders"),
            (StreamName::ALERTS, "alerts"),
            (StreamName::BUGGY_DEVICES, "buggy_devices"),
        ];
        for (stream, name) in named {
            assert_eq!(stream.as_str(), name);
            assert_eq!(StreamName::parse(name), Some(stream));
        }
        let mut outputs: Vec<&str> =
            fleetflow_dataflows::analyses::REGISTRY.iter().flat_map(|a| a.spec().outputs.iter().map(|o| o.name)).collect();
        let declared = outputs.len();
        outputs.sort();
        outputs.dedup();
        assert_eq!(outputs.len(), declared, "two analyses declare the same output stream");
        assert_eq!(StreamName::count(), declared + 3);
        assert!(StreamName::parse("harsh_braking").is_some());
    }
}
