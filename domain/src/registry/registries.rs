//! The organisations' registries as a service: which adapter and code an
//! organisation pushes with now, and the client and blob index pushes share.

use std::sync::Arc;

use slipway_oci::artifact::Artifact;
use slipway_oci::push::Credentials;
use slipway_runtime::PluginCache;
use slipway_runtime::kinds::Image;
use slipway_store::{Origin, PushReport, Store, StoreError, StoredRegistry, now_ms};

use super::{BlobIndex, Deleted, Registry, RegistryFailure, RegistrySettings};
use crate::images::{self, Images};
use crate::plugins::Plugins;

/// Who set a registry that came from the configuration file.
pub const CONFIGURATION: &str = "configuration";

/// Who a registry change is recorded as when the server's own built-in
/// adapter changed under the settings.
pub const SERVER: &str = "server";

/// Every organisation's registry: resolving, pinning and changing it, and
/// pushing and deleting images through it.
pub struct Registries {
    pub(super) store: Store,
    plugins: Arc<Plugins>,
    cache: Arc<PluginCache>,
    http: reqwest::Client,
    blobs: BlobIndex,
    images: Option<Images>,
}

/// An image put where an organisation's images go.
#[derive(Debug, Clone)]
pub struct Published {
    /// `registry/repository@digest`.
    pub pinned: String,
    /// What the push sent.
    pub push: PushReport,
}

/// Where an organisation's releases go now.
pub enum Destination {
    /// Its registry, through the adapter.
    Registry(Registry),
    /// The server's own image store: the organisation has no registry.
    Images(Images),
}

/// Why an organisation's releases cannot be pushed anywhere.
const NO_REGISTRY: &str =
    "the organisation has no registry: an org-admin sets one (`slipway registry set`)";

impl Registries {
    /// Registries kept in `store`, whose adapters come from `plugins`; an
    /// organisation with none keeps its images in `images`, when given.
    pub fn new(store: Store, plugins: Arc<Plugins>, images: Option<Images>) -> Registries {
        let http = super::client(plugins.runtime().egress().clone());
        Registries {
            store,
            plugins,
            cache: Arc::default(),
            http,
            blobs: BlobIndex::default(),
            images,
        }
    }

    /// The server's own image store, when it has one.
    pub fn images(&self) -> Option<&Images> {
        self.images.as_ref()
    }

    /// Where `organisation`'s releases go now: its registry, or the
    /// server's image store when it has none.
    pub fn destination(&self, organisation: u64) -> Result<Destination, String> {
        let none = self
            .store
            .registry(organisation)
            .map_err(|e| e.to_string())?
            .is_none();
        match &self.images {
            Some(images) if none => Ok(Destination::Images(images.clone())),
            _ => self.current(organisation).map(Destination::Registry),
        }
    }

    /// Whether `registry` (`host:port`) is the server's own image store.
    pub fn is_images(&self, registry: &str) -> bool {
        self.images
            .as_ref()
            .is_some_and(|i| i.address() == registry)
    }

    /// What adapters keep between calls (access tokens).
    pub fn cache(&self) -> &Arc<PluginCache> {
        &self.cache
    }

    /// The adapter `settings` name, as `organisation` would push with it.
    pub fn resolve(
        &self,
        organisation: u64,
        settings: RegistrySettings,
    ) -> Result<Registry, String> {
        Registry::resolve(
            &self.plugins.of(organisation),
            organisation,
            Arc::new(settings),
            &self.cache,
        )
    }

    /// The organisation's registry adapter now, or why there is none to use.
    ///
    /// The secrets go to the adapter code the registry was set with (its
    /// version, sha256 and origin). When the settings now resolve to other
    /// code (a new server's built-in, or a newer upload), a built-in is
    /// followed and the change recorded; an upload is refused until an
    /// org-admin sets the registry again. A registry set before pins were
    /// kept is pinned at its first use; one from the configuration file is
    /// the operator's and is not pinned.
    pub fn current(&self, organisation: u64) -> Result<Registry, String> {
        let stored = self
            .store
            .registry(organisation)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| NO_REGISTRY.to_string())?;
        let settings =
            RegistrySettings::from_stored(stored.settings.clone()).map_err(|e| e.to_string())?;
        let registry = self.resolve(organisation, settings)?;
        let now = (registry.adapter(), registry.code());
        match (&stored.resolved, &stored.code) {
            _ if stored.changed_by == CONFIGURATION => return Ok(registry),
            (Some(pinned), Some(code)) if (&now.0, &now.1) == (pinned, code) => {
                return Ok(registry);
            }
            (Some(pinned), Some(code)) if now.1.origin == Origin::Upload => {
                return Err(format!(
                    "the registry adapter now resolves to `{}` (uploaded, sha256 {}), not to `{pinned}` (sha256 {}) the registry was set with: an org-admin sets the registry again to use it",
                    now.0, now.1.sha256, code.sha256
                ));
            }
            (Some(pinned), Some(_)) => {
                tracing::info!(organisation, from = %pinned, to = %now.0, "the built-in registry adapter changed; recorded as a registry change");
            }
            _ => {
                tracing::info!(organisation, adapter = %now.0, "the registry is pinned to its adapter's code at its first use")
            }
        }
        let changed = StoredRegistry {
            resolved: Some(now.0),
            code: Some(now.1),
            changed_by: SERVER.into(),
            changed_ms: now_ms(),
            ..stored
        };
        self.store
            .put_registry(organisation, &changed)
            .map_err(|e| e.to_string())?;
        Ok(registry)
    }

    /// Sets the registry of `organisation` (a name) from the configuration
    /// file, unless an org-admin has set one through the API.
    pub fn apply_configured(
        &self,
        organisation: &str,
        settings: &RegistrySettings,
    ) -> Result<(), StoreError> {
        let Some(organisation) = self.store.organisation_named(organisation)? else {
            return Ok(());
        };
        let current = self.store.registry(organisation.id)?;
        if current
            .as_ref()
            .is_some_and(|c| c.changed_by != CONFIGURATION)
        {
            tracing::info!(organisation = %organisation.name, "the registry set through the API stays; the configuration's is not applied");
            return Ok(());
        }
        let stored = settings.to_stored();
        if current.is_none_or(|c| c.settings != stored) {
            self.store.put_registry(
                organisation.id,
                &StoredRegistry {
                    settings: stored,
                    resolved: None,
                    code: None,
                    changed_by: CONFIGURATION.into(),
                    changed_ms: now_ms(),
                },
            )?;
            tracing::info!(organisation = %organisation.name, adapter = %settings.adapter, "registry set from the configuration");
        }
        Ok(())
    }

    /// Refuses a registry on an address the operator's rules do not allow.
    pub fn check_reachable(&self, registry: &str) -> Result<(), String> {
        super::check_reachable(self.plugins.runtime().egress(), registry)
    }

    /// The same for an engine pulling from `registry`: the server's own
    /// image store too, but only for the server's own engine (`own`),
    /// which alone reaches it where it listens.
    pub fn check_pull(&self, registry: &str, own: bool) -> Result<(), String> {
        if self.is_images(registry) {
            return if own {
                Ok(())
            } else {
                Err(format!(
                    "the image is in the server's own image store ({registry}), which only the server's own Docker Engine pulls from: an org-admin sets a registry for images that run elsewhere"
                ))
            };
        }
        self.check_reachable(registry)
    }

    /// Pushes `artifact` as `image` with `registry`; returns its digest.
    pub async fn push(
        &self,
        registry: &Registry,
        image: &Image,
        artifact: &Artifact,
    ) -> Result<(String, PushReport), RegistryFailure> {
        self.check_reachable(&image.registry)
            .map_err(RegistryFailure::NotAllowed)?;
        registry
            .push(&self.http, image, artifact, &self.blobs)
            .await
    }

    /// Puts `artifact` where `organisation`'s images go, as
    /// `repository:tag`: its registry, or the server's image store.
    pub async fn publish(
        &self,
        organisation: u64,
        repository: &str,
        tag: &str,
        artifact: &Artifact,
    ) -> Result<Published, String> {
        match self.destination(organisation)? {
            Destination::Registry(registry) => {
                let image = registry.image(repository, tag).await?;
                let (digest, push) = self
                    .push(&registry, &image, artifact)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Published {
                    pinned: format!("{}/{}@{digest}", image.registry, image.repository),
                    push,
                })
            }
            Destination::Images(images) => {
                let name = self
                    .store
                    .organisation(organisation)
                    .map_err(|e| e.to_string())?
                    .map(|o| o.name)
                    .unwrap_or_default();
                if !images::is_component(&name) || !images::is_component(repository) {
                    return Err(format!(
                        "`{name}/{repository}` cannot name a repository of the server's image store: an org-admin sets a registry"
                    ));
                }
                let push = images
                    .put(organisation, repository, tag, artifact)
                    .await
                    .map_err(|e| format!("the image store cannot keep the image: {e}"))?;
                Ok(Published {
                    pinned: format!(
                        "{}/{name}/{repository}@{}",
                        images.address(),
                        artifact.manifest.digest
                    ),
                    push,
                })
            }
        }
    }

    /// Deletes the manifest `digest` of `image`'s repository with `registry`.
    pub async fn delete(
        &self,
        registry: &Registry,
        image: &Image,
        digest: &str,
    ) -> Result<Deleted, RegistryFailure> {
        self.check_reachable(&image.registry)
            .map_err(RegistryFailure::NotAllowed)?;
        Ok(registry.delete(&self.http, image, digest).await?)
    }

    /// What a Docker Engine pulls `reference` (`registry/repository@digest`)
    /// with: a password minted for the organisation when the image is in
    /// the server's image store; the organisation's registry adapter's
    /// credentials when it is in its registry; none (anonymous) elsewhere.
    pub async fn pull_credentials(
        &self,
        organisation: u64,
        reference: &str,
    ) -> Result<Option<bollard::auth::DockerCredentials>, String> {
        let Some((registry_host, rest)) = reference.split_once('/') else {
            return Ok(None);
        };
        if let Some(images) = self
            .images
            .as_ref()
            .filter(|i| i.address() == registry_host)
        {
            return Ok(Some(bollard::auth::DockerCredentials {
                username: Some(images::PULL_USER.into()),
                password: Some(images.pull_password(organisation)),
                serveraddress: Some(registry_host.into()),
                ..Default::default()
            }));
        }
        let repository = rest.split(['@', ':']).next().unwrap_or(rest);
        let Ok(registry) = self.current(organisation) else {
            return Ok(None);
        };
        let image = registry.image(repository, "pull").await?;
        if image.registry != registry_host {
            return Ok(None);
        }
        self.check_reachable(registry_host)?;
        let target = Image {
            registry: registry_host.into(),
            repository: repository.into(),
            tag: "pull".into(),
        };
        let credentials = registry
            .credentials(&target)
            .await
            .map_err(|e| e.to_string())?;
        Ok(match credentials {
            Credentials::Anonymous => None,
            Credentials::Basic { username, password } => Some(bollard::auth::DockerCredentials {
                username: Some(username),
                password: Some(password),
                serveraddress: Some(registry_host.into()),
                ..Default::default()
            }),
            Credentials::Bearer(token) => Some(bollard::auth::DockerCredentials {
                registrytoken: Some(token),
                serveraddress: Some(registry_host.into()),
                ..Default::default()
            }),
        })
    }

    /// Records that `organisation` has `digest` in `repository` of
    /// `registry`, so later pushes there can mount it.
    pub fn record_blob(&self, organisation: u64, registry: &str, repository: &str, digest: &str) {
        self.blobs
            .record(organisation, registry, repository, digest);
    }
}
