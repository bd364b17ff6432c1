//! Alert episodes: one alert when a vehicle's sliding-window average first exceeds the threshold,
//! none while consecutive windows stay above it, a new one after a window below it or a gap,
//! whatever order the windows arrive in within a time.

use fleetflow_dataflows::analyses::alerts::AlertEpisodes;
use fleetflow_dataflows::analyses::SpeedWindow;
use fleetflow_dataflows::stats::SpeedStats;
use fleetflow_dataflows::windows::Window;
use fleetflow_dataflows::{Time, Vin};
use timely::dataflow::operators::capture::{Capture, Event};
use timely::dataflow::InputHandleVec;

const SIZE: Time = 300_000;
const SLIDE: Time = 60_000;

fn window(vin: Vin, start: Time, avg: f64) -> SpeedWindow {
    let micro = (avg * 1e6) as u64;
    Window { key: vin, start, end: start + SIZE, agg: SpeedStats { readings: 1, sum_micro: micro, min: avg, max: avg, speeding: 0 } }
}

fn alerts(windows: Vec<SpeedWindow>) -> Vec<(Vin, Time)> {
    let rx = timely::execute_directly(move |worker| {
        let mut input: InputHandleVec<Time, SpeedWindow> = InputHandleVec::new();
        let captured = worker.dataflow(|scope| input.to_stream(scope).alerts(80.0, SIZE, SLIDE).capture());
        let mut windows = windows;
        windows.sort_by_key(|w| w.end);
        for w in windows {
            if *input.time() < w.end - 1 {
                input.advance_to(w.end - 1);
            }
            input.send(w);
        }
        captured
    });
    let mut out: Vec<(Vin, Time)> = rx
        .try_iter()
        .flat_map(|e| match e {
            Event::Messages(_, v) => v,
            _ => vec![],
        })
        .map(|w| (w.key, w.start))
        .collect();
    out.sort();
    out
}

#[test]
fn one_alert_per_episode() {
    let a = Vin::parse(b"1HGCM82633A000001").unwrap();
    let b = Vin::parse(b"1HGCM82633A000002").unwrap();
    let m = |k: Time| k * SLIDE;
    let input = vec![
        window(a, m(0), 85.0),  // alert: first above
        window(a, m(1), 90.0),  // same episode
        window(a, m(2), 80.0),  // not strictly above: ends the episode
        window(a, m(3), 81.0),  // alert
        window(a, m(5), 81.0),  // alert: the window at m(4) is missing
        window(b, m(1), 79.0),  // below
        window(b, m(2), 80.5),  // alert
        window(b, m(3), 100.0), // same episode
    ];
    assert_eq!(alerts(input), vec![(a, m(0)), (a, m(3)), (a, m(5)), (b, m(2))]);
}
