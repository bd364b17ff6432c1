//! `Sliding`: per-key event-time sliding windows, assembled from the panes of a tumbling window.

use std::hash::Hash;

use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use timely::dataflow::operators::Capability;

use super::{OpenWindows, RouteKey, Window, WindowAggregate};
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

impl<'scope, K, A> Sliding<'scope, K, A> for StreamVec<'scope, Time, Window<K, A>>
where
    K: ExchangeData + RouteKey + Hash + Eq + Ord + Clone,
    A: WindowAggregate + ExchangeData,
{
    fn sliding_saved(
        self,
        size: Time,
        slide: Time,
        mut saved: OperatorState,
    ) -> (StreamVec<'scope, Time, Window<K, A>>, OpenWindows<K, A>) {
        assert!(slide > 0 && size >= slide, "sliding windows need 0 < slide <= size");
        let view: OpenWindows<K, A> = OpenWindows::new(size);
        let state = view.clone();
        let pact = Exchange::new(|w: &Window<K, A>| w.key.route());
        let stream = self.unary_frontier(pact, "Sliding", move |cap, _info| {
            restore(&mut state.state.borrow_mut(), &cap, &mut saved);
            drop(cap);
            // Panes wait here until the frontier passes them, and are applied in time order, so
            // the open windows are exactly what the panes before each checkpoint boundary made.
            let mut panes: Pending<Vec<Window<K, A>>> = Pending::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    let (_, waiting) = panes.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
                    for batch in data {
                        waiting.append(batch);
                    }
                });
                let mut open = state.state.borrow_mut();
                while let Some(entry) = panes.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    saved.passing(*entry.key(), |_| snapshot(&open));
                    let (_, (cap, batch)) = entry.remove_entry();
                    apply(&mut open, &cap, batch, size, slide);
                }
                let reached = frontier.frontier().first().copied().unwrap_or(Time::MAX);
                // Windows ending at or before the frontier are complete; the rest are saved.
                while let Some(entry) = open.first_entry() {
                    if frontier.less_than(entry.key()) {
                        break;
                    }
                    let (end, (cap, map)) = entry.remove_entry();
                    let start = end - size;
                    let mut windows: Vec<Window<K, A>> = map.into_iter().map(|(key, agg)| Window { key, start, end, agg }).collect();
                    windows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
                    output.session(&cap).give_iterator(windows.into_iter());
                }
                saved.passing(reached, |_| snapshot(&open));
            }
        });
        (stream, view)
    }
}

/// Adds panes (at time `cap`) to every aligned window they fall in.
fn apply<K: Hash + Eq + Clone, A: WindowAggregate>(
    open: &mut Pending<FxHashMap<K, A>>,
    cap: &Capability<Time>,
    panes: Vec<Window<K, A>>,
    size: Time,
    slide: Time,
) {
    for pane in panes {
        // Every aligned window start s with s <= pane.start and pane.end <= s + size.
        let mut start = align(pane.start, slide);
        while start + size >= pane.end {
            let end = start + size;
            let (_, map) = open.entry(end).or_insert_with(|| (cap.delayed(&(end - 1)), FxHashMap::default()));
            match map.get_mut(&pane.key) {
                Some(agg) => agg.merge(&pane.agg),
                None => {
                    map.insert(pane.key.clone(), pane.agg.clone());
                }
            }
            if start < slide {
                break;
            }
            start -= slide;
        }
    }
}

fn snapshot<K: Clone, A: Clone>(open: &Pending<FxHashMap<K, A>>) -> Saved<K, A> {
    open.iter().map(|(end, (_, map))| (*end, map.iter().map(|(k, a)| (k.clone(), a.clone())).collect())).collect()
}

/// Takes back the open windows of the keys this worker owns.
fn restore<K: ExchangeData + RouteKey + Hash + Eq, A: WindowAggregate + ExchangeData>(
    open: &mut Pending<FxHashMap<K, A>>,
    cap: &Capability<Time>,
    saved: &mut OperatorState,
) {
    for part in saved.restored::<Saved<K, A>>() {
        for (end, entries) in part {
            let (_, map) = open.entry(end).or_insert_with(|| (cap.delayed(&(end - 1)), FxHashMap::default()));
            map.extend(entries.into_iter().filter(|(k, _)| saved.owns(k.route())));
        }
    }
}
