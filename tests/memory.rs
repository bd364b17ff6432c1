//! Memory under unbounded key growth, for the whole job: every minute brings 5,000 vehicles never
//! seen before, for 20 minutes (100,000 distinct vins) and for 40 (200,000). A counting allocator
//! measures the peak of live heap bytes during each run: twice the vehicles ever seen must not
//! raise it, since the state of closed windows is released (after the correction horizon for the
//! reference join) and nothing is kept per vehicle ever seen.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fleetflow::config::FolderConfig;
use fleetflow::config::{Config, SinkConfig, SourceConfig, SourceKind};
use fleetflow::counting_allocator::Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PER_MINUTE: u64 = 5_000;
const START: u64 = 1_764_028_800_000; // 2025-11-25T00:00:00Z

/// Two readings a minute per vehicle, new vehicles every minute, for `minutes`.
fn write_input(path: &Path, minutes: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut id = 0;
    for minute in 0..minutes {
        for half in 0..2 {
            for k in 0..PER_MINUTE {
                let vehicle = minute * PER_MINUTE + k;
                let ts = START + minute * 60_000 + half * 30_000 + k % 1000;
                id += 1;
                writeln!(out, "{id} {ts} 1FF{vehicle:014} -73.9 40.7 {}", 40 + k % 20).unwrap();
            }
        }
    }
}

/// Peak live heap bytes above the start of the run.
fn peak_during_run(input: &Path, out: &Path, minutes: u64) -> usize {
    let mut c = Config {
        source: SourceConfig { kind: SourceKind::Files, files: vec![input.display().to_string()], ..SourceConfig::default() },
        ..Config::default()
    };
    c.http.bind = String::new();
    c.windows.max_future_secs = 0;
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig {
            path: out.to_path_buf(),
            buffer_mib: 1.0,
            buffer_secs: 1.0,
            sealed: false,
            ..FolderConfig::default()
        }),
    );
    let base = Counting::reset_peak();
    let summary = fleetflow::job::run(c.validated().unwrap(), Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(summary.readings, minutes * 2 * PER_MINUTE);
    Counting::peak() - base
}

#[test]
fn twice_the_vehicles_ever_seen_do_not_grow_the_jobs_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for minutes in [20, 40] {
        let input = dir.path().join(format!("in-{minutes}.txt"));
        write_input(&input, minutes);
        peaks.push(peak_during_run(&input, &dir.path().join(format!("out-{minutes}")), minutes));
    }
    let (short, long) = (peaks[0], peaks[1]);
    eprintln!("peak heap: {short} bytes with 100,000 distinct vehicles, {long} bytes with 200,000");
    // If anything were kept per vehicle ever seen (~100 bytes each), the longer run would peak
    // about 10 MB higher.
    assert!(long < short + short / 8, "peak heap {long} bytes for 200,000 vehicles against {short} for 100,000");
}
