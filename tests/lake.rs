//! Outputs for the data lake, read by real clients: one run writes every stream to four folder
//! sinks (JSON lines in the default layout; Parquet with zstd pages in the Hive layout; gzip and
//! zstd JSON lines). DuckDB (PyPI, in the virtual environment of `scripts/readers.sh`) reads the
//! Parquet files with Hive partitioning and the compressed files, and finds exactly the rows of
//! the plain JSON lines for every stream, and one hour's rows through its partition columns.
//! pyarrow reads the Parquet columns' types and the Hive partitions. Replay from the gzip, zstd and
//! Parquet `raw` archives writes the same files as from the plain archive.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::files_in;

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");

/// The streams compared (every stream the default analyses write, with the runtime's own).
const STREAMS: [&str; 8] = ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices", "late", "errors", "raw"];

fn fleetflow(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().expect("running fleetflow");
    assert!(out.status.success(), "fleetflow {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn sink(name: &str, path: &Path, extra: &str) -> String {
    format!("[sinks.{name}]\nkind = \"folder\"\npath = \"{}\"\nbuffer_secs = 0\n{extra}\n", path.display())
}

#[test]
fn duckdb_reads_parquet_and_compressed_outputs_as_the_json_lines() {
    let python = common::lake::python();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    common::generate_with_rejects(BIN, &data, 50, 5400);
    let root = |n: &str| -> PathBuf { dir.path().join(n) };
    let routes: String = STREAMS.iter().map(|s| format!("{s} = [\"plain\", \"parquet\", \"gz\", \"zst\"]\n")).collect();
    let config = format!(
        "workers = 2\n[source]\nkind = \"files\"\nfiles = [\"{d}/readings-000.txt\"]\n[reference]\nvin_sensors = \"{d}/vin_sensor.csv\"\nbuggy_sensors = \"{d}/buggy_sensors.csv\"\n{}{}{}{}[routes]\n{routes}",
        sink("plain", &root("plain"), ""),
        sink("parquet", &root("parquet"), "format = \"parquet\"\ncompression = \"zstd\"\nlayout = \"hive\""),
        sink("gz", &root("gz"), "compression = \"gzip\""),
        sink("zst", &root("zst"), "compression = \"zstd\""),
    );
    let cfg = dir.path().join("fleetflow.toml");
    std::fs::write(&cfg, config).unwrap();
    fleetflow(&["run", "--config", cfg.to_str().unwrap()]);

    for stream in STREAMS {
        for other in ["parquet", "gz", "zst"] {
            let c = common::lake::compare(&python, &root("plain"), &root(other), stream, None);
            println!("{stream} in {other}: {c}");
            assert!(c["plain"].as_u64().unwrap() > 0, "{stream}: the run has records");
            assert_eq!(
                (c["plain"].clone(), c["only_plain"].as_u64(), c["only_other"].as_u64()),
                (c["other"].clone(), Some(0), Some(0)),
                "{stream} in {other}: {c}"
            );
        }
    }
    // One hour, read through the Hive partition columns, is that hour's folder.
    let hour = common::lake::compare(&python, &root("plain"), &root("parquet"), "speed_windows", Some("2025-11-25/00"));
    assert!(hour["plain"].as_u64().unwrap() > 0 && hour["only_plain"] == 0 && hour["only_other"] == 0, "{hour}");
    let all = common::lake::compare(&python, &root("plain"), &root("parquet"), "speed_windows", None);
    println!("one hour: {hour}; all: {all}");
    assert!(hour["other"].as_u64() < all["other"].as_u64(), "the hour is a part of the run: {hour} {all}");

    // pyarrow reads the typed columns, and the partitions from the folders.
    let arrow_types = |stream: &str| -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lake/arrow_types.py");
        let out = Command::new(&python).arg(script).arg(root("parquet")).arg(stream).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let arrow = arrow_types("buggy_devices");
    let types = &arrow["types"];
    assert_eq!(types["window_start"], "timestamp[ms, tz=UTC]", "{arrow}");
    assert_eq!(
        (types["vin"].as_str(), types["readings"].as_str(), types["revision"].as_str()),
        (Some("string"), Some("int64"), Some("string"))
    );
    assert!(types["dt"].is_string() && types["hr"].is_string(), "the Hive partitions: {arrow}");
    let daily = arrow_types("daily_speeders");
    assert_eq!((daily["types"]["date"].as_str(), daily["types"]["max_speed"].as_str()), (Some("date32[day]"), Some("double")), "{daily}");

    // Replay from each archive: the same sealed files as from the plain one.
    let replay = |archive: &str| {
        let out = dir.path().join(format!("replay-{archive}"));
        let r = root(archive);
        fleetflow(&[
            "replay",
            "--from",
            "2025-11-25",
            "--archive",
            r.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--reference",
            &format!("{d}/vin_sensor.csv"),
            "--buggy",
            &format!("{d}/buggy_sensors.csv"),
            "--quiet",
        ]);
        files_in(&out, &STREAMS[..5], "")
    };
    let plain = replay("plain");
    assert!(plain.len() > 5, "the replay wrote files");
    for archive in ["parquet", "gz", "zst"] {
        assert!(replay(archive) == plain, "replay from the {archive} archive writes the plain archive's files");
    }
}
