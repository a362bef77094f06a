//! Multi-platform publishing: one image per platform, joined into an OCI index under the SHA tag.
//!
//! Each platform's image is published first, with its provenance labels, under its platform tag
//! `<sha>-<os>-<arch>[-<variant>]` (by one run that builds every platform, or by one `--defer-index` run
//! per native host). The index is made only from a [`PlatformImages`], which exists only when every
//! requested platform's image is in the registry and its config declares that platform: an index is
//! never published with a platform missing. The index carries the provenance labels as annotations, so
//! `latest` orders indexes as it orders images; `latest` and the extra tags are copies of the index.

use std::collections::BTreeMap;

use super::{
    api_error, latest_if_wanted, promote_published, written_by_this_run, PublishOptions,
    PushedImage, RegistryTarget,
};
use crate::error::{Error, FailureKind, Result};
use crate::identity::{Platform, Revision, Sha, Tag, COMMIT_TIME_LABEL};
use crate::registry::index::IndexEntry;
use crate::registry::StoredManifest;
use crate::report::Reporter;
use crate::retry::retry;

/// Every requested platform's image, in the registry, each declaring its platform: what an index is
/// made of. Built only by [`PlatformImages::find`], which fails unless the set is complete.
#[derive(Debug, Clone)]
pub struct PlatformImages {
    entries: Vec<IndexEntry>,
    /// The labels of the first platform's image.
    first_labels: BTreeMap<String, String>,
}

/// Where to find one platform's image: under its platform tag (what `--defer-index` runs published), or
/// by the digest a run has just written.
#[derive(Debug, Clone)]
pub enum Source {
    PlatformTag,
    Digest(String),
}

impl PlatformImages {
    /// Read each platform's image (in the order of `wanted`) and check its config declares that
    /// platform and carries the revision `sha`. Fails naming every platform whose image is missing.
    pub async fn find(
        target: &RegistryTarget<'_>,
        sha: &Sha,
        wanted: &[(Platform, Source)],
        options: &PublishOptions,
        reporter: &Reporter,
    ) -> Result<PlatformImages> {
        let reads = wanted.iter().map(|(platform, source)| {
            let tag = Tag::of_platform(sha, platform);
            read_source(target, sha, tag, source, options, reporter)
        });
        let found = futures_util::future::try_join_all(reads).await?;
        let missing: Vec<String> = wanted
            .iter()
            .zip(&found)
            .filter(|(_, found)| found.is_none())
            .map(|((platform, _), _)| {
                format!("{platform} (tag {})", Tag::of_platform(sha, platform))
            })
            .collect();
        if !missing.is_empty() {
            return Err(Error::PushFailed {
                reference: target.name.reference(&Tag::of_commit(sha)),
                detail: format!(
                    "the image of {} is missing: publish it first with `ecrbuild --platform <platform> --defer-index` on its host; nothing was published",
                    missing.join(", ")
                ),
                kind: FailureKind::NotFound,
            });
        }
        let mut entries = Vec::new();
        let mut first_labels = None;
        for ((platform, _), found) in wanted.iter().zip(found.into_iter().flatten()) {
            let (manifest, declared, labels) = found;
            if !declares(&declared, platform) {
                return Err(Error::PushFailed {
                    reference: target.name.reference(&Tag::of_commit(sha)),
                    detail: format!(
                        "the image for {platform} ({}) declares {declared} in its config; nothing was published",
                        target.name.reference(&Tag::of_platform(sha, platform))
                    ),
                    kind: FailureKind::Permanent,
                });
            }
            entries.push(manifest.as_index_entry(declared));
            first_labels.get_or_insert(labels);
        }
        Ok(PlatformImages {
            entries,
            first_labels: first_labels.unwrap_or_default(),
        })
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The commit time the images recorded, for an index run where git does not know the commit.
    fn commit_time(&self) -> Option<i64> {
        self.first_labels
            .get(COMMIT_TIME_LABEL)
            .and_then(|t| t.trim().parse().ok())
    }
}

/// Whether an image whose config declares `declared` is the image for `requested`: the same OS and
/// architecture, and the same variant when one was requested (arm64 images often declare `v8`).
fn declares(declared: &Platform, requested: &Platform) -> bool {
    declared.os == requested.os
        && declared.architecture == requested.architecture
        && (requested.variant.is_none() || declared.variant == requested.variant)
}

type Found = Option<(StoredManifest, Platform, BTreeMap<String, String>)>;

/// One platform's image, its declared platform and its labels; `None` when it is absent or not
/// labelled with this commit (a `--defer-index` run stopped before its labels were written).
async fn read_source(
    target: &RegistryTarget<'_>,
    sha: &Sha,
    tag: Tag,
    source: &Source,
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<Found> {
    let reference = target.name.reference(&tag);
    retry(
        &options.retry,
        &format!("read {reference}"),
        reporter,
        || async {
            let manifest = match source {
                Source::PlatformTag => target.api.manifest(&tag).await,
                Source::Digest(digest) => target.api.image_manifest(digest).await,
            }
            .map_err(|e| api_error(target.name, &tag, e))?;
            let Some(manifest) = manifest.filter(|m| m.index_entries().is_none()) else {
                return Ok(None);
            };
            let (platform, labels) = target
                .api
                .platform_and_labels(&manifest)
                .await
                .map_err(|e| api_error(target.name, &tag, e))?;
            let labelled = Revision::from_labels(&labels).is_some_and(|r| r.sha == sha.as_str());
            Ok(labelled.then_some((manifest, platform, labels)))
        },
    )
    .await
}

/// Publish the index over `images` under the SHA tag (the first of `tags`) with `provenance` as its
/// annotations, then `latest` (only forward) and the other tags as copies of it.
pub async fn publish_index(
    target: &RegistryTarget<'_>,
    images: &PlatformImages,
    provenance: &BTreeMap<String, String>,
    tags: &[Tag],
    options: &PublishOptions,
    reporter: &Reporter,
) -> Result<PushedImage> {
    let (sha_tag, follow_up) = tags
        .split_first()
        .ok_or_else(|| Error::Internal("no tags to publish the index under".to_string()))?;
    let mut annotations = provenance.clone();
    if !annotations.contains_key(COMMIT_TIME_LABEL) {
        if let Some(time) = images.commit_time() {
            annotations.insert(COMMIT_TIME_LABEL.to_string(), time.to_string());
        }
    }
    let sha_reference = target.name.reference(sha_tag);
    let step = format!("index {sha_reference}");
    // The SHA tag is written once: a retry first looks whether an earlier attempt's write landed.
    let mut attempts = 0_u32;
    let annotations = &annotations;
    let (written, latest_before) = tokio::join!(
        retry(&options.retry, &step, reporter, || {
            attempts += 1;
            let retrying = attempts > 1;
            async move {
                if retrying {
                    if let Some(written) = written_by_this_run(target, sha_tag, annotations).await {
                        return Ok(written);
                    }
                }
                target
                    .api
                    .put_index(images.entries(), annotations, sha_tag)
                    .await
                    .map_err(|e| api_error(target.name, sha_tag, e))
            }
        }),
        latest_if_wanted(target, follow_up, options, reporter)
    );
    let index = written?;
    let latest_before = latest_before?;
    let platforms: Vec<String> = images
        .entries()
        .iter()
        .map(|e| e.platform.to_string())
        .collect();
    reporter.step(format!(
        "pushed {sha_reference} ({}): an index of {}",
        index.digest(),
        platforms.join(", ")
    ));
    let (references, latest) =
        promote_published(target, &index, follow_up, latest_before, options, reporter).await?;
    Ok(PushedImage {
        digest: index.digest().to_string(),
        references: std::iter::once(sha_reference).chain(references).collect(),
        latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_platform_matches_its_config() {
        let p = |v: &str| Platform::parse("p", v).unwrap();
        assert!(declares(&p("linux/arm64/v8"), &p("linux/arm64")));
        assert!(declares(&p("linux/amd64"), &p("linux/amd64")));
        assert!(!declares(&p("linux/amd64"), &p("linux/arm64")));
        assert!(!declares(&p("linux/arm/v6"), &p("linux/arm/v7")));
        assert!(!declares(&p("windows/amd64"), &p("linux/amd64")));
    }
}
