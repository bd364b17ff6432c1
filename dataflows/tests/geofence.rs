//! `geofence` against a sequential oracle: vehicles wandering across zones that are edited while
//! the job runs, readings out of order within the lateness, at 1 and 2 workers.

use std::collections::{BTreeMap, BTreeSet};

use fleetflow_dataflows::analyses::geofence::{crossings, parse_zone, zones_at, Geofence, Zone};
use fleetflow_dataflows::analysis::{Setting, Settings};
use fleetflow_dataflows::harness::{run, Setup};
use fleetflow_dataflows::output::encode;
use fleetflow_dataflows::{Reading, Time, Vin};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const START: Time = 1_764_064_800_000;
const EDIT: Time = START + 90_000;
const FORGET_MS: Time = 20_000;

fn versions() -> Vec<(&'static str, Time, Vec<String>)> {
    let first = vec!["depot 0 0 1 0 1 1 0 1".to_string(), "park 1 1 2 1 2 2 1 2".to_string()];
    // The depot grows; the park goes; a triangle appears.
    let second = vec!["depot 0 0 1.5 0 1.5 1 0 1".to_string(), "tri 0 1 2 1 1 2".to_string()];
    vec![("zones", 0, first), ("zones", EDIT, second)]
}

fn drives(seed: u64, disorder: Time) -> Vec<Reading> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut readings = Vec::new();
    for v in 0..15u64 {
        let vin = Vin::parse(format!("1HGCM82633A{v:06}").as_bytes()).unwrap();
        let (mut lon, mut lat): (f64, f64) = (rng.random_range(0.0..2.0), rng.random_range(0.0..2.0));
        let mut ts = START;
        for i in 0..300u64 {
            // A pause now and then longer than `forget_after_secs`.
            ts += if rng.random_bool(0.01) { 25_000 } else { rng.random_range(0..1_000) };
            lon = (lon + rng.random_range(-0.1..0.1)).clamp(-0.5, 2.5);
            lat = (lat + rng.random_range(-0.1..0.1)).clamp(-0.5, 2.5);
            readings.push(Reading { record_id: v * 10_000 + i, timestamp: ts, vin, lon, lat, speed: 30.0 });
        }
    }
    let mut arrivals: Vec<(Time, Reading)> = readings.into_iter().map(|r| (r.timestamp + rng.random_range(0..=disorder), r)).collect();
    arrivals.sort_by_key(|(at, r)| (*at, r.record_id));
    arrivals.into_iter().map(|(_, r)| r).collect()
}

fn oracle(accepted: &[Reading]) -> Vec<String> {
    let zones_of = |lines: &Vec<String>| lines.iter().map(|l| parse_zone(l).unwrap()).collect::<Vec<Zone>>();
    let versions: Vec<(Time, Vec<Zone>)> = versions().iter().map(|(_, t, l)| (*t, zones_of(l))).collect();
    let mut sorted = accepted.to_vec();
    sorted.sort_by_key(|r| (r.timestamp, r.vin, (r.record_id, r.lon.to_bits(), r.lat.to_bits())));
    let mut state: BTreeMap<Vin, (BTreeSet<String>, Time)> = BTreeMap::new();
    let mut lines = Vec::new();
    for r in &sorted {
        let zones = &versions.iter().rev().find(|(t, _)| *t <= r.timestamp).unwrap().1;
        let (inside, last) = state.entry(r.vin).or_insert((BTreeSet::new(), r.timestamp));
        if *last + FORGET_MS <= r.timestamp {
            inside.clear();
        }
        *last = r.timestamp;
        let now = zones_at(zones, r.lon, r.lat);
        for c in crossings(r.vin, inside, &now, r.timestamp, r.lon, r.lat) {
            lines.push(String::from_utf8(encode(&c).line).unwrap().trim_end().to_string());
        }
        *inside = now;
    }
    lines.sort();
    lines
}

#[test]
fn matches_the_sequential_oracle_across_a_zones_edit() {
    let settings: Settings = [
        ("forget_after_secs".to_string(), Setting::Number(FORGET_MS as f64 / 1000.0)),
        ("zones".to_string(), Setting::Text("reference/zones.txt".into())),
    ]
    .into_iter()
    .collect();
    for (seed, disorder) in [(1, 0), (2, 3_000)] {
        let arrivals = drives(seed, disorder);
        let expected = oracle(&arrivals);
        assert!(expected.iter().any(|l| l.contains("\"tri\"")) && expected.iter().any(|l| l.contains("\"park\"")), "both versions matter");
        assert!(expected.len() > 100, "{}", expected.len());
        for workers in [1, 2] {
            let setup = Setup { workers, tables: versions(), ..Setup::default() };
            let out = run(&Geofence, settings.clone(), arrivals.clone(), &setup).unwrap();
            assert!(out.late.is_empty());
            assert_eq!(out.streams["geofence"], expected, "seed {seed}, {workers} workers");
        }
    }
}

#[test]
fn without_a_zones_file_the_setting_is_named() {
    let err = run(&Geofence, Settings::new(), drives(3, 0), &Setup::default()).unwrap_err();
    assert!(err.to_string().starts_with("analyses.geofence.zones: empty; give the path of the zones file"), "{err}");
}
