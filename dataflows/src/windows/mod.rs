//! Event-time window operators and the records they produce.
//!
//! Windows are aligned to the epoch and half-open, `[start, end)`. A window is emitted once the
//! input frontier (the watermark) has reached `end`, at timely time `end - 1`, its last
//! millisecond: so downstream operators see that time complete as soon as the frontier is at
//! `end`, not one step later. A window is never emitted twice.

use serde::{Deserialize, Serialize};

use crate::reading::Vin;
use crate::time::Time;

pub mod held;
pub mod offsets;
pub mod open;
pub mod ordered;
pub mod sliding;
pub mod tumbling;

pub use held::Held;
pub use offsets::Offsets;
pub use open::OpenWindows;
pub use ordered::Ordered;
pub use sliding::Sliding;
pub use tumbling::Tumbling;

/// The aggregate of one key over one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window<K, A> {
    /// The key (for fleetflow, the vehicle).
    pub key: K,
    /// Window start, inclusive, epoch ms.
    pub start: Time,
    /// Window end, exclusive, epoch ms.
    pub end: Time,
    /// The aggregate of the key's records in the window.
    pub agg: A,
}

/// An aggregate that window operators build record by record and merge pane by pane.
///
/// `merge` must be associative and commutative so results do not depend on arrival order.
pub trait WindowAggregate: Default + Clone + 'static {
    /// What one record contributes.
    type Input;
    /// Adds one record, `offset` milliseconds after the window start.
    fn add(&mut self, offset: u32, input: &Self::Input);
    /// Merges another aggregate of the same key (a pane of the same or an adjacent window).
    fn merge(&mut self, other: &Self);
    /// Called once when the window closes, before it is emitted (e.g. to sort).
    fn seal(&mut self) {}
}

impl<A: WindowAggregate, B: WindowAggregate> WindowAggregate for (A, B) {
    type Input = (A::Input, B::Input);

    #[inline]
    fn add(&mut self, offset: u32, input: &Self::Input) {
        self.0.add(offset, &input.0);
        self.1.add(offset, &input.1);
    }

    fn merge(&mut self, other: &Self) {
        self.0.merge(&other.0);
        self.1.merge(&other.1);
    }

    fn seal(&mut self) {
        self.0.seal();
        self.1.seal();
    }
}

/// A key that is sent to a worker by a hash that is the same in every process.
pub trait WorkerKey {
    /// The hash that picks the key's worker.
    fn worker_hash(&self) -> u64;
}

impl WorkerKey for Vin {
    #[inline]
    fn worker_hash(&self) -> u64 {
        Vin::worker_hash(self)
    }
}

impl WorkerKey for u64 {
    #[inline]
    fn worker_hash(&self) -> u64 {
        *self
    }
}
