//! Index templates for an OpenSearch sink's indices: the mappings come from the fields each
//! stream's analysis declares (times as `date`, vins and kinds as `keyword`, speeds as `double`,
//! counts as `long`), strict, so a record that does not match its declaration is refused (and
//! dead-lettered with the reason) instead of widening the mapping. Putting a template again
//! replaces it: setup is idempotent.

use fleetflow_dataflows::schema::{Field, FieldType};
use hyper::Method;
use serde_json::{json, Map, Value};

use super::client::Client;
use super::index::IndexPattern;
use crate::stream::StreamName;

/// The priority of fleetflow's templates: above the default 0, below one an operator adds on
/// purpose for the same indices.
pub const PRIORITY: u64 = 50;

/// The mapping of one field.
fn mapping(kind: FieldType) -> Value {
    match kind {
        FieldType::Timestamp => json!({ "type": "date", "format": "strict_date_optional_time" }),
        FieldType::Date => json!({ "type": "date", "format": "strict_date" }),
        FieldType::Double => json!({ "type": "double" }),
        FieldType::Count => json!({ "type": "long" }),
        FieldType::Keyword => json!({ "type": "keyword" }),
        FieldType::Text => json!({ "type": "text", "fields": { "keyword": { "type": "keyword", "ignore_above": 1024 } } }),
    }
}

/// Strict mappings of records with `fields`.
pub fn mappings(fields: &[Field]) -> Value {
    let properties: Map<String, Value> = fields.iter().map(|f| (f.name.to_string(), mapping(f.kind))).collect();
    json!({ "dynamic": "strict", "properties": properties })
}

/// The template name of `stream`'s indices for sink `sink`.
pub fn template_name(sink: &str, stream: StreamName) -> String {
    format!("fleetflow-{sink}-{}", stream.as_str()).to_lowercase()
}

/// The index template of `stream`'s indices under `pattern`.
pub fn template(pattern: &IndexPattern, stream: StreamName) -> Value {
    json!({
        "index_patterns": [pattern.wildcard(stream.as_str())],
        "priority": PRIORITY,
        "template": { "mappings": mappings(stream.fields()) },
        "_meta": { "created_by": "fleetflow", "stream": stream.as_str() }
    })
}

/// Puts the templates of `streams` (those with JSON fields) for sink `sink`; returns one line
/// per template.
pub async fn put_templates(client: &Client, sink: &str, pattern: &IndexPattern, streams: &[StreamName]) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for stream in streams.iter().filter(|s| !s.fields().is_empty()) {
        let name = template_name(sink, *stream);
        let body = serde_json::to_vec(&template(pattern, *stream)).map_err(|e| e.to_string())?;
        let answer = client
            .request(Method::PUT, &format!("/_index_template/{name}"), body, "application/json")
            .await
            .map_err(|e| format!("sinks.{sink}: putting template {name}: {e}"))?;
        if !(200..300).contains(&answer.status) {
            return Err(format!(
                "sinks.{sink}: template {name}: HTTP {}: {}",
                answer.status,
                answer.body.chars().take(400).collect::<String>()
            ));
        }
        done.push(format!("index template {name}: {} ({} fields)", pattern.wildcard(stream.as_str()), stream.fields().len()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_follow_the_declared_fields() {
        let stream = StreamName::parse("speed_windows").unwrap();
        let t = template(&IndexPattern::parse("fleetflow-{stream}-{yyyy.MM.dd}").unwrap(), stream);
        assert_eq!(t["index_patterns"][0], "fleetflow-speed_windows-*");
        let p = &t["template"]["mappings"]["properties"];
        assert_eq!(p["vin"]["type"], "keyword");
        assert_eq!(p["window_start"]["type"], "date");
        assert_eq!(p["avg_speed"]["type"], "double");
        assert_eq!(p["readings"]["type"], "long");
        assert_eq!(t["template"]["mappings"]["dynamic"], "strict");
        let late = template(&IndexPattern::parse("x-{stream}").unwrap(), StreamName::LATE);
        assert_eq!(late["template"]["mappings"]["properties"]["reason"]["type"], "text");
    }
}
