//! Replay equals live: a live run (2 workers) archives `raw` in a folder and writes a sealed
//! folder; replaying one day from the archive, at 1 and at 2 workers, writes byte for byte the
//! live run's files for that day, and nothing outside it; a second replay overwrites the first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fleetflow::commands::replay::{replay, ReplayArgs};
use fleetflow::config::FolderConfig;
use fleetflow::config::{Config, SinkConfig, SourceKind};

mod common;
use common::{files_in, files_under};

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");
const WINDOW_STREAMS: [&str; 5] = ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices"];

/// Generated readings from 2025-11-24T21:00Z for 30 hours (3 files, with late and malformed
/// lines), and their reference files.
fn generate(dir: &Path) -> (Vec<String>, String, String) {
    let d = dir.join("data");
    let d = d.to_str().unwrap();
    let g = Command::new(BIN)
        .args(["generate", "--output", d, "--vehicles", "40", "--duration-secs", "108000", "--interval-ms", "20000", "--files", "3"])
        .args(["--start", "2025-11-24T21:00:00Z", "--speeder-fraction", "0.3", "--buggy-fraction", "0.2"])
        .args(["--late-fraction", "0.01", "--malformed-fraction", "0.005", "--max-delay-ms", "4000"])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let files = (0..3).map(|i| format!("{d}/readings-{i:03}.txt")).collect();
    (files, format!("{d}/vin_sensor.csv"), format!("{d}/buggy_sensors.csv"))
}

/// The live run: the files into a sealed folder `live`, `raw` archived in `archive`.
fn live(dir: &Path, files: &[String], vin: &str, buggy: &str) -> (PathBuf, PathBuf) {
    let (out, archive) = (dir.join("live"), dir.join("archive"));
    let mut c = Config { workers: 2, ..Config::default() };
    c.source.kind = SourceKind::Files;
    c.source.files = files.to_vec();
    c.reference.vin_sensors = Some(vin.into());
    c.reference.buggy_sensors = Some(buggy.into());
    c.windows.max_future_secs = 0;
    c.http.bind = String::new();
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig { path: out.clone(), buffer_mib: 1.0, buffer_secs: 0.0, sealed: true, ..FolderConfig::default() }),
    );
    // Small buffers: the archive has many files per hour, from both workers.
    c.sinks.insert(
        "archive".into(),
        SinkConfig::Folder(FolderConfig {
            path: archive.clone(),
            buffer_mib: 0.05,
            buffer_secs: 0.0,
            sealed: false,
            ..FolderConfig::default()
        }),
    );
    c.routes.insert("raw".into(), vec!["archive".into()]);
    let s = fleetflow::job::run(c.validated().unwrap(), Arc::new(AtomicBool::new(false))).unwrap();
    assert!(s.late > 0 && s.malformed > 0, "the live input has late and malformed readings: {s:?}");
    (out, archive)
}

fn replay_args(archive: &Path, out: &Path, workers: usize, vin: &str, buggy: &str) -> ReplayArgs {
    ReplayArgs {
        from: "2025-11-25".into(),
        archive: Some(archive.display().to_string()),
        output: out.to_path_buf(),
        workers: Some(workers),
        reference: Some(vin.into()),
        buggy: Some(buggy.into()),
        quiet: true,
        ..ReplayArgs::default()
    }
}

#[test]
fn a_replayed_day_is_byte_for_byte_the_live_output_at_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let (files, vin, buggy) = generate(dir.path());
    let (live_out, archive) = live(dir.path(), &files, &vin, &buggy);
    let expected = files_in(&live_out, &WINDOW_STREAMS, "2025/11/25");
    for stream in WINDOW_STREAMS {
        assert!(expected.iter().any(|(n, _)| n.starts_with(stream)), "the live day has {stream}");
    }
    assert!(files_under(&archive.join("raw/2025/11/25/10")).len() > 2, "several archive files an hour");

    for workers in [1, 2] {
        let out = dir.path().join(format!("replay-{workers}"));
        let r = replay(&replay_args(&archive, &out, workers, &vin, &buggy), Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(r.summary.late, 0, "archived readings were accepted live: none is late on replay");
        assert!(r.skipped > 0 && r.outside_range > 0, "the day's margin is read, and not written");
        let got = files_in(&out, &WINDOW_STREAMS, "");
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&expected), "{workers} worker(s): the same files, and only the day's");
        for ((name, a), (_, b)) in got.iter().zip(&expected) {
            assert!(a == b, "{workers} worker(s): {name} differs from the live run's");
        }
    }

    // Again into the same output: the same files, overwritten, none added; a stale file of the
    // day is removed, a file of another day is left alone.
    let out = dir.path().join("replay-2");
    let stale = out.join("speeders/2025/11/25/07/speeders-20251125T09.jsonl");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, "stale\n").unwrap();
    let other_day = out.join("speeders/2025/11/24/23/speeders-20251124T23.jsonl");
    std::fs::create_dir_all(other_day.parent().unwrap()).unwrap();
    std::fs::write(&other_day, "kept\n").unwrap();
    let run = Command::new(BIN)
        .args(["replay", "--from", "2025-11-25", "--to", "2025-11-25", "--archive", archive.to_str().unwrap(), "-w", "2"])
        .args(["--output", out.to_str().unwrap(), "--reference", &vin, "--buggy", &buggy])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(report.contains("readings/s") && report.contains("MB/s") && report.contains("0 late"), "{report}");
    assert!(!stale.exists(), "a replay owns its days in its output");
    assert_eq!(std::fs::read_to_string(&other_day).unwrap(), "kept\n");
    std::fs::remove_file(&other_day).unwrap();
    assert_eq!(files_in(&out, &WINDOW_STREAMS, ""), expected, "the second replay overwrote the first");
}

#[test]
fn bad_replay_arguments_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["replay", "--from", "2025-11-25"], "--archive"),
        (&["replay", "--from", "yesterday", "--archive", "."], "replay.from"),
        (&["replay", "--from", "2025-11-25", "--to", "2025-11-24", "--archive", "."], "replay.to"),
        (&["replay", "--from", "2025-11-25", "--archive", "/no/such/archive"], "replay.archive"),
    ];
    for (args, expected) in cases {
        let out = Command::new(BIN).args(args).current_dir(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "{args:?}: {stderr}");
    }
}
