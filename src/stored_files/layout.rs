//! The layout of stored outputs, written by the folder sinks and read back by replay (the `raw`
//! archive) and by queries by date: `<stream>/YYYY/MM/DD/HH/`, the UTC hour of each record's event time,
//! as Firehose lays out S3, or Hive style `<stream>/dt=YYYY-MM-DD/hr=HH/` (what Athena, Spark and
//! DuckDB prune partitions on). One place, so writers and readers cannot drift apart.

use chrono::{DateTime, Utc};
use fleetflow_dataflows::Time;

/// An hour, ms.
pub const HOUR_MS: Time = 3_600_000;

/// How a folder's hours are named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `YYYY/MM/DD/HH`, as Firehose lays out S3.
    #[default]
    Hourly,
    /// `dt=YYYY-MM-DD/hr=HH`, Hive-style partitions.
    Hive,
}

impl Layout {
    /// Every layout, for readers that take either.
    pub const ALL: [Layout; 2] = [Layout::Hourly, Layout::Hive];

    /// The hour folder of an event time.
    pub fn hour(self, ms: Time) -> String {
        match self {
            Layout::Hourly => hour_folder(ms),
            Layout::Hive => format_time(ms, "dt=%Y-%m-%d/hr=%H"),
        }
    }

    /// The folder of an event time's UTC day (its hours are under it).
    pub fn day(self, ms: Time) -> String {
        match self {
            Layout::Hourly => day_folder(ms),
            Layout::Hive => format_time(ms, "dt=%Y-%m-%d"),
        }
    }

    /// The hour (since the epoch) of an hour folder's two to four path components, in either
    /// layout (`2025`, `11`, `25`, `10` or `dt=2025-11-25`, `hr=10`).
    pub fn parse_hour(parts: &[&str]) -> Option<Time> {
        let text = match parts {
            [y, m, d, h] => format!("{y}-{m}-{d} {h}"),
            [dt, hr] => format!("{} {}", dt.strip_prefix("dt=")?, hr.strip_prefix("hr=")?),
            _ => return None,
        };
        let t = chrono::NaiveDateTime::parse_from_str(&format!("{text}:00"), "%Y-%m-%d %H:%M").ok()?;
        Some(Time::try_from(t.and_utc().timestamp_millis()).ok()? / HOUR_MS)
    }
}

fn format_time(ms: Time, pattern: &str) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms as i64) {
        Some(t) => t.format(pattern).to_string(),
        None => "invalid-time".to_string(),
    }
}

/// `YYYY/MM/DD/HH` of an event time.
pub fn hour_folder(ms: Time) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms as i64) {
        Some(t) => t.format("%Y/%m/%d/%H").to_string(),
        None => "invalid-time".to_string(),
    }
}

/// `YYYY/MM/DD` of an event time: the folder of a UTC day's hours.
pub fn day_folder(ms: Time) -> String {
    let hour = hour_folder(ms);
    hour.rsplit_once('/').map_or_else(|| hour.clone(), |(day, _)| day.to_string())
}

/// `<stream>/YYYY/MM/DD/HH` of an hour number (hours since the epoch).
pub fn stream_hour(stream: &str, hour: u64) -> String {
    format!("{stream}/{}", hour_folder(hour * HOUR_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_utc_folders() {
        assert_eq!(hour_folder(1_764_032_400_000), "2025/11/25/01");
        assert_eq!(day_folder(1_764_032_400_000), "2025/11/25");
        assert_eq!(stream_hour("raw", 1_764_032_400_000 / HOUR_MS), "raw/2025/11/25/01");
        assert_eq!(Layout::Hive.hour(1_764_032_400_000), "dt=2025-11-25/hr=01");
        assert_eq!(Layout::Hive.day(1_764_032_400_000), "dt=2025-11-25");
        for layout in Layout::ALL {
            let folder = layout.hour(1_764_032_400_000);
            let parts: Vec<&str> = folder.split('/').collect();
            assert_eq!(Layout::parse_hour(&parts), Some(1_764_032_400_000 / HOUR_MS), "{folder}");
        }
    }
}
