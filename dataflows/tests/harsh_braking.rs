//! `harsh_braking` against a sequential oracle: random drives with hard stops, delivered out of
//! order within the allowed lateness (and some readings later than it), at 1 and 2 workers.

use fleetflow_dataflows::analyses::harsh_braking::{Braking, BrakingRule, HarshBraking};
use fleetflow_dataflows::analysis::{AnalysisError, Setting, Settings};
use fleetflow_dataflows::harness::{run, Setup};
use fleetflow_dataflows::output::encode;
use fleetflow_dataflows::{Reading, Time, Vin};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const START: Time = 1_764_064_800_000;

/// `vehicles` drives of `n` readings each (every 500 ms, some at the same millisecond), speeds
/// wandering with occasional hard stops; then shuffled by a random delay of up to `disorder` ms.
fn drives(seed: u64, vehicles: u64, n: u64, disorder: Time) -> Vec<Reading> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut readings = Vec::new();
    for v in 0..vehicles {
        let vin = Vin::parse(format!("1HGCM82633A{v:06}").as_bytes()).unwrap();
        let mut speed: f64 = rng.random_range(20.0..80.0);
        for i in 0..n {
            let step: f64 = if rng.random_bool(0.05) { -rng.random_range(10.0..40.0) } else { rng.random_range(-4.0..5.0) };
            speed = (speed + step).clamp(0.0, 120.0);
            let ts = START + i * 500 + if rng.random_bool(0.1) { 0 } else { rng.random_range(0..500) };
            readings.push(Reading {
                record_id: v * 100_000 + i,
                timestamp: ts,
                vin,
                lon: 0.0,
                lat: 0.0,
                speed: (speed * 10.0).round() / 10.0,
            });
        }
    }
    let mut arrivals: Vec<(Time, Reading)> = readings.into_iter().map(|r| (r.timestamp + rng.random_range(0..=disorder), r)).collect();
    arrivals.sort_by_key(|(at, r)| (*at, r.record_id));
    arrivals.into_iter().map(|(_, r)| r).collect()
}

/// The rule applied to each vehicle's accepted readings in event-time order.
fn oracle(accepted: &[Reading], drop: f64, within: Time) -> Vec<String> {
    let mut sorted = accepted.to_vec();
    sorted.sort_by_key(|r| (r.vin, r.timestamp, r.record_id, r.speed.to_bits()));
    let mut lines = Vec::new();
    let mut rule = BrakingRule::default();
    let mut current = None;
    for r in &sorted {
        if current != Some(r.vin) {
            rule = BrakingRule::default();
            current = Some(r.vin);
        }
        if let Some((from_time, from_speed)) = rule.next(r.timestamp, r.speed, drop, within) {
            let b = Braking { vin: r.vin, from_time, to_time: r.timestamp, from_speed, to_speed: r.speed };
            lines.push(String::from_utf8(encode(&b).line).unwrap().trim_end().to_string());
        }
    }
    lines.sort();
    lines
}

fn settings(drop: f64, within: f64) -> Settings {
    [("drop_mph".to_string(), Setting::Number(drop)), ("within_secs".to_string(), Setting::Number(within))].into_iter().collect()
}

#[test]
fn matches_the_sequential_oracle_out_of_order_and_on_any_worker_count() {
    for (seed, disorder, lateness) in [(1, 0, 5_000), (2, 4_000, 5_000), (3, 9_000, 5_000)] {
        let arrivals = drives(seed, 12, 400, disorder);
        for workers in [1, 2] {
            let setup = Setup { workers, lateness, ..Setup::default() };
            let out = run(&HarshBraking, settings(15.0, 2.0), arrivals.clone(), &setup).unwrap();
            let late: std::collections::BTreeSet<u64> = out.late.iter().map(|r| r.record_id).collect();
            if disorder <= lateness {
                assert!(late.is_empty(), "seed {seed}: disorder within the lateness makes nothing late");
            } else {
                assert!(!late.is_empty(), "seed {seed}: disorder beyond the lateness makes some readings late");
            }
            let accepted: Vec<Reading> = arrivals.iter().filter(|r| !late.contains(&r.record_id)).copied().collect();
            let expected = oracle(&accepted, 15.0, 2_000);
            assert!(expected.len() > 20, "seed {seed}: the drives brake often enough to test ({})", expected.len());
            assert_eq!(out.streams["harsh_braking"], expected, "seed {seed}, disorder {disorder}, {workers} workers");
        }
    }
}

#[test]
fn the_settings_change_the_result_and_bad_ones_name_the_key() {
    let arrivals = drives(4, 5, 300, 1_000);
    let loose = run(&HarshBraking, settings(10.0, 3.0), arrivals.clone(), &Setup::default()).unwrap();
    let strict = run(&HarshBraking, settings(30.0, 1.0), arrivals.clone(), &Setup::default()).unwrap();
    assert!(loose.streams["harsh_braking"].len() > strict.streams["harsh_braking"].len());
    assert_eq!(strict.streams["harsh_braking"], oracle(&arrivals, 30.0, 1_000));
    // Defaults: 20 mph within 3 s.
    let default = run(&HarshBraking, Settings::new(), arrivals.clone(), &Setup::default()).unwrap();
    assert_eq!(default.streams["harsh_braking"], oracle(&arrivals, 20.0, 3_000));

    let err = run(&HarshBraking, settings(-5.0, 3.0), arrivals.clone(), &Setup::default()).unwrap_err();
    assert!(matches!(&err, AnalysisError::Setting { key, .. } if key == "drop_mph"), "{err}");
    assert!(err.to_string().starts_with("analyses.harsh_braking.drop_mph: -5 is not allowed"), "{err}");
    let text: Settings = [("within_secs".to_string(), Setting::Text("soon".into()))].into_iter().collect();
    let err = run(&HarshBraking, text, arrivals, &Setup::default()).unwrap_err();
    assert!(err.to_string().contains("analyses.harsh_braking.within_secs"), "{err}");
}
