//! The archive as a stream: tar headers made with the `tar` crate (the size is the descriptor's, known
//! before the first byte), the entry's bytes as they arrive, padding, and the two end blocks; then,
//! optionally, gzip (flate2) or zstd, and into the sink. Nothing is held but the chunk in hand and
//! the compressor's window.

use std::collections::BTreeSet;
use std::io::Write;

use crate::cli::Compression;
use crate::error::{Error, FailureKind, Result};

use super::layout::Entry;
use super::sink::Sink;

const BLOCK: u64 = 512;

/// The compressor between the tar and the sink.
pub enum Encoder {
    Plain,
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub fn new(compression: Compression) -> Result<Encoder> {
        Ok(match compression {
            Compression::None => Encoder::Plain,
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), 3).map_err(|e| compressor(&e))?,
            ),
        })
    }
}

/// The tar bytes `entries` make: headers (one per parent directory too), contents, padding, end.
pub fn estimate(entries: &[Entry]) -> u64 {
    let mut directories = BTreeSet::new();
    let mut total = 2 * BLOCK;
    for entry in entries {
        for parent in parents(entry.name()) {
            if directories.insert(parent) {
                total += BLOCK;
            }
        }
        total += BLOCK + entry.size().div_ceil(BLOCK) * BLOCK;
    }
    total
}

/// `a/`, `a/b/` for `a/b/c`.
fn parents(name: &str) -> Vec<String> {
    let mut parents = Vec::new();
    let mut end = 0;
    while let Some(slash) = name[end..].find('/') {
        end += slash + 1;
        parents.push(name[..end].to_string());
    }
    parents
}

/// A tar stream being written into a sink.
pub struct ArchiveWriter {
    encoder: Encoder,
    sink: Sink,
    directories: BTreeSet<String>,
    /// Bytes of the current entry still to come.
    remaining: u64,
    /// Bytes of tar written (before compression).
    tar_bytes: u64,
}

impl ArchiveWriter {
    pub fn new(sink: Sink, encoder: Encoder) -> ArchiveWriter {
        ArchiveWriter {
            encoder,
            sink,
            directories: BTreeSet::new(),
            remaining: 0,
            tar_bytes: 0,
        }
    }

    /// Start a regular file of `size` bytes (its parent directories first, once each).
    pub async fn begin(&mut self, name: &str, size: u64) -> Result<()> {
        if self.remaining != 0 {
            return Err(Error::Internal(format!(
                "tar entry {name} started with {} bytes of the previous one missing",
                self.remaining
            )));
        }
        for parent in parents(name) {
            if !self.directories.contains(&parent) {
                let header = header(&parent, 0, tar::EntryType::Directory)?;
                self.emit(header.as_bytes()).await?;
                self.directories.insert(parent);
            }
        }
        let header = header(name, size, tar::EntryType::Regular)?;
        self.emit(header.as_bytes()).await?;
        self.remaining = size;
        Ok(())
    }

    /// Bytes of the current entry.
    pub async fn data(&mut self, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        if len > self.remaining {
            return Err(Error::Internal(format!(
                "{len} bytes for a tar entry with {} left",
                self.remaining
            )));
        }
        self.remaining -= len;
        self.emit(bytes).await
    }

    /// End the current entry: pad it to a whole block.
    pub async fn end(&mut self, size: u64) -> Result<()> {
        if self.remaining != 0 {
            return Err(Error::Internal(format!(
                "tar entry ended with {} bytes missing",
                self.remaining
            )));
        }
        let padding = (BLOCK - size % BLOCK) % BLOCK;
        self.emit(&[0u8; BLOCK as usize][..padding as usize]).await
    }

    /// A whole entry at once.
    pub async fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.begin(name, bytes.len() as u64).await?;
        self.data(bytes).await?;
        self.end(bytes.len() as u64).await
    }

    /// The end-of-archive blocks and the compressor's tail, then everything flushed to the
    /// destination (every S3 part uploaded). Returns the bytes of tar written.
    pub async fn finish(&mut self) -> Result<u64> {
        self.emit(&[0u8; 2 * BLOCK as usize]).await?;
        let tail = match std::mem::replace(&mut self.encoder, Encoder::Plain) {
            Encoder::Plain => Vec::new(),
            Encoder::Gzip(gzip) => gzip.finish().map_err(|e| compressor(&e))?,
            Encoder::Zstd(zstd) => zstd.finish().map_err(|e| compressor(&e))?,
        };
        self.sink.write(&tail).await?;
        self.sink.flush().await?;
        Ok(self.tar_bytes)
    }

    pub fn sink_mut(&mut self) -> &mut Sink {
        &mut self.sink
    }

    /// The sink, to abandon after a failure.
    pub fn into_sink(self) -> Sink {
        self.sink
    }

    async fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.tar_bytes += bytes.len() as u64;
        let compressed = match &mut self.encoder {
            Encoder::Plain => return self.sink.write(bytes).await,
            Encoder::Gzip(gzip) => {
                gzip.write_all(bytes).map_err(|e| compressor(&e))?;
                std::mem::take(gzip.get_mut())
            }
            Encoder::Zstd(zstd) => {
                zstd.write_all(bytes).map_err(|e| compressor(&e))?;
                std::mem::take(zstd.get_mut())
            }
        };
        if compressed.is_empty() {
            Ok(())
        } else {
            self.sink.write(&compressed).await
        }
    }
}

/// A ustar header: root-owned, mode 0644 (0755 for a directory), time 0, as reproducible as the
/// image's own content.
fn header(name: &str, size: u64, kind: tar::EntryType) -> Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header
        .set_path(name)
        .map_err(|e| Error::Internal(format!("tar name {name}: {e}")))?;
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    Ok(header)
}

fn compressor(error: &std::io::Error) -> Error {
    Error::ExportFailed {
        target: "the archive".to_string(),
        detail: format!("compression failed: {error}"),
        kind: FailureKind::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    async fn written(compression: Compression) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let sink = Sink::file(path.clone()).await.unwrap();
        let mut writer = ArchiveWriter::new(sink, Encoder::new(compression).unwrap());
        writer.file("manifest.json", b"[]").await.unwrap();
        writer.begin("blobs/sha256/abc", 1000).await.unwrap();
        for chunk in vec![7u8; 1000].chunks(300) {
            writer.data(chunk).await.unwrap();
        }
        writer.end(1000).await.unwrap();
        let tar_bytes = writer.finish().await.unwrap();
        let entries = [
            Entry::Inline {
                name: "manifest.json".into(),
                bytes: b"[]".to_vec(),
            },
            Entry::Blob {
                name: "blobs/sha256/abc".into(),
                digest: String::new(),
                size: 1000,
            },
        ];
        assert_eq!(tar_bytes, estimate(&entries), "the estimate is exact");
        writer.sink_mut().commit().await.unwrap();
        std::fs::read(path).unwrap()
    }

    fn listing(reader: impl Read) -> Vec<(String, u64)> {
        tar::Archive::new(reader)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect()
    }

    #[tokio::test]
    async fn entries_stream_into_a_tar_that_tar_reads_back_compressed_or_not() {
        let expected = vec![
            ("manifest.json".to_string(), 2),
            ("blobs/".to_string(), 0),
            ("blobs/sha256/".to_string(), 0),
            ("blobs/sha256/abc".to_string(), 1000),
        ];
        let plain = written(Compression::None).await;
        assert_eq!(listing(plain.as_slice()), expected);
        let gzip = written(Compression::Gzip).await;
        assert_eq!(
            listing(flate2::read::GzDecoder::new(gzip.as_slice())),
            expected
        );
        let zstd = written(Compression::Zstd).await;
        assert_eq!(
            listing(zstd::stream::read::Decoder::new(zstd.as_slice()).unwrap()),
            expected
        );
    }

    #[tokio::test]
    async fn an_entry_cannot_get_more_bytes_than_its_header_says() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::file(dir.path().join("a.tar")).await.unwrap();
        let mut writer = ArchiveWriter::new(sink, Encoder::Plain);
        writer.begin("a", 2).await.unwrap();
        assert!(writer.data(b"abc").await.is_err());
        assert!(writer.end(2).await.is_err());
    }
}
