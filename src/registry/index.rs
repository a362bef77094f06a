//! Multi-platform indexes, as pure functions: the OCI image index over one image per platform, the
//! platform an image's config declares, and the entries of an index read back.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::relabel::sha256_digest;
use crate::identity::Platform;

/// The OCI image index media type; the SHA tag of a multi-platform image is one of these.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// One platform's image, as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: String,
    pub size: usize,
    pub platform: Platform,
}

/// The index over `entries` (in their order) with `annotations`, and its digest: the exact bytes to
/// PUT, so the digest the registry computes is this one.
pub fn index_document(
    entries: &[IndexEntry],
    annotations: &BTreeMap<String, String>,
) -> (Vec<u8>, String) {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut platform = json!({
                "architecture": entry.platform.architecture,
                "os": entry.platform.os,
            });
            if let Some(variant) = &entry.platform.variant {
                platform["variant"] = json!(variant);
            }
            json!({
                "mediaType": entry.media_type,
                "digest": entry.digest,
                "size": entry.size,
                "platform": platform,
            })
        })
        .collect();
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    if !annotations.is_empty() {
        index["annotations"] = json!(annotations);
    }
    let bytes = serde_json::to_vec(&index).unwrap_or_default();
    let digest = sha256_digest(&bytes);
    (bytes, digest)
}

/// The entries of an index (or manifest list); `None` when `manifest` is not one.
pub fn index_entries(manifest: &[u8]) -> Option<Vec<IndexEntry>> {
    let value: Value = serde_json::from_slice(manifest).ok()?;
    let manifests = value.get("manifests")?.as_array()?;
    manifests
        .iter()
        .map(|m| {
            let platform = m.get("platform")?;
            Some(IndexEntry {
                media_type: m.get("mediaType")?.as_str()?.to_string(),
                digest: m.get("digest")?.as_str()?.to_string(),
                size: usize::try_from(m.get("size")?.as_u64()?).ok()?,
                platform: Platform {
                    os: platform.get("os")?.as_str()?.to_string(),
                    architecture: platform.get("architecture")?.as_str()?.to_string(),
                    variant: platform
                        .get("variant")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                },
            })
        })
        .collect()
}

/// An index's annotations (empty when it has none).
pub fn index_annotations(manifest: &[u8]) -> BTreeMap<String, String> {
    serde_json::from_slice::<Value>(manifest)
        .ok()
        .and_then(|v| v.get("annotations").cloned())
        .and_then(|a| serde_json::from_value(a).ok())
        .unwrap_or_default()
}

/// The platform an image config declares (`os`, `architecture`, `variant`).
pub fn platform_of_config(config: &[u8]) -> Result<Platform, String> {
    let value: Value =
        serde_json::from_slice(config).map_err(|e| format!("the config is not JSON: {e}"))?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    match (field("os"), field("architecture")) {
        (Some(os), Some(architecture)) => Ok(Platform {
            os,
            architecture,
            variant: field("variant").filter(|v| !v.is_empty()),
        }),
        _ => Err("the config names no os and architecture".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str, digest: &str) -> IndexEntry {
        IndexEntry {
            media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            digest: digest.into(),
            size: 528,
            platform: Platform::parse("p", platform).unwrap(),
        }
    }

    #[test]
    fn an_index_lists_each_platform_and_reads_back() {
        let entries = [
            entry("linux/amd64", "sha256:aa"),
            entry("linux/arm/v7", "sha256:bb"),
        ];
        let annotations: BTreeMap<String, String> = [(
            "org.opencontainers.image.revision".to_string(),
            "abc".to_string(),
        )]
        .into();
        let (bytes, digest) = index_document(&entries, &annotations);
        assert_eq!(digest, sha256_digest(&bytes));
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["mediaType"], OCI_INDEX_MEDIA_TYPE);
        assert_eq!(value["schemaVersion"], 2);
        assert_eq!(value["manifests"][1]["platform"]["variant"], "v7");
        assert!(value["manifests"][0]["platform"].get("variant").is_none());
        assert_eq!(index_entries(&bytes).unwrap(), entries);
        assert_eq!(index_annotations(&bytes), annotations);
        // The same input gives the same bytes, so a re-run writes the same digest.
        assert_eq!(index_document(&entries, &annotations).1, digest);
        assert!(index_entries(br#"{"schemaVersion":2,"config":{}}"#).is_none());
    }

    #[test]
    fn a_config_names_its_platform() {
        let arm = platform_of_config(br#"{"os":"linux","architecture":"arm64","variant":"v8"}"#);
        assert_eq!(arm.unwrap().to_string(), "linux/arm64/v8");
        let amd = platform_of_config(br#"{"os":"linux","architecture":"amd64","variant":""}"#);
        assert_eq!(amd.unwrap().to_string(), "linux/amd64");
        assert!(platform_of_config(br#"{"os":"linux"}"#).is_err());
        assert!(platform_of_config(b"{").is_err());
    }
}
