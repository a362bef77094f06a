//! Runs the phases in order. Each phase hands the next the value only it can produce: a scanned context,
//! a [`BuiltImage`](crate::build::BuiltImage) from a successful build, a [`PushedImage`](crate::push::PushedImage).

use std::time::{Duration, Instant, SystemTime};

use crate::auth::{self, Credentials, RepositoryState};
use crate::build;
use crate::cli::AuthMode;
use crate::context::{context_needs, BuildContext, ContextNeeds, SourceRoot};
use crate::daemon;
use crate::error::{Error, Result, Signal};
use crate::git::History;
use crate::plan::{LatestMode, Plan, Registry, RegistrySource, Tag};
use crate::push::latest::Revision;
use crate::push::retry::retry;
use crate::push::{self, LatestOutcome, Published, PushOptions, Target};
use crate::registry::{RegistryApi, RegistryApiError, StoredManifest};
use crate::report::{self, secs, Reporter, Summary, Timings};
use crate::scan;
use crate::verify;

/// Run the whole pipeline; stop cleanly on SIGINT or SIGTERM. Dropping the pipeline future closes the
/// connection to the daemon, which cancels a build in progress; nothing is pushed after that.
pub async fn run_until_signalled(plan: Plan, reporter: &Reporter) -> Result<Summary> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Error::Internal(format!("SIGINT handler: {e}")))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| Error::Internal(format!("SIGTERM handler: {e}")))?;
    tokio::select! {
        result = run(plan, reporter) => result,
        _ = interrupt.recv() => Err(Error::Interrupted(Signal::Interrupt)),
        _ = terminate.recv() => Err(Error::Interrupted(Signal::Terminate)),
    }
}

/// Run every phase in order.
pub async fn run(plan: Plan, reporter: &Reporter) -> Result<Summary> {
    let started = Instant::now();
    let mut timings = Timings::default();

    let phase = Instant::now();
    let context = scan_context(&plan).await?;
    reporter.step(format!(
        "context {}: {} entries, {} of file data, Dockerfile {}",
        plan.context_dir.display(),
        context.entry_count(),
        human_bytes(context.content_bytes()),
        context.dockerfile_in_tar()
    ));
    timings.context_secs = secs(phase.elapsed());

    let docker = daemon::connect(Duration::from_secs(plan.daemon_timeout_secs)).await?;
    let phase = Instant::now();
    let context = if plan.full_context {
        context
    } else {
        select_context(&docker, &plan, context, reporter).await?
    };
    timings.context_secs += secs(phase.elapsed());
    let aws = match plan.auth {
        AuthMode::Ecr => Some(auth::aws_config(plan.region.as_deref(), plan.retry.attempts).await),
        AuthMode::None => None,
    };
    let history = History::at(&plan.context_dir);
    let revision = Revision {
        sha: plan.sha.to_string(),
        commit_time: history.commit_time(plan.sha.as_str()),
    };
    let registry = resolve_registry(&plan, aws.as_ref()).await?;
    let published = Published {
        registry: registry.clone(),
        repository: plan.repository.clone(),
        revision: revision.clone(),
    };
    let push_options = PushOptions {
        latest: plan.latest,
        retry: plan.retry,
    };

    let mut summary = Summary {
        sha: plan.sha.to_string(),
        image_id: String::new(),
        registry: registry.to_string(),
        repository: plan.repository.as_str().to_string(),
        references: plan.tags.iter().map(|t| published.reference(t)).collect(),
        pushed_references: Vec::new(),
        digest: None,
        pushed: false,
        skipped: false,
        latest: None,
        scan: None,
        timings,
    };
    let gzip = plan
        .compress
        .unwrap_or_else(|| daemon::is_remote(&daemon::daemon_host()));
    let preflight_wanted = plan.push && plan.preflight;
    if preflight_wanted && aws.is_none() && plan.create_repository {
        reporter.warn("--create-repository applies to ECR only (--auth ecr); ignored");
    }

    // Cache sources are pulled with the preflight's credentials, so then the preflight comes first.
    let mut checked: Option<Checked> = None;
    if preflight_wanted && !plan.cache_from.is_empty() {
        let phase = Instant::now();
        let result = preflight(&plan, aws.as_ref(), &registry, &published, reporter).await?;
        summary.timings.auth_secs = secs(phase.elapsed());
        checked = Some(result);
    }
    if let Some(Checked::Published { manifest, api }) = checked {
        return skip(
            &plan,
            aws.as_ref(),
            &docker,
            &history,
            &published,
            &push_options,
            (manifest, api),
            summary,
            started,
            reporter,
        )
        .await;
    }
    let cache_from = if plan.cache_from.is_empty() {
        Vec::new()
    } else {
        let fetched;
        let cache_credentials = match &checked {
            Some(Checked::Ready { credentials, .. }) => credentials,
            _ => {
                fetched = registry_credentials(aws.as_ref(), &registry).await?.0;
                &fetched
            }
        };
        build::pull_cache_sources(&docker, &plan, &registry, cache_credentials, reporter).await
    };

    let phase = Instant::now();
    reporter.step(format!("building {}", published.reference(&plan.sha_tag())));
    let setup = build::BuildSetup {
        registry: &registry,
        revision: &revision,
        cache_from: &cache_from,
        gzip,
    };
    let building = build::build(&docker, &plan, &setup, context, reporter);
    tokio::pin!(building);
    let mut built = None;
    if preflight_wanted && checked.is_none() {
        // The preflight runs while the daemon builds: it costs no time, and a failure (bad credentials,
        // no repository) still stops the build within seconds. An already published commit cancels
        // the build (dropping it closes the connection) and is not pushed again.
        let started_preflight = Instant::now();
        let checking = preflight(&plan, aws.as_ref(), &registry, &published, reporter);
        tokio::pin!(checking);
        let result = tokio::select! {
            result = &mut checking => result,
            result = &mut building => {
                built = Some(result);
                checking.await
            }
        };
        summary.timings.auth_secs = secs(started_preflight.elapsed());
        match result? {
            Checked::Published { manifest, api } => {
                if built.is_none() {
                    reporter.step("build cancelled: this commit is already published");
                }
                return skip(
                    &plan,
                    aws.as_ref(),
                    &docker,
                    &history,
                    &published,
                    &push_options,
                    (manifest, api),
                    summary,
                    started,
                    reporter,
                )
                .await;
            }
            ready => checked = Some(ready),
        }
    }
    let image = match built {
        Some(result) => result?,
        None => building.await?,
    };
    summary.timings.build_secs = secs(phase.elapsed());
    summary.image_id = image.id().to_string();
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
    if !plan.push {
        reporter.step("not pushing (--no-push or a pull/merge request build)");
        summary.timings.total_secs = secs(started.elapsed());
        return Ok(summary);
    }

    // The token from before the build is used only while it has a safe margin left (ECR tokens last
    // 12 hours); otherwise a fresh one is fetched right before the push.
    let phase = Instant::now();
    let (mut credentials, reused_api) = match checked {
        Some(Checked::Ready {
            credentials,
            expires_at,
            api,
        }) if still_valid(expires_at) => (credentials, Some(api)),
        _ => (registry_credentials(aws.as_ref(), &registry).await?.0, None),
    };
    summary.timings.auth_secs += secs(phase.elapsed());

    let phase = Instant::now();
    let mut api =
        reused_api.unwrap_or_else(|| RegistryApi::new(&registry, &plan.repository, &credentials));
    let target = Target {
        docker: &docker,
        credentials: &credentials,
        api: &api,
        history: &history,
    };
    let pushed = match push::push(&target, &image, &push_options, reporter).await {
        // A refused ECR token gets one refresh (it may have expired or been revoked); a second refusal
        // is final.
        Err(Error::AuthFailed { detail, .. }) if aws.is_some() => {
            reporter.warn(format!(
                "the registry refused the token ({detail}); fetching a new one"
            ));
            credentials = registry_credentials(aws.as_ref(), &registry).await?.0;
            api = RegistryApi::new(&registry, &plan.repository, &credentials);
            let target = Target {
                docker: &docker,
                credentials: &credentials,
                api: &api,
                history: &history,
            };
            push::push(&target, &image, &push_options, reporter).await?
        }
        other => other?,
    };
    summary.timings.push_secs = secs(phase.elapsed());
    summary.digest = Some(pushed.digest.clone());
    summary.pushed_references = pushed.references.clone();
    summary.pushed = true;
    summary.latest = Some(describe_latest(&pushed.latest));

    if plan.verify {
        let phase = Instant::now();
        verify::verify(
            &api,
            &image,
            &pushed,
            &history,
            plan.latest == LatestMode::Auto,
            &plan.retry,
            reporter,
        )
        .await?;
        summary.timings.verify_secs = secs(phase.elapsed());
        reporter.step(format!(
            "verified: {} tag(s) resolve to {}",
            pushed.references.len(),
            pushed.digest
        ));
    }
    finish(&plan, aws.as_ref(), summary, started, reporter).await
}

/// What the preflight found.
enum Checked {
    /// The SHA tag is in the registry with its labels: nothing to build.
    Published {
        manifest: StoredManifest,
        api: RegistryApi,
    },
    /// Ready to push, with credentials that work and a client that has used them.
    Ready {
        credentials: Credentials,
        expires_at: Option<SystemTime>,
        api: RegistryApi,
    },
}

/// Fail in seconds on bad credentials or a missing repository, not after a long build; and find out
/// whether this commit is already published.
async fn preflight(
    plan: &Plan,
    aws: Option<&aws_config::SdkConfig>,
    registry: &Registry,
    published: &Published,
    reporter: &Reporter,
) -> Result<Checked> {
    // Two independent ECR calls: asked at the same time.
    let (repository, fetched) = tokio::join!(
        async {
            match aws {
                Some(config) => auth::ensure_repository(
                    config,
                    plan.repository.as_str(),
                    plan.create_repository,
                )
                .await
                .map(Some),
                None => Ok(None),
            }
        },
        registry_credentials(aws, registry)
    );
    if repository? == Some(RepositoryState::Created) {
        reporter.step(format!("created repository {}", plan.repository.as_str()));
    }
    let (credentials, expires_at) = fetched?;
    let api = RegistryApi::new(registry, &plan.repository, &credentials);
    let sha_tag = plan.sha_tag();
    let existing = retry(&plan.retry, "preflight", reporter, || async {
        match api.manifest(&sha_tag).await {
            Ok(found) => Ok(found),
            Err(RegistryApiError::RepositoryNotFound) => Ok(None),
            Err(e) => Err(preflight_error(published, &sha_tag, e)),
        }
    })
    .await?;
    let Some(manifest) = existing.filter(|_| !plan.force) else {
        return Ok(Checked::Ready {
            credentials,
            expires_at,
            api,
        });
    };
    // A SHA tag without its revision label was left by a run stopped between the daemon's push and the
    // labelled config (or pushed by another tool): build again to finish it.
    let expected = plan
        .labels
        .get(crate::push::latest::REVISION_LABEL)
        .map_or(plan.sha.as_str(), String::as_str);
    let labels = retry(&plan.retry, "preflight", reporter, || async {
        api.labels_of(&manifest)
            .await
            .map_err(|e| preflight_error(published, &sha_tag, e))
    })
    .await?;
    if Revision::from_labels(&labels).is_some_and(|r| r.sha == expected) {
        return Ok(Checked::Published { manifest, api });
    }
    reporter.warn(format!(
        "{} exists but does not carry its revision label (an interrupted run or another tool); building it again",
        published.reference(&sha_tag)
    ));
    Ok(Checked::Ready {
        credentials,
        expires_at,
        api,
    })
}

/// The commit is already published: point `latest` and the extra tags at it, build nothing.
#[allow(clippy::too_many_arguments)]
async fn skip(
    plan: &Plan,
    aws: Option<&aws_config::SdkConfig>,
    docker: &bollard::Docker,
    history: &History,
    published: &Published,
    push_options: &PushOptions,
    (manifest, api): (StoredManifest, RegistryApi),
    mut summary: Summary,
    started: Instant,
    reporter: &Reporter,
) -> Result<Summary> {
    let sha_tag = plan.sha_tag();
    reporter.step(format!(
        "{} is already published ({}); not rebuilding (use --force to rebuild)",
        published.reference(&sha_tag),
        manifest.digest()
    ));
    // Registry-side only: the daemon is not asked to push, so no credentials go to it.
    let credentials = Credentials::Anonymous;
    let target = Target {
        docker,
        credentials: &credentials,
        api: &api,
        history,
    };
    let (references, latest) = push::promote_published(
        &target,
        published,
        &manifest,
        plan.follow_up_tags(),
        None,
        push_options,
        reporter,
    )
    .await?;
    summary.pushed_references = std::iter::once(published.reference(&sha_tag))
        .chain(references)
        .collect();
    summary.digest = Some(manifest.digest().to_string());
    summary.skipped = true;
    summary.latest = Some(describe_latest(&latest));
    finish(plan, aws, summary, started, reporter).await
}

/// After the image is in the registry: wait for the scan if asked, write the output files.
async fn finish(
    plan: &Plan,
    aws: Option<&aws_config::SdkConfig>,
    mut summary: Summary,
    started: Instant,
    reporter: &Reporter,
) -> Result<Summary> {
    if let (Some(scan_plan), Some(_)) = (&plan.scan, &summary.digest) {
        match aws {
            Some(config) => {
                let reference = format!(
                    "{}/{}:{}",
                    summary.registry, summary.repository, summary.sha
                );
                summary.scan = scan::wait_for_scan(
                    config,
                    plan.repository.as_str(),
                    &reference,
                    plan.sha.as_str(),
                    scan_plan,
                    reporter,
                )
                .await?;
            }
            None => reporter.warn("--wait-scan needs ECR (--auth ecr); no scan to wait for"),
        }
    }
    let written = report::write_outputs(&plan.outputs, &summary)
        .map_err(|e| Error::Internal(format!("cannot write an output file: {e}")))?;
    for path in written {
        reporter.step(format!("wrote {path}"));
    }
    summary.timings.total_secs = secs(started.elapsed());
    Ok(summary)
}

fn describe_latest(outcome: &LatestOutcome) -> String {
    match outcome {
        LatestOutcome::NotRequested => "not requested".to_string(),
        LatestOutcome::Moved => "moved".to_string(),
        LatestOutcome::Kept { current, reason } => format!("kept on {current}: {reason}"),
        LatestOutcome::Corrected { to } => format!("corrected to {to}"),
    }
}

fn preflight_error(published: &Published, tag: &Tag, error: RegistryApiError) -> Error {
    match error {
        RegistryApiError::Unauthorized => Error::AuthFailed {
            target: published.registry.to_string(),
            detail: "the registry refused the credentials before the build (preflight)".to_string(),
        },
        RegistryApiError::RepositoryNotFound => Error::RepositoryNotFound {
            repository: published.repository.as_str().to_string(),
            registry: published.registry.to_string(),
        },
        RegistryApiError::Transient(detail) | RegistryApiError::Other(detail) => {
            Error::PushFailed {
                reference: published.reference(tag),
                detail: format!("registry check before the build failed: {detail}"),
            }
        }
    }
}

async fn resolve_registry(plan: &Plan, aws: Option<&aws_config::SdkConfig>) -> Result<Registry> {
    match (&plan.registry, aws) {
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

/// Send only what the Dockerfile's COPY/ADD read when the daemon provably reads the same from it as from
/// the whole context; otherwise the whole context, and the run says why.
async fn select_context(
    docker: &bollard::Docker,
    plan: &Plan,
    mut context: BuildContext,
    reporter: &Reporter,
) -> Result<BuildContext> {
    let (all_entries, all_bytes) = (context.entry_count(), context.content_bytes());
    let refused = match needed_subtrees(docker, plan).await {
        Ok(roots) => {
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
                        human_bytes(context.content_bytes()),
                        human_bytes(all_bytes),
                        named.join(", ")
                    ));
                    return Ok(context);
                }
                Err(reason) => reason,
            }
        }
        Err(reason) => reason,
    };
    reporter.step(format!("sending the whole context: {refused}"));
    Ok(context)
}

/// The subtrees the build reads, or why it may read anything.
async fn needed_subtrees(
    docker: &bollard::Docker,
    plan: &Plan,
) -> std::result::Result<Vec<SourceRoot>, String> {
    if plan.pull {
        return Err("--pull may bring base images with ONBUILD triggers".to_string());
    }
    let dockerfile = std::fs::read(&plan.dockerfile)
        .map_err(|e| format!("{} could not be read again: {e}", plan.dockerfile.display()))?;
    let (roots, base_images) = match context_needs(&dockerfile, &plan.build_args) {
        ContextNeeds::Everything(reason) => return Err(reason),
        ContextNeeds::Subtrees { roots, base_images } => (roots, base_images),
    };
    // A base image's ONBUILD triggers run COPY/ADD of this build, reading the context.
    for image in &base_images {
        match docker.inspect_image(image).await {
            Ok(found) => {
                if found
                    .config
                    .and_then(|c| c.on_build)
                    .is_some_and(|triggers| !triggers.is_empty())
                {
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

async fn scan_context(plan: &Plan) -> Result<BuildContext> {
    let (dir, dockerfile) = (plan.context_dir.clone(), plan.dockerfile.clone());
    tokio::task::spawn_blocking(move || BuildContext::scan(&dir, &dockerfile))
        .await
        .map_err(|e| Error::Internal(format!("context scan stopped: {e}")))?
        .map_err(Error::from)
}

/// How long a token must still be valid to be used for a push instead of fetching a new one.
const TOKEN_MARGIN: Duration = Duration::from_secs(30 * 60);

fn still_valid(expires_at: Option<SystemTime>) -> bool {
    expires_at.is_none_or(|at| at > SystemTime::now() + TOKEN_MARGIN)
}

/// Credentials for `registry` and when they expire (`None`: they do not).
async fn registry_credentials(
    aws: Option<&aws_config::SdkConfig>,
    registry: &Registry,
) -> Result<(Credentials, Option<SystemTime>)> {
    match aws {
        None => Ok((Credentials::Anonymous, None)),
        Some(config) => {
            let token = auth::ecr_token(config).await?;
            if let Some(endpoint) = &token.proxy_endpoint {
                if endpoint != registry {
                    tracing::debug!(%endpoint, %registry, "using the ECR token for a registry other than its endpoint");
                }
            }
            Ok((token.credentials, token.expires_at))
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
