//! Block storage in NHN's v2 dialect (NHN's Block Storage API, docs/sources.md), served under both
//! `/block-storage/v2/{tenant}` and `/block-storage/v3/{tenant}`, with the
//! upload-to-image refusals of Cinder's upload-to-image reference, docs/sources.md.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::app::Shared;
use crate::config::Transitions;
use crate::http::{
    ApiError, ApiResult, CinderTime, Dialect, DisplayStr, Query, base_url, cinder_time, header_str,
    json_bytes, json_response, loose_bool, ok_json,
};
use crate::identity::{authenticate, service_unauthorized, stable_id};
use crate::image::{can_show, custom_properties, listed_by_default};
use crate::listing::page_after;
use crate::state::{Change, Image, State as Cloud, Target, Token, Volume};

/// Which URL prefix a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V2,
    V3,
}

impl Api {
    fn segment(self) -> &'static str {
        match self {
            Api::V2 => "v2",
            Api::V3 => "v3",
        }
    }
}

/// The v3 microversion of a request (`3.<minor>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion(pub u32);

/// The highest v3 microversion the emulator claims.
pub const MAX_MICROVERSION: u32 = 71;
const MAX_LIMIT: usize = 1000;
const GIB: u64 = 1 << 30;
/// Cinder's largest volume size (its database's max int).
const MAX_SIZE: i64 = 0x7FFF_FFFF;
pub const DEFAULT_VOLUME_TYPE: &str = "General HDD";

/// Statuses from which Cinder lets a volume be deleted.
const DELETABLE: [&str; 5] = [
    "available",
    "error",
    "error_restoring",
    "error_extending",
    "error_managing",
];
const DELETE_REFUSED: &str = "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer.";

/// Seed 003's formats (plus `iso`, accepted but never producing an image).
const UPLOAD_DISK_FORMATS: [&str; 5] = ["raw", "vmdk", "vdi", "qcow2", "iso"];
const UPLOAD_CONTAINER_FORMATS: [&str; 5] = ["bare", "ovf", "ami", "aki", "ari"];

pub fn routes() -> Router<Shared> {
    let mut router = Router::new();
    for api in [Api::V2, Api::V3] {
        let v = api.segment();
        let mut sub = Router::new()
            .route(
                &format!("/block-storage/{v}/{{tenant}}/volumes"),
                get(list_volumes).post(create_volume),
            )
            .route(
                &format!("/block-storage/{v}/{{tenant}}/volumes/detail"),
                get(list_volumes_detail),
            )
            .route(
                &format!("/block-storage/{v}/{{tenant}}/volumes/{{volume_id}}"),
                get(show_volume).put(update_volume).delete(delete_volume),
            )
            .route(
                &format!("/block-storage/{v}/{{tenant}}/volumes/{{volume_id}}/action"),
                axum::routing::post(volume_action),
            )
            .route(
                &format!("/block-storage/{v}/{{tenant}}/volumes/{{volume_id}}/metadata"),
                get(show_metadata)
                    .post(merge_metadata)
                    .put(replace_metadata),
            )
            .route(
                &format!("/block-storage/{v}/{{tenant}}/volumes/{{volume_id}}/metadata/{{key}}"),
                get(show_metadata_item)
                    .put(put_metadata_item)
                    .delete(delete_metadata_item),
            )
            .layer(Extension(api));
        if api == Api::V3 {
            sub = sub.layer(middleware::from_fn(v3_microversion));
        }
        router = router.merge(sub);
    }
    router
        .route("/block-storage", get(versions))
        .route("/block-storage/", get(versions))
        .route("/block-storage/v2", get(version_v2))
        .route("/block-storage/v2/", get(version_v2))
        .route("/block-storage/v3", get(version_v3))
        .route("/block-storage/v3/", get(version_v3))
}

// ---- errors ------------------------------------------------------------------

fn err(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(Dialect::BlockStorage, status, message)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    err(StatusCode::BAD_REQUEST, message)
}

fn volume_not_found(id: &str) -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        format!("Volume {id} could not be found."),
    )
}

/// jsonschema-style message, as Cinder's request validation words it.
fn invalid_field(field: &str, value: &Value, why: &str) -> ApiError {
    bad_request(format!(
        "Invalid input for field/attribute {field}. Value: {}. {why}",
        python_repr(value)
    ))
}

/// A value as Cinder's messages print it: Python's `str()` of the decoded
/// JSON (a top-level string bare, containers as Python literals).
fn python_repr(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => python_literal(other),
    }
}

/// Python's `repr()` of a decoded JSON value: `None`, `True`, `'text'`,
/// `[1, 'a']`, `{'k': 'v'}`.
fn python_literal(v: &Value) -> String {
    match v {
        Value::Null => "None".to_string(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(python_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    python_literal(&Value::String(k.clone())),
                    python_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

// ---- discovery ---------------------------------------------------------------

fn version_entry(base: &str, api: Api) -> Value {
    let (id, status, version, min, updated) = match api {
        Api::V2 => (
            "v2.0",
            "DEPRECATED",
            String::new(),
            "",
            "2017-02-25T12:00:00Z",
        ),
        Api::V3 => (
            "v3.0",
            "CURRENT",
            format!("3.{MAX_MICROVERSION}"),
            "3.0",
            "2023-08-31T00:00:00Z",
        ),
    };
    let major = &id[1..2];
    json!({
        "id": id,
        "status": status,
        "version": version,
        "min_version": min,
        "updated": updated,
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{base}/block-storage/{}/", api.segment())},
        ],
        "media-types": [{
            "base": "application/json",
            "type": format!("application/vnd.openstack.volume+json;version={major}"),
        }],
    })
}

async fn versions(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    json_response(
        StatusCode::MULTIPLE_CHOICES,
        &json!({"versions": [version_entry(&base, Api::V3), version_entry(&base, Api::V2)]}),
    )
}

async fn version_v2(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    ok_json(&json!({"versions": [version_entry(&base, Api::V2)]}))
}

async fn version_v3(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    ok_json(&json!({"versions": [version_entry(&base, Api::V3)]}))
}

/// Negotiates `OpenStack-API-Version: volume 3.N` on the v3 path and echoes
/// the version served.
async fn v3_microversion(mut req: Request, next: Next) -> Response {
    let requested = header_str(req.headers(), "openstack-api-version").and_then(|h| {
        h.split(',').find_map(|part| {
            let mut it = part.split_whitespace();
            match (it.next(), it.next()) {
                (Some(service), Some(v))
                    if service.eq_ignore_ascii_case("volume")
                        || service.eq_ignore_ascii_case("block-storage") =>
                {
                    Some(v.to_string())
                }
                _ => None,
            }
        })
    });
    let minor = match requested.as_deref() {
        None => 0,
        Some("latest") => MAX_MICROVERSION,
        Some(v) => {
            let parsed = v
                .split_once('.')
                .and_then(|(maj, min)| Some((maj.parse::<u32>().ok()?, min.parse::<u32>().ok()?)));
            match parsed {
                Some((3, m)) if m <= MAX_MICROVERSION => m,
                Some(_) => {
                    return err(
                        StatusCode::NOT_ACCEPTABLE,
                        format!(
                            "Version {v} is not supported by the API. Minimum is 3.0 and maximum is 3.{MAX_MICROVERSION}."
                        ),
                    )
                    .into_response();
                }
                None => {
                    return bad_request(format!(
                        "API Version String {v} is of invalid format. Must be of format MajorNum.MinorNum."
                    ))
                    .into_response();
                }
            }
        }
    };
    req.extensions_mut().insert(Microversion(minor));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&format!("volume 3.{minor}")) {
        resp.headers_mut().insert("openstack-api-version", v);
    }
    resp.headers_mut()
        .insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
    resp
}

// ---- request context ---------------------------------------------------------

struct Ctx {
    app: Shared,
    api: Api,
    base: String,
    tenant: String,
    token: Token,
}

fn begin(app: &Shared, api: Api, headers: &HeaderMap, tenant: &str) -> ApiResult<Ctx> {
    let base = base_url(headers, &app.fallback_base);
    let token = authenticate(app, headers)
        .ok_or_else(|| service_unauthorized(Dialect::BlockStorage, &base))?;
    if token.tenant_id != tenant {
        // Cinder refuses a URL whose project is not the token's (Cinder's upload-to-image reference, docs/sources.md).
        return Err(bad_request("Malformed request url"));
    }
    Ok(Ctx {
        app: app.clone(),
        api,
        base,
        tenant: tenant.to_string(),
        token,
    })
}

impl Ctx {
    fn view(&self, v: &Volume) -> Value {
        volume_detail(v, &self.base, self.api)
    }
}

fn parse_body(body: &Bytes) -> Option<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn require_element<'a>(body: &'a Option<Value>, key: &str) -> ApiResult<&'a Map<String, Value>> {
    match body {
        None => Err(bad_request("Malformed request body")),
        Some(b) => b.get(key).and_then(Value::as_object).ok_or_else(|| {
            bad_request(format!("Missing required element '{key}' in request body."))
        }),
    }
}

// ---- views -------------------------------------------------------------------

#[derive(Serialize)]
struct Link {
    href: String,
    rel: &'static str,
}

/// `{base}/block-storage[/{v}]/{tenant}/volumes/{id}`: a volume's `self`
/// link (with the API version) or `bookmark` (without), written straight
/// into the answer.
struct VolumeHref<'a> {
    base: &'a str,
    version: Option<&'static str>,
    tenant: &'a str,
    id: &'a str,
}

impl fmt::Display for VolumeHref<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let VolumeHref {
            base,
            version,
            tenant,
            id,
        } = self;
        match version {
            Some(v) => write!(f, "{base}/block-storage/{v}/{tenant}/volumes/{id}"),
            None => write!(f, "{base}/block-storage/{tenant}/volumes/{id}"),
        }
    }
}

#[derive(Serialize)]
struct VolumeLink<'a> {
    href: DisplayStr<VolumeHref<'a>>,
    rel: &'static str,
}

fn volume_links<'a>(base: &'a str, api: Api, tenant: &'a str, id: &'a str) -> [VolumeLink<'a>; 2] {
    let href = |version| {
        DisplayStr(VolumeHref {
            base,
            version,
            tenant,
            id,
        })
    };
    [
        VolumeLink {
            href: href(Some(api.segment())),
            rel: "self",
        },
        VolumeLink {
            href: href(None),
            rel: "bookmark",
        },
    ]
}

#[derive(Serialize)]
struct AttachmentView<'a> {
    server_id: &'a str,
    attachment_id: &'a str,
    attached_at: CinderTime,
    host_name: Option<&'a str>,
    volume_id: &'a str,
    device: &'a str,
    id: &'a str,
}

#[derive(Serialize)]
struct EncryptionView<'a> {
    skm_key_id: &'a str,
    skm_key_version: u64,
}

/// A volume as NHN's Block Storage API shows it (docs/sources.md) (detail list, show, create), fields in
/// the seed's order. Serialized straight from the state, so that listing
/// many volumes stays cheap.
#[derive(Serialize)]
pub struct VolumeView<'a> {
    attachments: Vec<AttachmentView<'a>>,
    links: [VolumeLink<'a>; 2],
    availability_zone: &'a str,
    encrypted: bool,
    #[serde(rename = "os-volume-replication:extended_status")]
    extended_status: Option<()>,
    volume_type: &'a str,
    snapshot_id: Option<&'a str>,
    id: &'a str,
    size: u64,
    user_id: &'a str,
    #[serde(rename = "os-vol-tenant-attr:tenant_id")]
    tenant_id: &'a str,
    metadata: &'a BTreeMap<String, String>,
    status: &'a str,
    description: Option<&'a str>,
    multiattach: bool,
    source_volid: Option<&'a str>,
    consistencygroup_id: Option<()>,
    name: Option<&'a str>,
    bootable: &'static str,
    created_at: CinderTime,
    updated_at: Option<CinderTime>,
    #[serde(rename = "os-volume-replication:driver_data")]
    driver_data: Option<()>,
    replication_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    nhn_encryption: Option<EncryptionView<'a>>,
    /// Only on volumes made from an image, once it is downloaded (Cinder
    /// shows no such key on other volumes).
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_image_metadata: Option<&'a BTreeMap<String, String>>,
}

impl<'a> VolumeView<'a> {
    pub fn new(v: &'a Volume, base: &'a str, api: Api) -> VolumeView<'a> {
        VolumeView {
            attachments: v
                .attachments
                .iter()
                .map(|a| AttachmentView {
                    server_id: &a.server_id,
                    attachment_id: &a.id,
                    attached_at: CinderTime(a.attached_at),
                    host_name: None,
                    volume_id: &v.id,
                    device: &a.device,
                    id: &v.id,
                })
                .collect(),
            links: volume_links(base, api, &v.tenant_id, &v.id),
            availability_zone: &v.availability_zone,
            encrypted: v.encryption.is_some(),
            extended_status: None,
            volume_type: &v.volume_type,
            snapshot_id: v.snapshot_id.as_deref(),
            id: &v.id,
            size: v.size,
            user_id: &v.user_id,
            tenant_id: &v.tenant_id,
            metadata: &v.metadata,
            status: &v.status,
            description: v.description.as_deref(),
            multiattach: v.multiattach,
            source_volid: v.source_volid.as_deref(),
            consistencygroup_id: None,
            name: v.name.as_deref(),
            bootable: if v.bootable { "true" } else { "false" },
            created_at: CinderTime(v.created_at),
            updated_at: v.updated_at.map(CinderTime),
            driver_data: None,
            replication_status: "disabled",
            nhn_encryption: v.encryption.as_ref().map(|e| EncryptionView {
                skm_key_id: &e.skm_key_id,
                skm_key_version: e.skm_key_version,
            }),
            volume_image_metadata: v.image_metadata.as_ref(),
        }
    }
}

pub fn volume_detail(v: &Volume, base: &str, api: Api) -> Value {
    serde_json::to_value(VolumeView::new(v, base, api)).unwrap_or(Value::Null)
}

#[derive(Serialize)]
struct VolumeSummary<'a> {
    id: &'a str,
    links: [VolumeLink<'a>; 2],
    name: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ListItem<'a> {
    Detail(Box<VolumeView<'a>>),
    Summary(VolumeSummary<'a>),
}

#[derive(Serialize)]
struct VolumeList<'a> {
    volumes: Vec<ListItem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    volumes_links: Option<[Link; 1]>,
}

fn uuid_like(hex32: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex32[0..8],
        &hex32[8..12],
        &hex32[12..16],
        &hex32[16..20],
        &hex32[20..32]
    )
}

/// The backend (`volume_backend_name`) that serves a volume type: the
/// emulator has no type registry, so a type named with `ssd` (any case) is
/// on `ssd_general`, any other on `hdd_general`. A retype between types of
/// different backends needs a migration.
fn volume_backend(volume_type: &str) -> &'static str {
    if volume_type.to_ascii_lowercase().contains("ssd") {
        "ssd_general"
    } else {
        "hdd_general"
    }
}

/// The volume type object of the upload answer of NHN's Block Storage API (docs/sources.md) (including its
/// string `"null"`s).
fn volume_type_object(name: &str) -> Value {
    let id = uuid_like(&stable_id(&format!("volume_type:{name}")));
    let backend = volume_backend(name);
    json!({
        "name": name,
        "qos_specs_id": uuid_like(&stable_id(&format!("qos:{name}"))),
        "deleted": false,
        "deleted_at": "null",
        "created_at": "2019-10-10T06:34:33.000000",
        "updated_at": "2019-10-10T06:37:52.000000",
        "extra_specs": [{
            "volume_type_id": id,
            "deleted": false,
            "created_at": "2019-10-10T06:39:35.000000",
            "updated_at": "null",
            "deleted_at": "null",
            "value": backend,
            "key": "volume_backend_name",
            "id": 1,
        }],
        "is_public": true,
        "id": id,
        "description": "null",
    })
}

// ---- listing -----------------------------------------------------------------

#[derive(Clone, Copy)]
enum SortKey {
    Id,
    Name,
    Status,
    Size,
    CreatedAt,
    UpdatedAt,
    AvailabilityZone,
    VolumeType,
    Bootable,
    Description,
}

fn sort_key(name: &str) -> Option<SortKey> {
    Some(match name {
        "id" => SortKey::Id,
        "name" | "display_name" => SortKey::Name,
        "status" => SortKey::Status,
        "size" => SortKey::Size,
        "created_at" => SortKey::CreatedAt,
        "updated_at" => SortKey::UpdatedAt,
        "availability_zone" => SortKey::AvailabilityZone,
        "volume_type" => SortKey::VolumeType,
        "bootable" => SortKey::Bootable,
        "description" | "display_description" => SortKey::Description,
        _ => return None,
    })
}

fn compare(a: &Volume, b: &Volume, key: SortKey) -> Ordering {
    match key {
        SortKey::Id => a.id.cmp(&b.id),
        SortKey::Name => a.name.cmp(&b.name),
        SortKey::Status => a.status.cmp(&b.status),
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::CreatedAt => a.seq.cmp(&b.seq),
        SortKey::UpdatedAt => a.updated_at.cmp(&b.updated_at),
        SortKey::AvailabilityZone => a.availability_zone.cmp(&b.availability_zone),
        SortKey::VolumeType => a.volume_type.cmp(&b.volume_type),
        SortKey::Bootable => a.bootable.cmp(&b.bootable),
        SortKey::Description => a.description.cmp(&b.description),
    }
}

/// `sort=key[:dir][,key[:dir]...]` or the older `sort_key`/`sort_dir`; the
/// direction defaults to `desc`, and `created_at`, `id` break ties in the
/// first key's direction, as Cinder does.
fn parse_sort(q: &Query) -> ApiResult<Vec<(SortKey, bool)>> {
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    if let Some(sort) = q.get("sort") {
        for item in sort.split(',').filter(|s| !s.is_empty()) {
            let (k, d) = match item.split_once(':') {
                Some((k, d)) => (k.trim().to_string(), Some(d.trim().to_string())),
                None => (item.trim().to_string(), None),
            };
            pairs.push((k, d));
        }
    } else if let Some(k) = q.get("sort_key") {
        pairs.push((k.to_string(), q.get("sort_dir").map(str::to_string)));
    }
    let mut out = Vec::new();
    let mut names = Vec::new();
    for (k, d) in pairs {
        let key = sort_key(&k)
            .ok_or_else(|| bad_request(format!("Invalid input received: Invalid sort key {k}.")))?;
        let asc = match d.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => {
                return Err(bad_request(
                    "Invalid input received: Unknown sort direction, must be 'desc' or 'asc'.",
                ));
            }
        };
        names.push(k);
        out.push((key, asc));
    }
    let default_asc = out.first().map(|(_, asc)| *asc).unwrap_or(false);
    if !names.iter().any(|n| n == "created_at") {
        out.push((SortKey::CreatedAt, default_asc));
    }
    if !names.iter().any(|n| n == "id") {
        out.push((SortKey::Id, default_asc));
    }
    Ok(out)
}

fn parse_count(q: &Query, name: &str) -> ApiResult<Option<usize>> {
    match q.get(name) {
        None => Ok(None),
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if n < 0 => Err(bad_request(format!("{name} param must be positive"))),
            Ok(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            Err(_) => Err(bad_request(format!("{name} param must be an integer"))),
        },
    }
}

/// `metadata={"k": "v"}` (JSON, or the Python-literal form with single
/// quotes that cinderclient sends).
fn parse_metadata_filter(s: &str) -> ApiResult<BTreeMap<String, String>> {
    let parsed = serde_json::from_str::<Map<String, Value>>(s)
        .or_else(|_| serde_json::from_str::<Map<String, Value>>(&s.replace('\'', "\"")))
        .map_err(|_| {
            bad_request(format!(
                "Invalid input received: metadata filter {s} is not a JSON object."
            ))
        })?;
    Ok(parsed
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

async fn list_volumes(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    list(&ctx, raw.as_deref(), false)
}

async fn list_volumes_detail(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    list(&ctx, raw.as_deref(), true)
}

fn list(ctx: &Ctx, raw: Option<&str>, detail: bool) -> ApiResult {
    let q = Query::parse(raw);
    let limit = match parse_count(&q, "limit")? {
        None | Some(0) => MAX_LIMIT,
        Some(n) => n.min(MAX_LIMIT),
    };
    let offset = parse_count(&q, "offset")?.unwrap_or(0);
    let sort = parse_sort(&q)?;
    let metadata = q.get("metadata").map(parse_metadata_filter).transpose()?;
    let name = q.get("name").or_else(|| q.get("display_name"));
    let status = q.get("status");
    let marker = q.get("marker");

    let bytes = ctx.app.with(|s| -> ApiResult<Vec<u8>> {
        let wanted = |v: &Volume| {
            v.tenant_id == ctx.tenant
                && name.is_none_or(|n| v.name.as_deref() == Some(n))
                && status.is_none_or(|st| v.status == st)
                && metadata.as_ref().is_none_or(|m| {
                    m.iter()
                        .all(|(k, val)| v.metadata.get(k).is_some_and(|x| x == val))
                })
        };
        let order = |a: &Volume, b: &Volume| {
            sort.iter()
                .map(|(key, asc)| {
                    let o = compare(a, b, *key);
                    if *asc { o } else { o.reverse() }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        };
        // The marker must be one of the listed volumes (filters included).
        let marker = match marker {
            None => None,
            Some(m) => Some(s.volumes.get(m).filter(|v| wanted(v)).ok_or_else(|| {
                err(
                    StatusCode::NOT_FOUND,
                    format!("Marker {m} could not be found."),
                )
            })?),
        };
        let candidates: Vec<&Volume> = s.volumes.values().filter(|v| wanted(v)).collect();
        let page = page_after(candidates, marker, offset, limit, order);
        // A full page has a next link (Cinder's rule), marked by its last item.
        let volumes_links = (page.len() == limit)
            .then(|| page.last())
            .flatten()
            .map(|last| {
                let collection = if detail { "volumes/detail" } else { "volumes" };
                let query = q.encode_without(&["marker", "offset"], &[("marker", &last.id)]);
                [Link {
                    href: format!(
                        "{}/block-storage/{}/{}/{collection}?{query}",
                        ctx.base,
                        ctx.api.segment(),
                        ctx.tenant
                    ),
                    rel: "next",
                }]
            });
        let volumes = page
            .iter()
            .map(|v| {
                if detail {
                    ListItem::Detail(Box::new(VolumeView::new(v, &ctx.base, ctx.api)))
                } else {
                    ListItem::Summary(VolumeSummary {
                        id: &v.id,
                        links: volume_links(&ctx.base, ctx.api, &v.tenant_id, &v.id),
                        name: v.name.as_deref(),
                    })
                }
            })
            .collect();
        serde_json::to_vec(&VolumeList {
            volumes,
            volumes_links,
        })
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })?;
    Ok(json_bytes(StatusCode::OK, bytes))
}

// ---- show / create / update / delete -------------------------------------------

async fn show_volume(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let view = app.with(|s| find(s, &ctx.tenant, &id).map(|v| ctx.view(v)))?;
    Ok(ok_json(&json!({"volume": view})))
}

fn find<'a>(s: &'a Cloud, tenant: &str, id: &str) -> ApiResult<&'a Volume> {
    s.volumes
        .get(id)
        .filter(|v| v.tenant_id == tenant)
        .ok_or_else(|| volume_not_found(id))
}

fn find_mut<'a>(s: &'a mut Cloud, tenant: &str, id: &str) -> ApiResult<&'a mut Volume> {
    s.volumes
        .get_mut(id)
        .filter(|v| v.tenant_id == tenant)
        .ok_or_else(|| volume_not_found(id))
}

/// A positive integer, or a string of digits (Cinder's `volume_size`).
fn parse_size(field: &str, v: &Value) -> ApiResult<u64> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().ok()
        }
        _ => None,
    };
    match n {
        Some(n) if n > MAX_SIZE => Err(invalid_field(
            field,
            v,
            &format!("{n} is greater than the maximum of {MAX_SIZE}"),
        )),
        Some(n) if n >= 1 => Ok(n as u64),
        Some(n) => Err(invalid_field(
            field,
            v,
            &format!("{n} is less than the minimum of 1"),
        )),
        None => Err(invalid_field(
            field,
            v,
            &format!("{} is not of type 'integer', 'string'", python_repr(v)),
        )),
    }
}

fn opt_string(obj: &Map<String, Value>, keys: &[&str], max: usize) -> ApiResult<Option<String>> {
    for key in keys {
        match obj.get(*key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.chars().count() <= max => return Ok(Some(s.clone())),
            Some(v @ Value::String(_)) => {
                return Err(invalid_field(
                    key,
                    v,
                    &format!("is longer than {max} characters"),
                ));
            }
            Some(v) => {
                return Err(invalid_field(
                    key,
                    v,
                    &format!("{} is not of type 'string'", python_repr(v)),
                ));
            }
        }
    }
    Ok(None)
}

fn parse_metadata(v: &Value) -> ApiResult<BTreeMap<String, String>> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid_field("metadata", v, "is not of type 'object'"))?;
    let mut out = BTreeMap::new();
    for (k, val) in obj {
        if k.is_empty() || k.chars().count() > 255 {
            return Err(bad_request(
                "Invalid input received: Metadata property key must be 1 to 255 characters long.",
            ));
        }
        match val {
            Value::String(s) if s.chars().count() <= 255 => {
                out.insert(k.clone(), s.clone());
            }
            Value::String(_) => {
                return Err(bad_request(
                    "Invalid input received: Metadata property value must be at most 255 characters long.",
                ));
            }
            other => {
                return Err(invalid_field(
                    "metadata",
                    v,
                    &format!("{} is not of type 'string'", python_repr(other)),
                ));
            }
        }
    }
    Ok(out)
}

/// webob's text for a 400 whose handler gave no explanation.
const GENERIC_BAD_REQUEST: &str = "The server could not comply with the request since it is either malformed or otherwise incorrect.";

/// Cinder's answer when it cannot resolve an `imageRef`: unknown, or not
/// visible to the project.
const IMAGE_NOT_FOUND: &str = "Invalid image identifier or unable to access requested image.";

/// Cinder's lookup of an `imageRef`: its last path segment (Nova sends
/// URLs) by ID through Glance's show, which a tenant may use on its own,
/// public and community images and on shared ones it is a member of,
/// whatever the member status; failing that, the whole reference by name
/// through Glance's default list (own, public, and shared once accepted).
fn resolve_image<'a>(s: &'a Cloud, tenant: &str, reference: &str) -> ApiResult<&'a Image> {
    let id = reference.rsplit('/').next().unwrap_or(reference);
    if uuid::Uuid::parse_str(id).is_ok()
        && let Some(img) = s.images.get(id).filter(|i| can_show(i, tenant))
    {
        return Ok(img);
    }
    let mut named = s.images.values().filter(|i| {
        i.name.as_deref() == Some(reference) && listed_by_default(i, tenant, "accepted")
    });
    match (named.next(), named.next()) {
        (Some(img), None) => Ok(img),
        (Some(_), Some(_)) => Err(err(
            StatusCode::CONFLICT,
            format!("Multiple matches found for '{reference}', use an ID to be more specific."),
        )),
        (None, _) => Err(bad_request(IMAGE_NOT_FOUND)),
    }
}

/// Cinder's checks of an image against the size of the volume to make
/// from it, in its order: active, data no larger than the volume (in GiB,
/// rounded up), `min_disk`, virtual size.
fn check_image_fits(img: &Image, size: u64) -> ApiResult<()> {
    if img.status != "active" {
        return Err(bad_request(format!(
            "Invalid input received: Image {} is not active.",
            img.id
        )));
    }
    let data_gib = img.size.unwrap_or(0).div_ceil(GIB);
    if data_gib > size {
        return Err(bad_request(format!(
            "Invalid input received: Size of specified image {data_gib}GB is larger than volume size {size}GB."
        )));
    }
    if size < img.min_disk {
        return Err(bad_request(format!(
            "Invalid input received: Volume size {size}GB cannot be smaller than the image minDisk size {}GB.",
            img.min_disk
        )));
    }
    if let Some(virtual_gib) = img.virtual_size.map(|v| v.div_ceil(GIB))
        && virtual_gib > size
    {
        return Err(bad_request(format!(
            "Image {} is unacceptable: Image virtual size is {virtual_gib}GB and doesn't fit in a volume of size {size}GB.",
            img.id
        )));
    }
    Ok(())
}

/// What Cinder copies from an image into the `volume_image_metadata` of a
/// volume made from it: the custom properties, `signature_verified`, the
/// image's ID and name, its formats, checksum, `min_disk`, `min_ram` and
/// size, every value a string.
fn volume_image_metadata(img: &Image) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = custom_properties(img)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut set = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    set("signature_verified", "False".to_string());
    set("image_id", img.id.clone());
    if let Some(name) = img.name.as_ref().filter(|n| !n.is_empty()) {
        set("image_name", name.clone());
    }
    for (k, v) in [
        ("checksum", &img.checksum),
        ("container_format", &img.container_format),
        ("disk_format", &img.disk_format),
    ] {
        if let Some(v) = v {
            set(k, v.clone());
        }
    }
    set("min_disk", img.min_disk.to_string());
    set("min_ram", img.min_ram.to_string());
    if let Some(size) = img.size {
        set("size", size.to_string());
    }
    m
}

async fn create_volume(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let body = parse_body(&body);
    let v = require_element(&body, "volume")?;

    let size = match v.get("size") {
        None | Some(Value::Null) => None,
        Some(x) => Some(parse_size("size", x)?),
    };
    let name = opt_string(v, &["name", "display_name"], 255)?;
    let description = opt_string(v, &["description", "display_description"], 255)?;
    let volume_type = opt_string(v, &["volume_type"], 255)?;
    let availability_zone = opt_string(v, &["availability_zone"], 255)?
        .unwrap_or_else(|| app.config.availability_zone.clone());
    let snapshot_id = opt_string(v, &["snapshot_id"], 255)?;
    let source_volid = opt_string(v, &["source_volid"], 255)?;
    let metadata = match v.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(m) => parse_metadata(m)?,
    };
    let multiattach = match v.get("multiattach") {
        None | Some(Value::Null) => false,
        Some(x) => {
            loose_bool(x).ok_or_else(|| invalid_field("multiattach", x, "is not a boolean"))?
        }
    };
    // `image_id` is Cinder's other name for `imageRef` (and wins over it).
    let image_field = if v.contains_key("image_id") {
        "image_id"
    } else {
        "imageRef"
    };
    let image_ref = match v.get(image_field) {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r.clone()),
        Some(x) => {
            return Err(invalid_field(
                image_field,
                x,
                &format!("{} is not of type 'string', 'null'", python_repr(x)),
            ));
        }
    };
    let encryption = match v.get("nhn_encryption") {
        None | Some(Value::Null) => None,
        Some(Value::Object(enc)) => {
            let key_id = opt_string(enc, &["skm_key_id"], 255)?.ok_or_else(|| {
                bad_request("Invalid input received: nhn_encryption.skm_key_id is required.")
            })?;
            opt_string(enc, &["skm_appkey"], 255)?.ok_or_else(|| {
                bad_request("Invalid input received: nhn_encryption.skm_appkey is required.")
            })?;
            Some(crate::state::Encryption {
                skm_key_id: key_id,
                skm_key_version: 1,
            })
        }
        Some(x) => {
            return Err(invalid_field(
                "nhn_encryption",
                x,
                "is not of type 'object'",
            ));
        }
    };

    let Transitions {
        volume_create,
        volume_download,
        ..
    } = app.config.transitions;
    let view = app.with(|s| -> ApiResult<Value> {
        // Cinder looks up the snapshot, then the source volume (404 each).
        let snapshot = snapshot_id
            .as_ref()
            .map(|sid| {
                let snap = s
                    .snapshots
                    .get(sid)
                    .filter(|x| x.tenant_id == ctx.tenant)
                    .ok_or_else(|| {
                        err(
                            StatusCode::NOT_FOUND,
                            format!("Snapshot {sid} could not be found."),
                        )
                    })?;
                let volume_type = s.volumes.get(&snap.volume_id).map(|v| v.volume_type.clone());
                Ok(("snapshot", snap.size, volume_type))
            })
            .transpose()?;
        let source = source_volid
            .as_ref()
            .map(|src| {
                find(s, &ctx.tenant, src)
                    .map(|v| ("source volume", v.size, Some(v.volume_type.clone())))
            })
            .transpose()?;
        let (source_size, mut inherited_type) = match snapshot.or(source) {
            Some((what, size, volume_type)) => (Some((what, size)), volume_type),
            None => (None, None),
        };
        // Cinder resolves the image after the snapshot and the source volume,
        // and checks it against the size after the size rules.
        let image = image_ref
            .as_deref()
            .map(|r| resolve_image(s, &ctx.tenant, r))
            .transpose()?;
        let size = match size.or(source_size.map(|(_, n)| n)) {
            Some(n) => n,
            // Cinder's size check fails on the missing value (a TypeError it
            // answers with webob's generic text).
            None => return Err(bad_request(GENERIC_BAD_REQUEST)),
        };
        if usize::from(snapshot_id.is_some())
            + usize::from(source_volid.is_some())
            + usize::from(image.is_some())
            > 1
        {
            return Err(bad_request(
                "Invalid input received: May specify only one of backup, imageRef, snapshot, source volume",
            ));
        }
        match source_size {
            Some(("snapshot", src)) if size < src => {
                return Err(bad_request(format!(
                    "Invalid input received: Volume size '{size}'GB cannot be smaller than the snapshot size {src}GB. They must be >= original snapshot size."
                )));
            }
            Some((_, src)) if size < src => {
                return Err(bad_request(format!(
                    "Invalid input received: Volume size '{size}'GB cannot be smaller than original volume size  {src}GB. They must be >= original volume size."
                )));
            }
            _ => {}
        }
        if let Some(img) = image {
            check_image_fits(img, size)?;
            if inherited_type.is_none() {
                inherited_type = img.properties.get("cinder_img_volume_type").cloned();
            }
        }
        let image_metadata = image.map(volume_image_metadata);
        let now = Utc::now();
        let seq = s.next_seq();
        let vol = Volume {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: ctx.tenant.clone(),
            user_id: ctx.token.user_id.clone(),
            name,
            description,
            size,
            status: "creating".to_string(),
            volume_type: volume_type
                .or(inherited_type)
                .unwrap_or_else(|| DEFAULT_VOLUME_TYPE.to_string()),
            availability_zone,
            snapshot_id,
            source_volid,
            metadata,
            attachments: Vec::new(),
            encryption,
            bootable: false,
            multiattach,
            image_metadata: None,
            created_at: now,
            updated_at: None,
            seq,
            generation: 0,
        };
        let view = ctx.view(&vol);
        let id = vol.id.clone();
        s.volumes.insert(id.clone(), vol);
        let target = Target::Volume(id);
        match image_metadata {
            None => s.schedule(target, volume_create, Change::VolumeStatus("available")),
            Some(image_metadata) => {
                s.schedule(
                    target.clone(),
                    volume_create,
                    Change::VolumeStatus("downloading"),
                );
                s.schedule(
                    target,
                    volume_create + volume_download,
                    Change::VolumeDownloaded { image_metadata },
                );
            }
        }
        Ok(view)
    })?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({"volume": view}),
    ))
}

async fn update_volume(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let body = parse_body(&body);
    let v = require_element(&body, "volume")?;
    let name = v
        .contains_key("name")
        .then(|| opt_string(v, &["name"], 255))
        .or_else(|| {
            v.contains_key("display_name")
                .then(|| opt_string(v, &["display_name"], 255))
        })
        .transpose()?;
    let description = v
        .contains_key("description")
        .then(|| opt_string(v, &["description"], 255))
        .or_else(|| {
            v.contains_key("display_description")
                .then(|| opt_string(v, &["display_description"], 255))
        })
        .transpose()?;
    let metadata = v.get("metadata").map(parse_metadata).transpose()?;
    let view = app.with(|s| -> ApiResult<Value> {
        let vol = find_mut(s, &ctx.tenant, &id)?;
        if let Some(n) = name {
            vol.name = n;
        }
        if let Some(d) = description {
            vol.description = d;
        }
        if let Some(m) = metadata {
            vol.metadata = m;
        }
        vol.updated_at = Some(Utc::now());
        Ok(ctx.view(vol))
    })?;
    Ok(ok_json(&json!({"volume": view})))
}

async fn delete_volume(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let q = Query::parse(raw.as_deref());
    let cascade = q
        .get("cascade")
        .is_some_and(|c| loose_bool(&Value::String(c.to_string())) == Some(true));
    let delay = app.config.transitions.volume_delete;
    app.with(|s| -> ApiResult<()> {
        let has_snapshots = s.snapshots.values().any(|x| x.volume_id == id);
        let vol = find_mut(s, &ctx.tenant, &id)?;
        if !DELETABLE.contains(&vol.status.as_str())
            || !vol.attachments.is_empty()
            || (has_snapshots && !cascade)
        {
            return Err(bad_request(DELETE_REFUSED));
        }
        vol.status = "deleting".to_string();
        vol.updated_at = Some(Utc::now());
        if cascade {
            s.snapshots.retain(|_, x| x.volume_id != id);
        }
        s.schedule(Target::Volume(id.clone()), delay, Change::VolumeGone);
        Ok(())
    })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---- actions -----------------------------------------------------------------

async fn volume_action(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    microversion: Option<Extension<Microversion>>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let body = parse_body(&body);
    let Some(Value::Object(obj)) = &body else {
        return Err(bad_request("Malformed request body"));
    };
    let Some((action, params)) = obj.iter().next() else {
        return Err(bad_request("Malformed request body"));
    };
    match action.as_str() {
        "os-extend" => extend(&ctx, &id, params),
        "os-retype" => retype(&ctx, &id, params),
        "os-volume_upload_image" => {
            // NHN's `visibility` / `protected` are Cinder's 3.1 parameters.
            let nhn_params = match api {
                Api::V2 => true,
                Api::V3 => microversion.is_some_and(|Extension(m)| m >= Microversion(1)),
            };
            upload_to_image(&ctx, &id, params, nhn_params)
        }
        other => Err(bad_request(format!("There is no such action: {other}"))),
    }
}

fn extend(ctx: &Ctx, id: &str, params: &Value) -> ApiResult {
    let new_size = params
        .get("new_size")
        .ok_or_else(|| invalid_field("os-extend", params, "'new_size' is a required property"))?;
    let new_size = parse_size("new_size", new_size)?;
    let delay = ctx.app.config.transitions.volume_extend;
    ctx.app.with(|s| -> ApiResult<()> {
        let vol = find_mut(s, &ctx.tenant, id)?;
        if vol.status != "available" {
            return Err(bad_request(format!(
                "Invalid volume: Volume {id} status must be available to extend, but current status is: {}.",
                vol.status
            )));
        }
        if new_size <= vol.size {
            return Err(bad_request(format!(
                "Invalid input received: New size for extend must be greater than current size. (current: {}, extended: {new_size}).",
                vol.size
            )));
        }
        vol.status = "extending".to_string();
        vol.updated_at = Some(Utc::now());
        s.schedule(
            Target::Volume(id.to_string()),
            delay,
            Change::VolumeExtended { new_size },
        );
        Ok(())
    })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Cinder's refusal of a retype its API will not start: the volume neither
/// `available` nor `in-use`, or the type already the volume's.
const RETYPE_REFUSED: &str = "Invalid volume: Retype needs volume to be in available or in-use state, not be part of an active migration or a consistency group, requested type has to be different that the one from the volume, and for in-use volumes front-end qos specs cannot change.";

/// `os-retype`: Cinder's schema, then the volume, the type (any name but
/// the empty one: there is no type registry), and the state. The volume is
/// `retyping` until `volume_retype` has passed, then back to the status it
/// had, with the new type if its backend serves it ([`volume_backend`]) or
/// the policy is `on-demand` (a migration); else, as Cinder's scheduler
/// does with `never` (the default), the retype is given up and the type
/// stays.
fn retype(ctx: &Ctx, id: &str, params: &Value) -> ApiResult {
    const FIELD: &str = "os-retype";
    let obj = params.as_object().ok_or_else(|| {
        invalid_field(
            FIELD,
            params,
            &format!("{} is not of type 'object'", python_literal(params)),
        )
    })?;
    if let Some(extra) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "new_type" | "migration_policy"))
    {
        return Err(invalid_field(
            FIELD,
            params,
            &format!("Additional properties are not allowed ('{extra}' was unexpected)"),
        ));
    }
    let new_type = match obj.get("new_type") {
        None => {
            return Err(invalid_field(
                FIELD,
                params,
                "'new_type' is a required property",
            ));
        }
        Some(Value::String(t)) => t.clone(),
        Some(x) => {
            return Err(invalid_field(
                "new_type",
                x,
                &format!("{} is not of type 'string'", python_literal(x)),
            ));
        }
    };
    let may_migrate = match obj.get("migration_policy").map(|p| (p, p.as_str())) {
        None | Some((_, Some("never"))) => false,
        Some((_, Some("on-demand"))) => true,
        Some((x, _)) => {
            return Err(invalid_field(
                "migration_policy",
                x,
                &format!("{} is not one of ['on-demand', 'never']", python_literal(x)),
            ));
        }
    };
    let delay = ctx.app.config.transitions.volume_retype;
    ctx.app.with(|s| -> ApiResult<()> {
        let vol = find_mut(s, &ctx.tenant, id)?;
        if new_type.is_empty() {
            return Err(err(
                StatusCode::NOT_FOUND,
                "Volume type with name  could not be found.",
            ));
        }
        let previous_status = match vol.status.as_str() {
            "available" => "available",
            "in-use" => "in-use",
            _ => return Err(bad_request(RETYPE_REFUSED)),
        };
        if vol.volume_type == new_type {
            return Err(bad_request(RETYPE_REFUSED));
        }
        let in_place = volume_backend(&vol.volume_type) == volume_backend(&new_type);
        vol.status = "retyping".to_string();
        vol.updated_at = Some(Utc::now());
        s.schedule(
            Target::Volume(id.to_string()),
            delay,
            Change::VolumeRetyped {
                previous_status,
                volume_type: (in_place || may_migrate).then_some(new_type),
            },
        );
        Ok(())
    })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

struct UploadRequest {
    image_name: String,
    force: bool,
    disk_format: String,
    container_format: String,
    visibility: Option<String>,
    protected: Option<bool>,
}

/// Cinder's schema for `os-volume_upload_image` (with NHN's `visibility` and
/// `protected` when `nhn_params`), checked before the volume is looked up.
fn validate_upload(params: &Value, nhn_params: bool) -> ApiResult<UploadRequest> {
    const FIELD: &str = "os-volume_upload_image";
    let obj = params.as_object().ok_or_else(|| {
        invalid_field(
            FIELD,
            params,
            &format!("{} is not of type 'object'", python_repr(params)),
        )
    })?;
    let mut allowed = vec!["image_name", "force", "disk_format", "container_format"];
    if nhn_params {
        allowed.extend(["visibility", "protected"]);
    }
    if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid_field(
            FIELD,
            params,
            &format!("Additional properties are not allowed ('{extra}' was unexpected)"),
        ));
    }
    let image_name = match obj.get("image_name") {
        None => {
            return Err(invalid_field(
                FIELD,
                params,
                "'image_name' is a required property",
            ));
        }
        Some(Value::String(s)) if s.is_empty() => {
            return Err(invalid_field("image_name", &json!(s), "'' is too short"));
        }
        Some(Value::String(s)) if s.chars().count() > 255 => {
            return Err(invalid_field("image_name", &json!(s), "is too long"));
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(invalid_field(
                "image_name",
                other,
                &format!("{} is not of type 'string'", python_repr(other)),
            ));
        }
    };
    let force = match obj.get("force") {
        None => false,
        Some(v) => loose_bool(v).ok_or_else(|| {
            invalid_field("force", v, "is not valid under any of the given schemas")
        })?,
    };
    let enum_field = |key: &str, allowed: &[&str], default: &str| -> ApiResult<String> {
        match obj.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s.clone()),
            Some(v) => Err(invalid_field(
                key,
                v,
                &format!(
                    "{} is not one of {}",
                    python_literal(v),
                    python_literal(&json!(allowed))
                ),
            )),
        }
    };
    let disk_format = enum_field("disk_format", &UPLOAD_DISK_FORMATS, "raw")?;
    let container_format = enum_field("container_format", &UPLOAD_CONTAINER_FORMATS, "bare")?;
    let visibility = match obj.get("visibility") {
        None => None,
        Some(Value::String(s)) if s == "private" || s == "shared" => Some(s.clone()),
        Some(Value::String(s)) if s == "public" => {
            return Err(err(
                StatusCode::FORBIDDEN,
                "Policy doesn't allow volume_extension:volume_actions:upload_public to be performed.",
            ));
        }
        Some(v) => {
            return Err(invalid_field(
                "visibility",
                v,
                &format!("{} is not one of ['private', 'shared']", python_repr(v)),
            ));
        }
    };
    let protected = match obj.get("protected") {
        None => None,
        Some(v) => Some(loose_bool(v).ok_or_else(|| {
            invalid_field(
                "protected",
                v,
                "is not valid under any of the given schemas",
            )
        })?),
    };
    Ok(UploadRequest {
        image_name,
        force,
        disk_format,
        container_format,
        visibility,
        protected,
    })
}

fn upload_to_image(ctx: &Ctx, id: &str, params: &Value, nhn_params: bool) -> ApiResult {
    let req = validate_upload(params, nhn_params)?;
    let Transitions {
        image_queued,
        image_saving,
        ..
    } = ctx.app.config.transitions;
    let body = ctx.app.with(|s| -> ApiResult<Value> {
        let vol = find_mut(s, &ctx.tenant, id)?;
        if vol.status != "available" && vol.status != "in-use" {
            return Err(bad_request(format!(
                "Invalid volume: Volume {id} status must be available or in-use, but current status is: {}.",
                vol.status
            )));
        }
        if vol.status == "in-use" && !req.force {
            return Err(bad_request("Invalid volume: Volume status is in-use."));
        }
        let now = Utc::now();
        vol.status = "uploading".to_string();
        vol.updated_at = Some(now);
        let size = vol.size;
        let mut body = json!({
            "status": "uploading",
            "image_name": req.image_name,
            "disk_format": req.disk_format,
            "container_format": req.container_format,
            "updated_at": cinder_time(now),
            "image_id": null,
            "id": vol.id,
            "display_description": vol.description,
            "size": size,
            "volume_type": volume_type_object(&vol.volume_type),
        });
        let image_id = uuid::Uuid::new_v4().to_string();
        body["image_id"] = json!(image_id);
        if let Some(v) = &req.visibility {
            body["visibility"] = json!(v);
        }
        if let Some(p) = req.protected {
            body["protected"] = json!(p);
        }
        let seq = s.next_seq();
        s.images.insert(
            image_id.clone(),
            Image {
                id: image_id.clone(),
                owner: ctx.tenant.clone(),
                name: Some(req.image_name.clone()),
                status: "queued".to_string(),
                visibility: req.visibility.clone().unwrap_or_else(|| "private".to_string()),
                protected: req.protected.unwrap_or(false),
                container_format: Some(req.container_format.clone()),
                disk_format: Some(req.disk_format.clone()),
                // Cinder leaves min_disk at 0 on the images it uploads.
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
                seq,
                generation: 0,
            },
        );
        let image = Target::Image(image_id);
        let done = image_queued + image_saving;
        s.schedule(image.clone(), image_queued, Change::ImageStatus("saving"));
        if req.disk_format == "iso" {
            // Seed 003: accepted, but the image is never created. Cinder
            // deletes the queued image when the copy fails.
            s.schedule(image, done, Change::ImageGone);
        } else {
            s.schedule(image, done, Change::ImageActivated {
                    size: size.saturating_mul(GIB),
                });
        }
        s.schedule(Target::Volume(id.to_string()), done, Change::VolumeUploadDone);
        Ok(body)
    })?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({"os-volume_upload_image": body}),
    ))
}

// ---- metadata ----------------------------------------------------------------

fn metadata_element(body: &Option<Value>, key: &str) -> ApiResult<BTreeMap<String, String>> {
    match body.as_ref().and_then(|b| b.get(key)) {
        Some(m) => parse_metadata(m),
        None => Err(bad_request("Malformed request body")),
    }
}

async fn show_metadata(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let m = app.with(|s| find(s, &ctx.tenant, &id).map(|v| v.metadata.clone()))?;
    Ok(ok_json(&json!({"metadata": m})))
}

async fn merge_metadata(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let new = metadata_element(&parse_body(&body), "metadata")?;
    let m = app.with(|s| -> ApiResult<_> {
        let v = find_mut(s, &ctx.tenant, &id)?;
        v.metadata.extend(new);
        v.updated_at = Some(Utc::now());
        Ok(v.metadata.clone())
    })?;
    Ok(ok_json(&json!({"metadata": m})))
}

async fn replace_metadata(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let new = metadata_element(&parse_body(&body), "metadata")?;
    let m = app.with(|s| -> ApiResult<_> {
        let v = find_mut(s, &ctx.tenant, &id)?;
        v.metadata = new;
        v.updated_at = Some(Utc::now());
        Ok(v.metadata.clone())
    })?;
    Ok(ok_json(&json!({"metadata": m})))
}

fn metadata_item_not_found(id: &str, key: &str) -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        format!("Volume {id} has no metadata with key {key}."),
    )
}

async fn show_metadata_item(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let value = app.with(|s| -> ApiResult<String> {
        let v = find(s, &ctx.tenant, &id)?;
        v.metadata
            .get(&key)
            .cloned()
            .ok_or_else(|| metadata_item_not_found(&id, &key))
    })?;
    Ok(ok_json(&json!({"meta": {key: value}})))
}

async fn put_metadata_item(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    let meta = metadata_element(&parse_body(&body), "meta")?;
    if meta.len() != 1 || !meta.contains_key(&key) {
        return Err(bad_request("Request body and URI mismatch"));
    }
    app.with(|s| -> ApiResult<()> {
        let v = find_mut(s, &ctx.tenant, &id)?;
        v.metadata.extend(meta.clone());
        v.updated_at = Some(Utc::now());
        Ok(())
    })?;
    Ok(ok_json(&json!({"meta": meta})))
}

async fn delete_metadata_item(
    State(app): State<Shared>,
    Extension(api): Extension<Api>,
    Path((tenant, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let ctx = begin(&app, api, &headers, &tenant)?;
    app.with(|s| -> ApiResult<()> {
        let v = find_mut(s, &ctx.tenant, &id)?;
        v.metadata
            .remove(&key)
            .ok_or_else(|| metadata_item_not_found(&id, &key))?;
        v.updated_at = Some(Utc::now());
        Ok(())
    })?;
    Ok(StatusCode::OK.into_response())
}
