//! Fair shares of the reconcile slots between clouds and tenants.
//!
//! A controller runs up to `--concurrency` reconciles of a kind at once. Reconciles that talk to
//! one cloud scope — one identity endpoint, tenant (or project, or SCP account) and region —
//! may hold at most `--cloud-concurrency` of those slots. A reconcile whose scope is full does
//! not wait for a slot: it is put back with the object's backoff, so that a cloud that hangs, or
//! a tenant with thousands of failing objects, holds a bounded share and every other scope
//! keeps being served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cloud::CloudCredentials;
use crate::cloud::credentials::Auth;

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
    scopes: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The scope each object's last reconcile was in, so that an object of a full scope is put
    /// back before its Secret is even read.
    last: Mutex<HashMap<String, String>>,
}

impl Fairness {
    /// At most `per_scope` reconciles at once per cloud scope (at least one).
    pub fn new(per_scope: usize) -> Self {
        Fairness {
            per_scope: per_scope.max(1),
            scopes: Mutex::new(HashMap::new()),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the scope `object` was in last time has no free slot now.
    pub fn last_scope_full(&self, object: &str) -> bool {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let Some(scope) = last.get(object) else {
            return false;
        };
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes
            .get(scope)
            .is_some_and(|slots| slots.available_permits() == 0)
    }

    /// Remembers the scope of `object`'s reconcile.
    pub fn remember(&self, object: &str, scope: &str) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.get(object).map(String::as_str) != Some(scope) {
            last.insert(object.to_string(), scope.to_string());
        }
    }

    /// `object` is gone: forget its scope.
    pub fn forget(&self, object: &str) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.remove(object);
    }

    /// A slot for `scope`, if one is free now. Held until the permit is dropped.
    pub fn try_enter(&self, scope: &str) -> Option<OwnedSemaphorePermit> {
        let mut scopes = self
            .scopes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget scopes nobody is in, so that the map stays as small as the scopes in use.
        if scopes.len() > 64 {
            let full = self.per_scope;
            scopes.retain(|_, s| s.available_permits() < full || Arc::strong_count(s) > 1);
        }
        let slots = scopes
            .entry(scope.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_scope)))
            .clone();
        slots.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scope_refuses_and_others_still_enter() {
        let fairness = Fairness::new(2);
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
    fn an_object_of_a_full_scope_is_known_before_its_secret_is_read() {
        let fairness = Fairness::new(1);
        assert!(!fairness.last_scope_full("Volume/ns/a"), "never seen");
        let slot = fairness.try_enter("scope");
        fairness.remember("Volume/ns/a", "scope");
        assert!(fairness.last_scope_full("Volume/ns/a"));
        drop(slot);
        assert!(!fairness.last_scope_full("Volume/ns/a"));
        fairness.forget("Volume/ns/a");
        let _slot = fairness.try_enter("scope");
        assert!(!fairness.last_scope_full("Volume/ns/a"), "forgotten");
    }

    #[test]
    fn unused_scopes_are_forgotten() {
        let fairness = Fairness::new(1);
        for n in 0..1000 {
            let _slot = fairness.try_enter(&format!("scope-{n}"));
        }
        assert!(fairness.scopes.lock().unwrap().len() <= 65);
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
