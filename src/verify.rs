//! Verify phase: ask the registry, not the daemon, that every pushed tag resolves to the pushed digest.

use futures_util::future::join_all;

use crate::build::BuiltImage;
use crate::error::{Error, Result};
use crate::git::History;
use crate::identity::{Revision, Tag};
use crate::push::latest::{compare, Order};
use crate::push::PushedImage;
use crate::registry::{RegistryApi, RegistryApiError};
use crate::report::Reporter;
use crate::retry::{retry, RetryPolicy};

/// Check each pushed tag with a manifest HEAD against the registry. With `latest_settled`, `latest` was
/// already checked by the push phase against concurrent runs, which may move it on (or, briefly, back
/// before they repair it); then only a newer commit behind it is accepted, and a transiently older one is
/// left to the run that wrote it.
pub async fn verify(
    api: &RegistryApi,
    image: &BuiltImage,
    pushed: &PushedImage,
    history: &History,
    latest_settled: bool,
    policy: &RetryPolicy,
    reporter: &Reporter,
) -> Result<()> {
    let checked: Vec<&Tag> = image
        .tags()
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
                if *tag == Tag::latest() && moved_on(api, image.revision(), history).await {
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
                    kind: crate::error::FailureKind::NotFound,
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
    image: &BuiltImage,
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
