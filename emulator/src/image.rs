//! Image v2 in NHN's dialect (NHN's Image API, docs/sources.md): list, show, create, upload and
//! download, JSON-patch, delete, tags and members, with NHN's rule that a
//! protected image cannot be modified.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use chrono::Utc;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Value, json};

use crate::app::Shared;
use crate::http::{
    ApiError, ApiResult, Dialect, DisplayStr, GlanceTime, Query, base_url, glance_time, header_str,
    json_bytes, json_response, no_content, ok_json,
};
use crate::identity::{authenticate, service_unauthorized};
use crate::listing::page_after;
use crate::state::{Change, Image, Member, State as Cloud, Target};

const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 1000;
const MAX_TAGS: usize = 128;
const MAX_MEMBERS: usize = 128;
/// Largest image file the emulator keeps in memory.
const MAX_IMAGE_FILE: usize = 256 * 1024 * 1024;

const DISK_FORMATS: [&str; 11] = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
const CONTAINER_FORMATS: [&str; 8] = [
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
const READ_ONLY: [&str; 15] = [
    "id",
    "status",
    "owner",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
];
const RESERVED: [&str; 3] = ["location", "deleted", "deleted_at"];
const PATCH_CONTENT_TYPES: [&str; 2] = [
    "application/openstack-images-v2.1-json-patch",
    "application/openstack-images-v2.0-json-patch",
];

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/image", get(versions))
        .route("/image/", get(versions))
        .route("/image/versions", get(versions_ok))
        .route("/image/v2/images", get(list_images).post(create_image))
        .route(
            "/image/v2/images/{image_id}",
            get(show_image).patch(patch_image).delete(delete_image),
        )
        .route(
            "/image/v2/images/{image_id}/file",
            put(upload_file)
                .get(download_file)
                .layer(DefaultBodyLimit::max(MAX_IMAGE_FILE)),
        )
        .route(
            "/image/v2/images/{image_id}/tags/{tag}",
            put(add_tag).delete(delete_tag),
        )
        .route(
            "/image/v2/images/{image_id}/members",
            get(list_members).post(add_member),
        )
        .route(
            "/image/v2/images/{image_id}/members/{member_id}",
            get(show_member).put(update_member).delete(delete_member),
        )
}

// ---- errors ------------------------------------------------------------------

fn err(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(Dialect::Image, status, message)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    err(StatusCode::BAD_REQUEST, message)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    err(StatusCode::FORBIDDEN, message)
}

fn image_not_found(id: &str) -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        format!("No image found with ID {id}"),
    )
}

fn protected_refusal(id: &str) -> ApiError {
    forbidden(format!(
        "Image {id} is protected and cannot be modified; unprotect it first (a patch that only sets /protected to false)."
    ))
}

// ---- discovery ---------------------------------------------------------------

fn versions_body(base: &str) -> Value {
    let entry = |id: &str, status: &str| {
        json!({
            "id": id,
            "status": status,
            "links": [{"rel": "self", "href": format!("{base}/image/v2/")}],
        })
    };
    json!({"versions": [entry("v2.16", "CURRENT"), entry("v2.0", "SUPPORTED")]})
}

async fn versions(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    json_response(StatusCode::MULTIPLE_CHOICES, &versions_body(&base))
}

async fn versions_ok(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    ok_json(&versions_body(&base))
}

// ---- visibility rules --------------------------------------------------------

fn tenant_of(app: &Shared, headers: &HeaderMap) -> ApiResult<String> {
    match authenticate(app, headers) {
        Some(t) => Ok(t.tenant_id),
        None => Err(service_unauthorized(
            Dialect::Image,
            &base_url(headers, &app.fallback_base),
        )),
    }
}

/// Whether `tenant` may see (show) `img`: its own, public and community
/// images, and shared images it is a member of, whatever the member status.
pub fn can_show(img: &Image, tenant: &str) -> bool {
    img.owner == tenant
        || img.visibility == "public"
        || img.visibility == "community"
        || (img.visibility == "shared" && img.members.contains_key(tenant))
}

fn visible<'a>(s: &'a Cloud, tenant: &str, id: &str) -> ApiResult<&'a Image> {
    s.images
        .get(id)
        .filter(|i| can_show(i, tenant))
        .ok_or_else(|| image_not_found(id))
}

/// The image for a change by its owner: 404 if not visible, 403 if visible
/// but someone else's.
fn owned_mut<'a>(s: &'a mut Cloud, tenant: &str, id: &str) -> ApiResult<&'a mut Image> {
    match s.images.get_mut(id) {
        Some(i) if i.owner == tenant => Ok(i),
        Some(i) if can_show(i, tenant) => Err(forbidden(format!(
            "You are not permitted to modify image {id}."
        ))),
        _ => Err(image_not_found(id)),
    }
}

// ---- views -------------------------------------------------------------------

/// An image as Glance shows it: core attributes plus the custom properties
/// at the top level. Serialized straight from the state so that listing
/// stays cheap.
pub struct ImageView<'a>(pub &'a Image);

/// Attribute names the view writes itself; a custom property never shadows
/// them.
const VIEW_KEYS: [&str; 22] = [
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "owner",
    "container_format",
    "disk_format",
    "min_disk",
    "min_ram",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "tags",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
];

impl Serialize for ImageView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let img = self.0;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("id", &img.id)?;
        m.serialize_entry("name", &img.name)?;
        m.serialize_entry("status", &img.status)?;
        m.serialize_entry("visibility", &img.visibility)?;
        m.serialize_entry("protected", &img.protected)?;
        m.serialize_entry("os_hidden", &false)?;
        m.serialize_entry("owner", &img.owner)?;
        m.serialize_entry("container_format", &img.container_format)?;
        m.serialize_entry("disk_format", &img.disk_format)?;
        m.serialize_entry("min_disk", &img.min_disk)?;
        m.serialize_entry("min_ram", &img.min_ram)?;
        m.serialize_entry("size", &img.size)?;
        m.serialize_entry("virtual_size", &img.virtual_size)?;
        m.serialize_entry("checksum", &img.checksum)?;
        m.serialize_entry(
            "os_hash_algo",
            &img.os_hash_value.as_ref().map(|_| "sha512"),
        )?;
        m.serialize_entry("os_hash_value", &img.os_hash_value)?;
        m.serialize_entry("tags", &img.tags)?;
        m.serialize_entry("created_at", &GlanceTime(img.created_at))?;
        m.serialize_entry("updated_at", &GlanceTime(img.updated_at))?;
        m.serialize_entry("self", &DisplayStr(format_args!("/v2/images/{}", img.id)))?;
        m.serialize_entry(
            "file",
            &DisplayStr(format_args!("/v2/images/{}/file", img.id)),
        )?;
        m.serialize_entry("schema", "/v2/schemas/image")?;
        for (k, v) in custom_properties(img) {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The custom properties Glance shows at the top level of an image (those
/// whose names no core attribute has).
pub fn custom_properties(img: &Image) -> impl Iterator<Item = (&String, &String)> {
    img.properties
        .iter()
        .filter(|(k, _)| !VIEW_KEYS.contains(&k.as_str()))
}

pub fn image_view(img: &Image) -> Value {
    serde_json::to_value(ImageView(img)).unwrap_or(Value::Null)
}

fn member_view(image_id: &str, m: &Member) -> Value {
    json!({
        "created_at": glance_time(m.created_at),
        "updated_at": glance_time(m.updated_at),
        "image_id": image_id,
        "member_id": m.member_id,
        "schema": "/v2/schemas/member",
        "status": m.status,
    })
}

// ---- list --------------------------------------------------------------------

const LIST_PARAMS: [&str; 14] = [
    "limit",
    "marker",
    "name",
    "visibility",
    "owner",
    "status",
    "member_status",
    "tag",
    "sort_key",
    "sort_dir",
    "sort",
    "size_min",
    "size_max",
    "nhncloud_product",
];
const SORT_KEYS: [&str; 13] = [
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "virtual_size",
    "id",
    "created_at",
    "updated_at",
    "min_disk",
    "min_ram",
    "visibility",
    "owner",
];

fn sort_value<'a>(img: &'a Image, key: &str) -> (Option<&'a str>, u64) {
    match key {
        "name" => (img.name.as_deref(), 0),
        "status" => (Some(&img.status), 0),
        "container_format" => (img.container_format.as_deref(), 0),
        "disk_format" => (img.disk_format.as_deref(), 0),
        "size" => (None, img.size.unwrap_or(0)),
        "virtual_size" => (None, img.virtual_size.unwrap_or(0)),
        "id" => (Some(&img.id), 0),
        "updated_at" => (None, img.updated_at.timestamp_micros().max(0) as u64),
        "min_disk" => (None, img.min_disk),
        "min_ram" => (None, img.min_ram),
        "visibility" => (Some(&img.visibility), 0),
        "owner" => (Some(&img.owner), 0),
        _ => (None, img.seq),
    }
}

fn parse_u64(q: &Query, name: &str) -> ApiResult<Option<u64>> {
    q.get(name)
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad_request(format!("{name} param must be a non-negative integer")))
        })
        .transpose()
}

async fn list_images(
    State(app): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let q = Query::parse(raw.as_deref());
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if n < 0 => return Err(bad_request("limit param must be positive")),
            Ok(n) => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
            Err(_) => return Err(bad_request("limit param must be an integer")),
        },
    };
    let visibility = q.get("visibility");
    if let Some(v) = visibility
        && !["public", "private", "shared", "community", "all"].contains(&v)
    {
        return Err(bad_request(format!("Invalid visibility value: {v}")));
    }
    let member_status = q.get("member_status").unwrap_or("accepted");
    if !["pending", "accepted", "rejected", "all"].contains(&member_status) {
        return Err(bad_request(format!(
            "Invalid status value: {member_status}"
        )));
    }
    let mut sort: Vec<(String, bool)> = Vec::new();
    if let Some(s) = q.get("sort") {
        for item in s.split(',').filter(|x| !x.is_empty()) {
            let (k, d) = item.split_once(':').unwrap_or((item, "desc"));
            sort.push((k.trim().to_string(), d.trim() == "asc"));
            if !matches!(d.trim(), "asc" | "desc") {
                return Err(bad_request(format!("Invalid sort direction: {d}")));
            }
        }
    } else {
        let dir = q.get("sort_dir").unwrap_or("desc");
        if !matches!(dir, "asc" | "desc") {
            return Err(bad_request(format!("Invalid sort direction: {dir}")));
        }
        for k in q.all("sort_key") {
            sort.push((k.to_string(), dir == "asc"));
        }
        if sort.is_empty() {
            sort.push(("created_at".to_string(), dir == "asc"));
        }
    }
    if let Some((bad, _)) = sort.iter().find(|(k, _)| !SORT_KEYS.contains(&k.as_str())) {
        return Err(bad_request(format!(
            "Invalid sort key: {bad}. It must be one of the following: {}.",
            SORT_KEYS.join(", ")
        )));
    }
    let tie_asc = sort.first().map(|(_, a)| *a).unwrap_or(false);
    sort.push(("created_at".to_string(), tie_asc));
    sort.push(("id".to_string(), tie_asc));
    let size_min = parse_u64(&q, "size_min")?;
    let size_max = parse_u64(&q, "size_max")?;
    let tags: Vec<&str> = q.all("tag").collect();
    let props: Vec<(&str, &str)> =
        q.0.iter()
            .filter(|(k, _)| !LIST_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();

    let first_query = q.encode_without(&["marker"], &[]);
    let first = if first_query.is_empty() {
        "/v2/images".to_string()
    } else {
        format!("/v2/images?{first_query}")
    };
    let bytes = app.with(|s| -> ApiResult<Vec<u8>> {
        let listed = |img: &Image| -> bool {
            let own = img.owner == tenant;
            let by_visibility = match visibility {
                None => listed_by_default(img, &tenant, member_status),
                Some("all") => {
                    own || img.visibility == "public"
                        || img.visibility == "community"
                        || (img.visibility == "shared" && member_ok(img, &tenant, member_status))
                }
                Some("shared") => {
                    img.visibility == "shared"
                        && ((own && q.get("member_status").is_none())
                            || member_ok(img, &tenant, member_status))
                }
                Some("private") => own && img.visibility == "private",
                Some(v) => img.visibility == v,
            };
            by_visibility
                && q.get("name").is_none_or(|n| img.name.as_deref() == Some(n))
                && q.get("owner").is_none_or(|o| img.owner == o)
                && q.get("status").is_none_or(|st| img.status == st)
                && tags.iter().all(|t| img.tags.iter().any(|x| x == t))
                && size_min.is_none_or(|m| img.size.is_some_and(|sz| sz >= m))
                && size_max.is_none_or(|m| img.size.is_some_and(|sz| sz <= m))
                && props
                    .iter()
                    .all(|(k, v)| img.properties.get(*k).is_some_and(|x| x == v))
        };
        let order = |a: &Image, b: &Image| {
            sort.iter()
                .map(|(k, asc)| {
                    let o = sort_value(a, k).cmp(&sort_value(b, k));
                    if *asc { o } else { o.reverse() }
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        // The marker must be one of the listed images (filters included).
        let marker = match q.get("marker") {
            None => None,
            Some(m) => Some(
                s.images
                    .get(m)
                    .filter(|i| listed(i))
                    .ok_or_else(|| bad_request(format!("marker {m} not found")))?,
            ),
        };
        let candidates: Vec<&Image> = s.images.values().filter(|i| listed(i)).collect();
        let page = page_after(candidates, marker, 0, limit, order);
        // A full page has a next link, from its last image (Glance's rule).
        let next = (limit > 0 && page.len() == limit)
            .then(|| page.last())
            .flatten()
            .map(|last| {
                format!(
                    "/v2/images?{}",
                    q.encode_without(&["marker"], &[("marker", &last.id)])
                )
            });
        serde_json::to_vec(&ImageList {
            images: page.into_iter().map(ImageView).collect(),
            schema: "/v2/schemas/images",
            first: &first,
            next,
        })
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })?;
    Ok(json_bytes(StatusCode::OK, bytes))
}

#[derive(Serialize)]
struct ImageList<'a> {
    images: Vec<ImageView<'a>>,
    schema: &'static str,
    first: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Whether an image list without a `visibility` filter holds `img` for
/// `tenant`: its own, public ones, and shared ones whose membership has
/// `member_status` (`accepted` unless the request says otherwise).
pub fn listed_by_default(img: &Image, tenant: &str, member_status: &str) -> bool {
    img.owner == tenant
        || img.visibility == "public"
        || (img.visibility == "shared" && member_ok(img, tenant, member_status))
}

fn member_ok(img: &Image, tenant: &str, member_status: &str) -> bool {
    img.members
        .get(tenant)
        .is_some_and(|m| member_status == "all" || m.status == member_status)
}

// ---- show / create / delete --------------------------------------------------

async fn show_image(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let view = app.with(|s| visible(s, &tenant, &id).map(image_view))?;
    Ok(ok_json(&view))
}

fn parse_json(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|_| bad_request("Malformed JSON in request body."))
}

fn check_tag(tag: &str) -> ApiResult<()> {
    if tag.is_empty() || tag.chars().count() > 255 {
        return Err(bad_request(format!(
            "Invalid tag {tag:?}: a tag is 1 to 255 characters long."
        )));
    }
    if tag.starts_with('_') {
        return Err(bad_request(format!(
            "Invalid tag {tag:?}: tags starting with '_' are not allowed."
        )));
    }
    Ok(())
}

fn parse_tags(v: &Value) -> ApiResult<Vec<String>> {
    let arr = v.as_array().ok_or_else(|| {
        bad_request(format!(
            "Invalid value for tags: {v} is not of type 'array'"
        ))
    })?;
    let mut out: Vec<String> = Vec::new();
    for t in arr {
        let t = t
            .as_str()
            .ok_or_else(|| bad_request(format!("Invalid tag {t}: not a string")))?;
        check_tag(t)?;
        if !out.iter().any(|x| x == t) {
            out.push(t.to_string());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Maximum number of tags exceeded ({MAX_TAGS})."),
        ));
    }
    Ok(out)
}

fn parse_count_value(key: &str, v: &Value) -> ApiResult<u64> {
    v.as_u64().ok_or_else(|| {
        bad_request(format!(
            "Invalid value for {key}: {v} is not a non-negative integer"
        ))
    })
}

/// Sets one attribute (core or custom) on `img`, as create and patch do.
fn set_attribute(img: &mut Image, key: &str, value: &Value) -> ApiResult<()> {
    match key {
        "name" => {
            img.name = match value {
                Value::Null => None,
                Value::String(s) if s.chars().count() <= 255 => Some(s.clone()),
                _ => {
                    return Err(bad_request(format!(
                        "Invalid value for name: {value} (a string of at most 255 characters)"
                    )));
                }
            }
        }
        "visibility" => match value.as_str() {
            Some(v @ ("private" | "shared")) => img.visibility = v.to_string(),
            Some("public") => {
                return Err(forbidden(
                    "You are not authorized to complete publicize_image action.",
                ));
            }
            _ => {
                return Err(bad_request(format!(
                    "Invalid value for visibility: {value} (one of private, shared)"
                )));
            }
        },
        "protected" => {
            img.protected = value.as_bool().ok_or_else(|| {
                bad_request(format!(
                    "Invalid value for protected: {value} is not of type 'boolean'"
                ))
            })?
        }
        "os_hidden" => {
            value.as_bool().ok_or_else(|| {
                bad_request(format!(
                    "Invalid value for os_hidden: {value} is not of type 'boolean'"
                ))
            })?;
        }
        "tags" => img.tags = parse_tags(value)?,
        "min_disk" => img.min_disk = parse_count_value(key, value)?,
        "min_ram" => img.min_ram = parse_count_value(key, value)?,
        "container_format" | "disk_format" => {
            let allowed: &[&str] = if key == "disk_format" {
                &DISK_FORMATS
            } else {
                &CONTAINER_FORMATS
            };
            let v = match value {
                Value::Null => None,
                Value::String(s) if allowed.contains(&s.as_str()) => Some(s.clone()),
                _ => {
                    return Err(bad_request(format!(
                        "Invalid value for {key}: {value} (one of {})",
                        allowed.join(", ")
                    )));
                }
            };
            if img.status != "queued" {
                return Err(forbidden(format!(
                    "Attribute {key} can be only replaced for a queued image."
                )));
            }
            if key == "disk_format" {
                img.disk_format = v;
            } else {
                img.container_format = v;
            }
        }
        _ => {
            if key.chars().count() > 255 {
                return Err(bad_request(
                    "Property names are at most 255 characters long.",
                ));
            }
            let s = value.as_str().ok_or_else(|| {
                bad_request(format!(
                    "Invalid value for property {key}: {value} is not of type 'string'"
                ))
            })?;
            img.properties.insert(key.to_string(), s.to_string());
        }
    }
    Ok(())
}

fn is_core(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "visibility"
            | "protected"
            | "os_hidden"
            | "tags"
            | "min_disk"
            | "min_ram"
            | "container_format"
            | "disk_format"
    ) || READ_ONLY.contains(&key)
}

fn check_writable(key: &str) -> ApiResult<()> {
    if READ_ONLY.contains(&key) {
        return Err(forbidden(format!("Attribute '{key}' is read-only.")));
    }
    if RESERVED.contains(&key) {
        return Err(forbidden(format!("Attribute '{key}' is reserved.")));
    }
    Ok(())
}

async fn create_image(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let body = parse_json(&body)?;
    let obj = body
        .as_object()
        .ok_or_else(|| bad_request("The request body must be a JSON object."))?;
    let wanted_id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if uuid::Uuid::parse_str(s).is_ok() => Some(s.clone()),
        Some(v) => {
            return Err(bad_request(format!(
                "Invalid value for id: {v} is not a UUID"
            )));
        }
    };
    for key in obj.keys().filter(|k| k.as_str() != "id") {
        check_writable(key)?;
    }
    // NHN requires a name and an OS type (NHN's Image API, docs/sources.md).
    if !obj.get("name").is_some_and(Value::is_string) {
        return Err(bad_request("name is required (a string)."));
    }
    if !obj.get("os_type").is_some_and(Value::is_string) {
        return Err(bad_request("os_type is required (windows or linux)."));
    }
    let now = Utc::now();
    let mut img = Image {
        id: wanted_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        owner: tenant,
        name: None,
        status: "queued".to_string(),
        visibility: "private".to_string(),
        protected: false,
        container_format: None,
        disk_format: None,
        min_disk: 0,
        min_ram: 0,
        size: None,
        virtual_size: None,
        checksum: None,
        os_hash_value: None,
        tags: Vec::new(),
        properties: BTreeMap::new(),
        data: None,
        members: BTreeMap::new(),
        created_at: now,
        updated_at: now,
        seq: 0,
        generation: 0,
    };
    for (k, v) in obj.iter().filter(|(k, _)| k.as_str() != "id") {
        set_attribute(&mut img, k, v)?;
    }
    let view = app.with(|s| -> ApiResult<Value> {
        if s.images.contains_key(&img.id) {
            return Err(err(
                StatusCode::CONFLICT,
                format!("Image with identifier {} already exists!", img.id),
            ));
        }
        img.seq = s.next_seq();
        let view = image_view(&img);
        s.images.insert(img.id.clone(), img);
        Ok(view)
    })?;
    let mut resp = json_response(StatusCode::CREATED, &view);
    if let Some(loc) = view
        .get("self")
        .and_then(Value::as_str)
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn delete_image(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    app.with(|s| -> ApiResult<()> {
        let img = match s.images.get(&id) {
            Some(i) if i.owner == tenant => i,
            Some(i) if can_show(i, &tenant) => {
                return Err(forbidden(format!(
                    "You are not permitted to delete image {id}."
                )));
            }
            _ => return Err(image_not_found(&id)),
        };
        if img.visibility == "public" {
            return Err(forbidden(format!(
                "Image {id} is public and cannot be deleted."
            )));
        }
        if img.protected {
            return Err(forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            )));
        }
        s.images.remove(&id);
        Ok(())
    })?;
    Ok(no_content())
}

// ---- data --------------------------------------------------------------------

async fn upload_file(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let ctype = header_str(&headers, "content-type").unwrap_or("");
    if ctype.split(';').next().map(str::trim) != Some("application/octet-stream") {
        return Err(err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/octet-stream",
        ));
    }
    let delay = app.config.transitions.image_saving;
    app.with(|s| -> ApiResult<()> {
        let img = owned_mut(s, &tenant, &id)?;
        if img.protected {
            return Err(protected_refusal(&id));
        }
        if img.status != "queued" {
            return Err(err(
                StatusCode::CONFLICT,
                format!(
                    "Image status transition from {} to saving is not allowed",
                    img.status
                ),
            ));
        }
        img.size = Some(body.len() as u64);
        img.virtual_size = Some(virtual_size(img.disk_format.as_deref(), &body));
        img.checksum = Some(crate::digest::md5_hex(&body));
        img.os_hash_value = Some(crate::digest::sha512_hex(&body));
        img.data = Some(body);
        img.status = "saving".to_string();
        img.updated_at = Utc::now();
        s.schedule(
            Target::Image(id.clone()),
            delay,
            Change::ImageStatus("active"),
        );
        Ok(())
    })?;
    Ok(no_content())
}

/// The virtual size Glance records for uploaded data: a qcow2 image's from
/// its header, anything else's its length (what Glance's format inspector
/// gives for raw data).
fn virtual_size(disk_format: Option<&str>, data: &[u8]) -> u64 {
    const QCOW2_MAGIC: &[u8] = b"QFI\xfb";
    match (disk_format, data.get(24..32)) {
        (Some("qcow2"), Some(size)) if data.starts_with(QCOW2_MAGIC) => {
            let mut be = [0u8; 8];
            be.copy_from_slice(size);
            u64::from_be_bytes(be)
        }
        _ => data.len() as u64,
    }
}

async fn download_file(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let (data, checksum) = app.with(|s| -> ApiResult<_> {
        let img = visible(s, &tenant, &id)?;
        if img.status == "deactivated" {
            return Err(forbidden(
                "The requested image has been deactivated. Image data download is forbidden.",
            ));
        }
        Ok((img.data.clone(), img.checksum.clone()))
    })?;
    let Some(data) = data else {
        return Ok(no_content());
    };
    let mut resp = (StatusCode::OK, data).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(v) = checksum.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert("content-md5", v);
    }
    Ok(resp)
}

// ---- JSON patch --------------------------------------------------------------

enum Op {
    Add,
    Replace,
    Remove,
}

struct PatchOp {
    op: Op,
    key: String,
    value: Value,
}

fn decode_pointer(path: &str) -> ApiResult<String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad_request(format!(
            "Invalid JSON pointer for this resource: '{path}'"
        )));
    };
    let first = rest.split('/').next().unwrap_or("");
    let key = first.replace("~1", "/").replace("~0", "~");
    if key.is_empty() {
        return Err(bad_request(format!(
            "Invalid JSON pointer for this resource: '{path}'"
        )));
    }
    if rest.contains('/') {
        // Only `/locations/N` has depth in Glance; locations are read-only here.
        check_writable(&key)?;
        return Err(bad_request(format!(
            "Invalid JSON pointer for this resource: '{path}'"
        )));
    }
    Ok(key)
}

fn parse_patch(body: &Bytes) -> ApiResult<Vec<PatchOp>> {
    let v = parse_json(body)?;
    let arr = v
        .as_array()
        .ok_or_else(|| bad_request("Request body must be a JSON array of operation objects."))?;
    let mut ops = Vec::new();
    for item in arr {
        let op = match item.get("op").and_then(Value::as_str) {
            Some("add") => Op::Add,
            Some("replace") => Op::Replace,
            Some("remove") => Op::Remove,
            _ => {
                return Err(bad_request(
                    "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.",
                ));
            }
        };
        let path = item
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("Unable to find 'path' in JSON Schema change"))?;
        let key = decode_pointer(path)?;
        check_writable(&key)?;
        let value = match op {
            Op::Remove => Value::Null,
            _ => item.get("value").cloned().ok_or_else(|| {
                bad_request("Operation objects must contain exactly one member named \"value\".")
            })?,
        };
        ops.push(PatchOp { op, key, value });
    }
    Ok(ops)
}

/// NHN: a protected image accepts only a patch that unprotects it (and does
/// nothing else).
fn only_unprotects(ops: &[PatchOp]) -> bool {
    !ops.is_empty()
        && ops.iter().all(|o| {
            matches!(o.op, Op::Add | Op::Replace)
                && o.key == "protected"
                && o.value == Value::Bool(false)
        })
}

async fn patch_image(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let ctype = header_str(&headers, "content-type").unwrap_or("");
    let media = ctype.split(';').next().map(str::trim).unwrap_or("");
    if !PATCH_CONTENT_TYPES.contains(&media) {
        return Err(err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type: {ctype:?}. Use application/openstack-images-v2.1-json-patch."
            ),
        ));
    }
    let ops = parse_patch(&body)?;
    let view = app.with(|s| -> ApiResult<Value> {
        let img = owned_mut(s, &tenant, &id)?;
        if img.protected && !only_unprotects(&ops) {
            return Err(protected_refusal(&id));
        }
        let mut next = img.clone();
        for op in &ops {
            match op.op {
                Op::Add => set_attribute(&mut next, &op.key, &op.value)?,
                Op::Replace => {
                    if !is_core(&op.key) && !next.properties.contains_key(&op.key) {
                        return Err(err(
                            StatusCode::CONFLICT,
                            format!("Property {} does not exist.", op.key),
                        ));
                    }
                    set_attribute(&mut next, &op.key, &op.value)?;
                }
                Op::Remove => {
                    if is_core(&op.key) {
                        return Err(forbidden(format!(
                            "Property {} may not be removed.",
                            op.key
                        )));
                    }
                    if next.properties.remove(&op.key).is_none() {
                        return Err(err(
                            StatusCode::CONFLICT,
                            format!("Property {} does not exist.", op.key),
                        ));
                    }
                }
            }
        }
        next.updated_at = Utc::now();
        *img = next;
        Ok(image_view(img))
    })?;
    Ok(ok_json(&view))
}

// ---- tags --------------------------------------------------------------------

async fn add_tag(
    State(app): State<Shared>,
    Path((id, tag)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    check_tag(&tag)?;
    app.with(|s| -> ApiResult<()> {
        let img = owned_mut(s, &tenant, &id)?;
        if img.protected {
            return Err(protected_refusal(&id));
        }
        if !img.tags.contains(&tag) {
            if img.tags.len() >= MAX_TAGS {
                return Err(err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Maximum number of tags exceeded ({MAX_TAGS})."),
                ));
            }
            img.tags.push(tag.clone());
            img.updated_at = Utc::now();
        }
        Ok(())
    })?;
    Ok(no_content())
}

async fn delete_tag(
    State(app): State<Shared>,
    Path((id, tag)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    app.with(|s| -> ApiResult<()> {
        let img = owned_mut(s, &tenant, &id)?;
        if img.protected {
            return Err(protected_refusal(&id));
        }
        let before = img.tags.len();
        img.tags.retain(|t| *t != tag);
        if img.tags.len() == before {
            return Err(err(StatusCode::NOT_FOUND, format!("Tag {tag} not found")));
        }
        img.updated_at = Utc::now();
        Ok(())
    })?;
    Ok(no_content())
}

// ---- members -----------------------------------------------------------------

fn only_shared(img: &Image) -> ApiResult<()> {
    if img.visibility == "shared" {
        Ok(())
    } else {
        Err(forbidden("Only shared images have members."))
    }
}

fn member_not_found(id: &str, member: &str) -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        format!("Member {member} not found for image {id}."),
    )
}

async fn add_member(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let body = parse_json(&body)?;
    let member = body
        .get("member")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty() && m.len() <= 255)
        .ok_or_else(|| bad_request("Member to be added not specified"))?
        .to_string();
    let view = app.with(|s| -> ApiResult<Value> {
        let img = match s.images.get_mut(&id) {
            Some(i) if i.owner == tenant => i,
            Some(i) if can_show(i, &tenant) => {
                return Err(forbidden(format!(
                    "You are not permitted to create image members for image {id}."
                )));
            }
            _ => return Err(image_not_found(&id)),
        };
        only_shared(img)?;
        if img.members.contains_key(&member) {
            return Err(err(
                StatusCode::CONFLICT,
                format!("Member {member} is duplicated for image {id}"),
            ));
        }
        if img.members.len() >= MAX_MEMBERS {
            return Err(err(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Maximum number of image members exceeded ({MAX_MEMBERS})."),
            ));
        }
        let now = Utc::now();
        let m = Member {
            member_id: member.clone(),
            status: "pending".to_string(),
            created_at: now,
            updated_at: now,
        };
        let view = member_view(&id, &m);
        img.members.insert(member.clone(), m);
        Ok(view)
    })?;
    Ok(ok_json(&view))
}

async fn list_members(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let members = app.with(|s| -> ApiResult<Vec<Value>> {
        let img = visible(s, &tenant, &id)?;
        only_shared(img)?;
        Ok(img
            .members
            .values()
            .filter(|m| img.owner == tenant || m.member_id == tenant)
            .map(|m| member_view(&id, m))
            .collect())
    })?;
    Ok(ok_json(
        &json!({"members": members, "schema": "/v2/schemas/members"}),
    ))
}

async fn show_member(
    State(app): State<Shared>,
    Path((id, member)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let view = app.with(|s| -> ApiResult<Value> {
        let img = visible(s, &tenant, &id)?;
        only_shared(img)?;
        if img.owner != tenant && member != tenant {
            return Err(member_not_found(&id, &member));
        }
        img.members
            .get(&member)
            .map(|m| member_view(&id, m))
            .ok_or_else(|| member_not_found(&id, &member))
    })?;
    Ok(ok_json(&view))
}

async fn update_member(
    State(app): State<Shared>,
    Path((id, member)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    let body = parse_json(&body)?;
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Status not specified"))?
        .to_string();
    let view = app.with(|s| -> ApiResult<Value> {
        let img = s
            .images
            .get_mut(&id)
            .filter(|i| can_show(i, &tenant))
            .ok_or_else(|| image_not_found(&id))?;
        if img.owner != tenant && member != tenant {
            return Err(member_not_found(&id, &member));
        }
        if !img.members.contains_key(&member) {
            return Err(member_not_found(&id, &member));
        }
        if member != tenant {
            return Err(forbidden(
                "You are not permitted to modify 'status' on this image member.",
            ));
        }
        if !["pending", "accepted", "rejected"].contains(&status.as_str()) {
            return Err(bad_request(format!(
                "Invalid status: {status} (one of pending, accepted, rejected)"
            )));
        }
        let m = img
            .members
            .get_mut(&member)
            .ok_or_else(|| member_not_found(&id, &member))?;
        m.status = status;
        m.updated_at = Utc::now();
        Ok(member_view(&id, m))
    })?;
    Ok(ok_json(&view))
}

async fn delete_member(
    State(app): State<Shared>,
    Path((id, member)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = tenant_of(&app, &headers)?;
    app.with(|s| -> ApiResult<()> {
        let img = s
            .images
            .get_mut(&id)
            .filter(|i| can_show(i, &tenant))
            .ok_or_else(|| image_not_found(&id))?;
        if img.owner != tenant {
            if member == tenant && img.members.contains_key(&member) {
                return Err(forbidden(
                    "You are not permitted to delete this image member.",
                ));
            }
            return Err(member_not_found(&id, &member));
        }
        img.members
            .remove(&member)
            .map(|_| ())
            .ok_or_else(|| member_not_found(&id, &member))
    })?;
    Ok(no_content())
}
