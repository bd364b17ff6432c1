//! The state store: a local folder, `DIR/<group>/<boundary>/part-<worker>-of-<peers>.bin` for
//! each worker's part and `COMPLETE` once every part is there. Files are written atomically
//! (a temporary name, synced, renamed) so a crash leaves a checkpoint whole or absent.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use fleetflow_dataflows::checkpoint::Restored;
use fleetflow_dataflows::Time;

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
    /// A part cannot be read, or does not fit the job.
    #[error("checkpoint {path}: {problem}")]
    Invalid {
        /// The part.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.display().to_string(), source }
}

/// A checkpoint read back: the boundary, what was delivered, the operators' states (one per
/// worker that saved them) and every partition's position.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Boundary and states, for the dataflow.
    pub restored: Restored,
    /// Outputs before this were delivered: not written again.
    pub durable: Time,
    /// Positions by partition name.
    pub positions: BTreeMap<String, SavedPosition>,
}

/// One job's checkpoints in a folder.
pub struct FolderStore {
    root: PathBuf,
}

const COMPLETE: &str = "COMPLETE";

impl FolderStore {
    /// The store of the job reading as Kafka group `group` under `dir`.
    pub fn new(dir: &Path, group: &str) -> Self {
        let safe: String = group.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        FolderStore { root: dir.join(safe) }
    }

    /// Where it keeps its checkpoints.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn folder(&self, at: Time) -> PathBuf {
        self.root.join(format!("{at:015}"))
    }

    /// Writes `part` (atomically); returns its size in bytes.
    pub fn write_part(&self, part: &Part) -> Result<u64, StoreError> {
        let bytes = bincode::serialize(part).map_err(|e| StoreError::Invalid { path: "part".into(), problem: e.to_string() })?;
        let dir = self.folder(part.at);
        write_atomically(&dir, &format!("part-{:04}-of-{:04}.bin", part.worker, part.peers), &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// How many parts of the checkpoint at `at` a job of `peers` workers has written (parts a
    /// job of another size left there, killed while writing them, do not count).
    pub fn parts_written(&self, at: Time, peers: usize) -> usize {
        let Ok(entries) = std::fs::read_dir(self.folder(at)) else { return 0 };
        entries.flatten().filter(|e| is_part_of(&e.file_name().to_string_lossy(), Some(peers))).count()
    }

    /// Marks the checkpoint at `at` complete: every part of the job of `peers` workers is written.
    pub fn complete(&self, at: Time, peers: usize) -> Result<(), StoreError> {
        write_atomically(&self.folder(at), COMPLETE, peers.to_string().as_bytes())
    }

    /// The boundaries of the complete checkpoints, oldest first.
    pub fn completed(&self) -> Vec<Time> {
        self.boundaries().into_iter().filter(|t| self.folder(*t).join(COMPLETE).exists()).collect()
    }

    fn boundaries(&self) -> Vec<Time> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Vec::new() };
        let mut all: Vec<Time> = entries.flatten().filter_map(|e| e.file_name().to_string_lossy().parse().ok()).collect();
        all.sort_unstable();
        all
    }

    /// Removes every checkpoint older than the `keep` latest complete ones (and half-written
    /// ones older than the latest complete one).
    pub fn prune(&self, keep: usize) -> Result<(), StoreError> {
        let completed = self.completed();
        let Some(&oldest_kept) = completed.get(completed.len().saturating_sub(keep.max(1))) else { return Ok(()) };
        for t in self.boundaries().into_iter().filter(|t| *t < oldest_kept) {
            let dir = self.folder(t);
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }

    /// Removes every checkpoint (a job that starts afresh, or one that drained its state).
    pub fn clear(&self) -> Result<usize, StoreError> {
        let all = self.boundaries();
        for t in &all {
            let dir = self.folder(*t);
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(all.len())
    }

    /// The latest complete checkpoint, if any; `shape` must be the job's.
    pub fn latest(&self, shape: &str) -> Result<Option<Loaded>, StoreError> {
        let Some(at) = self.completed().pop() else { return Ok(None) };
        let dir = self.folder(at);
        let peers = std::fs::read_to_string(dir.join(COMPLETE)).ok().and_then(|p| p.trim().parse().ok());
        let mut loaded = Loaded { durable: Time::MAX, ..Loaded::default() };
        loaded.restored.at = at;
        let mut parts = 0;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let path = entry.path();
            if !is_part_of(&entry.file_name().to_string_lossy(), peers) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let invalid = |problem: String| StoreError::Invalid { path: path.display().to_string(), problem };
            let part: Part =
                bincode::deserialize(&bytes).map_err(|e| invalid(format!("{e}; remove {} to start afresh", self.root.display())))?;
            if part.shape != shape {
                return Err(invalid(format!(
                    "was taken by a job computing {:?}, this one computes {shape:?}; run with the same windows and analyses, or remove {} (or start with --start earliest) to start afresh",
                    part.shape,
                    self.root.display()
                )));
            }
            parts += 1;
            loaded.durable = loaded.durable.min(part.durable);
            for (name, state) in part.states {
                loaded.restored.states.entry(name).or_default().push(state);
            }
            loaded.positions.extend(part.positions.into_iter().map(|p| (p.partition.clone(), p)));
        }
        if parts == 0 {
            return Err(StoreError::Invalid { path: dir.display().to_string(), problem: "complete but holds no part".into() });
        }
        Ok(Some(loaded))
    }
}

/// Whether a file is a part written by a job of `peers` workers (any, if none is given).
fn is_part_of(name: &str, peers: Option<usize>) -> bool {
    name.starts_with("part-") && peers.is_none_or(|p| name.ends_with(&format!("-of-{p:04}.bin")))
}

/// Writes `name` in `dir` through a temporary file, synced, then renamed.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(io(&tmp))?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
            positions: vec![SavedPosition { partition: format!("t/{worker}"), offset: 10, max_ts: Some(at), read_to: None }],
        }
    }

    #[test]
    fn the_latest_complete_checkpoint_is_read_back_whole_and_old_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path(), "group/1");
        assert!(store.latest("s").unwrap().is_none());
        for at in [60_000, 120_000, 180_000, 240_000] {
            store.write_part(&part(at, 0, at)).unwrap();
            store.write_part(&part(at, 1, at + 5)).unwrap();
            assert_eq!(store.parts_written(at, 2), 2);
            store.complete(at, 2).unwrap();
        }
        store.write_part(&part(300_000, 0, 300_000)).unwrap(); // half written: not complete
        let loaded = store.latest("s").unwrap().unwrap();
        assert_eq!((loaded.restored.at, loaded.durable), (240_000, 240_000), "the latest complete; delivered below the lowest part's");
        assert_eq!(loaded.restored.states["daily_speeders.days"].len(), 2);
        assert_eq!(loaded.positions.keys().collect::<Vec<_>>(), ["t/0", "t/1"]);
        store.prune(2).unwrap();
        assert_eq!(store.completed(), [180_000, 240_000]);
        assert_eq!(store.parts_written(300_000, 2), 1, "newer half-written checkpoints stay");
        // A part a job of 4 workers left at 240 s (killed while writing) is not read with those of 2.
        store.write_part(&Part { peers: 4, worker: 3, ..part(240_000, 3, 240_000) }).unwrap();
        assert_eq!(store.parts_written(240_000, 2), 2);
        assert_eq!(store.latest("s").unwrap().unwrap().positions.len(), 2);
        let e = store.latest("other").unwrap_err().to_string();
        assert!(e.contains("start afresh") && e.contains("\"s\""), "{e}");
        assert_eq!(store.clear().unwrap(), 3);
        assert!(store.latest("s").unwrap().is_none());
        assert!(store.root().ends_with("group_1"), "a group name is a folder name");
    }
}
