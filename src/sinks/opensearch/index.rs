//! The index a record goes to: a pattern such as `fleetflow-{stream}-{yyyy.MM.dd}`, where
//! `{stream}` is the output stream's name and a date pattern in braces is the record's event time
//! (UTC), as OpenSearch's daily indices are usually named.

use fleetflow_dataflows::Time;

/// One piece of a pattern.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Stream,
    /// A `chrono` format.
    Date(String),
}

/// A parsed index pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexPattern {
    parts: Vec<Part>,
}

/// Characters OpenSearch refuses in an index name.
const FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

impl IndexPattern {
    /// Parses `pattern`; the error says what is wrong and what is allowed.
    pub fn parse(pattern: &str) -> Result<IndexPattern, String> {
        let mut parts = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find('{') {
            parts.push(Part::Text(rest[..open].to_string()));
            let close = rest[open..].find('}').ok_or_else(|| format!("{pattern:?} has a {{ without }}"))? + open;
            let inner = &rest[open + 1..close];
            parts.push(if inner == "stream" { Part::Stream } else { Part::Date(date_format(inner)?) });
            rest = &rest[close + 1..];
        }
        parts.push(Part::Text(rest.to_string()));
        parts.retain(|p| *p != Part::Text(String::new()));
        let index = IndexPattern { parts };
        let sample = index.format("any_stream", 1_764_064_860_000);
        check_name(&sample).map_err(|e| format!("{pattern:?} gives {sample:?}, which {e}"))?;
        Ok(index)
    }

    /// The index of a record of `stream` at event time `time`.
    pub fn format(&self, stream: &str, time: Time) -> String {
        let at = chrono::DateTime::from_timestamp_millis(time.min(i64::MAX as u64) as i64).unwrap_or_default();
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Stream => out.push_str(stream),
                Part::Date(f) => out.push_str(&at.format(f).to_string()),
            }
        }
        out
    }

    /// The pattern that matches every index of `stream` (`*` for the date): an index template's.
    pub fn wildcard(&self, stream: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Stream => out.push_str(stream),
                Part::Date(_) => out.push('*'),
            }
        }
        out
    }

    /// The smallest span of event time that shares one index per stream (ms): records are
    /// grouped by it so the index is formatted once per span.
    pub fn span(&self) -> Time {
        let fine = |f: &str| {
            if f.contains("%H") {
                3_600_000
            } else if f.contains("%d") {
                86_400_000
            } else {
                3_600_000
            }
        };
        self.parts.iter().filter_map(|p| if let Part::Date(f) = p { Some(fine(f)) } else { None }).min().unwrap_or(Time::MAX)
    }
}

/// A Joda-style date pattern (`yyyy.MM.dd`) as a chrono format.
fn date_format(inner: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let token = ["yyyy", "MM", "dd", "HH"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push_str(match t {
                "yyyy" => "%Y",
                "MM" => "%m",
                "dd" => "%d",
                _ => "%H",
            });
            rest = &rest[t.len()..];
        } else if let Some(c) = rest.chars().next().filter(|c| matches!(c, '.' | '-' | '_')) {
            out.push(c);
            rest = &rest[1..];
        } else {
            return Err(format!("{{{inner}}} is neither {{stream}} nor a date pattern of yyyy, MM, dd, HH and . - _"));
        }
    }
    if out.is_empty() {
        return Err("{} is empty; use {stream} or a date pattern such as {yyyy.MM.dd}".to_string());
    }
    Ok(out)
}

/// Whether OpenSearch takes `name` as an index name.
fn check_name(name: &str) -> Result<(), String> {
    if name.chars().any(|c| c.is_uppercase()) {
        return Err("has upper-case letters; index names are lower case".to_string());
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(format!("contains {c:?}; index names cannot contain \\ / * ? \" < > | , # : or spaces"));
    }
    if name.starts_with(['-', '_', '+']) || name == "." || name == ".." {
        return Err("cannot start with - _ + or be . or ..".to_string());
    }
    if name.len() > 255 {
        return Err("is longer than 255 bytes".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_and_event_date_make_the_index() {
        let p = IndexPattern::parse("fleetflow-{stream}-{yyyy.MM.dd}").unwrap();
        assert_eq!(p.format("alerts", 1_764_064_860_000), "fleetflow-alerts-2025.11.25");
        assert_eq!(p.wildcard("alerts"), "fleetflow-alerts-*");
        assert_eq!(p.span(), 86_400_000);
        let hourly = IndexPattern::parse("{stream}_{yyyy-MM-dd_HH}").unwrap();
        assert_eq!(hourly.format("raw_x", 1_764_064_860_000), "raw_x_2025-11-25_10");
        assert_eq!(hourly.span(), 3_600_000);
        assert_eq!(IndexPattern::parse("all").unwrap().format("alerts", 0), "all");
        assert_eq!(IndexPattern::parse("all").unwrap().span(), Time::MAX);
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(IndexPattern::parse("Fleet-{stream}").unwrap_err().contains("lower case"));
        assert!(IndexPattern::parse("f-{stream").unwrap_err().contains("without }"));
        assert!(IndexPattern::parse("f-{YYYY}").unwrap_err().contains("date pattern"));
        assert!(IndexPattern::parse("f {stream}").unwrap_err().contains("spaces"));
        assert!(IndexPattern::parse("_{stream}").unwrap_err().contains("cannot start"));
    }
}
