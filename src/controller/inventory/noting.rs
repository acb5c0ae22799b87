//! Cloud clients that tell the inventories what cloudvol writes. Each forwards every call
//! unchanged; around a write it records, in the inventory of the same identity:
//!
//! - a create or upload: the request that may make a marked or named resource (before it is
//!   sent and when it ends), so that a lookup whose answer was lost waits for a list made
//!   after it; and the created volume from the answer;
//! - an accepted write: what it leads to, as the answer shows it (update, patch) or as the
//!   cloud sets it before answering (delete → `deleting`, extend → `extending`, retype →
//!   `retyping`, upload → `uploading`, a tag added or removed);
//! - a write whose answer was lost: that the resource is unknown until a round has looked;
//! - in every case, a hurried next round.
//!
//! A read (`show`) also feeds the index. Nothing here ever changes what reaches the cloud.

use std::sync::Arc;
use std::time::Instant;

use crate::cloud::model::{
    CreateVolume, Image as ImageModel, ImageQuery, Member, MemberStatus, MigrationPolicy, PatchOp,
    UpdateVolume, UploadToImage, UploadedImage, Volume, VolumeQuery, VolumeStatus, VolumeSummary,
};
use crate::cloud::{BlockStorage, CloudError, CloudFuture, Image};
use crate::controller::volume::decide::UID_MARK;

use super::source::{Images, Source, Volumes, image_tagged, volume_after};
use super::{Registry, Shared};

/// Whether a failed write may have happened anyway: no answer, or a server error after the
/// request arrived.
fn ambiguous(err: &CloudError) -> bool {
    matches!(
        err,
        CloudError::Transport { .. }
            | CloudError::Unavailable { .. }
            | CloudError::Http { .. }
            | CloudError::Decode { .. }
    )
}

/// Tells the inventory `key` of `registry`, if one runs, what a write to resource `id` led to:
/// `after` of the write's answer and of the resource as the index shows it when accepted; gone
/// when the cloud says it is; unknown when the outcome is.
fn note<S: Source, T>(
    registry: &Registry<S>,
    key: &str,
    id: &str,
    result: &Result<T, CloudError>,
    after: impl FnOnce(&T, Option<&S::Item>) -> Option<S::Item>,
) {
    let Some(scope) = registry.find(key) else {
        return;
    };
    match result {
        Ok(answer) => scope.written(id, |current| after(answer, current)),
        Err(CloudError::NotFound { .. }) => scope.observed(id, None, Instant::now()),
        Err(err) if ambiguous(err) => scope.written(id, |_| None),
        Err(_) => {}
    }
}

/// Block storage whose writes the inventories hear of.
pub struct NotingStorage {
    pub(super) inner: Arc<dyn BlockStorage>,
    pub(super) volumes: Registry<Volumes>,
    pub(super) images: Registry<Images>,
    pub(super) volumes_key: String,
    pub(super) images_key: String,
    pub(super) shared: Arc<Shared>,
}

impl NotingStorage {
    /// After a write to volume `id`: what it leads to when accepted (`after` of the volume as
    /// the index shows it), or unknown when its outcome is.
    fn written<T>(
        &self,
        id: &str,
        result: &Result<T, CloudError>,
        after: impl FnOnce(&Volume) -> Volume,
    ) {
        note(
            &self.volumes,
            &self.volumes_key,
            id,
            result,
            |_, current| current.map(after),
        );
    }
}

impl BlockStorage for NotingStorage {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn endpoint(&self) -> CloudFuture<'_, String> {
        self.inner.endpoint()
    }

    fn project_id(&self) -> CloudFuture<'_, Option<String>> {
        self.inner.project_id()
    }

    fn list_volumes<'a>(&'a self, query: &'a VolumeQuery) -> CloudFuture<'a, Vec<VolumeSummary>> {
        self.inner.list_volumes(query)
    }

    fn list_volumes_detail<'a>(&'a self, query: &'a VolumeQuery) -> CloudFuture<'a, Vec<Volume>> {
        self.inner.list_volumes_detail(query)
    }

    fn show_volume<'a>(&'a self, id: &'a str) -> CloudFuture<'a, Volume> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.show_volume(id).await;
            if let Some(scope) = self.volumes.find(&self.volumes_key) {
                match &result {
                    Ok(volume) => scope.observed(id, Some(volume.clone()), started),
                    Err(CloudError::NotFound { .. }) => scope.observed(id, None, started),
                    Err(_) => {}
                }
            }
            result
        })
    }

    fn create_volume<'a>(&'a self, req: &'a CreateVolume) -> CloudFuture<'a, Volume> {
        Box::pin(async move {
            let mark = req.metadata.get(UID_MARK).map(|uid| format!("mark:{uid}"));
            if let Some(mark) = &mark {
                self.shared.attempt(Volumes::SERVICE, mark);
            }
            let result = self.inner.create_volume(req).await;
            if let Some(mark) = &mark {
                self.shared.attempt(Volumes::SERVICE, mark);
            }
            if let Some(scope) = self.volumes.find(&self.volumes_key) {
                match &result {
                    Ok(volume) => scope.written(&volume.id, |_| Some(volume.clone())),
                    Err(_) => scope.hurry(),
                }
            }
            result
        })
    }

    fn update_volume<'a>(&'a self, id: &'a str, req: &'a UpdateVolume) -> CloudFuture<'a, Volume> {
        Box::pin(async move {
            let result = self.inner.update_volume(id, req).await;
            match &result {
                Ok(volume) => {
                    if let Some(scope) = self.volumes.find(&self.volumes_key) {
                        scope.written(id, |_| Some(volume.clone()));
                    }
                }
                failed => self.written(id, failed, Volume::clone),
            }
            result
        })
    }

    fn delete_volume<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let result = self.inner.delete_volume(id).await;
            self.written(id, &result, |v| volume_after(v, VolumeStatus::Deleting));
            result
        })
    }

    fn extend_volume<'a>(&'a self, id: &'a str, new_size: u64) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let result = self.inner.extend_volume(id, new_size).await;
            self.written(id, &result, |v| volume_after(v, VolumeStatus::Extending));
            result
        })
    }

    fn upload_to_image<'a>(
        &'a self,
        id: &'a str,
        req: &'a UploadToImage,
    ) -> CloudFuture<'a, UploadedImage> {
        Box::pin(async move {
            let name = format!("name:{}", req.image_name);
            self.shared.attempt(Images::SERVICE, &name);
            let result = self.inner.upload_to_image(id, req).await;
            self.shared.attempt(Images::SERVICE, &name);
            self.written(id, &result, |v| volume_after(v, VolumeStatus::Uploading));
            if let Some(scope) = self.images.find(&self.images_key) {
                scope.hurry();
            }
            result
        })
    }

    fn retype_volume<'a>(
        &'a self,
        id: &'a str,
        new_type: &'a str,
        migration_policy: MigrationPolicy,
    ) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let result = self
                .inner
                .retype_volume(id, new_type, migration_policy)
                .await;
            self.written(id, &result, |v| volume_after(v, VolumeStatus::Retyping));
            result
        })
    }
}

/// Images whose writes the image inventory hears of.
pub struct NotingImages {
    pub(super) inner: Arc<dyn Image>,
    pub(super) images: Registry<Images>,
    pub(super) key: String,
}

impl NotingImages {
    fn written<T>(
        &self,
        id: &str,
        result: &Result<T, CloudError>,
        after: impl FnOnce(&T, Option<&ImageModel>) -> Option<ImageModel>,
    ) {
        note(&self.images, &self.key, id, result, after);
    }
}

impl Image for NotingImages {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn endpoint(&self) -> CloudFuture<'_, String> {
        self.inner.endpoint()
    }

    fn project_id(&self) -> CloudFuture<'_, Option<String>> {
        self.inner.project_id()
    }

    fn list_images<'a>(&'a self, query: &'a ImageQuery) -> CloudFuture<'a, Vec<ImageModel>> {
        self.inner.list_images(query)
    }

    fn show_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ImageModel> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.show_image(id).await;
            if let Some(scope) = self.images.find(&self.key) {
                match &result {
                    Ok(image) => scope.observed(id, Some(image.clone()), started),
                    Err(CloudError::NotFound { .. }) => scope.observed(id, None, started),
                    Err(_) => {}
                }
            }
            result
        })
    }

    fn update_image<'a>(&'a self, id: &'a str, ops: &'a [PatchOp]) -> CloudFuture<'a, ImageModel> {
        Box::pin(async move {
            let result = self.inner.update_image(id, ops).await;
            self.written(id, &result, |image, _| Some(image.clone()));
            result
        })
    }

    fn delete_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let result = self.inner.delete_image(id).await;
            match (&result, self.images.find(&self.key)) {
                // Glance deletes at once.
                (Ok(()), Some(scope)) => scope.observed(id, None, Instant::now()),
                (failed, _) => self.written(id, failed, |_, current| current.cloned()),
            }
            result
        })
    }

    fn add_tag<'a>(&'a self, id: &'a str, tag: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let result = self.inner.add_tag(id, tag).await;
            self.written(id, &result, |_, current| {
                current.map(|i| image_tagged(i, tag, true))
            });
            result
        })
    }

    fn remove_tag<'a>(&'a self, id: &'a str, tag: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let result = self.inner.remove_tag(id, tag).await;
            self.written(id, &result, |_, current| {
                current.map(|i| image_tagged(i, tag, false))
            });
            result
        })
    }

    fn add_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, Member> {
        self.inner.add_member(image_id, member_id)
    }

    fn list_members<'a>(&'a self, image_id: &'a str) -> CloudFuture<'a, Vec<Member>> {
        self.inner.list_members(image_id)
    }

    fn show_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, Member> {
        self.inner.show_member(image_id, member_id)
    }

    fn update_member_status<'a>(
        &'a self,
        image_id: &'a str,
        member_id: &'a str,
        status: MemberStatus,
    ) -> CloudFuture<'a, Member> {
        self.inner.update_member_status(image_id, member_id, status)
    }

    fn delete_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, ()> {
        self.inner.delete_member(image_id, member_id)
    }
}
