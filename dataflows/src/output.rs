//! Output records: what an analysis hands to the runtime's sinks. Each record type says how it is
//! written (one JSON line), under which event time it is filed (the `YYYY/MM/DD/HH` folder of the
//! folder and S3 layouts) and, optionally, its vehicle (the message key of keyed sinks).

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::reading::Vin;
use crate::time::Time;

/// A record of a named output stream.
///
/// # Examples
/// ```
/// use fleetflow_dataflows::output::{Output, Rfc3339};
/// use fleetflow_dataflows::{Time, Vin};
///
/// #[derive(Clone)]
/// struct Stop { vin: Vin, at: Time }
///
/// impl Output for Stop {
///     fn filed_at(&self) -> Time { self.at }
///     fn key(&self) -> Option<Vin> { Some(self.vin) }
///     fn write_json(&self, out: &mut Vec<u8>) {
///         #[derive(serde::Serialize)]
///         struct Line<'a> { vin: &'a str, at: Rfc3339 }
///         fleetflow_dataflows::output::json(out, &Line { vin: self.vin.as_str(), at: Rfc3339(self.at) });
///     }
/// }
///
/// let stop = Stop { vin: Vin::parse(b"1HGCM82633A000001").unwrap(), at: 1_764_064_860_000 };
/// let line = fleetflow_dataflows::output::encode(&stop);
/// assert_eq!(line.line, b"{\"vin\":\"1HGCM82633A000001\",\"at\":\"2025-11-25T10:01:00.000Z\"}\n");
/// assert_eq!(line.time, 1_764_064_860_000);
/// ```
pub trait Output: Clone + 'static {
    /// The event time the record is filed under (epoch ms).
    fn filed_at(&self) -> Time;
    /// The vehicle, for sinks that key their records; `None` for records of no one vehicle.
    fn key(&self) -> Option<Vin> {
        None
    }
    /// Appends the record as one JSON object, without the newline (see [`json`]).
    fn write_json(&self, out: &mut Vec<u8>);
}

/// An encoded record: the JSON line (with `\n`), the event time it is filed under and its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded {
    /// The JSON line, newline-terminated.
    pub line: Vec<u8>,
    /// Event time that picks the `YYYY/MM/DD/HH` folder.
    pub time: Time,
    /// The vehicle, for sinks that key records (Kafka); none for `late` and `errors`.
    pub key: Option<Vin>,
}

/// Encodes one record.
pub fn encode<D: Output>(record: &D) -> Encoded {
    let mut line = Vec::with_capacity(160);
    record.write_json(&mut line);
    line.push(b'\n');
    Encoded { line, time: record.filed_at(), key: record.key() }
}

/// Appends `value` as JSON. Serialising plain structs of strings and numbers cannot fail; if a
/// value's own `Serialize` fails, the line holds `null` rather than a partial object.
pub fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// An epoch-ms time written as RFC 3339 UTC with milliseconds: `2025-11-25T10:01:00.000Z`.
///
/// Windows closing together share their start and end: the last few times formatted on this
/// thread are kept, so a burst of windows formats each time once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub Time);

/// `YYYY-MM-DD` (UTC) of an epoch-ms time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date(pub Time);

thread_local! {
    static FORMATTED: RefCell<[(Time, String); 4]> = RefCell::new(Default::default());
}

/// `2025-11-25T10:01:00.000Z` for an epoch-ms time (the number itself if out of range).
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
        Some(t) => t.date_naive().to_string(),
        None => format!("{ms}"),
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ms = self.0;
        FORMATTED.with(|cache| {
            let mut cache = cache.borrow_mut();
            // Slot 0 is the most recent; a miss replaces the oldest.
            let hit = cache.iter().position(|(t, s)| *t == ms && !s.is_empty());
            let at = match hit {
                Some(i) => i,
                None => {
                    cache.rotate_right(1);
                    cache[0] = (ms, rfc3339(ms));
                    0
                }
            };
            serializer.serialize_str(&cache[at].1)
        })
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&date(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_with_millis_and_the_cache_keeps_them_apart() {
        assert_eq!(rfc3339(1_764_064_860_000), "2025-11-25T10:01:00.000Z");
        assert_eq!(date(1_764_064_860_000), "2025-11-25");
        let times = [1_764_064_860_000, 1_764_064_920_001, 0, 1_764_064_860_000, 5, 6, 7, 8, 1_764_064_920_001];
        for t in times {
            assert_eq!(serde_json::to_string(&Rfc3339(t)).unwrap(), format!("\"{}\"", rfc3339(t)));
        }
        assert_eq!(serde_json::to_string(&Date(86_400_000)).unwrap(), "\"1970-01-02\"");
    }
}
