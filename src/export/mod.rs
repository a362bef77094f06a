//! `ecrbuild export`: an image from the registry, written as an archive into S3, a file or stdout.
//!
//! resolve the reference → read the manifest (pick a platform of an index) and the configs → lay out
//! the archive ([`layout`]) → open the destination ([`sink`], [`s3`]) → stream every blob from the
//! registry into the tar ([`blob`], [`archive`]), checking its SHA-256 on the way → commit, or, on any
//! error or signal, abandon (abort the multipart upload, remove the partial file).
//!
//! It uses the same registry client and credentials as a push ([`crate::registry`], [`crate::auth`]),
//! and no Docker daemon.

pub mod archive;
pub mod blob;
pub mod layout;
pub mod plan;
pub mod s3;
pub mod sink;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::auth::{self, Credentials};
use crate::cli::{ArchiveFormat, AuthMode, Compression};
use crate::error::{Error, Result, Signal};
use crate::identity::Registry;
use crate::plan::RegistrySource;
use crate::registry::RegistryApi;
use crate::report::{secs, Reporter};

use archive::{ArchiveWriter, Encoder};
use blob::{registry_error, Source, VerifiedBlob};
use layout::{Entry, Image, RawManifest};
use plan::{Destination, ExportPlan, Pick, Platforms};
use sink::Sink;

/// Configs larger than this are refused: a config is a few KiB and is held in memory.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub reference: String,
    /// The digest the reference resolved to (an image manifest or an index).
    pub digest: String,
    /// The config digest of the exported image (what `docker load` reports as its ID); `None` when
    /// several platforms were kept.
    pub image_id: Option<String>,
    pub destination: String,
    /// Bytes written to the destination (after compression).
    pub bytes: u64,
    /// Bytes of tar (before compression).
    pub tar_bytes: u64,
    pub parts: Option<usize>,
    pub secs: f64,
}

/// SIGINT and SIGTERM, as the error each one ends a run with.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let handler =
            |kind, name| signal(kind).map_err(|e| Error::Internal(format!("{name} handler: {e}")));
        Ok(Signals {
            interrupt: handler(SignalKind::interrupt(), "SIGINT")?,
            terminate: handler(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    async fn recv(&mut self) -> Error {
        tokio::select! {
            _ = self.interrupt.recv() => Error::Interrupted(Signal::Interrupt),
            _ = self.terminate.recv() => Error::Interrupted(Signal::Terminate),
        }
    }
}

/// Run the export; a signal stops it, and what was started in S3 is aborted first.
pub async fn run(plan: ExportPlan, reporter: &Reporter) -> Result<ExportSummary> {
    let mut signals = Signals::install()?;
    let started = Instant::now();
    let prepared = tokio::select! {
        prepared = prepare(&plan, reporter) => prepared?,
        error = signals.recv() => return Err(error),
    };
    let source = Source {
        api: &prepared.api,
        retry: &plan.retry,
        reporter,
        reference: &prepared.reference,
        registry: prepared.registry.host(),
        repository: plan.image.repository.as_str(),
    };
    let content = tokio::select! {
        content = resolve_content(&plan, &source) => content?,
        error = signals.recv() => return Err(error),
    };
    let entries = entries(&plan, &prepared, &content);
    let (committed, tar_bytes) =
        write(&plan, &prepared, &content, &entries, &source, &mut signals).await?;
    let summary = ExportSummary {
        reference: prepared.reference.clone(),
        digest: content.top.digest.clone(),
        image_id: (content.images.len() == 1).then(|| content.images[0].config.digest.clone()),
        destination: plan.destination.to_string(),
        bytes: committed.bytes,
        tar_bytes,
        parts: committed.object.as_ref().map(|o| o.parts),
        secs: secs(started.elapsed()),
    };
    reporter.step(format!(
        "exported {} ({}) to {}: {:.1} MiB{} in {:.1} s",
        summary.reference,
        summary.digest,
        summary.destination,
        summary.bytes as f64 / f64::from(1 << 20),
        summary
            .parts
            .map_or(String::new(), |n| format!(" in {n} parts")),
        summary.secs
    ));
    Ok(summary)
}

/// What the run holds once it can reach the registry.
struct Prepared {
    aws: Option<aws_config::SdkConfig>,
    registry: Registry,
    api: RegistryApi,
    /// `registry/repository:tag` or `…@digest`.
    reference: String,
}

async fn prepare(plan: &ExportPlan, reporter: &Reporter) -> Result<Prepared> {
    let needs_aws =
        plan.access.auth == AuthMode::Ecr || matches!(plan.destination, Destination::S3(_));
    let aws = if needs_aws {
        Some(auth::aws_config(plan.access.region.as_deref(), plan.retry.attempts).await)
    } else {
        None
    };
    let (registry, credentials) = match (plan.access.auth, &aws) {
        (AuthMode::Ecr, Some(config)) => {
            let token = auth::ecr_token(config).await?;
            let registry = match &plan.image.registry {
                RegistrySource::Known(registry) => registry.clone(),
                RegistrySource::FromEcrToken => token.proxy_endpoint.ok_or_else(|| {
                    Error::usage("--registry", "the ECR token names no registry endpoint; put the registry in REF or pass --registry")
                })?,
            };
            (registry, token.credentials)
        }
        _ => match &plan.image.registry {
            RegistrySource::Known(registry) => (registry.clone(), Credentials::Anonymous),
            RegistrySource::FromEcrToken => {
                return Err(Error::usage(
                    "--registry",
                    "no registry: put it in REF or pass --registry HOST[:PORT]",
                ))
            }
        },
    };
    let repository = &plan.image.repository;
    let reference = match &plan.image.pick {
        Pick::Tag(tag) => format!("{registry}/{}:{tag}", repository.as_str()),
        Pick::Digest(digest) => format!("{registry}/{}@{digest}", repository.as_str()),
    };
    reporter.step(format!("exporting {reference} to {}", plan.destination));
    Ok(Prepared {
        api: RegistryApi::new(&registry, repository, &credentials),
        aws,
        registry,
        reference,
    })
}

/// The manifests and configs of what is exported.
struct Content {
    /// What the reference resolved to.
    top: RawManifest,
    /// The manifest the archive names first: `top`, or the platform's manifest picked from it.
    exported: RawManifest,
    /// The manifests of an index whose every platform is kept.
    children: Vec<RawManifest>,
    images: Vec<Image>,
}

async fn resolve_content(plan: &ExportPlan, source: &Source<'_>) -> Result<Content> {
    let top = manifest(plan, source).await?;
    if !top.is_index() {
        let image = image(&top, source).await?;
        return Ok(Content {
            exported: top.clone(),
            top,
            children: Vec::new(),
            images: vec![image],
        });
    }
    let entries = top
        .children()
        .map_err(|e| malformed(source, &top.digest, &e))?;
    let wanted: Vec<_> = match &plan.platforms {
        Platforms::All => entries,
        Platforms::One(platform) => {
            let found = entries.iter().find(|child| {
                child
                    .platform()
                    .is_some_and(|p| layout::platform_matches(platform, &p))
            });
            let Some(child) = found else {
                let offered: Vec<String> = entries
                    .iter()
                    .filter_map(|c| c.platform().map(|p| p.to_string()))
                    .collect();
                return Err(Error::ImageNotFound {
                    reference: source.reference.to_string(),
                    detail: format!(
                        "the index {} has no {platform} image (it has {}); pick one with --platform, or keep all with --format oci --all-platforms",
                        top.digest,
                        offered.join(", ")
                    ),
                });
            };
            vec![child.clone()]
        }
    };
    let mut children = Vec::new();
    let mut images = Vec::new();
    for child in &wanted {
        let manifest = manifest_by_digest(source, &child.digest).await?;
        images.push(image(&manifest, source).await?);
        children.push(manifest);
    }
    if let Platforms::One(platform) = &plan.platforms {
        source
            .reporter
            .step(format!("{platform}: {}", children[0].digest));
        let exported = children.remove(0);
        return Ok(Content {
            top,
            exported,
            children,
            images,
        });
    }
    Ok(Content {
        exported: top.clone(),
        top,
        children,
        images,
    })
}

/// The manifest the reference names.
async fn manifest(plan: &ExportPlan, source: &Source<'_>) -> Result<RawManifest> {
    let found = match &plan.image.pick {
        Pick::Tag(tag) => source.api.manifest(tag).await,
        Pick::Digest(digest) => source.api.manifest_by_digest(digest).await,
    }
    .map_err(|e| registry_error(source, "the manifest", e))?;
    let manifest = found.ok_or_else(|| Error::ImageNotFound {
        reference: source.reference.to_string(),
        detail: match &plan.image.pick {
            Pick::Tag(tag) => format!("the repository has no tag {tag}"),
            Pick::Digest(digest) => format!("the repository has no manifest {digest}"),
        },
    })?;
    Ok(RawManifest {
        digest: manifest.digest().to_string(),
        media_type: manifest.media_type().to_string(),
        bytes: manifest.bytes().to_vec(),
    })
}

async fn manifest_by_digest(source: &Source<'_>, digest: &str) -> Result<RawManifest> {
    let found = source
        .api
        .manifest_by_digest(digest)
        .await
        .map_err(|e| registry_error(source, &format!("manifest {digest}"), e))?;
    let manifest = found.ok_or_else(|| Error::ImageNotFound {
        reference: source.reference.to_string(),
        detail: format!("the index names manifest {digest}, which the repository does not hold"),
    })?;
    Ok(RawManifest {
        digest: manifest.digest().to_string(),
        media_type: manifest.media_type().to_string(),
        bytes: manifest.bytes().to_vec(),
    })
}

/// An image manifest's config (read and verified) and layers.
async fn image(manifest: &RawManifest, source: &Source<'_>) -> Result<Image> {
    let (config, layers) = manifest
        .image_parts()
        .map_err(|e| malformed(source, &manifest.digest, &e))?;
    if config.size > MAX_CONFIG_BYTES {
        return Err(malformed(
            source,
            &manifest.digest,
            &format!("its config is {} bytes; a config is a few KiB", config.size),
        ));
    }
    let config_bytes = VerifiedBlob::new(source, &config.digest, config.size)
        .read_all()
        .await?;
    Ok(Image {
        manifest: manifest.clone(),
        config,
        config_bytes,
        layers,
    })
}

fn malformed(source: &Source<'_>, digest: &str, error: &dyn std::fmt::Display) -> Error {
    Error::ExportFailed {
        target: source.reference.to_string(),
        detail: format!("manifest {digest} cannot be exported: {error}"),
        kind: crate::error::FailureKind::Permanent,
    }
}

/// The archive's files.
fn entries(plan: &ExportPlan, prepared: &Prepared, content: &Content) -> Vec<Entry> {
    let repository = format!("{}/{}", prepared.registry, plan.image.repository.as_str());
    match plan.format {
        ArchiveFormat::Docker => {
            let repo_tag = match &plan.image.pick {
                Pick::Tag(tag) => Some((repository.as_str(), tag.as_str())),
                Pick::Digest(_) => None,
            };
            layout::docker_archive(&content.images[0], repo_tag)
        }
        ArchiveFormat::Oci => {
            let mut names = BTreeMap::new();
            if let Pick::Tag(tag) = &plan.image.pick {
                names.insert(
                    "org.opencontainers.image.ref.name".to_string(),
                    tag.to_string(),
                );
                names.insert(
                    "io.containerd.image.name".to_string(),
                    format!("{repository}:{tag}"),
                );
            }
            layout::oci_layout(
                &content.exported,
                &content.children,
                &content.images,
                &names,
            )
        }
    }
}

/// Open the destination, stream the archive into it, and commit; abandon it on any error or signal.
async fn write(
    plan: &ExportPlan,
    prepared: &Prepared,
    content: &Content,
    entries: &[Entry],
    source: &Source<'_>,
    signals: &mut Signals,
) -> Result<(sink::Committed, u64)> {
    // Made before the destination is opened: nothing can fail between opening and writing.
    let encoder = Encoder::new(plan.compression)?;
    let sink = open_sink(plan, prepared, content, entries, source.reporter).await?;
    let mut writer = ArchiveWriter::new(sink, encoder);
    let written = tokio::select! {
        written = write_entries(&mut writer, entries, source) => written,
        error = signals.recv() => Err(error),
    };
    let committed = match written {
        Ok(tar_bytes) => writer.sink_mut().commit().await.map(|c| (c, tar_bytes)),
        Err(error) => Err(error),
    };
    if committed.is_err() {
        if let Err(abandon) = writer.into_sink().abandon().await {
            source.reporter.warn(format!(
                "could not clean up {}: {abandon}",
                plan.destination
            ));
        }
    }
    committed
}

async fn write_entries(
    writer: &mut ArchiveWriter,
    entries: &[Entry],
    source: &Source<'_>,
) -> Result<u64> {
    for entry in entries {
        match entry {
            Entry::Inline { name, bytes } => writer.file(name, bytes).await?,
            Entry::Blob { name, digest, size } => {
                writer.begin(name, *size).await?;
                let mut blob = VerifiedBlob::new(source, digest, *size);
                while let Some(chunk) = blob.next().await? {
                    writer.data(&chunk).await?;
                }
                writer.end(*size).await?;
            }
        }
    }
    writer.finish().await
}

async fn open_sink(
    plan: &ExportPlan,
    prepared: &Prepared,
    content: &Content,
    entries: &[Entry],
    reporter: &Reporter,
) -> Result<Sink> {
    match &plan.destination {
        Destination::Stdout => Sink::stdout(),
        Destination::File(path) => Sink::file(path.clone()).await,
        Destination::S3(target) => {
            let Some(config) = &prepared.aws else {
                return Err(Error::Internal("no AWS configuration for S3".to_string()));
            };
            let client = s3::client(config, plan.s3_endpoint.as_deref());
            let mut options = plan.upload.clone();
            options.part_size = s3::part_size_for(archive::estimate(entries), options.part_size);
            let info = object_info(plan, prepared, content);
            let upload = s3::MultipartUpload::start(
                client,
                s3::StartUpload {
                    target,
                    options: &options,
                    info: &info,
                    endpoint: plan.s3_endpoint.as_deref(),
                    retry: &plan.retry,
                    reporter,
                },
            )
            .await?;
            Ok(Sink::S3(Box::new(upload)))
        }
    }
}

/// The S3 object's metadata: where it came from, by digest, and what it holds.
fn object_info(plan: &ExportPlan, prepared: &Prepared, content: &Content) -> s3::ObjectInfo {
    let mut metadata = BTreeMap::from([
        ("source-reference".to_string(), prepared.reference.clone()),
        ("source-digest".to_string(), content.top.digest.clone()),
        (
            "archive-format".to_string(),
            match plan.format {
                ArchiveFormat::Docker => "docker",
                ArchiveFormat::Oci => "oci",
            }
            .to_string(),
        ),
    ]);
    if let [image] = content.images.as_slice() {
        metadata.insert("image-digest".to_string(), image.manifest.digest.clone());
        metadata.insert("image-id".to_string(), image.config.digest.clone());
    }
    s3::ObjectInfo {
        metadata,
        content_type: match plan.compression {
            Compression::None => "application/x-tar",
            Compression::Gzip => "application/gzip",
            Compression::Zstd => "application/zstd",
        }
        .to_string(),
    }
}
