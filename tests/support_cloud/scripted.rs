//! A scripted cloud for answers the emulator never gives (hostile
//! `Retry-After`s, looping pagination, odd token expiries, calls the
//! emulator does not emulate): every request is recorded, and the test's
//! function writes each answer.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use serde_json::{Value, json};

/// One request as the scripted cloud received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: http::HeaderMap,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// `http://<Host header>`, for links and catalogs.
    pub base: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

type Script = dyn Fn(&Recorded) -> Reply + Send + Sync;

pub struct Scripted {
    pub base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests with this method whose path ends with `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .count()
    }
}

/// Serves `script` on a loopback port.
pub async fn serve(script: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Scripted {
    let script: Arc<Script> = Arc::new(script);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let script = script.clone();
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let host = parts
                .headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let recorded = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                headers: parts.headers.clone(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                base: format!("http://{host}"),
            };
            log.lock().unwrap().push(recorded.clone());
            let reply = script(&recorded);
            let mut builder = Response::builder().status(reply.status);
            for (name, value) in &reply.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            builder.body(Body::from(reply.body)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Scripted {
        base,
        requests,
        task,
    }
}

pub const TENANT: &str = "6cdebe3eb0094910bc41f1d42ebe4cb7";

/// clouds.yaml with `nhn` (Keystone v2.0) and `v3` (Keystone v3) pointing
/// at a scripted cloud's `/identity`.
pub fn clouds_yaml(base: &str) -> String {
    format!(
        r#"
clouds:
  nhn:
    auth_type: v2password
    auth:
      auth_url: {base}/identity/v2.0
      tenant_id: {TENANT}
      username: demo
      password: demo-password
  v3:
    auth_type: v3password
    auth:
      auth_url: {base}/identity/v3
      user_id: demo
      password: demo-password
      project_id: {TENANT}
"#
    )
}

/// A Keystone v2.0 token answer whose catalog points back at the scripted
/// cloud (`/v2/{tenant}` block storage, `/image` images).
pub fn nhn_token(req: &Recorded, issued_at: Option<&str>, expires: &str) -> Reply {
    let base = &req.base;
    let mut token = json!({"id": "scripted-token", "expires": expires, "tenant": {"id": TENANT}});
    if let Some(issued) = issued_at {
        token["issued_at"] = json!(issued);
    }
    Reply::json(
        200,
        json!({"access": {"token": token, "serviceCatalog": [
            {"type": "volumev2", "endpoints": [{"region": "KR1", "publicURL": format!("{base}/v2/{TENANT}")}]},
            {"type": "image", "endpoints": [{"region": "KR1", "publicURL": format!("{base}/image")}]}
        ]}}),
    )
}

/// A Keystone v3 token answer with the same catalog (`/v3/{tenant}`).
pub fn v3_token(req: &Recorded) -> Reply {
    let base = &req.base;
    Reply::json(
        201,
        json!({"token": {"expires_at": "2999-01-01T00:00:00Z", "project": {"id": TENANT}, "catalog": [
            {"type": "block-storage", "endpoints": [{"interface": "public", "region": "KR1", "url": format!("{base}/v3/{TENANT}")}]},
            {"type": "image", "endpoints": [{"interface": "public", "region": "KR1", "url": format!("{base}/image")}]}
        ]}}),
    )
    .header("x-subject-token", "scripted-v3-token")
}

/// The answer to a token request (v2.0 with a day-long token, or v3), if
/// `req` is one.
pub fn identity(req: &Recorded) -> Option<Reply> {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/identity/v2.0/tokens") => Some(nhn_token(req, None, "2999-01-01T00:00:00Z")),
        ("POST", "/identity/v3/auth/tokens") => Some(v3_token(req)),
        _ => None,
    }
}

/// Connects to a scripted cloud's `name` (`nhn` or `v3`).
pub fn creds(cloud: &Scripted, name: &str) -> cloudvol::cloud::CloudCredentials {
    super::creds(&clouds_yaml(&cloud.base), name)
}
