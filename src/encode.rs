//! Encoding of the runtime's own streams (`raw`, `late`, `errors`) as lines; the analyses'
//! records encode themselves ([`fleetflow_dataflows::output::Output`]). Times are RFC 3339 UTC
//! with milliseconds.

use base64::Engine;
use fleetflow_dataflows::Reading;
use serde::Serialize;

pub use fleetflow_dataflows::output::{date, rfc3339, Encoded};

use crate::rejected::Rejected;

/// A reading as a text line `record_id timestamp vin lon lat speed`.
pub fn reading_line(r: &Reading) -> String {
    format!("{} {} {} {} {} {}", r.record_id, r.timestamp, r.vin, r.lon, r.lat, r.speed)
}

/// A `raw` record: the reading as an input text line, filed under its event time, so an archive of
/// `raw` is input that replays to the same outputs.
pub fn raw(r: &Reading) -> Encoded {
    let mut line = reading_line(r).into_bytes();
    line.push(b'\n');
    Encoded { line, time: r.timestamp, key: Some(r.vin) }
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
    let mut line = serde_json::to_vec(&out).unwrap_or_default();
    line.push(b'\n');
    // Late records under their event time, malformed ones under their arrival.
    Encoded { line, time: r.timestamp.unwrap_or(r.arrived), key: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_records_are_base64() {
        let r =
            Rejected { record: vec![0xff, b'a'], position: "f:1".into(), reason: "x".into(), timestamp: None, watermark: None, arrived: 0 };
        let e = String::from_utf8(rejected(&r).line).unwrap();
        assert_eq!(e, "{\"record\":\"/2E=\",\"encoding\":\"base64\",\"position\":\"f:1\",\"reason\":\"x\"}\n");
    }
}
