//! The `report` end of a reconcile: the status write (server-side apply under one field
//! manager, skipped when nothing changed), Events on every change of state, the Ready gauge,
//! and the requeue.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use super::conditions::{Health, conditions_for, health_of};
use super::{CloudKind, Context, Error, FIELD_MANAGER, credentials};

/// The Reconciling reason of an object whose cloud resource is gone (or left alone) during
/// deletion: it no longer needs its credentials, and its finalizer is being removed.
pub const DELETED_REASON: &str = "Finalizing";

/// The health of the last step of a deletion: `why` the object is finished with the cloud.
pub fn finalizing(why: &str) -> Health {
    Health::reconciling(DELETED_REASON, format!("{why}; removing the finalizer"))
}

/// Reports one reconcile of one object.
pub struct Report<'a, K: CloudKind> {
    ctx: &'a Context,
    object: &'a K,
}

impl<'a, K: CloudKind> Report<'a, K> {
    pub fn new(ctx: &'a Context, object: &'a K) -> Self {
        Report { ctx, object }
    }

    /// The conditions for `health`, keeping transition times that did not change.
    pub fn conditions(&self, health: &Health) -> Vec<Condition> {
        conditions_for(
            self.object.conditions(),
            health,
            self.object.meta().generation,
            Timestamp::now(),
        )
    }

    /// Writes `new` as the status unless it equals `old`: an unchanged observation writes
    /// nothing.
    pub async fn write_status<S: Serialize + PartialEq>(
        &self,
        old: Option<&S>,
        new: &S,
    ) -> Result<(), Error> {
        if old == Some(new) {
            return Ok(());
        }
        let api: Api<K> = Api::namespaced(
            self.ctx.client.clone(),
            &self.object.namespace().unwrap_or_default(),
        );
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": new,
        });
        api.patch_status(
            &self.object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        Ok(())
    }

    /// Writes the status, records an Event when the health changed, and updates the Ready
    /// gauge.
    pub async fn finish<S: Serialize + PartialEq>(
        &self,
        old: Option<&S>,
        new: &S,
        health: &Health,
    ) -> Result<(), Error> {
        self.write_status(old, new).await?;
        let previous = health_of(self.object.conditions());
        if previous.as_ref() != Some(health) {
            let (type_, verb) = if health.is_stalled() {
                (EventType::Warning, "Stalled")
            } else {
                (
                    EventType::Normal,
                    if health.is_ready() {
                        "Ready"
                    } else {
                        "Reconciling"
                    },
                )
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
        Ok(())
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
            .recorder
            .publish(&event, &self.object.object_ref(&()))
            .await
        {
            warn!(object = %self.object.key(), error = %err, "cannot record an Event");
        }
    }

    /// The last step of a deletion, once the status says the object is finished with the
    /// cloud ([`finalizing`]): releases every credentials Secret the object uses that nothing
    /// else needs, stops counting the object, and lets kube's helper remove the finalizer.
    pub async fn release(&self) -> Result<Action, Error> {
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
        for secret in secrets {
            credentials::release_if_unused(&self.ctx.client, &namespace, secret, &uid).await?;
        }
        self.forget();
        Ok(Action::await_change())
    }

    /// The object is gone from the controller's view: stop counting it.
    pub fn forget(&self) {
        self.ctx
            .metrics
            .object_ready(&K::kind(&()), &self.object.key(), None);
        self.ctx.attempts.reset(&self.object.key());
    }

    /// When to come back: the resync period once Ready (and the backoff starts over), else
    /// the object's backoff. `progressed` says a cloud write just succeeded, which also starts
    /// the backoff over so the next look is soon.
    pub fn requeue(&self, health: &Health, progressed: bool) -> Action {
        let key = self.object.key();
        if health.is_ready() {
            self.ctx.attempts.reset(&key);
            return self.ctx.resync(self.object);
        }
        if progressed {
            self.ctx.attempts.reset(&key);
        }
        Action::requeue(self.ctx.backoff(&key, health.wait()))
    }

    /// Like [`Self::requeue`], as the error that keeps kube's finalizer helper from removing
    /// the finalizer while a deletion waits or is blocked.
    pub fn hold(&self, health: &Health, progressed: bool) -> Error {
        let key = self.object.key();
        if progressed {
            self.ctx.attempts.reset(&key);
        }
        Error::Hold {
            reason: health.reason().to_string(),
            after: self.ctx.backoff(&key, health.wait()),
        }
    }
}
