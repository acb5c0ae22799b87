//! Fair shares of the reconcile slots between clouds and tenants.
//!
//! A controller runs up to `--concurrency` reconciles of a kind at once. Reconciles that talk to
//! one cloud scope — one identity endpoint, tenant (or project, or SCP account) and region —
//! may hold at most `--cloud-concurrency` of those slots. A reconcile whose scope is full does
//! not wait for a slot: it is put back, so that a cloud that hangs, or a tenant with thousands
//! of failing objects, holds a bounded share and every other scope keeps being served. The
//! object put back waits in its scope's queue, and the next slot of that scope to come free
//! reconciles it (a trigger, [`super::triggers`]), so a burst of objects in one tenant keeps
//! every slot busy instead of sleeping through an exponential backoff; the object's backoff
//! stays as the fallback. The freed slot is handed to the object it wakes, and kept for it for
//! a short while ([`RESERVATION`]): another reconcile of the scope that comes first finds no
//! slot and queues behind it, so a woken object is never put back again by one that jumped
//! the queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::triggers::{Target, Triggers};
use crate::cloud::CloudCredentials;
use crate::cloud::credentials::Auth;

/// How long, at least, an object put back waits before it tries again by itself. A slot that
/// comes free wakes it sooner, and is handed to it ([`RESERVATION`]); this is only the
/// fallback. A short one makes every queued object come back again and again: 10,000 objects
/// queued behind the rate limit with 10 s came back 80,000 times in two minutes.
pub const FALLBACK: Duration = Duration::from_secs(60);

/// How long a slot handed to the object it woke is kept for it: time for its controller to run
/// it. If the object does not come (it was deleted meanwhile, say), the slot goes to the next
/// waiter then.
pub const RESERVATION: Duration = Duration::from_secs(5);

/// The cloud scope credentials act in: what fairness (and, later, a shared inventory) is keyed
/// by. Built from the configuration alone, so it needs no login; secrets never enter it.
pub fn scope_of(credentials: &CloudCredentials) -> String {
    let region = credentials.region_name.as_deref().unwrap_or("");
    let (endpoint, who) = match &credentials.auth {
        Auth::NhnV2(auth) => (auth.auth_url.as_str(), format!("tenant={}", auth.tenant_id)),
        Auth::KeystonePassword(auth) => (
            auth.auth_url.as_str(),
            format!("project={:?}", auth.project),
        ),
        Auth::KeystoneApplicationCredential(auth) => (
            auth.auth_url.as_str(),
            format!("application-credential={:?}", auth.credential),
        ),
        Auth::Scp(auth) => (
            credentials.image_endpoint_override.as_deref().unwrap_or(""),
            format!("account={}", auth.account_id),
        ),
    };
    format!("{endpoint}|{who}|region={region}")
}

/// The slots of every cloud scope.
pub struct Fairness {
    per_scope: usize,
    reservation: Duration,
    scopes: Mutex<HashMap<String, Arc<Slots>>>,
    triggers: Arc<Triggers>,
    /// The scope each object's last reconcile was in, so that an object of a full scope is put
    /// back before its Secret is even read.
    last: Mutex<HashMap<String, String>>,
}

/// One scope's slots, and the objects waiting for one, oldest first.
struct Slots {
    semaphore: Arc<Semaphore>,
    waiting: Mutex<Waiting>,
    /// How long a slot handed to the object it woke is kept for it.
    reservation: Duration,
}

#[derive(Default)]
struct Waiting {
    /// Objects whose reconcile mostly reads, oldest first: served before `queue`.
    urgent: VecDeque<Target>,
    /// The others, oldest first.
    queue: VecDeque<Target>,
    queued: HashSet<Target>,
    /// Slots handed to the objects they woke, until when they are kept for them.
    reserved: HashMap<Target, (OwnedSemaphorePermit, Instant)>,
}

impl Slots {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `waiter` once, before every waiter that is not `urgent` if it is.
    fn queue(&self, waiter: &Target, urgent: bool) {
        let mut waiting = self.waiting();
        if waiting.queued.insert(waiter.clone()) {
            if urgent {
                waiting.urgent.push_back(waiter.clone());
            } else {
                waiting.queue.push_back(waiter.clone());
            }
        }
    }

    /// Takes `waiter` out of the queue, if it is in it.
    fn unqueue(&self, waiter: &Target) {
        let mut waiting = self.waiting();
        if waiting.queued.remove(waiter) {
            waiting.urgent.retain(|w| w != waiter);
            waiting.queue.retain(|w| w != waiter);
        }
    }

    /// The slot handed to `waiter`, if one is kept for it.
    fn reserved_for(&self, waiter: &Target) -> Option<OwnedSemaphorePermit> {
        self.waiting()
            .reserved
            .remove(waiter)
            .map(|(permit, _)| permit)
    }

    /// Whether a slot is kept for `waiter`.
    fn holds_reservation(&self, waiter: &Target) -> bool {
        self.waiting().reserved.contains_key(waiter)
    }

    /// Hands the slots kept too long to the next waiters.
    fn expire(self: &Arc<Self>, triggers: &Arc<Triggers>) {
        let now = Instant::now();
        let expired: Vec<OwnedSemaphorePermit> = self
            .waiting()
            .reserved
            .extract_if(|_, (_, until)| *until <= now)
            .map(|(_, (permit, _))| permit)
            .collect();
        for permit in expired {
            self.hand_over(permit, triggers);
        }
    }

    /// Passes the slot on if the woken object has not taken it when its reservation ends, so
    /// that the queue moves on without waiting for the next request for a slot.
    fn expire_later(self: &Arc<Self>, triggers: &Arc<Triggers>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (slots, triggers) = (Arc::downgrade(self), triggers.clone());
        let after = self.reservation;
        runtime.spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(slots) = slots.upgrade() {
                slots.expire(&triggers);
            }
        });
    }

    /// Gives a freed slot to the oldest waiter whose controller takes the trigger, kept for it
    /// for a while; with no one waiting, the slot is free.
    fn hand_over(self: &Arc<Self>, mut permit: OwnedSemaphorePermit, triggers: &Arc<Triggers>) {
        loop {
            let next = {
                let mut waiting = self.waiting();
                let next = match waiting.urgent.pop_front() {
                    Some(next) => Some(next),
                    None => waiting.queue.pop_front(),
                };
                if let Some(next) = &next {
                    waiting.queued.remove(next);
                }
                next
            };
            let Some(next) = next else {
                return drop(permit);
            };
            // Kept before the trigger, so that the woken object finds it however fast it runs.
            self.waiting()
                .reserved
                .insert(next.clone(), (permit, Instant::now() + self.reservation));
            if triggers.fire(&next) > 0 {
                self.expire_later(triggers);
                return;
            }
            // Its controller stopped (or never ran): try the next one.
            match self.reserved_for(&next) {
                Some(back) => permit = back,
                // It came and took the slot already.
                None => return,
            }
        }
    }
}

/// A slot of a scope, held until dropped; dropping it hands it to the next object waiting.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
    triggers: Arc<Triggers>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.slots.hand_over(permit, &self.triggers);
        }
    }
}

impl Fairness {
    /// At most `per_scope` reconciles at once per cloud scope (at least one); objects put back
    /// are reconciled again through `triggers`.
    pub fn new(per_scope: usize, triggers: Arc<Triggers>) -> Self {
        Fairness {
            per_scope: per_scope.max(1),
            reservation: RESERVATION,
            scopes: Mutex::new(HashMap::new()),
            triggers,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `object`'s last scope (keyed by `key`) has no free slot now; if so `waiter` is
    /// queued there, as [`Fairness::enter`] would have, and the caller puts it back without
    /// reading its Secret. An object never seen, or whose last scope has a slot, goes on.
    pub fn queued_in_last_scope(&self, key: &str, waiter: &Target, urgent: bool) -> bool {
        let scope = {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match last.get(key) {
                Some(scope) => scope.clone(),
                None => return false,
            }
        };
        let slots = {
            let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
            match scopes.get(&scope) {
                Some(slots) => slots.clone(),
                None => return false,
            }
        };
        slots.expire(&self.triggers);
        if slots.semaphore.available_permits() > 0 || slots.holds_reservation(waiter) {
            return false;
        }
        slots.queue(waiter, urgent);
        // A slot may have come free between the two: then no one would wake the waiter.
        if slots.semaphore.available_permits() > 0 {
            slots.unqueue(waiter);
            return false;
        }
        true
    }

    /// Remembers the scope of `object`'s reconcile.
    pub fn remember(&self, key: &str, scope: &str) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.get(key).map(String::as_str) != Some(scope) {
            last.insert(key.to_string(), scope.to_string());
        }
    }

    /// The object of `key` is gone: forget its scope.
    pub fn forget(&self, key: &str) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.remove(key);
    }

    fn slots(&self, scope: &str) -> Arc<Slots> {
        let mut scopes = self
            .scopes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget scopes nobody is in or waits for, so that the map stays as small as the
        // scopes in use.
        if scopes.len() > 64 {
            let full = self.per_scope;
            scopes.retain(|_, s| {
                s.semaphore.available_permits() < full
                    || Arc::strong_count(s) > 1
                    || !s.waiting().queued.is_empty()
            });
        }
        scopes
            .entry(scope.to_string())
            .or_insert_with(|| {
                Arc::new(Slots {
                    semaphore: Arc::new(Semaphore::new(self.per_scope)),
                    waiting: Mutex::default(),
                    reservation: self.reservation,
                })
            })
            .clone()
    }

    /// A slot for `scope`, if one is free now; otherwise `waiter` is queued, and reconciled
    /// when a slot of that scope comes free. An `urgent` waiter goes before the others: one
    /// whose reconcile is short and writes nothing to the cloud (it mostly reads what the
    /// inventory saw, [`super::lifecycle::reads_mostly`]) is not kept behind a thousand creates
    /// or deletes waiting for the rate limit.
    pub fn enter(&self, scope: &str, waiter: Target, urgent: bool) -> Option<Slot> {
        let slots = self.slots(scope);
        let slot = |permit| Slot {
            permit: Some(permit),
            slots: slots.clone(),
            triggers: self.triggers.clone(),
        };
        if let Some(permit) = slots.reserved_for(&waiter) {
            return Some(slot(permit));
        }
        slots.expire(&self.triggers);
        if let Ok(permit) = slots.semaphore.clone().try_acquire_owned() {
            slots.unqueue(&waiter);
            return Some(slot(permit));
        }
        slots.queue(&waiter, urgent);
        // A slot may have come free between the two: then no one would wake the waiter.
        let permit = slots.semaphore.clone().try_acquire_owned().ok()?;
        slots.unqueue(&waiter);
        Some(slot(permit))
    }

    /// A slot for `scope`, if one is free now (nothing is queued). Held until dropped.
    pub fn try_enter(&self, scope: &str) -> Option<OwnedSemaphorePermit> {
        self.slots(scope).semaphore.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scope_refuses_and_others_still_enter() {
        let fairness = Fairness::new(2, Arc::default());
        let a1 = fairness.try_enter("a");
        let a2 = fairness.try_enter("a");
        assert!(a1.is_some() && a2.is_some());
        assert!(
            fairness.try_enter("a").is_none(),
            "the third reconcile of a waits"
        );
        assert!(fairness.try_enter("b").is_some(), "b is not held up by a");
        drop(a1);
        assert!(fairness.try_enter("a").is_some(), "a slot came free");
    }

    #[test]
    fn unused_scopes_are_forgotten() {
        let fairness = Fairness::new(1, Arc::default());
        for n in 0..1000 {
            let _slot = fairness.try_enter(&format!("scope-{n}"));
        }
        assert!(fairness.scopes.lock().unwrap().len() <= 65);
    }

    /// Fairness with one slot per scope, and what its freed slots wake.
    fn one_slot() -> (
        Fairness,
        tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    ) {
        let triggers = Arc::new(Triggers::default());
        let woken = triggers.subscribe("Volume", None);
        (Fairness::new(1, triggers), woken)
    }

    fn waiter(name: &str) -> Target {
        Target {
            kind: "Volume".into(),
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_freed_slot_reconciles_the_oldest_waiter_once() {
        let (fairness, mut woken) = one_slot();
        let first = fairness.enter("a", waiter("first"), false);
        assert!(first.is_some());
        assert!(fairness.enter("a", waiter("second"), false).is_none());
        assert!(fairness.enter("a", waiter("third"), false).is_none());
        assert!(
            fairness.enter("a", waiter("second"), false).is_none(),
            "queued once however often it is put back"
        );
        assert!(fairness.enter("b", waiter("elsewhere"), false).is_some());
        drop(first);
        assert_eq!(woken.try_recv().unwrap(), ("ns".into(), "second".into()));
        assert!(woken.try_recv().is_err(), "one slot wakes one object");
        let second = fairness.enter("a", waiter("second"), false);
        assert!(second.is_some(), "the slot was left free for it");
        drop(second);
        assert_eq!(woken.try_recv().unwrap(), ("ns".into(), "third".into()));
        drop(fairness.enter("a", waiter("third"), false));
        assert!(woken.try_recv().is_err(), "nobody waits any more");
    }

    #[test]
    fn a_freed_slot_is_kept_for_the_object_it_wakes() {
        let (fairness, mut woken) = one_slot();
        let held = fairness.enter("a", waiter("held"), false);
        assert!(fairness.enter("a", waiter("queued"), false).is_none());
        drop(held);
        assert_eq!(woken.try_recv().unwrap(), ("ns".into(), "queued".into()));
        assert!(
            fairness.enter("a", waiter("late"), false).is_none(),
            "one that comes first does not take the slot of the one woken"
        );
        let queued = fairness.enter("a", waiter("queued"), false);
        assert!(queued.is_some(), "the woken one finds its slot");
        drop(queued);
        assert_eq!(
            woken.try_recv().unwrap(),
            ("ns".into(), "late".into()),
            "then the next in the queue"
        );
    }

    #[test]
    fn a_slot_kept_for_an_object_that_does_not_come_goes_to_the_next() {
        let (mut fairness, mut woken) = one_slot();
        fairness.reservation = Duration::ZERO;
        let held = fairness.enter("a", waiter("held"), false);
        assert!(fairness.enter("a", waiter("gone"), false).is_none());
        assert!(fairness.enter("a", waiter("next"), false).is_none());
        drop(held);
        assert_eq!(woken.try_recv().unwrap(), ("ns".into(), "gone".into()));
        // "gone" never comes; the next request for a slot of the scope passes its slot on.
        assert!(fairness.enter("a", waiter("other"), false).is_none());
        assert_eq!(woken.try_recv().unwrap(), ("ns".into(), "next".into()));
        assert!(fairness.enter("a", waiter("next"), false).is_some());
    }

    #[test]
    fn an_urgent_waiter_goes_first() {
        let (fairness, mut woken) = one_slot();
        let held = fairness.enter("a", waiter("held"), false);
        assert!(fairness.enter("a", waiter("create-1"), false).is_none());
        assert!(fairness.enter("a", waiter("create-2"), false).is_none());
        assert!(fairness.enter("a", waiter("created"), true).is_none());
        assert!(fairness.enter("a", waiter("created-later"), true).is_none());
        drop(held);
        assert_eq!(woken.try_recv().unwrap(), ("ns".into(), "created".into()));
        drop(fairness.enter("a", waiter("created"), true));
        assert_eq!(
            woken.try_recv().unwrap(),
            ("ns".into(), "created-later".into()),
            "urgent ones in their order"
        );
        drop(fairness.enter("a", waiter("created-later"), true));
        assert_eq!(woken.try_recv().unwrap(), ("ns".into(), "create-1".into()));
    }

    #[test]
    fn an_object_of_a_full_scope_is_queued_before_its_secret_is_read() {
        let (fairness, mut woken) = one_slot();
        let a = waiter("a");
        assert!(
            !fairness.queued_in_last_scope("Volume/ns/a", &a, false),
            "never seen"
        );
        let slot = fairness.enter("scope", waiter("holder"), false);
        fairness.remember("Volume/ns/a", "scope");
        assert!(fairness.queued_in_last_scope("Volume/ns/a", &a, false));
        drop(slot);
        assert_eq!(
            woken.try_recv().unwrap(),
            ("ns".into(), "a".into()),
            "the freed slot wakes it"
        );
        assert!(!fairness.queued_in_last_scope("Volume/ns/a", &a, false));
        fairness.forget("Volume/ns/a");
        let _slot = fairness.enter("scope", waiter("holder"), false);
        assert!(
            !fairness.queued_in_last_scope("Volume/ns/a", &a, false),
            "forgotten"
        );
    }

    #[test]
    fn scopes_differ_by_tenant_and_region_and_hold_no_secret() {
        let yaml = |tenant: &str, region: &str| {
            format!(
                "clouds:\n  c:\n    auth_type: v2password\n    auth:\n      auth_url: https://id.example/v2.0\n      tenant_id: {tenant}\n      username: u\n      password: s3cret\n    region_name: {region}\n"
            )
        };
        let scope = |tenant, region| {
            let creds =
                CloudCredentials::from_clouds_yaml(yaml(tenant, region).as_bytes(), "c", None)
                    .expect("credentials");
            scope_of(&creds)
        };
        assert_ne!(scope("t1", "KR1"), scope("t2", "KR1"));
        assert_ne!(scope("t1", "KR1"), scope("t1", "KR2"));
        assert_eq!(scope("t1", "KR1"), scope("t1", "KR1"));
        assert!(!scope("t1", "KR1").contains("s3cret"));
    }
}
