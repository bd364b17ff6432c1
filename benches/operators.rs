//! Operator micro-benchmarks (criterion): the parser, the window operators, and the whole job's
//! dataflow (what `fleetflow run` builds: the core and the default analyses, their outputs encoded
//! as the sinks get them) on one worker, over the same 200,000 generated readings (2,000 vehicles), and
//! the reference point: a plain single-threaded Rust loop computing the same tumbling aggregates.
//! After the criterion groups it prints each dataflow's time relative to that loop.
//!
//! Run: `cargo bench --bench operators` (criterion's filters work: `cargo bench --bench operators -- parse`).

mod common;

use std::collections::HashMap;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use differential_dataflow::input::InputSession;
use differential_dataflow::VecCollection;
use fleetflow::encode::reading_line;
use fleetflow::parse::{parse_line, Parsed};
use fleetflow::sources::generator::{FleetConfig, FleetPartition};
use fleetflow_dataflows::analyses::REGISTRY;
use fleetflow_dataflows::analysis::{Analysis, Settings};
use fleetflow_dataflows::reference::SensorRow;
use fleetflow_dataflows::stats::{SpeedSample, SpeedStats};
use fleetflow_dataflows::time::align;
use fleetflow_dataflows::windows::{Sliding, Tumbling, WindowAggregate};
use fleetflow_dataflows::{Reading, Time, Vin};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle, StreamVec};

const VEHICLES: u64 = 2_000;
const SECONDS: u64 = 100;

fn readings() -> Vec<Reading> {
    // Smaller under `cargo test --benches`, which runs each benchmark once in a debug build.
    let seconds = if std::env::args().any(|a| a == "--bench") { SECONDS } else { 5 };
    let cfg = FleetConfig { vehicles: VEHICLES, duration_ms: Some(seconds * 1000), ..FleetConfig::default() };
    let mut p = FleetPartition::new(cfg, 0, 1);
    std::iter::from_fn(|| p.next_reading().ok()).collect()
}

/// Every vehicle carries one sensor; every tenth sensor is buggy.
fn reference(readings: &[Reading]) -> (Vec<(Vin, SensorRow)>, Vec<String>) {
    let vins: std::collections::BTreeSet<Vin> = readings.iter().map(|r| r.vin).collect();
    let rows: Vec<(Vin, SensorRow)> =
        vins.iter().enumerate().map(|(i, v)| (*v, SensorRow { effective_from: 0, sensor: format!("S{i}") })).collect();
    let buggy = (0..rows.len()).step_by(10).map(|i| format!("S{i}")).collect();
    (rows, buggy)
}

type Build = Box<
    dyn for<'s> FnOnce(
            StreamVec<'s, Time, Reading>,
            VecCollection<'s, Time, (Vin, SensorRow)>,
            VecCollection<'s, Time, String>,
            &ProbeHandle<Time>,
        ) + Send
        + Sync,
>;

/// Feeds the readings through the dataflow `build` makes (one worker), one timely time per minute,
/// with the reference loaded first, until every output is complete.
fn drive(readings: &[Reading], reference: &(Vec<(Vin, SensorRow)>, Vec<String>), build: Build) {
    let readings = readings.to_vec();
    let (rows_data, buggy_data) = reference.clone();
    let build = std::sync::Mutex::new(Some(build));
    timely::execute_directly(move |worker| {
        let mut input: InputHandleVec<Time, Reading> = InputHandleVec::new();
        let mut rows: InputSession<Time, (Vin, SensorRow), isize> = InputSession::new();
        let mut buggy: InputSession<Time, String, isize> = InputSession::new();
        let probe = ProbeHandle::new();
        worker.dataflow(|scope| {
            if let Some(b) = build.lock().ok().and_then(|mut b| b.take()) {
                b(input.to_stream(scope), rows.to_collection(scope), buggy.to_collection(scope), &probe);
            }
        });
        for r in rows_data.iter() {
            rows.insert(r.clone());
        }
        for b in buggy_data.iter() {
            buggy.insert(b.clone());
        }
        for r in &readings {
            let bucket = align(r.timestamp, 60_000);
            if bucket > *input.time() {
                input.advance_to(bucket);
                rows.advance_to(bucket);
                buggy.advance_to(bucket);
                rows.flush();
                buggy.flush();
                worker.step();
            }
            input.send(*r);
        }
        drop((input, rows, buggy));
        while !probe.done() {
            worker.step();
        }
    });
}

fn samples<'s>(s: StreamVec<'s, Time, Reading>) -> StreamVec<'s, Time, (Vin, Time, SpeedSample)> {
    s.map(|r| (r.vin, r.timestamp, SpeedSample::of(&r, 65.0)))
}

fn tumbling() -> Build {
    Box::new(|s, _, _, probe| {
        samples(s).tumbling::<SpeedStats>(60_000).probe_with(probe);
    })
}

fn sliding() -> Build {
    Box::new(|s, _, _, probe| {
        samples(s).tumbling::<SpeedStats>(60_000).sliding(300_000, 60_000).probe_with(probe);
    })
}

fn whole_job() -> Build {
    Box::new(|s, rows, buggy, probe| {
        // What the job builds: the core and the default analyses, each output encoded.
        let analyses: Vec<(&dyn Analysis, Settings)> =
            REGISTRY.iter().filter(|a| a.spec().on_by_default).map(|a| (*a, Settings::new())).collect();
        common::job_dataflow((s, rows, buggy), &analyses, true, probe);
    })
}

/// The reference point: tumbling aggregates per vehicle and minute in a plain loop.
fn baseline(readings: &[Reading]) -> usize {
    let mut windows: HashMap<(Vin, Time), SpeedStats> = HashMap::new();
    for r in readings {
        let sample = SpeedSample::of(r, 65.0);
        windows.entry((r.vin, align(r.timestamp, 60_000))).or_default().add((r.timestamp % 60_000) as u32, &sample);
    }
    windows.len()
}

fn time_of(runs: u32, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed().as_secs_f64() / runs as f64
}

fn main() {
    let data = readings();
    let refs = reference(&data);
    let text: Vec<String> = data.iter().map(reading_line).collect();
    let json: Vec<String> = data
        .iter()
        .map(|r| {
            format!(
                "{{\"record_id\":{},\"timestamp\":{},\"vin\":\"{}\",\"lon\":{},\"lat\":{},\"speed\":{}}}",
                r.record_id, r.timestamp, r.vin, r.lon, r.lat, r.speed
            )
        })
        .collect();
    let n = data.len() as u64;

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    {
        let mut g = c.benchmark_group("parse");
        g.throughput(Throughput::Elements(n));
        g.bench_function("text", |b| b.iter(|| text.iter().filter(|l| matches!(parse_line(l.as_bytes()), Parsed::Reading(_))).count()));
        g.bench_function("json", |b| b.iter(|| json.iter().filter(|l| matches!(parse_line(l.as_bytes()), Parsed::Reading(_))).count()));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("dataflow");
        g.throughput(Throughput::Elements(n));
        g.bench_function("baseline_loop", |b| b.iter(|| baseline(&data)));
        g.bench_function("tumbling", |b| b.iter(|| drive(&data, &refs, tumbling())));
        g.bench_function("sliding", |b| b.iter(|| drive(&data, &refs, sliding())));
        g.bench_function("job_dataflow_all_outputs_encoded", |b| b.iter(|| drive(&data, &refs, whole_job())));
        g.finish();
    }
    c.final_summary();

    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches`: criterion ran each benchmark once; no ratios in test mode
    }
    // The ratio to the plain loop, measured here in one place (5 runs each).
    let base = time_of(5, || {
        baseline(&data);
    });
    println!("\nrelative to a plain single-threaded loop of the same tumbling aggregates ({n} readings, {:.1} ms):", base * 1e3);
    for (name, build) in [("tumbling", tumbling as fn() -> Build), ("sliding", sliding), ("the job's dataflow", whole_job)] {
        let t = time_of(5, || drive(&data, &refs, build()));
        println!("  {name:<15} {:>8.1} ms  {:>5.2}x the loop  ({:.0} readings/s)", t * 1e3, t / base, n as f64 / t);
    }
}
