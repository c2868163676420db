//! Call slots: how many calls run at once, in all and per tenant.
//!
//! A call first waits for its tenant's turn and only then for one of the
//! runtime's slots, so a tenant's queued calls never hold a slot another
//! tenant could use, and one busy tenant cannot take every slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout_at;

use crate::error::HostError;
use crate::limits::instant_after;

type Turns = Mutex<HashMap<Arc<str>, Arc<Semaphore>>>;

/// The runtime's call slots, shared by every version loaded into it.
pub(crate) struct Slots {
    all: Arc<Semaphore>,
    /// The number of slots in `all`.
    capacity: usize,
    /// Calls in [`Slots::acquire`] now.
    waiting: AtomicUsize,
    per_tenant: usize,
    /// One semaphore per tenant with a call queued or running; removed when
    /// its last call ends, so the map holds only tenants now active.
    tenants: Arc<Turns>,
}

/// A call's right to run, for as long as it is held.
pub(crate) struct Slot {
    // Dropped in this order: the runtime's slot, then the tenant's turn.
    _slot: OwnedSemaphorePermit,
    _turn: Turn,
}

impl Slots {
    /// At most `all` calls at once, and `per_tenant` of one tenant (no more
    /// than `all`: a larger figure means no per-tenant limit).
    pub(crate) fn new(all: usize, per_tenant: usize) -> Slots {
        let all = all.clamp(1, Semaphore::MAX_PERMITS);
        Slots {
            all: Arc::new(Semaphore::new(all)),
            capacity: all,
            waiting: AtomicUsize::new(0),
            per_tenant: per_tenant.clamp(1, all),
            tenants: Arc::default(),
        }
    }

    /// Waits, at most `wait` in all, for `tenant`'s turn and then a slot.
    /// Fails with [`HostError::TenantLimit`] or [`HostError::QueueTimeout`].
    pub(crate) async fn acquire(&self, tenant: &str, wait: Duration) -> Result<Slot, HostError> {
        let _waiting = Waiting::start(&self.waiting);
        let deadline = instant_after(wait);
        let mut turn = self.turn(tenant);
        match timeout_at(deadline, turn.semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => turn.permit = Some(permit),
            _ => {
                return Err(HostError::TenantLimit {
                    running: self.per_tenant,
                    waited: wait,
                });
            }
        }
        match timeout_at(deadline, self.all.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(Slot {
                _slot: slot,
                _turn: turn,
            }),
            _ => Err(HostError::QueueTimeout(wait)),
        }
    }

    /// Tenants with a call queued or running.
    pub(crate) fn active_tenants(&self) -> usize {
        lock(&self.tenants).len()
    }

    /// Calls holding a slot.
    pub(crate) fn running(&self) -> usize {
        self.capacity - self.all.available_permits()
    }

    /// Calls waiting for their tenant's turn or a slot.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    fn turn(&self, tenant: &str) -> Turn {
        let mut tenants = lock(&self.tenants);
        let (key, semaphore) = match tenants.get_key_value(tenant) {
            Some((key, semaphore)) => (key.clone(), semaphore.clone()),
            None => {
                let key: Arc<str> = Arc::from(tenant);
                let semaphore = Arc::new(Semaphore::new(self.per_tenant));
                tenants.insert(key.clone(), semaphore.clone());
                (key, semaphore)
            }
        };
        Turn {
            permit: None,
            semaphore,
            key,
            tenants: self.tenants.clone(),
        }
    }
}

/// Counts a call as waiting until it has a slot, gives up, or is dropped
/// by its embedder.
struct Waiting<'a>(&'a AtomicUsize);

impl Waiting<'_> {
    fn start(count: &AtomicUsize) -> Waiting<'_> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A tenant's semaphore, held while a call waits for or runs in its turn.
struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    semaphore: Arc<Semaphore>,
    key: Arc<str>,
    tenants: Arc<Turns>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        // The permit holds the semaphore too; it goes first.
        self.permit = None;
        let mut tenants = lock(&self.tenants);
        // Held by the map and by this turn alone: the tenant's last call.
        // Counted under the lock, so no call can be taking it meanwhile.
        if Arc::strong_count(&self.semaphore) == 2 {
            tenants.remove(&self.key);
        }
    }
}

fn lock(tenants: &Turns) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Semaphore>>> {
    tenants.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_tenant_at_its_limit_waits_without_holding_a_slot_others_need() {
        let slots = Arc::new(Slots::new(2, 1));
        let busy = slots.acquire("acme", SHORT).await.unwrap();
        let refused = slots.acquire("acme", SHORT).await.err().unwrap();
        assert!(
            matches!(refused, HostError::TenantLimit { running: 1, waited } if waited == SHORT),
            "{refused:?}"
        );
        // While acme's next call waits for acme's turn...
        let queued = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("acme", 20 * SHORT).await.is_ok() }
        });
        tokio::time::sleep(SHORT).await;
        // ...the other slot is still there for another tenant.
        let other = slots.acquire("globex", SHORT).await.unwrap();
        let full = slots.acquire("initech", SHORT).await.err().unwrap();
        assert!(
            matches!(full, HostError::QueueTimeout(w) if w == SHORT),
            "{full:?}"
        );
        drop((busy, other));
        assert!(queued.await.unwrap());
    }

    #[tokio::test]
    async fn calls_count_as_waiting_until_they_run_give_up_or_are_dropped() {
        let slots = Arc::new(Slots::new(1, 1));
        assert_eq!((slots.running(), slots.waiting()), (0, 0));
        let held = slots.acquire("acme", SHORT).await.unwrap();
        assert_eq!((slots.running(), slots.waiting()), (1, 0));
        // One waits for its tenant's turn, one for the slot, one is
        // dropped by its embedder, and one gives up.
        let wait = |tenant: &'static str, wait: Duration| {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(tenant, wait).await.is_ok() })
        };
        let for_turn = wait("acme", 40 * SHORT);
        let for_slot = wait("globex", 40 * SHORT);
        let dropped = wait("initech", Duration::MAX);
        let gives_up = wait("umbrella", SHORT);
        tokio::time::sleep(SHORT / 2).await;
        assert_eq!((slots.running(), slots.waiting()), (1, 4));
        dropped.abort();
        assert!(dropped.await.is_err());
        assert!(!gives_up.await.unwrap());
        assert_eq!((slots.running(), slots.waiting()), (1, 2));
        drop(held);
        assert!(for_turn.await.unwrap() && for_slot.await.unwrap());
        assert_eq!((slots.running(), slots.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_queued_call_takes_the_turn_a_finished_one_frees() {
        let slots = Arc::new(Slots::new(4, 1));
        let first = slots.acquire("acme", SHORT).await.unwrap();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("acme", Duration::from_secs(5)).await.is_ok() }
        });
        tokio::time::sleep(SHORT).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn a_per_tenant_limit_above_the_total_is_no_limit_not_a_crash() {
        let slots = Slots::new(2, usize::MAX);
        let _a = slots.acquire("acme", SHORT).await.unwrap();
        let _b = slots.acquire("acme", SHORT).await.unwrap();
        let full = slots.acquire("acme", SHORT).await.err().unwrap();
        assert!(
            matches!(full, HostError::TenantLimit { running: 2, .. }),
            "{full:?}"
        );
    }

    #[tokio::test]
    async fn waiting_without_limit_is_allowed() {
        let slots = Slots::new(1, 1);
        assert!(slots.acquire("acme", Duration::MAX).await.is_ok());
    }

    #[tokio::test]
    async fn a_tenant_is_forgotten_when_its_last_call_ends() {
        let slots = Slots::new(4, 2);
        let a = slots.acquire("acme", SHORT).await.unwrap();
        let b = slots.acquire("acme", SHORT).await.unwrap();
        let _ = slots.acquire("acme", SHORT).await.err().unwrap();
        assert_eq!(slots.active_tenants(), 1);
        drop(a);
        assert_eq!(slots.active_tenants(), 1, "acme still has a call");
        drop(b);
        assert_eq!(slots.active_tenants(), 0);
        // A call that timed out waiting leaves nothing behind either.
        let _held = slots.acquire("globex", SHORT).await.unwrap();
        let _held2 = slots.acquire("globex", SHORT).await.unwrap();
        let _ = slots.acquire("globex", SHORT).await.err().unwrap();
        drop((_held, _held2));
        assert_eq!(slots.active_tenants(), 0);
    }
}
