use std::time::Duration;

use cloudvol_emulator::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

async fn available_volume(env: &Env, token: &str, size: u64) -> String {
    let id = env
        .create_volume(token, DEMO, json!({"size": size, "description": "src"}))
        .await;
    env.wait_volume(token, DEMO, &id, "available").await;
    id
}

fn upload(extra: Value) -> Value {
    let mut u = json!({"image_name": "VOLUME IMAGE", "force": false,
        "disk_format": "qcow2", "container_format": "bare"});
    if let (Some(u), Some(e)) = (u.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                u.remove(k);
            } else {
                u.insert(k.clone(), v.clone());
            }
        }
    }
    json!({ "os-volume_upload_image": u })
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_creates_an_image_and_the_volume_comes_back() {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    config.transitions.image_queued = Duration::from_secs(1);
    config.transitions.image_saving = Duration::from_secs(1);
    let env = start_with(config).await;
    let token = env.demo().await;
    let vol = available_volume(&env, &token, 20).await;

    let a = env
        .action(
            &token,
            DEMO,
            &vol,
            upload(json!({"visibility": "shared", "protected": true})),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let u = &a.body["os-volume_upload_image"];
    assert_eq!(u["status"], "uploading");
    assert_eq!(u["image_name"], "VOLUME IMAGE");
    assert_eq!(u["disk_format"], "qcow2");
    assert_eq!(u["container_format"], "bare");
    assert_eq!(u["id"], json!(vol));
    assert_eq!(u["size"], 20);
    assert_eq!(u["display_description"], "src");
    assert_eq!(u["volume_type"]["name"], "General HDD");
    assert!(u["volume_type"]["extra_specs"].is_array());
    assert!(u["updated_at"].is_string());
    let image_id = u["image_id"].as_str().expect("image id").to_string();

    let during = env.volume(&token, DEMO, &vol).await;
    assert_eq!(during.body["volume"]["status"], "uploading");
    let queued = env
        .get(&token, &format!("/image/v2/images/{image_id}"))
        .await;
    assert_eq!(queued.body["status"], "queued");
    env.wait_image(&token, &image_id, "saving").await;
    let img = env.wait_image(&token, &image_id, "active").await;
    assert_eq!(img["owner"], DEMO);
    assert_eq!(img["name"], "VOLUME IMAGE");
    assert_eq!(img["visibility"], "shared");
    assert_eq!(img["protected"], true);
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["container_format"], "bare");
    assert_eq!(img["size"], 20u64 << 30);
    assert_eq!(img["min_disk"], 0, "Cinder leaves min_disk at 0");
    assert!(img["checksum"].is_string());
    env.wait_volume(&token, DEMO, &vol, "available").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attached_volume_uploads_with_force_and_returns_in_use() {
    let env = start().await;
    let token = env.demo().await;
    let vol = available_volume(&env, &token, 1).await;
    env.admin(
        Method::POST,
        &format!("/_admin/volumes/{vol}/attach"),
        Some(json!({"server_id": "srv"})),
    )
    .await;
    env.wait_volume(&token, DEMO, &vol, "in-use").await;

    let refused = env.action(&token, DEMO, &vol, upload(json!({}))).await;
    let msg = assert_cinder_fault(&refused, 400, "badRequest");
    assert_eq!(msg, "Invalid volume: Volume status is in-use.");

    let a = env
        .action(&token, DEMO, &vol, upload(json!({"force": true})))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let image = a.body["os-volume_upload_image"]["image_id"]
        .as_str()
        .expect("id")
        .to_string();
    env.wait_image(&token, &image, "active").await;
    let v = env.wait_volume(&token, DEMO, &vol, "in-use").await;
    assert_eq!(v["attachments"][0]["server_id"], "srv");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_of_seed_003() {
    let env = start().await;
    let token = env.demo().await;
    let vol = available_volume(&env, &token, 1).await;
    let long = "x".repeat(256);
    let cases = [
        json!({}),
        json!({"os-volume_upload_image": "not an object"}),
        upload(json!({"image_name": null})),
        json!({"os-volume_upload_image": {"force": false}}),
        upload(json!({"image_name": ""})),
        upload(json!({"image_name": 0})),
        upload(json!({"image_name": long})),
        upload(json!({"force": "maybe"})),
        upload(json!({"force": 1})),
        upload(json!({"disk_format": "floppy"})),
        upload(json!({"container_format": "crate"})),
        upload(json!({"visibility": "everyone"})),
        upload(json!({"protected": "perhaps"})),
        upload(json!({"colour": "blue"})),
    ];
    for body in cases {
        let a = env.action(&token, DEMO, &vol, body.clone()).await;
        assert_cinder_fault(&a, 400, "badRequest");
    }
    // No body at all.
    let empty = env
        .call(
            Method::POST,
            &format!("{}/{vol}/action", env.volumes(DEMO)),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_cinder_fault(&empty, 400, "badRequest");
    // 255 characters is fine.
    let max = env
        .action(
            &token,
            DEMO,
            &vol,
            upload(json!({"image_name": "y".repeat(255)})),
        )
        .await;
    assert_eq!(max.status, StatusCode::ACCEPTED, "{}", max.body);
    env.wait_volume(&token, DEMO, &vol, "available").await;

    // Volume status neither available nor in-use.
    for status in ["creating", "error", "uploading", "extending"] {
        env.admin(
            Method::POST,
            &format!("/_admin/volumes/{vol}/state"),
            Some(json!({"status": status})),
        )
        .await;
        let a = env.action(&token, DEMO, &vol, upload(json!({}))).await;
        let msg = assert_cinder_fault(&a, 400, "badRequest");
        assert!(msg.contains("must be available or in-use"), "{msg}");
    }
    // Unknown volume.
    let missing = env
        .action(
            &token,
            DEMO,
            "00000000-0000-4000-8000-000000000000",
            upload(json!({})),
        )
        .await;
    assert_cinder_fault(&missing, 404, "itemNotFound");
    // Public is not for tenants.
    let public = env
        .action(&token, DEMO, &vol, upload(json!({"visibility": "public"})))
        .await;
    assert!(public.status.is_client_error());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_v3_visibility_and_protected_need_microversion_3_1() {
    let env = start().await;
    let token = env.demo().await;
    let vol = available_volume(&env, &token, 1).await;
    let path = format!("/block-storage/v3/{DEMO}/volumes/{vol}/action");
    let body = upload(json!({"visibility": "shared", "protected": false}));
    let plain = env
        .call(Method::POST, &path, Some(&token), Some(body.clone()), &[])
        .await;
    let msg = assert_cinder_fault(&plain, 400, "badRequest");
    assert!(msg.contains("visibility"), "{msg}");
    let v31 = env
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(body),
            &[("OpenStack-API-Version", "volume 3.1")],
        )
        .await;
    assert_eq!(v31.status, StatusCode::ACCEPTED, "{}", v31.body);
    assert_eq!(v31.headers["openstack-api-version"], "volume 3.1");
    let image = v31.body["os-volume_upload_image"]["image_id"]
        .as_str()
        .expect("id")
        .to_string();
    let img = env.wait_image(&token, &image, "active").await;
    assert_eq!(img["visibility"], "shared");
    // On v3 without the NHN fields, a plain upload works.
    env.wait_volume(&token, DEMO, &vol, "available").await;
    let plain_ok = env
        .call(
            Method::POST,
            &path,
            Some(&token),
            Some(upload(json!({}))),
            &[],
        )
        .await;
    assert_eq!(plain_ok.status, StatusCode::ACCEPTED, "{}", plain_ok.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_iso_upload_is_accepted_but_the_image_disappears() {
    let env = start().await;
    let token = env.demo().await;
    let vol = available_volume(&env, &token, 1).await;
    let a = env
        .action(&token, DEMO, &vol, upload(json!({"disk_format": "iso"})))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let image = a.body["os-volume_upload_image"]["image_id"]
        .as_str()
        .expect("id")
        .to_string();
    eventually("the iso image to disappear", || async {
        let a = env.get(&token, &format!("/image/v2/images/{image}")).await;
        (a.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    env.wait_volume(&token, DEMO, &vol, "available").await;
}
