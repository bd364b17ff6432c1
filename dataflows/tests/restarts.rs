//! Checkpoints: every analysis stopped mid-stream and restored from its latest checkpoint, at
//! another worker count, reading every arrival again, gives exactly the outputs of a run that was
//! never stopped (the first run's outputs before the checkpoint with the second's after it).

use fleetflow_dataflows::analyses::{alerts::Alerts, buggy_devices::BuggyDevices, daily_speeders::DailySpeeders, geofence::Geofence};
use fleetflow_dataflows::analyses::{harsh_braking::HarshBraking, speed_windows::SpeedWindows, speeders::Speeders};
use fleetflow_dataflows::analysis::{Analysis, Setting, Settings};
use fleetflow_dataflows::harness::{run, run_restarted, Restart, Setup};
use fleetflow_dataflows::reference::SensorRow;
use fleetflow_dataflows::{Reading, Time, Vin};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// 2025-11-25T23:20:00Z: the drives cross midnight (daily speeders close a day).
const START: Time = 1_764_112_800_000;

/// 12 vehicles for an hour, a reading every ~5 s: cruising, speeding stretches (speeders, alert
/// episodes), hard stops (harsh braking), wandering across zones; arriving up to 7 s late with a
/// lateness of 5 s, so some readings are late.
fn drives(seed: u64) -> Vec<Reading> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut readings = Vec::new();
    for v in 0..12u64 {
        let vin = Vin::parse(format!("1HGCM82633A{v:06}").as_bytes()).unwrap();
        let (mut speed, mut lon, mut lat): (f64, f64, f64) = (50.0, rng.random_range(0.0..2.0), rng.random_range(0.0..2.0));
        for i in 0..720u64 {
            let fast = (i / 60 + v) % 4 == 0;
            let target = if fast { 90.0 } else { 45.0 };
            speed =
                if rng.random_bool(0.02) { (speed - 35.0).max(0.0) } else { speed + (target - speed) * 0.3 + rng.random_range(-3.0..3.0) };
            lon = (lon + rng.random_range(-0.05..0.05)).clamp(-0.5, 2.5);
            lat = (lat + rng.random_range(-0.05..0.05)).clamp(-0.5, 2.5);
            let ts = START + i * 5_000 + rng.random_range(0..5_000);
            readings.push(Reading { record_id: v * 10_000 + i, timestamp: ts, vin, lon, lat, speed: (speed * 10.0).round() / 10.0 });
        }
    }
    let mut arrivals: Vec<(Time, Reading)> = readings.into_iter().map(|r| (r.timestamp + rng.random_range(0..=7_000), r)).collect();
    arrivals.sort_by_key(|(at, r)| (*at, r.record_id));
    arrivals.into_iter().map(|(_, r)| r).collect()
}

fn zones() -> Vec<(&'static str, Time, Vec<String>)> {
    let first = vec!["depot 0 0 1 0 1 1 0 1".to_string(), "park 1 1 2 1 2 2 1 2".to_string()];
    let second = vec!["depot 0 0 1.5 0 1.5 1 0 1".to_string()];
    vec![("zones", 0, first), ("zones", START + 1_500_000, second)]
}

/// The vehicles' sensors: vehicle `v` carries `S{v % 4}`, vehicle 5 swaps to `S2` 40 minutes in;
/// `S1` is buggy, then `S2` too 40 minutes in, then `S2` only 50 minutes in: edits within the
/// 10-minute correction horizon of windows before most stops, so the restored run must hold them.
fn setup() -> Setup {
    let vin = |v: u64| Vin::parse(format!("1HGCM82633A{v:06}").as_bytes()).unwrap();
    let row = |from: Time, s: u64| SensorRow { effective_from: from, sensor: format!("S{s}") };
    let first: Vec<(Vin, SensorRow)> = (0..12).map(|v| (vin(v), row(0, v % 4))).collect();
    let mut second = first.clone();
    second.push((vin(5), row(START + 2_100_000, 2)));
    let sensors = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Setup {
        workers: 2,
        tables: zones(),
        vin_sensors: vec![(0, first), (START + 2_400_000, second)],
        buggy_sensors: vec![(0, sensors(&["S1"])), (START + 2_400_000, sensors(&["S1", "S2"])), (START + 3_000_000, sensors(&["S2"]))],
        ..Setup::default()
    }
}

fn analyses() -> Vec<(&'static dyn Analysis, Settings)> {
    let geofence: Settings =
        [("forget_after_secs".to_string(), Setting::Number(600.0)), ("zones".to_string(), Setting::Text("reference/zones.txt".into()))]
            .into_iter()
            .collect();
    vec![
        (&SpeedWindows, Settings::new()),
        (&Speeders, Settings::new()),
        (&DailySpeeders, Settings::new()),
        (&Alerts, Settings::new()),
        (&HarshBraking, Settings::new()),
        (&Geofence, geofence),
        (&BuggyDevices, Settings::new()),
    ]
}

#[test]
fn every_analysis_restored_at_another_worker_count_equals_an_uninterrupted_run() {
    let arrivals = drives(7);
    for (analysis, settings) in analyses() {
        let name = analysis.spec().name;
        let setup = setup();
        let whole = run(analysis, settings.clone(), arrivals.clone(), &setup).unwrap();
        let records: usize = whole.streams.values().map(Vec::len).sum();
        assert!(records > 0, "{name}: the drives give it something to say");
        assert!(!whole.late.is_empty(), "some readings are late");
        if name == "buggy_devices" {
            let lines = &whole.streams["buggy_devices"];
            let corrections = |kind: &str| lines.iter().filter(|l| l.contains(&format!("\"revision\":\"{kind}\""))).count();
            assert!(corrections("retract") > 0 && corrections("insert") > 0, "the edits correct past windows: {lines:?}");
        }
        for (stop, workers) in [(0.3, 1), (0.55, 3), (0.8, 2)] {
            let restart = Restart { every: 120_000, stop_after: (arrivals.len() as f64 * stop) as usize, workers, drop_state: false };
            let (restored, at) = run_restarted(analysis, settings.clone(), arrivals.clone(), &setup, &restart).unwrap();
            let at = at.unwrap_or_else(|| panic!("{name}: a checkpoint completed before the stop at {stop}"));
            assert!(at > START && at.is_multiple_of(120_000), "{name}: {at}");
            assert_eq!(restored.streams, whole.streams, "{name}: stopped at {stop} (checkpoint {at}), restored at {workers} workers");
            assert_eq!(restored.late.len(), whole.late.len(), "{name}: the same late readings");
        }
    }
}

#[test]
fn without_its_checkpointed_state_each_stateful_analysis_would_differ() {
    // The test above can fail: restoring the checkpoint's boundary but none of its state (the
    // readings before it still dropped) shows in every stateful analysis's outputs.
    let arrivals = drives(7);
    let setup = setup();
    // (Harsh braking keeps its state in `Ordered`, as geofence does; its drops rarely span a
    // boundary in these drives, so geofence shows what losing that state does.)
    for (analysis, settings) in analyses().into_iter().skip(2).filter(|(a, _)| a.spec().name != "harsh_braking") {
        let name = analysis.spec().name;
        let whole = run(analysis, settings.clone(), arrivals.clone(), &setup).unwrap();
        // (A loss shows only where state spans the boundary: try several stops.)
        let differs = (1..16).any(|i| {
            let restart = Restart { every: 120_000, stop_after: arrivals.len() * i / 16, workers: 2, drop_state: true };
            let (lost, at) = run_restarted(analysis, settings.clone(), arrivals.clone(), &setup, &restart).unwrap();
            at.is_some() && lost.streams != whole.streams
        });
        assert!(differs, "{name}: dropping the state shows in the outputs");
    }
}
