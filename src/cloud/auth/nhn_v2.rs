//! NHN Cloud identity: Keystone v2.0 tokens.
//!
//! `POST {auth_url}/tokens` with `{"auth": {"tenantId", "passwordCredentials":
//! {"username", "password"}}}`; the answer holds `access.token.{id, expires}`
//! and `access.serviceCatalog[]` (`volumev2` ends in `/v2/{tenantId}`, `image`
//! has no version suffix).

use reqwest::Url;
use serde::Deserialize;

use super::catalog::{Catalog, CatalogEndpoint, CatalogService};
use super::{LoginAnswer, parse_time};
use crate::cloud::credentials::{Interface, NhnV2Auth, SecretString};
use crate::cloud::error::CloudError;
use crate::cloud::transport::{Body, CloudHttp, HttpRequest};

/// `{auth_url}/tokens`, adding `/v2.0` when the URL lacks it.
pub(crate) fn tokens_url(auth_url: &str) -> Result<Url, CloudError> {
    let base = auth_url.trim_end_matches('/');
    let url = if base.ends_with("/v2.0") {
        format!("{base}/tokens")
    } else {
        format!("{base}/v2.0/tokens")
    };
    Url::parse(&url).map_err(|e| CloudError::config(format!("auth.auth_url: {e}")))
}

#[derive(Deserialize)]
struct Answer {
    access: Access,
}

#[derive(Deserialize)]
struct Access {
    token: TokenBody,
    #[serde(default, rename = "serviceCatalog")]
    service_catalog: Vec<V2Service>,
}

#[derive(Deserialize)]
struct TokenBody {
    id: String,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    tenant: Option<Tenant>,
}

#[derive(Deserialize)]
struct Tenant {
    id: String,
}

#[derive(Deserialize)]
struct V2Service {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<V2Endpoint>,
}

#[derive(Deserialize)]
struct V2Endpoint {
    #[serde(default)]
    region: Option<String>,
    #[serde(default, rename = "publicURL")]
    public_url: Option<String>,
    #[serde(default, rename = "internalURL")]
    internal_url: Option<String>,
    #[serde(default, rename = "adminURL")]
    admin_url: Option<String>,
}

pub(crate) async fn login(
    http: &CloudHttp,
    client: &reqwest::Client,
    auth: &NhnV2Auth,
) -> Result<LoginAnswer, CloudError> {
    let body = serde_json::json!({
        "auth": {
            "tenantId": auth.tenant_id,
            "passwordCredentials": {
                "username": auth.username,
                "password": auth.password.expose(),
            }
        }
    });
    let req = HttpRequest::login(tokens_url(&auth.auth_url)?, Body::json(&body)?);
    let resp = http.execute(client, &req, None).await?;
    if !resp.status.is_success() {
        return Err(super::login_error(&resp));
    }
    let answer: Answer = resp.json()?;
    let token = answer.access.token;
    let catalog = Catalog {
        services: answer
            .access
            .service_catalog
            .into_iter()
            .map(|s| CatalogService {
                service_type: s.service_type,
                endpoints: s
                    .endpoints
                    .into_iter()
                    .flat_map(|e| {
                        let regions: Vec<String> = e.region.into_iter().collect();
                        [
                            (Interface::Public, e.public_url),
                            (Interface::Internal, e.internal_url),
                            (Interface::Admin, e.admin_url),
                        ]
                        .into_iter()
                        .filter_map(move |(interface, url)| {
                            url.map(|url| CatalogEndpoint {
                                interface,
                                regions: regions.clone(),
                                url,
                            })
                        })
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok(LoginAnswer {
        token: SecretString::new(token.id),
        project_id: Some(
            token
                .tenant
                .map(|t| t.id)
                .unwrap_or_else(|| auth.tenant_id.clone()),
        ),
        expires_at: token.expires.as_deref().and_then(parse_time),
        issued_at: token.issued_at.as_deref().and_then(parse_time),
        catalog,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_url_handles_both_spellings() {
        assert_eq!(
            tokens_url("https://id.example.com/v2.0").unwrap().as_str(),
            "https://id.example.com/v2.0/tokens"
        );
        assert_eq!(
            tokens_url("https://id.example.com/identity/")
                .unwrap()
                .as_str(),
            "https://id.example.com/identity/v2.0/tokens"
        );
    }
}
