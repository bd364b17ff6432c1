//! The dead-letter folder: records a sink could not deliver within its retry budget (or that the
//! service can never take, such as one above Firehose's record size limit) are written here with
//! the error, one JSON line per record, so nothing is dropped and each can be sent again.
//! Layout: `DIR/<sink>/<target>/<UTC time>-<writer>-<seq>.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde::Serialize;

/// A sink's dead-letter folder.
pub struct DeadLetter {
    dir: PathBuf,
    tag: String,
    seq: AtomicU64,
}

#[derive(Serialize)]
struct Entry<'a> {
    target: &'a str,
    error: &'a str,
    attempts: u32,
    failed_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

impl DeadLetter {
    /// Dead letters of sink `sink` under `root`, file names tagged with `tag` (the writer).
    pub fn new(root: &Path, sink: &str, tag: String) -> Self {
        DeadLetter { dir: root.join(sink), tag, seq: AtomicU64::new(0) }
    }

    /// Writes `records` (the data as it would have been sent to `target`) with `error`; returns
    /// the file. The file appears whole or not at all.
    pub fn write(&self, target: &str, error: &str, attempts: u32, records: &[&[u8]]) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(sanitize(target));
        std::fs::create_dir_all(&dir)?;
        let failed_at = crate::encode::rfc3339(chrono::Utc::now().timestamp_millis().max(0) as u64);
        let mut body = Vec::new();
        for data in records {
            let (text, b64) = match std::str::from_utf8(data) {
                Ok(s) => (Some(s), None),
                Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(data))),
            };
            let entry = Entry { target, error, attempts, failed_at: failed_at.clone(), data: text, data_base64: b64 };
            serde_json::to_writer(&mut body, &entry).map_err(std::io::Error::other)?;
            body.push(b'\n');
        }
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%3f");
        let name = format!("{stamp}-{}-{:06}.jsonl", self.tag, self.seq.fetch_add(1, Ordering::Relaxed));
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_data()?;
        let path = dir.join(name);
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// A target (delivery stream name, topic ARN) as a folder name.
fn sanitize(target: &str) -> String {
    target.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_each_record_with_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetter::new(dir.path(), "fh", "w000".into());
        let path = dl.write("arn:aws:sns:x:1:t", "throttled", 7, &[b"{\"a\":1}\n", &[0xff, 0x00]]).unwrap();
        assert!(path.starts_with(dir.path().join("fh").join("arn_aws_sns_x_1_t")));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["data"], "{\"a\":1}\n");
        assert_eq!(lines[0]["error"], "throttled");
        assert_eq!(lines[0]["attempts"], 7);
        assert_eq!(lines[1]["data_base64"], "/wA=");
    }
}
