//! The few git questions ecrbuild asks: which commit is checked out, and which of two commits is newer.
//! Asked through the `git` command, which CI images and laptops already have (and which knows shallow
//! clones, alternates and worktrees better than any re-implementation).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

/// Answers already given, by question (arguments and stdin), each asked once.
type Answers = Arc<Mutex<HashMap<(Vec<String>, String), Arc<OnceLock<Option<Output>>>>>>;

/// A git checkout (or none: every answer is then `None`).
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
    answers: Option<Answers>,
}

impl History {
    pub fn at(dir: &Path) -> Self {
        History {
            dir: dir.to_path_buf(),
            answers: None,
        }
    }

    /// A history that asks git each question once, for every clone of it: the services of one run
    /// ask the same questions about the same commits, and each answer costs a process.
    pub fn remembering(dir: &Path) -> Self {
        History {
            dir: dir.to_path_buf(),
            answers: Some(Answers::default()),
        }
    }

    /// Ask git from async code: on a blocking thread, since git runs as a child process and the
    /// runtime's threads must not wait for it.
    pub async fn ask<T, F>(&self, question: F) -> crate::Result<T>
    where
        F: FnOnce(&History) -> T + Send + 'static,
        T: Send + 'static,
    {
        let history = self.clone();
        tokio::task::spawn_blocking(move || question(&history))
            .await
            .map_err(|e| crate::Error::Internal(format!("a git query stopped: {e}")))
    }

    fn git(&self, args: &[&str]) -> Option<Output> {
        self.answer(args, None)
    }

    /// Run git (with `input` on stdin, if any), or give the answer it gave before.
    fn answer(&self, args: &[&str], input: Option<&str>) -> Option<Output> {
        let Some(answers) = &self.answers else {
            return self.run(args, input);
        };
        let question = (
            args.iter().map(ToString::to_string).collect(),
            input.unwrap_or_default().to_string(),
        );
        let answer = Arc::clone(
            answers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(question)
                .or_default(),
        );
        answer.get_or_init(|| self.run(args, input)).clone()
    }

    fn run(&self, args: &[&str], input: Option<&str>) -> Option<Output> {
        use std::io::Write;
        let Some(input) = input else {
            return Command::new("git")
                .arg("-C")
                .arg(&self.dir)
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok();
        };
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        let input = input.to_string();
        // Written from another thread: git may fill its stdout pipe before it has read all of stdin.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().ok()?;
        writer.join().ok()?.ok()?;
        Some(out)
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

    /// Which of `shas` descend from `ancestor`: `Some(true)` or `Some(false)`, or `None` for a commit git
    /// does not have (a shallow clone, another checkout). At most two git processes however many are
    /// asked about, where [`History::is_ancestor`] would take one each; only the commits git has go to
    /// the second (in a shallow clone there are none, and `rev-list` is slow to look for missing ones).
    pub fn descend_from(&self, ancestor: &str, shas: &[&str]) -> Vec<Option<bool>> {
        let unknown = || vec![None; shas.len()];
        let known = self.known_commits(&[&[ancestor][..], shas].concat());
        if !known.contains(ancestor) {
            return unknown();
        }
        let known_shas: Vec<&str> = shas
            .iter()
            .copied()
            .filter(|sha| known.contains(*sha))
            .collect();
        let descendants: std::collections::HashSet<String> = if known_shas.is_empty() {
            Default::default()
        } else {
            let mut revisions = format!("^{ancestor}\n");
            for sha in &known_shas {
                revisions.push_str(sha);
                revisions.push('\n');
            }
            let args = ["rev-list", "--ancestry-path", "--stdin"];
            match self.git_with_input(&args, &revisions) {
                Some(listed) => listed.lines().map(str::to_string).collect(),
                None => return unknown(),
            }
        };
        shas.iter()
            .map(|sha| known.contains(*sha).then(|| descendants.contains(*sha)))
            .collect()
    }

    /// Which of `shas` are commits this checkout has, in one git process. Empty when git cannot say.
    pub fn known_commits(&self, shas: &[&str]) -> std::collections::HashSet<String> {
        let mut query = String::with_capacity(41 * shas.len());
        for sha in shas {
            query.push_str(sha);
            query.push('\n');
        }
        let Some(types) = self.git_with_input(&["cat-file", "--batch-check=%(objecttype)"], &query)
        else {
            return Default::default();
        };
        shas.iter()
            .zip(types.lines())
            .filter(|(_, kind)| *kind == "commit")
            .map(|(sha, _)| sha.to_string())
            .collect()
    }

    /// Run git with `input` on stdin; its stdout when it succeeds.
    fn git_with_input(&self, args: &[&str], input: &str) -> Option<String> {
        let out = self.answer(args, Some(input))?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn descendants_are_found_in_one_pass() {
        let dir = std::env::temp_dir().join(format!("ecrbuild-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        let commit = |message: &str| {
            git(&dir, &["commit", "-q", "--allow-empty", "-m", message]);
            git(&dir, &["rev-parse", "HEAD"])
        };
        // a ← b ← c on main; d branches off a.
        let a = commit("a");
        let b = commit("b");
        let c = commit("c");
        git(&dir, &["checkout", "-q", "-b", "side", &a]);
        let d = commit("d");
        let unknown = "f".repeat(40);
        let history = History::at(&dir);
        assert_eq!(
            history.descend_from(&b, &[&a, &c, &d, &unknown]),
            vec![Some(false), Some(true), Some(false), None]
        );
        assert_eq!(
            history.descend_from(&a, &[&b, &d]),
            vec![Some(true), Some(true)]
        );
        // An ancestor git does not have: nothing can be said.
        assert_eq!(history.descend_from(&unknown, &[&a]), vec![None]);
        let known = history.known_commits(&[&a, &unknown, &d]);
        assert_eq!(
            known,
            [a.clone(), d.clone()]
                .into_iter()
                .collect::<std::collections::HashSet<_>>()
        );
        assert_eq!(history.descend_from(&c, &[]), Vec::<Option<bool>>::new());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_remembering_history_asks_each_question_once_for_all_its_clones() {
        let dir = std::env::temp_dir().join(format!("ecrbuild-git-memo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        git(&dir, &["commit", "-q", "--allow-empty", "-m", "a"]);
        let first = git(&dir, &["rev-parse", "HEAD"]);
        let remembering = History::remembering(&dir);
        let clone = remembering.clone();
        assert_eq!(remembering.head().as_deref(), Some(first.as_str()));
        let a = first.clone();
        let b = remembering.known_commits(&[&a]);
        git(&dir, &["commit", "-q", "--allow-empty", "-m", "b"]);
        let second = git(&dir, &["rev-parse", "HEAD"]);
        // The clone gets the answer given before, not a new one; a plain history asks git again.
        assert_eq!(clone.head().as_deref(), Some(first.as_str()));
        assert_eq!(History::at(&dir).head().as_deref(), Some(second.as_str()));
        // A question with other input is a new question.
        assert_eq!(clone.known_commits(&[&a]), b);
        assert!(clone.known_commits(&[&second]).contains(&second));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
