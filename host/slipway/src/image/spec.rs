//! The image config and manifest (OCI image spec v1), serialized with a
//! fixed field order so the same inputs give the same digests.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::layer::{LAYER_MEDIA_TYPE, Layer, digest};

/// OCI media type of an image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI media type of an image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The port the engine listens on in the image.
pub const PORT: u16 = 8080;

/// What an image says about where it came from.
#[derive(Debug, Clone)]
pub struct ImageMeta {
    /// The organisation's name.
    pub organisation: String,
    /// The integration released.
    pub integration: String,
    /// Its canvas version.
    pub version: u32,
}

/// A blob with its digest and media type.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its media type.
    pub media_type: &'static str,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The bytes.
    pub bytes: Arc<[u8]>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: digest(&bytes),
            bytes: bytes.into(),
        }
    }
}

/// A built image: its layers, config and manifest.
#[derive(Debug, Clone)]
pub struct Image {
    /// Layers, bottom first.
    pub layers: Vec<Arc<Layer>>,
    /// The config blob.
    pub config: Blob,
    /// The manifest, whose digest is the image's.
    pub manifest: Blob,
}

impl Image {
    /// Every blob the manifest names: the layers, then the config.
    pub fn blobs(&self) -> Vec<Blob> {
        self.layers
            .iter()
            .map(|l| Blob {
                media_type: LAYER_MEDIA_TYPE,
                digest: l.digest.clone(),
                bytes: l.blob.clone(),
            })
            .chain(std::iter::once(self.config.clone()))
            .collect()
    }
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: &'a str,
    size: usize,
}

/// Assembles the config and manifest over `layers`.
pub(super) fn image(layers: [Arc<Layer>; 3], meta: &ImageMeta, epoch: u64) -> Image {
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch),
    )
    .to_string();
    let flow_digest = &layers[2].diff_id;
    let labels: BTreeMap<&str, String> = BTreeMap::from([
        ("org.opencontainers.image.title", meta.integration.clone()),
        ("org.opencontainers.image.version", meta.version.to_string()),
        ("org.opencontainers.image.created", created.clone()),
        ("org.opencontainers.image.revision", flow_digest.clone()),
        (
            "org.opencontainers.image.source",
            format!(
                "slipway://{}/integrations/{}/versions/{}",
                meta.organisation, meta.integration, meta.version
            ),
        ),
    ]);
    let history = super::LAYER_CONTENTS
        .map(|what| json!({"created": created, "created_by": format!("slipway: {what}")}));
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "65532:65532",
            "ExposedPorts": {format!("{PORT}/tcp"): {}},
            "Env": [format!("PORT={PORT}")],
            "Entrypoint": ["/slipway-engine", "--bundle", "/bundle"],
            "Labels": labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": history,
    });
    // The same value always serializes to the same text.
    let config = Blob::new(
        CONFIG_MEDIA_TYPE,
        serde_json::to_vec(&config).expect("serializes"),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": Descriptor {
            media_type: CONFIG_MEDIA_TYPE,
            digest: &config.digest,
            size: config.bytes.len(),
        },
        "layers": layers.iter().map(|l| Descriptor {
            media_type: LAYER_MEDIA_TYPE,
            digest: &l.digest,
            size: l.blob.len(),
        }).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(
        MANIFEST_MEDIA_TYPE,
        serde_json::to_vec(&manifest).expect("serializes"),
    );
    Image {
        layers: layers.into(),
        config,
        manifest,
    }
}
