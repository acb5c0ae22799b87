//! Following `next` links until the last page.
//!
//! A next link is followed by its query (marker, limit, filters) against our
//! own endpoint and path, never by its host or path: clouds behind proxies
//! often write links with an internal host or without the endpoint's path
//! prefix, and a link to another host must not take our token there.
//!
//! A cloud's links are not trusted to end: [`Pages`] stops after
//! [`MAX_PAGES`] pages, and a link that repeats a marker or a query already
//! fetched is a pagination loop. Both are errors
//! ([`CloudError::Decode`], reason `CloudProtocolError`) rather than a
//! silently shortened list, since callers look for their marks in lists and
//! a missing item would make them create a duplicate.

use std::collections::{HashMap, HashSet};

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

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

/// One list's walk through its pages: counts them and remembers every
/// query and marker fetched, to refuse a loop.
pub(crate) struct Pages {
    what: String,
    fetched: usize,
    queries: HashSet<Vec<(String, String)>>,
    markers: HashSet<String>,
}

impl Pages {
    /// `what` names the list in errors (e.g. `/volumes/detail`).
    pub(crate) fn new(what: impl Into<String>, first_query: &[(String, String)]) -> Self {
        let mut pages = Pages {
            what: what.into(),
            fetched: 0,
            queries: HashSet::new(),
            markers: HashSet::new(),
        };
        pages.remember(first_query);
        pages
    }

    fn remember(&mut self, query: &[(String, String)]) {
        self.queries.insert(query.to_vec());
        if let Some(marker) = marker(query) {
            self.markers.insert(marker.to_string());
        }
    }

    /// After a page: the query of the next one, `None` at the end (no link,
    /// or a link after an empty page), or an error for a link that cannot
    /// be followed, a loop, or too many pages.
    pub(crate) fn next(
        &mut self,
        link: Option<String>,
        page_was_empty: bool,
    ) -> Result<Option<Vec<(String, String)>>, CloudError> {
        self.fetched = self.fetched.saturating_add(1);
        let Some(link) = link else {
            return Ok(None);
        };
        if page_was_empty {
            return Ok(None);
        }
        let Some(query) = link_query(&link) else {
            return Err(CloudError::decode(format!(
                "{}: the cloud's next link `{}` has no query (marker) to follow",
                self.what,
                shorten(&link)
            )));
        };
        if let Some(marker) = marker(&query)
            && self.markers.contains(marker)
        {
            return Err(CloudError::decode(format!(
                "{}: the cloud's next link repeats the marker `{}` after {} pages (a pagination loop)",
                self.what,
                shorten(marker),
                self.fetched
            )));
        }
        if self.queries.contains(&query) {
            return Err(CloudError::decode(format!(
                "{}: the cloud's next link `{}` asks again for a page already read, after {} pages (a pagination loop)",
                self.what,
                shorten(&link),
                self.fetched
            )));
        }
        if self.fetched >= MAX_PAGES {
            return Err(CloudError::decode(format!(
                "{}: the list did not end after {MAX_PAGES} pages",
                self.what
            )));
        }
        self.remember(&query);
        Ok(Some(query))
    }
}

fn marker(query: &[(String, String)]) -> Option<&str> {
    query
        .iter()
        .find(|(k, _)| k == "marker")
        .map(|(_, v)| v.as_str())
}

/// A cloud's text quoted in an error, cut to a readable length.
fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX).collect();
    out.push('…');
    out
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
    let mut pages = Pages::new(path, &first_query);
    let mut query = first_query;
    loop {
        let resp = session
            .send(ServiceRequest::new(service, Method::GET, path).query(query.clone()))
            .await?;
        // The items are read straight into `T`; only the rest of the page (links, counts) is
        // kept as a Value: a page of 1000 volumes never exists as a Value tree.
        let raw: HashMap<String, &RawValue> = serde_json::from_slice(&resp.body).map_err(|e| {
            CloudError::decode(format!(
                "cannot read the answer (HTTP {}): {e}",
                resp.status.as_u16()
            ))
        })?;
        let Some(list) = raw.get(items_key) else {
            return Err(CloudError::decode(format!(
                "the list answer has no `{items_key}`"
            )));
        };
        let list: Vec<T> = serde_json::from_str(list.get())
            .map_err(|e| CloudError::decode(format!("cannot read `{items_key}`: {e}")))?;
        let mut rest = serde_json::Map::new();
        for (key, value) in raw.iter().filter(|(key, _)| *key != items_key) {
            let value: Value = serde_json::from_str(value.get())
                .map_err(|e| CloudError::decode(format!("cannot read `{key}`: {e}")))?;
            rest.insert(key.clone(), value);
        }
        let page = Value::Object(rest);
        let was_empty = list.is_empty();
        items.extend(list);
        match pages.next(next(&page), was_empty)? {
            Some(next_query) => query = next_query,
            None => return Ok(items),
        }
    }
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

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_follow_new_markers_and_end_without_a_link() {
        let mut pages = Pages::new("/volumes", &q(&[("limit", "2")]));
        assert_eq!(
            pages.next(Some("/v2/t/volumes?limit=2&marker=a".into()), false),
            Ok(Some(q(&[("limit", "2"), ("marker", "a")])))
        );
        assert_eq!(
            pages.next(
                Some("https://other/v2/t/volumes?limit=2&marker=b".into()),
                false
            ),
            Ok(Some(q(&[("limit", "2"), ("marker", "b")])))
        );
        assert_eq!(pages.next(None, false), Ok(None));
        // A link after an empty page ends the list too.
        let mut pages = Pages::new("/volumes", &[]);
        assert_eq!(pages.next(Some("/v?marker=z".into()), true), Ok(None));
    }

    #[test]
    fn a_repeated_marker_is_a_loop_even_with_other_parameters() {
        let mut pages = Pages::new("/volumes/detail", &[]);
        pages
            .next(Some("/x?marker=a&limit=2".into()), false)
            .unwrap();
        pages
            .next(Some("/x?marker=b&limit=2".into()), false)
            .unwrap();
        let err = pages
            .next(Some("https://elsewhere/x?limit=3&marker=a".into()), false)
            .unwrap_err();
        assert_eq!(err.reason(), "CloudProtocolError");
        assert!(!err.is_transient());
        assert!(
            err.message().contains("/volumes/detail")
                && err.message().contains("repeats the marker `a`")
                && err.message().contains("loop"),
            "{err}"
        );
        // A link back to the first page's own marker loops too.
        let mut pages = Pages::new("/v2/images", &q(&[("marker", "m")]));
        assert!(
            pages
                .next(Some("/v2/images?marker=m".into()), false)
                .is_err()
        );
    }

    #[test]
    fn a_link_to_a_page_already_read_is_a_loop() {
        let mut pages = Pages::new("/v1/images", &q(&[("page", "0")]));
        pages.next(Some("/v1/images?page=1".into()), false).unwrap();
        let err = pages
            .next(Some("/v1/images?page=0".into()), false)
            .unwrap_err();
        assert!(err.message().contains("already read"), "{err}");
        // Pointing where we are is the shortest loop.
        let mut pages = Pages::new("/v1/images", &q(&[("page", "3")]));
        assert!(pages.next(Some("?page=3".into()), false).is_err());
    }

    #[test]
    fn a_link_without_a_query_cannot_be_followed() {
        let mut pages = Pages::new("/v2/images", &[]);
        let err = pages.next(Some("/v2/images".into()), false).unwrap_err();
        assert!(err.message().contains("no query"), "{err}");
        let long = format!("/v2/{}", "x".repeat(5000));
        let err = pages.next(Some(long), false).unwrap_err();
        assert!(err.message().chars().count() < 400, "{err}");
    }

    #[test]
    fn an_endless_list_stops_after_max_pages() {
        let mut pages = Pages::new("/volumes", &[]);
        let mut result = Ok(None);
        for i in 0..MAX_PAGES + 5 {
            result = pages.next(Some(format!("/v?marker=m{i}")), false);
            if result.is_err() {
                assert_eq!(i, MAX_PAGES - 1, "stops at the limit");
                break;
            }
        }
        let err = result.unwrap_err();
        assert!(err.message().contains("did not end"), "{err}");
    }
}
