//! What an export archive holds, as a pure function of the manifests and configs: the entries of a
//! `docker save` archive (`manifest.json`, `repositories`, the config, one `layer.tar` per layer) or of
//! an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`). Blobs are named, never read
//! here: the writer streams them from the registry.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::json;

use crate::identity::Platform;

use super::plan::is_sha256_digest;

/// The platform this binary runs on, in OCI's names: what `--platform` defaults to.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Platform {
        os: "linux".to_string(),
        architecture: architecture.to_string(),
        variant: None,
    }
}

/// Whether an index entry for `offered` is the `wanted` platform. A variant asked for must match; none
/// asked for takes any (`linux/arm64` picks `linux/arm64/v8`), as the docker CLI does.
pub fn platform_matches(wanted: &Platform, offered: &Platform) -> bool {
    wanted.os == offered.os
        && wanted.architecture == offered.architecture
        && (wanted.variant.is_none() || wanted.variant == offered.variant)
}

/// A platform as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlatformDoc {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl From<&PlatformDoc> for Platform {
    fn from(doc: &PlatformDoc) -> Platform {
        Platform {
            os: doc.os.clone(),
            architecture: doc.architecture.clone(),
            variant: doc.variant.clone(),
        }
    }
}

/// A content descriptor: what a manifest says about a blob.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<PlatformDoc>,
}

impl Descriptor {
    /// The platform an index gives this entry.
    pub fn platform(&self) -> Option<Platform> {
        self.platform.as_ref().map(Platform::from)
    }
}

/// Why a manifest cannot be exported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("the manifest is not valid JSON of an image or an index: {0}")]
    Malformed(String),
    #[error("unsupported digest {0:?}: only sha256 digests are exported")]
    Digest(String),
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct IndexDoc {
    manifests: Vec<Descriptor>,
}

/// A manifest's bytes, as the registry holds them.
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl RawManifest {
    pub fn is_index(&self) -> bool {
        self.media_type.contains("manifest.list") || self.media_type.contains("image.index")
    }

    /// The descriptor that names this manifest.
    pub fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }

    /// The entries of an index.
    pub fn children(&self) -> Result<Vec<Descriptor>, LayoutError> {
        let doc: IndexDoc = serde_json::from_slice(&self.bytes)
            .map_err(|e| LayoutError::Malformed(e.to_string()))?;
        for child in &doc.manifests {
            check_digest(&child.digest)?;
        }
        Ok(doc.manifests)
    }

    /// The config and layers of an image manifest.
    pub fn image_parts(&self) -> Result<(Descriptor, Vec<Descriptor>), LayoutError> {
        let doc: ManifestDoc = serde_json::from_slice(&self.bytes)
            .map_err(|e| LayoutError::Malformed(e.to_string()))?;
        check_digest(&doc.config.digest)?;
        for layer in &doc.layers {
            check_digest(&layer.digest)?;
        }
        Ok((doc.config, doc.layers))
    }
}

/// Digests become file names: anything but `sha256:<hex>` could escape the archive's directories.
fn check_digest(digest: &str) -> Result<(), LayoutError> {
    if is_sha256_digest(digest) {
        Ok(())
    } else {
        Err(LayoutError::Digest(digest.to_string()))
    }
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// One image: its manifest, its config (small, read whole) and its layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: RawManifest,
    pub config: Descriptor,
    pub config_bytes: Vec<u8>,
    pub layers: Vec<Descriptor>,
}

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Small contents made here or read whole (JSON documents, configs, manifests).
    Inline { name: String, bytes: Vec<u8> },
    /// A registry blob, streamed and verified while it is written.
    Blob {
        name: String,
        digest: String,
        size: u64,
    },
}

impl Entry {
    pub fn name(&self) -> &str {
        match self {
            Entry::Inline { name, .. } | Entry::Blob { name, .. } => name,
        }
    }

    pub fn size(&self) -> u64 {
        match self {
            Entry::Inline { bytes, .. } => bytes.len() as u64,
            Entry::Blob { size, .. } => *size,
        }
    }
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    // A Value always serializes.
    serde_json::to_vec(value).unwrap_or_default()
}

/// What `docker save` writes, as Engine 20.10's `docker load` reads it: `manifest.json` first (so a
/// reader of the stream knows the image before its layers), `repositories`, the config as
/// `<hex>.json`, and each layer blob byte for byte as `<hex>/layer.tar` (a still compressed layer
/// loads: the daemon decompresses it and checks the config's `diff_ids`). A layer listed twice is
/// written once. `repo_tag` is the name `docker load` tags the image with.
pub fn docker_archive(image: &Image, repo_tag: Option<(&str, &str)>) -> Vec<Entry> {
    let config_name = format!("{}.json", hex(&image.config.digest));
    let layer_names: Vec<String> = image
        .layers
        .iter()
        .map(|l| format!("{}/layer.tar", hex(&l.digest)))
        .collect();
    let repo_tags: Vec<String> = repo_tag
        .iter()
        .map(|(repository, tag)| format!("{repository}:{tag}"))
        .collect();
    let manifest = json!([{ "Config": config_name, "RepoTags": repo_tags, "Layers": layer_names }]);
    let mut entries = vec![Entry::Inline {
        name: "manifest.json".to_string(),
        bytes: to_json(&manifest),
    }];
    if let (Some((repository, tag)), Some(top)) = (repo_tag, image.layers.last()) {
        let repositories = json!({ repository: { tag: hex(&top.digest) } });
        entries.push(Entry::Inline {
            name: "repositories".to_string(),
            bytes: to_json(&repositories),
        });
    }
    entries.push(Entry::Inline {
        name: config_name,
        bytes: image.config_bytes.clone(),
    });
    let mut seen = HashSet::new();
    for (layer, name) in image.layers.iter().zip(layer_names) {
        if seen.insert(layer.digest.clone()) {
            entries.push(Entry::Blob {
                name,
                digest: layer.digest.clone(),
                size: layer.size,
            });
        }
    }
    entries
}

/// An OCI image layout: `oci-layout`, `index.json` naming `top` (an image manifest, or an index when
/// every platform is kept) with `ref_name` as its `org.opencontainers.image.ref.name`, the manifests
/// `extra` (an index's children), and every image's config and layers under `blobs/sha256/`, each blob
/// once. Manifests are kept byte for byte, so `top`'s digest is the registry's.
pub fn oci_layout(
    top: &RawManifest,
    children: &[RawManifest],
    images: &[Image],
    names: &BTreeMap<String, String>,
) -> Vec<Entry> {
    let mut descriptor = top.descriptor();
    if !names.is_empty() {
        descriptor["annotations"] = json!(names);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [descriptor],
    });
    let mut entries = vec![
        Entry::Inline {
            name: "oci-layout".to_string(),
            bytes: to_json(&json!({"imageLayoutVersion": "1.0.0"})),
        },
        Entry::Inline {
            name: "index.json".to_string(),
            bytes: to_json(&index),
        },
    ];
    let mut seen = HashSet::new();
    let blob_name = |digest: &str| format!("blobs/sha256/{}", hex(digest));
    for manifest in std::iter::once(top).chain(children) {
        if seen.insert(manifest.digest.clone()) {
            entries.push(Entry::Inline {
                name: blob_name(&manifest.digest),
                bytes: manifest.bytes.clone(),
            });
        }
    }
    for image in images {
        if seen.insert(image.config.digest.clone()) {
            entries.push(Entry::Inline {
                name: blob_name(&image.config.digest),
                bytes: image.config_bytes.clone(),
            });
        }
        for layer in &image.layers {
            if seen.insert(layer.digest.clone()) {
                entries.push(Entry::Blob {
                    name: blob_name(&layer.digest),
                    digest: layer.digest.clone(),
                    size: layer.size,
                });
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(config: char, layers: &[char]) -> Image {
        let layers: Vec<Descriptor> = layers
            .iter()
            .map(|c| Descriptor {
                media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
                digest: digest(*c),
                size: 10,
                platform: None,
            })
            .collect();
        let config = Descriptor {
            media_type: "application/vnd.docker.container.image.v1+json".into(),
            digest: digest(config),
            size: 2,
            platform: None,
        };
        let bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": config.media_type, "digest": config.digest, "size": 2},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        }))
        .unwrap();
        Image {
            manifest: RawManifest {
                digest: digest('f'),
                media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
                bytes,
            },
            config,
            config_bytes: b"{}".to_vec(),
            layers,
        }
    }

    fn inline<'a>(entries: &'a [Entry], name: &str) -> &'a [u8] {
        entries
            .iter()
            .find_map(|e| match e {
                Entry::Inline { name: n, bytes } if n == name => Some(bytes.as_slice()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn docker_archive_is_what_docker_save_writes() {
        let img = image('c', &['a', 'b', 'a']);
        let entries = docker_archive(&img, Some(("127.0.0.1:5000/team/api", "v1")));
        let names: Vec<&str> = entries.iter().map(Entry::name).collect();
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        assert_eq!(
            names,
            [
                "manifest.json".to_string(),
                "repositories".to_string(),
                format!("{c}.json"),
                format!("{a}/layer.tar"),
                format!("{b}/layer.tar"),
            ]
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(inline(&entries, "manifest.json")).unwrap();
        assert_eq!(
            manifest,
            json!([{
                "Config": format!("{c}.json"),
                "RepoTags": ["127.0.0.1:5000/team/api:v1"],
                "Layers": [format!("{a}/layer.tar"), format!("{b}/layer.tar"), format!("{a}/layer.tar")],
            }])
        );
        let repositories: serde_json::Value =
            serde_json::from_slice(inline(&entries, "repositories")).unwrap();
        assert_eq!(repositories, json!({"127.0.0.1:5000/team/api": {"v1": a}}));
        assert_eq!(inline(&entries, &format!("{c}.json")), b"{}");
    }

    #[test]
    fn an_untagged_docker_archive_has_no_repo_tags() {
        let entries = docker_archive(&image('c', &['a']), None);
        let manifest: serde_json::Value =
            serde_json::from_slice(inline(&entries, "manifest.json")).unwrap();
        assert_eq!(manifest[0]["RepoTags"], json!([]));
        assert!(entries.iter().all(|e| e.name() != "repositories"));
    }

    #[test]
    fn oci_layout_names_the_top_manifest_and_holds_each_blob_once() {
        let one = image('c', &['a', 'b']);
        let mut two = image('d', &['b', 'e']);
        two.manifest.digest = digest('9');
        let top = RawManifest {
            digest: digest('1'),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            bytes: b"{\"manifests\":[]}".to_vec(),
        };
        let names = BTreeMap::from([(
            "org.opencontainers.image.ref.name".to_string(),
            "v1".to_string(),
        )]);
        let entries = oci_layout(
            &top,
            &[one.manifest.clone(), two.manifest.clone()],
            &[one, two],
            &names,
        );
        let index: serde_json::Value =
            serde_json::from_slice(inline(&entries, "index.json")).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest('1'));
        assert_eq!(index["manifests"][0]["size"], 16);
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
        assert_eq!(
            inline(&entries, "oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let blobs: Vec<&str> = entries
            .iter()
            .map(Entry::name)
            .filter(|n| n.starts_with("blobs/"))
            .collect();
        let unique: HashSet<&&str> = blobs.iter().collect();
        assert_eq!(blobs.len(), unique.len(), "a blob written twice: {blobs:?}");
        // Top, two manifests, two configs, three distinct layers.
        assert_eq!(blobs.len(), 8);
    }

    #[test]
    fn digests_that_could_escape_the_archive_are_refused() {
        let bytes = serde_json::to_vec(&json!({
            "config": {"digest": "sha256:../../etc/passwd", "size": 1},
            "layers": [],
        }))
        .unwrap();
        let manifest = RawManifest {
            digest: digest('f'),
            media_type: String::new(),
            bytes,
        };
        assert_eq!(
            manifest.image_parts().unwrap_err(),
            LayoutError::Digest("sha256:../../etc/passwd".into())
        );
    }

    #[test]
    fn platforms_match_like_the_docker_cli() {
        let parse = |v| Platform::parse("--platform", v).unwrap();
        assert!(platform_matches(
            &parse("linux/arm64"),
            &parse("linux/arm64/v8")
        ));
        assert!(!platform_matches(
            &parse("linux/arm64/v8"),
            &parse("linux/arm64/v7")
        ));
        assert!(!platform_matches(
            &parse("linux/arm64"),
            &parse("linux/amd64")
        ));
        assert!(platform_matches(&host_platform(), &host_platform()));
    }
}
