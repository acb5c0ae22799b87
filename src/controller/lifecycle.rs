//! The one entry of every reconcile: kube's finalizer helper, around the preamble that every
//! kind shares.
//!
//! - Deleting an object whose `deletionPolicy` is `Orphan`, or which is `unmanaged`, or which
//!   never asked the cloud for anything, finishes at once, without the cloud.
//! - The credentials Secret is read and parsed once per reconcile. A problem with it (missing,
//!   no clouds.yaml, a typo) is reported as the object's health, naming the Secret.
//! - While the object may need the Secret to delete its cloud resource, the Secret carries a
//!   finalizer (from the same read), so that `kubectl delete -f dir/` cannot strand it.
//!
//! The kind's own `apply` and `cleanup` then get a [`Cycle`] with the credentials and the
//! [`Report`] that closes the reconcile.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};

use super::conditions::Health;
use super::fairness::{self, Slot, scope_of};
use super::inventory::Polling;
use super::report::{Phase, Report};
use super::requeue::jitter;
use super::secret::{self, LoadError, Loaded};
use super::triggers::Target;
use super::{CloudKind, Context, Error, ObjectStatus, cloud_error_health, invalid_common_spec};
use crate::api::{CloudCredentialsRef, CloudScope};
use crate::cloud::{BlockStorage, CloudCredentials, Image};

/// A kind's two arms, as kube's finalizer helper calls them.
pub trait Reconcile: CloudKind {
    /// The object lives: bring the cloud resource to the spec.
    fn apply(cycle: Cycle<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send;
    /// The object is being deleted and its cloud resource must go (managed, `Delete`).
    fn cleanup(cycle: Cycle<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// One reconcile of one object, after the shared preamble.
pub struct Cycle<'a, K: CloudKind> {
    pub ctx: &'a Context,
    pub object: &'a K,
    pub report: Report<'a, K>,
    pub namespace: String,
    /// The credentials of `spec.cloudCredentialsRef`.
    pub credentials: CloudCredentials,
    /// Where the credentials act (tenant, region), once [`Cycle::check_cloud`] asked.
    pub here: Option<CloudScope>,
    /// The reconcile's slot of its cloud scope, let go as soon as the cloud is done with.
    slot: Mutex<Option<Slot>>,
}

impl<K: CloudKind> Cycle<'_, K> {
    /// Closes the reconcile with `status` and `health` (see [`Report::close`]).
    pub async fn close(
        &self,
        status: K::Status,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        self.report.close(status, health, progressed).await
    }

    /// Closes the reconcile keeping what the status recorded, with `health`.
    pub async fn report(&self, health: &Health) -> Result<Action, Error> {
        self.close(self.report.recorded(), health, false).await
    }

    /// The last step of a deletion (see [`Report::finalize`]). It talks to the API server only,
    /// so the slot of the cloud scope goes to the next object first.
    pub async fn finalize(&self, why: &str) -> Result<Action, Error> {
        drop(self.slot.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.report.finalize(self.report.recorded(), why).await
    }

    /// The block-storage client of the credentials, or the health that says why there is none.
    pub fn block_storage(&self) -> Result<Arc<dyn BlockStorage>, Health> {
        self.ctx.block_storage(&self.credentials).map_err(|err| {
            cloud_error_health("cannot use these credentials for block storage", &err)
        })
    }

    /// The image client of the credentials, or the health that says why there is none.
    pub fn images(&self) -> Result<Arc<dyn Image>, Health> {
        images(
            self.ctx,
            &self.credentials,
            self.object.common().credentials,
        )
    }

    /// The image client of another Secret the object names (an ImageShare member's).
    pub async fn images_of(
        &self,
        reference: &CloudCredentialsRef,
    ) -> Result<Result<Arc<dyn Image>, Health>, Error> {
        match secret::load(&self.ctx.client, &self.namespace, reference).await {
            Ok(loaded) => Ok(images(self.ctx, &loaded.credentials, reference)
                .map_err(|health| secret::explain(health, &self.namespace, reference))),
            Err(LoadError::Api(err)) => Err(err),
            Err(LoadError::Stalled(health)) => Ok(Err(health)),
        }
    }
}

fn images(
    ctx: &Context,
    credentials: &CloudCredentials,
    reference: &CloudCredentialsRef,
) -> Result<Arc<dyn Image>, Health> {
    ctx.image(credentials).map_err(|err| {
        cloud_error_health(
            &format!(
                "cannot use the credentials of cloud {:?} in Secret {} for images",
                reference.cloud_name, reference.secret_name
            ),
            &err,
        )
    })
}

/// Reconciles `object` through kube's finalizer helper and the shared preamble.
pub async fn reconcile<K: Reconcile>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let ctx = &ctx;
    finalizer(&api, K::FINALIZER, object, |event| async move {
        match event {
            Event::Apply(object) => run(ctx, object.as_ref(), Phase::Apply).await,
            Event::Cleanup(object) => run(ctx, object.as_ref(), Phase::Cleanup).await,
        }
    })
    .await
    .map_err(from_finalizer)
    .or_else(|err| match err {
        // Something went away under the reconcile, most often the object itself as its deletion
        // finished: not an error. Look again soon; if the object is gone, that look is a no-op.
        Error::Kube(kube::Error::Api(status)) if status.code == 404 => {
            Ok(Action::requeue(std::time::Duration::from_secs(5)))
        }
        // Another writer changed what this reconcile wrote with a compare-and-swap (two
        // objects releasing one Secret at once, say): expected, and retried at once with fresh
        // data. The finalizer helper already kept the finalizer, as the arm failed.
        Error::Kube(kube::Error::Api(status)) if status.code == 409 => Ok(Action::requeue(jitter(
            std::time::Duration::from_millis(200),
        ))),
        other => Err(other),
    })
}

async fn run<K: Reconcile>(ctx: &Context, object: &K, phase: Phase) -> Result<Action, Error> {
    let report = Report::new(ctx, object, phase);
    if phase == Phase::Cleanup {
        if !object.managed() {
            let why = format!("managementPolicy is unmanaged: {}", K::LEFT_ALONE);
            return report.finalize(object.recorded(), &why).await;
        }
        if !object.needs_cloud_to_delete() {
            let why = format!("deletionPolicy is Orphan: {}", K::LEFT_ALONE);
            return report.finalize(object.recorded(), &why).await;
        }
        if let Some(why) = object.made_nothing() {
            return report.finalize(object.recorded(), why).await;
        }
    }
    if phase == Phase::Apply
        && let Some(health) = invalid_common_spec(&object.common())
    {
        return report.close(object.recorded(), &health, false).await;
    }
    // A fair share (see fairness.rs): an object of a scope whose slots are all taken — a cloud
    // that hangs, a tenant with many busy objects — is put back at once, without waiting in a
    // slot, and without reading its Secret when its last scope is known to be full.
    let key = object.key();
    let waiter = waiter(object);
    let urgent = reads_mostly(object, phase, ctx.settings.polling);
    if ctx.fairness.queued_in_last_scope(&key, &waiter, urgent) {
        return defer::<K>(ctx, &key, phase);
    }
    let namespace = object.namespace().unwrap_or_default();
    let Loaded {
        credentials,
        secret,
    } = match secret::load(&ctx.client, &namespace, object.common().credentials).await {
        Ok(loaded) => loaded,
        Err(LoadError::Api(err)) => return Err(err),
        Err(LoadError::Stalled(health)) => {
            return report.close(object.recorded(), &health, false).await;
        }
    };
    let scope = scope_of(&credentials);
    ctx.fairness.remember(&key, &scope);
    let Some(slot) = ctx.fairness.enter(&scope, waiter, urgent) else {
        return defer::<K>(ctx, &key, phase);
    };
    if phase == Phase::Apply && object.needs_cloud_to_delete() {
        secret::guard(&ctx.client, &secret).await?;
    }
    if secret.metadata.deletion_timestamp.is_some() && object.needs_cloud_to_delete() {
        // Someone deletes the Secret: say on it who still holds it, and why.
        report.event_on(
            &secret,
            EventType::Warning,
            "CredentialsInUse",
            &format!(
                "{} {}/{} still needs this Secret to delete its cloud resource; the Secret goes \
                 once that deletion is done, or once the object's deletionPolicy is Orphan",
                K::kind(&()),
                namespace,
                object.name_any()
            ),
        )
        .await;
    }
    // (A new object, with no status yet, guarded nothing before.)
    if phase == Phase::Apply
        && let Some(status) = object.status()
        && object.meta().generation != status.observed_generation()
    {
        // The spec changed: a Secret it no longer names may be free now.
        secret::sweep(&ctx.client, object).await?;
    }
    let cycle = Cycle {
        ctx,
        object,
        report,
        namespace,
        credentials,
        here: None,
        slot: Mutex::new(Some(slot)),
    };
    match phase {
        Phase::Apply => K::apply(cycle).await,
        Phase::Cleanup => K::cleanup(cycle).await,
    }
}

/// Whether this reconcile of `object` is expected to read, and to write nothing to the cloud:
/// such a reconcile goes first in its scope's queue ([`fairness::Fairness::enter`]), so that
/// objects that only wait for the cloud, or only have to finish, are not kept behind a
/// thousand creates or deletes waiting for the rate limit.
/// - While the object lives: its resource exists (it is made; what is left is watching it).
/// - While it is deleted, with inventories: its delete was sent (what is left is watching the
///   resource go, which the inventory does, and removing the finalizer). One whose resource
///   still has to be deleted waits with the creates.
/// - While it is deleted, polling per object: its resource exists, as before inventories.
///   There every look is a GET of its own, and objects whose delete was sent would spend the
///   rate limit polling ahead of the deletes still to send (100 deletions took 47.7 s instead
///   of 14.3 s).
pub fn reads_mostly<K: CloudKind>(object: &K, phase: Phase, polling: Polling) -> bool {
    let exists = object.status().and_then(ObjectStatus::id).is_some();
    match (phase, polling) {
        (Phase::Apply, _) | (Phase::Cleanup, Polling::PerObject) => exists,
        (Phase::Cleanup, Polling::Inventory) => object.delete_sent(),
    }
}

/// Who waits for a slot, to be reconciled when one comes free.
fn waiter<K: CloudKind>(object: &K) -> Target {
    Target {
        kind: K::kind(&()).to_string(),
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}

/// Puts the object of `key` back: its cloud scope has no free slot. It waits in the scope's
/// queue, and the next slot to come free reconciles it; its backoff, at least
/// [`fairness::FALLBACK`], is only the fallback.
fn defer<K: CloudKind>(ctx: &Context, key: &str, phase: Phase) -> Result<Action, Error> {
    ctx.metrics.deferred(&K::kind(&()));
    let after = ctx.backoff(key, Some(fairness::FALLBACK));
    put_back(phase, "CloudScopeBusy", after)
}

/// Ends a reconcile that writes nothing and comes back after `after` (or sooner, when
/// something it waits for triggers it). During a deletion that is an [`Error::Hold`], which
/// keeps the finalizer.
pub fn put_back(phase: Phase, reason: &str, after: Duration) -> Result<Action, Error> {
    match phase {
        Phase::Apply => Ok(Action::requeue(after)),
        Phase::Cleanup => Err(Error::Hold {
            reason: reason.into(),
            after,
        }),
    }
}

fn from_finalizer(err: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match err {
        F::ApplyFailed(err) | F::CleanupFailed(err) => err,
        F::AddFinalizer(err) | F::RemoveFinalizer(err) => Error::Kube(err),
        other => Error::Finalizer(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Volume;

    /// A Volume with `status`, being deleted if `deleting`.
    fn volume(deleting: bool, status: serde_json::Value) -> Volume {
        let mut volume = Volume::new(
            "v",
            serde_json::from_value(serde_json::json!({
                "cloudCredentialsRef": {"secretName": "s", "cloudName": "c"},
                "resource": {"size": 1},
            }))
            .expect("a spec"),
        );
        volume.status = serde_json::from_value(status).expect("a status");
        if deleting {
            volume.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        volume
    }

    fn reconciling(reason: &str) -> serde_json::Value {
        serde_json::json!({
            "id": "vol-1",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": reason, "message": "m",
                 "lastTransitionTime": "2026-12-01T00:00:00Z"},
                {"type": "Reconciling", "status": "True", "reason": reason, "message": "m",
                 "lastTransitionTime": "2026-12-01T00:00:00Z"},
            ],
        })
    }

    #[test]
    fn reconciles_that_only_watch_the_cloud_go_first() {
        let ready = serde_json::json!({
            "id": "vol-1",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                            "message": "m", "lastTransitionTime": "2026-12-01T00:00:00Z"}],
        });
        let inventory = [
            // (what, phase, object, goes first, with inventories)
            (
                "new: a create to send",
                Phase::Apply,
                volume(false, serde_json::json!(null)),
                false,
            ),
            (
                "made: watching it",
                Phase::Apply,
                volume(false, ready.clone()),
                true,
            ),
            (
                "being created",
                Phase::Apply,
                volume(false, reconciling("Creating")),
                true,
            ),
            // A deletion whose delete is still to be sent waits with the creates...
            (
                "deleted, delete to send",
                Phase::Cleanup,
                volume(true, ready),
                false,
            ),
            (
                "deleted, never made",
                Phase::Cleanup,
                volume(true, serde_json::json!(null)),
                false,
            ),
            // ...one whose delete the cloud has only waits for the volume to go, and finishes.
            (
                "delete sent",
                Phase::Cleanup,
                volume(true, reconciling("Deleting")),
                true,
            ),
            (
                "finishing",
                Phase::Cleanup,
                volume(true, reconciling("Finalizing")),
                true,
            ),
            // A deletion the cloud refused must send again.
            (
                "delete refused",
                Phase::Cleanup,
                volume(true, reconciling("CloudError")),
                false,
            ),
        ];
        for (what, phase, object, first) in &inventory {
            assert_eq!(
                reads_mostly(object, *phase, Polling::Inventory),
                *first,
                "{what}"
            );
        }
        // Polling per object, every look is a GET: a deletion goes first when its resource
        // exists, whatever was sent, as before inventories.
        for (what, phase, object, _) in &inventory {
            let exists = object.status.as_ref().is_some_and(|s| s.id.is_some());
            assert_eq!(
                reads_mostly(object, *phase, Polling::PerObject),
                exists,
                "per object: {what}"
            );
        }
    }
}
