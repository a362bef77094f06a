//! Publishing an image with labels added to its config, as pure data: manifest and config bytes in, the
//! new config and manifest with their digests out. The registry client does the I/O around it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Why a manifest or config could not be relabelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelabelError {
    #[error("the manifest is not a JSON object: {0}")]
    Manifest(String),
    #[error("the manifest has no config descriptor (a manifest list or index?)")]
    NoConfig,
    #[error("the image config is not JSON: {0}")]
    Config(String),
    #[error("the image config has no \"config\" object")]
    NoImageConfig,
}

/// The labelled image: a new config blob and a manifest that points at it, byte for byte as they are to
/// be written, with their content addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relabelled {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

/// Add `labels` to the image config (replacing labels of the same name) and point the manifest at the
/// new config. Everything else in both documents is kept, layers included, so only the config blob and
/// the manifest are new objects in the registry.
pub fn relabel(
    manifest: &[u8],
    config: &[u8],
    labels: &BTreeMap<String, String>,
) -> Result<Relabelled, RelabelError> {
    relabel_replacing(manifest, config, &[], labels)
}

/// As [`relabel`], with the labels named in `dropped` removed first: an image republished for
/// another commit must not keep the first commit's provenance labels that the new one lacks.
pub fn relabel_replacing(
    manifest: &[u8],
    config: &[u8],
    dropped: &[&str],
    labels: &BTreeMap<String, String>,
) -> Result<Relabelled, RelabelError> {
    let mut manifest: Value =
        serde_json::from_slice(manifest).map_err(|e| RelabelError::Manifest(e.to_string()))?;
    if !manifest.get("config").is_some_and(Value::is_object) {
        return Err(if manifest.is_object() {
            RelabelError::NoConfig
        } else {
            RelabelError::Manifest("not an object".to_string())
        });
    }
    let mut config: Value =
        serde_json::from_slice(config).map_err(|e| RelabelError::Config(e.to_string()))?;
    let image_config = config
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or(RelabelError::NoImageConfig)?;
    let existing = image_config
        .entry("Labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !existing.is_object() {
        // `"Labels": null` is how Docker writes an image without labels.
        *existing = Value::Object(Map::new());
    }
    if let Some(existing) = existing.as_object_mut() {
        for key in dropped {
            existing.remove(*key);
        }
        for (key, value) in labels {
            existing.insert(key.clone(), Value::String(value.clone()));
        }
    }
    let config = serde_json::to_vec(&config).map_err(|e| RelabelError::Config(e.to_string()))?;
    let config_digest = sha256_digest(&config);
    manifest["config"]["digest"] = Value::String(config_digest.clone());
    manifest["config"]["size"] = Value::from(config.len());
    let manifest =
        serde_json::to_vec(&manifest).map_err(|e| RelabelError::Manifest(e.to_string()))?;
    Ok(Relabelled {
        config_digest,
        config,
        manifest_digest: sha256_digest(&manifest),
        manifest,
    })
}

/// The labels of an image config (`config.Labels`); none when it has no labels.
pub fn labels_of_config(config: &[u8]) -> Result<BTreeMap<String, String>, RelabelError> {
    let config: Value =
        serde_json::from_slice(config).map_err(|e| RelabelError::Config(e.to_string()))?;
    Ok(config["config"]["Labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// `sha256:<hex>` of `bytes`, the content address of a blob or manifest.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"sha256:old"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":32,"digest":"sha256:layer"}]}"#;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_are_added_and_the_manifest_points_at_the_new_config() {
        let config = br#"{"architecture":"amd64","config":{"Labels":{"keep":"1","over":"old"}},"rootfs":{"type":"layers"}}"#;
        let out = relabel(
            MANIFEST.as_bytes(),
            config,
            &labels(&[("over", "new"), ("added", "x")]),
        )
        .unwrap();
        assert_eq!(
            labels_of_config(&out.config).unwrap(),
            labels(&[("added", "x"), ("keep", "1"), ("over", "new")])
        );
        let config: Value = serde_json::from_slice(&out.config).unwrap();
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["rootfs"]["type"], "layers");
        assert_eq!(out.config_digest, sha256_digest(&out.config));
        assert_eq!(out.manifest_digest, sha256_digest(&out.manifest));
        let manifest: Value = serde_json::from_slice(&out.manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], out.config_digest.as_str());
        assert_eq!(manifest["config"]["size"], out.config.len());
        // The layers are the base's.
        assert_eq!(manifest["layers"][0]["digest"], "sha256:layer");
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
    }

    #[test]
    fn null_or_missing_labels_become_an_object() {
        for config in [
            &br#"{"config":{"Labels":null}}"#[..],
            &br#"{"config":{}}"#[..],
        ] {
            let out = relabel(MANIFEST.as_bytes(), config, &labels(&[("a", "b")])).unwrap();
            assert_eq!(
                labels_of_config(&out.config).unwrap(),
                labels(&[("a", "b")])
            );
        }
    }

    #[test]
    fn the_same_input_gives_the_same_digests() {
        let config = br#"{"config":{"Labels":{"z":"1","a":"2"}}}"#;
        let one = relabel(MANIFEST.as_bytes(), config, &labels(&[("k", "v")])).unwrap();
        let two = relabel(MANIFEST.as_bytes(), config, &labels(&[("k", "v")])).unwrap();
        assert_eq!(one, two);
        let other = relabel(MANIFEST.as_bytes(), config, &labels(&[("k", "w")])).unwrap();
        assert_ne!(one.manifest_digest, other.manifest_digest);
    }

    #[test]
    fn malformed_documents_are_refused() {
        let config = br#"{"config":{}}"#;
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            relabel(index, config, &BTreeMap::new()),
            Err(RelabelError::NoConfig)
        );
        assert!(matches!(
            relabel(b"not json", config, &BTreeMap::new()),
            Err(RelabelError::Manifest(_))
        ));
        assert!(matches!(
            relabel(MANIFEST.as_bytes(), b"{", &BTreeMap::new()),
            Err(RelabelError::Config(_))
        ));
        assert_eq!(
            relabel(MANIFEST.as_bytes(), br#"{"rootfs":{}}"#, &BTreeMap::new()),
            Err(RelabelError::NoImageConfig)
        );
    }

    #[test]
    fn digests_are_lowercase_hex_sha256() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn dropped_labels_go_before_the_new_ones_are_added() {
        let config = br#"{"config":{"Labels":{"old":"1","keep":"2","swap":"3"}}}"#;
        let out = relabel_replacing(
            MANIFEST.as_bytes(),
            config,
            &["old", "swap"],
            &labels(&[("swap", "4")]),
        )
        .unwrap();
        let got = labels_of_config(&out.config).unwrap();
        assert_eq!(got, labels(&[("keep", "2"), ("swap", "4")]));
    }
}
