//! The tar writer: entries as the docker CLI writes them (uid/gid 0, no user names, permission
//! and setuid/setgid/sticky bits kept, mtimes in seconds, directories with a trailing `/`, symlinks
//! and hard links as links, GNU long-name entries past 100 bytes, base-256 sizes past 8 GiB, never
//! sparse entries), streamed through a bounded channel from a blocking thread.

use std::collections::hash_map::{Entry as MapEntry, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::Stream;
use tar::{Builder, EntryType, Header};
use tokio::sync::mpsc;

use super::digest::Tee;
use super::entries::EntryList;
use super::selection::Selection;
use super::{ContextError, Entry, EntryKind, ExternalDockerfile};

/// Bytes per message on the channel, and messages in flight: about 1 MiB buffered in total.
const CHUNK_BYTES: usize = 256 * 1024;
const CHANNEL_DEPTH: usize = 4;
/// Names of this length or longer go into a GNU long-name entry (the field holds 100 bytes).
const NAME_FIELD: usize = 100;

/// Everything the writer needs, owned so it can move to the writer thread.
#[derive(Debug)]
pub(crate) struct TarPlan {
    pub(crate) root: PathBuf,
    /// What the walk found, in walk order.
    pub(crate) entries: EntryList,
    /// The `.dockerignore` and Dockerfile when the rules left them out (sent anyway), sorted.
    pub(crate) forced: Vec<Entry>,
    /// Whether a regular `.dockerignore` is among the entries.
    pub(crate) dockerignore_sent: bool,
    pub(crate) external_dockerfile: Option<ExternalDockerfile>,
    /// Only part of the walked entries is sent (see [`Selection`]).
    pub(crate) selection: Option<Selection>,
}

impl TarPlan {
    /// The entries to send, in order: the walked ones with the forced ones merged in at their places.
    pub(crate) fn sent(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut walked = self.entries.iter().peekable();
        let mut forced = self.forced.iter().cloned().peekable();
        std::iter::from_fn(move || match (walked.peek(), forced.peek()) {
            (Some(w), Some(f)) if f.path < w.path => forced.next(),
            (Some(_), _) => walked.next(),
            (None, _) => forced.next(),
        })
        .filter(move |entry| {
            self.selection.as_ref().is_none_or(|selection| {
                selection.keeps(entry.path.as_os_str().as_bytes(), entry.kind)
            })
        })
    }
}

/// Start the writer and return the stream of chunks it produces.
pub(crate) fn spawn(
    plan: TarPlan,
    gzip: bool,
    produced: Arc<AtomicU64>,
    digest: Option<tokio::sync::oneshot::Sender<[u8; 32]>>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (sender, receiver) = mpsc::channel(CHANNEL_DEPTH);
    let sink = ChannelSink::new(sender.clone(), produced);
    let job = move || {
        let discard = Arc::clone(&sink.discard);
        let outcome = catch_unwind(AssertUnwindSafe(|| produce(&plan, gzip, sink, digest)));
        let failure = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(err)) => err,
            Err(_) => io::Error::other("the build context writer panicked"),
        };
        discard.store(true, Ordering::Relaxed);
        // Fails only if the receiver is gone, and then nobody needs the error.
        let _ = sender.blocking_send(Err(failure));
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(job)),
        Err(_) => drop(std::thread::spawn(job)),
    }
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        let item = receiver.recv().await?;
        Some((item, receiver))
    })
}

fn produce(
    plan: &TarPlan,
    gzip: bool,
    sink: ChannelSink,
    digest: Option<tokio::sync::oneshot::Sender<[u8; 32]>>,
) -> io::Result<()> {
    let discard = Arc::clone(&sink.discard);
    // The digest is of the tar itself, before any compression.
    let wants_digest = digest.is_some();
    let send_digest = |tee_digest: Option<[u8; 32]>| {
        if let (Some(sender), Some(value)) = (digest, tee_digest) {
            // Nobody waiting is fine: the caller did not need it after all.
            let _ = sender.send(value);
        }
    };
    let sink = if gzip {
        let encoder = GzEncoder::new(sink, Compression::fast());
        let tee = Tee::new(encoder, wants_digest);
        let (encoder, sent) = write_archive_or_discard(plan, tee, &discard)?.into_parts();
        send_digest(sent);
        encoder.finish()?
    } else {
        let tee = Tee::new(sink, wants_digest);
        let (sink, sent) = write_archive_or_discard(plan, tee, &discard)?.into_parts();
        send_digest(sent);
        sink
    };
    sink.finish()
}

/// Write the whole archive into `out`. On error, dropping the builder would still append the
/// end-of-archive blocks; `discard` makes sure they never reach the stream.
fn write_archive_or_discard<W: Write>(
    plan: &TarPlan,
    out: W,
    discard: &AtomicBool,
) -> io::Result<W> {
    let mut builder = new_builder(out);
    if let Err(err) = append_all(plan, &mut builder) {
        discard.store(true, Ordering::Relaxed);
        return Err(err);
    }
    builder.into_inner()
}

/// Synchronous variant, for [`BuildContext::write_tar`](super::BuildContext::write_tar).
pub(crate) fn write_archive<W: Write>(plan: &TarPlan, out: W) -> io::Result<W> {
    let mut builder = new_builder(out);
    append_all(plan, &mut builder)?;
    builder.into_inner()
}

fn new_builder<W: Write>(out: W) -> Builder<W> {
    let mut builder = Builder::new(out);
    // The crate's defaults are wrong for Docker: sparse entries (type `S`) are rejected by the
    // 20.10 daemon, and symlinks must be stored, not followed. Headers are built by hand below,
    // but keep the builder safe too.
    builder.sparse(false);
    builder.follow_symlinks(false);
    builder
}

/// A regular file's entry, its contents streamed and checked against the scan (size, identity);
/// `suffix` is appended to the contents (the lines a generated Dockerfile adds to `.dockerignore`).
fn append_file<W: Write>(
    builder: &mut Builder<W>,
    entry: &Entry,
    source: &Path,
    meta: &fs::Metadata,
    mut header: Header,
    name: &[u8],
    suffix: Option<&[u8]>,
) -> io::Result<()> {
    let size = meta.len();
    if size != entry.size {
        return Err(changed(
            &entry.path,
            format!(
                "its size went from {} to {size} bytes after the scan",
                entry.size
            ),
        ));
    }
    let file = fs::File::open(source).map_err(|err| vanished(&entry.path, err))?;
    let opened = file.metadata().map_err(|err| io_error(&entry.path, err))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(changed(
            &entry.path,
            "it was replaced by another file".into(),
        ));
    }
    let contents = ExactReader::new(file, size, &entry.path);
    header.set_entry_type(EntryType::Regular);
    match suffix {
        Some(suffix) => {
            header.set_size(size + suffix.len() as u64);
            append(builder, header, name, None, contents.chain(suffix))
        }
        None => {
            header.set_size(size);
            append(builder, header, name, None, contents)
        }
    }
}

fn append_all<W: Write>(plan: &TarPlan, builder: &mut Builder<W>) -> io::Result<()> {
    // First tar name of every multiply-linked inode, as moby's archiver tracks hard links.
    let mut first_names: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let suffix_for_dockerignore = plan
        .external_dockerfile
        .as_ref()
        .map(|external| format!("\n{}\n", external.name).into_bytes());

    for entry in plan.sent() {
        let source = plan.root.join(&entry.path);
        let meta = fs::symlink_metadata(&source).map_err(|err| vanished(&entry.path, err))?;
        match EntryKind::of(&meta.file_type()) {
            Some(kind) if kind == entry.kind => {}
            now => {
                let now = now.map_or("a socket", EntryKind::describe);
                return Err(changed(
                    &entry.path,
                    format!(
                        "it was {} when scanned and is now {now}",
                        entry.kind.describe()
                    ),
                ));
            }
        }
        let mut name = entry.path.as_os_str().as_bytes().to_vec();
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));

        let rewrites_dockerignore = suffix_for_dockerignore.is_some()
            && entry.kind == EntryKind::File
            && entry.path.as_os_str().as_bytes() == b".dockerignore";
        if entry.kind != EntryKind::Directory && meta.nlink() > 1 && !rewrites_dockerignore {
            match first_names.entry((meta.dev(), meta.ino())) {
                MapEntry::Occupied(first) => {
                    header.set_entry_type(EntryType::Link);
                    header.set_size(0);
                    append(builder, header, &name, Some(first.get()), io::empty())?;
                    continue;
                }
                MapEntry::Vacant(slot) => {
                    slot.insert(name.clone());
                }
            }
        }

        header.set_size(0);
        match entry.kind {
            EntryKind::Directory => {
                name.push(b'/');
                header.set_entry_type(EntryType::Directory);
                append(builder, header, &name, None, io::empty())?;
            }
            EntryKind::Symlink => {
                let target = fs::read_link(&source).map_err(|err| vanished(&entry.path, err))?;
                header.set_entry_type(EntryType::Symlink);
                append(
                    builder,
                    header,
                    &name,
                    Some(target.as_os_str().as_bytes()),
                    io::empty(),
                )?;
            }
            EntryKind::Fifo => {
                header.set_entry_type(EntryType::Fifo);
                append(builder, header, &name, None, io::empty())?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                header.set_entry_type(if entry.kind == EntryKind::CharDevice {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                let (major, minor) = device_numbers(meta.rdev());
                header.set_device_major(major)?;
                header.set_device_minor(minor)?;
                append(builder, header, &name, None, io::empty())?;
            }
            EntryKind::File => {
                let suffix = suffix_for_dockerignore
                    .as_deref()
                    .filter(|_| rewrites_dockerignore);
                append_file(builder, &entry, &source, &meta, header, &name, suffix)?;
            }
        }
    }

    if let Some(external) = &plan.external_dockerfile {
        // docker/cli AddDockerfileToBuildContext: mode 0600, mtime now, appended at the end, and
        // listed in .dockerignore (created if missing) so the daemon removes it from the context.
        append_generated(builder, external.name.as_bytes(), &external.contents)?;
        if !plan.dockerignore_sent {
            let contents = format!(".dockerignore\n{}\n", external.name);
            append_generated(builder, b".dockerignore", contents.as_bytes())?;
        }
    }
    Ok(())
}

fn append_generated<W: Write>(
    builder: &mut Builder<W>,
    name: &[u8],
    contents: &[u8],
) -> io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(now);
    header.set_size(contents.len() as u64);
    append(builder, header, name, None, contents)
}

/// Write `header` with `name` (and `link`) filled in, using GNU long-name/long-link entries when
/// they do not fit, then the data.
fn append<W: Write>(
    builder: &mut Builder<W>,
    mut header: Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl Read,
) -> io::Result<()> {
    if name.len() >= NAME_FIELD {
        append_long_name(builder, b'L', name)?;
    }
    let field = &mut header.as_old_mut().name;
    let shown = name.len().min(field.len());
    field[..shown].copy_from_slice(&name[..shown]);
    if let Some(link) = link {
        if link.len() >= NAME_FIELD {
            append_long_name(builder, b'K', link)?;
        }
        let field = &mut header.as_old_mut().linkname;
        let shown = link.len().min(field.len());
        field[..shown].copy_from_slice(&link[..shown]);
    }
    header.set_cksum();
    builder.append(&header, data)
}

/// A GNU `././@LongLink` entry carrying a name or link target of any length (NUL-terminated).
fn append_long_name<W: Write>(builder: &mut Builder<W>, kind: u8, value: &[u8]) -> io::Result<()> {
    let mut header = Header::new_gnu();
    let marker = b"././@LongLink";
    header.as_old_mut().name[..marker.len()].copy_from_slice(marker);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(value.len() as u64 + 1);
    header.set_entry_type(EntryType::new(kind));
    header.set_cksum();
    builder.append(&header, value.chain(&[0u8][..]))
}

/// Linux `dev_t` to (major, minor), as glibc's `gnu_dev_major`/`gnu_dev_minor` split it.
fn device_numbers(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
    (major as u32, minor as u32)
}

fn changed(path: &Path, detail: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        ContextError::Changed {
            path: path.to_path_buf(),
            detail,
        },
    )
}

fn io_error(path: &Path, source: io::Error) -> io::Error {
    io::Error::new(
        source.kind(),
        ContextError::Io {
            path: path.to_path_buf(),
            source,
        },
    )
}

/// An entry that cannot be found any more was removed after the scan.
fn vanished(path: &Path, source: io::Error) -> io::Error {
    if source.kind() == io::ErrorKind::NotFound {
        changed(path, "it was removed after the scan".into())
    } else {
        io_error(path, source)
    }
}

/// Yields exactly the size written in the tar header and fails if the file is shorter or longer,
/// so a file that changes while it is read can never produce a corrupt or silently wrong tar.
struct ExactReader<'a> {
    file: fs::File,
    expected: u64,
    remaining: u64,
    path: &'a Path,
}

impl<'a> ExactReader<'a> {
    fn new(file: fs::File, expected: u64, path: &'a Path) -> Self {
        ExactReader {
            file,
            expected,
            remaining: expected,
            path,
        }
    }
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.file.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(changed(
                    self.path,
                    format!(
                        "it grew past the {} bytes recorded in the tar header while being read",
                        self.expected
                    ),
                )),
                Err(err) => Err(io_error(self.path, err)),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.file.read(&mut buf[..want]).map_err(|err| {
            if err.kind() == io::ErrorKind::Interrupted {
                err
            } else {
                io_error(self.path, err)
            }
        })?;
        if read == 0 {
            return Err(changed(
                self.path,
                format!(
                    "it shrank while being read: the tar header says {} bytes, only {} could be read",
                    self.expected,
                    self.expected - self.remaining
                ),
            ));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Collects writes into chunks of about [`CHUNK_BYTES`] and sends them on the channel; blocks
/// when the channel is full, so memory stays flat.
struct ChannelSink {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: BytesMut,
    produced: Arc<AtomicU64>,
    discard: Arc<AtomicBool>,
}

impl ChannelSink {
    fn new(sender: mpsc::Sender<io::Result<Bytes>>, produced: Arc<AtomicU64>) -> Self {
        ChannelSink {
            sender,
            buffer: BytesMut::with_capacity(CHUNK_BYTES + NAME_FIELD * 512),
            produced,
            discard: Arc::new(AtomicBool::new(false)),
        }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        let fresh = BytesMut::with_capacity(CHUNK_BYTES + NAME_FIELD * 512);
        let chunk = std::mem::replace(&mut self.buffer, fresh).freeze();
        let len = chunk.len() as u64;
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the build context stream was dropped",
            )
        })?;
        self.produced.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Send what is left; only called once the archive is complete.
    fn finish(mut self) -> io::Result<()> {
        if self.buffer.is_empty() || self.discard.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.send_buffer()
    }
}

impl Write for ChannelSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.discard.load(Ordering::Relaxed) {
            return Ok(data.len());
        }
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunk boundaries do not matter to the daemon; sending small flushes would only add overhead.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_reader_rejects_short_and_long_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"hello").unwrap();

        let mut shorter = Vec::new();
        let err = ExactReader::new(fs::File::open(&path).unwrap(), 8, Path::new("f"))
            .read_to_end(&mut shorter)
            .unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
        assert!(matches!(
            ContextError::from_stream_error(&err),
            Some(ContextError::Changed { .. })
        ));

        let mut longer = Vec::new();
        let err = ExactReader::new(fs::File::open(&path).unwrap(), 3, Path::new("f"))
            .read_to_end(&mut longer)
            .unwrap_err();
        assert!(err.to_string().contains("grew"), "{err}");

        let mut exact = Vec::new();
        ExactReader::new(fs::File::open(&path).unwrap(), 5, Path::new("f"))
            .read_to_end(&mut exact)
            .unwrap();
        assert_eq!(exact, b"hello");
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        // glibc's makedev: low 8 bits of the minor, 12 bits of the major, then the high bits.
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfff) << 8)
                | ((major & !0xfff) << 32)
                | (minor & 0xff)
                | ((minor & !0xff) << 12)
        };
        assert_eq!(device_numbers(0x801), (8, 1));
        assert_eq!(device_numbers(makedev(259, 65536)), (259, 65536));
        assert_eq!(device_numbers(makedev(4095, 255)), (4095, 255));
    }
}
