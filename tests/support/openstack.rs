//! The real OpenStack of `hack/openstack.sh` (Keystone, Glance and Cinder from PyPI on
//! loopback), for tests that compare the emulator with upstream: started on first use,
//! once per test binary, reusing one that is already running.
//!
//! When it cannot start (no venv, RabbitMQ or qemu-img missing, a service that does not
//! come up) the tests that need it fail with the script's own explanation: they never
//! skip silently.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// One project with its member user.
#[derive(Debug, Clone)]
pub struct OsProject {
    pub id: String,
    pub name: String,
    pub user: String,
    pub user_id: String,
    pub password: String,
}

/// What `hack/openstack.sh start` exported.
#[derive(Debug, Clone)]
pub struct OpenStackEnv {
    /// Every `export NAME=value` line, as printed.
    pub vars: BTreeMap<String, String>,
    /// Keystone v3 (`http://127.0.0.1:PORT/v3`).
    pub auth_url: String,
    pub region: String,
    pub project_a: OsProject,
    pub project_b: OsProject,
    /// A clouds.yaml with clouds `project-a`, `project-b` and `admin`.
    pub clouds_yaml: PathBuf,
    pub keystone_url: String,
    pub glance_url: String,
    pub cinder_url: String,
    /// A user with the `service` role (it stands in for Nova: its token, sent as
    /// `X-Service-Token`, lets a test delete an attachment).
    pub service_user: String,
    pub service_password: String,
    pub service_project: String,
    /// `keystone 30.0.0, glance 33.0.0, cinder 29.0.0`.
    pub versions: String,
    /// The state folder (logs in `logs/`).
    pub dir: PathBuf,
}

impl OpenStackEnv {
    fn var(&self, name: &str) -> String {
        self.vars.get(name).cloned().unwrap_or_else(|| {
            panic!(
                "hack/openstack.sh start exported no {name}; it printed {:?}",
                self.vars
            )
        })
    }
}

/// The running OpenStack, started by the first caller in this test binary. When it
/// cannot start, every caller fails with the same explanation (the start is tried once:
/// a failure can take minutes).
pub fn openstack() -> &'static OpenStackEnv {
    static ENV: OnceLock<Result<OpenStackEnv, String>> = OnceLock::new();
    match ENV.get_or_init(start) {
        Ok(env) => env,
        Err(why) => panic!("{why}"),
    }
}

fn start() -> Result<OpenStackEnv, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/openstack.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "the test OpenStack did not start ({}), so the tests against upstream Keystone, \
             Glance and Cinder cannot run.\n\
             hack/openstack.sh needs the Debian packages rabbitmq-server and qemu-utils \
             (`hack/openstack.sh deps` installs them as root), Python 3.11 with venv, and \
             PyPI for the first install of its venv. Its output:\n{stderr}",
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse(&stdout).map_err(|missing| {
        format!("hack/openstack.sh start printed no {missing}:\n{stdout}\n{stderr}")
    })
}

/// Reads `export NAME=value` lines (values may be single-quoted).
fn parse(stdout: &str) -> Result<OpenStackEnv, String> {
    let vars: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_string(), v.to_string())
        })
        .collect();
    let get = |name: &str| vars.get(name).cloned().ok_or_else(|| name.to_string());
    let project = |p: &str| -> Result<OsProject, String> {
        Ok(OsProject {
            id: get(&format!("CLOUDVOL_OS_PROJECT_{p}_ID"))?,
            name: get(&format!("CLOUDVOL_OS_PROJECT_{p}_NAME"))?,
            user: get(&format!("CLOUDVOL_OS_PROJECT_{p}_USER"))?,
            user_id: get(&format!("CLOUDVOL_OS_PROJECT_{p}_USER_ID"))?,
            password: get(&format!("CLOUDVOL_OS_PROJECT_{p}_PASSWORD"))?,
        })
    };
    Ok(OpenStackEnv {
        auth_url: get("OS_AUTH_URL")?,
        region: get("CLOUDVOL_OS_REGION")?,
        project_a: project("A")?,
        project_b: project("B")?,
        clouds_yaml: PathBuf::from(get("CLOUDVOL_OS_CLOUDS_YAML")?),
        keystone_url: get("CLOUDVOL_OS_KEYSTONE_URL")?,
        glance_url: get("CLOUDVOL_OS_GLANCE_URL")?,
        cinder_url: get("CLOUDVOL_OS_CINDER_URL")?,
        service_user: get("CLOUDVOL_OS_SERVICE_USER")?,
        service_password: get("CLOUDVOL_OS_SERVICE_PASSWORD")?,
        service_project: get("CLOUDVOL_OS_SERVICE_PROJECT")?,
        versions: get("CLOUDVOL_OS_VERSIONS")?,
        dir: PathBuf::from(get("CLOUDVOL_OS_DIR")?),
        vars,
    })
}

// --- raw calls, for tests that set up or check the cloud around what they test -------------

/// Cinder's attachments API (and `os-complete`): the microversion that `attach`/`detach` use.
pub const ATTACHMENTS_MICROVERSION: &str = "volume 3.54";

/// An HTTP client for these calls. Make one per test: a client's pooled connections belong
/// to the runtime that opened them.
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a default TLS provider (as the operator is); plain HTTP still
    // needs one installed before a client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("a reqwest client")
}

/// One call with a token; the status and the JSON body (`Null` when there is none). A body
/// is sent as JSON unless `headers` give another `Content-Type` (Glance's JSON-patch). Panics,
/// naming the request, when no answer comes.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut request = http
        .request(method.clone(), url)
        .header("Accept", "application/json");
    if let Some(token) = token {
        request = request.header("X-Auth-Token", token);
    }
    if let Some(body) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("Content-Type", "application/json");
        }
        request = request.body(body.to_string());
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{method} {url}: no answer: {err}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

impl OpenStackEnv {
    /// A project-scoped Keystone v3 token for `user` (password, Default domain).
    pub async fn token(
        &self,
        http: &reqwest::Client,
        user: &str,
        password: &str,
        project: &str,
    ) -> String {
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }});
        let url = format!("{}/auth/tokens", self.auth_url.trim_end_matches('/'));
        let response = http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: no answer: {err}"));
        let status = response.status();
        let token = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match token {
            Some(token) if status.as_u16() == 201 => token,
            _ => panic!(
                "Keystone refused a token for {user} in {project}: {status} {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// A token of the project's own user.
    pub async fn project_token(&self, http: &reqwest::Client, project: &OsProject) -> String {
        self.token(http, &project.user, &project.password, &project.name)
            .await
    }

    /// A token of the `compute` service user, who stands in for Nova.
    pub async fn service_token(&self, http: &reqwest::Client) -> String {
        self.token(
            http,
            &self.service_user,
            &self.service_password,
            &self.service_project,
        )
        .await
    }

    /// Cinder v3 for the project: `{cinder}/v3/{project_id}{path}`.
    pub fn volumes_url(&self, project: &OsProject, path: &str) -> String {
        format!(
            "{}/v3/{}{path}",
            self.cinder_url.trim_end_matches('/'),
            project.id
        )
    }

    /// Glance v2: `{glance}/v2{path}`.
    pub fn images_url(&self, path: &str) -> String {
        format!("{}/v2{path}", self.glance_url.trim_end_matches('/'))
    }

    /// Attaches the project's `available` volume to `server_id` as Nova would, without Nova:
    /// an attachment (3.54) and `os-complete`; the volume turns `in-use`. Returns the
    /// attachment's ID. (`hack/openstack/attach.py attach` makes the same calls.)
    pub async fn attach(
        &self,
        http: &reqwest::Client,
        project: &OsProject,
        token: &str,
        volume_id: &str,
        server_id: &str,
    ) -> String {
        let micro = [("OpenStack-API-Version", ATTACHMENTS_MICROVERSION)];
        let body = serde_json::json!({"attachment": {
            "volume_uuid": volume_id,
            "instance_uuid": server_id,
            "mode": "rw",
            "connector": {
                "initiator": "iqn.2004-10.dev.cloudvol:test-host", "ip": "127.0.0.1",
                "platform": "x86_64", "host": "cloudvol-test-host", "os_type": "linux",
                "multipath": false,
            },
        }});
        let url = self.volumes_url(project, "/attachments");
        let (status, answer) = call(
            http,
            reqwest::Method::POST,
            &url,
            Some(token),
            Some(&body),
            &micro,
        )
        .await;
        assert_eq!(status, 200, "POST {url}: {answer}");
        let attachment = answer["attachment"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("POST {url}: no attachment id in {answer}"))
            .to_string();
        let url = self.volumes_url(project, &format!("/attachments/{attachment}/action"));
        let (status, answer) = call(
            http,
            reqwest::Method::POST,
            &url,
            Some(token),
            Some(&serde_json::json!({"os-complete": null})),
            &micro,
        )
        .await;
        assert_eq!(status, 204, "POST {url}: {answer}");
        attachment
    }

    /// The members Glance keeps for an image, as (tenant, status), read from its database.
    /// For an image that is not `shared` the API refuses to list members ("Only shared images
    /// have members", 403) but keeps the rows, which come back if the image is shared again:
    /// only the database says whether a member was removed.
    pub async fn glance_stored_members(&self, image_id: &str) -> Vec<(String, String)> {
        let db = self.dir.join("glance/glance.db");
        let script = "import json, sqlite3, sys\n\
                      c = sqlite3.connect(sys.argv[1], timeout=60)\n\
                      rows = c.execute('SELECT member, status FROM image_members \
                      WHERE image_id = ? AND deleted = 0', (sys.argv[2],)).fetchall()\n\
                      print(json.dumps(rows))";
        let output = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&db)
            .arg(image_id)
            .output()
            .await
            .unwrap_or_else(|err| panic!("cannot run python3 to read {}: {err}", db.display()));
        assert!(
            output.status.success(),
            "reading the members of {image_id} from {}: {}",
            db.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "members of {image_id} from {}: {err}: {}",
                db.display(),
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Deletes every attachment of the project's volume, with the `compute` user's token as
    /// `X-Service-Token` (Cinder refuses a user's own delete of an attachment that names a
    /// server, bug #2004555); the volume turns `available`.
    pub async fn detach(
        &self,
        http: &reqwest::Client,
        project: &OsProject,
        token: &str,
        volume_id: &str,
    ) {
        let url = self.volumes_url(project, &format!("/volumes/{volume_id}"));
        let (status, volume) = call(http, reqwest::Method::GET, &url, Some(token), None, &[]).await;
        assert_eq!(status, 200, "GET {url}: {volume}");
        let attachments = volume["volume"]["attachments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if attachments.is_empty() {
            return;
        }
        let service = self.service_token(http).await;
        for a in attachments {
            let Some(id) = a["attachment_id"].as_str() else {
                continue;
            };
            let url = self.volumes_url(project, &format!("/attachments/{id}"));
            let (status, answer) = call(
                http,
                reqwest::Method::DELETE,
                &url,
                Some(token),
                None,
                &[
                    ("OpenStack-API-Version", ATTACHMENTS_MICROVERSION),
                    ("X-Service-Token", &service),
                ],
            )
            .await;
            assert!(
                status == 200 || status == 404,
                "DELETE {url}: {status} {answer}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_export_lines() {
        let out = "\
export CLOUDVOL_OS_DIR=/tmp/x
export OS_AUTH_URL=http://127.0.0.1:1/v3
export CLOUDVOL_OS_REGION=RegionOne
export CLOUDVOL_OS_CLOUDS_YAML=/tmp/x/clouds.yaml
export CLOUDVOL_OS_KEYSTONE_URL=http://127.0.0.1:1
export CLOUDVOL_OS_GLANCE_URL=http://127.0.0.1:2
export CLOUDVOL_OS_CINDER_URL=http://127.0.0.1:3
export CLOUDVOL_OS_PROJECT_A_ID=aa
export CLOUDVOL_OS_PROJECT_A_NAME=project-a
export CLOUDVOL_OS_PROJECT_A_USER=user-a
export CLOUDVOL_OS_PROJECT_A_USER_ID=ua
export CLOUDVOL_OS_PROJECT_A_PASSWORD=pa
export CLOUDVOL_OS_PROJECT_B_ID=bb
export CLOUDVOL_OS_PROJECT_B_NAME=project-b
export CLOUDVOL_OS_PROJECT_B_USER=user-b
export CLOUDVOL_OS_PROJECT_B_USER_ID=ub
export CLOUDVOL_OS_PROJECT_B_PASSWORD=pb
export CLOUDVOL_OS_SERVICE_PROJECT=service
export CLOUDVOL_OS_SERVICE_USER=compute
export CLOUDVOL_OS_SERVICE_PASSWORD=pc
export CLOUDVOL_OS_VERSIONS='keystone 30.0.0, glance 33.0.0, cinder 29.0.0'
";
        let env = parse(out).unwrap();
        assert_eq!(env.project_b.password, "pb");
        assert_eq!(
            env.versions,
            "keystone 30.0.0, glance 33.0.0, cinder 29.0.0"
        );
        assert_eq!(env.var("OS_AUTH_URL"), "http://127.0.0.1:1/v3");
        assert_eq!(
            parse("export OS_AUTH_URL=x\n").unwrap_err(),
            "CLOUDVOL_OS_REGION"
        );
    }
}
