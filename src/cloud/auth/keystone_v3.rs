//! Keystone v3 tokens: password (project by id or by name + domain) and
//! application credentials.
//!
//! `POST {auth_url}/auth/tokens` (adding `/v3` when `auth_url` lacks a
//! version, as keystoneauth's discovery ends up doing); the token is in the
//! `X-Subject-Token` header, the catalog in `token.catalog[]`.

use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::{Catalog, CatalogEndpoint, CatalogService};
use super::{LoginAnswer, parse_time};
use crate::cloud::credentials::{
    ApplicationCredentialRef, DomainRef, Interface, KeystoneApplicationCredentialAuth,
    KeystonePasswordAuth, ProjectRef, SecretString, UserRef,
};
use crate::cloud::error::CloudError;
use crate::cloud::transport::{Body, CloudHttp, HttpRequest};

pub(crate) fn tokens_url(auth_url: &str) -> Result<Url, CloudError> {
    let base = auth_url.trim_end_matches('/');
    let url = if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    };
    Url::parse(&url).map_err(|e| CloudError::config(format!("auth.auth_url: {e}")))
}

fn domain(d: &DomainRef) -> Value {
    match d {
        DomainRef::Id(id) => json!({ "id": id }),
        DomainRef::Name(name) => json!({ "name": name }),
    }
}

fn user(u: &UserRef) -> Value {
    match u {
        UserRef::Id(id) => json!({ "id": id }),
        UserRef::Name { name, domain: d } => json!({ "name": name, "domain": domain(d) }),
    }
}

fn password_body(auth: &KeystonePasswordAuth) -> Value {
    let mut u = user(&auth.user);
    u["password"] = Value::String(auth.password.expose().to_string());
    let project = match &auth.project {
        ProjectRef::Id(id) => json!({ "id": id }),
        ProjectRef::Name { name, domain: d } => json!({ "name": name, "domain": domain(d) }),
    };
    json!({
        "auth": {
            "identity": { "methods": ["password"], "password": { "user": u } },
            "scope": { "project": project }
        }
    })
}

fn application_credential_body(auth: &KeystoneApplicationCredentialAuth) -> Value {
    let mut cred = match &auth.credential {
        ApplicationCredentialRef::Id(id) => json!({ "id": id }),
        ApplicationCredentialRef::Name { name, user: u } => {
            json!({ "name": name, "user": user(u) })
        }
    };
    cred["secret"] = Value::String(auth.secret.expose().to_string());
    // An application credential is bound to its project: no scope.
    json!({
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": cred
            }
        }
    })
}

#[derive(Deserialize)]
struct Answer {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    project: Option<Project>,
    #[serde(default)]
    catalog: Vec<V3Service>,
}

#[derive(Deserialize)]
struct Project {
    id: String,
}

#[derive(Deserialize)]
struct V3Service {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<V3Endpoint>,
}

#[derive(Deserialize)]
struct V3Endpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

pub(crate) async fn login_password(
    http: &CloudHttp,
    client: &reqwest::Client,
    auth: &KeystonePasswordAuth,
) -> Result<LoginAnswer, CloudError> {
    login(http, client, &auth.auth_url, password_body(auth)).await
}

pub(crate) async fn login_application_credential(
    http: &CloudHttp,
    client: &reqwest::Client,
    auth: &KeystoneApplicationCredentialAuth,
) -> Result<LoginAnswer, CloudError> {
    login(
        http,
        client,
        &auth.auth_url,
        application_credential_body(auth),
    )
    .await
}

async fn login(
    http: &CloudHttp,
    client: &reqwest::Client,
    auth_url: &str,
    body: Value,
) -> Result<LoginAnswer, CloudError> {
    let req = HttpRequest::login(tokens_url(auth_url)?, Body::json(&body)?);
    let resp = http.execute(client, &req, None).await?;
    if !resp.status.is_success() {
        return Err(super::login_error(&resp));
    }
    let token = resp
        .headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            CloudError::decode("the identity service answered without an X-Subject-Token header")
        })?
        .to_string();
    let answer: Answer = resp.json()?;
    let catalog = Catalog {
        services: answer
            .token
            .catalog
            .into_iter()
            .map(|s| CatalogService {
                service_type: s.service_type,
                endpoints: s
                    .endpoints
                    .into_iter()
                    .filter_map(|e| {
                        let interface = match e.interface.as_str() {
                            "public" => Interface::Public,
                            "internal" => Interface::Internal,
                            "admin" => Interface::Admin,
                            _ => return None,
                        };
                        let mut regions: Vec<String> = e.region.into_iter().collect();
                        if let Some(id) = e.region_id
                            && !regions.contains(&id)
                        {
                            regions.push(id);
                        }
                        Some(CatalogEndpoint {
                            interface,
                            regions,
                            url: e.url,
                        })
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok(LoginAnswer {
        token: SecretString::new(token),
        project_id: answer.token.project.map(|p| p.id),
        expires_at: answer.token.expires_at.as_deref().and_then(parse_time),
        issued_at: answer.token.issued_at.as_deref().and_then(parse_time),
        catalog,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_url_with_or_without_v3() {
        assert_eq!(
            tokens_url("https://k:5000/v3").unwrap().as_str(),
            "https://k:5000/v3/auth/tokens"
        );
        assert_eq!(
            tokens_url("https://k:5000/").unwrap().as_str(),
            "https://k:5000/v3/auth/tokens"
        );
        assert_eq!(
            tokens_url("https://k/identity").unwrap().as_str(),
            "https://k/identity/v3/auth/tokens"
        );
    }

    #[test]
    fn password_body_scopes_to_the_project() {
        let body = password_body(&KeystonePasswordAuth {
            auth_url: "https://k/v3".into(),
            user: UserRef::Name {
                name: "demo".into(),
                domain: DomainRef::Name("Default".into()),
            },
            password: SecretString::new("pw"),
            project: ProjectRef::Name {
                name: "demo".into(),
                domain: DomainRef::Id("default".into()),
            },
        });
        assert_eq!(
            body,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "demo", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}
            }})
        );
    }

    #[test]
    fn application_credential_body_has_no_scope() {
        let body = application_credential_body(&KeystoneApplicationCredentialAuth {
            auth_url: "https://k/v3".into(),
            credential: ApplicationCredentialRef::Id("demo-appcred".into()),
            secret: SecretString::new("s"),
        });
        assert_eq!(
            body,
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "demo-appcred", "secret": "s"}}}})
        );
    }
}
