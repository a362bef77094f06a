//! Push phase: the SHA tag first; `latest` and the extra tags only after the SHA tag is in the registry.

use bollard::query_parameters::PushImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use crate::auth::Credentials;
use crate::build::BuiltImage;
use crate::error::{Error, Result};
use crate::plan::Tag;
use crate::report::Reporter;

/// What reached the registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub digest: String,
    /// References in the order they were pushed.
    pub references: Vec<String>,
}

/// Push every tag of `image`. Only a [`BuiltImage`] can be pushed, so only a successful build.
pub async fn push(
    docker: &Docker,
    image: &BuiltImage,
    credentials: &Credentials,
    reporter: &Reporter,
) -> Result<PushedImage> {
    let (sha_tag, follow_up) = image
        .tags()
        .split_first()
        .ok_or_else(|| Error::Internal("no tags to push".to_string()))?;

    let digest = push_tag(docker, image, sha_tag, credentials).await?;
    let mut pushed = PushedImage {
        digest: digest.clone(),
        references: vec![image.reference(sha_tag)],
    };
    reporter.step(format!("pushed {} ({digest})", image.reference(sha_tag)));

    for tag in follow_up {
        let tag_digest = push_tag(docker, image, tag, credentials).await?;
        if tag_digest != digest {
            return Err(Error::DigestMismatch {
                reference: image.reference(tag),
                expected: digest,
                actual: tag_digest,
            });
        }
        pushed.references.push(image.reference(tag));
        reporter.step(format!("pushed {}", image.reference(tag)));
    }
    Ok(pushed)
}

/// Push one tag and return the digest the daemon reports for it.
async fn push_tag(
    docker: &Docker,
    image: &BuiltImage,
    tag: &Tag,
    credentials: &Credentials,
) -> Result<String> {
    let reference = image.reference(tag);
    // Always name the tag: without it the daemon pushes every local tag of the repository.
    let options = PushImageOptionsBuilder::new().tag(tag.as_str()).build();
    let mut stream = docker.push_image(
        &image.name(),
        Some(options),
        credentials.for_daemon(image.registry()),
    );
    let mut digest = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(classify_push_error(&reference, image, &detail));
                }
                if let Some(status) = info.status {
                    if let Some(found) = digest_from_status(&status) {
                        digest = Some(found);
                    } else if status.starts_with("Pushed") || status.contains("already exists") {
                        tracing::debug!(%reference, %status);
                    }
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(classify_push_error(&reference, image, &error));
            }
            Err(e) => {
                return Err(Error::PushFailed {
                    reference,
                    detail: e.to_string(),
                })
            }
        }
    }
    digest.ok_or_else(|| Error::PushFailed {
        reference,
        detail: "the daemon finished without reporting a digest".to_string(),
    })
}

/// The daemon reports the digest only in a status line: `<tag>: digest: sha256:<hex> size: <n>`.
fn digest_from_status(status: &str) -> Option<String> {
    let rest = status.split("digest: ").nth(1)?;
    let digest = rest.split_whitespace().next()?;
    let (algorithm, hex) = digest.split_once(':')?;
    (algorithm == "sha256" && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| digest.to_string())
}

fn classify_push_error(reference: &str, image: &BuiltImage, message: &str) -> Error {
    let lower = message.to_ascii_lowercase();
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("denied: your authorization token has expired")
    {
        Error::AuthFailed {
            target: image.registry().to_string(),
            detail: format!("the registry refused the credentials ({})", message.trim()),
        }
    } else if lower.contains("name unknown")
        || lower.contains("does not exist in the registry")
        || lower.contains("repository with name") && lower.contains("does not exist")
    {
        Error::RepositoryNotFound {
            repository: image.repository().as_str().to_string(),
            registry: image.registry().to_string(),
        }
    } else {
        Error::PushFailed {
            reference: reference.to_string(),
            detail: message.trim().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_read_from_the_status_line() {
        let hex = "ab".repeat(32);
        let status = format!("latest: digest: sha256:{hex} size: 528");
        assert_eq!(digest_from_status(&status), Some(format!("sha256:{hex}")));
        assert_eq!(digest_from_status("Pushed"), None);
        assert_eq!(digest_from_status("x: digest: sha256:short size: 1"), None);
    }
}
