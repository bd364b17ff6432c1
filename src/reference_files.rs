//! Reference files: parsing the VIN-to-sensor table and the buggy-sensor list, and watching them
//! for edits. An edit becomes a diff (rows added, rows removed) fed into the differential inputs;
//! a file edited into an invalid state is rejected whole and the last good version stays in force.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fleetflow_dataflows::reference::{SensorId, SensorRow};
use fleetflow_dataflows::Vin;

/// A reference file problem: the file, the line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The file could not be read.
    #[error("reference file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A line is invalid.
    #[error("reference file {path}, line {line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Parses `vin,sensor_id,effective_from` rows (a header line and `#` comments are allowed).
pub fn parse_vin_sensors(path: &str, text: &str) -> Result<BTreeSet<(Vin, SensorRow)>, ReferenceError> {
    let mut rows = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |reason: String| ReferenceError::Line { path: path.to_string(), line: i + 1, reason };
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.to_ascii_lowercase().starts_with("vin,")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 3 {
            return Err(err(format!("expected 3 fields vin,sensor_id,effective_from, found {}", fields.len())));
        }
        let vin = Vin::parse(fields[0].as_bytes()).map_err(|e| err(format!("vin {:?}: {e}", fields[0])))?;
        if fields[1].is_empty() {
            return Err(err("sensor_id is empty".into()));
        }
        let effective_from = if fields[2].is_empty() {
            0
        } else {
            fields[2]
                .parse::<u64>()
                .map_err(|_| err(format!("effective_from {:?} is not epoch milliseconds (or empty for always)", fields[2])))?
        };
        if !seen.insert((vin, effective_from)) {
            return Err(err(format!("a second row for vin {vin} with effective_from {effective_from}; keep one")));
        }
        rows.insert((vin, SensorRow { effective_from, sensor: fields[1].to_string() }));
    }
    Ok(rows)
}

/// Parses a `sensor_id` list (a header line and `#` comments are allowed).
pub fn parse_buggy(path: &str, text: &str) -> Result<BTreeSet<SensorId>, ReferenceError> {
    let mut out = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.eq_ignore_ascii_case("sensor_id")) {
            continue;
        }
        if line.contains(',') {
            return Err(ReferenceError::Line { path: path.to_string(), line: i + 1, reason: "expected one sensor_id per line".into() });
        }
        out.insert(line.to_string());
    }
    Ok(out)
}

/// The changes between two versions of a set.
#[derive(Debug, PartialEq)]
pub struct Diff<T> {
    /// In the new version only.
    pub added: Vec<T>,
    /// In the old version only.
    pub removed: Vec<T>,
}

/// What changed from `old` to `new`.
pub fn diff<T: Ord + Clone>(old: &BTreeSet<T>, new: &BTreeSet<T>) -> Diff<T> {
    Diff { added: new.difference(old).cloned().collect(), removed: old.difference(new).cloned().collect() }
}

/// Parses a file's text (`path` for errors) into its rows.
pub type Parser<T> = Box<dyn Fn(&str, &str) -> Result<BTreeSet<T>, ReferenceError>>;

/// A parser for an analysis's reference table: its lines, trimmed, without blank lines and `#`
/// comments, each passing `check`.
pub fn table_parser(check: fn(&str) -> Result<(), String>) -> Parser<String> {
    Box::new(move |path: &str, text: &str| {
        let mut lines = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            check(line).map_err(|reason| ReferenceError::Line { path: path.to_string(), line: i + 1, reason })?;
            lines.insert(line.to_string());
        }
        Ok(lines)
    })
}

/// Watches one reference file and yields diffs of its parsed contents when it changes.
pub struct Watched<T> {
    path: PathBuf,
    parse: Parser<T>,
    stamp: Option<(SystemTime, u64)>,
    current: BTreeSet<T>,
}

impl<T: Ord + Clone> Watched<T> {
    /// Loads `path` now: a missing or invalid file at start-up is an error.
    pub fn open(
        path: &Path,
        parse: impl Fn(&str, &str) -> Result<BTreeSet<T>, ReferenceError> + 'static,
    ) -> Result<(Self, Vec<T>), ReferenceError> {
        let mut w = Watched { path: path.to_path_buf(), parse: Box::new(parse), stamp: None, current: BTreeSet::new() };
        let initial = w.reload()?.map(|d| d.added).unwrap_or_default();
        Ok((w, initial))
    }

    /// Loads `path` now as an edit of `previous` (what it held when a checkpoint saved it): the
    /// rows added and removed since. A missing or invalid file is an error.
    pub fn open_after(
        path: &Path,
        parse: impl Fn(&str, &str) -> Result<BTreeSet<T>, ReferenceError> + 'static,
        previous: BTreeSet<T>,
    ) -> Result<(Self, Diff<T>), ReferenceError> {
        let mut w = Watched { path: path.to_path_buf(), parse: Box::new(parse), stamp: None, current: previous };
        let edit = w.reload()?.unwrap_or(Diff { added: Vec::new(), removed: Vec::new() });
        Ok((w, edit))
    }

    fn stamp(&self) -> Result<(SystemTime, u64), ReferenceError> {
        let meta =
            std::fs::metadata(&self.path).map_err(|source| ReferenceError::Read { path: self.path.display().to_string(), source })?;
        Ok((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()))
    }

    /// Re-reads the file if its modification time or size changed; `Ok(None)` if unchanged.
    pub fn reload(&mut self) -> Result<Option<Diff<T>>, ReferenceError> {
        let stamp = self.stamp()?;
        if self.stamp == Some(stamp) {
            return Ok(None);
        }
        let display = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path).map_err(|source| ReferenceError::Read { path: display.clone(), source })?;
        // Remember the stamp even when the new version is invalid: it is reported once, not every poll.
        self.stamp = Some(stamp);
        let new = (self.parse)(&display, &text)?;
        let d = diff(&self.current, &new);
        self.current = new;
        Ok(Some(d))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIN: &str = "1HGCM82633A004352";

    #[test]
    fn parses_rows_and_reports_the_line() {
        let rows = parse_vin_sensors("r.csv", &format!("vin,sensor_id,effective_from\n{VIN},S1,\n{VIN},S2,1000\n")).unwrap();
        assert_eq!(rows.len(), 2);
        let e = parse_vin_sensors("r.csv", &format!("{VIN},S1,\n{VIN},S2,soon\n")).unwrap_err().to_string();
        assert_eq!(e, "reference file r.csv, line 2: effective_from \"soon\" is not epoch milliseconds (or empty for always)");
        let e = parse_vin_sensors("r.csv", &format!("{VIN},S1,5\n{VIN},S2,5\n")).unwrap_err().to_string();
        assert!(e.contains("second row"), "{e}");
    }

    #[test]
    fn watching_yields_diffs_and_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buggy.csv");
        std::fs::write(&path, "sensor_id\nA\nB\n").unwrap();
        let (mut w, initial) = Watched::open(&path, parse_buggy).unwrap();
        assert_eq!(initial, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(w.reload().unwrap(), None);
        std::fs::write(&path, "sensor_id\nB\nC\nD\n").unwrap();
        let d = w.reload().unwrap().unwrap();
        assert_eq!((d.added, d.removed), (vec!["C".to_string(), "D".to_string()], vec!["A".to_string()]));
        std::fs::write(&path, "sensor_id\nB,oops\n").unwrap();
        assert!(w.reload().is_err());
        std::fs::write(&path, "sensor_id\nB\nC\n").unwrap();
        let d = w.reload().unwrap().unwrap();
        assert_eq!((d.added, d.removed), (vec![], vec!["D".to_string()]), "diffed against the last good version");
    }
}
