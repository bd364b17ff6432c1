//! A read-only view of a window operator's open windows, for answering queries from live state
//! between dataflow steps (on the worker that owns the operator; it is not `Send`).

use std::cell::RefCell;
use std::rc::Rc;

use rustc_hash::FxHashMap;

use crate::time::{Pending, Time};

/// The open windows of one operator on one worker: per window end, each key's aggregate so far.
pub struct OpenWindows<K, A> {
    pub(crate) state: Rc<RefCell<Pending<FxHashMap<K, A>>>>,
    pub(crate) size: Time,
}

impl<K, A> Clone for OpenWindows<K, A> {
    fn clone(&self) -> Self {
        OpenWindows { state: self.state.clone(), size: self.size }
    }
}

impl<K, A> OpenWindows<K, A> {
    pub(crate) fn new(size: Time) -> Self {
        OpenWindows { state: Rc::new(RefCell::new(Pending::new())), size }
    }

    /// Calls `f(start, end, key, aggregate)` for every open window ending in `(from, to]`.
    pub fn for_each_ending_in(&self, from: Time, to: Time, mut f: impl FnMut(Time, Time, &K, &A)) {
        let state = self.state.borrow();
        for (&end, (_, map)) in state.range(from.saturating_add(1)..=to) {
            for (k, a) in map {
                f(end - self.size, end, k, a);
            }
        }
    }

    /// Open windows now (keys times windows).
    pub fn len(&self) -> usize {
        self.state.borrow().values().map(|(_, m)| m.len()).sum()
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
