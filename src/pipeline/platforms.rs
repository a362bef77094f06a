//! The multi-platform runs: several `--platform`s built at once and joined into an index, and
//! `ecrbuild index`, which joins what `--defer-index` runs on native hosts published.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::{
    choose_context, finish, fresh_access, preflight, republish, scan_context, still_valid, Checked,
    RegistryAccess, Session,
};
use crate::build::{self, emulation, BuildSetup, BuiltPlatforms};
use crate::context::BuildContext;
use crate::daemon;
use crate::error::{Error, Result};
use crate::identity::{Platform, Revision, Tag, REVISION_LABEL};
use crate::plan::Plan;
use crate::push::index::{publish_index, PlatformImages, Source};
use crate::push::{self, api_error, DaemonPush, PushedImage, RegistryTarget};
use crate::report::{secs, utc_timestamp, Reporter, Summary, TimeLayout};
use crate::retry::retry;
use crate::verify;

/// Build every platform's image, publish each under its platform tag, then the index under the SHA tag
/// and `latest` and the extra tags as copies of it. A failed platform fails the run before any index.
pub(super) async fn run(plan: Plan, reporter: &Reporter) -> Result<Summary> {
    let started = Instant::now();
    let docker = daemon::connect(plan.build.daemon_timeout).await?;
    check_emulation(&docker, &plan, reporter).await?;
    let contexts = contexts(&docker, &plan, reporter).await?;
    let session = Session::open(&plan).await?;
    let mut summary = session.summary(&plan, secs(started.elapsed()));

    let access = match preflight_if_wanted(&plan, &session, reporter).await? {
        Some(Checked::Published { manifest, api }) => {
            republish(&plan, &session, &manifest, &api, &mut summary, reporter).await?;
            return finished(&plan, &session, summary, started, reporter).await;
        }
        Some(Checked::Ready(access)) => Some(access),
        None => None,
    };
    let phase = Instant::now();
    let built = build_all(&plan, &session, &docker, contexts, reporter).await?;
    summary.timings.build_secs = secs(phase.elapsed());
    summary.image_id = built
        .images()
        .iter()
        .map(|i| i.id())
        .collect::<Vec<_>>()
        .join(",");
    if !plan.publish.push {
        reporter.step("not pushing (--no-push or a pull/merge request build)");
        summary.timings.total_secs = secs(started.elapsed());
        return Ok(summary);
    }
    let access = match access {
        Some(access) if still_valid(access.expires_at) => access,
        _ => fresh_access(&plan, &session).await?,
    };
    let phase = Instant::now();
    let pushed = publish_platforms(&plan, &session, &docker, &access, &built, reporter).await?;
    summary.timings.push_secs = secs(phase.elapsed());
    record(&mut summary, &pushed);
    verify_index(&plan, &session, &access, &pushed, &mut summary, reporter).await?;
    finished(&plan, &session, summary, started, reporter).await
}

/// `ecrbuild index`: join the platform images `--defer-index` runs published into the index under the
/// SHA tag, then move `latest` and the extra tags. Only the registry API is used: no Docker daemon.
/// A missing platform fails the run (exit 7) before anything is written.
pub async fn run_index(plan: Plan, reporter: &Reporter) -> Result<Summary> {
    let started = Instant::now();
    let session = Session::open(&plan).await?;
    let mut summary = session.summary(&plan, 0.0);
    let access = fresh_access(&plan, &session).await?;
    if let Some(manifest) = published_index(&plan, &session, &access, reporter).await? {
        republish(
            &plan,
            &session,
            &manifest,
            &access.api,
            &mut summary,
            reporter,
        )
        .await?;
        return finished(&plan, &session, summary, started, reporter).await;
    }
    let target = RegistryTarget {
        api: &access.api,
        name: &session.name,
        history: &session.history,
    };
    let wanted: Vec<(Platform, Source)> = plan
        .platforms
        .iter()
        .map(|p| (p.clone(), Source::PlatformTag))
        .collect();
    let phase = Instant::now();
    let sha = &plan.identity.sha;
    let images = PlatformImages::find(&target, sha, &wanted, &plan.publish, reporter).await?;
    let provenance = build::provenance_labels(
        &session.name.revision,
        plan.publish.latest_candidate(),
        &BTreeMap::new(),
        &utc_timestamp(SystemTime::now(), TimeLayout::Rfc3339),
    );
    let tags = &plan.publish.tags;
    let pushed =
        publish_index(&target, &images, &provenance, tags, &plan.publish, reporter).await?;
    summary.timings.push_secs = secs(phase.elapsed());
    record(&mut summary, &pushed);
    verify_index(&plan, &session, &access, &pushed, &mut summary, reporter).await?;
    finished(&plan, &session, summary, started, reporter).await
}

/// Fail before anything is built when a stage runs `RUN` on a platform this host can only emulate and
/// no emulator is registered (see [`emulation`]).
pub(super) async fn check_emulation(
    docker: &bollard::Docker,
    plan: &Plan,
    reporter: &Reporter,
) -> Result<()> {
    if plan.platforms.is_empty() {
        return Ok(());
    }
    if daemon::is_remote(&daemon::daemon_host()) {
        reporter.step("the daemon is remote: its emulators cannot be checked from here");
        return Ok(());
    }
    let Ok(dockerfile) = std::fs::read_to_string(&plan.build.dockerfile) else {
        return Ok(()); // the context scan reports an unreadable Dockerfile
    };
    let version = docker
        .version()
        .await
        .map_err(|e| Error::DaemonUnreachable {
            host: daemon::daemon_host(),
            detail: format!("cannot read the daemon's platform: {e}"),
        })?;
    let host = Platform {
        os: version.os.unwrap_or_else(|| "linux".to_string()),
        architecture: version.arch.unwrap_or_else(|| "amd64".to_string()),
        variant: None,
    };
    let binfmt = std::env::var_os("ECRBUILD_BINFMT_MISC_DIR")
        .map_or_else(|| PathBuf::from(emulation::BINFMT_MISC_DIR), PathBuf::from);
    let target = plan.build.target.as_deref();
    emulation::check(&dockerfile, target, &host, &plan.platforms, &binfmt)
}

/// One context per platform: each build streams its own. The first scan is reported; the others
/// select the same files.
async fn contexts(
    docker: &bollard::Docker,
    plan: &Plan,
    reporter: &Reporter,
) -> Result<Vec<BuildContext>> {
    let quiet = Reporter::new(true);
    let mut contexts = Vec::new();
    for i in 0..plan.platforms.len() {
        let shown = if i == 0 { reporter } else { &quiet };
        let context = scan_context(&plan.build, shown).await?;
        contexts.push(choose_context(docker, &plan.build, context, shown).await?);
    }
    Ok(contexts)
}

async fn preflight_if_wanted(
    plan: &Plan,
    session: &Session,
    reporter: &Reporter,
) -> Result<Option<Checked>> {
    if !(plan.publish.push && plan.publish.preflight) {
        return Ok(None);
    }
    preflight(plan, session, reporter).await.map(Some)
}

/// Build every platform at once; each image is tagged locally with its platform tag.
async fn build_all(
    plan: &Plan,
    session: &Session,
    docker: &bollard::Docker,
    contexts: Vec<BuildContext>,
    reporter: &Reporter,
) -> Result<BuiltPlatforms> {
    let names: Vec<String> = plan.platforms.iter().map(Platform::to_string).collect();
    reporter.step(format!(
        "building {} for {}",
        session.name.reference(plan.publish.sha_tag()),
        names.join(", ")
    ));
    let gzip = plan
        .build
        .compress
        .unwrap_or_else(|| daemon::is_remote(&daemon::daemon_host()));
    let setups = plan
        .platforms
        .iter()
        .map(|platform| BuildSetup {
            name: session.name.clone(),
            tags: vec![Tag::of_platform(&plan.identity.sha, platform)],
            latest_candidate: plan.publish.latest_candidate(),
            cache_from: Vec::new(),
            gzip,
            platform: Some(platform.clone()),
            inputs: None,
        })
        .collect();
    let built = build::build_platforms(docker, &plan.build, setups, contexts, reporter).await?;
    for image in built.images() {
        reporter.step(format!(
            "built {} as {}",
            image.id(),
            image.references().join(", ")
        ));
    }
    Ok(built)
}

/// Push each platform's image under its platform tag (labelled), then the index over them.
async fn publish_platforms(
    plan: &Plan,
    session: &Session,
    docker: &bollard::Docker,
    access: &RegistryAccess,
    built: &BuiltPlatforms,
    reporter: &Reporter,
) -> Result<PushedImage> {
    let daemon = DaemonPush {
        docker,
        credentials: &access.credentials,
    };
    let target = RegistryTarget {
        api: &access.api,
        name: &session.name,
        history: &session.history,
    };
    let pushes = built
        .images()
        .iter()
        .map(|image| push::push(&daemon, &target, image, &plan.publish, reporter));
    let children = futures_util::future::try_join_all(pushes).await?;
    let wanted: Vec<(Platform, Source)> = plan
        .platforms
        .iter()
        .cloned()
        .zip(children.into_iter().map(|c| Source::Digest(c.digest)))
        .collect();
    let sha = &plan.identity.sha;
    let images = PlatformImages::find(&target, sha, &wanted, &plan.publish, reporter).await?;
    let provenance = built.images()[0].provenance();
    let tags = &plan.publish.tags;
    publish_index(&target, &images, provenance, tags, &plan.publish, reporter).await
}

/// The index under the SHA tag when this commit's is already published (a re-run): then it is only
/// promoted, never written again (SHA tags are immutable in ECR).
async fn published_index(
    plan: &Plan,
    session: &Session,
    access: &RegistryAccess,
    reporter: &Reporter,
) -> Result<Option<crate::registry::StoredManifest>> {
    let sha_tag = plan.publish.sha_tag();
    let sha = plan.identity.sha.as_str();
    retry(
        &plan.publish.retry,
        "read the SHA tag",
        reporter,
        || async {
            let Some(manifest) = access
                .api
                .manifest(sha_tag)
                .await
                .map_err(|e| api_error(&session.name, sha_tag, e))?
            else {
                return Ok(None);
            };
            let labels = access
                .api
                .labels_of(&manifest)
                .await
                .map_err(|e| api_error(&session.name, sha_tag, e))?;
            let ours = labels.contains_key(REVISION_LABEL)
                && Revision::from_labels(&labels).is_some_and(|r| r.sha == sha);
            Ok(ours.then_some(manifest))
        },
    )
    .await
}

fn record(summary: &mut Summary, pushed: &PushedImage) {
    summary.digest = Some(pushed.digest.clone());
    summary.pushed_references = pushed.references.clone();
    summary.pushed = true;
    summary.latest = Some(pushed.latest.describe());
}

/// Read the index back: its digest, its platforms, each image's config; then the other tags.
async fn verify_index(
    plan: &Plan,
    session: &Session,
    access: &RegistryAccess,
    pushed: &PushedImage,
    summary: &mut Summary,
    reporter: &Reporter,
) -> Result<()> {
    if !plan.publish.verify {
        return Ok(());
    }
    let phase = Instant::now();
    let expected = verify::Expected {
        name: &session.name,
        tags: &plan.publish.tags,
    };
    let policy = &plan.publish.retry;
    verify::verify_index(
        &access.api,
        &expected,
        pushed,
        &plan.platforms,
        policy,
        reporter,
    )
    .await?;
    let settled = plan.publish.latest == crate::cli::LatestMode::Auto;
    let history = &session.history;
    verify::verify(
        &access.api,
        &expected,
        pushed,
        history,
        settled,
        policy,
        reporter,
    )
    .await?;
    summary.timings.verify_secs = secs(phase.elapsed());
    reporter.step(format!(
        "verified: {} tag(s) resolve to {}, an index whose images declare {}",
        pushed.references.len(),
        pushed.digest,
        plan.platforms
            .iter()
            .map(Platform::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

async fn finished(
    plan: &Plan,
    session: &Session,
    mut summary: Summary,
    started: Instant,
    reporter: &Reporter,
) -> Result<Summary> {
    finish(plan, session, &mut summary, reporter).await?;
    summary.timings.total_secs = secs(started.elapsed());
    Ok(summary)
}
