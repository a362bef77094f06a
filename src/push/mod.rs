//! Push phase: the SHA tag first; `latest` and the extra tags only after the SHA tag is in the registry.
//! `latest` moves only forward (see [`latest`]); transient registry failures are retried (see [`retry`]).
//!
//! The daemon uploads the built image's layers; the image published under the SHA tag is that image with
//! the provenance labels added to its config (see [`crate::build::provenance_labels`]), written through
//! the registry API. When the daemon has pushed this very image to the repository before (a build of
//! unchanged sources), nothing is uploaded at all: the labelled config and the manifest are the only
//! new objects.

pub mod latest;
pub mod retry;

use bollard::query_parameters::PushImageOptionsBuilder;
use bollard::Docker;
use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt;

use crate::auth::Credentials;
use crate::build::BuiltImage;
use crate::error::{Error, Result};
use crate::git::History;
use crate::plan::{reference, LatestMode, Registry, Repository, Tag};
use crate::registry::{RegistryApi, RegistryApiError, StoredManifest};
use crate::report::Reporter;
use latest::{compare, is_sha_tag, newest, Order, Revision};
use retry::{retry, RetryPolicy};

/// How the push phase behaves.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub latest: LatestMode,
    pub retry: RetryPolicy,
}

/// What happened to `latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatestOutcome {
    NotRequested,
    /// `latest` now points at this build.
    Moved,
    /// `latest` was left on a newer (or unorderable) commit.
    Kept {
        current: String,
        reason: String,
    },
    /// An older run had moved `latest` back; it was put on the newest commit again.
    Corrected {
        to: String,
    },
}

/// What reached the registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub digest: String,
    /// References in the order they were pushed.
    pub references: Vec<String>,
    pub latest: LatestOutcome,
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

/// The registry side of a push: the daemon pushes, the registry API answers questions.
pub struct Target<'a> {
    pub docker: &'a Docker,
    pub credentials: &'a Credentials,
    pub api: &'a RegistryApi,
    pub history: &'a History,
}

/// Push every tag of `image`. Only a [`BuiltImage`] can be pushed, so only a successful build.
pub async fn push(
    target: &Target<'_>,
    image: &BuiltImage,
    options: &PushOptions,
    reporter: &Reporter,
) -> Result<PushedImage> {
    let (sha_tag, follow_up) = image
        .tags()
        .split_first()
        .ok_or_else(|| Error::Internal("no tags to push".to_string()))?;

    let sha_reference = image.reference(sha_tag);
    let published = image.published();
    let base = match already_in_registry(target, image).await {
        Some(manifest) => {
            reporter.step(format!(
                "{} is already in the registry as {}: nothing to upload",
                image.id(),
                manifest.digest()
            ));
            manifest
        }
        None => {
            let digest = retry(
                &options.retry,
                &format!("push {sha_reference}"),
                reporter,
                || push_tag(target, image, sha_tag),
            )
            .await?;
            retry(
                &options.retry,
                &format!("read {sha_reference}"),
                reporter,
                || async {
                    match target.api.image_manifest(&digest).await {
                        Ok(Some(manifest)) => Ok(manifest),
                        Ok(None) => Err(Error::PushFailed {
                            reference: sha_reference.clone(),
                            detail: format!(
                                "the daemon reported {digest}, but the registry does not have it"
                            ),
                        }),
                        Err(e) => Err(api_error(&published, sha_tag, e)),
                    }
                },
            )
            .await?
        }
    };
    // Where `latest` stands does not depend on this write, so it is read meanwhile. A concurrent run can
    // move `latest` after this read as after any other; `settle_latest` repairs that.
    let latest_wanted =
        options.latest != LatestMode::Never && follow_up.iter().any(|t| *t == Tag::latest());
    let label_step = format!("label {sha_reference}");
    let (labelled, latest_before) = tokio::join!(
        retry(&options.retry, &label_step, reporter, || async {
            target
                .api
                .put_with_labels(&base, image.provenance(), sha_tag)
                .await
                .map_err(|e| api_error(&published, sha_tag, e))
        }),
        async {
            if latest_wanted {
                Some(look_at_latest(target, &published, options, reporter).await)
            } else {
                None
            }
        }
    );
    let manifest = labelled?;
    let latest_before = latest_before.transpose()?;
    reporter.step(format!("pushed {sha_reference} ({})", manifest.digest()));

    // The other tags are manifest copies inside the registry, not daemon pushes: a local tag such as
    // `latest` can be moved by a concurrent run on the same daemon between our tag and our push.
    let (references, latest) = promote_published(
        target,
        &published,
        &manifest,
        follow_up,
        latest_before,
        options,
        reporter,
    )
    .await?;
    Ok(PushedImage {
        digest: manifest.digest().to_string(),
        references: std::iter::once(sha_reference).chain(references).collect(),
        latest,
    })
}

/// Where `latest` stood when it was read, and how this build's commit relates to it.
#[derive(Debug, Clone)]
pub struct LatestSeen {
    /// `None`: no `latest` tag yet.
    digest: Option<String>,
    /// `None`: absent, or an image without a revision label.
    current: Option<Revision>,
    order: Order,
}

/// For an image already in the registry: point `latest` (as `mode` allows) and `extra` tags at it
/// through the registry API, without the daemon. `latest_seen` is where `latest` stood if the caller
/// has looked already. Returns the references that now point at it.
pub async fn promote_published(
    target: &Target<'_>,
    published: &Published,
    manifest: &StoredManifest,
    extra: &[Tag],
    mut latest_seen: Option<LatestSeen>,
    options: &PushOptions,
    reporter: &Reporter,
) -> Result<(Vec<String>, LatestOutcome)> {
    let digest = manifest.digest();
    let mut references = Vec::new();
    let mut outcome = LatestOutcome::NotRequested;
    let latest = Tag::latest();
    for tag in extra {
        if *tag == latest {
            if options.latest == LatestMode::Never {
                continue;
            }
            let LatestSeen {
                digest: current_digest,
                current,
                order,
            } = match latest_seen.take() {
                Some(seen) => seen,
                None => look_at_latest(target, published, options, reporter).await?,
            };
            report_order(&order, current.as_ref(), &published.revision, reporter);
            match order {
                Order::Newer(_) | Order::Same if current_digest.as_deref() != Some(digest) => {
                    copy_to(target, published, manifest, &latest, options, reporter).await?;
                    outcome = if options.latest == LatestMode::Auto {
                        settle_latest(target, published, options, reporter).await?
                    } else {
                        LatestOutcome::Moved
                    };
                }
                Order::Newer(_) | Order::Same => outcome = LatestOutcome::Moved,
                Order::Older(reason) => {
                    outcome = LatestOutcome::Kept {
                        current: current.map(|c| c.sha).unwrap_or_default(),
                        reason: reason.to_string(),
                    }
                }
                Order::Unknown => {
                    outcome = LatestOutcome::Kept {
                        current: current.map(|c| c.sha).unwrap_or_default(),
                        reason: "the commits cannot be ordered".to_string(),
                    }
                }
            }
            if outcome == LatestOutcome::Moved {
                references.push(published.reference(&latest));
            }
            continue;
        }
        let current = retry(&options.retry, "read tag", reporter, || async {
            target
                .api
                .manifest_digest(tag)
                .await
                .map_err(|e| api_error(published, tag, e))
        })
        .await?;
        if current.as_deref() != Some(digest) {
            copy_to(target, published, manifest, tag, options, reporter).await?;
        }
        references.push(published.reference(tag));
    }
    Ok((references, outcome))
}

fn report_order(order: &Order, current: Option<&Revision>, mine: &Revision, reporter: &Reporter) {
    let Some(current) = current else { return };
    match order {
        Order::Newer(reason) => reporter.step(format!(
            "moving latest from {} to {}: {reason}",
            short(&current.sha),
            short(&mine.sha)
        )),
        Order::Same => {}
        Order::Older(reason) => reporter.warn(format!(
            "latest stays on {}: {reason}; {} is pushed under its SHA only (use --latest=force to override)",
            current.sha, mine.sha
        )),
        Order::Unknown => reporter.warn(format!(
            "latest stays on {}: cannot tell whether {} is newer (no shared git history, no commit times); use --latest=force to move it",
            current.sha, mine.sha
        )),
    }
}

/// Write `manifest` under `to`: a manifest copy inside the registry, no blobs move.
async fn copy_to(
    target: &Target<'_>,
    published: &Published,
    manifest: &StoredManifest,
    to: &Tag,
    options: &PushOptions,
    reporter: &Reporter,
) -> Result<()> {
    retry(
        &options.retry,
        &format!("tag {}", published.reference(to)),
        reporter,
        || async {
            target
                .api
                .put_copy(manifest, to)
                .await
                .map_err(|e| api_error(published, to, e))
        },
    )
    .await?;
    reporter.step(format!(
        "tagged {} in the registry",
        published.reference(to)
    ));
    Ok(())
}

/// Read where `latest` stands and order this build's commit against it.
async fn look_at_latest(
    target: &Target<'_>,
    published: &Published,
    options: &PushOptions,
    reporter: &Reporter,
) -> Result<LatestSeen> {
    let (digest, current) =
        match read_tag(target, published, &Tag::latest(), options, reporter).await? {
            Some((digest, labels)) => (Some(digest), Revision::from_labels(&labels)),
            None => (None, None),
        };
    let order = match (&current, options.latest) {
        (Some(current), LatestMode::Auto) => {
            // git runs as a child process: on a blocking thread, so the registry writes this read
            // overlaps keep going.
            let (mine, current, history) = (
                published.revision.clone(),
                current.clone(),
                target.history.clone(),
            );
            tokio::task::spawn_blocking(move || compare(&mine, &current, &history))
                .await
                .map_err(|e| Error::Internal(format!("commit comparison stopped: {e}")))?
        }
        _ => Order::Newer("forced or absent"),
    };
    Ok(LatestSeen {
        digest,
        current,
        order,
    })
}

/// The manifest digest behind `tag` in the registry and its image's labels; `None` when the tag is
/// absent.
async fn read_tag(
    target: &Target<'_>,
    image: &Published,
    tag: &Tag,
    options: &PushOptions,
    reporter: &Reporter,
) -> Result<Option<(String, BTreeMap<String, String>)>> {
    retry(
        &options.retry,
        &format!("read {}", image.reference(tag)),
        reporter,
        || async {
            target
                .api
                .digest_and_labels(tag)
                .await
                .map_err(|e| api_error(image, tag, e))
        },
    )
    .await
}

/// Registry reads in flight at once when reading the labels of many SHA tags.
const LABEL_READS_IN_FLIGHT: usize = 8;

/// Two runs can read `latest` at the same time and the older can write last. After writing, look at the
/// SHA tags in the registry: if one is a newer commit than what `latest` holds, point `latest` at it.
/// Every run that writes `latest` does this after its write, so the last writer always repairs.
async fn settle_latest(
    target: &Target<'_>,
    image: &Published,
    options: &PushOptions,
    reporter: &Reporter,
) -> Result<LatestOutcome> {
    let latest = Tag::latest();
    let mine = image.revision.clone();
    let mut outcome = LatestOutcome::Moved;
    // A SHA tag's labels never change: read each at most once per run. `None`: not a candidate.
    let mut labelled: HashMap<String, Option<Revision>> = HashMap::new();
    for _round in 0..3 {
        let tags = retry(&options.retry, "list tags", reporter, || async {
            target
                .api
                .tags()
                .await
                .map_err(|e| api_error(image, &latest, e))
        })
        .await?;
        let mut candidates = vec![mine.clone()];
        let others: Vec<&str> = tags
            .iter()
            .map(String::as_str)
            .filter(|t| is_sha_tag(t) && *t != mine.sha)
            .collect();
        // Only commits on our line of history can replace us; git rules out the others without the
        // network. The rest are read (a few at a time, each once per run): a descendant, or a commit git
        // does not know (a shallow clone, a commit pushed after our checkout), counts only if its run was
        // to move `latest`, so a newer branch build never takes it.
        let descend = target.history.descend_from(&mine.sha, &others);
        let on_our_line: Vec<&str> = others
            .iter()
            .zip(descend)
            .filter(|(_, descends)| *descends != Some(false))
            .map(|(tag, _)| *tag)
            .collect();
        let mut unread = Vec::new();
        for tag in &on_our_line {
            if !labelled.contains_key(*tag) {
                unread.push(Tag::parse("registry tag", tag)?);
            }
        }
        let read: Vec<(Tag, Result<Option<Revision>>)> = futures_util::stream::iter(unread)
            .map(|tag| async move {
                let found = read_tag(target, image, &tag, options, reporter).await;
                let candidate = found.map(|found| {
                    found.and_then(|(_, labels)| Revision::candidate_from_labels(&labels))
                });
                (tag, candidate)
            })
            .buffered(LABEL_READS_IN_FLIGHT)
            .collect()
            .await;
        for (tag, revision) in read {
            labelled.insert(tag.as_str().to_string(), revision?);
        }
        candidates.extend(
            on_our_line
                .iter()
                .filter_map(|tag| labelled.get(*tag).cloned().flatten()),
        );
        let Some(newest) = newest(&candidates, target.history).cloned() else {
            break;
        };
        // We are the newest and have just written `latest`: a run that overwrote it since is older than
        // us and repairs it itself, in its own check.
        if newest.sha == mine.sha {
            break;
        }
        let Some(current) = read_tag(target, image, &latest, options, reporter)
            .await?
            .and_then(|(_, labels)| Revision::from_labels(&labels))
        else {
            break;
        };
        if current.sha == newest.sha
            || !matches!(compare(&newest, &current, target.history), Order::Newer(_))
        {
            break;
        }
        let newest_tag = Tag::parse("registry tag", &newest.sha)?;
        retry(&options.retry, "correct latest", reporter, || async {
            target
                .api
                .retag(&newest_tag, &latest)
                .await
                .map_err(|e| api_error(image, &latest, e))
        })
        .await?;
        reporter.warn(format!(
            "latest had been moved back to {} by a concurrent run; put it on {} again",
            short(&current.sha),
            short(&newest.sha)
        ));
        outcome = if newest.sha == mine.sha {
            LatestOutcome::Moved
        } else {
            LatestOutcome::Corrected {
                to: newest.sha.clone(),
            }
        };
    }
    Ok(outcome)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn api_error(image: &Published, tag: &Tag, error: RegistryApiError) -> Error {
    match error {
        RegistryApiError::Unauthorized => Error::AuthFailed {
            target: image.registry.to_string(),
            detail: format!(
                "the registry refused to let {} be read; the role needs ecr:BatchGetImage",
                image.reference(tag)
            ),
        },
        RegistryApiError::RepositoryNotFound => Error::RepositoryNotFound {
            repository: image.repository.as_str().to_string(),
            registry: image.registry.to_string(),
        },
        RegistryApiError::Transient(detail) => Error::PushFailed {
            reference: image.reference(tag),
            detail: format!("{detail} (a transient registry state)"),
        },
        RegistryApiError::Other(detail) => Error::PushFailed {
            reference: image.reference(tag),
            detail,
        },
    }
}

/// The manifest under which the daemon pushed this image to this repository before, if the registry
/// still has it (a lifecycle policy may have expired it).
async fn already_in_registry(target: &Target<'_>, image: &BuiltImage) -> Option<StoredManifest> {
    for digest in image.pushed_as() {
        match target.api.image_manifest(digest).await {
            Ok(Some(manifest)) if manifest.digest() == digest => return Some(manifest),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%digest, error = %e, "cannot check a previous push; pushing again");
                return None;
            }
        }
    }
    None
}

/// Push one tag and return the digest the daemon reports for it.
async fn push_tag(target: &Target<'_>, image: &BuiltImage, tag: &Tag) -> Result<String> {
    let reference = image.reference(tag);
    // Always name the tag: without it the daemon pushes every local tag of the repository.
    let options = PushImageOptionsBuilder::new().tag(tag.as_str()).build();
    let mut stream = target.docker.push_image(
        &image.name(),
        Some(options),
        target.credentials.for_daemon(image.registry()),
    );
    let mut digest = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(classify_push_error(&reference, image, &detail));
                }
                if let Some(found) = info.status.as_deref().and_then(digest_from_status) {
                    digest = Some(found);
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(classify_push_error(&reference, image, &error));
            }
            Err(e) => {
                return Err(Error::PushFailed {
                    reference,
                    detail: e.to_string(),
                })
            }
        }
    }
    digest.ok_or_else(|| Error::PushFailed {
        reference,
        detail: "the daemon finished without reporting a digest".to_string(),
    })
}

/// The daemon reports the digest only in a status line: `<tag>: digest: sha256:<hex> size: <n>`.
fn digest_from_status(status: &str) -> Option<String> {
    let rest = status.split("digest: ").nth(1)?;
    let digest = rest.split_whitespace().next()?;
    let (algorithm, hex) = digest.split_once(':')?;
    (algorithm == "sha256" && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| digest.to_string())
}

fn classify_push_error(reference: &str, image: &BuiltImage, message: &str) -> Error {
    let lower = message.to_ascii_lowercase();
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("authorization token has expired")
    {
        Error::AuthFailed {
            target: image.registry().to_string(),
            detail: format!("the registry refused the credentials ({})", message.trim()),
        }
    } else if lower.contains("name unknown")
        || lower.contains("does not exist in the registry")
        || (lower.contains("repository with name") && lower.contains("does not exist"))
    {
        Error::RepositoryNotFound {
            repository: image.repository().as_str().to_string(),
            registry: image.registry().to_string(),
        }
    } else if lower.contains("cannot be overwritten because the repository is immutable") {
        Error::PushFailed {
            reference: reference.to_string(),
            detail: format!(
                "{}; this tag is immutable in the repository: publish a new commit instead of --force",
                message.trim()
            ),
        }
    } else {
        Error::PushFailed {
            reference: reference.to_string(),
            detail: message.trim().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_read_from_the_status_line() {
        let hex = "ab".repeat(32);
        let status = format!("latest: digest: sha256:{hex} size: 528");
        assert_eq!(digest_from_status(&status), Some(format!("sha256:{hex}")));
        assert_eq!(digest_from_status("Pushed"), None);
        assert_eq!(digest_from_status("x: digest: sha256:short size: 1"), None);
    }
}
