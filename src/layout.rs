//! The layout of stored outputs, written by the folder sinks and read back by replay (the `raw`
//! archive) and by queries by date: `<stream>/YYYY/MM/DD/HH/`, the UTC hour of each record's event time,
//! as Firehose lays out S3. One place, so writers and readers cannot drift apart.

use chrono::{DateTime, Utc};
use fleetflow_dataflows::Time;

/// An hour, ms.
pub const HOUR_MS: Time = 3_600_000;

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
    }
}
