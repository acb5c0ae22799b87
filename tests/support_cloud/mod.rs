//! Shared helpers of the cloud integration tests: an emulator per test, the
//! demo tenants' credentials in every auth type, and the emulator's admin API.
#![allow(dead_code)]

pub mod scripted;
pub mod tls;

use std::collections::BTreeMap;
use std::time::Duration;

use cloudvol::cloud::{CloudCredentials, CloudHttp, Connector, RetryPolicy, TransportConfig};
use cloudvol_emulator::{Config, Emulator};
use serde_json::Value;

pub const DEMO_TENANT: &str = "6cdebe3eb0094910bc41f1d42ebe4cb7";
pub const PARTNER_TENANT: &str = "8989447062e04a818baf9e073fd04fa7";

pub struct Cloud {
    pub emulator: Emulator,
    pub base: String,
    pub connector: Connector,
    admin: reqwest::Client,
}

/// The demo emulator with immediate transitions, on its own port.
pub async fn start() -> Cloud {
    start_with(Config::demo().with_transitions(Duration::ZERO)).await
}

pub async fn start_with(config: Config) -> Cloud {
    let emulator = cloudvol_emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("emulator starts");
    let base = emulator.base_url();
    Cloud {
        emulator,
        base,
        connector: connector(),
        admin: reqwest::Client::new(),
    }
}

/// A connector with millisecond backoffs.
pub fn connector() -> Connector {
    Connector::new(CloudHttp::new(fast_transport()).expect("http client"))
}

pub fn fast_transport() -> TransportConfig {
    TransportConfig {
        retry: RetryPolicy::fast(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

pub fn creds(yaml: &str, name: &str) -> CloudCredentials {
    CloudCredentials::from_clouds_yaml(yaml.as_bytes(), name, None).expect("valid clouds.yaml")
}

/// Every demo cloud of every auth type, plus the partner tenant.
pub fn clouds_yaml(base: &str) -> String {
    format!(
        r#"
clouds:
  nhn:
    auth_type: v2password
    auth:
      auth_url: {base}/identity/v2.0
      tenant_id: {DEMO_TENANT}
      username: demo
      password: demo-password
    region_name: KR1
  nhn-partner:
    auth_type: v2password
    auth:
      auth_url: {base}/identity/v2.0
      tenant_id: {PARTNER_TENANT}
      username: partner
      password: partner-password
    region_name: KR1
  v3-project-id:
    auth_type: v3password
    auth:
      auth_url: {base}/identity/v3
      username: demo
      user_domain_name: Default
      password: demo-password
      project_id: {DEMO_TENANT}
    region_name: KR1
  v3-project-name:
    auth_type: password
    auth:
      auth_url: {base}/identity
      username: demo
      user_domain_id: default
      password: demo-password
      project_name: demo
      project_domain_name: Default
  v3-partner:
    auth:
      auth_url: {base}/identity/v3
      username: partner
      user_domain_name: Default
      password: partner-password
      project_name: partner
      project_domain_id: default
    region_name: KR1
  v3-appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: {base}/identity/v3
      application_credential_id: demo-appcred
      application_credential_secret: demo-appcred-secret
    region_name: KR1
  scp:
    auth_type: scp
    auth:
      access_key: demo-access-key
      secret_key: demo-secret-key
      account_id: demo-account
    image_endpoint_override: {base}/scp
  scp-partner:
    auth_type: scp
    auth:
      access_key: partner-access-key
      secret_key: partner-secret-key
      account_id: partner-account
    image_endpoint_override: {base}/scp
"#
    )
}

impl Cloud {
    pub fn creds(&self, name: &str) -> CloudCredentials {
        creds(&clouds_yaml(&self.base), name)
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .admin
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("admin request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "admin POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// `"<METHOD> <route template>"` -> count.
    pub async fn request_counts(&self) -> BTreeMap<String, u64> {
        self.admin
            .get(format!("{}/_admin/requests", self.base))
            .send()
            .await
            .expect("admin request")
            .json()
            .await
            .expect("counts")
    }

    pub async fn count(&self, key: &str) -> u64 {
        self.request_counts().await.get(key).copied().unwrap_or(0)
    }

    pub async fn fault(&self, rule: Value) {
        self.admin_post("/_admin/faults", rule).await;
    }

    /// An image owned by `owner`, created through the admin API.
    pub async fn admin_image(&self, owner: &str, name: &str) -> String {
        let v = self
            .admin_post(
                "/_admin/images",
                serde_json::json!({"owner": owner, "name": name, "size": 1024}),
            )
            .await;
        v["id"].as_str().expect("image id").to_string()
    }
}

/// A clock for the login backoff that moves only when the test says:
/// `advance.fetch_add(ms, SeqCst)`.
pub fn manual_clock() -> (
    cloudvol::cloud::Clock,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let start = tokio::time::Instant::now();
    let offset = Arc::new(AtomicU64::new(0));
    let at = offset.clone();
    let clock: cloudvol::cloud::Clock =
        Arc::new(move || start + Duration::from_millis(at.load(Ordering::SeqCst)));
    (clock, offset)
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
