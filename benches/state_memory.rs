//! What a vehicle costs in memory, component by component: the job's dataflow (what `fleetflow run`
//! builds) with one analysis at a time, then all of them, with and without a vin-to-sensor file,
//! and the HTTP API's latest window per vehicle, each on one worker under a counting allocator.
//!
//! For each it reports bytes per vehicle still allocated (1) before the first window boundary
//! (open windows and panes), (2) after a dozen boundaries (what closed windows leave behind: daily
//! accumulators, alert episodes, the reference join's windows within the correction horizon), and
//! (3) the most a boundary allocated on top while its windows were made, encoded and handed off,
//! and the same for the end of the input, when every open window closes at once.
//!
//! Run: `cargo bench --bench state_memory` (100,000 vehicles reporting every 2 s for 12 minutes);
//! `FLEETFLOW_BENCH_VEHICLES=1000000` for the fleet, `FLEETFLOW_BENCH_MINUTES` to change the
//! length. Heap bytes are what the program asked for, not resident memory: the allocator's own
//! overhead and freed memory it keeps come on top (see docs/performance.md).

mod common;

use std::sync::atomic::Ordering;

use differential_dataflow::input::InputSession;
use fleetflow::counting_allocator::Counting;
use fleetflow::operations::live_state::LiveState;
use fleetflow::sources::generator::{FleetConfig, FleetPartition};
use fleetflow_dataflows::analyses::REGISTRY;
use fleetflow_dataflows::analysis::{Analysis, Settings};
use fleetflow_dataflows::reference::SensorRow;
use fleetflow_dataflows::stats::{SpeedStats, SpeedWindow};
use fleetflow_dataflows::windows::Window;
use fleetflow_dataflows::{Reading, Time, Vin};
use timely::dataflow::{InputHandleVec, ProbeHandle};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The fleet and how long it is driven.
#[derive(Clone, Copy)]
struct Fleet {
    vehicles: u64,
    interval_ms: Time,
    minutes: u64,
}

/// Bytes per vehicle at the three moments the module comment names.
#[derive(Default, Debug)]
struct Cost {
    open: f64,
    after: f64,
    boundary: f64,
    end: f64,
}

/// What one measured dataflow holds: the analyses (by name) and whether a reference file is given.
struct Setup {
    name: &'static str,
    analyses: Vec<&'static str>,
    reference: bool,
}

fn analyses_of(names: &[&'static str]) -> Vec<(&'static dyn Analysis, Settings)> {
    REGISTRY.iter().filter(|a| names.contains(&a.spec().name)).map(|a| (*a, Settings::new())).collect()
}

/// The dataflow's inputs and its probe.
struct Inputs {
    readings: InputHandleVec<Time, Reading>,
    rows: InputSession<Time, (Vin, SensorRow), isize>,
    buggy: InputSession<Time, String, isize>,
    probe: ProbeHandle<Time>,
}

impl Inputs {
    /// Builds the job's dataflow with `analyses` (a reference file given or not).
    fn build(worker: &mut timely::worker::Worker, analyses: &[(&'static dyn Analysis, Settings)], reference: bool) -> Self {
        let mut readings = InputHandleVec::new();
        let mut rows = InputSession::new();
        let mut buggy = InputSession::new();
        let probe = ProbeHandle::new();
        worker.dataflow(|scope| {
            let inputs = (readings.to_stream(scope), rows.to_collection(scope), buggy.to_collection(scope));
            common::job_dataflow(inputs, analyses, reference, &probe);
        });
        Inputs { readings, rows, buggy, probe }
    }

    /// Every vehicle carries a sensor, every tenth of them buggy.
    fn load_reference(&mut self, config: &FleetConfig) {
        for (i, v) in vins(config.clone()).into_iter().enumerate() {
            self.rows.insert((v, SensorRow { effective_from: 0, sensor: format!("S{i}") }));
            if i % 10 == 0 {
                self.buggy.insert(format!("S{i}"));
            }
        }
    }

    /// Advances every input to `to` and steps until the outputs have caught up.
    fn advance(&mut self, worker: &mut timely::worker::Worker, to: Time) {
        self.readings.advance_to(to);
        self.rows.advance_to(to);
        self.buggy.advance_to(to);
        self.rows.flush();
        self.buggy.flush();
        while self.probe.less_than(&to) {
            worker.step();
        }
    }

    /// Closes the inputs and steps until every output is complete.
    fn close(self, worker: &mut timely::worker::Worker) {
        let Inputs { readings, rows, buggy, probe } = self;
        drop((readings, rows, buggy));
        while !probe.done() {
            worker.step();
        }
    }
}

/// Drives the fleet through the dataflow `setup` describes on one worker and measures it.
fn measure(fleet: Fleet, setup: &Setup) -> Cost {
    let analyses = analyses_of(&setup.analyses);
    let reference = setup.reference;
    timely::execute_directly(move |worker| {
        // The generator's own state (each vehicle's route) is not the job's: made before counting.
        let config = FleetConfig {
            vehicles: fleet.vehicles,
            interval_ms: fleet.interval_ms,
            duration_ms: Some(fleet.minutes * 60_000),
            max_delay_ms: 0,
            late_fraction: 0.0,
            ..FleetConfig::default()
        };
        let mut source = FleetPartition::new(config.clone(), 0, 1);
        let start = config.start_ms;
        let before = Counting::live();
        let mut inputs = Inputs::build(worker, &analyses, reference);
        inputs.advance(worker, start);
        if reference {
            inputs.load_reference(&config);
        }
        let per_vehicle = |bytes: usize| bytes as f64 / fleet.vehicles as f64;
        let mut cost = Cost::default();
        let mut second = start;
        loop {
            let next = source.next_reading().ok();
            let at = next.map_or(second + 1000, |r| r.timestamp - r.timestamp % 1000);
            if at > second {
                second = at;
                let base = Counting::reset_peak();
                inputs.advance(worker, second);
                match (second - start) % 60_000 {
                    0 => cost.boundary = cost.boundary.max(per_vehicle(Counting::peak() - base)),
                    59_000 if second - start < 60_000 => cost.open = per_vehicle(Counting::live() - before),
                    59_000 => cost.after = per_vehicle(Counting::live() - before),
                    _ => {}
                }
            }
            match next {
                Some(r) => inputs.readings.send(r),
                None => break,
            }
        }
        let base = Counting::reset_peak();
        inputs.close(worker);
        cost.end = per_vehicle(Counting::peak() - base);
        cost
    })
}

/// The fleet's vins, in the generator's order.
fn vins(config: FleetConfig) -> Vec<Vin> {
    let mut p = FleetPartition::new(FleetConfig { duration_ms: Some(config.interval_ms), ..config }, 0, 1);
    let mut vins: Vec<Vin> = std::iter::from_fn(|| p.next_reading().ok()).map(|r| r.vin).collect();
    vins.sort();
    vins.dedup();
    vins
}

/// Bytes per vehicle of the HTTP API's latest windows (each vehicle's newest closed window).
fn latest_windows(fleet: Fleet) -> f64 {
    let state = LiveState::new(Vec::new());
    state.serving.store(true, Ordering::Relaxed);
    let vins = vins(FleetConfig { vehicles: fleet.vehicles, interval_ms: fleet.interval_ms, ..FleetConfig::default() });
    let windows: Vec<SpeedWindow> =
        vins.iter().map(|v| Window { key: *v, start: 0, end: 60_000, agg: SpeedStats { readings: 30, ..SpeedStats::default() } }).collect();
    let before = Counting::live();
    for chunk in windows.chunks(4096) {
        state.note_windows(chunk);
    }
    (Counting::live() - before) as f64 / fleet.vehicles as f64
}

fn setups() -> Vec<Setup> {
    let defaults: Vec<&'static str> = REGISTRY.iter().filter(|a| a.spec().on_by_default).map(|a| a.spec().name).collect();
    let mut setups: Vec<Setup> = defaults.iter().map(|n| Setup { name: n, analyses: vec![n], reference: *n == "buggy_devices" }).collect();
    setups.push(Setup { name: "all defaults, no reference file", analyses: defaults.clone(), reference: false });
    setups.push(Setup { name: "all defaults, reference file", analyses: defaults, reference: true });
    setups
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // Small under `cargo test --benches`, which runs this once in a debug build.
    let fleet = Fleet {
        vehicles: common::env_or("FLEETFLOW_BENCH_VEHICLES", if bench { 100_000 } else { 2_000 }),
        interval_ms: 2_000,
        minutes: common::env_or("FLEETFLOW_BENCH_MINUTES", if bench { 12 } else { 3 }),
    };
    println!(
        "bytes per vehicle, {} vehicles reporting every {} ms for {} minutes, 60 s windows, one worker:",
        fleet.vehicles, fleet.interval_ms, fleet.minutes
    );
    println!(
        "{:<34} {:>16} {:>16} {:>18} {:>18}",
        "dataflow", "before boundary", "after boundaries", "boundary burst", "end-of-input burst"
    );
    for setup in setups() {
        let cost = measure(fleet, &setup);
        println!("{:<34} {:>16.0} {:>16.0} {:>18.0} {:>18.0}", setup.name, cost.open, cost.after, cost.boundary, cost.end);
        assert!(cost.open > 0.0 && cost.boundary > 0.0, "{}: a dataflow with open windows holds memory ({cost:?})", setup.name);
    }
    let latest = latest_windows(fleet);
    println!("{:<34} {:>16.0}", "latest window per vehicle (HTTP)", latest);
    assert!(latest > 0.0, "the latest windows hold memory");
}
