//! Replay throughput benchmark: one archived day replayed from a folder archive.
//!
//! What it measures: a live run (generator, not real time) archives `raw` for a whole UTC day and
//! the evening before; then `fleetflow replay --from DAY --archive DIR` recomputes that day with
//! all outputs on (sealed folder output), at 1 and 2 workers: wall time, readings per second,
//! archive bytes per second, and the peak resident memory of the replay processes.
//!
//! Run: `cargo bench --bench replay` (env `FLEETFLOW_BENCH_VEHICLES`, default 500 vehicles
//! reporting every 10 s = 4.3 million readings a day; `FLEETFLOW_BENCH_WORKERS`, e.g. `1,2`).
//! The archive is kept under `target/bench-data/` and reused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod common;
use common::{env_or, peak_rss_children_kib, worker_counts};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag: stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fleetflow"));
    let vehicles = env_or("FLEETFLOW_BENCH_VEHICLES", if benching { 500 } else { 5 });
    let workers = worker_counts();
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/archive-v{vehicles}"));
    if !archive.join("raw/2025/11/25/23").exists() {
        let _ = std::fs::remove_dir_all(&archive);
        let config = archive.with_extension("toml");
        std::fs::create_dir_all(&archive).expect("creating the archive folder");
        std::fs::write(
            &config,
            format!(
                "workers = 2\n[source]\nkind = \"generator\"\n[generator]\nvehicles = {vehicles}\ninterval_ms = 10000\nrealtime = false\n\
                 start = \"2025-11-24T23:00:00Z\"\nduration_secs = 90000\n[sinks.local]\nkind = \"folder\"\npath = \"{out}\"\n\
                 [sinks.archive]\nkind = \"folder\"\npath = \"{archive}\"\n[routes]\nraw = [\"archive\"]\n[http]\nbind = \"\"\n",
                out = archive.with_extension("live").display(),
                archive = archive.display()
            ),
        )
        .expect("writing the archive config");
        let status =
            Command::new(&bin).args(["--log", "warn", "run", "--config"]).arg(&config).status().expect("running the archiving job");
        assert!(status.success(), "the archiving run failed");
    }
    println!("fleetflow replay benchmark: one day of {vehicles} vehicles reporting every 10 s, from {}", archive.display());
    for w in workers {
        let out = tempfile::tempdir().expect("temp dir");
        let start = Instant::now();
        let run = Command::new(&bin)
            .args(["--log", "warn", "replay", "--quiet", "--from", "2025-11-25", "--archive"])
            .arg(&archive)
            .args(["-w", &w.to_string(), "--output"])
            .arg(out.path())
            .output()
            .expect("running fleetflow replay");
        let secs = start.elapsed().as_secs_f64();
        assert!(run.status.success(), "fleetflow replay failed: {}", String::from_utf8_lossy(&run.stderr));
        let report = String::from_utf8_lossy(&run.stdout);
        println!("workers {w}: {secs:.2} s wall; {}", report.lines().next().unwrap_or(""));
        println!("  peak RSS so far {} MiB", peak_rss_children_kib() / 1024);
    }
}
