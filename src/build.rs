//! Build phase: send the context to the daemon's classic builder, stream its output, and tag the result.
//!
//! This module is the only place a [`BuiltImage`] can be made, and only from a build the daemon reported as
//! successful. `push` accepts nothing else, so no code path can push after a failed build.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};

use crate::context::{BuildContext, ContextError};
use crate::error::{Error, Result};
use crate::plan::{reference, Plan, Registry, Repository, Tag};
use crate::push::latest::{
    Revision, COMMIT_TIME_LABEL, CREATED_LABEL, LATEST_CANDIDATE_LABEL, REVISION_LABEL,
};
use crate::report::Reporter;

/// An image the daemon built successfully and that carries every planned tag locally.
/// It has no public constructor: holding one is proof that the build succeeded.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    id: String,
    registry: Registry,
    repository: Repository,
    tags: Vec<Tag>,
    revision: Revision,
    provenance: BTreeMap<String, String>,
    /// `registry/repository@digest` names under which the daemon has pushed this image before.
    pushed_as: Vec<String>,
}

impl BuiltImage {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// Tags in push order (the SHA tag first).
    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// `registry/repository` without a tag.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository.as_str())
    }

    pub fn reference(&self, tag: &Tag) -> String {
        reference(&self.registry, &self.repository, tag)
    }

    pub fn references(&self) -> Vec<String> {
        self.tags.iter().map(|t| self.reference(t)).collect()
    }

    /// The name and commit, for registry-side operations.
    pub fn published(&self) -> crate::push::Published {
        crate::push::Published {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            revision: self.revision.clone(),
        }
    }

    /// The commit the image was built from, as recorded in its labels.
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// Manifest digests under which the daemon has pushed this very image to this repository before
    /// (a build of unchanged sources yields the same image).
    pub fn pushed_as(&self) -> impl Iterator<Item = &str> {
        let prefix = format!("{}@", self.name());
        self.pushed_as
            .iter()
            .filter_map(move |name| name.strip_prefix(&prefix))
    }

    /// The per-commit labels the published image gets on top of the build's own (see
    /// [`provenance_labels`]).
    pub fn provenance(&self) -> &BTreeMap<String, String> {
        &self.provenance
    }
}

/// The labels that tell which commit an image holds: revision, build time and commit time, and whether
/// the run was to move `latest`. They are
/// different for every commit, so they are not given to the daemon: a LABEL step that changes every
/// build would be the one uncached step of an unchanged build (and give every commit a new image).
/// The push writes them into the published image's config instead. Labels passed with --label win.
pub fn provenance_labels(
    plan: &Plan,
    revision: &Revision,
    created: &str,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(REVISION_LABEL.to_string(), revision.sha.clone());
    labels.insert(CREATED_LABEL.to_string(), created.to_string());
    if let Some(time) = revision.commit_time {
        labels.insert(COMMIT_TIME_LABEL.to_string(), time.to_string());
    }
    if plan.tags.contains(&Tag::latest()) {
        labels.insert(LATEST_CANDIDATE_LABEL.to_string(), "true".to_string());
    }
    labels.retain(|key, _| !plan.labels.contains_key(key));
    labels
}

/// Pull the `--cache-from` images so the classic builder can reuse their layers; returns the references
/// that are now present locally. `latest` means this repository's `latest`. A missing image only warns:
/// the first build of a repository has nothing to reuse.
pub async fn pull_cache_sources(
    docker: &Docker,
    plan: &Plan,
    registry: &Registry,
    credentials: &crate::auth::Credentials,
    reporter: &Reporter,
) -> Vec<String> {
    let mut present = Vec::new();
    for source in &plan.cache_from {
        let reference = if source == "latest" {
            reference(registry, &plan.repository, &Tag::latest())
        } else {
            source.clone()
        };
        // Our credentials go only to our registry.
        let same_registry = reference.starts_with(&format!("{registry}/"));
        let auth = if same_registry {
            credentials.for_daemon(registry)
        } else {
            None
        };
        let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let mut stream = docker.create_image(Some(options), None, auth);
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(message) = info.error_detail.and_then(|d| d.message) {
                        failure = Some(message);
                    }
                }
                Err(e) => failure = Some(e.to_string()),
            }
        }
        match failure {
            None => {
                reporter.step(format!("cache source {reference} pulled"));
                present.push(reference);
            }
            Some(why) => {
                reporter.warn(format!("cache source {reference} not used: {}", why.trim()))
            }
        }
    }
    present
}

/// What the build needs besides the plan, resolved by the phases before it.
#[derive(Debug, Clone, Copy)]
pub struct BuildSetup<'a> {
    pub registry: &'a Registry,
    pub revision: &'a Revision,
    /// Cache sources present locally.
    pub cache_from: &'a [String],
    /// Compress the context (remote daemons).
    pub gzip: bool,
}

/// Build `context` as planned, then tag the image with every planned tag.
pub async fn build(
    docker: &Docker,
    plan: &Plan,
    setup: &BuildSetup<'_>,
    context: BuildContext,
    reporter: &Reporter,
) -> Result<BuiltImage> {
    let BuildSetup {
        registry,
        revision,
        cache_from,
        gzip,
    } = *setup;
    let mut options = BuildImageOptionsBuilder::new()
        .dockerfile(context.dockerfile_in_tar())
        .rm(true)
        // Remove intermediate containers on failure too: a failed build leaves nothing running.
        .forcerm(true)
        .nocache(plan.no_cache)
        .buildargs(
            &plan
                .build_args
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
        )
        // Only labels that stay the same from commit to commit: unchanged sources stay fully cached.
        .labels(
            &plan
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    if plan.pull {
        options = options.pull("1");
    }
    if let Some(target) = &plan.target {
        options = options.target(target);
    }
    if !cache_from.is_empty() {
        options = options.cachefrom(&cache_from.to_vec());
    }

    // The tar writer reports its own failures (e.g. a file changed while read) through the stream, which
    // aborts the request; keep the context error so the run reports the file, not the aborted request.
    let context_failure: Arc<Mutex<Option<ContextError>>> = Arc::default();
    let failure_slot = Arc::clone(&context_failure);
    let mut upload = reporter.upload_progress(context.tar_bytes(), context.bytes_produced());
    let body = context.into_tar_stream(gzip).inspect_err(move |e| {
        if let Ok(mut slot) = failure_slot.lock() {
            if slot.is_none() {
                *slot = Some(match ContextError::from_stream_error(e) {
                    Some(error) => owned_context_error(error),
                    None => ContextError::Io {
                        path: "build context".into(),
                        source: std::io::Error::new(e.kind(), e.to_string()),
                    },
                });
            }
        }
    });

    let mut stream =
        docker.build_image(options.build(), None, Some(bollard::body_try_stream(body)));
    let mut image_id: Option<String> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                // The daemon answers only once it has the whole context.
                upload.finish();
                if let Some(text) = &info.stream {
                    reporter.daemon_output(text);
                    if let Some(id) = text.trim().strip_prefix("Successfully built ") {
                        image_id.get_or_insert_with(|| id.trim().to_string());
                    }
                }
                if let Some(status) = &info.status {
                    reporter.daemon_output(status);
                }
                if let Some(id) = info.aux.and_then(|aux| aux.id) {
                    // Each stage reports its image; the last one is the final image.
                    image_id = Some(id);
                }
            }
            Err(e) => {
                return Err(match take(&context_failure) {
                    Some(failure) => Error::Context(failure),
                    None => classify_build_error(e),
                });
            }
        }
    }
    if let Some(failure) = take(&context_failure) {
        return Err(Error::Context(failure));
    }
    let id = image_id.ok_or_else(|| Error::BuildFailed {
        message: "the daemon finished without reporting an image id".to_string(),
    })?;

    let mut image = BuiltImage {
        id,
        registry: registry.clone(),
        repository: plan.repository.clone(),
        tags: plan.tags.clone(),
        revision: revision.clone(),
        provenance: provenance_labels(
            plan,
            revision,
            &crate::report::utc_timestamp(std::time::SystemTime::now(), "rfc3339"),
        ),
        pushed_as: Vec::new(),
    };
    // Independent daemon calls, made at the same time. Not knowing earlier pushes only costs an upload.
    let (tagged, inspected) =
        tokio::join!(tag_all(docker, &image), docker.inspect_image(&image.id));
    tagged?;
    image.pushed_as = inspected
        .ok()
        .and_then(|i| i.repo_digests)
        .unwrap_or_default();
    Ok(image)
}

async fn tag_all(docker: &Docker, image: &BuiltImage) -> Result<()> {
    let name = image.name();
    futures_util::future::try_join_all(image.tags().iter().map(|tag| {
        let options = TagImageOptionsBuilder::new()
            .repo(&name)
            .tag(tag.as_str())
            .build();
        async move {
            docker
                .tag_image(image.id(), Some(options))
                .await
                .map_err(|e| {
                    Error::Internal(format!(
                        "tagging {} as {}: {e}",
                        image.id(),
                        image.reference(tag)
                    ))
                })
        }
    }))
    .await?;
    Ok(())
}

fn take(slot: &Mutex<Option<ContextError>>) -> Option<ContextError> {
    slot.lock().ok().and_then(|mut failure| failure.take())
}

/// The stream only lends its error; rebuild an owned one (io errors keep their kind and message).
fn owned_context_error(error: &ContextError) -> ContextError {
    let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
    match error {
        ContextError::NotADirectory { path } => ContextError::NotADirectory { path: path.clone() },
        ContextError::DockerfileMissing { path } => {
            ContextError::DockerfileMissing { path: path.clone() }
        }
        ContextError::Unreadable { path, source } => ContextError::Unreadable {
            path: path.clone(),
            source: io(source),
        },
        ContextError::BadPattern { line, source } => ContextError::BadPattern {
            line: *line,
            source: crate::context::PatternError {
                pattern: source.pattern.clone(),
                reason: source.reason.clone(),
            },
        },
        ContextError::Changed { path, detail } => ContextError::Changed {
            path: path.clone(),
            detail: detail.clone(),
        },
        ContextError::Io { path, source } => ContextError::Io {
            path: path.clone(),
            source: io(source),
        },
    }
}

fn classify_build_error(error: bollard::errors::Error) -> Error {
    use bollard::errors::Error as E;
    match error {
        E::DockerStreamError { error } => Error::BuildFailed {
            message: error.trim().to_string(),
        },
        E::DockerResponseServerError {
            status_code,
            message,
        } => Error::BuildFailed {
            message: format!(
                "the daemon rejected the build ({status_code}): {}",
                message.trim()
            ),
        },
        E::RequestTimeoutError => Error::BuildFailed {
            message:
                "the daemon did not answer within --daemon-timeout; raise it for large contexts"
                    .to_string(),
        },
        other => Error::DaemonUnreachable {
            host: crate::daemon::daemon_host(),
            detail: format!("the connection failed during the build: {other}"),
        },
    }
}
