//! Runs the phases in order. Each phase hands the next the value only it can produce: a scanned context,
//! a [`BuiltImage`](crate::build::BuiltImage) from a successful build, a [`PushedImage`](crate::push::PushedImage).

use std::time::{Duration, Instant};

use crate::auth::{self, Credentials};
use crate::build;
use crate::cli::AuthMode;
use crate::context::BuildContext;
use crate::daemon;
use crate::error::{Error, Result, Signal};
use crate::plan::{Plan, Registry, RegistrySource};
use crate::push;
use crate::registry::RegistryApi;
use crate::report::{secs, Reporter, Summary, Timings};
use crate::verify;

/// Run the whole pipeline; stop cleanly on SIGINT or SIGTERM. Dropping the pipeline future closes the
/// connection to the daemon, which cancels a build in progress; nothing is pushed after that.
pub async fn run_until_signalled(plan: Plan, reporter: &Reporter) -> Result<Summary> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| Error::Internal(format!("SIGINT handler: {e}")))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| Error::Internal(format!("SIGTERM handler: {e}")))?;
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
        AuthMode::Ecr => Some(auth::aws_config(plan.region.as_deref()).await),
        AuthMode::None => None,
    };

    let registry = match (&plan.registry, &aws) {
        (RegistrySource::Known(registry), _) => registry.clone(),
        (RegistrySource::FromEcrToken, Some(config)) => {
            let token = auth::ecr_token(config).await?;
            token.proxy_endpoint.ok_or_else(|| {
                Error::usage("--registry", "the ECR token names no registry endpoint; pass --registry or set AWS_ACCOUNT_ID")
            })?
        }
        (RegistrySource::FromEcrToken, None) => {
            return Err(Error::usage("--registry", "no registry: pass --registry HOST[:PORT] or set ECR_REGISTRY"))
        }
    };
    let sha_reference = crate::plan::reference(&registry, &plan.repository, &plan.sha_tag());

    let phase = Instant::now();
    reporter.step(format!("building {sha_reference}"));
    let gzip = plan.compress.unwrap_or_else(|| daemon::is_remote(&daemon::daemon_host()));
    let image = build::build(&docker, &plan, &registry, context, gzip, reporter).await?;
    timings.build_secs = secs(phase.elapsed());
    reporter.step(format!("built {} and tagged {}", image.id(), image.tags().iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")));

    let mut summary = Summary {
        sha: plan.sha.to_string(),
        image_id: image.id().to_string(),
        registry: registry.to_string(),
        repository: plan.repository.as_str().to_string(),
        references: image.references(),
        pushed_references: Vec::new(),
        digest: None,
        pushed: false,
        timings,
    };
    if !plan.push {
        reporter.step("--no-push: nothing pushed");
        summary.timings.total_secs = secs(started.elapsed());
        return Ok(summary);
    }

    // The token is fetched only now, right before the push, so a long build cannot outlive it.
    let phase = Instant::now();
    let credentials = registry_credentials(aws.as_ref(), &registry).await?;
    summary.timings.auth_secs = secs(phase.elapsed());

    let phase = Instant::now();
    let pushed = push::push(&docker, &image, &credentials, reporter).await?;
    summary.timings.push_secs = secs(phase.elapsed());
    summary.digest = Some(pushed.digest.clone());
    summary.pushed_references = pushed.references.clone();
    summary.pushed = true;

    if plan.verify {
        let phase = Instant::now();
        let api = RegistryApi::new(&registry, &plan.repository, &credentials);
        verify::verify(&api, &image, &pushed).await?;
        summary.timings.verify_secs = secs(phase.elapsed());
        reporter.step(format!("verified: {} tag(s) resolve to {}", pushed.references.len(), pushed.digest));
    }
    summary.timings.total_secs = secs(started.elapsed());
    Ok(summary)
}

async fn scan_context(plan: &Plan) -> Result<BuildContext> {
    let (dir, dockerfile) = (plan.context_dir.clone(), plan.dockerfile.clone());
    tokio::task::spawn_blocking(move || BuildContext::scan(&dir, &dockerfile))
        .await
        .map_err(|e| Error::Internal(format!("context scan stopped: {e}")))?
        .map_err(Error::from)
}

async fn registry_credentials(aws: Option<&aws_config::SdkConfig>, registry: &Registry) -> Result<Credentials> {
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
