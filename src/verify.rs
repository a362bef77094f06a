//! Verify phase: ask the registry, not the daemon, that every pushed tag resolves to the pushed digest.

use crate::build::BuiltImage;
use crate::error::{Error, Result};
use crate::push::PushedImage;
use crate::registry::{RegistryApi, RegistryApiError};

/// Check each pushed tag with a manifest HEAD against the registry.
pub async fn verify(api: &RegistryApi, image: &BuiltImage, pushed: &PushedImage) -> Result<()> {
    for tag in image.tags() {
        let reference = image.reference(tag);
        if !pushed.references.contains(&reference) {
            continue;
        }
        match api.manifest_digest(tag).await {
            Ok(Some(actual)) if actual == pushed.digest => {}
            Ok(Some(actual)) => {
                return Err(Error::DigestMismatch {
                    reference,
                    expected: pushed.digest.clone(),
                    actual,
                })
            }
            Ok(None) => {
                return Err(Error::VerifyFailed {
                    reference,
                    detail: "the registry does not have this tag right after the push".to_string(),
                })
            }
            Err(RegistryApiError::Unauthorized) => {
                return Err(Error::VerifyFailed {
                    reference,
                    detail: "the registry refused to let the pushed tag be read back; the role needs ecr:BatchGetImage on the repository (or pass --no-verify)".to_string(),
                })
            }
            Err(e) => {
                return Err(Error::VerifyFailed {
                    reference,
                    detail: e.to_string(),
                })
            }
        }
    }
    Ok(())
}
