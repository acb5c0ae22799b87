//! Starting an in-process emulator and talking to it.

use std::future::Future;
use std::time::{Duration, Instant};

use cloudvol_emulator::{Config, Emulator};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

pub const DEMO: &str = "6cdebe3eb0094910bc41f1d42ebe4cb7";
pub const PARTNER: &str = "8989447062e04a818baf9e073fd04fa7";
pub const THIRD: &str = "0123456789abcdef0123456789abcdef";

/// An HTTP client for the tests. Installs a TLS crypto provider first: when the workspace is
/// built together, reqwest carries the operator's provider-less rustls, and refuses to build a
/// client without one.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub struct Env {
    pub emu: Emulator,
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

/// Demo config with every transition immediate.
pub fn instant() -> Config {
    Config::demo().with_transitions(Duration::ZERO)
}

/// Demo tenants plus a third tenant (`third` / `third-password`), with
/// every transition immediate.
pub fn three_tenants() -> Config {
    let yaml = format!(
        r#"
tenants:
  - id: {DEMO}
    name: demo
    users: [{{username: demo, password: demo-password}}]
    scp: {{access_key: demo-access-key, secret_key: demo-secret-key, account_id: demo-account}}
  - id: {PARTNER}
    name: partner
    users: [{{username: partner, password: partner-password}}]
    scp: {{access_key: partner-access-key, secret_key: partner-secret-key, account_id: partner-account}}
  - id: {THIRD}
    name: third
    users: [{{username: third, password: third-password}}]
transitions: {{default: 0}}
"#
    );
    Config::from_yaml(&yaml).expect("valid config")
}

pub async fn start() -> Env {
    start_with(instant()).await
}

pub async fn start_with(config: Config) -> Env {
    let emu = cloudvol_emulator::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("emulator starts");
    let base = emu.base_url();
    Env {
        emu,
        base,
        http: client(),
    }
}

/// Polls `f` until it returns `Some`, failing after a deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Env {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&b).expect("json"));
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body").to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            bytes,
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None, &[])
            .await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call(method, path, None, body, &[]).await
    }

    pub async fn token(&self, tenant: &str, user: &str) -> String {
        let a = self
            .call(
                Method::POST,
                "/identity/v2.0/tokens",
                None,
                Some(json!({"auth": {"tenantId": tenant, "passwordCredentials": {
                    "username": user, "password": format!("{user}-password")}}})),
                &[],
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["access"]["token"]["id"]
            .as_str()
            .expect("token id")
            .to_string()
    }

    pub async fn demo(&self) -> String {
        self.token(DEMO, "demo").await
    }

    pub async fn partner(&self) -> String {
        self.token(PARTNER, "partner").await
    }

    pub fn volumes(&self, tenant: &str) -> String {
        format!("/block-storage/v2/{tenant}/volumes")
    }

    /// Creates a volume in the token's tenant and returns its ID.
    pub async fn create_volume(&self, token: &str, tenant: &str, volume: Value) -> String {
        let a = self
            .post(token, &self.volumes(tenant), json!({"volume": volume}))
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        a.body["volume"]["id"].as_str().expect("id").to_string()
    }

    pub async fn volume(&self, token: &str, tenant: &str, id: &str) -> Answer {
        self.get(token, &format!("{}/{id}", self.volumes(tenant)))
            .await
    }

    pub async fn wait_volume(&self, token: &str, tenant: &str, id: &str, status: &str) -> Value {
        eventually(&format!("volume {id} to be {status}"), || async {
            let a = self.volume(token, tenant, id).await;
            (a.body["volume"]["status"] == status).then(|| a.body["volume"].clone())
        })
        .await
    }

    pub async fn wait_image(&self, token: &str, id: &str, status: &str) -> Value {
        eventually(&format!("image {id} to be {status}"), || async {
            let a = self.get(token, &format!("/image/v2/images/{id}")).await;
            (a.body["status"] == status).then_some(a.body)
        })
        .await
    }

    pub async fn action(&self, token: &str, tenant: &str, id: &str, body: Value) -> Answer {
        self.post(
            token,
            &format!("{}/{id}/action", self.volumes(tenant)),
            body,
        )
        .await
    }

    /// Creates an image (NHN requires name and os_type) and returns its ID.
    pub async fn create_image(&self, token: &str, extra: Value) -> String {
        let mut body = json!({"name": "img", "os_type": "linux",
            "disk_format": "qcow2", "container_format": "bare"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let a = self.post(token, "/image/v2/images", body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["id"].as_str().expect("id").to_string()
    }

    /// PUTs `data` as the image's file; expects 204.
    pub async fn upload_image_data(&self, token: &str, id: &str, data: Vec<u8>) {
        let resp = self
            .http
            .put(format!("{}/image/v2/images/{id}/file", self.base))
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }

    /// Puts an image straight into the store (admin API) and returns its ID.
    pub async fn admin_image(&self, image: Value) -> String {
        let a = self
            .admin(Method::POST, "/_admin/images", Some(image))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["id"].as_str().expect("id").to_string()
    }

    pub async fn patch_image(&self, token: &str, id: &str, ops: Value) -> Answer {
        let resp = self
            .http
            .patch(format!("{}/image/v2/images/{id}", self.base))
            .header("X-Auth-Token", token)
            .header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .body(serde_json::to_vec(&ops).expect("json"))
            .send()
            .await
            .expect("sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body").to_vec();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes,
        }
    }
}

/// Cinder's fault body: `{"<name>": {"code": N, "message": ...}}`.
pub fn assert_cinder_fault(a: &Answer, status: u16, name: &str) -> String {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.body[name]["code"], status, "{}", a.body);
    a.body[name]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {}", a.body))
        .to_string()
}

/// Glance's (webob) JSON error: `{"code": "403 Forbidden", "title", "message"}`.
pub fn assert_glance_error(a: &Answer, status: u16) -> String {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    let code = a.body["code"].as_str().unwrap_or_default();
    assert!(code.starts_with(&status.to_string()), "{}", a.body);
    assert!(a.body["title"].is_string(), "{}", a.body);
    a.body["message"].as_str().unwrap_or_default().to_string()
}
