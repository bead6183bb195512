//! OCI artifacts and their distribution: an [`artifact::Artifact`] is a
//! config and layers, each a [`artifact::Blob`] with its own media type,
//! plus annotations, so a container image and a Helm chart are built and
//! pushed the same way; [`artifact::Index`] lists artifacts per platform.
//! [`layer`] builds reproducible tar+gzip layers; [`push`] speaks the
//! distribution protocol to a registry with credentials from a
//! [`push::CredentialSource`].

pub mod artifact;
pub mod layer;
pub mod push;

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
