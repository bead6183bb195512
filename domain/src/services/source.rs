//! Code a service is built from (seed 002's `HTTP_UPLOAD_DEPLOY`): a
//! package fetched only from hosts the operator allows, on addresses the
//! operator's rules allow, bounded in size and time, then built by the
//! server's Docker Engine (Dockerfile at its root) into the image the
//! service runs next.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_runtime::egress::CheckedResolver;
use slipway_runtime::{Egress, HostPattern};

use crate::image::context::BuildContext;
use crate::image::docker::{BuildOptions, DockerBuilder, base_images, registry_host};
use crate::registry::Registries;
use slipway_store::{Job, ServiceRecord};

/// How long fetching a package may take in all.
const FETCH_TIME: Duration = Duration::from_secs(300);

/// The largest image a build may make (my choice), base layers included.
const MAX_IMAGE: u64 = 2 << 30;

/// An image built from a source and pushed.
#[derive(Debug, Clone)]
pub struct Built {
    /// `registry/repository@digest`.
    pub pinned: String,
    /// The Dockerfile's steps run.
    pub steps: usize,
}

/// Where a service's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Source {
    /// A code package (zip, tar or tar.gz) at an `http` or `https` URL.
    Package {
        /// Its URL.
        url: String,
    },
}

impl Source {
    /// What it is, for reports.
    pub fn describe(&self) -> String {
        match self {
            Source::Package { url } => format!("the package at {url}"),
        }
    }
}

/// What the operator lets services be built from.
#[derive(Clone)]
pub struct Sources {
    hosts: Vec<HostPattern>,
    egress: Arc<Egress>,
    max_bytes: u64,
    /// How long one build may take.
    pub build_time_limit: Duration,
    http: reqwest::Client,
}

impl Sources {
    /// Packages from `hosts` only, at most `max_bytes` packed and unpacked,
    /// on addresses `egress` permits; builds stop after `build_time_limit`.
    pub fn new(
        hosts: Vec<HostPattern>,
        max_bytes: u64,
        build_time_limit: Duration,
        egress: Arc<Egress>,
    ) -> Sources {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver(egress.clone())))
            // A redirect could go to any host: it is refused, naming it.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Sources {
            hosts,
            egress,
            max_bytes,
            build_time_limit,
            http,
        }
    }

    /// Refuses `url` unless it is `http` or `https` on an allowed host.
    pub fn check(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}` is not an http or https URL"));
        }
        let host = parsed.host_str().unwrap_or_default();
        let port = parsed.port_or_known_default().unwrap_or(0);
        if !self.hosts.iter().any(|h| h.matches(host, port)) {
            return Err(format!(
                "code is not fetched from `{host}`: the operator allows no such source host (`[sources] hosts`)"
            ));
        }
        // A name is judged by the client's resolver, an address here.
        if self.egress.permits_literal(host, port) == Some(false) {
            return Err(format!(
                "code is not fetched from `{host}`: an internal address the operator did not allow (`egress-allow`)"
            ));
        }
        Ok(parsed)
    }

    /// Fetches `source` and checks it as a build context with a
    /// `Dockerfile` at its root.
    pub async fn fetch(&self, source: &Source) -> Result<BuildContext, String> {
        let Source::Package { url } = source;
        let parsed = self.check(url)?;
        let bytes = tokio::time::timeout(FETCH_TIME, self.download(parsed))
            .await
            .map_err(|_| format!("fetching {url} took longer than {} s", FETCH_TIME.as_secs()))??;
        let context = BuildContext::from_archive_within(&bytes, self.max_bytes)
            .map_err(|e| format!("the package at {url}: {e}"))?;
        context
            .require("Dockerfile")
            .map_err(|e| format!("the package at {url}: {e}"))?;
        Ok(context)
    }

    /// Builds `source` for `service` on the server's Docker Engine (as
    /// operation `job`), and pushes the image where the organisation's
    /// images go, as `<service>.build:j<job>`; the engine's copy is removed.
    pub async fn build(
        &self,
        job: &Job,
        service: &ServiceRecord,
        source: &Source,
        registries: &Registries,
    ) -> Result<Built, String> {
        let context = self.fetch(source).await?;
        // Every base image is pulled, from where the server's own pulls
        // may go, with the organisation's own credentials.
        let dockerfile = context.file("Dockerfile").unwrap_or_default();
        let mut pull_credentials = std::collections::HashMap::new();
        for image in base_images(&String::from_utf8_lossy(&dockerfile))? {
            let host = registry_host(&image);
            registries
                .check_pull(host, true)
                .map_err(|e| format!("`FROM {image}`: {e}"))?;
            if let Some(credentials) = registries
                .pull_credentials(service.organisation, &image)
                .await?
            {
                pull_credentials.insert(host.to_string(), credentials);
            }
        }
        let builder = DockerBuilder::connect().map_err(|e| e.to_string())?;
        let tag = format!("slipway-build/s{}:j{}", service.id, job.id);
        let mut options = BuildOptions::new(&tag);
        options.time_limit = self.build_time_limit;
        options.pull_credentials = pull_credentials;
        options.labels = std::collections::HashMap::from([(
            "slipway.service".to_string(),
            service.id.to_string(),
        )]);
        let built = builder
            .build(context, &options)
            .await
            .map_err(|e| e.to_string())?;
        let artifact = builder.export(&tag, MAX_IMAGE).await;
        builder.remove(&tag).await;
        let artifact = artifact.map_err(|e| e.to_string())?;
        let published = registries
            .publish(
                service.organisation,
                &format!("{}.build", service.name),
                &format!("j{}", job.id),
                &artifact,
            )
            .await?;
        Ok(Built {
            pinned: published.pinned,
            steps: built.log.iter().filter(|l| l.starts_with("Step ")).count(),
        })
    }

    async fn download(&self, url: reqwest::Url) -> Result<Vec<u8>, String> {
        let mut response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("elsewhere");
            return Err(format!(
                "{url} redirects to {to}: name the package's own URL"
            ));
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let too_large = || {
            format!(
                "the package at {url} is larger than {} bytes",
                self.max_bytes
            )
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?
        {
            if (bytes.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}
