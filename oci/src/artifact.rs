//! Artifacts as the OCI image spec (v1.1) describes them: blobs with media
//! types, a manifest naming a config and layers, and an index naming
//! manifests. Manifests serialize the same way for the same inputs, so an
//! artifact's digest depends only on its content.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

/// Media type of an image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an image index.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a container image's config.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzipped container image layer.
pub const IMAGE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Bytes with their digest and media type.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its media type.
    pub media_type: Arc<str>,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The bytes.
    pub bytes: Arc<[u8]>,
}

impl Blob {
    /// `bytes` as a blob of `media_type`.
    pub fn new(media_type: &str, bytes: impl Into<Arc<[u8]>>) -> Blob {
        let bytes = bytes.into();
        Blob {
            media_type: media_type.into(),
            digest: crate::digest(&bytes),
            bytes,
        }
    }

    /// How a manifest names this blob.
    pub fn descriptor(&self) -> Descriptor<'_> {
        Descriptor {
            media_type: &self.media_type,
            digest: &self.digest,
            size: self.bytes.len(),
            platform: None,
        }
    }
}

/// A blob as a manifest or an index names it.
#[derive(Debug, Clone, Serialize)]
pub struct Descriptor<'a> {
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: &'a str,
    /// Its digest.
    pub digest: &'a str,
    /// Its length in bytes.
    pub size: usize,
    /// Where an index entry runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An operating system and CPU architecture, as an index names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
}

/// A config and layers under one manifest.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The config blob (its media type says what kind of artifact this is).
    pub config: Blob,
    /// The layers, in order.
    pub layers: Vec<Blob>,
    /// The manifest, whose digest is the artifact's.
    pub manifest: Blob,
}

impl Artifact {
    /// The artifact of `config` and `layers`, with `annotations` on its
    /// manifest (none are written when there are none).
    pub fn new(
        config: Blob,
        layers: Vec<Blob>,
        annotations: &BTreeMap<String, String>,
    ) -> Artifact {
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        if !annotations.is_empty() {
            manifest["annotations"] = json!(annotations);
        }
        // The same value always serializes to the same text.
        let manifest = Blob::new(MANIFEST, serde_json::to_vec(&manifest).expect("serializes"));
        Artifact {
            config,
            layers,
            manifest,
        }
    }

    /// Every blob the manifest names, layers first: what goes to the
    /// registry before the manifest.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers.iter().chain(std::iter::once(&self.config))
    }
}

/// An image index: one manifest per platform, pushed after them.
#[derive(Debug, Clone)]
pub struct Index {
    /// The index itself, whose digest names the whole set.
    pub manifest: Blob,
}

impl Index {
    /// The index of `manifests`, each with the platform it runs on.
    pub fn new(manifests: &[(&Artifact, Platform)]) -> Index {
        let entries: Vec<Descriptor<'_>> = manifests
            .iter()
            .map(|(artifact, platform)| Descriptor {
                platform: Some(platform.clone()),
                ..artifact.manifest.descriptor()
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": entries,
        });
        Index {
            manifest: Blob::new(INDEX, serde_json::to_vec(&index).expect("serializes")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Artifact {
        let config = Blob::new(
            "application/vnd.cncf.helm.config.v1+json",
            br#"{"name":"shop","version":"1.0.0"}"#.to_vec(),
        );
        let layer = Blob::new(
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            b"chart".to_vec(),
        );
        let annotations =
            BTreeMap::from([("org.opencontainers.image.title".into(), "shop".into())]);
        Artifact::new(config, vec![layer], &annotations)
    }

    #[test]
    fn a_manifest_names_each_blob_with_its_own_media_type() {
        let artifact = chart();
        let manifest: serde_json::Value = serde_json::from_slice(&artifact.manifest.bytes).unwrap();
        assert_eq!(manifest["mediaType"], MANIFEST);
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.cncf.helm.config.v1+json"
        );
        assert_eq!(
            manifest["config"]["digest"],
            artifact.config.digest.as_str()
        );
        assert_eq!(manifest["config"]["size"], 33);
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
        );
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.title"],
            "shop"
        );
        assert_eq!(
            artifact.manifest.digest,
            crate::digest(&artifact.manifest.bytes)
        );
        assert_eq!(
            artifact.manifest.digest,
            chart().manifest.digest,
            "reproducible"
        );
        let blobs: Vec<&str> = artifact.blobs().map(|b| &*b.media_type).collect();
        assert_eq!(
            blobs.last(),
            Some(&"application/vnd.cncf.helm.config.v1+json")
        );
    }

    #[test]
    fn an_artifact_without_annotations_has_none_in_its_manifest() {
        let artifact = Artifact::new(
            Blob::new(IMAGE_CONFIG, b"{}".to_vec()),
            vec![],
            &BTreeMap::new(),
        );
        let manifest: serde_json::Value = serde_json::from_slice(&artifact.manifest.bytes).unwrap();
        assert!(manifest.get("annotations").is_none());
        assert_eq!(manifest["layers"], json!([]));
    }

    #[test]
    fn an_index_names_each_manifest_with_its_platform() {
        let artifact = chart();
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
        };
        let index = Index::new(&[(&artifact, amd64)]);
        let value: serde_json::Value = serde_json::from_slice(&index.manifest.bytes).unwrap();
        assert_eq!(&*index.manifest.media_type, INDEX);
        assert_eq!(value["mediaType"], INDEX);
        assert_eq!(
            value["manifests"][0]["digest"],
            artifact.manifest.digest.as_str()
        );
        assert_eq!(value["manifests"][0]["mediaType"], MANIFEST);
        assert_eq!(value["manifests"][0]["platform"]["architecture"], "amd64");
    }
}
