//! Where the state store keeps its files: a local folder (shared by a cluster's processes on one
//! machine or a network file system) or an S3 prefix (a cluster's machines, a restart elsewhere).
//! Keys are `/`-separated paths below the location; a write is whole or absent to a reader (a
//! temporary file renamed in a folder; a single PUT in S3, whose listings are strongly consistent).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::store::StoreError;
use crate::aws::AwsSettings;

/// A folder or an S3 bucket and prefix.
pub enum Objects {
    /// Keys are paths below this folder.
    Folder(PathBuf),
    /// Keys are object keys below `prefix` in `bucket`.
    S3 {
        /// The client (with the SDK's retries: a checkpoint write rides out a throttled request).
        client: aws_sdk_s3::Client,
        /// The bucket.
        bucket: String,
        /// The key prefix, empty or ending in `/`.
        prefix: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.display().to_string(), source }
}

impl Objects {
    /// The objects at `location`: `s3://bucket/prefix` (its bucket must exist) or a folder.
    pub fn open(location: &str, aws: &AwsSettings) -> Result<Objects, StoreError> {
        let Some(rest) = location.strip_prefix("s3://") else { return Ok(Objects::Folder(PathBuf::from(location))) };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let setup = |problem: String| StoreError::Setup(format!("checkpoints.dir (--state-dir): {problem}"));
        if bucket.is_empty() {
            return Err(setup(format!("{location:?} names no bucket; use s3://bucket/prefix or a folder")));
        }
        let config = crate::aws::load(aws, "checkpoints").map_err(|e| setup(e.to_string()))?;
        let retries = aws_config::retry::RetryConfig::standard().with_max_attempts(4).with_initial_backoff(Duration::from_millis(200));
        let s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(true).retry_config(retries).build();
        let client = aws_sdk_s3::Client::from_conf(s3);
        let reachable = crate::aws::runtime().block_on(client.head_bucket().bucket(bucket).send());
        if let Err(e) = reachable {
            return Err(setup(format!(
                "bucket {bucket:?} cannot be reached ({}); create it, or check checkpoints.region and the credentials",
                crate::aws::describe(&e)
            )));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Ok(Objects::S3 { client, bucket: bucket.to_string(), prefix })
    }

    /// How a key reads in messages: a path, or `s3://bucket/key`.
    pub fn describe(&self, key: &str) -> String {
        match self {
            Objects::Folder(root) => root.join(key).display().to_string(),
            Objects::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}{key}"),
        }
    }

    fn s3_error<E: std::error::Error>(&self, what: &str, key: &str, e: &E) -> StoreError {
        StoreError::Remote(format!("{what} {}: {}", self.describe(key), crate::aws::describe(e)))
    }

    /// Writes `bytes` at `key`, whole or not at all.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Objects::Folder(root) => {
                let path = root.join(key);
                let (dir, name) = (path.parent().unwrap_or(root), path.file_name().map(|n| n.to_string_lossy().to_string()));
                write_atomically(dir, &name.unwrap_or_default(), bytes)
            }
            Objects::S3 { client, bucket, prefix } => {
                let body = aws_sdk_s3::primitives::ByteStream::from(bytes.to_vec());
                let put = client.put_object().bucket(bucket).key(format!("{prefix}{key}")).body(body).send();
                crate::aws::runtime().block_on(put).map(|_| ()).map_err(|e| self.s3_error("writing", key, &e))
            }
        }
    }

    /// The bytes at `key`, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Objects::Folder(root) => {
                let path = root.join(key);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&path)(e)),
                }
            }
            Objects::S3 { client, bucket, prefix } => crate::aws::runtime().block_on(async {
                let got = client.get_object().bucket(bucket).key(format!("{prefix}{key}")).send().await;
                let out = match got {
                    Ok(out) => out,
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
                    Err(e) => return Err(self.s3_error("reading", key, &e)),
                };
                let body = out.body.collect().await.map_err(|e| self.s3_error("reading", key, &e))?;
                Ok(Some(body.into_bytes().to_vec()))
            }),
        }
    }

    /// The names directly below `dir`: its sub-folders (`folders`) or its files, sorted; a
    /// missing `dir` has none. Hidden names (a writer's temporary files) are left out (in a
    /// folder; S3 has none).
    pub fn list(&self, dir: &str, folders: bool) -> Result<Vec<String>, StoreError> {
        let mut names = match self {
            Objects::Folder(root) => {
                let path = root.join(dir);
                let entries = match std::fs::read_dir(&path) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(io(&path)(e)),
                };
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(io(&path))?;
                    let is_dir = entry.file_type().map_err(io(&entry.path()))?.is_dir();
                    let name = entry.file_name().to_string_lossy().to_string();
                    if is_dir == folders && !name.starts_with('.') {
                        names.push(name);
                    }
                }
                names
            }
            Objects::S3 { .. } => self.s3_list(dir, folders)?,
        };
        names.sort();
        Ok(names)
    }

    fn s3_list(&self, dir: &str, folders: bool) -> Result<Vec<String>, StoreError> {
        let Objects::S3 { client, bucket, prefix } = self else { return Ok(Vec::new()) };
        let below = format!("{prefix}{}/", dir.trim_end_matches('/'));
        let (mut names, mut token) = (Vec::new(), None);
        loop {
            let request = client.list_objects_v2().bucket(bucket).prefix(&below).delimiter("/").set_continuation_token(token.take());
            let page = crate::aws::runtime().block_on(request.send()).map_err(|e| self.s3_error("listing", dir, &e))?;
            if folders {
                let found = page.common_prefixes().iter().filter_map(|p| p.prefix());
                names.extend(found.map(|p| p[below.len()..].trim_end_matches('/').to_string()));
            } else {
                names.extend(page.contents().iter().filter_map(|o| o.key()).map(|k| k[below.len()..].to_string()));
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(names),
            }
        }
    }

    /// Every file below `dir`, at any depth, as paths relative to it (`a/b`), sorted: one
    /// request to S3 for a store's few hundred objects.
    pub fn list_all(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        match self {
            Objects::Folder(_) => {
                for sub in self.list(dir, true)? {
                    names.extend(self.list(&format!("{dir}/{sub}"), false)?.into_iter().map(|n| format!("{sub}/{n}")));
                }
                names.extend(self.list(dir, false)?);
            }
            Objects::S3 { client, bucket, prefix } => {
                let below = format!("{prefix}{}/", dir.trim_end_matches('/'));
                let mut token = None;
                loop {
                    let request = client.list_objects_v2().bucket(bucket).prefix(&below).set_continuation_token(token.take());
                    let page = crate::aws::runtime().block_on(request.send()).map_err(|e| self.s3_error("listing", dir, &e))?;
                    names.extend(page.contents().iter().filter_map(|o| o.key()).map(|k| k[below.len()..].to_string()));
                    match page.next_continuation_token() {
                        Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                        _ => break,
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes the file at `key` (nothing if it is gone).
    pub fn remove_file(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Objects::Folder(root) => {
                let path = root.join(key);
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
                    _ => Ok(()),
                }
            }
            Objects::S3 { client, bucket, prefix } => {
                let delete = client.delete_object().bucket(bucket).key(format!("{prefix}{key}")).send();
                crate::aws::runtime().block_on(delete).map(|_| ()).map_err(|e| self.s3_error("removing", key, &e))
            }
        }
    }

    /// Removes `dir` and everything below it.
    pub fn remove(&self, dir: &str) -> Result<(), StoreError> {
        match self {
            Objects::Folder(root) => {
                let path = root.join(dir);
                match std::fs::remove_dir_all(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
                    _ => Ok(()),
                }
            }
            Objects::S3 { client, bucket, prefix } => {
                // (A checkpoint is a few objects: a part per worker and its marker.)
                for name in self.list(dir, false)? {
                    let key = format!("{dir}/{name}");
                    let delete = client.delete_object().bucket(bucket).key(format!("{prefix}{key}")).send();
                    crate::aws::runtime().block_on(delete).map_err(|e| self.s3_error("removing", &key, &e))?;
                }
                Ok(())
            }
        }
    }
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
