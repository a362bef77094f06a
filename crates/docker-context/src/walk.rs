//! Scanning: resolve the context directory and the Dockerfile like the docker CLI, read
//! `.dockerignore`, then walk the tree in the order and with the exclusion logic of moby's tar
//! archiver, checking up front that everything that will be sent can be read.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::entries::EntryList;
use super::gostr::{clean, rel};
use super::ignore::{IgnoreRules, MatchState};
use super::tar_stream::TarPlan;
use super::{BuildContext, ContextError, Entry, EntryKind, ExternalDockerfile};

const DOCKERIGNORE: &[u8] = b".dockerignore";

pub(crate) fn scan(root: &Path, dockerfile: &Path) -> Result<BuildContext, ContextError> {
    let cwd = std::env::current_dir().map_err(|source| ContextError::Io {
        path: PathBuf::from("."),
        source,
    })?;
    let context_dir = resolve_context_dir(&cwd, root)?;
    let dockerfile_path = resolve_dockerfile(&cwd, dockerfile)?;

    let mut rules = read_rules(&context_dir)?;
    let dockerfile_rel = rel(
        context_dir.as_os_str().as_bytes(),
        dockerfile_path.as_os_str().as_bytes(),
    );
    let inside = !dockerfile_rel.starts_with(b"../");

    // docker/cli TrimBuildFilesFromExcludes: re-include an excluded .dockerignore and Dockerfile
    // with `!` patterns, decided with the deprecated one-parent matcher. The Dockerfile path is read
    // as a pattern; if that fails we skip it and rely on the fallback below.
    for path in [DOCKERIGNORE, dockerfile_rel.as_slice()] {
        if rules.is_excluded_legacy(path) {
            if let Err(err) = rules.push_exception(path) {
                tracing::warn!("cannot re-include {}: {err}", String::from_utf8_lossy(path));
            }
        }
    }

    let mut walker = Walker {
        root: &context_dir,
        rules: &rules,
        entries: EntryList::default(),
        forced: Vec::new(),
        watched: vec![
            (DOCKERIGNORE.to_vec(), false),
            (dockerfile_rel.clone(), false),
        ],
        dockerignore_size: None,
        content_bytes: 0,
        tar_bytes: END_OF_ARCHIVE,
    };
    walker.walk_dir(b"", None)?;

    // The CLI's one-parent check can miss an excluded Dockerfile (`**/sub` with `sub/Dockerfile`),
    // and then the daemon fails with "Cannot locate specified Dockerfile". Always send both files.
    walker.ensure_sent(DOCKERIGNORE, false)?;
    if inside {
        walker.ensure_sent(&dockerfile_rel, true)?;
    }
    let Walker {
        mut entries,
        mut forced,
        dockerignore_size,
        mut content_bytes,
        mut tar_bytes,
        ..
    } = walker;
    forced.sort_by(|a, b| a.path.cmp(&b.path));

    let in_tar_name = if inside {
        String::from_utf8(dockerfile_rel.clone()).ok()
    } else {
        None
    };
    let (dockerfile_in_tar, external_dockerfile) = match in_tar_name {
        Some(name) => (name, None),
        None => {
            // Outside the context (or not UTF-8, which the API's query string cannot carry): send
            // the contents under a generated name, listed in .dockerignore so the daemon hides it.
            let contents =
                fs::read(&dockerfile_path).map_err(|source| ContextError::Unreadable {
                    path: dockerfile.to_path_buf(),
                    source,
                })?;
            let name = generated_dockerfile_name();
            let added = (name.len() + 2) as u64;
            content_bytes += contents.len() as u64 + added;
            tar_bytes += entry_tar_bytes(name.len(), 0, contents.len() as u64);
            match dockerignore_size {
                Some(size) => {
                    tar_bytes += padded(size + added) - padded(size);
                }
                None => {
                    content_bytes += DOCKERIGNORE.len() as u64;
                    tar_bytes +=
                        entry_tar_bytes(DOCKERIGNORE.len(), 0, DOCKERIGNORE.len() as u64 + added);
                }
            }
            (name.clone(), Some(ExternalDockerfile { name, contents }))
        }
    };
    entries.shrink_to_fit();
    Ok(BuildContext {
        plan: TarPlan {
            root: context_dir,
            entries,
            forced,
            dockerignore_sent: dockerignore_size.is_some(),
            external_dockerfile,
            selection: None,
        },
        dockerfile_in_tar,
        content_bytes,
        tar_bytes,
        bytes_produced: Arc::new(AtomicU64::new(0)),
    })
}

const BLOCK: u64 = 512;
pub(crate) const END_OF_ARCHIVE: u64 = 2 * BLOCK;

fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// Bytes one entry takes in the tar: header, GNU long name/link records, padded data.
pub(crate) fn entry_tar_bytes(name_len: usize, link_len: usize, size: u64) -> u64 {
    let long_record = |len: usize| {
        if len >= 100 {
            BLOCK + padded(len as u64 + 1)
        } else {
            0
        }
    };
    BLOCK + long_record(name_len) + long_record(link_len) + padded(size)
}

/// Like the CLI: absolute (lexically cleaned), symlinks resolved, must be a directory.
fn resolve_context_dir(cwd: &Path, root: &Path) -> Result<PathBuf, ContextError> {
    let not_a_directory = || ContextError::NotADirectory {
        path: root.to_path_buf(),
    };
    let absolute = absolute(cwd, root);
    let resolved = fs::canonicalize(absolute).map_err(|_| not_a_directory())?;
    match fs::metadata(&resolved) {
        Ok(meta) if meta.is_dir() => Ok(resolved),
        _ => Err(not_a_directory()),
    }
}

/// Like the CLI: `-f` is relative to the current directory; symlinks are resolved.
fn resolve_dockerfile(cwd: &Path, dockerfile: &Path) -> Result<PathBuf, ContextError> {
    let missing = || ContextError::DockerfileMissing {
        path: dockerfile.to_path_buf(),
    };
    let resolved =
        fs::canonicalize(absolute(cwd, dockerfile)).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => missing(),
            _ => ContextError::Unreadable {
                path: dockerfile.to_path_buf(),
                source,
            },
        })?;
    match fs::metadata(&resolved) {
        Ok(meta) if meta.is_file() => Ok(resolved),
        _ => Err(missing()),
    }
}

/// Go's `filepath.Abs`: join with the working directory and clean lexically (before symlinks are
/// resolved, so `link/..` means the directory holding `link`, as in the CLI).
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = cwd.join(path);
    PathBuf::from(OsString::from_vec(clean(joined.as_os_str().as_bytes())))
}

fn read_rules(context_dir: &Path) -> Result<IgnoreRules, ContextError> {
    let path = context_dir.join(OsStr::from_bytes(DOCKERIGNORE));
    let content = match fs::read(&path) {
        Ok(content) => content,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(IgnoreRules::default()),
        Err(source) => return Err(ContextError::Io { path, source }),
    };
    IgnoreRules::parse(&content).map_err(|err| ContextError::BadPattern {
        line: err.line,
        source: err.source,
    })
}

/// `.dockerfile.` and 20 hex digits, like the CLI's name for a Dockerfile from outside the context.
fn generated_dockerfile_name() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut words = [0u64; 2];
    for (salt, word) in words.iter_mut().enumerate() {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_usize(salt);
        *word = hasher.finish();
    }
    let hex = format!("{:016x}{:016x}", words[0], words[1]);
    format!(".dockerfile.{}", &hex[..20])
}

struct Walker<'a> {
    root: &'a Path,
    rules: &'a IgnoreRules,
    entries: EntryList,
    forced: Vec<Entry>,
    /// Paths `ensure_sent` may have to add (`.dockerignore`, the Dockerfile), and whether the walk sent them.
    watched: Vec<(Vec<u8>, bool)>,
    /// Size of the `.dockerignore` when it is sent as a regular file.
    dockerignore_size: Option<u64>,
    content_bytes: u64,
    tar_bytes: u64,
}

impl Walker<'_> {
    /// moby's TarWithOptions walk: lexical order, no symlink following, an excluded directory is
    /// walked only if an exception pattern lies inside it (and is itself not sent).
    fn walk_dir(
        &mut self,
        rel_dir: &[u8],
        parent: Option<&MatchState>,
    ) -> Result<(), ContextError> {
        let dir = self.absolute(rel_dir);
        let unreadable = |source| ContextError::Unreadable {
            path: dir.clone(),
            source,
        };
        let mut children = Vec::new();
        for child in fs::read_dir(&dir).map_err(unreadable)? {
            let child = child.map_err(unreadable)?;
            let file_type = child.file_type().map_err(unreadable)?;
            children.push((child.file_name().into_vec(), file_type));
        }
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        for (name, file_type) in children {
            let mut path = Vec::with_capacity(rel_dir.len() + 1 + name.len());
            if !rel_dir.is_empty() {
                path.extend_from_slice(rel_dir);
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let (excluded, state) = self.rules.match_entry(&path, parent);
            if excluded {
                if file_type.is_dir()
                    && self.rules.has_exceptions()
                    && self.rules.exception_may_reinclude_inside(&path)
                {
                    self.walk_dir(&path, Some(&state))?;
                }
                continue;
            }
            let Some(kind) = EntryKind::of(&file_type) else {
                tracing::debug!("skipping socket {}", String::from_utf8_lossy(&path));
                continue;
            };
            self.add(path.clone(), kind)?;
            if kind == EntryKind::Directory {
                self.walk_dir(&path, Some(&state))?;
            }
        }
        Ok(())
    }

    fn absolute(&self, rel_path: &[u8]) -> PathBuf {
        if rel_path.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(OsStr::from_bytes(rel_path))
        }
    }

    /// Record an entry; a regular file must open now, as the CLI checks before contacting the daemon.
    fn add(&mut self, path: Vec<u8>, kind: EntryKind) -> Result<(), ContextError> {
        for (watched, seen) in &mut self.watched {
            *seen |= *watched == path;
        }
        let entry = self.checked_entry(path, kind)?;
        self.entries
            .push(entry.path.as_os_str().as_bytes(), entry.kind, entry.size);
        Ok(())
    }

    fn checked_entry(&mut self, path: Vec<u8>, kind: EntryKind) -> Result<Entry, ContextError> {
        let mut size = 0;
        let mut link_len = 0;
        let absolute = self.absolute(&path);
        let unreadable = |source| ContextError::Unreadable {
            path: absolute.clone(),
            source,
        };
        match kind {
            EntryKind::File => {
                let file = fs::File::open(&absolute).map_err(unreadable)?;
                size = file.metadata().map_err(unreadable)?.len();
                self.content_bytes += size;
            }
            EntryKind::Symlink => {
                link_len = fs::read_link(&absolute)
                    .map_err(unreadable)?
                    .as_os_str()
                    .len();
            }
            _ => {}
        }
        let name_len = path.len() + usize::from(kind == EntryKind::Directory);
        self.tar_bytes += entry_tar_bytes(name_len, link_len, size);
        if kind == EntryKind::File && path == DOCKERIGNORE {
            self.dockerignore_size = Some(size);
        }
        Ok(Entry {
            path: PathBuf::from(OsString::from_vec(path)),
            kind,
            size,
        })
    }

    /// Insert `rel_path` at its walk-order position if the rules left it out.
    fn ensure_sent(&mut self, rel_path: &[u8], is_dockerfile: bool) -> Result<(), ContextError> {
        let sent = self
            .watched
            .iter()
            .any(|(watched, seen)| *seen && watched == rel_path)
            || self
                .forced
                .iter()
                .any(|entry| entry.path.as_os_str().as_bytes() == rel_path);
        if sent {
            return Ok(());
        }
        let meta = match fs::symlink_metadata(self.absolute(rel_path)) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound && !is_dockerfile => return Ok(()),
            Err(source) => {
                return Err(ContextError::Io {
                    path: self.absolute(rel_path),
                    source,
                })
            }
        };
        let Some(kind) = EntryKind::of(&meta.file_type()) else {
            return Ok(());
        };
        tracing::warn!(
            "{} is excluded by .dockerignore in a way the docker CLI would not undo; sending it anyway",
            String::from_utf8_lossy(rel_path)
        );
        let entry = self.checked_entry(rel_path.to_vec(), kind)?;
        self.forced.push(entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_name_looks_like_the_clis() {
        let first = generated_dockerfile_name();
        let hex = first.strip_prefix(".dockerfile.").unwrap();
        assert_eq!(hex.len(), 20);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(first, generated_dockerfile_name());
    }

    #[test]
    fn absolute_cleans_before_resolving_symlinks() {
        let cwd = Path::new("/work/repo");
        assert_eq!(
            absolute(cwd, Path::new("link/../api/Dockerfile")),
            Path::new("/work/repo/api/Dockerfile")
        );
        assert_eq!(absolute(cwd, Path::new("/abs/./x/")), Path::new("/abs/x"));
        assert_eq!(absolute(cwd, Path::new(".")), Path::new("/work/repo"));
    }
}
