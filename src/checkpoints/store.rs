//! The state store: `<location>/<group>/<name>/part-<worker>-at-<boundary>-of-<peers>.bin` for
//! each worker's part (parts written before the boundary was in the name are read too) and
//! `COMPLETE` once every part is there and all were taken at one boundary, where a checkpoint's
//! name is its boundary (or, for an exact stop's, a time after the stop's frontier: see
//! `job::checkpointer`), in a folder or an S3 prefix (see [`Objects`]). Each file is written
//! whole or not at all, so a crash leaves a checkpoint whole, or without its `COMPLETE` and not
//! restored.
//!
//! A job with increments operators (the reference join's held windows) also writes
//! `incr-<worker>-of-<peers>.bin` before each part. Pruning keeps the increments (and the marker)
//! of every complete checkpoint within the history the job asks for (the correction horizon),
//! and a restore reads them all back: see `fleetflow_dataflows::checkpoint` for why they cover
//! that history.

use std::collections::BTreeMap;

use fleetflow_dataflows::checkpoint::Restored;
use fleetflow_dataflows::Time;

use super::increments::Increments;
use super::objects::Objects;
use super::part::{Part, SavedPosition};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the folder failed.
    #[error("checkpoints.dir: {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A request to the remote store failed (after the client's retries).
    #[error("checkpoints.dir: {0}")]
    Remote(String),
    /// The store cannot be opened as configured.
    #[error("{0}")]
    Setup(String),
    /// A part cannot be read, or does not fit the job.
    #[error("checkpoint {path}: {problem}")]
    Invalid {
        /// The part.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// A checkpoint read back: the boundary, what was delivered, the operators' states (one per
/// worker that saved them) and every partition's position.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Boundary and states, for the dataflow.
    pub restored: Restored,
    /// Outputs before this were delivered: not written again.
    pub durable: Time,
    /// The checkpoint's name (its folder).
    pub name: Time,
    /// Positions by partition name.
    pub positions: BTreeMap<String, SavedPosition>,
    /// The reference tables as of the durable frontier, by table: each row encoded.
    pub references: BTreeMap<String, Vec<Vec<u8>>>,
}

/// One job's checkpoints.
pub struct StateStore {
    objects: Objects,
    /// The job's folder (its Kafka group's name, made safe).
    root: String,
}

const COMPLETE: &str = "COMPLETE";

impl StateStore {
    /// The store of the job reading as Kafka group `group` in `objects`.
    pub fn new(objects: Objects, group: &str) -> Self {
        let safe: String = group.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        StateStore { objects, root: safe }
    }

    /// Where it keeps its checkpoints, for messages.
    pub fn location(&self) -> String {
        self.objects.describe(&self.root)
    }

    fn folder(&self, at: Time) -> String {
        format!("{}/{at:015}", self.root)
    }

    /// Writes `part` of the checkpoint named `name` (whole or not at all); returns its size in bytes.
    pub fn write_part(&self, name: Time, part: &Part) -> Result<u64, StoreError> {
        let bytes = part.encode().map_err(|e| StoreError::Invalid { path: "part".into(), problem: e.to_string() })?;
        // (The boundary in the name lets completion check, without reading the parts, that every
        // worker's part holds its state as of the same boundary.)
        let file = format!("part-{:04}-at-{}-of-{:04}.bin", part.worker, part.at, part.peers);
        // A part this worker wrote under this name at another boundary (a run that stopped
        // before completing the checkpoint) goes first: one part a worker.
        let (folder, mine) = (self.folder(name), format!("part-{:04}-", part.worker));
        for stale in self.objects.list(&folder, false)? {
            if stale != file && stale.starts_with(&mine) && is_part_of(&stale, Some(part.peers)) {
                self.objects.remove_file(&format!("{folder}/{stale}"))?;
            }
        }
        self.objects.put(&format!("{folder}/{file}"), &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Writes this worker's `increments` for the checkpoint named `name` (before its part: a part
    /// written means its increments are).
    pub fn write_increments(&self, name: Time, (worker, peers): (usize, usize), increments: &Increments) -> Result<(), StoreError> {
        let bytes = increments.encode().map_err(|e| StoreError::Invalid { path: "increments".into(), problem: e.to_string() })?;
        self.objects.put(&format!("{}/incr-{worker:04}-of-{peers:04}.bin", self.folder(name)), &bytes)
    }

    /// The parts of the checkpoint named `name` a job of `peers` workers has written (parts a
    /// job of another size left there, killed while writing them, do not count), from one
    /// listing.
    pub fn parts_written(&self, name: Time, peers: usize) -> Result<PartsWritten, StoreError> {
        let files = self.objects.list(&self.folder(name), false)?;
        let parts: Vec<&String> = files.iter().filter(|n| is_part_of(n, Some(peers))).collect();
        Ok(PartsWritten { count: parts.len(), agree: boundaries_agree(parts.into_iter()) })
    }

    /// Marks the checkpoint named `at` complete: every part of the job of `peers` workers is written.
    pub fn complete(&self, at: Time, peers: usize) -> Result<(), StoreError> {
        self.objects.put(&format!("{}/{COMPLETE}", self.folder(at)), peers.to_string().as_bytes())
    }

    /// Marks the checkpoint named `name` complete if a job wrote every part of it (the job died
    /// after committing what it had delivered and before marking it); whether it did so now.
    pub fn complete_if_whole(&self, name: Time) -> Result<bool, StoreError> {
        let files = self.objects.list(&self.folder(name), false)?;
        if files.iter().any(|f| f == COMPLETE) {
            return Ok(false);
        }
        let peers = |f: &String| f.strip_suffix(".bin")?.rsplit_once("-of-")?.1.parse::<usize>().ok();
        for n in files.iter().filter_map(peers).collect::<std::collections::BTreeSet<_>>() {
            let parts: Vec<&String> = files.iter().filter(|f| is_part_of(f, Some(n))).collect();
            if parts.len() == n && boundaries_agree(parts.into_iter()) {
                self.complete(name, n)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The names of the complete checkpoints, oldest first.
    pub fn completed(&self) -> Result<Vec<Time>, StoreError> {
        Ok(self.checkpoints()?.into_iter().filter(|(_, complete)| *complete).map(|(t, _)| t).collect())
    }

    fn boundaries(&self) -> Result<Vec<Time>, StoreError> {
        Ok(self.checkpoints()?.into_iter().map(|(t, _)| t).collect())
    }

    /// Every checkpoint's name and whether it is complete, oldest first (one listing).
    fn checkpoints(&self) -> Result<Vec<(Time, bool)>, StoreError> {
        Ok(checkpoints_in(&self.objects.list_all(&self.root)?))
    }

    /// Removes every checkpoint older than the `keep` latest complete ones (and half-written
    /// ones older than the latest complete one), but keeps the increments and the marker of the
    /// complete ones named after `history_after` (their parts go).
    pub fn prune(&self, keep: usize, history_after: Time) -> Result<(), StoreError> {
        let files = self.objects.list_all(&self.root)?;
        let all = checkpoints_in(&files);
        let completed: Vec<Time> = all.iter().filter(|(_, c)| *c).map(|(t, _)| *t).collect();
        let Some(&oldest_kept) = completed.get(completed.len().saturating_sub(keep.max(1))) else { return Ok(()) };
        for (t, complete) in all.into_iter().filter(|(t, _)| *t < oldest_kept) {
            let folder = format!("{t:015}/");
            let in_folder = files.iter().filter_map(|f| f.strip_prefix(&folder));
            let (mut increments, mut parts) = (false, Vec::new());
            for name in in_folder {
                increments |= name.starts_with("incr-");
                if name.starts_with("part-") {
                    parts.push(name.to_string());
                }
            }
            if complete && increments && t > history_after {
                for name in parts {
                    self.objects.remove_file(&format!("{}/{name}", self.folder(t)))?;
                }
            } else {
                self.objects.remove(&self.folder(t))?;
            }
        }
        Ok(())
    }

    /// Removes every checkpoint (a job that starts afresh, or one that drained its state).
    pub fn clear(&self) -> Result<usize, StoreError> {
        let all = self.boundaries()?;
        for t in &all {
            self.objects.remove(&self.folder(*t))?;
        }
        Ok(all.len())
    }

    /// The latest complete checkpoint, if any, with the increments of the complete checkpoints
    /// within `history` ms before its boundary; `shape` must be the job's.
    pub fn latest(&self, shape: &str, history: Time) -> Result<Option<Loaded>, StoreError> {
        let mut completed = self.completed()?;
        let Some(name) = completed.pop() else { return Ok(None) };
        let dir = self.folder(name);
        let peers = self.peers_of(name)?;
        let mut loaded = Loaded { durable: Time::MAX, name, ..Loaded::default() };
        let mut parts = 0;
        for file in self.objects.list(&dir, false)?.into_iter().filter(|n| is_part_of(n, peers)) {
            let key = format!("{dir}/{file}");
            let part = self.read_part(&key, shape)?;
            parts += 1;
            loaded.restored.at = part.at;
            loaded.durable = loaded.durable.min(part.durable);
            for (operator, state) in part.states {
                loaded.restored.states.entry(operator).or_default().push(state);
            }
            loaded.positions.extend(part.positions.into_iter().map(|p| (p.partition.clone(), p)));
            loaded.references.extend(part.references);
        }
        if parts == 0 {
            return Err(StoreError::Invalid { path: self.objects.describe(&dir), problem: "complete but holds no part".into() });
        }
        if history > 0 {
            let after = loaded.restored.at.saturating_sub(history);
            let within = completed.into_iter().filter(|c| *c > after);
            for c in within {
                self.read_increments((c, self.peers_of(c)?), shape, &mut loaded)?;
            }
            self.read_increments((name, peers), shape, &mut loaded)?;
        }
        Ok(Some(loaded))
    }

    /// The workers of the job that completed the checkpoint named `name` (from its marker).
    fn peers_of(&self, name: Time) -> Result<Option<usize>, StoreError> {
        let marker = self.objects.get(&format!("{}/{COMPLETE}", self.folder(name)))?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&marker).trim().parse().ok())
    }

    /// Adds the increments of the complete checkpoint named `name` (completed by a job of
    /// `peers` workers) to `loaded`.
    fn read_increments(&self, (name, peers): (Time, Option<usize>), shape: &str, loaded: &mut Loaded) -> Result<(), StoreError> {
        let dir = self.folder(name);
        for file in self.objects.list(&dir, false)?.into_iter().filter(|n| is_file_of(n, "incr-", peers)) {
            let read = self.read_checked(&format!("{dir}/{file}"), shape, Increments::decode, |i| &i.shape)?;
            for (operator, increment) in read.increments {
                loaded.restored.increments.entry(operator).or_default().push(increment);
            }
        }
        Ok(())
    }

    /// The part at `key`, refused unless it was taken by a job of `shape`.
    fn read_part(&self, key: &str, shape: &str) -> Result<Part, StoreError> {
        self.read_checked(key, shape, Part::decode, |p| &p.shape)
    }

    /// The file at `key` decoded by `decode`, refused unless it was taken by a job of `shape`
    /// (`shape_of` tells what it was taken by).
    fn read_checked<T>(
        &self,
        key: &str,
        shape: &str,
        decode: fn(&[u8]) -> Result<T, bincode::Error>,
        shape_of: fn(&T) -> &String,
    ) -> Result<T, StoreError> {
        let invalid = |problem: String| StoreError::Invalid { path: self.objects.describe(key), problem };
        let bytes = self.objects.get(key)?.ok_or_else(|| invalid("listed but gone; is another job using this store?".into()))?;
        let read = decode(&bytes).map_err(|e| invalid(format!("{e}; remove {} to start afresh", self.location())))?;
        if shape_of(&read) != shape {
            return Err(invalid(format!(
                "was taken by a job computing {:?}, this one computes {shape:?}; run with the same windows and analyses, or remove {} (or start with --start earliest) to start afresh",
                shape_of(&read),
                self.location()
            )));
        }
        Ok(read)
    }
}

/// Every checkpoint's name and whether it is complete, oldest first, from a listing of the
/// store's files (`<name>/<file>`).
fn checkpoints_in(files: &[String]) -> Vec<(Time, bool)> {
    let mut all: BTreeMap<Time, bool> = BTreeMap::new();
    for key in files {
        let Some((folder, name)) = key.split_once('/') else { continue };
        if let Ok(t) = folder.parse() {
            *all.entry(t).or_default() |= name == COMPLETE;
        }
    }
    all.into_iter().collect()
}

/// Whether a file is a part written by a job of `peers` workers (any, if none is given).
fn is_part_of(name: &str, peers: Option<usize>) -> bool {
    is_file_of(name, "part-", peers)
}

/// The parts of a checkpoint written so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartsWritten {
    /// How many.
    pub count: usize,
    /// Whether they hold state as of one boundary. An exact stop's or an idle input's
    /// checkpoint is named after a frontier, and its workers agree on a boundary below it (see
    /// `job::checkpointer`); were the parts at different boundaries, a restore would give some
    /// vehicles' state as of one and others' as of another while each source re-reads from its
    /// own worker's boundary, losing or counting twice the readings between. Such a checkpoint
    /// is never completed.
    pub agree: bool,
}

/// Whether the parts named hold state as of one boundary (parts named without it agree).
fn boundaries_agree<'a>(parts: impl Iterator<Item = &'a String>) -> bool {
    let at = |name: &str| name.split_once("-at-").and_then(|(_, rest)| rest.split_once("-of-")).and_then(|(at, _)| at.parse::<Time>().ok());
    let boundaries: std::collections::BTreeSet<Time> = parts.filter_map(|n| at(n)).collect();
    boundaries.len() <= 1
}

/// Whether a file is one of `kind` (`part-`, `incr-`) written by a job of `peers` workers (any,
/// if none is given).
fn is_file_of(name: &str, kind: &str, peers: Option<usize>) -> bool {
    name.starts_with(kind) && peers.is_none_or(|p| name.ends_with(&format!("-of-{p:04}.bin")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(at: Time, worker: usize, durable: Time) -> Part {
        Part {
            at,
            durable,
            worker,
            peers: 2,
            shape: "s".into(),
            states: vec![("daily_speeders.days".into(), vec![worker as u8])],
            positions: vec![SavedPosition {
                partition: format!("t/{worker}"),
                offset: 10,
                max_ts: Some(at),
                read_to: None,
                delivered: Vec::new(),
                source_state: Vec::new(),
            }],
            references: Vec::new(),
        }
    }

    #[test]
    fn a_checkpoint_whose_parts_hold_state_as_of_different_boundaries_is_never_completed() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(Objects::Folder(dir.path().to_path_buf()), "group/1");
        // An exact stop's checkpoint, named after the frontier: one worker's state as of 120 s,
        // the other's as of 180 s.
        store.write_part(200_001, &part(120_000, 0, 200_000)).unwrap();
        store.write_part(200_001, &part(180_000, 1, 200_000)).unwrap();
        assert_eq!(store.parts_written(200_001, 2).unwrap().count, 2);
        assert!(!store.parts_written(200_001, 2).unwrap().agree);
        assert!(!store.complete_if_whole(200_001).unwrap(), "a restart does not complete it either");
        store.write_part(240_000, &part(240_000, 0, 240_000)).unwrap();
        store.write_part(240_000, &part(240_000, 1, 240_000)).unwrap();
        assert!(store.parts_written(240_000, 2).unwrap().agree);
        assert!(store.complete_if_whole(240_000).unwrap());
        assert_eq!(store.latest("s", 0).unwrap().unwrap().restored.at, 240_000);
        // A worker's part written again at another boundary replaces its earlier one.
        store.write_part(200_001, &part(120_000, 1, 200_000)).unwrap();
        assert_eq!(store.parts_written(200_001, 2).unwrap().count, 2);
        assert!(store.parts_written(200_001, 2).unwrap().agree);
        // Parts named before the boundary was in the name agree with anything.
        assert!(boundaries_agree(["part-0000-of-0002.bin".to_string(), "part-0001-at-5-of-0002.bin".to_string()].iter()));
        assert!(!boundaries_agree(["part-0000-at-6-of-0002.bin".to_string(), "part-0001-at-5-of-0002.bin".to_string()].iter()));
    }

    #[test]
    fn the_latest_complete_checkpoint_is_read_back_whole_and_old_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(Objects::Folder(dir.path().to_path_buf()), "group/1");
        assert!(store.latest("s", 0).unwrap().is_none());
        for at in [60_000, 120_000, 180_000, 240_000] {
            store.write_part(at, &part(at, 0, at)).unwrap();
            store.write_part(at, &part(at, 1, at)).unwrap();
            assert_eq!(store.parts_written(at, 2).unwrap().count, 2);
            store.complete(at, 2).unwrap();
        }
        store.write_part(300_000, &part(300_000, 0, 300_000)).unwrap(); // half written: not complete
        let loaded = store.latest("s", 0).unwrap().unwrap();
        assert_eq!((loaded.restored.at, loaded.durable), (240_000, 240_000), "the latest complete");
        assert_eq!(loaded.restored.states["daily_speeders.days"].len(), 2);
        assert_eq!(loaded.positions.keys().collect::<Vec<_>>(), ["t/0", "t/1"]);
        store.prune(2, 0).unwrap();
        assert_eq!(store.completed().unwrap(), [180_000, 240_000]);
        assert_eq!(store.parts_written(300_000, 2).unwrap().count, 1, "newer half-written checkpoints stay");
        // A part a job of 4 workers left at 240 s (killed while writing) is not read with those of 2.
        store.write_part(240_000, &Part { peers: 4, worker: 3, ..part(240_000, 3, 240_000) }).unwrap();
        assert_eq!(store.parts_written(240_000, 2).unwrap().count, 2);
        assert_eq!(store.latest("s", 0).unwrap().unwrap().positions.len(), 2);
        let e = store.latest("other", 0).unwrap_err().to_string();
        assert!(e.contains("start afresh") && e.contains("\"s\""), "{e}");
        // An exact stop's checkpoint: the state as of 240 s, everything before 250 s delivered,
        // named after that frontier.
        for worker in [0, 1] {
            store.write_part(250_001, &part(240_000, worker, 250_000)).unwrap();
        }
        store.complete(250_001, 2).unwrap();
        let loaded = store.latest("s", 0).unwrap().unwrap();
        assert_eq!((loaded.restored.at, loaded.durable), (240_000, 250_000));
        // A checkpoint whose parts are all written but which was not marked: completed on demand.
        store.write_part(300_000, &part(300_000, 1, 300_000)).unwrap();
        assert!(!store.complete_if_whole(250_001).unwrap(), "already complete");
        assert!(store.complete_if_whole(300_000).unwrap());
        assert_eq!(store.latest("s", 0).unwrap().unwrap().restored.at, 300_000);
        store.write_part(360_000, &part(360_000, 1, 360_000)).unwrap();
        assert!(!store.complete_if_whole(360_000).unwrap(), "one part of two");
        assert_eq!(store.clear().unwrap(), 5);
        assert!(store.latest("s", 0).unwrap().is_none());
        assert!(store.location().ends_with("group_1"), "a group name is a folder name");
    }

    #[test]
    fn increments_of_complete_checkpoints_within_the_history_are_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(Objects::Folder(dir.path().to_path_buf()), "g");
        let incr = |at: Time, worker: u8| Increments {
            at,
            shape: "s".into(),
            increments: vec![("held".into(), vec![worker, (at / 60_000) as u8])],
        };
        for at in [60_000, 120_000, 180_000, 240_000, 300_000] {
            for worker in [0, 1] {
                store.write_increments(at, (worker, 2), &incr(at, worker as u8)).unwrap();
                store.write_part(at, &part(at, worker, at)).unwrap();
            }
            if at != 180_000 {
                store.complete(at, 2).unwrap(); // 180 s never completed: its increments are not read
            }
        }
        // Half written.
        store.write_increments(360_000, (0, 2), &incr(360_000, 0)).unwrap();
        // Keep 2 whole; the increments of complete checkpoints after 300 s - 200 s.
        store.prune(2, 100_000).unwrap();
        let files = |at: Time| Objects::Folder(dir.path().to_path_buf()).list(&format!("g/{at:015}"), false).unwrap();
        assert!(files(60_000).is_empty(), "before the history: removed");
        assert_eq!(files(120_000), ["COMPLETE", "incr-0000-of-0002.bin", "incr-0001-of-0002.bin"], "parts gone, increments kept");
        assert!(files(180_000).is_empty(), "never completed: removed");
        assert_eq!(files(240_000).len(), 5, "among the 2 kept whole");
        let loaded = store.latest("s", 200_000).unwrap().unwrap();
        assert_eq!(loaded.restored.at, 300_000);
        let mut read: Vec<Vec<u8>> = loaded.restored.increments["held"].clone();
        read.sort();
        assert_eq!(read, [[0, 2], [0, 4], [0, 5], [1, 2], [1, 4], [1, 5]], "120, 240 and 300 s, both workers");
        let loaded = store.latest("s", 0).unwrap().unwrap();
        assert!(loaded.restored.increments.is_empty(), "no history asked for");
    }
}
