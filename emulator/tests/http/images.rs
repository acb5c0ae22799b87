use std::time::Duration;

use cloudvol_emulator::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

fn ids(body: &Value) -> Vec<String> {
    body["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn names(body: &Value) -> Vec<String> {
    body["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_needs_os_type_and_refuses_public_and_read_only_attributes() {
    let env = start().await;
    let token = env.demo().await;
    let no_os = env
        .post(&token, "/image/v2/images", json!({"name": "x"}))
        .await;
    assert_glance_error(&no_os, 400);
    let public = env
        .post(
            &token,
            "/image/v2/images",
            json!({"name": "x", "os_type": "linux", "visibility": "public"}),
        )
        .await;
    assert_glance_error(&public, 403);
    let status = env
        .post(
            &token,
            "/image/v2/images",
            json!({"name": "x", "os_type": "linux", "status": "active"}),
        )
        .await;
    assert_glance_error(&status, 403);
    let bad_format = env
        .post(
            &token,
            "/image/v2/images",
            json!({"name": "x", "os_type": "linux", "disk_format": "floppy"}),
        )
        .await;
    assert_glance_error(&bad_format, 400);

    let a = env
        .post(
            &token,
            "/image/v2/images",
            json!({"name": "Ubuntu Image", "container_format": "bare", "disk_format": "qcow2",
                "os_type": "linux", "os_distro": "ubuntu", "os_version": "Server 22.04 LTS",
                "min_disk": 20, "min_ram": 512, "tags": ["t1"], "visibility": "shared",
                "custom": "value"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let i = &a.body;
    assert_eq!(i["status"], "queued");
    assert_eq!(i["owner"], DEMO);
    assert_eq!(i["visibility"], "shared");
    assert_eq!(i["protected"], false);
    assert_eq!(i["os_type"], "linux");
    assert_eq!(i["os_distro"], "ubuntu");
    assert_eq!(i["custom"], "value");
    assert_eq!(i["tags"], json!(["t1"]));
    assert_eq!(i["min_disk"], 20);
    assert_eq!(i["size"], Value::Null);
    assert_eq!(i["schema"], "/v2/schemas/image");
    let id = i["id"].as_str().expect("id");
    assert_eq!(i["self"], format!("/v2/images/{id}"));
    assert_eq!(i["file"], format!("/v2/images/{id}/file"));
    assert!(i["created_at"].as_str().is_some_and(|s| s.ends_with('Z')));

    // Default visibility is private (NHN).
    let private = env.create_image(&token, json!({})).await;
    let show = env
        .get(&token, &format!("/image/v2/images/{private}"))
        .await;
    assert_eq!(show.body["visibility"], "private");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_and_download_image_data() {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    config.transitions.image_saving = Duration::from_secs(1);
    let env = start_with(config).await;
    let token = env.demo().await;
    let id = env.create_image(&token, json!({})).await;
    let file = format!("{}/image/v2/images/{id}/file", env.base);

    let empty = env.get(&token, &file).await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT);

    let wrong_type = env
        .http
        .put(&file)
        .header("X-Auth-Token", &token)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let data = b"The quick brown fox jumps over the lazy dog".to_vec();
    let put = env
        .http
        .put(&file)
        .header("X-Auth-Token", &token)
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let saving = env.get(&token, &format!("/image/v2/images/{id}")).await;
    assert_eq!(saving.body["status"], "saving");
    let img = env.wait_image(&token, &id, "active").await;
    assert_eq!(img["size"], data.len());
    assert_eq!(img["checksum"], "9e107d9d372bb6826bd81d3542a419d6");
    assert_eq!(img["os_hash_algo"], "sha512");

    let got = env.get(&token, &file).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.bytes, data);

    let again = env
        .http
        .put(&file)
        .header("X-Auth-Token", &token)
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let partner = env.partner().await;
    let theirs = env.get(&partner, &file).await;
    assert_glance_error(&theirs, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_patch_rules() {
    let env = start().await;
    let token = env.demo().await;
    let id = env.create_image(&token, json!({"extra": "1"})).await;

    let wrong_type = env
        .call(
            Method::PATCH,
            &format!("/image/v2/images/{id}"),
            Some(&token),
            Some(json!([{"op": "replace", "path": "/name", "value": "n"}])),
            &[],
        )
        .await;
    assert_glance_error(&wrong_type, 415);

    let ok = env
        .patch_image(
            &token,
            &id,
            json!([
                {"op": "replace", "path": "/name", "value": "renamed"},
                {"op": "add", "path": "/metadata1", "value": "value1"},
                {"op": "replace", "path": "/extra", "value": "2"},
                {"op": "replace", "path": "/min_disk", "value": 5},
                {"op": "replace", "path": "/tags", "value": ["a", "b"]},
                {"op": "replace", "path": "/visibility", "value": "shared"},
            ]),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["name"], "renamed");
    assert_eq!(ok.body["metadata1"], "value1");
    assert_eq!(ok.body["extra"], "2");
    assert_eq!(ok.body["min_disk"], 5);
    assert_eq!(ok.body["tags"], json!(["a", "b"]));
    assert_eq!(ok.body["visibility"], "shared");

    let removed = env
        .patch_image(&token, &id, json!([{"op": "remove", "path": "/metadata1"}]))
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert!(removed.body.get("metadata1").is_none());

    let missing = env
        .patch_image(
            &token,
            &id,
            json!([{"op": "replace", "path": "/nothing", "value": "x"}]),
        )
        .await;
    assert_glance_error(&missing, 409);
    let remove_core = env
        .patch_image(&token, &id, json!([{"op": "remove", "path": "/name"}]))
        .await;
    assert_glance_error(&remove_core, 403);
    for ro in [
        "id",
        "status",
        "owner",
        "size",
        "checksum",
        "created_at",
        "updated_at",
    ] {
        let a = env
            .patch_image(
                &token,
                &id,
                json!([{"op": "replace", "path": format!("/{ro}"), "value": "x"}]),
            )
            .await;
        let msg = assert_glance_error(&a, 403);
        assert!(msg.contains("read-only"), "{ro}: {msg}");
    }
    let public = env
        .patch_image(
            &token,
            &id,
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
        )
        .await;
    assert_glance_error(&public, 403);
    let bad_op = env
        .patch_image(
            &token,
            &id,
            json!([{"op": "move", "path": "/name", "from": "/x"}]),
        )
        .await;
    assert_glance_error(&bad_op, 400);
    // A failed patch changes nothing.
    let partial = env
        .patch_image(
            &token,
            &id,
            json!([{"op": "replace", "path": "/name", "value": "half"},
                   {"op": "replace", "path": "/status", "value": "active"}]),
        )
        .await;
    assert_glance_error(&partial, 403);
    let show = env.get(&token, &format!("/image/v2/images/{id}")).await;
    assert_eq!(show.body["name"], "renamed");

    let partner = env.partner().await;
    let theirs = env
        .patch_image(
            &partner,
            &id,
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    assert_glance_error(&theirs, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_images_cannot_be_modified_or_deleted_until_unprotected() {
    let env = start().await;
    let token = env.demo().await;
    let id = env
        .create_image(&token, json!({"protected": true, "visibility": "shared"}))
        .await;
    let path = format!("/image/v2/images/{id}");

    let rename = env
        .patch_image(
            &token,
            &id,
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    assert_glance_error(&rename, 403);
    let tag = env
        .call(
            Method::PUT,
            &format!("{path}/tags/t"),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_glance_error(&tag, 403);
    let file = env
        .http
        .put(format!("{}{path}/file", env.base))
        .header("X-Auth-Token", &token)
        .header("Content-Type", "application/octet-stream")
        .body("data")
        .send()
        .await
        .expect("sent");
    assert_eq!(file.status(), StatusCode::FORBIDDEN);
    let delete = env.delete(&token, &path).await;
    let msg = assert_glance_error(&delete, 403);
    assert!(msg.contains("protected"), "{msg}");

    // Members are not image attributes: allowed on a protected image.
    let member = env
        .post(
            &token,
            &format!("{path}/members"),
            json!({"member": PARTNER}),
        )
        .await;
    assert_eq!(member.status, StatusCode::OK, "{}", member.body);

    // Unprotecting together with another change is refused ...
    let mixed = env
        .patch_image(
            &token,
            &id,
            json!([{"op": "replace", "path": "/protected", "value": false},
                   {"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    assert_glance_error(&mixed, 403);
    // ... unprotecting alone is allowed, and then everything is.
    let unprotect = env
        .patch_image(
            &token,
            &id,
            json!([{"op": "replace", "path": "/protected", "value": false}]),
        )
        .await;
    assert_eq!(unprotect.status, StatusCode::OK, "{}", unprotect.body);
    assert_eq!(unprotect.body["protected"], false);
    let deleted = env.delete(&token, &path).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_then_404_and_public_images_cannot_be_deleted() {
    let env = start().await;
    let token = env.demo().await;
    let id = env.create_image(&token, json!({})).await;
    let path = format!("/image/v2/images/{id}");
    let partner = env.partner().await;
    assert_glance_error(&env.delete(&partner, &path).await, 404);
    let a = env.delete(&token, &path).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_glance_error(&env.get(&token, &path).await, 404);
    assert_glance_error(&env.delete(&token, &path).await, 404);

    let public = env
        .admin(
            Method::POST,
            "/_admin/images",
            Some(json!({"owner": DEMO, "name": "Ubuntu", "visibility": "public", "size": 10})),
        )
        .await;
    assert_eq!(public.status, StatusCode::CREATED, "{}", public.body);
    let pid = public.body["id"].as_str().expect("id");
    let refused = env.delete(&token, &format!("/image/v2/images/{pid}")).await;
    assert_glance_error(&refused, 403);
    // Everyone sees a public image.
    let seen = env.get(&partner, &format!("/image/v2/images/{pid}")).await;
    assert_eq!(seen.status, StatusCode::OK);
    let not_owner = env
        .delete(&partner, &format!("/image/v2/images/{pid}"))
        .await;
    assert_glance_error(&not_owner, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn tags() {
    let env = start().await;
    let token = env.demo().await;
    let id = env.create_image(&token, json!({})).await;
    let tag = |t: &str| format!("/image/v2/images/{id}/tags/{t}");
    let put = |t: String| {
        let env = &env;
        let token = &token;
        async move { env.call(Method::PUT, &t, Some(token), None, &[]).await }
    };
    assert_eq!(put(tag("one")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(put(tag("one")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(put(tag("two")).await.status, StatusCode::NO_CONTENT);
    assert_glance_error(&put(tag("_hidden")).await, 400);
    assert_glance_error(&put(tag(&"t".repeat(256))).await, 400);
    assert_eq!(
        put(tag(&"t".repeat(255))).await.status,
        StatusCode::NO_CONTENT
    );
    let show = env.get(&token, &format!("/image/v2/images/{id}")).await;
    assert_eq!(show.body["tags"][0], "one");
    assert_eq!(show.body["tags"][1], "two");
    assert_eq!(show.body["tags"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        env.delete(&token, &tag("one")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_glance_error(&env.delete(&token, &tag("one")).await, 404);
    let partner = env.partner().await;
    assert_glance_error(
        &env.call(Method::PUT, &tag("x"), Some(&partner), None, &[])
            .await,
        404,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_filters_and_sorts() {
    let env = start().await;
    let token = env.demo().await;
    let mut created = Vec::new();
    for i in 0..27 {
        let tags = if i % 3 == 0 {
            json!(["three"])
        } else {
            json!([])
        };
        created.push(
            env.create_image(
                &token,
                json!({"name": format!("img-{i:02}"), "tags": tags,
                    "visibility": if i == 0 { "shared" } else { "private" }}),
            )
            .await,
        );
    }
    let a = env.get(&token, "/image/v2/images").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(ids(&a.body).len(), 25);
    assert_eq!(a.body["schema"], "/v2/schemas/images");
    assert_eq!(a.body["first"], "/v2/images");
    // Newest first by default.
    assert_eq!(ids(&a.body)[0], created[26]);
    let next = a.body["next"].as_str().expect("next").to_string();
    assert!(next.starts_with("/v2/images?marker="), "{next}");
    let b = env.get(&token, &format!("/image{next}")).await;
    assert_eq!(ids(&b.body), vec![created[1].clone(), created[0].clone()]);
    assert!(b.body.get("next").is_none());

    let sorted = env
        .get(
            &token,
            "/image/v2/images?sort_key=name&sort_dir=asc&limit=3",
        )
        .await;
    assert_eq!(names(&sorted.body), ["img-00", "img-01", "img-02"]);
    let next = sorted.body["next"].as_str().expect("next");
    assert!(
        next.contains("sort_key=name") && next.contains("limit=3"),
        "{next}"
    );
    assert_eq!(
        sorted.body["first"],
        "/v2/images?sort_key=name&sort_dir=asc&limit=3"
    );
    let page2 = env.get(&token, &format!("/image{next}")).await;
    assert_eq!(names(&page2.body), ["img-03", "img-04", "img-05"]);

    let by_name = env.get(&token, "/image/v2/images?name=img-07").await;
    assert_eq!(names(&by_name.body), ["img-07"]);
    let tagged = env
        .get(&token, "/image/v2/images?tag=three&limit=100")
        .await;
    assert_eq!(ids(&tagged.body).len(), 9);
    let shared = env.get(&token, "/image/v2/images?visibility=shared").await;
    assert_eq!(ids(&shared.body), vec![created[0].clone()]);
    let owned = env
        .get(&token, &format!("/image/v2/images?owner={DEMO}&limit=2"))
        .await;
    assert_eq!(ids(&owned.body).len(), 2);
    let queued = env.get(&token, "/image/v2/images?status=active").await;
    assert!(ids(&queued.body).is_empty());
    let by_prop = env
        .get(&token, "/image/v2/images?os_type=linux&limit=1")
        .await;
    assert_eq!(ids(&by_prop.body).len(), 1);

    for bad in [
        "limit=x",
        "sort_key=colour",
        "sort_dir=up",
        "visibility=everyone",
        "member_status=maybe",
    ] {
        let a = env.get(&token, &format!("/image/v2/images?{bad}")).await;
        assert_glance_error(&a, 400);
    }

    // Another tenant sees none of these private images.
    let partner = env.partner().await;
    let theirs = env.get(&partner, "/image/v2/images").await;
    assert!(ids(&theirs.body).is_empty());
    assert_glance_error(
        &env.get(&partner, &format!("/image/v2/images/{}", created[5]))
            .await,
        404,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sharing_with_members_and_member_status() {
    let env = start_with(three_tenants()).await;
    let owner = env.demo().await;
    let partner = env.partner().await;
    let third = env.token(THIRD, "third").await;

    let private = env.create_image(&owner, json!({})).await;
    let on_private = env
        .post(
            &owner,
            &format!("/image/v2/images/{private}/members"),
            json!({"member": PARTNER}),
        )
        .await;
    assert_glance_error(&on_private, 403);

    let id = env
        .create_image(&owner, json!({"visibility": "shared"}))
        .await;
    let members = format!("/image/v2/images/{id}/members");
    let me = format!("{members}/{PARTNER}");

    let added = env.post(&owner, &members, json!({"member": PARTNER})).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert_eq!(added.body["status"], "pending");
    assert_eq!(added.body["member_id"], PARTNER);
    assert_eq!(added.body["image_id"], json!(id));
    assert_eq!(added.body["schema"], "/v2/schemas/member");
    assert!(added.body["created_at"].is_string() && added.body["updated_at"].is_string());
    let dup = env.post(&owner, &members, json!({"member": PARTNER})).await;
    assert_glance_error(&dup, 409);
    let by_member = env.post(&partner, &members, json!({"member": THIRD})).await;
    assert_glance_error(&by_member, 403);
    env.post(&owner, &members, json!({"member": THIRD})).await;

    // Pending: not listed, but showable; listed with member_status=pending.
    let list = env.get(&partner, "/image/v2/images").await;
    assert!(!ids(&list.body).contains(&id));
    assert_eq!(
        env.get(&partner, &format!("/image/v2/images/{id}"))
            .await
            .status,
        StatusCode::OK
    );
    let pending = env
        .get(
            &partner,
            "/image/v2/images?visibility=shared&member_status=pending",
        )
        .await;
    assert_eq!(ids(&pending.body), vec![id.clone()]);

    // Owner lists all members, a member only itself.
    let all = env.get(&owner, &members).await;
    assert_eq!(all.body["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(all.body["schema"], "/v2/schemas/members");
    let mine = env.get(&partner, &members).await;
    assert_eq!(mine.body["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(mine.body["members"][0]["member_id"], PARTNER);
    assert_glance_error(&env.get(&third, &me).await, 404);
    assert_eq!(env.get(&owner, &me).await.status, StatusCode::OK);

    // Only the member sets its status.
    let by_owner = env.put(&owner, &me, json!({"status": "accepted"})).await;
    assert_glance_error(&by_owner, 403);
    let invalid = env.put(&partner, &me, json!({"status": "maybe"})).await;
    assert_glance_error(&invalid, 400);
    let accepted = env.put(&partner, &me, json!({"status": "accepted"})).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert_eq!(accepted.body["status"], "accepted");
    let list = env.get(&partner, "/image/v2/images").await;
    assert!(ids(&list.body).contains(&id));

    let rejected = env.put(&partner, &me, json!({"status": "rejected"})).await;
    assert_eq!(rejected.status, StatusCode::OK);
    let list = env.get(&partner, "/image/v2/images").await;
    assert!(!ids(&list.body).contains(&id));
    let listed_rejected = env
        .get(
            &partner,
            "/image/v2/images?visibility=shared&member_status=rejected",
        )
        .await;
    assert_eq!(ids(&listed_rejected.body), vec![id.clone()]);

    // Only the owner deletes members.
    assert_glance_error(&env.delete(&partner, &me).await, 403);
    assert_eq!(env.delete(&owner, &me).await.status, StatusCode::NO_CONTENT);
    assert_glance_error(
        &env.get(&partner, &format!("/image/v2/images/{id}")).await,
        404,
    );
    assert_glance_error(&env.delete(&owner, &me).await, 404);
}

/// A qcow2 header: magic, version 3, 64 KiB clusters, and `virtual_size`.
fn qcow2_header(virtual_size: u64) -> Vec<u8> {
    let mut h = vec![0u8; 112];
    h[0..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    h[20..24].copy_from_slice(&16u32.to_be_bytes());
    h[24..32].copy_from_slice(&virtual_size.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn uploaded_data_has_a_virtual_size_from_a_qcow2_header_or_its_length() {
    let env = start().await;
    let token = env.demo().await;
    let qcow2 = env
        .create_image(&token, json!({"disk_format": "qcow2"}))
        .await;
    env.upload_image_data(&token, &qcow2, qcow2_header(3 << 30))
        .await;
    let img = env.wait_image(&token, &qcow2, "active").await;
    assert_eq!(img["size"], 112);
    assert_eq!(img["virtual_size"], 3u64 << 30);
    // The same bytes as raw data: their length, as Glance's inspector says.
    let raw = env
        .create_image(&token, json!({"disk_format": "raw"}))
        .await;
    env.upload_image_data(&token, &raw, qcow2_header(3 << 30))
        .await;
    let img = env.wait_image(&token, &raw, "active").await;
    assert_eq!(img["virtual_size"], 112);
}
