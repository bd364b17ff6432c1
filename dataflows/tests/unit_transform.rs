//! `unit_transform` against a sequential oracle: every accepted reading once, speed converted,
//! the processing-time stamp from the job's clock; late readings are not converted.

use fleetflow_dataflows::analyses::unit_transform::{UnitTransform, KM_PER_MILE};
use fleetflow_dataflows::analysis::{Setting, Settings};
use fleetflow_dataflows::harness::{run, Setup};
use fleetflow_dataflows::output::rfc3339;
use fleetflow_dataflows::{Reading, Vin};

fn readings() -> Vec<Reading> {
    let vin = |i: u64| Vin::parse(format!("1HGCM82633A{i:06}").as_bytes()).unwrap();
    let t0 = 1_764_064_800_000;
    // Out of order; the last one is 20 s behind the highest time seen: late with 5 s lateness.
    [(1, t0 + 3_000, 0, 60.0), (2, t0 + 1_000, 1, 0.0), (3, t0 + 2_000, 0, 31.25), (4, t0 + 30_000, 2, 100.0), (5, t0 + 10_000, 1, 12.5)]
        .into_iter()
        .map(|(id, ts, v, speed)| Reading { record_id: id, timestamp: ts, vin: vin(v), lon: -0.1, lat: 51.5, speed })
        .collect()
}

fn oracle(readings: &[Reading], factor: f64, unit: &str, clock: u64) -> Vec<String> {
    let mut lines: Vec<String> = readings
        .iter()
        .map(|r| {
            let num = |x: f64| serde_json::to_string(&x).unwrap();
            format!(
                "{{\"record_id\":{},\"timestamp\":\"{}\",\"vin\":\"{}\",\"lon\":{},\"lat\":{},\"speed\":{},\"unit\":\"{unit}\",\"processed_at\":\"{}\"}}",
                r.record_id,
                rfc3339(r.timestamp),
                r.vin,
                num(r.lon),
                num(r.lat),
                num(r.speed * factor),
                rfc3339(clock)
            )
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn every_accepted_reading_converted_once_at_the_clock() {
    let setup = Setup { workers: 2, ..Setup::default() };
    let out = run(&UnitTransform, Settings::new(), readings(), &setup).unwrap();
    assert_eq!(out.late.iter().map(|r| r.record_id).collect::<Vec<_>>(), vec![5]);
    let accepted: Vec<Reading> = readings().into_iter().filter(|r| r.record_id != 5).collect();
    assert_eq!(out.streams["readings_converted"], oracle(&accepted, KM_PER_MILE, "km/h", setup.clock));

    let ms: Settings = [("unit".to_string(), Setting::Text("m/s".into()))].into_iter().collect();
    let out = run(&UnitTransform, ms, readings(), &setup).unwrap();
    assert_eq!(out.streams["readings_converted"], oracle(&accepted, KM_PER_MILE / 3.6, "m/s", setup.clock));
}

#[test]
fn an_unknown_unit_names_the_setting_and_the_choices() {
    let bad: Settings = [("unit".to_string(), Setting::Text("knots".into()))].into_iter().collect();
    let err = run(&UnitTransform, bad, readings(), &Setup::default()).unwrap_err();
    assert_eq!(err.to_string(), "analyses.unit_transform.unit: \"knots\" is not a unit; use \"km/h\" or \"m/s\"");
}
