//! `Tumbling`: per-key event-time tumbling windows over a timely stream.

use std::hash::Hash;

use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::{OpenWindows, Window, WindowAggregate, WorkerKey};
use crate::time::{align, Time};

/// Groups `(key, event_time, input)` records into tumbling windows of `size` milliseconds per key.
///
/// Records are routed to workers by key. A window `[start, start + size)` is emitted, at timely
/// time `start + size - 1`, once the input frontier has reached its end; windows with the same end are
/// emitted in key order. Records must travel at a timely time no later than their event time.
///
/// # Examples
/// ```
/// use timely::dataflow::operators::{ToStream, Capture};
/// use timely::dataflow::operators::capture::Event;
/// use fleetflow_dataflows::windows::{Tumbling, Window};
/// use fleetflow_dataflows::stats::{SpeedSample, SpeedStats};
///
/// let captured = timely::example(|scope| {
///     let sample = |speed: f64| SpeedSample { speed, micro: (speed * 1e6) as u64, speeding: speed > 65.0 };
///     vec![(1u64, 1_000u64, sample(50.0)), (1, 59_999, sample(70.0)), (1, 60_000, sample(10.0))]
///         .to_stream(scope)
///         .tumbling::<SpeedStats>(60_000)
///         .capture()
/// });
/// let windows: Vec<Window<u64, SpeedStats>> = captured
///     .try_iter()
///     .flat_map(|e| match e { Event::Messages(_, w) => w, _ => vec![] })
///     .collect();
/// assert_eq!(windows.len(), 2);
/// assert_eq!((windows[0].start, windows[0].end, windows[0].agg.readings), (0, 60_000, 2));
/// assert_eq!(windows[0].agg.speeding, 1);
/// assert_eq!(windows[1].agg.max, 10.0);
/// ```
pub trait Tumbling<'scope, K, I>: Sized {
    /// Aggregates each key's records into tumbling windows of `size` ms with the aggregate `A`.
    fn tumbling<A: WindowAggregate<Input = I> + ExchangeData>(self, size: Time) -> StreamVec<'scope, Time, Window<K, A>> {
        self.tumbling_open(size).0
    }

    /// As [`Tumbling::tumbling`], also returning a view of this worker's open windows.
    fn tumbling_open<A: WindowAggregate<Input = I> + ExchangeData>(
        self,
        size: Time,
    ) -> (StreamVec<'scope, Time, Window<K, A>>, OpenWindows<K, A>);
}

impl<'scope, K, I> Tumbling<'scope, K, I> for StreamVec<'scope, Time, (K, Time, I)>
where
    K: ExchangeData + WorkerKey + Hash + Eq + Ord + Clone,
    I: ExchangeData,
{
    fn tumbling_open<A: WindowAggregate<Input = I> + ExchangeData>(
        self,
        size: Time,
    ) -> (StreamVec<'scope, Time, Window<K, A>>, OpenWindows<K, A>) {
        assert!(size > 0, "window size must be positive");
        let (view, state) = OpenWindows::<K, A>::by_end(size);
        let pact = Exchange::new(|(k, _, _): &(K, Time, I)| k.worker_hash());
        let stream = self.unary_frontier(pact, "Tumbling", move |_cap, _info| {
            // Open windows by end time, each with the capability to emit it at `end - 1`.
            move |(input, frontier), output| {
                let mut open = state.borrow_mut();
                input.for_each_stamp(|cap, data| {
                    for batch in data {
                        for (key, ts, value) in batch.drain(..) {
                            let start = align(ts, size);
                            let end = start + size;
                            let (_, map) = open.entry(end).or_insert_with(|| (cap.delayed(&(end - 1), 0), FxHashMap::default()));
                            map.entry(key).or_default().add((ts - start) as u32, &value);
                        }
                    }
                });
                while let Some(entry) = open.first_entry() {
                    if frontier.less_than(entry.key()) {
                        break;
                    }
                    let (end, (cap, map)) = entry.remove_entry();
                    let start = end - size;
                    let mut windows: Vec<Window<K, A>> = map
                        .into_iter()
                        .map(|(key, mut agg)| {
                            agg.seal();
                            Window { key, start, end, agg }
                        })
                        .collect();
                    windows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
                    output.session(&cap).give_iterator(windows.into_iter());
                }
            }
        });
        (stream, view)
    }
}
