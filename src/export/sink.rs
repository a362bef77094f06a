//! Where the archive's bytes go: an S3 multipart upload, a file, or stdout. Each ends in one of two
//! ways: committed (the upload completed, the file flushed) or abandoned (the upload aborted, the
//! partial file removed), so a failed export leaves nothing that looks like an archive.

use std::path::PathBuf;

use tokio::io::{AsyncWriteExt, BufWriter};

use crate::error::{Error, FailureKind, Result};

use super::s3::{MultipartUpload, Uploaded};

/// Buffer of a file or stdout: writes of a few KiB become writes of 1 MiB.
const FILE_BUFFER: usize = 1 << 20;

pub enum Sink {
    S3(Box<MultipartUpload>),
    /// A file, or stdout (`path` is `None`), written through the blocking pool.
    Local {
        path: Option<PathBuf>,
        out: BufWriter<tokio::fs::File>,
        written: u64,
    },
}

/// What a committed sink reports.
#[derive(Debug, Clone)]
pub struct Committed {
    pub bytes: u64,
    /// Parts and checksum of an S3 object.
    pub object: Option<Uploaded>,
}

impl Sink {
    pub async fn file(path: PathBuf) -> Result<Sink> {
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| local_error(Some(&path), "cannot create it", &e))?;
        Ok(Sink::Local {
            path: Some(path),
            out: BufWriter::with_capacity(FILE_BUFFER, file),
            written: 0,
        })
    }

    /// Standard output, through a duplicate of its descriptor.
    pub fn stdout() -> Result<Sink> {
        use std::os::fd::AsFd;
        let fd = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| local_error(None, "cannot open it", &e))?;
        let file = tokio::fs::File::from_std(std::fs::File::from(fd));
        Ok(Sink::Local {
            path: None,
            out: BufWriter::with_capacity(FILE_BUFFER, file),
            written: 0,
        })
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Sink::S3(upload) => upload.write(data).await,
            Sink::Local { path, out, written } => {
                out.write_all(data)
                    .await
                    .map_err(|e| local_error(path.as_deref(), "cannot write it", &e))?;
                *written += data.len() as u64;
                Ok(())
            }
        }
    }

    /// Everything written so far reaches its destination (every part uploaded, the file flushed and
    /// synced), but an S3 object is not made yet: that is [`Sink::commit`].
    pub async fn flush(&mut self) -> Result<()> {
        match self {
            Sink::S3(upload) => upload.flush().await,
            Sink::Local { path, out, .. } => {
                let path = path.as_deref();
                out.flush()
                    .await
                    .map_err(|e| local_error(path, "cannot write it", &e))?;
                if path.is_some() {
                    out.get_ref()
                        .sync_all()
                        .await
                        .map_err(|e| local_error(path, "cannot sync it", &e))?;
                }
                Ok(())
            }
        }
    }

    /// Make the archive visible: complete the S3 upload. Call after [`Sink::flush`].
    pub async fn commit(&mut self) -> Result<Committed> {
        match self {
            Sink::S3(upload) => {
                let uploaded = upload.complete().await?;
                Ok(Committed {
                    bytes: uploaded.bytes,
                    object: Some(uploaded),
                })
            }
            Sink::Local { written, .. } => Ok(Committed {
                bytes: *written,
                object: None,
            }),
        }
    }

    /// Leave nothing behind: abort the upload, remove the partial file. What stdout received stays
    /// received (the reader sees a truncated archive and the exit status).
    pub async fn abandon(self) -> Result<()> {
        match self {
            Sink::S3(upload) => upload.abort().await,
            Sink::Local { path: None, .. } => Ok(()),
            Sink::Local {
                path: Some(path),
                out,
                ..
            } => {
                drop(out);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(local_error(
                        Some(&path),
                        "cannot remove the partial file",
                        &e,
                    )),
                }
            }
        }
    }
}

fn local_error(path: Option<&std::path::Path>, what: &str, error: &std::io::Error) -> Error {
    let (target, hint) = match path {
        Some(path) => (path.display().to_string(), ""),
        None => ("stdout".to_string(), " (did the reader stop?)"),
    };
    Error::ExportFailed {
        target,
        detail: format!("{what}: {error}{hint}"),
        kind: FailureKind::Permanent,
    }
}
