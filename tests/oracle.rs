//! Oracle test, in the style of differential's `tests/bfs.rs`: seeded random input (out-of-order
//! and late readings, malformed and blank lines, window-boundary timestamps, a midnight crossing,
//! a sensor change inside a window) is run through the whole job at 1, 2 and 4 workers, and every
//! output stream is compared with a plain sequential implementation of the semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fleetflow::config::FolderConfig;
use fleetflow::config::{Config, SinkConfig, SourceConfig, SourceKind};
use fleetflow::encode::{date, rfc3339};
use fleetflow::parse::{parse_line, Parsed};
use fleetflow_dataflows::{Reading, Vin};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const START: u64 = 1_764_114_600_000; // 2025-11-25T23:50:00Z
const MINUTE: u64 = 60_000;
const LATENESS: u64 = 5_000;
const FILES: usize = 3;

struct Input {
    files: Vec<Vec<String>>,
    reference: String,
    buggy: String,
}

fn vin(v: usize) -> String {
    format!("1HGCM82633A{:06}", v)
}

fn generate(seed: u64, vehicles: usize, seconds: u64) -> Input {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut files = vec![Vec::new(); FILES];
    let malformed =
        ["garbage", "1 2 3 4 5 6", "7 1764114600000 1HGCM82633A00000I 1 1 1", "8 1764114600000 1HGCM82633A000001 1 1 -5", "{\"vin\":1}"];
    for (v, _) in (0..vehicles).map(|v| (v, ())) {
        let f = v % FILES;
        let mean: f64 = match v % 4 {
            0 => 86.0,
            1 => 64.0,
            2 => 30.0,
            _ => 78.0,
        };
        let mut t = START;
        let mut id = 0u64;
        let mut lines = Vec::new();
        while t < START + seconds * 1000 {
            t += rng.random_range(500..3_000);
            id += 1;
            let roll: f64 = rng.random();
            let ts = if roll < 0.03 {
                t.saturating_sub(rng.random_range(LATENESS + 1_000..60_000)) // probably late
            } else if roll < 0.08 {
                t - t % MINUTE // exactly on a window boundary
            } else if roll < 0.10 {
                (t - t % MINUTE).saturating_sub(1) // just before one
            } else {
                t - rng.random_range(0..4_000) // out of order, within the lateness
            };
            let speed = (mean + rng.random_range(-12.0..12.0f64)).clamp(0.0, 200.0);
            let speed = (speed * 1000.0).round() / 1000.0;
            let line = if rng.random::<f64>() < 0.5 {
                format!("{id}  {ts}\t{} -122.{v:03} 37.{id:04} {speed}  ", vin(v).to_lowercase())
            } else {
                format!(r#"{{"record_id":{id},"timestamp":{ts},"vin":"{}","lon":-122.5,"lat":37.5,"speed":{speed}}}"#, vin(v))
            };
            lines.push((t, line));
            if rng.random::<f64>() < 0.02 {
                lines.push((t, malformed[rng.random_range(0..malformed.len())].to_string()));
            }
            if rng.random::<f64>() < 0.01 {
                lines.push((t, "   ".to_string()));
            }
        }
        files[f].push(lines);
    }
    // Interleave the vehicles of a file by emission time, as a producer would send them.
    let files = files
        .into_iter()
        .map(|vehicles| {
            let mut all: Vec<(u64, usize, String)> = Vec::new();
            for (i, lines) in vehicles.into_iter().enumerate() {
                all.extend(lines.into_iter().map(|(t, l)| (t, i, l)));
            }
            all.sort_by_key(|(t, i, _)| (*t, *i));
            all.into_iter().map(|(_, _, l)| l).collect()
        })
        .collect();
    let change = START + 7 * MINUTE + 30_001; // inside a window
    let mut reference = String::from("vin,sensor_id,effective_from\n");
    for v in 0..vehicles {
        reference.push_str(&format!("{},S{v},\n", vin(v)));
        if v < 5 {
            reference.push_str(&format!("{},T{v},{change}\n", vin(v)));
        }
    }
    // vehicle `vehicles - 1` has no reference row at all.
    let buggy = "sensor_id\nS1\nT2\nS3\nT0\nS0\nS7\n".to_string();
    Input { files, reference, buggy }
}

fn key(v: &Value) -> String {
    v.to_string()
}

/// The sequential implementation of the semantics in docs/configuration.md.
fn oracle(input: &Input) -> BTreeMap<&'static str, Vec<String>> {
    let mut accepted: Vec<Reading> = Vec::new();
    let mut late = Vec::new();
    let mut errors = Vec::new();
    for (f, lines) in input.files.iter().enumerate() {
        let name = format!("f{f}.txt");
        let mut max: Option<u64> = None;
        for (i, line) in lines.iter().enumerate() {
            match parse_line(line.as_bytes()) {
                Parsed::Blank => {}
                Parsed::Malformed(_) => errors.push(format!("{name}:{}|{line}", i + 1)),
                Parsed::Reading(r) => {
                    if max.is_some_and(|m| r.timestamp < m.saturating_sub(LATENESS)) {
                        late.push(format!("{name}:{}|{line}", i + 1));
                    } else {
                        max = Some(max.map_or(r.timestamp, |m| m.max(r.timestamp)));
                        accepted.push(r);
                    }
                }
            }
        }
    }
    let micro = |r: &Reading| (r.speed * 1e6).round() as u64;
    let avg = |sum: u64, n: u64| ((sum as f64 / n as f64) / 1000.0).round() / 1000.0;
    // Tumbling windows.
    let mut windows: BTreeMap<(Vin, u64), Vec<&Reading>> = BTreeMap::new();
    for r in &accepted {
        windows.entry((r.vin, r.timestamp - r.timestamp % MINUTE)).or_default().push(r);
    }
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for ((v, s), rs) in &windows {
        let n = rs.len() as u64;
        let sum: u64 = rs.iter().map(|r| micro(r)).sum();
        let max = rs.iter().map(|r| r.speed).fold(f64::MIN, f64::max);
        let min = rs.iter().map(|r| r.speed).fold(f64::MAX, f64::min);
        let speeding = rs.iter().filter(|r| r.speed > 65.0).count();
        out.entry("speed_windows").or_default().push(key(&json!({
            "vin": v.as_str(), "window_start": rfc3339(*s), "window_end": rfc3339(s + MINUTE),
            "readings": n, "avg_speed": avg(sum, n), "max_speed": max, "min_speed": min
        })));
        if max > 65.0 {
            out.entry("speeders").or_default().push(key(&json!({
                "vin": v.as_str(), "window_start": rfc3339(*s), "window_end": rfc3339(s + MINUTE),
                "readings": n, "speeding_readings": speeding, "avg_speed": avg(sum, n), "max_speed": max
            })));
        }
    }
    // Daily speeders.
    let mut days: BTreeMap<(Vin, u64), (u64, f64)> = BTreeMap::new();
    for r in &accepted {
        let e = days.entry((r.vin, r.timestamp - r.timestamp % 86_400_000)).or_insert((0, f64::MIN));
        e.0 += (r.speed > 65.0) as u64;
        e.1 = e.1.max(r.speed);
    }
    for ((v, d), (n, max)) in days {
        if n > 0 {
            out.entry("daily_speeders")
                .or_default()
                .push(key(&json!({"vin": v.as_str(), "date": date(d), "speeding_readings": n, "max_speed": max})));
        }
    }
    // Sliding windows of 5 minutes every minute, and alert episodes.
    let mut sliding: BTreeMap<(Vin, u64), (u64, u64)> = BTreeMap::new();
    for r in &accepted {
        let pane = r.timestamp - r.timestamp % MINUTE;
        for k in 0..5 {
            if pane >= k * MINUTE {
                let e = sliding.entry((r.vin, pane - k * MINUTE)).or_insert((0, 0));
                e.0 += 1;
                e.1 += micro(r);
            }
        }
    }
    let above = |n: u64, sum: u64| sum as f64 > 80.0 * 1e6 * n as f64;
    for (&(v, s), &(n, sum)) in &sliding {
        if !above(n, sum) {
            continue;
        }
        let previous = s.checked_sub(MINUTE).and_then(|p| sliding.get(&(v, p)));
        if previous.is_some_and(|&(pn, ps)| above(pn, ps)) {
            continue;
        }
        out.entry("alerts").or_default().push(key(&json!({
            "vin": v.as_str(), "window_start": rfc3339(s), "window_end": rfc3339(s + 5 * MINUTE), "avg_speed": avg(sum, n)
        })));
    }
    // Buggy devices: the sensor row with the greatest effective_from <= the reading's time.
    let mut rows: BTreeMap<Vin, Vec<(u64, String)>> = BTreeMap::new();
    for line in input.reference.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let from = if f[2].is_empty() { 0 } else { f[2].parse().unwrap() };
        rows.entry(Vin::parse(f[0].as_bytes()).unwrap()).or_default().push((from, f[1].to_string()));
    }
    let buggy: BTreeSet<&str> = input.buggy.lines().skip(1).collect();
    let mut counts: BTreeMap<(Vin, String, u64), u64> = BTreeMap::new();
    for r in &accepted {
        let Some(rs) = rows.get(&r.vin) else { continue };
        let Some((_, sensor)) = rs.iter().filter(|(f, _)| *f <= r.timestamp).max_by_key(|(f, _)| *f) else { continue };
        if buggy.contains(sensor.as_str()) {
            *counts.entry((r.vin, sensor.clone(), r.timestamp - r.timestamp % MINUTE)).or_default() += 1;
        }
    }
    for ((v, sensor, s), n) in counts {
        out.entry("buggy_devices").or_default().push(key(&json!({
            "vin": v.as_str(), "sensor_id": sensor, "window_start": rfc3339(s), "window_end": rfc3339(s + MINUTE), "readings": n
        })));
    }
    out.insert("late", late);
    out.insert("errors", errors);
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn read_outputs(root: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for stream in ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices", "late", "errors"] {
        let mut lines = Vec::new();
        let mut stack = vec![root.join(stream)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    assert!(!p.file_name().unwrap().to_string_lossy().starts_with('.'), "temporary file left: {p:?}");
                    for line in std::fs::read_to_string(&p).unwrap().lines() {
                        let v: Value = serde_json::from_str(line).unwrap();
                        lines.push(if stream == "late" || stream == "errors" {
                            // position|record: the reason and times are checked by unit tests.
                            let pos = v["position"].as_str().unwrap();
                            let file = Path::new(pos).file_name().unwrap().to_string_lossy().to_string();
                            format!("{file}|{}", v["record"].as_str().unwrap())
                        } else {
                            key(&v)
                        });
                    }
                }
            }
        }
        lines.sort();
        out.insert(stream, lines);
    }
    out
}

fn run_job(input: &Input, workers: usize, chunk_kib: u64) -> BTreeMap<&'static str, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (f, lines) in input.files.iter().enumerate() {
        let p = dir.path().join(format!("f{f}.txt"));
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        files.push(p.display().to_string());
    }
    std::fs::write(dir.path().join("ref.csv"), &input.reference).unwrap();
    std::fs::write(dir.path().join("buggy.csv"), &input.buggy).unwrap();
    let out = dir.path().join("out");
    let mut config = Config { workers, ..Config::default() };
    config.source = SourceConfig { kind: SourceKind::Files, files, chunk_kib, ..SourceConfig::default() };
    config.reference.vin_sensors = Some(dir.path().join("ref.csv"));
    config.reference.buggy_sensors = Some(dir.path().join("buggy.csv"));
    config.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig {
            path: out.clone(),
            buffer_mib: 0.01,
            buffer_secs: 60.0,
            sealed: false,
            ..FolderConfig::default()
        }),
    );
    let summary = fleetflow::job::run(config.validated().unwrap(), Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(summary.readings + summary.late + summary.malformed + summary.blank, summary.records_read, "every record accounted for");
    read_outputs(&out)
}

fn check(seed: u64, workers: usize) {
    check_in_chunks(seed, workers, SourceConfig::default().chunk_kib);
}

/// Checks a run against the oracle; with more workers than files, each file is read by every
/// worker in chunks of `chunk_kib`.
fn check_in_chunks(seed: u64, workers: usize, chunk_kib: u64) {
    let input = generate(seed, 12, 20 * 60);
    let expected = oracle(&input);
    assert!(expected["alerts"].len() >= 2 && !expected["late"].is_empty() && !expected["errors"].is_empty());
    assert!(expected["buggy_devices"].iter().any(|l| l.contains("\"T0\"")), "a sensor change inside the run");
    assert!(expected["daily_speeders"].iter().any(|l| l.contains("2025-11-26")), "a midnight crossing");
    let actual = run_job(&input, workers, chunk_kib);
    for (stream, lines) in &expected {
        let got = &actual[stream];
        let missing: Vec<&String> = lines.iter().filter(|l| !got.contains(l)).take(5).collect();
        let extra: Vec<&String> = got.iter().filter(|l| !lines.contains(l)).take(5).collect();
        assert_eq!(got, lines, "{stream} at {workers} workers differs\n missing: {missing:#?}\n extra: {extra:#?}");
    }
}

#[test]
fn oracle_1w() {
    check(1, 1);
    check(2, 1);
}

#[test]
fn oracle_2w() {
    check(1, 2);
    check(3, 2);
}

#[test]
fn oracle_files_split_in_small_chunks() {
    // 3 files of about 150 KiB, each read by 4 workers in chunks of 1 KiB.
    check_in_chunks(1, 4, 1);
    check_in_chunks(5, 4, 1);
}

#[test]
fn oracle_4w() {
    check(1, 4);
    check(4, 4);
}
