//! A session is one set of credentials bound to the HTTP layer: it resolves
//! service endpoints (catalog or override), authenticates each request
//! (token, or SCP signature), and on a 401 refreshes the token once and
//! retries once. Sessions are opened by [`super::connector::Connector`];
//! the service modules (cinder, glance, scp_image) use a session and never
//! the connector.

use std::sync::Arc;

use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::auth::backoff::{CredentialsKey, LoginGate};
use super::auth::{self, Token, TokenSlot, scp};
use super::credentials::{Auth, CloudCredentials};
use super::error::CloudError;
use super::transport::{Body, CloudHttp, HttpRequest, HttpResponse, Service};

/// Block-storage API flavour, chosen by the credentials' auth type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockStorageDialect {
    /// NHN Cloud: Cinder v2 with NHN's extensions.
    NhnV2,
    /// Upstream Cinder v3.
    CinderV3,
}

impl BlockStorageDialect {
    fn catalog_types(self) -> &'static [&'static str] {
        match self {
            BlockStorageDialect::NhnV2 => &["volumev2", "volume", "block-storage", "volumev3"],
            BlockStorageDialect::CinderV3 => &["block-storage", "volumev3"],
        }
    }

    fn version(self) -> &'static str {
        match self {
            BlockStorageDialect::NhnV2 => "v2",
            BlockStorageDialect::CinderV3 => "v3",
        }
    }
}

/// One request to a service, relative to its endpoint.
pub(crate) struct ServiceRequest {
    pub service: Service,
    pub method: Method,
    /// Appended to the endpoint, e.g. `/volumes/detail`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Option<Body>,
}

impl ServiceRequest {
    pub(crate) fn new(service: Service, method: Method, path: impl Into<String>) -> Self {
        ServiceRequest {
            service,
            method,
            path: path.into(),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
        }
    }

    pub(crate) fn query(mut self, query: Vec<(String, String)>) -> Self {
        self.query = query;
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
        self
    }
}

pub(crate) struct Session {
    http: CloudHttp,
    client: reqwest::Client,
    creds: CloudCredentials,
    /// `None` for SCP, which signs instead.
    tokens: Option<Arc<TokenSlot>>,
    /// Refused credentials wait here before they are tried again.
    gate: Arc<LoginGate>,
    gate_key: CredentialsKey,
}

impl Session {
    pub(crate) fn new(
        http: CloudHttp,
        client: reqwest::Client,
        creds: CloudCredentials,
        tokens: Option<Arc<TokenSlot>>,
        gate: Arc<LoginGate>,
    ) -> Self {
        let gate_key = CredentialsKey::of(&creds);
        Session {
            http,
            client,
            creds,
            tokens,
            gate,
            gate_key,
        }
    }

    pub(crate) fn credentials(&self) -> &CloudCredentials {
        &self.creds
    }

    pub(crate) fn block_storage_dialect(&self) -> Option<BlockStorageDialect> {
        match self.creds.auth {
            Auth::NhnV2(_) => Some(BlockStorageDialect::NhnV2),
            Auth::KeystonePassword(_) | Auth::KeystoneApplicationCredential(_) => {
                Some(BlockStorageDialect::CinderV3)
            }
            Auth::Scp(_) => None,
        }
    }

    /// A fresh token (logging in if needed). Errors for SCP.
    pub(crate) async fn token(&self) -> Result<Arc<Token>, CloudError> {
        let slot = self.tokens.as_ref().ok_or_else(|| {
            CloudError::unsupported("SCP credentials sign each request; there is no token")
        })?;
        // Inside the slot's lock: callers queued behind a refused login
        // find the refusal and fail without a request.
        slot.get(|| async {
            let attempt = self.gate.admit(&self.gate_key)?;
            match auth::login(&self.http, &self.client, &self.creds.auth).await {
                Ok(answer) => {
                    attempt.accepted();
                    Ok(answer)
                }
                Err(err @ CloudError::InvalidCredentials { .. }) => Err(attempt.refused(err)),
                Err(err) => Err(err),
            }
        })
        .await
    }

    /// The base URL of `service`, without a trailing slash.
    pub(crate) async fn endpoint(&self, service: Service) -> Result<String, CloudError> {
        if self.tokens.is_none() {
            return self.static_endpoint(service);
        }
        let token = self.token().await?;
        self.resolve(service, &token)
    }

    fn static_endpoint(&self, service: Service) -> Result<String, CloudError> {
        match service {
            Service::Image => self
                .creds
                .image_endpoint_override
                .clone()
                .ok_or_else(|| CloudError::config("missing `image_endpoint_override`")),
            other => Err(CloudError::unsupported(format!(
                "{} is not offered for SCP credentials",
                other.as_str()
            ))),
        }
    }

    fn resolve(&self, service: Service, token: &Token) -> Result<String, CloudError> {
        let project = token.project_id.as_deref().unwrap_or("");
        let interface = self.creds.interface;
        let region = self.creds.region_name.as_deref();
        match service {
            Service::BlockStorage => {
                let dialect = self.block_storage_dialect().ok_or_else(|| {
                    CloudError::unsupported("block storage is not offered for SCP credentials")
                })?;
                let url = match &self.creds.block_storage_endpoint_override {
                    Some(url) => url.clone(),
                    None => token.catalog.endpoint(
                        "block-storage",
                        dialect.catalog_types(),
                        interface,
                        region,
                    )?,
                };
                Ok(versioned_block_storage_url(
                    &substitute_project(&url, project),
                    dialect.version(),
                    project,
                ))
            }
            Service::Image => {
                let url = match &self.creds.image_endpoint_override {
                    Some(url) => url.clone(),
                    None => token
                        .catalog
                        .endpoint("image", &["image"], interface, region)?,
                };
                Ok(unversioned_image_url(&substitute_project(&url, project)))
            }
            Service::Identity => Err(CloudError::unsupported(
                "the identity endpoint is the auth_url",
            )),
        }
    }

    /// Sends `req` to its service and returns the successful answer; any
    /// error status becomes a [`CloudError`].
    pub(crate) async fn send(&self, req: ServiceRequest) -> Result<HttpResponse, CloudError> {
        match &self.creds.auth {
            Auth::Scp(scp_auth) => {
                let url = build_url(&self.static_endpoint(req.service)?, &req.path, &req.query)?;
                let http_req = self.http_request(&req, url, None)?;
                let attempt = self.gate.admit(&self.gate_key)?;
                let sign = |method: &Method, url: &Url| {
                    scp::signed_headers(
                        scp_auth,
                        method,
                        url,
                        chrono::Utc::now().timestamp_millis(),
                    )
                };
                let resp = self
                    .http
                    .execute(&self.client, &http_req, Some(&sign))
                    .await?;
                log_answer(&req, &resp);
                if resp.status == StatusCode::UNAUTHORIZED {
                    return Err(attempt.refused(CloudError::InvalidCredentials {
                        message: format!(
                            "SCP refused the signed request (check access_key, secret_key and account_id): {}",
                            resp.error().message()
                        ),
                        retry_after: None,
                    }));
                }
                // Any other answer from SCP itself means the signature was
                // accepted; a 5xx (perhaps a proxy's) decides nothing.
                if !resp.status.is_server_error() {
                    attempt.accepted();
                }
                success(resp)
            }
            _ => {
                let token = self.token().await?;
                let resp = self.send_with_token(&req, &token).await?;
                if resp.status != StatusCode::UNAUTHORIZED {
                    return success(resp);
                }
                // The token was refused before it should expire (revoked,
                // or the service's clock differs): log in again, once.
                tracing::info!(
                    cloud = %self.creds.cloud_name,
                    service = req.service.as_str(),
                    "token refused with 401; logging in again"
                );
                if let Some(slot) = &self.tokens {
                    slot.invalidate(&token).await;
                }
                let token = self.token().await?;
                let resp = self.send_with_token(&req, &token).await?;
                success(resp)
            }
        }
    }

    async fn send_with_token(
        &self,
        req: &ServiceRequest,
        token: &Token,
    ) -> Result<HttpResponse, CloudError> {
        let url = build_url(&self.resolve(req.service, token)?, &req.path, &req.query)?;
        let http_req = self.http_request(req, url, Some(token))?;
        let resp = self.http.execute(&self.client, &http_req, None).await?;
        log_answer(req, &resp);
        Ok(resp)
    }

    fn http_request(
        &self,
        req: &ServiceRequest,
        url: Url,
        token: Option<&Token>,
    ) -> Result<HttpRequest, CloudError> {
        let mut http_req = HttpRequest::new(req.service, req.method.clone(), url);
        http_req.headers = req.headers.clone();
        http_req
            .headers
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.id.expose()).map_err(|_| {
                CloudError::decode(
                    "the identity service issued a token that is not a valid header value",
                )
            })?;
            value.set_sensitive(true);
            http_req.headers.insert("x-auth-token", value);
        }
        http_req.body = req.body.clone();
        Ok(http_req)
    }
}

fn log_answer(req: &ServiceRequest, resp: &HttpResponse) {
    tracing::debug!(
        service = req.service.as_str(),
        method = %req.method,
        path = %req.path,
        status = resp.status.as_u16(),
        "cloud answered"
    );
}

fn success(resp: HttpResponse) -> Result<HttpResponse, CloudError> {
    if resp.status.is_success() {
        Ok(resp)
    } else {
        Err(resp.error())
    }
}

/// Replaces OpenStack's `%(project_id)s` / `%(tenant_id)s` placeholders.
pub(crate) fn substitute_project(url: &str, project: &str) -> String {
    url.replace("%(project_id)s", project)
        .replace("%(tenant_id)s", project)
        .replace("$(project_id)s", project)
        .replace("$(tenant_id)s", project)
}

fn is_version_segment(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    !rest.is_empty()
        && rest
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// A block-storage URL as the API wants it: `.../v2/{project}` or
/// `.../v3/{project}`. A catalog URL without a version (`https://host:8776/`)
/// gets one, as version discovery would give.
pub(crate) fn versioned_block_storage_url(url: &str, version: &str, project: &str) -> String {
    let url = url.trim_end_matches('/');
    let has_version = Url::parse(url)
        .ok()
        .and_then(|u| u.path_segments().map(|mut s| s.any(is_version_segment)))
        .unwrap_or(false);
    if has_version {
        url.to_string()
    } else {
        format!("{url}/{version}/{project}")
    }
}

/// The image endpoint without a version suffix (requests add `/v2/...`).
pub(crate) fn unversioned_image_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    match url.rsplit_once('/') {
        Some((base, last)) if is_version_segment(last) => base.to_string(),
        _ => url.to_string(),
    }
}

pub(crate) fn build_url(
    endpoint: &str,
    path: &str,
    query: &[(String, String)],
) -> Result<Url, CloudError> {
    let mut url =
        Url::parse(&format!("{}{}", endpoint.trim_end_matches('/'), path)).map_err(|e| {
            CloudError::config(format!("endpoint `{endpoint}` is not a valid URL: {e}"))
        })?;
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    Ok(url)
}

/// Percent-encodes one path segment (ids, tags).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_storage_urls_get_a_version_when_the_catalog_has_none() {
        assert_eq!(
            versioned_block_storage_url("https://h/v2/t", "v2", "t"),
            "https://h/v2/t"
        );
        assert_eq!(
            versioned_block_storage_url("https://h:8776/", "v3", "p"),
            "https://h:8776/v3/p"
        );
        assert_eq!(
            versioned_block_storage_url("http://127.0.0.1:1/block-storage/v3/p/", "v3", "p"),
            "http://127.0.0.1:1/block-storage/v3/p"
        );
    }

    #[test]
    fn image_urls_lose_their_version() {
        assert_eq!(unversioned_image_url("https://img/"), "https://img");
        assert_eq!(
            unversioned_image_url("https://h/image/v2"),
            "https://h/image"
        );
        assert_eq!(
            unversioned_image_url("https://h/image/v2.1/"),
            "https://h/image"
        );
        assert_eq!(unversioned_image_url("https://h/vault"), "https://h/vault");
    }

    #[test]
    fn project_placeholders_are_replaced() {
        assert_eq!(
            substitute_project("https://h/v3/%(project_id)s", "p1"),
            "https://h/v3/p1"
        );
        assert_eq!(
            substitute_project("https://h/v2/%(tenant_id)s", "t"),
            "https://h/v2/t"
        );
    }

    #[test]
    fn urls_carry_encoded_queries_and_segments() {
        let u = build_url(
            "https://h/v2/t/",
            "/volumes/detail",
            &[("metadata".into(), r#"{"k":"v"}"#.into())],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://h/v2/t/volumes/detail?metadata=%7B%22k%22%3A%22v%22%7D"
        );
        assert_eq!(
            build_url("https://h", "/x", &[]).unwrap().as_str(),
            "https://h/x"
        );
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("6cdebe3e-b009"), "6cdebe3e-b009");
    }
}
