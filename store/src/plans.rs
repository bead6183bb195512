//! Deploy plans (seed 002), immutable once stored, and their executions:
//! jobs that hold each of their services until they end, so one execution
//! at a time acts on a service.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::jobs::{Job, JobKind, JobTrees, lift};
use super::{Store, StoreError, decode, encode, key, now_ms};

/// A stored plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// Its id.
    pub id: u64,
    /// The organisation.
    pub organisation: u64,
    /// The plan as parsed; the domain alone reads it.
    pub plan: serde_json::Value,
    /// The document as it was sent.
    pub source: String,
    /// Who stored it.
    pub created_by: String,
    /// When, in ms since the Unix epoch.
    pub created_ms: u64,
}

/// Why a plan or an execution was not written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No plan has the id.
    #[error("no plan {0}")]
    NotFound(u64),
    /// An execution of the plan has not ended: its job.
    #[error("execution {0} of the plan has not ended")]
    Running(u64),
    /// Another execution that has not ended holds the service.
    #[error("execution {execution} holds service {service}")]
    Held {
        /// The service.
        service: u64,
        /// The execution holding it.
        execution: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Refusal {
    Missing,
    Running(u64),
    Held(u64, u64),
    Corrupt,
}

fn refused(e: TransactionError<Refusal>, id: u64) -> PlanError {
    match e {
        TransactionError::Storage(e) => PlanError::Store(e.into()),
        TransactionError::Abort(Refusal::Missing) => PlanError::NotFound(id),
        TransactionError::Abort(Refusal::Running(job)) => PlanError::Running(job),
        TransactionError::Abort(Refusal::Held(service, execution)) => {
            PlanError::Held { service, execution }
        }
        TransactionError::Abort(Refusal::Corrupt) => PlanError::Store(StoreError::Corrupt {
            tree: "jobs",
            detail: "a job record does not decode".into(),
        }),
    }
}

fn owner_key(organisation: u64, id: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&organisation.to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

impl Store {
    /// Stores a plan; answers it with its id.
    pub fn create_plan(
        &self,
        organisation: u64,
        plan: serde_json::Value,
        source: String,
        by: &str,
    ) -> Result<PlanRecord, StoreError> {
        let record = PlanRecord {
            id: self.next_id()?,
            organisation,
            plan,
            source,
            created_by: by.into(),
            created_ms: now_ms(),
        };
        (&self.plans, &self.organisation_plans)
            .transaction(|(plans, owners)| {
                plans.insert(&key(record.id), encode(&record))?;
                owners.insert(&owner_key(organisation, record.id), &[])?;
                Ok(())
            })
            .map_err(|e| super::aborted("plans", e))?;
        self.db.flush()?;
        Ok(record)
    }

    /// A plan by id, whatever its organisation.
    pub fn plan(&self, id: u64) -> Result<Option<PlanRecord>, StoreError> {
        self.plans
            .get(key(id))?
            .map(|bytes| decode("plans", &bytes))
            .transpose()
    }

    /// The organisation's plans, oldest first.
    pub fn organisation_plans(&self, organisation: u64) -> Result<Vec<PlanRecord>, StoreError> {
        let mut plans = Vec::new();
        for entry in self
            .organisation_plans
            .scan_prefix(organisation.to_be_bytes())
        {
            let (owned, _) = entry?;
            if let Some(plan) = self.plans.get(&owned[8..])? {
                plans.push(decode("plans", &plan)?);
            }
        }
        Ok(plans)
    }

    /// Deletes plan `id`, unless an execution of it has not ended; the
    /// executions stay.
    pub fn delete_plan(&self, id: u64) -> Result<PlanRecord, PlanError> {
        let (jobs, open, owners, subjects) = self.job_trees();
        let deleted = (
            &self.plans,
            &self.organisation_plans,
            jobs,
            open,
            owners,
            subjects,
        )
            .transaction(|(plans, plan_owners, jobs, open, owners, subjects)| {
                let abort = ConflictableTransactionError::Abort;
                let Some(bytes) = plans.get(key(id))? else {
                    return Err(abort(Refusal::Missing));
                };
                let record: PlanRecord =
                    serde_json::from_slice(&bytes).map_err(|_| abort(Refusal::Corrupt))?;
                let trees = JobTrees {
                    jobs,
                    open,
                    owners,
                    subjects,
                };
                let latest = trees
                    .of(JobKind::PlanExecution, id)
                    .map_err(|e| lift(e, Refusal::Corrupt))?;
                if let Some(job) = latest.filter(|j| !j.status.is_final()) {
                    return Err(abort(Refusal::Running(job.id)));
                }
                plans.remove(&key(id))?;
                plan_owners.remove(&owner_key(record.organisation, id))?;
                Ok(record)
            })
            .map_err(|e| refused(e, id))?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(deleted)
    }

    /// Queues an execution for `organisation` whose first step starts from
    /// `state`, holding `services` until it ends; refused when an execution
    /// that has not ended holds one of them. Its subject is the plan it
    /// runs, or the execution it rolls back.
    pub fn start_execution(
        &self,
        organisation: u64,
        subject: u64,
        services: &[u64],
        state: serde_json::Value,
    ) -> Result<Job, PlanError> {
        let mut job = self.new_job(organisation, JobKind::PlanExecution, subject)?;
        job.state = state;
        let (jobs, open, owners, subjects) = self.job_trees();
        (&self.service_executions, jobs, open, owners, subjects)
            .transaction(|(held, jobs, open, owners, subjects)| {
                let trees = JobTrees {
                    jobs,
                    open,
                    owners,
                    subjects,
                };
                for &service in services {
                    let Some(holder) = held.get(key(service))? else {
                        continue;
                    };
                    let Some(bytes) = trees.jobs.get(&holder)? else {
                        continue;
                    };
                    let holder: Job = serde_json::from_slice(&bytes)
                        .map_err(|_| ConflictableTransactionError::Abort(Refusal::Corrupt))?;
                    if !holder.status.is_final() {
                        return Err(ConflictableTransactionError::Abort(Refusal::Held(
                            service, holder.id,
                        )));
                    }
                }
                for &service in services {
                    held.insert(&key(service), &key(job.id))?;
                }
                trees.insert(&job).map_err(|e| lift(e, Refusal::Corrupt))
            })
            .map_err(|e| refused(e, subject))?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(job)
    }

    /// The organisation's executions, oldest first.
    pub fn organisation_executions(&self, organisation: u64) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .organisation_jobs(organisation)?
            .into_iter()
            .filter(|job| job.kind == JobKind::PlanExecution)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobStatus;

    #[test]
    fn an_execution_holds_its_services_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let plan = store
            .create_plan(7, serde_json::json!({}), "x".into(), "ada")
            .unwrap();
        let first = store
            .start_execution(7, plan.id, &[11, 12], serde_json::json!({}))
            .unwrap();
        let refused = store
            .start_execution(7, plan.id, &[12, 13], serde_json::json!({}))
            .unwrap_err();
        assert!(
            matches!(refused, PlanError::Held { service: 12, execution } if execution == first.id),
            "{refused}"
        );
        assert!(matches!(
            store.delete_plan(plan.id),
            Err(PlanError::Running(id)) if id == first.id
        ));
        // Paused, it still holds them; ended, it holds nothing.
        store
            .update_job(first.id, |job| job.status = JobStatus::Paused)
            .unwrap();
        assert!(
            store
                .start_execution(7, plan.id, &[12], serde_json::json!({}))
                .is_err()
        );
        store
            .update_job(first.id, |job| job.status = JobStatus::Stopped)
            .unwrap();
        let second = store
            .start_execution(7, plan.id, &[12, 13], serde_json::json!({}))
            .unwrap();
        assert_eq!(store.organisation_executions(7).unwrap().len(), 2);
        // A deleted execution holds nothing either.
        store
            .update_job(second.id, |job| job.status = JobStatus::Paused)
            .unwrap();
        store.delete_job(second.id).unwrap();
        store
            .start_execution(7, plan.id, &[13], serde_json::json!({}))
            .unwrap();
        assert_eq!(store.organisation_plans(7).unwrap(), [plan]);
        assert!(store.organisation_plans(8).unwrap().is_empty());
    }
}
