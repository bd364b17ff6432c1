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
    let mut line = Vec::with_capacity(256);
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

/// Writes one JSON object field by field, byte for byte as `serde_json` writes the same struct
/// (strings escaped, integers in decimal, floats shortest round-trip, non-finite floats as `null`),
/// without serde's per-field machinery: for the records written by the thousand when windows close.
///
/// # Examples
/// ```
/// use fleetflow_dataflows::output::JsonObject;
///
/// let mut out = Vec::new();
/// JsonObject::new(&mut out).str("vin", "1HGCM82633A000001").time("at", 1_764_064_860_000).u64("n", 3).f64("avg", 61.5).end();
/// assert_eq!(out, br#"{"vin":"1HGCM82633A000001","at":"2025-11-25T10:01:00.000Z","n":3,"avg":61.5}"#);
/// ```
pub struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObject<'a> {
    /// Starts an object at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, first: true }
    }

    #[inline]
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        push_str(self.out, key);
        self.out.push(b':');
    }

    /// A string field.
    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        push_str(self.out, value);
        self
    }

    /// An unsigned integer field.
    pub fn u64(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        // Writing to a Vec cannot fail.
        let _ = serde_json::ser::Formatter::write_u64(&mut serde_json::ser::CompactFormatter, self.out, value);
        self
    }

    /// A float field (`null` when not finite, as `serde_json` writes it).
    pub fn f64(mut self, key: &str, value: f64) -> Self {
        self.key(key);
        if value.is_finite() {
            // Writing to a Vec cannot fail.
            let _ = serde_json::ser::Formatter::write_f64(&mut serde_json::ser::CompactFormatter, self.out, value);
        } else {
            self.out.extend_from_slice(b"null");
        }
        self
    }

    /// An epoch-ms time as an RFC 3339 string (see [`Rfc3339`]).
    pub fn time(mut self, key: &str, ms: Time) -> Self {
        self.key(key);
        // Formatted times hold digits, `-`, `:`, `.`, `T` and `Z` only: nothing to escape.
        with_rfc3339(ms, |t| push_quoted(self.out, t.as_bytes()));
        self
    }

    /// An epoch-ms time's UTC date as a `YYYY-MM-DD` string (see [`Date`]).
    pub fn date(mut self, key: &str, ms: Time) -> Self {
        self.key(key);
        push_str(self.out, &date(ms));
        self
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// Appends `value` as a JSON string, escaped as `serde_json` escapes it.
#[inline]
fn push_str(out: &mut Vec<u8>, value: &str) {
    // serde_json escapes only control characters, `"` and `\`: a string of none (keys, VINs)
    // is copied as it is. The test has no early exit, so it runs a vector's width at a time.
    let escape = value.bytes().fold(false, |escape, b| escape | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escape {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(out, value);
    } else {
        push_quoted(out, value.as_bytes());
    }
}

/// Appends `bytes`, which need no escaping, between quotes.
#[inline]
fn push_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
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

/// Calls `f` with `ms` formatted as by [`rfc3339`], from this thread's cache of recent times.
fn with_rfc3339<R>(ms: Time, f: impl FnOnce(&str) -> R) -> R {
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
        f(&cache[at].1)
    })
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        with_rfc3339(self.0, |t| serializer.serialize_str(t))
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

    #[test]
    fn json_object_writes_what_serde_json_writes() {
        #[derive(Serialize)]
        struct Line<'a> {
            s: &'a str,
            at: Rfc3339,
            day: Date,
            n: u64,
            x: f64,
        }
        let strings = ["plain", "quote \" back \\ slash", "ctl \u{1} \n \t", "é ünï 🚗", ""];
        let numbers = [0u64, 7, 1_000_000, u64::MAX];
        let floats = [
            0.0,
            -0.0,
            61.5,
            0.1 + 0.2,
            1e16,
            1.5e-7,
            123_456_789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let times = [0u64, 1_764_064_860_000, 1_764_064_920_001, 253_402_300_799_999];
        for (i, x) in floats.iter().enumerate() {
            let (s, n, t) = (strings[i % strings.len()], numbers[i % numbers.len()], times[i % times.len()]);
            let expected = serde_json::to_vec(&Line { s, at: Rfc3339(t), day: Date(t), n, x: *x }).unwrap();
            let mut out = b"prefix ".to_vec();
            JsonObject::new(&mut out).str("s", s).time("at", t).date("day", t).u64("n", n).f64("x", *x).end();
            assert_eq!(String::from_utf8_lossy(&out[7..]), String::from_utf8_lossy(&expected), "float {x}");
            assert_eq!(&out[..7], b"prefix ", "appends");
        }
        let mut out = Vec::new();
        JsonObject::new(&mut out).end();
        assert_eq!(out, b"{}");
    }
}
