//! A change to the reference data corrects the `buggy_devices` rows of the windows it affects, for
//! as long as they are within the correction horizon, and not after.

use std::sync::mpsc::Receiver;

use differential_dataflow::input::InputSession;
use fleetflow_dataflows::analyses::buggy_devices::rows_of;
use fleetflow_dataflows::analyses::buggy_devices::{BuggyDevice, Revision};
use fleetflow_dataflows::analysis::Core;
use fleetflow_dataflows::changelog::Change;
use fleetflow_dataflows::reference::SensorRow;
use fleetflow_dataflows::{Params, Reading, Time, Vin};
use timely::dataflow::operators::capture::{Capture, Event};
use timely::dataflow::InputHandleVec;

fn vin(s: &str) -> Vin {
    Vin::parse(s.as_bytes()).unwrap()
}

fn reading(v: Vin, ts: Time) -> Reading {
    Reading { record_id: ts, timestamp: ts, vin: v, lon: 0.0, lat: 0.0, speed: 30.0 }
}

type Step = Box<dyn Fn(&mut InputSession<Time, (Vin, SensorRow), isize>, &mut InputSession<Time, String, isize>) + Send + Sync>;

/// Runs the job's core and the buggy_devices analysis over `readings` (time-ordered) with reference edits applied at given times.
fn run(readings: Vec<Reading>, edits: Vec<(Time, Step)>, horizon: Time) -> Vec<(Revision, Change<BuggyDevice>)> {
    let receiver: Receiver<Event<Time, Vec<Change<BuggyDevice>>>> = timely::execute_directly(move |worker| {
        let mut input: InputHandleVec<Time, Reading> = InputHandleVec::new();
        let mut rows = InputSession::new();
        let mut buggy = InputSession::new();
        let params = Params { correction_horizon_ms: horizon, ..Params::default() };
        let captured = worker.dataflow(|scope| {
            // The job's core (windows with the readings' offsets, timelines) and the analysis's rows.
            let (readings, rows, buggy) = (input.to_stream(scope), rows.to_collection(scope), buggy.to_collection(scope));
            let mut core = Core::new(readings, rows, buggy, &params, true, std::rc::Rc::new(|| 0));
            rows_of(&mut core).capture()
        });
        let a = vin("1HGCM82633A000001");
        rows.insert((a, SensorRow { effective_from: 0, sensor: "S1".into() }));
        let mut edits = edits.into_iter().peekable();
        for r in &readings {
            while let Some((t, _)) = edits.peek() {
                if *t > r.timestamp {
                    break;
                }
                let (t, edit) = edits.next().unwrap();
                for i in [&mut rows as &mut dyn Advance, &mut buggy, &mut input] {
                    i.advance(t);
                }
                edit(&mut rows, &mut buggy);
            }
            let bucket = r.timestamp - r.timestamp % 60_000;
            if *input.time() < bucket {
                for i in [&mut rows as &mut dyn Advance, &mut buggy, &mut input] {
                    i.advance(bucket);
                }
            }
            input.send(*r);
        }
        for (t, edit) in edits {
            for i in [&mut rows as &mut dyn Advance, &mut buggy, &mut input] {
                i.advance(t);
            }
            edit(&mut rows, &mut buggy);
        }
        captured
    });
    let mut out: Vec<(Revision, Change<BuggyDevice>)> = receiver
        .try_iter()
        .flat_map(|e| match e {
            Event::Messages(_, v) => v,
            _ => vec![],
        })
        .map(|c| (c.revision(), c))
        .collect();
    out.sort_by_key(|(_, c)| (c.time, c.data.start));
    out
}

trait Advance {
    fn advance(&mut self, t: Time);
}
impl<D: differential_dataflow::Data> Advance for InputSession<Time, D, isize> {
    fn advance(&mut self, t: Time) {
        self.advance_to(t);
    }
}
impl Advance for InputHandleVec<Time, Reading> {
    fn advance(&mut self, t: Time) {
        self.advance_to(t);
    }
}

fn readings() -> Vec<Reading> {
    let a = vin("1HGCM82633A000001");
    // Window [0, 60 s): two readings; [60 s, 120 s): one; then a reading at 330 s moves time on.
    vec![reading(a, 10_000), reading(a, 20_000), reading(a, 70_000), reading(a, 330_000)]
}

#[test]
fn buggy_before_a_window_closes_gives_its_initial_row() {
    let edits: Vec<(Time, Step)> = vec![(0, Box::new(|_, b| b.insert("S1".into())))];
    let out = run(readings(), edits, 120_000);
    let initial: Vec<(Time, u64)> =
        out.iter().filter(|(r, _)| *r == Revision::Initial).map(|(_, c)| (c.data.start, c.data.readings)).collect();
    assert_eq!(initial, vec![(0, 2), (60_000, 1), (300_000, 1)]);
    assert!(out.iter().all(|(r, _)| *r == Revision::Initial), "{out:?}");
}

#[test]
fn a_buggy_list_edit_corrects_closed_windows_within_the_horizon_only() {
    // At 150 s both early windows are closed (ends 60 s and 120 s) and within a 120 s horizon of
    // their ends (180 s and 240 s). At 200 s, only the second still is.
    let edits: Vec<(Time, Step)> =
        vec![(150_000, Box::new(|_, b| b.insert("S1".into()))), (200_000, Box::new(|_, b| b.remove("S1".into())))];
    let out = run(readings(), edits, 120_000);
    let got: Vec<(Revision, Time, Time, u64)> = out.iter().map(|(r, c)| (*r, c.time, c.data.start, c.data.readings)).collect();
    assert_eq!(
        got,
        vec![(Revision::Insert, 150_000, 0, 2), (Revision::Insert, 150_000, 60_000, 1), (Revision::Retract, 200_000, 60_000, 1),]
    );
}

#[test]
fn a_new_sensor_row_moves_readings_to_the_new_sensor() {
    // From 15 s on vehicle A carries S2 (buggy): the first window splits 1 (S1) / 1 (S2).
    let edits: Vec<(Time, Step)> = vec![
        (0, Box::new(|_, b| b.insert("S2".into()))),
        (130_000, Box::new(|r, _| r.insert((vin("1HGCM82633A000001"), SensorRow { effective_from: 15_000, sensor: "S2".into() })))),
    ];
    let out = run(readings(), edits, 600_000);
    let got: Vec<(Revision, &str, Time, u64)> =
        out.iter().map(|(r, c)| (*r, c.data.sensor.as_str(), c.data.start, c.data.readings)).collect();
    assert_eq!(got, vec![(Revision::Insert, "S2", 0, 1), (Revision::Insert, "S2", 60_000, 1), (Revision::Initial, "S2", 300_000, 1)]);
}
