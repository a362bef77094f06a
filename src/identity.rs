//! The names and values every phase shares: a commit, a tag, a registry and repository, the
//! provenance labels an image carries, and the published identity of an image. This module imports no
//! phase, so every phase may use it (see ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha(String);

impl Sha {
    pub fn parse(source: &str, value: &str) -> Result<Sha> {
        let value = value.trim();
        let hex = value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if (value.len() == 40 || value.len() == 64) && hex {
            return Ok(Sha(value.to_string()));
        }
        let hint = if value.bytes().any(|b| b.is_ascii_uppercase()) && value.len() == 40 {
            " (it has uppercase letters; git prints lowercase)"
        } else if value.len() < 40 && !value.is_empty() && hex {
            " (it looks abbreviated; pass the full `git rev-parse HEAD`)"
        } else {
            ""
        };
        Err(Error::usage(
            source,
            format!(
                "{value:?} is not a commit SHA: expected 40 or 64 lowercase hex characters{hint}"
            ),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An image tag, checked against the registry grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(source: &str, value: &str) -> Result<Tag> {
        let bytes = value.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if first_ok && rest_ok && bytes.len() <= 128 {
            Ok(Tag(value.to_string()))
        } else {
            Err(Error::usage(
                source,
                format!(
                    "{value:?} is not a valid tag: use 1 to 128 of A-Z a-z 0-9 _ . - , not starting with . or -"
                ),
            ))
        }
    }

    pub fn latest() -> Tag {
        Tag("latest".to_string())
    }

    /// The tag that names a commit: the full SHA.
    pub fn of_commit(sha: &Sha) -> Tag {
        Tag(sha.as_str().to_string())
    }

    /// The tag of one platform's image of a commit: `<sha>-<os>-<arch>[-<variant>]`, what `--defer-index`
    /// publishes and `ecrbuild index` joins.
    pub fn of_platform(sha: &Sha, platform: &Platform) -> Tag {
        Tag(format!("{sha}-{}", platform.tag_suffix()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A target platform `os/architecture[/variant]`, e.g. `linux/amd64` or `linux/arm/v7`, as `--platform`
/// and an OCI index name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(source: &str, value: &str) -> Result<Platform> {
        let value = value.trim();
        let parts: Vec<&str> = value.split('/').collect();
        let part_ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(part_ok) {
            return Err(Error::usage(
                source,
                format!("{value:?} is not a platform: expected OS/ARCH[/VARIANT] in lowercase, e.g. linux/amd64 or linux/arm64"),
            ));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The tag suffix of this platform's image: `linux-arm64`, `linux-arm-v7`.
    pub fn tag_suffix(&self) -> String {
        self.to_string().replace('/', "-")
    }

    /// The platform of the machine ecrbuild runs on (Linux, in Go's architecture names).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// Whether `other` runs here without emulation: the same OS and architecture (variants of one
    /// architecture run natively on its hosts).
    pub fn runs_natively(&self, other: &Platform) -> bool {
        self.os == other.os && self.architecture == other.architecture
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Registry host with optional port, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com` or `127.0.0.1:5000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry(String);

impl Registry {
    pub fn parse(source: &str, value: &str) -> Result<Registry> {
        let trimmed = value
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let (host, port) = match trimmed.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
            _ => (trimmed, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if host_ok && port_ok {
            Ok(Registry(trimmed.to_ascii_lowercase()))
        } else {
            Err(Error::usage(
                source,
                format!("{value:?} is not a registry host: expected HOST or HOST:PORT, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com or 127.0.0.1:5000"),
            ))
        }
    }

    /// The ECR registry of an account and region.
    pub fn ecr(account: &str, region: &str) -> Registry {
        Registry(format!("{account}.dkr.ecr.{region}.amazonaws.com"))
    }

    pub fn host(&self) -> &str {
        &self.0
    }

    /// Loopback registries speak plain HTTP (the daemon treats 127.0.0.0/8 as insecure too).
    pub fn is_loopback(&self) -> bool {
        let host = self.0.rsplit_once(':').map_or(self.0.as_str(), |(h, _)| h);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Repository path inside a registry, checked against the distribution grammar (lowercase components).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository(String);

impl Repository {
    pub fn parse(source: &str, value: &str) -> Result<Repository> {
        let component_ok = |c: &str| {
            let b = c.as_bytes();
            !b.is_empty()
                && b.first()
                    .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
                && b.last()
                    .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
                && b.iter().all(|x| {
                    x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
                })
        };
        if !value.is_empty() && value.len() <= 256 && value.split('/').all(component_ok) {
            Ok(Repository(value.to_string()))
        } else {
            Err(Error::usage(
                source,
                format!("{value:?} is not a repository name: use lowercase letters, digits and . _ - in /-separated parts, e.g. api or team/api"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A full image reference `registry/repository:tag`.
pub fn reference(registry: &Registry, repository: &Repository, tag: &Tag) -> String {
    format!("{registry}/{}:{tag}", repository.as_str())
}

/// OCI label with the commit an image was built from.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// OCI label with the build time (RFC 3339).
pub const CREATED_LABEL: &str = "org.opencontainers.image.created";
/// Committer time of the revision, seconds since the epoch: orders commits when git history is absent.
/// The input digest of the build (see `inputs`): images with the same one read the same inputs.
pub const INPUTS_LABEL: &str = "io.ecrbuild.inputs";
pub const COMMIT_TIME_LABEL: &str = "io.ecrbuild.commit-time";
/// `true` on images whose run was to move `latest` (the default branch, or `--latest force`). Only those
/// are candidates when a run repairs `latest` after a concurrent one: a branch build of a newer commit
/// is pushed under its SHA but must never become `latest`.
pub const LATEST_CANDIDATE_LABEL: &str = "io.ecrbuild.latest-candidate";

/// A commit, with its time when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub sha: String,
    pub commit_time: Option<i64>,
}

impl Revision {
    /// The revision recorded in an image's labels, if it has one.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<Revision> {
        let sha = labels.get(REVISION_LABEL)?.trim().to_string();
        if sha.is_empty() {
            return None;
        }
        let commit_time = labels
            .get(COMMIT_TIME_LABEL)
            .and_then(|t| t.trim().parse().ok());
        Some(Revision { sha, commit_time })
    }

    /// The revision of an image whose run was to move `latest`; `None` for any other image.
    pub fn candidate_from_labels(labels: &BTreeMap<String, String>) -> Option<Revision> {
        labels
            .get(LATEST_CANDIDATE_LABEL)
            .is_some_and(|v| v.trim() == "true")
            .then(|| Revision::from_labels(labels))
            .flatten()
    }
}

/// Whether a tag is a commit SHA tag (the tags ecrbuild pushes first).
pub fn is_sha_tag(tag: &str) -> bool {
    (tag.len() == 40 || tag.len() == 64)
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An image name in the registry and the commit behind it: enough to read and retag, not to push.
#[derive(Debug, Clone)]
pub struct Published {
    pub registry: Registry,
    pub repository: Repository,
    pub revision: Revision,
}

impl Published {
    pub fn reference(&self, tag: &Tag) -> String {
        reference(&self.registry, &self.repository, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn sha_accepts_40_and_64_lowercase_hex() {
        assert!(Sha::parse("--sha", SHA).is_ok());
        assert!(Sha::parse("--sha", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn sha_rejects_short_upper_and_junk_with_a_hint() {
        let short = Sha::parse("--sha", "abc1234").unwrap_err().to_string();
        assert!(short.contains("abbreviated"), "{short}");
        let upper = Sha::parse("--sha", &SHA.to_uppercase())
            .unwrap_err()
            .to_string();
        assert!(upper.contains("uppercase"), "{upper}");
        assert!(Sha::parse("--sha", "HEAD").is_err());
        assert!(Sha::parse("--sha", &"a".repeat(41)).is_err());
        assert!(Sha::parse("--sha", "").is_err());
    }

    #[test]
    fn registry_and_repository_grammar() {
        assert!(Registry::parse("r", "127.0.0.1:5000")
            .unwrap()
            .is_loopback());
        assert!(
            !Registry::parse("r", "123456789012.dkr.ecr.us-east-1.amazonaws.com")
                .unwrap()
                .is_loopback()
        );
        assert_eq!(
            Registry::parse("r", "https://Example.com/").unwrap().host(),
            "example.com"
        );
        assert!(Registry::parse("r", "exa mple.com").is_err());
        assert!(Registry::parse("r", "example.com:99999").is_err());
        assert!(Repository::parse("r", "team/api-v2").is_ok());
        assert!(Repository::parse("r", "API").is_err());
        assert!(Repository::parse("r", "api/").is_err());
        assert!(Repository::parse("r", "").is_err());
    }

    #[test]
    fn revision_comes_from_labels() {
        let mut labels = BTreeMap::new();
        assert_eq!(Revision::from_labels(&labels), None);
        labels.insert(REVISION_LABEL.to_string(), "abc".to_string());
        labels.insert(COMMIT_TIME_LABEL.to_string(), "1700000000".to_string());
        assert_eq!(
            Revision::from_labels(&labels),
            Some(Revision {
                sha: "abc".into(),
                commit_time: Some(1_700_000_000)
            })
        );
    }

    #[test]
    fn only_images_marked_for_latest_are_candidates() {
        let mut labels = BTreeMap::new();
        labels.insert(REVISION_LABEL.to_string(), "abc".to_string());
        // A branch build: a revision, but never a candidate for `latest`.
        assert_eq!(Revision::candidate_from_labels(&labels), None);
        labels.insert(LATEST_CANDIDATE_LABEL.to_string(), "false".to_string());
        assert_eq!(Revision::candidate_from_labels(&labels), None);
        labels.insert(LATEST_CANDIDATE_LABEL.to_string(), "true".to_string());
        assert_eq!(
            Revision::candidate_from_labels(&labels).map(|r| r.sha),
            Some("abc".to_string())
        );
        // Marked, but without a revision: nothing to order it by.
        labels.remove(REVISION_LABEL);
        assert_eq!(Revision::candidate_from_labels(&labels), None);
    }

    #[test]
    fn platforms_parse_and_name_their_tags() {
        let arm = Platform::parse("--platform", "linux/arm64").unwrap();
        assert_eq!(arm.to_string(), "linux/arm64");
        assert_eq!(arm.variant, None);
        let v7 = Platform::parse("--platform", " linux/arm/v7 ").unwrap();
        assert_eq!(v7.variant.as_deref(), Some("v7"));
        assert_eq!(v7.tag_suffix(), "linux-arm-v7");
        let sha = Sha::parse("s", SHA).unwrap();
        assert_eq!(
            Tag::of_platform(&sha, &arm).as_str(),
            format!("{SHA}-linux-arm64")
        );
        assert!(!is_sha_tag(Tag::of_platform(&sha, &arm).as_str()));
        for bad in [
            "linux",
            "linux/",
            "Linux/amd64",
            "linux/amd64/v1/x",
            "linux amd64",
        ] {
            let err = Platform::parse("--platform", bad).unwrap_err().to_string();
            assert!(err.starts_with("--platform: "), "{err}");
        }
        let amd = Platform::parse("p", "linux/amd64").unwrap();
        assert!(!amd.runs_natively(&arm));
        assert!(Platform::parse("p", "linux/arm64/v8")
            .unwrap()
            .runs_natively(&arm));
    }

    #[test]
    fn sha_tags_are_recognised() {
        assert!(is_sha_tag(&"a".repeat(40)));
        assert!(!is_sha_tag("latest"));
        assert!(!is_sha_tag(&"g".repeat(40)));
    }
}
