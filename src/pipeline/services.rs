//! Many services from one `ecrbuild.toml`, each behind its own build-then-push gate. Each service is
//! first *decided* without the daemon: its input digest (see [`crate::inputs`]) is computed, and the
//! registry is asked whether this commit is published (skip) or an image with the same inputs is
//! (reuse: republished for this commit registry-side). Only the rest reach the daemon, at most
//! `--jobs` at a time. `ecrbuild plan` stops after the decision.

use std::path::Path;
use std::time::{Instant, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;

use crate::auth::Credentials;
use crate::build::{self, provenance_labels};
use crate::context::{context_needs, images_read, BuildContext, ContextNeeds};
use crate::daemon;
use crate::error::{Error, Result};
use crate::git::History;
use crate::identity::{
    Revision, COMMIT_TIME_LABEL, CREATED_LABEL, INPUTS_LABEL, LATEST_CANDIDATE_LABEL,
    REVISION_LABEL,
};
use crate::inputs::{input_digest, BaseImage, BaseLookup, DecidedInputs, InputDigest, Recipe};
use crate::plan::{Plan, RegistrySource, Service, ServicesOptions};
use crate::push::{self, api_error, PushedImage, RegistryTarget};
use crate::registry::{RegistryApi, StoredManifest};
use crate::report::{
    secs, utc_timestamp, PlannedAction, PlannedService, Reporter, ServiceAction, ServiceSummary,
    ServicesPlan, ServicesSummary, Summary, TimeLayout,
};
use crate::retry::retry;
use crate::verify;

use super::{
    fetch_credentials, finish, preflight, publish, pull_cache_sources, republish, scan_context,
    verify_pushed, Checked, Prepared, RegistryAccess, Session,
};

/// What the services of one run share: base image identities, the daemon (connected once, when a
/// service needs it), and the bound on daemon builds.
struct Shared {
    bases: BaseLookup,
    builds: Semaphore,
    /// Services decided or published at once: the registry and the blocking pool see a bounded
    /// load however many services the file holds.
    in_flight: Semaphore,
    /// Read once for every service: the commit's time, git (each question asked once: one
    /// repository, one commit), the AWS configuration and the registry's credentials.
    prepared: Prepared,
    options: ServicesOptions,
}

/// Why a service with several platforms is built every time.
const SEVERAL_PLATFORMS: &str =
    "several platforms: built every time (reuse covers services with one platform)";

/// Services worked on at once (each holds a scanned context and a few registry requests).
const SERVICES_IN_FLIGHT: usize = 16;

/// What the registry said about a service, and what acting on it needs.
enum Found {
    /// This commit's SHA tag is published.
    Published {
        manifest: StoredManifest,
        api: RegistryApi,
    },
    /// An image with the same inputs is published.
    Reusable { same: Same, access: RegistryAccess },
    /// Neither: build (with the preflight's access, when it ran).
    Nothing(Option<RegistryAccess>),
}

/// A service decided: what to do, why, and everything the doing needs.
struct Decision {
    found: Found,
    reason: String,
    inputs: Option<DecidedInputs>,
    bases: Vec<BaseImage>,
    context: BuildContext,
    session: Session,
}

impl Decision {
    fn planned(&self) -> PlannedAction {
        match self.found {
            Found::Published { .. } => PlannedAction::Skip,
            Found::Reusable { .. } => PlannedAction::Reuse,
            Found::Nothing(_) => PlannedAction::Build,
        }
    }
}

/// Build, reuse or skip every service; one summary. `Err` only for what stops the whole run before
/// any service starts; a failed service is in the summary, and [`failure_of`] turns it into the run's
/// error.
pub async fn run_services(
    services: Vec<Service>,
    options: ServicesOptions,
    reporter: &Reporter,
) -> Result<ServicesSummary> {
    let shared = shared(&services, options).await;
    let mut running: FuturesUnordered<_> = services
        .iter()
        .map(|service| run_one(service, &shared, reporter))
        .collect();
    let mut results = Vec::new();
    let mut first_failure = None;
    while let Some(result) = running.next().await {
        if result.action == ServiceAction::Failed && first_failure.is_none() {
            first_failure = Some((result.service.clone(), result.exit_code));
        }
        results.push(result);
        if first_failure.is_some() && options.fail_fast && !running.is_empty() {
            reporter.warn("--fail-fast: stopping the other services");
            drop(running);
            break;
        }
    }
    for service in &services {
        if !results.iter().any(|r| r.service == service.name) {
            results.push(stopped(service, first_failure.clone()));
        }
    }
    results.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(ServicesSummary {
        sha: sha_of(&services),
        services: results,
    })
}

/// `ecrbuild plan`: decide every service, act on none.
pub async fn plan_services(
    services: Vec<Service>,
    options: ServicesOptions,
    reporter: &Reporter,
) -> Result<ServicesPlan> {
    let shared = shared(&services, options).await;
    let deciding = services.iter().map(|service| async {
        let _slot = shared.in_flight.acquire().await;
        let reporter = reporter.for_service(&service.name);
        if service.plan.platforms.len() > 1 {
            return Ok(PlannedService {
                service: service.name.clone(),
                repository: service.plan.identity.repository.as_str().to_string(),
                action: PlannedAction::Build,
                reason: SEVERAL_PLATFORMS.to_string(),
                inputs: None,
                reuse_from: None,
            });
        }
        let decision = decide(&service.plan, &shared, &reporter).await?;
        Ok::<_, Error>(PlannedService {
            service: service.name.clone(),
            repository: service.plan.identity.repository.as_str().to_string(),
            action: decision.planned(),
            reason: decision.reason.clone(),
            inputs: decision.inputs.as_ref().map(|d| d.digest.to_string()),
            reuse_from: match &decision.found {
                Found::Reusable { same, .. } => Some(same.from.clone()),
                _ => None,
            },
        })
    });
    let planned = futures_util::future::join_all(deciding).await;
    let mut decided = Vec::new();
    for (service, result) in services.iter().zip(planned) {
        decided.push(result.map_err(|e| Error::ServicesFailed {
            total: services.len(),
            failed: format!("{}: {e}", service.name),
            code_of: vec![e.exit_code()],
        })?);
    }
    Ok(ServicesPlan {
        sha: sha_of(&services),
        services: decided,
    })
}

/// The run's error when a service failed: each failed service with its error, and the most severe
/// code among them.
pub fn failure_of(summary: &ServicesSummary) -> Option<Error> {
    let failed: Vec<&ServiceSummary> = summary
        .services
        .iter()
        .filter(|s| s.action == ServiceAction::Failed)
        .collect();
    if failed.is_empty() {
        return None;
    }
    Some(Error::ServicesFailed {
        total: summary.services.len(),
        failed: failed
            .iter()
            .map(|s| format!("{} ({})", s.service, s.error.as_deref().unwrap_or("failed")))
            .collect::<Vec<_>>()
            .join("; "),
        code_of: failed
            .iter()
            .filter_map(|s| s.exit_code)
            .map(exit_code_of)
            .collect(),
    })
}

fn exit_code_of(code: u8) -> crate::error::ExitCode {
    use crate::error::ExitCode as C;
    [
        C::Internal,
        C::Usage,
        C::Context,
        C::DaemonUnreachable,
        C::BuildFailed,
        C::AuthFailed,
        C::PushFailed,
        C::VerifyFailed,
        C::ScanFindings,
        C::RepositoryNotFound,
        C::Interrupted,
        C::Terminated,
    ]
    .into_iter()
    .find(|c| c.code() == code)
    .unwrap_or(C::Internal)
}

fn sha_of(services: &[Service]) -> String {
    services
        .first()
        .map(|s| s.plan.identity.sha.to_string())
        .unwrap_or_default()
}

/// The lookup of base images, with this run's registry credentials when they can be had (only our
/// registry gets them).
async fn shared(services: &[Service], options: ServicesOptions) -> Shared {
    use futures_util::FutureExt;
    let first = services.first().map(|s| &s.plan);
    let history = History::remembering(first.map_or(Path::new("."), |p| &p.build.context_dir));
    let mut prepared = match first {
        Some(plan) => Prepared::for_plan(plan, history.clone()).await.ok(),
        None => None,
    }
    .unwrap_or(Prepared {
        commit_time: None,
        history,
        aws: None,
        credentials: None,
    });
    let own = first.and_then(|plan| match &plan.identity.registry {
        RegistrySource::Known(registry) => Some(registry.clone()),
        RegistrySource::FromEcrToken => None,
    });
    // Fetched by whichever service asks first, while the others scan and hash meanwhile.
    let credentials = first.filter(|p| p.publish.push).map(|plan| {
        let (plan, session_parts) = (plan.clone(), prepared.clone());
        async move {
            let session = Session::open_at(&plan, &session_parts).await.ok()?;
            let (credentials, expires_at) = fetch_credentials(&session).await.ok()?;
            Some((session.registry, credentials, expires_at))
        }
        .boxed()
        .shared()
    });
    prepared.credentials = credentials.clone();
    let timeout = first.map_or(std::time::Duration::from_secs(3600), |p| {
        p.build.daemon_timeout
    });
    Shared {
        bases: BaseLookup::new(own, credentials, timeout),
        builds: Semaphore::new(options.jobs.max(1)),
        in_flight: Semaphore::new(SERVICES_IN_FLIGHT),
        prepared,
        options,
    }
}

/// One service, start to end; never `Err`: a failure is the service's result.
async fn run_one(service: &Service, shared: &Shared, reporter: &Reporter) -> ServiceSummary {
    let _slot = shared.in_flight.acquire().await;
    let reporter = reporter.for_service(&service.name);
    let started = Instant::now();
    let plan = &service.plan;
    let mut summary = initial_summary(plan);
    let mut result = ServiceSummary {
        service: service.name.clone(),
        action: ServiceAction::Failed,
        inputs: None,
        reused_from: None,
        error: None,
        exit_code: None,
        image: Summary::default(),
    };
    match run_decided(plan, shared, &mut result, &mut summary, &reporter).await {
        Ok(action) => result.action = action,
        Err(error) => {
            reporter.warn(format!("failed: {error}"));
            result.error = Some(error.to_string());
            result.exit_code = Some(error.exit_code().code());
        }
    }
    summary.timings.total_secs = secs(started.elapsed());
    result.image = summary;
    result
}

async fn run_decided(
    plan: &Plan,
    shared: &Shared,
    result: &mut ServiceSummary,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<ServiceAction> {
    if plan.platforms.len() > 1 {
        reporter.step(SEVERAL_PLATFORMS);
        *summary = super::platforms::run(plan.clone(), reporter).await?;
        return Ok(ServiceAction::Built);
    }
    let started = Instant::now();
    let decision = decide(plan, shared, reporter).await?;
    result.inputs = decision.inputs.as_ref().map(|d| d.digest.to_string());
    let context_secs = secs(started.elapsed());
    *summary = decision.session.summary(plan, context_secs);
    reporter.step(format!(
        "{}: {}",
        format!("{:?}", decision.planned()).to_lowercase(),
        decision.reason
    ));
    let action = act(plan, decision, shared, result, summary, reporter).await?;
    Ok(action)
}

/// Decide what a run does with a service: skip, reuse or build. Needs no daemon unless a base image
/// can only be identified there.
async fn decide(plan: &Plan, shared: &Shared, reporter: &Reporter) -> Result<Decision> {
    // What the build reads (local files, base images) and what the registry holds for this commit
    // are independent questions: asked at the same time.
    let (read, checked) = tokio::join!(
        read_inputs(plan, shared, reporter),
        check_registry(plan, shared, reporter)
    );
    let (read, (session, checked)) = (read?, checked?);
    let (found, reason) = look_up(plan, &session, &read, checked, shared, reporter).await?;
    Ok(Decision {
        found,
        reason,
        inputs: read.inputs,
        bases: read.bases,
        context: read.context,
        session,
    })
}

/// What a service's build reads: its context (as it will be sent), its base images, and their
/// digest when every input is identified (else why not).
struct Read {
    context: BuildContext,
    inputs: Option<DecidedInputs>,
    bases: Vec<BaseImage>,
    unknown: Option<String>,
}

async fn read_inputs(plan: &Plan, shared: &Shared, reporter: &Reporter) -> Result<Read> {
    let context = scan_context(&plan.build, reporter).await?;
    let dockerfile = tokio::fs::read(&plan.build.dockerfile).await.map_err(|e| {
        Error::usage(
            plan.build.dockerfile.display().to_string(),
            format!("cannot read the Dockerfile: {e}"),
        )
    })?;
    let bases = identify_bases(&dockerfile, plan, shared).await;
    let onbuild = bases
        .as_ref()
        .ok()
        .is_some_and(|b| b.iter().any(|i| i.onbuild));
    let context = select(plan, context, &dockerfile, onbuild, reporter).await?;
    let bases = match bases {
        Ok(bases) => bases,
        Err(reason) => {
            return Ok(Read {
                context,
                inputs: None,
                bases: Vec::new(),
                unknown: Some(reason),
            })
        }
    };
    let (context, context_digest) = digest_context(context).await?;
    let recipe = Recipe {
        dockerfile: &dockerfile,
        build_args: &plan.build.build_args,
        labels: &plan.build.labels,
        target: plan.build.target.as_deref(),
        platform: plan.platforms.first(),
    };
    let inputs = DecidedInputs {
        digest: input_digest(&context_digest, &recipe, &bases),
        context: context_digest,
    };
    Ok(Read {
        context,
        inputs: Some(inputs),
        bases,
        unknown: None,
    })
}

/// The session, and the preflight's answer when the run pushes and checks first: credentials and
/// repository checked, and whether this commit is published.
async fn check_registry(
    plan: &Plan,
    shared: &Shared,
    reporter: &Reporter,
) -> Result<(Session, Option<Checked>)> {
    let session = Session::open_at(plan, &shared.prepared).await?;
    if !(plan.publish.push && plan.publish.preflight) {
        return Ok((session, None));
    }
    let checked = preflight(plan, &session, reporter).await?;
    Ok((session, Some(checked)))
}

/// Every image the Dockerfile builds on, identified; `Err` says which could not be and why.
async fn identify_bases(
    dockerfile: &[u8],
    plan: &Plan,
    shared: &Shared,
) -> std::result::Result<Vec<BaseImage>, String> {
    let images = images_read(dockerfile, &plan.build.build_args)?;
    let platform = plan.platforms.first();
    let found = futures_util::future::join_all(
        images
            .iter()
            .map(|image| shared.bases.identify(image, platform)),
    )
    .await;
    found.into_iter().collect()
}

/// Keep only what COPY/ADD read, as a single-image run does, but without the daemon: the base
/// images' ONBUILD triggers are known from their identification.
async fn select(
    plan: &Plan,
    mut context: BuildContext,
    dockerfile: &[u8],
    onbuild: bool,
    reporter: &Reporter,
) -> Result<BuildContext> {
    let options = &plan.build;
    let roots = if options.full_context {
        return Ok(context);
    } else if options.pull {
        Err("--pull may bring base images with ONBUILD triggers".to_string())
    } else if onbuild {
        Err("a base image has ONBUILD triggers".to_string())
    } else {
        match context_needs(dockerfile, &options.build_args) {
            ContextNeeds::Everything(reason) => Err(reason),
            ContextNeeds::Subtrees { roots, .. } => Ok(roots),
        }
    };
    let roots = match roots {
        Ok(roots) => roots,
        Err(reason) => {
            reporter.step(format!("sending the whole context: {reason}"));
            return Ok(context);
        }
    };
    let (selected, back) = tokio::task::spawn_blocking(move || {
        let selected = context.select(&roots);
        (selected, context)
    })
    .await
    .map_err(|e| Error::Internal(format!("context selection stopped: {e}")))?;
    context = back;
    match selected {
        Ok(()) => reporter.step(format!(
            "inputs: {} entries COPY/ADD read",
            context.entry_count()
        )),
        Err(reason) => reporter.step(format!("sending the whole context: {reason}")),
    }
    Ok(context)
}

/// The context's content digest, read off the async runtime; the context comes back for the build.
async fn digest_context(context: BuildContext) -> Result<(BuildContext, [u8; 32])> {
    let (digest, context) =
        tokio::task::spawn_blocking(move || (context.content_digest(), context))
            .await
            .map_err(|e| Error::Internal(format!("context digest stopped: {e}")))?;
    let digest = digest.map_err(
        |e| match crate::context::ContextError::from_stream_error(&e) {
            Some(_) => Error::Context(
                *e.into_inner()
                    .and_then(|inner| inner.downcast::<crate::context::ContextError>().ok())
                    .expect("checked above"),
            ),
            None => Error::Internal(format!("reading the context: {e}")),
        },
    )?;
    Ok((context, digest))
}

/// Ask the registry: is this commit published (skip), or an image with these inputs (reuse)?
async fn look_up(
    plan: &Plan,
    session: &Session,
    read: &Read,
    checked: Option<Checked>,
    shared: &Shared,
    reporter: &Reporter,
) -> Result<(Found, String)> {
    let access = match checked {
        None if !plan.publish.push => {
            let why = "not pushing (--no-push or a pull request build): built to check it builds";
            return Ok((Found::Nothing(None), why.to_string()));
        }
        None => {
            let why = "--no-preflight: the registry is not asked before the build";
            return Ok((Found::Nothing(None), why.to_string()));
        }
        Some(Checked::Published { manifest, api }) => {
            let why = format!(
                "{} is already published",
                session.name.reference(plan.publish.sha_tag())
            );
            return Ok((Found::Published { manifest, api }, why));
        }
        Some(Checked::Ready(access)) => access,
    };
    let (inputs, unknown) = (
        read.inputs.as_ref().map(|d| &d.digest),
        read.unknown.clone(),
    );
    let Some(inputs) = inputs else {
        let why = format!(
            "an input cannot be identified, so nothing can stand for this build ({})",
            unknown.unwrap_or_default()
        );
        return Ok((Found::Nothing(Some(access)), why));
    };
    if shared.options.rebuild {
        let why = "--rebuild (or --no-cache): building whatever the registry holds";
        return Ok((Found::Nothing(Some(access)), why.to_string()));
    }
    match find_same_inputs(plan, session, &access, inputs, reporter).await? {
        Some(same) => {
            let why = format!("the image of {} has the same inputs ({inputs})", same.from);
            Ok((Found::Reusable { same, access }, why))
        }
        None => Ok((
            Found::Nothing(Some(access)),
            format!("no published image has these inputs ({inputs})"),
        )),
    }
}

/// The image published under the input digest's tag, if it carries these inputs and a revision:
/// two requests, whatever the repository holds.
async fn find_same_inputs(
    plan: &Plan,
    session: &Session,
    access: &RegistryAccess,
    inputs: &InputDigest,
    reporter: &Reporter,
) -> Result<Option<Same>> {
    let tag = inputs.tag();
    let name = &session.name;
    let policy = &plan.publish.retry;
    let found = retry(policy, "input lookup", reporter, || async {
        access
            .api
            .manifest(&tag)
            .await
            .map_err(|e| api_error(name, &tag, e))
    })
    .await?;
    let Some(manifest) = found.filter(|m| m.index_entries().is_none()) else {
        return Ok(None);
    };
    let config = retry(policy, "input lookup", reporter, || async {
        access
            .api
            .image_config(&manifest)
            .await
            .map_err(|e| api_error(name, &tag, e))
    })
    .await?;
    let labels =
        crate::registry::relabel::labels_of_config(&config).map_err(|e| Error::PushFailed {
            reference: name.reference(&tag),
            detail: format!("the image config cannot be read: {e}"),
            kind: crate::error::FailureKind::Permanent,
        })?;
    if labels.get(INPUTS_LABEL).map(String::as_str) != Some(inputs.as_str()) {
        reporter.warn(format!(
            "{} does not carry {INPUTS_LABEL}={inputs}; not reusing it",
            name.reference(&tag)
        ));
        return Ok(None);
    }
    Ok(Revision::from_labels(&labels).map(|r| Same {
        manifest,
        config,
        from: r.sha,
    }))
}

/// The image published with the same inputs: its manifest and config, and its commit.
struct Same {
    manifest: StoredManifest,
    config: Vec<u8>,
    from: String,
}

/// Carry out a decision.
async fn act(
    plan: &Plan,
    decision: Decision,
    shared: &Shared,
    result: &mut ServiceSummary,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<ServiceAction> {
    let Decision {
        found,
        inputs,
        bases,
        context,
        session,
        ..
    } = decision;
    let action = match found {
        Found::Published { manifest, api } => {
            republish(plan, &session, &manifest, &api, summary, reporter).await?;
            ServiceAction::Skipped
        }
        Found::Reusable { same, access } => {
            let reused = Reused {
                same: &same,
                access: &access,
                inputs: inputs.as_ref().map(|d| &d.digest),
            };
            reuse(plan, &session, reused, summary, reporter).await?;
            result.reused_from = Some(same.from);
            ServiceAction::Reused
        }
        Found::Nothing(access) => {
            let built = Build {
                session: &session,
                access,
                inputs,
                bases: &bases,
                context,
            };
            build_and_publish(plan, built, shared, summary, reporter).await?;
            ServiceAction::Built
        }
    };
    finish(plan, &session, summary, reporter).await?;
    Ok(action)
}

/// An image with the same inputs, found in the registry.
struct Reused<'a> {
    same: &'a Same,
    access: &'a RegistryAccess,
    inputs: Option<&'a InputDigest>,
}

/// Publish the image found for this commit, registry-side: its layers as they are, its config with
/// this commit's provenance labels (the first commit's are dropped). Then the other tags and
/// `latest`, as for a published commit.
async fn reuse(
    plan: &Plan,
    session: &Session,
    reused: Reused<'_>,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<()> {
    let phase = Instant::now();
    let name = &session.name;
    let sha_tag = plan.publish.sha_tag();
    let user_labels = &plan.build.labels;
    let mut labels = provenance_labels(
        &name.revision,
        plan.publish.latest_candidate(),
        user_labels,
        &utc_timestamp(SystemTime::now(), TimeLayout::Rfc3339),
    );
    if let Some(inputs) = reused.inputs {
        labels.insert(INPUTS_LABEL.to_string(), inputs.to_string());
    }
    let dropped: Vec<&str> = [
        REVISION_LABEL,
        CREATED_LABEL,
        COMMIT_TIME_LABEL,
        LATEST_CANDIDATE_LABEL,
    ]
    .into_iter()
    .filter(|key| !user_labels.contains_key(*key))
    .collect();
    let api = &reused.access.api;
    let policy = &plan.publish.retry;
    let target = RegistryTarget {
        api,
        name,
        history: &session.history,
    };
    let follow_up = plan.publish.follow_up_tags();
    // Where `latest` stands does not depend on the SHA tag's write: read meanwhile, as a push does.
    let (published, latest_before) = tokio::join!(
        retry(policy, "publish", reporter, || async {
            let same = reused.same;
            api.put_relabelled_config(&same.manifest, &same.config, &dropped, &labels, sha_tag)
                .await
                .map_err(|e| api_error(name, sha_tag, e))
        }),
        push::latest_if_wanted(&target, follow_up, &plan.publish, reporter)
    );
    let (published, latest_before) = (published?, latest_before?);
    let (references, latest) = push::promote_published(
        &target,
        &published,
        follow_up,
        latest_before,
        &plan.publish,
        reporter,
    )
    .await?;
    summary.timings.push_secs = secs(phase.elapsed());
    let pushed = PushedImage {
        digest: published.digest().to_string(),
        references: std::iter::once(name.reference(sha_tag))
            .chain(references)
            .collect(),
        latest,
    };
    reporter.step(format!(
        "published {} for this commit: the same layers, new provenance labels",
        pushed.digest
    ));
    if plan.publish.verify {
        let expected = verify::Expected {
            name,
            tags: &plan.publish.tags,
        };
        verify_pushed(plan, session, api, &expected, &pushed, summary, reporter).await?;
    }
    summary.digest = Some(pushed.digest.clone());
    summary.latest = Some(pushed.latest.describe());
    summary.pushed_references = pushed.references;
    summary.pushed = true;
    Ok(())
}

/// What a service's build needs from its decision.
struct Build<'a> {
    session: &'a Session,
    access: Option<RegistryAccess>,
    inputs: Option<DecidedInputs>,
    bases: &'a [BaseImage],
    context: BuildContext,
}

/// The single-image path from the build on: build (at most `--jobs` at once), push, verify; then
/// keep the image under its input digest's tag for the commits that will have the same inputs.
async fn build_and_publish(
    plan: &Plan,
    built: Build<'_>,
    shared: &Shared,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<()> {
    let Build {
        session,
        access,
        inputs,
        bases,
        context,
    } = built;
    let docker = shared
        .bases
        .daemon()
        .await
        .map_err(|detail| Error::DaemonUnreachable {
            host: daemon::daemon_host(),
            detail,
        })?;
    let permit = shared
        .builds
        .acquire()
        .await
        .map_err(|e| Error::Internal(format!("build slots closed: {e}")))?;
    let phase = Instant::now();
    super::platforms::check_emulation(docker, plan, reporter).await?;
    let credentials = access
        .as_ref()
        .map_or(Credentials::Anonymous, |a| a.credentials.clone());
    build::pull_stale_bases(docker, bases, &session.registry, &credentials, reporter).await?;
    let cache_from = pull_cache_sources(plan, session, docker, access.as_ref(), reporter).await?;
    let setup = super::build_setup(plan, session, cache_from, inputs);
    reporter.step(format!(
        "building {}",
        session.name.reference(plan.publish.sha_tag())
    ));
    let image = build::build(docker, &plan.build, setup, context, reporter).await?;
    drop(permit);
    summary.timings.build_secs = secs(phase.elapsed());
    summary.image_id = image.id().to_string();
    if !plan.publish.push {
        reporter.step("not pushing (--no-push or a pull/merge request build)");
        return Ok(());
    }
    let (pushed, access) =
        publish(plan, session, docker, &image, access, summary, reporter).await?;
    if plan.publish.verify {
        let expected = super::expected_of(&image);
        verify_pushed(
            plan,
            session,
            &access.api,
            &expected,
            &pushed,
            summary,
            reporter,
        )
        .await?;
    }
    if let Some(inputs) = image.inputs() {
        remember_inputs(plan, session, &access, inputs, reporter).await;
    }
    Ok(())
}

/// Tag the published image with its input digest. Only a shortcut for later commits: a failure
/// costs them a build, so it warns and the service still succeeds.
async fn remember_inputs(
    plan: &Plan,
    session: &Session,
    access: &RegistryAccess,
    inputs: &InputDigest,
    reporter: &Reporter,
) {
    let tag = inputs.tag();
    let name = &session.name;
    let sha_tag = plan.publish.sha_tag();
    let policy = &plan.publish.retry;
    let kept = retry(policy, "input tag", reporter, || async {
        access
            .api
            .retag(sha_tag, &tag)
            .await
            .map_err(|e| api_error(name, &tag, e))
    })
    .await;
    if let Err(e) = kept {
        reporter.warn(format!(
            "could not tag the image with its inputs ({e}); later commits with the same inputs will build"
        ));
    }
}

/// The result as known before anything ran: the commit and where it goes.
fn initial_summary(plan: &Plan) -> Summary {
    Summary {
        sha: plan.identity.sha.to_string(),
        repository: plan.identity.repository.as_str().to_string(),
        ..Summary::default()
    }
}

/// A service stopped by `--fail-fast` before it finished, because `cause` failed: it reports the
/// cause's exit code, so the run's code is the failure's, not the stop's.
fn stopped(service: &Service, cause: Option<(String, Option<u8>)>) -> ServiceSummary {
    let (failed, code) = cause.unwrap_or_default();
    ServiceSummary {
        service: service.name.clone(),
        action: ServiceAction::Failed,
        inputs: None,
        reused_from: None,
        error: Some(format!(
            "stopped by --fail-fast after {failed} failed; nothing more was pushed for it"
        )),
        exit_code: code,
        image: initial_summary(&service.plan),
    }
}
