//! A Docker build context, exactly as the docker CLI sends it to the daemon for a classic
//! (non-BuildKit) `docker build`.
//!
//! - **`.dockerignore`** ([`IgnoreRules`]): the file is read like the CLI reads it (BOM, `#`
//!   comments in column 0, trimming, `!` exceptions, cleaned paths), and patterns are compiled and
//!   matched like moby/patternmatcher does, down to its quirks: `*` and `?` never cross `/`, `**`
//!   spans directories, `[...]` classes go to Go's regexp engine (so `[!a]` is not a negation), and
//!   the last matching pattern wins, for a path or any of its parents. Go's regexp is reproduced
//!   by hand (the `regex` crate's syntax and semantics differ), and a pattern docker would reject
//!   is an error up front, naming its line.
//! - **The walk** ([`BuildContext::scan`]): the context directory in lexical order, symlinks never
//!   followed, excluded directories skipped unless an exception may re-include something inside,
//!   the Dockerfile and `.dockerignore` always sent, a Dockerfile from outside the context sent
//!   under a generated name. Every file that will be sent is checked readable before anything is
//!   sent, as the CLI does.
//! - **The tar** ([`BuildContext::into_tar_stream`], [`BuildContext::write_tar`]): headers as
//!   moby's archiver writes them (owners 0:0, modes kept, no sparse entries, GNU long names, hard
//!   links), streamed through a bounded channel from a blocking thread so memory stays flat
//!   whatever the context size; a file that changes while it is sent aborts the stream.
//! - **The `COPY`/`ADD` selection** ([`context_needs`], [`BuildContext::select`]): which subtrees
//!   of the context a Dockerfile can read, so that only those are sent, with the same tar headers
//!   the daemon would have seen in the whole context.
//!
//! The references are the docker CLI's `cli/command/image/build` (context and `.dockerignore`
//! handling), moby/patternmatcher, moby's tar archiver (`TarWithOptions`, now moby/go-archive) and
//! Go's `regexp/syntax`. Unix only: file names are bytes, as they are for the CLI.
//!
//! # Example
//!
//! ```
//! use std::fs;
//!
//! use docker_context::{BuildContext, IgnoreRules};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `.dockerignore` rules on their own: the last matching pattern wins, and a pattern that
//! // matches a directory excludes everything below it.
//! let rules = IgnoreRules::parse(b"*.log\n!keep.log\ntarget/\n")?;
//! assert!(rules.is_excluded(b"debug.log"));
//! assert!(!rules.is_excluded(b"keep.log"));
//! assert!(!rules.is_excluded(b"logs/debug.log"), "`*` does not cross `/`");
//! assert!(rules.is_excluded(b"target/release/app"));
//!
//! // A whole context: scan it (nothing is read or sent yet), then write or stream the tar.
//! let dir = tempfile::tempdir()?;
//! fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY . /app/\n")?;
//! fs::write(dir.path().join(".dockerignore"), "*.log\n")?;
//! fs::write(dir.path().join("main.go"), "package main\n")?;
//! fs::write(dir.path().join("debug.log"), "noise\n")?;
//! let context = BuildContext::scan(dir.path(), &dir.path().join("Dockerfile"))?;
//! let sent: Vec<_> = context.paths();
//! assert_eq!(sent, [".dockerignore", "Dockerfile", "main.go"].map(std::path::PathBuf::from));
//! assert_eq!(context.dockerfile_in_tar(), "Dockerfile");
//! let tar: Vec<u8> = context.write_tar(Vec::new())?;
//! assert_eq!(tar.len() as u64, context.tar_bytes());
//! # Ok(())
//! # }
//! ```
//!
//! For an upload, [`BuildContext::into_tar_stream`] gives a `Stream` of `Result<Bytes, io::Error>`
//! chunks to use as the request body (for example with bollard's `body_try_stream`).

#![warn(missing_docs)]

mod digest;
mod dockerfile;
mod entries;
mod go_regexp;
mod gostr;
mod ignore;
mod selection;
mod tar_stream;
mod walk;

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

pub use dockerfile::{context_needs, images_read, ContextNeeds, SourceRoot};
pub use ignore::{IgnoreRules, ParseError, PatternError};

/// What can go wrong while scanning a context or streaming its tar. Every variant names the path
/// or line that failed, and the messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory is missing or is not a directory.
    #[error("context directory {path} does not exist or is not a directory; pass an existing directory with --context")]
    NotADirectory {
        /// The context directory as given.
        path: PathBuf,
    },
    /// The Dockerfile is missing or is not a file.
    #[error("Dockerfile {path} not found; pass the right path with -f/--file (it is resolved against the current directory)")]
    DockerfileMissing {
        /// The Dockerfile path as given.
        path: PathBuf,
    },
    /// A file or directory that would be sent cannot be read (the docker CLI refuses to build
    /// then, before it contacts the daemon).
    #[error("{path}: {source}; fix its permissions or exclude it in .dockerignore")]
    Unreadable {
        /// The entry that cannot be read.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A `.dockerignore` line that docker would reject.
    #[error(".dockerignore line {line}: {source}")]
    BadPattern {
        /// The 1-based line number (comments and blank lines count); 0 for the exception added
        /// for the Dockerfile or `.dockerignore`.
        line: usize,
        /// The pattern and what is wrong with it.
        source: PatternError,
    },
    /// An entry changed between the scan and the moment it was sent (a file grew or shrank, or
    /// an entry was removed or replaced by something else).
    #[error("{path} changed while it was being sent ({detail}); re-run once nothing writes into the context")]
    Changed {
        /// The entry that changed.
        path: PathBuf,
        /// What changed.
        detail: String,
    },
    /// Any other I/O error, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl ContextError {
    /// The context error carried by an error of the tar stream, if it came from the context
    /// (rather than, say, the receiver going away).
    pub fn from_stream_error(error: &io::Error) -> Option<&ContextError> {
        error.get_ref()?.downcast_ref::<ContextError>()
    }
}

/// What a tar entry is. Symlinks are sent as symlinks, never followed; sockets are never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (its name ends in `/` in the tar).
    Directory,
    /// A regular file (a hard link to a file sent earlier is a link entry in the tar).
    File,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl EntryKind {
    fn of(file_type: &std::fs::FileType) -> Option<EntryKind> {
        use std::os::unix::fs::FileTypeExt;
        Some(if file_type.is_dir() {
            EntryKind::Directory
        } else if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_fifo() {
            EntryKind::Fifo
        } else if file_type.is_char_device() {
            EntryKind::CharDevice
        } else if file_type.is_block_device() {
            EntryKind::BlockDevice
        } else {
            // Sockets: the CLI's tar writer cannot store them and skips them.
            return None;
        })
    }

    /// One byte per kind, for the compact entry list.
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> EntryKind {
        [
            EntryKind::Directory,
            EntryKind::File,
            EntryKind::Symlink,
            EntryKind::Fifo,
            EntryKind::CharDevice,
            EntryKind::BlockDevice,
        ][usize::from(code)]
    }

    fn describe(self) -> &'static str {
        match self {
            EntryKind::Directory => "a directory",
            EntryKind::File => "a regular file",
            EntryKind::Symlink => "a symlink",
            EntryKind::Fifo => "a named pipe",
            EntryKind::CharDevice => "a character device",
            EntryKind::BlockDevice => "a block device",
        }
    }
}

/// One walked entry. `size` is the file size seen by the scan (0 for non-files); the stream
/// refuses to send a file whose size differs.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    path: PathBuf,
    kind: EntryKind,
    size: u64,
}

/// A Dockerfile outside the context directory: sent under a generated name, as the CLI does.
#[derive(Debug, Clone)]
pub(crate) struct ExternalDockerfile {
    name: String,
    contents: Vec<u8>,
}

/// A scanned, validated build context: the entries that will be sent, in the order they will be
/// sent. Scanning reads the directory tree and the files' metadata; file contents are read only
/// when the tar is written. Nothing here talks to a Docker daemon.
#[derive(Debug)]
pub struct BuildContext {
    plan: tar_stream::TarPlan,
    dockerfile_in_tar: String,
    content_bytes: u64,
    tar_bytes: u64,
    bytes_produced: Arc<AtomicU64>,
}

impl BuildContext {
    /// Walk the context directory `root`, apply its `.dockerignore`, and check that every file
    /// that will be sent can be read. `dockerfile` is the Dockerfile path as the user gave it
    /// (relative to the current directory, or absolute); it may lie outside `root`.
    pub fn scan(root: &Path, dockerfile: &Path) -> Result<BuildContext, ContextError> {
        walk::scan(root, dockerfile)
    }

    /// The Dockerfile's name inside the tar, as the daemon must be told (`dockerfile` query parameter).
    pub fn dockerfile_in_tar(&self) -> &str {
        &self.dockerfile_in_tar
    }

    /// Paths relative to the context root, `/`-separated, in the order they are sent.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.entries().map(|(path, _)| path.to_path_buf()).collect()
    }

    /// Entries in the order they are sent, with their kind. A Dockerfile from outside the context
    /// (and a `.dockerignore` created to hide it) come last, as regular files.
    pub fn entries(&self) -> impl Iterator<Item = (PathBuf, EntryKind)> + '_ {
        let plan = &self.plan;
        let walked = plan.sent().map(|e| (e.path, e.kind));
        let generated = plan.external_dockerfile.iter().flat_map(move |external| {
            let dockerignore = (!plan.dockerignore_sent)
                .then(|| (PathBuf::from(".dockerignore"), EntryKind::File));
            std::iter::once((PathBuf::from(&external.name), EntryKind::File)).chain(dockerignore)
        });
        walked.chain(generated)
    }

    /// Number of entries (files, directories, links) that will be sent.
    pub fn entry_count(&self) -> usize {
        let generated = self
            .plan
            .external_dockerfile
            .as_ref()
            .map_or(0, |_| 1 + usize::from(!self.plan.dockerignore_sent));
        let walked = match &self.plan.selection {
            Some(_) => self.plan.sent().count(),
            None => self.plan.entries.len() + self.plan.forced.len(),
        };
        walked + generated
    }

    /// Send only `roots` (the subtrees a Dockerfile's `COPY`/`ADD` read, see [`context_needs`]), the
    /// directories above them, the Dockerfile and `.dockerignore`. The daemon then reads the same files
    /// with the same tar headers as from the whole context. Refused, with the reason, where that cannot
    /// be promised: a symlink on the way to a source, a symlink a wildcard may match, a hard-linked file.
    /// Reads the metadata of the selected entries (call it off the async runtime for big contexts).
    pub fn select(&mut self, roots: &[SourceRoot]) -> Result<(), String> {
        if self.plan.external_dockerfile.is_some() {
            return Err("the Dockerfile is outside the context".to_string());
        }
        let root_dir = self.plan.root.clone();
        if let Some(reason) = selection::symlink_on_the_way(&root_dir, roots) {
            return Err(reason);
        }
        let always: [&[u8]; 2] = [b".dockerignore", self.dockerfile_in_tar.as_bytes()];
        let selection = selection::Selection::new(roots, &always);
        let wildcard_roots: Vec<&SourceRoot> = roots.iter().filter(|r| r.wildcard).collect();
        let (mut content_bytes, mut tar_bytes) = (0, walk::END_OF_ARCHIVE);
        for entry in self.plan.sent() {
            let path = entry.path.as_os_str().as_bytes();
            if !selection.keeps(path, entry.kind) {
                continue;
            }
            if let Some(reason) =
                selection::entry_needs_everything(&root_dir, path, entry.kind, &wildcard_roots)
            {
                return Err(reason);
            }
            let link_len = match entry.kind {
                EntryKind::Symlink => std::fs::read_link(root_dir.join(&entry.path))
                    .map_or(0, |target| target.as_os_str().len()),
                _ => 0,
            };
            let name_len = path.len() + usize::from(entry.kind == EntryKind::Directory);
            content_bytes += entry.size;
            tar_bytes += walk::entry_tar_bytes(name_len, link_len, entry.size);
        }
        self.plan.selection = Some(selection);
        self.content_bytes = content_bytes;
        self.tar_bytes = tar_bytes;
        Ok(())
    }

    /// Sum of the sizes of the regular files that will be sent.
    pub fn content_bytes(&self) -> u64 {
        self.content_bytes
    }

    /// Length of the uncompressed tar (headers and padding included): the total to show progress
    /// against. Exact unless files are hard-linked (each extra link is smaller) or the tree changes.
    pub fn tar_bytes(&self) -> u64 {
        self.tar_bytes
    }

    /// A counter of the bytes the stream has produced so far (after compression, if any); clone it
    /// before [`into_tar_stream`](Self::into_tar_stream) to report upload progress.
    pub fn bytes_produced(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bytes_produced)
    }

    /// Write the tar synchronously into `out` (tests, `--list`-style tooling). On error, what was
    /// written is incomplete and must be discarded.
    pub fn write_tar<W: io::Write>(&self, out: W) -> io::Result<W> {
        tar_stream::write_archive(&self.plan, out)
    }

    /// SHA-256 over the tar this context sends, without the fields a checkout changes (file times)
    /// and the header checksum: the same files, names, modes, links and contents give the same
    /// digest on any clone. Reads every file that is sent (call it off the async runtime).
    pub fn content_digest(&self) -> io::Result<[u8; 32]> {
        let sink = tar_stream::write_archive(&self.plan, digest::TarDigest::new())?;
        Ok(sink.finish())
    }

    /// Stream the tar: the writer runs on a blocking thread and feeds a bounded channel, so memory stays
    /// flat whatever the context size. An I/O error ends the stream with `Err`, which aborts the request.
    /// With `gzip`, the tar is compressed (worth it only for remote daemons).
    pub fn into_tar_stream(
        self,
        gzip: bool,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        tar_stream::spawn(self.plan, gzip, self.bytes_produced, None)
    }

    /// As [`into_tar_stream`](Self::into_tar_stream), and the [`content_digest`](Self::content_digest)
    /// of exactly the tar the stream carried, once all of it was produced (the receiver fails when the
    /// stream ended in an error). A file changed between an earlier `content_digest` and the upload
    /// shows as a different digest.
    pub fn into_tar_stream_with_digest(
        self,
        gzip: bool,
    ) -> (
        impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        tokio::sync::oneshot::Receiver<[u8; 32]>,
    ) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let stream = tar_stream::spawn(self.plan, gzip, self.bytes_produced, Some(sender));
        (stream, receiver)
    }
}
