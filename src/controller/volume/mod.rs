//! The Volume controller: one `Volume` object, one cloud volume.
//!
//! observe (find the volume: [`locate`]) → decide ([`next_step`], then [`decide`] or
//! [`decide_delete`]) → act (at most one cloud write) → report ([`Cycle::close`]).

pub mod decide;

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::{
    ObservedVolume, Volume, VolumeAttachment, VolumeImage, VolumeRetype, VolumeStatus,
};
use crate::cloud::model::{Volume as CloudVolume, VolumeQuery};
use crate::cloud::{BlockStorage, CloudError};
use crate::controller::conditions::Health;
use crate::controller::inventory::{self, View};
use crate::controller::lifecycle::{Cycle, Reconcile};
use crate::controller::locate::{Finder, Noun, Step, found, oldest_first};
use crate::controller::reasons::Reason;
use crate::controller::states::{past_deadline, status_since, volume_deadline};
use crate::controller::{
    CloudKind, Common, Context, Error, Scope, cloud_error_health, common_spec, object_ref,
};
use decide::{
    DeleteStep, Membership, UID_MARK, Wanted, Write, being_created, create_refused, create_request,
    creating, decide, decide_delete, delete_refused, deleting, image_from_ref,
    image_source_missing, needs_membership, source_image_refusal,
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
/// volume `uploading` and back), and when the VolumeImage its `image.ref` names changes (it
/// waits for it to be Ready).
pub fn relations(
    controller: Controller<DeserializeGuard<Volume>>,
    scope: &Scope,
) -> Controller<DeserializeGuard<Volume>> {
    let store = controller.store();
    controller.watches(
        scope.api::<DeserializeGuard<VolumeImage>>(),
        scope.watch(),
        move |image| {
            let Ok(object) = image.0 else {
                return Vec::new();
            };
            let name = object.name_any();
            let source = object
                .spec
                .resource
                .as_ref()
                .and_then(|r| r.volume_ref.as_ref())
                .map(|source| object_ref::<Volume, _>(&source.name, &object));
            let made_from = store
                .state()
                .iter()
                .filter_map(|volume| volume.0.as_ref().ok())
                .filter(|volume| volume.namespace() == object.namespace())
                .filter(|volume| {
                    let reference = volume
                        .spec
                        .resource
                        .as_ref()
                        .and_then(|r| r.image.as_ref())
                        .and_then(|i| i.reference.as_ref());
                    reference.is_some_and(|r| r.name == name)
                })
                .map(|volume| object_ref::<Volume, _>(&volume.name_any(), volume))
                .collect::<Vec<_>>();
            source.into_iter().chain(made_from).collect()
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

/// Finds volumes through the block-storage API, or through the tenant's inventory when there
/// is one (`--polling inventory`).
struct Volumes<'a> {
    storage: &'a dyn BlockStorage,
    inventory: Option<View<inventory::source::Volumes>>,
}

impl<'a> Volumes<'a> {
    fn of(cycle: &Cycle<'_, Volume>, storage: &'a Arc<dyn BlockStorage>) -> Self {
        Volumes {
            storage: storage.as_ref(),
            inventory: cycle.ctx.inventory.volumes(cycle, storage),
        }
    }
}

impl Finder for Volumes<'_> {
    type Resource = CloudVolume;

    fn id(volume: &CloudVolume) -> &str {
        &volume.id
    }

    async fn show(&self, id: &str) -> Result<Option<CloudVolume>, CloudError> {
        match &self.inventory {
            Some(inventory) => inventory.show(id).await,
            None => found(self.storage.show_volume(id).await),
        }
    }

    async fn named(&self, name: &str) -> Result<Vec<CloudVolume>, CloudError> {
        if let Some(inventory) = &self.inventory {
            return inventory.named(name).await;
        }
        let query = VolumeQuery {
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.storage.list_volumes_detail(&query).await
    }

    async fn marked(&self, uid: &str) -> Result<Vec<CloudVolume>, CloudError> {
        let marked = match &self.inventory {
            Some(inventory) => inventory.marked(uid).await?,
            None => {
                let query = VolumeQuery {
                    metadata: [(UID_MARK.to_string(), uid.to_string())].into(),
                    ..Default::default()
                };
                self.storage.list_volumes_detail(&query).await?
            }
        };
        Ok(oldest_first(marked, |v| &v.created_at))
    }

    fn carries_mark(&self, volume: &CloudVolume, uid: &str) -> bool {
        volume.metadata.get(UID_MARK).map(String::as_str) == Some(uid)
    }
}

impl Reconcile for Volume {
    async fn apply(mut cycle: Cycle<'_, Volume>) -> Result<Action, Error> {
        let storage = match cycle.volumes_here(NOUN).await {
            Ok(storage) => storage,
            Err(closed) => return closed,
        };
        let volume = cycle.object;
        let found = match cycle.locate(&Volumes::of(&cycle, &storage), NOUN).await {
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
                            "volume {id} was deleted outside cloudvol; creating a new one as the \
                             spec says (empty, unless the spec names a source)"
                        ),
                        "Recreate",
                    )
                    .await;
                return create(&cycle, storage.as_ref()).await;
            }
        };
        let recorded = cycle.report.recorded();
        let wanted = Wanted {
            resource: if volume.managed() {
                volume.spec.resource.as_ref()
            } else {
                None
            },
            default_name: &volume.name_any(),
            paused: volume.paused(),
            retype: recorded.retype.as_ref(),
        };
        let decision = decide(&wanted, &found);
        let Some(write) = decision.write else {
            let status = status(&cycle, Some(&found));
            let health = overdue(&cycle, &status, &found, decision.health);
            return cycle.close(status, &health, false).await;
        };
        if let Write::Retype { new_type, policy } = &write {
            return retype(
                &cycle,
                storage.as_ref(),
                &found,
                new_type,
                *policy,
                &decision.health,
            )
            .await;
        }
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
            Write::Retype { .. } => unreachable!("a retype returned above"),
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
        let storage = match cycle.volumes_here(NOUN).await {
            Ok(storage) => storage,
            Err(closed) => return closed,
        };
        let volume = cycle.object;
        let found = match cycle.existing(&Volumes::of(&cycle, &storage), NOUN).await {
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
                        let health = deleting(&found.id);
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
                        // A delete whose answer was lost, sent again, finds the volume
                        // already deleting (Cinder refuses the second one): that is the
                        // delete at work, not a refusal.
                        match storage.show_volume(&found.id).await {
                            Err(CloudError::NotFound { .. }) => {
                                cycle.finalize("the cloud volume is deleted").await
                            }
                            Ok(now)
                                if now.status == crate::cloud::model::VolumeStatus::Deleting =>
                            {
                                let health = deleting(&now.id);
                                let status = self::status(&cycle, Some(&now));
                                cycle.close(status, &health, true).await
                            }
                            _ => {
                                cycle
                                    .close(status, &delete_refused(&found, &message), false)
                                    .await
                            }
                        }
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

/// Asks the cloud to change the volume's type, recording the request before it and its
/// outcome after it, so that a retype the cloud refuses or gives up is reported, not asked
/// again and again.
async fn retype(
    cycle: &Cycle<'_, Volume>,
    storage: &dyn BlockStorage,
    found: &CloudVolume,
    new_type: &str,
    policy: crate::cloud::model::MigrationPolicy,
    asking: &Health,
) -> Result<Action, Error> {
    // The watch cache may not hold this object's last status write yet: read the record
    // fresh before a request that must not be repeated once the cloud said no.
    let api: Api<Volume> = Api::namespaced(cycle.ctx.client.clone(), &cycle.namespace);
    let fresh = api
        .get_status(&cycle.object.name_any())
        .await?
        .status
        .and_then(|s| s.retype);
    if let Some(resource) = cycle.object.spec.resource.as_ref() {
        let wanted = Wanted {
            resource: Some(resource),
            default_name: &cycle.object.name_any(),
            paused: cycle.object.paused(),
            retype: fresh.as_ref(),
        };
        if let Some(Err(stalled)) = decide::retype_step(&wanted, resource, found) {
            let mut status = status(cycle, Some(found));
            status.retype = fresh;
            return cycle.close(status, &stalled, false).await;
        }
    }
    let spec_policy = cycle
        .object
        .spec
        .resource
        .as_ref()
        .map(|r| r.migration_policy)
        .unwrap_or_default();
    let mut recorded = status(cycle, Some(found));
    recorded.retype = Some(VolumeRetype {
        volume_type: new_type.to_string(),
        migration_policy: spec_policy,
        from_volume_type: found.volume_type.clone(),
        requested_at: Timestamp::now().to_string(),
        accepted: false,
        refusal: None,
    });
    cycle.report.record(recorded.clone(), asking).await?;
    match storage.retype_volume(&found.id, new_type, policy).await {
        Ok(()) => {
            if let Some(retype) = recorded.retype.as_mut() {
                retype.accepted = true;
            }
            cycle
                .report
                .event(EventType::Normal, "Retyped", asking.message(), "Retype")
                .await;
            cycle.close(recorded, asking, true).await
        }
        Err(CloudError::BadRequest { message }) => {
            if let Some(retype) = recorded.retype.as_mut() {
                retype.refusal = Some(message.chars().take(600).collect());
            }
            // The same rule reports it from now on, whatever reconcile looks.
            let wanted = Wanted {
                resource: cycle.object.spec.resource.as_ref(),
                default_name: &cycle.object.name_any(),
                paused: cycle.object.paused(),
                retype: recorded.retype.as_ref(),
            };
            let health = match cycle
                .object
                .spec
                .resource
                .as_ref()
                .and_then(|resource| decide::retype_step(&wanted, resource, found))
            {
                Some(Err(refused)) => refused,
                _ => cloud_error_health(
                    "the cloud refused to change the volume's type",
                    &CloudError::BadRequest { message },
                ),
            };
            cycle.close(recorded, &health, false).await
        }
        Err(err) => {
            let health = cloud_error_health("the cloud refused to change the volume's type", &err);
            cycle.close(recorded, &health, false).await
        }
    }
}

/// The image the volume is to be made from, or `None` for a volume without one; or the
/// closed reconcile when it cannot be made yet or at all. The image is read with the Volume's
/// own credentials, which are the ones the cloud checks.
async fn source_image(cycle: &Cycle<'_, Volume>) -> Result<Option<String>, Result<Action, Error>> {
    let Some(resource) = cycle.object.spec.resource.as_ref() else {
        return Ok(None);
    };
    let Some(source) = resource.image.as_ref() else {
        return Ok(None);
    };
    let id = match (&source.id, &source.reference) {
        (Some(id), _) => id.clone(),
        (None, Some(reference)) => {
            let images: Api<VolumeImage> =
                Api::namespaced(cycle.ctx.client.clone(), &cycle.namespace);
            let image = match images.get_opt(&reference.name).await {
                Ok(image) => image,
                Err(err) => return Err(Err(Error::Kube(err))),
            };
            match image_from_ref(&reference.name, image.as_ref()) {
                Ok(id) => id,
                Err(health) => return Err(cycle.report(&health).await),
            }
        }
        (None, None) => {
            let health = image_source_missing();
            return Err(cycle.report(&health).await);
        }
    };
    let images = match cycle.images() {
        Ok(images) => images,
        Err(health) => return Err(cycle.report(&health).await),
    };
    let reference = cycle.object.spec.cloud_credentials_ref.clone();
    let read = async {
        let tenant = images.project_id().await?;
        let who = match &tenant {
            Some(tenant) => format!(
                "the credentials of cloud {:?} (tenant {tenant})",
                reference.cloud_name
            ),
            None => format!("the credentials of cloud {:?}", reference.cloud_name),
        };
        let image = found(images.show_image(&id).await)?;
        let membership = match &image {
            Some(image) if needs_membership(image, tenant.as_deref()) => {
                let tenant = tenant.as_deref().unwrap_or_default();
                Some(match found(images.show_member(&id, tenant).await)? {
                    Some(member) => Membership::Member(member.status),
                    None => Membership::NotMember,
                })
            }
            _ => None,
        };
        Ok::<_, CloudError>((who, image, membership))
    };
    let (who, image, membership) = match read.await {
        Ok(seen) => seen,
        Err(err) => {
            let health = cloud_error_health(&format!("cannot read image {id}"), &err);
            return Err(cycle.report(&health).await);
        }
    };
    let size = resource.size.unwrap_or(1).max(1) as u64;
    match source_image_refusal(&who, &id, image.as_ref(), membership.as_ref(), size) {
        Some(health) => Err(cycle.report(&health).await),
        None => Ok(Some(id)),
    }
}

/// Makes the volume, marked with the object's UID, and records its id at once. A volume made
/// from an image records the image before the request, so that the image's deletion waits
/// for it even while the answer is on its way.
async fn create(cycle: &Cycle<'_, Volume>, storage: &dyn BlockStorage) -> Result<Action, Error> {
    let volume = cycle.object;
    if volume.paused() {
        return cycle
            .report(&crate::controller::paused("create the volume"))
            .await;
    }
    let image_id = match source_image(cycle).await {
        Ok(image_id) => image_id,
        Err(closed) => return closed,
    };
    let request = match create_request(volume, image_id.as_deref()) {
        Ok(request) => request,
        Err(health) => return cycle.report(&health).await,
    };
    // Intent first: a deletion then knows the cloud may hold a volume, even if the answer is
    // lost, and a VolumeImage knows a volume is being made from its image.
    let mut recorded = cycle.report.recorded();
    recorded.create_requested_at = Some(Timestamp::now().to_string());
    if let Some(image_id) = &image_id {
        recorded.source_image_id = Some(image_id.clone());
    }
    let intent = creating(image_id.as_deref());
    cycle.report.record(recorded.clone(), &intent).await?;
    match storage.create_volume(&request).await {
        Ok(created) => {
            let health = being_created(&created.id);
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
            let health = create_refused(image_id.as_deref(), &err);
            if !err.is_transient() {
                // Refused: the cloud made nothing, so nothing is being made from the image.
                recorded.create_requested_at = None;
                recorded.source_image_id = None;
            }
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
        // A retype record lasts while the spec asks for another type than the volume has.
        let wanted_type = cycle
            .object
            .spec
            .resource
            .as_ref()
            .and_then(|r| r.volume_type.as_deref());
        if wanted_type.is_none_or(|t| v.volume_type.as_deref() == Some(t)) {
            status.retype = None;
        }
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
        source_image_id: v.source_image_id().map(str::to_string),
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
