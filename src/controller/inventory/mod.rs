//! Observing the cloud once for many objects (docs/design.md §3): one inventory per cloud
//! identity and service, behind the [`Finder`](super::locate::Finder) trait.
//!
//! - **Who shares one.** The objects whose credentials have the same identity (identity
//!   endpoint, tenant or project, user and secret, region, endpoints: the key of their cloud
//!   session) and use the same service (block storage, images). Credentials that differ only
//!   in the secret get their own inventory, so one wrong Secret cannot fail the others.
//! - **What it reads.** Block storage: `GET /volumes/detail`, paged. Images: `GET /v2/images`,
//!   paged (the tenant's images, public ones, and those shared with it and accepted); an image
//!   the list does not show (a share not yet accepted) is read by id. Each round takes the
//!   cheaper of a list and GETs ([`plan`]); SCP (show only) is not inventoried.
//! - **When.** Fast (`--inventory-interval`) while an object waits on the cloud (a transitional
//!   state, a write not yet observed, a create whose answer may be lost, a deletion), the
//!   resync period otherwise ([`plan::next_round`]).
//! - **Triggers.** A resource that changed between two observations triggers a reconcile of
//!   exactly the objects that use it (by id, mark or name), through the controllers'
//!   `reconcile_on` streams ([`super::triggers`]). An unchanged one triggers nothing.
//!   A failed round is reported by every object that uses the inventory (their lookups return
//!   its error), and the next round backs off per inventory.
//! - **Freshness.** The index knows when each observation started. A write through cloudvol
//!   ([`noting`]) shows what the accepted write leads to and hurries the next round; a write
//!   whose answer was lost makes the resource unreadable until a round has looked. A mark or
//!   name that a create or upload may have made is looked up only in a list that started after
//!   that request ended, so a lost answer is adopted, never repeated. An object that changed
//!   (a person touched it, or it is being deleted) reads only what was observed after the
//!   change.
//! - **Memory.** The index keeps the models cloudvol parses (not the cloud's raw answers), and
//!   an inventory that no object has used for three resync periods is dropped.

pub mod index;
pub mod noting;
pub mod plan;
pub mod scope;
pub mod source;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::api::parse_duration;
use crate::cloud::{BlockStorage, CloudCredentials, CloudError, Image};
use crate::metrics::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::lifecycle::Cycle;
use super::locate::Keys;
use super::triggers::{Target, Triggers};
use super::{CloudKind, MIN_RESYNC};
use plan::Cadence;
use scope::{Scope, User};
use source::Source;

/// How objects learn what the cloud says (`--polling`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Polling {
    /// Every reconcile reads its own resource (a GET, or a list to find a mark or a name), and
    /// every change to an object, its status included, reconciles it: the behaviour before
    /// the inventory, kept to compare and to fall back on.
    PerObject,
    /// One inventory per cloud identity reads for every object, and triggers those whose
    /// resource changed; objects reconcile on changes to their spec and metadata, not on
    /// cloudvol's own status writes.
    #[default]
    Inventory,
}

impl Polling {
    pub fn as_str(self) -> &'static str {
        match self {
            Polling::PerObject => "per-object",
            Polling::Inventory => "inventory",
        }
    }
}

impl FromStr for Polling {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "per-object" => Ok(Polling::PerObject),
            "inventory" => Ok(Polling::Inventory),
            other => Err(format!(
                "unknown polling mode {other:?}: use per-object or inventory"
            )),
        }
    }
}

/// How much rarer a Ready object looks by itself with inventories than its resync period
/// (the inventory looks for it at that period). An object that has not looked for
/// `2 * STEADY_FACTOR + 1` resync periods is gone, and its inventory forgets it.
pub const STEADY_FACTOR: u32 = 10;

/// The hash of what a change to an object that should reconcile it changes: generation (the
/// spec), labels, annotations, finalizers and the deletion. cloudvol's own status writes
/// change none of them.
pub fn meta_hash(meta: &ObjectMeta) -> u64 {
    let mut hasher = DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .hash(&mut hasher);
    hasher.finish()
}

/// What every inventory shares: the triggers, the requests that may have made a resource, the
/// metrics and the cadence.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub cadence: Cadence,
    /// `service|mark:<mark>` or `service|name:<name>` → when the last request that may have made
    /// such a resource ended.
    attempts: Mutex<HashMap<String, Instant>>,
    triggers: Arc<Triggers>,
}

/// How long a request that may have made a resource is remembered: far longer than any round
/// takes to follow it.
const ATTEMPT_MEMORY: Duration = Duration::from_secs(24 * 3600);

impl Shared {
    fn attempt_key(service: &str, what: &str) -> String {
        format!("{service}|{what}")
    }

    /// A request that may make a resource with `what` (`mark:<mark>`, `name:<name>`) is being
    /// sent, or has just ended.
    pub fn attempt(&self, service: &str, what: &str) {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.len() > 1024 {
            attempts.retain(|_, at| now.duration_since(*at) < ATTEMPT_MEMORY);
        }
        attempts.insert(Self::attempt_key(service, what), now);
    }

    /// When the last request that may have made a resource with `what` ended.
    pub fn attempted(&self, service: &str, what: &str) -> Option<Instant> {
        let attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.get(&Self::attempt_key(service, what)).copied()
    }

    /// Reconciles each of `users` through its controller.
    fn fire(&self, service: &str, users: &[User]) {
        let mut fired = 0u64;
        for user in users {
            fired += self.triggers.fire(&Target {
                kind: user.kind.clone(),
                namespace: user.namespace.clone(),
                name: user.name.clone(),
            });
        }
        if fired > 0 {
            self.metrics.inventory_triggered(service, fired);
        }
    }
}

/// The inventories of one kind of source, by key.
pub struct Registry<S: Source> {
    scopes: Arc<Mutex<HashMap<String, Arc<Scope<S>>>>>,
    shared: Arc<Shared>,
}

impl<S: Source> Clone for Registry<S> {
    fn clone(&self) -> Self {
        Registry {
            scopes: self.scopes.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: Source> Registry<S> {
    fn new(shared: Arc<Shared>) -> Self {
        Registry {
            scopes: Arc::new(Mutex::new(HashMap::new())),
            shared,
        }
    }

    /// The inventory `key`, if one runs.
    pub fn find(&self, key: &str) -> Option<Arc<Scope<S>>> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes.get(key).filter(|s| !s.retired()).cloned()
    }

    /// Registers `user` (the object `caller`) with the inventory `key`, starting it if none
    /// runs, and leaves any other inventory of this registry it used before.
    fn register(
        &self,
        key: &str,
        source: impl FnOnce() -> S,
        caller: &str,
        user: User,
        deleted_at: Option<Instant>,
    ) -> (Arc<Scope<S>>, Option<Instant>) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let scope = match scopes.get(key).filter(|s| !s.retired()) {
            Some(scope) => scope.clone(),
            None => {
                let scope = Arc::new(Scope::new(key.to_string(), source(), self.shared.clone()));
                scopes.insert(key.to_string(), scope.clone());
                self.shared.metrics.inventories(S::SERVICE, 1);
                let map = self.scopes.clone();
                let shared = self.shared.clone();
                tokio::spawn(scope.clone().run(move |scope: &Scope<S>| {
                    let mut scopes = map.lock().unwrap_or_else(|p| p.into_inner());
                    if !scope.retire_if_unused() {
                        return false;
                    }
                    scopes.remove(&scope.key);
                    shared.metrics.inventories(S::SERVICE, -1);
                    true
                }));
                scope
            }
        };
        for (other_key, other) in scopes.iter() {
            if other_key != key {
                other.unregister(caller);
            }
        }
        let fresh_after = scope.register(caller, user, deleted_at);
        (scope, fresh_after)
    }
}

/// What a Finder reads through: one object's registration with one inventory.
pub struct View<S: Source> {
    scope: Arc<Scope<S>>,
    caller: String,
    /// The object changed: read only what was observed after this.
    fresh_after: Option<Instant>,
    shared: Arc<Shared>,
}

impl<S: Source> View<S> {
    /// The resource `id`; `None` when it does not exist.
    pub async fn show(&self, id: &str) -> Result<Option<S::Item>, CloudError> {
        self.scope.show(&self.caller, id, self.fresh_after).await
    }

    /// The resources carrying `mark` (as the index keys it).
    pub async fn marked(&self, mark: &str) -> Result<Vec<S::Item>, CloudError> {
        let since = self.since(&format!("mark:{mark}"));
        self.scope.by_mark(mark, since).await
    }

    /// The resources named `name`.
    pub async fn named(&self, name: &str) -> Result<Vec<S::Item>, CloudError> {
        let since = self.since(&format!("name:{name}"));
        self.scope.by_name(name, since).await
    }

    fn since(&self, what: &str) -> Option<Instant> {
        let attempt = self.shared.attempted(S::SERVICE, what);
        attempt.max(self.fresh_after)
    }
}

/// Every inventory of the process, and the triggers they send.
pub struct Inventories {
    polling: Polling,
    shared: Arc<Shared>,
    volumes: Registry<source::Volumes>,
    images: Registry<source::Images>,
}

impl Inventories {
    pub fn new(
        polling: Polling,
        cadence: Cadence,
        metrics: Arc<Metrics>,
        triggers: Arc<Triggers>,
    ) -> Self {
        let shared = Arc::new(Shared {
            metrics,
            cadence,
            attempts: Mutex::new(HashMap::new()),
            triggers,
        });
        Inventories {
            polling,
            volumes: Registry::new(shared.clone()),
            images: Registry::new(shared.clone()),
            shared,
        }
    }

    pub fn polling(&self) -> Polling {
        self.polling
    }

    /// The block-storage inventory `cycle`'s object reads through, registered; `None` when
    /// objects read the cloud themselves (`--polling per-object`).
    pub fn volumes<K: CloudKind>(
        &self,
        cycle: &Cycle<'_, K>,
        storage: &Arc<dyn BlockStorage>,
    ) -> Option<View<source::Volumes>> {
        if self.polling != Polling::Inventory {
            return None;
        }
        let keys = Keys::of(cycle.object);
        let marks = keys.mark.map(str::to_string).into_iter().collect();
        let user = self.user(cycle, &keys, marks, Vec::new());
        let key = key_of(&cycle.credentials, source::Volumes::SERVICE);
        let (scope, fresh_after) = self.volumes.register(
            &key,
            || source::Volumes(storage.clone()),
            &cycle.object.key(),
            user,
            deleted_at(cycle.object.meta()),
        );
        Some(self.view(scope, cycle.object.key(), fresh_after))
    }

    /// The image inventory `cycle`'s object reads through, registered; `mark` is its mark as
    /// images carry it, `upload_name` the name of its last upload. `None` per object, and for
    /// SCP, whose image API does not list.
    pub fn images<K: CloudKind>(
        &self,
        cycle: &Cycle<'_, K>,
        client: &Arc<dyn Image>,
        mark: Option<String>,
        upload_name: Option<&str>,
    ) -> Option<View<source::Images>> {
        if self.polling != Polling::Inventory || client.provider() == "scp" {
            return None;
        }
        let keys = Keys::of(cycle.object);
        let names = upload_name.map(str::to_string).into_iter().collect();
        let user = self.user(cycle, &keys, mark.into_iter().collect(), names);
        let key = key_of(&cycle.credentials, source::Images::SERVICE);
        let (scope, fresh_after) = self.images.register(
            &key,
            || source::Images::new(client.clone()),
            &cycle.object.key(),
            user,
            deleted_at(cycle.object.meta()),
        );
        Some(self.view(scope, cycle.object.key(), fresh_after))
    }

    /// `storage`, telling the inventories about its writes (per object: `storage` itself).
    pub fn noting_storage(
        &self,
        credentials: &CloudCredentials,
        storage: Arc<dyn BlockStorage>,
    ) -> Arc<dyn BlockStorage> {
        if self.polling != Polling::Inventory {
            return storage;
        }
        Arc::new(noting::NotingStorage {
            inner: storage,
            volumes: self.volumes.clone(),
            images: self.images.clone(),
            volumes_key: key_of(credentials, source::Volumes::SERVICE),
            images_key: key_of(credentials, source::Images::SERVICE),
            shared: self.shared.clone(),
        })
    }

    /// `client`, telling the inventories about its writes (per object: `client` itself).
    pub fn noting_images(
        &self,
        credentials: &CloudCredentials,
        client: Arc<dyn Image>,
    ) -> Arc<dyn Image> {
        if self.polling != Polling::Inventory || client.provider() == "scp" {
            return client;
        }
        Arc::new(noting::NotingImages {
            inner: client,
            images: self.images.clone(),
            key: key_of(credentials, source::Images::SERVICE),
        })
    }

    fn view<S: Source>(
        &self,
        scope: Arc<Scope<S>>,
        caller: String,
        fresh_after: Option<Instant>,
    ) -> View<S> {
        View {
            scope,
            caller,
            fresh_after,
            shared: self.shared.clone(),
        }
    }

    fn user<K: CloudKind>(
        &self,
        cycle: &Cycle<'_, K>,
        keys: &Keys<'_>,
        marks: Vec<String>,
        mut names: Vec<String>,
    ) -> User {
        let object = cycle.object;
        if let Some(filter) = keys.import.and_then(|i| i.filter.as_ref()) {
            names.push(filter.name.clone());
        }
        let resync = object
            .common()
            .resync_period
            .and_then(|text| parse_duration(text).ok())
            .unwrap_or(self.shared.cadence.steady)
            .max(MIN_RESYNC);
        User {
            kind: K::kind(&()).to_string(),
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
            id: keys.recorded_id.map(str::to_string),
            marks,
            names,
            deleting: object.meta().deletion_timestamp.is_some(),
            resync,
            meta: meta_hash(object.meta()),
        }
    }
}

/// The instant just after the object's deletion was asked for, on this process's clock.
/// `deletionTimestamp` has whole seconds, so the next second is the first one surely after it.
fn deleted_at(meta: &ObjectMeta) -> Option<Instant> {
    let deleted = meta.deletion_timestamp.as_ref()?.0.as_millisecond();
    let wall = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_millis(u64::try_from(deleted).ok()?))?
        .checked_add(Duration::from_secs(1))?;
    let ago = SystemTime::now().duration_since(wall).unwrap_or_default();
    Instant::now().checked_sub(ago)
}

/// The key of the inventory of `credentials` for `service`.
fn key_of(credentials: &CloudCredentials, service: &str) -> String {
    format!("{service}|{}", credentials.session_key())
}
