//! Whole-job throughput benchmark.
//!
//! What it measures: the `fleetflow` binary (release build) processing generated files of readings
//! (default 10,000 vehicles x 1,000 s = 10 million readings, split into 4 files/partitions, or
//! `FLEETFLOW_BENCH_FILES` of them: with 1, every worker reads part of the one file) with all
//! outputs on and the reference join active, at 1 and 2 workers: wall time, readings per second,
//! and the peak resident memory of the job process (getrusage of the child).
//!
//! Run: `cargo bench --bench job` (env `FLEETFLOW_BENCH_VEHICLES`, `FLEETFLOW_BENCH_SECS`,
//! `FLEETFLOW_BENCH_FILES`, `FLEETFLOW_BENCH_WORKERS` change the size, the files and the worker
//! counts, e.g. `1,2`).
//! The generated input is kept under `target/bench-data/` and reused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod common;
use common::{env_or, peak_rss_children_kib, worker_counts};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag: stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fleetflow"));
    let vehicles = env_or("FLEETFLOW_BENCH_VEHICLES", if benching { 10_000 } else { 50 });
    let secs = env_or("FLEETFLOW_BENCH_SECS", if benching { 1_000 } else { 60 });
    let files = env_or("FLEETFLOW_BENCH_FILES", 4);
    let workers = worker_counts();
    let suffix = if files == 4 { String::new() } else { format!("-f{files}") };
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/v{vehicles}-s{secs}{suffix}"));
    if !data.join("buggy_sensors.csv").exists() {
        let status = Command::new(&bin)
            .args([
                "--log",
                "warn",
                "generate",
                "--files",
                &files.to_string(),
                "--vehicles",
                &vehicles.to_string(),
                "--duration-secs",
                &secs.to_string(),
            ])
            .arg("--output")
            .arg(&data)
            .status()
            .expect("running fleetflow generate");
        assert!(status.success(), "fleetflow generate failed");
    }
    let readings = vehicles * secs;
    let inputs: Vec<PathBuf> = (0..files).map(|i| data.join(format!("readings-{i:03}.txt"))).collect();
    println!("fleetflow whole-job benchmark: {readings} readings, {vehicles} vehicles, {files} files");
    let mut first = None;
    for w in workers {
        let out = tempfile::tempdir().expect("temp dir");
        let start = Instant::now();
        let status = Command::new(&bin)
            .args(["--log", "warn", "run", "-w", &w.to_string()])
            .arg("--input")
            .args(&inputs)
            .arg("--reference")
            .arg(data.join("vin_sensor.csv"))
            .arg("--buggy")
            .arg(data.join("buggy_sensors.csv"))
            .arg("--output")
            .arg(out.path())
            .status()
            .expect("running fleetflow run");
        let secs = start.elapsed().as_secs_f64();
        assert!(status.success(), "fleetflow run failed");
        let rate = readings as f64 / secs;
        let base = *first.get_or_insert(rate);
        println!(
            "workers {w}: {secs:.2} s, {:.0} readings/s ({:.0}/s per worker), speed-up {:.2}x, peak RSS so far {} MiB",
            rate,
            rate / w as f64,
            rate / base,
            peak_rss_children_kib() / 1024
        );
    }
}
