//! Where the archive's bytes go: an S3 multipart upload, a file, or stdout. Each ends in one of two
//! ways: committed (the upload completed, the file renamed into place) or abandoned (the upload
//! aborted, the partial file removed), so a failed export leaves nothing that looks like an archive.
//! A file is written beside its destination and renamed over it only when complete: a failed export
//! never touches what was there before. A destination that is not a regular file (`/dev/null`, a FIFO)
//! is written in place and never removed.

use std::path::PathBuf;

use tokio::io::{AsyncWriteExt, BufWriter};

use crate::error::{Error, FailureKind, Result};

use super::s3::{MultipartUpload, Uploaded};

/// Buffer of a file or stdout: writes of a few KiB become writes of 1 MiB.
const FILE_BUFFER: usize = 1 << 20;

pub enum Sink {
    S3(Box<MultipartUpload>),
    /// A file, a device, or stdout, written through the blocking pool.
    Local {
        target: LocalTarget,
        out: BufWriter<tokio::fs::File>,
        written: u64,
    },
}

/// Where a local archive goes.
pub enum LocalTarget {
    Stdout,
    /// Not a regular file (a character device such as `/dev/null`, a FIFO): written in place.
    Device(PathBuf),
    /// A regular file, written to `partial` beside it and renamed over it when complete.
    File {
        destination: PathBuf,
        partial: PathBuf,
    },
}

impl LocalTarget {
    /// The path to name in messages; `None` for stdout.
    fn path(&self) -> Option<&std::path::Path> {
        match self {
            LocalTarget::Stdout => None,
            LocalTarget::Device(path) => Some(path),
            LocalTarget::File { destination, .. } => Some(destination),
        }
    }
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
        let existing = tokio::fs::metadata(&path).await.ok();
        if existing.is_some_and(|meta| !meta.is_file() && !meta.is_dir()) {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .await
                .map_err(|e| local_error(Some(&path), "cannot open it", &e))?;
            return Ok(Sink::Local {
                target: LocalTarget::Device(path),
                out: BufWriter::with_capacity(FILE_BUFFER, file),
                written: 0,
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let partial = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| local_error(Some(&path), "cannot create a file beside it", &e))?;
        Ok(Sink::Local {
            target: LocalTarget::File {
                destination: path,
                partial,
            },
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
            target: LocalTarget::Stdout,
            out: BufWriter::with_capacity(FILE_BUFFER, file),
            written: 0,
        })
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Sink::S3(upload) => upload.write(data).await,
            Sink::Local {
                target,
                out,
                written,
            } => {
                out.write_all(data)
                    .await
                    .map_err(|e| local_error(target.path(), "cannot write it", &e))?;
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
            Sink::Local { target, out, .. } => {
                let path = target.path();
                out.flush()
                    .await
                    .map_err(|e| local_error(path, "cannot write it", &e))?;
                if let LocalTarget::File { .. } = target {
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
            Sink::Local {
                target, written, ..
            } => {
                if let LocalTarget::File {
                    destination,
                    partial,
                } = target
                {
                    tokio::fs::rename(&*partial, &*destination)
                        .await
                        .map_err(|e| local_error(Some(destination), "cannot rename into it", &e))?;
                }
                Ok(Committed {
                    bytes: *written,
                    object: None,
                })
            }
        }
    }

    /// Leave nothing behind: abort the upload, remove the partial file (the destination is
    /// untouched). What stdout or a device received stays received (the reader sees a truncated
    /// archive and the exit status).
    pub async fn abandon(self) -> Result<()> {
        match self {
            Sink::S3(upload) => upload.abort().await,
            Sink::Local {
                target:
                    LocalTarget::File {
                        destination,
                        partial,
                    },
                out,
                ..
            } => {
                drop(out);
                match tokio::fs::remove_file(&partial).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(local_error(
                        Some(&destination),
                        "cannot remove the partial file beside it",
                        &e,
                    )),
                }
            }
            Sink::Local { .. } => Ok(()),
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
