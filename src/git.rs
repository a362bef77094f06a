//! The few git questions ecrbuild asks: which commit is checked out, and which of two commits is newer.
//! Asked through the `git` command, which CI images and laptops already have (and which knows shallow
//! clones, alternates and worktrees better than any re-implementation).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A git checkout (or none: every answer is then `None`).
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

impl History {
    pub fn at(dir: &Path) -> Self {
        History {
            dir: dir.to_path_buf(),
        }
    }

    fn git(&self, args: &[&str]) -> Option<std::process::Output> {
        Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
    }

    /// `git rev-parse HEAD`.
    pub fn head(&self) -> Option<String> {
        let out = self.git(&["rev-parse", "HEAD"])?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The checked-out branch (`HEAD` when detached).
    pub fn branch(&self) -> Option<String> {
        let out = self.git(&["rev-parse", "--abbrev-ref", "HEAD"])?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The URL of the `origin` remote.
    pub fn remote_url(&self) -> Option<String> {
        let out = self.git(&["remote", "get-url", "origin"])?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `descendant`; `None` when git cannot tell
    /// (no checkout, a shallow clone without one of the commits).
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Option<bool> {
        let out = self.git(&["merge-base", "--is-ancestor", ancestor, descendant])?;
        match out.status.code() {
            Some(0) => Some(true),
            Some(1) => Some(false),
            _ => None,
        }
    }

    /// Committer time of a commit, in seconds since the epoch.
    pub fn commit_time(&self, sha: &str) -> Option<i64> {
        let out = self.git(&["show", "-s", "--format=%ct", sha, "--"])?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }
}
