//! Registry-side tagging: `latest` and the extra tags are manifest copies inside the registry, never
//! daemon pushes. `latest` moves only forward, and a run that wrote it checks afterwards that no
//! concurrent run has moved it back (see [`settle_latest`]).

use std::collections::{BTreeMap, HashSet};

use futures_util::StreamExt;

use super::latest::{compare, newest, KnownAncestry, Order};
use super::record::{CandidateRecord, RECORD_MEDIA_TYPE, RECORD_TAG};
use super::{api_error, LatestOutcome, PublishOptions, RegistryTarget};
use crate::cli::LatestMode;
use crate::error::Result;
use crate::identity::{is_sha_tag, Revision, Tag};
use crate::registry::StoredManifest;
use crate::report::Reporter;
use crate::retry::retry;

/// A tag's manifest digest and image labels as read from the registry; `None` when the tag is absent.
type TagRead = Option<(String, BTreeMap<String, String>)>;

/// Where `latest` stood when it was read, and how this build's commit relates to it.
#[derive(Debug, Clone)]
pub struct LatestSeen {
    /// `None`: no `latest` tag yet.
    digest: Option<String>,
    /// `None`: absent, or an image without a revision label.
    current: Option<Revision>,
    order: Order,
}

/// For an image already in the registry: point `latest` (as the options allow) and `extra` tags at it
/// through the registry API, without the daemon. `latest_seen` is where `latest` stood if the caller
/// has looked already. Returns the references that now point at it.
pub async fn promote_published(
    target: &RegistryTarget<'_>,
    manifest: &StoredManifest,
    extra: &[Tag],
    mut latest_seen: Option<LatestSeen>,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<(Vec<String>, LatestOutcome)> {
    let published = target.name;
    let mut references = Vec::new();
    let mut outcome = LatestOutcome::NotRequested;
    for tag in extra {
        if *tag == Tag::latest() {
            if options.latest == LatestMode::Never {
                continue;
            }
            let seen = match latest_seen.take() {
                Some(seen) => seen,
                None => look_at_latest(target, options, reporter).await?,
            };
            outcome = move_latest(target, manifest, seen, options, reporter).await?;
            if outcome == LatestOutcome::Moved {
                references.push(published.reference(tag));
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
        if current.as_deref() != Some(manifest.digest()) {
            copy_to(target, manifest, tag, options, reporter).await?;
        }
        references.push(published.reference(tag));
    }
    Ok((references, outcome))
}

/// Point `latest` at `manifest` when this commit is not older than the one it holds.
async fn move_latest(
    target: &RegistryTarget<'_>,
    manifest: &StoredManifest,
    seen: LatestSeen,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<LatestOutcome> {
    let LatestSeen {
        digest,
        current,
        order,
    } = seen;
    report_order(&order, current.as_ref(), &target.name.revision, reporter);
    let kept = |reason: &str| LatestOutcome::Kept {
        current: current.clone().map(|c| c.sha).unwrap_or_default(),
        reason: reason.to_string(),
    };
    Ok(match order {
        Order::Newer(_) | Order::Same if digest.as_deref() != Some(manifest.digest()) => {
            copy_to(target, manifest, &Tag::latest(), options, reporter).await?;
            if options.latest == LatestMode::Auto {
                settle_latest(target, options, reporter).await?
            } else {
                LatestOutcome::Moved
            }
        }
        Order::Newer(_) | Order::Same => LatestOutcome::Moved,
        Order::Older(reason) => kept(reason),
        Order::Unknown => kept("the commits cannot be ordered"),
    })
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
    target: &RegistryTarget<'_>,
    manifest: &StoredManifest,
    to: &Tag,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<()> {
    let reference = target.name.reference(to);
    retry(
        &options.retry,
        &format!("tag {reference}"),
        reporter,
        || async {
            target
                .api
                .put_copy(manifest, to)
                .await
                .map_err(|e| api_error(target.name, to, e))
        },
    )
    .await?;
    reporter.step(format!("tagged {reference} in the registry"));
    Ok(())
}

/// Read where `latest` stands and order this build's commit against it.
pub async fn look_at_latest(
    target: &RegistryTarget<'_>,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<LatestSeen> {
    let (digest, current) = match read_tag(target, &Tag::latest(), options, reporter).await? {
        Some((digest, labels)) => (Some(digest), Revision::from_labels(&labels)),
        None => (None, None),
    };
    let order = match (&current, options.latest) {
        (Some(current), LatestMode::Auto) => {
            let (mine, current) = (target.name.revision.clone(), current.clone());
            target
                .history
                .ask(move |history| compare(&mine, &current, history))
                .await?
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
    target: &RegistryTarget<'_>,
    tag: &Tag,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<TagRead> {
    let reference = target.name.reference(tag);
    retry(
        &options.retry,
        &format!("read {reference}"),
        reporter,
        || async {
            target
                .api
                .digest_and_labels(tag)
                .await
                .map_err(|e| api_error(target.name, tag, e))
        },
    )
    .await
}

/// Registry reads in flight at once when reading the labels of many SHA tags.
const LABEL_READS_IN_FLIGHT: usize = 8;

/// Rounds of the concurrent-run check: each round that corrects `latest` looks once more.
const SETTLE_ROUNDS: usize = 3;

/// Two runs can read `latest` at the same time and the older can write last. After writing, look at the
/// SHA tags in the registry: if one is a newer commit than what `latest` holds, point `latest` at it.
/// Every run that writes `latest` does this after its write, so the last writer always repairs.
///
/// Requests: one tag listing per round, two to read the candidate record and three to write it, and
/// two for each SHA tag on our line that the record does not name yet (in practice the runs since the
/// last one); not one per tag in the repository.
async fn settle_latest(
    target: &RegistryTarget<'_>,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<LatestOutcome> {
    let mine = target.name.revision.clone();
    let mut known = load_record(target).await;
    known.learn(&mine.sha, Some(&mine));
    let mut listed = HashSet::new();
    let mut outcome = LatestOutcome::Moved;
    for _round in 0..SETTLE_ROUNDS {
        let mut candidates = vec![mine.clone()];
        let on_our_line = candidates_on_our_line(target, &mut known, options, reporter).await?;
        listed = on_our_line.listed;
        candidates.extend(on_our_line.candidates);
        let known_to_git = on_our_line.known_to_git;
        let newest = target
            .history
            .ask(move |history| {
                newest(&candidates, &KnownAncestry::new(history, known_to_git)).cloned()
            })
            .await?;
        // We are the newest and have just written `latest`: a run that overwrote it since is older than
        // us and repairs it itself, in its own check.
        let Some(newest) = newest.filter(|n| n.sha != mine.sha) else {
            break;
        };
        if !repair_latest(target, &newest, options, reporter).await? {
            break;
        }
        outcome = LatestOutcome::Corrected { to: newest.sha };
    }
    save_record(target, &mut known, &listed, reporter).await;
    Ok(outcome)
}

/// The candidate record as stored; empty when it is absent or cannot be read (the tags are read then).
async fn load_record(target: &RegistryTarget<'_>) -> CandidateRecord {
    let Ok(tag) = Tag::parse("record tag", RECORD_TAG) else {
        return CandidateRecord::default();
    };
    match target.api.artifact(&tag).await {
        Ok(Some(bytes)) => CandidateRecord::parse(&bytes),
        Ok(None) => CandidateRecord::default(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the candidate record; reading the tags instead");
            CandidateRecord::default()
        }
    }
}

/// Store what this run learned, when the record lacks it. Best effort: a record that cannot be written
/// (an immutable tag, a lost race) only costs a later run the reads this one made.
async fn save_record(
    target: &RegistryTarget<'_>,
    known: &mut CandidateRecord,
    listed: &HashSet<String>,
    reporter: &Reporter,
) {
    let bytes = known.to_bytes(listed);
    if !known.changed() || listed.is_empty() {
        return;
    }
    let Ok(tag) = Tag::parse("record tag", RECORD_TAG) else {
        return;
    };
    if let Err(e) = target
        .api
        .put_artifact(&tag, RECORD_MEDIA_TYPE, bytes)
        .await
    {
        reporter.step(format!(
            "the candidate record {} was not updated ({e}); the next run reads the tags it would have named",
            target.name.reference(&tag)
        ));
    }
}

/// The SHA tags that may replace ours as `latest`, every tag the registry listed, and which of the
/// candidates' commits (ours included) git has.
struct OnOurLine {
    candidates: Vec<Revision>,
    listed: HashSet<String>,
    known_to_git: HashSet<String>,
}

/// The images of SHA tags that may replace ours as `latest`: commits on our line of history (git rules
/// out the others without the network) whose run was to move `latest`. A descendant, or a commit git
/// does not know (a shallow clone, a commit pushed after our checkout), is looked up in the candidate
/// record, else read from the registry (a few at a time) and added to it. A newer branch build never
/// counts.
async fn candidates_on_our_line(
    target: &RegistryTarget<'_>,
    known: &mut CandidateRecord,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<OnOurLine> {
    let latest = Tag::latest();
    let mine = target.name.revision.sha.clone();
    let tags = retry(&options.retry, "list tags", reporter, || async {
        target
            .api
            .tags()
            .await
            .map_err(|e| api_error(target.name, &latest, e))
    })
    .await?;
    let others: Vec<String> = tags
        .iter()
        .filter(|t| is_sha_tag(t) && **t != mine)
        .cloned()
        .collect();
    let listed: HashSet<String> = tags.into_iter().collect();
    let asked = others.clone();
    let ancestor = mine.clone();
    let descend = target
        .history
        .ask(move |history| {
            let refs: Vec<&str> = asked.iter().map(String::as_str).collect();
            history.descend_from(&ancestor, &refs)
        })
        .await?;
    let mut known_to_git = HashSet::new();
    if descend.iter().any(Option::is_some) {
        // `descend_from` answers only when git has our own commit.
        known_to_git.insert(mine);
    }
    let mut on_our_line = Vec::new();
    for (tag, descends) in others.into_iter().zip(descend) {
        match descends {
            Some(false) => {}
            Some(true) => {
                known_to_git.insert(tag.clone());
                on_our_line.push(tag);
            }
            None => on_our_line.push(tag),
        }
    }
    learn_unknown(target, known, &on_our_line, options, reporter).await?;
    let candidates = on_our_line
        .iter()
        .filter_map(|tag| known.get(tag).flatten())
        .collect();
    Ok(OnOurLine {
        candidates,
        listed,
        known_to_git,
    })
}

/// Read the labels of the SHA tags `known` does not name, a few at a time, and learn them.
async fn learn_unknown(
    target: &RegistryTarget<'_>,
    known: &mut CandidateRecord,
    on_our_line: &[String],
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<()> {
    let mut unread = Vec::new();
    for tag in on_our_line {
        if known.get(tag).is_none() {
            unread.push(Tag::parse("registry tag", tag)?);
        }
    }
    let read: Vec<(Tag, Result<TagRead>)> = futures_util::stream::iter(unread)
        .map(|tag| async move {
            let found = read_tag(target, &tag, options, reporter).await;
            (tag, found)
        })
        .buffered(LABEL_READS_IN_FLIGHT)
        .collect()
        .await;
    for (tag, found) in read {
        let Some((_, labels)) = found? else { continue };
        // A SHA tag without a revision label was written by another tool, or is an older ecrbuild's
        // mid-publish (its daemon pushed the SHA tag itself, before the labelled config): its labels
        // may change, so it is not learned and is read again next round.
        if Revision::from_labels(&labels).is_some() {
            known.learn(
                tag.as_str(),
                Revision::candidate_from_labels(&labels).as_ref(),
            );
        }
    }
    Ok(())
}

/// Put `latest` on `newest` when it holds an older commit; whether it was moved.
async fn repair_latest(
    target: &RegistryTarget<'_>,
    newest: &Revision,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<bool> {
    let latest = Tag::latest();
    let Some(current) = read_tag(target, &latest, options, reporter)
        .await?
        .and_then(|(_, labels)| Revision::from_labels(&labels))
    else {
        return Ok(false);
    };
    if current.sha == newest.sha {
        return Ok(false);
    }
    let (candidate, held) = (newest.clone(), current.clone());
    let order = target
        .history
        .ask(move |history| compare(&candidate, &held, history))
        .await?;
    if !matches!(order, Order::Newer(_)) {
        return Ok(false);
    }
    let newest_tag = Tag::parse("registry tag", &newest.sha)?;
    retry(&options.retry, "correct latest", reporter, || async {
        target
            .api
            .retag(&newest_tag, &latest)
            .await
            .map_err(|e| api_error(target.name, &latest, e))
    })
    .await?;
    reporter.warn(format!(
        "latest had been moved back to {} by a concurrent run; put it on {} again",
        short(&current.sha),
        short(&newest.sha)
    ));
    Ok(true)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
