//! The registry's HTTP API (OCI distribution), through `oci-client`: it already speaks the token and Basic
//! auth flows of ECR and other registries. Used to prove what was pushed, to copy tags inside the
//! registry, and to publish an image's config with its provenance labels.

use std::collections::{BTreeMap, HashMap};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::auth::Credentials;
use crate::error::FailureKind;
use crate::identity::{Platform, Registry, Repository, Tag};
use index::{index_annotations, index_document, index_entries, platform_of_config, IndexEntry};

pub mod index;
pub mod relabel;

/// Why a registry call failed, in the terms a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryApiError {
    #[error("the registry refused the credentials")]
    Unauthorized,
    #[error("the repository does not exist")]
    RepositoryNotFound,
    /// Any other failure, classified where it was seen (HTTP status, I/O error kind, error code).
    #[error("{detail}")]
    Failed { kind: FailureKind, detail: String },
}

impl RegistryApiError {
    /// A failure that another attempt cannot fix (a malformed answer, a refused write).
    pub fn permanent(detail: impl Into<String>) -> Self {
        RegistryApiError::Failed {
            kind: FailureKind::Permanent,
            detail: detail.into(),
        }
    }

    /// The failure's kind, for retry decisions.
    pub fn kind(&self) -> FailureKind {
        match self {
            RegistryApiError::Unauthorized => FailureKind::CredentialsRefused,
            RegistryApiError::RepositoryNotFound => FailureKind::NotFound,
            RegistryApiError::Failed { kind, .. } => *kind,
        }
    }
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

    /// The manifest's bytes, exactly as the registry serves them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The platforms an index lists, with their images; `None` for a single image.
    pub fn index_entries(&self) -> Option<Vec<IndexEntry>> {
        index_entries(&self.bytes)
    }

    /// This image as an index lists it, on `platform`.
    pub fn as_index_entry(&self, platform: Platform) -> IndexEntry {
        IndexEntry {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len(),
            platform,
        }
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

/// Loopback registries found to ask for no credentials (see [`learn_if_open`]).
static OPEN_REGISTRIES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn is_open(registry: &Registry) -> bool {
    OPEN_REGISTRIES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|host| host == registry.host())
}

/// Find out, once per process, whether a loopback registry (plain HTTP) answers `GET /v2/` with 200,
/// i.e. asks for no credentials; clients made afterwards for it skip the per-request auth probe.
/// Written by hand over a TCP socket: a status line from a local socket is all that is needed, and an
/// HTTP client here would load the TLS roots for nothing. Any doubt leaves the registry as it was.
pub async fn learn_if_open(registry: &Registry) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !registry.is_loopback() || is_open(registry) {
        return;
    }
    let host = registry.host();
    let address = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await.ok()?;
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let read = stream.read(&mut head).await.ok()?;
        Some(head[..read].starts_with(b"HTTP/1.1 200") || head[..read].starts_with(b"HTTP/1.0 200"))
    };
    let open = tokio::time::timeout(std::time::Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false);
    if open {
        OPEN_REGISTRIES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(host.to_string());
    }
}

/// One client per registry and credentials for the whole process. Building a client builds two
/// HTTP clients, each loading the system's root certificates (tens of milliseconds); a run with
/// many services would pay that for every repository and base image. A client remembers the
/// credentials it first saw for a registry, so new credentials (a refreshed token) get a new client.
fn shared_client(
    registry: &Registry,
    credentials: &Credentials,
    open: bool,
    config: ClientConfig,
) -> Client {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    type Clients = (
        RandomState,
        std::sync::Mutex<HashMap<(String, u64), Client>>,
    );
    static CLIENTS: std::sync::OnceLock<Clients> = std::sync::OnceLock::new();
    let (keys, clients) = CLIENTS.get_or_init(Default::default);
    // A hash with this process's random keys: the map never holds the credentials in clear.
    let credentials = match credentials {
        Credentials::Anonymous => keys.hash_one(u8::from(open)),
        Credentials::Basic { username, password } => {
            keys.hash_one((1u8, username, password.expose()))
        }
    };
    let key = (registry.host().to_string(), credentials);
    let mut clients = clients
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    clients
        .entry(key)
        .or_insert_with(|| Client::new(config))
        .clone()
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
        let open = matches!(credentials, Credentials::Anonymous) && is_open(registry);
        let auth = match credentials {
            // Known to ask for no credentials: an empty bearer token spares a `GET /v2/` before
            // every request (the client probes for a challenge whenever it holds no token).
            Credentials::Anonymous if open => RegistryAuth::Bearer(String::new()),
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.expose().to_string())
            }
        };
        RegistryApi {
            client: shared_client(registry, credentials, open, config),
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

    /// The manifest (an image manifest or an index) that `digest` names in this repository, or `None`
    /// when the repository does not hold it.
    pub async fn manifest_by_digest(
        &self,
        digest: &str,
    ) -> Result<Option<StoredManifest>, RegistryApiError> {
        self.read_manifest(&self.by_digest(digest), ANY_MANIFEST_TYPES)
            .await
    }

    /// A blob's bytes from `offset` on, as they arrive, for a caller that checks them against the
    /// digest itself. From offset 0 the client checks the digest too. Past 0 the registry is asked for
    /// a range; one that ignores the range sends the whole blob, and [`BlobStream::skip`] says how many
    /// leading bytes to drop.
    pub async fn blob_stream(
        &self,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, RegistryApiError> {
        use oci_client::client::BlobResponse;
        let reference = self.by_digest(digest);
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth)
            .await;
        let descriptor = oci_client::manifest::OciDescriptor {
            digest: digest.to_string(),
            ..Default::default()
        };
        let blob_error = |e| match classify(e) {
            Classified::Error(e) => e,
            Classified::ManifestUnknown => RegistryApiError::Failed {
                kind: FailureKind::NotFound,
                detail: format!("blob {digest} is not in the repository"),
            },
        };
        if offset == 0 {
            let stream = self
                .client
                .pull_blob_stream(&reference, &descriptor)
                .await
                .map_err(blob_error)?;
            return Ok(BlobStream {
                skip: 0,
                stream: stream.stream,
            });
        }
        match self
            .client
            .pull_blob_stream_partial(&reference, &descriptor, offset, None)
            .await
            .map_err(blob_error)?
        {
            BlobResponse::Partial(stream) => Ok(BlobStream {
                skip: 0,
                stream: stream.stream,
            }),
            BlobResponse::Full(stream) => Ok(BlobStream {
                skip: offset,
                stream: stream.stream,
            }),
        }
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
        self.put_relabelled(base, &[], labels, to).await
    }

    /// As [`put_with_labels`](Self::put_with_labels), with the labels in `dropped` removed first.
    pub async fn put_relabelled(
        &self,
        base: &StoredManifest,
        dropped: &[&str],
        labels: &BTreeMap<String, String>,
        to: &Tag,
    ) -> Result<StoredManifest, RegistryApiError> {
        let config = self.image_config(base).await?;
        self.put_relabelled_config(base, &config, dropped, labels, to)
            .await
    }

    /// The config blob of the image manifest `manifest`.
    pub async fn image_config(
        &self,
        manifest: &StoredManifest,
    ) -> Result<Vec<u8>, RegistryApiError> {
        let config_digest = manifest.config_digest().ok_or_else(|| {
            RegistryApiError::permanent(format!(
                "manifest {} has no config (a manifest list?)",
                manifest.digest
            ))
        })?;
        self.config_blob(&self.by_digest(&manifest.digest), &config_digest)
            .await
    }

    /// As [`put_relabelled`](Self::put_relabelled), with `base`'s config already read.
    pub async fn put_relabelled_config(
        &self,
        base: &StoredManifest,
        config: &[u8],
        dropped: &[&str],
        labels: &BTreeMap<String, String>,
        to: &Tag,
    ) -> Result<StoredManifest, RegistryApiError> {
        let relabelled = relabel::relabel_replacing(&base.bytes, config, dropped, labels)
            .map_err(|e| RegistryApiError::permanent(format!("{} ({})", e, base.digest)))?;
        self.client
            .push_blob(
                &self.reference(to),
                relabelled.config,
                &relabelled.config_digest,
            )
            .await
            .map_err(|e| match classify(e) {
                Classified::Error(e) => e,
                Classified::ManifestUnknown => {
                    RegistryApiError::permanent("the registry refused the config blob")
                }
            })?;
        let labelled = StoredManifest {
            digest: relabelled.manifest_digest,
            bytes: relabelled.manifest,
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
                Classified::ManifestUnknown => RegistryApiError::Failed {
                    kind: FailureKind::NotFound,
                    detail: format!("config blob {digest} is missing"),
                },
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
            .map_err(|_| RegistryApiError::permanent(format!("bad media type {media_type:?}")))?;
        self.client
            .push_manifest_raw(&self.reference(to), manifest, content_type)
            .await
            .map_err(|e| match classify_manifest_put(e) {
                Classified::Error(e) => e,
                Classified::ManifestUnknown => {
                    RegistryApiError::permanent(format!("the registry rejected {to}"))
                }
            })?;
        Ok(())
    }

    /// The tags of the repository, at most [`MAX_LISTED_TAGS`] of them, each once; an unknown
    /// repository has none. Pages are asked for while a full page moves the listing forward. A registry
    /// that ignores `n` and `last` (Debian's `docker-registry` returns every tag on every request) sends
    /// more than a page, which ends the listing; one that repeats a page adds nothing new, which ends it
    /// too: it never loops.
    pub async fn tags(&self) -> Result<Vec<String>, RegistryApiError> {
        let image = self.reference(&Tag::latest());
        let mut listing = TagListing::default();
        loop {
            let page = match self
                .client
                .list_tags(&image, &self.auth, Some(TAGS_PAGE), listing.last())
                .await
            {
                Ok(page) => page,
                Err(e) => match classify(e) {
                    Classified::ManifestUnknown
                    | Classified::Error(RegistryApiError::RepositoryNotFound) => {
                        return Ok(listing.into_tags())
                    }
                    Classified::Error(e) => return Err(e),
                },
            };
            if !listing.add_page(page.tags) {
                return Ok(listing.into_tags());
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
            .read_manifest(&self.reference(tag), ANY_MANIFEST_TYPES)
            .await?
        else {
            return Ok(None);
        };
        let labels = self.labels_of(&manifest).await?;
        Ok(Some((manifest.digest, labels)))
    }

    /// The labels in the config of the image `manifest` describes. For a multi-platform index: its
    /// annotations when they carry the revision (ecrbuild writes the provenance labels there), else the
    /// labels of its first image, so an index made by another tool is ordered by its images' labels.
    pub async fn labels_of(
        &self,
        manifest: &StoredManifest,
    ) -> Result<BTreeMap<String, String>, RegistryApiError> {
        if let Some(entries) = manifest.index_entries() {
            let annotations = index_annotations(&manifest.bytes);
            if annotations.contains_key(crate::identity::REVISION_LABEL) {
                return Ok(annotations);
            }
            let Some(first) = entries.first() else {
                return Ok(BTreeMap::new());
            };
            let child = self.image_manifest(&first.digest).await?.ok_or_else(|| {
                RegistryApiError::permanent(format!(
                    "{} lists {}, which the repository does not hold",
                    manifest.digest, first.digest
                ))
            })?;
            return Box::pin(self.labels_of(&child)).await;
        }
        let name = &manifest.digest;
        let config_digest = manifest.config_digest().ok_or_else(|| {
            RegistryApiError::permanent(format!("manifest {name} has no config (a manifest list?)"))
        })?;
        let config = self
            .config_blob(&self.by_digest(name), &config_digest)
            .await?;
        relabel::labels_of_config(&config)
            .map_err(|e| RegistryApiError::permanent(format!("config {config_digest}: {e}")))
    }

    /// Whether the image `manifest` names (for an index: its image for `platform`, else for this
    /// host's) has ONBUILD triggers in its config.
    pub async fn has_onbuild_triggers(
        &self,
        manifest: &StoredManifest,
        platform: Option<&Platform>,
    ) -> Result<bool, RegistryApiError> {
        let image = match manifest.index_entries() {
            None => manifest.clone(),
            Some(entries) => {
                let wanted = platform.cloned().unwrap_or_else(Platform::host);
                let entry = entries
                    .iter()
                    .find(|e| e.platform == wanted)
                    .or_else(|| entries.iter().find(|e| e.platform.runs_natively(&wanted)))
                    .ok_or_else(|| {
                        RegistryApiError::permanent(format!(
                            "{} has no image for {wanted}",
                            manifest.digest
                        ))
                    })?;
                self.image_manifest(&entry.digest).await?.ok_or_else(|| {
                    RegistryApiError::permanent(format!("{} is missing", entry.digest))
                })?
            }
        };
        let config_digest = image.config_digest().ok_or_else(|| {
            RegistryApiError::permanent(format!("manifest {} has no config", image.digest))
        })?;
        let config = self
            .config_blob(&self.by_digest(&image.digest), &config_digest)
            .await?;
        let parsed: serde_json::Value = serde_json::from_slice(&config)
            .map_err(|e| RegistryApiError::permanent(format!("config {config_digest}: {e}")))?;
        Ok(parsed["config"]["OnBuild"]
            .as_array()
            .is_some_and(|t| !t.is_empty()))
    }

    /// The platform and the labels the config of the image `manifest` declares.
    pub async fn platform_and_labels(
        &self,
        manifest: &StoredManifest,
    ) -> Result<(Platform, BTreeMap<String, String>), RegistryApiError> {
        let name = &manifest.digest;
        let config_digest = manifest.config_digest().ok_or_else(|| {
            RegistryApiError::permanent(format!("manifest {name} has no config (an index?)"))
        })?;
        let config = self
            .config_blob(&self.by_digest(name), &config_digest)
            .await?;
        let bad = |e: String| RegistryApiError::permanent(format!("config {config_digest}: {e}"));
        let platform = platform_of_config(&config).map_err(bad)?;
        let labels = relabel::labels_of_config(&config).map_err(|e| bad(e.to_string()))?;
        Ok((platform, labels))
    }

    /// Publish under `to` the OCI index over `entries` with `annotations`, byte for byte as computed
    /// here (so `to` resolves to the returned digest). Every entry's image must be in the repository.
    pub async fn put_index(
        &self,
        entries: &[IndexEntry],
        annotations: &BTreeMap<String, String>,
        to: &Tag,
    ) -> Result<StoredManifest, RegistryApiError> {
        let (bytes, digest) = index_document(entries, annotations);
        let index = StoredManifest {
            digest,
            bytes,
            media_type: index::OCI_INDEX_MEDIA_TYPE.to_string(),
        };
        self.put_copy(&index, to).await?;
        Ok(index)
    }

    /// The config blob of the small OCI artifact under `tag` (see [`RegistryApi::put_artifact`]), or
    /// `None` when the tag is absent.
    pub async fn artifact(&self, tag: &Tag) -> Result<Option<Vec<u8>>, RegistryApiError> {
        let Some(manifest) = self
            .read_manifest(&self.reference(tag), &[OCI_IMAGE_MEDIA_TYPE])
            .await?
        else {
            return Ok(None);
        };
        let config_digest = manifest.config_digest().ok_or_else(|| {
            RegistryApiError::permanent(format!("{tag} is not an artifact with a config"))
        })?;
        self.config_blob(&self.by_digest(&manifest.digest), &config_digest)
            .await
            .map(Some)
    }

    /// Publish `data` under `tag` as a small OCI artifact: an image manifest whose config is `data`
    /// (of `media_type`) and whose only layer is the empty JSON object, which every registry accepts.
    pub async fn put_artifact(
        &self,
        tag: &Tag,
        media_type: &str,
        data: Vec<u8>,
    ) -> Result<(), RegistryApiError> {
        let config_digest = relabel::sha256_digest(&data);
        let config_size = data.len();
        let reference = self.reference(tag);
        let blob_error = |e| match classify(e) {
            Classified::Error(e) => e,
            Classified::ManifestUnknown => {
                RegistryApiError::permanent("the registry refused a blob")
            }
        };
        let empty = EMPTY_JSON.to_vec();
        let empty_digest = relabel::sha256_digest(&empty);
        // Two independent uploads: at the same time.
        let (empty_pushed, data_pushed) = tokio::join!(
            self.client.push_blob(&reference, empty, &empty_digest),
            self.client.push_blob(&reference, data, &config_digest)
        );
        empty_pushed.map_err(blob_error)?;
        data_pushed.map_err(blob_error)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "artifactType": media_type,
            "config": { "mediaType": media_type, "digest": config_digest, "size": config_size },
            "layers": [{
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": empty_digest,
                "size": EMPTY_JSON.len(),
            }],
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| RegistryApiError::permanent(format!("cannot encode a manifest: {e}")))?;
        self.put_manifest(tag, bytes, OCI_IMAGE_MEDIA_TYPE).await
    }

    /// Point `to` at the manifest `from` points at, inside the registry (a manifest copy: no blobs move).
    /// Returns the digest now behind `to`.
    pub async fn retag(&self, from: &Tag, to: &Tag) -> Result<String, RegistryApiError> {
        let manifest = self
            .read_manifest(&self.reference(from), ANY_MANIFEST_TYPES)
            .await?
            .ok_or_else(|| RegistryApiError::Failed {
                kind: FailureKind::NotFound,
                detail: format!("{from} is not in the registry"),
            })?;
        self.put_copy(&manifest, to).await?;
        Ok(manifest.digest)
    }
}

/// A blob's bytes as the registry sends them (see [`RegistryApi::blob_stream`]).
pub struct BlobStream {
    /// Leading bytes to drop: the registry ignored the range and started at 0.
    pub skip: u64,
    pub stream: futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
}

/// What an error met while a blob's bytes arrive means: the client's own digest check (the content is
/// not what the digest names), or a failure of the connection, with its kind.
pub fn classify_blob_read(error: &std::io::Error) -> Result<FailureKind, String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.get_ref().map(|e| e as _);
    while let Some(inner) = source {
        if let Some(digest) = inner.downcast_ref::<oci_client::errors::DigestError>() {
            return Err(digest.to_string());
        }
        if let Some(request) = inner.downcast_ref::<reqwest::Error>() {
            return Ok(request_failure_kind(request));
        }
        source = inner.source();
    }
    Ok(FailureKind::from_io(error.kind()))
}

/// Tags asked for per page.
const TAGS_PAGE: usize = 1000;

/// The most tags a listing holds, whatever the registry returns: bounds memory and requests.
pub const MAX_LISTED_TAGS: usize = 10_000;

/// Tags read so far, each once, in the order the registry gave them.
#[derive(Debug, Default)]
struct TagListing {
    tags: Vec<String>,
    seen: std::collections::HashSet<String>,
}

impl TagListing {
    /// The tag to continue after (the `last` parameter).
    fn last(&self) -> Option<&str> {
        self.tags.last().map(String::as_str)
    }

    /// Add a page; whether another page should be asked for: the page was exactly full (a longer one
    /// means the registry ignores pagination and sent everything), it brought tags not seen before, it
    /// ended past where the listing stood, and the bound is not reached.
    fn add_page(&mut self, page: Vec<String>) -> bool {
        // More than asked for: the registry ignores `n` (and so `last`), and this is the whole list.
        let ignores_pagination = page.len() > TAGS_PAGE;
        let full = page.len() == TAGS_PAGE;
        let previous_last = self.last().map(str::to_string);
        let page_last = page.last().cloned();
        let before = self.tags.len();
        for tag in page {
            if self.tags.len() >= MAX_LISTED_TAGS {
                return false;
            }
            if self.seen.insert(tag.clone()) {
                self.tags.push(tag);
            }
        }
        let advanced = match (previous_last, page_last) {
            (Some(previous), Some(last)) => last > previous,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        full && !ignores_pagination
            && advanced
            && self.tags.len() > before
            && self.tags.len() < MAX_LISTED_TAGS
    }

    fn into_tags(self) -> Vec<String> {
        self.tags
    }
}

const OCI_IMAGE_MEDIA_TYPE: &str = oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;

/// The OCI empty descriptor's content: `{}`.
const EMPTY_JSON: &[u8] = b"{}";

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
            let has = |wanted: fn(&OciErrorCode) -> bool| codes.iter().any(|c| wanted(c));
            if has(|c| matches!(c, OciErrorCode::ManifestUnknown)) {
                Classified::ManifestUnknown
            } else if has(|c| matches!(c, OciErrorCode::NameUnknown)) {
                Classified::Error(RegistryApiError::RepositoryNotFound)
            } else if has(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
                Classified::Error(RegistryApiError::Unauthorized)
            } else {
                let kind = if has(|c| matches!(c, OciErrorCode::Toomanyrequests)) {
                    FailureKind::Transient
                } else {
                    FailureKind::Permanent
                };
                Classified::Error(RegistryApiError::Failed {
                    kind,
                    detail: error.to_string(),
                })
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => Classified::ManifestUnknown,
        OciDistributionError::ServerError { code, .. } => match FailureKind::from_status(*code) {
            FailureKind::CredentialsRefused => Classified::Error(RegistryApiError::Unauthorized),
            kind => Classified::Error(RegistryApiError::Failed {
                kind,
                detail: error.to_string(),
            }),
        },
        OciDistributionError::RequestError(request) => {
            Classified::Error(RegistryApiError::Failed {
                kind: request_failure_kind(request),
                detail: error.to_string(),
            })
        }
        OciDistributionError::IoError(io) => Classified::Error(RegistryApiError::Failed {
            kind: FailureKind::from_io(io.kind()),
            detail: error.to_string(),
        }),
        _ => Classified::Error(RegistryApiError::permanent(error.to_string())),
    }
}

/// A manifest PUT's failure. Only manifests whose blobs are in the repository are written here (a copy of
/// a tag, or the daemon's accepted manifest with a new config), so an unknown or unreadable blob is the
/// registry mid-update: its filesystem store rewrites a blob's link file when a concurrent push of the
/// same layer links it again. That passes.
fn classify_manifest_put(error: OciDistributionError) -> Classified {
    if let OciDistributionError::RegistryError { envelope, .. } = &error {
        let mid_update = envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::BlobUnknown
                    | OciErrorCode::DigestInvalid
                    | OciErrorCode::ManifestBlobUnknown
            )
        });
        if mid_update {
            return Classified::Error(RegistryApiError::Failed {
                kind: FailureKind::Transient,
                detail: error.to_string(),
            });
        }
        // ECR refuses a second write of an immutable tag with TAG_INVALID ("... already exists in the
        // ... repository and cannot be overwritten because the repository is immutable").
        let immutable = envelope.errors.iter().any(|e| {
            e.code == OciErrorCode::TagInvalid
                && e.message.to_ascii_lowercase().contains("immutable")
        });
        if immutable {
            return Classified::Error(RegistryApiError::permanent(format!(
                "{error}; the tag is immutable in this repository and already names an image: it is written once (a rebuild with --force cannot replace it; publish a new commit)"
            )));
        }
    }
    classify(error)
}

/// What a failed HTTP request to the registry means: no answer at all (refused, reset, timed out) passes;
/// an answer carries its status.
fn request_failure_kind(error: &reqwest::Error) -> FailureKind {
    if let Some(status) = error.status() {
        return FailureKind::from_status(status.as_u16());
    }
    if error.is_timeout() || error.is_connect() || error.is_request() || error.is_body() {
        return FailureKind::Transient;
    }
    // Find an I/O error underneath (a reset while reading the answer).
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return FailureKind::from_io(io.kind());
        }
        source = inner.source();
    }
    FailureKind::Permanent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("t{i:06}")).collect()
    }

    #[test]
    fn a_registry_that_ignores_pagination_is_read_once() {
        let mut listing = TagListing::default();
        // Debian's registry: every request returns all 1,003 tags.
        assert!(!listing.add_page(page(0..1003)));
        assert_eq!(listing.into_tags().len(), 1003);
        // Exactly a page's worth, then the same page again: it stops there.
        let mut listing = TagListing::default();
        assert!(listing.add_page(page(0..1000)));
        assert!(!listing.add_page(page(0..1000)));
        assert_eq!(listing.into_tags().len(), 1000);
    }

    #[test]
    fn a_paginating_registry_is_followed_to_its_last_page() {
        let mut listing = TagListing::default();
        assert!(listing.add_page(page(0..1000)));
        assert_eq!(listing.last(), Some("t000999"));
        assert!(listing.add_page(page(1000..2000)));
        assert!(!listing.add_page(page(2000..2500)));
        let tags = listing.into_tags();
        assert_eq!(tags.len(), 2500);
        assert_eq!(
            tags.iter().collect::<std::collections::HashSet<_>>().len(),
            2500
        );
    }

    #[test]
    fn a_page_that_goes_backwards_or_repeats_ends_the_listing() {
        let mut listing = TagListing::default();
        assert!(listing.add_page(page(1000..2000)));
        // Full, with new tags, but not past where the listing stood.
        assert!(!listing.add_page(page(0..1000)));
    }

    #[test]
    fn the_listing_is_bounded() {
        let mut listing = TagListing::default();
        let mut pages = 0;
        let mut start = 0;
        while listing.add_page(page(start..start + TAGS_PAGE)) {
            start += TAGS_PAGE;
            pages += 1;
            assert!(pages <= MAX_LISTED_TAGS / TAGS_PAGE, "never ends");
        }
        assert_eq!(listing.into_tags().len(), MAX_LISTED_TAGS);
    }

    #[test]
    fn registry_errors_carry_their_kind() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: "m".into(),
        };
        let kind = |e| match classify(e) {
            Classified::Error(e) => Some(e.kind()),
            Classified::ManifestUnknown => None,
        };
        assert_eq!(kind(server(503)), Some(FailureKind::Transient));
        assert_eq!(kind(server(500)), Some(FailureKind::Transient));
        assert_eq!(kind(server(403)), Some(FailureKind::CredentialsRefused));
        assert_eq!(kind(server(400)), Some(FailureKind::Permanent));
        assert_eq!(kind(server(404)), None);
        let io = OciDistributionError::IoError(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        ));
        assert_eq!(kind(io), Some(FailureKind::Transient));
    }

    #[test]
    fn a_refused_write_of_an_immutable_tag_says_so() {
        let envelope: oci_client::errors::OciEnvelope = serde_json::from_str(
            r#"{"errors":[{"code":"TAG_INVALID","message":"The image tag 'abc' already exists in the 'api' repository and cannot be overwritten because the repository is immutable."}]}"#,
        )
        .unwrap();
        let refused = OciDistributionError::RegistryError {
            envelope,
            url: "u".into(),
        };
        let Classified::Error(RegistryApiError::Failed { kind, detail }) =
            classify_manifest_put(refused)
        else {
            panic!("not a failure")
        };
        assert_eq!(kind, FailureKind::Permanent);
        assert!(detail.contains("written once"), "{detail}");
    }
}
