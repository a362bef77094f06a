//! Verify phase: ask the registry, not the daemon, that every pushed tag resolves to the pushed digest.

use futures_util::future::join_all;

use crate::error::{Error, FailureKind, Result};
use crate::git::History;
use crate::identity::{Platform, Published, Revision, Tag};
use crate::push::latest::{compare, Order};
use crate::push::PushedImage;
use crate::registry::{RegistryApi, RegistryApiError};
use crate::report::Reporter;
use crate::retry::{retry, RetryPolicy};

/// What was to be published: the name and commit, and the tags in push order (the SHA tag first).
pub struct Expected<'a> {
    pub name: &'a Published,
    pub tags: &'a [Tag],
}

impl Expected<'_> {
    fn reference(&self, tag: &Tag) -> String {
        self.name.reference(tag)
    }
}

/// Read the index under the SHA tag back: it is the one pushed, lists exactly `platforms`, and each
/// platform's image declares in its config the platform the index names for it.
pub async fn verify_index(
    api: &RegistryApi,
    image: &Expected<'_>,
    pushed: &PushedImage,
    platforms: &[Platform],
    policy: &RetryPolicy,
    reporter: &Reporter,
) -> Result<()> {
    let sha_tag = image
        .tags
        .first()
        .ok_or_else(|| Error::Internal("no SHA tag to verify".to_string()))?;
    let reference = image.reference(sha_tag);
    let failed = |detail: String, kind| Error::VerifyFailed {
        reference: reference.clone(),
        detail,
        kind,
    };
    let entries = retry(policy, &format!("verify {reference}"), reporter, || async {
        let manifest = api
            .manifest(sha_tag)
            .await
            .map_err(|e| failed(e.to_string(), e.kind()))?
            .ok_or_else(|| {
                failed(
                    "the index is not in the registry".into(),
                    FailureKind::NotFound,
                )
            })?;
        if manifest.digest() != pushed.digest {
            return Err(Error::DigestMismatch {
                reference: reference.clone(),
                expected: pushed.digest.clone(),
                actual: manifest.digest().to_string(),
            });
        }
        manifest
            .index_entries()
            .ok_or_else(|| failed("not an index".into(), FailureKind::Permanent))
    })
    .await?;
    let mut listed: Vec<String> = entries.iter().map(|e| e.platform.to_string()).collect();
    let mut wanted: Vec<String> = platforms.iter().map(Platform::to_string).collect();
    listed.sort();
    wanted.sort();
    let same_os_arch = entries.len() == platforms.len()
        && platforms
            .iter()
            .all(|p| entries.iter().any(|e| e.platform.runs_natively(p)));
    if !same_os_arch {
        return Err(failed(
            format!("the index lists {listed:?}, not {wanted:?}"),
            FailureKind::Permanent,
        ));
    }
    for entry in &entries {
        let child = retry(
            policy,
            &format!("verify {}", entry.digest),
            reporter,
            || async {
                let manifest = api
                    .image_manifest(&entry.digest)
                    .await
                    .map_err(|e| failed(e.to_string(), e.kind()))?
                    .ok_or_else(|| {
                        failed(
                            format!("{} is not in the repository", entry.digest),
                            FailureKind::NotFound,
                        )
                    })?;
                api.platform_and_labels(&manifest)
                    .await
                    .map_err(|e| failed(e.to_string(), e.kind()))
            },
        )
        .await?;
        if child.0 != entry.platform {
            return Err(failed(
                format!(
                    "the index names {} for {}, whose config declares {}",
                    entry.platform, entry.digest, child.0
                ),
                FailureKind::Permanent,
            ));
        }
    }
    Ok(())
}

/// Check each pushed tag with a manifest HEAD against the registry. With `latest_settled`, `latest` was
/// already checked by the push phase against concurrent runs, which may move it on (or, briefly, back
/// before they repair it); then only a newer commit behind it is accepted, and a transiently older one is
/// left to the run that wrote it.
pub async fn verify(
    api: &RegistryApi,
    image: &Expected<'_>,
    pushed: &PushedImage,
    history: &History,
    latest_settled: bool,
    policy: &RetryPolicy,
    reporter: &Reporter,
) -> Result<()> {
    let checked: Vec<&Tag> = image
        .tags
        .iter()
        .filter(|tag| {
            pushed.references.contains(&image.reference(tag))
                && !(latest_settled && **tag == Tag::latest())
        })
        .collect();
    // Independent reads: asked at the same time, judged in push order.
    let found = join_all(
        checked
            .iter()
            .map(|tag| read_back(api, image, tag, policy, reporter)),
    )
    .await;
    for (tag, found) in checked.into_iter().zip(found) {
        let reference = image.reference(tag);
        match found? {
            Some(actual) if actual == pushed.digest => {}
            Some(actual) => {
                if *tag == Tag::latest() && moved_on(api, &image.name.revision, history).await {
                    continue;
                }
                return Err(Error::DigestMismatch {
                    reference,
                    expected: pushed.digest.clone(),
                    actual,
                });
            }
            None => {
                return Err(Error::VerifyFailed {
                    reference,
                    detail: "the registry does not have this tag right after the push".to_string(),
                    kind: FailureKind::NotFound,
                })
            }
        }
    }
    Ok(())
}

/// The digest behind `tag`, read back from the registry. A registry under concurrent writes can fail a
/// read for a moment (Debian's registry answers 500 while another push relinks a shared blob): such
/// failures are retried like any other registry call.
async fn read_back(
    api: &RegistryApi,
    image: &Expected<'_>,
    tag: &Tag,
    policy: &RetryPolicy,
    reporter: &Reporter,
) -> Result<Option<String>> {
    let reference = image.reference(tag);
    retry(policy, &format!("verify {reference}"), reporter, || async {
        api.manifest_digest(tag).await.map_err(|e| Error::VerifyFailed {
            reference: reference.clone(),
            kind: e.kind(),
            detail: match e {
                RegistryApiError::Unauthorized => "the registry refused to let the pushed tag be read back; the role needs ecr:BatchGetImage on the repository (or pass --no-verify)".to_string(),
                other => other.to_string(),
            },
        })
    })
    .await
}

/// Whether `latest` now holds a commit newer than ours.
async fn moved_on(api: &RegistryApi, mine: &Revision, history: &History) -> bool {
    let Ok(Some(labels)) = api.labels(&Tag::latest()).await else {
        return false;
    };
    let Some(current) = Revision::from_labels(&labels) else {
        return false;
    };
    let mine = mine.clone();
    history
        .ask(move |history| matches!(compare(&current, &mine, history), Order::Newer(_)))
        .await
        .unwrap_or(false)
}
