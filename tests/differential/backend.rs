//! The two backends the differential scenarios run against, and raw-HTTP helpers that
//! keep the wire visible: every failed assertion prints the request and the answer.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::openstack_support::{OsProject, openstack};

/// Which implementation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cloudvol-emulator` in this process, demo tenants, default (300 ms) transitions.
    Emulator,
    /// Keystone 30, Glance 33 and Cinder 29 from `hack/openstack.sh`.
    OpenStack,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub user: String,
    pub password: String,
}

impl From<&OsProject> for Project {
    fn from(p: &OsProject) -> Project {
        Project {
            id: p.id.clone(),
            name: p.name.clone(),
            user: p.user.clone(),
            password: p.password.clone(),
        }
    }
}

pub struct Backend {
    pub kind: Kind,
    pub http: reqwest::Client,
    /// Keystone v3, no trailing slash.
    pub identity: String,
    pub region: String,
    /// Owns volumes and images.
    pub a: Project,
    /// The other tenant: image member, cross-tenant checks.
    pub b: Project,
    emulator: Option<cloudvol_emulator::Emulator>,
    emulator_base: String,
    /// (user, password, project) of a user with the `service` role (OpenStack only).
    service: Option<(String, String, String)>,
    /// The cloud's admin, in its own project (OpenStack only): volume types, public
    /// images, status resets.
    admin: Option<Project>,
}

/// How long a transition may take: real Cinder on a busy 2-core machine can need a few
/// seconds per step.
pub const WAIT: Duration = Duration::from_secs(120);

impl Backend {
    pub async fn emulator() -> Backend {
        let emulator = cloudvol_emulator::start(
            cloudvol_emulator::Config::demo(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("the emulator starts");
        let base = emulator.base_url();
        let project = |id: &str, name: &str| Project {
            id: id.into(),
            name: name.into(),
            user: name.into(),
            password: format!("{name}-password"),
        };
        Backend {
            kind: Kind::Emulator,
            http: client(),
            identity: format!("{base}/identity/v3"),
            region: "KR1".into(),
            a: project("6cdebe3eb0094910bc41f1d42ebe4cb7", "demo"),
            b: project("8989447062e04a818baf9e073fd04fa7", "partner"),
            emulator: Some(emulator),
            emulator_base: base,
            service: None,
            admin: None,
        }
    }

    /// The shared OpenStack (started on first use; blocking, so run it off the runtime).
    pub async fn openstack() -> Backend {
        let env = tokio::task::spawn_blocking(openstack)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        Backend {
            kind: Kind::OpenStack,
            http: client(),
            identity: env.auth_url.trim_end_matches('/').to_string(),
            region: env.region.clone(),
            a: (&env.project_a).into(),
            b: (&env.project_b).into(),
            emulator: None,
            emulator_base: String::new(),
            service: Some((
                env.service_user.clone(),
                env.service_password.clone(),
                env.service_project.clone(),
            )),
            admin: Some(Project {
                id: env.vars["CLOUDVOL_OS_ADMIN_PROJECT_ID"].clone(),
                name: "admin".into(),
                user: env.vars["CLOUDVOL_OS_ADMIN_USER"].clone(),
                password: env.vars["CLOUDVOL_OS_ADMIN_PASSWORD"].clone(),
            }),
        }
    }

    /// `POST /auth/tokens` with a password scoped to the project by name, as clouds.yaml
    /// users do. Returns the raw answer.
    pub async fn token_request(&self, user: &str, password: &str, project: &str) -> Reply {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }});
        send(
            &self.http,
            Method::POST,
            format!("{}/auth/tokens", self.identity),
            None,
            Some(Body::Json(body)),
            &[],
        )
        .await
    }

    /// A token and the endpoints its catalog gives, for one project.
    pub async fn login(&self, p: &Project) -> Session {
        let reply = self.token_request(&p.user, &p.password, &p.name).await;
        reply.expect_status(201);
        let token = reply
            .header("x-subject-token")
            .unwrap_or_else(|| panic!("no X-Subject-Token header: {reply}"));
        let catalog = reply.body["token"]["catalog"].clone();
        let endpoint = |kind: &str| {
            public_url(&catalog, kind, &self.region)
                .unwrap_or_else(|| panic!("no public {kind} endpoint in {catalog}"))
        };
        Session {
            http: self.http.clone(),
            token,
            block_storage: endpoint("block-storage").trim_end_matches('/').to_string(),
            image: endpoint("image").trim_end_matches('/').to_string(),
        }
    }

    /// Puts an `available` volume `in-use`, attached to `server_id`, as Nova would:
    /// the emulator's admin API, or Cinder's attachments API (3.54) + `os-complete`.
    pub async fn attach(&self, s: &Session, volume_id: &str, server_id: &str) {
        match self.kind {
            Kind::Emulator => {
                let r = send(
                    &self.http,
                    Method::POST,
                    format!("{}/_admin/volumes/{volume_id}/attach", self.emulator_base),
                    None,
                    Some(Body::Json(json!({"server_id": server_id}))),
                    &[],
                )
                .await;
                r.expect_status(202);
            }
            Kind::OpenStack => {
                let micro = [("OpenStack-API-Version", "volume 3.54")];
                let r = s
                    .send(
                        Method::POST,
                        s.volumes("/attachments"),
                        Some(Body::Json(json!({"attachment": {
                            "volume_uuid": volume_id,
                            "instance_uuid": server_id,
                            "mode": "rw",
                            "connector": {
                                "initiator": "iqn.2004-10.dev.cloudvol:differential",
                                "ip": "127.0.0.1", "platform": "x86_64",
                                "host": "cloudvol-differential", "os_type": "linux",
                                "multipath": false,
                            },
                        }}))),
                        &micro,
                    )
                    .await;
                r.expect_status(200);
                let attachment = r.body["attachment"]["id"].as_str().unwrap().to_string();
                let r = s
                    .send(
                        Method::POST,
                        s.volumes(&format!("/attachments/{attachment}/action")),
                        Some(Body::Json(json!({"os-complete": null}))),
                        &micro,
                    )
                    .await;
                r.expect_status(204);
            }
        }
    }

    /// Detaches every attachment (`in-use` -> `available`). Cinder refuses a user's own
    /// delete of an attachment naming a server (bug #2004555) unless the call carries a
    /// service token, as Nova's does.
    pub async fn detach(&self, s: &Session, volume_id: &str) {
        match self.kind {
            Kind::Emulator => {
                let r = send(
                    &self.http,
                    Method::POST,
                    format!("{}/_admin/volumes/{volume_id}/detach", self.emulator_base),
                    None,
                    Some(Body::Json(json!({}))),
                    &[],
                )
                .await;
                r.expect_status(202);
            }
            Kind::OpenStack => {
                let (user, password, project) = self.service.clone().unwrap();
                let service = self.token_request(&user, &password, &project).await;
                service.expect_status(201);
                let service = service.header("x-subject-token").unwrap();
                let volume = s.get(s.volumes(&format!("/volumes/{volume_id}"))).await;
                volume.expect_status(200);
                for a in volume.body["volume"]["attachments"].as_array().unwrap() {
                    let id = a["attachment_id"].as_str().unwrap();
                    let r = s
                        .send(
                            Method::DELETE,
                            s.volumes(&format!("/attachments/{id}")),
                            None,
                            &[
                                ("OpenStack-API-Version", "volume 3.54"),
                                ("X-Service-Token", &service),
                            ],
                        )
                        .await;
                    r.expect_status(200);
                }
            }
        }
    }

    /// A POST to the emulator's admin API.
    async fn emulator_admin(&self, path: &str, body: Value) -> Reply {
        send(
            &self.http,
            Method::POST,
            format!("{}/_admin{path}", self.emulator_base),
            None,
            Some(Body::Json(body)),
            &[],
        )
        .await
    }

    /// A session of the OpenStack's admin, in the admin project.
    async fn admin_session(&self) -> Session {
        let admin = self
            .admin
            .as_ref()
            .expect("only the OpenStack backend has an admin");
        self.login(admin).await
    }

    /// Sets a volume's status behind Cinder's rules, as a cloud operator can:
    /// `os-reset_status` by the admin, or the emulator's admin API.
    pub async fn force_volume_status(&self, volume_id: &str, status: &str) {
        match self.kind {
            Kind::Emulator => {
                self.emulator_admin(
                    &format!("/volumes/{volume_id}/state"),
                    json!({"status": status}),
                )
                .await
                .expect_status(200);
            }
            Kind::OpenStack => {
                let admin = self.admin_session().await;
                admin
                    .post(
                        admin.volumes(&format!("/volumes/{volume_id}/action")),
                        json!({"os-reset_status": {"status": status}}),
                    )
                    .await
                    .expect_status(202);
            }
        }
    }

    /// Makes sure a volume type named `name` exists. Upstream types are resources the
    /// admin creates (with `extra_specs`, e.g. a `volume_backend_name`); the emulator takes
    /// any name, and derives a type's backend from it (emulator/README.md).
    pub async fn ensure_volume_type(&self, name: &str, extra_specs: Value) {
        if self.kind == Kind::Emulator {
            return;
        }
        let admin = self.admin_session().await;
        let r = admin.get(admin.volumes("/types")).await;
        r.expect_status(200);
        let exists = r.body["volume_types"]
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t["name"] == name));
        if exists {
            return;
        }
        let r = admin
            .post(
                admin.volumes("/types"),
                json!({"volume_type": {"name": name, "extra_specs": extra_specs}}),
            )
            .await;
        // 409: a parallel test created it first.
        assert!(
            r.status == 200 || r.status == 409,
            "creating a volume type: {r}"
        );
    }

    /// An `active`, public image with `data` (raw, bare) and the custom property
    /// `os_type`: made by the admin upstream (only an admin may publicize), put in the
    /// store through the emulator's admin API there (which records the size, not the
    /// bytes). Returns its ID; remove it with [`Backend::delete_public_image`].
    pub async fn public_image(&self, name: &str, data: &[u8]) -> String {
        match self.kind {
            Kind::Emulator => {
                let r = self
                    .emulator_admin(
                        "/images",
                        json!({"owner": "00000000000000000000000000000000", "name": name,
                               "visibility": "public", "disk_format": "raw",
                               "container_format": "bare", "size": data.len(),
                               "properties": {"os_type": "linux"}}),
                    )
                    .await;
                r.expect_status(201);
                r.body["id"].as_str().unwrap().to_string()
            }
            Kind::OpenStack => {
                let admin = self.admin_session().await;
                let r = admin
                    .post(
                        admin.images("/images"),
                        json!({"name": name, "visibility": "public", "disk_format": "raw",
                               "container_format": "bare", "os_type": "linux"}),
                    )
                    .await;
                r.expect_status(201);
                let id = r.body["id"].as_str().unwrap().to_string();
                admin
                    .send(
                        Method::PUT,
                        admin.images(&format!("/images/{id}/file")),
                        Some(Body::Bytes("application/octet-stream", data.to_vec())),
                        &[],
                    )
                    .await
                    .expect_status(204);
                id
            }
        }
    }

    pub async fn delete_public_image(&self, id: &str) {
        match self.kind {
            // The emulator's public images are the cloud's: its reset forgets them, and
            // this one is left to the end of the test's emulator.
            Kind::Emulator => {}
            Kind::OpenStack => {
                let admin = self.admin_session().await;
                admin
                    .delete(admin.images(&format!("/images/{id}")))
                    .await
                    .expect_status(204);
            }
        }
    }

    /// An `active` private raw image of `size` bytes owned by the session's project:
    /// upstream, `size` zero bytes streamed into Glance; in the emulator, an image put in
    /// the store with that size (its uploads are held in memory, at most 256 MiB).
    pub async fn large_image(&self, s: &Session, owner: &Project, name: &str, size: u64) -> String {
        match self.kind {
            Kind::Emulator => {
                let r = self
                    .emulator_admin(
                        "/images",
                        json!({"owner": owner.id, "name": name, "visibility": "private",
                               "disk_format": "raw", "container_format": "bare",
                               "size": size, "properties": {"os_type": "linux"}}),
                    )
                    .await;
                r.expect_status(201);
                r.body["id"].as_str().unwrap().to_string()
            }
            Kind::OpenStack => {
                let r = s
                    .post(
                        s.images("/images"),
                        json!({"name": name, "visibility": "private", "disk_format": "raw",
                               "container_format": "bare"}),
                    )
                    .await;
                r.expect_status(201);
                let id = r.body["id"].as_str().unwrap().to_string();
                put_zeros(&s.images(&format!("/images/{id}/file")), &s.token, size).await;
                id
            }
        }
    }

    pub async fn shutdown(self) {
        if let Some(e) = self.emulator {
            e.shutdown().await;
        }
    }
}

/// `PUT url` with `size` zero bytes as `application/octet-stream`, streamed over a plain
/// TCP connection (the tests' reqwest has no streaming bodies, and a gigabyte in memory
/// is too much); expects 204.
async fn put_zeros(url: &str, token: &str, size: u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut conn = tokio::net::TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: cannot connect: {e}"));
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\
         Connection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("request head");
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        conn.write_all(&chunk[..n])
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: writing the body: {e}"));
        left -= n as u64;
    }
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.expect("the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 204"),
        "PUT {url} ({size} zero bytes): {answer}"
    );
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider (as the operator is); plain HTTP
    // still needs one installed before a client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("a reqwest client")
}

/// The public URL of the first catalog service of `kind` in `region` (Keystone v3 shape).
pub fn public_url(catalog: &Value, kind: &str, region: &str) -> Option<String> {
    catalog
        .as_array()?
        .iter()
        .filter(|s| s["type"] == kind)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["interface"] == "public" && (e["region"] == region || e["region_id"] == region))
        .and_then(|e| e["url"].as_str().map(str::to_string))
}

/// A token with the endpoints of its catalog.
pub struct Session {
    http: reqwest::Client,
    pub token: String,
    /// Cinder v3 with the project (`.../v3/{project_id}`), from the catalog.
    pub block_storage: String,
    /// Glance, unversioned, from the catalog.
    pub image: String,
}

pub enum Body {
    Json(Value),
    JsonPatch(Value),
    Bytes(&'static str, Vec<u8>),
}

impl Session {
    pub fn volumes(&self, path: &str) -> String {
        format!("{}{path}", self.block_storage)
    }

    pub fn images(&self, path: &str) -> String {
        format!("{}/v2{path}", self.image)
    }

    pub async fn send(
        &self,
        method: Method,
        url: String,
        body: Option<Body>,
        headers: &[(&str, &str)],
    ) -> Reply {
        send(&self.http, method, url, Some(&self.token), body, headers).await
    }

    pub async fn get(&self, url: String) -> Reply {
        self.send(Method::GET, url, None, &[]).await
    }

    pub async fn delete(&self, url: String) -> Reply {
        self.send(Method::DELETE, url, None, &[]).await
    }

    pub async fn post(&self, url: String, body: Value) -> Reply {
        self.send(Method::POST, url, Some(Body::Json(body)), &[])
            .await
    }

    pub async fn put(&self, url: String, body: Option<Value>) -> Reply {
        self.send(Method::PUT, url, body.map(Body::Json), &[]).await
    }

    pub async fn patch_image(&self, id: &str, ops: Value) -> Reply {
        self.send(
            Method::PATCH,
            self.images(&format!("/images/{id}")),
            Some(Body::JsonPatch(ops)),
            &[],
        )
        .await
    }
}

pub async fn send(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Body>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = http
        .request(method.clone(), &url)
        .header("Accept", "application/json");
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    let mut sent = String::new();
    match body {
        Some(Body::Json(v)) => {
            sent = v.to_string();
            req = req
                .header("Content-Type", "application/json")
                .body(sent.clone());
        }
        Some(Body::JsonPatch(v)) => {
            sent = v.to_string();
            req = req
                .header(
                    "Content-Type",
                    "application/openstack-images-v2.1-json-patch",
                )
                .body(sent.clone());
        }
        Some(Body::Bytes(content_type, bytes)) => {
            sent = format!("<{} bytes of {content_type}>", bytes.len());
            req = req.header("Content-Type", content_type).body(bytes);
        }
        None => {}
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: no answer: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        request: format!(
            "{method} {url}{}{sent}",
            if sent.is_empty() { "" } else { " " }
        ),
        status,
        headers,
        text,
        body,
    }
}

/// One answer, with the request that got it (for failure messages).
pub struct Reply {
    pub request: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The JSON body, or `Null` when there is none.
    pub body: Value,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: String = self.text.chars().take(1500).collect();
        write!(f, "{} -> {} {}", self.request, self.status, text)
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn expect_status(&self, status: u16) -> &Reply {
        assert_eq!(self.status, status, "unexpected status: {self}");
        self
    }

    /// A Cinder fault: `{"<name>": {"code": <status>, "message": "..."}}`, one key.
    pub fn expect_cinder_fault(&self, status: u16, name: &str) -> String {
        self.expect_status(status);
        let obj = self
            .body
            .as_object()
            .unwrap_or_else(|| panic!("not a JSON object: {self}"));
        assert_eq!(
            obj.keys().collect::<Vec<_>>(),
            vec![name],
            "fault name: {self}"
        );
        assert_eq!(obj[name]["code"], json!(status), "fault code: {self}");
        obj[name]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("fault without a message: {self}"))
            .to_string()
    }

    /// Glance (webob) for a JSON client: `{"code": "403 Forbidden", "title": "Forbidden",
    /// "message": "..."}` — `code` is the status line, a string.
    pub fn expect_glance_error(&self, status: u16) -> String {
        self.expect_status(status);
        let code = self.body["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no string `code`: {self}"));
        assert!(
            code.starts_with(&format!("{status} ")),
            "code {code:?} is not the status line: {self}"
        );
        assert!(self.body["title"].is_string(), "no title: {self}");
        self.body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {self}"))
            .to_string()
    }

    /// Keystone (and keystonemiddleware in front of Cinder):
    /// `{"error": {"code": 401, "title": "Unauthorized", "message": "..."}}`.
    pub fn expect_keystone_error(&self, status: u16, title: &str) -> String {
        self.expect_status(status);
        assert_eq!(
            self.body["error"]["code"],
            json!(status),
            "error.code: {self}"
        );
        assert_eq!(
            self.body["error"]["title"],
            json!(title),
            "error.title: {self}"
        );
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message: {self}"))
            .to_string()
    }
}

/// Polls `check` until it returns `Some`, or panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A polling loop's budget: `tick` sleeps a little, or panics naming `what` once
/// [`WAIT`] has passed.
pub struct Deadline {
    start: tokio::time::Instant,
    what: String,
}

impl Deadline {
    pub fn new(what: impl Into<String>) -> Deadline {
        Deadline {
            start: tokio::time::Instant::now(),
            what: what.into(),
        }
    }

    pub async fn tick(&self) {
        assert!(
            self.start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {}",
            self.what
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records `status` unless it repeats the last one, and checks the progression.
pub fn observe(what: &str, seen: &mut Vec<String>, status: &str, allowed: &[&str]) {
    if seen.last().map(String::as_str) != Some(status) {
        seen.push(status.to_string());
    }
    assert_progression(what, seen, allowed);
}

/// Checks that `seen` (distinct consecutive states) follows `allowed` in order, each
/// state optional: a fast transition may be missed by a poll, never reordered.
pub fn assert_progression(what: &str, seen: &[String], allowed: &[&str]) {
    let mut at = 0;
    for s in seen {
        match allowed[at..].iter().position(|a| a == s) {
            Some(i) => at += i,
            None => panic!("{what}: states {seen:?} do not follow {allowed:?}"),
        }
    }
}

/// Asserts that `obj[key]` exists and has the JSON type `kind` ("string", "number",
/// "bool", "array", "object", "null", or "string|null" ...).
pub fn assert_shape(what: &str, obj: &Value, fields: &[(&str, &str)]) {
    for (key, kinds) in fields {
        let v = obj
            .get(*key)
            .unwrap_or_else(|| panic!("{what} has no `{key}`: {obj}"));
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        assert!(
            kinds.split('|').any(|k| k == actual),
            "{what}.{key} is {actual} ({v}), expected {kinds}: {obj}"
        );
    }
}
