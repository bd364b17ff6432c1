//! The data-lake formats benchmark: what each file format of the folder sink costs on disk and in
//! time, on one day of a fleet, and how fast DuckDB answers "speeders of a day" over each.
//!
//! What it measures: for each format (JSON lines; JSON lines with zstd; Parquet with zstd pages,
//! Hive layout) a job (generator, not real time, 2 workers) writes a whole UTC day of `raw`,
//! `speed_windows` and `speeders` into a folder sink of that format: the run's wall time, and the
//! bytes per record of `raw` and `speed_windows`. Then, on one core, the encoding throughput of
//! each format over the plain files (records/s and MB of JSON/s), and DuckDB's time (median of 5)
//! for the top speeders of the day over the JSON lines and over the Parquet files.
//!
//! Run: `cargo bench --bench formats` (env `FLEETFLOW_BENCH_VEHICLES`, default 10,000 vehicles,
//! `FLEETFLOW_BENCH_INTERVAL_MS`, default 60,000: one reading a minute, 14.4 million readings).
//! Needs `scripts/readers.sh install` for DuckDB (or `FLEETFLOW_READERS_PYTHON`). The outputs are
//! kept under `target/bench-data/` and reused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fleetflow::stored_files::format::{Compression, FileFormat, Format};
use fleetflow::stream::StreamName;

mod common;
use common::env_or;

/// The formats compared: name, sink settings, file format.
const FORMATS: [(&str, &str, FileFormat); 3] = [
    ("jsonl", "", FileFormat { format: Format::Jsonl, compression: Compression::None }),
    ("jsonl+zstd", "compression = \"zstd\"", FileFormat { format: Format::Jsonl, compression: Compression::Zstd }),
    (
        "parquet+zstd",
        "format = \"parquet\"\ncompression = \"zstd\"\nlayout = \"hive\"",
        FileFormat { format: Format::Parquet, compression: Compression::Zstd },
    ),
];

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fleetflow"));
    let vehicles = env_or("FLEETFLOW_BENCH_VEHICLES", if benching { 10_000 } else { 20 });
    let interval = env_or("FLEETFLOW_BENCH_INTERVAL_MS", 60_000);
    let secs = if benching { 86_400 } else { 3_600 };
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/formats-v{vehicles}-i{interval}-s{secs}"));
    println!("{vehicles} vehicles, a reading every {interval} ms, {secs} s of event time, 2 workers");
    println!("{:<14} {:>9} {:>16} {:>24}", "format", "run (s)", "raw (B/record)", "speed_windows (B/record)");
    for (name, settings, _) in FORMATS {
        let out = base.join(name);
        let wall = run(&bin, &out, settings, vehicles, interval, secs);
        let per = |stream: &str| bytes_per_record(&out, &base.join("jsonl"), stream);
        println!("{name:<14} {wall:>9} {:>16.1} {:>24.1}", per("raw"), per("speed_windows"));
    }
    println!("\nencoding on one core (5 MiB files, as the sink's buffer_mib):");
    for stream in ["raw", "speed_windows"] {
        let lines = sample(&base.join("jsonl").join(stream), 200 << 20);
        let records = lines.iter().map(|c| c.iter().filter(|b| **b == b'\n').count()).sum::<usize>();
        let bytes: usize = lines.iter().map(Vec::len).sum();
        // Plain JSON lines are written as they are: nothing to encode.
        for (name, _, format) in FORMATS.into_iter().filter(|(_, _, f)| !f.is_plain()) {
            let s = StreamName::parse(stream).unwrap_or(StreamName::RAW);
            let started = Instant::now();
            for chunk in &lines {
                std::hint::black_box(format.encode(s, chunk).expect("encoding"));
            }
            let t = started.elapsed().as_secs_f64();
            println!("  {stream:<14} {name:<14} {:>12.0} records/s {:>8.1} MB/s", records as f64 / t, bytes as f64 / t / 1e6);
        }
    }
    duckdb(&base);
}

/// Runs the job into `out` (once; kept), returns its wall time in seconds (or "kept").
fn run(bin: &Path, out: &Path, settings: &str, vehicles: u64, interval: u64, secs: u64) -> String {
    if out.join("speeders").exists() {
        return "kept".to_string();
    }
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("creating the output folder");
    let config = out.with_extension("toml");
    let text = format!(
        "workers = 2\n[source]\nkind = \"generator\"\n[generator]\nvehicles = {vehicles}\ninterval_ms = {interval}\nrealtime = false\n\
         start = \"2025-11-25T00:00:00Z\"\nduration_secs = {secs}\n[sinks.local]\nkind = \"folder\"\npath = \"{}\"\n{settings}\n\
         [routes]\nraw = [\"local\"]\nspeed_windows = [\"local\"]\nspeeders = [\"local\"]\ndaily_speeders = []\nalerts = []\n\
         buggy_devices = []\nlate = []\nerrors = []\n[http]\nbind = \"\"\n",
        out.display()
    );
    std::fs::write(&config, text).expect("writing the config");
    let started = Instant::now();
    let status = Command::new(bin).args(["run", "--config", config.to_str().unwrap_or_default(), "--log", "warn"]).status();
    assert!(status.is_ok_and(|s| s.success()), "the run into {} failed", out.display());
    format!("{:.1}", started.elapsed().as_secs_f64())
}

/// Bytes on disk per record of `stream` in `out`, the records counted in the plain folder.
fn bytes_per_record(out: &Path, plain: &Path, stream: &str) -> f64 {
    let size: u64 = files(&out.join(stream)).iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
    let records: usize =
        files(&plain.join(stream)).iter().map(|f| std::fs::read(f).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())).sum();
    size as f64 / records.max(1) as f64
}

/// Every published file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Up to `limit` bytes of `dir`'s files, as 5 MiB chunks of whole lines.
fn sample(dir: &Path, limit: usize) -> Vec<Vec<u8>> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0;
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            match chunks.last_mut() {
                Some(c) if c.len() + line.len() <= 5 << 20 => c.extend_from_slice(line),
                _ => chunks.push(line.to_vec()),
            }
            total += line.len();
        }
        if total >= limit {
            break;
        }
    }
    chunks
}

/// DuckDB's time for the day's top speeders over the JSON lines and the Parquet files.
fn duckdb(base: &Path) {
    let python = std::env::var("FLEETFLOW_READERS_PYTHON").unwrap_or_else(|_| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/readers.sh");
        let out = Command::new("bash").arg(script).arg("install").output().expect("running scripts/readers.sh");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/formats_query.py");
    let out = Command::new(python).arg(script).arg(base).output().expect("running DuckDB");
    println!(
        "\nDuckDB, the day's top speeders (median of 5):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
