//! How calls share the machine: call slots and linear memory, in all and
//! per tenant, so that one tenant's calls cannot starve another's.
//!
//! A call first takes a slot of its tenant's, then one of the runtime's; a
//! tenant's calls past its share wait on its own slots, never in front of
//! another tenant's. Memory is counted as it grows: a call that would take
//! the runtime or its tenant past the budget is refused the growth.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Linear memory bytes a set of calls may hold together.
#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One tenant's part.
#[derive(Debug)]
struct TenantShare {
    slots: Arc<Semaphore>,
    memory: Budget,
}

/// The runtime's slots and memory, and each tenant's part of them.
#[derive(Debug)]
pub(crate) struct Shares {
    slots: Arc<Semaphore>,
    memory: Arc<Budget>,
    tenants: Mutex<HashMap<u64, Arc<TenantShare>>>,
    tenant_slots: usize,
    tenant_memory: usize,
}

/// Which budget refused a call's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spent {
    /// What every running call shares.
    All(usize),
    /// The call's tenant's part.
    Tenant(usize),
}

/// What one call holds until it ends: its slots and the memory it grew into.
#[derive(Debug)]
pub(crate) struct Held {
    _slot: OwnedSemaphorePermit,
    _tenant_slot: Option<OwnedSemaphorePermit>,
    memory: Arc<Budget>,
    tenant: Option<Arc<TenantShare>>,
    bytes: usize,
}

impl Shares {
    /// `slots` calls and `memory` bytes in all; a tenant gets at most
    /// `tenant_slots` and `tenant_memory` of them.
    pub fn new(slots: usize, memory: usize, tenant_slots: usize, tenant_memory: usize) -> Shares {
        Shares {
            slots: Arc::new(Semaphore::new(slots)),
            memory: Arc::new(Budget::new(memory)),
            tenants: Mutex::new(HashMap::new()),
            tenant_slots,
            tenant_memory,
        }
    }

    /// Waits for a slot of `tenant`'s (when the call has one), then for one
    /// of the runtime's.
    pub async fn take(&self, tenant: Option<u64>) -> Held {
        let share = tenant.map(|t| self.tenant(t));
        let tenant_slot = match &share {
            Some(share) => Some(acquire(&share.slots).await),
            None => None,
        };
        Held {
            _slot: acquire(&self.slots).await,
            _tenant_slot: tenant_slot,
            memory: self.memory.clone(),
            tenant: share,
            bytes: 0,
        }
    }

    fn tenant(&self, tenant: u64) -> Arc<TenantShare> {
        let mut tenants = self.tenants.lock().expect("shares lock");
        tenants
            .entry(tenant)
            .or_insert_with(|| {
                Arc::new(TenantShare {
                    slots: Arc::new(Semaphore::new(self.tenant_slots)),
                    memory: Budget::new(self.tenant_memory),
                })
            })
            .clone()
    }
}

async fn acquire(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    slots
        .clone()
        .acquire_owned()
        .await
        .expect("call slots are never closed")
}

impl Held {
    /// Takes `bytes` more memory for the call, or says which budget is spent.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Spent> {
        if !self.memory.take(bytes) {
            return Err(Spent::All(self.memory.limit));
        }
        if let Some(tenant) = &self.tenant
            && !tenant.memory.take(bytes)
        {
            self.memory.give(bytes);
            return Err(Spent::Tenant(tenant.memory.limit));
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Gives `bytes` of the call's memory back.
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.memory.give(bytes);
        if let Some(tenant) = &self.tenant {
            tenant.memory.give(bytes);
        }
        self.bytes -= bytes;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.memory.give(self.bytes);
        if let Some(tenant) = &self.tenant {
            tenant.memory.give(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_past_its_slots_waits_while_another_goes_first() {
        let shares = Shares::new(4, 1 << 30, 2, 1 << 30);
        let _a1 = shares.take(Some(1)).await;
        let _a2 = shares.take(Some(1)).await;
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(50), shares.take(Some(1)));
        assert!(third.await.is_err(), "a third call of tenant 1 waits");
        let b = tokio::time::timeout(std::time::Duration::from_millis(50), shares.take(Some(2)));
        assert!(b.await.is_ok(), "tenant 2 is not held up");
    }

    #[tokio::test]
    async fn memory_is_refused_past_either_budget_and_given_back_at_the_end() {
        let shares = Shares::new(8, 100, 8, 60);
        let mut a = shares.take(Some(1)).await;
        assert_eq!(a.grow(50), Ok(()));
        assert_eq!(a.grow(20), Err(Spent::Tenant(60)));
        let mut b = shares.take(Some(2)).await;
        assert_eq!(b.grow(60), Err(Spent::All(100)));
        assert_eq!(b.grow(50), Ok(()));
        drop(a);
        let mut c = shares.take(Some(1)).await;
        assert_eq!(c.grow(50), Ok(()), "the first call's memory came back");
        b.shrink(50);
        c.shrink(50);
        assert_eq!(c.grow(60), Ok(()), "what was given back is there again");
    }
}
