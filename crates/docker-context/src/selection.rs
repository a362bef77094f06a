//! Sending part of the context: the subtrees a Dockerfile's `COPY`/`ADD` read (see
//! [`dockerfile`](super::dockerfile)), the directories above them, the Dockerfile and `.dockerignore`.
//! The daemon then reads exactly the files it would have read from the whole context, with the same tar
//! headers, so every `COPY` gets the same cache key and the same result. Where that cannot be promised
//! (a symlink the builder would resolve, a hard link whose first name may lie outside), the whole
//! context is sent.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::dockerfile::SourceRoot;
use super::EntryKind;

/// Which walked entries go into the tar.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    roots: Vec<Vec<u8>>,
    /// Sent whatever the roots: the Dockerfile and `.dockerignore`.
    always: Vec<Vec<u8>>,
}

impl Selection {
    pub(crate) fn new(roots: &[SourceRoot], always: &[&[u8]]) -> Selection {
        Selection {
            roots: roots.iter().map(|r| r.path.as_bytes().to_vec()).collect(),
            always: always.iter().map(|p| p.to_vec()).collect(),
        }
    }

    /// Whether `path` (relative, `/`-separated) is sent: under a root, an always-sent file, or a
    /// directory above either.
    pub(crate) fn keeps(&self, path: &[u8], kind: EntryKind) -> bool {
        let under = |root: &[u8]| path == root || is_below(path, root);
        let above = |root: &[u8]| kind == EntryKind::Directory && is_below(root, path);
        self.roots.iter().any(|r| under(r) || above(r))
            || self.always.iter().any(|a| path == a.as_slice() || above(a))
    }
}

/// Whether `path` lies inside the directory `dir` (both relative, `/`-separated).
fn is_below(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && path.get(dir.len()) == Some(&b'/')
}

/// Why the subtrees cannot be sent alone, checked on the paths that lead to them: the builder follows a
/// symlink on the way to a source (or a source that is one), and then reads its target, which may lie
/// anywhere in the context.
pub(crate) fn symlink_on_the_way(root_dir: &Path, roots: &[SourceRoot]) -> Option<String> {
    for root in roots {
        let mut prefix = Vec::new();
        for part in root.path.split('/') {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(part.as_bytes());
            let path = root_dir.join(std::ffi::OsStr::from_bytes(&prefix));
            if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                return Some(format!(
                    "COPY/ADD source {} goes through the symlink {}",
                    root.path,
                    String::from_utf8_lossy(&prefix)
                ));
            }
        }
    }
    None
}

/// Why one selected entry cannot be sent without the rest: a symlink under a wildcard root (the builder
/// resolves matched symlinks), or a hard-linked file (the tar writes a link to the first name it sends,
/// which may be a name outside the selection).
pub(crate) fn entry_needs_everything(
    root_dir: &Path,
    path: &[u8],
    kind: EntryKind,
    wildcard_roots: &[&SourceRoot],
) -> Option<String> {
    let shown = || String::from_utf8_lossy(path).into_owned();
    match kind {
        EntryKind::Symlink
            if wildcard_roots
                .iter()
                .any(|r| is_below(path, r.path.as_bytes())) =>
        {
            Some(format!(
                "{} is a symlink a wildcard COPY/ADD source may match",
                shown()
            ))
        }
        EntryKind::Directory => None,
        _ => {
            let meta =
                fs::symlink_metadata(root_dir.join(std::ffi::OsStr::from_bytes(path))).ok()?;
            (meta.nlink() > 1).then(|| format!("{} is hard-linked", shown()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(path: &str) -> SourceRoot {
        SourceRoot {
            path: path.to_string(),
            wildcard: false,
        }
    }

    #[test]
    fn roots_their_contents_and_the_directories_above_are_kept() {
        let selection = Selection::new(
            &[root("api"), root("lib/util.go")],
            &[b"docker/Dockerfile", b".dockerignore"],
        );
        let kept = |path: &str, kind| selection.keeps(path.as_bytes(), kind);
        assert!(kept("api", EntryKind::Directory));
        assert!(kept("api/main.go", EntryKind::File));
        assert!(kept("api/sub/deep", EntryKind::Symlink));
        assert!(kept("lib", EntryKind::Directory));
        assert!(kept("lib/util.go", EntryKind::File));
        assert!(kept("docker", EntryKind::Directory));
        assert!(kept("docker/Dockerfile", EntryKind::File));
        assert!(kept(".dockerignore", EntryKind::File));

        assert!(!kept("apis", EntryKind::Directory));
        assert!(!kept("api2/main.go", EntryKind::File));
        assert!(!kept("lib/other.go", EntryKind::File));
        assert!(!kept("lib/util.go.bak", EntryKind::File));
        assert!(!kept("docker/other", EntryKind::File));
        // A file named like a directory above a root is not a directory.
        assert!(!kept("lib", EntryKind::File));
        assert!(!kept("README.md", EntryKind::File));
    }
}
