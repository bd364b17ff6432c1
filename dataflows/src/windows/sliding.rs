//! `Sliding`: per-key event-time sliding windows, assembled from the panes of a tumbling window.

use std::hash::Hash;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use timely::dataflow::operators::Capability;

use super::open::ByKey;
use super::{OpenWindows, Window, WindowAggregate, WorkerKey};
use crate::checkpoint::{Checkpoints, OperatorState};
use crate::time::{align, Pending, Time};

/// Combines per-key panes (windows of a tumbling stream) into windows of `size` ms every `slide`
/// ms, aligned to the epoch. The pane length must divide both `size` and `slide`; with
/// `size == slide` this re-windows panes into longer tumbling windows (a day, for example).
///
/// A sliding window exists for a key when at least one of its panes does. It is emitted at timely
/// time `end - 1` once the frontier has reached `end`, in key order among windows with that end.
///
/// # Examples
/// ```
/// use timely::dataflow::operators::{ToStream, Capture};
/// use timely::dataflow::operators::capture::Event;
/// use fleetflow_dataflows::windows::{Sliding, Tumbling, Window};
/// use fleetflow_dataflows::stats::{SpeedSample, SpeedStats};
///
/// let captured = timely::example(|scope| {
///     let sample = |speed: f64| SpeedSample { speed, micro: (speed * 1e6) as u64, speeding: false };
///     vec![(7u64, 10_000u64, sample(20.0)), (7, 70_000, sample(40.0))]
///         .to_stream(scope)
///         .tumbling::<SpeedStats>(60_000)
///         .sliding(120_000, 60_000)
///         .capture()
/// });
/// let windows: Vec<Window<u64, SpeedStats>> = captured
///     .try_iter()
///     .flat_map(|e| match e { Event::Messages(_, w) => w, _ => vec![] })
///     .collect();
/// let spans: Vec<(u64, u64, u64)> = windows.iter().map(|w| (w.start, w.end, w.agg.readings)).collect();
/// // [-60s, 60s) is not representable before the epoch; windows start at 0.
/// assert_eq!(spans, vec![(0, 120_000, 2), (60_000, 180_000, 1)]);
/// assert_eq!(windows[0].agg.avg(), 30.0);
/// ```
pub trait Sliding<'scope, K, A>: Sized {
    /// Sliding windows of `size` ms every `slide` ms, from panes.
    fn sliding(self, size: Time, slide: Time) -> StreamVec<'scope, Time, Window<K, A>> {
        self.sliding_open(size, slide).0
    }

    /// As [`Sliding::sliding`], also returning a view of this worker's open windows.
    fn sliding_open(self, size: Time, slide: Time) -> (StreamVec<'scope, Time, Window<K, A>>, OpenWindows<K, A>) {
        self.sliding_saved(size, slide, Checkpoints::off().operator("sliding"))
    }

    /// As [`Sliding::sliding_open`], saving its open windows at checkpoint boundaries into
    /// `state` and starting from what `state` restores (see [`crate::checkpoint`]).
    fn sliding_saved(self, size: Time, slide: Time, state: OperatorState) -> (StreamVec<'scope, Time, Window<K, A>>, OpenWindows<K, A>);
}

/// The open windows as saved: per window end, each key's aggregate.
type Saved<K, A> = Vec<(Time, Vec<(K, A)>)>;

/// Each key's open windows, ascending by end.
type Keys<K, A> = rustc_hash::FxHashMap<K, Vec<(Time, A)>>;

impl<'scope, K, A> Sliding<'scope, K, A> for StreamVec<'scope, Time, Window<K, A>>
where
    K: ExchangeData + WorkerKey + Hash + Eq + Ord + Clone,
    A: WindowAggregate + ExchangeData,
{
    fn sliding_saved(
        self,
        size: Time,
        slide: Time,
        mut saved: OperatorState,
    ) -> (StreamVec<'scope, Time, Window<K, A>>, OpenWindows<K, A>) {
        assert!(slide > 0 && size >= slide, "sliding windows need 0 < slide <= size");
        let (view, state) = OpenWindows::<K, A>::by_key(size);
        let pact = Exchange::new(|w: &Window<K, A>| w.key.worker_hash());
        let scope = self.scope();
        let stream = self.unary_frontier(pact, "Sliding", move |cap, info| {
            let activator = scope.activator_for(info.address);
            restore(&mut state.borrow_mut(), &cap, &mut saved);
            drop(cap);
            // Panes wait here until the frontier passes them, and are applied in time order, so
            // the open windows are exactly what the panes before each checkpoint boundary made.
            let mut panes: Pending<Vec<Window<K, A>>> = Pending::new();
            let mut ends: Ends = Ends::default();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    let (_, waiting) = panes.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
                    for batch in data {
                        waiting.append(batch);
                    }
                });
                let mut open = state.borrow_mut();
                while let Some(entry) = panes.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    saved.passing_encoded(*entry.key(), |_| encode(open.ends.keys().copied(), &open.keys));
                    let (_, (cap, batch)) = entry.remove_entry();
                    apply(&mut open, (&cap, &mut ends), batch, (size, slide));
                }
                let reached = frontier.frontier().first().copied().unwrap_or(Time::MAX);
                // Windows ending at or before the frontier are complete; the rest are saved.
                while let Some(entry) = open.ends.first_entry() {
                    if frontier.less_than(entry.key()) {
                        break;
                    }
                    let (end, cap) = entry.remove_entry();
                    let windows = take_ending(&mut open, end, size);
                    output.session(&cap).give_iterator(windows.into_iter());
                    if reached == Time::MAX && !open.ends.is_empty() {
                        // The input has ended and every window closes now (`size / slide` per
                        // key): one end per activation, so the operators after this one take
                        // each end's windows before the next are made, rather than all at once.
                        activator.activate();
                        break;
                    }
                }
                saved.passing_encoded(reached, |_| encode(open.ends.keys().copied(), &open.keys));
            }
        });
        (stream, view)
    }
}

/// The ends of the windows a pane falls in, ascending, for the latest pane span seen (the panes
/// of one batch share their span, so they are computed once a batch).
#[derive(Default)]
struct Ends {
    span: Option<(Time, Time)>,
    ends: Vec<Time>,
}

impl Ends {
    /// The ends of every aligned window `[s, s + size)` with `s <= start` and `end <= s + size`.
    fn of(&mut self, (start, end): (Time, Time), (size, slide): (Time, Time)) -> &[Time] {
        if self.span != Some((start, end)) {
            self.span = Some((start, end));
            self.ends.clear();
            let mut s = align(start, slide);
            while s + size >= end {
                self.ends.push(s + size);
                if s < slide {
                    break;
                }
                s -= slide;
            }
            self.ends.reverse();
        }
        &self.ends
    }
}

/// Adds panes (at time `cap`) to every aligned window they fall in: one look-up of the pane's
/// key, then its few windows side by side.
fn apply<K: Hash + Eq, A: WindowAggregate>(
    open: &mut ByKey<K, A>,
    (cap, ends): (&Capability<Time>, &mut Ends),
    panes: Vec<Window<K, A>>,
    sizes: (Time, Time),
) {
    let mut span = None;
    for pane in panes {
        let ends = ends.of((pane.start, pane.end), sizes);
        if span != Some((pane.start, pane.end)) {
            span = Some((pane.start, pane.end));
            for end in ends {
                open.ends.entry(*end).or_insert_with(|| cap.delayed(&(end - 1)));
            }
        }
        // (Room for the windows one pane falls in: what a key holds between boundaries.)
        let windows = open.keys.entry(pane.key).or_insert_with(|| Vec::with_capacity(ends.len()));
        merge_into(windows, ends, &pane.agg);
    }
}

/// Merges `agg` into a key's windows (ascending by end) ending at `ends` (ascending).
fn merge_into<A: WindowAggregate>(windows: &mut Vec<(Time, A)>, ends: &[Time], agg: &A) {
    let mut i = 0;
    for &end in ends {
        while i < windows.len() && windows[i].0 < end {
            i += 1;
        }
        match windows.get_mut(i) {
            Some((e, a)) if *e == end => a.merge(agg),
            _ => windows.insert(i, (end, agg.clone())),
        }
        i += 1;
    }
}

/// Takes every key's window ending at `end` out of the open windows, in key order.
fn take_ending<K: Clone + Ord, A: WindowAggregate>(open: &mut ByKey<K, A>, end: Time, size: Time) -> Vec<Window<K, A>> {
    let mut windows = Vec::new();
    open.keys.retain(|key, open| {
        if open.first().is_some_and(|(e, _)| *e == end) {
            let (_, agg) = open.remove(0);
            windows.push(Window { key: key.clone(), start: end - size, end, agg });
        }
        !open.is_empty()
    });
    windows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    windows
}

/// The open windows encoded as bincode encodes their [`Saved`] form: the same shape made of
/// references to the open windows, so that no window is copied (at a million vehicles, copying
/// them took longer than the encoding).
fn encode<K: serde::Serialize, A: serde::Serialize>(ends: impl Iterator<Item = Time>, keys: &Keys<K, A>) -> bincode::Result<Vec<u8>> {
    let mut by_end: Vec<(Time, Vec<(&K, &A)>)> = ends.map(|end| (end, Vec::with_capacity(keys.len()))).collect();
    for (key, windows) in keys {
        for (end, agg) in windows {
            let i = by_end.binary_search_by_key(end, |s| s.0).unwrap_or_else(|i| {
                by_end.insert(i, (*end, Vec::new()));
                i
            });
            by_end[i].1.push((key, agg));
        }
    }
    bincode::serialize(&by_end)
}

/// The open windows in their saved form (what [`encode`] encodes).
#[cfg(test)]
fn snapshot<K: Clone, A: Clone>(ends: impl Iterator<Item = Time>, keys: &Keys<K, A>) -> Saved<K, A> {
    let mut by_end: std::collections::BTreeMap<Time, Vec<(K, A)>> = ends.map(|e| (e, Vec::new())).collect();
    for (key, windows) in keys {
        for (end, agg) in windows {
            by_end.entry(*end).or_default().push((key.clone(), agg.clone()));
        }
    }
    by_end.into_iter().collect()
}

/// Takes back the open windows of the keys this worker owns.
fn restore<K: ExchangeData + WorkerKey + Hash + Eq + Clone, A: WindowAggregate + ExchangeData>(
    open: &mut ByKey<K, A>,
    cap: &Capability<Time>,
    saved: &mut OperatorState,
) {
    for part in saved.restored::<Saved<K, A>>() {
        for (end, entries) in part {
            open.ends.entry(end).or_insert_with(|| cap.delayed(&(end - 1)));
            for (key, agg) in entries.into_iter().filter(|(k, _)| saved.owns(k.worker_hash())) {
                merge_into(open.keys.entry(key).or_default(), &[end], &agg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SpeedStats;

    fn stats(readings: u64) -> SpeedStats {
        SpeedStats { readings, sum_micro: readings * 7, min: 1.5, max: readings as f64, speeding: 1 }
    }

    #[test]
    fn the_open_windows_encode_as_their_saved_form_does() {
        let mut keys: Keys<u64, SpeedStats> = Default::default();
        for key in 0..1_000u64 {
            let windows = (1..=(key % 5 + 1)).map(|i| (i * 60_000, stats(key + i))).collect();
            keys.insert(key, windows);
        }
        // A window whose end is not among the open ends, and an open end no key has.
        keys.insert(5_000, vec![(30_000, stats(3))]);
        let ends = [60_000u64, 120_000, 180_000, 240_000, 300_000, 360_000];
        let encoded = encode(ends.iter().copied(), &keys).unwrap();
        assert_eq!(encoded, bincode::serialize(&snapshot(ends.iter().copied(), &keys)).unwrap());
        let saved: Saved<u64, SpeedStats> = bincode::deserialize(&encoded).unwrap();
        assert_eq!(saved.iter().map(|(end, _)| *end).collect::<Vec<_>>(), [30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000]);
        assert_eq!(saved.iter().map(|(_, e)| e.len()).sum::<usize>(), keys.values().map(Vec::len).sum::<usize>());
        assert!(saved[6].1.is_empty());
        assert_eq!(
            encode(std::iter::empty(), &Keys::<u64, SpeedStats>::default()).unwrap(),
            bincode::serialize(&Saved::<u64, SpeedStats>::new()).unwrap()
        );
    }
}
