//! The service traits controllers program against. Each provider (NHN v2,
//! OpenStack v3, SCP) is one implementation, chosen at runtime from the
//! credentials by [`crate::cloud::Connector`]. They are object-safe (boxed
//! futures, no async-trait crate) so that controllers hold
//! `Arc<dyn BlockStorage>` and `Arc<dyn Image>`.

use std::future::Future;
use std::pin::Pin;

use super::error::CloudError;
use super::model::{
    CreateVolume, ImageQuery, Member, MemberStatus, MigrationPolicy, PatchOp, UpdateVolume,
    UploadToImage, UploadedImage, Volume, VolumeQuery, VolumeSummary,
};

/// The future every cloud call returns.
pub type CloudFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CloudError>> + Send + 'a>>;

/// Block storage: Cinder v2 (NHN) or v3 (OpenStack).
pub trait BlockStorage: Send + Sync {
    /// `nhn-v2` or `openstack-v3`.
    fn provider(&self) -> &'static str;

    /// The endpoint requests go to (authenticates if needed).
    fn endpoint(&self) -> CloudFuture<'_, String>;

    /// The project (tenant) the credentials act as, when known: where the volumes they
    /// create live.
    fn project_id(&self) -> CloudFuture<'_, Option<String>>;

    /// `GET /volumes`: ids and names, every page.
    fn list_volumes<'a>(&'a self, query: &'a VolumeQuery) -> CloudFuture<'a, Vec<VolumeSummary>>;

    /// `GET /volumes/detail`: full volumes, every page; the filters are also
    /// checked on what comes back.
    fn list_volumes_detail<'a>(&'a self, query: &'a VolumeQuery) -> CloudFuture<'a, Vec<Volume>>;

    /// `GET /volumes/{id}`.
    fn show_volume<'a>(&'a self, id: &'a str) -> CloudFuture<'a, Volume>;

    /// `POST /volumes`. The volume starts `creating`; poll until `available`.
    fn create_volume<'a>(&'a self, req: &'a CreateVolume) -> CloudFuture<'a, Volume>;

    /// `PUT /volumes/{id}` (name, description, metadata).
    fn update_volume<'a>(&'a self, id: &'a str, req: &'a UpdateVolume) -> CloudFuture<'a, Volume>;

    /// `DELETE /volumes/{id}`.
    fn delete_volume<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()>;

    /// `os-extend` to `new_size` GiB.
    fn extend_volume<'a>(&'a self, id: &'a str, new_size: u64) -> CloudFuture<'a, ()>;

    /// `os-volume_upload_image`: starts an image upload, returns its id.
    /// `protected` and `visibility` are sent when set (Cinder v3 with
    /// microversion 3.1).
    fn upload_to_image<'a>(
        &'a self,
        id: &'a str,
        req: &'a UploadToImage,
    ) -> CloudFuture<'a, UploadedImage>;

    /// `os-retype` to the volume type `new_type`; the volume goes
    /// `retyping`, then back to its status. `migration_policy` says whether
    /// Cinder may move the data to do it. Providers without retype answer
    /// `Unsupported`.
    fn retype_volume<'a>(
        &'a self,
        id: &'a str,
        new_type: &'a str,
        migration_policy: MigrationPolicy,
    ) -> CloudFuture<'a, ()> {
        let _ = (id, new_type, migration_policy);
        let provider = self.provider();
        Box::pin(async move {
            Err(CloudError::Unsupported {
                message: format!("{provider} block storage does not retype volumes"),
            })
        })
    }
}

/// Images and their sharing: Glance v2 (NHN, OpenStack) or SCP (read only).
pub trait Image: Send + Sync {
    /// `glance-v2` or `scp`.
    fn provider(&self) -> &'static str;

    /// The endpoint requests go to (authenticates if needed).
    fn endpoint(&self) -> CloudFuture<'_, String>;

    /// The project (tenant) the credentials act as, when known: the
    /// `owner` of the images they create.
    fn project_id(&self) -> CloudFuture<'_, Option<String>>;

    /// Every image matching `query` (follows `next`).
    fn list_images<'a>(
        &'a self,
        query: &'a ImageQuery,
    ) -> CloudFuture<'a, Vec<super::model::Image>>;

    fn show_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, super::model::Image>;

    /// JSON-patch (`add`/`replace`/`remove`), e.g. visibility or protected.
    fn update_image<'a>(
        &'a self,
        id: &'a str,
        ops: &'a [PatchOp],
    ) -> CloudFuture<'a, super::model::Image>;

    fn delete_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()>;

    fn add_tag<'a>(&'a self, id: &'a str, tag: &'a str) -> CloudFuture<'a, ()>;

    fn remove_tag<'a>(&'a self, id: &'a str, tag: &'a str) -> CloudFuture<'a, ()>;

    /// Shares the image with `member_id` (the image must be `shared`).
    fn add_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, Member>;

    fn list_members<'a>(&'a self, image_id: &'a str) -> CloudFuture<'a, Vec<Member>>;

    fn show_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, Member>;

    /// The member tenant's answer (accepted, rejected, pending).
    fn update_member_status<'a>(
        &'a self,
        image_id: &'a str,
        member_id: &'a str,
        status: MemberStatus,
    ) -> CloudFuture<'a, Member>;

    fn delete_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, ()>;
}
