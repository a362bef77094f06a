//! `latest` only moves forward. Every image carries its commit in labels; before `latest` moves, the
//! commit behind the current `latest` is read from the registry and compared with ours:
//! a descendant in git history is newer; where git cannot tell (shallow clones, other checkouts), the
//! later commit time is newer. Anything else leaves `latest` alone.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::git::History;
use crate::identity::Revision;

/// What git can say about two commits. A trait so the ordering rule is unit-tested without a repository.
pub trait Ancestry {
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Option<bool>;
    fn commit_time(&self, sha: &str) -> Option<i64>;
}

impl Ancestry for History {
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Option<bool> {
        History::is_ancestor(self, ancestor, descendant)
    }

    fn commit_time(&self, sha: &str) -> Option<i64> {
        History::commit_time(self, sha)
    }
}

/// What git knows, asked only about the commits it has. In a shallow clone almost no candidate is known,
/// and asking git about each would start processes in proportion to the repository's tags.
/// Commit times are remembered: ordering many candidates asks for the same one again and again.
pub struct KnownAncestry<'a, A: Ancestry> {
    inner: &'a A,
    known: HashSet<String>,
    times: RefCell<HashMap<String, Option<i64>>>,
}

impl<'a> KnownAncestry<'a, History> {
    /// `history`, which has exactly the commits in `known` of those it will be asked about.
    pub fn new(history: &'a History, known: HashSet<String>) -> Self {
        KnownAncestry {
            inner: history,
            known,
            times: RefCell::default(),
        }
    }
}

impl<A: Ancestry> Ancestry for KnownAncestry<'_, A> {
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Option<bool> {
        (self.known.contains(ancestor) && self.known.contains(descendant))
            .then(|| self.inner.is_ancestor(ancestor, descendant))
            .flatten()
    }

    fn commit_time(&self, sha: &str) -> Option<i64> {
        if !self.known.contains(sha) {
            return None;
        }
        if let Some(time) = self.times.borrow().get(sha) {
            return *time;
        }
        let time = self.inner.commit_time(sha);
        self.times.borrow_mut().insert(sha.to_string(), time);
        time
    }
}

/// How a candidate commit relates to the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    Same,
    Newer(&'static str),
    Older(&'static str),
    /// Neither git nor commit times can order them.
    Unknown,
}

/// Order `candidate` against `current`.
pub fn compare(candidate: &Revision, current: &Revision, history: &dyn Ancestry) -> Order {
    if candidate.sha == current.sha {
        return Order::Same;
    }
    // Asked one at a time: moving forward, the common case, needs only the first answer.
    if history.is_ancestor(&current.sha, &candidate.sha) == Some(true) {
        return Order::Newer("it descends from the current latest");
    }
    if history.is_ancestor(&candidate.sha, &current.sha) == Some(true) {
        return Order::Older("the current latest descends from it");
    }
    let time = |r: &Revision| r.commit_time.or_else(|| history.commit_time(&r.sha));
    match (time(candidate), time(current)) {
        (Some(a), Some(b)) if a > b => Order::Newer("it was committed later"),
        (Some(_), Some(_)) => Order::Older("it was not committed later"),
        _ => Order::Unknown,
    }
}

/// The newest of `revisions` (the first wins ties and unknowns), or `None` when empty.
pub fn newest<'a>(revisions: &'a [Revision], history: &dyn Ancestry) -> Option<&'a Revision> {
    let mut best = revisions.first()?;
    for candidate in &revisions[1..] {
        if let Order::Newer(_) = compare(candidate, best, history) {
            best = candidate;
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A linear history a ← b ← c with times 10, 20, 30, plus `x` diverged at time 25.
    struct Linear;
    impl Ancestry for Linear {
        fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Option<bool> {
            let order = ["a", "b", "c"];
            let pos = |s: &str| order.iter().position(|o| *o == s);
            match (pos(ancestor), pos(descendant)) {
                (Some(x), Some(y)) => Some(x <= y),
                _ if ancestor == "x" || descendant == "x" => Some(false),
                _ => None,
            }
        }
        fn commit_time(&self, sha: &str) -> Option<i64> {
            match sha {
                "a" => Some(10),
                "b" => Some(20),
                "c" => Some(30),
                "x" => Some(25),
                _ => None,
            }
        }
    }

    /// No repository at all.
    struct NoGit;
    impl Ancestry for NoGit {
        fn is_ancestor(&self, _: &str, _: &str) -> Option<bool> {
            None
        }
        fn commit_time(&self, _: &str) -> Option<i64> {
            None
        }
    }

    fn rev(sha: &str) -> Revision {
        Revision {
            sha: sha.into(),
            commit_time: None,
        }
    }

    #[test]
    fn descendants_are_newer_and_ancestors_older() {
        assert!(matches!(
            compare(&rev("c"), &rev("a"), &Linear),
            Order::Newer(_)
        ));
        assert!(matches!(
            compare(&rev("a"), &rev("c"), &Linear),
            Order::Older(_)
        ));
        assert_eq!(compare(&rev("b"), &rev("b"), &Linear), Order::Same);
    }

    #[test]
    fn diverged_commits_are_ordered_by_commit_time() {
        assert!(matches!(
            compare(&rev("x"), &rev("b"), &Linear),
            Order::Newer(_)
        ));
        assert!(matches!(
            compare(&rev("x"), &rev("c"), &Linear),
            Order::Older(_)
        ));
    }

    #[test]
    fn without_git_the_labels_commit_times_decide() {
        let old = Revision {
            sha: "o".into(),
            commit_time: Some(100),
        };
        let new = Revision {
            sha: "n".into(),
            commit_time: Some(200),
        };
        assert!(matches!(compare(&new, &old, &NoGit), Order::Newer(_)));
        assert!(matches!(compare(&old, &new, &NoGit), Order::Older(_)));
        let same_time = Revision {
            sha: "s".into(),
            commit_time: Some(100),
        };
        assert!(matches!(compare(&same_time, &old, &NoGit), Order::Older(_)));
        assert_eq!(compare(&rev("p"), &old, &NoGit), Order::Unknown);
    }

    /// Counts the questions that reach git.
    struct Counting(std::cell::Cell<usize>);
    impl Ancestry for Counting {
        fn is_ancestor(&self, a: &str, d: &str) -> Option<bool> {
            self.0.set(self.0.get() + 1);
            Linear.is_ancestor(a, d)
        }
        fn commit_time(&self, sha: &str) -> Option<i64> {
            self.0.set(self.0.get() + 1);
            Linear.commit_time(sha)
        }
    }

    #[test]
    fn unknown_commits_are_never_asked_about() {
        let counting = Counting(std::cell::Cell::new(0));
        let known = KnownAncestry {
            inner: &counting,
            known: ["a", "c"].iter().map(|s| s.to_string()).collect(),
            times: RefCell::default(),
        };
        let unknown: Vec<Revision> = (0..100)
            .map(|i| Revision {
                sha: format!("u{i}"),
                commit_time: Some(i),
            })
            .collect();
        let mut revisions = vec![rev("a")];
        revisions.extend(unknown);
        revisions.push(rev("c"));
        // c descends from a; the unknown ones are ordered by their label times, without git.
        assert_eq!(newest(&revisions, &known).unwrap().sha, "u99");
        assert!(counting.0.get() <= 4, "{} questions", counting.0.get());
        assert!(matches!(
            compare(&rev("c"), &rev("a"), &known),
            Order::Newer(_)
        ));
    }

    #[test]
    fn newest_of_a_shuffled_history() {
        let revisions = [rev("b"), rev("c"), rev("a")];
        assert_eq!(newest(&revisions, &Linear).unwrap().sha, "c");
        let revisions = [rev("a"), rev("x"), rev("b")];
        assert_eq!(newest(&revisions, &Linear).unwrap().sha, "x");
        assert!(newest(&[], &Linear).is_none());
    }
}
