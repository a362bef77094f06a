//! The input digest of a build: one SHA-256 over everything the daemon reads for it. The context as
//! sent (entry headers without file times, and contents, after `.dockerignore` and the COPY/ADD
//! selection), the Dockerfile, the build arguments, the labels given to the daemon, the target, the
//! platform, and the identity of every image the Dockerfile builds on. Two builds with the same digest
//! read the same things, so an image published for one can stand for the other: the registry's
//! `ecrbuild-inputs-<hex>` tag finds it in one request.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OnceCell};

use crate::auth::{Credentials, SharedCredentials};
use crate::daemon;
use crate::identity::{Platform, Registry, Repository, Tag};
use crate::registry::RegistryApi;

/// The tag prefix under which the first image built from an input digest is kept.
pub const INPUTS_TAG_PREFIX: &str = "ecrbuild-inputs-";

/// How long one base image may take to identify in its registry before the daemon is asked instead.
const REGISTRY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);

/// `sha256:<hex>` over a build's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDigest(String);

impl InputDigest {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag that names the image first published with these inputs.
    pub fn tag(&self) -> Tag {
        let hex = self.0.trim_start_matches("sha256:");
        Tag::parse("input digest", &format!("{INPUTS_TAG_PREFIX}{hex}"))
            .unwrap_or_else(|_| unreachable!("64 hex digits and a fixed prefix make a valid tag"))
    }
}

impl std::fmt::Display for InputDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An input digest and the context digest it was made from: the build labels the image with it only
/// if the context it sent digests the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecidedInputs {
    pub digest: InputDigest,
    pub context: [u8; 32],
}

/// Where a base image's identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseSource {
    /// The digest its tag resolves to in its registry: what `docker pull` fetches.
    Registry,
    /// The image ID of the daemon's copy (the registry could not be asked).
    Daemon,
}

/// An image a Dockerfile builds on, identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub reference: String,
    /// A manifest digest (registry) or an image ID (daemon).
    pub id: String,
    pub source: BaseSource,
    /// The image has ONBUILD triggers: they run COPY/ADD of this build, so the whole context counts.
    pub onbuild: bool,
}

/// Everything but the context and the base images that goes into the digest.
#[derive(Debug, Clone)]
pub struct Recipe<'a> {
    pub dockerfile: &'a [u8],
    pub build_args: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    pub target: Option<&'a str>,
    pub platform: Option<&'a Platform>,
}

/// The digest of a build whose context digests to `context`.
pub fn input_digest(context: &[u8; 32], recipe: &Recipe, bases: &[BaseImage]) -> InputDigest {
    // Canonical JSON: fixed field order, sorted maps. The version changes if the meaning does.
    #[derive(Serialize)]
    struct Canonical<'a> {
        version: u32,
        context: String,
        dockerfile: String,
        build_args: &'a BTreeMap<String, String>,
        labels: &'a BTreeMap<String, String>,
        target: Option<&'a str>,
        platform: Option<String>,
        bases: Vec<(&'a str, &'a str, BaseSource)>,
    }
    let canonical = Canonical {
        version: 1,
        context: hex::encode(context),
        dockerfile: hex::encode(Sha256::digest(recipe.dockerfile)),
        build_args: recipe.build_args,
        labels: recipe.labels,
        target: recipe.target,
        platform: recipe.platform.map(ToString::to_string),
        bases: bases
            .iter()
            .map(|b| (b.reference.as_str(), b.id.as_str(), b.source))
            .collect(),
    };
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    InputDigest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
}

/// One base image's identity, found once and shared by every service that asks.
type Identified = Arc<OnceCell<Result<BaseImage, String>>>;

/// Identifies base images for every service of a run, each reference once: the registry first, the
/// daemon when the registry cannot be asked. The daemon is connected only when it is needed.
pub struct BaseLookup {
    /// This run's registry (when known before its credentials) and its credentials: our
    /// credentials go to no other registry.
    own: Option<Registry>,
    credentials: Option<SharedCredentials>,
    daemon_timeout: Duration,
    daemon: OnceCell<Result<bollard::Docker, String>>,
    found: Mutex<HashMap<(String, Option<Platform>), Identified>>,
}

impl BaseLookup {
    pub fn new(
        own: Option<Registry>,
        credentials: Option<SharedCredentials>,
        daemon_timeout: Duration,
    ) -> Self {
        BaseLookup {
            own,
            credentials,
            daemon_timeout,
            daemon: OnceCell::new(),
            found: Mutex::new(HashMap::new()),
        }
    }

    /// The daemon, connected on first use; the error says why it cannot be used.
    pub async fn daemon(&self) -> Result<&bollard::Docker, String> {
        self.daemon
            .get_or_init(|| async {
                daemon::connect(self.daemon_timeout)
                    .await
                    .map_err(|e| match e {
                        crate::error::Error::DaemonUnreachable { detail, .. } => detail,
                        other => other.to_string(),
                    })
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Identify `reference` as built for `platform` (`None`: the daemon's own).
    pub async fn identify(
        &self,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<BaseImage, String> {
        let key = (reference.to_string(), platform.cloned());
        let cell = Arc::clone(self.found.lock().await.entry(key).or_default());
        cell.get_or_init(|| async {
            let asked = tokio::time::timeout(
                REGISTRY_LOOKUP_TIMEOUT,
                self.ask_registry(reference, platform),
            )
            .await
            .unwrap_or_else(|_| Err("no answer within 15 s".to_string()));
            match asked {
                Ok(found) => Ok(found),
                Err(registry) => self.ask_daemon(reference).await.map_err(|daemon| {
                    format!("base image {reference}: its registry: {registry}; the daemon ({}): {daemon}", daemon::daemon_host())
                }),
            }
        })
        .await
        .clone()
    }

    async fn ask_registry(
        &self,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<BaseImage, String> {
        let parsed = oci_client::Reference::from_str(reference).map_err(|e| e.to_string())?;
        let registry =
            Registry::parse("base image", parsed.registry()).map_err(|e| e.to_string())?;
        let repository =
            Repository::parse("base image", parsed.repository()).map_err(|e| e.to_string())?;
        let credentials = self.credentials_for(&registry).await;
        if matches!(credentials, Credentials::Anonymous) {
            crate::registry::learn_if_open(&registry).await;
        }
        let api = RegistryApi::new(&registry, &repository, &credentials);
        let manifest = match (parsed.digest(), parsed.tag()) {
            (Some(digest), _) => api.manifest_by_digest(digest).await,
            (None, tag) => {
                let tag =
                    Tag::parse("base image", tag.unwrap_or("latest")).map_err(|e| e.to_string())?;
                api.manifest(&tag).await
            }
        }
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the registry does not hold it".to_string())?;
        let onbuild = api
            .has_onbuild_triggers(&manifest, platform)
            .await
            .map_err(|e| e.to_string())?;
        Ok(BaseImage {
            reference: reference.to_string(),
            id: manifest.digest().to_string(),
            source: BaseSource::Registry,
            onbuild,
        })
    }

    /// Our credentials when `registry` is ours (waiting for them only then), else none.
    async fn credentials_for(&self, registry: &Registry) -> Credentials {
        let maybe_ours = self.own.as_ref().is_none_or(|own| own == registry);
        match &self.credentials {
            Some(shared) if maybe_ours => match shared.clone().await {
                Some((ours, credentials, _)) if ours == *registry => credentials,
                _ => Credentials::Anonymous,
            },
            _ => Credentials::Anonymous,
        }
    }

    async fn ask_daemon(&self, reference: &str) -> Result<BaseImage, String> {
        let docker = self.daemon().await?;
        let image = docker
            .inspect_image(reference)
            .await
            .map_err(|_| "it is not on the daemon".to_string())?;
        let id = image.id.ok_or("the daemon reports no image ID")?;
        let onbuild = image
            .config
            .and_then(|c| c.on_build)
            .is_some_and(|t| !t.is_empty());
        Ok(BaseImage {
            reference: reference.to_string(),
            id,
            source: BaseSource::Daemon,
            onbuild,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(id: &str) -> BaseImage {
        BaseImage {
            reference: "localhost:5000/base:1".to_string(),
            id: id.to_string(),
            source: BaseSource::Registry,
            onbuild: false,
        }
    }

    /// The inputs of one build, owned, so a test can change any of them.
    struct Inputs {
        dockerfile: Vec<u8>,
        build_args: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
        target: Option<String>,
        platform: Option<Platform>,
        bases: Vec<BaseImage>,
    }

    fn digest_with(change: impl FnOnce(&mut Inputs)) -> InputDigest {
        let mut inputs = Inputs {
            dockerfile: b"FROM base\n".to_vec(),
            build_args: BTreeMap::from([("A".to_string(), "1".to_string())]),
            labels: BTreeMap::new(),
            target: None,
            platform: None,
            bases: vec![base("sha256:aa")],
        };
        change(&mut inputs);
        let recipe = Recipe {
            dockerfile: &inputs.dockerfile,
            build_args: &inputs.build_args,
            labels: &inputs.labels,
            target: inputs.target.as_deref(),
            platform: inputs.platform.as_ref(),
        };
        input_digest(&[7; 32], &recipe, &inputs.bases)
    }

    #[test]
    fn every_input_changes_the_digest() {
        let same = digest_with(|_| {});
        assert_eq!(same, digest_with(|_| {}));
        let changed = [
            digest_with(|i| i.dockerfile = b"FROM base\nUSER 1\n".to_vec()),
            digest_with(|i| i.build_args.insert("A".into(), "2".into()).map_or((), drop)),
            digest_with(|i| i.labels.insert("l".into(), "v".into()).map_or((), drop)),
            digest_with(|i| i.target = Some("runtime".into())),
            digest_with(|i| i.platform = Platform::parse("t", "linux/amd64").ok()),
            digest_with(|i| i.bases[0].id = "sha256:bb".to_string()),
            digest_with(|i| i.bases[0].source = BaseSource::Daemon),
            digest_with(|i| i.bases.clear()),
        ];
        for (i, digest) in changed.iter().enumerate() {
            assert_ne!(*digest, same, "change {i} left the digest alone");
        }
        let context = input_digest(
            &[8; 32],
            &Recipe {
                dockerfile: b"FROM base\n",
                build_args: &BTreeMap::from([("A".to_string(), "1".to_string())]),
                labels: &BTreeMap::new(),
                target: None,
                platform: None,
            },
            &[base("sha256:aa")],
        );
        assert_ne!(context, same, "the context digest left the digest alone");
    }

    #[test]
    fn the_tag_carries_the_hex() {
        let digest = digest_with(|_| {});
        let tag = digest.tag();
        assert!(tag.as_str().starts_with(INPUTS_TAG_PREFIX));
        assert_eq!(
            &tag.as_str()[INPUTS_TAG_PREFIX.len()..],
            &digest.as_str()[7..]
        );
        assert!(tag.as_str().len() <= 128);
    }
}
