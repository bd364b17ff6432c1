//! Parquet files of a stream: typed columns named as the JSON fields the stream's analysis
//! declares (times as `TIMESTAMP(ms, UTC)`, days as `DATE`, speeds as `DOUBLE`, counts as
//! `INT64`, text as `UTF8`), and back to the same JSON lines. `raw` has the columns of a reading
//! (`record_id, timestamp, vin, lon, lat, speed`) and reads back as the same input lines.

use std::sync::Arc;

use arrow_array::builder::{Date32Builder, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as Column, Schema, TimeUnit};
use fleetflow_dataflows::output::JsonObject;
use fleetflow_dataflows::schema::{Field, FieldType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde_json::Value;

use super::format::{Compression, FormatError};
use crate::stream::StreamName;

/// The fields of a `raw` line, as columns.
const RAW: &[Field] = &[
    Field::count("record_id"),
    Field::timestamp("timestamp"),
    Field::keyword("vin"),
    Field::double("lon"),
    Field::double("lat"),
    Field::double("speed"),
];

const DAY_MS: i64 = 86_400_000;

/// The columns of `stream`'s files.
pub fn fields(stream: StreamName) -> &'static [Field] {
    if stream == StreamName::RAW {
        RAW
    } else {
        stream.fields()
    }
}

/// The Arrow type of a field.
pub fn arrow_type(kind: FieldType) -> DataType {
    match kind {
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        FieldType::Date => DataType::Date32,
        FieldType::Double => DataType::Float64,
        FieldType::Count => DataType::Int64,
        FieldType::Keyword | FieldType::Text => DataType::Utf8,
    }
}

/// The Arrow schema of `stream`'s files.
pub fn schema(stream: StreamName) -> Schema {
    Schema::new(fields(stream).iter().map(|f| Column::new(f.name, arrow_type(f.kind), true)).collect::<Vec<_>>())
}

/// One column being filled.
enum Builder {
    Time(TimestampMillisecondBuilder),
    Date(Date32Builder),
    Double(Float64Builder),
    Count(Int64Builder),
    Text(StringBuilder),
}

impl Builder {
    fn new(kind: FieldType) -> Builder {
        match kind {
            FieldType::Timestamp => Builder::Time(TimestampMillisecondBuilder::new().with_timezone("UTC")),
            FieldType::Date => Builder::Date(Date32Builder::new()),
            FieldType::Double => Builder::Double(Float64Builder::new()),
            FieldType::Count => Builder::Count(Int64Builder::new()),
            FieldType::Keyword | FieldType::Text => Builder::Text(StringBuilder::new()),
        }
    }

    /// Appends a JSON value (absent or `null`: a null); the error says what did not fit.
    fn push(&mut self, value: Option<&Value>) -> Result<(), String> {
        let value = value.filter(|v| !v.is_null());
        let bad = |v: &Value, what: &str| format!("{v} is not {what}");
        match (self, value) {
            (Builder::Time(b), None) => b.append_null(),
            (Builder::Date(b), None) => b.append_null(),
            (Builder::Double(b), None) => b.append_null(),
            (Builder::Count(b), None) => b.append_null(),
            (Builder::Text(b), None) => b.append_null(),
            (Builder::Time(b), Some(v)) => {
                let t = v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).ok_or_else(|| bad(v, "an RFC 3339 time"))?;
                b.append_value(t.timestamp_millis())
            }
            (Builder::Date(b), Some(v)) => {
                let d = v.as_str().and_then(|s| s.parse::<chrono::NaiveDate>().ok()).ok_or_else(|| bad(v, "a YYYY-MM-DD date"))?;
                b.append_value((d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis() / DAY_MS) as i32)
            }
            (Builder::Double(b), Some(v)) => b.append_value(v.as_f64().ok_or_else(|| bad(v, "a number"))?),
            (Builder::Count(b), Some(v)) => b.append_value(v.as_i64().ok_or_else(|| bad(v, "a whole number"))?),
            (Builder::Text(b), Some(v)) => b.append_value(v.as_str().ok_or_else(|| bad(v, "a string"))?),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Time(mut b) => Arc::new(b.finish()),
            Builder::Date(mut b) => Arc::new(b.finish()),
            Builder::Double(mut b) => Arc::new(b.finish()),
            Builder::Count(mut b) => Arc::new(b.finish()),
            Builder::Text(mut b) => Arc::new(b.finish()),
        }
    }
}

/// A `raw` input line as the JSON values of its columns.
fn raw_values(line: &str) -> Result<Vec<Value>, String> {
    let parts: Vec<&str> = line.split(' ').collect();
    let [id, ts, vin, lon, lat, speed] = parts[..] else { return Err(format!("{line:?} is not a raw reading line")) };
    let number = |s: &str| s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number);
    let ms: i64 = ts.parse().map_err(|_| format!("{ts:?} is not an epoch-ms time"))?;
    let time = fleetflow_dataflows::output::rfc3339(ms.max(0) as u64);
    let id: u64 = id.parse().map_err(|_| format!("{id:?} is not a record id"))?;
    let coords = [lon, lat, speed].map(|s| number(s).ok_or_else(|| format!("{s:?} is not a number")));
    let [lon, lat, speed] = coords;
    Ok(vec![Value::from(id), Value::String(time), Value::String(vin.to_string()), lon?, lat?, speed?])
}

/// The record batch of `stream`'s `lines`.
fn batch(stream: StreamName, lines: &[u8]) -> Result<RecordBatch, FormatError> {
    let fields = fields(stream);
    let mut builders: Vec<Builder> = fields.iter().map(|f| Builder::new(f.kind)).collect();
    for (n, line) in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let fail = |e: String| FormatError(format!("{} line {}: {e}", stream.as_str(), n + 1));
        if stream == StreamName::RAW {
            let values = raw_values(&String::from_utf8_lossy(line)).map_err(fail)?;
            for (b, v) in builders.iter_mut().zip(&values) {
                b.push(Some(v)).map_err(fail)?;
            }
            continue;
        }
        let object: serde_json::Map<String, Value> = serde_json::from_slice(line).map_err(|e| fail(e.to_string()))?;
        for (b, f) in builders.iter_mut().zip(fields) {
            b.push(object.get(f.name)).map_err(|e| fail(format!("{}: {e}", f.name)))?;
        }
    }
    let columns = builders.into_iter().map(Builder::finish).collect();
    RecordBatch::try_new(Arc::new(schema(stream)), columns).map_err(|e| FormatError(e.to_string()))
}

/// A Parquet file of `stream`'s `lines`, its pages compressed with `compression`.
pub fn to_parquet(stream: StreamName, lines: &[u8], compression: Compression) -> Result<Vec<u8>, FormatError> {
    if fields(stream).is_empty() {
        return Err(FormatError(format!("{} declares no fields: it cannot be written as Parquet", stream.as_str())));
    }
    let batch = batch(stream, lines)?;
    let codec = match compression {
        Compression::None => parquet::basic::Compression::UNCOMPRESSED,
        Compression::Gzip => parquet::basic::Compression::GZIP(GzipLevel::default()),
        Compression::Zstd => parquet::basic::Compression::ZSTD(ZstdLevel::default()),
    };
    let props = WriterProperties::builder()
        .set_compression(codec)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_size(1 << 20)
        .build();
    let fail = |e: parquet::errors::ParquetError| FormatError(format!("parquet: {e}"));
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).map_err(fail)?;
    writer.write(&batch).map_err(fail)?;
    writer.into_inner().map_err(fail)
}

/// The lines of a Parquet file of `stream`, as the sink was given them.
pub fn from_parquet(stream: StreamName, bytes: Vec<u8>) -> Result<Vec<u8>, FormatError> {
    let fail = |e: String| FormatError(format!("parquet: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader.build().map_err(|e| fail(e.to_string()))? {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let columns: Vec<ArrayRef> = fields(stream)
            .iter()
            .map(|f| batch.column_by_name(f.name).cloned().ok_or_else(|| fail(format!("no column {}", f.name))))
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            if stream == StreamName::RAW {
                raw_line(&columns, row, &mut out);
            } else {
                json_line(fields(stream), &columns, row, &mut out);
            }
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// Row `row` as the JSON line the analysis wrote: fields in order, absent optional ones left out.
fn json_line(fields: &[Field], columns: &[ArrayRef], row: usize, out: &mut Vec<u8>) {
    let mut object = JsonObject::new(out);
    for (f, c) in fields.iter().zip(columns) {
        if c.is_null(row) {
            if !f.optional {
                // A non-finite number is written as null.
                object = object.f64(f.name, f64::NAN);
            }
            continue;
        }
        object = match f.kind {
            FieldType::Timestamp => object.time(f.name, c.as_primitive::<TimestampMillisecondType>().value(row).max(0) as u64),
            FieldType::Date => object.date(f.name, (c.as_primitive::<Date32Type>().value(row) as i64 * DAY_MS).max(0) as u64),
            FieldType::Double => object.f64(f.name, c.as_primitive::<Float64Type>().value(row)),
            FieldType::Count => object.u64(f.name, c.as_primitive::<Int64Type>().value(row).max(0) as u64),
            FieldType::Keyword | FieldType::Text => object.str(f.name, c.as_string::<i32>().value(row)),
        };
    }
    object.end();
}

/// Row `row` of a `raw` file as the input line `record_id timestamp vin lon lat speed`.
fn raw_line(columns: &[ArrayRef], row: usize, out: &mut Vec<u8>) {
    let id = columns[0].as_primitive::<Int64Type>().value(row);
    let ts = columns[1].as_primitive::<TimestampMillisecondType>().value(row);
    let vin = columns[2].as_string::<i32>().value(row);
    let [lon, lat, speed] = [3, 4, 5].map(|i| columns[i].as_primitive::<Float64Type>().value(row));
    out.extend_from_slice(format!("{id} {ts} {vin} {lon} {lat} {speed}").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_reads_back_as_the_same_lines() {
        let stream = StreamName::parse("buggy_devices").unwrap();
        let lines = concat!(
            "{\"vin\":\"V1\",\"sensor_id\":\"S1\",\"window_start\":\"2025-11-25T00:00:00.000Z\",\"window_end\":\"2025-11-25T00:01:00.000Z\",\"readings\":60}\n",
            "{\"vin\":\"V\\\"2\",\"sensor_id\":\"S2\",\"window_start\":\"2025-11-25T00:00:00.000Z\",\"window_end\":\"2025-11-25T00:01:00.000Z\",\"readings\":3,\"revision\":\"retract\",\"revised_at\":\"2025-11-25T00:05:00.000Z\"}\n",
        );
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let file = to_parquet(stream, lines.as_bytes(), c).unwrap();
            assert_eq!(String::from_utf8(from_parquet(stream, file).unwrap()).unwrap(), lines);
        }
        let daily = StreamName::parse("daily_speeders").unwrap();
        let line = "{\"vin\":\"V\",\"date\":\"2025-11-25\",\"speeding_readings\":397,\"max_speed\":71.48}\n";
        assert_eq!(from_parquet(daily, to_parquet(daily, line.as_bytes(), Compression::Zstd).unwrap()).unwrap(), line.as_bytes());
        let raw = "8528 1764028807552 XT1M0ZSGXL0000020 -122.403825 37.724567 21.017\n1 0 V 0 -0.5 300\n";
        assert_eq!(
            from_parquet(StreamName::RAW, to_parquet(StreamName::RAW, raw.as_bytes(), Compression::Zstd).unwrap()).unwrap(),
            raw.as_bytes()
        );
    }

    #[test]
    fn a_line_that_does_not_fit_its_declaration_is_named() {
        let daily = StreamName::parse("daily_speeders").unwrap();
        let e = to_parquet(daily, b"{\"vin\":\"V\",\"date\":\"yesterday\"}\n", Compression::None).unwrap_err();
        assert_eq!(e.0, "daily_speeders line 1: date: \"yesterday\" is not a YYYY-MM-DD date");
    }
}
