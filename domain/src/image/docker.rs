//! Images built by a Docker Engine from a Dockerfile and a build context
//! (bollard), for what cannot be built in-process: deploy plans that build
//! uploaded code or a git checkout.

use std::collections::HashMap;
use std::time::Duration;

use std::collections::BTreeMap;
use std::io::Read;

use bollard::auth::DockerCredentials;
use bollard::models::ImageId;
use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptionsBuilder};
use futures::StreamExt;
use slipway_oci::artifact::{Artifact, Blob, IMAGE_CONFIG, IMAGE_LAYER};

use super::context::{BuildContext, ContextError};

/// The build log lines kept; beyond this many the oldest go.
const LOG_LINES_KEPT: usize = 1000;

/// What to build from a context.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// The `name:tag` the image gets.
    pub tag: String,
    /// `ARG` values.
    pub build_args: HashMap<String, String>,
    /// Labels added to the image.
    pub labels: HashMap<String, String>,
    /// The build is stopped after this long.
    pub time_limit: Duration,
    /// Credentials for pulling `FROM` images, by registry host. Every
    /// `FROM` image is pulled, so a build uses nothing the engine holds for
    /// another organisation.
    pub pull_credentials: HashMap<String, DockerCredentials>,
    /// Bytes of memory a step may use (no swap).
    pub memory: i32,
}

/// Memory a build step may use by default (my choice).
pub const BUILD_MEMORY: i32 = 1 << 30;

impl BuildOptions {
    /// `Dockerfile` at the context's root, tagged `tag`, 10 minutes and
    /// [`BUILD_MEMORY`] at most; `RUN` steps never have a network.
    pub fn new(tag: impl Into<String>) -> BuildOptions {
        BuildOptions {
            dockerfile: "Dockerfile".into(),
            tag: tag.into(),
            build_args: HashMap::new(),
            labels: HashMap::new(),
            time_limit: Duration::from_secs(600),
            pull_credentials: HashMap::new(),
            memory: BUILD_MEMORY,
        }
    }
}

/// A built image.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image id (`sha256:...`), as the engine names it.
    pub id: String,
    /// The build's output, line by line.
    pub log: Vec<String>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The context is not usable; nothing was sent.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The Docker Engine could not be reached.
    #[error("the Docker Engine is unavailable: {0}")]
    Unavailable(String),
    /// A step failed; `message` is the engine's.
    #[error("the Docker build failed: {message}")]
    Failed {
        /// The engine's error.
        message: String,
        /// The output up to the failure.
        log: Vec<String>,
    },
    /// The built image could not be read back from the engine.
    #[error("the built image cannot be read from the engine: {0}")]
    Export(String),
    /// The build ran past its time limit and was stopped.
    #[error("the Docker build took longer than {}s and was stopped", .0.as_secs_f64())]
    TimedOut(Duration),
}

/// Builds images on a Docker Engine.
#[derive(Debug, Clone)]
pub struct DockerBuilder {
    docker: bollard::Docker,
}

impl DockerBuilder {
    /// The engine `DOCKER_HOST` names, or the local socket.
    pub fn connect() -> Result<DockerBuilder, BuildError> {
        let docker = bollard::Docker::connect_with_local_defaults()
            .map_err(|e| BuildError::Unavailable(e.to_string()))?;
        Ok(DockerBuilder { docker })
    }

    /// Builds `context` as `options` say. Dropping the connection at the
    /// time limit makes the engine cancel the build.
    pub async fn build(
        &self,
        context: BuildContext,
        options: &BuildOptions,
    ) -> Result<Built, BuildError> {
        context.require(&options.dockerfile)?;
        let query = BuildImageOptionsBuilder::new()
            .dockerfile(&options.dockerfile)
            .t(&options.tag)
            .buildargs(&options.build_args)
            .labels(&options.labels)
            .rm(true)
            .forcerm(true)
            .pull("true")
            .networkmode("none")
            .memory(options.memory)
            .memswap(options.memory)
            .build();
        let body = bollard::body_full(context.into_tar().into());
        let mut stream =
            self.docker
                .build_image(query, Some(options.pull_credentials.clone()), Some(body));
        let mut log = Vec::new();
        let run = async {
            let mut id = None;
            while let Some(item) = stream.next().await {
                let info = match item {
                    Ok(info) => info,
                    Err(bollard::errors::Error::DockerStreamError { error }) => {
                        return Err(failed(error, &mut log));
                    }
                    Err(
                        e @ (bollard::errors::Error::DockerResponseServerError { .. }
                        | bollard::errors::Error::JsonDataError { .. }),
                    ) => return Err(failed(e.to_string(), &mut log)),
                    Err(e) => return Err(BuildError::Unavailable(e.to_string())),
                };
                if let Some(text) = info.stream {
                    keep(&mut log, &text);
                }
                if let Some(detail) = info.error_detail {
                    return Err(failed(detail.message.unwrap_or_default(), &mut log));
                }
                if let Some(ImageId { id: Some(built) }) = info.aux {
                    id = Some(built);
                }
            }
            Ok(id)
        };
        let id = tokio::time::timeout(options.time_limit, run)
            .await
            .map_err(|_| BuildError::TimedOut(options.time_limit))??;
        match id {
            Some(id) => Ok(Built { id, log }),
            None => Err(failed(
                "the engine ended the build without an image".into(),
                &mut log,
            )),
        }
    }
}

impl DockerBuilder {
    /// Image `name` as the engine saves it, as an OCI artifact: its config
    /// and its layers as saved (uncompressed tars); at most `max` bytes.
    pub async fn export(&self, name: &str, max: u64) -> Result<Artifact, BuildError> {
        let mut stream = self.docker.export_image(name);
        let mut saved = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BuildError::Export(e.to_string()))?;
            if (saved.len() + chunk.len()) as u64 > max {
                return Err(BuildError::Export(format!(
                    "the built image is larger than {max} bytes"
                )));
            }
            saved.extend_from_slice(&chunk);
        }
        saved_artifact(&saved).map_err(BuildError::Export)
    }

    /// Removes the engine's image `name`, once pushed (logged on failure).
    pub async fn remove(&self, name: &str) {
        let options = RemoveImageOptionsBuilder::new().force(true).build();
        if let Err(e) = self.docker.remove_image(name, Some(options), None).await {
            tracing::warn!(image = name, error = %e, "cannot remove a built image");
        }
    }
}

/// The artifact in `docker save`'s output: `manifest.json` names the
/// config and the layers, bottom first, by their paths in the archive.
fn saved_artifact(saved: &[u8]) -> Result<Artifact, String> {
    let mut files = std::collections::HashMap::new();
    let mut archive = tar::Archive::new(saved);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        files.insert(path, bytes);
    }
    let manifest: serde_json::Value = files
        .get("manifest.json")
        .and_then(|m| serde_json::from_slice(m).ok())
        .ok_or("the saved image has no manifest.json")?;
    let file = |path: &serde_json::Value| {
        path.as_str()
            .and_then(|p| files.get(p))
            .cloned()
            .ok_or_else(|| format!("the saved image lacks {path}"))
    };
    let first = &manifest[0];
    let config = Blob::new(IMAGE_CONFIG, file(&first["Config"])?);
    let layers = first["Layers"]
        .as_array()
        .ok_or("the saved image names no layers")?
        .iter()
        .map(|path| {
            let bytes = file(path)?;
            let media_type = if bytes.starts_with(&[0x1f, 0x8b]) {
                IMAGE_LAYER
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            Ok(Blob::new(media_type, bytes))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Artifact::new(config, layers, &BTreeMap::new()))
}

/// Appends the lines of `text`, keeping the last [`LOG_LINES_KEPT`].
fn keep(log: &mut Vec<String>, text: &str) {
    log.extend(
        text.lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(str::to_string),
    );
    if log.len() > LOG_LINES_KEPT {
        log.drain(..log.len() - LOG_LINES_KEPT);
    }
}

fn failed(message: String, log: &mut Vec<String>) -> BuildError {
    BuildError::Failed {
        message: message.trim().to_string(),
        log: std::mem::take(log),
    }
}

/// The images a Dockerfile's `FROM` lines name, other than `scratch` and
/// its own earlier stages; refused when one cannot be known before the
/// build (an `ARG` in it).
pub fn base_images(dockerfile: &str) -> Result<Vec<String>, String> {
    let mut stages = Vec::new();
    let mut images = Vec::new();
    // Continued lines joined, comments dropped.
    let joined = dockerfile.replace("\\\r\n", " ").replace("\\\n", " ");
    for line in joined.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let mut words = words.skip_while(|w| w.starts_with("--"));
        let Some(image) = words.next() else {
            return Err("a `FROM` line names no image".into());
        };
        if image.contains('$') {
            return Err(format!(
                "`FROM {image}` names its image with a variable: write the image out, so it can be checked before the build"
            ));
        }
        let known = image.eq_ignore_ascii_case("scratch")
            || stages
                .iter()
                .any(|s: &String| s.eq_ignore_ascii_case(image));
        if !known && !images.iter().any(|i| i == image) {
            images.push(image.to_string());
        }
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("AS"))
            && let Some(stage) = words.next()
        {
            stages.push(stage.to_string());
        }
    }
    Ok(images)
}

/// The registry host of an image reference, as the Docker Engine reads it
/// (`docker.io` when the first part names no host).
pub fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lines_name_the_images_a_build_pulls() {
        let dockerfile = "# syntax\nFROM --platform=linux/amd64 registry.example:5000/base@sha256:ab AS build\nRUN make\nfrom build\nFROM scratch\nFROM \\\n  alpine:3 as final\nCOPY --from=build /a /a\n";
        assert_eq!(
            base_images(dockerfile).unwrap(),
            ["registry.example:5000/base@sha256:ab", "alpine:3"]
        );
        assert!(
            base_images("ARG BASE\nFROM ${BASE}\n")
                .unwrap_err()
                .contains("variable")
        );
        assert_eq!(
            registry_host("registry.example:5000/base@sha256:ab"),
            "registry.example:5000"
        );
        assert_eq!(registry_host("library/alpine:3"), "docker.io");
        assert_eq!(registry_host("localhost/a"), "localhost");
    }
}
