//! Where an inventory reads its tenant: block storage (`GET /volumes/detail`, paged) and images
//! (`GET /v2/images`, paged: the tenant's own images, public ones and those shared with it and
//! accepted). Each also says what a write leads to, so that the index shows it until the next
//! round has looked.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::cloud::model::{
    Image as CloudImage, ImageQuery, Volume as CloudVolume, VolumeQuery, VolumeStatus,
};
use crate::cloud::{BlockStorage, CloudError, Image};
use crate::controller::image::decide::uid_tag;
use crate::controller::locate::found;
use crate::controller::states::{StatusClass, image_class, volume_class};
use crate::controller::volume::decide::UID_MARK;

use super::index::Item;

/// The page size an inventory asks for (Cinder's and Glance's usual maximum).
pub const PAGE: u32 = 1000;

/// How often a list whose marker vanished between two pages starts again.
const MARKER_RETRIES: u32 = 3;

/// A cloud API an inventory reads.
pub trait Source: Send + Sync + 'static {
    type Item: Item;
    /// The service, as metrics name it (`block-storage`, `image`).
    const SERVICE: &'static str;

    /// Every resource of the tenant, every page.
    fn list(&self) -> impl Future<Output = Result<Vec<Self::Item>, CloudError>> + Send + '_;

    /// One resource; `None` when the cloud says 404.
    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Future<Output = Result<Option<Self::Item>, CloudError>> + Send + 'a;

    /// Whether a whole list always shows `item`, so that its absence means it is gone.
    fn always_listed(&self, item: &Self::Item) -> bool;
}

impl Item for CloudVolume {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn marks(&self) -> Vec<String> {
        self.metadata.get(UID_MARK).cloned().into_iter().collect()
    }
    fn transitional(&self) -> bool {
        volume_class(&self.status) == StatusClass::Transitional
    }
}

impl Item for CloudImage {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn marks(&self) -> Vec<String> {
        let prefix = uid_tag("");
        self.tags
            .iter()
            .filter(|t| t.starts_with(&prefix))
            .cloned()
            .collect()
    }
    fn transitional(&self) -> bool {
        image_class(&self.status) == StatusClass::Transitional
    }
}

/// Block storage, read for one tenant.
pub struct Volumes(pub Arc<dyn BlockStorage>);

impl Source for Volumes {
    type Item = CloudVolume;
    const SERVICE: &'static str = "block-storage";

    /// Every page; started again when a volume deleted between two pages took the marker with
    /// it (Cinder answers 404, `Marker ... could not be found`; see [`listed`]).
    async fn list(&self) -> Result<Vec<CloudVolume>, CloudError> {
        let query = VolumeQuery {
            limit: Some(PAGE),
            ..VolumeQuery::default()
        };
        listed(
            || self.0.list_volumes_detail(&query),
            |err| matches!(err, CloudError::NotFound { .. }),
        )
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<CloudVolume>, CloudError> {
        found(self.0.show_volume(id).await)
    }

    /// The detail list shows every volume of the tenant.
    fn always_listed(&self, _: &CloudVolume) -> bool {
        true
    }
}

/// The answer of `list`, a paged list of the whole tenant, started again (at most
/// [`MARKER_RETRIES`] times) when `vanished` says its marker went away between two pages: a
/// mass deletion makes that likely, and failing the round would make every object of the
/// tenant report the error and then its recovery.
async fn listed<T, F, Fut>(list: F, vanished: fn(&CloudError) -> bool) -> Result<Vec<T>, CloudError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<T>, CloudError>>,
{
    let mut again = MARKER_RETRIES;
    loop {
        match list().await {
            Err(err) if again > 0 && vanished(&err) => again -= 1,
            answer => return answer,
        }
    }
}

/// Glance's answer to a marker that is no image any more: 400, `Invalid marker. Image ...
/// could not be found.`
fn image_marker_vanished(err: &CloudError) -> bool {
    matches!(err, CloudError::BadRequest { message } if message.to_lowercase().contains("marker"))
}

/// What an accepted block-storage write leaves a volume in, as Cinder sets it before it
/// answers: the index shows this until the next round has looked.
pub fn volume_after(volume: &CloudVolume, status: VolumeStatus) -> CloudVolume {
    CloudVolume {
        status,
        ..volume.clone()
    }
}

/// Images, read for one tenant.
pub struct Images {
    pub client: Arc<dyn Image>,
    /// The tenant's project, learnt from its token at the first list.
    project: Mutex<Option<String>>,
}

impl Images {
    pub fn new(client: Arc<dyn Image>) -> Self {
        Images {
            client,
            project: Mutex::new(None),
        }
    }
}

impl Source for Images {
    type Item = CloudImage;
    const SERVICE: &'static str = "image";

    async fn list(&self) -> Result<Vec<CloudImage>, CloudError> {
        let project = self.client.project_id().await?;
        *self.project.lock().unwrap_or_else(|p| p.into_inner()) = project;
        let query = ImageQuery {
            limit: Some(PAGE),
            ..ImageQuery::default()
        };
        // An image deleted between two pages takes the marker with it, as with volumes.
        listed(|| self.client.list_images(&query), image_marker_vanished).await
    }

    async fn get(&self, id: &str) -> Result<Option<CloudImage>, CloudError> {
        found(self.client.show_image(id).await)
    }

    /// The list shows every image the tenant owns; an image shared with it may drop out of
    /// the list (a member status other than accepted) and still exist.
    fn always_listed(&self, image: &CloudImage) -> bool {
        let project = self.project.lock().unwrap_or_else(|p| p.into_inner());
        project.is_some() && image.owner == *project
    }
}

/// What an accepted image write leaves an image in (a tag added or removed).
pub fn image_tagged(image: &CloudImage, tag: &str, on: bool) -> CloudImage {
    let mut after = image.clone();
    after.tags.retain(|t| t != tag);
    if on {
        after.tags.push(tag.to_string());
    }
    after
}
