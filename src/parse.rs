//! The parse stage: one input line (text or JSON) to a [`Reading`], a blank, or a precise reason.

use fleetflow_dataflows::{Reading, Vin};
use serde::Deserialize;

/// The outcome of parsing one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A valid reading.
    Reading(Reading),
    /// An empty (or whitespace-only) line: skipped and counted, not an error.
    Blank,
    /// A malformed record, with the reason.
    Malformed(String),
}

/// The longest record accepted, in bytes: 1,000 KiB, Firehose's own record limit. Sources read a
/// longer line without holding it whole; it is an error, kept by its first [`OVERSIZED_HEAD`] bytes.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// How much of an oversized record its error keeps.
pub const OVERSIZED_HEAD: usize = 1_024;

/// The reason given for a record of `len` bytes, above [`MAX_RECORD_BYTES`].
pub fn oversized(len: u64) -> String {
    format!(
        "record of {len} bytes is longer than the limit of {MAX_RECORD_BYTES} bytes (1,000 KiB); its first {OVERSIZED_HEAD} bytes are kept"
    )
}

/// Parses one line (without its `\n`; a trailing `\r` and trailing blanks are allowed).
///
/// Text: `record_id timestamp vin lon lat speed`, separated by runs of spaces or tabs. JSON: an
/// object with the same six field names (other fields are ignored). A line longer than
/// [`MAX_RECORD_BYTES`] is malformed.
pub fn parse_line(line: &[u8]) -> Parsed {
    if line.len() > MAX_RECORD_BYTES {
        return Parsed::Malformed(oversized(line.len() as u64));
    }
    let trimmed = trim(line);
    if trimmed.is_empty() {
        return Parsed::Blank;
    }
    let result = if trimmed[0] == b'{' { parse_json(trimmed) } else { parse_text(trimmed) };
    match result {
        Ok(r) => Parsed::Reading(r),
        Err(reason) => Parsed::Malformed(reason),
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = line.iter().position(|b| !is_blank(b)).unwrap_or(line.len());
    let end = line.iter().rposition(|b| !is_blank(b)).map(|i| i + 1).unwrap_or(start);
    &line[start..end.max(start)]
}

const FIELDS: [&str; 6] = ["record_id", "timestamp", "vin", "lon", "lat", "speed"];

fn parse_text(line: &[u8]) -> Result<Reading, String> {
    let mut fields: [&[u8]; 6] = [&[]; 6];
    let mut count = 0;
    for field in line.split(|b| *b == b' ' || *b == b'\t').filter(|f| !f.is_empty()) {
        if count < 6 {
            fields[count] = field;
        }
        count += 1;
    }
    if count != 6 {
        return Err(format!("expected 6 fields (record_id timestamp vin lon lat speed), found {count}"));
    }
    let record_id = unsigned(FIELDS[0], fields[0])?;
    let timestamp = unsigned(FIELDS[1], fields[1])?;
    let vin = Vin::parse(fields[2]).map_err(|e| e.to_string())?;
    let lon = number(FIELDS[3], fields[3])?;
    let lat = number(FIELDS[4], fields[4])?;
    let speed = number(FIELDS[5], fields[5])?;
    check(Reading { record_id, timestamp, vin, lon, lat, speed })
}

/// An unsigned decimal integer: digits only (no sign), at most 64 bits.
fn unsigned(field: &str, bytes: &[u8]) -> Result<u64, String> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(format!("{field}: {:?} is not an unsigned integer", shorten(bytes)));
    }
    bytes
        .iter()
        .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add((d - b'0') as u64))
        .ok_or_else(|| format!("{field}: {} does not fit in 64 bits", shorten(bytes)))
}

/// A decimal number (sign, fraction and exponent allowed); range checks come later.
fn number(field: &str, bytes: &[u8]) -> Result<f64, String> {
    match fast_float2::parse::<f64, _>(bytes) {
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{field}: {:?} is not a number", shorten(bytes))),
    }
}

/// The field as text for a message: lossy UTF-8, cut at 40 characters.
fn shorten(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

fn check(r: Reading) -> Result<Reading, String> {
    if !r.lon.is_finite() || !(-180.0..=180.0).contains(&r.lon) {
        return Err(format!("lon: {} is outside [-180, 180]", r.lon));
    }
    if !r.lat.is_finite() || !(-90.0..=90.0).contains(&r.lat) {
        return Err(format!("lat: {} is outside [-90, 90]", r.lat));
    }
    if !r.speed.is_finite() || !(0.0..=300.0).contains(&r.speed) {
        return Err(format!("speed: {} is outside [0, 300] mph", r.speed));
    }
    // `-0` is a valid zero speed / coordinate; normalise it so outputs never print `-0.0`.
    Ok(Reading { lon: r.lon + 0.0, lat: r.lat + 0.0, speed: r.speed + 0.0, ..r })
}

#[derive(Deserialize)]
struct JsonReading<'a> {
    record_id: serde_json::Value,
    timestamp: serde_json::Value,
    #[serde(borrow)]
    vin: std::borrow::Cow<'a, str>,
    lon: f64,
    lat: f64,
    speed: f64,
}

fn json_unsigned(field: &str, v: &serde_json::Value) -> Result<u64, String> {
    v.as_u64().ok_or_else(|| format!("{field}: {v} is not an unsigned integer"))
}

fn parse_json(line: &[u8]) -> Result<Reading, String> {
    let j: JsonReading = serde_json::from_slice(line).map_err(|e| format!("invalid JSON reading: {e}"))?;
    let record_id = json_unsigned(FIELDS[0], &j.record_id)?;
    let timestamp = json_unsigned(FIELDS[1], &j.timestamp)?;
    let vin = Vin::parse(j.vin.as_bytes()).map_err(|e| e.to_string())?;
    check(Reading { record_id, timestamp, vin, lon: j.lon, lat: j.lat, speed: j.speed })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIN: &str = "1HGCM82633A004352";

    fn reading(line: &str) -> Reading {
        match parse_line(line.as_bytes()) {
            Parsed::Reading(r) => r,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn reason(line: &[u8]) -> String {
        match parse_line(line) {
            Parsed::Malformed(r) => r,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn text_with_runs_of_blanks_and_crlf() {
        let r = reading(&format!("7  1732528860000\t{}   -122.4 37.7 66.5  \r", VIN.to_lowercase()));
        assert_eq!((r.record_id, r.timestamp, r.vin.as_str(), r.lon, r.lat, r.speed), (7, 1732528860000, VIN, -122.4, 37.7, 66.5));
    }

    #[test]
    fn json_lines() {
        let r = reading(&format!(r#"{{"record_id":1,"timestamp":2,"vin":"{VIN}","lon":1.5,"lat":-2,"speed":0,"extra":true}}"#));
        assert_eq!((r.record_id, r.timestamp, r.lat), (1, 2, -2.0));
        assert!(reason(br#"{"record_id":1,"timestamp":-2,"vin":"1HGCM82633A004352","lon":1,"lat":2,"speed":0}"#).starts_with("timestamp:"));
        assert!(reason(br#"{"record_id":1}"#).contains("missing field"));
    }

    #[test]
    fn blanks_are_not_errors() {
        assert_eq!(parse_line(b""), Parsed::Blank);
        assert_eq!(parse_line(b" \t \r"), Parsed::Blank);
    }

    #[test]
    fn precise_reasons() {
        assert!(reason(b"1 2 3").contains("found 3"));
        assert!(reason(format!("x 2 {VIN} 1 1 1").as_bytes()).starts_with("record_id:"));
        assert!(reason(format!("1 -2 {VIN} 1 1 1").as_bytes()).starts_with("timestamp:"));
        assert!(reason(format!("1 99999999999999999999 {VIN} 1 1 1").as_bytes()).contains("64 bits"));
        assert!(reason(b"1 2 1HGCM82633A00435O 1 1 1").contains("'O'"));
        assert!(reason(format!("1 2 {VIN} 181 1 1").as_bytes()).starts_with("lon:"));
        assert!(reason(format!("1 2 {VIN} 1 91 1").as_bytes()).starts_with("lat:"));
        assert!(reason(format!("1 2 {VIN} 1 1 300.5").as_bytes()).starts_with("speed:"));
        assert!(reason(format!("1 2 {VIN} 1 1 NaN").as_bytes()).starts_with("speed:"));
        assert!(reason(format!("1 2 {VIN} 1 1 inf").as_bytes()).starts_with("speed:"));
        assert!(reason(format!("1 2 {VIN} 1 1 -1").as_bytes()).starts_with("speed:"));
        assert!(reason(b"1 2 1HGCM82633A00435\xff 1 1 1").contains("0xff"));
        assert!(reason(format!("1 2 {VIN} 1 1 5x").as_bytes()).contains("speed: \"5x\" is not a number"));
        assert!(reason(format!("1 2 {VIN} 1e400 1 5").as_bytes()).starts_with("lon:"));
        assert!(reason(format!("+1 2 {VIN} 1 1 5").as_bytes()).starts_with("record_id:"));
        assert_eq!(reading(&format!("1 2 {VIN} 1.5e1 -2E-1 +6.5")).lon, 15.0);
    }

    #[test]
    fn negative_zero_is_zero() {
        let r = reading(&format!("1 2 {VIN} -0 -0 -0"));
        assert!(r.speed.is_sign_positive() && r.lon.is_sign_positive());
    }
}
