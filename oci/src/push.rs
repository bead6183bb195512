//! The OCI distribution push protocol, spoken by the host: blobs checked with
//! HEAD and skipped when present, mounted from another repository of the
//! same registry when possible, uploaded otherwise (POST, then PUT with the
//! digest); the manifest put by tag and its digest checked.
//!
//! Every request carries the credentials the registry adapter gave; they are
//! fetched again when they expire or the registry answers 401 (or 403, as
//! ECR does for a token it expired early). Connection
//! errors, 429 and 5xx answers are retried with backoff. No credential
//! appears in an error.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::artifact::{Artifact, Blob};

/// Attempts per request before a transient failure is final.
const ATTEMPTS: u32 = 5;
/// The first retry waits this long; each next one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Credentials this close to expiry are renewed before use.
const RENEW_MARGIN_MS: u64 = 30_000;

/// Why a push failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The registry refused the credentials, even fresh ones.
    #[error("the registry refused the credentials: {0}")]
    Unauthorized(String),
    /// The registry could not be reached or kept failing.
    #[error("the registry is unavailable: {0}")]
    Unavailable(String),
    /// The registry answered in a way the protocol does not allow.
    #[error("the registry refused the push: {0}")]
    Refused(String),
    /// The adapter could not give credentials.
    #[error("{0}")]
    Credentials(String),
}

/// What a registry request is sent with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing.
    Anonymous,
    /// A user name and password (or token), as HTTP basic.
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// A registry token.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Anonymous => "Anonymous",
            Credentials::Basic { .. } => "Basic(..)",
            Credentials::Bearer(_) => "Bearer(..)",
        })
    }
}

/// Credentials and when they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCredentials {
    /// The credentials.
    pub credentials: Credentials,
    /// Expiry in ms since the Unix epoch, if known.
    pub expires_at_ms: Option<u64>,
}

/// What pushing an artifact did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Blobs the repository had.
    pub present: u32,
    /// Blobs mounted from another repository.
    pub mounted: u32,
    /// Blobs uploaded.
    pub uploaded: u32,
    /// Bytes sent: uploaded blobs and the manifest.
    pub bytes_uploaded: u64,
}

/// Where credentials come from (a registry adapter), asked again on expiry.
pub trait CredentialSource {
    /// Fresh credentials.
    fn fetch(&self) -> impl Future<Output = Result<PushCredentials, PushError>> + Send;

    /// The registry refused the last credentials: nothing cached may be
    /// used to make the next ones.
    fn refused(&self) {}
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The repository had it.
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// What deleting a manifest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The registry deleted it.
    Deleted,
    /// It was not there.
    Absent,
    /// The registry does not allow deletes.
    Unsupported,
}

/// A push to one repository.
pub struct Push<'a, C> {
    http: &'a reqwest::Client,
    base: String,
    repository: String,
    source: C,
    credentials: Option<PushCredentials>,
}

/// A failed attempt: retry, renew the credentials, or give up.
enum Failure {
    Transient(String),
    Unauthorized(String),
    /// 403: some registries (ECR) say so when a token expired early, so
    /// the request is tried once more with fresh credentials.
    Forbidden(reqwest::Response),
    Final(PushError),
}

/// `http://` for a loopback registry (as Docker does), `https://` otherwise.
pub fn base_url(registry: &str) -> String {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let scheme = if loopback { "http" } else { "https" };
    format!("{scheme}://{registry}")
}

impl<'a, C: CredentialSource> Push<'a, C> {
    /// A push of `repository` at `registry` (`host[:port]`).
    pub fn new(http: &'a reqwest::Client, registry: &str, repository: &str, source: C) -> Self {
        Push {
            http,
            base: base_url(registry),
            repository: repository.to_string(),
            source,
            credentials: None,
        }
    }

    /// Makes sure `blob` is in the repository: present, mounted from one of
    /// `mount_from`, or uploaded.
    pub async fn blob(
        &mut self,
        blob: &Blob,
        mount_from: &[String],
    ) -> Result<BlobOutcome, PushError> {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repository, blob.digest);
        let head = self.retrying(Method::HEAD, &url, &[], None).await?;
        match head.status() {
            StatusCode::OK => return Ok(BlobOutcome::Present),
            StatusCode::NOT_FOUND => {}
            status => return Err(unexpected("HEAD", &url, status)),
        }
        let mut upload_at = None;
        if let Some(from) = mount_from.first() {
            let url = format!(
                "{}/v2/{}/blobs/uploads/?mount={}&from={from}",
                self.base, self.repository, blob.digest
            );
            match self
                .retrying(Method::POST, &url, &[], Some(Bytes::new()))
                .await
            {
                Ok(answer) => match answer.status() {
                    StatusCode::CREATED => return Ok(BlobOutcome::Mounted),
                    // Not mounted (not found in the source, or the registry
                    // checks no rights): it opened an upload instead.
                    StatusCode::ACCEPTED => upload_at = Some(self.location(&answer)?),
                    status => return Err(unexpected("POST", &url, status)),
                },
                // A token registry refuses the whole request when the
                // token grants no pull on the source: upload instead.
                Err(PushError::Unauthorized(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.upload(blob, upload_at).await?;
        Ok(BlobOutcome::Uploaded)
    }

    /// A monolithic upload: open a session (unless one is open), PUT the
    /// bytes with the digest. A cut-off upload starts a new session.
    async fn upload(&mut self, blob: &Blob, mut session: Option<String>) -> Result<(), PushError> {
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        let bytes = Bytes::from_owner(blob.bytes.clone());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let location = match session.take() {
                Some(location) => location,
                None => {
                    let answer = self
                        .retrying(Method::POST, &start, &[], Some(Bytes::new()))
                        .await?;
                    if answer.status() != StatusCode::ACCEPTED {
                        return Err(unexpected("POST", &start, answer.status()));
                    }
                    self.location(&answer)?
                }
            };
            let separator = if location.contains('?') { '&' } else { '?' };
            let url = format!("{location}{separator}digest={}", blob.digest);
            let headers = [(header::CONTENT_TYPE, "application/octet-stream")];
            match self
                .send(Method::PUT, &url, &headers, Some(bytes.clone()))
                .await
            {
                Ok(answer) if answer.status() == StatusCode::CREATED => return Ok(()),
                Ok(answer) => {
                    return Err(unexpected("PUT", &self.blob_path(blob), answer.status()));
                }
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Unauthorized(m)) if attempt > 1 => {
                    return Err(PushError::Unauthorized(m));
                }
                Err(Failure::Forbidden(answer)) if attempt > 1 => {
                    return Err(unexpected("PUT", &self.blob_path(blob), answer.status()));
                }
                Err(Failure::Unauthorized(_) | Failure::Forbidden(_)) => self.renew(),
                Err(Failure::Transient(m)) if attempt >= ATTEMPTS => {
                    return Err(PushError::Unavailable(format!(
                        "uploading {} failed {ATTEMPTS} times: {m}",
                        blob.digest
                    )));
                }
                Err(Failure::Transient(_)) => backoff(attempt).await,
            }
        }
    }

    /// Pushes `artifact` under `tag`: each blob (mounted from the repository
    /// `mount_from` names for it, where there is one), then the manifest.
    /// `pushed` hears of each blob once it is in the repository. Returns
    /// the manifest's digest.
    pub async fn artifact(
        &mut self,
        artifact: &Artifact,
        tag: &str,
        mount_from: impl Fn(&Blob) -> Option<String>,
        mut pushed: impl FnMut(&Blob),
    ) -> Result<(String, Pushed), PushError> {
        let mut report = Pushed::default();
        for blob in artifact.blobs() {
            let from: Vec<String> = mount_from(blob).into_iter().collect();
            match self.blob(blob, &from).await? {
                BlobOutcome::Present => report.present += 1,
                BlobOutcome::Mounted => report.mounted += 1,
                BlobOutcome::Uploaded => {
                    report.uploaded += 1;
                    report.bytes_uploaded += blob.bytes.len() as u64;
                }
            }
            pushed(blob);
        }
        let digest = self.manifest(tag, &artifact.manifest).await?;
        report.bytes_uploaded += artifact.manifest.bytes.len() as u64;
        Ok((digest, report))
    }

    /// Puts the manifest under `tag` and checks the digest the registry
    /// reports (or, when it reports none, that the digest resolves).
    pub async fn manifest(&mut self, tag: &str, manifest: &Blob) -> Result<String, PushError> {
        let url = format!("{}/v2/{}/manifests/{tag}", self.base, self.repository);
        let body = Bytes::from_owner(manifest.bytes.clone());
        let headers = [(header::CONTENT_TYPE, &*manifest.media_type)];
        let answer = self
            .retrying(Method::PUT, &url, &headers, Some(body.clone()))
            .await?;
        if answer.status() != StatusCode::CREATED {
            return Err(unexpected("PUT", &url, answer.status()));
        }
        let reported = answer
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let reported = match reported {
            Some(digest) => digest,
            None => {
                let url = format!(
                    "{}/v2/{}/manifests/{}",
                    self.base, self.repository, manifest.digest
                );
                let headers = [(header::ACCEPT, &*manifest.media_type)];
                let answer = self.retrying(Method::HEAD, &url, &headers, None).await?;
                if answer.status() != StatusCode::OK {
                    return Err(unexpected("HEAD", &url, answer.status()));
                }
                manifest.digest.clone()
            }
        };
        if reported != manifest.digest {
            return Err(PushError::Refused(format!(
                "the registry stored the manifest as {reported}, not {}",
                manifest.digest
            )));
        }
        Ok(reported)
    }

    /// Deletes the manifest `digest`, where the registry allows it.
    pub async fn delete_manifest(&mut self, digest: &str) -> Result<Deleted, PushError> {
        let url = format!("{}/v2/{}/manifests/{digest}", self.base, self.repository);
        let answer = self.retrying(Method::DELETE, &url, &[], None).await?;
        match answer.status() {
            StatusCode::ACCEPTED | StatusCode::OK => Ok(Deleted::Deleted),
            StatusCode::NOT_FOUND => Ok(Deleted::Absent),
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::FORBIDDEN => Ok(Deleted::Unsupported),
            status => Err(unexpected("DELETE", &url, status)),
        }
    }

    fn blob_path(&self, blob: &Blob) -> String {
        format!("{}/v2/{}/blobs/{}", self.base, self.repository, blob.digest)
    }

    /// The upload URL an answer points at, made absolute.
    fn location(&self, answer: &reqwest::Response) -> Result<String, PushError> {
        let location = answer
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| PushError::Refused("an upload was opened without a Location".into()))?;
        Ok(
            if location.starts_with("http://") || location.starts_with("https://") {
                location.to_string()
            } else {
                format!("{}{location}", self.base)
            },
        )
    }

    /// Sends one request until it gets an answer, with backoff on transient
    /// failures and one renewal of the credentials on 401.
    async fn retrying(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, PushError> {
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send(method.clone(), url, headers, body.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Unauthorized(m)) if renewed => return Err(PushError::Unauthorized(m)),
                Err(Failure::Forbidden(answer)) if renewed => return Ok(answer),
                Err(Failure::Unauthorized(_) | Failure::Forbidden(_)) => {
                    renewed = true;
                    self.renew();
                }
                Err(Failure::Transient(m)) if attempt >= ATTEMPTS => {
                    return Err(PushError::Unavailable(format!("{m} ({ATTEMPTS} attempts)")));
                }
                Err(Failure::Transient(_)) => backoff(attempt).await,
            }
        }
    }

    /// Drops refused credentials; the next request fetches fresh ones.
    fn renew(&mut self) {
        self.credentials = None;
        self.source.refused();
    }

    /// The `Authorization` value, renewing credentials that expire soon.
    async fn authorization(&mut self) -> Result<Option<HeaderValue>, Failure> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let stale = self.credentials.as_ref().is_none_or(|c| {
            c.expires_at_ms
                .is_some_and(|at| at <= now + RENEW_MARGIN_MS)
        });
        if stale {
            self.credentials = Some(self.source.fetch().await.map_err(Failure::Final)?);
        }
        let value = match &self.credentials.as_ref().expect("just set").credentials {
            Credentials::Anonymous => return Ok(None),
            Credentials::Basic { username, password } => {
                use base64::Engine as _;
                let pair = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                format!("Basic {pair}")
            }
            Credentials::Bearer(token) => format!("Bearer {token}"),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            Failure::Final(PushError::Credentials(
                "the adapter gave credentials that cannot be sent in a header".into(),
            ))
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// One request; 401, 429, 5xx and connection errors become failures.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.http.request(method.clone(), url);
        // An upload Location may point anywhere: credentials go only to the
        // registry itself.
        if same_origin(&self.base, url)
            && let Some(value) = self.authorization().await?
        {
            request = request.header(header::AUTHORIZATION, value);
        }
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_LENGTH, body.len())
                .body(body);
        }
        let what = format!("{method} {}", strip_query(url));
        let answer = request
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("{what}: {}", e.without_url())))?;
        let status = answer.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(Failure::Unauthorized(format!("{what} answered 401")));
        }
        if status == StatusCode::FORBIDDEN {
            return Err(Failure::Forbidden(answer));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Transient(format!("{what} answered {status}")));
        }
        Ok(answer)
    }
}

/// Whether `url` is on `base` (`scheme://host[:port]`): the same scheme, host
/// and port, and nothing after them but a path or a query.
fn same_origin(base: &str, url: &str) -> bool {
    url.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
}

/// A URL without its query (upload URLs carry registry state there).
fn strip_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

fn unexpected(method: &str, url: &str, status: StatusCode) -> PushError {
    PushError::Refused(format!("{method} {} answered {status}", strip_query(url)))
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(attempt.saturating_sub(1).min(4))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_only_to_the_registry_itself() {
        let base = "https://registry.example.com";
        assert!(same_origin(
            base,
            "https://registry.example.com/v2/x/blobs/uploads/1?_state=a"
        ));
        for elsewhere in [
            "https://registry.example.com.evil.test/v2/",
            "https://registry.example.com:444/v2/",
            "http://registry.example.com/v2/",
            "https://registry.example.com@evil.test/v2/",
            "https://storage.example.net/upload/1",
        ] {
            assert!(!same_origin(base, elsewhere), "{elsewhere}");
        }
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        assert_eq!(base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(base_url("eu.gcr.io"), "https://eu.gcr.io");
        assert_eq!(base_url("10.0.0.1:5000"), "https://10.0.0.1:5000");
    }
}
