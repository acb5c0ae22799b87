//! Following `next` links until the last page.
//!
//! A next link is followed by its query (marker, limit, filters) against our
//! own endpoint and path, not by its host: clouds behind proxies often write
//! links with an internal host or without the endpoint's path prefix.

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::CloudError;
use super::session::{ServiceRequest, Session};
use super::transport::Service;

/// Guard against a cloud that never stops paginating.
pub(crate) const MAX_PAGES: usize = 1000;

/// Cinder: the `href` of the `rel: next` entry of `<links_key>`.
pub(crate) fn cinder_next(page: &Value, links_key: &str) -> Option<String> {
    page.get(links_key)?
        .as_array()?
        .iter()
        .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))?
        .get("href")?
        .as_str()
        .map(str::to_string)
}

/// Glance: the top-level `next`.
pub(crate) fn glance_next(page: &Value) -> Option<String> {
    page.get("next")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The query of a link, absolute (`https://h/v2/t/volumes?marker=x`) or
/// relative (`/v2/images?marker=x`).
pub(crate) fn link_query(link: &str) -> Option<Vec<(String, String)>> {
    let base = Url::parse("http://link.invalid/").ok()?;
    let url = base.join(link).ok()?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (!pairs.is_empty()).then_some(pairs)
}

/// Fetches every page of `path` and returns the items under `items_key`.
pub(crate) async fn collect<T: DeserializeOwned>(
    session: &Session,
    service: Service,
    path: &str,
    first_query: Vec<(String, String)>,
    items_key: &str,
    next: impl Fn(&Value) -> Option<String>,
) -> Result<Vec<T>, CloudError> {
    let mut items = Vec::new();
    let mut query = first_query;
    for _ in 0..MAX_PAGES {
        let resp = session
            .send(ServiceRequest::new(service, Method::GET, path).query(query.clone()))
            .await?;
        let page: Value = resp.json()?;
        let Some(list) = page.get(items_key) else {
            return Err(CloudError::decode(format!(
                "the list answer has no `{items_key}`"
            )));
        };
        let list: Vec<T> = serde_json::from_value(list.clone())
            .map_err(|e| CloudError::decode(format!("cannot read `{items_key}`: {e}")))?;
        let was_empty = list.is_empty();
        items.extend(list);
        let Some(next_query) = next(&page).and_then(|link| link_query(&link)) else {
            return Ok(items);
        };
        // A next link that points where we are, or an empty page with a
        // link, would loop forever.
        if next_query == query || was_empty {
            return Ok(items);
        }
        query = next_query;
    }
    Err(CloudError::decode(format!(
        "{path}: the list did not end after {MAX_PAGES} pages"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cinder_links_give_the_next_page_query() {
        let page = json!({
            "volumes": [],
            "volumes_links": [
                {"rel": "self", "href": "https://x/v2/t/volumes"},
                {"rel": "next", "href": "https://internal:8776/v2/t/volumes/detail?limit=2&marker=abc"}
            ]
        });
        let link = cinder_next(&page, "volumes_links").unwrap();
        assert_eq!(
            link_query(&link).unwrap(),
            vec![
                ("limit".to_string(), "2".to_string()),
                ("marker".into(), "abc".into())
            ]
        );
        assert_eq!(cinder_next(&json!({"volumes": []}), "volumes_links"), None);
        assert_eq!(
            cinder_next(
                &json!({"volumes_links": [{"rel": "self", "href": "x"}]}),
                "volumes_links"
            ),
            None
        );
    }

    #[test]
    fn glance_next_is_relative() {
        let page = json!({"images": [], "next": "/v2/images?marker=057f&name=a%20b"});
        let link = glance_next(&page).unwrap();
        assert_eq!(
            link_query(&link).unwrap(),
            vec![
                ("marker".to_string(), "057f".to_string()),
                ("name".into(), "a b".into())
            ]
        );
        assert_eq!(glance_next(&json!({"images": []})), None);
        assert_eq!(glance_next(&json!({"next": null})), None);
        assert_eq!(link_query("/v2/images"), None);
    }
}
