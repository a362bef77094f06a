//! Fixtures shared by the integration tests: a throwaway context directory ([`Tree`]) and a tar
//! reader that keeps every header field the tests look at ([`read_tar`]).

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use docker_context::{BuildContext, ContextError};
use tar::EntryType;

pub const DOCKERFILE: &str = "FROM scratch\nCOPY . /c/\n";

/// A context directory in a temporary directory, with a `Dockerfile` at its root.
pub struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        let tree = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        tree.file("Dockerfile", DOCKERFILE);
        tree
    }

    /// A tree with `files` (each holding its own name; a trailing `/` makes a directory) and
    /// this `.dockerignore`.
    pub fn with(files: &[&str], dockerignore: &str) -> Tree {
        let tree = Tree::new();
        for file in files {
            if let Some(dir) = file.strip_suffix('/') {
                fs::create_dir_all(tree.path(dir)).unwrap();
            } else {
                tree.file(file, file);
            }
        }
        tree.file(".dockerignore", dockerignore);
        tree
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root().join(rel)
    }

    pub fn file(&self, rel: impl AsRef<Path>, contents: &str) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    pub fn dir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(&path).unwrap();
        path
    }

    pub fn scan(&self) -> BuildContext {
        self.scan_with("Dockerfile").unwrap()
    }

    pub fn scan_with(&self, dockerfile: &str) -> Result<BuildContext, ContextError> {
        BuildContext::scan(self.root(), &self.path(dockerfile))
    }

    /// The paths the context sends, in order.
    pub fn sent(&self) -> Vec<String> {
        sent(&self.scan())
    }
}

pub fn sent(context: &BuildContext) -> Vec<String> {
    context
        .paths()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// One tar entry as read back: its header fields and its data.
#[derive(Debug)]
pub struct TarEntry {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub mtime: u64,
    pub size: u64,
    pub link: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

pub fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let name = entry.path_bytes().into_owned();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.push(TarEntry {
            name,
            kind: header.entry_type(),
            mode: header.mode().unwrap(),
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            uname: header.username_bytes().unwrap_or_default().to_vec(),
            gname: header.groupname_bytes().unwrap_or_default().to_vec(),
            mtime: header.mtime().unwrap(),
            size: header.size().unwrap(),
            link,
            data,
        });
    }
    entries
}

/// The tar of `context`, written synchronously and read back.
pub fn tar_of(context: &BuildContext) -> Vec<TarEntry> {
    read_tar(&context.write_tar(Vec::new()).unwrap())
}
