//! `Changelog`: turns a differential collection into the sequence of its net changes, time by
//! time, in time order, each emitted once its time is complete.
//!
//! Sinks write changes, not collections: this is the boundary where a differential result (which
//! may change at many times, and may be corrected later) becomes records a sink can append.

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::time::{Pending, Time};

/// A net change to a collection at a time: `diff` copies of `data` added (or removed, if negative).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Change<D> {
    /// The record.
    pub data: D,
    /// When the change takes effect.
    pub time: Time,
    /// The multiplicity of the change.
    pub diff: i64,
}

/// Extension trait: the consolidated changes of a collection.
///
/// # Examples
/// ```
/// use differential_dataflow::input::Input;
/// use timely::dataflow::operators::{Capture, capture::Extract};
/// use fleetflow_dataflows::changelog::{Change, Changelog};
///
/// let captured = timely::example(|scope| {
///     let (mut input, collection) = scope.new_collection::<String, isize>();
///     input.insert("a".into());
///     input.insert("b".into());
///     input.advance_to(5);
///     input.remove("a".into());
///     input.insert("a".into()); // cancels out at time 5
///     input.remove("b".into());
///     collection.changelog().capture()
/// });
/// let changes: Vec<Change<String>> = captured.extract().into_iter().flat_map(|(_, c)| c).collect();
/// assert_eq!(changes, vec![
///     Change { data: "a".to_string(), time: 0, diff: 1 },
///     Change { data: "b".to_string(), time: 0, diff: 1 },
///     Change { data: "b".to_string(), time: 5, diff: -1 },
/// ]);
/// ```
pub trait Changelog<'scope, D> {
    /// Net changes per time, sorted by record within a time, each time emitted once complete.
    fn changelog(self) -> StreamVec<'scope, Time, Change<D>>;
}

impl<'scope, D: ExchangeData + Ord + Clone> Changelog<'scope, D> for VecCollection<'scope, Time, D, isize> {
    fn changelog(self) -> StreamVec<'scope, Time, Change<D>> {
        self.inner.unary_frontier(Pipeline, "Changelog", |_cap, _info| {
            let mut pending: Pending<Vec<(D, isize)>> = Pending::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    for batch in data {
                        for (d, t, r) in batch.drain(..) {
                            let (_, updates) = pending.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
                            updates.push((d, r));
                        }
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (time, (cap, mut updates)) = entry.remove_entry();
                    consolidate(&mut updates);
                    output.session(&cap).give_iterator(updates.into_iter().map(|(data, diff)| Change { data, time, diff: diff as i64 }));
                }
            }
        })
    }
}
