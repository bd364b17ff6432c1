//! `Recent`: passes windows on and remembers each for a horizon after its time, so that state
//! built from them downstream (a differential join's arrangement) can be rebuilt after a restart:
//! the windows before a checkpoint boundary still within the horizon are saved, and emitted again
//! at their own times when the dataflow is restored (outputs before the boundary are not written
//! again by the runtime).

use std::collections::BTreeMap;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::{RouteKey, Window};
use crate::checkpoint::OperatorState;
use crate::time::Time;

/// Extension trait: windows remembered for a horizon, saved at checkpoints.
pub trait Recent<'scope, K, A>: Sized {
    /// The same windows; each is kept `horizon` ms after its time while checkpoints are on.
    fn recent(self, horizon: Time, state: OperatorState) -> StreamVec<'scope, Time, Window<K, A>>;
}

impl<'scope, K, A> Recent<'scope, K, A> for StreamVec<'scope, Time, Window<K, A>>
where
    K: ExchangeData + RouteKey + Clone,
    A: ExchangeData + Clone,
{
    fn recent(self, horizon: Time, mut saved: OperatorState) -> StreamVec<'scope, Time, Window<K, A>> {
        let scope = self.scope();
        self.unary_frontier(Pipeline, "Recent", move |cap, info| {
            let mut kept: BTreeMap<Time, Vec<Window<K, A>>> = BTreeMap::new();
            for part in saved.restored::<Vec<(Time, Window<K, A>)>>() {
                for (t, w) in part.into_iter().filter(|(_, w)| saved.owns(w.key.route())) {
                    kept.entry(t).or_default().push(w);
                }
            }
            // The restored windows go out on the first activation, at their own times.
            let mut replay = (!kept.is_empty()).then(|| (cap, kept.clone()));
            if replay.is_some() {
                scope.activator_for(info.address).activate();
            }
            let every = saved.interval();
            move |(input, frontier), output| {
                if let Some((cap, windows)) = replay.take() {
                    for (t, ws) in windows {
                        output.session(&cap.delayed(&t)).give_iterator(ws.into_iter());
                    }
                }
                input.for_each_stamp(|cap, data| {
                    let t = cap.least().copied().unwrap_or(0);
                    let mut session = output.session(&cap);
                    for batch in data {
                        if every > 0 {
                            kept.entry(t).or_default().extend(batch.iter().cloned());
                        }
                        session.give_container(batch);
                    }
                });
                let reached = frontier.frontier().first().copied().unwrap_or(Time::MAX);
                saved.passing(reached, |boundary| {
                    let live = kept.range(boundary.saturating_sub(horizon)..boundary);
                    live.filter(|(t, _)| *t + horizon > boundary).flat_map(|(t, ws)| ws.iter().map(|w| (*t, w.clone()))).collect::<Vec<_>>()
                });
                // Kept until no boundary still to be saved needs them.
                let release = reached.saturating_sub(every).saturating_sub(horizon);
                kept = kept.split_off(&release.saturating_add(1));
            }
        })
    }
}
