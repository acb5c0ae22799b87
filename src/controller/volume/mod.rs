//! The Volume controller: one `Volume` object, one cloud volume.
//!
//! observe (find the volume: [`locate`]) → decide ([`next_step`], then [`decide`] or
//! [`decide_delete`]) → act (at most one cloud write) → report ([`Cycle::close`]).

pub mod decide;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::{ObservedVolume, Volume, VolumeAttachment, VolumeImage, VolumeStatus};
use crate::cloud::model::{Volume as CloudVolume, VolumeQuery};
use crate::cloud::{BlockStorage, CloudError};
use crate::controller::conditions::Health;
use crate::controller::lifecycle::{Cycle, Reconcile};
use crate::controller::locate::{Finder, Noun, Step, found, oldest_first};
use crate::controller::reasons::Reason;
use crate::controller::states::{past_deadline, status_since, volume_deadline};
use crate::controller::{
    CloudKind, Common, Context, Error, Scope, cloud_error_health, common_spec, object_ref,
};
use decide::{
    DeleteStep, UID_MARK, Wanted, Write, create_request, decide, decide_delete, delete_refused,
};
use k8s_openapi::jiff::Timestamp;

impl CloudKind for Volume {
    const FINALIZER: &'static str = "cloudvol.dev/volume";
    const LEFT_ALONE: &'static str = "the cloud volume is left as it is";
    fn common(&self) -> Common<'_> {
        common_spec!(self, self.spec.import.as_ref())
    }

    fn made_nothing(&self) -> Option<&'static str> {
        let status = self.status.as_ref();
        let nothing = status.is_none_or(|s| s.id.is_none() && s.create_requested_at.is_none());
        nothing.then_some("no volume was ever created or imported")
    }
}

/// A Volume is looked at again when a VolumeImage made from it changes (an upload turns the
/// volume `uploading` and back).
pub fn relations(
    controller: Controller<DeserializeGuard<Volume>>,
    scope: &Scope,
) -> Controller<DeserializeGuard<Volume>> {
    controller.watches(
        scope.api::<DeserializeGuard<VolumeImage>>(),
        scope.watch(),
        |image| {
            let object = image.0.ok()?;
            let source = object.spec.resource.as_ref()?.volume_ref.as_ref()?;
            Some(object_ref::<Volume, _>(&source.name, &object))
        },
    )
}

/// Reconciles one Volume.
pub async fn reconcile(
    volume: std::sync::Arc<Volume>,
    ctx: std::sync::Arc<Context>,
) -> Result<Action, Error> {
    crate::controller::lifecycle::reconcile(volume, ctx).await
}

const NOUN: Noun = Noun {
    one: "volume",
    many: "volumes",
    gone: Reason::VolumeNotFound,
};

/// Finds volumes through the block-storage API.
struct Volumes<'a>(&'a dyn BlockStorage);

impl Finder for Volumes<'_> {
    type Resource = CloudVolume;

    fn id(volume: &CloudVolume) -> &str {
        &volume.id
    }

    async fn show(&self, id: &str) -> Result<Option<CloudVolume>, CloudError> {
        found(self.0.show_volume(id).await)
    }

    async fn named(&self, name: &str) -> Result<Vec<CloudVolume>, CloudError> {
        let query = VolumeQuery {
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.0.list_volumes_detail(&query).await
    }

    async fn marked(&self, uid: &str) -> Result<Vec<CloudVolume>, CloudError> {
        let query = VolumeQuery {
            metadata: [(UID_MARK.to_string(), uid.to_string())].into(),
            ..Default::default()
        };
        let marked = self.0.list_volumes_detail(&query).await?;
        Ok(oldest_first(marked, |v| &v.created_at))
    }

    fn carries_mark(&self, volume: &CloudVolume, uid: &str) -> bool {
        volume.metadata.get(UID_MARK).map(String::as_str) == Some(uid)
    }
}

impl Reconcile for Volume {
    async fn apply(mut cycle: Cycle<'_, Volume>) -> Result<Action, Error> {
        let storage = match cycle.block_storage() {
            Ok(storage) => storage,
            Err(health) => return cycle.report(&health).await,
        };
        if let Err(closed) = cycle.check_cloud(storage.project_id().await, NOUN).await {
            return closed;
        }
        let volume = cycle.object;
        let found = match cycle.locate(&Volumes(storage.as_ref()), NOUN).await {
            Step::Observe(found) => found,
            Step::Closed(result) => return result,
            Step::Create => return create(&cycle, storage.as_ref()).await,
            Step::Recreate(id) => {
                cycle
                    .report
                    .event(
                        EventType::Warning,
                        "VolumeDisappeared",
                        &format!(
                            "volume {id} was deleted outside cloudvol; creating a new, empty one"
                        ),
                        "Recreate",
                    )
                    .await;
                return create(&cycle, storage.as_ref()).await;
            }
        };
        let wanted = Wanted {
            resource: if volume.managed() {
                volume.spec.resource.as_ref()
            } else {
                None
            },
            default_name: &volume.name_any(),
            paused: volume.paused(),
        };
        let decision = decide(&wanted, &found);
        let Some(write) = decision.write else {
            let status = status(&cycle, Some(&found));
            let health = overdue(&cycle, &status, &found, decision.health);
            return cycle.close(status, &health, false).await;
        };
        let (result, action, done) = match &write {
            Write::Extend { new_size } => (
                storage.extend_volume(&found.id, *new_size).await,
                "Extend",
                "Extended",
            ),
            Write::Update(update) => (
                storage.update_volume(&found.id, update).await.map(drop),
                "Update",
                "Updated",
            ),
        };
        match result {
            Ok(()) => {
                cycle
                    .report
                    .event(EventType::Normal, done, decision.health.message(), action)
                    .await;
                cycle
                    .close(status(&cycle, Some(&found)), &decision.health, true)
                    .await
            }
            Err(err) => {
                let health = cloud_error_health(
                    &format!("the cloud refused to {}", action.to_lowercase()),
                    &err,
                );
                cycle
                    .close(status(&cycle, Some(&found)), &health, false)
                    .await
            }
        }
    }

    async fn cleanup(mut cycle: Cycle<'_, Volume>) -> Result<Action, Error> {
        let storage = match cycle.block_storage() {
            Ok(storage) => storage,
            Err(health) => return cycle.report(&health).await,
        };
        if let Err(closed) = cycle.check_cloud(storage.project_id().await, NOUN).await {
            return closed;
        }
        let volume = cycle.object;
        let found = match cycle.existing(&Volumes(storage.as_ref()), NOUN).await {
            Ok(found) => found,
            Err(closed) => return closed,
        };
        let delete_key = format!("{}/delete", volume.key());
        let step = decide_delete(
            found.as_ref(),
            volume.paused(),
            cycle.ctx.attempts.current(&delete_key),
        );
        let Some(found) = found else {
            cycle.ctx.attempts.reset(&delete_key);
            return cycle.finalize("the cloud volume is deleted").await;
        };
        let status = status(&cycle, Some(&found));
        match step {
            DeleteStep::Done => {
                cycle.ctx.attempts.reset(&delete_key);
                cycle.finalize("the cloud volume is deleted").await
            }
            DeleteStep::Wait(health) => {
                let health = overdue(&cycle, &status, &found, health);
                cycle.close(status, &health, false).await
            }
            DeleteStep::Blocked(health) => cycle.close(status, &health, false).await,
            DeleteStep::Delete => {
                // Only deletes that the cloud failed (error_deleting) use up the retries.
                if found.status == crate::cloud::model::VolumeStatus::ErrorDeleting {
                    cycle.ctx.attempts.next(&delete_key);
                }
                match storage.delete_volume(&found.id).await {
                    Ok(()) | Err(CloudError::NotFound { .. }) => {
                        let health = Health::reconciling(
                            Reason::Deleting,
                            format!("the cloud is deleting volume {}", found.id),
                        );
                        cycle
                            .report
                            .event(
                                EventType::Normal,
                                "Deleting",
                                &format!("deleting volume {}", found.id),
                                "Delete",
                            )
                            .await;
                        cycle.close(status, &health, true).await
                    }
                    Err(CloudError::BadRequest { message }) => {
                        cycle
                            .close(status, &delete_refused(&found, &message), false)
                            .await
                    }
                    Err(err) => {
                        let health =
                            cloud_error_health("the cloud refused to delete the volume", &err);
                        cycle.close(status, &health, false).await
                    }
                }
            }
        }
    }
}

/// Makes the volume, marked with the object's UID, and records its id at once.
async fn create(cycle: &Cycle<'_, Volume>, storage: &dyn BlockStorage) -> Result<Action, Error> {
    let volume = cycle.object;
    let request = match create_request(volume) {
        Ok(request) => request,
        Err(health) => return cycle.report(&health).await,
    };
    // Intent first: a deletion then knows the cloud may hold a volume, even if the answer is
    // lost.
    let mut recorded = cycle.report.recorded();
    recorded.create_requested_at = Some(Timestamp::now().to_string());
    let intent = Health::reconciling(
        Reason::Creating,
        "cloudvol is asking the cloud to create the volume",
    );
    cycle.report.record(recorded.clone(), &intent).await?;
    match storage.create_volume(&request).await {
        Ok(created) => {
            let health = Health::reconciling(
                Reason::Creating,
                format!("the cloud is creating volume {}", created.id),
            );
            cycle
                .report
                .event(
                    EventType::Normal,
                    "Created",
                    &format!("created volume {}", created.id),
                    "Create",
                )
                .await;
            cycle
                .close(status(cycle, Some(&created)), &health, true)
                .await
        }
        Err(err) => {
            if !err.is_transient() {
                // Refused: the cloud made nothing.
                recorded.create_requested_at = None;
            }
            let health = cloud_error_health("the cloud refused to create the volume", &err);
            cycle.close(recorded, &health, false).await
        }
    }
}

/// The status to write: what was recorded, with what the cloud reports of `found`.
fn status(cycle: &Cycle<'_, Volume>, found: Option<&CloudVolume>) -> VolumeStatus {
    let mut status = cycle.report.recorded();
    if let Some(v) = found {
        let previous = status
            .resource
            .as_ref()
            .map(|r| (r.status.as_str(), r.status_since.as_deref()));
        let since = status_since(previous, v.status.as_str(), Timestamp::now());
        status.id = Some(v.id.clone());
        if let Some(here) = &cycle.here {
            status.cloud = Some(here.clone());
        }
        status.resource = Some(ObservedVolume {
            status_since: Some(since),
            ..observed(v)
        });
        status.attachments = attachments(v);
    }
    status
}

/// `health`, or Stalled when `found` has been transitional past its progress deadline.
fn overdue(
    cycle: &Cycle<'_, Volume>,
    status: &VolumeStatus,
    found: &CloudVolume,
    health: Health,
) -> Health {
    past_deadline(
        health,
        &format!("volume {}", found.id),
        found.status.as_str(),
        status
            .resource
            .as_ref()
            .and_then(|r| r.status_since.as_deref()),
        Timestamp::now(),
        volume_deadline(&found.status),
        cycle.ctx.settings.progress_deadline,
    )
}

fn observed(v: &CloudVolume) -> ObservedVolume {
    ObservedVolume {
        status: v.status.as_str().to_string(),
        status_since: None,
        name: v.name.clone(),
        description: v.description.clone(),
        size: Some(v.size as i64),
        volume_type: v.volume_type.clone(),
        availability_zone: v.availability_zone.clone(),
        snapshot_id: v.snapshot_id.clone(),
        source_volume_id: v.source_volid.clone(),
        bootable: Some(v.bootable),
        encrypted: Some(v.encrypted),
        metadata: v.metadata.clone(),
        created_at: v.created_at.clone(),
    }
}

fn attachments(v: &CloudVolume) -> Vec<VolumeAttachment> {
    v.attachments
        .iter()
        .filter_map(|a| {
            Some(VolumeAttachment {
                server_id: a.server_id.clone()?,
                attachment_id: a.attachment_id.clone(),
                device: a.device.clone(),
            })
        })
        .collect()
}
