//! Where a sealed sink's files are published: a local folder (each file written atomically) or,
//! for the S3 sink, a bucket (each object uploaded whole, visible only once complete). The sealed
//! sinks name files by their path under the store's root and never touch the medium themselves.

use std::path::{Path, PathBuf};

use crate::sinks::SinkError;

/// A place to publish whole files in.
pub trait FileStore {
    /// The file at `relative` (from the root), if there is one.
    fn read(&self, relative: &Path) -> Result<Option<Vec<u8>>, SinkError>;
    /// Publishes `bytes` as the file at `relative`: whole or not at all, replacing what was there.
    fn write(&self, relative: &Path, bytes: &[u8]) -> Result<(), SinkError>;
}

/// A local folder.
pub struct LocalFolder {
    /// The folder.
    pub root: PathBuf,
}

impl FileStore for LocalFolder {
    fn read(&self, relative: &Path) -> Result<Option<Vec<u8>>, SinkError> {
        let path = self.root.join(relative);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SinkError::Io { path: path.display().to_string(), source }),
        }
    }

    fn write(&self, relative: &Path, bytes: &[u8]) -> Result<(), SinkError> {
        super::write_atomically(&self.root.join(relative), bytes)
    }
}
