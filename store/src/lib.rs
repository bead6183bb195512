//! Durable state in sled: the only crate that talks to the database. It
//! knows the records and their trees, not the API, packaging, registries or
//! plugins that use them.
//!
//! Each record kind has a tree of its own; values are JSON. The database holds
//! its schema version in the `meta` tree and [`Store::open`] migrates older
//! data before anything else reads it. Changes that touch several keys are one
//! sled transaction, so a crash leaves either all of them or none.

mod access;
mod integrations;
mod jobs;
mod plans;
mod plugins;
mod registries;
mod releases;
mod schema;
mod seal;
mod services;
mod targets;

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};
use sled::transaction::TransactionError;

pub use access::{Bootstrapped, Organisation, Principal, Role, User};
pub use integrations::{Integration, IntegrationError};
pub use jobs::{Job, JobError, JobKind, JobRequest, JobStatus, OpenJob, Requested};
pub use plans::{PlanError, PlanRecord};
pub use plugins::StoredPlugin;
pub use registries::{
    AdapterCode, Origin, RegistryChangeRecord, RegistryChoice, StoredRegistry, StoredSettings,
};
pub use releases::{
    Diagnostic, LayerInfo, LogLine, NewRelease, PushReport, Release, ReleaseImage, Stage, Status,
    now_ms, proposed_name,
};
pub use schema::{SCHEMA_VERSION, version as schema_version};
pub use seal::{KEY_FILE as SEAL_KEY_FILE, KEY_VARIABLE as SEAL_KEY_VARIABLE};
pub use services::{Revision, ServiceError, ServiceRecord};
pub use targets::{Connection, StoredTarget, TargetChangeRecord, TargetChoice, TargetError};

/// The database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    /// The data directory was written by a newer Slipway.
    #[error(
        "the data directory has schema version {found}; this Slipway understands up to {supported}"
    )]
    TooNew {
        /// Version in the database.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// Secrets cannot be sealed or opened (the key is missing or wrong).
    #[error("cannot seal or open secrets: {0}")]
    Seal(String),
    /// The release was deleted; it stays deleted.
    #[error("release {0} was deleted")]
    ReleaseDeleted(u64),
    /// Services run the release: their ids.
    #[error("services {0:?} run the release")]
    ReleaseInUse(Vec<u64>),
    /// Another release of the organisation, not deleted, has the name.
    #[error("the organisation has a release named `{0}` already")]
    ReleaseNameTaken(String),
    /// A stored value does not decode.
    #[error("corrupt record in `{tree}`: {detail}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// What failed.
        detail: String,
    },
}

/// The open database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    organisations: sled::Tree,
    users: sled::Tree,
    tokens: sled::Tree,
    integrations: sled::Tree,
    canvases: sled::Tree,
    plugins: sled::Tree,
    components: sled::Tree,
    /// Hosts an org-admin granted an uploaded plugin, by organisation, kind and name.
    plugin_hosts: sled::Tree,
    releases: sled::Tree,
    registries: sled::Tree,
    /// Registry changes by organisation, oldest first.
    registry_changes: sled::Tree,
    /// Release ids by organisation and name, for releases not deleted.
    release_names: sled::Tree,
    /// Every release by organisation: its id after the organisation's.
    organisation_releases: sled::Tree,
    /// Releases not deleted by the image they pushed: see [`releases::image_key`].
    release_images: sled::Tree,
    /// Jobs by id.
    jobs: sled::Tree,
    /// Jobs not ended, with their organisation and whether they wait: the
    /// runner's work list.
    open_jobs: sled::Tree,
    /// Every job by organisation: its id after the organisation's.
    organisation_jobs: sled::Tree,
    /// The latest job of each kind for each subject.
    subject_jobs: sled::Tree,
    /// Deploy targets by organisation and name.
    targets: sled::Tree,
    /// Target changes by organisation, name and change id.
    target_changes: sled::Tree,
    /// Services by id.
    services: sled::Tree,
    /// Service revisions by service id and number.
    service_revisions: sled::Tree,
    /// Service ids by organisation, target and name.
    service_names: sled::Tree,
    /// Every service by organisation: its id after the organisation's.
    organisation_services: sled::Tree,
    /// The ids of the services on each target, by organisation and name.
    target_services: sled::Tree,
    /// The ids of the services holding each release (newest or running revision).
    release_services: sled::Tree,
    /// Deploy plans by id.
    plans: sled::Tree,
    /// Every plan by organisation: its id after the organisation's.
    organisation_plans: sled::Tree,
    /// The execution that last held each service (it holds it until it ends).
    service_executions: sled::Tree,
    /// Seals secrets before they are written.
    sealer: std::sync::Arc<seal::Sealer>,
    /// Added to generated ids: see [`schema::id_floor`].
    id_floor: u64,
    /// This database's own name: see [`Store::server_id`].
    server_id: String,
}

impl Store {
    /// Opens (or creates) the database in `dir` and brings its schema up to
    /// date. A migration that leaves plain secrets in the database's log
    /// (sled keeps overwritten values until it reclaims their segment) has
    /// the database written afresh before it opens.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        schema::finish_rewrite(dir)?;
        let store = Store::open_as_is(dir)?;
        schema::migrate(&store)?;
        if schema::rewrite_pending(&store)? {
            drop(store);
            schema::rewrite(dir)?;
            return Store::open_as_is(dir);
        }
        Ok(store)
    }

    /// Opens the database in `dir` without migrating it.
    fn open_as_is(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let store = Store {
            meta: db.open_tree("meta")?,
            organisations: db.open_tree("organisations")?,
            users: db.open_tree("users")?,
            tokens: db.open_tree("tokens")?,
            integrations: db.open_tree("integrations")?,
            canvases: db.open_tree("canvases")?,
            plugins: db.open_tree("plugins")?,
            components: db.open_tree("components")?,
            plugin_hosts: db.open_tree("plugin_hosts")?,
            releases: db.open_tree("releases")?,
            registries: db.open_tree("registries")?,
            registry_changes: db.open_tree("registry_changes")?,
            jobs: db.open_tree("jobs")?,
            open_jobs: db.open_tree("open_jobs")?,
            organisation_jobs: db.open_tree("organisation_jobs")?,
            subject_jobs: db.open_tree("subject_jobs")?,
            release_names: db.open_tree("release_names")?,
            organisation_releases: db.open_tree("organisation_releases")?,
            release_images: db.open_tree("release_images")?,
            targets: db.open_tree("targets")?,
            target_changes: db.open_tree("target_changes")?,
            services: db.open_tree("services")?,
            service_revisions: db.open_tree("service_revisions")?,
            service_names: db.open_tree("service_names")?,
            organisation_services: db.open_tree("organisation_services")?,
            target_services: db.open_tree("target_services")?,
            release_services: db.open_tree("release_services")?,
            plans: db.open_tree("plans")?,
            organisation_plans: db.open_tree("organisation_plans")?,
            service_executions: db.open_tree("service_executions")?,
            sealer: std::sync::Arc::new(seal::Sealer::open(dir)?),
            id_floor: schema::id_floor(&db.open_tree("meta")?)?,
            server_id: server_id(&db.open_tree("meta")?)?,
            db,
        };
        Ok(store)
    }

    /// Eight hex digits that name this database (and so the server using
    /// it) apart from others: on a Docker Engine that several servers share,
    /// each one's objects carry its own.
    pub fn server_id(&self) -> String {
        self.server_id.clone()
    }

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// A fresh unique id.
    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.id_floor + self.db.generate_id()? + 1)
    }
}

/// The database's name in `meta`, made at its first open.
fn server_id(meta: &sled::Tree) -> Result<String, StoreError> {
    const KEY: &[u8] = b"server-id";
    if let Some(id) = meta.get(KEY)? {
        return Ok(String::from_utf8_lossy(&id).into_owned());
    }
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the system's random source");
    let id = hex::encode(bytes);
    // Two first opens racing keep whichever was written first.
    match meta.compare_and_swap(KEY, None as Option<&[u8]>, Some(id.as_bytes()))? {
        Ok(()) => Ok(id),
        Err(current) => Ok(current
            .current
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or(id)),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        detail: e.to_string(),
    })
}

/// A failed transaction that never aborts on purpose, as a store error.
fn aborted(tree: &'static str, err: TransactionError<()>) -> StoreError {
    match err {
        TransactionError::Storage(e) => StoreError::Sled(e),
        TransactionError::Abort(()) => StoreError::Corrupt {
            tree,
            detail: "transaction aborted".into(),
        },
    }
}

/// The key of `name` among an organisation's names: its id, then the name.
fn name_key(organisation: u64, name: &str) -> Vec<u8> {
    let mut key = organisation.to_be_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

fn key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empties the job trees, as schemas before 7 had none.
    fn forget_jobs(store: &Store) {
        let (jobs, open, owners, subjects) = store.job_trees();
        for tree in [jobs, open, owners, subjects] {
            tree.clear().unwrap();
        }
    }

    /// A release of `integration` at `version`, named uniquely.
    fn named(integration: &str, version: u32) -> NewRelease {
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        NewRelease {
            integration: integration.into(),
            version,
            name: format!("{integration}-v{version}-r{n}"),
            description: None,
        }
    }

    #[test]
    fn bootstrap_happens_once_and_the_token_authenticates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let made = store
            .bootstrap("acme", None)
            .unwrap()
            .expect("first start bootstraps");
        assert!(made.token.starts_with("slw_") && made.token.len() == 68);
        assert_eq!(made.admin.role, Role::OrgAdmin);
        assert!(
            store.bootstrap("acme", None).unwrap().is_none(),
            "only once"
        );

        let principal = store.authenticate(&made.token).unwrap().unwrap();
        assert_eq!(principal.organisation.name, "acme");
        assert_eq!(principal.user, made.admin);
        assert!(store.authenticate("slw_nope").unwrap().is_none());
    }

    #[test]
    fn only_a_hash_of_the_token_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let made = store.bootstrap("acme", None).unwrap().unwrap();
        for tree in [
            &store.meta,
            &store.organisations,
            &store.users,
            &store.tokens,
        ] {
            for entry in tree.iter() {
                let (k, v) = entry.unwrap();
                for bytes in [k.as_ref(), v.as_ref()] {
                    let text = String::from_utf8_lossy(bytes);
                    assert!(
                        !text.contains(&made.token[4..]),
                        "the plain token is stored"
                    );
                }
            }
        }
    }

    #[test]
    fn state_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let token = {
            let store = Store::open(dir.path()).unwrap();
            let token = store
                .bootstrap("acme", Some("slw_fixed"))
                .unwrap()
                .unwrap()
                .token;
            store.flush().unwrap();
            token
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(token, "slw_fixed");
        assert!(store.authenticate(&token).unwrap().is_some());
        assert!(store.bootstrap("other", None).unwrap().is_none());
        assert_eq!(schema_version(&store).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            schema::set_version(&store, 99);
            store.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "the data directory has schema version 99; this Slipway understands up to {SCHEMA_VERSION}"
            )
        );
    }

    #[test]
    fn migrating_from_version_4_names_every_release() {
        let dir = tempfile::tempdir().unwrap();
        let ids = {
            let store = Store::open(dir.path()).unwrap();
            let org = store
                .bootstrap("acme", None)
                .unwrap()
                .unwrap()
                .organisation
                .id;
            let mut ids = Vec::new();
            // Two of orders@1 and a deleted one, stored before releases had names.
            for deleted in [false, false, true] {
                let mut release = store.create_release(org, named("orders", 1)).unwrap();
                if deleted {
                    release.status = Status::Deleted;
                }
                let mut raw = serde_json::to_value(&release).unwrap();
                raw.as_object_mut().unwrap().remove("name");
                store
                    .releases
                    .insert(key(release.id), encode(&raw))
                    .unwrap();
                ids.push(release.id);
            }
            store.release_names.clear().unwrap();
            schema::set_version(&store, 4);
            store.flush().unwrap();
            ids
        };
        let store = Store::open(dir.path()).unwrap();
        let names: Vec<String> = ids
            .iter()
            .map(|id| store.release(*id).unwrap().unwrap().name)
            .collect();
        let second = format!("orders-v1-{}", ids[1]);
        assert_eq!(names, ["orders-v1", second.as_str(), "orders-v1"]);
        let org = store.release(ids[0]).unwrap().unwrap().organisation;
        assert_eq!(store.release_named(org, "orders-v1").unwrap(), Some(ids[0]));
        assert_eq!(store.release_named(org, &second).unwrap(), Some(ids[1]));
    }

    #[test]
    fn migrating_from_version_1_queues_waiting_and_packaged_releases() {
        let dir = tempfile::tempdir().unwrap();
        let (queued, packaged) = {
            let store = Store::open(dir.path()).unwrap();
            let org = store
                .bootstrap("acme", None)
                .unwrap()
                .unwrap()
                .organisation
                .id;
            let queued = store.create_release(org, named("orders", 1)).unwrap();
            let mut done = store.create_release(org, named("orders", 2)).unwrap();
            done.status = Status::Failed;
            store.put_release(&done).unwrap();
            // Version 2 ended releases at `packaged`.
            let packaged = store.create_release(org, named("orders", 3)).unwrap();
            let mut raw: serde_json::Value = serde_json::to_value(&packaged).unwrap();
            raw["status"] = "packaged".into();
            store
                .releases
                .insert(key(packaged.id), encode(&raw))
                .unwrap();
            // As version 1 left it: no jobs.
            forget_jobs(&store);
            schema::set_version(&store, 1);
            store.flush().unwrap();
            (queued, packaged)
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(schema_version(&store).unwrap(), SCHEMA_VERSION);
        let ids: Vec<u64> = store
            .queued_releases()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids,
            [queued.id, packaged.id],
            "packaged ones go on to an image"
        );
        assert_eq!(
            store.release(packaged.id).unwrap().unwrap().status,
            Status::Interrupted
        );
    }

    #[test]
    fn migrating_from_version_3_seals_registry_secrets_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "plain-secret-3f9c1a7e";
        let before = {
            let store = Store::open(dir.path()).unwrap();
            let made = store.create_organisation("acme").unwrap().organisation;
            // As version 3 wrote a registry: its secrets in plain JSON.
            let raw = serde_json::json!({
                "settings": {"adapter": "distribution", "version": "^1",
                    "settings": {"url": "http://registry.example"},
                    "secrets": {"password": secret}},
                "changed_by": "ada", "changed_ms": 1
            });
            store.registries.insert(key(7), encode(&raw)).unwrap();
            schema::set_version(&store, 3);
            store.flush().unwrap();
            made
        };
        let store = Store::open(dir.path()).unwrap();
        // Ids go on past those in use: sled's counter does not travel with
        // the trees.
        let after = store.create_organisation("beta").unwrap().organisation;
        assert!(after.id > before.id, "{} reused", after.id);
        assert_eq!(store.organisation(before.id).unwrap().unwrap().name, "acme");
        assert!(!schema::rewrite_pending(&store).unwrap());
        let stored = store.registry(7).unwrap().unwrap();
        assert_eq!(stored.settings.secrets["password"], secret);
        let raw = store.registries.get(key(7)).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(secret));
        drop(store);
        let mut files = vec![dir.path().to_path_buf()];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} still holds the plain secret",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn migrating_from_version_6_gives_releases_in_flight_and_deleting_their_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let (compiling, deleting) = {
            let store = Store::open(dir.path()).unwrap();
            let mut compiling = store.create_release(1, named("orders", 1)).unwrap();
            compiling.status = Status::Compiling;
            compiling.interruptions = 1;
            store.put_release(&compiling).unwrap();
            let mut deleting = store.create_release(1, named("orders", 2)).unwrap();
            deleting.status = Status::Deleting;
            store.put_release(&deleting).unwrap();
            forget_jobs(&store);
            schema::set_version(&store, 6);
            store.flush().unwrap();
            (compiling, deleting)
        };
        let store = Store::open(dir.path()).unwrap();
        let build = store
            .job_of(JobKind::BuildRelease, compiling.id)
            .unwrap()
            .unwrap();
        assert_eq!((build.status, build.interruptions), (JobStatus::Running, 1));
        let deletion = store
            .job_of(JobKind::DeleteRelease, deleting.id)
            .unwrap()
            .unwrap();
        assert_eq!(deletion.status, JobStatus::Queued);
        assert_eq!(
            store.job_of(JobKind::BuildRelease, deleting.id).unwrap(),
            None
        );
        assert_eq!(store.open_jobs().unwrap().len(), 2);
        assert_eq!(store.organisation_jobs(1).unwrap(), [build, deletion]);
    }

    #[test]
    fn a_deleted_release_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut release = store.create_release(1, named("orders", 1)).unwrap();
        let claimed = {
            let mut r = release.clone();
            r.status = Status::Packaging;
            r
        };
        release.status = Status::Deleted;
        store.put_release(&release).unwrap();
        // A worker that read it before the delete tries to record its outcome.
        let err = store.put_release(&claimed).unwrap_err();
        assert!(matches!(err, StoreError::ReleaseDeleted(id) if id == release.id));
        assert_eq!(
            store.release(release.id).unwrap().unwrap().status,
            Status::Deleted
        );
        assert!(store.queued_releases().unwrap().is_empty());
    }

    #[test]
    fn a_deletion_starts_from_the_release_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut release = store.create_release(1, named("orders", 1)).unwrap();
        release.status = Status::Distributing;
        store.put_release(&release).unwrap();
        // What a DELETE read, then the worker made it `ready` with an image.
        let stale = store.release(release.id).unwrap().unwrap();
        release.status = Status::Ready;
        release.image = Some(image("sha256:00"));
        store.put_release(&release).unwrap();
        assert!(stale.image.is_none());
        let deleting = store
            .start_deletion(release.id, "deletion asked by ada", "ada")
            .unwrap()
            .unwrap();
        assert_eq!(deleting.status, Status::Deleting, "its image is to go");
        assert_eq!(deleting.image, release.image);
        assert_eq!(store.release(release.id).unwrap().unwrap(), deleting);
        assert_eq!(
            store.start_deletion(release.id, "again", "ada").unwrap(),
            None
        );

        let queued = store.create_release(1, named("orders", 2)).unwrap();
        let deleted = store
            .start_deletion(queued.id, "deletion asked by ada", "ada")
            .unwrap()
            .unwrap();
        assert_eq!(deleted.status, Status::Deleted);
        assert!(store.queued_releases().unwrap().is_empty());
    }

    fn image(digest: &str) -> ReleaseImage {
        ReleaseImage {
            reference: "registry.example/flows/orders:v1".into(),
            digest: digest.into(),
            registry: "registry.example".into(),
            repository: "flows/orders".into(),
            tag: "v1".into(),
            adapter: "distribution@1.0.0".into(),
            layers: Vec::new(),
            push: PushReport::default(),
        }
    }

    #[test]
    fn releases_are_found_by_organisation_and_by_image_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut ours = Vec::new();
        for version in 1..=3 {
            ours.push(store.create_release(1, named("orders", version)).unwrap());
            store.create_release(2, named("orders", version)).unwrap();
        }
        let listed: Vec<u64> = store
            .organisation_releases(1)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, ours.iter().map(|r| r.id).collect::<Vec<_>>());

        for release in &mut ours[..2] {
            release.status = Status::Ready;
            release.image = Some(image("sha256:aa"));
            store.put_release(release).unwrap();
        }
        let sharing = |digest| {
            store
                .releases_with_image("registry.example", "flows/orders", digest)
                .unwrap()
        };
        assert_eq!(sharing("sha256:aa"), [ours[0].id, ours[1].id]);
        assert!(sharing("sha256:a").is_empty(), "a prefix is another image");
        store
            .start_deletion(ours[0].id, "deletion asked", "ada")
            .unwrap();
        assert_eq!(
            sharing("sha256:aa"),
            [ours[1].id],
            "deleting ones hold none"
        );
        assert_eq!(store.organisation_releases(1).unwrap().len(), 3);
    }

    #[test]
    fn migrating_from_version_5_indexes_releases() {
        let dir = tempfile::tempdir().unwrap();
        let (ready, deleting) = {
            let store = Store::open(dir.path()).unwrap();
            let mut ready = store.create_release(7, named("orders", 1)).unwrap();
            ready.status = Status::Ready;
            ready.image = Some(image("sha256:bb"));
            store.put_release(&ready).unwrap();
            let mut deleting = store.create_release(7, named("orders", 2)).unwrap();
            deleting.status = Status::Deleting;
            deleting.image = Some(image("sha256:bb"));
            store.put_release(&deleting).unwrap();
            store.organisation_releases.clear().unwrap();
            store.release_images.clear().unwrap();
            schema::set_version(&store, 5);
            store.flush().unwrap();
            (ready.id, deleting.id)
        };
        let store = Store::open(dir.path()).unwrap();
        let listed: Vec<u64> = store
            .organisation_releases(7)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, [ready, deleting]);
        assert_eq!(
            store
                .releases_with_image("registry.example", "flows/orders", "sha256:bb")
                .unwrap(),
            [ready]
        );
    }

    #[test]
    fn concurrent_first_starts_make_one_organisation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let made: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let store = store.clone();
                    scope
                        .spawn(move || store.bootstrap(&format!("org{i}"), None).unwrap().is_some())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(made.iter().filter(|m| **m).count(), 1);
        assert_eq!(store.organisations.len(), 1);
        assert_eq!(store.tokens.len(), 1);
    }
}
