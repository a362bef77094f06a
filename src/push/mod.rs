//! Push phase: the SHA tag first; `latest` and the extra tags only after the SHA tag is in the registry.
//! `latest` moves only forward (see [`latest`] and [`promote`]); transient registry failures are retried
//! (see [`crate::retry`]).
//!
//! The daemon uploads the built image's layers under the image's staging tag
//! `ecrbuild-staging-<sha>` (see [`Tag::staging`]); the image published under the SHA tag is that image
//! with the provenance labels added to its config (see [`crate::build::provenance_labels`]), written
//! through the registry API. So the SHA tag, immutable in ECR, is written once, with the labelled
//! manifest; the staging tag is mutable and expires (see `terraform/`). When the daemon has pushed this
//! very image to the repository before (a build of unchanged sources), nothing is uploaded at all: the
//! labelled config and the manifest are the only new objects.

pub mod index;
pub mod latest;
pub mod promote;
pub mod record;

use bollard::query_parameters::{
    PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use std::collections::BTreeMap;

use bollard::Docker;
use futures_util::StreamExt;

use crate::auth::Credentials;
use crate::build::BuiltImage;
use crate::cli::LatestMode;
use crate::error::{Error, FailureKind, Result};
use crate::git::History;
use crate::identity::{Published, Tag, STAGING_TAG_PREFIX};
use crate::registry::{RegistryApi, RegistryApiError, StoredManifest};
use crate::report::Reporter;
use crate::retry::{retry, RetryPolicy};
pub use promote::{look_at_latest, promote_published, LatestSeen};

/// How to publish: the publishing part of the plan.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// The tags in push order: the SHA tag first, then `latest` (unless disabled), then extras.
    pub tags: Vec<Tag>,
    /// Push at all (false with --no-push, and for pull request builds without --push-pr).
    pub push: bool,
    pub latest: LatestMode,
    /// Rebuild and push even when the SHA tag is already published.
    pub force: bool,
    /// Check credentials, the repository and the SHA tag before building.
    pub preflight: bool,
    pub create_repository: bool,
    /// Read every pushed tag back from the registry.
    pub verify: bool,
    pub retry: RetryPolicy,
}

impl PublishOptions {
    /// The SHA tag, pushed first.
    pub fn sha_tag(&self) -> &Tag {
        &self.tags[0]
    }

    /// Tags pushed after the SHA tag succeeded.
    pub fn follow_up_tags(&self) -> &[Tag] {
        &self.tags[1..]
    }

    /// Whether this run is to move `latest`.
    pub fn latest_candidate(&self) -> bool {
        self.tags.contains(&Tag::latest())
    }
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

impl LatestOutcome {
    /// One line for the summary.
    pub fn describe(&self) -> String {
        match self {
            LatestOutcome::NotRequested => "not requested".to_string(),
            LatestOutcome::Moved => "moved".to_string(),
            LatestOutcome::Kept { current, reason } => format!("kept on {current}: {reason}"),
            LatestOutcome::Corrected { to } => format!("corrected to {to}"),
        }
    }
}

/// What reached the registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub digest: String,
    /// References in the order they were pushed.
    pub references: Vec<String>,
    pub latest: LatestOutcome,
}

/// The registry side of publishing: the repository's API, the image's name and commit, and git to order
/// commits.
pub struct RegistryTarget<'a> {
    pub api: &'a RegistryApi,
    pub name: &'a Published,
    pub history: &'a History,
}

/// The daemon that built the image and the credentials it pushes with.
pub struct DaemonPush<'a> {
    pub docker: &'a Docker,
    pub credentials: &'a Credentials,
}

/// Push every tag of `image`. Only a [`BuiltImage`] can be pushed, so only a successful build.
pub async fn push(
    daemon: &DaemonPush<'_>,
    target: &RegistryTarget<'_>,
    image: &BuiltImage,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<PushedImage> {
    let (sha_tag, follow_up) = image
        .tags()
        .split_first()
        .ok_or_else(|| Error::Internal("no tags to push".to_string()))?;
    let sha_reference = image.reference(sha_tag);
    let base = match already_in_registry(target.api, image).await {
        Some(manifest) => {
            reporter.step(format!(
                "{} is already in the registry as {}: nothing to upload",
                image.id(),
                manifest.digest()
            ));
            manifest
        }
        None => upload(daemon, target, image, sha_tag, options, reporter).await?,
    };
    // The one write of the SHA tag. The labelled manifest is not the staged one: its config gains the
    // provenance labels (the build time, at least, unless --label sets every one), and both documents
    // are serialized anew (the daemon's manifest is indented, ours compact). So the staging tag, which
    // expires, never names a published image. A retry first looks whether the tag already holds this
    // run's labelled image (a write whose answer was lost): an immutable tag refuses a second write.
    // Where `latest` stands does not depend on this write, so it is read meanwhile. A concurrent run
    // can move `latest` after this read as after any other; the settle step repairs that.
    let label_step = format!("label {sha_reference}");
    let base = &base;
    let mut attempts = 0_u32;
    let (labelled, latest_before) = tokio::join!(
        retry(&options.retry, &label_step, reporter, || {
            attempts += 1;
            let retrying = attempts > 1;
            async move {
                if retrying {
                    let provenance = image.provenance();
                    if let Some(written) = written_by_this_run(target, sha_tag, provenance).await {
                        return Ok(written);
                    }
                }
                target
                    .api
                    .put_with_labels(base, image.provenance(), sha_tag)
                    .await
                    .map_err(|e| api_error(target.name, sha_tag, e))
            }
        }),
        latest_if_wanted(target, follow_up, options, reporter)
    );
    let manifest = labelled?;
    let latest_before = latest_before?;
    reporter.step(format!("pushed {sha_reference} ({})", manifest.digest()));

    // The other tags are manifest copies inside the registry, not daemon pushes: a local tag such as
    // `latest` can be moved by a concurrent run on the same daemon between our tag and our push.
    let (references, latest) = promote_published(
        target,
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

/// The manifest under `tag` when this run has written it already: every label (or, for an index,
/// annotation) in `provenance`, the build time included, has this run's value. That is an earlier
/// attempt's write that landed although its answer was lost; an immutable tag would refuse it again.
/// `None` otherwise, or when it cannot be read (the write that follows reports the failure).
pub(crate) async fn written_by_this_run(
    target: &RegistryTarget<'_>,
    tag: &Tag,
    provenance: &BTreeMap<String, String>,
) -> Option<StoredManifest> {
    if provenance.is_empty() {
        // Nothing tells this run's write from another's.
        return None;
    }
    let manifest = target.api.manifest(tag).await.ok()??;
    let labels = target.api.labels_of(&manifest).await.ok()?;
    let ours = provenance
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value));
    ours.then_some(manifest)
}

/// Where `latest` stands, when `follow_up` moves it; read while the SHA tag is written, since it does
/// not depend on that write. A concurrent run can move `latest` after this read as after any other;
/// the settle step repairs that.
pub async fn latest_if_wanted(
    target: &RegistryTarget<'_>,
    follow_up: &[Tag],
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<Option<LatestSeen>> {
    let wanted =
        options.latest != LatestMode::Never && follow_up.iter().any(|t| *t == Tag::latest());
    if !wanted {
        return Ok(None);
    }
    look_at_latest(target, options, reporter).await.map(Some)
}

/// Have the daemon push the image under the staging tag of `tag` (the SHA tag, or a platform tag), then
/// read the manifest it wrote. `tag` itself is not written here: only the labelled manifest goes under
/// it, since ECR refuses a second write of an immutable tag.
async fn upload(
    daemon: &DaemonPush<'_>,
    target: &RegistryTarget<'_>,
    image: &BuiltImage,
    tag: &Tag,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<StoredManifest> {
    let staging = tag.staging()?;
    let staging_reference = image.reference(&staging);
    let pushed = retry(
        &options.retry,
        &format!("push {staging_reference}"),
        reporter,
        || stage_and_push(daemon, image, &staging),
    )
    .await;
    // The staging tag is only how the daemon is told what to push: it does not stay on the daemon.
    untag(daemon, image, &staging).await;
    let digest = pushed?;
    reporter.step(format!("uploaded {staging_reference} ({digest})"));
    retry(
        &options.retry,
        &format!("read {staging_reference}"),
        reporter,
        || async {
            match target.api.image_manifest(&digest).await {
                Ok(Some(manifest)) => Ok(manifest),
                Ok(None) => Err(Error::PushFailed {
                    reference: staging_reference.clone(),
                    detail: format!(
                        "the daemon reported {digest}, but the registry does not have it"
                    ),
                    kind: FailureKind::Permanent,
                }),
                Err(e) => Err(api_error(target.name, &staging, e)),
            }
        },
    )
    .await
}

/// Tag the image `staging` on the daemon, then push that tag. Tagged again on every attempt: a
/// concurrent run of the same commit on the same daemon may have moved or removed it meanwhile.
async fn stage_and_push(
    daemon: &DaemonPush<'_>,
    image: &BuiltImage,
    staging: &Tag,
) -> Result<String> {
    let options = TagImageOptionsBuilder::new()
        .repo(&image.name())
        .tag(staging.as_str())
        .build();
    daemon
        .docker
        .tag_image(image.id(), Some(options))
        .await
        .map_err(|e| Error::PushFailed {
            reference: image.reference(staging),
            kind: daemon_failure_kind(&e),
            detail: format!("cannot tag {} on the daemon: {e}", image.id()),
        })?;
    push_tag(daemon, image, staging).await
}

/// Remove the local tag `staging`, leaving the image and its planned tags. Best effort: a leftover
/// tag costs nothing but clutter.
async fn untag(daemon: &DaemonPush<'_>, image: &BuiltImage, staging: &Tag) {
    let reference = image.reference(staging);
    // Never the image itself: it keeps its planned tags, and `noprune` keeps its parents.
    let options = RemoveImageOptionsBuilder::new().noprune(true).build();
    if let Err(e) = daemon
        .docker
        .remove_image(&reference, Some(options), None)
        .await
    {
        tracing::debug!(%reference, error = %e, "cannot remove the local staging tag");
    }
}

/// A registry API failure as the run reports it, naming the reference.
pub fn api_error(image: &Published, tag: &Tag, error: RegistryApiError) -> Error {
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
        RegistryApiError::Failed { kind, detail } => Error::PushFailed {
            reference: image.reference(tag),
            detail,
            kind,
        },
    }
}

/// The manifest under which the daemon pushed this image to this repository before, if the registry
/// still has it (a lifecycle policy may have expired it).
async fn already_in_registry(api: &RegistryApi, image: &BuiltImage) -> Option<StoredManifest> {
    for digest in image.pushed_as() {
        match api.image_manifest(digest).await {
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
async fn push_tag(daemon: &DaemonPush<'_>, image: &BuiltImage, tag: &Tag) -> Result<String> {
    let reference = image.reference(tag);
    // Always name the tag: without it the daemon pushes every local tag of the repository.
    let options = PushImageOptionsBuilder::new().tag(tag.as_str()).build();
    let mut stream = daemon.docker.push_image(
        &image.name(),
        Some(options),
        daemon.credentials.for_daemon(image.registry()),
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
                    kind: daemon_failure_kind(&e),
                    detail: e.to_string(),
                })
            }
        }
    }
    digest.ok_or_else(|| Error::PushFailed {
        reference,
        detail: "the daemon finished without reporting a digest".to_string(),
        kind: FailureKind::Permanent,
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
                "{}; the daemon pushes only staging tags, which must stay mutable: exclude {STAGING_TAG_PREFIX}* from the repository's tag immutability (terraform/ does)",
                message.trim()
            ),
            kind: FailureKind::Permanent,
        }
    } else if lower.contains("does not exist locally") {
        // The tag was set just before this push: a concurrent run of the same commit removed it after
        // its own push. The next attempt sets it again.
        Error::PushFailed {
            reference: reference.to_string(),
            detail: message.trim().to_string(),
            kind: FailureKind::Transient,
        }
    } else {
        Error::PushFailed {
            reference: reference.to_string(),
            detail: message.trim().to_string(),
            kind: daemon_message_kind(message),
        }
    }
}

/// The kind of a failure the daemon reports only as text in its push stream (it passes on what the
/// registry said, without a status code): this is the one place that reads message text.
fn daemon_message_kind(message: &str) -> FailureKind {
    const TRANSIENT: [&str; 24] = [
        // A manifest refused for a blob pushed a moment ago: the registry's filesystem store rewrites a
        // blob's link file while a concurrent push of the same layer links it again.
        "manifest blob unknown",
        "received unexpected http status: 5",
        "status 500",
        "status 502",
        "status 503",
        "status 504",
        "status 429",
        "connection closed",
        "connection refused",
        "connection reset",
        "broken pipe",
        // The daemon reports a dropped connection as `Put "http://…": EOF`.
        "eof",
        "i/o timeout",
        "timeout",
        "timed out",
        "temporarily unavailable",
        "service unavailable",
        "bad gateway",
        "gateway timeout",
        "internal server error",
        "too many requests",
        "toomanyrequests",
        "throttl",
        "tls handshake timeout",
    ];
    let lower = message.to_ascii_lowercase();
    if TRANSIENT.iter().any(|t| lower.contains(t)) {
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    }
}

/// The kind of a failed call to the daemon itself (not an error inside its stream).
fn daemon_failure_kind(error: &bollard::errors::Error) -> FailureKind {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError { status_code, .. } => FailureKind::from_status(*status_code),
        E::IOError { err } => FailureKind::from_io(err.kind()),
        E::RequestTimeoutError | E::HyperResponseError { .. } => FailureKind::Transient,
        _ => FailureKind::Permanent,
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

    #[test]
    fn daemon_messages_are_classified_where_they_are_read() {
        for message in [
            "received unexpected HTTP status: 503 Service Unavailable",
            "dial tcp 127.0.0.1:5000: connect: connection refused",
            "unexpected EOF",
            "errors:\ndigest invalid\nmanifest blob unknown: blob unknown to registry",
            "toomanyrequests: Rate exceeded",
        ] {
            assert_eq!(
                daemon_message_kind(message),
                FailureKind::Transient,
                "{message}"
            );
        }
        assert_eq!(
            daemon_message_kind("manifest invalid"),
            FailureKind::Permanent
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            daemon_failure_kind(&bollard::errors::Error::IOError { err: refused }),
            FailureKind::Transient
        );
        assert_eq!(
            daemon_failure_kind(&bollard::errors::Error::DockerResponseServerError {
                status_code: 400,
                message: "bad".into()
            }),
            FailureKind::Permanent
        );
    }
}
