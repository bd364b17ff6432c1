//! `Ordered`: per-key state updated record by record in event-time order, whatever order the
//! records arrive in within the allowed lateness.

use std::collections::BTreeMap;
use std::hash::Hash;

use differential_dataflow::VecCollection;
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::WorkerKey;
use crate::checkpoint::{operator_of_dataflow, OperatorState};
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
        S: Default + Serialize + DeserializeOwned + 'static,
        O: Clone + 'static,
        L: FnMut(&K, &mut S, Time, &V, &mut Vec<O>) + 'static;

    /// As [`Ordered::ordered_by_key`], with a reference table: `logic` also gets `view(table)`, the
    /// view of the table's contents as of the record's event time (a table change at time `t`
    /// applies to records at `t` and after). The view is rebuilt when the table changes.
    ///
    /// # Examples
    /// ```
    /// use std::collections::BTreeMap;
    /// use differential_dataflow::input::Input;
    /// use timely::dataflow::operators::{ToStream, Capture};
    /// use timely::dataflow::operators::capture::Extract;
    /// use fleetflow_dataflows::windows::Ordered;
    ///
    /// // Records above the table's (single) threshold; the threshold changes at 2 s.
    /// let captured = timely::example(|scope| {
    ///     let thresholds = scope.new_collection_from(vec![10i64]).1;
    ///     let raised = scope.new_collection_from_raw(vec![(10i64, 2_000u64, -1isize), (20, 2_000, 1)]).1;
    ///     vec![(1u64, 1_000u64, 15i64), (1, 2_000, 15), (1, 3_000, 25)]
    ///         .to_stream(scope)
    ///         .ordered_by_key_with(thresholds.concat(raised), "Above", 60_000,
    ///             |table: &BTreeMap<i64, isize>| table.keys().next().copied().unwrap_or(0),
    ///             |key, _: &mut (), ts, value, limit, out| if value > limit { out.push((*key, ts)) })
    ///         .capture()
    /// });
    /// let above: Vec<(u64, u64)> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(above, vec![(1, 1_000), (1, 3_000)]);
    /// ```
    fn ordered_by_key_with<T, W, S, O, F, L>(
        self,
        table: VecCollection<'scope, Time, T>,
        name: &str,
        idle: Time,
        view: F,
        logic: L,
    ) -> StreamVec<'scope, Time, O>
    where
        T: ExchangeData + Ord + Clone,
        W: 'static,
        F: Fn(&BTreeMap<T, isize>) -> W + 'static,
        S: Default + Serialize + DeserializeOwned + 'static,
        O: Clone + 'static,
        L: FnMut(&K, &mut S, Time, &V, &W, &mut Vec<O>) + 'static;
}

/// The per-worker state of an ordered operator: held records, the capability to emit at their
/// times, each key's state.
struct Keyed<K, V, S> {
    held: Vec<(K, Time, V)>,
    cap: Option<Capability<Time>>,
    states: FxHashMap<K, (S, Time)>,
    swept_to: Time,
    idle: Time,
    /// Saves `states` at checkpoint boundaries (records are processed in time order, so the
    /// states before the first record at or after a boundary are the states as of it).
    saved: OperatorState,
}

impl<K: Hash + Eq + Ord + Clone + WorkerKey + Serialize + DeserializeOwned, V: Ord, S: Default + Serialize + DeserializeOwned>
    Keyed<K, V, S>
{
    /// Keyed state for operator `name`, restored if the dataflow is (the keys this worker owns).
    fn new(name: &str, idle: Time) -> Self {
        let mut saved = operator_of_dataflow(&format!("ordered.{name}"));
        let mut states = FxHashMap::default();
        for part in saved.restored::<Vec<(K, S, Time)>>() {
            states.extend(part.into_iter().filter(|(k, _, _)| saved.owns(k.worker_hash())).map(|(k, s, t)| (k, (s, t))));
        }
        Keyed { held: Vec::new(), cap: None, states, swept_to: 0, idle, saved }
    }

    /// Holds a batch of records that arrived with capability `c`.
    fn hold(&mut self, c: &timely::dataflow::operators::InputCapability<Time>, batch: &mut Vec<(K, Time, V)>) {
        if let Some(&t) = c.least() {
            if self.cap.as_ref().is_none_or(|held| t < *held.time()) {
                self.cap = c.retain_least(0);
            }
        }
        self.held.append(batch);
    }

    /// Runs `step(with, key, state, time, value, out)` over the records before `complete_to` in
    /// `(time, key, value)` order, each time after `before(with, time)`; emits the outputs at their
    /// records' times.
    fn process<O: Clone + 'static, C>(
        &mut self,
        complete_to: Time,
        output: &mut OutputBuilderSession<'_, Time, timely::container::CapacityContainerBuilder<Vec<O>>>,
        with: &mut C,
        mut before: impl FnMut(&mut C, Time),
        mut step: impl FnMut(&C, &K, &mut S, Time, &V, &mut Vec<O>),
    ) {
        let Some(cap) = self.cap.as_mut() else {
            save(&mut self.saved, &self.states, complete_to);
            return;
        };
        let (mut ready, rest): (Vec<_>, Vec<_>) = self.held.drain(..).partition(|(_, ts, _)| *ts < complete_to);
        self.held = rest;
        ready.sort_unstable_by(|a, b| (a.1, &a.0, &a.2).cmp(&(b.1, &b.0, &b.2)));
        let mut out = Vec::new();
        let mut records = ready.iter().peekable();
        while let Some((_, ts, _)) = records.peek() {
            let ts = *ts;
            save(&mut self.saved, &self.states, ts);
            before(with, ts);
            let at = cap.delayed(&ts);
            let mut session = output.session(&at);
            while let Some((key, _, value)) = records.next_if(|(_, t, _)| *t == ts) {
                let entry = self.states.entry(key.clone()).or_insert_with(|| (S::default(), ts));
                if entry.1.saturating_add(self.idle) <= ts {
                    entry.0 = S::default();
                }
                entry.1 = ts;
                step(with, key, &mut entry.0, ts, value, &mut out);
                session.give_iterator(out.drain(..));
            }
        }
        save(&mut self.saved, &self.states, complete_to);
        // Drop the state of keys idle for `idle` ms of event time (once per `idle / 4`).
        if complete_to != Time::MAX && complete_to >= self.swept_to.saturating_add(self.idle / 4) {
            let idle = self.idle;
            self.states.retain(|_, (_, last)| last.saturating_add(idle) > complete_to);
            self.swept_to = complete_to;
        }
        // Later outputs are at event times at or after the frontier.
        if self.held.is_empty() || complete_to == Time::MAX {
            self.cap = None;
        } else if *cap.time() < complete_to {
            cap.downgrade(&complete_to);
        }
    }
}

/// Saves each key's state for the checkpoint boundaries at or below `t` (see [`OperatorState::passing`]).
fn save<K: Serialize, S: Serialize>(saved: &mut OperatorState, states: &FxHashMap<K, (S, Time)>, t: Time) {
    saved.passing(t, |_| states.iter().map(|(k, (s, last))| (k, s, *last)).collect::<Vec<_>>());
}

/// A reference table inside an ordered operator: changes not yet applied (sorted by time), the
/// contents as of the last applied one, and their view.
struct Table<T, W> {
    pending: Vec<(T, Time, isize)>,
    contents: BTreeMap<T, isize>,
    current: W,
}

impl<T: Ord + Clone, W> Table<T, W> {
    /// Applies the changes at times up to `ts`; rebuilds the view if any.
    fn apply_to(&mut self, ts: Time, view: &impl Fn(&BTreeMap<T, isize>) -> W) {
        let due = self.pending.iter().take_while(|(_, t, _)| *t <= ts).count();
        if due == 0 {
            return;
        }
        for (row, _, diff) in self.pending.drain(..due) {
            let count = self.contents.entry(row.clone()).or_insert(0);
            *count += diff;
            if *count == 0 {
                self.contents.remove(&row);
            }
        }
        self.current = view(&self.contents);
    }
}

impl<'scope, K, V> Ordered<'scope, K, V> for StreamVec<'scope, Time, (K, Time, V)>
where
    K: ExchangeData + WorkerKey + Hash + Eq + Ord + Clone,
    V: ExchangeData + Ord,
{
    fn ordered_by_key<S, O, L>(self, name: &str, idle: Time, mut logic: L) -> StreamVec<'scope, Time, O>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        O: Clone + 'static,
        L: FnMut(&K, &mut S, Time, &V, &mut Vec<O>) + 'static,
    {
        let pact = Exchange::new(|(k, _, _): &(K, Time, V)| k.worker_hash());
        let name = name.to_string();
        self.unary_frontier(pact, &name.clone(), move |_cap, _info| {
            let mut keyed: Keyed<K, V, S> = Keyed::new(&name, idle);
            move |(input, frontier), output| {
                input.for_each_stamp(|c, data| {
                    for batch in data {
                        keyed.hold(&c, batch);
                    }
                });
                // Every record with an event time below the frontier has arrived.
                let complete_to = frontier.frontier().iter().copied().min().unwrap_or(Time::MAX);
                keyed.process(complete_to, output, &mut (), |_, _| {}, |_, k, s, ts, v, out| logic(k, s, ts, v, out));
            }
        })
    }

    fn ordered_by_key_with<T, W, S, O, F, L>(
        self,
        table: VecCollection<'scope, Time, T>,
        name: &str,
        idle: Time,
        view: F,
        mut logic: L,
    ) -> StreamVec<'scope, Time, O>
    where
        T: ExchangeData + Ord + Clone,
        W: 'static,
        F: Fn(&BTreeMap<T, isize>) -> W + 'static,
        S: Default + Serialize + DeserializeOwned + 'static,
        O: Clone + 'static,
        L: FnMut(&K, &mut S, Time, &V, &W, &mut Vec<O>) + 'static,
    {
        let pact = Exchange::new(|(k, _, _): &(K, Time, V)| k.worker_hash());
        // Every worker sees every change of the table.
        let changes = table.inner.broadcast();
        let name = name.to_string();
        self.binary_frontier(changes, pact, Pipeline, &name.clone(), move |_cap, _info| {
            let mut keyed: Keyed<K, V, S> = Keyed::new(&name, idle);
            let mut table = Table { pending: Vec::new(), current: view(&BTreeMap::new()), contents: BTreeMap::new() };
            move |(input, frontier), (changes, table_frontier), output| {
                input.for_each_stamp(|c, data| {
                    for batch in data {
                        keyed.hold(&c, batch);
                    }
                });
                changes.for_each(|_, data| table.pending.append(data));
                // Complete when both the records and the table have passed a time.
                let low = |f: &timely::progress::frontier::MutableAntichain<Time>| f.frontier().iter().copied().min().unwrap_or(Time::MAX);
                let complete_to = low(frontier).min(low(table_frontier));
                table.pending.sort_by_key(|(_, t, _)| *t);
                let apply = |table: &mut Table<T, W>, ts: Time| table.apply_to(ts, &view);
                keyed.process(complete_to, output, &mut table, apply, |table, k, s, ts, v, out| logic(k, s, ts, v, &table.current, out));
                // Changes before the frontier apply to every later record.
                if complete_to > 0 {
                    table.apply_to(complete_to - 1, &view);
                }
            }
        })
    }
}
