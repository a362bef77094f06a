//! The registry's HTTP API (OCI distribution), through `oci-client`: it already speaks the token and Basic
//! auth flows of ECR and other registries. Used to prove what was pushed, to copy tags inside the
//! registry, and to publish an image's config with its provenance labels.

use std::collections::BTreeMap;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::auth::Credentials;
use crate::plan::{Registry, Repository, Tag};

/// Why a registry read failed, in the terms a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryApiError {
    #[error("the registry refused the credentials")]
    Unauthorized,
    #[error("the repository does not exist")]
    RepositoryNotFound,
    /// A state of the registry that passes: worth another attempt.
    #[error("{0} (a transient registry state; retried)")]
    Transient(String),
    #[error("{0}")]
    Other(String),
}

/// A manifest exactly as the registry holds it. Writing these bytes under another tag is a copy with the
/// same digest, so a caller that has one needs no second read to retag.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    digest: String,
    bytes: Vec<u8>,
    media_type: String,
}

impl StoredManifest {
    fn new(bytes: Vec<u8>, digest: String) -> Self {
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|m| m["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE.to_string());
        StoredManifest {
            digest,
            bytes,
            media_type,
        }
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The digest of the image config blob; `None` for a manifest list or index.
    fn config_digest(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.bytes)
            .ok()?
            .get("config")?
            .get("digest")?
            .as_str()
            .map(str::to_string)
    }
}

/// One repository in one registry, with the credentials to read it.
pub struct RegistryApi {
    client: Client,
    auth: RegistryAuth,
    registry: Registry,
    repository: Repository,
}

impl RegistryApi {
    pub fn new(registry: &Registry, repository: &Repository, credentials: &Credentials) -> Self {
        // reqwest is built without a bundled crypto provider; use ring, as the AWS client does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if registry.is_loopback() {
            ClientProtocol::HttpsExcept(vec![registry.host().to_string()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            // The only blob written here is an image config of a few KiB: one request, not three.
            use_monolithic_push: true,
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let auth = match credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.expose().to_string())
            }
        };
        RegistryApi {
            client: Client::new(config),
            auth,
            registry: registry.clone(),
            repository: repository.clone(),
        }
    }

    fn by_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.registry.host().to_string(),
            self.repository.as_str().to_string(),
            digest.to_string(),
        )
    }

    fn reference(&self, tag: &Tag) -> Reference {
        Reference::with_tag(
            self.registry.host().to_string(),
            self.repository.as_str().to_string(),
            tag.as_str().to_string(),
        )
    }

    /// The manifest a tag resolves to (an image manifest or a multi-platform index), or `None` when the
    /// tag is absent.
    pub async fn manifest(&self, tag: &Tag) -> Result<Option<StoredManifest>, RegistryApiError> {
        // One GET: the client's HEAD falls back to a GET whenever the tag is absent, which is the common
        // case for a new commit's SHA tag; a manifest is a few hundred bytes.
        self.read_manifest(&self.reference(tag), ANY_MANIFEST_TYPES)
            .await
    }

    /// The manifest digest a tag resolves to, or `None` when the tag is absent.
    pub async fn manifest_digest(&self, tag: &Tag) -> Result<Option<String>, RegistryApiError> {
        Ok(self.manifest(tag).await?.map(|m| m.digest))
    }

    /// The image manifest `digest` in this repository (tagged or not), or `None` when the repository does
    /// not hold it.
    pub async fn image_manifest(
        &self,
        digest: &str,
    ) -> Result<Option<StoredManifest>, RegistryApiError> {
        match self
            .read_manifest(&self.by_digest(digest), IMAGE_MANIFEST_TYPES)
            .await
        {
            Err(RegistryApiError::RepositoryNotFound) => Ok(None),
            other => other,
        }
    }

    async fn read_manifest(
        &self,
        reference: &Reference,
        media_types: &[&str],
    ) -> Result<Option<StoredManifest>, RegistryApiError> {
        match self
            .client
            .pull_manifest_raw(reference, &self.auth, media_types)
            .await
        {
            Ok((bytes, digest)) => Ok(Some(StoredManifest::new(bytes.to_vec(), digest))),
            Err(e) => match classify(e) {
                Classified::ManifestUnknown => Ok(None),
                Classified::Error(e) => Err(e),
            },
        }
    }

    /// Publish under `to` the image `base` (a manifest in this repository) with `labels` added to its
    /// config. Only the config blob and the manifest are new; the layers are the base's. Returns the new
    /// manifest as written.
    pub async fn put_with_labels(
        &self,
        base: &StoredManifest,
        labels: &BTreeMap<String, String>,
        to: &Tag,
    ) -> Result<StoredManifest, RegistryApiError> {
        let name = &base.digest;
        let mut manifest: serde_json::Value = serde_json::from_slice(&base.bytes)
            .map_err(|e| RegistryApiError::Other(format!("manifest {name} is not JSON: {e}")))?;
        let config_digest = base.config_digest().ok_or_else(|| {
            RegistryApiError::Other(format!("manifest {name} has no config (a manifest list?)"))
        })?;
        let mut config: serde_json::Value = serde_json::from_slice(
            &self
                .config_blob(&self.by_digest(name), &config_digest)
                .await?,
        )
        .map_err(|e| RegistryApiError::Other(format!("config {config_digest} is not JSON: {e}")))?;
        let image_config = config
            .get_mut("config")
            .and_then(serde_json::Value::as_object_mut)
            .ok_or_else(|| {
                RegistryApiError::Other(format!("config {config_digest} has no \"config\" object"))
            })?;
        let existing = image_config
            .entry("Labels")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if !existing.is_object() {
            *existing = serde_json::Value::Object(Default::default());
        }
        if let Some(existing) = existing.as_object_mut() {
            for (key, value) in labels {
                existing.insert(key.clone(), serde_json::Value::String(value.clone()));
            }
        }
        let config = serde_json::to_vec(&config)
            .map_err(|e| RegistryApiError::Other(format!("cannot encode the config: {e}")))?;
        let labelled_config = sha256_digest(&config);
        let config_size = config.len();
        self.client
            .push_blob(&self.reference(to), config, &labelled_config)
            .await
            .map_err(|e| match classify(e) {
                Classified::Error(e) => e,
                Classified::ManifestUnknown => {
                    RegistryApiError::Other("the registry refused the config blob".to_string())
                }
            })?;
        manifest["config"]["digest"] = serde_json::Value::String(labelled_config);
        manifest["config"]["size"] = serde_json::Value::from(config_size);
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| RegistryApiError::Other(format!("cannot encode the manifest: {e}")))?;
        let labelled = StoredManifest {
            digest: sha256_digest(&bytes),
            bytes,
            media_type: base.media_type.clone(),
        };
        self.put_copy(&labelled, to).await?;
        Ok(labelled)
    }

    /// Write `manifest` under `to`, byte for byte: `to` then resolves to the same digest.
    pub async fn put_copy(
        &self,
        manifest: &StoredManifest,
        to: &Tag,
    ) -> Result<(), RegistryApiError> {
        self.put_manifest(to, manifest.bytes.clone(), &manifest.media_type)
            .await
    }

    /// The image config blob `digest`, read through `reference`'s repository.
    async fn config_blob(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Vec<u8>, RegistryApiError> {
        let mut config = Vec::new();
        self.client
            .pull_blob(reference, digest, &mut config)
            .await
            .map_err(|e| match classify(e) {
                Classified::Error(e) => e,
                Classified::ManifestUnknown => {
                    RegistryApiError::Other(format!("config blob {digest} is missing"))
                }
            })?;
        Ok(config)
    }

    async fn put_manifest(
        &self,
        to: &Tag,
        manifest: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryApiError> {
        let content_type = media_type
            .parse()
            .map_err(|_| RegistryApiError::Other(format!("bad media type {media_type:?}")))?;
        self.client
            .push_manifest_raw(&self.reference(to), manifest, content_type)
            .await
            .map_err(|e| match classify(e) {
                // Only manifests whose blobs are in the repository are written here (a copy of a tag,
                // or the daemon's accepted manifest with a new config), so an unknown or unreadable
                // blob is the registry mid-update: its filesystem store rewrites a blob's link file when
                // a concurrent push of the same layer links it again.
                Classified::Error(RegistryApiError::Other(m))
                    if m.contains("blob unknown") || m.contains("digest invalid") =>
                {
                    RegistryApiError::Transient(m)
                }
                Classified::Error(e) => e,
                Classified::ManifestUnknown => {
                    RegistryApiError::Other(format!("the registry rejected {to}"))
                }
            })?;
        Ok(())
    }

    /// Every tag in the repository (paginated); an unknown repository has none.
    pub async fn tags(&self) -> Result<Vec<String>, RegistryApiError> {
        let image = self.reference(&Tag::latest());
        let mut all = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = match self
                .client
                .list_tags(&image, &self.auth, Some(1000), last.as_deref())
                .await
            {
                Ok(page) => page,
                Err(e) => match classify(e) {
                    Classified::ManifestUnknown
                    | Classified::Error(RegistryApiError::RepositoryNotFound) => return Ok(all),
                    Classified::Error(e) => return Err(e),
                },
            };
            let count = page.tags.len();
            last = page.tags.last().cloned();
            all.extend(page.tags);
            if count < 1000 || last.is_none() {
                return Ok(all);
            }
        }
    }

    /// The labels of the image a tag points at, or `None` when the tag is absent.
    pub async fn labels(
        &self,
        tag: &Tag,
    ) -> Result<Option<BTreeMap<String, String>>, RegistryApiError> {
        Ok(self.digest_and_labels(tag).await?.map(|(_, labels)| labels))
    }

    /// The manifest digest a tag resolves to and the labels of that image, or `None` when the tag is
    /// absent.
    pub async fn digest_and_labels(
        &self,
        tag: &Tag,
    ) -> Result<Option<(String, BTreeMap<String, String>)>, RegistryApiError> {
        let Some(manifest) = self
            .read_manifest(&self.reference(tag), IMAGE_MANIFEST_TYPES)
            .await?
        else {
            return Ok(None);
        };
        let labels = self.labels_of(&manifest).await?;
        Ok(Some((manifest.digest, labels)))
    }

    /// The labels in the config of the image `manifest` describes.
    pub async fn labels_of(
        &self,
        manifest: &StoredManifest,
    ) -> Result<BTreeMap<String, String>, RegistryApiError> {
        let name = &manifest.digest;
        let config_digest = manifest.config_digest().ok_or_else(|| {
            RegistryApiError::Other(format!("manifest {name} has no config (a manifest list?)"))
        })?;
        let config = self
            .config_blob(&self.by_digest(name), &config_digest)
            .await?;
        let config: serde_json::Value = serde_json::from_slice(&config).map_err(|e| {
            RegistryApiError::Other(format!("config {config_digest} is not JSON: {e}"))
        })?;
        Ok(config["config"]["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Point `to` at the manifest `from` points at, inside the registry (a manifest copy: no blobs move).
    /// Returns the digest now behind `to`.
    pub async fn retag(&self, from: &Tag, to: &Tag) -> Result<String, RegistryApiError> {
        let manifest = self
            .read_manifest(&self.reference(from), IMAGE_MANIFEST_TYPES)
            .await?
            .ok_or_else(|| RegistryApiError::Other(format!("{from} is not in the registry")))?;
        self.put_copy(&manifest, to).await?;
        Ok(manifest.digest)
    }
}

/// `sha256:<hex>` of `bytes`, the content address of a blob or manifest.
fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(bytes);
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for byte in hash.iter() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

const IMAGE_MANIFEST_TYPES: &[&str] = &[
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
];

/// Image manifests and multi-platform indexes: what a tag may point at.
const ANY_MANIFEST_TYPES: &[&str] = &[
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
];

enum Classified {
    ManifestUnknown,
    Error(RegistryApiError),
}

fn classify(error: OciDistributionError) -> Classified {
    match &error {
        OciDistributionError::ImageManifestNotFoundError(_) => Classified::ManifestUnknown,
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => {
            Classified::Error(RegistryApiError::Unauthorized)
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::ManifestUnknown))
            {
                Classified::ManifestUnknown
            } else if codes.iter().any(|c| matches!(c, OciErrorCode::NameUnknown)) {
                Classified::Error(RegistryApiError::RepositoryNotFound)
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Classified::Error(RegistryApiError::Unauthorized)
            } else {
                Classified::Error(RegistryApiError::Other(error.to_string()))
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => Classified::ManifestUnknown,
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => Classified::Error(RegistryApiError::Unauthorized),
        _ => Classified::Error(RegistryApiError::Other(error.to_string())),
    }
}
