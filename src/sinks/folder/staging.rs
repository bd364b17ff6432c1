//! Where a sealed folder's records wait for the checkpoints (see [`super::staged`] for why and
//! when): `ROOT/.staged/<worker's run tag>/pending/` and one folder per checkpoint name beside
//! it, holding pieces of files at the paths the files will have under `ROOT`, with a `.done`
//! mark beside the last piece of a complete file; and `ROOT/.staged/carried/<run>-<checkpoint>/`,
//! what a restart keeps of earlier runs' pieces. Folders are renamed whole, never merged, so a
//! crash at any moment leaves each piece in exactly one place.

use std::path::{Path, PathBuf};

use fleetflow_dataflows::Time;

use crate::sinks::SinkError;

/// Writes a file into its place under the sealed folder's root: `(relative path, lines)`.
pub type Publish<'a> = dyn FnMut(&Path, Vec<Vec<u8>>) -> Result<(), SinkError> + 'a;

const PENDING: &str = "pending";
const CARRIED: &str = "carried";
/// The mark of a file whose hour is complete, beside its last piece.
const DONE: &str = ".done";

/// One worker's staged pieces.
pub struct Staging {
    /// `ROOT/.staged`.
    staged: PathBuf,
    /// This worker's folder in it, for this run.
    own: PathBuf,
    /// Tags at or below this belong to the checkpoint this run restored (see [`Staging::tag`]).
    floor: Time,
}

impl Staging {
    /// The staging of the worker whose run tag is `tag`, under the sealed folder `root`.
    pub fn new(root: &Path, tag: &str) -> Self {
        let staged = root.join(".staged");
        Staging { own: staged.join(tag), staged, floor: 0 }
    }

    /// Stages `lines` as a piece of the file at `relative` (a path under the root), `done` if
    /// its hour is complete.
    pub fn stage(&self, relative: &Path, lines: Vec<Vec<u8>>, done: bool) -> Result<(), SinkError> {
        let path = self.own.join(PENDING).join(relative);
        if !lines.is_empty() {
            append(&path, lines)?;
        }
        if done {
            super::write_atomically(&marked(&path), b"")?;
        }
        Ok(())
    }

    /// Checkpoint `name` is about to take this worker's part: what is pending becomes its. (A
    /// name not above the checkpoint this run restored cannot complete in this run: its pieces
    /// wait for the next one that can.)
    pub fn tag(&self, name: Time) -> Result<(), SinkError> {
        let pending = self.own.join(PENDING);
        if !pending.exists() {
            return Ok(());
        }
        // (The same checkpoint written again gets a folder of its own beside the first: folders
        // are renamed, never merged, so a crash anywhere leaves each piece in one place.)
        let tag = format!("{:020}", name.max(self.floor + 1));
        let tagged = (0..).map(|k| if k == 0 { self.own.join(&tag) } else { self.own.join(format!("{tag}-{k}")) }).find(|p| !p.exists());
        let tagged = tagged.unwrap_or_else(|| self.own.join(&tag));
        std::fs::rename(&pending, &tagged).map_err(io(&pending))
    }

    /// Checkpoint `name` is complete (`MAX`: the run ended with everything delivered, pending
    /// included): writes every file this worker marked done up to it, from its pieces (carried
    /// ones too), and the carried files of the hours it `owns` that are done or whose hour the
    /// checkpoint is past (no record joins them any more). Only a file's owner writes it.
    pub fn complete(&self, name: Time, owns: impl Fn(&Path) -> bool, publish: &mut Publish<'_>) -> Result<(), SinkError> {
        let tags = tags_up_to(&self.own, name);
        let carried = subfolders(&self.staged.join(CARRIED));
        let done: Vec<PathBuf> = tags.iter().flat_map(|t| marks_under(t)).collect();
        for relative in done {
            let sources: Vec<&Path> = tags.iter().chain(&carried).map(PathBuf::as_path).collect();
            publish_file(&relative, &sources, publish)?;
        }
        remove_empty(&self.own);
        if !carried.is_empty() {
            // (Checkpoint names lie at most 2 ms above their durable frontier.)
            let marked: Vec<PathBuf> = carried.iter().flat_map(|c| marks_under(c)).collect();
            let due = |r: &PathBuf| name == Time::MAX || marked.contains(r) || completion_end(r).is_some_and(|end| end + 2 < name);
            let mut pieces: Vec<PathBuf> = carried.iter().flat_map(|c| pieces_under(c)).filter(|r| owns(r) && due(r)).collect();
            pieces.sort();
            pieces.dedup();
            let sources: Vec<&Path> = carried.iter().map(PathBuf::as_path).collect();
            for relative in pieces {
                publish_file(&relative, &sources, publish)?;
            }
            remove_empty(&self.staged.join(CARRIED));
        }
        Ok(())
    }

    /// A restart from checkpoint `name` (0: from none). The job's first worker (`first`) carries
    /// what earlier runs staged up to `name` (their owners in this run write them, see
    /// [`Staging::complete`]) and removes everything else they staged. It runs before the
    /// worker's dataflow exists, so before any worker of the job stages or writes anything (no
    /// checkpoint completes before every worker has built its dataflow).
    pub fn restore(&mut self, name: Time, first: bool) -> Result<(), SinkError> {
        self.floor = name;
        if !first {
            return Ok(());
        }
        let carried = self.staged.join(CARRIED);
        let Ok(entries) = std::fs::read_dir(&self.staged) else { return Ok(()) };
        let runs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.ends_with(CARRIED)).collect();
        for run in runs {
            // Each tag folder is renamed whole into `carried` (one rename: a crash leaves it on
            // one side or the other, never on both), then the rest of the run is removed.
            let run_name = run.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            for tag in tags_up_to(&run, name) {
                let tag_name = tag.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                std::fs::create_dir_all(&carried).map_err(io(&carried))?;
                let to = carried.join(format!("{run_name}-{tag_name}"));
                std::fs::rename(&tag, &to).map_err(io(&tag))?;
            }
            std::fs::remove_dir_all(&run).map_err(io(&run))?;
        }
        Ok(())
    }
}

/// The event hour of the sealed file at `relative` (`<stream>/YYYY/MM/DD/HH/<name>`), in hours
/// since the epoch: what decides which worker writes it.
pub fn event_hour(relative: &Path) -> Option<Time> {
    let parts: Vec<&str> = relative.iter().filter_map(|c| c.to_str()).collect();
    let folders = parts.get(1..parts.len().checked_sub(1)?)?;
    crate::stored_files::layout::Layout::parse_hour(folders)
}

/// The tag folders under `dir` up to `name`, oldest first (`pending` counts as `MAX`).
fn tags_up_to(dir: &Path, name: Time) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut tags: Vec<(Time, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            let number = n.split_once('-').map_or(n.as_str(), |(number, _)| number);
            let tag = if n == PENDING { Time::MAX } else { number.parse().ok()? };
            Some((tag, e.path()))
        })
        .filter(|(tag, _)| *tag <= name)
        .collect();
    tags.sort();
    tags.into_iter().map(|(_, p)| p).collect()
}

/// Publishes the file at `relative` from its pieces in `sources`, and removes them and its mark.
fn publish_file(relative: &Path, sources: &[&Path], publish: &mut Publish<'_>) -> Result<(), SinkError> {
    let mut lines = Vec::new();
    for source in sources {
        if let Ok(bytes) = std::fs::read(source.join(relative)) {
            lines.extend(lines_of(&bytes));
        }
    }
    if !lines.is_empty() {
        publish(relative, lines)?;
    }
    // (Published before the pieces go: a crash in between publishes them again, merged.)
    for source in sources {
        for path in [source.join(relative), marked(&source.join(relative))] {
            if path.exists() {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
    }
    Ok(())
}

/// The folders in `dir`, sorted (none if it does not exist).
fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    out.sort();
    out
}

/// Adds `lines` to the piece at `path`, kept sorted.
fn append(path: &Path, mut lines: Vec<Vec<u8>>) -> Result<(), SinkError> {
    if let Ok(existing) = std::fs::read(path) {
        lines.extend(lines_of(&existing));
    }
    lines.sort_unstable();
    super::write_atomically(path, &lines.concat())
}

/// The pieces under `dir` (not the marks), as paths relative to it.
fn pieces_under(dir: &Path) -> Vec<PathBuf> {
    let pieces = files_under(dir).into_iter().filter(|f| !is_mark(f));
    pieces.filter_map(|p| Some(p.strip_prefix(dir).ok()?.to_path_buf())).collect()
}

/// The end of the hour a sealed file completes (its name's `<stream>-YYYYMMDDTHH.jsonl`).
fn completion_end(relative: &Path) -> Option<Time> {
    let stem = crate::stored_files::format::stem(relative.file_name()?.to_str()?);
    let (_, hour) = stem.rsplit_once('-')?;
    let start = match chrono::NaiveDateTime::parse_from_str(&format!("{hour}00"), "%Y%m%dT%H%M") {
        Ok(t) => Time::try_from(t.and_utc().timestamp_millis()).ok()?,
        Err(_) => hour.parse::<Time>().ok()?.checked_mul(HOUR)?,
    };
    start.checked_add(HOUR)
}

const HOUR: Time = 3_600_000;

/// The files marked done under `dir`, as paths relative to it.
fn marks_under(dir: &Path) -> Vec<PathBuf> {
    let marks = files_under(dir).into_iter().filter(|f| is_mark(f));
    marks.filter_map(|m| Some(m.strip_prefix(dir).ok()?.with_extension(""))).collect()
}

fn marked(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(DONE);
    PathBuf::from(name)
}

fn is_mark(path: &Path) -> bool {
    path.to_string_lossy().ends_with(DONE)
}

/// The lines of a file, each with its newline.
fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// The files under `root` (not the temporary ones of an interrupted write; marks included), sorted.
pub(super) fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !e.file_name().to_string_lossy().starts_with('.') || is_mark(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Removes the empty folders under `root` (and `root` if it ends up empty).
fn remove_empty(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        if e.path().is_dir() {
            remove_empty(&e.path());
        }
    }
    // (Fails, as it should, unless empty.)
    let _ = std::fs::remove_dir(root);
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_event_hour_and_completion_come_from_its_path_in_either_layout() {
        let hour = 1_764_064_800_000 / HOUR; // 2025-11-25T10
        for relative in ["alerts/2025/11/25/10/alerts-20251125T11.jsonl", "alerts/dt=2025-11-25/hr=10/alerts-20251125T11.parquet"] {
            assert_eq!(event_hour(Path::new(relative)), Some(hour), "{relative}");
            assert_eq!(completion_end(Path::new(relative)), Some((hour + 2) * HOUR), "{relative}");
        }
        assert_eq!(event_hour(Path::new("alerts/2025/11/25/x.jsonl")), None);
    }

    /// What `complete` publishes: relative path and lines.
    fn publish_all(staging: &Staging, name: Time) -> Vec<(PathBuf, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut publish = |r: &Path, lines: Vec<Vec<u8>>| {
            out.push((r.to_path_buf(), lines));
            Ok(())
        };
        staging.complete(name, |_| true, &mut publish).unwrap();
        out
    }

    #[test]
    fn pieces_carried_or_tagged_twice_are_published_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = Path::new("raw/2025/11/25/10/raw-20251125T10.jsonl");
        let a = Staging::new(dir.path(), "run-a");
        a.stage(file, vec![b"r1\n".to_vec()], false).unwrap();
        a.tag(5).unwrap();
        // The same checkpoint's part written again (a retried part): a folder of its own.
        a.stage(file, vec![b"r2\n".to_vec()], true).unwrap();
        a.tag(5).unwrap();
        assert!(dir.path().join(".staged/run-a/00000000000000000005-1").is_dir());
        // A crash after some of the run's folders were carried: the next restore carries the
        // rest; nothing is carried twice.
        let carried = dir.path().join(".staged/carried");
        std::fs::create_dir_all(&carried).unwrap();
        std::fs::rename(dir.path().join(".staged/run-a/00000000000000000005"), carried.join("run-a-00000000000000000005")).unwrap();
        let mut b = Staging::new(dir.path(), "run-b");
        b.restore(5, true).unwrap();
        let mut c = Staging::new(dir.path(), "run-c");
        c.restore(5, true).unwrap();
        assert!(!dir.path().join(".staged/run-a").exists());
        let published = publish_all(&c, 6);
        assert_eq!(published, vec![(file.to_path_buf(), vec![b"r1\n".to_vec(), b"r2\n".to_vec()])]);
        assert!(publish_all(&c, 7).is_empty(), "published pieces are gone");
    }
}
