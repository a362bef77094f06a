//! The candidate record: what the `latest` check has learned about a repository's SHA tags, kept in the
//! registry so the next run does not read it again.
//!
//! After moving `latest`, a run must know, for every SHA tag on its line of history, whether that image
//! is a `latest` candidate and its commit time. In a shallow clone git knows no other commit, so without
//! the record every run reads every SHA tag's labels: two requests per tag, a cost that grows with the
//! repository. A published image's labels never change, so what one run read is true for the next: the
//! record holds those facts, and a run reads only the SHA tags the record does not name (in practice the
//! few pushed since the last run).
//!
//! The record is only ever a cache. It is written with a plain read-modify-write, so two runs that write
//! it at once can lose each other's entries; a lost entry is read from its tag again by a later run.
//! Correctness never depends on it: a tag absent from the record is read, as if there were no record.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::identity::{is_sha_tag, Revision};

/// The tag the record is published under. It is not a SHA tag, so no run takes it for an image.
pub const RECORD_TAG: &str = "ecrbuild-candidates";

/// Media type of the record's blob (the config of a small OCI artifact).
pub const RECORD_MEDIA_TYPE: &str = "application/vnd.ecrbuild.latest-candidates.v1+json";

/// The most entries a record holds (one per SHA tag listed); bounds its size at about 0.7 MB.
pub const MAX_RECORD_ENTRIES: usize = crate::registry::MAX_LISTED_TAGS;

/// What is known about one SHA tag's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// Whether its run was to move `latest`.
    #[serde(rename = "c")]
    candidate: bool,
    /// Committer time, seconds since the epoch, when its labels have it.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    commit_time: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    schema: u32,
    tags: BTreeMap<String, Entry>,
}

const SCHEMA: u32 = 1;

/// The facts known about SHA tags, from the record and from this run's reads.
#[derive(Debug, Default)]
pub struct CandidateRecord {
    entries: BTreeMap<String, Entry>,
    /// Whether this run learned something the stored record does not hold.
    changed: bool,
}

impl CandidateRecord {
    /// The record from its stored bytes. Anything unreadable (another schema, garbage) is an empty
    /// record: the tags are read instead.
    pub fn parse(bytes: &[u8]) -> Self {
        let entries = serde_json::from_slice::<Document>(bytes)
            .ok()
            .filter(|doc| doc.schema == SCHEMA)
            .map(|doc| {
                doc.tags
                    .into_iter()
                    .filter(|(sha, _)| is_sha_tag(sha))
                    .take(MAX_RECORD_ENTRIES)
                    .collect()
            })
            .unwrap_or_default();
        CandidateRecord {
            entries,
            changed: false,
        }
    }

    /// What is known of `sha`: `None` when the record does not name it; `Some(None)` when its image is
    /// not a `latest` candidate; `Some(Some(revision))` when it is.
    pub fn get(&self, sha: &str) -> Option<Option<Revision>> {
        self.entries.get(sha).map(|entry| {
            entry.candidate.then(|| Revision {
                sha: sha.to_string(),
                commit_time: entry.commit_time,
            })
        })
    }

    /// Record what a published image's labels say: `candidate` is its revision when it is a
    /// `latest` candidate.
    pub fn learn(&mut self, sha: &str, candidate: Option<&Revision>) {
        let entry = Entry {
            candidate: candidate.is_some(),
            commit_time: candidate.and_then(|r| r.commit_time),
        };
        if self.entries.get(sha) != Some(&entry) {
            self.entries.insert(sha.to_string(), entry);
            self.changed = true;
        }
    }

    /// Whether the stored record lacks something this run learned (or holds tags that are gone).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The bytes to store: only tags still listed, at most [`MAX_RECORD_ENTRIES`].
    pub fn to_bytes(&mut self, listed: &HashSet<String>) -> Vec<u8> {
        let before = self.entries.len();
        self.entries.retain(|sha, _| listed.contains(sha));
        self.changed |= self.entries.len() != before;
        let doc = Document {
            schema: SCHEMA,
            tags: self
                .entries
                .iter()
                .take(MAX_RECORD_ENTRIES)
                .map(|(sha, entry)| (sha.clone(), *entry))
                .collect(),
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(n: u8) -> String {
        format!("{n:02x}").repeat(20)
    }

    fn revision(n: u8, time: i64) -> Revision {
        Revision {
            sha: sha(n),
            commit_time: Some(time),
        }
    }

    #[test]
    fn what_is_learned_survives_a_round_trip() {
        let mut record = CandidateRecord::default();
        record.learn(&sha(1), Some(&revision(1, 100)));
        record.learn(&sha(2), None);
        assert!(record.changed());
        let listed: HashSet<String> = [sha(1), sha(2)].into_iter().collect();
        let stored = CandidateRecord::parse(&record.to_bytes(&listed));
        assert_eq!(stored.get(&sha(1)), Some(Some(revision(1, 100))));
        assert_eq!(stored.get(&sha(2)), Some(None));
        assert_eq!(stored.get(&sha(3)), None);
        assert!(!stored.changed());
    }

    #[test]
    fn learning_a_known_fact_changes_nothing() {
        let mut record = CandidateRecord::default();
        record.learn(&sha(1), Some(&revision(1, 100)));
        let listed: HashSet<String> = [sha(1)].into_iter().collect();
        let mut stored = CandidateRecord::parse(&record.to_bytes(&listed));
        stored.learn(&sha(1), Some(&revision(1, 100)));
        assert!(!stored.changed());
        // A forced re-push that changed the image's labels is recorded again.
        stored.learn(&sha(1), None);
        assert!(stored.changed());
    }

    #[test]
    fn tags_no_longer_listed_are_dropped() {
        let mut record = CandidateRecord::default();
        record.learn(&sha(1), None);
        record.learn(&sha(2), None);
        let listed: HashSet<String> = [sha(2)].into_iter().collect();
        let stored = CandidateRecord::parse(&record.to_bytes(&listed));
        assert_eq!(stored.get(&sha(1)), None);
        assert_eq!(stored.get(&sha(2)), Some(None));
    }

    #[test]
    fn an_unreadable_record_is_empty() {
        for bytes in [
            &b"not json"[..],
            br#"{"schema":2,"tags":{}}"#,
            br#"{"tags":[]}"#,
        ] {
            assert_eq!(CandidateRecord::parse(bytes).entries.len(), 0);
        }
        // Keys that are not SHA tags are ignored.
        let doc = format!(
            r#"{{"schema":1,"tags":{{"latest":{{"c":true}},"{}":{{"c":false}}}}}}"#,
            sha(7)
        );
        let record = CandidateRecord::parse(doc.as_bytes());
        assert_eq!(record.get("latest"), None);
        assert_eq!(record.get(&sha(7)), Some(None));
    }
}
