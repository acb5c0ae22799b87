//! Block storage over Cinder: v2 in NHN Cloud's dialect (`visibility` and
//! `protected` on upload, `nhn_encryption` on create) and upstream v3 (the
//! upload sends `OpenStack-API-Version: volume 3.1`, the microversion that
//! added `visibility` and `protected`). Both retype with `os-retype` and
//! create from an image with `imageRef`.

use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::error::CloudError;
use super::model::{
    CreateVolume, MigrationPolicy, UpdateVolume, UploadToImage, UploadedImage, Volume, VolumeQuery,
    VolumeSummary,
};
use super::pagination;
use super::service::{BlockStorage, CloudFuture};
use super::session::{BlockStorageDialect, ServiceRequest, Session, seg};
use super::transport::{Body, Service};

/// The microversion that accepts `visibility` and `protected` on upload.
const UPLOAD_MICROVERSION: &str = "volume 3.1";

pub(crate) struct Cinder {
    session: Arc<Session>,
    dialect: BlockStorageDialect,
}

#[derive(Deserialize)]
struct VolumeAnswer {
    volume: Volume,
}

#[derive(Deserialize)]
struct UploadAnswer {
    #[serde(rename = "os-volume_upload_image")]
    upload: UploadedImage,
}

impl Cinder {
    pub(crate) fn new(session: Arc<Session>, dialect: BlockStorageDialect) -> Self {
        Cinder { session, dialect }
    }

    fn request(&self, method: Method, path: impl Into<String>) -> ServiceRequest {
        ServiceRequest::new(Service::BlockStorage, method, path)
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &VolumeQuery,
    ) -> Result<Vec<T>, CloudError> {
        pagination::collect(
            &self.session,
            Service::BlockStorage,
            path,
            list_query(query),
            "volumes",
            |page| pagination::cinder_next(page, "volumes_links"),
        )
        .await
    }

    async fn action(&self, id: &str, body: serde_json::Value) -> Result<(), CloudError> {
        self.session
            .send(
                self.request(Method::POST, format!("/volumes/{}/action", seg(id)))
                    .body(Body::json(&body)?),
            )
            .await?;
        Ok(())
    }
}

/// Cinder's list filters: plain `name`/`status`, and metadata as a JSON
/// object in one `metadata` parameter.
pub(crate) fn list_query(query: &VolumeQuery) -> Vec<(String, String)> {
    let mut q = Vec::new();
    if let Some(name) = &query.name {
        q.push(("name".to_string(), name.clone()));
    }
    if let Some(status) = &query.status {
        q.push(("status".to_string(), status.as_str().to_string()));
    }
    if !query.metadata.is_empty() {
        q.push((
            "metadata".to_string(),
            serde_json::to_string(&query.metadata).unwrap_or_default(),
        ));
    }
    if let Some(sort) = &query.sort {
        q.push(("sort".to_string(), sort.clone()));
    }
    if let Some(limit) = query.limit {
        q.push(("limit".to_string(), limit.to_string()));
    }
    q
}

impl BlockStorage for Cinder {
    fn provider(&self) -> &'static str {
        match self.dialect {
            BlockStorageDialect::NhnV2 => "nhn-v2",
            BlockStorageDialect::CinderV3 => "openstack-v3",
        }
    }

    fn endpoint(&self) -> CloudFuture<'_, String> {
        Box::pin(self.session.endpoint(Service::BlockStorage))
    }

    fn project_id(&self) -> CloudFuture<'_, Option<String>> {
        Box::pin(async move { Ok(self.session.token().await?.project_id.clone()) })
    }

    fn list_volumes<'a>(&'a self, query: &'a VolumeQuery) -> CloudFuture<'a, Vec<VolumeSummary>> {
        Box::pin(self.list("/volumes", query))
    }

    fn list_volumes_detail<'a>(&'a self, query: &'a VolumeQuery) -> CloudFuture<'a, Vec<Volume>> {
        Box::pin(async move {
            let volumes: Vec<Volume> = self.list("/volumes/detail", query).await?;
            Ok(volumes.into_iter().filter(|v| query.matches(v)).collect())
        })
    }

    fn show_volume<'a>(&'a self, id: &'a str) -> CloudFuture<'a, Volume> {
        Box::pin(async move {
            let resp = self
                .session
                .send(self.request(Method::GET, format!("/volumes/{}", seg(id))))
                .await?;
            Ok(resp.json::<VolumeAnswer>()?.volume)
        })
    }

    fn create_volume<'a>(&'a self, req: &'a CreateVolume) -> CloudFuture<'a, Volume> {
        Box::pin(async move {
            if self.dialect == BlockStorageDialect::CinderV3 && req.nhn_encryption.is_some() {
                return Err(CloudError::unsupported(
                    "nhn_encryption is an NHN Cloud extension; OpenStack block storage does not accept it",
                ));
            }
            let resp = self
                .session
                .send(
                    self.request(Method::POST, "/volumes")
                        .body(Body::json(&json!({ "volume": req }))?),
                )
                .await?;
            Ok(resp.json::<VolumeAnswer>()?.volume)
        })
    }

    fn update_volume<'a>(&'a self, id: &'a str, req: &'a UpdateVolume) -> CloudFuture<'a, Volume> {
        Box::pin(async move {
            let resp = self
                .session
                .send(
                    self.request(Method::PUT, format!("/volumes/{}", seg(id)))
                        .body(Body::json(&json!({ "volume": req }))?),
                )
                .await?;
            Ok(resp.json::<VolumeAnswer>()?.volume)
        })
    }

    fn delete_volume<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            self.session
                .send(self.request(Method::DELETE, format!("/volumes/{}", seg(id))))
                .await?;
            Ok(())
        })
    }

    fn extend_volume<'a>(&'a self, id: &'a str, new_size: u64) -> CloudFuture<'a, ()> {
        Box::pin(self.action(id, json!({ "os-extend": { "new_size": new_size } })))
    }

    fn upload_to_image<'a>(
        &'a self,
        id: &'a str,
        req: &'a UploadToImage,
    ) -> CloudFuture<'a, UploadedImage> {
        Box::pin(async move {
            let mut request = self
                .request(Method::POST, format!("/volumes/{}/action", seg(id)))
                .body(Body::json(&json!({ "os-volume_upload_image": req }))?);
            if self.dialect == BlockStorageDialect::CinderV3 {
                request = request.header("openstack-api-version", UPLOAD_MICROVERSION);
            }
            let resp = self.session.send(request).await?;
            Ok(resp.json::<UploadAnswer>()?.upload)
        })
    }

    fn retype_volume<'a>(
        &'a self,
        id: &'a str,
        new_type: &'a str,
        migration_policy: MigrationPolicy,
    ) -> CloudFuture<'a, ()> {
        Box::pin(self.action(id, retype_body(new_type, migration_policy)))
    }
}

/// `os-retype`'s body, the same for v2 and v3.
fn retype_body(new_type: &str, migration_policy: MigrationPolicy) -> serde_json::Value {
    json!({ "os-retype": {
        "new_type": new_type,
        "migration_policy": migration_policy.as_str(),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::model::VolumeStatus;

    #[test]
    fn list_query_encodes_metadata_as_json() {
        let mut q = VolumeQuery {
            name: Some("data".into()),
            status: Some(VolumeStatus::Available),
            limit: Some(2),
            ..Default::default()
        };
        q.metadata.insert("cloudvol.dev/uid".into(), "u-1".into());
        assert_eq!(
            list_query(&q),
            vec![
                ("name".to_string(), "data".to_string()),
                ("status".into(), "available".into()),
                ("metadata".into(), r#"{"cloudvol.dev/uid":"u-1"}"#.into()),
                ("limit".into(), "2".into()),
            ]
        );
    }

    #[test]
    fn retype_body_names_the_type_and_the_policy() {
        assert_eq!(
            retype_body("SSD", MigrationPolicy::OnDemand),
            json!({"os-retype": {"new_type": "SSD", "migration_policy": "on-demand"}})
        );
        assert_eq!(
            retype_body("General HDD", MigrationPolicy::Never)["os-retype"]["migration_policy"],
            "never"
        );
    }

    #[test]
    fn upload_answer_parses_the_seed_example() {
        let a: UploadAnswer = serde_json::from_str(
            r#"{"os-volume_upload_image": {"status": "uploading", "image_id": "f43d5555-1ac9-4c12-9485-8a72cbc5ba5a", "image_name": "testupdateimage", "volume_type": null, "container_format": "bare", "size": 1, "disk_format": "raw", "id": "f2f02802-00ff-4690-9eb2-3f9fa43d2244", "display_description": null, "updated_at": "2014-05-27T12:26:11.000000"}}"#,
        )
        .unwrap();
        assert_eq!(a.upload.image_id, "f43d5555-1ac9-4c12-9485-8a72cbc5ba5a");
        assert_eq!(a.upload.status, VolumeStatus::Uploading);
    }
}
