//! Runs the phases in order. Each phase hands the next the value only it can produce: a scanned context,
//! a [`BuiltImage`] from a successful build, a [`PushedImage`](crate::push::PushedImage) from a push.
//! A commit that is already published yields [`Outcome::AlreadyPublished`] instead of a build, and is
//! only tagged in the registry. Several `--platform`s run [`platforms::run`] instead: one image per
//! platform, joined into an index; `ecrbuild index` runs [`platforms::run_index`].

mod platforms;
mod services;
pub use platforms::run_index;
pub use services::{failure_of, plan_services, run_services};

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use indicatif::HumanBytes;

use crate::auth::{self, Credentials, RepositoryState, SharedCredentials};
use crate::build::{self, BuildOptions, BuildSetup, BuiltImage};
use crate::cli::{AuthMode, LatestMode};
use crate::context::{context_needs, BuildContext, ContextNeeds, SourceRoot};
use crate::daemon;
use crate::error::{Error, Result, Signal};
use crate::git::History;
use crate::identity::{Published, Registry, Revision, Tag, REVISION_LABEL};
use crate::plan::{Plan, RegistrySource};
use crate::push::{self, api_error, DaemonPush, PushedImage, RegistryTarget};
use crate::registry::{RegistryApi, RegistryApiError, StoredManifest};
use crate::report::{self, secs, Reporter, Summary, Timings};
use crate::retry::retry;
use crate::scan;
use crate::verify;

/// Run the whole pipeline; stop cleanly on SIGINT or SIGTERM. Dropping the pipeline future closes the
/// connection to the daemon, which cancels a build in progress; nothing is pushed after that.
pub async fn run_until_signalled(plan: Plan, reporter: &Reporter) -> Result<Summary> {
    until_signalled(run(plan, reporter)).await
}

/// Run `work` until it ends or SIGINT/SIGTERM arrives; then it is dropped, which closes the
/// connections it holds (a build in progress is cancelled) and pushes nothing more.
pub async fn until_signalled<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Error::Internal(format!("SIGINT handler: {e}")))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| Error::Internal(format!("SIGTERM handler: {e}")))?;
    tokio::select! {
        result = work => result,
        _ = interrupt.recv() => Err(Error::Interrupted(Signal::Interrupt)),
        _ = terminate.recv() => Err(Error::Interrupted(Signal::Terminate)),
    }
}

/// Run every phase in order: context, build (or find the commit published), push, verify, report.
pub async fn run(plan: Plan, reporter: &Reporter) -> Result<Summary> {
    if plan.platforms.len() > 1 {
        return platforms::run(plan, reporter).await;
    }
    let started = Instant::now();
    let context = scan_context(&plan.build, reporter).await?;
    let docker = daemon::connect(plan.build.daemon_timeout).await?;
    platforms::check_emulation(&docker, &plan, reporter).await?;
    let context = choose_context(&docker, &plan.build, context, reporter).await?;
    let context_secs = secs(started.elapsed());
    let session = Session::open(&plan).await?;
    let mut summary = session.summary(&plan, context_secs);

    match build_or_find(&plan, &session, &docker, context, &mut summary, reporter).await? {
        Outcome::AlreadyPublished { manifest, api } => {
            republish(&plan, &session, &manifest, &api, &mut summary, reporter).await?;
        }
        Outcome::Built { image, access } => {
            summary.image_id = image.id().to_string();
            if !plan.publish.push {
                reporter.step("not pushing (--no-push or a pull/merge request build)");
                summary.timings.total_secs = secs(started.elapsed());
                return Ok(summary);
            }
            let pushed = publish(
                &plan,
                &session,
                &docker,
                &image,
                access,
                &mut summary,
                reporter,
            );
            let (pushed, access) = pushed.await?;
            if plan.publish.verify {
                verify_pushed(
                    &plan,
                    &session,
                    &access.api,
                    &expected_of(&image),
                    &pushed,
                    &mut summary,
                    reporter,
                )
                .await?;
            }
        }
    }
    finish(&plan, &session, &mut summary, reporter).await?;
    summary.timings.total_secs = secs(started.elapsed());
    Ok(summary)
}

/// What the run holds once the plan is checked: AWS configuration, the registry, git, and the name and
/// commit the image is published under.
struct Session {
    aws: Option<aws_config::SdkConfig>,
    registry: Registry,
    history: History,
    name: Published,
    /// Credentials fetched once for several sessions (services of one run), used while valid.
    shared_credentials: Option<SharedCredentials>,
}

/// What the sessions of one run share, read once: the commit's time, git, the AWS configuration
/// and the registry's credentials.
#[derive(Clone)]
struct Prepared {
    commit_time: Option<i64>,
    history: History,
    aws: Option<aws_config::SdkConfig>,
    credentials: Option<SharedCredentials>,
}

impl Prepared {
    async fn for_plan(plan: &Plan, history: History) -> Result<Prepared> {
        let sha = plan.identity.sha.to_string();
        let commit_time = history.ask(move |git| git.commit_time(&sha)).await?;
        let aws = match plan.access.auth {
            AuthMode::Ecr => Some(
                auth::aws_config(plan.access.region.as_deref(), plan.publish.retry.attempts).await,
            ),
            AuthMode::None => None,
        };
        Ok(Prepared {
            commit_time,
            history,
            aws,
            credentials: None,
        })
    }
}

impl Session {
    async fn open(plan: &Plan) -> Result<Session> {
        let history = History::at(&plan.build.context_dir);
        Session::open_at(plan, &Prepared::for_plan(plan, history).await?).await
    }

    /// As [`open`](Self::open), with what several sessions share already read.
    async fn open_at(plan: &Plan, prepared: &Prepared) -> Result<Session> {
        let aws = prepared.aws.clone();
        if let (AuthMode::None, RegistrySource::Known(registry)) =
            (plan.access.auth, &plan.identity.registry)
        {
            crate::registry::learn_if_open(registry).await;
        }
        let sha = plan.identity.sha.to_string();
        let registry = resolve_registry(&plan.identity.registry, aws.as_ref()).await?;
        let name = Published {
            registry: registry.clone(),
            repository: plan.identity.repository.clone(),
            revision: Revision {
                sha,
                commit_time: prepared.commit_time,
            },
        };

        Ok(Session {
            aws,
            registry,
            history: prepared.history.clone(),
            name,
            shared_credentials: prepared.credentials.clone(),
        })
    }

    /// The result as far as it is known before the build.
    fn summary(&self, plan: &Plan, context_secs: f64) -> Summary {
        Summary {
            sha: plan.identity.sha.to_string(),
            image_id: String::new(),
            registry: self.registry.to_string(),
            repository: plan.identity.repository.as_str().to_string(),
            references: plan
                .publish
                .tags
                .iter()
                .map(|t| self.name.reference(t))
                .collect(),
            pushed_references: Vec::new(),
            digest: None,
            pushed: false,
            skipped: false,
            latest: None,
            scan: None,
            timings: Timings {
                context_secs,
                ..Timings::default()
            },
        }
    }
}

/// A build, or the commit found already published: the two ways to the registry.
enum Outcome {
    /// The daemon built the image; `access` is the preflight's, when it ran.
    Built {
        image: Box<BuiltImage>,
        access: Option<RegistryAccess>,
    },
    /// The SHA tag is in the registry with its labels: nothing to build.
    AlreadyPublished {
        manifest: StoredManifest,
        api: RegistryApi,
    },
}

/// Credentials that work, when they expire (`None`: never), and a client that has used them.
struct RegistryAccess {
    credentials: Credentials,
    expires_at: Option<SystemTime>,
    api: RegistryApi,
}

/// What the preflight found.
enum Checked {
    Published {
        manifest: StoredManifest,
        api: RegistryApi,
    },
    Ready(RegistryAccess),
}

/// Build the image, unless the preflight finds this commit already published. The preflight runs beside
/// the build; with `--cache-from` it runs first, since the cache sources are pulled with its credentials.
async fn build_or_find(
    plan: &Plan,
    session: &Session,
    docker: &bollard::Docker,
    context: BuildContext,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<Outcome> {
    let preflight_wanted = plan.publish.push && plan.publish.preflight;
    if preflight_wanted && session.aws.is_none() && plan.publish.create_repository {
        reporter.warn("--create-repository applies to ECR only (--auth ecr); ignored");
    }
    let mut access = None;
    if preflight_wanted && !plan.build.cache_from.is_empty() {
        let phase = Instant::now();
        let checked = preflight(plan, session, reporter).await?;
        summary.timings.auth_secs = secs(phase.elapsed());
        match checked {
            Checked::Published { manifest, api } => {
                return Ok(Outcome::AlreadyPublished { manifest, api })
            }
            Checked::Ready(ready) => access = Some(ready),
        }
    }
    let cache_from = pull_cache_sources(plan, session, docker, access.as_ref(), reporter).await?;
    let phase = Instant::now();
    reporter.step(format!(
        "building {}",
        session.name.reference(plan.publish.sha_tag())
    ));
    let setup = build_setup(plan, session, cache_from, None);
    let building = build::build(docker, &plan.build, setup, context, reporter);
    let outcome = if preflight_wanted && access.is_none() {
        build_beside_preflight(plan, session, building, summary, reporter).await
    } else {
        building.await.map(|image| Outcome::Built {
            image: Box::new(image),
            access,
        })
    };
    summary.timings.build_secs = secs(phase.elapsed());
    if let Ok(Outcome::Built { image, .. }) = &outcome {
        reporter.step(format!(
            "built {} and tagged {}",
            image.id(),
            image
                .tags()
                .iter()
                .map(Tag::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    outcome
}

/// What the build of `plan`'s one image is for.
fn build_setup(
    plan: &Plan,
    session: &Session,
    cache_from: Vec<String>,
    inputs: Option<crate::inputs::DecidedInputs>,
) -> BuildSetup {
    BuildSetup {
        name: session.name.clone(),
        tags: plan.publish.tags.clone(),
        latest_candidate: plan.publish.latest_candidate(),
        cache_from,
        gzip: plan
            .build
            .compress
            .unwrap_or_else(|| daemon::is_remote(&daemon::daemon_host())),
        platform: plan.platforms.first().cloned(),
        inputs,
    }
}

/// The preflight runs while the daemon builds: it costs no time, and a failure (bad credentials, no
/// repository) still stops the build within seconds. An already published commit cancels the build
/// (dropping it closes the connection) and is not pushed again.
async fn build_beside_preflight(
    plan: &Plan,
    session: &Session,
    building: impl Future<Output = Result<BuiltImage>>,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<Outcome> {
    tokio::pin!(building);
    let started = Instant::now();
    let checking = preflight(plan, session, reporter);
    tokio::pin!(checking);
    let mut built = None;
    let checked = tokio::select! {
        result = &mut checking => result,
        result = &mut building => {
            built = Some(result);
            checking.await
        }
    };
    summary.timings.auth_secs = secs(started.elapsed());
    match checked? {
        Checked::Published { manifest, api } => {
            if built.is_none() {
                reporter.step("build cancelled: this commit is already published");
            }
            Ok(Outcome::AlreadyPublished { manifest, api })
        }
        Checked::Ready(access) => {
            let image = match built {
                Some(result) => result?,
                None => building.await?,
            };
            Ok(Outcome::Built {
                image: Box::new(image),
                access: Some(access),
            })
        }
    }
}

/// Pull the `--cache-from` images with this run's credentials (the preflight's when it ran).
async fn pull_cache_sources(
    plan: &Plan,
    session: &Session,
    docker: &bollard::Docker,
    access: Option<&RegistryAccess>,
    reporter: &Reporter,
) -> Result<Vec<String>> {
    if plan.build.cache_from.is_empty() {
        return Ok(Vec::new());
    }
    let credentials = match access {
        Some(access) => access.credentials.clone(),
        None => registry_credentials(session).await?.0,
    };
    let sources = &plan.build.cache_from;
    Ok(build::pull_cache_sources(docker, sources, &session.name, &credentials, reporter).await)
}

/// Fail in seconds on bad credentials or a missing repository, not after a long build; and find out
/// whether this commit is already published.
async fn preflight(plan: &Plan, session: &Session, reporter: &Reporter) -> Result<Checked> {
    let repository = plan.identity.repository.as_str();
    // Two independent ECR calls: asked at the same time.
    let (exists, fetched) = tokio::join!(
        async {
            match &session.aws {
                Some(config) => {
                    auth::ensure_repository(config, repository, plan.publish.create_repository)
                        .await
                        .map(Some)
                }
                None => Ok(None),
            }
        },
        registry_credentials(session)
    );
    if exists? == Some(RepositoryState::Created) {
        reporter.step(format!("created repository {repository}"));
    }
    let (credentials, expires_at) = fetched?;
    let api = RegistryApi::new(&session.registry, &plan.identity.repository, &credentials);
    let access = RegistryAccess {
        credentials,
        expires_at,
        api,
    };
    let sha_tag = plan.publish.sha_tag();
    let name = &session.name;
    let policy = &plan.publish.retry;
    let existing = retry(policy, "preflight", reporter, || async {
        match access.api.manifest(sha_tag).await {
            Ok(found) => Ok(found),
            Err(RegistryApiError::RepositoryNotFound) => Ok(None),
            Err(e) => Err(preflight_error(name, sha_tag, e)),
        }
    })
    .await?;
    let Some(manifest) = existing.filter(|_| !plan.publish.force) else {
        return Ok(Checked::Ready(access));
    };
    // A SHA tag without its revision label was pushed by another tool, or left by an older ecrbuild
    // stopped between its daemon's push of the SHA tag and the labelled config (the daemon now pushes
    // only the staging tag): build again to finish it.
    let expected = plan
        .build
        .labels
        .get(REVISION_LABEL)
        .map_or(plan.identity.sha.as_str(), String::as_str);
    let labels = retry(policy, "preflight", reporter, || async {
        access
            .api
            .labels_of(&manifest)
            .await
            .map_err(|e| preflight_error(name, sha_tag, e))
    })
    .await?;
    if Revision::from_labels(&labels).is_some_and(|r| r.sha == expected) {
        return Ok(Checked::Published {
            manifest,
            api: access.api,
        });
    }
    reporter.warn(format!(
        "{} exists but does not carry its revision label (another tool, or an interrupted run of an older ecrbuild); building it again",
        name.reference(sha_tag)
    ));
    Ok(Checked::Ready(access))
}

/// The commit is already published: point `latest` and the extra tags at it, build nothing.
async fn republish(
    plan: &Plan,
    session: &Session,
    manifest: &StoredManifest,
    api: &RegistryApi,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<()> {
    let sha_reference = session.name.reference(plan.publish.sha_tag());
    reporter.step(format!(
        "{sha_reference} is already published ({}); not rebuilding (use --force to rebuild)",
        manifest.digest()
    ));
    // Registry-side only: the daemon is not asked to push, so no credentials go to it.
    let target = RegistryTarget {
        api,
        name: &session.name,
        history: &session.history,
    };
    let follow_up = plan.publish.follow_up_tags();
    let (references, latest) =
        push::promote_published(&target, manifest, follow_up, None, &plan.publish, reporter)
            .await?;
    summary.pushed_references = std::iter::once(sha_reference).chain(references).collect();
    summary.digest = Some(manifest.digest().to_string());
    summary.skipped = true;
    summary.latest = Some(latest.describe());
    Ok(())
}

/// Push the built image with working credentials: the preflight's while they have a safe margin left
/// (ECR tokens last 12 hours), else fresh ones. A refused ECR token is refreshed once (it may have
/// expired or been revoked); a second refusal is final.
async fn publish(
    plan: &Plan,
    session: &Session,
    docker: &bollard::Docker,
    image: &BuiltImage,
    access: Option<RegistryAccess>,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<(PushedImage, RegistryAccess)> {
    let phase = Instant::now();
    let mut access = match access {
        Some(access) if still_valid(access.expires_at) => access,
        _ => fresh_access(plan, session).await?,
    };
    summary.timings.auth_secs += secs(phase.elapsed());
    let phase = Instant::now();
    let pushed = match push_with(&access, plan, session, docker, image, reporter).await {
        Err(Error::AuthFailed { detail, .. }) if session.aws.is_some() => {
            reporter.warn(format!(
                "the registry refused the token ({detail}); fetching a new one"
            ));
            access = fresh_access(plan, session).await?;
            push_with(&access, plan, session, docker, image, reporter).await?
        }
        other => other?,
    };
    summary.timings.push_secs = secs(phase.elapsed());
    summary.digest = Some(pushed.digest.clone());
    summary.pushed_references = pushed.references.clone();
    summary.pushed = true;
    summary.latest = Some(pushed.latest.describe());
    Ok((pushed, access))
}

async fn push_with(
    access: &RegistryAccess,
    plan: &Plan,
    session: &Session,
    docker: &bollard::Docker,
    image: &BuiltImage,
    reporter: &Reporter,
) -> Result<PushedImage> {
    let daemon = DaemonPush {
        docker,
        credentials: &access.credentials,
    };
    let target = RegistryTarget {
        api: &access.api,
        name: image.published(),
        history: &session.history,
    };
    push::push(&daemon, &target, image, &plan.publish, reporter).await
}

/// What verification expects of a built image in the registry: its name and every tag.
fn expected_of(image: &BuiltImage) -> verify::Expected<'_> {
    verify::Expected {
        name: image.published(),
        tags: image.tags(),
    }
}

/// Read every pushed tag back from the registry.
async fn verify_pushed(
    plan: &Plan,
    session: &Session,
    api: &RegistryApi,
    expected: &verify::Expected<'_>,
    pushed: &PushedImage,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<()> {
    let phase = Instant::now();
    let latest_settled = plan.publish.latest == LatestMode::Auto;
    let policy = &plan.publish.retry;
    let history = &session.history;
    verify::verify(
        api,
        expected,
        pushed,
        history,
        latest_settled,
        policy,
        reporter,
    )
    .await?;
    summary.timings.verify_secs = secs(phase.elapsed());
    reporter.step(format!(
        "verified: {} tag(s) resolve to {}",
        pushed.references.len(),
        pushed.digest
    ));
    Ok(())
}

/// After the image is in the registry: wait for the scan if asked, write the output files.
async fn finish(
    plan: &Plan,
    session: &Session,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<()> {
    if let (Some(scan_plan), Some(_)) = (&plan.scan, &summary.digest) {
        match &session.aws {
            Some(config) => {
                let reference = session.name.reference(plan.publish.sha_tag());
                summary.scan = scan::wait_for_scan(
                    config,
                    plan.identity.repository.as_str(),
                    &reference,
                    plan.identity.sha.as_str(),
                    scan_plan,
                    reporter,
                )
                .await?;
            }
            None => reporter.warn("--wait-scan needs ECR (--auth ecr); no scan to wait for"),
        }
    }
    let written = report::write_outputs(&plan.output_files, summary)
        .map_err(|e| Error::Internal(format!("cannot write an output file: {e}")))?;
    for path in written {
        reporter.step(format!("wrote {path}"));
    }
    Ok(())
}

fn preflight_error(name: &Published, tag: &Tag, error: RegistryApiError) -> Error {
    match error {
        RegistryApiError::Unauthorized => Error::AuthFailed {
            target: name.registry.to_string(),
            detail: "the registry refused the credentials before the build (preflight)".to_string(),
        },
        RegistryApiError::Failed { kind, detail } => Error::PushFailed {
            reference: name.reference(tag),
            detail: format!("registry check before the build failed: {detail}"),
            kind,
        },
        other => api_error(name, tag, other),
    }
}

async fn resolve_registry(
    source: &RegistrySource,
    aws: Option<&aws_config::SdkConfig>,
) -> Result<Registry> {
    match (source, aws) {
        (RegistrySource::Known(registry), _) => Ok(registry.clone()),
        (RegistrySource::FromEcrToken, Some(config)) => {
            let token = auth::ecr_token(config).await?;
            token.proxy_endpoint.ok_or_else(|| {
                Error::usage(
                    "--registry",
                    "the ECR token names no registry endpoint; pass --registry or set AWS_ACCOUNT_ID",
                )
            })
        }
        (RegistrySource::FromEcrToken, None) => Err(Error::usage(
            "--registry",
            "no registry: pass --registry HOST[:PORT] or set ECR_REGISTRY",
        )),
    }
}

async fn scan_context(options: &BuildOptions, reporter: &Reporter) -> Result<BuildContext> {
    let (dir, dockerfile) = (options.context_dir.clone(), options.dockerfile.clone());
    let context = tokio::task::spawn_blocking(move || BuildContext::scan(&dir, &dockerfile))
        .await
        .map_err(|e| Error::Internal(format!("context scan stopped: {e}")))??;
    reporter.step(format!(
        "context {}: {} entries, {} of file data, Dockerfile {}",
        options.context_dir.display(),
        context.entry_count(),
        HumanBytes(context.content_bytes()),
        context.dockerfile_in_tar()
    ));
    Ok(context)
}

/// Send only what the Dockerfile's COPY/ADD read when the daemon provably reads the same from it as from
/// the whole context; otherwise the whole context, and the run says why.
async fn choose_context(
    docker: &bollard::Docker,
    options: &BuildOptions,
    mut context: BuildContext,
    reporter: &Reporter,
) -> Result<BuildContext> {
    if options.full_context {
        return Ok(context);
    }
    let (all_entries, all_bytes) = (context.entry_count(), context.content_bytes());
    let roots = match needed_subtrees(docker, options).await {
        Ok(roots) => roots,
        Err(reason) => {
            reporter.step(format!("sending the whole context: {reason}"));
            return Ok(context);
        }
    };
    let (selected, back) = tokio::task::spawn_blocking(move || {
        let selected = context.select(&roots).map(|()| roots);
        (selected, context)
    })
    .await
    .map_err(|e| Error::Internal(format!("context selection stopped: {e}")))?;
    context = back;
    match selected {
        Ok(roots) => {
            let named: Vec<&str> = roots.iter().map(|r| r.path.as_str()).collect();
            reporter.step(format!(
                "sending {} of {all_entries} entries ({} of {}): what COPY/ADD read ({}); --full-context sends all",
                context.entry_count(),
                HumanBytes(context.content_bytes()),
                HumanBytes(all_bytes),
                named.join(", ")
            ));
        }
        Err(reason) => reporter.step(format!("sending the whole context: {reason}")),
    }
    Ok(context)
}

/// The subtrees the build reads, or why it may read anything.
async fn needed_subtrees(
    docker: &bollard::Docker,
    options: &BuildOptions,
) -> std::result::Result<Vec<SourceRoot>, String> {
    if options.pull {
        return Err("--pull may bring base images with ONBUILD triggers".to_string());
    }
    let dockerfile = std::fs::read(&options.dockerfile).map_err(|e| {
        format!(
            "{} could not be read again: {e}",
            options.dockerfile.display()
        )
    })?;
    let (roots, base_images) = match context_needs(&dockerfile, &options.build_args) {
        ContextNeeds::Everything(reason) => return Err(reason),
        ContextNeeds::Subtrees { roots, base_images } => (roots, base_images),
    };
    // A base image's ONBUILD triggers run COPY/ADD of this build, reading the context.
    for image in &base_images {
        match docker.inspect_image(image).await {
            Ok(found) => {
                let triggers = found.config.and_then(|c| c.on_build);
                if triggers.is_some_and(|t| !t.is_empty()) {
                    return Err(format!("base image {image} has ONBUILD triggers"));
                }
            }
            Err(_) => {
                return Err(format!(
                "base image {image} is not on the daemon yet, so its ONBUILD triggers are unknown"
            ))
            }
        }
    }
    Ok(roots)
}

/// How long a token must still be valid to be used for a push instead of fetching a new one.
const TOKEN_MARGIN: Duration = Duration::from_secs(30 * 60);

fn still_valid(expires_at: Option<SystemTime>) -> bool {
    expires_at.is_none_or(|at| at > SystemTime::now() + TOKEN_MARGIN)
}

/// New credentials (never the prefetched ones: this is also the retry after a refusal) and a client
/// that uses them.
async fn fresh_access(plan: &Plan, session: &Session) -> Result<RegistryAccess> {
    let (credentials, expires_at) = fetch_credentials(session).await?;
    let api = RegistryApi::new(&session.registry, &plan.identity.repository, &credentials);
    Ok(RegistryAccess {
        credentials,
        expires_at,
        api,
    })
}

/// Credentials for the session's registry and when they expire (`None`: they do not): the prefetched
/// ones while they have a safe margin left.
async fn registry_credentials(session: &Session) -> Result<(Credentials, Option<SystemTime>)> {
    if let Some(shared) = &session.shared_credentials {
        if let Some((of, credentials, expires_at)) = shared.clone().await {
            if of == session.registry && still_valid(expires_at) {
                return Ok((credentials, expires_at));
            }
        }
    }
    fetch_credentials(session).await
}

/// Credentials fetched now (an ECR token), or none for an anonymous registry.
async fn fetch_credentials(session: &Session) -> Result<(Credentials, Option<SystemTime>)> {
    match &session.aws {
        None => Ok((Credentials::Anonymous, None)),
        Some(config) => {
            let token = auth::ecr_token(config).await?;
            if let Some(endpoint) = &token.proxy_endpoint {
                if *endpoint != session.registry {
                    tracing::debug!(%endpoint, registry = %session.registry, "using the ECR token for a registry other than its endpoint");
                }
            }
            Ok((token.credentials, token.expires_at))
        }
    }
}
