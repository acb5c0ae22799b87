//! Identity: NHN's Keystone v2.0 tokens, Keystone v3 tokens (password and
//! application credential), version discovery, and the token check every
//! other API uses.

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use crate::app::Shared;
use crate::config::{Config, DOMAIN_ID, DOMAIN_NAME, TenantConfig, UserConfig};
use crate::http::{
    ApiError, ApiResult, Dialect, base_url, glance_time, header_str, json_response, keystone_time,
    ok_json,
};
use crate::state::Token;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version_v3))
        .route("/identity/v3/", get(version_v3))
        .route("/identity/v2.0", get(version_v2))
        .route("/identity/v2.0/", get(version_v2))
        .route("/identity/v2.0/tokens", post(issue_v2))
        .route(
            "/identity/v3/auth/tokens",
            post(issue_v3).get(validate_v3).delete(revoke_v3),
        )
}

fn keystone_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(Dialect::Identity, status, message)
}

fn unauthorized() -> ApiError {
    keystone_error(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

// ---- discovery ---------------------------------------------------------------

fn v3_entry(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"
        }]
    })
}

fn v2_entry(base: &str) -> Value {
    json!({
        "id": "v2.0",
        "status": "deprecated",
        "updated": "2016-08-04T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v2.0/")}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v2.0+json"
        }]
    })
}

async fn versions(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    json_response(
        StatusCode::MULTIPLE_CHOICES,
        &json!({"versions": {"values": [v3_entry(&base), v2_entry(&base)]}}),
    )
}

async fn version_v3(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    ok_json(&json!({"version": v3_entry(&base)}))
}

async fn version_v2(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &app.fallback_base);
    ok_json(&json!({"version": v2_entry(&base)}))
}

// ---- the token check used by the other APIs -----------------------------------

/// The valid, unexpired token named by `X-Auth-Token`, if any.
pub fn authenticate(app: &Shared, headers: &HeaderMap) -> Option<Token> {
    let id = header_str(headers, "x-auth-token")?.trim();
    let now = Instant::now();
    app.with(|s| s.tokens.get(id).filter(|t| t.expires > now).cloned())
}

// ---- issuing -------------------------------------------------------------------

fn issue(
    app: &Shared,
    tenant: &TenantConfig,
    user: &UserConfig,
    methods: Vec<String>,
    application_credential: Option<String>,
) -> Token {
    let now = Instant::now();
    let lifetime = app.config.token_lifetime;
    let issued_at = Utc::now();
    let token = Token {
        id: uuid::Uuid::new_v4().simple().to_string(),
        tenant_id: tenant.id.clone(),
        user_id: user.id.clone(),
        methods,
        application_credential,
        issued_at,
        expires_at: issued_at + chrono::Duration::from_std(lifetime).unwrap_or_default(),
        expires: now + lifetime,
    };
    app.with(|s| {
        s.purge_tokens(now);
        s.tokens.insert(token.id.clone(), token.clone());
    });
    token
}

fn find_user(
    config: &Config,
    pred: impl Fn(&UserConfig) -> bool,
) -> Option<(&TenantConfig, &UserConfig)> {
    config
        .tenants
        .iter()
        .find_map(|t| t.users.iter().find(|u| pred(u)).map(|u| (t, u)))
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice::<Value>(body).map_err(|_| {
        keystone_error(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON.",
        )
    })
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

async fn issue_v2(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let body = parse_body(&body)?;
    let auth = body.get("auth").ok_or_else(|| {
        keystone_error(
            StatusCode::BAD_REQUEST,
            "Expecting to find auth in request body.",
        )
    })?;
    let username = str_at(auth, &["passwordCredentials", "username"]);
    let password = str_at(auth, &["passwordCredentials", "password"]);
    let (Some(username), Some(password)) = (username, password) else {
        return Err(keystone_error(
            StatusCode::BAD_REQUEST,
            "Expecting to find passwordCredentials with username and password in auth.",
        ));
    };
    let (tenant, user) = find_user(&app.config, |u| u.username == username)
        .filter(|(_, u)| u.password == password)
        .ok_or_else(unauthorized)?;
    let wanted_ok = match (str_at(auth, &["tenantId"]), str_at(auth, &["tenantName"])) {
        (Some(id), _) => id == tenant.id,
        (None, Some(name)) => name == tenant.name,
        (None, None) => true,
    };
    if !wanted_ok {
        return Err(unauthorized());
    }
    let token = issue(&app, tenant, user, Vec::new(), None);
    let base = base_url(&headers, &app.fallback_base);
    let region = &app.config.region;
    let endpoint = |url: String| json!([{"region": region, "publicURL": url}]);
    Ok(ok_json(&json!({
        "access": {
            "token": {
                "id": token.id,
                "issued_at": glance_time(token.issued_at),
                "expires": glance_time(token.expires_at),
                "tenant": {
                    "id": tenant.id,
                    "name": tenant.name,
                    "description": null,
                    "enabled": true,
                },
            },
            "serviceCatalog": [
                {
                    "type": "volumev2",
                    "name": "cinderv2",
                    "endpoints": endpoint(format!("{base}/block-storage/v2/{}", tenant.id)),
                    "endpoints_links": [],
                },
                {
                    "type": "image",
                    "name": "glance",
                    "endpoints": endpoint(format!("{base}/image")),
                    "endpoints_links": [],
                },
                {
                    "type": "identity",
                    "name": "keystone",
                    "endpoints": endpoint(format!("{base}/identity/v2.0")),
                    "endpoints_links": [],
                },
            ],
            "user": {
                "id": user.id,
                "name": user.username,
                "username": user.username,
                "roles": [{"name": "_member_"}],
                "roles_links": [],
            },
            "metadata": {"is_admin": 0, "roles": []},
        }
    })))
}

/// Whether a `{"id"}` / `{"name"}` domain reference names the one domain.
fn domain_matches(domain: Option<&Value>) -> Result<(), ApiError> {
    let Some(d) = domain else {
        return Err(keystone_error(
            StatusCode::BAD_REQUEST,
            "Expecting to find domain in user or project.",
        ));
    };
    let ok = match (str_at(d, &["id"]), str_at(d, &["name"])) {
        (Some(id), _) => id == DOMAIN_ID,
        (None, Some(name)) => name == DOMAIN_NAME,
        (None, None) => false,
    };
    if ok { Ok(()) } else { Err(unauthorized()) }
}

async fn issue_v3(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let body = parse_body(&body)?;
    let identity = body
        .get("auth")
        .and_then(|a| a.get("identity"))
        .ok_or_else(|| {
            keystone_error(
                StatusCode::BAD_REQUEST,
                "Expecting to find identity in auth.",
            )
        })?;
    let methods: Vec<String> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let config = &app.config;
    let (tenant, user, appcred) = if methods.iter().any(|m| m == "password") {
        let u = identity
            .get("password")
            .and_then(|p| p.get("user"))
            .ok_or_else(|| {
                keystone_error(
                    StatusCode::BAD_REQUEST,
                    "Expecting to find user in password.",
                )
            })?;
        let password = str_at(u, &["password"]).ok_or_else(unauthorized)?;
        let found = match (str_at(u, &["id"]), str_at(u, &["name"])) {
            (Some(id), _) => find_user(config, |x| x.id == id),
            (None, Some(name)) => {
                domain_matches(u.get("domain"))?;
                find_user(config, |x| x.username == name)
            }
            (None, None) => {
                return Err(keystone_error(
                    StatusCode::BAD_REQUEST,
                    "Expecting to find id or name in user.",
                ));
            }
        };
        let (t, u) = found
            .filter(|(_, x)| x.password == password)
            .ok_or_else(unauthorized)?;
        (t, u, None)
    } else if methods.iter().any(|m| m == "application_credential") {
        let ac = identity.get("application_credential").ok_or_else(|| {
            keystone_error(
                StatusCode::BAD_REQUEST,
                "Expecting to find application_credential in identity.",
            )
        })?;
        let secret = str_at(ac, &["secret"]).ok_or_else(unauthorized)?;
        let found = config.tenants.iter().find_map(|t| {
            t.users.iter().find_map(|u| {
                u.application_credentials
                    .iter()
                    .find(|c| match (str_at(ac, &["id"]), str_at(ac, &["name"])) {
                        (Some(id), _) => c.id == id,
                        (None, Some(name)) => {
                            c.name.as_deref() == Some(name)
                                && (str_at(ac, &["user", "id"]) == Some(u.id.as_str())
                                    || str_at(ac, &["user", "name"]) == Some(u.username.as_str()))
                        }
                        (None, None) => false,
                    })
                    .map(|c| (t, u, c))
            })
        });
        let (t, u, c) = found
            .filter(|(_, _, c)| c.secret == secret)
            .ok_or_else(unauthorized)?;
        (t, u, Some(c.id.clone()))
    } else {
        return Err(keystone_error(
            StatusCode::UNAUTHORIZED,
            "The emulator supports the password and application_credential methods only.",
        ));
    };

    // Scope: the user's own project (the only one it has a role on).
    if appcred.is_none()
        && let Some(scope) = body.get("auth").and_then(|a| a.get("scope"))
    {
        let Some(project) = scope.get("project") else {
            return Err(keystone_error(
                StatusCode::UNAUTHORIZED,
                "The emulator issues project-scoped tokens only.",
            ));
        };
        let ok = match (str_at(project, &["id"]), str_at(project, &["name"])) {
            (Some(id), _) => id == tenant.id,
            (None, Some(name)) => {
                domain_matches(project.get("domain"))?;
                name == tenant.name
            }
            (None, None) => false,
        };
        if !ok {
            return Err(keystone_error(
                StatusCode::UNAUTHORIZED,
                format!("User {} has no access to the requested project.", user.id),
            ));
        }
    }
    let method = if appcred.is_some() {
        "application_credential"
    } else {
        "password"
    };
    let token = issue(&app, tenant, user, vec![method.to_string()], appcred);
    let base = base_url(&headers, &app.fallback_base);
    let mut resp = json_response(StatusCode::CREATED, &token_v3_body(config, &token, &base));
    if let Ok(v) = HeaderValue::from_str(&token.id) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}

fn token_v3_body(config: &Config, token: &Token, base: &str) -> Value {
    let domain = json!({"id": DOMAIN_ID, "name": DOMAIN_NAME});
    let tenant = config.tenant(&token.tenant_id);
    let user = tenant.and_then(|t| t.users.iter().find(|u| u.id == token.user_id));
    let region = &config.region;
    let endpoint = |service: &str, url: String| {
        json!([{
            "id": stable_id(&format!("endpoint:{service}:{url}")),
            "interface": "public",
            "region": region,
            "region_id": region,
            "url": url,
        }])
    };
    let entry = |kind: &str, name: &str, url: String| {
        json!({
            "id": stable_id(&format!("service:{kind}")),
            "type": kind,
            "name": name,
            "endpoints": endpoint(kind, url),
        })
    };
    let pid = &token.tenant_id;
    let mut body = json!({
        "token": {
            "methods": token.methods,
            "user": {
                "domain": domain,
                "id": token.user_id,
                "name": user.map(|u| u.username.as_str()),
                "password_expires_at": null,
            },
            "audit_ids": [&token.id[..22.min(token.id.len())]],
            "expires_at": keystone_time(token.expires_at),
            "issued_at": keystone_time(token.issued_at),
            "project": {
                "domain": domain,
                "id": pid,
                "name": tenant.map(|t| t.name.as_str()),
            },
            "is_domain": false,
            "roles": [
                {"id": stable_id("role:member"), "name": "member"},
                {"id": stable_id("role:reader"), "name": "reader"},
            ],
            "catalog": [
                entry("volumev3", "cinderv3", format!("{base}/block-storage/v3/{pid}")),
                entry("block-storage", "cinder", format!("{base}/block-storage/v3/{pid}")),
                entry("volumev2", "cinderv2", format!("{base}/block-storage/v2/{pid}")),
                entry("image", "glance", format!("{base}/image")),
                entry("identity", "keystone", format!("{base}/identity")),
            ],
        }
    });
    if let Some(ac) = &token.application_credential {
        body["token"]["application_credential"] = json!({
            "id": ac,
            "name": ac,
            "restricted": true,
        });
    }
    body
}

/// A 32-hex ID that is the same for the same seed.
pub fn stable_id(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(seed.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token named by `X-Subject-Token`, checked with `X-Auth-Token`.
fn subject(app: &Shared, headers: &HeaderMap) -> ApiResult<Token> {
    authenticate(app, headers).ok_or_else(unauthorized)?;
    let id = header_str(headers, "x-subject-token").unwrap_or("").trim();
    let now = Instant::now();
    app.with(|s| s.tokens.get(id).filter(|t| t.expires > now).cloned())
        .ok_or_else(|| {
            keystone_error(
                StatusCode::NOT_FOUND,
                format!("Could not find token: {id}."),
            )
        })
}

async fn validate_v3(State(app): State<Shared>, headers: HeaderMap) -> ApiResult {
    let token = subject(&app, &headers)?;
    let base = base_url(&headers, &app.fallback_base);
    let mut resp = ok_json(&token_v3_body(&app.config, &token, &base));
    if let Ok(v) = HeaderValue::from_str(&token.id) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}

async fn revoke_v3(State(app): State<Shared>, headers: HeaderMap) -> ApiResult {
    let token = subject(&app, &headers)?;
    app.with(|s| s.tokens.remove(&token.id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The 401 that keystonemiddleware-protected services answer, in the
/// service's own body shape, with the `WWW-Authenticate` hint.
pub fn service_unauthorized(dialect: Dialect, base: &str) -> ApiError {
    let message = match dialect {
        Dialect::Image => {
            "This server could not verify that you are authorized to access the document you requested. Either you supplied the wrong credentials (e.g., bad password), or your browser does not understand how to supply the credentials required."
        }
        _ => "The request you have made requires authentication.",
    };
    // keystonemiddleware answers for Cinder, in Keystone's own error shape.
    let dialect = match dialect {
        Dialect::BlockStorage => Dialect::Identity,
        other => other,
    };
    ApiError::new(dialect, StatusCode::UNAUTHORIZED, message).with_header(
        header::WWW_AUTHENTICATE,
        format!("Keystone uri=\"{base}/identity\""),
    )
}
