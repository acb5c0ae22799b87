//! Finding an object's cloud resource, written once for Volume and VolumeImage: by the id in
//! `status.id`, by `spec.import` (an id, or a name filter that must match exactly one), or by
//! the object's mark (the UID it tags what it creates with, docs/design.md §5). [`locate`] only
//! reads and returns plain data; [`next_step`] holds the rules of what follows from it.

use std::future::Future;

use kube::runtime::controller::Action;

use crate::api::{CloudScope, ImportSpec};
use std::sync::Arc;

use crate::cloud::{BlockStorage, CloudError, Image};

use super::conditions::Health;
use super::lifecycle::{Cycle, put_back};
use super::reasons::Reason;
use super::requeue::jitter;
use super::{CloudKind, Error, ObjectStatus, cloud_error_health};

/// When an object put back until its inventory has looked ([`CloudError::Unobserved`]) comes
/// back by itself; the round that looks triggers it sooner.
const UNOBSERVED_FALLBACK: std::time::Duration = std::time::Duration::from_secs(10);

/// How a kind finds its cloud resources.
pub trait Finder: Sync {
    type Resource: Send;

    /// The resource's cloud id.
    fn id(resource: &Self::Resource) -> &str;

    /// The resource with this id; `None` when the cloud says 404.
    fn show<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Future<Output = Result<Option<Self::Resource>, CloudError>> + Send + 'a;

    /// The resources with exactly this name.
    fn named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Future<Output = Result<Vec<Self::Resource>, CloudError>> + Send + 'a;

    /// The resources carrying the mark of the object with this UID, oldest first.
    fn marked<'a>(
        &'a self,
        uid: &'a str,
    ) -> impl Future<Output = Result<Vec<Self::Resource>, CloudError>> + Send + 'a;

    /// Whether `resource` carries the mark of the object with this UID: what cloudvol made for
    /// it, and so may change and delete.
    fn carries_mark(&self, resource: &Self::Resource, uid: &str) -> bool;
}

/// What an object knows about where its cloud resource is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keys<'a> {
    /// `status.id`.
    pub recorded_id: Option<&'a str>,
    /// `spec.import`.
    pub import: Option<&'a ImportSpec>,
    /// The object's UID, when it creates its resource (managed, not imported).
    pub mark: Option<&'a str>,
    /// An import by name looks the name up again when the resource it found is gone: only for
    /// objects that never write (`unmanaged`). A managed object would otherwise take over —
    /// and could later delete — a resource it was never pointed at.
    pub follow_name: bool,
}

impl<'a> Keys<'a> {
    /// What `object`'s status and spec say.
    pub fn of<K: CloudKind>(object: &'a K) -> Keys<'a> {
        Keys {
            recorded_id: object.status().and_then(ObjectStatus::id),
            import: object.common().import,
            mark: object
                .creates()
                .then(|| object.meta().uid.as_deref())
                .flatten(),
            follow_name: !object.managed(),
        }
    }
}

/// A cloud answer with 404 as `None`, for [`Finder::show`].
pub fn found<T>(answer: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match answer {
        Ok(resource) => Ok(Some(resource)),
        Err(CloudError::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// `resources` oldest first, by their creation time, for [`Finder::marked`].
pub fn oldest_first<T>(mut resources: Vec<T>, created_at: fn(&T) -> &Option<String>) -> Vec<T> {
    resources.sort_by(|a, b| created_at(a).cmp(created_at(b)));
    resources
}

/// Where the cloud resource stands.
#[derive(Debug, PartialEq)]
pub enum Located<R> {
    Found(R),
    /// Nothing carries the object's mark: it was never created (or only an import is missing).
    NotCreated,
    /// The resource in `status.id` is gone from the cloud.
    Disappeared(String),
    /// The import matched nothing (says what it looked for).
    ImportMissing(String),
    /// A filter import matched several resources (their ids).
    Ambiguous(Vec<String>),
}

/// Looks for the resource: by `status.id`, then by the import, then by the mark.
pub async fn locate<F: Finder>(
    finder: &F,
    keys: &Keys<'_>,
) -> Result<Located<F::Resource>, CloudError> {
    let by_name = keys.import.and_then(|i| i.filter.as_ref());
    if let Some(id) = keys.recorded_id {
        match finder.show(id).await? {
            Some(found) => return Ok(Located::Found(found)),
            // An observer's import by name follows the name: look again below.
            None if by_name.is_some() && keys.follow_name => {}
            None => {
                // Before anything is made again: a create whose answer was lost may already
                // have made it.
                if let Some(uid) = keys.mark
                    && let Some(found) = finder.marked(uid).await?.into_iter().next()
                {
                    return Ok(Located::Found(found));
                }
                return Ok(Located::Disappeared(id.to_string()));
            }
        }
    }
    if let Some(import) = keys.import {
        if let Some(id) = &import.id {
            return Ok(match finder.show(id).await? {
                Some(found) => Located::Found(found),
                None => Located::ImportMissing(format!("id {id}")),
            });
        }
        if let Some(filter) = &import.filter {
            let mut found = finder.named(&filter.name).await?;
            return Ok(match found.len() {
                0 => Located::ImportMissing(format!("name {:?}", filter.name)),
                1 => Located::Found(found.remove(0)),
                _ => Located::Ambiguous(found.iter().map(|r| F::id(r).to_string()).collect()),
            });
        }
    }
    let Some(uid) = keys.mark else {
        return Ok(Located::NotCreated);
    };
    let marked = finder.marked(uid).await?;
    Ok(match marked.into_iter().next() {
        Some(found) => Located::Found(found),
        None => Located::NotCreated,
    })
}

/// What a reconcile does once it has looked for its resource.
pub enum Step<R> {
    /// Compare the resource with the spec.
    Observe(R),
    /// Make the resource.
    Create,
    /// Make the resource again: the one in `status.id` (the id here) is gone.
    Recreate(String),
    /// The reconcile is closed (reported), with this result.
    Closed(Result<Action, Error>),
}

impl<K: CloudKind> Cycle<'_, K> {
    /// Learns where the credentials act (`project`, from the cloud, with the credentials'
    /// region) and stops the reconcile, reported, when that is not where the object's resource
    /// lives ([`credentials_changed`]).
    pub async fn check_cloud(
        &mut self,
        project: Result<Option<String>, CloudError>,
        noun: Noun,
    ) -> Result<(), Result<Action, Error>> {
        let project = match project {
            Ok(project) => project,
            Err(err) => return Err(self.unreadable(noun, &err).await),
        };
        self.here = project.map(|tenant_id| CloudScope {
            tenant_id,
            region: self.credentials.region_name.clone(),
        });
        let recorded = self.object.status().and_then(ObjectStatus::cloud);
        match credentials_changed(
            recorded,
            self.here.as_ref(),
            noun,
            self.object.status().and_then(ObjectStatus::id),
        ) {
            Some(health) => Err(self.report(&health).await),
            None => Ok(()),
        }
    }

    /// The block-storage client of the credentials, once [`Cycle::check_cloud`] found them
    /// acting where the object's volume lives; else the reconcile, closed.
    pub async fn volumes_here(
        &mut self,
        noun: Noun,
    ) -> Result<Arc<dyn BlockStorage>, Result<Action, Error>> {
        let storage = match self.block_storage() {
            Ok(storage) => storage,
            Err(health) => return Err(self.report(&health).await),
        };
        self.check_cloud(storage.project_id().await, noun).await?;
        Ok(storage)
    }

    /// The image client of the credentials, once [`Cycle::check_cloud`] found them acting
    /// where the object's image lives; else the reconcile, closed.
    pub async fn images_here(
        &mut self,
        noun: Noun,
    ) -> Result<Arc<dyn Image>, Result<Action, Error>> {
        let images = match self.images() {
            Ok(images) => images,
            Err(health) => return Err(self.report(&health).await),
        };
        self.check_cloud(images.project_id().await, noun).await?;
        Ok(images)
    }

    /// Looks for the object's resource with `finder` and follows [`next_step`]'s rules; what
    /// only needs reporting is reported here.
    pub async fn locate<F: Finder>(&self, finder: &F, noun: Noun) -> Step<F::Resource> {
        let located = match locate(finder, &Keys::of(self.object)).await {
            Ok(located) => Ok(located),
            Err(err) => Err(self.unreadable(noun, &err).await),
        };
        match located {
            Ok(located) => match next_step(located, noun, self.object.creates()) {
                Next::Observe(found) => match self.foreign(finder, &found, noun) {
                    Some(health) => Step::Closed(self.report(&health).await),
                    None => Step::Observe(found),
                },
                Next::Create => Step::Create,
                Next::Recreate(id) => Step::Recreate(id),
                Next::Report(health) => Step::Closed(self.report(&health).await),
            },
            Err(closed) => Step::Closed(closed),
        }
    }

    /// For a deletion: the object's resource, if it is still there (see
    /// [`locate_for_delete`]). A resource the object made but that does not carry its mark is
    /// refused: cloudvol deletes only what it made or was told to import.
    pub async fn existing<F: Finder>(
        &self,
        finder: &F,
        noun: Noun,
    ) -> Result<Option<F::Resource>, Result<Action, Error>> {
        let found = match locate_for_delete(finder, &Keys::of(self.object)).await {
            Ok(found) => found,
            Err(err) => return Err(self.unreadable(noun, &err).await),
        };
        if let Some(found) = &found
            && let Some(health) = self.foreign(finder, found, noun)
        {
            return Err(self.report(&health).await);
        }
        Ok(found)
    }

    async fn unreadable(&self, noun: Noun, err: &CloudError) -> Result<Action, Error> {
        if let CloudError::Unobserved { .. } = err {
            // The inventory's next round looks, and reconciles the object again: nothing to
            // report meanwhile, and no slot held while it waits.
            return put_back(
                self.report.phase(),
                err.reason(),
                jitter(UNOBSERVED_FALLBACK),
            );
        }
        let doing = format!("cannot read the {}", noun.one);
        self.report(&cloud_error_health(&doing, err)).await
    }

    /// Why `found` is not this object's to change or delete, if it is not: the object makes its
    /// own resource, and this one does not carry its mark (`status.id` edited by hand, say).
    fn foreign<F: Finder>(&self, finder: &F, found: &F::Resource, noun: Noun) -> Option<Health> {
        let uid = Keys::of(self.object).mark?;
        (!finder.carries_mark(found, uid)).then(|| {
            Health::stalled(
                Reason::ForeignResource,
                format!(
                    "{} {} in status.id does not carry this object's mark ({uid}), so cloudvol \
                     neither changes nor deletes it; if status.id was changed by hand, put back \
                     the id cloudvol recorded, or set deletionPolicy: Orphan to let a deletion \
                     finish without the cloud",
                    noun.one,
                    F::id(found)
                ),
            )
        })
    }
}

/// For a deletion, which targets only what cloudvol recorded: the resource in `status.id`
/// (never another one that bears the imported name now), or — when no id was recorded — the
/// one carrying the object's mark (made by a create whose answer was lost).
pub async fn locate_for_delete<F: Finder>(
    finder: &F,
    keys: &Keys<'_>,
) -> Result<Option<F::Resource>, CloudError> {
    if let Some(id) = keys.recorded_id {
        return finder.show(id).await;
    }
    match keys.mark {
        Some(uid) => Ok(finder.marked(uid).await?.into_iter().next()),
        None => Ok(None),
    }
}

/// The resource lives in `recorded`; the credentials now act in `here`. When both are known
/// and differ, nothing may be created or deleted with these credentials: creating would make a
/// second, empty resource in the other tenant and orphan the one that holds the data.
pub fn credentials_changed(
    recorded: Option<&CloudScope>,
    here: Option<&CloudScope>,
    noun: Noun,
    id: Option<&str>,
) -> Option<Health> {
    let (recorded, here) = (recorded?, here?);
    if recorded == here {
        return None;
    }
    let place = |s: &CloudScope| match &s.region {
        Some(region) => format!("tenant {} in region {region}", s.tenant_id),
        None => format!("tenant {}", s.tenant_id),
    };
    let what = match id {
        Some(id) => format!("{} {id}", noun.one),
        None => format!("the {}", noun.one),
    };
    Some(Health::stalled(
        Reason::CredentialsChanged,
        format!(
            "{what} lives in {}, but spec.cloudCredentialsRef now acts in {}; cloudvol creates \
             and deletes nothing there. Point cloudCredentialsRef back at {} (a new password for \
             the same tenant is fine), or, to move on, delete this object with deletionPolicy: \
             Orphan and import the resource you mean",
            place(recorded),
            place(here),
            place(recorded),
        ),
    ))
}

/// What a kind calls its resource in messages, and the reason of an import that vanished.
#[derive(Clone, Copy, Debug)]
pub struct Noun {
    /// "volume", "image".
    pub one: &'static str,
    /// "volumes", "images".
    pub many: &'static str,
    /// The Stalled reason when an imported resource no longer exists.
    pub gone: Reason,
}

/// The next step after [`locate`].
#[derive(Debug, PartialEq)]
pub enum Next<R> {
    /// Compare the resource with the spec.
    Observe(R),
    /// Make the resource.
    Create,
    /// The resource cloudvol made is gone: say so loudly, then make it again, as the spec
    /// asks. Carries the old id.
    Recreate(String),
    /// Nothing to do but report.
    Report(Health),
}

/// The rules of what follows from where the resource stands. `creates` says the object makes
/// its own resource (managed, not imported); otherwise a resource that is missing is reported,
/// never made.
pub fn next_step<R>(located: Located<R>, noun: Noun, creates: bool) -> Next<R> {
    match located {
        Located::Found(found) => Next::Observe(found),
        Located::Ambiguous(ids) => Next::Report(Health::stalled(
            Reason::AmbiguousImport,
            format!(
                "spec.import.filter matches {} {} ({}); cloudvol never guesses: import by id \
                 instead",
                ids.len(),
                noun.many,
                ids.join(", ")
            ),
        )),
        Located::ImportMissing(what) => Next::Report(Health::stalled(
            Reason::ImportNotFound,
            format!(
                "no {} matches spec.import ({what}); check the id or the name",
                noun.one
            ),
        )),
        Located::Disappeared(id) if !creates => Next::Report(Health::stalled(
            noun.gone,
            format!(
                "the imported {} {id} no longer exists in the cloud",
                noun.one
            ),
        )),
        Located::Disappeared(id) => Next::Recreate(id),
        Located::NotCreated if !creates => Next::Report(Health::stalled(
            Reason::ImportNotFound,
            format!("no {} to observe", noun.one),
        )),
        Located::NotCreated => Next::Create,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ImportFilter;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    const NOUN: Noun = Noun {
        one: "volume",
        many: "volumes",
        gone: Reason::VolumeNotFound,
    };

    /// A cloud of (id, name, mark) that counts the calls made to it.
    #[derive(Default)]
    struct Cloud {
        resources: Vec<(&'static str, &'static str, &'static str)>,
        calls: Mutex<BTreeMap<&'static str, u32>>,
    }

    impl Cloud {
        fn count(&self, call: &'static str) {
            *self.calls.lock().unwrap().entry(call).or_default() += 1;
        }
    }

    impl Finder for Cloud {
        type Resource = &'static str;
        fn id<'r>(resource: &'r &'static str) -> &'r str {
            resource
        }
        async fn show(&self, id: &str) -> Result<Option<&'static str>, CloudError> {
            self.count("show");
            Ok(self.resources.iter().find(|r| r.0 == id).map(|r| r.0))
        }
        async fn named(&self, name: &str) -> Result<Vec<&'static str>, CloudError> {
            self.count("named");
            Ok(self
                .resources
                .iter()
                .filter(|r| r.1 == name)
                .map(|r| r.0)
                .collect())
        }
        async fn marked(&self, uid: &str) -> Result<Vec<&'static str>, CloudError> {
            self.count("marked");
            Ok(self
                .resources
                .iter()
                .filter(|r| r.2 == uid)
                .map(|r| r.0)
                .collect())
        }
        fn carries_mark(&self, resource: &&'static str, uid: &str) -> bool {
            self.resources
                .iter()
                .any(|r| r.0 == *resource && r.2 == uid)
        }
    }

    fn by_id(id: &str) -> ImportSpec {
        ImportSpec {
            id: Some(id.into()),
            filter: None,
        }
    }

    fn by_name(name: &str) -> ImportSpec {
        ImportSpec {
            id: None,
            filter: Some(ImportFilter { name: name.into() }),
        }
    }

    fn run(cloud: &Cloud, keys: Keys<'_>) -> Located<&'static str> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(locate(cloud, &keys))
            .expect("the fake cloud answers")
    }

    #[test]
    fn locate_table() {
        let cloud = Cloud {
            resources: vec![
                ("v1", "data", "uid-1"),
                ("v2", "twin", ""),
                ("v3", "twin", ""),
            ],
            ..Default::default()
        };
        let import_v2 = by_id("v2");
        let import_gone = by_id("v9");
        let import_data = by_name("data");
        let import_twin = by_name("twin");
        let import_none = by_name("none");
        let cases: Vec<(&str, Keys<'_>, Located<&str>)> = vec![
            (
                "the recorded id",
                Keys {
                    recorded_id: Some("v1"),
                    mark: Some("uid-1"),
                    ..Default::default()
                },
                Located::Found("v1"),
            ),
            (
                "a recorded id that is gone, and nothing carries the mark",
                Keys {
                    recorded_id: Some("v9"),
                    mark: Some("uid-2"),
                    ..Default::default()
                },
                Located::Disappeared("v9".into()),
            ),
            (
                "a recorded id that is gone, but a lost create's answer made another: adopted",
                Keys {
                    recorded_id: Some("v9"),
                    mark: Some("uid-1"),
                    ..Default::default()
                },
                Located::Found("v1"),
            ),
            (
                "by mark",
                Keys {
                    mark: Some("uid-1"),
                    ..Default::default()
                },
                Located::Found("v1"),
            ),
            (
                "no mark found",
                Keys {
                    mark: Some("uid-2"),
                    ..Default::default()
                },
                Located::NotCreated,
            ),
            (
                "import by id",
                Keys {
                    import: Some(&import_v2),
                    ..Default::default()
                },
                Located::Found("v2"),
            ),
            (
                "import by id, missing",
                Keys {
                    import: Some(&import_gone),
                    ..Default::default()
                },
                Located::ImportMissing("id v9".into()),
            ),
            (
                "import by name",
                Keys {
                    import: Some(&import_data),
                    ..Default::default()
                },
                Located::Found("v1"),
            ),
            (
                "import by name, ambiguous",
                Keys {
                    import: Some(&import_twin),
                    ..Default::default()
                },
                Located::Ambiguous(vec!["v2".into(), "v3".into()]),
            ),
            (
                "import by name, missing",
                Keys {
                    import: Some(&import_none),
                    ..Default::default()
                },
                Located::ImportMissing("name \"none\"".into()),
            ),
            (
                "an observer's import by name whose recorded id is gone follows the name",
                Keys {
                    recorded_id: Some("v9"),
                    import: Some(&import_data),
                    follow_name: true,
                    ..Default::default()
                },
                Located::Found("v1"),
            ),
            (
                "a managed import by name whose recorded id is gone does not take a namesake",
                Keys {
                    recorded_id: Some("v9"),
                    import: Some(&import_data),
                    ..Default::default()
                },
                Located::Disappeared("v9".into()),
            ),
        ];
        for (name, keys, want) in cases {
            assert_eq!(run(&cloud, keys), want, "{name}");
        }
    }

    #[test]
    fn a_deletion_targets_only_the_recorded_id_or_the_mark() {
        let cloud = Cloud {
            resources: vec![("v1", "data", "uid-1"), ("v2", "data", "")],
            ..Default::default()
        };
        let import_data = by_name("data");
        let delete = |keys: Keys<'_>| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime")
                .block_on(locate_for_delete(&cloud, &keys))
                .expect("the fake cloud answers")
        };
        // The imported id is gone: the deletion never turns to another resource of that name.
        let gone = Keys {
            recorded_id: Some("v9"),
            import: Some(&import_data),
            ..Default::default()
        };
        assert_eq!(delete(gone), None);
        let recorded = Keys {
            recorded_id: Some("v2"),
            import: Some(&import_data),
            ..Default::default()
        };
        assert_eq!(delete(recorded), Some("v2"));
        // Never located: an import has nothing to delete; a creator deletes what carries its mark.
        let never_located = Keys {
            import: Some(&import_data),
            ..Default::default()
        };
        assert_eq!(delete(never_located), None);
        for (uid, want) in [("uid-1", Some("v1")), ("uid-2", None)] {
            let keys = Keys {
                mark: Some(uid),
                ..Default::default()
            };
            assert_eq!(delete(keys), want, "{uid}");
        }
    }

    #[test]
    fn credentials_that_now_act_elsewhere_stop_every_write() {
        let at = |tenant: &str, region: Option<&str>| CloudScope {
            tenant_id: tenant.into(),
            region: region.map(str::to_string),
        };
        let kr1 = at("t1", Some("KR1"));
        let cases = [
            (
                "same tenant and region",
                Some(kr1.clone()),
                Some(kr1.clone()),
                None,
            ),
            ("nothing recorded yet", None, Some(kr1.clone()), None),
            ("the cloud does not say", Some(kr1.clone()), None, None),
            (
                "another tenant",
                Some(kr1.clone()),
                Some(at("t2", Some("KR1"))),
                Some("CredentialsChanged"),
            ),
            (
                "another region",
                Some(kr1.clone()),
                Some(at("t1", Some("KR2"))),
                Some("CredentialsChanged"),
            ),
        ];
        for (what, recorded, here, want) in cases {
            let got = credentials_changed(recorded.as_ref(), here.as_ref(), NOUN, Some("v1"));
            assert_eq!(got.as_ref().map(|h| h.reason()), want, "{what}");
        }
        let health = credentials_changed(Some(&kr1), Some(&at("t2", None)), NOUN, Some("v1"))
            .expect("a change");
        assert!(health.is_stalled());
        assert!(
            health
                .message()
                .contains("volume v1 lives in tenant t1 in region KR1")
                && health.message().contains("acts in tenant t2"),
            "{}",
            health.message()
        );
    }

    #[test]
    fn next_step_table() {
        let gone = |creates| next_step::<()>(Located::Disappeared("v9".into()), NOUN, creates);
        assert_eq!(gone(true), Next::Recreate("v9".into()));
        let Next::Report(health) = gone(false) else {
            panic!("an imported volume that is gone is reported");
        };
        assert_eq!(health.reason(), "VolumeNotFound");
        assert!(health.is_stalled());

        assert_eq!(
            next_step::<()>(Located::NotCreated, NOUN, true),
            Next::Create
        );
        let Next::Report(health) = next_step::<()>(Located::NotCreated, NOUN, false) else {
            panic!("an observer never creates");
        };
        assert_eq!(health.reason(), "ImportNotFound");

        let Next::Report(health) =
            next_step::<()>(Located::Ambiguous(vec!["a".into(), "b".into()]), NOUN, true)
        else {
            panic!("an ambiguous import is reported");
        };
        assert_eq!(health.reason(), "AmbiguousImport");
        assert!(
            health.message().contains("2 volumes (a, b)"),
            "{}",
            health.message()
        );

        let Next::Report(health) =
            next_step::<()>(Located::ImportMissing("id v9".into()), NOUN, true)
        else {
            panic!("a missing import is reported");
        };
        assert_eq!(health.reason(), "ImportNotFound");
        assert_eq!(next_step(Located::Found(7), NOUN, true), Next::Observe(7));
    }
}
