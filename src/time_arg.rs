//! Times a user gives (flags and config): an RFC 3339 time, or a plain date meaning its
//! midnight, UTC. One parser, so every command takes both.

/// `s` as epoch ms: `2025-11-25T06:00:00Z` (any RFC 3339 offset) or `2025-11-25` (midnight UTC).
/// Times before 1970 are 0. The error says what was wrong with the time.
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(day) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let ms = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(0);
        return Ok(ms.max(0) as u64);
    }
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis().max(0) as u64).map_err(|e| e.to_string())
}

/// The same, for a flag or field `field`: the error names it and shows both forms.
pub fn parse_for(field: &str, s: &str) -> Result<u64, String> {
    parse(s)
        .map_err(|e| format!("{field}: {s:?} is not a time ({e}); write a date (2025-11-25) or an RFC 3339 time (2025-11-25T06:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_rfc3339_times() {
        assert_eq!(parse("2025-11-25"), Ok(1_764_028_800_000));
        assert_eq!(parse("2025-11-25T00:00:00Z"), Ok(1_764_028_800_000));
        assert_eq!(parse("2025-11-25T01:00:00+01:00"), Ok(1_764_028_800_000));
        assert!(parse_for("--start", "yesterday").unwrap_err().contains("--start: \"yesterday\""));
    }
}
