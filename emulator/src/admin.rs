//! The admin API (`/_admin`, no authentication): what no cloud API offers —
//! attaching volumes, snapshots, forcing states, fault injection, request
//! counts, raw listings and reset. Also the middleware that counts cloud
//! requests and applies fault rules to them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use crate::app::{ConnKill, Shared};
use crate::block_storage::{Api, volume_detail};
use crate::fault::{FaultRule, take_fault};
use crate::http::{
    ApiError, ApiResult, Dialect, base_url, error_body, json_response, no_content, ok_json,
};
use crate::image::image_view;
use crate::state::{Attachment, Change, Image, Snapshot, Target};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/_admin/volumes", get(list_volumes))
        .route("/_admin/volumes/{volume_id}/attach", post(attach))
        .route("/_admin/volumes/{volume_id}/detach", post(detach))
        .route(
            "/_admin/volumes/{volume_id}/snapshots",
            post(create_snapshot).delete(delete_snapshots),
        )
        .route(
            "/_admin/volumes/{volume_id}/state",
            post(force_volume_state),
        )
        .route("/_admin/snapshots", get(list_snapshots))
        .route("/_admin/images", get(list_images).post(create_image))
        .route("/_admin/images/{image_id}/state", post(force_image_state))
        .route(
            "/_admin/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_admin/requests", get(request_counts).delete(reset_counts))
        .route("/_admin/reset", post(reset))
}

fn err(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(Dialect::Plain, status, message)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    err(StatusCode::BAD_REQUEST, message)
}

fn json_body(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

fn volume_not_found(id: &str) -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        format!("Volume {id} could not be found."),
    )
}

// ---- volumes -----------------------------------------------------------------

async fn list_volumes(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    let volumes = app.with(|s| {
        let mut snapshots: HashMap<&str, Vec<&str>> = HashMap::new();
        for x in s.snapshots.values() {
            snapshots.entry(&x.volume_id).or_default().push(&x.id);
        }
        let mut vols: Vec<_> = s.volumes.values().collect();
        vols.sort_by_key(|v| v.seq);
        vols.into_iter()
            .map(|v| {
                let mut view = volume_detail(v, &base, Api::V2);
                let snaps = snapshots.get(v.id.as_str()).cloned().unwrap_or_default();
                view["snapshots"] = json!(snaps);
                view
            })
            .collect::<Vec<_>>()
    });
    ok_json(&json!({"volumes": volumes}))
}

async fn attach(State(app): State<Shared>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    let server_id = body
        .get("server_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let delay = app.config.transitions.volume_attach;
    let view = app.with(|s| -> ApiResult<Value> {
        let v = s.volumes.get_mut(&id).ok_or_else(|| volume_not_found(&id))?;
        let ok = v.status == "available" || (v.status == "in-use" && v.multiattach);
        if !ok {
            return Err(bad_request(format!(
                "Invalid volume: Volume {id} status must be available to attach, but current status is: {}.",
                v.status
            )));
        }
        if v.attachments.iter().any(|a| a.server_id == server_id) {
            return Err(bad_request(format!(
                "Volume {id} is already attached to server {server_id}."
            )));
        }
        let device = format!("/dev/vd{}", (b'b' + v.attachments.len().min(24) as u8) as char);
        let attachment = Attachment {
            id: uuid::Uuid::new_v4().to_string(),
            server_id: server_id.clone(),
            device,
            attached_at: Utc::now(),
        };
        v.status = "attaching".to_string();
        v.updated_at = Some(Utc::now());
        let view = json!({
            "volume_id": id,
            "server_id": server_id,
            "attachment_id": attachment.id,
            "device": attachment.device,
            "status": "attaching",
        });
        s.schedule(
            Target::Volume(id.clone()),
            delay,
            Change::VolumeAttached { attachment },
        );
        Ok(view)
    })?;
    Ok(json_response(StatusCode::ACCEPTED, &view))
}

async fn detach(State(app): State<Shared>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    let server_id = body
        .get("server_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let delay = app.config.transitions.volume_detach;
    app.with(|s| -> ApiResult<()> {
        let v = s.volumes.get_mut(&id).ok_or_else(|| volume_not_found(&id))?;
        if v.status != "in-use" || v.attachments.is_empty() {
            return Err(bad_request(format!(
                "Invalid volume: Volume {id} must be in-use and attached to detach, but current status is: {}.",
                v.status
            )));
        }
        if let Some(sid) = &server_id
            && !v.attachments.iter().any(|a| &a.server_id == sid)
        {
            return Err(bad_request(format!(
                "Volume {id} is not attached to server {sid}."
            )));
        }
        v.status = "detaching".to_string();
        v.updated_at = Some(Utc::now());
        s.schedule(
            Target::Volume(id.clone()),
            delay,
            Change::VolumeDetached { server_id },
        );
        Ok(())
    })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

fn snapshot_view(x: &Snapshot) -> Value {
    json!({
        "id": x.id,
        "volume_id": x.volume_id,
        "tenant_id": x.tenant_id,
        "name": x.name,
        "size": x.size,
        "status": x.status,
        "created_at": crate::http::cinder_time(x.created_at),
    })
}

async fn create_snapshot(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = json_body(&body)?;
    let name = body.get("name").and_then(Value::as_str).map(str::to_string);
    let view = app.with(|s| -> ApiResult<Value> {
        let v = s.volumes.get(&id).ok_or_else(|| volume_not_found(&id))?;
        let snap = Snapshot {
            id: uuid::Uuid::new_v4().to_string(),
            volume_id: id.clone(),
            tenant_id: v.tenant_id.clone(),
            name,
            size: v.size,
            status: "available".to_string(),
            created_at: Utc::now(),
        };
        let view = snapshot_view(&snap);
        s.snapshots.insert(snap.id.clone(), snap);
        Ok(view)
    })?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"snapshot": view}),
    ))
}

async fn delete_snapshots(State(app): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let deleted = app.with(|s| -> ApiResult<usize> {
        if !s.volumes.contains_key(&id) {
            return Err(volume_not_found(&id));
        }
        let before = s.snapshots.len();
        s.snapshots.retain(|_, x| x.volume_id != id);
        Ok(before - s.snapshots.len())
    })?;
    Ok(ok_json(&json!({"deleted": deleted})))
}

async fn list_snapshots(State(app): State<Shared>) -> Response {
    let snaps = app.with(|s| {
        let mut v: Vec<&Snapshot> = s.snapshots.values().collect();
        v.sort_by_key(|x| x.created_at);
        v.into_iter().map(snapshot_view).collect::<Vec<_>>()
    });
    ok_json(&json!({"snapshots": snaps}))
}

fn wanted_status(body: &Value) -> ApiResult<String> {
    body.get("status")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| bad_request("body must be {\"status\": \"<any non-empty string>\"}"))
}

async fn force_volume_state(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let status = wanted_status(&json_body(&body)?)?;
    let base = base_url(&headers, &app.fallback_base);
    let view = app.with(|s| -> ApiResult<Value> {
        s.cancel(&Target::Volume(id.clone()));
        let v = s
            .volumes
            .get_mut(&id)
            .ok_or_else(|| volume_not_found(&id))?;
        v.status = status;
        v.updated_at = Some(Utc::now());
        Ok(volume_detail(v, &base, Api::V2))
    })?;
    Ok(ok_json(&json!({"volume": view})))
}

// ---- images ------------------------------------------------------------------

fn admin_image_view(img: &Image) -> Value {
    let mut v = image_view(img);
    v["members"] = json!(
        img.members
            .values()
            .map(|m| json!({"member_id": m.member_id, "status": m.status}))
            .collect::<Vec<_>>()
    );
    v
}

async fn list_images(State(app): State<Shared>) -> Response {
    let images = app.with(|s| {
        let mut imgs: Vec<&Image> = s.images.values().collect();
        imgs.sort_by_key(|i| i.seq);
        imgs.into_iter().map(admin_image_view).collect::<Vec<_>>()
    });
    ok_json(&json!({"images": images}))
}

/// Put an image straight into the store, with any owner, visibility
/// (including `public`) and status: for public images and test fixtures.
async fn create_image(State(app): State<Shared>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let owner = s("owner").ok_or_else(|| bad_request("owner (a tenant id) is required"))?;
    let id = s("id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let now = Utc::now();
    let size = body.get("size").and_then(Value::as_u64);
    let properties = body
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let tags = body
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut img = Image {
        id: id.clone(),
        owner,
        name: s("name"),
        status: s("status").unwrap_or_else(|| "active".to_string()),
        visibility: s("visibility").unwrap_or_else(|| "private".to_string()),
        protected: body
            .get("protected")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        container_format: s("container_format").or_else(|| Some("bare".to_string())),
        disk_format: s("disk_format").or_else(|| Some("qcow2".to_string())),
        min_disk: body.get("min_disk").and_then(Value::as_u64).unwrap_or(0),
        min_ram: body.get("min_ram").and_then(Value::as_u64).unwrap_or(0),
        size,
        virtual_size: body.get("virtual_size").and_then(Value::as_u64).or(size),
        checksum: size.map(|n| crate::digest::md5_hex(format!("{id}:{n}").as_bytes())),
        os_hash_value: size.map(|n| crate::digest::sha512_hex(format!("{id}:{n}").as_bytes())),
        tags,
        properties,
        data: None,
        members: BTreeMap::new(),
        created_at: now,
        updated_at: now,
        seq: 0,
        generation: 0,
    };
    let view = app.with(|st| -> ApiResult<Value> {
        if st.images.contains_key(&id) {
            return Err(err(
                StatusCode::CONFLICT,
                format!("Image {id} already exists."),
            ));
        }
        img.seq = st.next_seq();
        let view = admin_image_view(&img);
        st.images.insert(id.clone(), img);
        Ok(view)
    })?;
    Ok(json_response(StatusCode::CREATED, &view))
}

async fn force_image_state(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let status = wanted_status(&json_body(&body)?)?;
    let view = app.with(|s| -> ApiResult<Value> {
        s.cancel(&Target::Image(id.clone()));
        let img = s.images.get_mut(&id).ok_or_else(|| {
            err(
                StatusCode::NOT_FOUND,
                format!("No image found with ID {id}"),
            )
        })?;
        img.status = status;
        img.updated_at = Utc::now();
        Ok(admin_image_view(img))
    })?;
    Ok(ok_json(&view))
}

// ---- faults ------------------------------------------------------------------

async fn list_faults(State(app): State<Shared>) -> Response {
    let faults = app.with(|s| s.faults.clone());
    ok_json(&json!({"faults": faults}))
}

async fn add_fault(State(app): State<Shared>, body: Bytes) -> ApiResult {
    let rule: FaultRule = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("invalid fault rule: {e}")))?;
    if rule.count == 0 {
        return Err(bad_request("count must be at least 1"));
    }
    if let Some(st) = rule.status
        && StatusCode::from_u16(st).is_err()
    {
        return Err(bad_request(format!("{st} is not an HTTP status")));
    }
    if rule.status.is_none() && rule.delay_ms.is_none() && !rule.drop_connection {
        return Err(bad_request(
            "a fault needs at least one of status, delay_ms, drop_connection",
        ));
    }
    let view = serde_json::to_value(&rule).unwrap_or(Value::Null);
    app.with(|s| s.faults.push(rule));
    Ok(json_response(StatusCode::CREATED, &view))
}

async fn clear_faults(State(app): State<Shared>) -> Response {
    app.with(|s| s.faults.clear());
    no_content()
}

async fn request_counts(State(app): State<Shared>) -> Response {
    let counts = app.with(|s| s.counts.clone());
    ok_json(&json!(counts))
}

async fn reset_counts(State(app): State<Shared>) -> Response {
    app.with(|s| s.counts.clear());
    no_content()
}

async fn reset(State(app): State<Shared>) -> Response {
    app.with(|s| s.reset());
    no_content()
}

/// Counts every cloud request under `"<METHOD> <route template>"`, then
/// applies the first matching fault rule before or after the handler.
pub async fn count_and_fault(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_admin") {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_string();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "(no route)".to_string());
    let key = format!("{method} {template}");
    let kill = req.extensions().get::<ConnKill>().cloned();
    let fault = app.with(|s| {
        *s.counts.entry(key).or_default() += 1;
        take_fault(&mut s.faults, &method, &path)
    });
    let mut resp = match fault {
        None => next.run(req).await,
        Some(rule) if !rule.after_action => match apply_fault(&rule, &path, kill).await {
            Some(resp) => resp,
            None => next.run(req).await,
        },
        Some(rule) => {
            let resp = next.run(req).await;
            apply_fault(&rule, &path, kill).await.unwrap_or(resp)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&format!("req-{}", uuid::Uuid::new_v4())) {
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    resp
}

/// Delays, drops the connection, or answers with the rule's status; `None`
/// lets the request proceed (a delay-only rule).
async fn apply_fault(rule: &FaultRule, path: &str, kill: Option<ConnKill>) -> Option<Response> {
    if let Some(ms) = rule.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if rule.drop_connection {
        match kill {
            Some(k) => {
                k.kill();
                // The connection task drops this request with the connection.
                std::future::pending::<()>().await;
            }
            None => {
                return Some(
                    err(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "drop_connection outside a served connection",
                    )
                    .into_response(),
                );
            }
        }
    }
    let status = StatusCode::from_u16(rule.status?).ok()?;
    let message = rule.message.clone().unwrap_or_else(|| {
        format!(
            "Injected fault: {}",
            status.canonical_reason().unwrap_or("error")
        )
    });
    let body = error_body(Dialect::of_path(path), status, &message);
    let mut resp = json_response(status, &body);
    if let Some(secs) = rule.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(resp)
}
