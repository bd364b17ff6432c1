//! The HTTP API of a running job, against an oracle: the job reads generated readings that cross
//! midnight from stdin; with part of the input read, `/speeders` answers the closed day from the
//! output and the open day from live state, each equal to a sequential count over the lines
//! read; `/vehicles`, `/metrics` and the status page show the figures of that input. Meanwhile a
//! loop hammers the API, and the run's outputs equal those of a run without it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetflow::config::FolderConfig;
use fleetflow::config::{Config, SinkConfig, SourceKind};

mod common;
use common::{lines_of, metric};

const MIDNIGHT: u64 = 1_764_115_200_000; // 2025-11-26T00:00:00Z

fn get(addr: &str, path: &str) -> (u16, String) {
    common::http_get(addr, path).unwrap_or_else(|| panic!("GET {path}: the API did not answer"))
}

/// Per (day start, vin): speeding readings (above 65 mph) and top speed, over `lines`.
fn oracle(lines: &[String]) -> BTreeMap<(u64, String), (u64, f64)> {
    let mut out: BTreeMap<(u64, String), (u64, f64)> = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (ts, vin, speed): (u64, &str, f64) = (f[1].parse().unwrap(), f[2], f[5].parse().unwrap());
        if speed > 65.0 {
            let e = out.entry((ts - ts % 86_400_000, vin.to_string())).or_insert((0, f64::MIN));
            e.0 += 1;
            e.1 = e.1.max(speed);
        }
    }
    out
}

fn day_rows(oracle: &BTreeMap<(u64, String), (u64, f64)>, day: u64) -> Vec<serde_json::Value> {
    oracle
        .iter()
        .filter(|((d, _), _)| *d == day)
        .map(|((_, vin), (n, max))| serde_json::json!({"vin": vin, "speeding_readings": n, "max_speed": max}))
        .collect()
}

#[test]
fn speeders_by_date_live_and_closed_match_the_oracle_while_hammered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let lines = common::readings_across_midnight(&data);
    let (first, _) = lines.split_at(lines.len() * 4 / 5);
    let out = dir.path().join("out");
    let (reference, buggy) = (format!("{d}/vin_sensor.csv"), format!("{d}/buggy_sensors.csv"));
    let (mut job, addr, log) =
        common::run_with_http(&["--output", out.to_str().unwrap(), "--buffer-secs", "0", "--reference", &reference, "--buggy", &buggy]);
    // Before any window has closed, a vehicle's answer says why there is nothing yet.
    let some_vin = lines[0].split(' ').nth(2).unwrap();
    // (404, or 200 with its sensor once the reference file is loaded.)
    let (status, body) = get(&addr, &format!("/vehicles/{some_vin}"));
    assert!((status == 404 || status == 200) && body.contains("no window has closed yet"), "{status} {body}");

    // Hammer the API while the job reads.
    let hammering = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicU64::new(0));
    let hammer = {
        let (addr, on, answered) = (addr.clone(), hammering.clone(), answered.clone());
        std::thread::spawn(move || {
            let paths = ["/speeders?date=2025-11-26", "/metrics", "/", "/api/status", "/speeders?date=2025-11-25", "/healthz"];
            let mut i = 0;
            while on.load(Ordering::Relaxed) && i < 5_000 {
                let (status, _) = get(&addr, paths[i % paths.len()]);
                assert!(status == 200 || status == 404, "{} -> {status}", paths[i % paths.len()]);
                answered.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let mut stdin = job.stdin.take().unwrap();
    for l in first {
        writeln!(stdin, "{l}").unwrap();
    }
    stdin.flush().unwrap();

    let expected = oracle(first);
    let open_day = day_rows(&expected, MIDNIGHT);
    let closed_day = day_rows(&expected, MIDNIGHT - 86_400_000);
    assert!(!open_day.is_empty() && !closed_day.is_empty(), "the input speeds on both days");
    // Every line read, and the live state caught up with it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut open = serde_json::Value::Null;
    while Instant::now() < deadline {
        let (_, m) = get(&addr, "/metrics");
        if metric(&m, "fleetflow_readings_total") == Some(first.len() as u64) {
            let (status, body) = get(&addr, "/speeders?date=2025-11-26");
            assert_eq!(status, 200, "{body}");
            open = serde_json::from_str(&body).unwrap();
            // The previous day closes when the watermark has passed its end in every operator,
            // which may be a few steps after the last reading is counted.
            let (_, closed) = get(&addr, "/speeders?date=2025-11-25");
            let closed_now = serde_json::from_str::<serde_json::Value>(&closed).is_ok_and(|v| v["source"] == "output");
            if open["speeders"].as_array().unwrap() == &open_day && closed_now {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(open["source"], "live");
    assert_eq!(open["complete"], false);
    assert_eq!(open["speeders"].as_array().unwrap(), &open_day, "the open day from live state equals the oracle");

    let (status, body) = get(&addr, "/speeders?date=2025-11-25");
    assert_eq!(status, 200, "{body}");
    let closed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((closed["source"].as_str(), closed["complete"].as_bool()), (Some("output"), Some(true)));
    assert_eq!(closed["speeders"].as_array().unwrap(), &closed_day, "the closed day equals the oracle");

    let (status, body) = get(&addr, "/speeders?date=2025-02-30");
    assert_eq!(status, 400);
    assert!(body.contains("YYYY-MM-DD"), "{body}");
    assert_eq!(get(&addr, "/speeders").0, 400);

    // A vehicle: its latest window and sensor (from the reference file).
    let vin = expected.keys().next().unwrap().1.clone();
    let (status, body) = get(&addr, &format!("/vehicles/{vin}"));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sensor_row =
        std::fs::read_to_string(data.join("vin_sensor.csv")).unwrap().lines().find(|l| l.starts_with(&vin)).unwrap().to_string();
    assert_eq!(v["sensor_id"].as_str().unwrap(), sensor_row.split(',').nth(1).unwrap());
    assert!(v["latest_window"]["readings"].as_u64().unwrap() > 0, "{v}");
    assert!(v["latest_window"]["window_end"].as_str().unwrap().starts_with("2025-11-26T00:"), "{v}");
    assert_eq!(get(&addr, "/vehicles/not-a-vin").0, 400);

    let (_, m) = get(&addr, "/metrics");
    assert_eq!(metric(&m, "fleetflow_readings_total"), Some(first.len() as u64));
    assert_eq!(metric(&m, "fleetflow_late_total"), Some(0));
    assert!(metric(&m, "fleetflow_records_out_total{stream=\"speed_windows\"}").unwrap() > 0, "{m}");
    assert!(m.contains("fleetflow_window_latency_seconds_bucket"), "{m}");
    let (status, page) = get(&addr, "/");
    assert!(status == 200 && page.contains("api/status"), "the status page draws /api/status: {page}");
    let (_, body) = get(&addr, "/api/status");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["readings"].as_u64(), Some(first.len() as u64), "the status shows the readings: {s}");
    assert_eq!(s["day"], "2025-11-26");
    let top =
        open_day.iter().max_by_key(|r| (r["speeding_readings"].as_u64(), std::cmp::Reverse(r["vin"].as_str().map(String::from)))).unwrap();
    assert_eq!(s["top_speeders"][0]["vin"], top["vin"], "the day's top speeder leads the status's table");
    assert_eq!(get(&addr, "/readyz"), (200, "ready\n".to_string()));

    // The rest of the input, then the end.
    let (_, rest) = lines.split_at(lines.len() * 4 / 5);
    for l in rest {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    hammering.store(false, Ordering::Relaxed);
    hammer.join().unwrap();
    assert!(job.wait().unwrap().success(), "{}", log.join().unwrap());
    assert!(answered.load(Ordering::Relaxed) > 20, "the API was hammered during the run");

    // The same input without the API: the same outputs.
    let quiet = dir.path().join("quiet");
    let mut c = Config::default();
    c.source.kind = SourceKind::Files;
    c.source.files = vec![data.join("readings-000.txt").display().to_string()];
    c.reference.vin_sensors = Some(data.join("vin_sensor.csv"));
    c.reference.buggy_sensors = Some(data.join("buggy_sensors.csv"));
    c.http.bind = String::new();
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig {
            path: quiet.clone(),
            buffer_mib: 1.0,
            buffer_secs: 0.0,
            sealed: false,
            ..FolderConfig::default()
        }),
    );
    fleetflow::job::run(c.validated().unwrap(), Arc::new(AtomicBool::new(false))).unwrap();
    for stream in ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices"] {
        assert_eq!(lines_of(&out, stream), lines_of(&quiet, stream), "{stream} unchanged by the queries");
    }
    assert!(!Path::new(&out).join("late").exists());
}
