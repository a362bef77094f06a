//! Build phase: send the context to the daemon's builder, stream its output, and tag the result.
//!
//! This module is the only place a [`BuiltImage`] (and a [`BuiltPlatforms`]) can be made, and only from
//! builds the daemon reported as successful. `push` accepts nothing else, so no code path can push after
//! a failed build.
//!
//! Which builder: without `--platform`, the daemon's classic builder, as always. With `--platform`,
//! BuildKit (bollard's `buildkit` feature, a session beside `/build`). Chosen on evidence from Engine
//! 20.10 on the CI's kind of machine: BuildKit runs a `FROM --platform=$BUILDPLATFORM` stage natively,
//! sets TARGETPLATFORM/TARGETOS/TARGETARCH/BUILDPLATFORM itself, and produced the same image id as
//! Debian's 20.10 CLI with DOCKER_BUILDKIT=1; the classic builder sets none of those arguments and fails
//! `COPY --from` of a build-platform stage into a target-platform stage ("does not match the specified
//! platform"), so a cross-compiling Dockerfile cannot be built with it at all.

pub mod emulation;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};

use crate::auth::Credentials;
use crate::context::{BuildContext, ContextError};
use crate::error::{Error, Result};
use crate::identity::{
    reference, Platform, Published, Registry, Repository, Revision, Tag, COMMIT_TIME_LABEL,
    CREATED_LABEL, INPUTS_LABEL, LATEST_CANDIDATE_LABEL, REVISION_LABEL,
};
use crate::inputs::{DecidedInputs, InputDigest};
use crate::report::{utc_timestamp, Reporter, TimeLayout};

/// What to build and how: the build's part of the plan.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context_dir: PathBuf,
    pub dockerfile: PathBuf,
    pub build_args: BTreeMap<String, String>,
    /// Labels that stay the same from commit to commit (the user's and the CI's).
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    /// Send the whole context, not only what COPY/ADD read.
    pub full_context: bool,
    /// `--cache-from` images; `latest` means this repository's `latest`.
    pub cache_from: Vec<String>,
    /// How long the daemon may take to accept the context and answer.
    pub daemon_timeout: Duration,
    /// Compress the context: `None` decides by the daemon's address.
    pub compress: Option<bool>,
}

/// An image the daemon built successfully and that carries every planned tag locally.
/// It has no public constructor: holding one is proof that the build succeeded.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    id: String,
    published: Published,
    tags: Vec<Tag>,
    provenance: BTreeMap<String, String>,
    /// `registry/repository@digest` names under which the daemon has pushed this image before.
    pushed_as: Vec<String>,
    /// The platform it was built for with `--platform`; `None`: the daemon's own, classic builder.
    platform: Option<Platform>,
    /// Its input digest, when it was asked for and the context sent is the one it was made of.
    inputs: Option<InputDigest>,
}

/// One image per requested platform, every one built successfully: the only input an index is made of.
/// It has no public constructor: [`build_platforms`] makes it only when every platform's build succeeded.
#[derive(Debug, Clone)]
pub struct BuiltPlatforms {
    images: Vec<BuiltImage>,
}

impl BuiltPlatforms {
    /// The images, in the order the platforms were requested.
    pub fn images(&self) -> &[BuiltImage] {
        &self.images
    }
}

impl BuiltImage {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn registry(&self) -> &Registry {
        &self.published.registry
    }

    pub fn repository(&self) -> &Repository {
        &self.published.repository
    }

    /// Tags in push order (the SHA tag first).
    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// `registry/repository` without a tag.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository().as_str())
    }

    pub fn reference(&self, tag: &Tag) -> String {
        self.published.reference(tag)
    }

    pub fn references(&self) -> Vec<String> {
        self.tags.iter().map(|t| self.reference(t)).collect()
    }

    /// The name and commit, for registry-side operations.
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// The commit the image was built from, as recorded in its labels.
    pub fn revision(&self) -> &Revision {
        &self.published.revision
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

    /// The platform it was built for (`--platform`), if one was asked for.
    pub fn platform(&self) -> Option<&Platform> {
        self.platform.as_ref()
    }

    /// The input digest its published config is labelled with, if any.
    pub fn inputs(&self) -> Option<&InputDigest> {
        self.inputs.as_ref()
    }
}

/// The labels that tell which commit an image holds: revision, build time and commit time, and whether
/// the run was to move `latest`. They are
/// different for every commit, so they are not given to the daemon: a LABEL step that changes every
/// build would be the one uncached step of an unchanged build (and give every commit a new image).
/// The push writes them into the published image's config instead. Labels passed with --label win.
pub fn provenance_labels(
    revision: &Revision,
    latest_candidate: bool,
    user_labels: &BTreeMap<String, String>,
    created: &str,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(REVISION_LABEL.to_string(), revision.sha.clone());
    labels.insert(CREATED_LABEL.to_string(), created.to_string());
    if let Some(time) = revision.commit_time {
        labels.insert(COMMIT_TIME_LABEL.to_string(), time.to_string());
    }
    if latest_candidate {
        labels.insert(LATEST_CANDIDATE_LABEL.to_string(), "true".to_string());
    }
    labels.retain(|key, _| !user_labels.contains_key(key));
    labels
}

/// Pull the `--cache-from` images so the classic builder can reuse their layers; returns the references
/// that are now present locally. `latest` means this repository's `latest`. A missing image only warns:
/// the first build of a repository has nothing to reuse.
pub async fn pull_cache_sources(
    docker: &Docker,
    sources: &[String],
    name: &Published,
    credentials: &Credentials,
    reporter: &Reporter,
) -> Vec<String> {
    let registry = &name.registry;
    let mut present = Vec::new();
    for source in sources {
        let reference = if source == "latest" {
            reference(registry, &name.repository, &Tag::latest())
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

/// Pull the base images identified in their registry whose copy on the daemon is another image (or
/// absent), so the build uses exactly what the input digest names. Our credentials go only to our
/// registry.
pub async fn pull_stale_bases(
    docker: &Docker,
    bases: &[crate::inputs::BaseImage],
    registry: &Registry,
    credentials: &Credentials,
    reporter: &Reporter,
) -> Result<()> {
    use crate::inputs::BaseSource;
    for base in bases.iter().filter(|b| b.source == BaseSource::Registry) {
        let held = docker
            .inspect_image(&base.reference)
            .await
            .ok()
            .and_then(|image| image.repo_digests)
            .unwrap_or_default();
        if held.iter().any(|d| d.ends_with(&format!("@{}", base.id))) {
            continue;
        }
        reporter.step(format!("pulling {} ({})", base.reference, base.id));
        let auth = if base.reference.starts_with(&format!("{registry}/")) {
            credentials.for_daemon(registry)
        } else {
            None
        };
        let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
            .from_image(&base.reference)
            .build();
        let mut stream = docker.create_image(Some(options), None, auth);
        while let Some(item) = stream.next().await {
            let failure = match item {
                Ok(info) => info.error_detail.and_then(|d| d.message),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failure {
                return Err(Error::BuildFailed {
                    message: format!("cannot pull base image {}: {}", base.reference, why.trim()),
                });
            }
        }
    }
    Ok(())
}

/// What the built image is for, resolved by the phases before the build.
#[derive(Debug, Clone)]
pub struct BuildSetup {
    /// Where the image will be published and the commit it holds.
    pub name: Published,
    /// The tags it gets locally, in push order (the SHA tag first).
    pub tags: Vec<Tag>,
    /// Whether this run is to move `latest` (recorded in the provenance labels).
    pub latest_candidate: bool,
    /// Cache sources present locally.
    pub cache_from: Vec<String>,
    /// Compress the context (remote daemons).
    pub gzip: bool,
    /// `--platform`: build with BuildKit for this platform.
    pub platform: Option<Platform>,
    /// The build's input digest, published as a label (services with build avoidance).
    pub inputs: Option<DecidedInputs>,
}

/// Build `context` as planned, then tag the image with every planned tag.
pub async fn build(
    docker: &Docker,
    options: &BuildOptions,
    setup: BuildSetup,
    context: BuildContext,
    reporter: &Reporter,
) -> Result<BuiltImage> {
    let daemon_options = daemon_build_options(options, &setup, context.dockerfile_in_tar());
    let (id, sent) = run_build(docker, daemon_options, setup.gzip, context, reporter).await?;
    let provenance = provenance_labels(
        &setup.name.revision,
        setup.latest_candidate,
        &options.labels,
        &utc_timestamp(std::time::SystemTime::now(), TimeLayout::Rfc3339),
    );
    let mut provenance = provenance;
    // The label says what the build read only if the context sent is the one the digest was made
    // of: a file changed between the two reads leaves the image unlabelled (never reused).
    let inputs = setup.inputs.and_then(|decided| {
        if sent == Some(decided.context) {
            return Some(decided.digest);
        }
        reporter.warn(
            "the context changed while it was read and sent; the image is not labelled with its inputs, so no later commit reuses it",
        );
        None
    });
    if let Some(inputs) = &inputs {
        provenance.insert(INPUTS_LABEL.to_string(), inputs.to_string());
    }
    let mut image = BuiltImage {
        id,
        published: setup.name,
        tags: setup.tags,
        provenance,
        pushed_as: Vec::new(),
        platform: setup.platform,
        inputs,
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

/// Build every platform's image at the same time (BuildKit runs independent builds in parallel), one
/// context each; all must succeed. `setups` and `contexts` are in the order of the platforms.
pub async fn build_platforms(
    docker: &Docker,
    options: &BuildOptions,
    setups: Vec<BuildSetup>,
    contexts: Vec<BuildContext>,
    reporter: &Reporter,
) -> Result<BuiltPlatforms> {
    if setups.len() != contexts.len() || setups.iter().any(|s| s.platform.is_none()) {
        return Err(Error::Internal(
            "one build setup with a platform and one context per platform".to_string(),
        ));
    }
    let builds = setups
        .into_iter()
        .zip(contexts)
        .map(|(setup, context)| build(docker, options, setup, context, reporter));
    let images = futures_util::future::try_join_all(builds).await?;
    Ok(BuiltPlatforms { images })
}

/// A name for a BuildKit session, unique per build.
fn session_id() -> String {
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("ecrbuild-{}-{nanos:x}-{n}", std::process::id())
}

/// The daemon's build options for this build.
fn daemon_build_options(
    options: &BuildOptions,
    setup: &BuildSetup,
    dockerfile: &str,
) -> bollard::query_parameters::BuildImageOptions {
    let to_map = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>()
    };
    let mut builder = BuildImageOptionsBuilder::new()
        .dockerfile(dockerfile)
        .rm(true)
        // Remove intermediate containers on failure too: a failed build leaves nothing running.
        .forcerm(true)
        .nocache(options.no_cache)
        .buildargs(&to_map(&options.build_args))
        // Only labels that stay the same from commit to commit: unchanged sources stay fully cached.
        .labels(&to_map(&options.labels));
    if options.pull {
        builder = builder.pull("1");
    }
    if let Some(target) = &options.target {
        builder = builder.target(target);
    }
    if !setup.cache_from.is_empty() {
        builder = builder.cachefrom(&setup.cache_from);
    }
    if let Some(platform) = &setup.platform {
        builder = builder
            .platform(&platform.to_string())
            .version(bollard::query_parameters::BuilderVersion::BuilderBuildKit)
            .session(&session_id());
    }
    builder.build()
}

/// Stream the context to the daemon and follow the build; the final image's id.
async fn run_build(
    docker: &Docker,
    options: bollard::query_parameters::BuildImageOptions,
    gzip: bool,
    context: BuildContext,
    reporter: &Reporter,
) -> Result<(String, Option<[u8; 32]>)> {
    // The tar writer reports its own failures (e.g. a file changed while read) through the stream, which
    // aborts the request; keep the context error so the run reports the file, not the aborted request.
    let context_failure: Arc<Mutex<Option<ContextError>>> = Arc::default();
    let failure_slot = Arc::clone(&context_failure);
    let mut upload = reporter.upload_progress(context.tar_bytes(), context.bytes_produced());
    let (body, sent) = context.into_tar_stream_with_digest(gzip);
    let body = body.inspect_err(move |e| {
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

    let mut stream = docker.build_image(options, None, Some(bollard::body_try_stream(body)));
    let mut image_id: Option<String> = None;
    let mut steps = BuildKitSteps::default();
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
                match info.aux {
                    // Each stage reports its image; the last one is the final image.
                    Some(BuildInfoAux::Default(aux)) => image_id = aux.id.or(image_id),
                    Some(BuildInfoAux::BuildKit(status)) => steps.report(&status, reporter),
                    None => {}
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
    let sent = sent.await.ok();
    image_id
        .map(|id| (id, sent))
        .ok_or_else(|| Error::BuildFailed {
            message: "the daemon finished without reporting an image id".to_string(),
        })
}

use bollard::models::BuildInfoAux;

/// BuildKit's progress, reported as lines: each step once when it completes, and its output.
#[derive(Default)]
struct BuildKitSteps {
    done: std::collections::HashSet<String>,
}

impl BuildKitSteps {
    fn report(
        &mut self,
        status: &bollard::moby::buildkit::v1::StatusResponse,
        reporter: &Reporter,
    ) {
        for log in &status.logs {
            reporter.daemon_output(&String::from_utf8_lossy(&log.msg));
        }
        for vertex in &status.vertexes {
            if !vertex.error.is_empty() {
                reporter.daemon_output(&format!("{}: {}", vertex.name, vertex.error));
            } else if vertex.completed.is_some() && self.done.insert(vertex.digest.clone()) {
                let how = if vertex.cached { "CACHED" } else { "DONE" };
                reporter.daemon_output(&format!("{} {how}", vertex.name));
            }
        }
    }
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
