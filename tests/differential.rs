//! Differential tests: each scenario is written once, as raw HTTP (so the wire is what
//! is checked, not the operator's client), and runs twice: against the emulator
//! (`<scenario>::emulator`) and against real Keystone 30, Glance 33 and Cinder 29 started
//! by `hack/openstack.sh` (`<scenario>::openstack`).
//!
//! The assertions describe upstream OpenStack. Where NHN Cloud knowingly differs (its
//! documents in docs/sources.md say so), the scenario asserts the documented difference
//! on each side instead of equality, and says which document.
//!
//! `cargo test --test differential emulator` runs only the emulator half; the OpenStack
//! half needs `hack/openstack.sh deps` once (Debian packages) and starts the services
//! itself (see docs/openstack.md).

#[path = "support/openstack.rs"]
mod openstack_support;

#[path = "differential/backend.rs"]
mod backend;

use backend::{
    Backend, Body, Deadline, Kind, Session, assert_progression, assert_shape, eventually, observe,
    public_url,
};
use reqwest::Method;
use serde_json::{Value, json};

/// Runs each scenario against both backends, as `<scenario>::emulator` and
/// `<scenario>::openstack`.
macro_rules! differential {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn emulator() {
                let backend = super::Backend::emulator().await;
                super::$name(&backend).await;
                backend.shutdown().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn openstack() {
                let backend = super::Backend::openstack().await;
                super::$name(&backend).await;
            }
        }
    )*};
}

differential!(
    token_and_catalog,
    bad_credentials_are_401,
    volume_create_and_delete,
    volume_create_refusals,
    volume_lists_and_filters,
    volume_update_and_metadata,
    microversions,
    unknown_volume_is_item_not_found,
    extend,
    upload_to_image,
    attached_volume_refusals,
    upload_visibility_and_protected,
    image_create_rules,
    image_members,
    image_member_rejection,
    image_list_pagination,
    glance_error_messages,
    protected_images,
    image_tags,
    image_data,
    other_tenants_resources,
    volume_from_image,
    volume_from_image_refusals,
    volume_from_shared_and_public_images,
    volume_from_large_image,
    retype,
);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

// ---- identity --------------------------------------------------------------------------

async fn token_and_catalog(b: &Backend) {
    let reply = b.token_request(&b.a.user, &b.a.password, &b.a.name).await;
    reply.expect_status(201);
    let token = reply.header("x-subject-token").unwrap_or_default();
    assert!(!token.is_empty(), "no X-Subject-Token: {reply}");
    let t = &reply.body["token"];
    assert_eq!(t["project"]["id"], json!(b.a.id), "{reply}");
    assert_eq!(t["project"]["name"], json!(b.a.name), "{reply}");
    assert_eq!(t["user"]["name"], json!(b.a.user), "{reply}");
    assert!(t["expires_at"].is_string(), "{reply}");
    assert!(
        t["methods"]
            .as_array()
            .is_some_and(|m| m.contains(&json!("password"))),
        "{reply}"
    );
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(roles.contains(&"member"), "roles {roles:?}: {reply}");

    // The services the operator looks up, with their URL shapes.
    let catalog = &t["catalog"];
    for kind in ["identity", "image", "block-storage", "volumev3"] {
        assert!(
            public_url(catalog, kind, &b.region).is_some(),
            "no public {kind} endpoint in region {}: {catalog}",
            b.region
        );
    }
    let block_storage = public_url(catalog, "block-storage", &b.region).unwrap();
    assert!(
        block_storage.ends_with(&format!("/v3/{}", b.a.id)),
        "block-storage URL {block_storage} is not .../v3/{{project_id}}"
    );
    assert_eq!(
        public_url(catalog, "volumev3", &b.region).unwrap(),
        block_storage,
        "volumev3 and block-storage differ"
    );
    let image = public_url(catalog, "image", &b.region).unwrap();
    assert!(
        !image.trim_end_matches('/').ends_with("/v2"),
        "the image URL carries no version: {image}"
    );

    // The token works on both services.
    let s = b.login(&b.a).await;
    s.get(s.volumes("/volumes")).await.expect_status(200);
    s.get(s.images("/images")).await.expect_status(200);
    // Keystone validates its own tokens.
    let r = s
        .send(
            Method::GET,
            format!("{}/auth/tokens", b.identity),
            None,
            &[("X-Subject-Token", &s.token)],
        )
        .await;
    r.expect_status(200);
    assert_eq!(r.body["token"]["project"]["id"], json!(b.a.id), "{r}");
}

async fn bad_credentials_are_401(b: &Backend) {
    let r = b
        .token_request(&b.a.user, "not-the-password", &b.a.name)
        .await;
    r.expect_keystone_error(401, "Unauthorized");
    assert!(r.header("x-subject-token").is_none(), "{r}");

    let s = b.login(&b.a).await;
    let with_token = |url: String, token: Option<&'static str>| async move {
        backend::send(&backend::client(), Method::GET, url, token, None, &[]).await
    };
    // Glance renders keystonemiddleware's 401 through webob, as its other errors.
    let r = with_token(s.images("/images"), Some("not-a-token")).await;
    r.expect_glance_error(401);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Keystone uri="),
        "WWW-Authenticate: {r}"
    );
    // Cinder sits behind keystonemiddleware too, which answers 401 itself, in
    // Keystone's shape (`{"error": {...}}`), not in Cinder's fault shape.
    for token in [Some("not-a-token"), None] {
        let r = with_token(s.volumes("/volumes"), token).await;
        r.expect_keystone_error(401, "Unauthorized");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Keystone uri="),
            "WWW-Authenticate: {r}"
        );
    }
}

// ---- volumes ---------------------------------------------------------------------------

const VOLUME_FIELDS: &[(&str, &str)] = &[
    ("id", "string"),
    ("status", "string"),
    ("size", "number"),
    ("name", "string|null"),
    ("description", "string|null"),
    ("metadata", "object"),
    ("attachments", "array"),
    ("availability_zone", "string"),
    ("bootable", "string"),
    ("encrypted", "bool"),
    ("multiattach", "bool"),
    ("volume_type", "string|null"),
    ("snapshot_id", "string|null"),
    ("source_volid", "string|null"),
    ("created_at", "string"),
    ("updated_at", "string|null"),
    ("user_id", "string"),
    ("links", "array"),
];

async fn create_volume(s: &Session, name: &str) -> Value {
    let r = s
        .post(
            s.volumes("/volumes"),
            json!({"volume": {"size": 1, "name": name, "description": "differential test",
                   "metadata": {"cloudvol.dev/uid": name}}}),
        )
        .await;
    r.expect_status(202);
    let v = r.body["volume"].clone();
    assert_shape("created volume", &v, VOLUME_FIELDS);
    assert_eq!(v["status"], "creating", "{r}");
    v
}

/// Polls a volume until its status is `until`, checking every status seen follows
/// `allowed`; returns the volume.
async fn wait_volume(s: &Session, id: &str, allowed: &[&str], until: &str) -> Value {
    let deadline = Deadline::new(format!("volume {id} {until}"));
    let mut seen = Vec::new();
    loop {
        let r = s.get(s.volumes(&format!("/volumes/{id}"))).await;
        r.expect_status(200);
        let status = r.body["volume"]["status"].as_str().unwrap_or_default();
        observe(&format!("volume {id}"), &mut seen, status, allowed);
        if status == until {
            return r.body["volume"].clone();
        }
        deadline.tick().await;
    }
}

async fn new_available_volume(s: &Session, prefix: &str) -> (String, String) {
    let name = unique(prefix);
    let v = create_volume(s, &name).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_volume(s, &id, &["creating", "available"], "available").await;
    (id, name)
}

async fn delete_volume(s: &Session, id: &str) {
    let r = s.delete(s.volumes(&format!("/volumes/{id}"))).await;
    r.expect_status(202);
    assert!(r.text.is_empty(), "a delete answers no body: {r}");
    let deadline = Deadline::new(format!("volume {id} gone"));
    let mut seen = Vec::new();
    loop {
        let r = s.get(s.volumes(&format!("/volumes/{id}"))).await;
        if r.status == 404 {
            r.expect_cinder_fault(404, "itemNotFound");
            return;
        }
        r.expect_status(200);
        let status = r.body["volume"]["status"].as_str().unwrap_or_default();
        observe(
            &format!("volume {id}"),
            &mut seen,
            status,
            &["available", "deleting"],
        );
        deadline.tick().await;
    }
}

async fn volume_create_and_delete(b: &Backend) {
    let s = b.login(&b.a).await;
    let name = unique("dt-create");
    let v = create_volume(&s, &name).await;
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["size"], 1);
    assert_eq!(v["name"], json!(name));
    assert_eq!(v["metadata"], json!({"cloudvol.dev/uid": name}));
    assert_eq!(v["attachments"], json!([]));
    assert_eq!(v["bootable"], "false");

    let v = wait_volume(&s, &id, &["creating", "available"], "available").await;
    assert_shape("volume", &v, VOLUME_FIELDS);
    assert_eq!(v["os-vol-tenant-attr:tenant_id"], json!(b.a.id), "{v}");

    // Listed, and found by name and by metadata.
    let r = s.get(s.volumes(&format!("/volumes?name={name}"))).await;
    r.expect_status(200);
    let listed = r.body["volumes"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{r}");
    assert_shape(
        "volume summary",
        &listed[0],
        &[("id", "string"), ("name", "string"), ("links", "array")],
    );
    let r = s
        .get(s.volumes(&format!("/volumes/detail?name={name}")))
        .await;
    r.expect_status(200);
    assert_eq!(r.body["volumes"][0]["id"], json!(id), "{r}");
    assert_eq!(r.body["volumes"][0]["status"], "available", "{r}");

    delete_volume(&s, &id).await;
    // Gone for every verb.
    let r = s.delete(s.volumes(&format!("/volumes/{id}"))).await;
    r.expect_cinder_fault(404, "itemNotFound");
    let r = s.get(s.volumes(&format!("/volumes?name={name}"))).await;
    assert_eq!(r.body["volumes"], json!([]), "{r}");
}

async fn volume_create_refusals(b: &Backend) {
    let s = b.login(&b.a).await;
    let create = |body: Value| s.post(s.volumes("/volumes"), body);
    for body in [
        json!({"volume": {"size": 0}}),
        json!({"volume": {"size": -1}}),
        json!({"volume": {"size": "abc"}}),
        json!({"volume": {"name": "no-size"}}),
        json!({}),
    ] {
        create(body).await.expect_cinder_fault(400, "badRequest");
    }
    let unknown = uuid::Uuid::new_v4();
    let r = create(json!({"volume": {"size": 1, "source_volid": unknown}})).await;
    let message = r.expect_cinder_fault(404, "itemNotFound");
    assert_eq!(
        message,
        format!("Volume {unknown} could not be found."),
        "{r}"
    );
    let r = create(json!({"volume": {"size": 1, "snapshot_id": unknown}})).await;
    let message = r.expect_cinder_fault(404, "itemNotFound");
    assert_eq!(
        message,
        format!("Snapshot {unknown} could not be found."),
        "{r}"
    );

    // A size given as a string of digits is accepted and answered as a number.
    let r = create(json!({"volume": {"size": "2", "name": unique("dt-string-size")}})).await;
    r.expect_status(202);
    assert_eq!(r.body["volume"]["size"], 2, "{r}");
    let id = r.body["volume"]["id"].as_str().unwrap().to_string();
    wait_volume(&s, &id, &["creating", "available"], "available").await;
    delete_volume(&s, &id).await;

    // Volume types and availability zones are resources upstream; the emulator
    // knowingly takes any name (emulator/README.md, "What it does not emulate").
    let bad_type = create(json!({"volume": {"size": 1, "volume_type": "no-such-type"}})).await;
    let bad_zone =
        create(json!({"volume": {"size": 1, "availability_zone": "no-such-zone"}})).await;
    match b.kind {
        Kind::Emulator => {
            for r in [bad_type, bad_zone] {
                r.expect_status(202);
                let id = r.body["volume"]["id"].as_str().unwrap().to_string();
                wait_volume(&s, &id, &["creating", "available"], "available").await;
                delete_volume(&s, &id).await;
            }
        }
        Kind::OpenStack => {
            let message = bad_type.expect_cinder_fault(404, "itemNotFound");
            assert_eq!(
                message, "Volume type with name no-such-type could not be found.",
                "{bad_type}"
            );
            let message = bad_zone.expect_cinder_fault(400, "badRequest");
            assert_eq!(
                message, "Availability zone 'no-such-zone' is invalid.",
                "{bad_zone}"
            );
        }
    }
}

async fn volume_lists_and_filters(b: &Backend) {
    let s = b.login(&b.a).await;
    let mark = unique("dt-mark");
    let mut ids = Vec::new();
    for name in ["dt-list-b", "dt-list-a"] {
        let r = s
            .post(
                s.volumes("/volumes"),
                json!({"volume": {"size": 1, "name": unique(name), "metadata": {"cloudvol.dev/uid": mark}}}),
            )
            .await;
        r.expect_status(202);
        ids.push(r.body["volume"]["id"].as_str().unwrap().to_string());
    }
    let (unmarked, _) = new_available_volume(&s, "dt-list-unmarked").await;
    for id in &ids {
        wait_volume(&s, id, &["creating", "available"], "available").await;
    }
    let filter = format!(
        "metadata={}",
        urlencode(&json!({"cloudvol.dev/uid": mark}).to_string())
    );

    // The crash-safety mark finds exactly the marked volumes.
    let r = s.get(s.volumes(&format!("/volumes/detail?{filter}"))).await;
    r.expect_status(200);
    let mut found: Vec<&str> = r.body["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    found.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(found, want, "{r}");

    // Sorted by name, one per page: `volumes_links` points at the next page, with the
    // client's own filters and a marker, under the same endpoint.
    let mut url = s.volumes(&format!("/volumes/detail?{filter}&sort=name:asc&limit=1"));
    let mut pages: Vec<String> = Vec::new();
    for _ in 0..4 {
        let r = s.get(url.clone()).await;
        r.expect_status(200);
        let volumes = r.body["volumes"].as_array().unwrap();
        assert!(volumes.len() <= 1, "{r}");
        pages.extend(
            volumes
                .iter()
                .map(|v| v["name"].as_str().unwrap().to_string()),
        );
        let Some(next) = r.body["volumes_links"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["rel"] == "next"))
        else {
            break;
        };
        let href = next["href"].as_str().unwrap().to_string();
        assert!(
            href.starts_with(&s.volumes("/volumes/detail?")),
            "next page {href} is not under {}",
            s.block_storage
        );
        let last = volumes.last().and_then(|v| v["id"].as_str()).unwrap_or("-");
        assert!(href.contains(&format!("marker={last}")), "{r}");
        url = href;
    }
    assert_eq!(
        pages.len(),
        2,
        "two marked volumes over the pages: {pages:?}"
    );
    assert!(
        pages[0].starts_with("dt-list-a") && pages[1].starts_with("dt-list-b"),
        "{pages:?}"
    );

    for id in ids.iter().chain([&unmarked]) {
        delete_volume(&s, id).await;
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

async fn volume_update_and_metadata(b: &Backend) {
    let s = b.login(&b.a).await;
    let (id, name) = new_available_volume(&s, "dt-update").await;
    let volume = s.volumes(&format!("/volumes/{id}"));

    let renamed = format!("{name}-renamed");
    let r = s
        .put(
            volume.clone(),
            Some(json!({"volume": {"name": renamed, "description": "d2"}})),
        )
        .await;
    r.expect_status(200);
    assert_eq!(r.body["volume"]["name"], json!(renamed), "{r}");
    assert_eq!(r.body["volume"]["description"], "d2", "{r}");

    let metadata = format!("{volume}/metadata");
    // POST merges.
    let r = s
        .post(metadata.clone(), json!({"metadata": {"a": "1"}}))
        .await;
    r.expect_status(200);
    assert_eq!(
        r.body,
        json!({"metadata": {"a": "1", "cloudvol.dev/uid": name}}),
        "{r}"
    );
    // PUT replaces.
    let r = s
        .put(metadata.clone(), Some(json!({"metadata": {"b": "2"}})))
        .await;
    r.expect_status(200);
    assert_eq!(r.body, json!({"metadata": {"b": "2"}}), "{r}");
    // One key.
    let r = s.get(format!("{metadata}/b")).await;
    r.expect_status(200);
    assert_eq!(r.body, json!({"meta": {"b": "2"}}), "{r}");
    let r = s
        .put(format!("{metadata}/b"), Some(json!({"meta": {"b": "3"}})))
        .await;
    r.expect_status(200);
    assert_eq!(r.body, json!({"meta": {"b": "3"}}), "{r}");
    let r = s.delete(format!("{metadata}/b")).await;
    r.expect_status(200);
    let r = s.get(format!("{metadata}/b")).await;
    r.expect_cinder_fault(404, "itemNotFound");
    let r = s.get(metadata.clone()).await;
    r.expect_status(200);
    assert_eq!(r.body, json!({"metadata": {}}), "{r}");
    delete_volume(&s, &id).await;
}

async fn microversions(b: &Backend) {
    let s = b.login(&b.a).await;
    let list = s.volumes("/volumes");
    let version = |r: &backend::Reply| r.header("openstack-api-version");

    // The version document, unauthenticated, at the endpoint's root.
    let root = s
        .block_storage
        .strip_suffix(&format!("/v3/{}", b.a.id))
        .unwrap()
        .to_string();
    let r = backend::send(
        &backend::client(),
        Method::GET,
        format!("{root}/"),
        None,
        None,
        &[],
    )
    .await;
    r.expect_status(300);
    let v3 = r.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "v3.0")
        .unwrap_or_else(|| panic!("no v3.0 in {r}"))
        .clone();
    assert_eq!(v3["min_version"], "3.0", "{r}");
    let max = v3["version"].as_str().unwrap().to_string();

    // No header means 3.0; a version is echoed; `latest` is the maximum.
    let r = s.get(list.clone()).await;
    r.expect_status(200);
    assert_eq!(version(&r).as_deref(), Some("volume 3.0"), "{r}");
    for (asked, echoed) in [
        ("volume 3.42", "volume 3.42".to_string()),
        ("volume latest", format!("volume {max}")),
    ] {
        let r = s
            .send(
                Method::GET,
                list.clone(),
                None,
                &[("OpenStack-API-Version", asked)],
            )
            .await;
        r.expect_status(200);
        assert_eq!(version(&r), Some(echoed), "{r}");
    }
    // Beyond the maximum: 406, in Cinder's fault shape (whose fault map has no 406
    // name, hence `computeFault`).
    let r = s
        .send(
            Method::GET,
            list.clone(),
            None,
            &[("OpenStack-API-Version", "volume 3.999")],
        )
        .await;
    let message = r.expect_cinder_fault(406, "computeFault");
    assert!(message.contains("3.999"), "{r}");
}

async fn unknown_volume_is_item_not_found(b: &Backend) {
    let s = b.login(&b.a).await;
    let id = uuid::Uuid::new_v4().to_string();
    let url = s.volumes(&format!("/volumes/{id}"));
    for r in [
        s.get(url.clone()).await,
        s.delete(url.clone()).await,
        s.post(
            format!("{url}/action"),
            json!({"os-extend": {"new_size": 2}}),
        )
        .await,
        s.post(
            format!("{url}/action"),
            json!({"os-volume_upload_image": {"image_name": "x", "disk_format": "qcow2",
                   "container_format": "bare"}}),
        )
        .await,
    ] {
        let message = r.expect_cinder_fault(404, "itemNotFound");
        assert_eq!(message, format!("Volume {id} could not be found."), "{r}");
    }
}

async fn extend(b: &Backend) {
    let s = b.login(&b.a).await;
    let (id, _) = new_available_volume(&s, "dt-extend").await;
    let action = s.volumes(&format!("/volumes/{id}/action"));

    let r = s
        .post(action.clone(), json!({"os-extend": {"new_size": 2}}))
        .await;
    r.expect_status(202);
    assert!(r.text.is_empty(), "os-extend answers no body: {r}");
    let v = wait_volume(
        &s,
        &id,
        &["available", "extending", "available"],
        "available",
    )
    .await;
    // The first `available` may be the old one: wait for the size too.
    let v = if v["size"] == 2 {
        v
    } else {
        eventually("the new size", || async {
            let r = s.get(s.volumes(&format!("/volumes/{id}"))).await;
            (r.body["volume"]["size"] == 2).then(|| r.body["volume"].clone())
        })
        .await
    };
    assert_eq!(v["status"], "available");

    // Not larger: refused.
    for size in [1, 2] {
        let r = s
            .post(action.clone(), json!({"os-extend": {"new_size": size}}))
            .await;
        r.expect_cinder_fault(400, "badRequest");
    }
    let r = s
        .post(action.clone(), json!({"os-extend": {"new_size": "three"}}))
        .await;
    r.expect_cinder_fault(400, "badRequest");
    delete_volume(&s, &id).await;
}

// ---- upload to image -------------------------------------------------------------------

const IMAGE_FIELDS: &[(&str, &str)] = &[
    ("id", "string"),
    ("name", "string|null"),
    ("status", "string"),
    ("visibility", "string"),
    ("protected", "bool"),
    ("owner", "string"),
    ("tags", "array"),
    ("min_disk", "number"),
    ("min_ram", "number"),
    ("container_format", "string|null"),
    ("disk_format", "string|null"),
    ("size", "number|null"),
    ("virtual_size", "number|null"),
    ("checksum", "string|null"),
    ("os_hidden", "bool"),
    ("created_at", "string"),
    ("updated_at", "string"),
    ("self", "string"),
    ("file", "string"),
    ("schema", "string"),
];

async fn wait_image(s: &Session, id: &str, allowed: &[&str], until: &str) -> Value {
    let deadline = Deadline::new(format!("image {id} {until}"));
    let mut seen = Vec::new();
    loop {
        let r = s.get(s.images(&format!("/images/{id}"))).await;
        r.expect_status(200);
        let status = r.body["status"].as_str().unwrap_or_default();
        observe(&format!("image {id}"), &mut seen, status, allowed);
        if status == until {
            return r.body.clone();
        }
        deadline.tick().await;
    }
}

async fn upload_to_image(b: &Backend) {
    let s = b.login(&b.a).await;
    let (id, _) = new_available_volume(&s, "dt-upload").await;
    let image_name = unique("dt-upload-image");
    let r = s
        .post(
            s.volumes(&format!("/volumes/{id}/action")),
            json!({"os-volume_upload_image": {"image_name": image_name, "disk_format": "qcow2",
                   "container_format": "bare", "force": false}}),
        )
        .await;
    r.expect_status(202);
    let up = &r.body["os-volume_upload_image"];
    assert_shape(
        "upload answer",
        up,
        &[
            ("id", "string"),
            ("image_id", "string"),
            ("image_name", "string"),
            ("status", "string"),
            ("disk_format", "string"),
            ("container_format", "string"),
            ("size", "number"),
            ("updated_at", "string"),
        ],
    );
    assert_eq!(up["id"], json!(id), "{r}");
    assert_eq!(up["status"], "uploading", "{r}");
    assert_eq!(up["image_name"], json!(image_name), "{r}");
    assert_eq!(up["disk_format"], "qcow2", "{r}");
    assert_eq!(up["container_format"], "bare", "{r}");
    assert_eq!(up["size"], 1, "{r}");
    let image_id = up["image_id"].as_str().unwrap().to_string();

    // The image exists from the answer on, and fills while the volume is `uploading`.
    let image = s.get(s.images(&format!("/images/{image_id}"))).await;
    image.expect_status(200);
    assert_progression(
        "image right after the upload call",
        &[image.body["status"].as_str().unwrap().to_string()],
        &["queued", "saving", "active"],
    );
    let image = wait_image(&s, &image_id, &["queued", "saving", "active"], "active").await;
    wait_volume(&s, &id, &["uploading", "available"], "available").await;
    assert_shape("uploaded image", &image, IMAGE_FIELDS);
    assert_eq!(image["name"], json!(image_name), "{image}");
    assert_eq!(image["owner"], json!(b.a.id), "{image}");
    assert_eq!(image["disk_format"], "qcow2", "{image}");
    assert_eq!(image["container_format"], "bare", "{image}");
    // Cinder asks Glance for no visibility unless told (microversion 3.1), so the
    // image gets the image service's default: `shared` upstream (Image API 2.5+),
    // `private` on NHN (NHN's Image API's create example, docs/sources.md). A client that cares must say.
    let default_visibility = match b.kind {
        Kind::Emulator => "private",
        Kind::OpenStack => "shared",
    };
    assert_eq!(image["visibility"], default_visibility, "{image}");
    assert_eq!(image["protected"], false, "{image}");
    assert!(image["size"].as_u64().unwrap_or(0) > 0, "{image}");

    let r = s.delete(s.images(&format!("/images/{image_id}"))).await;
    r.expect_status(204);
    let r = s.get(s.images(&format!("/images/{image_id}"))).await;
    r.expect_glance_error(404);
    delete_volume(&s, &id).await;
    // Cinder does not set min_disk on an image it uploads.
    assert_eq!(
        image["min_disk"], 0,
        "min_disk of an uploaded image: {image}"
    );
}

async fn attached_volume_refusals(b: &Backend) {
    let s = b.login(&b.a).await;
    let (id, _) = new_available_volume(&s, "dt-attached").await;
    let server = uuid::Uuid::new_v4().to_string();
    b.attach(&s, &id, &server).await;
    let v = wait_volume(
        &s,
        &id,
        &["available", "reserved", "attaching", "in-use"],
        "in-use",
    )
    .await;
    let attachments = v["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{v}");
    assert_shape(
        "attachment",
        &attachments[0],
        &[
            ("server_id", "string"),
            ("attachment_id", "string"),
            ("volume_id", "string"),
            ("id", "string"),
        ],
    );
    assert_eq!(attachments[0]["server_id"], json!(server), "{v}");
    assert_eq!(attachments[0]["volume_id"], json!(id), "{v}");

    // Never deleted while attached.
    let r = s.delete(s.volumes(&format!("/volumes/{id}"))).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert!(message.starts_with("Invalid volume:"), "{r}");

    let action = s.volumes(&format!("/volumes/{id}/action"));
    let upload = |force: Value| {
        json!({"os-volume_upload_image": {"image_name": unique("dt-in-use"),
               "disk_format": "qcow2", "container_format": "bare", "force": force}})
    };
    // Not uploaded without force.
    let r = s.post(action.clone(), upload(json!(false))).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert!(message.starts_with("Invalid volume:"), "{r}");
    // A force that is no boolean is a schema error.
    let r = s.post(action.clone(), upload(json!("maybe"))).await;
    r.expect_cinder_fault(400, "badRequest");

    // With force: NHN allows it (NHN's Block Storage API, docs/sources.md: `force` lets an attached volume be imaged);
    // upstream Cinder ignores `force` unless the cloud set `enable_force_upload`
    // (default false, as here), so the answer is the same 400 as without it.
    let r = s.post(action.clone(), upload(json!(true))).await;
    match b.kind {
        Kind::Emulator => {
            r.expect_status(202);
            let image_id = r.body["os-volume_upload_image"]["image_id"]
                .as_str()
                .unwrap()
                .to_string();
            // Back to `in-use`, not `available`, after the upload.
            wait_volume(&s, &id, &["uploading", "in-use"], "in-use").await;
            wait_image(&s, &image_id, &["queued", "saving", "active"], "active").await;
            s.delete(s.images(&format!("/images/{image_id}")))
                .await
                .expect_status(204);
        }
        Kind::OpenStack => {
            let message = r.expect_cinder_fault(400, "badRequest");
            assert!(message.starts_with("Invalid volume:"), "{r}");
        }
    }

    b.detach(&s, &id).await;
    let v = wait_volume(&s, &id, &["in-use", "detaching", "available"], "available").await;
    assert_eq!(v["attachments"], json!([]), "{v}");
    delete_volume(&s, &id).await;
}

async fn upload_visibility_and_protected(b: &Backend) {
    let s = b.login(&b.a).await;
    let (id, _) = new_available_volume(&s, "dt-visibility").await;
    let action = s.volumes(&format!("/volumes/{id}/action"));
    let body = |name: &str| {
        json!({"os-volume_upload_image": {"image_name": name, "disk_format": "qcow2",
               "container_format": "bare", "visibility": "shared", "protected": true}})
    };

    // Cinder v3 without a microversion: the base schema has no such keys.
    let r = s.post(action.clone(), body("dt-no-microversion")).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert!(
        message.contains("Additional properties are not allowed"),
        "{r}"
    );

    // NHN's v2 path takes them without a microversion (NHN's Block Storage API, docs/sources.md); upstream Cinder has
    // had no v2 API since Xena, so the path is unknown there.
    let v2 = action.replacen("/v3/", "/v2/", 1);
    let r = s
        .send(Method::POST, v2, Some(Body::Json(body("dt-v2"))), &[])
        .await;
    match b.kind {
        Kind::Emulator => {
            r.expect_status(202);
            let image_id = r.body["os-volume_upload_image"]["image_id"]
                .as_str()
                .unwrap()
                .to_string();
            let image = wait_image(&s, &image_id, &["queued", "saving", "active"], "active").await;
            assert_eq!(image["visibility"], "shared", "{image}");
            assert_eq!(image["protected"], true, "{image}");
            wait_volume(&s, &id, &["uploading", "available"], "available").await;
            s.patch_image(
                &image_id,
                json!([{"op": "replace", "path": "/protected", "value": false}]),
            )
            .await
            .expect_status(200);
            s.delete(s.images(&format!("/images/{image_id}")))
                .await
                .expect_status(204);
        }
        Kind::OpenStack => {
            r.expect_status(404);
        }
    }

    // Microversion 3.1 adds them.
    let r = s
        .send(
            Method::POST,
            action.clone(),
            Some(Body::Json(body("dt-microversion"))),
            &[("OpenStack-API-Version", "volume 3.1")],
        )
        .await;
    r.expect_status(202);
    assert_eq!(
        r.header("openstack-api-version").as_deref(),
        Some("volume 3.1"),
        "the microversion is echoed: {r}"
    );
    let up = &r.body["os-volume_upload_image"];
    assert_eq!(up["visibility"], "shared", "{r}");
    assert_eq!(up["protected"], true, "{r}");
    let image_id = up["image_id"].as_str().unwrap().to_string();
    let image = wait_image(&s, &image_id, &["queued", "saving", "active"], "active").await;
    assert_eq!(image["visibility"], "shared", "{image}");
    assert_eq!(image["protected"], true, "{image}");
    wait_volume(&s, &id, &["uploading", "available"], "available").await;

    // Protected: not deleted until unprotected.
    let r = s.delete(s.images(&format!("/images/{image_id}"))).await;
    r.expect_glance_error(403);
    s.patch_image(
        &image_id,
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await
    .expect_status(200);
    s.delete(s.images(&format!("/images/{image_id}")))
        .await
        .expect_status(204);
    delete_volume(&s, &id).await;
}

// ---- images ----------------------------------------------------------------------------

/// Creates an image the way both accept (NHN requires `os_type`).
async fn create_image(s: &Session, extra: Value) -> Value {
    let mut body = json!({"name": unique("dt-image"), "disk_format": "raw",
                          "container_format": "bare", "os_type": "linux"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = s.post(s.images("/images"), body).await;
    r.expect_status(201);
    assert_shape("created image", &r.body, IMAGE_FIELDS);
    assert_eq!(r.body["status"], "queued", "{r}");
    r.body.clone()
}

async fn delete_image(s: &Session, id: &str) {
    s.delete(s.images(&format!("/images/{id}")))
        .await
        .expect_status(204);
    s.get(s.images(&format!("/images/{id}")))
        .await
        .expect_glance_error(404);
}

async fn image_create_rules(b: &Backend) {
    let s = b.login(&b.a).await;
    let image = create_image(&s, json!({"visibility": "private"})).await;
    let id = image["id"].as_str().unwrap();
    assert_eq!(image["owner"], json!(b.a.id), "{image}");
    assert_eq!(image["visibility"], "private", "{image}");
    assert_eq!(
        image["os_type"], "linux",
        "custom properties are top-level: {image}"
    );
    assert_eq!(image["size"], Value::Null, "{image}");
    delete_image(&s, id).await;

    // `os_type` is required by NHN (NHN's Image API, docs/sources.md: "os_type ... Required O"); upstream has
    // no such rule. Without `visibility`, NHN makes the image private (NHN's Image API, docs/sources.md's
    // example); upstream Glance makes it `shared` (since Image API 2.5).
    let r = s
        .post(
            s.images("/images"),
            json!({"name": unique("dt-no-os-type"), "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    match b.kind {
        Kind::Emulator => {
            r.expect_glance_error(400);
        }
        Kind::OpenStack => {
            r.expect_status(201);
            delete_image(&s, r.body["id"].as_str().unwrap()).await;
        }
    }
    let image = create_image(&s, json!({})).await;
    let default_visibility = match b.kind {
        Kind::Emulator => "private",
        Kind::OpenStack => "shared",
    };
    assert_eq!(image["visibility"], default_visibility, "{image}");
    delete_image(&s, image["id"].as_str().unwrap()).await;

    // Public images are the cloud's, not a member's.
    let r = s
        .post(
            s.images("/images"),
            json!({"name": unique("dt-public"), "visibility": "public", "os_type": "linux"}),
        )
        .await;
    r.expect_glance_error(403);
    // Read-only attributes cannot be set.
    let r = s
        .post(
            s.images("/images"),
            json!({"name": unique("dt-ro"), "status": "active", "os_type": "linux"}),
        )
        .await;
    r.expect_glance_error(403);
}

async fn image_members(b: &Backend) {
    let owner = b.login(&b.a).await;
    let member = b.login(&b.b).await;
    let image = create_image(&owner, json!({"visibility": "private"})).await;
    let id = image["id"].as_str().unwrap().to_string();
    let members = owner.images(&format!("/images/{id}/members"));
    let membership = owner.images(&format!("/images/{id}/members/{}", b.b.id));

    // Members only on a shared image.
    let r = owner.post(members.clone(), json!({"member": b.b.id})).await;
    r.expect_glance_error(403);
    owner
        .patch_image(
            &id,
            json!([{"op": "replace", "path": "/visibility", "value": "shared"}]),
        )
        .await
        .expect_status(200);

    let r = owner.post(members.clone(), json!({"member": b.b.id})).await;
    r.expect_status(200);
    assert_shape(
        "member",
        &r.body,
        &[
            ("member_id", "string"),
            ("image_id", "string"),
            ("status", "string"),
            ("created_at", "string"),
            ("updated_at", "string"),
            ("schema", "string"),
        ],
    );
    assert_eq!(r.body["member_id"], json!(b.b.id), "{r}");
    assert_eq!(r.body["image_id"], json!(id), "{r}");
    assert_eq!(r.body["status"], "pending", "{r}");
    // A duplicate is a conflict.
    let r = owner.post(members.clone(), json!({"member": b.b.id})).await;
    r.expect_glance_error(409);

    // Pending: the member may see the image but does not list it.
    let in_members_list = |r: &backend::Reply| {
        r.body["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == json!(id))
    };
    let r = member.get(member.images("/images")).await;
    r.expect_status(200);
    assert!(!in_members_list(&r), "a pending share is not listed: {r}");
    member
        .get(member.images(&format!("/images/{id}")))
        .await
        .expect_status(200);

    // Only the member answers; the owner cannot accept for it.
    let r = owner
        .put(membership.clone(), Some(json!({"status": "accepted"})))
        .await;
    r.expect_glance_error(403);
    let r = member
        .put(membership.clone(), Some(json!({"status": "bogus"})))
        .await;
    r.expect_glance_error(400);
    let r = member
        .put(membership.clone(), Some(json!({"status": "accepted"})))
        .await;
    r.expect_status(200);
    assert_eq!(r.body["status"], "accepted", "{r}");
    let r = member.get(member.images("/images")).await;
    assert!(in_members_list(&r), "an accepted share is listed: {r}");

    // Each side sees the membership; only the owner manages members.
    let r = member.get(members.clone()).await;
    r.expect_status(200);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r.body["members"][0]["member_id"], json!(b.b.id), "{r}");
    let r = owner.get(members.clone()).await;
    r.expect_status(200);
    assert_eq!(r.body["members"][0]["status"], "accepted", "{r}");
    let r = owner.get(membership.clone()).await;
    r.expect_status(200);
    assert_eq!(r.body["status"], "accepted", "{r}");
    let r = member
        .post(members.clone(), json!({"member": b.a.id}))
        .await;
    r.expect_glance_error(403);
    let r = member.delete(membership.clone()).await;
    r.expect_glance_error(403);
    // Nor may the member change or delete the image itself.
    let r = member
        .patch_image(
            &id,
            json!([{"op": "replace", "path": "/name", "value": "mine"}]),
        )
        .await;
    r.expect_glance_error(403);
    let r = member.delete(member.images(&format!("/images/{id}"))).await;
    r.expect_glance_error(403);

    // Removing the member ends the share.
    owner.delete(membership.clone()).await.expect_status(204);
    let r = member.get(member.images("/images")).await;
    assert!(!in_members_list(&r), "no longer shared: {r}");
    let r = owner.get(membership.clone()).await;
    r.expect_glance_error(404);
    delete_image(&owner, &id).await;
}

async fn image_member_rejection(b: &Backend) {
    let owner = b.login(&b.a).await;
    let member = b.login(&b.b).await;
    let image = create_image(&owner, json!({"visibility": "shared"})).await;
    let id = image["id"].as_str().unwrap().to_string();
    owner
        .post(
            owner.images(&format!("/images/{id}/members")),
            json!({"member": b.b.id}),
        )
        .await
        .expect_status(200);
    let membership = owner.images(&format!("/images/{id}/members/{}", b.b.id));
    let listed = |r: &backend::Reply| {
        r.body["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == json!(id))
    };

    // Pending shares are found with member_status=pending.
    let r = member
        .get(member.images("/images?visibility=shared&member_status=pending"))
        .await;
    r.expect_status(200);
    assert!(listed(&r), "{r}");
    // Rejected: not listed by default, found with member_status=rejected or all.
    let r = member
        .put(membership.clone(), Some(json!({"status": "rejected"})))
        .await;
    r.expect_status(200);
    assert_eq!(r.body["status"], "rejected", "{r}");
    let r = member.get(member.images("/images")).await;
    assert!(!listed(&r), "{r}");
    for status in ["rejected", "all"] {
        let r = member
            .get(member.images(&format!("/images?visibility=shared&member_status={status}")))
            .await;
        r.expect_status(200);
        assert!(listed(&r), "member_status={status}: {r}");
    }
    // A member may change its mind.
    member
        .put(membership.clone(), Some(json!({"status": "accepted"})))
        .await
        .expect_status(200);
    let r = member.get(member.images("/images")).await;
    assert!(listed(&r), "{r}");
    // Deleting the image ends the share.
    delete_image(&owner, &id).await;
    let r = member.get(member.images(&format!("/images/{id}"))).await;
    r.expect_glance_error(404);
}

async fn image_list_pagination(b: &Backend) {
    let s = b.login(&b.a).await;
    let tag = unique("dt-page");
    let mut ids = Vec::new();
    for n in ["c", "a", "b"] {
        let image = create_image(
            &s,
            json!({"visibility": "private", "tags": [tag], "name": format!("{tag}-{n}")}),
        )
        .await;
        ids.push(image["id"].as_str().unwrap().to_string());
    }
    let first = format!("/v2/images?tag={tag}&sort_key=name&sort_dir=asc&limit=2");
    let r = s.get(format!("{}{first}", s.image)).await;
    r.expect_status(200);
    assert_eq!(r.body["schema"], "/v2/schemas/images", "{r}");
    assert_eq!(r.body["first"], json!(first), "{r}");
    let names: Vec<&str> = r.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, [format!("{tag}-a"), format!("{tag}-b")], "{r}");
    // `next` is relative to the endpoint, with the client's query and a marker.
    let next = r.body["next"]
        .as_str()
        .unwrap_or_else(|| panic!("no next: {r}"));
    assert!(next.starts_with("/v2/images?"), "{r}");
    let last = r.body["images"][1]["id"].as_str().unwrap();
    assert!(next.contains(&format!("marker={last}")), "{r}");
    let r = s.get(format!("{}{next}", s.image)).await;
    r.expect_status(200);
    assert_eq!(r.body["images"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(
        r.body["images"][0]["name"],
        json!(format!("{tag}-c")),
        "{r}"
    );
    assert!(
        r.body.get("next").is_none(),
        "the last page has no next: {r}"
    );
    for id in &ids {
        delete_image(&s, id).await;
    }
}

/// Glance's JSON errors come from webob's templates, which put the explanation, an HTML
/// line break and the detail in `message` ("... is protected and cannot be
/// deleted.<br /><br />\n\n\n"): a client that shows the message to people must strip
/// the markup.
async fn glance_error_messages(b: &Backend) {
    let s = b.login(&b.a).await;
    let image = create_image(&s, json!({"visibility": "private", "protected": true})).await;
    let id = image["id"].as_str().unwrap().to_string();
    let unknown = uuid::Uuid::new_v4();
    for (r, status, text) in [
        (
            s.delete(s.images(&format!("/images/{id}"))).await,
            403,
            format!("Image {id} is protected and cannot be deleted."),
        ),
        (
            s.get(s.images(&format!("/images/{unknown}"))).await,
            404,
            format!("No image found with ID {unknown}"),
        ),
    ] {
        let message = r.expect_glance_error(status);
        assert_eq!(message, format!("{text}<br /><br />\n\n\n"), "{r}");
    }
    s.patch_image(
        &id,
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await
    .expect_status(200);
    delete_image(&s, &id).await;
}

async fn protected_images(b: &Backend) {
    let s = b.login(&b.a).await;
    let image = create_image(&s, json!({"visibility": "private", "protected": true})).await;
    let id = image["id"].as_str().unwrap().to_string();
    assert_eq!(image["protected"], true, "{image}");

    let r = s.delete(s.images(&format!("/images/{id}"))).await;
    r.expect_glance_error(403);

    // NHN: "Cannot be modified or deleted when protected=true" (NHN's Image API, docs/sources.md). Upstream
    // Glance only refuses the delete: the image can still be patched and tagged.
    let rename = s
        .patch_image(
            &id,
            json!([{"op": "replace", "path": "/name", "value": unique("dt-renamed")}]),
        )
        .await;
    let tag = s
        .put(s.images(&format!("/images/{id}/tags/dt-protected")), None)
        .await;
    match b.kind {
        Kind::Emulator => {
            rename.expect_glance_error(403);
            tag.expect_glance_error(403);
        }
        Kind::OpenStack => {
            rename.expect_status(200);
            tag.expect_status(204);
        }
    }
    // Members are not image attributes: both allow them on a protected image.
    s.patch_image(
        &id,
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await
    .expect_status(200);
    s.patch_image(
        &id,
        json!([{"op": "replace", "path": "/visibility", "value": "shared"},
                               {"op": "replace", "path": "/protected", "value": true}]),
    )
    .await
    .expect_status(200);
    let r = s
        .post(
            s.images(&format!("/images/{id}/members")),
            json!({"member": b.b.id}),
        )
        .await;
    r.expect_status(200);

    s.patch_image(
        &id,
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await
    .expect_status(200);
    delete_image(&s, &id).await;
}

async fn image_tags(b: &Backend) {
    let s = b.login(&b.a).await;
    let image = create_image(&s, json!({"visibility": "private", "tags": ["first"]})).await;
    let id = image["id"].as_str().unwrap().to_string();
    assert_eq!(image["tags"], json!(["first"]), "{image}");
    let tag = |t: &str| s.images(&format!("/images/{id}/tags/{t}"));

    let r = s.put(tag("cloudvol.dev-uid-1234"), None).await;
    r.expect_status(204);
    assert!(r.text.is_empty(), "{r}");
    let r = s.get(s.images(&format!("/images/{id}"))).await;
    let mut tags: Vec<&str> = r.body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort();
    assert_eq!(tags, ["cloudvol.dev-uid-1234", "first"], "{r}");
    // Found by tag.
    let r = s.get(s.images("/images?tag=cloudvol.dev-uid-1234")).await;
    r.expect_status(200);
    assert_eq!(r.body["images"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r.body["images"][0]["id"], json!(id), "{r}");
    // Adding an existing tag is fine.
    s.put(tag("first"), None).await.expect_status(204);

    // NHN: "Tags starting with _ are not allowed" (NHN's Image API, docs/sources.md); upstream accepts them.
    let r = s.put(tag("_hidden"), None).await;
    match b.kind {
        Kind::Emulator => {
            r.expect_glance_error(400);
        }
        Kind::OpenStack => {
            r.expect_status(204);
        }
    }

    s.delete(tag("first")).await.expect_status(204);
    let r = s.delete(tag("never-added")).await;
    r.expect_glance_error(404);
    delete_image(&s, &id).await;
}

async fn image_data(b: &Backend) {
    let s = b.login(&b.a).await;
    let image = create_image(&s, json!({"visibility": "private"})).await;
    let id = image["id"].as_str().unwrap().to_string();
    let file = s.images(&format!("/images/{id}/file"));

    let r = s
        .send(
            Method::PUT,
            file.clone(),
            Some(Body::Bytes("application/json", b"{}".to_vec())),
            &[],
        )
        .await;
    r.expect_glance_error(415);
    let data = b"cloudvol differential test data".to_vec();
    let r = s
        .send(
            Method::PUT,
            file.clone(),
            Some(Body::Bytes("application/octet-stream", data.clone())),
            &[],
        )
        .await;
    r.expect_status(204);
    let image = wait_image(&s, &id, &["queued", "saving", "active"], "active").await;
    assert_eq!(image["size"], json!(data.len()), "{image}");
    assert_eq!(
        image["checksum"].as_str().map(str::len),
        Some(32),
        "an MD5 checksum: {image}"
    );
    assert_eq!(image["os_hash_algo"], "sha512", "{image}");
    // Data is written once.
    let r = s
        .send(
            Method::PUT,
            file.clone(),
            Some(Body::Bytes("application/octet-stream", data.clone())),
            &[],
        )
        .await;
    r.expect_glance_error(409);
    let r = s.get(file).await;
    r.expect_status(200);
    assert_eq!(r.text.as_bytes(), &data[..], "{r}");
    delete_image(&s, &id).await;
}

// ---- tenants ---------------------------------------------------------------------------

async fn other_tenants_resources(b: &Backend) {
    let a = b.login(&b.a).await;
    let other = b.login(&b.b).await;
    let (id, _) = new_available_volume(&a, "dt-tenant").await;

    // Another project's block-storage path: Cinder compares the URL's project with the
    // token's and answers "Malformed request url" (Cinder's upload-to-image reference, docs/sources.md shows this exact body).
    let r = other.get(a.volumes(&format!("/volumes/{id}"))).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(message, "Malformed request url", "{r}");
    // Through its own path, another project's volume does not exist.
    let r = other.get(other.volumes(&format!("/volumes/{id}"))).await;
    r.expect_cinder_fault(404, "itemNotFound");

    // Another project's private image does not exist for it either.
    let image = create_image(&a, json!({"visibility": "private"})).await;
    let image_id = image["id"].as_str().unwrap().to_string();
    let r = other
        .get(other.images(&format!("/images/{image_id}")))
        .await;
    r.expect_glance_error(404);
    let r = other
        .delete(other.images(&format!("/images/{image_id}")))
        .await;
    r.expect_glance_error(404);

    delete_image(&a, &image_id).await;
    delete_volume(&a, &id).await;
}

// ---- volumes from images --------------------------------------------------------------

/// The data of the images volumes are made from: 1 MiB of zeros, small enough for every
/// test, and really downloaded by Cinder into the new volume.
const IMAGE_DATA_LEN: usize = 1 << 20;

/// Cinder's answer for an image reference it cannot resolve: unknown, or not visible.
const IMAGE_NOT_FOUND: &str = "Invalid image identifier or unable to access requested image.";

/// An `active` raw image of the session's project (custom property `os_type`) holding
/// [`IMAGE_DATA_LEN`] bytes; `extra` adds attributes at creation.
async fn image_with_data(s: &Session, extra: Value) -> Value {
    let image = create_image(s, extra).await;
    let id = image["id"].as_str().unwrap().to_string();
    s.send(
        Method::PUT,
        s.images(&format!("/images/{id}/file")),
        Some(Body::Bytes(
            "application/octet-stream",
            vec![0; IMAGE_DATA_LEN],
        )),
        &[],
    )
    .await
    .expect_status(204);
    wait_image(s, &id, &["queued", "saving", "active"], "active").await
}

/// `POST /volumes` with `volume`; expects 202 `creating`, not yet bootable, no image
/// metadata yet. Returns the new volume's ID.
async fn create_volume_from_image(s: &Session, volume: Value) -> String {
    let r = s
        .post(s.volumes("/volumes"), json!({ "volume": volume }))
        .await;
    r.expect_status(202);
    let v = &r.body["volume"];
    assert_shape("volume created from an image", v, VOLUME_FIELDS);
    assert_eq!(v["status"], "creating", "{r}");
    assert_eq!(v["bootable"], "false", "not bootable until downloaded: {r}");
    assert!(
        v.get("volume_image_metadata").is_none(),
        "no image metadata before the download: {r}"
    );
    v["id"].as_str().unwrap().to_string()
}

async fn post_volume(s: &Session, volume: Value) -> backend::Reply {
    s.post(s.volumes("/volumes"), json!({ "volume": volume }))
        .await
}

/// Waits for a volume made from an image: `creating` -> `downloading` -> `available`.
async fn wait_downloaded(s: &Session, id: &str) -> Value {
    wait_volume(
        s,
        id,
        &["creating", "downloading", "available"],
        "available",
    )
    .await
}

/// What Cinder shows of the image a volume was made from: bootable, and
/// `volume_image_metadata` with the image's ID, name, formats, checksum, sizes (as strings)
/// and custom properties.
fn assert_made_from(volume: &Value, image: &Value) {
    assert_eq!(volume["bootable"], "true", "made from an image: {volume}");
    let m = &volume["volume_image_metadata"];
    assert_eq!(m["image_id"], image["id"], "{volume}");
    assert_eq!(m["image_name"], image["name"], "{volume}");
    for key in ["checksum", "container_format", "disk_format"] {
        assert_eq!(m[key], image[key], "volume_image_metadata.{key}: {volume}");
    }
    for key in ["min_disk", "min_ram", "size"] {
        assert_eq!(
            m[key],
            json!(image[key].to_string()),
            "volume_image_metadata.{key} is the image's, as a string: {volume}"
        );
    }
    assert_eq!(m["os_type"], "linux", "custom properties too: {volume}");
    assert_eq!(m["signature_verified"], "False", "{volume}");
}

async fn volume_from_image(b: &Backend) {
    let s = b.login(&b.a).await;
    let image = image_with_data(&s, json!({"visibility": "private"})).await;
    let image_id = image["id"].as_str().unwrap().to_string();

    // By ID.
    let name = unique("dt-from-image");
    let id =
        create_volume_from_image(&s, json!({"size": 1, "imageRef": image_id, "name": name})).await;
    let v = wait_downloaded(&s, &id).await;
    assert_shape("volume made from an image", &v, VOLUME_FIELDS);
    assert_made_from(&v, &image);
    let r = s
        .get(s.volumes(&format!("/volumes/detail?name={name}")))
        .await;
    r.expect_status(200);
    assert_eq!(
        r.body["volumes"][0]["volume_image_metadata"]["image_id"],
        json!(image_id),
        "the detail list shows it too: {r}"
    );

    // By name, and with `image_id`, Cinder's other spelling of `imageRef`.
    let by_name = create_volume_from_image(&s, json!({"size": 1, "imageRef": image["name"]})).await;
    let by_alias = create_volume_from_image(&s, json!({"size": 1, "image_id": image_id})).await;
    for other in [&by_name, &by_alias] {
        let v = wait_downloaded(&s, other).await;
        assert_made_from(&v, &image);
    }
    for v in [&id, &by_name, &by_alias] {
        delete_volume(&s, v).await;
    }
    delete_image(&s, &image_id).await;
}

/// A qcow2 file of `virtual_size` bytes holding no data, laid out as
/// `qemu-img create -f qcow2` lays it out (version 3, 64 KiB clusters: header, refcount
/// table, refcount block, L1 table). Glance reads the virtual size from its header.
fn empty_qcow2(virtual_size: u64) -> Vec<u8> {
    const CLUSTER: usize = 1 << 16;
    let l1_entries = virtual_size.div_ceil(CLUSTER as u64 * (CLUSTER as u64 / 8)) as usize;
    let mut file = vec![0u8; 3 * CLUSTER + 8 * l1_entries];
    let mut put = |at: usize, bytes: &[u8]| file[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"QFI\xfb");
    put(4, &3u32.to_be_bytes()); // version
    put(20, &16u32.to_be_bytes()); // cluster_bits
    put(24, &virtual_size.to_be_bytes());
    put(36, &(l1_entries as u32).to_be_bytes());
    put(40, &(3 * CLUSTER as u64).to_be_bytes()); // L1 table offset
    put(48, &(CLUSTER as u64).to_be_bytes()); // refcount table offset
    put(56, &1u32.to_be_bytes()); // refcount table clusters
    put(96, &4u32.to_be_bytes()); // refcount order (16-bit refcounts)
    put(100, &112u32.to_be_bytes()); // header length
    put(CLUSTER, &(2 * CLUSTER as u64).to_be_bytes()); // refcount block
    for cluster in 0..4 {
        put(2 * CLUSTER + 2 * cluster, &1u16.to_be_bytes()); // clusters 0-3 in use
    }
    file
}

async fn volume_from_image_refusals(b: &Backend) {
    let s = b.login(&b.a).await;
    let other = b.login(&b.b).await;
    let image = image_with_data(&s, json!({"visibility": "private"})).await;
    let image_id = image["id"].as_str().unwrap().to_string();

    // An image Cinder cannot find, by ID or by name, or one the project cannot see.
    for image_ref in [
        json!(uuid::Uuid::new_v4().to_string()),
        json!(unique("dt-no-such")),
    ] {
        let r = post_volume(&s, json!({"size": 1, "imageRef": image_ref})).await;
        let message = r.expect_cinder_fault(400, "badRequest");
        assert_eq!(message, IMAGE_NOT_FOUND, "{r}");
    }
    let r = post_volume(&other, json!({"size": 1, "imageRef": image_id})).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(
        message, IMAGE_NOT_FOUND,
        "another project's private image: {r}"
    );
    // Not a string: the request schema.
    let r = post_volume(&s, json!({"size": 1, "imageRef": 12})).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(
        message,
        "Invalid input for field/attribute imageRef. Value: 12. 12 is not of type 'string', 'null'",
        "{r}"
    );

    // Not active.
    let queued = create_image(&s, json!({"visibility": "private"})).await;
    let queued_id = queued["id"].as_str().unwrap().to_string();
    let r = post_volume(&s, json!({"size": 1, "imageRef": queued_id})).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(
        message,
        format!("Invalid input received: Image {queued_id} is not active."),
        "{r}"
    );
    delete_image(&s, &queued_id).await;

    // A size is required: Cinder takes none from the image. (Upstream the refusal is a
    // TypeError in Cinder's size check, answered with webob's generic text.)
    let r = post_volume(&s, json!({"imageRef": image_id})).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(
        message,
        "The server could not comply with the request since it is either malformed or otherwise incorrect.",
        "{r}"
    );

    // One source at most.
    let (source, _) = new_available_volume(&s, "dt-image-and-source").await;
    let r = post_volume(
        &s,
        json!({"size": 1, "imageRef": image_id, "source_volid": source}),
    )
    .await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(
        message,
        "Invalid input received: May specify only one of backup, imageRef, snapshot, source volume",
        "{r}"
    );
    delete_volume(&s, &source).await;

    // Below the image's min_disk.
    s.patch_image(
        &image_id,
        json!([{"op": "replace", "path": "/min_disk", "value": 3}]),
    )
    .await
    .expect_status(200);
    let r = post_volume(&s, json!({"size": 2, "imageRef": image_id})).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(
        message,
        "Invalid input received: Volume size 2GB cannot be smaller than the image minDisk size 3GB.",
        "{r}"
    );
    delete_image(&s, &image_id).await;

    // Below the image's virtual size, which Glance reads from a qcow2 header.
    let qcow2 = create_image(&s, json!({"visibility": "private", "disk_format": "qcow2"})).await;
    let qcow2_id = qcow2["id"].as_str().unwrap().to_string();
    s.send(
        Method::PUT,
        s.images(&format!("/images/{qcow2_id}/file")),
        Some(Body::Bytes(
            "application/octet-stream",
            empty_qcow2(2 << 30),
        )),
        &[],
    )
    .await
    .expect_status(204);
    let qcow2 = wait_image(&s, &qcow2_id, &["queued", "saving", "active"], "active").await;
    assert_eq!(qcow2["virtual_size"], json!(2u64 << 30), "{qcow2}");
    assert_eq!(qcow2["size"], json!(196_640), "{qcow2}");
    let r = post_volume(&s, json!({"size": 1, "imageRef": qcow2_id})).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(
        message,
        format!(
            "Image {qcow2_id} is unacceptable: Image virtual size is 2GB and doesn't fit in a volume of size 1GB."
        ),
        "{r}"
    );
    delete_image(&s, &qcow2_id).await;
}

async fn volume_from_shared_and_public_images(b: &Backend) {
    let owner = b.login(&b.a).await;
    let member = b.login(&b.b).await;
    let image = image_with_data(&owner, json!({"visibility": "shared"})).await;
    let image_id = image["id"].as_str().unwrap().to_string();
    let membership = owner.images(&format!("/images/{image_id}/members/{}", b.b.id));
    owner
        .post(
            owner.images(&format!("/images/{image_id}/members")),
            json!({"member": b.b.id}),
        )
        .await
        .expect_status(200);

    // Cinder finds an image by ID through Glance's show, which a member may use whatever
    // its member status; by name through Glance's list, which holds a shared image only
    // once accepted.
    for status in ["pending", "rejected", "accepted"] {
        if status != "pending" {
            member
                .put(membership.clone(), Some(json!({"status": status})))
                .await
                .expect_status(200);
        }
        let id = create_volume_from_image(&member, json!({"size": 1, "imageRef": image_id})).await;
        let v = wait_downloaded(&member, &id).await;
        assert_made_from(&v, &image);
        delete_volume(&member, &id).await;
        let by_name = json!({"volume": {"size": 1, "imageRef": image["name"]}});
        if status == "accepted" {
            let id = create_volume_from_image(&member, by_name["volume"].clone()).await;
            wait_downloaded(&member, &id).await;
            delete_volume(&member, &id).await;
        } else {
            let r = member.post(member.volumes("/volumes"), by_name).await;
            let message = r.expect_cinder_fault(400, "badRequest");
            assert_eq!(
                message, IMAGE_NOT_FOUND,
                "by name, member status {status}: {r}"
            );
        }
    }
    delete_image(&owner, &image_id).await;

    // A public image: anyone's, by ID and by name.
    let name = unique("dt-public-source");
    let data = vec![0; IMAGE_DATA_LEN];
    let public_id = b.public_image(&name, &data).await;
    let public = member
        .get(member.images(&format!("/images/{public_id}")))
        .await;
    public.expect_status(200);
    for image_ref in [json!(public_id), json!(name)] {
        let id = create_volume_from_image(&member, json!({"size": 1, "imageRef": image_ref})).await;
        let v = wait_downloaded(&member, &id).await;
        assert_made_from(&v, &public.body);
        delete_volume(&member, &id).await;
    }
    b.delete_public_image(&public_id).await;
}

async fn volume_from_large_image(b: &Backend) {
    let s = b.login(&b.a).await;
    // One byte over a GiB: 2 GiB once rounded up.
    let size = (1u64 << 30) + 1;
    let image_id = b
        .large_image(&s, &b.a, &unique("dt-large-image"), size)
        .await;
    let image = wait_image(&s, &image_id, &["queued", "saving", "active"], "active").await;
    assert_eq!(image["size"], json!(size), "{image}");

    let r = s
        .post(
            s.volumes("/volumes"),
            json!({"volume": {"size": 1, "imageRef": image_id}}),
        )
        .await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(
        message,
        "Invalid input received: Size of specified image 2GB is larger than volume size 1GB.",
        "{r}"
    );
    let id = create_volume_from_image(&s, json!({"size": 2, "imageRef": image_id})).await;
    let v = wait_downloaded(&s, &id).await;
    assert_eq!(
        v["volume_image_metadata"]["size"],
        json!(size.to_string()),
        "{v}"
    );
    delete_volume(&s, &id).await;
    delete_image(&s, &image_id).await;
}

// ---- retype ----------------------------------------------------------------------------

/// Cinder's one refusal for a retype its API will not start: same type, or a volume
/// neither `available` nor `in-use`.
const RETYPE_REFUSED: &str = "Invalid volume: Retype needs volume to be in available or in-use state, not be part of an active migration or a consistency group, requested type has to be different that the one from the volume, and for in-use volumes front-end qos specs cannot change.";

/// Waits out `retyping` and returns the volume's type. The API sets `retyping` before it
/// answers 202, so the first `until` seen is the end of the retype.
async fn retyped(s: &Session, id: &str, until: &str) -> String {
    wait_volume(s, id, &["retyping", until], until).await["volume_type"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn retype(b: &Backend) {
    // Two types: one the volume's backend serves, one it does not (upstream a backend
    // name the test OpenStack does not have; in the emulator a name with "ssd" in it,
    // which it puts on another backend than the default type's).
    b.ensure_volume_type("cloudvol-hdd", json!({})).await;
    b.ensure_volume_type(
        "cloudvol-ssd",
        json!({"volume_backend_name": "ssd_general"}),
    )
    .await;
    let s = b.login(&b.a).await;
    let (id, _) = new_available_volume(&s, "dt-retype").await;
    let volume = s.get(s.volumes(&format!("/volumes/{id}"))).await;
    let default_type = volume.body["volume"]["volume_type"]
        .as_str()
        .unwrap()
        .to_string();
    let action = s.volumes(&format!("/volumes/{id}/action"));
    let retype_to = |new_type: &str, policy: Option<&str>| {
        let mut body = json!({"os-retype": {"new_type": new_type}});
        if let Some(p) = policy {
            body["os-retype"]["migration_policy"] = json!(p);
        }
        s.post(action.clone(), body)
    };
    let settled = |until| retyped(&s, &id, until);

    // A type the backend serves: changed in place.
    let r = retype_to("cloudvol-hdd", Some("never")).await;
    r.expect_status(202);
    assert!(r.text.is_empty(), "os-retype answers no body: {r}");
    assert_eq!(settled("available").await, "cloudvol-hdd");

    // The same type again; bodies the schema refuses.
    let r = retype_to("cloudvol-hdd", None).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(message, RETYPE_REFUSED, "{r}");
    for (body, expected) in [
        (
            json!({"os-retype": {}}),
            "Invalid input for field/attribute os-retype. Value: {}. 'new_type' is a required property",
        ),
        (
            json!({"os-retype": null}),
            "Invalid input for field/attribute os-retype. Value: None. None is not of type 'object'",
        ),
        (
            json!({"os-retype": {"new_type": 5}}),
            "Invalid input for field/attribute new_type. Value: 5. 5 is not of type 'string'",
        ),
        (
            json!({"os-retype": {"new_type": "cloudvol-ssd", "migration_policy": "sometimes"}}),
            "Invalid input for field/attribute migration_policy. Value: sometimes. 'sometimes' is not one of ['on-demand', 'never']",
        ),
        (
            json!({"os-retype": {"new_type": "cloudvol-ssd", "x": 1}}),
            "Invalid input for field/attribute os-retype. Value: {'new_type': 'cloudvol-ssd', 'x': 1}. Additional properties are not allowed ('x' was unexpected)",
        ),
    ] {
        let r = s.post(action.clone(), body).await;
        let message = r.expect_cinder_fault(400, "badRequest");
        assert_eq!(message, expected, "{r}");
    }
    let r = retype_to("", None).await;
    let message = r.expect_cinder_fault(404, "itemNotFound");
    assert_eq!(message, "Volume type with name  could not be found.", "{r}");

    // A type the backend does not serve, migration not allowed (explicitly, or by
    // default): accepted, then given up — back to `available`, the type unchanged.
    for policy in [Some("never"), None] {
        retype_to("cloudvol-ssd", policy).await.expect_status(202);
        assert_eq!(settled("available").await, "cloudvol-hdd", "{policy:?}");
    }
    // `on-demand` to a type the backend serves: in place too.
    retype_to(&default_type, Some("on-demand"))
        .await
        .expect_status(202);
    assert_eq!(settled("available").await, default_type);

    // Attached: the same rules, and back to `in-use`.
    let server = uuid::Uuid::new_v4().to_string();
    b.attach(&s, &id, &server).await;
    wait_volume(
        &s,
        &id,
        &["available", "reserved", "attaching", "in-use"],
        "in-use",
    )
    .await;
    retype_to("cloudvol-hdd", Some("never"))
        .await
        .expect_status(202);
    assert_eq!(settled("in-use").await, "cloudvol-hdd");
    retype_to("cloudvol-ssd", Some("never"))
        .await
        .expect_status(202);
    assert_eq!(settled("in-use").await, "cloudvol-hdd");
    b.detach(&s, &id).await;
    wait_volume(&s, &id, &["in-use", "detaching", "available"], "available").await;

    // An unknown type: a resource upstream, any name in the emulator (its README).
    let r = retype_to("no-such-type", None).await;
    match b.kind {
        Kind::Emulator => {
            r.expect_status(202);
            assert_eq!(settled("available").await, "no-such-type");
        }
        Kind::OpenStack => {
            let message = r.expect_cinder_fault(404, "itemNotFound");
            assert_eq!(
                message, "Volume type with name no-such-type could not be found.",
                "{r}"
            );
        }
    }

    // Neither available nor in-use.
    b.force_volume_status(&id, "error").await;
    let r = retype_to(&default_type, None).await;
    let message = r.expect_cinder_fault(400, "badRequest");
    assert_eq!(message, RETYPE_REFUSED, "{r}");
    delete_volume(&s, &id).await;
}

// ---- the operator's cloud layer against upstream ------------------------------------

/// `src/cloud` (the operator's client) against the real services, through the
/// generated clouds.yaml, as the operator reads a credentials Secret. Upstream only: the
/// emulator has its own tests of the same layer (tests/cloud_*.rs).
mod operator_cloud_layer {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use cloudvol::cloud::model::{
        CreateVolume, ImageQuery, MemberStatus, PatchOp, UploadToImage, Volume, VolumeQuery,
    };
    use cloudvol::cloud::{
        BlockStorage, CloudCredentials, CloudHttp, Connector, Image, TransportConfig,
    };

    use super::backend::Deadline;
    use super::openstack_support::{OpenStackEnv, openstack};
    use super::unique;

    async fn env() -> &'static OpenStackEnv {
        tokio::task::spawn_blocking(openstack)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn creds(env: &OpenStackEnv, cloud: &str) -> CloudCredentials {
        let yaml = std::fs::read(&env.clouds_yaml).expect("the generated clouds.yaml");
        CloudCredentials::from_clouds_yaml(&yaml, cloud, None)
            .unwrap_or_else(|e| panic!("the operator refuses the generated clouds.yaml: {e}"))
    }

    fn connector() -> Connector {
        Connector::new(CloudHttp::new(TransportConfig::default()).expect("an HTTP client"))
    }

    async fn wait_volume(bs: &Arc<dyn BlockStorage>, id: &str, status: &str, size: u64) -> Volume {
        let deadline = Deadline::new(format!("volume {id} {status} at {size} GiB"));
        loop {
            let v = bs.show_volume(id).await.expect("show volume");
            if v.status.as_str() == status && v.size == size {
                return v;
            }
            deadline.tick().await;
        }
    }

    async fn wait_image_active(image: &Arc<dyn Image>, id: &str) {
        let deadline = Deadline::new(format!("image {id} active"));
        while image
            .show_image(id)
            .await
            .expect("show image")
            .status
            .as_str()
            != "active"
        {
            deadline.tick().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cloud_check_passes() {
        let env = env().await;
        for cloud in ["project-a", "project-b"] {
            let mut out = Vec::new();
            cloudvol::cloud::check::check(&connector(), &creds(env, cloud), &mut out)
                .await
                .unwrap_or_else(|e| panic!("cloud check {cloud} failed [{}]: {e}", e.reason()));
            let out = String::from_utf8(out).unwrap();
            assert!(out.contains("OK: the credentials work."), "{out}");
            assert!(
                out.contains(&format!("block-storage  {}/v3/", env.cinder_url)),
                "{out}"
            );
            assert!(
                out.contains(&format!("image          {}", env.glance_url)),
                "{out}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn volume_image_and_share_lifecycle() {
        let env = env().await;
        let connector = connector();
        let (a, b) = (creds(env, "project-a"), creds(env, "project-b"));
        let bs = connector.block_storage(&a).unwrap();
        let image = connector.image(&a).unwrap();
        let partner = connector.image(&b).unwrap();
        assert_eq!(bs.provider(), "openstack-v3");

        // Create, found by its mark, extend.
        let mark = BTreeMap::from([("cloudvol.dev/uid".to_string(), unique("uid"))]);
        let created = bs
            .create_volume(&CreateVolume {
                size: 1,
                name: Some(unique("op-volume")),
                metadata: mark.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        wait_volume(&bs, &created.id, "available", 1).await;
        let found = bs
            .list_volumes_detail(&VolumeQuery {
                metadata: mark.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
            [created.id.as_str()]
        );
        bs.extend_volume(&created.id, 2).await.unwrap();
        wait_volume(&bs, &created.id, "available", 2).await;

        // Upload with the NHN extensions, which Cinder v3 takes from microversion 3.1.
        let uploaded = bs
            .upload_to_image(
                &created.id,
                &UploadToImage {
                    disk_format: Some("qcow2".into()),
                    container_format: Some("bare".into()),
                    visibility: Some("shared".into()),
                    protected: Some(true),
                    ..UploadToImage::new(unique("op-image"))
                },
            )
            .await
            .unwrap();
        assert_eq!(uploaded.status.as_str(), "uploading");
        wait_image_active(&image, &uploaded.image_id).await;
        wait_volume(&bs, &created.id, "available", 2).await;
        let shown = image.show_image(&uploaded.image_id).await.unwrap();
        assert_eq!(shown.visibility.as_str(), "shared");
        assert!(shown.protected);
        assert_eq!(shown.owner.as_deref(), Some(env.project_a.id.as_str()));

        // Share with project B, which accepts and then lists it.
        let member = image
            .add_member(&uploaded.image_id, &env.project_b.id)
            .await
            .unwrap();
        assert_eq!(member.status, MemberStatus::Pending);
        partner
            .update_member_status(
                &uploaded.image_id,
                &env.project_b.id,
                MemberStatus::Accepted,
            )
            .await
            .unwrap();
        let listed = partner.list_images(&ImageQuery::default()).await.unwrap();
        assert!(listed.iter().any(|i| i.id == uploaded.image_id));
        image
            .delete_member(&uploaded.image_id, &env.project_b.id)
            .await
            .unwrap();

        // A protected image is not deleted; the cloud's reason reaches the operator as
        // text a person can read (Glance's JSON message carries webob's
        // `<br /><br />` markup).
        let err = image.delete_image(&uploaded.image_id).await.unwrap_err();
        assert!(!err.is_transient(), "{err}");
        assert!(
            err.message().contains("is protected and cannot be deleted"),
            "{err}"
        );

        image
            .update_image(&uploaded.image_id, &[PatchOp::replace("protected", false)])
            .await
            .unwrap();
        image.delete_image(&uploaded.image_id).await.unwrap();
        bs.delete_volume(&created.id).await.unwrap();
        let deadline = Deadline::new(format!("volume {} gone", created.id));
        while bs.show_volume(&created.id).await.is_ok() {
            deadline.tick().await;
        }
        // Checked last, so that a failure leaves nothing behind.
        assert!(
            !err.message().contains("<br"),
            "HTML markup in the message: {:?}",
            err.message()
        );
    }
}
