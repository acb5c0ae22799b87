//! The `report` end of a reconcile, written once for every kind: the conditions of the
//! reconcile's [`Health`], one status write (server-side apply under one field manager,
//! skipped when nothing changed), an Event when the object's state changed, the Ready gauge,
//! and the requeue — or, while a deletion waits, the hold that keeps the finalizer.

use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use serde_json::json;
use tracing::{info, warn};

use super::conditions::{Health, conditions_for};
use super::reasons::Reason;
use super::{CloudKind, Context, Error, FIELD_MANAGER, ObjectStatus, secret};

/// Which arm of kube's finalizer helper a reconcile runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The object lives: a closing requeues.
    Apply,
    /// The object is being deleted: a closing holds the finalizer until the deletion is done.
    Cleanup,
}

/// Reports one reconcile of one object.
pub struct Report<'a, K: CloudKind> {
    ctx: &'a Context,
    object: &'a K,
    phase: Phase,
    /// What this reconcile wrote last (an intent before a cloud call), if anything, and the
    /// object's resourceVersion after that write.
    written: Mutex<Option<(K::Status, Option<String>)>>,
}

impl<'a, K: CloudKind> Report<'a, K> {
    pub fn new(ctx: &'a Context, object: &'a K, phase: Phase) -> Self {
        Report {
            ctx,
            object,
            phase,
            written: Mutex::new(None),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The status as it stands: what this reconcile wrote last, else the object's own.
    pub fn recorded(&self) -> K::Status {
        self.lock()
            .as_ref()
            .map(|(status, _)| status.clone())
            .unwrap_or_else(|| self.object.recorded())
    }

    /// The resourceVersion the next status write expects the object at.
    fn resource_version(&self) -> Option<String> {
        match self.lock().as_ref() {
            Some((_, version)) => version.clone(),
            None => self.object.resource_version(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(K::Status, Option<String>)>> {
        self.written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `status` with the conditions of `health` for the object's generation, keeping the
    /// transition times of conditions that did not change.
    fn stamped(&self, mut status: K::Status, health: &Health) -> K::Status {
        let generation = self.object.meta().generation;
        let conditions = conditions_for(
            self.recorded().conditions(),
            health,
            generation,
            Timestamp::now(),
        );
        status.stamp(conditions, generation);
        status
    }

    /// Writes `status` with the conditions of `health`, unless that is what is recorded
    /// already: an unchanged observation writes nothing. Used alone for an intent written
    /// before a cloud call; [`Self::close`] uses it for the closing write.
    pub async fn record(&self, status: K::Status, health: &Health) -> Result<(), Error> {
        let status = self.stamped(status, health);
        if status == self.recorded() {
            return Ok(());
        }
        let api: Api<K> = Api::namespaced(
            self.ctx.client.clone(),
            &self.object.namespace().unwrap_or_default(),
        );
        // The resourceVersion this status was computed from: if the object changed since (a
        // stale cache, another writer), the API server refuses with 409 and the reconcile runs
        // again on fresh data, so that intent a newer status recorded (members this object
        // added, an upload's name) is never written over.
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"resourceVersion": self.resource_version()},
            "status": status,
        });
        let written = api
            .patch_status(
                &self.object.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        *self.lock() = Some((status, written.resource_version()));
        Ok(())
    }

    /// Closes the reconcile: writes the status for `health`, records an Event when the
    /// object's state changed, updates the Ready gauge, and says when to come back. While a
    /// deletion is under way that is an [`Error::Hold`], which keeps the finalizer.
    /// `progressed` says a cloud write just succeeded, which starts the backoff over so the
    /// next look is soon.
    pub async fn close(
        &self,
        status: K::Status,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        if health.reason() == "NotLeader" {
            // This replica lost its Lease: it writes nothing more, to the cloud or here, and the
            // next leader takes the object over.
            return Ok(Action::requeue(self.ctx.backoff(&self.object.key(), None)));
        }
        let explained = self.explain(health.clone());
        let health = &explained;
        self.record(status, health).await?;
        if changed(self.object.conditions(), health) {
            let (type_, verb) = if health.is_stalled() {
                (EventType::Warning, "Stalled")
            } else if health.is_ready() {
                (EventType::Normal, "Ready")
            } else {
                (EventType::Normal, "Reconciling")
            };
            info!(
                object = %self.object.key(),
                state = verb,
                reason = health.reason(),
                message = health.message(),
                "state changed"
            );
            self.event(type_, health.reason(), health.message(), verb)
                .await;
        }
        let ready = if health.is_ready() { "True" } else { "False" };
        self.ctx
            .metrics
            .object_ready(&K::kind(&()), &self.object.key(), Some(ready));

        let key = self.object.key();
        if progressed || health.is_ready() {
            self.ctx.attempts.reset(&key);
        }
        match self.phase {
            Phase::Apply if health.is_ready() => Ok(self.ctx.resync(self.object)),
            Phase::Apply => Ok(Action::requeue(self.ctx.backoff(&key, health.wait()))),
            Phase::Cleanup => Err(Error::Hold {
                reason: health.reason().to_string(),
                after: self.ctx.backoff(&key, health.wait()),
            }),
        }
    }

    /// A credentials problem names the Secret, key and cloud; during a deletion that needs the
    /// cloud it also names the two ways out.
    fn explain(&self, health: Health) -> Health {
        let namespace = self.object.namespace().unwrap_or_default();
        let health = secret::explain(health, &namespace, self.object.common().credentials);
        if self.phase == Phase::Cleanup && secret::is_credentials_problem(health.reason()) {
            let message = format!(
                "{}. The deletion needs the cloud (a create was sent): fix the Secret, or set \
                 deletionPolicy: Orphan to finish it and leave the cloud resource as it is",
                health.message()
            );
            return health.with_message(message);
        }
        health
    }

    /// The last step of a deletion: says `why` the object is finished with the cloud (so that
    /// objects sharing its credentials Secret see it done), releases every Secret it uses that
    /// nothing else needs, stops counting the object, and lets kube's helper remove the
    /// finalizer.
    pub async fn finalize(&self, status: K::Status, why: &str) -> Result<Action, Error> {
        let health =
            Health::reconciling(Reason::Finalizing, format!("{why}; removing the finalizer"));
        self.record(status, &health).await?;
        let namespace = self.object.namespace().unwrap_or_default();
        let uid = self.object.uid().unwrap_or_default();
        let mut secrets: Vec<&str> = self
            .object
            .credentials_refs()
            .iter()
            .map(|r| r.secret_name.as_str())
            .collect();
        secrets.sort_unstable();
        secrets.dedup();
        for name in secrets {
            secret::release_if_unused(&self.ctx.client, &namespace, name, &uid).await?;
        }
        self.ctx
            .metrics
            .object_ready(&K::kind(&()), &self.object.key(), None);
        self.ctx.attempts.reset(&self.object.key());
        self.ctx.fairness.forget(&self.object.key());
        Ok(Action::await_change())
    }

    /// Records a Kubernetes Event on another object (`regarding`), about this one.
    pub async fn event_on<R: kube::Resource<DynamicType = ()>>(
        &self,
        regarding: &R,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Hold".to_string(),
            secondary: Some(self.object.object_ref(&())),
        };
        if let Err(err) = self
            .ctx
            .events
            .publish(&event, &regarding.object_ref(&()))
            .await
        {
            warn!(object = %self.object.key(), error = %err, "cannot record an Event");
        }
    }

    /// Records a Kubernetes Event on the object. A failure to record is logged, never fatal.
    pub async fn event(&self, type_: EventType, reason: &str, note: &str, action: &str) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(err) = self
            .ctx
            .events
            .publish(&event, &self.object.object_ref(&()))
            .await
        {
            warn!(object = %self.object.key(), error = %err, "cannot record an Event");
        }
    }
}

/// Whether `health` is another state than the one `before` records: another `True`
/// condition, reason or message.
fn changed(before: &[Condition], health: &Health) -> bool {
    let was = before.iter().find(|c| c.status == "True");
    was.is_none_or(|c| {
        c.type_ != health.condition_type()
            || c.reason != health.reason()
            || c.message != health.condition_message()
    })
}
