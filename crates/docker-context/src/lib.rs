//! Context phase: walk the context directory, apply `.dockerignore` exactly as the docker CLI does,
//! and stream the result to the daemon as a tar (never buffered whole).
//!
//! The reference is the docker CLI's classic-builder path: `cli/command/image/build.go`,
//! `cli/command/image/build/context.go` and `dockerignore.go` (docker/cli), moby/patternmatcher, and
//! moby's tar archiver (`TarWithOptions`, now moby/go-archive).

pub mod dockerfile;
mod entries;
mod go_regexp;
mod gostr;
pub mod ignore;
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

pub use dockerfile::{context_needs, ContextNeeds, SourceRoot};
pub use ignore::{IgnoreRules, ParseError, PatternError};

/// Errors of the context phase. Every variant names the path or line that failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("context directory {path} does not exist or is not a directory; pass an existing directory with --context")]
    NotADirectory { path: PathBuf },
    #[error("Dockerfile {path} not found; pass the right path with -f/--file (it is resolved against the current directory)")]
    DockerfileMissing { path: PathBuf },
    #[error("{path}: {source}; fix its permissions or exclude it in .dockerignore")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(".dockerignore line {line}: {source}")]
    BadPattern { line: usize, source: PatternError },
    #[error("{path} changed while it was being sent ({detail}); re-run once nothing writes into the context")]
    Changed { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
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

/// What a tar entry is; symlinks are never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File,
    Symlink,
    Fifo,
    CharDevice,
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

/// A scanned, validated build context: the list of entries that will be sent, in the order they will be sent.
/// Creating it never contacts the daemon.
#[derive(Debug)]
pub struct BuildContext {
    rules: IgnoreRules,
    plan: tar_stream::TarPlan,
    dockerfile_in_tar: String,
    content_bytes: u64,
    tar_bytes: u64,
    bytes_produced: Arc<AtomicU64>,
}

impl BuildContext {
    /// Walk `root`, apply `.dockerignore`, and check every file that will be sent can be read.
    /// `dockerfile` is the Dockerfile path as the user gave it (relative to the current directory or absolute).
    pub fn scan(root: &Path, dockerfile: &Path) -> Result<BuildContext, ContextError> {
        walk::scan(root, dockerfile)
    }

    /// The Dockerfile's name inside the tar, as the daemon must be told (`dockerfile` query parameter).
    pub fn dockerfile_in_tar(&self) -> &str {
        &self.dockerfile_in_tar
    }

    /// The context directory, with symlinks resolved.
    pub fn root(&self) -> &Path {
        &self.plan.root
    }

    /// The `.dockerignore` rules in effect, including the exceptions added for the Dockerfile and
    /// `.dockerignore` (useful to explain why a path is or is not sent).
    pub fn ignore_rules(&self) -> &IgnoreRules {
        &self.rules
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

    /// Stream the tar: the writer runs on a blocking thread and feeds a bounded channel, so memory stays
    /// flat whatever the context size. An I/O error ends the stream with `Err`, which aborts the request.
    /// With `gzip`, the tar is compressed (worth it only for remote daemons).
    pub fn into_tar_stream(
        self,
        gzip: bool,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        tar_stream::spawn(self.plan, gzip, self.bytes_produced)
    }
}
