//! Services: something deployed on a target, each change an immutable
//! numbered revision. The store keeps who uses which target and release, so
//! a target or release in use is not deleted from under a service.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::jobs::{Job, JobKind, JobTrees, lift};
use super::releases::Release;
use super::targets::target_services_key;
use super::{Store, StoreError, decode, encode, key, name_key, now_ms};

/// A service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Its id.
    pub id: u64,
    /// The organisation.
    pub organisation: u64,
    /// The target it runs on.
    pub target: String,
    /// A DNS label, unique on the target.
    pub name: String,
    /// The newest revision.
    pub revision: u32,
    /// The revision the last deploy applied, if one did.
    pub running: Option<u32>,
    /// Who created it.
    pub created_by: String,
    /// When, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it last changed.
    pub updated_ms: u64,
}

/// One revision of a service: what it runs, as it was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// Its number, from 1.
    pub revision: u32,
    /// The service's settings; the domain alone reads them.
    pub spec: serde_json::Value,
    /// The image, pinned by digest when it came from a release.
    pub image: String,
    /// The release it came from.
    pub release: Option<u64>,
    /// Who made it.
    pub by: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// Why a service was not written.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No service has the id.
    #[error("no service {0}")]
    NotFound(u64),
    /// The target has a service of that name.
    #[error("the target has a service named `{0}` already")]
    NameTaken(String),
    /// The organisation has no such target.
    #[error("no target `{0}`")]
    NoTarget(String),
    /// The release is deleted, or not the organisation's.
    #[error("release {0} does not exist")]
    NoRelease(u64),
    /// An operation is on the service already: its job.
    #[error("job {0} is working on the service")]
    Busy(u64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Refusal {
    Missing(u64),
    NameTaken,
    NoTarget,
    NoRelease(u64),
    Busy(u64),
    Corrupt,
}

fn refused(e: TransactionError<Refusal>, name: &str, target: &str) -> ServiceError {
    match e {
        TransactionError::Storage(e) => ServiceError::Store(e.into()),
        TransactionError::Abort(refusal) => match refusal {
            Refusal::Missing(id) => ServiceError::NotFound(id),
            Refusal::NameTaken => ServiceError::NameTaken(name.into()),
            Refusal::NoTarget => ServiceError::NoTarget(target.into()),
            Refusal::NoRelease(id) => ServiceError::NoRelease(id),
            Refusal::Busy(job) => ServiceError::Busy(job),
            Refusal::Corrupt => ServiceError::Store(StoreError::Corrupt {
                tree: "services",
                detail: "a service record does not decode".into(),
            }),
        },
    }
}

/// A service's name key on its target.
fn service_name_key(organisation: u64, target: &str, name: &str) -> Vec<u8> {
    let mut key = name_key(organisation, target);
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    key
}

fn revision_key(service: u64, revision: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&service.to_be_bytes());
    key[8..].copy_from_slice(&revision.to_be_bytes());
    key
}

fn owner_key(organisation: u64, id: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&organisation.to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

type Abort = ConflictableTransactionError<Refusal>;

/// Adds or removes `id` in the id list at `key`.
fn list_change(tree: &TransactionalTree, key: &[u8], id: u64, add: bool) -> Result<(), Abort> {
    let mut ids: Vec<u64> = match tree.get(key)? {
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|_| Abort::Abort(Refusal::Corrupt))?
        }
        None => Vec::new(),
    };
    ids.retain(|i| *i != id);
    if add {
        ids.push(id);
    }
    if ids.is_empty() {
        tree.remove(key)?;
    } else {
        tree.insert(key, encode(&ids))?;
    }
    Ok(())
}

/// Moves service `id`'s holds from the releases in `before` to those in
/// `after`.
fn move_holds(
    on_release: &TransactionalTree,
    id: u64,
    before: &[u64],
    after: &[u64],
) -> Result<(), Abort> {
    for release in before.iter().filter(|r| !after.contains(r)) {
        list_change(on_release, &key(*release), id, false)?;
    }
    for release in after.iter().filter(|r| !before.contains(r)) {
        list_change(on_release, &key(*release), id, true)?;
    }
    Ok(())
}

/// The releases a service holds: those of its newest and running revisions.
fn held(revisions: &[Option<&Revision>]) -> Vec<u64> {
    let mut ids: Vec<u64> = revisions
        .iter()
        .flatten()
        .filter_map(|r| r.release)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn read<T: serde::de::DeserializeOwned>(
    tree: &TransactionalTree,
    key: &[u8],
) -> Result<Option<T>, Abort> {
    tree.get(key)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|_| Abort::Abort(Refusal::Corrupt)))
        .transpose()
}

/// Refuses a release that is not the organisation's or is deleted.
fn live_release(
    releases: &TransactionalTree,
    organisation: u64,
    release: Option<u64>,
) -> Result<(), Abort> {
    if let Some(id) = release {
        let found: Option<Release> = read(releases, &key(id))?;
        if !found.is_some_and(|r| r.organisation == organisation && !r.status.is_deleted()) {
            return Err(Abort::Abort(Refusal::NoRelease(id)));
        }
    }
    Ok(())
}

impl Store {
    /// Creates a service on the organisation's `target` with its first
    /// revision (whose number is set here), in one transaction.
    pub fn create_service(
        &self,
        organisation: u64,
        target: &str,
        name: &str,
        mut first: Revision,
    ) -> Result<ServiceRecord, ServiceError> {
        let now = now_ms();
        first.revision = 1;
        let service = ServiceRecord {
            id: self.next_id()?,
            organisation,
            target: target.into(),
            name: name.into(),
            revision: 1,
            running: None,
            created_by: first.by.clone(),
            created_ms: now,
            updated_ms: now,
        };
        let id = service.id;
        let named = service_name_key(organisation, target, name);
        (
            &self.services,
            &self.service_revisions,
            &self.service_names,
            &self.organisation_services,
            &self.target_services,
            &self.release_services,
            &self.targets,
            &self.releases,
        )
            .transaction(
                |(services, revisions, names, owners, on_target, on_release, targets, releases)| {
                    if targets.get(name_key(organisation, target))?.is_none() {
                        return Err(Abort::Abort(Refusal::NoTarget));
                    }
                    if names.get(named.as_slice())?.is_some() {
                        return Err(Abort::Abort(Refusal::NameTaken));
                    }
                    live_release(releases, organisation, first.release)?;
                    names.insert(named.as_slice(), &key(id))?;
                    services.insert(&key(id), encode(&service))?;
                    revisions.insert(&revision_key(id, 1), encode(&first))?;
                    owners.insert(&owner_key(organisation, id), &[])?;
                    list_change(
                        on_target,
                        &target_services_key(organisation, target),
                        id,
                        true,
                    )?;
                    for release in held(&[Some(&first)]) {
                        list_change(on_release, &key(release), id, true)?;
                    }
                    Ok(())
                },
            )
            .map_err(|e| refused(e, name, target))?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(service)
    }

    /// Adds `next` as the service's newest revision (its number set here).
    pub fn revise_service(&self, id: u64, next: Revision) -> Result<ServiceRecord, ServiceError> {
        let written = (
            &self.services,
            &self.service_revisions,
            &self.release_services,
            &self.releases,
        )
            .transaction(|(services, revisions, on_release, releases)| {
                let Some(mut service) = read::<ServiceRecord>(services, &key(id))? else {
                    return Err(Abort::Abort(Refusal::Missing(id)));
                };
                live_release(releases, service.organisation, next.release)?;
                let newest: Option<Revision> =
                    read(revisions, &revision_key(id, service.revision))?;
                let running: Option<Revision> = match service.running {
                    Some(r) => read(revisions, &revision_key(id, r))?,
                    None => None,
                };
                let mut next = next.clone();
                next.revision = service.revision + 1;
                service.revision = next.revision;
                service.updated_ms = now_ms();
                let before = held(&[newest.as_ref(), running.as_ref()]);
                move_holds(
                    on_release,
                    id,
                    &before,
                    &held(&[Some(&next), running.as_ref()]),
                )?;
                revisions.insert(&revision_key(id, next.revision), encode(&next))?;
                services.insert(&key(id), encode(&service))?;
                Ok(service)
            })
            .map_err(|e| refused(e, "", ""))?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(written)
    }

    /// Records that revision `running` (or none) is what runs now.
    pub fn set_service_running(
        &self,
        id: u64,
        running: Option<u32>,
    ) -> Result<ServiceRecord, ServiceError> {
        let written = (
            &self.services,
            &self.service_revisions,
            &self.release_services,
            &self.releases,
        )
            .transaction(|(services, revisions, on_release, releases)| {
                let Some(mut service) = read::<ServiceRecord>(services, &key(id))? else {
                    return Err(Abort::Abort(Refusal::Missing(id)));
                };
                let revision = |r: Option<u32>| -> Result<Option<Revision>, Abort> {
                    match r {
                        Some(r) => read(revisions, &revision_key(id, r)),
                        None => Ok(None),
                    }
                };
                let newest = revision(Some(service.revision))?;
                let now_running = revision(running)?;
                // A release deleted while it was being deployed is not recorded as running.
                let release = now_running.as_ref().and_then(|r| r.release);
                live_release(releases, service.organisation, release)?;
                let before = held(&[newest.as_ref(), revision(service.running)?.as_ref()]);
                move_holds(
                    on_release,
                    id,
                    &before,
                    &held(&[newest.as_ref(), now_running.as_ref()]),
                )?;
                service.running = running;
                service.updated_ms = now_ms();
                services.insert(&key(id), encode(&service))?;
                Ok(service)
            })
            .map_err(|e| refused(e, "", ""))?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(written)
    }

    /// Removes a service and its revisions, once nothing of it runs.
    pub fn delete_service(&self, id: u64) -> Result<(), ServiceError> {
        (
            &self.services,
            &self.service_revisions,
            &self.service_names,
            &self.organisation_services,
            &self.target_services,
            &self.release_services,
        )
            .transaction(|(services, stored, names, owners, on_target, on_release)| {
                let Some(service) = read::<ServiceRecord>(services, &key(id))? else {
                    return Err(Abort::Abort(Refusal::Missing(id)));
                };
                let newest: Option<Revision> = read(stored, &revision_key(id, service.revision))?;
                let running: Option<Revision> = match service.running {
                    Some(r) => read(stored, &revision_key(id, r))?,
                    None => None,
                };
                for release in held(&[newest.as_ref(), running.as_ref()]) {
                    list_change(on_release, &key(release), id, false)?;
                }
                let org = service.organisation;
                list_change(
                    on_target,
                    &target_services_key(org, &service.target),
                    id,
                    false,
                )?;
                names.remove(service_name_key(org, &service.target, &service.name))?;
                owners.remove(&owner_key(org, id))?;
                // Every revision, read in the transaction: one made meanwhile too.
                for revision in 1..=service.revision {
                    stored.remove(&revision_key(id, revision))?;
                }
                services.remove(&key(id))?;
                Ok(())
            })
            .map_err(|e| refused(e, "", ""))?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(())
    }

    /// A service by id, whatever its organisation.
    pub fn service(&self, id: u64) -> Result<Option<ServiceRecord>, StoreError> {
        self.services
            .get(key(id))?
            .map(|bytes| decode("services", &bytes))
            .transpose()
    }

    /// One revision of a service.
    pub fn service_revision(&self, id: u64, revision: u32) -> Result<Option<Revision>, StoreError> {
        self.service_revisions
            .get(revision_key(id, revision))?
            .map(|bytes| decode("service_revisions", &bytes))
            .transpose()
    }

    /// Every revision of a service, oldest first.
    pub fn service_revisions(&self, id: u64) -> Result<Vec<Revision>, StoreError> {
        self.service_revisions
            .scan_prefix(key(id))
            .values()
            .map(|bytes| decode("service_revisions", &bytes?))
            .collect()
    }

    /// The organisation's services, oldest first.
    pub fn organisation_services(
        &self,
        organisation: u64,
    ) -> Result<Vec<ServiceRecord>, StoreError> {
        let mut found = Vec::new();
        for owned in self
            .organisation_services
            .scan_prefix(key(organisation))
            .keys()
        {
            let owned = owned?;
            if let Some(bytes) = self.services.get(&owned[8..])? {
                found.push(decode("services", &bytes)?);
            }
        }
        Ok(found)
    }

    /// The ids of the services whose newest or running revision uses `release`.
    pub fn release_services(&self, release: u64) -> Result<Vec<u64>, StoreError> {
        match self.release_services.get(key(release))? {
            Some(bytes) => decode("release_services", &bytes),
            None => Ok(Vec::new()),
        }
    }

    /// Queues an operation on service `id` as a job whose first step starts
    /// from `state`, unless another operation on it has not ended.
    pub fn start_operation(&self, id: u64, state: serde_json::Value) -> Result<Job, ServiceError> {
        let service = self.service(id)?.ok_or(ServiceError::NotFound(id))?;
        let mut job = self.new_job(service.organisation, JobKind::ServiceOperation, id)?;
        job.state = state;
        let (jobs, open, owners, subjects) = self.job_trees();
        (&self.services, jobs, open, owners, subjects)
            .transaction(|(services, jobs, open, owners, subjects)| {
                if services.get(key(id))?.is_none() {
                    return Err(Abort::Abort(Refusal::Missing(id)));
                }
                let trees = JobTrees {
                    jobs,
                    open,
                    owners,
                    subjects,
                };
                let latest = trees
                    .of(JobKind::ServiceOperation, id)
                    .map_err(|e| lift(e, Refusal::Corrupt))?;
                if let Some(latest) = latest.filter(|j| !j.status.is_final()) {
                    return Err(Abort::Abort(Refusal::Busy(latest.id)));
                }
                trees.insert(&job).map_err(|e| lift(e, Refusal::Corrupt))
            })
            .map_err(|e| refused(e, "", ""))?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(job)
    }
}
