//! The real OpenStack of `hack/openstack.sh` as a harness backend: the Secret holds its
//! generated clouds.yaml (clouds `project-a`, the owner, and `project-b`, the member), a
//! server attaches through Cinder's attachments API as Nova would, and the test reads the
//! cloud with raw Cinder v3 and Glance v2 calls (not the operator's client).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};

use crate::openstack_support::{OpenStackEnv, OsProject, call, http_client, openstack};
use crate::support::harness::{
    Backend, RemoteCloud, SeenImage, SeenVolume, Tenant, members_from_json,
};

/// How long a test waits for anything on the real services: generous (an upload runs
/// qemu-img, and two busy cores serve Keystone, Glance, three Cinder processes and the
/// tests), yet bounded.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// The shared OpenStack as a backend: started on first use (once per test binary; when it
/// cannot start, every caller fails with the script's reason).
pub async fn backend() -> Backend {
    let env = tokio::task::spawn_blocking(openstack)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let clouds_yaml = std::fs::read_to_string(&env.clouds_yaml).unwrap_or_else(|err| {
        panic!(
            "cannot read the OpenStack's clouds.yaml {}: {err}",
            env.clouds_yaml.display()
        )
    });
    Backend::Remote(Arc::new(OpenStack {
        env,
        clouds_yaml,
        http: http_client(),
        tokens: tokio::sync::Mutex::new(BTreeMap::new()),
    }))
}

struct OpenStack {
    env: &'static OpenStackEnv,
    clouds_yaml: String,
    http: reqwest::Client,
    /// Tokens by project name.
    tokens: tokio::sync::Mutex<BTreeMap<String, String>>,
}

impl OpenStack {
    fn owner_project(&self) -> &OsProject {
        &self.env.project_a
    }

    fn member_project(&self) -> &OsProject {
        &self.env.project_b
    }

    async fn token(&self, project: &OsProject) -> String {
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(&project.name) {
            return token.clone();
        }
        let token = self.env.project_token(&self.http, project).await;
        tokens.insert(project.name.clone(), token.clone());
        token
    }

    /// One call as `project`; a 401 (an expired token) gets a new token and one more try.
    async fn call_as(
        &self,
        project: &OsProject,
        method: Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let token = self.token(project).await;
        let answer = call(&self.http, method.clone(), url, Some(&token), body, headers).await;
        if answer.0 != 401 {
            return answer;
        }
        self.tokens.lock().await.remove(&project.name);
        let token = self.token(project).await;
        call(&self.http, method, url, Some(&token), body, headers).await
    }

    /// GET as `project`: the body on 200, `None` on 404, a panic otherwise.
    async fn get(&self, project: &OsProject, url: &str) -> Option<Value> {
        match self.call_as(project, Method::GET, url, None, &[]).await {
            (200, body) => Some(body),
            (404, _) => None,
            (status, body) => panic!("GET {url}: {status} {body}"),
        }
    }

    /// Every volume of the owner project (`/volumes/detail`, every page).
    async fn owner_volumes(&self) -> Vec<Value> {
        self.volumes_of(self.owner_project()).await
    }

    /// Every volume of `p` (`/volumes/detail`, every page).
    async fn volumes_of(&self, p: &OsProject) -> Vec<Value> {
        let mut url = self.env.volumes_url(p, "/volumes/detail?limit=1000");
        let mut all = Vec::new();
        loop {
            let page = self.get(p, &url).await.unwrap_or_default();
            all.extend(page["volumes"].as_array().cloned().unwrap_or_default());
            let next = page["volumes_links"].as_array().and_then(|links| {
                links
                    .iter()
                    .find(|l| l["rel"] == "next")
                    .and_then(|l| l["href"].as_str().map(str::to_string))
            });
            match next {
                Some(next) => url = next,
                None => return all,
            }
        }
    }

    /// Every image `project` lists with `query` (every page, following `next`).
    async fn images_of(&self, project: &OsProject, query: &str) -> Vec<Value> {
        let mut url = self.env.images_url(&format!("/images?limit=1000{query}"));
        let mut all = Vec::new();
        loop {
            let page = self.get(project, &url).await.unwrap_or_default();
            all.extend(page["images"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                // `next` is relative: `/v2/images?marker=...`.
                Some(next) => url = format!("{}{next}", self.env.glance_url.trim_end_matches('/')),
                None => return all,
            }
        }
    }

    /// The member's volumes named with `prefix` (volumes made from images shared with it).
    async fn member_named(&self, prefix: &str) -> Vec<Value> {
        let named = |v: &Value| v["name"].as_str().is_some_and(|n| n.starts_with(prefix));
        self.volumes_of(self.member_project())
            .await
            .into_iter()
            .filter(named)
            .collect()
    }

    /// The owner's volumes and images named with `prefix`.
    async fn named(&self, prefix: &str) -> (Vec<Value>, Vec<Value>) {
        let named = |v: &Value| v["name"].as_str().is_some_and(|n| n.starts_with(prefix));
        let owner = self.owner_project();
        let volumes = self
            .owner_volumes()
            .await
            .into_iter()
            .filter(named)
            .collect();
        let images = self
            .images_of(owner, &format!("&owner={}", owner.id))
            .await
            .into_iter()
            .filter(named)
            .collect();
        (volumes, images)
    }
}

impl RemoteCloud for OpenStack {
    fn name(&self) -> &str {
        "openstack"
    }

    fn clouds_yaml(&self) -> String {
        self.clouds_yaml.clone()
    }

    fn owner(&self) -> Tenant {
        Tenant {
            cloud: "project-a".into(),
            id: self.owner_project().id.clone(),
        }
    }

    fn member(&self) -> Tenant {
        Tenant {
            cloud: "project-b".into(),
            id: self.member_project().id.clone(),
        }
    }

    fn deadline(&self) -> Duration {
        DEADLINE
    }

    fn attach<'a>(&'a self, volume_id: &'a str, server_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let p = self.owner_project();
            let token = self.token(p).await;
            self.env
                .attach(&self.http, p, &token, volume_id, server_id)
                .await;
        })
    }

    fn detach<'a>(&'a self, volume_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let p = self.owner_project();
            let token = self.token(p).await;
            self.env.detach(&self.http, p, &token, volume_id).await;
        })
    }

    fn volume<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<SeenVolume>> {
        Box::pin(async move {
            let p = self.owner_project();
            let url = self.env.volumes_url(p, &format!("/volumes/{id}"));
            let body = self.get(p, &url).await?;
            Some(SeenVolume::from_json(&body["volume"]))
        })
    }

    fn member_volume<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<SeenVolume>> {
        Box::pin(async move {
            let p = self.member_project();
            let url = self.env.volumes_url(p, &format!("/volumes/{id}"));
            let body = self.get(p, &url).await?;
            Some(SeenVolume::from_json(&body["volume"]))
        })
    }

    fn ensure_volume_type<'a>(&'a self, name: &'a str, extra_specs: Value) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let admin_user = self.env.vars.get("CLOUDVOL_OS_ADMIN_USER").cloned();
            let admin_password = self.env.vars.get("CLOUDVOL_OS_ADMIN_PASSWORD").cloned();
            let admin_project = self.env.vars.get("CLOUDVOL_OS_ADMIN_PROJECT_ID").cloned();
            let (Some(user), Some(password), Some(project_id)) =
                (admin_user, admin_password, admin_project)
            else {
                panic!(
                    "hack/openstack.sh exported no admin credentials: {:?}",
                    self.env.vars.keys()
                );
            };
            let token = self.env.token(&self.http, &user, &password, "admin").await;
            let url = format!(
                "{}/v3/{project_id}/types",
                self.env.cinder_url.trim_end_matches('/')
            );
            let (status, body) = call(&self.http, Method::GET, &url, Some(&token), None, &[]).await;
            assert_eq!(status, 200, "GET {url}: {body}");
            let exists = body["volume_types"]
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t["name"] == name));
            if exists {
                return;
            }
            let create = json!({"volume_type": {"name": name, "extra_specs": extra_specs}});
            let (status, body) = call(
                &self.http,
                Method::POST,
                &url,
                Some(&token),
                Some(&create),
                &[],
            )
            .await;
            // 409: a parallel test made it first.
            assert!(
                status == 200 || status == 409,
                "POST {url}: {status} {body}"
            );
        })
    }

    fn image<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<SeenImage>> {
        Box::pin(async move {
            let url = self.env.images_url(&format!("/images/{id}"));
            let body = self.get(self.owner_project(), &url).await?;
            Some(SeenImage::from_json(&body))
        })
    }

    fn members<'a>(&'a self, image_id: &'a str) -> BoxFuture<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let url = self.env.images_url(&format!("/images/{image_id}/members"));
            let p = self.owner_project();
            match self.call_as(p, Method::GET, &url, None, &[]).await {
                (200, body) => members_from_json(&body["members"]),
                // Glance lists no members of an image that is not shared, but keeps them.
                (403, body)
                    if body["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("Only shared images have members")) =>
                {
                    self.env.glance_stored_members(image_id).await
                }
                (status, body) => panic!("GET {url}: {status} {body}"),
            }
        })
    }

    fn member_image_ids(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            // The member's plain list: its own images, public ones, and those shared with it
            // that it accepted (Glance's default `member_status=accepted`).
            self.images_of(self.member_project(), "")
                .await
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
    }

    fn leftovers<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let (volumes, images) = self.named(prefix).await;
            let mut left: Vec<String> = volumes
                .iter()
                .map(|v| format!("volume {} {} {}", v["id"], v["name"], v["status"]))
                .collect();
            left.extend(
                self.member_named(prefix)
                    .await
                    .iter()
                    .map(|v| format!("member volume {} {} {}", v["id"], v["name"], v["status"])),
            );
            left.extend(
                images
                    .iter()
                    .map(|i| format!("image {} {} {}", i["id"], i["name"], i["status"])),
            );
            left
        })
    }

    fn sweep<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let p = self.owner_project();
            let start = tokio::time::Instant::now();
            loop {
                let (volumes, images) = self.named(prefix).await;
                let member_volumes = self.member_named(prefix).await;
                for volume in &member_volumes {
                    let id = volume["id"].as_str().unwrap_or_default();
                    let m = self.member_project();
                    let url = self.env.volumes_url(m, &format!("/volumes/{id}"));
                    let (status, _) = self.call_as(m, Method::DELETE, &url, None, &[]).await;
                    eprintln!("sweep: DELETE member volume {id}: {status}");
                }
                if volumes.is_empty() && images.is_empty() && member_volumes.is_empty() {
                    eprintln!("sweep: nothing named {prefix}* is left in the OpenStack");
                    return;
                }
                if start.elapsed() > Duration::from_secs(180) {
                    eprintln!(
                        "sweep: gave up; left in the OpenStack: {} volumes, {} images named {prefix}*",
                        volumes.len(),
                        images.len()
                    );
                    return;
                }
                // Images first: an upload keeps its volume busy.
                for image in &images {
                    let id = image["id"].as_str().unwrap_or_default();
                    let url = self.env.images_url(&format!("/images/{id}"));
                    if image["protected"] == true {
                        let ops = json!([{"op": "replace", "path": "/protected", "value": false}]);
                        let patch = [(
                            "Content-Type",
                            "application/openstack-images-v2.1-json-patch",
                        )];
                        self.call_as(p, Method::PATCH, &url, Some(&ops), &patch)
                            .await;
                    }
                    let (status, _) = self.call_as(p, Method::DELETE, &url, None, &[]).await;
                    eprintln!("sweep: DELETE image {id}: {status}");
                }
                for volume in &volumes {
                    let id = volume["id"].as_str().unwrap_or_default();
                    if volume["attachments"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
                    {
                        let token = self.token(p).await;
                        self.env.detach(&self.http, p, &token, id).await;
                    }
                    let url = self.env.volumes_url(p, &format!("/volumes/{id}"));
                    let (status, _) = self.call_as(p, Method::DELETE, &url, None, &[]).await;
                    eprintln!("sweep: DELETE volume {id} ({}): {status}", volume["status"]);
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    }
}
