//! `Offsets`: the event times of a window's records, kept so the reference join can resolve the
//! sensor of each reading exactly (by its own timestamp) after the window has closed.

use serde::{Deserialize, Serialize};

use super::WindowAggregate;

/// The millisecond offsets (from the window start) of a window's records, sorted once the window
/// closes. Four bytes per reading, held for open windows and for the correction horizon.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Offsets(pub Vec<u32>);

impl Offsets {
    /// Number of offsets in `[from, to)`; requires a sealed (sorted) list.
    pub fn count_between(&self, from: u64, to: u64) -> u64 {
        let lo = self.0.partition_point(|&o| (o as u64) < from);
        let hi = self.0.partition_point(|&o| (o as u64) < to);
        (hi - lo) as u64
    }
}

impl WindowAggregate for Offsets {
    type Input = ();

    #[inline]
    fn add(&mut self, offset: u32, _: &()) {
        self.0.push(offset);
    }

    fn merge(&mut self, other: &Self) {
        self.0.extend_from_slice(&other.0);
    }

    fn seal(&mut self) {
        self.0.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_half_open_ranges() {
        let mut o = Offsets(vec![5, 0, 59_999, 30_000, 30_000]);
        o.seal();
        assert_eq!(o.count_between(0, 60_000), 5);
        assert_eq!(o.count_between(30_000, 30_001), 2);
        assert_eq!(o.count_between(0, 30_000), 2);
        assert_eq!(o.count_between(59_999, u64::MAX), 1);
    }
}
