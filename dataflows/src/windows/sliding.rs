//! `Sliding`: per-key event-time sliding windows, assembled from the panes of a tumbling window.

use std::hash::Hash;

use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::{OpenWindows, RouteKey, Window, WindowAggregate};
use crate::time::{align, Time};

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
    fn sliding_open(self, size: Time, slide: Time) -> (StreamVec<'scope, Time, Window<K, A>>, OpenWindows<K, A>);
}

impl<'scope, K, A> Sliding<'scope, K, A> for StreamVec<'scope, Time, Window<K, A>>
where
    K: ExchangeData + RouteKey + Hash + Eq + Ord + Clone,
    A: WindowAggregate + ExchangeData,
{
    fn sliding_open(self, size: Time, slide: Time) -> (StreamVec<'scope, Time, Window<K, A>>, OpenWindows<K, A>) {
        assert!(slide > 0 && size >= slide, "sliding windows need 0 < slide <= size");
        let view: OpenWindows<K, A> = OpenWindows::new(size);
        let state = view.clone();
        let pact = Exchange::new(|w: &Window<K, A>| w.key.route());
        let stream = self.unary_frontier(pact, "Sliding", move |_cap, _info| {
            move |(input, frontier), output| {
                let mut open = state.state.borrow_mut();
                input.for_each_stamp(|cap, data| {
                    for batch in data {
                        for pane in batch.drain(..) {
                            // Every aligned window start s with s <= pane.start and pane.end <= s + size.
                            let mut start = align(pane.start, slide);
                            while start + size >= pane.end {
                                let end = start + size;
                                let (_, map) = open.entry(end).or_insert_with(|| (cap.delayed(&(end - 1), 0), FxHashMap::default()));
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
                });
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
            }
        });
        (stream, view)
    }
}
