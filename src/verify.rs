//! Verify phase: ask the registry, not the daemon, that every pushed tag resolves to the pushed digest.

use futures_util::future::join_all;

use crate::build::BuiltImage;
use crate::error::{Error, Result};
use crate::git::History;
use crate::plan::Tag;
use crate::push::latest::{compare, Order, Revision};
use crate::push::PushedImage;
use crate::registry::{RegistryApi, RegistryApiError};

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
    let found = join_all(checked.iter().map(|tag| api.manifest_digest(tag))).await;
    for (tag, found) in checked.into_iter().zip(found) {
        let reference = image.reference(tag);
        let failed = |detail: String| Error::VerifyFailed {
            reference: reference.clone(),
            detail,
        };
        match found {
            Ok(Some(actual)) if actual == pushed.digest => {}
            Ok(Some(actual)) => {
                if *tag == Tag::latest() && moved_on(api, image.revision(), history).await {
                    continue;
                }
                return Err(Error::DigestMismatch {
                    reference,
                    expected: pushed.digest.clone(),
                    actual,
                });
            }
            Ok(None) => return Err(failed("the registry does not have this tag right after the push".to_string())),
            Err(RegistryApiError::Unauthorized) => {
                return Err(failed(
                    "the registry refused to let the pushed tag be read back; the role needs ecr:BatchGetImage on the repository (or pass --no-verify)".to_string(),
                ))
            }
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    Ok(())
}

/// Whether `latest` now holds a commit newer than ours.
async fn moved_on(api: &RegistryApi, mine: &Revision, history: &History) -> bool {
    match api.labels(&Tag::latest()).await {
        Ok(Some(labels)) => Revision::from_labels(&labels)
            .is_some_and(|current| matches!(compare(&current, mine, history), Order::Newer(_))),
        _ => false,
    }
}
