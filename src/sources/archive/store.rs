//! Where an archive of the `raw` stream is kept: a local folder or an S3 prefix, both laid out as
//! Firehose lays out S3 (`<root>/raw/YYYY/MM/DD/HH/<object>`) or Hive style
//! (`<root>/raw/dt=YYYY-MM-DD/hr=HH/<object>`). A store lists one hour's objects and reads an
//! object whole, as lines: plain, gzip or zstd JSON-lines files and Parquet files alike.

use fleetflow_dataflows::Time;

use super::SourceError;
use crate::aws::AwsSettings;

/// One archived object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchiveObject {
    /// Its path (local) or key (S3).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An archive location.
pub enum ArchiveStore {
    /// A folder holding `raw/YYYY/MM/DD/HH/`.
    Local(std::path::PathBuf),
    /// An S3 bucket and key prefix holding `raw/YYYY/MM/DD/HH/`.
    S3 {
        /// The client.
        client: aws_sdk_s3::Client,
        /// The bucket.
        bucket: String,
        /// The key prefix, empty or ending in `/`.
        prefix: String,
    },
}

/// `raw/YYYY/MM/DD/HH` and `raw/dt=YYYY-MM-DD/hr=HH` of an hour number (hours since the epoch):
/// an archive may be in either layout.
fn hour_paths(hour: Time) -> impl Iterator<Item = String> {
    crate::stored_files::layout::Layout::ALL
        .into_iter()
        .map(move |l| format!("raw/{}", l.hour(hour * crate::stored_files::layout::HOUR_MS)))
}

impl ArchiveStore {
    /// The store at `location`: `s3://bucket/prefix` or a folder. S3 uses `aws` for its client.
    pub fn open(location: &str, aws: &AwsSettings) -> Result<ArchiveStore, SourceError> {
        match location.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(SourceError::Setup(format!(
                        "replay.archive (--archive): {location:?} names no bucket; use s3://bucket/prefix or a folder"
                    )));
                }
                let config = crate::aws::load(aws, "archive").map_err(|e| SourceError::Setup(e.to_string()))?;
                let s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build();
                let prefix = prefix.trim_matches('/');
                let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
                Ok(ArchiveStore::S3 { client: aws_sdk_s3::Client::from_conf(s3), bucket: bucket.to_string(), prefix })
            }
            None => {
                let root = std::path::PathBuf::from(location);
                if !root.is_dir() {
                    return Err(SourceError::Setup(format!(
                        "replay.archive (--archive): {location:?} is not a folder; give the folder that holds raw/YYYY/MM/DD/HH (or s3://bucket/prefix)"
                    )));
                }
                Ok(ArchiveStore::Local(root))
            }
        }
    }

    /// The objects of one hour, sorted by name (temporary files of a writer are left out).
    pub fn list(&self, hour: Time) -> Result<Vec<ArchiveObject>, SourceError> {
        let mut out = Vec::new();
        match self {
            ArchiveStore::Local(root) => {
                for path in hour_paths(hour) {
                    list_folder(&root.join(path), &mut out)?;
                }
            }
            ArchiveStore::S3 { client, bucket, prefix } => {
                for path in hour_paths(hour) {
                    list_prefix(client, bucket, &format!("{prefix}{path}/"), &mut out)?;
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// An object's lines (decoded: gzip, zstd and Parquet archives read as plain ones).
    pub fn read(&self, object: &ArchiveObject) -> Result<Vec<u8>, SourceError> {
        let bytes = self.read_bytes(object)?;
        crate::stored_files::format::decode(crate::stream::StreamName::RAW, &object.name, bytes)
            .map_err(|e| SourceError::Setup(format!("archive: reading {}: {e}", self.display(object))))
    }

    /// An object's bytes.
    fn read_bytes(&self, object: &ArchiveObject) -> Result<Vec<u8>, SourceError> {
        match self {
            ArchiveStore::Local(_) => std::fs::read(&object.name).map_err(|source| SourceError::Io { name: object.name.clone(), source }),
            ArchiveStore::S3 { client, bucket, .. } => {
                let name = format!("s3://{bucket}/{}", object.name);
                let fail = |e: String| SourceError::Setup(format!("archive: reading {name}: {e}"));
                crate::aws::runtime().block_on(async {
                    let out =
                        client.get_object().bucket(bucket).key(&object.name).send().await.map_err(|e| fail(crate::aws::describe(&e)))?;
                    let body = out.body.collect().await.map_err(|e| fail(e.to_string()))?;
                    Ok(body.into_bytes().to_vec())
                })
            }
        }
    }

    /// How to name an object in positions and errors.
    pub fn display(&self, object: &ArchiveObject) -> String {
        match self {
            ArchiveStore::Local(_) => object.name.clone(),
            ArchiveStore::S3 { bucket, .. } => format!("s3://{bucket}/{}", object.name),
        }
    }
}

/// The files of the folder `dir` (none if it does not exist), temporary files left out.
fn list_folder(dir: &std::path::Path, out: &mut Vec<ArchiveObject>) -> Result<(), SourceError> {
    let io = |source| SourceError::Io { name: dir.display().to_string(), source };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let meta = entry.metadata().map_err(io)?;
        if meta.is_file() && !hidden {
            out.push(ArchiveObject { name: entry.path().display().to_string(), size: meta.len() });
        }
    }
    Ok(())
}

/// The objects under `key_prefix` in `bucket`.
fn list_prefix(client: &aws_sdk_s3::Client, bucket: &str, key_prefix: &str, out: &mut Vec<ArchiveObject>) -> Result<(), SourceError> {
    let mut token: Option<String> = None;
    loop {
        let request = client.list_objects_v2().bucket(bucket).prefix(key_prefix).set_continuation_token(token.take());
        let page = crate::aws::runtime()
            .block_on(request.send())
            .map_err(|e| SourceError::Setup(format!("archive: listing s3://{bucket}/{key_prefix}: {}", crate::aws::describe(&e))))?;
        for o in page.contents() {
            if let Some(key) = o.key() {
                out.push(ArchiveObject { name: key.to_string(), size: o.size().unwrap_or(0).max(0) as u64 });
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_an_hour_sorted_without_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let hour_dir = dir.path().join("raw/2025/11/25/10");
        std::fs::create_dir_all(&hour_dir).unwrap();
        for name in ["b.jsonl", "a.jsonl", ".c.jsonl.tmp"] {
            std::fs::write(hour_dir.join(name), "x\n").unwrap();
        }
        let store = ArchiveStore::open(dir.path().to_str().unwrap(), &AwsSettings::default()).unwrap();
        let hour = 1_764_064_860_000 / 3_600_000;
        let listed: Vec<String> = store.list(hour).unwrap().iter().map(|o| o.name.rsplit('/').next().unwrap().to_string()).collect();
        assert_eq!(listed, vec!["a.jsonl", "b.jsonl"]);
        assert!(store.list(hour + 1).unwrap().is_empty(), "a missing hour is empty, not an error");
        assert_eq!(store.read(&store.list(hour).unwrap()[0]).unwrap(), b"x\n");
    }

    #[test]
    fn a_missing_folder_or_bucket_names_the_field() {
        let e = ArchiveStore::open("/no/such/archive", &AwsSettings::default()).err().unwrap();
        assert!(e.to_string().contains("replay.archive"), "{e}");
        let e = ArchiveStore::open("s3:///x", &AwsSettings::default()).err().unwrap();
        assert!(e.to_string().contains("names no bucket"), "{e}");
    }
}
