//! Images over Glance v2, as NHN Cloud and OpenStack serve it.

use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::error::CloudError;
use super::model::{Image as ImageModel, ImageQuery, Member, MemberStatus, PatchOp};
use super::pagination;
use super::service::{CloudFuture, Image};
use super::session::{ServiceRequest, Session, seg};
use super::transport::{Body, Service};

const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";

pub(crate) struct Glance {
    session: Arc<Session>,
}

#[derive(Deserialize)]
struct Members {
    #[serde(default)]
    members: Vec<Member>,
}

impl Glance {
    pub(crate) fn new(session: Arc<Session>) -> Self {
        Glance { session }
    }

    fn request(&self, method: Method, path: impl Into<String>) -> ServiceRequest {
        ServiceRequest::new(Service::Image, method, path)
    }

    async fn image_answer(&self, req: ServiceRequest) -> Result<ImageModel, CloudError> {
        let resp = self.session.send(req).await?;
        Ok(resp.json::<ImageModel>()?.tidy())
    }

    async fn member_answer(&self, req: ServiceRequest) -> Result<Member, CloudError> {
        self.session.send(req).await?.json()
    }

    async fn no_answer(&self, req: ServiceRequest) -> Result<(), CloudError> {
        self.session.send(req).await?;
        Ok(())
    }
}

fn image_path(id: &str) -> String {
    format!("/v2/images/{}", seg(id))
}

fn member_path(image_id: &str, member_id: &str) -> String {
    format!("/v2/images/{}/members/{}", seg(image_id), seg(member_id))
}

impl Image for Glance {
    fn provider(&self) -> &'static str {
        "glance-v2"
    }

    fn endpoint(&self) -> CloudFuture<'_, String> {
        Box::pin(self.session.endpoint(Service::Image))
    }

    fn project_id(&self) -> CloudFuture<'_, Option<String>> {
        Box::pin(async move { Ok(self.session.token().await?.project_id.clone()) })
    }

    fn list_images<'a>(&'a self, query: &'a ImageQuery) -> CloudFuture<'a, Vec<ImageModel>> {
        Box::pin(async move {
            let images: Vec<ImageModel> = pagination::collect(
                &self.session,
                Service::Image,
                "/v2/images",
                query.to_query(),
                "images",
                pagination::glance_next,
            )
            .await?;
            Ok(images
                .into_iter()
                .map(ImageModel::tidy)
                .filter(|i| query.matches(i))
                .collect())
        })
    }

    fn show_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ImageModel> {
        Box::pin(self.image_answer(self.request(Method::GET, image_path(id))))
    }

    fn update_image<'a>(&'a self, id: &'a str, ops: &'a [PatchOp]) -> CloudFuture<'a, ImageModel> {
        Box::pin(async move {
            let req = self
                .request(Method::PATCH, image_path(id))
                .body(Body::json_as(JSON_PATCH, ops)?);
            self.image_answer(req).await
        })
    }

    fn delete_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(self.no_answer(self.request(Method::DELETE, image_path(id))))
    }

    fn add_tag<'a>(&'a self, id: &'a str, tag: &'a str) -> CloudFuture<'a, ()> {
        let path = format!("{}/tags/{}", image_path(id), seg(tag));
        Box::pin(self.no_answer(self.request(Method::PUT, path)))
    }

    fn remove_tag<'a>(&'a self, id: &'a str, tag: &'a str) -> CloudFuture<'a, ()> {
        let path = format!("{}/tags/{}", image_path(id), seg(tag));
        Box::pin(self.no_answer(self.request(Method::DELETE, path)))
    }

    fn add_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, Member> {
        Box::pin(async move {
            let req = self
                .request(Method::POST, format!("{}/members", image_path(image_id)))
                .body(Body::json(&json!({ "member": member_id }))?);
            self.member_answer(req).await
        })
    }

    fn list_members<'a>(&'a self, image_id: &'a str) -> CloudFuture<'a, Vec<Member>> {
        Box::pin(async move {
            let resp = self
                .session
                .send(self.request(Method::GET, format!("{}/members", image_path(image_id))))
                .await?;
            Ok(resp.json::<Members>()?.members)
        })
    }

    fn show_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, Member> {
        Box::pin(self.member_answer(self.request(Method::GET, member_path(image_id, member_id))))
    }

    fn update_member_status<'a>(
        &'a self,
        image_id: &'a str,
        member_id: &'a str,
        status: MemberStatus,
    ) -> CloudFuture<'a, Member> {
        Box::pin(async move {
            let req = self
                .request(Method::PUT, member_path(image_id, member_id))
                .body(Body::json(&json!({ "status": status.as_str() }))?);
            self.member_answer(req).await
        })
    }

    fn delete_member<'a>(&'a self, image_id: &'a str, member_id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(self.no_answer(self.request(Method::DELETE, member_path(image_id, member_id))))
    }
}
