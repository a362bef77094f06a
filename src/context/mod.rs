//! Context phase: walk the context directory, apply `.dockerignore` exactly as the docker CLI does,
//! and stream the result to the daemon as a tar (never buffered whole).

pub mod ignore;
mod tar_stream;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;

pub use ignore::{IgnoreRules, PatternError};

/// Errors of the context phase. Every variant names the path or line that failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("context directory {path} does not exist or is not a directory; pass an existing directory with --context")]
    NotADirectory { path: PathBuf },
    #[error("Dockerfile {path} not found; pass the right path with -f/--file (it is resolved against the current directory)")]
    DockerfileMissing { path: PathBuf },
    #[error("{path}: {source}; fix its permissions or exclude it in .dockerignore")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error(".dockerignore line {line}: {source}")]
    BadPattern { line: usize, source: PatternError },
    #[error("{path} changed while it was being sent ({detail}); re-run once nothing writes into the context")]
    Changed { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A scanned, validated build context: the list of entries that will be sent, in the order they will be sent.
/// Creating it never contacts the daemon.
pub struct BuildContext {
    // filled in by the implementation
}

impl BuildContext {
    /// Walk `root`, apply `.dockerignore`, and check every file that will be sent can be read.
    /// `dockerfile` is the Dockerfile path as the user gave it (relative to the current directory or absolute).
    pub fn scan(root: &Path, dockerfile: &Path) -> Result<BuildContext, ContextError> {
        let _ = (root, dockerfile);
        todo!()
    }

    /// The Dockerfile's name inside the tar, as the daemon must be told (`dockerfile` query parameter).
    pub fn dockerfile_in_tar(&self) -> &str {
        todo!()
    }

    /// Paths relative to the context root, `/`-separated, in the order they are sent.
    pub fn paths(&self) -> Vec<PathBuf> {
        todo!()
    }

    /// Number of entries (files, directories, links) that will be sent.
    pub fn entry_count(&self) -> usize {
        todo!()
    }

    /// Sum of the sizes of the regular files that will be sent.
    pub fn content_bytes(&self) -> u64 {
        todo!()
    }

    /// Stream the tar: the writer runs on a blocking thread and feeds a bounded channel, so memory stays
    /// flat whatever the context size. An I/O error ends the stream with `Err`, which aborts the request.
    /// With `gzip`, the tar is compressed (worth it only for remote daemons).
    pub fn into_tar_stream(self, gzip: bool) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let _ = gzip;
        futures_util::stream::empty()
    }
}
