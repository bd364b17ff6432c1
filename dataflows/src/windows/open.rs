//! A read-only view of a window operator's open windows, for answering queries from live state
//! between dataflow steps (on the worker that owns the operator; it is not `Send`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use rustc_hash::FxHashMap;
use timely::dataflow::operators::Capability;

use crate::time::{Pending, Time};

/// The open windows of one operator on one worker: per window end, each key's aggregate so far.
pub struct OpenWindows<K, A> {
    layout: Layout<K, A>,
    size: Time,
}

/// Open windows kept by end: each end's keys, and the capability to emit them (at `end - 1`).
pub(crate) type ByEnd<K, A> = Pending<FxHashMap<K, A>>;

/// How an operator keeps its open windows.
enum Layout<K, A> {
    /// A map of keys per window end (tumbling windows: a key is in one open window at a time).
    ByEnd(Rc<RefCell<ByEnd<K, A>>>),
    /// A map of windows per key (sliding windows: a pane goes to every window it falls in, all
    /// found with one look-up of its key).
    ByKey(Rc<RefCell<ByKey<K, A>>>),
    /// Another operator's open windows, seen through a projection of their aggregates.
    Projected(Rc<dyn Projection<K, A>>),
}

/// Open windows of an aggregate of which `A` is a part.
trait Projection<K, A> {
    fn for_each_ending_in(&self, from: Time, to: Time, f: &mut dyn FnMut(Time, Time, &K, &A));
    fn len(&self) -> usize;
}

/// The first part of a pair's open windows.
struct First<K, A, B>(OpenWindows<K, (A, B)>);

impl<K, A, B> Projection<K, A> for First<K, A, B> {
    fn for_each_ending_in(&self, from: Time, to: Time, f: &mut dyn FnMut(Time, Time, &K, &A)) {
        self.0.for_each_ending_in(from, to, |start, end, k, (a, _)| f(start, end, k, a));
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<K: 'static, A: 'static, B: 'static> OpenWindows<K, (A, B)> {
    /// The same open windows, seen with the first part of their aggregates.
    pub fn first(self) -> OpenWindows<K, A> {
        let size = self.size;
        OpenWindows { layout: Layout::Projected(Rc::new(First(self))), size }
    }
}

/// Open windows kept per key: each key's aggregates by window end, ascending, and the
/// capability of every open window end (at `end - 1`).
pub(crate) struct ByKey<K, A> {
    pub(crate) keys: FxHashMap<K, Vec<(Time, A)>>,
    pub(crate) ends: BTreeMap<Time, Capability<Time>>,
}

impl<K, A> Clone for OpenWindows<K, A> {
    fn clone(&self) -> Self {
        let layout = match &self.layout {
            Layout::ByEnd(s) => Layout::ByEnd(s.clone()),
            Layout::ByKey(s) => Layout::ByKey(s.clone()),
            Layout::Projected(p) => Layout::Projected(p.clone()),
        };
        OpenWindows { layout, size: self.size }
    }
}

impl<K, A> OpenWindows<K, A> {
    /// Windows of `size` ms kept by end; the operator's state is `state`.
    pub(crate) fn by_end(size: Time) -> (Self, Rc<RefCell<ByEnd<K, A>>>) {
        let state = Rc::new(RefCell::new(Pending::new()));
        (OpenWindows { layout: Layout::ByEnd(state.clone()), size }, state)
    }

    /// Windows of `size` ms kept by key; the operator's state is `state`.
    pub(crate) fn by_key(size: Time) -> (Self, Rc<RefCell<ByKey<K, A>>>) {
        let state = Rc::new(RefCell::new(ByKey { keys: FxHashMap::default(), ends: BTreeMap::new() }));
        (OpenWindows { layout: Layout::ByKey(state.clone()), size }, state)
    }

    /// Calls `f(start, end, key, aggregate)` for every open window ending in `(from, to]`.
    pub fn for_each_ending_in(&self, from: Time, to: Time, mut f: impl FnMut(Time, Time, &K, &A)) {
        let within = |end: Time| end > from && end <= to;
        match &self.layout {
            Layout::ByEnd(state) => {
                for (&end, (_, map)) in state.borrow().range(from.saturating_add(1)..=to) {
                    for (k, a) in map {
                        f(end - self.size, end, k, a);
                    }
                }
            }
            Layout::ByKey(state) => {
                for (k, windows) in &state.borrow().keys {
                    for (end, a) in windows.iter().filter(|(end, _)| within(*end)) {
                        f(end - self.size, *end, k, a);
                    }
                }
            }
            Layout::Projected(p) => p.for_each_ending_in(from, to, &mut f),
        }
    }

    /// Open windows now (keys times windows).
    pub fn len(&self) -> usize {
        match &self.layout {
            Layout::ByEnd(state) => state.borrow().values().map(|(_, m)| m.len()).sum(),
            Layout::ByKey(state) => state.borrow().keys.values().map(Vec::len).sum(),
            Layout::Projected(p) => p.len(),
        }
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
