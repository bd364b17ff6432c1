//! Where a Kafka source starts and stops reading, typed at load: `committed`, `earliest`,
//! `latest`, `end`, `never`, an RFC 3339 time or a plain date, written back as the same words.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where to start reading a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Start {
    /// The group's committed offset, or the earliest when there is none.
    Committed,
    /// The earliest offset still on the broker.
    Earliest,
    /// Only messages produced from now on.
    Latest,
    /// The first message whose timestamp is at or after this time (epoch ms).
    Time(u64),
}

/// Where to stop reading a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Stop {
    /// Never: a live stream.
    Never,
    /// At the end of the partition as it is when the job starts.
    End,
    /// At the first message whose timestamp is at or after this time (epoch ms).
    Time(u64),
}

/// An RFC 3339 time, or a plain date (its midnight, UTC), as epoch ms.
fn parse_time(field: &str, s: &str) -> Result<u64, String> {
    crate::time_arg::parse(s).map_err(|e| {
        format!("{field}: {s:?} is not a position ({e}); write committed, earliest, latest, a date (2025-11-25) or an RFC 3339 time")
    })
}

impl Start {
    /// Parses `committed`, `earliest`, `latest` or an RFC 3339 time.
    pub fn parse(s: &str) -> Result<Start, String> {
        match s {
            "committed" | "" => Ok(Start::Committed),
            "earliest" => Ok(Start::Earliest),
            "latest" => Ok(Start::Latest),
            t => parse_time("kafka.start", t).map(Start::Time),
        }
    }
}

impl Stop {
    /// Parses `` (never), `end` or an RFC 3339 time.
    pub fn parse(s: &str) -> Result<Stop, String> {
        match s {
            "" | "never" => Ok(Stop::Never),
            "end" => Ok(Stop::End),
            t => parse_time("kafka.stop", t).map(Stop::Time).map_err(|e| e.replace("committed, earliest, latest", "never, end")),
        }
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Start::Committed => f.write_str("committed"),
            Start::Earliest => f.write_str("earliest"),
            Start::Latest => f.write_str("latest"),
            Start::Time(ms) => f.write_str(&crate::encode::rfc3339(*ms)),
        }
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Never => f.write_str("never"),
            Stop::End => f.write_str("end"),
            Stop::Time(ms) => f.write_str(&crate::encode::rfc3339(*ms)),
        }
    }
}

impl std::str::FromStr for Start {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Start::parse(s)
    }
}

impl std::str::FromStr for Stop {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stop::parse(s)
    }
}

impl TryFrom<String> for Start {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Start::parse(&s)
    }
}

impl TryFrom<String> for Stop {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Stop::parse(&s)
    }
}

impl From<Start> for String {
    fn from(s: Start) -> String {
        s.to_string()
    }
}

impl From<Stop> for String {
    fn from(s: Stop) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(Start::parse("committed"), Ok(Start::Committed));
        assert_eq!(Start::parse("2025-11-25T00:00:00Z"), Ok(Start::Time(1_764_028_800_000)));
        assert_eq!(Start::parse("2025-11-25"), Ok(Start::Time(1_764_028_800_000)), "a plain date is its midnight, UTC");
        assert_eq!(Stop::parse("2025-11-26"), Ok(Stop::Time(1_764_115_200_000)));
        assert!(Start::parse("yesterday").unwrap_err().starts_with("kafka.start:"));
        assert_eq!(Stop::parse("end"), Ok(Stop::End));
        assert!(Stop::parse("soon").unwrap_err().contains("never, end"));
    }

    #[test]
    fn positions_are_written_back_as_they_are_read() {
        for s in ["committed", "earliest", "latest", "2025-11-25T00:00:00.000Z"] {
            assert_eq!(Start::parse(s).unwrap().to_string(), s);
        }
        for s in ["never", "end", "2025-11-25T00:00:00.000Z"] {
            assert_eq!(Stop::parse(s).unwrap().to_string(), s);
        }
    }
}
