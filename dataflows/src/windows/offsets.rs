//! `Offsets`: the event times of a window's records, kept so the reference join can resolve the
//! sensor of each reading exactly (by its own timestamp) after the window has closed.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::WindowAggregate;

/// The millisecond offsets (from the window start) of a window's records, in arrival order. Four
/// bytes per reading while the window is open; two, once closed, in a window under 65,536 ms.
///
/// While the window is open the offsets are a plain vector; when it closes they are sealed behind
/// an `Arc`, so the copies the dataflow makes of a closed window (one per consumer of the window
/// stream, one more for the retraction at the end of the correction horizon) share one buffer
/// instead of copying thousands of offsets each. A sealed buffer is one allocation of exactly its
/// length, of `u16` when every offset fits (a 60 s window does): the reference join holds a
/// correction horizon of closed windows (10 per vehicle by default), and this halves what their
/// offsets cost. They are not sorted: they are only counted for vehicles whose timeline has a
/// buggy segment in the window, while sorting every window's offsets when it closes held up the
/// hand-off of all the windows closing at once.
///
/// Equality, order and hash are those of the offsets, whichever the variant. Encoded (for
/// checkpoints and exchange) as a vector of `u32` in either variant, as before the `u16` form.
#[derive(Clone, Debug)]
pub enum Offsets {
    /// The window is open: offsets are appended.
    Open(Vec<u32>),
    /// The window has closed: the offsets are shared by every copy.
    Sealed(Arc<[u32]>),
    /// The window has closed and every offset is below 65,536: as `Sealed`, in half the memory.
    Sealed16(Arc<[u16]>),
}

impl Default for Offsets {
    fn default() -> Self {
        Offsets::Open(Vec::new())
    }
}

impl PartialEq for Offsets {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
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
        self.iter().cmp(other.iter())
    }
}

impl std::hash::Hash for Offsets {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        self.iter().for_each(|o| state.write_u32(o));
    }
}

/// The encoded form: the variant and its offsets as `u32`, whichever the variant in memory.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Offsets")]
enum Encoded<T> {
    Open(T),
    Sealed(T),
}

/// The offsets as a sequence of `u32`, for encoding.
struct AsU32<'a>(&'a Offsets);

impl Serialize for AsU32<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl Serialize for Offsets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Offsets::Open(_) => Encoded::Open(AsU32(self)),
            Offsets::Sealed(_) | Offsets::Sealed16(_) => Encoded::Sealed(AsU32(self)),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Offsets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Encoded::<Vec<u32>>::deserialize(d)? {
            Encoded::Open(v) => Offsets::Open(v),
            Encoded::Sealed(v) => Offsets::sealed(v),
        })
    }
}

impl Offsets {
    /// Offsets of the given readings, sealed.
    pub fn sealed(offsets: Vec<u32>) -> Self {
        if offsets.iter().all(|&o| o <= u16::MAX as u32) {
            Offsets::Sealed16(offsets.iter().map(|&o| o as u16).collect())
        } else {
            Offsets::Sealed(offsets.into())
        }
    }

    /// Number of offsets.
    pub fn len(&self) -> usize {
        match self {
            Offsets::Open(v) => v.len(),
            Offsets::Sealed(v) => v.len(),
            Offsets::Sealed16(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The offsets, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (wide, narrow): (&[u32], &[u16]) = match self {
            Offsets::Open(v) => (v, &[]),
            Offsets::Sealed(v) => (v, &[]),
            Offsets::Sealed16(v) => (&[], v),
        };
        wide.iter().copied().chain(narrow.iter().map(|&o| o as u32))
    }

    /// Number of offsets in `[from, to)`.
    pub fn count_between(&self, from: u64, to: u64) -> u64 {
        self.iter().filter(|&o| (from..to).contains(&(o as u64))).count() as u64
    }

    /// The open vector (a sealed one is copied back out: windows are not added to once sealed).
    fn open(&mut self) -> &mut Vec<u32> {
        if !matches!(self, Offsets::Open(_)) {
            *self = Offsets::Open(self.iter().collect());
        }
        match self {
            Offsets::Open(v) => v,
            Offsets::Sealed(_) | Offsets::Sealed16(_) => unreachable!("just reopened"),
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
        self.open().extend(other.iter());
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
            (Offsets::Sealed16(a), Offsets::Sealed16(b)) => assert!(Arc::ptr_eq(a, b), "copies share the buffer"),
            _ => panic!("sealed offsets stay sealed (as u16) when copied"),
        }
        o.add(2, &true);
        o.add(9, &false);
        o.merge(&copy);
        assert_eq!(o.iter().collect::<Vec<_>>(), [3, 1, 2, 3, 1]);
        assert_eq!(copy.iter().collect::<Vec<_>>(), [3, 1]);
        assert_eq!(Offsets::Open(vec![3, 1]), copy, "equal whichever the variant");
    }

    #[test]
    fn offsets_above_u16_stay_wide() {
        let o = Offsets::sealed(vec![65_535, 65_536, 7]);
        assert!(matches!(o, Offsets::Sealed(_)), "{o:?}");
        assert_eq!(o.count_between(65_535, 65_537), 2);
        assert_eq!(Offsets::sealed(vec![65_535, 7]), Offsets::Open(vec![65_535, 7]));
        assert!(Offsets::sealed(vec![1, 2]) < Offsets::Open(vec![1, 3]), "ordered by the offsets");
    }

    /// The form offsets were encoded in before the `u16` variant (checkpoints written by earlier
    /// versions must read back, and processes of a cluster exchange this form).
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    enum Before {
        Open(Vec<u32>),
        Sealed(Arc<Vec<u32>>),
    }

    #[test]
    fn encoded_as_before_whichever_the_variant() {
        for (now, before) in [
            (Offsets::Open(vec![1, 70_000]), Before::Open(vec![1, 70_000])),
            (Offsets::sealed(vec![1, 70_000]), Before::Sealed(Arc::new(vec![1, 70_000]))),
            (Offsets::sealed(vec![4, 2]), Before::Sealed(Arc::new(vec![4, 2]))),
        ] {
            let bytes = bincode::serialize(&now).unwrap();
            assert_eq!(bytes, bincode::serialize(&before).unwrap(), "{now:?}");
            assert_eq!(bincode::deserialize::<Offsets>(&bytes).unwrap(), now);
            let json = serde_json::to_string(&now).unwrap();
            assert_eq!(json, serde_json::to_string(&before).unwrap());
        }
    }
}
