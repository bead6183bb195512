//! The image config and manifest (OCI image spec v1), serialized with a
//! fixed field order so the same inputs give the same digests.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use slipway_oci::artifact::{Artifact, Blob, IMAGE_CONFIG, IMAGE_LAYER};
use slipway_oci::layer::Layer;

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

/// A built image: its layers, and the artifact (config and manifest) over them.
#[derive(Debug, Clone)]
pub struct Image {
    /// Layers, bottom first.
    pub layers: Vec<Arc<Layer>>,
    /// The config and manifest; the manifest's digest is the image's.
    pub artifact: Artifact,
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
        IMAGE_CONFIG,
        serde_json::to_vec(&config).expect("serializes"),
    );
    let blobs = layers.iter().map(|l| l.to_blob(IMAGE_LAYER)).collect();
    Image {
        layers: layers.into(),
        artifact: Artifact::new(config, blobs, &BTreeMap::new()),
    }
}
