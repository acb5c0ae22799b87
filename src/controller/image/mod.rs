//! The VolumeImage controller: one `VolumeImage` object, one image, made from a volume with
//! `os-volume_upload_image` or adopted.

pub mod decide;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::api::{
    CloudCredentialsRef, DeletionPolicy, ImageShare, ImageVisibility, ManagementPolicy,
    ObservedImage, Volume, VolumeImage, VolumeImageStatus,
};
use crate::cloud::model::{Image as CloudImage, ImageQuery, PatchOp, UploadToImage};
use crate::cloud::{BlockStorage, CloudCredentials, CloudError, Image};
use crate::controller::conditions::{Health, health_of};
use crate::controller::credentials::{self, LoadError};
use crate::controller::report::finalizing;
use crate::controller::{
    CloudKind, Context, Error, Report, Scope, cloud_error_health, object_ref, with_finalizer,
};
use decide::{DeleteStep, Wanted, Write, decide, decide_delete, source_volume_wait, uid_tag};

impl CloudKind for VolumeImage {
    const FINALIZER: &'static str = "cloudvol.dev/volumeimage";

    fn credentials_refs(&self) -> Vec<&CloudCredentialsRef> {
        vec![&self.spec.cloud_credentials_ref]
    }
    fn management_policy(&self) -> ManagementPolicy {
        self.spec.management_policy
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
    fn resync_period(&self) -> Option<&str> {
        self.spec.resync_period.as_deref()
    }
    fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default()
    }
}

/// A VolumeImage is looked at again when its source Volume changes (it waits for it to be
/// Ready) and when an ImageShare of its image changes (its deletion waits for them).
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
                        source.is_some_and(|s| s.name == name)
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
    let ctx = &ctx;
    with_finalizer(
        image,
        ctx,
        |i| async move { Reconcile::new(ctx, &i).apply().await },
        |i| async move { Reconcile::new(ctx, &i).cleanup().await },
    )
    .await
}

/// How far an image made from a volume may predate the object and still be the one its lost
/// upload made: the cloud's clock and the API server's may differ.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

enum Located {
    Found(Box<CloudImage>),
    NotCreated,
    Disappeared(String),
    ImportMissing(String),
    Ambiguous(Vec<String>),
}

/// What status fields a report keeps or sets besides the conditions.
#[derive(Default)]
struct Facts<'a> {
    image: Option<&'a CloudImage>,
    image_id: Option<String>,
    source_volume_id: Option<String>,
    upload_requested_at: Option<String>,
}

struct Reconcile<'a> {
    ctx: &'a Context,
    object: &'a VolumeImage,
    report: Report<'a, VolumeImage>,
    namespace: String,
}

impl<'a> Reconcile<'a> {
    fn new(ctx: &'a Context, object: &'a VolumeImage) -> Self {
        Reconcile {
            ctx,
            object,
            report: Report::new(ctx, object),
            namespace: object.namespace().unwrap_or_default(),
        }
    }

    fn managed(&self) -> bool {
        self.object.spec.management_policy == ManagementPolicy::Managed
    }

    /// The object's mark, when it makes its image (not for imports).
    fn mark(&self) -> Option<String> {
        (self.managed() && self.object.spec.import.is_none())
            .then(|| uid_tag(&self.object.uid().unwrap_or_default()))
    }

    fn status(&self) -> VolumeImageStatus {
        self.object.status.clone().unwrap_or_default()
    }

    async fn credentials(&self) -> Result<CloudCredentials, LoadError> {
        let reference = &self.object.spec.cloud_credentials_ref;
        credentials::load(&self.ctx.client, &self.namespace, reference).await
    }

    fn images(&self, creds: &CloudCredentials) -> Result<Arc<dyn Image>, LoadError> {
        self.ctx.connector.image(creds).map_err(|err| {
            LoadError::Stalled(cloud_error_health(
                "cannot use these credentials for images",
                &err,
            ))
        })
    }

    async fn apply(&self) -> Result<Action, Error> {
        let (creds, images) = match self
            .credentials()
            .await
            .and_then(|c| self.images(&c).map(|i| (c, i)))
        {
            Ok(both) => both,
            Err(LoadError::Api(err)) => return Err(err),
            Err(LoadError::Stalled(health)) => {
                return self.finish(Facts::default(), &health, false).await;
            }
        };
        if self.object.needs_cloud_to_delete() {
            let secret = &self.object.spec.cloud_credentials_ref.secret_name;
            credentials::hold(&self.ctx.client, &self.namespace, secret).await?;
        }
        let located = match self.locate(images.as_ref()).await {
            Ok(located) => located,
            Err(err) => {
                return self
                    .finish(
                        Facts::default(),
                        &cloud_error_health("cannot read the image", &err),
                        false,
                    )
                    .await;
            }
        };
        let image = match located {
            Located::Found(image) => *image,
            Located::Ambiguous(ids) => {
                let health = Health::stalled(
                    "AmbiguousImport",
                    format!(
                        "spec.import.filter matches {} images ({}); cloudvol never guesses: import by id instead",
                        ids.len(),
                        ids.join(", ")
                    ),
                );
                return self.finish(Facts::default(), &health, false).await;
            }
            Located::ImportMissing(what) => {
                let health = Health::stalled(
                    "ImportNotFound",
                    format!("no image matches spec.import ({what}); check the id or the name"),
                );
                return self.finish(Facts::default(), &health, false).await;
            }
            Located::Disappeared(id) if self.mark().is_none() => {
                let health = Health::stalled(
                    "ImageNotFound",
                    format!("the imported image {id} no longer exists in the cloud"),
                );
                return self.finish(Facts::default(), &health, false).await;
            }
            Located::Disappeared(id) => {
                self.report
                    .event(
                        EventType::Warning,
                        "ImageDisappeared",
                        &format!("image {id} was deleted outside cloudvol; making it again from the volume"),
                        "Recreate",
                    )
                    .await;
                return self.upload(&creds).await;
            }
            Located::NotCreated => return self.upload(&creds).await,
        };
        let mark = self.mark();
        let wanted = Wanted {
            resource: if self.managed() {
                self.object.spec.resource.as_ref()
            } else {
                None
            },
            mark: mark.as_deref(),
            paused: self.object.paused(),
        };
        let decision = decide(&wanted, &image);
        let facts = Facts {
            image: Some(&image),
            ..Facts::default()
        };
        let Some(write) = decision.write else {
            return self.finish(facts, &decision.health, false).await;
        };
        let ops = match &write {
            Write::Unprotect => vec![PatchOp::replace("protected", false)],
            Write::Patch(ops) => ops.clone(),
            Write::Protect(protected) => vec![PatchOp::replace("protected", *protected)],
        };
        match images.update_image(&image.id, &ops).await {
            Ok(updated) => {
                self.report
                    .event(
                        EventType::Normal,
                        "Updated",
                        decision.health.message(),
                        "Update",
                    )
                    .await;
                let facts = Facts {
                    image: Some(&updated),
                    ..Facts::default()
                };
                self.finish(facts, &decision.health, true).await
            }
            Err(err @ CloudError::Forbidden { .. }) if image.protected => {
                let health = Health::stalled(
                    "ImageProtected",
                    format!(
                        "image {} is protected and the cloud refuses to change it: {}; set \
                         spec.resource.protected: true to let cloudvol lift the protection \
                         around changes, or false to drop it",
                        image.id,
                        err.message()
                    ),
                );
                self.finish(facts, &health, false).await
            }
            Err(err) => {
                let health = cloud_error_health("the cloud refused to change the image", &err);
                self.finish(facts, &health, false).await
            }
        }
    }

    /// Finds the image: by `status.id`, by the import, by the object's mark, or — when an
    /// upload may have been sent — by the name and time of that upload.
    async fn locate(&self, images: &dyn Image) -> Result<Located, CloudError> {
        let status = self.status();
        let import = self.object.spec.import.as_ref();
        if let Some(id) = &status.id {
            match images.show_image(id).await {
                Ok(image) => return Ok(Located::Found(Box::new(image))),
                Err(CloudError::NotFound { .. }) if import.is_some_and(|i| i.filter.is_some()) => {}
                Err(CloudError::NotFound { .. }) => return Ok(Located::Disappeared(id.clone())),
                Err(err) => return Err(err),
            }
        }
        if let Some(import) = import {
            if let Some(id) = &import.id {
                return match images.show_image(id).await {
                    Ok(image) => Ok(Located::Found(Box::new(image))),
                    Err(CloudError::NotFound { .. }) => {
                        Ok(Located::ImportMissing(format!("id {id}")))
                    }
                    Err(err) => Err(err),
                };
            }
            if let Some(filter) = &import.filter {
                let query = ImageQuery {
                    name: Some(filter.name.clone()),
                    ..Default::default()
                };
                let mut found = images.list_images(&query).await?;
                return Ok(match found.len() {
                    0 => Located::ImportMissing(format!("name {:?}", filter.name)),
                    1 => Located::Found(Box::new(found.remove(0))),
                    _ => Located::Ambiguous(found.into_iter().map(|i| i.id).collect()),
                });
            }
        }
        let Some(mark) = self.mark() else {
            return Ok(Located::NotCreated);
        };
        let owner = images.project_id().await?;
        let marked = images
            .list_images(&ImageQuery {
                tags: vec![mark],
                owner: owner.clone(),
                ..Default::default()
            })
            .await?;
        if let Some(image) = oldest(marked) {
            return Ok(Located::Found(Box::new(image)));
        }
        if status.upload_requested_at.is_none() {
            return Ok(Located::NotCreated);
        }
        // An upload was sent, but its answer (or the status write after it) was lost: the image
        // it made has our name and owner, no cloudvol mark yet, and is younger than the object.
        let Some(resource) = &self.object.spec.resource else {
            return Ok(Located::NotCreated);
        };
        let created = self
            .object
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0 - CLOCK_SKEW)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let named = images
            .list_images(&ImageQuery {
                name: Some(resource.name.clone()),
                owner,
                ..Default::default()
            })
            .await?;
        let candidates = named.into_iter().filter(|image| {
            !image.tags.iter().any(|t| t.starts_with("cloudvol-uid:"))
                && image
                    .created_at
                    .as_deref()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .is_some_and(|t| t >= created)
        });
        Ok(match oldest(candidates.collect()) {
            Some(image) => Located::Found(Box::new(image)),
            None => Located::NotCreated,
        })
    }

    /// The source volume's cloud ID, or the health to report while there is none yet.
    async fn source_volume_id(&self) -> Result<String, Health> {
        let Some(resource) = &self.object.spec.resource else {
            return Err(Health::stalled("ImportNotFound", "no image to observe"));
        };
        if let Some(id) = &resource.volume_id {
            return Ok(id.clone());
        }
        let Some(reference) = &resource.volume_ref else {
            return Err(Health::stalled(
                "InvalidSpec",
                "spec.resource needs volumeRef or volumeID",
            ));
        };
        let volumes: Api<Volume> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let waiting = |why: String| Health::reconciling("WaitingForVolume", why);
        let volume = match volumes.get_opt(&reference.name).await {
            Ok(Some(volume)) => volume,
            Ok(None) => {
                return Err(waiting(format!(
                    "Volume {} does not exist yet",
                    reference.name
                )));
            }
            Err(err) => {
                return Err(waiting(format!(
                    "cannot read Volume {}: {err}",
                    reference.name
                )));
            }
        };
        let ready = health_of(volume.conditions()).is_some_and(|h| h.is_ready());
        match volume.status.and_then(|s| s.id) {
            Some(id) if ready => Ok(id),
            _ => Err(waiting(format!(
                "Volume {} is not Ready yet",
                reference.name
            ))),
        }
    }

    /// Makes the image from the source volume, recording the request first.
    async fn upload(&self, creds: &CloudCredentials) -> Result<Action, Error> {
        let Some(resource) = self
            .object
            .spec
            .resource
            .as_ref()
            .filter(|_| self.managed())
        else {
            let health = Health::stalled("ImportNotFound", "no image to observe");
            return self.finish(Facts::default(), &health, false).await;
        };
        let volume_id = match self.source_volume_id().await {
            Ok(id) => id,
            Err(health) => return self.finish(Facts::default(), &health, false).await,
        };
        let storage: Arc<dyn BlockStorage> = match self.ctx.connector.block_storage(creds) {
            Ok(storage) => storage,
            Err(err) => {
                let health = cloud_error_health(
                    "cannot make an image: no block storage with these credentials",
                    &err,
                );
                return self.finish(Facts::default(), &health, false).await;
            }
        };
        let volume = match storage.show_volume(&volume_id).await {
            Ok(volume) => volume,
            Err(CloudError::NotFound { .. }) => {
                let health = Health::stalled(
                    "SourceVolumeNotFound",
                    format!("the source volume {volume_id} does not exist in the cloud"),
                );
                return self.finish(Facts::default(), &health, false).await;
            }
            Err(err) => {
                let health = cloud_error_health("cannot read the source volume", &err);
                return self.finish(Facts::default(), &health, false).await;
            }
        };
        if let Some(health) = source_volume_wait(&volume_id, &volume.status) {
            return self.finish(Facts::default(), &health, false).await;
        }
        if self.object.paused() {
            let health = Health::stalled(
                "Paused",
                "the annotation cloudvol.dev/paused is \"true\", so cloudvol does not make the image; remove \
                 the annotation to continue",
            );
            return self.finish(Facts::default(), &health, false).await;
        }
        // Intent first: if the answer is lost, the next reconcile looks for what it made.
        let requested_at = Timestamp::now().to_string();
        let intent = Health::reconciling(
            "Uploading",
            format!(
                "cloudvol is asking the cloud to make image {:?} from volume {volume_id}",
                resource.name
            ),
        );
        let facts = Facts {
            source_volume_id: Some(volume_id.clone()),
            upload_requested_at: Some(requested_at.clone()),
            ..Facts::default()
        };
        let status = self.build_status(facts, &intent);
        self.report
            .write_status(self.object.status.as_ref(), &status)
            .await?;

        let request = UploadToImage {
            image_name: resource.name.clone(),
            force: resource.force,
            disk_format: Some(resource.disk_format.clone()),
            container_format: Some(resource.container_format.as_str().to_string()),
            // Always said: upstream Cinder makes a `shared` image when none is given, NHN a
            // `private` one. Unset in the spec means private at birth, then left alone.
            visibility: Some(
                match resource.visibility.unwrap_or(ImageVisibility::Private) {
                    ImageVisibility::Private => "private",
                    ImageVisibility::Shared => "shared",
                }
                .to_string(),
            ),
            // Protection comes after the mark is tagged: NHN refuses to change a protected image.
            protected: None,
        };
        let facts = Facts {
            source_volume_id: Some(volume_id.clone()),
            upload_requested_at: Some(requested_at),
            ..Facts::default()
        };
        match storage.upload_to_image(&volume_id, &request).await {
            Ok(uploaded) => {
                let health = Health::reconciling(
                    "Uploading",
                    format!(
                        "the cloud is making image {} from volume {volume_id}",
                        uploaded.image_id
                    ),
                );
                self.report
                    .event(
                        EventType::Normal,
                        "UploadStarted",
                        &format!("making image {} from volume {volume_id}", uploaded.image_id),
                        "Upload",
                    )
                    .await;
                let facts = Facts {
                    image_id: Some(uploaded.image_id),
                    ..facts
                };
                // The status (with the new image's ID) goes against the object as it was
                // before the intent write; a conflict-free server-side apply.
                self.finish(facts, &health, true).await
            }
            Err(CloudError::BadRequest { message }) => {
                let health = Health::stalled(
                    "UploadRefused",
                    format!(
                        "the cloud refused to make the image from volume {volume_id}: {message}"
                    ),
                );
                self.finish(facts, &health, false).await
            }
            Err(err) => {
                let health = cloud_error_health("the cloud did not confirm the upload", &err);
                self.finish(facts, &health, false).await
            }
        }
    }

    fn build_status(&self, facts: Facts<'_>, health: &Health) -> VolumeImageStatus {
        let previous = self.status();
        let id = facts
            .image
            .map(|i| i.id.clone())
            .or(facts.image_id)
            .or(previous.id);
        VolumeImageStatus {
            observed_generation: self.object.metadata.generation,
            conditions: self.report.conditions(health),
            id,
            source_volume_id: facts.source_volume_id.or(previous.source_volume_id),
            upload_requested_at: facts.upload_requested_at.or(previous.upload_requested_at),
            resource: facts.image.map(observed).or(previous.resource),
        }
    }

    async fn finish(
        &self,
        facts: Facts<'_>,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        let status = self.build_status(facts, health);
        self.report
            .finish(self.object.status.as_ref(), &status, health)
            .await?;
        Ok(self.report.requeue(health, progressed))
    }

    async fn hold(
        &self,
        facts: Facts<'_>,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        let status = self.build_status(facts, health);
        self.report
            .finish(self.object.status.as_ref(), &status, health)
            .await?;
        Err(self.report.hold(health, progressed))
    }

    async fn done(&self, why: &str) -> Result<Action, Error> {
        let status = self.build_status(Facts::default(), &finalizing(why));
        self.report
            .write_status(self.object.status.as_ref(), &status)
            .await?;
        self.report.release().await
    }

    /// ImageShares in the namespace that still share this image, with whether each is being
    /// deleted.
    async fn shares(&self) -> Result<Vec<(String, bool)>, Error> {
        let api: Api<ImageShare> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let id = self.status().id;
        let name = self.object.name_any();
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

    async fn cleanup(&self) -> Result<Action, Error> {
        if !self.object.needs_cloud_to_delete() {
            let why = if self.managed() {
                "deletionPolicy is Orphan: the image is left as it is"
            } else {
                "managementPolicy is unmanaged: the image is left as it is"
            };
            return self.done(why).await;
        }
        let images = match self.credentials().await.and_then(|c| self.images(&c)) {
            Ok(images) => images,
            Err(LoadError::Api(err)) => return Err(err),
            Err(LoadError::Stalled(health)) => {
                return self.hold(Facts::default(), &health, false).await;
            }
        };
        let image = match self.locate(images.as_ref()).await {
            Ok(Located::Found(image)) => Some(*image),
            Ok(_) => None,
            Err(err) => {
                return self
                    .hold(
                        Facts::default(),
                        &cloud_error_health("cannot read the image", &err),
                        false,
                    )
                    .await;
            }
        };
        let shares = self.shares().await?;
        let spec_protected = self.object.spec.resource.as_ref().and_then(|r| r.protected);
        let facts = || Facts {
            image: image.as_ref(),
            ..Facts::default()
        };
        match decide_delete(
            image.as_ref(),
            spec_protected,
            &shares,
            self.object.paused(),
        ) {
            DeleteStep::Done => self.done("the image is deleted").await,
            DeleteStep::Wait(health) | DeleteStep::Blocked(health) => {
                self.hold(facts(), &health, false).await
            }
            DeleteStep::Unprotect => {
                let Some(image) = &image else {
                    return self.done("the image is deleted").await;
                };
                let result = images
                    .update_image(&image.id, &[PatchOp::replace("protected", false)])
                    .await;
                let health = match result {
                    Ok(_) => Health::reconciling(
                        "Unprotecting",
                        format!(
                            "spec.resource.protected is false: unprotected image {} to delete it",
                            image.id
                        ),
                    ),
                    Err(err) => {
                        cloud_error_health("the cloud refused to unprotect the image", &err)
                    }
                };
                self.hold(facts(), &health, true).await
            }
            DeleteStep::Delete => {
                let Some(image) = &image else {
                    return self.done("the image is deleted").await;
                };
                match images.delete_image(&image.id).await {
                    Ok(()) | Err(CloudError::NotFound { .. }) => {
                        self.report
                            .event(
                                EventType::Normal,
                                "Deleted",
                                &format!("deleted image {}", image.id),
                                "Delete",
                            )
                            .await;
                        self.done("the image is deleted").await
                    }
                    Err(err) => {
                        let health =
                            cloud_error_health("the cloud refused to delete the image", &err);
                        self.hold(facts(), &health, false).await
                    }
                }
            }
        }
    }
}

/// The oldest of `images` by creation time.
fn oldest(mut images: Vec<CloudImage>) -> Option<CloudImage> {
    images.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    images.into_iter().next()
}

fn observed(image: &CloudImage) -> ObservedImage {
    ObservedImage {
        status: image.status.as_str().to_string(),
        name: image.name.clone(),
        visibility: Some(image.visibility.as_str().to_string()),
        protected: Some(image.protected),
        owner: image.owner.clone(),
        disk_format: image.disk_format.clone(),
        container_format: image.container_format.clone(),
        size: image.size.map(|s| s as i64),
        checksum: image.checksum.clone(),
        tags: image.tags.clone(),
        created_at: image.created_at.clone(),
    }
}
