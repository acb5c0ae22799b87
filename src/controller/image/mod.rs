//! The VolumeImage controller: one `VolumeImage` object, one image, made from a volume with
//! `os-volume_upload_image` or adopted.
//!
//! observe (find the image: [`locate`]) → decide ([`next_step`], then [`decide`],
//! [`upload_request`] or [`decide_delete`]) → act (at most one cloud write) → report.

pub mod decide;

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::api::{ImageShare, ObservedImage, Volume, VolumeImage, VolumeImageStatus};
use crate::cloud::model::{Image as CloudImage, ImageQuery, PatchOp};
use crate::cloud::{CloudError, Image};
use crate::controller::conditions::Health;
use crate::controller::inventory::{self, View};
use crate::controller::lifecycle::{Cycle, Reconcile};
use crate::controller::locate::{Finder, Noun, Step, found, oldest_first};
use crate::controller::reasons::Reason;
use crate::controller::states::{image_deadline, past_deadline, status_since};
use crate::controller::{
    CloudKind, Common, Context, Error, Scope, cloud_error_health, common_spec, object_ref,
};
use decide::{
    DeleteStep, Wanted, Write, decide, decide_delete, no_source_volume, nothing_to_observe,
    source_from_ref, source_unreadable, source_volume_missing, source_volume_wait, uid_tag,
    unprotected, upload_asked, upload_name, upload_refused, upload_request, uploading,
    visibility_conflict, volumes_in_creation,
};

impl CloudKind for VolumeImage {
    const FINALIZER: &'static str = "cloudvol.dev/volumeimage";
    const LEFT_ALONE: &'static str = "the image is left as it is";
    fn common(&self) -> Common<'_> {
        common_spec!(self, self.spec.import.as_ref())
    }

    fn made_nothing(&self) -> Option<&'static str> {
        let status = self.status.as_ref();
        let nothing = status.is_none_or(|s| s.id.is_none() && s.upload_name.is_none());
        nothing.then_some("no image was ever made or imported")
    }
}

/// A VolumeImage is looked at again when its source Volume changes (it waits for it to be
/// Ready), when a Volume made from its image changes, and when an ImageShare of its image
/// changes (its deletion waits for both).
pub fn relations(
    controller: Controller<DeserializeGuard<VolumeImage>>,
    scope: &Scope,
) -> Controller<DeserializeGuard<VolumeImage>> {
    let store = controller.store();
    controller
        .watches(
            scope.api::<DeserializeGuard<Volume>>(),
            scope.watch(),
            move |volume| {
                let Ok(volume) = volume.0 else {
                    return Vec::new();
                };
                let name = volume.name_any();
                // The image the Volume is made from: its deletion waits for the volume.
                let made_from = volume.spec.resource.as_ref().and_then(|r| r.image.as_ref());
                let made_from_id = volume
                    .status
                    .as_ref()
                    .and_then(|s| s.source_image_id.clone())
                    .or_else(|| made_from.and_then(|i| i.id.clone()));
                store
                    .state()
                    .iter()
                    .filter_map(|image| image.0.as_ref().ok())
                    .filter(|image| image.namespace() == volume.namespace())
                    .filter(|image| {
                        let source = image
                            .spec
                            .resource
                            .as_ref()
                            .and_then(|r| r.volume_ref.as_ref());
                        let by_ref = made_from
                            .and_then(|i| i.reference.as_ref())
                            .is_some_and(|r| r.name == image.name_any());
                        let by_id = made_from_id.is_some()
                            && image.status.as_ref().and_then(|s| s.id.as_ref())
                                == made_from_id.as_ref();
                        source.is_some_and(|s| s.name == name) || by_ref || by_id
                    })
                    .map(|image| object_ref::<VolumeImage, _>(&image.name_any(), image))
                    .collect()
            },
        )
        .watches(
            scope.api::<DeserializeGuard<ImageShare>>(),
            scope.watch(),
            |share| {
                let share = share.0.ok()?;
                let image = share.spec.image_ref.as_ref()?;
                Some(object_ref::<VolumeImage, _>(&image.name, &share))
            },
        )
}

/// Reconciles one VolumeImage.
pub async fn reconcile(image: Arc<VolumeImage>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::controller::lifecycle::reconcile(image, ctx).await
}

const NOUN: Noun = Noun {
    one: "image",
    many: "images",
    gone: Reason::ImageNotFound,
};

/// Finds images through the image API, or through the tenant's inventory when there is one
/// (`--polling inventory`). Marks are looked for among the credentials' own images only.
struct Images<'a> {
    client: &'a dyn Image,
    /// The name of the last upload request, unique to it (`status.uploadName`).
    upload_name: Option<&'a str>,
    inventory: Option<View<inventory::source::Images>>,
}

impl<'a> Images<'a> {
    fn of(cycle: &Cycle<'a, VolumeImage>, client: &'a Arc<dyn Image>) -> Self {
        let object = cycle.object;
        let upload_name = object
            .status
            .as_ref()
            .and_then(|s| s.upload_name.as_deref());
        let mark = object
            .creates()
            .then(|| uid_tag(&object.uid().unwrap_or_default()));
        Images {
            client: client.as_ref(),
            upload_name,
            inventory: cycle.ctx.inventory.images(cycle, client, mark, upload_name),
        }
    }

    async fn owned(&self, query: ImageQuery) -> Result<Vec<CloudImage>, CloudError> {
        let owner = self.client.project_id().await?;
        if let Some(inventory) = &self.inventory {
            let found = match (&query.name, query.tags.first()) {
                (Some(name), _) => inventory.named(name).await?,
                (None, Some(tag)) => inventory.marked(tag).await?,
                (None, None) => Vec::new(),
            };
            let query = ImageQuery { owner, ..query };
            return Ok(found.into_iter().filter(|i| query.matches(i)).collect());
        }
        self.client
            .list_images(&ImageQuery { owner, ..query })
            .await
    }
}

impl Finder for Images<'_> {
    type Resource = CloudImage;

    fn id(image: &CloudImage) -> &str {
        &image.id
    }

    async fn show(&self, id: &str) -> Result<Option<CloudImage>, CloudError> {
        match &self.inventory {
            Some(inventory) => inventory.show(id).await,
            None => found(self.client.show_image(id).await),
        }
    }

    async fn named(&self, name: &str) -> Result<Vec<CloudImage>, CloudError> {
        if let Some(inventory) = &self.inventory {
            return inventory.named(name).await;
        }
        let query = ImageQuery {
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.client.list_images(&query).await
    }

    /// The images tagged with the object's mark; until the mark is on (the first patch after
    /// the upload), the image that bears the last upload request's unique name.
    async fn marked(&self, uid: &str) -> Result<Vec<CloudImage>, CloudError> {
        let tagged = ImageQuery {
            tags: vec![uid_tag(uid)],
            ..Default::default()
        };
        let mut marked = self.owned(tagged).await?;
        if marked.is_empty()
            && let Some(name) = self.upload_name
        {
            let named = ImageQuery {
                name: Some(name.to_string()),
                ..Default::default()
            };
            marked = self.owned(named).await?;
        }
        Ok(oldest_first(marked, |i| &i.created_at))
    }

    fn carries_mark(&self, image: &CloudImage, uid: &str) -> bool {
        let mark = uid_tag(uid);
        image.tags.contains(&mark)
            || (self.upload_name.is_some() && image.name.as_deref() == self.upload_name)
    }
}

impl Reconcile for VolumeImage {
    async fn apply(mut cycle: Cycle<'_, VolumeImage>) -> Result<Action, Error> {
        let images = match cycle.images_here(NOUN).await {
            Ok(images) => images,
            Err(closed) => return closed,
        };
        let object = cycle.object;
        let image = match cycle.locate(&Images::of(&cycle, &images), NOUN).await {
            Step::Observe(image) => image,
            Step::Closed(result) => return result,
            Step::Create => return upload(&cycle).await,
            Step::Recreate(id) => {
                cycle
                    .report
                    .event(
                        EventType::Warning,
                        "ImageDisappeared",
                        &format!(
                            "image {id} was deleted outside cloudvol; making it again from the \
                             volume"
                        ),
                        "Recreate",
                    )
                    .await;
                return upload(&cycle).await;
            }
        };
        let mark = object
            .creates()
            .then(|| uid_tag(&object.uid().unwrap_or_default()));
        let wanted = Wanted {
            resource: if object.managed() {
                object.spec.resource.as_ref()
            } else {
                None
            },
            mark: mark.as_deref(),
            paused: object.paused(),
        };
        let decision = decide(&wanted, &image);
        let Some(write) = decision.write else {
            let status = status(&cycle, Some(&image));
            let health = overdue(&cycle, &status, &image, decision.health);
            return cycle.close(status, &health, false).await;
        };
        if let Write::Patch(_) = &write {
            let shares = shares(&cycle).await?;
            if let Some(health) = visibility_conflict(&write, &image.id, &shares) {
                return cycle
                    .close(status(&cycle, Some(&image)), &health, false)
                    .await;
            }
        }
        let ops = match &write {
            Write::Unprotect => vec![PatchOp::replace("protected", false)],
            Write::Patch(ops) => ops.clone(),
            Write::Protect(protected) => vec![PatchOp::replace("protected", *protected)],
        };
        match images.update_image(&image.id, &ops).await {
            Ok(updated) => {
                cycle
                    .report
                    .event(
                        EventType::Normal,
                        "Updated",
                        decision.health.message(),
                        "Update",
                    )
                    .await;
                cycle
                    .close(status(&cycle, Some(&updated)), &decision.health, true)
                    .await
            }
            Err(err) => {
                let health = decide::update_refused(&image, &err);
                cycle
                    .close(status(&cycle, Some(&image)), &health, false)
                    .await
            }
        }
    }

    async fn cleanup(mut cycle: Cycle<'_, VolumeImage>) -> Result<Action, Error> {
        let images = match cycle.images_here(NOUN).await {
            Ok(images) => images,
            Err(closed) => return closed,
        };
        let object = cycle.object;
        let image = match cycle.existing(&Images::of(&cycle, &images), NOUN).await {
            Ok(image) => image,
            Err(closed) => return closed,
        };
        let shares = shares(&cycle).await?;
        let in_creation = in_creation(&cycle, image.as_ref()).await?;
        let spec_protected = object.spec.resource.as_ref().and_then(|r| r.protected);
        let step = decide_delete(
            image.as_ref(),
            spec_protected,
            &in_creation,
            &shares,
            object.paused(),
        );
        let Some(image) = image else {
            return cycle.finalize("the image is deleted").await;
        };
        let status = status(&cycle, Some(&image));
        match step {
            DeleteStep::Done => cycle.finalize("the image is deleted").await,
            DeleteStep::Wait(health) | DeleteStep::Blocked(health) => {
                cycle.close(status, &health, false).await
            }
            DeleteStep::Unprotect => {
                let result = images
                    .update_image(&image.id, &[PatchOp::replace("protected", false)])
                    .await;
                let health = match result {
                    Ok(_) => unprotected(&image.id),
                    Err(err) => {
                        cloud_error_health("the cloud refused to unprotect the image", &err)
                    }
                };
                cycle.close(status, &health, true).await
            }
            DeleteStep::Delete => match images.delete_image(&image.id).await {
                Ok(()) | Err(CloudError::NotFound { .. }) => {
                    cycle
                        .report
                        .event(
                            EventType::Normal,
                            "Deleted",
                            &format!("deleted image {}", image.id),
                            "Delete",
                        )
                        .await;
                    cycle.finalize("the image is deleted").await
                }
                Err(err) => {
                    let health = cloud_error_health("the cloud refused to delete the image", &err);
                    cycle.close(status, &health, false).await
                }
            },
        }
    }
}

/// Makes the image from the source volume, recording the request first.
async fn upload(cycle: &Cycle<'_, VolumeImage>) -> Result<Action, Error> {
    let object = cycle.object;
    let Some(resource) = object.spec.resource.as_ref().filter(|_| object.managed()) else {
        return cycle.report(&nothing_to_observe()).await;
    };
    let volume_id = match source_volume_id(cycle).await {
        Ok(id) => id,
        Err(health) => return cycle.report(&health).await,
    };
    let storage = match cycle.ctx.block_storage(&cycle.credentials) {
        Ok(storage) => storage,
        Err(err) => {
            let health = cloud_error_health(
                "cannot make an image: no block storage with these credentials",
                &err,
            );
            return cycle.report(&health).await;
        }
    };
    let volume = match storage.show_volume(&volume_id).await {
        Ok(volume) => volume,
        Err(CloudError::NotFound { .. }) => {
            return cycle.report(&source_volume_missing(&volume_id)).await;
        }
        Err(err) => {
            let health = cloud_error_health("cannot read the source volume", &err);
            return cycle.report(&health).await;
        }
    };
    let attempt = uuid::Uuid::new_v4().simple().to_string();
    let name = upload_name(&resource.name, &attempt[..12]);
    let request = match upload_request(
        resource,
        &volume_id,
        &volume.status,
        object.paused(),
        name.clone(),
    ) {
        Ok(request) => request,
        Err(health) => return cycle.report(&health).await,
    };
    // Intent first: if the answer is lost, the next reconcile looks for what it made.
    let intent = upload_asked(&resource.name, &volume_id);
    let mut recorded = cycle.report.recorded();
    recorded.source_volume_id = Some(volume_id.clone());
    recorded.upload_requested_at = Some(Timestamp::now().to_string());
    recorded.upload_name = Some(name);
    cycle.report.record(recorded.clone(), &intent).await?;

    match storage.upload_to_image(&volume_id, &request).await {
        Ok(uploaded) => {
            let health = uploading(&uploaded.image_id, &volume_id);
            cycle
                .report
                .event(
                    EventType::Normal,
                    "UploadStarted",
                    &format!("making image {} from volume {volume_id}", uploaded.image_id),
                    "Upload",
                )
                .await;
            recorded.id = Some(uploaded.image_id);
            cycle.close(recorded, &health, true).await
        }
        Err(CloudError::BadRequest { message }) => {
            // Refused: the cloud made nothing, so there is nothing to look for.
            recorded.upload_requested_at = None;
            recorded.upload_name = None;
            // The source volume may have turned busy between the look and the request (a grow
            // that started meanwhile): then the refusal is a wait, not a person's problem.
            let busy = match storage.show_volume(&volume_id).await {
                Ok(now) => source_volume_wait(&volume_id, &now.status),
                Err(_) => None,
            };
            let health = busy.unwrap_or_else(|| upload_refused(&volume_id, &message));
            cycle.close(recorded, &health, false).await
        }
        Err(err) => {
            let health = cloud_error_health("the cloud did not confirm the upload", &err);
            cycle.close(recorded, &health, false).await
        }
    }
}

/// The source volume's cloud id, or the health to report while there is none yet.
async fn source_volume_id(cycle: &Cycle<'_, VolumeImage>) -> Result<String, Health> {
    let Some(resource) = &cycle.object.spec.resource else {
        return Err(nothing_to_observe());
    };
    if let Some(id) = &resource.volume_id {
        return Ok(id.clone());
    }
    let Some(reference) = &resource.volume_ref else {
        return Err(no_source_volume());
    };
    let volumes: Api<Volume> = Api::namespaced(cycle.ctx.client.clone(), &cycle.namespace);
    match volumes.get_opt(&reference.name).await {
        Ok(volume) => source_from_ref(&reference.name, volume.as_ref()),
        Err(err) => Err(source_unreadable(&reference.name, &err.to_string())),
    }
}

/// Volumes in the namespace still being made from this image (see [`volumes_in_creation`]).
async fn in_creation(
    cycle: &Cycle<'_, VolumeImage>,
    image: Option<&CloudImage>,
) -> Result<Vec<String>, Error> {
    let Some(image) = image else {
        return Ok(Vec::new());
    };
    let api: Api<Volume> = Api::namespaced(cycle.ctx.client.clone(), &cycle.namespace);
    let volumes = api.list(&ListParams::default()).await?.items;
    Ok(volumes_in_creation(
        &cycle.object.name_any(),
        Some(&image.id),
        &volumes,
    ))
}

/// ImageShares in the namespace that still share this image, with whether each is being
/// deleted.
async fn shares(cycle: &Cycle<'_, VolumeImage>) -> Result<Vec<(String, bool)>, Error> {
    let api: Api<ImageShare> = Api::namespaced(cycle.ctx.client.clone(), &cycle.namespace);
    let id = cycle.object.status.as_ref().and_then(|s| s.id.clone());
    let name = cycle.object.name_any();
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| {
            s.spec.image_ref.as_ref().is_some_and(|r| r.name == name)
                || (id.is_some() && s.spec.image_id == id)
        })
        .filter(|s| !s.done_with_cloud())
        .map(|s| {
            let deleting = s.meta().deletion_timestamp.is_some();
            (s.name_any(), deleting)
        })
        .collect())
}

/// The status to write: what was recorded, with what the cloud reports of `image`.
fn status(cycle: &Cycle<'_, VolumeImage>, image: Option<&CloudImage>) -> VolumeImageStatus {
    let mut status = cycle.report.recorded();
    if let Some(image) = image {
        let previous = status
            .resource
            .as_ref()
            .map(|r| (r.status.as_str(), r.status_since.as_deref()));
        let since = status_since(previous, image.status.as_str(), Timestamp::now());
        status.id = Some(image.id.clone());
        if let Some(here) = &cycle.here {
            status.cloud = Some(here.clone());
        }
        status.resource = Some(ObservedImage {
            status_since: Some(since),
            ..observed(image)
        });
    }
    status
}

/// `health`, or Stalled when `image` has been transitional past its progress deadline.
fn overdue(
    cycle: &Cycle<'_, VolumeImage>,
    status: &VolumeImageStatus,
    image: &CloudImage,
    health: Health,
) -> Health {
    past_deadline(
        health,
        &format!("image {}", image.id),
        image.status.as_str(),
        status
            .resource
            .as_ref()
            .and_then(|r| r.status_since.as_deref()),
        Timestamp::now(),
        image_deadline(&image.status),
        cycle.ctx.settings.progress_deadline,
    )
}

fn observed(image: &CloudImage) -> ObservedImage {
    ObservedImage {
        status: image.status.as_str().to_string(),
        status_since: None,
        name: image.name.clone(),
        visibility: Some(image.visibility.as_str().to_string()),
        protected: Some(image.protected),
        owner: image.owner.clone(),
        disk_format: image.disk_format.clone(),
        container_format: image.container_format.clone(),
        size: image.size.map(|s| s as i64),
        min_disk: Some(image.min_disk as i64),
        min_ram: Some(image.min_ram as i64),
        checksum: image.checksum.clone(),
        tags: image.tags.clone(),
        created_at: image.created_at.clone(),
    }
}
