//! Samsung Cloud Platform's signed image API (SCP's virtualserver API, docs/sources.md): show one image, and
//! (an assumption, documented in the README) list images.

use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::app::Shared;
use crate::config::TenantConfig;
use crate::http::{
    ApiError, ApiResult, Dialect, Query, base_url, glance_time, header_str, ok_json,
};
use crate::image::can_show;
use crate::state::Image;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/scp/v1/images", get(list_images))
        .route("/scp/v1/images/{image_id}", get(show_image))
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(Dialect::Scp, StatusCode::UNAUTHORIZED, message)
}

/// `base64(HMAC-SHA256(secret, METHOD + URL + timestamp + access_key +
/// account_id + "Openapi"))`.
pub fn signature(
    secret_key: &str,
    method: &str,
    url: &str,
    timestamp: &str,
    access_key: &str,
    account_id: &str,
) -> String {
    let message = format!("{method}{url}{timestamp}{access_key}{account_id}Openapi");
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(message.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The tenant whose SCP keys signed this request.
fn verify<'a>(
    app: &'a Shared,
    method: &Method,
    uri: &OriginalUri,
    headers: &HeaderMap,
) -> ApiResult<&'a TenantConfig> {
    let access_key = header_str(headers, "scp-accesskey")
        .ok_or_else(|| unauthorized("Scp-AccessKey header is missing."))?;
    let given = header_str(headers, "scp-signature")
        .ok_or_else(|| unauthorized("Scp-Signature header is missing."))?;
    let timestamp = header_str(headers, "scp-timestamp")
        .ok_or_else(|| unauthorized("Scp-Timestamp header is missing."))?;
    if let Some(ct) = header_str(headers, "scp-clienttype")
        && ct != "Openapi"
    {
        return Err(unauthorized("Scp-ClientType must be Openapi."));
    }
    let tenant = app
        .config
        .tenants
        .iter()
        .find(|t| t.scp.as_ref().is_some_and(|s| s.access_key == access_key))
        .ok_or_else(|| unauthorized("Unknown access key."))?;
    let Some(scp) = &tenant.scp else {
        return Err(unauthorized("Unknown access key."));
    };
    if let Some(acc) = header_str(headers, "scp-accountid")
        && acc != scp.account_id
    {
        return Err(unauthorized("Scp-AccountId does not match the access key."));
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| unauthorized("Scp-Timestamp must be milliseconds since the epoch."))?;
    let now = chrono::Utc::now().timestamp_millis();
    let skew = i64::try_from(app.config.scp_clock_skew.as_millis()).unwrap_or(i64::MAX);
    if (now - ts).abs() > skew {
        return Err(unauthorized(
            "Scp-Timestamp is outside the allowed clock skew.",
        ));
    }
    let path_and_query = uri.0.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let url = format!("{}{path_and_query}", base_url(headers, &app.fallback_base));
    let expected = signature(
        &scp.secret_key,
        method.as_str(),
        &url,
        timestamp.trim(),
        access_key,
        &scp.account_id,
    );
    if !constant_time_eq(expected.as_bytes(), given.trim().as_bytes()) {
        return Err(unauthorized("Signature does not match."));
    }
    Ok(tenant)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seed 002's ImageShowResponse, filled from the shared image store.
fn scp_view(img: &Image, tenant: &TenantConfig) -> Value {
    let owner_account = if img.owner == tenant.id {
        tenant.scp.as_ref().map(|s| s.account_id.clone())
    } else {
        None
    };
    json!({
        "checksum": img.checksum,
        "container_format": img.container_format,
        "created_at": glance_time(img.created_at),
        "disk_format": img.disk_format,
        "file": format!("/v2/images/{}/file", img.id),
        "id": img.id,
        "min_disk": img.min_disk,
        "min_ram": img.min_ram,
        "name": img.name,
        "os_distro": img.properties.get("os_distro"),
        "os_hash_algo": img.os_hash_value.as_ref().map(|_| "sha512"),
        "os_hash_value": img.os_hash_value,
        "os_hidden": false,
        "owner": img.owner,
        "owner_account_name": owner_account,
        "owner_user_name": null,
        "protected": img.protected,
        "root_device_name": "/dev/vda",
        "scp_image_type": "custom",
        "scp_k8s_version": null,
        "scp_original_image_type": img.properties.get("scp_original_image_type"),
        "scp_os_build_version": img.properties.get("scp_os_build_version"),
        "scp_os_version": img.properties.get("os_version"),
        "size": img.size,
        "status": img.status,
        "updated_at": glance_time(img.updated_at),
        "url": null,
        "virtual_size": img.virtual_size,
        "visibility": img.visibility,
        "volumes": "[]",
    })
}

async fn show_image(
    State(app): State<Shared>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let tenant = verify(&app, &method, &uri, &headers)?;
    let view = app.with(|s| {
        s.images
            .get(&id)
            .filter(|i| can_show(i, &tenant.id))
            .map(|i| scp_view(i, tenant))
    });
    match view {
        Some(v) => Ok(ok_json(&v)),
        None => Err(ApiError::new(
            Dialect::Scp,
            StatusCode::NOT_FOUND,
            format!("Image {id} not found."),
        )),
    }
}

async fn list_images(
    State(app): State<Shared>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> ApiResult {
    let tenant = verify(&app, &method, &uri, &headers)?;
    let q = Query::parse(uri.0.query());
    let images = app.with(|s| {
        let mut imgs: Vec<&Image> = s
            .images
            .values()
            .filter(|i| {
                i.owner == tenant.id
                    || i.visibility == "public"
                    || (i.visibility == "shared"
                        && i.members
                            .get(&tenant.id)
                            .is_some_and(|m| m.status == "accepted"))
            })
            .filter(|i| q.get("name").is_none_or(|n| i.name.as_deref() == Some(n)))
            .filter(|i| q.get("status").is_none_or(|st| i.status == st))
            .filter(|i| q.get("visibility").is_none_or(|v| i.visibility == v))
            .collect();
        imgs.sort_by_key(|i| std::cmp::Reverse(i.seq));
        imgs.into_iter()
            .map(|i| scp_view(i, tenant))
            .collect::<Vec<_>>()
    });
    Ok(ok_json(&json!({"count": images.len(), "images": images})))
}
