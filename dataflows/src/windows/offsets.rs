//! `Offsets`: the event times of a window's records, kept so the reference join can resolve the
//! sensor of each reading exactly (by its own timestamp) after the window has closed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::WindowAggregate;

/// The millisecond offsets (from the window start) of a window's records, in arrival order. Four
/// bytes per reading, held for open windows and for the correction horizon.
///
/// While the window is open the offsets are a plain vector; when it closes they are sealed behind
/// an `Arc`, so the copies the dataflow makes of a closed window (one per consumer of the window
/// stream, one more for the retraction at the end of the correction horizon) share one buffer
/// instead of copying thousands of offsets each. They are not sorted: they are only counted for
/// vehicles whose timeline has a buggy segment in the window, while sorting every window's
/// offsets when it closes held up the hand-off of all the windows closing at once.
///
/// Equality, order and hash are those of the offsets, whichever the variant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Offsets {
    /// The window is open: offsets are appended.
    Open(Vec<u32>),
    /// The window has closed: the offsets are shared by every copy.
    Sealed(Arc<Vec<u32>>),
}

impl Default for Offsets {
    fn default() -> Self {
        Offsets::Open(Vec::new())
    }
}

impl PartialEq for Offsets {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Offsets {}

impl PartialOrd for Offsets {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Offsets {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::hash::Hash for Offsets {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl Offsets {
    /// Offsets of the given readings, sealed.
    pub fn sealed(offsets: Vec<u32>) -> Self {
        Offsets::Sealed(Arc::new(offsets))
    }

    /// The offsets, in arrival order.
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Offsets::Open(v) => v,
            Offsets::Sealed(v) => v,
        }
    }

    /// Number of offsets in `[from, to)`.
    pub fn count_between(&self, from: u64, to: u64) -> u64 {
        self.as_slice().iter().filter(|&&o| (from..to).contains(&(o as u64))).count() as u64
    }

    /// The open vector (a sealed one is copied back out: windows are not added to once sealed).
    fn open(&mut self) -> &mut Vec<u32> {
        if let Offsets::Sealed(v) = self {
            *self = Offsets::Open(v.as_ref().clone());
        }
        match self {
            Offsets::Open(v) => v,
            Offsets::Sealed(_) => unreachable!("just reopened"),
        }
    }
}

/// The input says whether to keep the reading's offset: a job without an analysis that uses them
/// keeps none (and no vectors are allocated).
impl WindowAggregate for Offsets {
    type Input = bool;

    #[inline]
    fn add(&mut self, offset: u32, keep: &bool) {
        if !*keep {
            return;
        }
        match self {
            Offsets::Open(v) => v.push(offset),
            sealed => sealed.open().push(offset),
        }
    }

    fn merge(&mut self, other: &Self) {
        self.open().extend_from_slice(other.as_slice());
    }

    fn seal(&mut self) {
        if let Offsets::Open(v) = self {
            *self = Offsets::sealed(std::mem::take(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_half_open_ranges() {
        let o = Offsets::sealed(vec![5, 0, 59_999, 30_000, 30_000]);
        assert_eq!(o.count_between(0, 60_000), 5);
        assert_eq!(o.count_between(30_000, 30_001), 2);
        assert_eq!(o.count_between(0, 30_000), 2);
        assert_eq!(o.count_between(59_999, u64::MAX), 1);
    }

    #[test]
    fn sealing_shares_and_adding_reopens() {
        let mut o = Offsets::default();
        o.add(3, &true);
        o.add(1, &true);
        o.seal();
        let copy = o.clone();
        match (&o, &copy) {
            (Offsets::Sealed(a), Offsets::Sealed(b)) => assert!(Arc::ptr_eq(a, b), "copies share the buffer"),
            _ => panic!("sealed offsets stay sealed when copied"),
        }
        o.add(2, &true);
        o.add(9, &false);
        o.merge(&copy);
        assert_eq!(o.as_slice(), &[3, 1, 2, 3, 1]);
        assert_eq!(copy.as_slice(), &[3, 1]);
        assert_eq!(Offsets::Open(vec![3, 1]), copy, "equal whichever the variant");
    }
}
