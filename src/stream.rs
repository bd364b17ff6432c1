//! Output streams by name: the runtime's own (`late`, `errors`, `raw`) and those the analyses of
//! the registry declare, and which sinks each goes to. Every stage names streams through this
//! module, so none depends on another for the names.

pub use fleetflow_dataflows::analysis::Timing;
use fleetflow_dataflows::schema::Field;

/// Each output stream with the names of the sinks that receive it (see `Config::routes`).
pub type Routes = Vec<(StreamName, Vec<String>)>;

/// An output stream: one of the runtime's own (`late`, `errors`, `raw`) or one an analysis
/// declares. Streams are numbered once per build, from the analysis registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(u16);

/// Every stream's name and timing: the runtime's, then the registered analyses' outputs in
/// registry order.
static STREAMS: std::sync::LazyLock<Vec<(&'static str, Timing, &'static [Field])>> = std::sync::LazyLock::new(|| {
    let mut streams = vec![("late", Timing::Untimed, REJECTED), ("errors", Timing::Untimed, REJECTED), ("raw", Timing::Untimed, &[][..])];
    for analysis in fleetflow_dataflows::analyses::REGISTRY {
        for output in analysis.spec().outputs {
            if !streams.iter().any(|(n, _, _)| *n == output.name) {
                streams.push((output.name, output.timing, output.fields));
            }
        }
    }
    streams
});

/// The fields of a `late` or `errors` line (see `encode::rejected`).
const REJECTED: &[Field] = &[
    Field::text("record"),
    Field::keyword("encoding").optional(),
    Field::keyword("position"),
    Field::text("reason"),
    Field::timestamp("timestamp").optional(),
    Field::timestamp("watermark").optional(),
];

impl StreamName {
    /// Late readings.
    pub const LATE: StreamName = StreamName(0);
    /// Malformed records.
    pub const ERRORS: StreamName = StreamName(1);
    /// The accepted readings, as text lines: the archive that backfills replay. Off unless routed.
    pub const RAW: StreamName = StreamName(2);

    /// Every stream, in a fixed order.
    pub fn all() -> impl Iterator<Item = StreamName> {
        (0..STREAMS.len() as u16).map(StreamName)
    }

    /// How many streams there are.
    pub fn count() -> usize {
        STREAMS.len()
    }

    /// The stream's number, for per-stream tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The name used in configuration and as the output folder.
    pub fn as_str(self) -> &'static str {
        STREAMS.get(self.index()).map_or("unknown", |(n, _, _)| n)
    }

    /// When its records are due, as its analysis declares (the runtime's own streams: untimed).
    pub fn timing(self) -> Timing {
        STREAMS.get(self.index()).map_or(Timing::Untimed, |(_, t, _)| *t)
    }

    /// The fields of its JSON lines; none for `raw`, whose lines are input text, not JSON.
    pub fn fields(self) -> &'static [Field] {
        STREAMS.get(self.index()).map_or(&[], |(_, _, f)| f)
    }

    /// The streams of a timing.
    pub fn timed(timing: Timing) -> impl Iterator<Item = StreamName> {
        Self::all().filter(move |s| s.timing() == timing)
    }

    /// The stream called `name`, which must exist (for tests that name built-in streams).
    #[cfg(test)]
    pub fn named(name: &str) -> StreamName {
        Self::parse(name).unwrap_or_else(|| panic!("no stream {name}"))
    }

    /// The stream called `name`.
    pub fn parse(name: &str) -> Option<StreamName> {
        STREAMS.iter().position(|(n, _, _)| *n == name).map(|i| StreamName(i as u16))
    }
}

impl std::fmt::Display for StreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{StreamName, Timing};

    #[test]
    fn the_named_constants_are_the_registry_streams_and_names_are_unique() {
        let named = [(StreamName::LATE, "late"), (StreamName::ERRORS, "errors"), (StreamName::RAW, "raw")];
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
        let windows: Vec<&str> = StreamName::timed(Timing::WindowClose).map(|s| s.as_str()).collect();
        assert_eq!(windows, ["speed_windows"], "timings come from the analyses' declarations");
        assert_eq!(StreamName::timed(Timing::Detection).map(|s| s.as_str()).collect::<Vec<_>>(), ["alerts"]);
    }
}
