//! Runs the phases in order. Each phase hands the next the value only it can produce: a scanned context,
//! a [`BuiltImage`](crate::build::BuiltImage) from a successful build, a [`PushedImage`](crate::push::PushedImage).

use std::time::{Duration, Instant};

use crate::auth::{self, Credentials, RepositoryState};
use crate::build;
use crate::cli::AuthMode;
use crate::context::BuildContext;
use crate::daemon;
use crate::error::{Error, Result, Signal};
use crate::git::History;
use crate::plan::{LatestMode, Plan, Registry, RegistrySource, Tag};
use crate::push::latest::Revision;
use crate::push::retry::retry;
use crate::push::{self, LatestOutcome, Published, PushOptions, Target};
use crate::registry::{RegistryApi, RegistryApiError};
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
    let mut credentials: Option<Credentials> = None;

    // Preflight: fail in seconds on bad credentials or a missing repository, not after a long build;
    // and skip the build when this commit is already published.
    if plan.push && plan.preflight {
        let phase = Instant::now();
        if let Some(config) = &aws {
            if auth::ensure_repository(config, plan.repository.as_str(), plan.create_repository)
                .await?
                == RepositoryState::Created
            {
                reporter.step(format!("created repository {}", plan.repository.as_str()));
            }
        } else if plan.create_repository {
            reporter.warn("--create-repository applies to ECR only (--auth ecr); ignored");
        }
        let preflight_credentials = registry_credentials(aws.as_ref(), &registry).await?;
        let api = RegistryApi::new(&registry, &plan.repository, &preflight_credentials);
        let sha_tag = plan.sha_tag();
        let existing = retry(&plan.retry, "preflight", reporter, || async {
            match api.manifest_digest(&sha_tag).await {
                Ok(found) => Ok(found),
                Err(RegistryApiError::RepositoryNotFound) => Ok(None),
                Err(e) => Err(preflight_error(&published, &sha_tag, e)),
            }
        })
        .await?;
        summary.timings.auth_secs = secs(phase.elapsed());
        if let Some(digest) = existing.filter(|_| !plan.force) {
            reporter.step(format!(
                "{} is already published ({digest}); not rebuilding (use --force to rebuild)",
                published.reference(&sha_tag)
            ));
            let target = Target {
                docker: &docker,
                credentials: &preflight_credentials,
                api: &api,
                history: &history,
            };
            let (references, latest) = push::promote_published(
                &target,
                &published,
                &digest,
                plan.follow_up_tags(),
                &push_options,
                reporter,
            )
            .await?;
            summary.pushed_references = std::iter::once(published.reference(&sha_tag))
                .chain(references)
                .collect();
            summary.digest = Some(digest);
            summary.skipped = true;
            summary.latest = Some(describe_latest(&latest));
            return finish(&plan, aws.as_ref(), summary, started, reporter).await;
        }
        credentials = Some(preflight_credentials);
    }

    let cache_from = if plan.cache_from.is_empty() {
        Vec::new()
    } else {
        let cache_credentials = match credentials.take() {
            Some(c) => c,
            None => registry_credentials(aws.as_ref(), &registry).await?,
        };
        build::pull_cache_sources(&docker, &plan, &registry, &cache_credentials, reporter).await
    };

    let phase = Instant::now();
    reporter.step(format!("building {}", published.reference(&plan.sha_tag())));
    let gzip = plan
        .compress
        .unwrap_or_else(|| daemon::is_remote(&daemon::daemon_host()));
    let setup = build::BuildSetup {
        registry: &registry,
        revision: &revision,
        cache_from: &cache_from,
        gzip,
    };
    let image = build::build(&docker, &plan, &setup, context, reporter).await?;
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

    // The token is fetched again right before the push, so a long build cannot outlive it.
    let phase = Instant::now();
    let mut credentials = registry_credentials(aws.as_ref(), &registry).await?;
    summary.timings.auth_secs += secs(phase.elapsed());

    let phase = Instant::now();
    let mut api = RegistryApi::new(&registry, &plan.repository, &credentials);
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
            credentials = registry_credentials(aws.as_ref(), &registry).await?;
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
        RegistryApiError::Other(detail) => Error::PushFailed {
            reference: published.reference(tag),
            detail: format!("registry check before the build failed: {detail}"),
        },
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

async fn scan_context(plan: &Plan) -> Result<BuildContext> {
    let (dir, dockerfile) = (plan.context_dir.clone(), plan.dockerfile.clone());
    tokio::task::spawn_blocking(move || BuildContext::scan(&dir, &dockerfile))
        .await
        .map_err(|e| Error::Internal(format!("context scan stopped: {e}")))?
        .map_err(Error::from)
}

async fn registry_credentials(
    aws: Option<&aws_config::SdkConfig>,
    registry: &Registry,
) -> Result<Credentials> {
    match aws {
        None => Ok(Credentials::Anonymous),
        Some(config) => {
            let token = auth::ecr_token(config).await?;
            if let Some(endpoint) = &token.proxy_endpoint {
                if endpoint != registry {
                    tracing::debug!(%endpoint, %registry, "using the ECR token for a registry other than its endpoint");
                }
            }
            Ok(token.credentials)
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
