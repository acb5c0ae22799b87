//! What one inventory knows of its tenant: the resources of the last list and of later reads,
//! each with the moment the observation that produced it started, looked up by id, by name and
//! by cloudvol's mark. Plain data, no I/O: the round and the lookups in `scope.rs` feed it and
//! read it.
//!
//! Freshness is explicit. An observation replaces what is known only if it started no earlier
//! than the one that produced it, so a list that was under way during a write never undoes
//! what the write's answer said. A resource missing from a list is gone only if the list
//! always shows it (`always_listed`) and it was last seen before the list started.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What the index needs of a cloud resource.
pub trait Item: Clone + PartialEq + Send + Sync + 'static {
    fn id(&self) -> &str;
    fn name(&self) -> Option<&str>;
    /// The marks of cloudvol objects it carries (their keys in the index).
    fn marks(&self) -> Vec<String>;
    /// The cloud is changing it by itself (a transitional state): objects wait on it.
    fn transitional(&self) -> bool;
}

/// One resource as last seen.
#[derive(Clone, Debug)]
struct Entry<R> {
    resource: R,
    /// When the observation that produced it started.
    seen: Instant,
    /// A write not observed since.
    written: Option<Written>,
}

/// A write to a resource that no observation has followed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    at: Instant,
    /// The entry shows what the accepted write leads to, and may be read. A write whose answer
    /// was lost leaves the entry unsettled: it is not read until observed.
    settled: bool,
}

/// What the index says of one id.
#[derive(Clone, Debug, PartialEq)]
pub enum Known<R> {
    /// The resource, from an observation that started at `seen`.
    Found { resource: R, seen: Instant },
    /// Observed gone by an observation that started at `at`.
    Gone { at: Instant },
    /// A write whose outcome is unknown was made; wait for an observation.
    Unsettled,
    /// Never seen.
    Unknown,
}

/// A resource that changed, with what objects may look it up by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub id: String,
    /// Its names and marks, before and after.
    pub names: Vec<String>,
    pub marks: Vec<String>,
}

/// The resources of one tenant and service.
pub struct Index<R> {
    entries: HashMap<String, Entry<R>>,
    names: HashMap<String, Vec<String>>,
    marks: HashMap<String, Vec<String>>,
    /// Ids observed gone, and when that observation started.
    gone: HashMap<String, Instant>,
    /// When the last complete list started.
    last_list: Option<Instant>,
    /// Resources in the last complete list.
    listed: usize,
}

impl<R> Default for Index<R> {
    fn default() -> Self {
        Index {
            entries: HashMap::new(),
            names: HashMap::new(),
            marks: HashMap::new(),
            gone: HashMap::new(),
            last_list: None,
            listed: 0,
        }
    }
}

impl<R: Item> Index<R> {
    /// When the last complete list started.
    pub fn last_list(&self) -> Option<Instant> {
        self.last_list
    }

    /// Resources the last complete list returned.
    pub fn listed(&self) -> usize {
        self.listed
    }

    /// Resources known now.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, id: &str) -> Known<R> {
        if let Some(entry) = self.entries.get(id) {
            if entry.written.is_some_and(|w| !w.settled) {
                return Known::Unsettled;
            }
            return Known::Found {
                resource: entry.resource.clone(),
                seen: entry.seen,
            };
        }
        match self.gone.get(id) {
            Some(at) => Known::Gone { at: *at },
            None => Known::Unknown,
        }
    }

    /// The resources carrying `mark`, in no particular order.
    pub fn by_mark(&self, mark: &str) -> Vec<R> {
        self.resources(self.marks.get(mark))
    }

    /// The resources named exactly `name`, in no particular order.
    pub fn by_name(&self, name: &str) -> Vec<R> {
        self.resources(self.names.get(name))
    }

    /// The ids that carry `mark`.
    pub fn ids_by_mark(&self, mark: &str) -> &[String] {
        self.marks.get(mark).map(Vec::as_slice).unwrap_or_default()
    }

    /// The ids named `name`.
    pub fn ids_by_name(&self, name: &str) -> &[String] {
        self.names.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    fn resources(&self, ids: Option<&Vec<String>>) -> Vec<R> {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id))
            .filter(|e| e.written.is_none_or(|w| w.settled))
            .map(|e| e.resource.clone())
            .collect()
    }

    /// Whether objects wait on `id`: a write not observed since, or a transitional state.
    pub fn waits(&self, id: &str) -> bool {
        self.entries
            .get(id)
            .is_some_and(|e| e.written.is_some() || e.resource.transitional())
    }

    /// When `id` was last observed (found or gone), if it was.
    pub fn seen(&self, id: &str) -> Option<Instant> {
        match self.entries.get(id) {
            Some(entry) if entry.written.is_none() => Some(entry.seen),
            Some(_) => None,
            None => self.gone.get(id).copied(),
        }
    }

    /// One resource observed by a read that started at `started` (`None`: the cloud says it
    /// does not exist). Returns what changed, if anything did.
    pub fn observe(&mut self, id: &str, found: Option<R>, started: Instant) -> Option<Change> {
        if let Some(entry) = self.entries.get(id) {
            if entry.seen > started {
                return None;
            }
            if let Some(written) = entry.written
                && written.at > started
            {
                return None;
            }
        } else if let Some(at) = self.gone.get(id)
            && *at > started
        {
            return None;
        }
        match found {
            Some(resource) => {
                let before = self.entries.get(id).map(|e| e.resource.clone());
                let changed = before.as_ref() != Some(&resource);
                let change = changed.then(|| change_of(id, before.as_ref(), Some(&resource)));
                self.gone.remove(id);
                self.put(
                    id,
                    Entry {
                        resource,
                        seen: started,
                        written: None,
                    },
                );
                change
            }
            None => {
                let before = self.remove(id);
                let was_gone = self.gone.insert(id.to_string(), started).is_some();
                (!was_gone || before.is_some()).then(|| change_of(id, before.as_ref(), None))
            }
        }
    }

    /// A write to `id` at `at`: `expected` is what the accepted write leads to (its answer, or
    /// the state the cloud documents for it), `None` when the outcome is unknown.
    pub fn written(&mut self, id: &str, at: Instant, expected: Option<R>) -> Option<Change> {
        let settled = expected.is_some();
        let before = self.entries.get(id).map(|e| e.resource.clone());
        let resource = match (expected, before.clone()) {
            (Some(resource), _) => resource,
            (None, Some(resource)) => resource,
            // Nothing known and nothing expected: remember only that a write happened.
            (None, None) => {
                self.gone.remove(id);
                return None;
            }
        };
        let change = (before.as_ref() != Some(&resource))
            .then(|| change_of(id, before.as_ref(), Some(&resource)));
        self.gone.remove(id);
        self.put(
            id,
            Entry {
                resource,
                seen: at,
                written: Some(Written { at, settled }),
            },
        );
        change
    }

    /// A complete list that started at `started`. Resources it does not show are gone when
    /// `always_listed` says the list would show them; the others are returned, to be read one
    /// by one. Returns what changed and those ids.
    pub fn listed_all(
        &mut self,
        resources: Vec<R>,
        started: Instant,
        always_listed: impl Fn(&R) -> bool,
    ) -> (Vec<Change>, Vec<String>) {
        let mut changes = Vec::new();
        let mut shown: HashSet<String> = HashSet::with_capacity(resources.len());
        let count = resources.len();
        for resource in resources {
            let id = resource.id().to_string();
            shown.insert(id.clone());
            if let Some(change) = self.observe(&id, Some(resource), started) {
                changes.push(change);
            }
        }
        let missing: Vec<(String, bool)> = self
            .entries
            .iter()
            .filter(|(id, entry)| !shown.contains(*id) && entry.seen < started)
            .filter(|(_, entry)| entry.written.is_none_or(|w| w.at < started))
            .map(|(id, entry)| (id.clone(), always_listed(&entry.resource)))
            .collect();
        let mut unsure = Vec::new();
        for (id, listed) in missing {
            if listed {
                if let Some(change) = self.observe(&id, None, started) {
                    changes.push(change);
                }
            } else {
                unsure.push(id);
            }
        }
        self.last_list = Some(started);
        self.listed = count;
        (changes, unsure)
    }

    /// Forgets what was observed gone, except the ids in `keep`.
    pub fn forget_gone_except(&mut self, keep: &HashSet<String>) {
        self.gone.retain(|id, _| keep.contains(id));
    }

    fn put(&mut self, id: &str, entry: Entry<R>) {
        self.unlink(id);
        if let Some(name) = entry.resource.name() {
            self.names
                .entry(name.to_string())
                .or_default()
                .push(id.to_string());
        }
        for mark in entry.resource.marks() {
            self.marks.entry(mark).or_default().push(id.to_string());
        }
        self.entries.insert(id.to_string(), entry);
    }

    fn remove(&mut self, id: &str) -> Option<R> {
        self.unlink(id);
        self.entries.remove(id).map(|e| e.resource)
    }

    /// Removes `id` from the name and mark lookups.
    fn unlink(&mut self, id: &str) {
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        let mut keys: Vec<(bool, String)> = Vec::new();
        if let Some(name) = entry.resource.name() {
            keys.push((true, name.to_string()));
        }
        keys.extend(entry.resource.marks().into_iter().map(|m| (false, m)));
        for (is_name, key) in keys {
            let map = if is_name {
                &mut self.names
            } else {
                &mut self.marks
            };
            if let Some(ids) = map.get_mut(&key) {
                ids.retain(|other| other != id);
                if ids.is_empty() {
                    map.remove(&key);
                }
            }
        }
    }
}

fn change_of<R: Item>(id: &str, before: Option<&R>, after: Option<&R>) -> Change {
    let mut names = Vec::new();
    let mut marks = Vec::new();
    for resource in [before, after].into_iter().flatten() {
        if let Some(name) = resource.name()
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
        for mark in resource.marks() {
            if !marks.contains(&mark) {
                marks.push(mark);
            }
        }
    }
    Change {
        id: id.to_string(),
        names,
        marks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Clone, Debug, PartialEq)]
    struct R {
        id: &'static str,
        name: &'static str,
        mark: &'static str,
        status: &'static str,
    }

    impl Item for R {
        fn id(&self) -> &str {
            self.id
        }
        fn name(&self) -> Option<&str> {
            Some(self.name)
        }
        fn marks(&self) -> Vec<String> {
            if self.mark.is_empty() {
                vec![]
            } else {
                vec![self.mark.to_string()]
            }
        }
        fn transitional(&self) -> bool {
            self.status == "creating"
        }
    }

    fn r(id: &'static str, status: &'static str) -> R {
        R {
            id,
            name: "data",
            mark: "uid-1",
            status,
        }
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_list_shows_what_changed_and_finds_by_name_and_mark() {
        let t0 = Instant::now();
        let mut index = Index::default();
        let (changes, unsure) = index.listed_all(vec![r("a", "creating")], at(t0, 0), |_| true);
        assert_eq!(changes.len(), 1);
        assert!(unsure.is_empty());
        assert_eq!(index.by_mark("uid-1"), vec![r("a", "creating")]);
        assert_eq!(index.by_name("data"), vec![r("a", "creating")]);
        assert!(index.waits("a"));
        // The same again changes nothing.
        let (changes, _) = index.listed_all(vec![r("a", "creating")], at(t0, 10), |_| true);
        assert!(changes.is_empty());
        let (changes, _) = index.listed_all(vec![r("a", "available")], at(t0, 20), |_| true);
        assert_eq!(changes[0].id, "a");
        assert_eq!(changes[0].marks, vec!["uid-1".to_string()]);
        assert!(!index.waits("a"));
    }

    #[test]
    fn missing_from_a_list_is_gone_only_if_the_list_always_shows_it() {
        let t0 = Instant::now();
        let mut index = Index::default();
        index.listed_all(vec![r("a", "available"), r("b", "available")], t0, |_| true);
        let (changes, unsure) = index.listed_all(vec![], at(t0, 10), |x: &R| x.id == "a");
        assert_eq!(changes.len(), 1);
        assert_eq!(index.get("a"), Known::Gone { at: at(t0, 10) });
        assert_eq!(unsure, vec!["b".to_string()]);
        assert!(matches!(index.get("b"), Known::Found { .. }));
        assert!(index.by_mark("uid-1").iter().all(|x| x.id == "b"));
    }

    #[test]
    fn an_older_observation_never_undoes_a_newer_one() {
        let t0 = Instant::now();
        let mut index = Index::default();
        // A create's answer at 50 ms, and a list that started before it.
        index.written("a", at(t0, 50), Some(r("a", "creating")));
        let (_, _) = index.listed_all(vec![], at(t0, 10), |_| true);
        assert!(
            matches!(index.get("a"), Known::Found { .. }),
            "a list that started before the create does not make it gone"
        );
        assert!(index.observe("a", None, at(t0, 20)).is_none());
        assert!(matches!(index.get("a"), Known::Found { .. }));
        // A read that started after it does.
        assert!(index.observe("a", None, at(t0, 60)).is_some());
        assert_eq!(index.get("a"), Known::Gone { at: at(t0, 60) });
    }

    #[test]
    fn a_write_with_a_lost_answer_is_unsettled_until_observed() {
        let t0 = Instant::now();
        let mut index = Index::default();
        index.observe("a", Some(r("a", "available")), t0);
        index.written("a", at(t0, 10), None);
        assert_eq!(index.get("a"), Known::Unsettled);
        assert!(index.by_name("data").is_empty());
        assert!(index.waits("a"));
        assert!(index.seen("a").is_none());
        index.observe("a", Some(r("a", "creating")), at(t0, 5));
        assert_eq!(
            index.get("a"),
            Known::Unsettled,
            "an older read settles nothing"
        );
        index.observe("a", Some(r("a", "creating")), at(t0, 20));
        assert!(matches!(index.get("a"), Known::Found { .. }));
        assert_eq!(index.seen("a"), Some(at(t0, 20)));
    }

    #[test]
    fn a_settled_write_is_read_and_waits_until_observed() {
        let t0 = Instant::now();
        let mut index = Index::default();
        index.observe("a", Some(r("a", "available")), t0);
        let change = index.written("a", at(t0, 10), Some(r("a", "deleting")));
        assert!(change.is_some());
        assert!(matches!(
            index.get("a"),
            Known::Found { resource, .. } if resource.status == "deleting"
        ));
        assert!(index.waits("a"));
        assert!(
            index
                .observe("a", Some(r("a", "deleting")), at(t0, 20))
                .is_none(),
            "seeing what the write led to is no change"
        );
        assert!(!index.waits("a"), "observed after the write");
    }

    #[test]
    fn a_rename_moves_the_name_and_forgotten_tombstones_go() {
        let t0 = Instant::now();
        let mut index = Index::default();
        index.observe("a", Some(r("a", "available")), t0);
        let renamed = R {
            name: "other",
            ..r("a", "available")
        };
        let change = index.observe("a", Some(renamed), at(t0, 1)).unwrap();
        assert_eq!(change.names, vec!["data".to_string(), "other".to_string()]);
        assert!(index.by_name("data").is_empty());
        assert_eq!(index.ids_by_name("other"), ["a".to_string()]);
        index.observe("a", None, at(t0, 2));
        assert!(index.ids_by_mark("uid-1").is_empty());
        index.forget_gone_except(&HashSet::new());
        assert_eq!(index.get("a"), Known::Unknown);
    }
}
