//! Output encoding: each output stream's records as JSON lines, times as RFC 3339 UTC with
//! milliseconds, plus the event time that files a record under its `YYYY/MM/DD/HH` folder.

use base64::Engine;
use chrono::{DateTime, Utc};
use fleetflow_dataflows::analyses::buggy_devices::{BuggyDevice, Revision};
use fleetflow_dataflows::analyses::SpeedWindow;
use fleetflow_dataflows::changelog::Change;
use fleetflow_dataflows::time::{align, DAY_MS};
use fleetflow_dataflows::{Reading, Time, Vin};
use serde::Serialize;

use crate::rejected::Rejected;

/// `2025-11-25T10:01:00.000Z` for an epoch-ms time.
pub fn rfc3339(ms: Time) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms as i64) {
        // Not `format`: parsing a strftime pattern for every time was a tenth of a replay's CPU.
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => format!("{ms}"),
    }
}

/// `YYYY-MM-DD` of an epoch-ms time (UTC).
pub fn date(ms: Time) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms as i64) {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => format!("{ms}"),
    }
}

/// A reading as a text line `record_id timestamp vin lon lat speed`.
pub fn reading_line(r: &Reading) -> String {
    format!("{} {} {} {} {} {}", r.record_id, r.timestamp, r.vin, r.lon, r.lat, r.speed)
}

/// The event time a record is filed under (its `YYYY/MM/DD/HH` folder), known without encoding
/// it: what [`Encoded::time`] holds once it is encoded.
pub trait Filed {
    /// The filing time, epoch ms.
    fn filed_at(&self) -> Time;
}

impl Filed for Reading {
    fn filed_at(&self) -> Time {
        self.timestamp
    }
}

/// Windows of every stream are filed under their start (a daily window starts at midnight).
impl Filed for SpeedWindow {
    fn filed_at(&self) -> Time {
        self.start
    }
}

impl Filed for Change<BuggyDevice> {
    fn filed_at(&self) -> Time {
        self.data.start
    }
}

/// Late records under their event time, malformed ones under their arrival.
impl Filed for Rejected {
    fn filed_at(&self) -> Time {
        self.timestamp.unwrap_or(self.arrived)
    }
}

/// A `raw` record: the reading as an input text line, filed under its event time, so an archive of
/// `raw` is input that replays to the same outputs.
pub fn raw(r: &Reading) -> Encoded {
    let mut line = reading_line(r).into_bytes();
    line.push(b'\n');
    Encoded { line, time: r.timestamp, key: Some(r.vin) }
}

/// An encoded record: the JSON line (with `\n`) and the event time it is filed under.
pub struct Encoded {
    /// The JSON line, newline-terminated.
    pub line: Vec<u8>,
    /// Event time that picks the `YYYY/MM/DD/HH` folder.
    pub time: Time,
    /// The vehicle, for sinks that key records (Kafka); none for `late` and `errors`.
    pub key: Option<Vin>,
}

fn line<T: Serialize>(value: &T, time: Time, key: Option<Vin>) -> Encoded {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Encoded { line, time, key }
}

#[derive(Serialize)]
struct SpeedWindowOut<'a> {
    vin: &'a str,
    window_start: String,
    window_end: String,
    readings: u64,
    avg_speed: f64,
    max_speed: f64,
    min_speed: f64,
}

/// A `speed_windows` record.
pub fn speed_window(w: &SpeedWindow) -> Encoded {
    let out = SpeedWindowOut {
        vin: w.key.as_str(),
        window_start: rfc3339(w.start),
        window_end: rfc3339(w.end),
        readings: w.agg.readings,
        avg_speed: w.agg.avg(),
        max_speed: w.agg.max,
        min_speed: w.agg.min,
    };
    line(&out, w.start, Some(w.key))
}

#[derive(Serialize)]
struct SpeederOut<'a> {
    vin: &'a str,
    window_start: String,
    window_end: String,
    readings: u64,
    speeding_readings: u64,
    avg_speed: f64,
    max_speed: f64,
}

/// A `speeders` record.
pub fn speeder(w: &SpeedWindow) -> Encoded {
    let out = SpeederOut {
        vin: w.key.as_str(),
        window_start: rfc3339(w.start),
        window_end: rfc3339(w.end),
        readings: w.agg.readings,
        speeding_readings: w.agg.speeding,
        avg_speed: w.agg.avg(),
        max_speed: w.agg.max,
    };
    line(&out, w.start, Some(w.key))
}

#[derive(Serialize)]
struct DailySpeederOut<'a> {
    vin: &'a str,
    date: String,
    speeding_readings: u64,
    max_speed: f64,
}

/// A `daily_speeders` record (the window is one UTC day).
pub fn daily_speeder(w: &SpeedWindow) -> Encoded {
    let out = DailySpeederOut { vin: w.key.as_str(), date: date(w.start), speeding_readings: w.agg.speeding, max_speed: w.agg.max };
    line(&out, align(w.start, DAY_MS), Some(w.key))
}

#[derive(Serialize)]
struct AlertOut<'a> {
    vin: &'a str,
    window_start: String,
    window_end: String,
    avg_speed: f64,
}

/// An `alerts` record.
pub fn alert(w: &SpeedWindow) -> Encoded {
    let out = AlertOut { vin: w.key.as_str(), window_start: rfc3339(w.start), window_end: rfc3339(w.end), avg_speed: w.agg.avg() };
    line(&out, w.start, Some(w.key))
}

#[derive(Serialize)]
struct BuggyOut<'a> {
    vin: &'a str,
    sensor_id: &'a str,
    window_start: String,
    window_end: String,
    readings: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revised_at: Option<String>,
}

/// A `buggy_devices` record: the window's row when it closed, or a later correction carrying
/// `revision` (`retract` or `insert`) and `revised_at` (the watermark when the reference changed).
pub fn buggy_device(c: &Change<BuggyDevice>) -> Encoded {
    let d = &c.data;
    let (revision, revised_at) = match c.revision() {
        Revision::Initial => (None, None),
        Revision::Retract => (Some("retract"), Some(rfc3339(c.time))),
        Revision::Insert => (Some("insert"), Some(rfc3339(c.time))),
    };
    let out = BuggyOut {
        vin: d.vin.as_str(),
        sensor_id: &d.sensor,
        window_start: rfc3339(d.start),
        window_end: rfc3339(d.end),
        readings: d.readings,
        revision,
        revised_at,
    };
    line(&out, c.filed_at(), Some(d.vin))
}

#[derive(Serialize)]
struct RejectedOut<'a> {
    record: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    position: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watermark: Option<String>,
}

/// A `late` or `errors` record: the raw record (base64 with `"encoding":"base64"` when it is not
/// UTF-8), its position and the reason. Late records are filed under their event time, errors under
/// their arrival time.
pub fn rejected(r: &Rejected) -> Encoded {
    let (record, encoding) = match std::str::from_utf8(&r.record) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), None),
        Err(_) => (std::borrow::Cow::Owned(base64::engine::general_purpose::STANDARD.encode(&r.record)), Some("base64")),
    };
    let out = RejectedOut {
        record,
        encoding,
        position: &r.position,
        reason: &r.reason,
        timestamp: r.timestamp.map(rfc3339),
        watermark: r.watermark.map(rfc3339),
    };
    line(&out, r.filed_at(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_with_millis() {
        assert_eq!(rfc3339(1_764_064_860_000), "2025-11-25T10:01:00.000Z");
        assert_eq!(date(1_764_064_860_000), "2025-11-25");
    }

    #[test]
    fn non_utf8_records_are_base64() {
        let r =
            Rejected { record: vec![0xff, b'a'], position: "f:1".into(), reason: "x".into(), timestamp: None, watermark: None, arrived: 0 };
        let e = String::from_utf8(rejected(&r).line).unwrap();
        assert_eq!(e, "{\"record\":\"/2E=\",\"encoding\":\"base64\",\"position\":\"f:1\",\"reason\":\"x\"}\n");
    }
}
