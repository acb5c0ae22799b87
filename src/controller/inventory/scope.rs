//! One inventory: the objects that use one cloud identity and service, the index of what the
//! cloud showed, the loop of rounds that keeps it fresh, and the lookups the Finders make.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use crate::cloud::CloudError;

use super::index::{Change, Index, Known};
use super::plan::{self, Cadence, Demand, Plan, Timing};
use super::source::{PAGE, Source};
use super::{STEADY_FACTOR, Shared};

/// How long a lookup waits for a round before it reads the cloud itself (a resource) or gives
/// up with an error (a list).
const LOOKUP_WAIT: Duration = Duration::from_secs(60);

/// How long a lookup of one resource waits for a round before it reads it itself.
const SHOW_WAIT: Duration = Duration::from_secs(10);

/// A wake-up waits this long for more wake-ups, so that writes in a burst share a round.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// An object that uses an inventory, with what it looks up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The kind, namespace and name the inventory triggers.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `status.id`.
    pub id: Option<String>,
    /// The marks it looks for (its own), as the index keys them.
    pub marks: Vec<String>,
    /// The names it looks for (an import filter, an upload's name).
    pub names: Vec<String>,
    /// The object is being deleted: its resource is watched closely.
    pub deleting: bool,
    /// Its resync period: the inventory refreshes everything at least this often.
    pub resync: Duration,
    /// The hash of what a change to the object would change ([`super::meta_hash`]).
    pub meta: u64,
}

struct Registered {
    user: User,
    touched: Instant,
}

/// A lookup's wish for a fresher view of one resource.
#[derive(Clone, Copy, Debug)]
struct Wish {
    /// Observed by a read that starts after this.
    after: Instant,
    /// When it was first asked for.
    asked: Instant,
}

struct State<R> {
    index: Index<R>,
    users: HashMap<String, Registered>,
    /// Ids that a lookup wants observed by a read that starts after an instant.
    fresh: HashMap<String, Wish>,
    /// A lookup wants a list that starts after this.
    list_after: Option<Instant>,
    timing: Timing,
    /// The last round failed with this; lookups report it.
    error: Option<CloudError>,
    /// A complete list has been made.
    primed: bool,
    /// Removed from the registry: new users go to a new inventory.
    pub retired: bool,
    /// Resources last reported to the gauge.
    reported: usize,
}

/// One inventory.
pub struct Scope<S: Source> {
    pub key: String,
    source: S,
    state: Mutex<State<S::Item>>,
    wake: Notify,
    rounds: watch::Sender<u64>,
    shared: Arc<Shared>,
}

/// What a lookup step found.
enum Step<T> {
    Done(T),
    Wait,
    /// Read the cloud directly.
    Direct,
}

impl<S: Source> Scope<S> {
    pub fn new(key: String, source: S, shared: Arc<Shared>) -> Self {
        Scope {
            key,
            source,
            state: Mutex::new(State {
                index: Index::default(),
                users: HashMap::new(),
                fresh: HashMap::new(),
                list_after: None,
                timing: Timing::default(),
                error: None,
                primed: false,
                retired: false,
                reported: 0,
            }),
            wake: Notify::new(),
            rounds: watch::Sender::new(0),
            shared,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<S::Item>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn retired(&self) -> bool {
        self.lock().retired
    }

    /// Registers (or refreshes) `user` under `key`. Returns when its lookups must be fresher
    /// than: the object changed since its last registration (a person touched it, or it is
    /// being deleted), so what the inventory saw before may be out of date for it. A change
    /// counts from now; the deletion, from `deleted_at` when known, so that one round after
    /// many objects are deleted at once serves them all.
    pub fn register(&self, key: &str, user: User, deleted_at: Option<Instant>) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        let previous = state.users.get(key).map(|r| (r.user.meta, r.user.deleting));
        let fresh_after = match previous {
            Some((meta, _)) if meta == user.meta => None,
            Some((_, false)) if user.deleting => Some(deleted_at.unwrap_or(now).min(now)),
            Some(_) => Some(now),
            None => None,
        };
        let wakes = previous.is_none_or(|(_, deleting)| deleting != user.deleting);
        state
            .users
            .insert(key.to_string(), Registered { user, touched: now });
        drop(state);
        if wakes {
            self.wake.notify_one();
        }
        fresh_after
    }

    /// Forgets the user `key` (it moved to another inventory).
    pub fn unregister(&self, key: &str) {
        self.lock().users.remove(key);
    }

    /// Whether no object uses this inventory; if so, it is retired.
    pub fn retire_if_unused(&self) -> bool {
        let mut state = self.lock();
        if state.users.is_empty() {
            state.retired = true;
            let reported = state.reported;
            state.reported = 0;
            drop(state);
            self.shared
                .metrics
                .inventory_resources(S::SERVICE, -(reported as i64));
            true
        } else {
            false
        }
    }

    /// Wakes the loop: something waits now.
    pub fn hurry(&self) {
        self.wake.notify_one();
    }

    /// A write to `id` happened; `expected` turns what the index shows into what the accepted
    /// write leads to (`None` when its outcome is unknown: the entry is not read until a round
    /// has looked).
    pub fn written(&self, id: &str, expected: impl FnOnce(Option<&S::Item>) -> Option<S::Item>) {
        let now = Instant::now();
        let change = {
            let mut state = self.lock();
            let current = match state.index.get(id) {
                Known::Found { resource, .. } => Some(resource),
                _ => None,
            };
            let after = expected(current.as_ref());
            state.index.written(id, now, after)
        };
        self.fire_changes(change.into_iter().collect(), None);
        self.hurry();
    }

    /// What a read the caller made itself showed (its answer, from a request started at
    /// `started`): the index keeps the newer of the two.
    pub fn observed(&self, id: &str, found: Option<S::Item>, started: Instant) {
        let change = self.lock().index.observe(id, found, started);
        self.fire_changes(change.into_iter().collect(), None);
        // What was seen may be transitional: the loop decides again.
        self.hurry();
    }

    /// The resource `id` (`None`: it does not exist), as fresh as `fresh_after` asks.
    ///
    /// What the index holds is the answer when it was observed after `fresh_after` (and after
    /// any fresher view an earlier lookup asked for). Otherwise the caller is not kept waiting
    /// in its slot: the wish is recorded, the next round hurried, and the answer is
    /// [`CloudError::Unobserved`]; the round that looks reconciles the object again. A wish
    /// that no round fulfilled within [`SHOW_WAIT`] is read by id, by the caller.
    pub async fn show(
        &self,
        caller: &str,
        id: &str,
        fresh_after: Option<Instant>,
    ) -> Result<Option<S::Item>, CloudError> {
        let step = self
            .wait(SHOW_WAIT, |state| {
                if let Some(err) = &state.error {
                    return Step::Done(Err(err.clone()));
                }
                if !state.primed {
                    return Step::Wait;
                }
                let wish = state.fresh.get(id).copied();
                let wanted = fresh_after.max(wish.map(|w| w.after));
                let fresh_enough = |seen: Instant| wanted.is_none_or(|t| seen >= t);
                match state.index.get(id) {
                    Known::Found { resource, seen } if fresh_enough(seen) => {
                        Step::Done(Ok(Some(resource)))
                    }
                    Known::Gone { at } if fresh_enough(at) => Step::Done(Ok(None)),
                    Known::Unknown => Step::Direct,
                    _ => {
                        let now = Instant::now();
                        let after = wanted.unwrap_or(now);
                        let wish = state
                            .fresh
                            .entry(id.to_string())
                            .or_insert(Wish { after, asked: now });
                        wish.after = wish.after.max(after);
                        if now.duration_since(wish.asked) >= SHOW_WAIT {
                            return Step::Direct;
                        }
                        Step::Done(Err(CloudError::Unobserved {
                            message: format!(
                                "{} {id} changed, or the object did, since it was last looked \
                                 at; the next round of the tenant's inventory looks",
                                S::SERVICE
                            ),
                        }))
                    }
                }
            })
            .await;
        match step {
            Some(Step::Done(answer)) => {
                if answer.is_err() {
                    self.hurry();
                }
                answer
            }
            // Never seen, no round in time, or a wish no round fulfilled: read it, and keep
            // what the cloud said.
            _ => {
                let started = Instant::now();
                let found = self.source.get(id).await?;
                let change = {
                    let mut state = self.lock();
                    let change = state.index.observe(id, found.clone(), started);
                    if state.fresh.get(id).is_some_and(|w| w.after <= started) {
                        state.fresh.remove(id);
                    }
                    change
                };
                self.fire_changes(change.into_iter().collect(), Some(caller));
                self.hurry();
                Ok(found)
            }
        }
    }

    /// The resources carrying `mark`. An empty answer is proof only when the last list started
    /// after `since` (a create that may have made one, or the object's own change).
    pub async fn by_mark(
        &self,
        mark: &str,
        since: Option<Instant>,
    ) -> Result<Vec<S::Item>, CloudError> {
        self.lookup(since, true, |index| index.by_mark(mark)).await
    }

    /// The resources named `name`. The answer is the last list's, unless `since` asks for a
    /// list that started after it (an upload that may have made one, or the object's own
    /// change).
    pub async fn by_name(
        &self,
        name: &str,
        since: Option<Instant>,
    ) -> Result<Vec<S::Item>, CloudError> {
        self.lookup(since, false, |index| index.by_name(name)).await
    }

    async fn lookup(
        &self,
        since: Option<Instant>,
        found_is_proof: bool,
        find: impl Fn(&Index<S::Item>) -> Vec<S::Item>,
    ) -> Result<Vec<S::Item>, CloudError> {
        let step = self
            .wait(LOOKUP_WAIT, |state| {
                if let Some(err) = &state.error {
                    return Step::Done(Err(err.clone()));
                }
                if !state.primed {
                    return Step::Wait;
                }
                let found = find(&state.index);
                let listed_since =
                    since.is_none_or(|t| state.index.last_list().is_some_and(|l| l >= t));
                if listed_since || (found_is_proof && !found.is_empty()) {
                    return Step::Done(Ok(found));
                }
                if let Some(t) = since {
                    state.list_after = Some(state.list_after.map_or(t, |l| l.max(t)));
                }
                Step::Wait
            })
            .await;
        match step {
            Some(Step::Done(answer)) => answer,
            _ => Err(CloudError::Transport {
                message: format!(
                    "the cloud did not answer the inventory's list within {}s",
                    LOOKUP_WAIT.as_secs()
                ),
            }),
        }
    }

    /// Runs `check` after every round until it is done or asks for a direct read, for at most
    /// `limit`; `None` when the time is up.
    async fn wait<T>(
        &self,
        limit: Duration,
        mut check: impl FnMut(&mut State<S::Item>) -> Step<T>,
    ) -> Option<Step<T>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut rounds = self.rounds.subscribe();
            match check(&mut self.lock()) {
                Step::Wait => {}
                done => return Some(done),
            }
            self.hurry();
            match tokio::time::timeout_at(deadline, rounds.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// The loop of rounds, until no object uses the inventory.
    pub async fn run(self: Arc<Self>, retire: impl Fn(&Self) -> bool) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut state = self.lock();
                sweep(&mut state.users, Instant::now());
                if state.users.is_empty() {
                    None
                } else {
                    let now = Instant::now();
                    let (demand, _, _) = self.demand(&state, now);
                    let busy = demand.waiting > 0 || demand.list_needed;
                    Some(plan::next_round(
                        now,
                        &self.cadence(&state),
                        &state.timing,
                        busy,
                    ))
                }
            };
            let Some(next) = next else {
                if retire(&self) {
                    debug!(scope = %self.key, service = S::SERVICE, "inventory retired: no object uses it");
                    return;
                }
                continue;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => self.round().await,
                _ = &mut notified => tokio::time::sleep(DEBOUNCE).await,
            }
        }
    }

    fn cadence(&self, state: &State<S::Item>) -> Cadence {
        let steady = state
            .users
            .values()
            .map(|r| r.user.resync)
            .min()
            .unwrap_or(self.shared.cadence.steady);
        Cadence {
            steady,
            ..self.shared.cadence
        }
    }

    /// What a round starting at `now` would need, the ids it would read one by one, and every
    /// id objects use.
    fn demand(
        &self,
        state: &State<S::Item>,
        now: Instant,
    ) -> (Demand, Vec<String>, HashSet<String>) {
        let index = &state.index;
        let listed_since = |t: Instant| index.last_list().is_some_and(|l| l >= t);
        let mut used: HashSet<&str> = HashSet::new();
        let mut waiting: HashSet<&str> = HashSet::new();
        let mut list_needed = !state.primed || state.list_after.is_some_and(|t| !listed_since(t));
        for registered in state.users.values() {
            let user = &registered.user;
            let mut ids: Vec<&str> = Vec::new();
            if let Some(id) = &user.id {
                ids.push(id);
            } else {
                for mark in &user.marks {
                    let marked = index.ids_by_mark(mark);
                    // Being created: a create that may have made it ended after the last list.
                    if marked.is_empty()
                        && self
                            .shared
                            .attempted(S::SERVICE, &format!("mark:{mark}"))
                            .is_some_and(|t| !listed_since(t))
                    {
                        list_needed = true;
                    }
                    ids.extend(marked.iter().map(String::as_str));
                }
            }
            for name in &user.names {
                let named = index.ids_by_name(name);
                if named.is_empty()
                    && user.id.is_none()
                    && self
                        .shared
                        .attempted(S::SERVICE, &format!("name:{name}"))
                        .is_some_and(|t| !listed_since(t))
                {
                    list_needed = true;
                }
                ids.extend(named.iter().map(String::as_str));
            }
            for id in ids {
                used.insert(id);
                if user.deleting || index.waits(id) || state.fresh.contains_key(id) {
                    waiting.insert(id);
                }
            }
        }
        for id in state.fresh.keys() {
            used.insert(id);
            waiting.insert(id);
        }
        let full = plan::full_due(now, &self.cadence(state), &state.timing);
        let demand = Demand {
            waiting: waiting.len(),
            used: used.len(),
            list_needed,
            full,
            pages: plan::pages(index.listed(), PAGE as usize),
        };
        let round = if full { &used } else { &waiting };
        let round: Vec<String> = round.iter().map(|id| id.to_string()).collect();
        let used = used.into_iter().map(str::to_string).collect();
        (demand, round, used)
    }

    /// One round: the cheaper way to look at what objects need, then the triggers.
    async fn round(&self) {
        let started = Instant::now();
        let (demand, ids, used) = self.demand(&self.lock(), started);
        let plan = plan::plan(demand);
        let mut changes: Vec<Change> = Vec::new();
        let mut calls = 0usize;
        let result: Result<(), CloudError> = match plan {
            Plan::Nothing => Ok(()),
            Plan::List => {
                calls = demand.pages;
                match self.source.list().await {
                    Ok(resources) => {
                        let (listed, unsure) = {
                            let mut state = self.lock();
                            state
                                .index
                                .listed_all(resources, started, |r| self.source.always_listed(r))
                        };
                        changes.extend(listed);
                        // Shown by a list no more, yet maybe still there (an image shared
                        // with the tenant whose membership changed): read those objects use.
                        let mut outcome = Ok(());
                        for id in unsure.into_iter().filter(|id| used.contains(id)) {
                            calls += 1;
                            let read = Instant::now();
                            match self.source.get(&id).await {
                                Ok(found) => {
                                    changes.extend(self.lock().index.observe(&id, found, read))
                                }
                                Err(err) => {
                                    outcome = Err(err);
                                    break;
                                }
                            }
                        }
                        outcome
                    }
                    Err(err) => Err(err),
                }
            }
            Plan::Get => {
                let mut outcome = Ok(());
                for id in ids {
                    calls += 1;
                    let read = Instant::now();
                    match self.source.get(&id).await {
                        Ok(found) => changes.extend(self.lock().index.observe(&id, found, read)),
                        Err(err) => {
                            outcome = Err(err);
                            break;
                        }
                    }
                }
                outcome
            }
        };
        let plan_name = match plan {
            Plan::Nothing => "nothing",
            Plan::List => "list",
            Plan::Get => "get",
        };
        let (everyone, resources, delta, settled) = {
            let mut state = self.lock();
            state.timing.last_start = Some(started);
            state.timing.last_calls = calls;
            let was = state.error.clone();
            match &result {
                Ok(()) => {
                    if plan == Plan::List || demand.full {
                        state.timing.last_full = Some(started);
                    }
                    if plan == Plan::List {
                        state.primed = true;
                    }
                    state.timing.failures = 0;
                    state.timing.retry_after = None;
                    state.error = None;
                }
                Err(err) => {
                    state.timing.failures = state.timing.failures.saturating_add(1);
                    state.timing.retry_after = err.retry_after();
                    state.error = Some(err.clone());
                }
            }
            let index = &state.index;
            let settled: Vec<String> = state
                .fresh
                .iter()
                .filter(|(id, w)| index.seen(id).is_some_and(|seen| seen >= w.after))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &settled {
                state.fresh.remove(id);
            }
            if state
                .list_after
                .is_some_and(|t| state.index.last_list().is_some_and(|l| l >= t))
            {
                state.list_after = None;
            }
            let keep: HashSet<String> = state
                .users
                .values()
                .filter_map(|r| r.user.id.clone())
                .collect();
            state.index.forget_gone_except(&keep);
            // Every object hears of a failure, and of the recovery.
            let everyone = was != state.error;
            let resources = state.index.count();
            let delta = resources as i64 - state.reported as i64;
            state.reported = resources;
            (everyone, resources, delta, settled)
        };
        self.shared
            .metrics
            .inventory_round(S::SERVICE, plan_name, result.is_ok());
        self.shared.metrics.inventory_resources(S::SERVICE, delta);
        if let Err(err) = &result {
            warn!(scope = %self.key, service = S::SERVICE, error = %err, "the inventory could not read the cloud");
        }
        debug!(scope = %self.key, service = S::SERVICE, plan = plan_name, calls, changes = changes.len(), resources, "inventory round");
        if everyone {
            self.fire_all();
        } else {
            // The objects put back until this round had looked come back too, changed or not.
            changes.extend(settled.into_iter().map(|id| Change {
                id,
                ..Change::default()
            }));
            self.fire_changes(changes, None);
        }
        self.rounds.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Triggers the objects that use what changed (except `caller`, who is reading it now).
    fn fire_changes(&self, changes: Vec<Change>, caller: Option<&str>) {
        if changes.is_empty() {
            return;
        }
        let ids: HashSet<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        let names: HashSet<&str> = changes
            .iter()
            .flat_map(|c| c.names.iter().map(String::as_str))
            .collect();
        let marks: HashSet<&str> = changes
            .iter()
            .flat_map(|c| c.marks.iter().map(String::as_str))
            .collect();
        let targets: Vec<User> = self
            .lock()
            .users
            .iter()
            .filter(|(key, _)| Some(key.as_str()) != caller)
            .map(|(_, r)| &r.user)
            .filter(|u| {
                u.id.as_deref().is_some_and(|id| ids.contains(id))
                    || u.marks.iter().any(|m| marks.contains(m.as_str()))
                    || u.names.iter().any(|n| names.contains(n.as_str()))
            })
            .cloned()
            .collect();
        self.shared.fire(S::SERVICE, &targets);
    }

    fn fire_all(&self) {
        let targets: Vec<User> = self.lock().users.values().map(|r| r.user.clone()).collect();
        self.shared.fire(S::SERVICE, &targets);
    }
}

/// Forgets users that have not looked for a long time: their objects are gone (a Ready object
/// looks at least every [`STEADY_FACTOR`] resync periods, any other one more often).
fn sweep(users: &mut HashMap<String, Registered>, now: Instant) {
    let lifetime = |r: &Registered| {
        r.user
            .resync
            .saturating_mul(2 * STEADY_FACTOR + 1)
            .saturating_add(Duration::from_secs(60))
    };
    users.retain(|_, r| now.duration_since(r.touched) < lifetime(r));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::inventory::index::Item;
    use crate::controller::triggers::Triggers;
    use crate::metrics::Metrics;
    use tokio::sync::Semaphore;

    #[derive(Clone, Debug, PartialEq)]
    struct Thing(String);

    impl Item for Thing {
        fn id(&self) -> &str {
            &self.0
        }
        fn name(&self) -> Option<&str> {
            None
        }
        fn marks(&self) -> Vec<String> {
            Vec::new()
        }
        fn transitional(&self) -> bool {
            false
        }
    }

    /// A tenant whose lists each wait for a permit of `gate`.
    struct Gated {
        things: Vec<Thing>,
        gate: Arc<Semaphore>,
    }

    impl Source for Gated {
        type Item = Thing;
        const SERVICE: &'static str = "test";

        async fn list(&self) -> Result<Vec<Thing>, CloudError> {
            self.gate.acquire().await.expect("gate").forget();
            Ok(self.things.clone())
        }

        async fn get(&self, id: &str) -> Result<Option<Thing>, CloudError> {
            Ok(self.things.iter().find(|t| t.0 == id).cloned())
        }

        fn always_listed(&self, _: &Thing) -> bool {
            true
        }
    }

    fn user(deleting: bool) -> User {
        User {
            kind: "Volume".into(),
            namespace: "ns".into(),
            name: "v".into(),
            id: Some("id-1".into()),
            marks: Vec::new(),
            names: Vec::new(),
            deleting,
            resync: Duration::from_secs(3600),
            meta: u64::from(deleting),
        }
    }

    /// A deletion that needs a view fresher than the inventory's is put back at once, not kept
    /// in its slot until a round has looked; the round that looks reconciles it again.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_lookup_that_needs_a_fresher_view_does_not_wait_in_its_slot() {
        let triggers = Arc::new(Triggers::default());
        let mut woken = triggers.subscribe("Volume", None);
        let shared = Arc::new(Shared {
            metrics: Arc::new(Metrics::new()),
            cadence: Cadence {
                fast: Duration::from_millis(10),
                steady: Duration::from_secs(3600),
                rate: None,
            },
            attempts: Mutex::default(),
            triggers,
        });
        let gate = Arc::new(Semaphore::new(1));
        let source = Gated {
            things: vec![Thing("id-1".into())],
            gate: gate.clone(),
        };
        let scope = Arc::new(Scope::new("test".into(), source, shared));
        tokio::spawn(scope.clone().run(|_| false));
        assert_eq!(scope.register("Volume/ns/v", user(false), None), None);
        let first = scope.show("Volume/ns/v", "id-1", None).await;
        assert_eq!(first.expect("first list"), Some(Thing("id-1".into())));

        // The object is deleted: it asks for a round that starts after now, and no round can
        // end while the gate is shut.
        let fresh_after = scope.register("Volume/ns/v", user(true), Some(Instant::now()));
        assert!(fresh_after.is_some(), "a deletion asks for a fresh view");
        while woken.try_recv().is_ok() {}
        let answer = tokio::time::timeout(
            SHOW_WAIT / 2,
            scope.show("Volume/ns/v", "id-1", fresh_after),
        )
        .await
        .expect("answered without waiting for a round");
        assert!(
            matches!(answer, Err(CloudError::Unobserved { .. })),
            "{answer:?}"
        );
        // Put back again, it still does not act on the old view.
        let again = scope.show("Volume/ns/v", "id-1", None).await;
        assert!(
            matches!(again, Err(CloudError::Unobserved { .. })),
            "{again:?}"
        );

        gate.add_permits(1);
        let trigger = tokio::time::timeout(Duration::from_secs(30), woken.recv())
            .await
            .expect("the round that looked triggers the object");
        assert_eq!(trigger, Some(("ns".into(), "v".into())));
        let fresh = scope.show("Volume/ns/v", "id-1", None).await;
        assert_eq!(fresh.expect("fresh"), Some(Thing("id-1".into())));
        gate.add_permits(1000);
    }
}
