//! The reference tables' versions by the time their edits took effect, so that a checkpoint
//! holds them as of its durable frontier: a restart joins the windows it restores with the
//! tables their outputs were written with, then applies what changed in the files while the job
//! was down as one edit at that frontier (corrections written once, after the restart).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use fleetflow_dataflows::Time;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::reference_files::Diff;

/// The versions of the tables a worker reads (the first worker: it reads the files); shared by
/// its reference sessions, which record edits, and its checkpointer, which saves them.
pub type SharedVersions = Rc<RefCell<ReferenceVersions>>;

/// Each table's rows now and the edits that made them, by session time; rows kept encoded.
#[derive(Default)]
pub struct ReferenceVersions {
    tables: BTreeMap<String, Table>,
}

#[derive(Default)]
struct Table {
    current: BTreeSet<Vec<u8>>,
    /// Oldest first.
    edits: Vec<Edit>,
}

/// An edit: its session time, the rows added and the rows removed.
type Edit = (Time, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Encodes a row as saved (bincode is deterministic: equal rows, equal bytes).
fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    bincode::serialize(row).unwrap_or_default()
}

impl ReferenceVersions {
    /// Table `table` holds `rows` from the start.
    pub fn loaded<'a, T: Serialize + 'a>(&mut self, table: &str, rows: impl IntoIterator<Item = &'a T>) {
        let t = self.tables.entry(table.to_string()).or_default();
        t.current.extend(rows.into_iter().map(encode));
    }

    /// Table `table` changed by `diff` at session time `at`.
    pub fn edited<T: Serialize>(&mut self, table: &str, at: Time, diff: &Diff<T>) {
        let t = self.tables.entry(table.to_string()).or_default();
        let (added, removed): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            (diff.added.iter().map(encode).collect(), diff.removed.iter().map(encode).collect());
        for r in &removed {
            t.current.remove(r);
        }
        t.current.extend(added.iter().cloned());
        t.edits.push((at, added, removed));
    }

    /// Every table as of `durable`: the edits at or after it undone.
    pub fn as_of(&self, durable: Time) -> Vec<(String, Vec<Vec<u8>>)> {
        let mut out = Vec::with_capacity(self.tables.len());
        for (name, t) in &self.tables {
            let mut rows = t.current.clone();
            for (_, added, removed) in t.edits.iter().rev().take_while(|(at, _, _)| *at >= durable) {
                for a in added {
                    rows.remove(a);
                }
                rows.extend(removed.iter().cloned());
            }
            out.push((name.clone(), rows.into_iter().collect()));
        }
        out
    }

    /// Forgets the edits before `durable` (no later checkpoint is taken as of an earlier time).
    pub fn settled_before(&mut self, durable: Time) {
        for t in self.tables.values_mut() {
            t.edits.retain(|(at, _, _)| *at >= durable);
        }
    }
}

/// A saved table's rows, decoded; `None` if a row is not of type `T` (saved by another version).
pub fn decode_rows<T: DeserializeOwned + Ord>(rows: &[Vec<u8>]) -> Option<BTreeSet<T>> {
    rows.iter().map(|r| bincode::deserialize(r).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_as_of_a_time_undoes_the_edits_at_or_after_it() {
        let mut v = ReferenceVersions::default();
        let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        v.loaded("buggy", &s(&["A", "B"]));
        v.edited("buggy", 100, &Diff { added: s(&["C"]), removed: s(&["A"]) });
        v.edited("buggy", 200, &Diff { added: s(&["A"]), removed: s(&["B"]) });
        let at = |v: &ReferenceVersions, t: Time| decode_rows::<String>(&v.as_of(t)[0].1).unwrap().into_iter().collect::<Vec<_>>();
        assert_eq!(at(&v, 100), s(&["A", "B"]), "the edit at 100 is after what was delivered before 100");
        assert_eq!(at(&v, 101), s(&["B", "C"]));
        assert_eq!(at(&v, 201), s(&["A", "C"]));
        v.settled_before(150);
        assert_eq!(at(&v, 150), s(&["B", "C"]), "settled edits stay in force");
        assert!(decode_rows::<u64>(&[vec![1]]).is_none(), "rows of another type");
    }
}
