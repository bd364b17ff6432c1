//! Unbounded key growth: a fresh set of vehicles every minute (a million distinct keys over the
//! run) keeps the window operators' state proportional to the windows still open. Each closed
//! window's state is released, so the state after every step is bounded by the keys of the last
//! few minutes, not by every key ever seen.

use fleetflow_dataflows::stats::{SpeedSample, SpeedStats};
use fleetflow_dataflows::windows::{Sliding, Tumbling};
use fleetflow_dataflows::Time;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};

const MINUTE: Time = 60_000;
const PER_MINUTE: u64 = 50_000;
const MINUTES: u64 = 20;

#[test]
fn window_state_stays_proportional_to_open_windows_as_keys_grow() {
    timely::execute_directly(|worker| {
        let mut input: InputHandleVec<Time, (u64, Time, SpeedSample)> = InputHandleVec::new();
        let probe = ProbeHandle::new();
        let (tumbling_open, sliding_open) = worker.dataflow(|scope| {
            let (windows, tumbling_open) = input.to_stream(scope).tumbling_open::<SpeedStats>(MINUTE);
            let (slid, sliding_open) = windows.sliding_open(5 * MINUTE, MINUTE);
            slid.probe_with(&probe);
            (tumbling_open, sliding_open)
        });
        let sample = SpeedSample { speed: 50.0, micro: 50_000_000, speeding: false };
        let mut peak = (0usize, 0usize);
        for minute in 0..MINUTES {
            // Keys never seen before, each reporting twice in its minute.
            for k in 0..PER_MINUTE {
                let key = minute * PER_MINUTE + k;
                input.send((key, minute * MINUTE + 1_000, sample));
                input.send((key, minute * MINUTE + 31_000, sample));
            }
            input.advance_to((minute + 1) * MINUTE);
            worker.step_while(|| probe.less_than(input.time()));
            let (t, s) = (tumbling_open.len(), sliding_open.len());
            // Tumbling: the minute just closed is gone. Sliding: a key's windows stay open until
            // five minutes after its minute, so at most five minutes of keys (five windows each).
            assert_eq!(t, 0, "minute {minute}: every closed tumbling window released");
            assert!(s <= 5 * 5 * PER_MINUTE as usize, "minute {minute}: {s} sliding window entries");
            peak = (peak.0.max(t), peak.1.max(s));
        }
        let distinct = (MINUTES * PER_MINUTE) as usize;
        assert!(peak.1 < distinct, "state ({} entries at most) did not grow with the {distinct} keys seen", peak.1);
        input.close();
        worker.step_while(|| !probe.done());
        assert!(tumbling_open.is_empty() && sliding_open.is_empty(), "all state released at the end");
    });
}
