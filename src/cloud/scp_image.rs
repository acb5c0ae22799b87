//! Images on Samsung Cloud Platform (virtualserver API 1.0): show and list,
//! with signed requests. SCP's image sharing is not part of that API, so the
//! other operations answer `Unsupported`.

use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;

use super::error::CloudError;
use super::model::{Image as ImageModel, ImageQuery, Member, MemberStatus, PatchOp};
use super::pagination::{self, Pages};
use super::service::{CloudFuture, Image};
use super::session::{ServiceRequest, Session, seg};
use super::transport::Service;

pub(crate) struct ScpImage {
    session: Arc<Session>,
}

impl ScpImage {
    pub(crate) fn new(session: Arc<Session>) -> Self {
        ScpImage { session }
    }

    fn unsupported<'a, T: Send + 'a>(&self, what: &str) -> CloudFuture<'a, T> {
        let message = format!(
            "{what} is not offered by the SCP image API (cloud `{}`)",
            self.session.credentials().cloud_name
        );
        Box::pin(async move { Err(CloudError::unsupported(message)) })
    }
}

/// The items of an SCP list answer: `{"images": [...]}`, `{"contents":
/// [...]}` or a bare array.
fn page_items(page: &Value) -> Option<&Vec<Value>> {
    page.as_array()
        .or_else(|| page.get("images").and_then(Value::as_array))
        .or_else(|| page.get("contents").and_then(Value::as_array))
}

impl Image for ScpImage {
    fn provider(&self) -> &'static str {
        "scp"
    }

    fn endpoint(&self) -> CloudFuture<'_, String> {
        Box::pin(self.session.endpoint(Service::Image))
    }

    fn project_id(&self) -> CloudFuture<'_, Option<String>> {
        Box::pin(async { Ok(None) })
    }

    fn list_images<'a>(&'a self, query: &'a ImageQuery) -> CloudFuture<'a, Vec<ImageModel>> {
        Box::pin(async move {
            let mut images = Vec::new();
            let mut page_query = Vec::new();
            let mut pages = Pages::new("/v1/images", &page_query);
            loop {
                let resp = self
                    .session
                    .send(
                        ServiceRequest::new(Service::Image, Method::GET, "/v1/images")
                            .query(page_query.clone()),
                    )
                    .await?;
                let page: Value = resp.json()?;
                let items = page_items(&page).ok_or_else(|| {
                    CloudError::decode("the SCP image list answer has no `images` list")
                })?;
                for item in items {
                    let image: ImageModel = serde_json::from_value(item.clone())
                        .map_err(|e| CloudError::decode(format!("cannot read an image: {e}")))?;
                    let image = image.tidy();
                    if query.matches(&image) {
                        images.push(image);
                    }
                }
                match pages.next(pagination::glance_next(&page), items.is_empty())? {
                    Some(next) => page_query = next,
                    None => return Ok(images),
                }
            }
        })
    }

    fn show_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ImageModel> {
        Box::pin(async move {
            let resp = self
                .session
                .send(ServiceRequest::new(
                    Service::Image,
                    Method::GET,
                    format!("/v1/images/{}", seg(id)),
                ))
                .await?;
            Ok(resp.json::<ImageModel>()?.tidy())
        })
    }

    fn update_image<'a>(&'a self, _: &'a str, _: &'a [PatchOp]) -> CloudFuture<'a, ImageModel> {
        self.unsupported("updating an image")
    }

    fn delete_image<'a>(&'a self, _: &'a str) -> CloudFuture<'a, ()> {
        self.unsupported("deleting an image")
    }

    fn add_tag<'a>(&'a self, _: &'a str, _: &'a str) -> CloudFuture<'a, ()> {
        self.unsupported("tagging an image")
    }

    fn remove_tag<'a>(&'a self, _: &'a str, _: &'a str) -> CloudFuture<'a, ()> {
        self.unsupported("untagging an image")
    }

    fn add_member<'a>(&'a self, _: &'a str, _: &'a str) -> CloudFuture<'a, Member> {
        self.unsupported("image sharing")
    }

    fn list_members<'a>(&'a self, _: &'a str) -> CloudFuture<'a, Vec<Member>> {
        self.unsupported("image sharing")
    }

    fn show_member<'a>(&'a self, _: &'a str, _: &'a str) -> CloudFuture<'a, Member> {
        self.unsupported("image sharing")
    }

    fn update_member_status<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: MemberStatus,
    ) -> CloudFuture<'a, Member> {
        self.unsupported("image sharing")
    }

    fn delete_member<'a>(&'a self, _: &'a str, _: &'a str) -> CloudFuture<'a, ()> {
        self.unsupported("image sharing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_answers_of_several_shapes_are_read() {
        assert_eq!(page_items(&json!([{"id": "a"}])).unwrap().len(), 1);
        assert_eq!(
            page_items(&json!({"images": [{"id": "a"}]})).unwrap().len(),
            1
        );
        assert_eq!(
            page_items(&json!({"contents": [], "totalCount": 0}))
                .unwrap()
                .len(),
            0
        );
        assert!(page_items(&json!({"other": 1})).is_none());
    }
}
