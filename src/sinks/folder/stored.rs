//! The folder sink's records read back: every published file under the day's hour folders
//! (temporary files, whose names start with a dot, are not published yet).

use std::path::PathBuf;

use fleetflow_dataflows::Time;

use crate::operations::stored_records::StoredRecords;

/// A folder sink's root, read back.
pub struct FolderStore {
    /// The sink's `path`.
    pub root: PathBuf,
    /// Its hour folders' names.
    pub layout: crate::stored_files::layout::Layout,
}

impl StoredRecords for FolderStore {
    fn day(&self, stream: &str, day: Time) -> Option<Vec<Vec<u8>>> {
        let mut found: Option<Vec<Vec<u8>>> = None;
        let parsed = crate::stream::StreamName::parse(stream)?;
        let mut stack = vec![self.root.join(stream).join(self.layout.day(day))];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for path in entries.flatten().map(|e| e.path()) {
                if path.is_dir() {
                    stack.push(path);
                } else if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    // A file that cannot be decoded reads as none (the job logs nothing per query).
                    let text = crate::stored_files::format::decode(parsed, &path.display().to_string(), bytes).unwrap_or_default();
                    let lines = found.get_or_insert_with(Vec::new);
                    lines.extend(text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_its_published_files_across_its_hours() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for (hour, file, text) in [
            ("00", "speeders-w000-x-000000.jsonl", "{\"a\":1}\n{\"a\":2}\n"),
            ("13", "speeders-w001-x-000000.jsonl", "{\"a\":3}\n"),
            ("13", ".speeders-w001-x-000001.jsonl.tmp", "{\"a\":4}\n"),
        ] {
            let d = root.join("speeders/2025/11/25").join(hour);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), text).unwrap();
        }
        let store = FolderStore { root, layout: crate::stored_files::layout::Layout::Hourly };
        let day = 1_764_028_800_000; // 2025-11-25
        let mut lines = store.day("speeders", day).unwrap();
        lines.sort();
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec(), b"{\"a\":3}".to_vec()], "temporary files are not read");
        assert!(store.day("speeders", day + 86_400_000).is_none(), "a day never written: nothing stored");
        assert!(store.day("alerts", day).is_none());
    }
}
