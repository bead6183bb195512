//! Images built by a Docker Engine from a Dockerfile and a build context
//! (bollard), for what cannot be built in-process: deploy plans that build
//! uploaded code or a git checkout.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ImageId;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;

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
}

impl BuildOptions {
    /// `Dockerfile` at the context's root, tagged `tag`, 10 minutes at most.
    pub fn new(tag: impl Into<String>) -> BuildOptions {
        BuildOptions {
            dockerfile: "Dockerfile".into(),
            tag: tag.into(),
            build_args: HashMap::new(),
            labels: HashMap::new(),
            time_limit: Duration::from_secs(600),
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
            .build();
        let body = bollard::body_full(context.into_tar().into());
        let mut stream = self.docker.build_image(query, None, Some(body));
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
