//! `Held`: the closed windows a join keeps for a correction horizon, checkpointed as increments.
//!
//! The reference join keeps every tumbling window for `horizon` ms after it closes, with each
//! reading's offset, so that a reference edit can correct it. A snapshot of that state at every
//! boundary would weigh as much as the readings of the horizon. Instead this operator, placed
//! on the windows before the join, saves at each boundary only the windows that entered since
//! the latest checkpoint known complete (see [`crate::checkpoint`]); a restore takes every
//! increment the runtime kept, keeps the windows the join still held at the boundary, one of
//! each, and hands them to the join again at the times they first entered it (below the restored
//! boundary: outputs there were delivered by the run that saved them, and the runtime writes
//! none of them again).

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::{Window, WorkerKey};
use crate::checkpoint::OperatorState;
use crate::time::{align, Time};

/// Extension trait: the windows of a stream, checkpointed as a join holds them.
pub trait Held<'scope, K, A> {
    /// Passes the windows on; saves into `state` (registered with
    /// [`crate::checkpoint::Checkpoints::increments`]) the windows that entered since the latest
    /// complete checkpoint; and first gives back, at their entry times (`end - 1`), the restored
    /// windows still within `horizon` of the restored boundary, of the keys this worker owns.
    fn held(self, horizon: Time, state: OperatorState) -> StreamVec<'scope, Time, Window<K, A>>;
}

impl<'scope, K, A> Held<'scope, K, A> for StreamVec<'scope, Time, Window<K, A>>
where
    K: ExchangeData + Clone + WorkerKey + Ord,
    A: ExchangeData + Clone,
{
    fn held(self, horizon: Time, mut state: OperatorState) -> StreamVec<'scope, Time, Window<K, A>> {
        let mut restored = restore(&mut state, horizon);
        self.unary_frontier(Pipeline, "Held", move |cap, _info| {
            let mut initial = Some(cap);
            // The windows that entered since the latest checkpoint known complete.
            let mut entered: Vec<Window<K, A>> = Vec::new();
            move |(input, frontier), output| {
                if let Some(cap) = initial.take() {
                    // (Sorted by entry time: one session per time.)
                    for group in restored.chunk_by_mut(|a, b| a.end == b.end) {
                        let at = cap.delayed(&(group[0].end - 1));
                        output.session(&at).give_iterator(group.iter().cloned());
                    }
                    restored = Vec::new();
                }
                // (Without checkpoints nothing is saved, and nothing need be kept: a horizon of
                // windows would be held twice, here and in the join.)
                let saving = state.is_on();
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        if saving {
                            entered.extend(batch.iter().cloned());
                        }
                        session.give_container(batch);
                    }
                });
                // Kept: what an increment saved from now on must hold. Not what entered before
                // the latest complete checkpoint, nor what a restore at the next boundary or
                // later would not hold (so, while checkpoints do not complete, a horizon's worth).
                let reached = frontier.frontier().first().copied().unwrap_or(Time::MAX);
                let (since, next) = (state.known_complete(), align(reached, state.interval().max(1)));
                entered.retain(|w| w.end > since && (w.end - 1).saturating_add(horizon) > next);
                state.passing(reached, |boundary| entered.iter().filter(|w| w.end - 1 < boundary).collect::<Vec<_>>());
            }
        })
    }
}

/// The restored windows the join held at the restored boundary `at` (entered before it, not yet
/// released: `end - 1 + horizon > at`) of the keys this worker owns, one of each (increments
/// overlap), sorted by entry time.
fn restore<K, A>(state: &mut OperatorState, horizon: Time) -> Vec<Window<K, A>>
where
    K: ExchangeData + Clone + WorkerKey + Ord,
    A: ExchangeData + Clone,
{
    let Some(at) = state.restored_at() else { return Vec::new() };
    let mut held: Vec<Window<K, A>> = Vec::new();
    for part in state.restored::<Vec<Window<K, A>>>() {
        held.extend(part.into_iter().filter(|w| w.end - 1 < at && w.end - 1 + horizon > at && state.owns(w.key.worker_hash())));
    }
    held.sort_by(|a, b| (a.end, &a.key).cmp(&(b.end, &b.key)));
    held.dedup_by(|a, b| a.end == b.end && a.key == b.key);
    held
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use timely::dataflow::operators::Inspect;
    use timely::dataflow::InputHandleVec;

    use super::*;
    use crate::checkpoint::{Checkpoints, Restored};

    type W = Window<u64, u32>;

    /// The increments saved, by boundary.
    type Increments = BTreeMap<Time, Vec<W>>;

    fn w(key: u64, end: Time) -> W {
        Window { key, start: end - 10, end, agg: key as u32 }
    }

    /// Runs windows through `held` on one worker, sent at time 0 with the input then held at
    /// 205; returns what it passed on with their times and the increments saved by boundary.
    fn through(windows: Vec<W>, restored: Option<Restored>, complete: Time) -> (Vec<(Time, W)>, Increments) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let saved = Arc::new(Mutex::new(BTreeMap::new()));
        let (s, k) = (seen.clone(), saved.clone());
        timely::execute_directly(move |worker| {
            let ck = Checkpoints::every(100, restored.clone(), (0, 1));
            ck.completed_through(complete);
            let state = ck.increments("held");
            let s = s.clone();
            let mut input = InputHandleVec::<Time, W>::new();
            worker.dataflow::<Time, _, _>(|scope| {
                input.to_stream(scope).held(50, state).inspect_core(move |event| {
                    if let Ok((stamp, batch)) = event {
                        let t = stamp.least().copied().unwrap_or_default();
                        s.lock().unwrap().extend(batch.iter().map(|w| (t, w.clone())));
                    }
                });
            });
            windows.iter().for_each(|w| input.send(w.clone()));
            input.advance_to(205);
            for _ in 0..10 {
                worker.step();
            }
            for t in ck.complete_all() {
                for (_, bytes) in ck.increments_at(t) {
                    k.lock().unwrap().insert(t, bincode::deserialize::<Vec<W>>(&bytes).unwrap());
                }
            }
        });
        let seen = seen.lock().unwrap().clone();
        let saved = saved.lock().unwrap().clone();
        (seen, saved)
    }

    #[test]
    fn saves_what_entered_since_the_latest_complete_checkpoint_and_restores_what_was_held() {
        // (Every window is sent at time 0; its entry is `end - 1`.)
        let windows = vec![w(1, 60), w(2, 130), w(3, 170), w(4, 230)];
        let (seen, saved) = through(windows.clone(), None, 100);
        assert_eq!(seen.len(), 4, "passed on unchanged");
        // The frontier jumps from 0 to 205: the highest boundary passed, 200, is saved, with what
        // entered in [100, 200) (100: the latest complete checkpoint) and is still held at 200
        // (the window entered at 129 was released at 179).
        assert_eq!(saved.get(&200), Some(&vec![w(3, 170)]), "{saved:?}");
        // Restored at 200 with a 50 ms horizon from increments that overlap: held at 200 are the
        // windows entered in (150, 200), once each, at their entry times.
        let increments = vec![
            bincode::serialize(&vec![w(1, 60), w(2, 130), w(3, 170)]).unwrap(),
            bincode::serialize(&vec![w(3, 170), w(5, 199), w(6, 201)]).unwrap(),
        ];
        let restored = Restored { at: 200, increments: [("held".to_string(), increments)].into_iter().collect(), ..Default::default() };
        let (seen, _) = through(Vec::new(), Some(restored), 200);
        assert_eq!(seen, vec![(169, w(3, 170)), (198, w(5, 199))]);
    }
}
