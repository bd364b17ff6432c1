//! How a folder sink encodes its files: JSON lines, plain or compressed with gzip or zstd, or
//! Parquet (typed columns from the fields each stream's analysis declares). Files are encoded
//! whole by the sink's writer, and decoded back to JSON lines by what reads them (replay's
//! archive, queries by date, a sealed file merged after a restart).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::stream::StreamName;

/// The file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line (`raw`: one input text line per reading).
    #[default]
    Jsonl,
    /// Apache Parquet, one row group per file, statistics on.
    Parquet,
}

/// The compression: of the whole file for JSON lines, of the pages for Parquet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None.
    #[default]
    None,
    /// gzip (deflate).
    Gzip,
    /// Zstandard.
    Zstd,
}

/// A format with its compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileFormat {
    /// The format.
    pub format: Format,
    /// The compression.
    pub compression: Compression,
}

/// How a folder sink's files are written: format and layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSpec {
    /// The files' format.
    pub format: FileFormat,
    /// The hour folders' names.
    pub layout: crate::stored_files::layout::Layout,
}

/// A file that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// The extensions of every format, longest first: what a reader strips to find a file's stem.
pub const EXTENSIONS: [&str; 4] = ["jsonl.gz", "jsonl.zst", "parquet", "jsonl"];

impl FileFormat {
    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match (self.format, self.compression) {
            (Format::Parquet, _) => "parquet",
            (Format::Jsonl, Compression::None) => "jsonl",
            (Format::Jsonl, Compression::Gzip) => "jsonl.gz",
            (Format::Jsonl, Compression::Zstd) => "jsonl.zst",
        }
    }

    /// The file of `stream`'s `lines` (newline-terminated JSON lines, or input lines for `raw`):
    /// plain JSON lines are the lines themselves.
    pub fn encode(self, stream: StreamName, lines: &[u8]) -> Result<Cow<'_, [u8]>, FormatError> {
        match (self.format, self.compression) {
            (Format::Parquet, c) => super::columnar::to_parquet(stream, lines, c).map(Cow::Owned),
            (Format::Jsonl, Compression::None) => Ok(Cow::Borrowed(lines)),
            (Format::Jsonl, Compression::Gzip) => gzip(lines).map(Cow::Owned),
            (Format::Jsonl, Compression::Zstd) => {
                zstd::bulk::compress(lines, 3).map(Cow::Owned).map_err(|e| FormatError(format!("zstd: {e}")))
            }
        }
    }

    /// Whether the file is plain JSON lines (written as is).
    pub fn is_plain(self) -> bool {
        self == FileFormat::default()
    }
}

/// The lines of the file `name` (its extension says how it is encoded) of `stream`.
pub fn decode(stream: StreamName, name: &str, bytes: Vec<u8>) -> Result<Vec<u8>, FormatError> {
    if name.ends_with(".parquet") {
        super::columnar::from_parquet(stream, bytes)
    } else if name.ends_with(".gz") {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut out)
            .map_err(|e| FormatError(format!("{name}: not gzip: {e}")))?;
        Ok(out)
    } else if name.ends_with(".zst") {
        zstd::stream::decode_all(&bytes[..]).map_err(|e| FormatError(format!("{name}: not zstd: {e}")))
    } else {
        Ok(bytes)
    }
}

/// `name` without its format's extension (`speeders-20251125T10.jsonl.gz` -> `speeders-20251125T10`).
pub fn stem(name: &str) -> &str {
    EXTENSIONS.iter().find_map(|e| name.strip_suffix(e).and_then(|s| s.strip_suffix('.'))).unwrap_or(name)
}

fn gzip(lines: &[u8]) -> Result<Vec<u8>, FormatError> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(lines.len() / 4), flate2::Compression::default());
    encoder.write_all(lines).map_err(|e| FormatError(format!("gzip: {e}")))?;
    encoder.finish().map_err(|e| FormatError(format!("gzip: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_lines_decode_to_the_same_lines() {
        let lines = b"{\"a\":1}\n{\"a\":2}\n".repeat(100);
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let f = FileFormat { format: Format::Jsonl, compression };
            let file = f.encode(StreamName::ERRORS, &lines).unwrap();
            let name = format!("x.{}", f.extension());
            assert_eq!(decode(StreamName::ERRORS, &name, file.into_owned()).unwrap(), lines, "{name}");
            assert_eq!(stem(&name), "x");
        }
        assert!(decode(StreamName::ERRORS, "x.jsonl.gz", b"plain".to_vec()).unwrap_err().0.contains("not gzip"));
    }
}
