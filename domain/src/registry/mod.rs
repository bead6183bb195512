//! Distribution: an organisation's registry (a registry-adapter plugin and
//! its settings), and pushing a built image through it.
//!
//! A release resolves the organisation's registry when it is claimed and
//! keeps that adapter to the end, so a change an org-admin makes applies to
//! the next release while those in flight finish as they started.

pub mod change;
mod registries;

pub use registries::{CONFIGURATION, Destination, Published, Registries, SERVER};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use semver::VersionReq;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slipway_oci::artifact::Artifact;
use slipway_oci::push::{self, CredentialSource, Credentials, Push, PushCredentials, PushError};
use slipway_runtime::egress::CheckedResolver;
use slipway_runtime::kinds::{self, Image, RegistryError};
use slipway_runtime::{CacheScope, CallContext, Egress, HostPattern, Kind, Plugin, PluginCache};

use crate::plugins::OrganisationPlugins;
pub use slipway_oci::push::Deleted;
use slipway_store::{AdapterCode, Origin, PushReport, StoreError, StoredSettings};

/// Why a push or a delete through a registry failed, by whom.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryFailure {
    /// The adapter's code could not be run to the end (a trap, a timeout).
    #[error("the registry adapter's {hook} failed: {message}")]
    AdapterFailed {
        /// Which of its calls.
        hook: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The adapter refused the image.
    #[error("the registry adapter's {hook} refused: {message}")]
    AdapterRefused {
        /// Which of its calls.
        hook: &'static str,
        /// Its reason.
        message: String,
    },
    /// The registry is on an address the operator's rules do not allow.
    #[error("{0}")]
    NotAllowed(String),
    /// The registry, during the distribution protocol.
    #[error(transparent)]
    Registry(#[from] PushError),
}

/// An organisation's registry, as an org-admin (or the configuration file) set it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistrySettings {
    /// The registry-adapter plugin, e.g. `distribution`.
    pub adapter: String,
    /// Which of its versions: a semver requirement, e.g. `^1`.
    #[serde(default = "any_version")]
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub version: VersionReq,
    /// The adapter's settings.
    #[serde(default = "empty_object")]
    pub settings: serde_json::Value,
    /// Secrets the adapter may read, by name. Never shown again.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Hosts the adapter may reach besides the registry (e.g. a token service).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schema(value_type = Vec<String>))]
    pub allowed_hosts: Vec<HostPattern>,
}

impl std::fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySettings")
            .field("adapter", &self.adapter)
            .field("version", &self.version.to_string())
            .field("settings", &self.settings)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl RegistrySettings {
    /// The settings as the store writes them.
    pub fn to_stored(&self) -> StoredSettings {
        StoredSettings {
            adapter: self.adapter.clone(),
            version: self.version.to_string(),
            settings: self.settings.clone(),
            secrets: self.secrets.clone(),
            allowed_hosts: self
                .allowed_hosts
                .iter()
                .cloned()
                .map(String::from)
                .collect(),
        }
    }

    /// Settings the store read back; they were checked when written, so a
    /// version or host that no longer parses is a corrupt record.
    pub fn from_stored(stored: StoredSettings) -> Result<RegistrySettings, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            tree: "registries",
            detail,
        };
        Ok(RegistrySettings {
            version: VersionReq::parse(&stored.version).map_err(|e| corrupt(e.to_string()))?,
            allowed_hosts: stored
                .allowed_hosts
                .into_iter()
                .map(HostPattern::try_from)
                .collect::<Result<_, _>>()
                .map_err(corrupt)?,
            adapter: stored.adapter,
            settings: stored.settings,
            secrets: stored.secrets,
        })
    }
}

fn any_version() -> VersionReq {
    VersionReq::STAR
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// The adapter a release pushes with, and its settings.
#[derive(Clone)]
pub struct Registry {
    plugin: Arc<Plugin>,
    origin: Origin,
    /// Whose pushes these are.
    organisation: u64,
    settings: Arc<RegistrySettings>,
    cache: CacheScope,
}

/// The client pushes go through. A registry's address is the adapter's
/// word, so it is held to the operator's egress rules as plugins are: names
/// resolve through the checked resolver, redirects to an address go only
/// where the rules allow, and no proxy from the environment is used.
pub fn client(egress: Arc<Egress>) -> reqwest::Client {
    let redirects = egress.clone();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .no_proxy()
        .dns_resolver(Arc::new(CheckedResolver(egress)))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let refused = attempt.url().host_str().is_some_and(|host| {
                let port = attempt.url().port_or_known_default().unwrap_or(0);
                redirects.permits_literal(host, port) == Some(false)
            });
            if refused || attempt.previous().len() >= 10 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("the HTTP client builds")
}

/// Refuses a registry (`host[:port]`) on an address the operator's rules
/// do not allow, before anything is sent to it.
pub fn check_reachable(egress: &Egress, registry: &str) -> Result<(), String> {
    let base = push::base_url(registry);
    let url = reqwest::Url::parse(&base).map_err(|e| format!("bad registry `{registry}`: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(0);
    // A name is judged by the client's resolver.
    if egress.permits_literal(host, port) != Some(false) {
        Ok(())
    } else {
        Err(format!(
            "the registry `{registry}` is on an internal address the operator did not allow (`egress-allow`)"
        ))
    }
}

/// Where the host pushed each blob, per organisation and registry, for
/// cross-repository mounts: an organisation mounts only from repositories
/// it pushed to itself, and never learns another's.
#[derive(Default)]
pub struct BlobIndex {
    seen: Mutex<HashMap<(u64, String, String), BTreeSet<String>>>,
}

impl BlobIndex {
    /// Records that `organisation` pushed `digest` to `repository` of `registry`.
    pub fn record(&self, organisation: u64, registry: &str, repository: &str, digest: &str) {
        self.seen
            .lock()
            .expect("blob index lock")
            .entry((organisation, registry.to_string(), digest.to_string()))
            .or_default()
            .insert(repository.to_string());
    }

    /// Another repository of `registry` where `organisation` pushed `digest`.
    fn elsewhere(
        &self,
        organisation: u64,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Option<String> {
        let seen = self.seen.lock().expect("blob index lock");
        seen.get(&(organisation, registry.to_string(), digest.to_string()))?
            .iter()
            .find(|r| *r != repository)
            .cloned()
    }
}

impl Registry {
    /// The adapter `settings` name, among what `organisation` can use. Its
    /// calls share a scope of `cache` with every call made with the same
    /// adapter version, settings and secrets (so a token outlives a release).
    pub fn resolve(
        plugins: &OrganisationPlugins<'_>,
        organisation: u64,
        settings: Arc<RegistrySettings>,
        cache: &Arc<PluginCache>,
    ) -> Result<Registry, String> {
        let plugin = plugins
            .resolve(Kind::RegistryAdapter, &settings.adapter, &settings.version)
            .map_err(|e| format!("the registry adapter cannot be used: {e}"))?;
        let mut scope = Sha256::new();
        scope.update(organisation.to_be_bytes());
        scope.update(plugin.id());
        scope.update(serde_json::to_vec(&*settings).expect("settings serialize"));
        let cache = cache.scope(hex::encode(scope.finalize()));
        let origin = if plugins.is_own(&plugin) {
            Origin::Upload
        } else {
            Origin::BuiltIn
        };
        Ok(Registry {
            plugin,
            origin,
            organisation,
            settings,
            cache,
        })
    }

    /// The secrets the adapter's manifest asks for.
    pub fn secrets_asked(&self) -> &[String] {
        &self.plugin.manifest().secrets
    }

    /// `name@version` of the adapter.
    pub fn adapter(&self) -> String {
        self.plugin.id().to_string()
    }

    /// Which code the adapter is.
    pub fn code(&self) -> AdapterCode {
        AdapterCode {
            sha256: self.plugin.sha256().to_string(),
            origin: self.origin,
        }
    }

    /// The grants of a call: the settings and secrets, and HTTP to the
    /// image's registry (none before there is an image), to the hosts the
    /// adapter's manifest names (a cloud's token service), and to the extra
    /// hosts an operator granted (needed to reach anything that only the
    /// manifest's `*` covers, e.g. an overridden endpoint).
    fn context(&self, image: Option<&Image>) -> CallContext {
        let registry = image.and_then(|i| HostPattern::try_from(i.registry.clone()).ok());
        let named = self.plugin.manifest().allowed_hosts.iter();
        let hosts: Vec<HostPattern> = registry
            .into_iter()
            .chain(named.filter(|p| !p.is_any()).cloned())
            .chain(self.settings.allowed_hosts.iter().cloned())
            .collect();
        CallContext {
            settings: Arc::from(self.settings.settings.to_string()),
            secrets: Arc::new(self.settings.secrets.clone()),
            allowed_hosts: Some(hosts.into()),
            cache: Some(self.cache.clone()),
            tenant: Some(self.organisation),
        }
    }

    /// Where `repository:tag` goes under the adapter's rules.
    pub async fn image(&self, repository: &str, tag: &str) -> Result<Image, String> {
        self.plugin
            .resolve_image(&self.context(None), repository, tag)
            .await
            .map_err(|e| format!("the registry adapter failed: {e}"))?
            .map_err(|e| format!("the registry adapter refused `{repository}:{tag}`: {e}"))
    }

    /// Checks settings with the adapter; problems point into `settings`.
    pub async fn check(&self) -> Result<Vec<slipway_runtime::Diagnostic>, String> {
        self.plugin
            .validate_settings(&self.context(None), &self.settings.settings)
            .await
            .map_err(|e| format!("the registry adapter failed: {e}"))
    }

    /// Pushes `built` as `image`: hooks, blobs, manifest; returns its digest.
    pub async fn push(
        &self,
        http: &reqwest::Client,
        image: &Image,
        artifact: &Artifact,
        index: &BlobIndex,
    ) -> Result<(String, PushReport), RegistryFailure> {
        let context = self.context(Some(image));
        let hook = |hook, result: Result<Result<(), RegistryError>, slipway_runtime::CallError>| {
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(RegistryFailure::AdapterRefused {
                    hook,
                    message: e.to_string(),
                }),
                Err(e) => Err(RegistryFailure::AdapterFailed {
                    hook,
                    message: e.to_string(),
                }),
            }
        };
        hook(
            "before-push",
            self.plugin.before_push(&context, image).await,
        )?;
        let mounts: BTreeMap<&str, String> = artifact
            .blobs()
            .filter_map(|b| {
                let from = index.elsewhere(
                    self.organisation,
                    &image.registry,
                    &image.repository,
                    &b.digest,
                )?;
                Some((b.digest.as_str(), from))
            })
            .collect();
        let mount_from: Vec<String> = mounts
            .values()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let source = AdapterCredentials {
            registry: self,
            context: &context,
            image,
            mount_from: &mount_from,
        };
        let (digest, pushed) = Push::new(http, &image.registry, &image.repository, source)
            .artifact(
                artifact,
                &image.tag,
                |blob| mounts.get(blob.digest.as_str()).cloned(),
                |blob| {
                    index.record(
                        self.organisation,
                        &image.registry,
                        &image.repository,
                        &blob.digest,
                    )
                },
            )
            .await?;
        let report = PushReport {
            uploaded: pushed.uploaded,
            mounted: pushed.mounted,
            present: pushed.present,
            bytes_uploaded: pushed.bytes_uploaded,
        };
        hook(
            "after-push",
            self.plugin.after_push(&context, image, &digest).await,
        )?;
        Ok((digest, report))
    }

    /// The credentials the adapter gives for `image`'s repository.
    pub async fn credentials(&self, image: &Image) -> Result<Credentials, PushError> {
        let context = self.context(Some(image));
        let source = AdapterCredentials {
            registry: self,
            context: &context,
            image,
            mount_from: &[],
        };
        Ok(source.fetch().await?.credentials)
    }

    /// Deletes the manifest `digest` of `image`'s repository.
    pub async fn delete(
        &self,
        http: &reqwest::Client,
        image: &Image,
        digest: &str,
    ) -> Result<Deleted, PushError> {
        let context = self.context(Some(image));
        let source = AdapterCredentials {
            registry: self,
            context: &context,
            image,
            mount_from: &[],
        };
        Push::new(http, &image.registry, &image.repository, source)
            .delete_manifest(digest)
            .await
    }
}

/// Credentials from the adapter's `authenticate`.
struct AdapterCredentials<'a> {
    registry: &'a Registry,
    context: &'a CallContext,
    image: &'a Image,
    mount_from: &'a [String],
}

impl CredentialSource for AdapterCredentials<'_> {
    async fn fetch(&self) -> Result<PushCredentials, PushError> {
        let answer = self
            .registry
            .plugin
            .authenticate(self.context, self.image, self.mount_from)
            .await
            .map_err(|e| PushError::Credentials(format!("the registry adapter failed: {e}")))?;
        let answer = answer.map(|c| PushCredentials {
            credentials: match c.credentials {
                kinds::Credentials::Anonymous => Credentials::Anonymous,
                kinds::Credentials::Basic { username, password } => {
                    Credentials::Basic { username, password }
                }
                kinds::Credentials::Bearer(token) => Credentials::Bearer(token),
            },
            expires_at_ms: c.expires_at_ms,
        });
        answer.map_err(|e| match e {
            RegistryError::Unauthorized(m) => PushError::Unauthorized(m),
            RegistryError::Unavailable(m) => PushError::Unavailable(m),
            other => PushError::Credentials(format!("the registry adapter refused: {other}")),
        })
    }

    /// Tokens the adapter kept were refused too: it starts over.
    fn refused(&self) {
        self.registry.cache.clear();
    }
}
