//! `fleetflow schema`: what query engines need to read the outputs, from the fields each stream's
//! analysis declares: Athena/Glue `CREATE EXTERNAL TABLE` statements (with partition projection
//! for the folder layout, so no crawler or `MSCK REPAIR` is needed), JSON Schemas of the JSON lines,
//! or the Arrow schemas of the Parquet files.

use clap::{Args, ValueEnum};
use fleetflow_dataflows::schema::{Field, FieldType};
use serde_json::{json, Value};

use crate::stored_files::columnar;
use crate::stored_files::format::Format;
use crate::stored_files::layout::Layout;
use crate::stream::StreamName;

/// What to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// Athena / Glue `CREATE EXTERNAL TABLE`.
    Athena,
    /// JSON Schema (2020-12) of the JSON lines.
    JsonSchema,
    /// The Arrow schema of the Parquet files.
    Arrow,
}

/// `fleetflow schema` flags.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// One stream (default: every stream).
    pub stream: Option<String>,
    /// What to print.
    #[arg(long, value_enum, default_value = "athena")]
    pub format: SchemaKind,
    /// Athena: the files' format (the folder or S3 sink's `format`).
    #[arg(long, value_enum, default_value = "parquet")]
    pub files: FilesArg,
    /// Athena: the hour folders (the sink's `layout`).
    #[arg(long, value_enum, default_value = "hive")]
    pub layout: LayoutArg,
    /// Athena: where the streams' folders are, `s3://bucket/prefix`.
    #[arg(long, default_value = "s3://BUCKET/fleetflow")]
    pub location: String,
    /// Athena: the first day partition projection covers (`YYYY-MM-DD`).
    #[arg(long, default_value = "2025-01-01")]
    pub since: String,
}

/// `--files`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FilesArg {
    /// JSON lines (gzip and zstd files are read alike).
    Jsonl,
    /// Parquet.
    Parquet,
}

/// `--layout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// `YYYY/MM/DD/HH`.
    Hourly,
    /// `dt=YYYY-MM-DD/hr=HH`.
    Hive,
}

/// The text to print, or an error naming the stream and the choices.
pub fn schema(args: &SchemaArgs) -> anyhow::Result<String> {
    let streams: Vec<StreamName> = match &args.stream {
        Some(name) => vec![StreamName::parse(name).ok_or_else(|| {
            let all: Vec<&str> = StreamName::all().map(|s| s.as_str()).collect();
            anyhow::anyhow!("no stream {name:?}; streams are {}", all.join(", "))
        })?],
        None => StreamName::all().collect(),
    };
    let format = if args.files == FilesArg::Parquet { Format::Parquet } else { Format::Jsonl };
    let layout = if args.layout == LayoutArg::Hive { Layout::Hive } else { Layout::Hourly };
    let mut out = Vec::new();
    for stream in streams {
        out.push(match args.format {
            SchemaKind::Athena => athena(stream, format, layout, args.location.trim_end_matches('/'), &args.since),
            SchemaKind::JsonSchema => serde_json::to_string_pretty(&json_schema(stream))?,
            SchemaKind::Arrow => arrow(stream),
        });
    }
    Ok(out.join("\n\n"))
}

/// An Athena column type.
fn athena_type(kind: FieldType, format: Format) -> &'static str {
    match kind {
        // JSON lines hold RFC 3339 text, which Athena's JSON SerDe does not read as a timestamp.
        FieldType::Timestamp if format == Format::Jsonl => "string",
        FieldType::Timestamp => "timestamp",
        FieldType::Date => "date",
        FieldType::Double => "double",
        FieldType::Count => "bigint",
        FieldType::Keyword | FieldType::Text => "string",
    }
}

/// `CREATE EXTERNAL TABLE` of `stream` under `location`, partitions projected.
pub fn athena(stream: StreamName, format: Format, layout: Layout, location: &str, since: &str) -> String {
    let name = stream.as_str();
    let raw_text = stream == StreamName::RAW && format == Format::Jsonl;
    let columns: Vec<String> = columnar::fields(stream)
        .iter()
        .map(|f| {
            let t = if raw_text && f.kind == FieldType::Timestamp { "bigint" } else { athena_type(f.kind, format) };
            format!("  `{}` {t}", f.name)
        })
        .collect();
    let storage = match (format, raw_text) {
        (Format::Parquet, _) => "STORED AS PARQUET".to_string(),
        (Format::Jsonl, true) => "ROW FORMAT DELIMITED FIELDS TERMINATED BY ' '\nSTORED AS TEXTFILE".to_string(),
        (Format::Jsonl, false) => "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\nSTORED AS TEXTFILE".to_string(),
    };
    let base = format!("{location}/{name}");
    let (partitions, projection) = match layout {
        Layout::Hive => (
            "`dt` string, `hr` string",
            format!(
                "  'projection.dt.type'='date', 'projection.dt.format'='yyyy-MM-dd', 'projection.dt.range'='{since},NOW',\n  'projection.dt.interval'='1', 'projection.dt.interval.unit'='DAYS',\n  'projection.hr.type'='integer', 'projection.hr.range'='0,23', 'projection.hr.digits'='2',\n  'storage.location.template'='{base}/dt=${{dt}}/hr=${{hr}}/'"
            ),
        ),
        Layout::Hourly => (
            "`hour` string",
            format!(
                "  'projection.hour.type'='date', 'projection.hour.format'='yyyy/MM/dd/HH', 'projection.hour.range'='{}/00,NOW',\n  'projection.hour.interval'='1', 'projection.hour.interval.unit'='HOURS',\n  'storage.location.template'='{base}/${{hour}}/'",
                since.replace('-', "/")
            ),
        ),
    };
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS fleetflow_{name} (\n{}\n)\nPARTITIONED BY ({partitions})\n{storage}\nLOCATION '{base}/'\nTBLPROPERTIES (\n  'projection.enabled'='true',\n{projection}\n);",
        columns.join(",\n")
    )
}

/// The JSON Schema of a field.
fn field_schema(f: &Field) -> Value {
    match f.kind {
        FieldType::Timestamp => json!({ "type": "string", "format": "date-time" }),
        FieldType::Date => json!({ "type": "string", "format": "date" }),
        // A non-finite number is written as null.
        FieldType::Double => json!({ "type": ["number", "null"] }),
        FieldType::Count => json!({ "type": "integer", "minimum": 0 }),
        FieldType::Keyword | FieldType::Text => json!({ "type": "string" }),
    }
}

/// The JSON Schema of `stream`'s lines (`raw`: its columns, though its lines are text).
pub fn json_schema(stream: StreamName) -> Value {
    let fields = columnar::fields(stream);
    let properties: serde_json::Map<String, Value> = fields.iter().map(|f| (f.name.to_string(), field_schema(f))).collect();
    let required: Vec<&str> = fields.iter().filter(|f| !f.optional).map(|f| f.name).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": stream.as_str(),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// The Arrow schema of `stream`'s Parquet files, a field a line.
pub fn arrow(stream: StreamName) -> String {
    let schema = columnar::schema(stream);
    let fields: Vec<String> = schema.fields().iter().map(|f| format!("  {}: {}", f.name(), f.data_type())).collect();
    format!("{}:\n{}", stream.as_str(), fields.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn athena_tables_project_the_layout_partitions() {
        let s = StreamName::parse("speed_windows").unwrap();
        let ddl = athena(s, Format::Parquet, Layout::Hive, "s3://b/p", "2025-01-01");
        assert!(
            ddl.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS fleetflow_speed_windows (\n  `vin` string,\n  `window_start` timestamp,"),
            "{ddl}"
        );
        assert!(
            ddl.contains("STORED AS PARQUET") && ddl.contains("'storage.location.template'='s3://b/p/speed_windows/dt=${dt}/hr=${hr}/'")
        );
        let json = athena(s, Format::Jsonl, Layout::Hourly, "s3://b/p", "2025-01-01");
        assert!(
            json.contains("JsonSerDe")
                && json.contains("'projection.hour.format'='yyyy/MM/dd/HH'")
                && json.contains("`window_start` string")
        );
        let raw = athena(StreamName::RAW, Format::Jsonl, Layout::Hourly, "s3://b/p", "2025-01-01");
        assert!(raw.contains("FIELDS TERMINATED BY ' '") && raw.contains("`timestamp` bigint"), "{raw}");
    }

    #[test]
    fn json_schemas_require_what_every_record_has() {
        let s = json_schema(StreamName::parse("buggy_devices").unwrap());
        assert_eq!(s["required"], json!(["vin", "sensor_id", "window_start", "window_end", "readings"]));
        assert_eq!(s["properties"]["revised_at"]["format"], "date-time");
        assert!(arrow(StreamName::parse("alerts").unwrap()).contains("window_start: Timestamp(ms, \"UTC\")"));
    }
}
