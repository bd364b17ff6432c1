//! The real readers of the tests of the data-lake outputs: DuckDB and pyarrow in the virtual
//! environment of `scripts/readers.sh`, and DuckDB's comparison of one stream in two folders.

use std::path::Path;
use std::process::Command;

use fleetflow::stream::StreamName;
use fleetflow_dataflows::schema::FieldType;
use serde_json::Value;

/// The Python with DuckDB and pyarrow: `FLEETFLOW_READERS_PYTHON`, or the one the script installs.
pub fn python() -> String {
    if let Ok(p) = std::env::var("FLEETFLOW_READERS_PYTHON") {
        return p;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/readers.sh");
    let out = Command::new("bash").arg(script).arg("install").output().expect("running scripts/readers.sh");
    assert!(out.status.success(), "scripts/readers.sh install failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The DuckDB types of a stream's declared columns, in order, as a JSON object.
pub fn columns(stream: &str) -> String {
    let s = StreamName::parse(stream).unwrap();
    let pairs: Vec<String> = fleetflow::stored_files::columnar::fields(s)
        .iter()
        .map(|f| {
            let t = match f.kind {
                FieldType::Timestamp => "TIMESTAMPTZ",
                FieldType::Date => "DATE",
                FieldType::Double => "DOUBLE",
                FieldType::Count => "BIGINT",
                FieldType::Keyword | FieldType::Text => "VARCHAR",
            };
            format!("\"{}\": \"{t}\"", f.name)
        })
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// DuckDB's comparison of `stream` in `plain` (JSON lines) and `other` (optionally one hour):
/// `{"plain": n, "other": n, "only_plain": n, "only_other": n}` (see `tests/lake/compare.py`).
pub fn compare(python: &str, plain: &Path, other: &Path, stream: &str, hour: Option<&str>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lake/compare.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(plain).arg(other).arg(stream).arg(columns(stream));
    if let Some(h) = hour {
        cmd.arg(h);
    }
    let out = cmd.output().expect("running DuckDB");
    assert!(out.status.success(), "{stream}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
