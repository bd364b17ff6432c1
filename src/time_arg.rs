//! Times a user gives (flags and config): an RFC 3339 time, or a plain date meaning its
//! midnight, UTC. One parser, so every command takes both; [`ConfigTime`] keeps one in the
//! configuration, parsed once when it is read.

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

use serde::{Deserialize, Serialize};

/// A parsed time and how it was written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConfigTime {
    /// Epoch ms, none for `""`.
    ms: Option<u64>,
    /// Written as a whole day (`2025-11-25`).
    day: bool,
    text: String,
}

impl ConfigTime {
    /// The time, epoch ms (none when not given).
    pub fn ms(&self) -> Option<u64> {
        self.ms
    }

    /// The end of what it names, epoch ms: the next midnight for a day, the time itself for a time.
    pub fn end_ms(&self) -> Option<u64> {
        self.ms.map(|ms| if self.day { ms + 86_400_000 } else { ms })
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for ConfigTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim().to_string();
        if text.is_empty() {
            return Ok(ConfigTime::default());
        }
        let ms = parse(&text)
            .map_err(|e| format!("{text:?} is not a time ({e}); write a date (2025-11-25) or an RFC 3339 time (2025-11-25T06:00:00Z)"))?;
        let day = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").is_ok();
        Ok(ConfigTime { ms: Some(ms), day, text })
    }
}

impl TryFrom<String> for ConfigTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ConfigTime> for String {
    fn from(t: ConfigTime) -> String {
        t.text
    }
}

impl std::fmt::Display for ConfigTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod config_time_tests {
    use super::*;

    #[test]
    fn days_times_and_none() {
        let day: ConfigTime = "2025-11-25".parse().unwrap();
        assert_eq!((day.ms(), day.end_ms()), (Some(1_764_028_800_000), Some(1_764_115_200_000)));
        let time: ConfigTime = "2025-11-25T06:00:00Z".parse().unwrap();
        assert_eq!(time.end_ms(), Some(1_764_050_400_000));
        assert_eq!("".parse::<ConfigTime>().unwrap().ms(), None);
        assert!("yesterday".parse::<ConfigTime>().unwrap_err().contains("write a date"));
        assert_eq!(String::from(time), "2025-11-25T06:00:00Z", "prints as written");
    }
}
