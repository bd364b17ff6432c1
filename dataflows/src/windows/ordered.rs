//! `Ordered`: per-key state updated record by record in event-time order, whatever order the
//! records arrive in within the allowed lateness.

use std::hash::Hash;

use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::RouteKey;
use crate::time::Time;

/// Per-key event-time ordered state over `(key, event_time, value)` records.
///
/// Records are routed to workers by key and held until the input frontier (the watermark) passes
/// their event time; then each key's complete records are handed to `logic` in `(event_time,
/// value)` order with the key's state, which starts as `S::default()`. What `logic` pushes is
/// emitted at the record's event time. A key's state is dropped once `idle` ms of event time pass
/// without a record for it (the state of the next record starts afresh), so state follows the
/// keys active in the last `idle` ms, not every key ever seen. Records must travel at a timely
/// time no later than their event time.
///
/// # Examples
/// ```
/// use timely::dataflow::operators::{ToStream, Capture};
/// use timely::dataflow::operators::capture::Extract;
/// use fleetflow_dataflows::windows::Ordered;
///
/// // Each key's running difference from its previous value, in event-time order although the
/// // records arrive out of order.
/// let captured = timely::example(|scope| {
///     vec![(1u64, 3_000u64, 30i64), (1, 1_000, 10), (2, 1_500, 7), (1, 2_000, 25)]
///         .to_stream(scope)
///         .ordered_by_key("Deltas", 60_000, |key, last: &mut Option<i64>, ts, value, out| {
///             if let Some(prev) = *last {
///                 out.push((*key, ts, value - prev));
///             }
///             *last = Some(*value);
///         })
///         .capture()
/// });
/// let mut deltas: Vec<(u64, u64, i64)> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
/// deltas.sort();
/// assert_eq!(deltas, vec![(1, 2_000, 15), (1, 3_000, 5)]);
/// ```
pub trait Ordered<'scope, K, V>: Sized {
    /// Runs `logic(key, state, event_time, value, out)` over each key's records in event-time order.
    fn ordered_by_key<S, O, L>(self, name: &str, idle: Time, logic: L) -> StreamVec<'scope, Time, O>
    where
        S: Default + 'static,
        O: Clone + 'static,
        L: FnMut(&K, &mut S, Time, &V, &mut Vec<O>) + 'static;
}

impl<'scope, K, V> Ordered<'scope, K, V> for StreamVec<'scope, Time, (K, Time, V)>
where
    K: ExchangeData + RouteKey + Hash + Eq + Ord + Clone,
    V: ExchangeData + Ord,
{
    fn ordered_by_key<S, O, L>(self, name: &str, idle: Time, mut logic: L) -> StreamVec<'scope, Time, O>
    where
        S: Default + 'static,
        O: Clone + 'static,
        L: FnMut(&K, &mut S, Time, &V, &mut Vec<O>) + 'static,
    {
        let pact = Exchange::new(|(k, _, _): &(K, Time, V)| k.route());
        self.unary_frontier(pact, name, move |_cap, _info| {
            // Records not yet complete, and a capability no later than any of their event times.
            let mut held: Vec<(K, Time, V)> = Vec::new();
            let mut cap: Option<Capability<Time>> = None;
            // Each key's state and the event time of its latest record.
            let mut states: FxHashMap<K, (S, Time)> = FxHashMap::default();
            let mut swept_to: Time = 0;
            let mut out: Vec<O> = Vec::new();
            let mut stamped: Vec<(Time, O)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|c, data| {
                    if let Some(&t) = c.least() {
                        if cap.as_ref().is_none_or(|held| t < *held.time()) {
                            cap = c.retain_least(0);
                        }
                    }
                    for batch in data {
                        held.append(batch);
                    }
                });
                let Some(held_cap) = cap.as_mut() else { return };
                // Every record with an event time below the frontier has arrived.
                let complete_to = frontier.frontier().iter().copied().min().unwrap_or(Time::MAX);
                let (mut ready, rest): (Vec<_>, Vec<_>) = held.drain(..).partition(|(_, ts, _)| *ts < complete_to);
                held = rest;
                if !ready.is_empty() {
                    ready.sort_unstable_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
                    for (key, ts, value) in &ready {
                        let entry = states.entry(key.clone()).or_insert_with(|| (S::default(), *ts));
                        if entry.1.saturating_add(idle) <= *ts {
                            entry.0 = S::default();
                        }
                        entry.1 = *ts;
                        logic(key, &mut entry.0, *ts, value, &mut out);
                        stamped.extend(out.drain(..).map(|o| (*ts, o)));
                    }
                    stamped.sort_by_key(|(t, _)| *t);
                    let mut records = stamped.drain(..).peekable();
                    while let Some((t, first)) = records.next() {
                        let at = held_cap.delayed(&t);
                        let mut session = output.session(&at);
                        session.give(first);
                        while let Some((_, o)) = records.next_if(|(u, _)| *u == t) {
                            session.give(o);
                        }
                    }
                }
                // Drop the state of keys idle for `idle` ms of event time (once per `idle / 4`).
                if complete_to != Time::MAX && complete_to >= swept_to.saturating_add(idle / 4) {
                    states.retain(|_, (_, last)| last.saturating_add(idle) > complete_to);
                    swept_to = complete_to;
                }
                // Later outputs are at event times at or after the frontier.
                if held.is_empty() || complete_to == Time::MAX {
                    cap = None;
                } else if *held_cap.time() < complete_to {
                    held_cap.downgrade(&complete_to);
                }
            }
        })
    }
}
